#!/usr/bin/env python3
"""Differential conformance runner: runs the cases of cases.py against a sidecar
(the real daprd or outrigger), records what a user can observe, and either writes
it as the golden file (--record) or compares it with the golden file (replay).

Sidecar-agnostic: the only per-sidecar knowledge is how to start it (argv and
the few flags whose names differ) and where its version comes from. The rules
for what is normalised and what is compared are in tests/conformance/README.md;
the code that applies them is `normalise()` (at observation time) and `view()`
(at comparison time).
"""
import argparse
import base64
import concurrent.futures
import datetime
import http.client
import http.server
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import grpc
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf import json_format, message_factory
from google.rpc import status_pb2, error_details_pb2  # noqa: F401 (registers the detail types)
from dapr.proto.runtime.v1 import dapr_pb2, appcallback_pb2

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
sys.path.insert(0, HERE)
import cases as C  # noqa: E402

APP_ID = "conformance"
DAPR_SERVICE = dapr_pb2.DESCRIPTOR.services_by_name["Dapr"]


def log(*a):
    print(*a, file=sys.stderr, flush=True)


class Timeout(Exception):
    pass


def poll(fn, timeout, interval=0.02):
    """fn() until it returns something other than None, or None after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v is not None:
            return v
        if time.monotonic() > deadline:
            return None
        time.sleep(interval)


def wait_for(what, timeout, fn):
    v = poll(fn, timeout)
    if v is None:
        raise Timeout(f"timed out after {timeout}s waiting for {what}")
    return v


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show(b):
    """Bytes as JSON: text when valid UTF-8, else {"base64": ...}; None stays None."""
    if b is None:
        return None
    if isinstance(b, str):
        return b
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(b).decode()}


def unshow(v):
    if v is None:
        return None
    if isinstance(v, dict):
        return base64.b64decode(v["base64"])
    return v.encode("utf-8")


# --------------------------------------------------------------------------- kafka


# What a broker answers for a partition whose leadership has not settled yet.
NOT_SERVED_YET = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE,
                  KafkaError.UNKNOWN_TOPIC_OR_PART)


class Kafka:
    def __init__(self, bootstrap):
        self.bootstrap = bootstrap
        self.admin = AdminClient({"bootstrap.servers": bootstrap})
        self.producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 0})
        self.meta = Consumer({"bootstrap.servers": bootstrap, "group.id": "conformance-meta-" + uuid.uuid4().hex[:8],
                              "enable.auto.commit": False})

    def create_topics(self, topics):
        fs = self.admin.create_topics([NewTopic(t, p, 1) for t, p in topics.items()], operation_timeout=20)
        for f in fs.values():
            f.result(30)
        for t, p in topics.items():
            wait_for(f"topic {t}", 20, lambda: True if self._ready(t, p) else None)

    def _ready(self, topic, partitions):
        md = self.meta.list_topics(topic, timeout=5)
        t = md.topics.get(topic)
        return t is not None and t.error is None and len(t.partitions) == partitions and \
            all(pm.leader >= 0 for pm in t.partitions.values())

    def partitions(self, topic):
        return sorted(self.meta.list_topics(topic, timeout=5).topics[topic].partitions)

    def high_marks(self, topic):
        # Metadata can name a leader before that broker serves the partition
        # (NOT_LEADER_FOR_PARTITION on a fresh topic): retriable errors are retried.
        def marks():
            try:
                return {p: self.meta.get_watermark_offsets(TopicPartition(topic, p), timeout=5, cached=False)[1]
                        for p in self.partitions(topic)}
            except KafkaException as e:
                err = e.args[0] if e.args and isinstance(e.args[0], KafkaError) else None
                if err is not None and (err.retriable() or err.code() in NOT_SERVED_YET):
                    return None
                raise
        return wait_for(f"the high marks of {topic}", 20, marks)

    def read(self, topic, start, end=None, count=None, timeout=10.0, exact=False):
        """Records of `topic` from offsets `start`; up to offsets `end` (a
        snapshot of high marks taken after the writes were acknowledged), or until
        `count` records came (for writes that happen asynchronously)."""
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": "conformance-read-" + uuid.uuid4().hex[:8],
                      "enable.auto.commit": False, "enable.partition.eof": False})
        try:
            if end is not None:
                todo = {p: e for p, e in end.items() if e > start.get(p, 0)}
            else:
                todo = None
            parts = [TopicPartition(topic, p, start.get(p, 0)) for p in self.partitions(topic)]
            c.assign(parts)
            out = []
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if todo is not None and not todo:
                    break
                if count is not None and len(out) >= count:
                    break
                m = c.poll(0.1)
                if m is None or m.error():
                    continue
                out.append(m)
                if todo is not None and m.partition() in todo and m.offset() + 1 >= todo[m.partition()]:
                    del todo[m.partition()]
            return [record_view(m, exact) for m in out]
        finally:
            c.close()

    def produce(self, topic, recs):
        for r in recs:
            self.producer.produce(topic, value=unshow(r.get("value")), key=unshow(r.get("key")),
                                  headers=[(k, unshow(v)) for k, v in r.get("headers", [])], partition=0)
        left = self.producer.flush(10)
        assert left == 0, "produce did not finish"

    def committed(self, group, topic):
        c = Consumer({"bootstrap.servers": self.bootstrap, "group.id": group, "enable.auto.commit": False})
        try:
            tps = c.committed([TopicPartition(topic, p) for p in self.partitions(topic)], timeout=5)
            return {str(tp.partition): (tp.offset if tp.offset >= 0 else None) for tp in tps}
        finally:
            c.close()


def record_view(m, exact=False):
    """exact: the case chose the partition (partitionNumber), so it is observed
    even without a key."""
    key = m.key()
    return {
        "key": show(key),
        "value": show(m.value()),
        # Header order in daprd comes from a Go map (random): compared as a sorted list.
        "headers": sorted([[k, show(v)] for k, v in (m.headers() or [])], key=lambda kv: (kv[0], json.dumps(kv[1]))),
        # A record without key goes to any partition: only a keyed record's partition is observed.
        "record_partition": m.partition() if key is not None or exact else "<any>",
    }


# --------------------------------------------------------------------------- apps


class AppState:
    """What the app saw, shared by the HTTP and gRPC app."""

    def __init__(self, routes):
        self.routes = routes  # name -> behaviour (cases.Route)
        self.events = []
        self.cond = threading.Condition()
        self.release = threading.Event()

    def add(self, ev):
        with self.cond:
            ev["seq"] = len(self.events)
            self.events.append(ev)
            self.cond.notify_all()

    def snapshot(self):
        with self.cond:
            return list(self.events)

    def behaviour(self, name, body):
        r = self.routes.get(name) or C.Route()
        if r.unless and r.unless.encode() in (body or b""):
            return C.Route()
        return r


class QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        pass  # a sidecar that gave up on a hanging request closed the connection


class HttpApp:
    def __init__(self, routes):
        self.state = AppState(routes)
        state = self.state

        class H(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def _read(self):
                n = int(self.headers.get("Content-Length") or 0)
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    data = b""
                    while True:
                        size = int(self.rfile.readline().strip() or b"0", 16)
                        if size == 0:
                            self.rfile.readline()
                            break
                        data += self.rfile.read(size)
                        self.rfile.readline()
                    return data
                return self.rfile.read(n) if n else b""

            def _handle(self):
                body = self._read()
                route = self.path.split("?")[0].lstrip("/")
                # Raw header bytes: http.client decodes them as latin-1.
                headers = [[k, show(v.encode("latin-1", "replace"))] for k, v in self.headers.items()]
                ev = {"transport": "http", "method": self.command, "path": self.path, "route": route,
                      "headers": headers, "body": show(body), "raw_body": body}
                state.add(ev)
                r = state.behaviour(route, body)
                status, out = 200, b""
                if self.command == "OPTIONS":
                    status = r.options
                else:
                    if r.hang:
                        state.release.wait(30)
                    status = r.status
                    if r.reply is not None:
                        out = json.dumps(r.reply).encode()
                self.send_response(status)
                if out:
                    self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(out)))
                self.end_headers()
                self.wfile.write(out)

            do_OPTIONS = do_POST = do_PUT = do_GET = do_DELETE = _handle

        for attempt in range(5):
            try:
                self.port = free_port()
                self.server = QuietServer(("127.0.0.1", self.port), H)
                break
            except OSError:
                if attempt == 4:
                    raise
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self):
        self.state.release.set()
        self.server.shutdown()
        self.server.server_close()


class GrpcApp:
    def __init__(self, routes, listed):
        self.state = AppState(routes)
        state = self.state
        self.listed = listed

        def md(context):
            return [[m.key, show(m.value)] for m in context.invocation_metadata()]

        def list_bindings(request, context):
            state.add({"transport": "grpc", "method": "ListInputBindings", "metadata": md(context)})
            return appcallback_pb2.ListInputBindingsResponse(bindings=listed)

        def on_event(request, context):
            state.add({"transport": "grpc", "method": "OnBindingEvent", "route": request.name, "metadata": md(context),
                       "name": request.name, "data": show(request.data), "raw_body": request.data,
                       "event_metadata": dict(request.metadata)})
            r = state.behaviour(request.name, request.data)
            if r.hang:
                state.release.wait(30)
            if r.status >= 300:
                code = grpc.StatusCode.NOT_FOUND if r.status == 404 else grpc.StatusCode.INTERNAL
                context.abort(code, "app refused the event")
            resp = appcallback_pb2.BindingEventResponse()
            if r.reply is not None:
                resp.to.extend(r.reply.get("to", []))
                if "data" in r.reply:
                    resp.data = json.dumps(r.reply["data"]).encode()
            return resp

        known = {
            "/dapr.proto.runtime.v1.AppCallback/ListInputBindings": grpc.unary_unary_rpc_method_handler(
                list_bindings, request_deserializer=lambda b: b,
                response_serializer=lambda m: m.SerializeToString()),
            "/dapr.proto.runtime.v1.AppCallback/OnBindingEvent": grpc.unary_unary_rpc_method_handler(
                on_event, request_deserializer=appcallback_pb2.BindingEventRequest.FromString,
                response_serializer=lambda m: m.SerializeToString()),
        }

        class Generic(grpc.GenericRpcHandler):
            def service(self, details):
                h = known.get(details.method)
                if h is None:
                    # Recorded so that calls such as a health check show up; answered UNIMPLEMENTED.
                    state.add({"transport": "grpc", "method": details.method, "unknown": True,
                               "metadata": [[k, show(v)] for k, v in details.invocation_metadata]})
                return h

        for attempt in range(5):
            try:
                self.port = free_port()
                self.server = grpc.server(concurrent.futures.ThreadPoolExecutor(max_workers=32),
                                          handlers=[Generic()])
                self.server.add_insecure_port(f"127.0.0.1:{self.port}")
                self.server.start()
                break
            except RuntimeError:
                if attempt == 4:
                    raise

    def stop(self):
        self.state.release.set()
        self.server.stop(0)


# --------------------------------------------------------------------------- sidecars


class Sidecar:
    """One sidecar process. `kind` is daprd or outrigger; both get the same
    components folder and the daprd-style flags they share."""

    def __init__(self, kind, binary, resources, logdir, name, app=None, protocol="http", env=None,
                 max_body_mb=None, app_timeout=None):
        self.kind, self.binary, self.resources = kind, binary, resources
        self.logdir, self.name = logdir, name
        self.app, self.protocol = app, protocol
        self.env = env or {}
        self.max_body_mb, self.app_timeout = max_body_mb, app_timeout
        self.proc = None

    def argv(self):
        a = ["--app-id", APP_ID, "--resources-path", self.resources,
             "--dapr-http-port", str(self.http), "--dapr-grpc-port", str(self.grpc),
             "--metrics-port", str(self.metrics), "--log-level", "info"]
        if self.app is not None:
            a += ["--app-port", str(self.app), "--app-protocol", self.protocol]
        if self.max_body_mb is not None:
            # The name both accept (daprd marks it deprecated in favour of --max-body-size).
            a += ["--dapr-http-max-request-size", str(self.max_body_mb)]
        if self.kind == "daprd":
            a = ["--mode", "standalone", "--dapr-listen-addresses", "127.0.0.1",
                 "--dapr-internal-grpc-port", str(self.internal),
                 "--placement-host-address", "", "--scheduler-host-address", ""] + a
            return [self.binary] + a
        if self.app_timeout is not None:
            # daprd gets the same timeout from the Resiliency resource in the components folder.
            a += ["--app-request-timeout", self.app_timeout]
        return [self.binary, "sidecar"] + a

    def start(self):
        last = None
        for attempt in range(4):
            self.http, self.grpc, self.metrics, self.internal = (free_port() for _ in range(4))
            self.log_path = os.path.join(self.logdir, f"{self.kind}-{self.name}-{attempt}.log")
            env = dict(os.environ)
            env.pop("DAPR_API_TOKEN", None)
            env.pop("APP_API_TOKEN", None)
            env.update(self.env)
            self.logf = open(self.log_path, "wb")
            self.proc = subprocess.Popen(self.argv(), stdout=self.logf, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
            ok = poll(lambda: True if self._outbound_ready() else (False if self.proc.poll() is not None else None), 60)
            if ok:
                return
            last = open(self.log_path, errors="replace").read()[-3000:]
            self.stop()
            if "address already in use" not in last.lower() and "bind" not in last.lower():
                break
        raise RuntimeError(f"{self.kind} did not start:\n{last}")

    def _outbound_ready(self):
        try:
            c = http.client.HTTPConnection("127.0.0.1", self.http, timeout=2)
            c.request("GET", "/v1.0/healthz/outbound")
            return c.getresponse().status == 204
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        if self.proc:
            self.logf.close()

    def version(self):
        # daprd prints "1.18.2", outrigger "outrigger 0.1.0"
        return subprocess.run([self.binary, "--version"], capture_output=True, text=True).stdout.strip()


# --------------------------------------------------------------------------- observation


class Ctx:
    """Everything a case needs: the sidecar, the app, Kafka and the run's names."""

    def __init__(self, kafka, sidecar, app, names, group):
        self.kafka, self.sidecar, self.app, self.names, self.group = kafka, sidecar, app, names, group

    def topic(self, sym):
        return self.names["topic:" + sym]


def http_call(ctx, req):
    body = req.body_bytes()
    headers = dict(req.headers)
    if body is not None and "Content-Type" not in headers:
        headers["Content-Type"] = "application/json"
    c = http.client.HTTPConnection("127.0.0.1", ctx.sidecar.http, timeout=15)
    try:
        c.request(req.method, req.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
    except (OSError, http.client.HTTPException) as e:
        return {"error": type(e).__name__}
    finally:
        c.close()
    out = {"status": r.status, "headers": sorted([[k.lower(), v] for k, v in r.getheaders()])}
    try:
        out["json"] = json.loads(data) if data else None
        if not data:
            out["body"] = ""
    except ValueError:
        out["body"] = show(data)
    return out


def grpc_call(ctx, call):
    ch = grpc.insecure_channel(f"127.0.0.1:{ctx.sidecar.grpc}",
                               options=[("grpc.max_send_message_length", 64 << 20),
                                        ("grpc.max_receive_message_length", 64 << 20)])
    try:
        if call.raw_method:
            fn = ch.unary_unary(call.raw_method, request_serializer=lambda b: b, response_deserializer=lambda b: b)
            req, resp_cls = call.raw_request or b"", None
        else:
            m = DAPR_SERVICE.methods_by_name[call.method]
            req_cls = message_factory.GetMessageClass(m.input_type)
            resp_cls = message_factory.GetMessageClass(m.output_type)
            fn = ch.unary_unary(f"/dapr.proto.runtime.v1.Dapr/{call.method}",
                                request_serializer=lambda x: x.SerializeToString(),
                                response_deserializer=resp_cls.FromString)
            req = req_cls(**call.request)
        try:
            resp, c = fn.with_call(req, metadata=call.call_metadata or None, timeout=15)
            out = {"code": "OK", "details": None, "initial_metadata": md_list(c.initial_metadata()),
                   "trailing_metadata": md_list(c.trailing_metadata())}
            if resp_cls is not None:
                out["response"] = json_format.MessageToDict(resp, preserving_proto_field_name=True)
            else:
                out["response_bytes"] = show(resp)
        except grpc.RpcError as e:
            out = {"code": e.code().name, "details": e.details(),
                   "initial_metadata": md_list(e.initial_metadata() or ()),
                   "trailing_metadata": md_list(e.trailing_metadata() or ())}
        return out
    finally:
        ch.close()


def md_list(md):
    out = []
    for k, v in md:
        if k == "grpc-status-details-bin":
            st = status_pb2.Status.FromString(v)
            try:
                v = json_format.MessageToDict(st)
            except Exception:  # an Any of a type we do not know
                v = {"code": st.code, "message": st.message, "details": [d.type_url for d in st.details]}
        else:
            v = show(v)
        out.append([k, v])
    return sorted(out, key=lambda kv: (kv[0], json.dumps(kv[1])))


def with_records(ctx, sym, action, exact=False):
    """Runs action() and returns (its observation, the records it wrote to topic sym)."""
    topic = ctx.topic(sym)
    before = ctx.kafka.high_marks(topic)
    obs = action()
    after = ctx.kafka.high_marks(topic)
    return obs, ctx.kafka.read(topic, before, end=after, exact=exact)


def run_case(case, ctx):
    k = case.kind
    if k == "http":
        if case.records:
            obs, recs = with_records(ctx, case.records, lambda: http_call(ctx, case.http),
                                     exact=getattr(case, "exact_partition", False))
            obs["records"] = recs
        else:
            obs = http_call(ctx, case.http)
        return obs
    if k == "grpc":
        if case.records:
            obs, recs = with_records(ctx, case.records, lambda: grpc_call(ctx, case.grpc),
                                     exact=getattr(case, "exact_partition", False))
            obs["records"] = recs
        else:
            obs = grpc_call(ctx, case.grpc)
        return obs
    if k == "keys":
        return keys_case(case, ctx)
    if k == "sequence":
        return {"steps": [run_case(s, ctx) for s in case.steps]}
    if k == "probe":
        return probe_case(case, ctx)
    if k == "input":
        return input_case(case, ctx)
    if k == "cron":
        return cron_case(case, ctx)
    if k == "unserved":
        return unserved_case(case, ctx)
    if k == "shutdown":
        return shutdown_case(case, ctx)
    raise ValueError(k)


def keys_case(case, ctx):
    topic = ctx.topic(case.records)
    before = ctx.kafka.high_marks(topic)
    answers = []
    for key in C.FIXED_KEYS:
        if case.transport == "http":
            o = http_call(ctx, C.Http("POST", f"/v1.0/bindings/{case.binding}",
                                      json={"data": {"k": key}, "operation": "create",
                                            "metadata": {case.key_field: key}}))
            answers.append(o["status"])
        else:
            o = grpc_call(ctx, C.Grpc("InvokeBinding", name=case.binding, operation="create",
                                      data=json.dumps({"k": key}).encode(), metadata={case.key_field: key}))
            answers.append(o["code"])
    after = ctx.kafka.high_marks(topic)
    recs = ctx.kafka.read(topic, before, end=after)
    return {"answers": sorted(set(map(str, answers))),
            "partition_by_key": {r["key"]: r["record_partition"] for r in recs if isinstance(r["key"], str)},
            "records": len(recs)}


def app_event_view(ev):
    v = {k: ev[k] for k in ev if k not in ("seq", "raw_body", "route")}
    return v


def probe_case(case, ctx):
    evs = [e for e in ctx.app.state.snapshot()
           if e.get("method") in ("OPTIONS", "ListInputBindings") or e.get("unknown")]
    seen, out = set(), []
    for e in evs:
        key = (e.get("method"), e.get("path"))
        if key in seen:
            continue  # a sidecar may ask more than once; the first ask of each kind is observed
        seen.add(key)
        out.append(app_event_view(e))
    return {"calls": sorted(out, key=lambda e: (e.get("method"), e.get("path") or ""))}


def deliveries(ctx, route):
    return [e for e in ctx.app.state.snapshot()
            if e.get("route") == route and e.get("method") in ("POST", "OnBindingEvent")]


def input_case(case, ctx):
    """Produces the case's records to its binding's topic and waits until the
    last one was delivered or one was delivered twice (a retry); then observes
    the deliveries, the committed offset of the binding's group and, for a reply
    with `to`, the record written."""
    topic, group = ctx.topic(case.binding), ctx.names["group:" + case.binding]
    ctx.kafka.produce(topic, case.produce)
    last = unshow(case.produce[-1].get("value")) or b""

    def done():
        # The last record arrived, or as many deliveries as records were produced
        # (a redelivery counts; a body the sidecar rewrote, e.g. a tombstone, too).
        ds = deliveries(ctx, case.binding)
        bodies = [d["raw_body"] or b"" for d in ds]
        if last in bodies or len(bodies) >= len(case.produce):
            return ds
        return None

    ds = poll(done, 25)
    obs = {"delivered": ds is not None}
    ds = deliveries(ctx, case.binding)
    produced = [unshow(p.get("value")) or b"" for p in case.produce]
    # Which produced record each delivery was, in the order the app saw them.
    obs["sequence"] = [produced.index(d["raw_body"] or b"") if (d["raw_body"] or b"") in produced else "?"
                       for d in ds][:6]
    obs["retried"] = any(obs["sequence"].count(i) >= 2 for i in range(len(produced)))
    obs["first_delivery"] = [app_event_view(d) for d in ds[:1]]
    if len(case.produce) > 1:
        obs["deliveries"] = [app_event_view(d) for d in ds[:len(case.produce)]]
    want = {"0": len(case.produce)}
    # An offset is committed asynchronously (daprd: every second): wait for the
    # commit of everything, and record what is committed when that does not come.
    got = poll(lambda: (lambda c: c if c == want else None)(ctx.kafka.committed(group, topic)), 8, interval=0.2)
    obs["committed"] = got if got is not None else ctx.kafka.committed(group, topic)
    if case.records:
        t = ctx.topic(case.records)
        obs["records"] = ctx.kafka.read(t, {}, count=1, timeout=10)
    return obs


def cron_case(case, ctx):
    ds = poll(lambda: deliveries(ctx, case.binding) or None, 15)
    return {"first_delivery": [app_event_view(d) for d in (ds or [])[:1]]}


def unserved_case(case, ctx):
    """A binding the app said it does not serve: records produced at the start of
    the group must not have been delivered by the time the group's other cases ran."""
    topic, group = ctx.topic(case.binding), ctx.names["group:" + case.binding]
    return {"deliveries": [app_event_view(d) for d in deliveries(ctx, case.binding)],
            "committed": ctx.kafka.committed(group, topic)}


def shutdown_case(case, ctx):
    if case.transport == "http":
        obs = http_call(ctx, C.Http("POST", "/v1.0/shutdown"))
    else:
        obs = grpc_call(ctx, C.Grpc("Shutdown"))
    code = poll(lambda: ctx.sidecar.proc.poll(), 20)
    obs["exited"] = code is not None
    obs["exit_code"] = code
    return obs


# --------------------------------------------------------------------------- normalisation

TRACEPARENT = re.compile(r"^([0-9a-f]{2})-[0-9a-f]{32}-[0-9a-f]{16}-([0-9a-f]{2})$")
VOLATILE = {
    # name (lower case) -> placeholder; a header/metadata entry of that name gets it
    "date": "<date>",
    "__timestamp": "<timestamp>",
    "readtimeutc": "<time>",
    "metadata.offset": "<offset>",
    # a keyless record's partition is random; a keyed one's is compared on the record itself
    "metadata.partition": "<partition>",
    "partition": "<partition>",
    "offset": "<offset>",
    "grpc-timeout": "<timeout>",
    "grpc-trace-bin": "<trace>",
    "tracestate": "<tracestate>",
}


def normalise(obj, subst):
    """Replaces what must vary between runs: random names and ports (subst), and
    values of the entries in VOLATILE, traceparent ids."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            k2 = normalise(k, subst) if isinstance(k, str) else k
            out[k2] = volatile(k, v) if isinstance(k, str) and k.lower() in VOLATILE else normalise(v, subst)
            if isinstance(k, str) and k.lower() == "traceparent" and isinstance(v, str):
                out[k2] = trace_shape(v)
            if isinstance(k, str) and k.lower() in ("port",) and isinstance(v, int) and v in subst["ports"]:
                out[k2] = subst["ports"][v]
        return out
    if isinstance(obj, list):
        # [name, value] pairs (headers, metadata) get the same treatment as dict entries.
        if len(obj) == 2 and isinstance(obj[0], str) and not isinstance(obj[1], (list,)):
            name = obj[0].lower()
            if name in VOLATILE:
                return [normalise(obj[0], subst), volatile(name, obj[1])]
            if name == "traceparent" and isinstance(obj[1], str):
                return [obj[0], trace_shape(obj[1])]
        return [normalise(v, subst) for v in obj]
    if isinstance(obj, str):
        for a, b in subst["strings"]:
            obj = obj.replace(a, b)
        return obj
    return obj


def volatile(name, v):
    return None if v is None else VOLATILE[name.lower()]


def trace_shape(v):
    """Version and flags kept; trace and span ids kept when they are the ones the
    cases send (C.SENT_TRACE_IDS: shows whether a trace is continued), else
    placeholders."""
    m = TRACEPARENT.match(v)
    if not m:
        return v
    _, trace, span, _ = v.split("-")
    trace = trace if trace in C.SENT_TRACE_IDS else "<trace-id>"
    span = span if span in C.SENT_TRACE_IDS else "<span-id>"
    return f"{m.group(1)}-{trace}-{span}-{m.group(2)}"


# --------------------------------------------------------------------------- comparison

IGNORED_RESPONSE_HEADERS = {"date", "server", "content-length", "connection", "keep-alive", "transfer-encoding",
                            "traceparent", "tracestate"}
IGNORED_APP_HEADERS = {"user-agent", "accept-encoding", "content-length", "connection", "host", "transfer-encoding"}
IGNORED_GRPC_METADATA = {"content-type", "date", "grpc-accept-encoding", "accept-encoding", "user-agent", "te",
                         "grpc-status", "grpc-message", "server", ":authority", "traceparent", "tracestate",
                         "grpc-trace-bin"}
IGNORED_APP_GRPC_METADATA = {"content-type", "grpc-accept-encoding", "accept-encoding", "user-agent", "te",
                             ":authority"}
SET_LIKE = {"enabledFeatures", "enabled_features", "components", "registered_components", "capabilities"}
PARSER_DETAIL = re.compile(r"^(failed deserializing HTTP body): .*$", re.S)


def view(obs):
    """The part of an observation that is compared (see README.md)."""
    if isinstance(obs, dict) and "check" in obs and str(obs.get("check", "")).endswith("httpapp"):
        # scripts/sdk-check.sh: the HTTP request headers the Go app got, same rule as for our app
        o = dict(obs)
        o["observed"] = dict(o.get("observed") or {})
        md = o["observed"].get("metadata")
        if isinstance(md, dict):
            o["observed"]["metadata"] = {k: v for k, v in md.items() if k.lower() not in IGNORED_APP_HEADERS}
        obs = o
    if isinstance(obs, dict):
        out = {}
        for k, v in obs.items():
            if k == "headers" and isinstance(v, list):
                ignored = IGNORED_APP_HEADERS if obs.get("transport") == "http" else IGNORED_RESPONSE_HEADERS
                if "status" in obs or obs.get("transport") == "http":
                    v = [[n.lower(), val] for n, val in v if n.lower() not in ignored]
                    out[k] = sorted(v, key=lambda kv: (kv[0], json.dumps(kv[1])))
                    continue
            if k in ("initial_metadata", "trailing_metadata"):
                out[k] = [kv for kv in v if kv[0] not in IGNORED_GRPC_METADATA]
                continue
            if k == "metadata" and obs.get("transport") == "grpc":
                out[k] = [kv for kv in v if kv[0] not in IGNORED_APP_GRPC_METADATA]
                continue
            if k in ("message", "details") and isinstance(v, str):
                v = PARSER_DETAIL.sub(r"\1: <parser detail>", v)
            if k == "runtimeVersion" or k == "runtime_version":
                v = "<version>"
            if k in SET_LIKE and isinstance(v, list):
                # sets in daprd's metadata (built from Go maps: random order)
                out[k] = sorted((view(x) for x in v), key=lambda x: json.dumps(x, sort_keys=True))
                continue
            out[k] = view(v)
        return out
    if isinstance(obs, list):
        return [view(v) for v in obs]
    return obs


def diff(a, b, path=""):
    """Differences between two views, as (path, golden, actual) triples."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b), key=str):
            if k not in a:
                out.append((f"{path}/{k}", "<absent>", b[k]))
            elif k not in b:
                out.append((f"{path}/{k}", a[k], "<absent>"))
            else:
                out += diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out = []
        for i, (x, y) in enumerate(zip(a, b)):
            out += diff(x, y, f"{path}[{i}]")
        return out
    return [] if a == b else [(path or "/", a, b)]


def read_compat(path):
    """Deliberate differences: table rows of COMPAT.md whose first cell is a
    back-quoted case id. Back-quoted paths (starting with /) in the second cell
    are the parts of the observation allowed to differ (a path and everything
    under it); a row without paths allows the whole case to differ.
    Returns {case id: (text, [paths])}."""
    ids = {}
    if not os.path.exists(path):
        return ids
    for line in open(path):
        m = re.match(r"^\|\s*`([^`]+)`\s*\|([^|]*)\|(.*)\|\s*$", line)
        if m:
            paths = [p for p in re.findall(r"`([^`]+)`", m.group(2)) if p.startswith("/")]
            ids[m.group(1)] = ((m.group(2) + "|" + m.group(3)).strip(), paths)
    return ids


def covered(path, allowed):
    return any(path == a or path.startswith(a + "/") or path.startswith(a + "[") for a in allowed)


# --------------------------------------------------------------------------- groups


def write_components(group, names, bootstrap, dirpath):
    docs = []
    for comp in group.components:
        docs.append(comp.yaml(names, bootstrap))
    with open(os.path.join(dirpath, "components.yaml"), "w") as f:
        f.write("\n---\n".join(docs))
    if group.app_timeout:
        targets = "".join(f"      {c.name}:\n        inbound:\n          timeout: app\n"
                          for c in group.components if c.input and c.timeout)
        # A file of its own: daprd reads one document per resiliency file.
        with open(os.path.join(dirpath, "resiliency.yaml"), "w") as f:
            f.write("apiVersion: dapr.io/v1alpha1\nkind: Resiliency\nmetadata:\n  name: conformance-timeouts\n"
                    f"spec:\n  policies:\n    timeouts:\n      app: {group.app_timeout}\n"
                    f"  targets:\n    components:\n{targets}")


def run_group(group, args, kafka, run_id, logdir):
    names = {}
    for sym in group.topics:
        names["topic:" + sym] = f"conf-{run_id}-{group.name}-{sym}"
    for comp in group.components:
        if comp.input:
            names["group:" + comp.name] = f"conf-{run_id}-{group.name}-{comp.name}"
    kafka.create_topics({names["topic:" + s]: p for s, p in group.topics.items()})
    resources = tempfile.mkdtemp(prefix=f"conf-{group.name}-", dir=logdir)
    write_components(group, names, kafka.bootstrap, resources)
    app = None
    if group.app == "http":
        app = HttpApp(group.routes)
    elif group.app == "grpc":
        app = GrpcApp(group.routes, [c.name for c in group.components if c.input and c.listed])
    for pre in group.preproduce:
        kafka.produce(names["topic:" + pre[0]], pre[1])
    sc = Sidecar(args.sidecar, args.bin, resources, logdir, group.name, app=app.port if app else None,
                 protocol=group.app or "http", env=group.env, max_body_mb=group.max_body_mb,
                 app_timeout=group.app_timeout)
    results = {}
    t0 = time.monotonic()
    try:
        sc.start()
        subst = {"strings": sorted([(v, f"<{k}>") for k, v in names.items()], key=lambda kv: -len(kv[0])),
                 "ports": {}}
        ports = {"http": sc.http, "grpc": sc.grpc, "metrics": sc.metrics, "internal": sc.internal}
        if app:
            ports["app"] = app.port
        for n, p in ports.items():
            subst["ports"][p] = f"<port:{n}>"
            subst["strings"].append((f":{p}", f":<port:{n}>"))
        subst["strings"].append((resources, "<resources>"))
        subst["strings"].insert(0, (kafka.bootstrap, "<kafka>"))
        ctx = Ctx(kafka, sc, app, names, group)
        if app is not None:
            # Ready for events once the app was asked about every binding it lists.
            served = [c for c in group.components if c.input and c.probed]
            if group.app == "http":
                wait_for("the sidecar to ask the app (OPTIONS)", 60, lambda: True if all(
                    any(e.get("method") == "OPTIONS" and e.get("route") == c.route for e in app.state.snapshot())
                    for c in served) else None)
            else:
                wait_for("the sidecar to ask the app (ListInputBindings)", 60, lambda: True if any(
                    e.get("method") == "ListInputBindings" for e in app.state.snapshot()) else None)

        def one(case):
            if args.only and not re.search(args.only, case.id):
                return
            t = time.monotonic()
            try:
                obs = run_case(case, ctx)
            except Exception as e:  # recorded: a case that cannot run is an observation too
                obs = {"runner_error": f"{type(e).__name__}: {e}"}
            results[case.id] = {"group": group.name, "doc": case.doc, "observed": normalise(strip_raw(obs), subst)}
            log(f"  {case.id}: {time.monotonic() - t:.1f}s")

        serial = [c for c in group.cases if not c.parallel and not c.last]
        parallel = [c for c in group.cases if c.parallel]
        for c in serial:
            one(c)
        if parallel:
            with concurrent.futures.ThreadPoolExecutor(max_workers=len(parallel)) as ex:
                list(ex.map(one, parallel))
        for c in [c for c in group.cases if c.last]:
            one(c)
    finally:
        sc.stop()
        if app:
            app.stop()
    log(f"group {group.name}: {time.monotonic() - t0:.1f}s ({sc.log_path})")
    return results


def strip_raw(obj):
    if isinstance(obj, dict):
        return {k: strip_raw(v) for k, v in obj.items() if k != "raw_body"}
    if isinstance(obj, list):
        return [strip_raw(v) for v in obj]
    return obj


def sdk_check(args, kafka):
    """scripts/sdk-check.sh (the Go and Java SDK programs, against a sidecar it
    starts itself): one case per line it prints, `sdk.<check>`."""
    script = os.path.join(ROOT, "scripts", "sdk-check.sh")
    if not os.path.exists(script):
        return {}
    env = dict(os.environ)
    if args.sidecar == "outrigger":
        env["OUTRIGGER_BIN"] = args.bin
    t = time.monotonic()
    p = subprocess.run(["bash", script, "run", "--sidecar", args.sidecar, "--brokers", kafka.bootstrap],
                       capture_output=True, text=True, env=env, timeout=900)
    out = {}
    for line in p.stdout.splitlines():
        try:
            r = json.loads(line)
        except ValueError:
            continue
        r.pop("sidecar", None)  # names the sidecar it ran against
        out[f"sdk.{r.get('check')}"] = {"group": "sdk", "doc": "scripts/sdk-check.sh run",
                                        "observed": normalise(r, {"strings": [(kafka.bootstrap, "<kafka>")],
                                                                  "ports": {}})}
    if p.returncode != 0 or not out:
        out["sdk.run"] = {"group": "sdk", "doc": "scripts/sdk-check.sh run exits 0",
                          "observed": {"exit_code": p.returncode}, "stderr_tail": p.stderr[-2000:]}
    log(f"sdk-check: {len(out)} checks in {time.monotonic() - t:.1f}s")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sidecar", choices=["daprd", "outrigger"], default="outrigger")
    ap.add_argument("--bin", help="the sidecar binary (default .tools/bin/daprd or target/debug/outrigger)")
    ap.add_argument("--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP"), help="Kafka bootstrap (env KAFKA_BOOTSTRAP)")
    ap.add_argument("--golden", default=os.path.join(HERE, "golden.json"))
    ap.add_argument("--compat", default=os.path.join(ROOT, "COMPAT.md"))
    ap.add_argument("--record", action="store_true", help="write the golden file instead of comparing")
    ap.add_argument("--out", help="also write this run's observations here")
    ap.add_argument("--only", help="regex: run only the matching case ids")
    ap.add_argument("--keep-logs", action="store_true", help="keep the sidecar logs even when the run passes")
    ap.add_argument("--no-sdk", action="store_true", help="skip scripts/sdk-check.sh")
    args = ap.parse_args()
    if not args.bin:
        args.bin = os.path.join(ROOT, ".tools/bin/daprd" if args.sidecar == "daprd" else "target/debug/outrigger")
    if not args.bootstrap:
        ap.error("no Kafka: pass --bootstrap or set KAFKA_BOOTSTRAP (scripts/conformance.sh starts one)")
    t0 = time.monotonic()
    run_id = uuid.uuid4().hex[:8]
    logdir = tempfile.mkdtemp(prefix="conformance-")
    kafka = Kafka(args.bootstrap)
    results = {}
    ids = [c.id for g in C.GROUPS for c in g.cases]
    dupes = {i for i in ids if ids.count(i) > 1}
    assert not dupes, f"duplicate case ids: {dupes}"
    for g in C.GROUPS:
        if args.only and not any(re.search(args.only, c.id) for c in g.cases):
            continue
        log(f"group {g.name} ({len(g.cases)} cases)")
        results.update(run_group(g, args, kafka, run_id, logdir))
    if not args.no_sdk and not args.only:
        results.update(sdk_check(args, kafka))
    version = Sidecar(args.sidecar, args.bin, "", logdir, "v").version()
    elapsed = time.monotonic() - t0
    doc = {"sidecar": args.sidecar, "version": version,
           "recorded": datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0).isoformat(),
           "seconds": round(elapsed, 1), "cases": results}
    if args.out:
        with open(args.out, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True, ensure_ascii=False)
    if args.record:
        with open(args.golden, "w") as f:
            json.dump(doc, f, indent=1, sort_keys=True, ensure_ascii=False)
            f.write("\n")
        broken = [c for c, r in results.items() if "runner_error" in r["observed"]]
        if broken:
            log(f"cases that could not run (recorded all the same): {', '.join(broken)}")
        log(f"recorded {len(results)} cases of {args.sidecar} {version} in {elapsed:.0f}s to {args.golden}; "
            f"logs in {logdir}")
        return 0
    return compare(doc, args, logdir, elapsed)


def compare(doc, args, logdir, elapsed):
    golden = json.load(open(args.golden))
    compat = read_compat(args.compat)
    failed, deliberate, fixed, missing = [], [], [], []
    for cid, g in sorted(golden["cases"].items()):
        if cid not in doc["cases"]:
            if not args.only and not (cid.startswith("sdk.") and args.no_sdk):
                missing.append(cid)
            continue
        d = diff(view(g["observed"]), view(doc["cases"][cid]["observed"]))
        if not d:
            if cid in compat:
                fixed.append(cid)
            continue
        if cid in compat:
            allowed = compat[cid][1]
            rest = [x for x in d if allowed and not covered(x[0], allowed)]
            deliberate.append((cid, [x for x in d if x not in rest]))
            if rest:
                failed.append((cid, rest))
            continue
        failed.append((cid, d))
    # A case that could not run proves nothing, even when the golden run failed the same way.
    for cid, c in sorted(doc["cases"].items()):
        if "runner_error" in c["observed"] and not any(f[0] == cid for f in failed):
            failed.append((cid, [("/runner_error", golden["cases"].get(cid, {}).get("observed", {}).get(
                "runner_error", "<none>"), c["observed"]["runner_error"])]))
    for cid in sorted(set(doc["cases"]) - set(golden["cases"])):
        failed.append((cid, [("/", "<not in the golden file>", "<new case>")]))
    gv = f"{golden.get('sidecar')} {golden.get('version')} ({golden.get('recorded')})"
    print(f"golden: {gv}; this run: {doc['sidecar']} {doc['version']}, {len(doc['cases'])} cases in {elapsed:.0f}s")
    for cid, d in deliberate:
        print(f"DELIBERATE {cid}: {compat[cid][0][:150]}")
    for cid in fixed:
        print(f"NOTE {cid}: listed in COMPAT.md but now answers as daprd does")
    for cid in missing:
        print(f"MISSING {cid}: in the golden file, not run")
    for cid, d in failed:
        print(f"DIFF {cid}:")
        for path, a, b in d:
            print(f"    {path}\n      daprd:     {json.dumps(a, ensure_ascii=False)[:600]}\n"
                  f"      {doc['sidecar']}: {json.dumps(b, ensure_ascii=False)[:600]}")
    n = len(doc["cases"])
    bad = {c for c, _ in failed}
    ok_deliberate = {c for c, _ in deliberate} - bad
    print(f"conformance: {n - len(bad) - len(ok_deliberate)} passed, {len(bad)} failed, "
          f"{len(ok_deliberate)} deliberate differences; logs in {logdir}")
    if failed or missing:
        return 1
    if not args.keep_logs:
        shutil.rmtree(logdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
