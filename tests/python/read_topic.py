"""Reads N records of a topic from the beginning with confluent-kafka, a client
independent of the sidecar, and prints each as a JSON line
{"partition", "offset", "key", "value", "headers"}.

Usage: read_topic.py BROKERS TOPIC N TIMEOUT_SECONDS
Exits 1 if fewer than N records arrived within the timeout.
"""
import json
import sys
import time
import uuid

from confluent_kafka import Consumer, TopicPartition


def text(b):
    return None if b is None else b.decode("utf-8", "replace")


def main() -> int:
    brokers, topic, n, timeout = sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
    consumer = Consumer({
        "bootstrap.servers": brokers,
        "group.id": "reader-" + uuid.uuid4().hex,
        "enable.auto.commit": False,
    })
    deadline = time.monotonic() + timeout
    # Assign every partition explicitly: no group join, so no rebalance wait.
    while True:
        md = consumer.list_topics(topic, timeout=5).topics.get(topic)
        if md is not None and md.error is None and md.partitions:
            break
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"topic {topic} not found"}), flush=True)
            return 1
        time.sleep(0.1)
    consumer.assign([TopicPartition(topic, p, 0) for p in md.partitions])
    got = 0
    while got < n:
        if time.monotonic() > deadline:
            print(json.dumps({"error": f"read {got} of {n} records"}), flush=True)
            return 1
        m = consumer.poll(0.2)
        if m is None:
            continue
        if m.error():
            print(json.dumps({"kafka_error": str(m.error())}), flush=True)
            continue
        headers = {k: text(v) for k, v in (m.headers() or [])}
        print(json.dumps({
            "partition": m.partition(), "offset": m.offset(),
            "key": text(m.key()), "value": text(m.value()), "headers": headers,
        }), flush=True)
        got += 1
    consumer.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
