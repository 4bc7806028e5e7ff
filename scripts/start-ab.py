#!/usr/bin/env python3
"""A/B of start to ready for outrigger builds (or daprd), alternated start by start.

Each start spawns the binary as outrigger-bench does (`sidecar --app-id bench
--log-level warn`, loopback ports picked free, one bindings.kafka output
component), polls `GET /v1.0/healthz` until it answers 204, and SIGKILLs it.
Contenders take turns, so that a change in the machine's load hits all alike;
the medians are printed (BENCHMARKS.md, "Start to ready").

Usage: scripts/start-ab.py [--starts N] BIN[,ENV=VALUE...] ... [--daprd PATH]
  BIN          an outrigger binary (e.g. a copy of target/release/outrigger per build)
  ENV=VALUE    environment for that contender only
  --daprd PATH also start daprd the same way (standalone, no placement or scheduler)
Env: OUTRIGGER_KAFKA_DIR: a running broker of scripts/kafka.sh (default
.tools/kafka-test); the component writes to it.
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def broker_address():
    env = os.path.join(
        os.environ.get("OUTRIGGER_KAFKA_DIR", os.path.join(ROOT, ".tools/kafka-test")),
        "broker.env",
    )
    for line in open(env):
        if line.startswith("KAFKA_PLAINTEXT="):
            return line.split("=", 1)[1].strip()
    sys.exit(f"no KAFKA_PLAINTEXT in {env}")


def start(contender, resources):
    binary, *settings = contender.split(",")
    env = dict(os.environ)
    env.update(kv.split("=", 1) for kv in settings)
    http, grpc = free_port(), free_port()
    if contender.startswith("daprd:"):
        binary = binary[len("daprd:"):]
        cmd = [binary, "--mode", "standalone", "--app-id", "bench", "--log-level", "warn",
               "--dapr-internal-grpc-port", str(free_port()), "--metrics-port", str(free_port()),
               "--placement-host-address", "", "--scheduler-host-address", ""]
    else:
        cmd = [binary, "sidecar", "--app-id", "bench", "--log-level", "warn"]
    cmd += ["--dapr-http-port", str(http), "--dapr-grpc-port", str(grpc),
            "--dapr-listen-addresses", "127.0.0.1", "--resources-path", resources]
    started = time.perf_counter()
    child = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL, env=env)
    try:
        deadline = started + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", http)) as s:
                    s.sendall(b"GET /v1.0/healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                    if s.recv(32).startswith(b"HTTP/1.1 204"):
                        return (time.perf_counter() - started) * 1000
            except OSError:
                pass
            if child.poll() is not None:
                sys.exit(f"{contender} exited with {child.returncode} before it was ready")
            if time.perf_counter() > deadline:
                sys.exit(f"{contender} not ready within 60 s")
            time.sleep(0.0002)
    finally:
        child.kill()
        child.wait()


def main():
    args = sys.argv[1:]
    starts, contenders = 20, []
    while args:
        a = args.pop(0)
        if a == "--starts":
            starts = int(args.pop(0))
        elif a == "--daprd":
            contenders.append("daprd:" + args.pop(0))
        elif a in ("-h", "--help"):
            print(__doc__)
            return
        else:
            contenders.append(a)
    if not contenders:
        sys.exit(__doc__)
    with tempfile.TemporaryDirectory() as resources:
        with open(os.path.join(resources, "bench.yaml"), "w") as f:
            f.write(
                "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: bench\n"
                "spec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n"
                f"  - name: brokers\n    value: \"{broker_address()}\"\n"
                "  - name: publishTopic\n    value: \"start-ab\"\n"
                "  - name: authType\n    value: \"none\"\n"
                "  - name: direction\n    value: \"output\"\n"
            )
        times = {c: [] for c in contenders}
        for _ in range(starts):
            for c in contenders:
                times[c].append(start(c, resources))
    for c, t in times.items():
        t.sort()
        print(f"{c:60} median {statistics.median(t):7.2f} ms   p25 {t[len(t) // 4]:7.2f}"
              f"   p75 {t[3 * len(t) // 4]:7.2f}   ({len(t)} starts)")


if __name__ == "__main__":
    main()
