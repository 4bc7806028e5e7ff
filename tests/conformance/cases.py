"""The conformance cases, grouped by the sidecar start they share (same
components, flags and app). A case id names transport, area and what is tried;
COMPAT.md refers to these ids. Topic and group names here are symbols: the
runner gives them random names per run (see run.py, README.md)."""
import json

# Keys whose partition on a 3-partition topic is observed (fixed, so that both
# sidecars are asked the same).
FIXED_KEYS = [f"key-{i}" for i in range(20)]

TOKEN = "conformance-token"

# The traceparent the cases send (output calls and input records); their ids are
# kept by normalisation, so that continuing the caller's trace shows.
TP_OUT = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
TP_IN = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
SENT_TRACE_IDS = {p for tp in (TP_OUT, TP_IN) for p in tp.split("-")[1:3]}


class Http:
    def __init__(self, method, path, json=None, raw=None, headers=None):
        self.method, self.path, self.json_body, self.raw, self.headers = method, path, json, raw, headers or {}

    def body_bytes(self):
        if self.raw is not None:
            return self.raw if isinstance(self.raw, bytes) else self.raw.encode()
        if self.json_body is not None:
            return json.dumps(self.json_body).encode()
        return None




class Grpc:
    def __init__(self, method, call_metadata=None, raw_method=None, raw_request=None, **request):
        # call_metadata: gRPC call metadata (headers); request: the request message's fields.
        self.method, self.call_metadata, self.request = method, call_metadata, request
        self.raw_method, self.raw_request = raw_method, raw_request


class Route:
    """How the app answers for one route / binding name."""

    def __init__(self, status=200, options=200, hang=False, reply=None, unless=None):
        # unless: a body containing this text is answered 200 (the marker record
        # that follows a refused one).
        self.status, self.options, self.hang, self.reply, self.unless = status, options, hang, reply, unless


class Case:
    def __init__(self, id, doc, kind, http=None, grpc=None, records=None, parallel=False, last=False, **kw):
        self.id, self.doc, self.kind = id, doc, kind
        self.http, self.grpc, self.records = http, grpc, records
        self.parallel, self.last = parallel, last
        self.__dict__.update(kw)


class Component:
    def __init__(self, name, type="bindings.kafka", input=False, listed=True, probed=True, route=None, timeout=True,
                 **meta):
        # timeout: daprd gets the group's app timeout for this binding (a Resiliency target)
        self.name, self.type, self.input, self.listed, self.probed = name, type, input, listed, probed
        self.timeout = timeout
        self.route = route or name
        self.meta = meta
        if route:
            self.meta["route"] = route

    def yaml(self, names, bootstrap):
        lines = ["apiVersion: dapr.io/v1alpha1", "kind: Component", "metadata:", f"  name: {self.name}",
                 "spec:", f"  type: {self.type}", "  version: v1", "  metadata:"]
        meta = dict(self.meta)
        if self.type == "bindings.kafka":
            meta.setdefault("brokers", bootstrap)
            meta.setdefault("authType", "none")
            if self.input:
                meta.setdefault("topics", "$T:" + self.name)
                meta.setdefault("consumerGroup", "$G:" + self.name)
                meta.setdefault("initialOffset", "oldest")
        for k, v in meta.items():
            # "$T:sym" / "$G:sym": the run's random topic / consumer group name for sym.
            if isinstance(v, str) and v.startswith("$G:"):
                v = names["group:" + v[3:]]
            elif isinstance(v, str) and v.startswith("$T:"):
                v = names["topic:" + v[3:]]
            lines += [f"    - name: {k}", f"      value: {json.dumps(v)}"]
        return "\n".join(lines) + "\n"


class Group:
    def __init__(self, name, components, cases, topics=None, app=None, routes=None, env=None, max_body_mb=None,
                 app_timeout=None, preproduce=()):
        self.name, self.components, self.cases = name, components, cases
        self.topics = topics or {}
        self.app, self.routes, self.env = app, routes or {}, env or {}
        self.max_body_mb, self.app_timeout = max_body_mb, app_timeout
        self.preproduce = list(preproduce)


def post(path, body=None, raw=None, headers=None):
    return Http("POST", path, json=body, raw=raw, headers=headers)


B = "/v1.0/bindings/out"


def out_http(id, doc, body=None, raw=None, headers=None, path=B, method="POST"):
    meta = body.get("metadata") if isinstance(body, dict) else None
    return Case(id, doc, "http", http=Http(method, path, json=body, raw=raw, headers=headers), records="out3",
                exact_partition=isinstance(meta, dict) and "partitionNumber" in meta)


def out_grpc(id, doc, **req):
    req.setdefault("name", "out")
    return Case(id, doc, "grpc", grpc=Grpc("InvokeBinding", **req), records="out3",
                exact_partition="partitionNumber" in (req.get("metadata") or {}))


def call(id, doc, method, path, **kw):
    return Case(id, doc, "http", http=Http(method, path, **kw))


def rpc(case_id, doc, method, **req):
    return Case(case_id, doc, "grpc", grpc=Grpc(method, **req))


# --------------------------------------------------------------------------- output

OUTPUT_HTTP = [
    out_http("http.out.data.object", "data is a JSON object", {"data": {"orderId": 1, "note": "x"}, "operation": "create"}),
    out_http("http.out.data.object_key_order", "object keys not in sorted order",
             raw='{"data":{"b":1,"a":2},"operation":"create"}'),
    out_http("http.out.data.string", "data is a JSON string", {"data": "hello", "operation": "create"}),
    out_http("http.out.data.string_escapes", "a string with <, >, & and non-ASCII",
             {"data": "<a&b> caf\u00e9 \u2713", "operation": "create"}),
    out_http("http.out.data.number", "data is an integer", {"data": 42, "operation": "create"}),
    out_http("http.out.data.float_text", "number text 1.50 and 1e3", raw='{"data":[1.50,1e3],"operation":"create"}'),
    out_http("http.out.data.big_int", "an integer beyond 2^53", raw='{"data":12345678901234567890,"operation":"create"}'),
    out_http("http.out.data.bool", "data is true", {"data": True, "operation": "create"}),
    out_http("http.out.data.null", "data is null", {"data": None, "operation": "create"}),
    out_http("http.out.data.missing", "no data field", {"operation": "create"}),
    out_http("http.out.data.array", "data is an array", {"data": [1, "two", None], "operation": "create"}),
    out_http("http.out.data.empty_string", "data is an empty string", {"data": "", "operation": "create"}),
    out_http("http.out.meta.partitionKey", "metadata partitionKey",
             {"data": {"a": 1}, "operation": "create", "metadata": {"partitionKey": "pk-1"}}),
    out_http("http.out.meta.__key", "metadata __key", {"data": {"a": 1}, "operation": "create", "metadata": {"__key": "uk-1"}}),
    out_http("http.out.meta.key", "metadata key", {"data": {"a": 1}, "operation": "create", "metadata": {"key": "k-1"}}),
    out_http("http.out.meta.both_keys", "partitionKey and key together",
             {"data": 1, "operation": "create", "metadata": {"partitionKey": "pk-2", "key": "k-2"}}),
    out_http("http.out.meta.other", "other metadata entries",
             {"data": 1, "operation": "create", "metadata": {"h1": "v1", "Mixed-Case": "V2", "empty": ""}}),
    out_http("http.out.meta.empty_key", "partitionKey is an empty string",
             {"data": 1, "operation": "create", "metadata": {"partitionKey": ""}}),
    out_http("http.out.meta.partitionNumber", "metadata partitionNumber 2",
             {"data": 1, "operation": "create", "metadata": {"partitionNumber": "2"}}),
    out_http("http.out.meta.partitionNumber_bad", "metadata partitionNumber that is not a number",
             {"data": 1, "operation": "create", "metadata": {"partitionNumber": "two"}}),
    out_http("http.out.meta.partitionNumber_range", "metadata partitionNumber beyond the topic's partitions",
             {"data": 1, "operation": "create", "metadata": {"partitionNumber": "7"}}),
    out_http("http.out.meta.non_string", "a metadata value that is a number",
             {"data": 1, "operation": "create", "metadata": {"n": 1}}),
    out_http("http.out.meta.bool_value", "a metadata value that is a boolean",
             {"data": 1, "operation": "create", "metadata": {"b": True}}),
    out_http("http.out.meta.not_object", "metadata is a string", {"data": 1, "operation": "create", "metadata": "x"}),
    out_http("http.out.meta.null", "metadata is null", {"data": 1, "operation": "create", "metadata": None}),
    out_http("http.out.op.missing", "no operation", {"data": 1}),
    out_http("http.out.op.empty", "operation is an empty string", {"data": 1, "operation": ""}),
    out_http("http.out.op.not_string", "operation is a number", {"data": 1, "operation": 1}),
    out_http("http.out.op.get", "operation get", {"data": 1, "operation": "get"}),
    out_http("http.out.op.delete", "operation delete", {"data": 1, "operation": "delete"}),
    out_http("http.out.op.upper", "operation CREATE (case)", {"data": 1, "operation": "CREATE"}),
    out_http("http.out.body.bad_json", "body is not JSON", raw='{"data": '),
    out_http("http.out.body.array", "body is a JSON array", raw="[1,2]"),
    out_http("http.out.body.string", "body is a JSON string", raw='"create"'),
    out_http("http.out.body.empty", "empty body", raw=""),
    out_http("http.out.body.unknown_field", "an unknown top-level field", {"data": 1, "operation": "create", "extra": 1}),
    out_http("http.out.body.too_large", "body over the 1 MB limit",
             raw=json.dumps({"data": "x" * (1 << 20) + "y" * 1000, "operation": "create"})),
    out_http("http.out.body.text_content_type", "JSON body sent as text/plain",
             raw='{"data":"t","operation":"create"}', headers={"Content-Type": "text/plain"}),
    out_http("http.out.method.put", "PUT instead of POST", {"data": "put", "operation": "create"}, method="PUT"),
    out_http("http.out.method.get", "GET on a binding", method="GET"),
    out_http("http.out.unknown_binding", "a binding that does not exist", {"data": 1, "operation": "create"},
             path="/v1.0/bindings/nope"),
    out_http("http.out.input_only_binding", "invoke a binding that is input only", {"data": 1, "operation": "create"},
             path="/v1.0/bindings/in-only"),
    out_http("http.out.traceparent", "a traceparent header on the call",
             {"data": 1, "operation": "create"},
             headers={"traceparent": TP_OUT}),
    out_http("http.out.custom_header", "a custom HTTP header on the call", {"data": 1, "operation": "create"},
             headers={"X-Custom": "c1"}),
    Case("http.out.keys.partitionKey", "20 fixed partitionKeys on a 3-partition topic", "keys", transport="http",
         binding="out", key_field="partitionKey", records="out3"),
]

OUTPUT_GRPC = [
    out_grpc("grpc.out.data.json", "data is JSON bytes", operation="create", data=b'{"b":1,"a":2}'),
    out_grpc("grpc.out.data.text", "data is plain text", operation="create", data=b"hello"),
    out_grpc("grpc.out.data.binary", "data is not UTF-8", operation="create", data=b"\x00\xff\x10\x80"),
    out_grpc("grpc.out.data.empty", "data is empty (tombstone?)", operation="create", data=b""),
    out_grpc("grpc.out.meta.partitionKey", "metadata partitionKey", operation="create", data=b"x",
             metadata={"partitionKey": "pk-1"}),
    out_grpc("grpc.out.meta.__key", "metadata __key", operation="create", data=b"x", metadata={"__key": "uk-1"}),
    out_grpc("grpc.out.meta.key", "metadata key", operation="create", data=b"x", metadata={"key": "k-1"}),
    out_grpc("grpc.out.meta.other", "other metadata entries", operation="create", data=b"x",
             metadata={"h1": "v1", "Mixed-Case": "V2", "empty": ""}),
    out_grpc("grpc.out.meta.non_ascii", "a metadata value with non-ASCII and a newline", operation="create", data=b"x",
             metadata={"u": "caf\u00e9", "nl": "a\nb"}),
    out_grpc("grpc.out.meta.partitionNumber", "metadata partitionNumber 1", operation="create", data=b"x",
             metadata={"partitionNumber": "1"}),
    out_grpc("grpc.out.op.missing", "no operation", data=b"x"),
    out_grpc("grpc.out.op.get", "operation get", operation="get", data=b"x"),
    out_grpc("grpc.out.op.delete", "operation delete", operation="delete", data=b"x"),
    out_grpc("grpc.out.unknown_binding", "a binding that does not exist", name="nope", operation="create", data=b"x"),
    out_grpc("grpc.out.no_name", "no binding name", name="", operation="create", data=b"x"),
    out_grpc("grpc.out.too_large", "a message over the 1 MB limit", operation="create", data=b"z" * ((1 << 20) + 1000)),
    Case("grpc.out.traceparent", "traceparent call metadata", "grpc", records="out3",
         grpc=Grpc("InvokeBinding", name="out", operation="create", data=b"t",
                   call_metadata=[("traceparent", TP_OUT)])),
    Case("grpc.out.call_metadata", "custom gRPC call metadata", "grpc", records="out3",
         grpc=Grpc("InvokeBinding", name="out", operation="create", data=b"c", call_metadata=[("x-custom", "c1")])),
    Case("grpc.out.keys.partitionKey", "20 fixed partitionKeys on a 3-partition topic", "keys", transport="grpc",
         binding="out", key_field="partitionKey", records="out3"),
]

OTHER = [
    call("http.metadata", "GET /v1.0/metadata", "GET", "/v1.0/metadata"),
    rpc("grpc.metadata", "GetMetadata", "GetMetadata"),
    Case("http.metadata.set", "PUT /v1.0/metadata/k then GET", "sequence", steps=[
        call("-", "", "PUT", "/v1.0/metadata/conformanceKey", raw="v1", headers={"Content-Type": "text/plain"}),
        call("-", "", "GET", "/v1.0/metadata")]),
    call("http.healthz", "GET /v1.0/healthz", "GET", "/v1.0/healthz"),
    call("http.healthz.outbound", "GET /v1.0/healthz/outbound", "GET", "/v1.0/healthz/outbound"),
    call("http.healthz.post", "POST /v1.0/healthz", "POST", "/v1.0/healthz"),
    call("http.state.get", "GET /v1.0/state/x/k", "GET", "/v1.0/state/x/k"),
    call("http.state.save", "POST /v1.0/state/x", "POST", "/v1.0/state/x", json=[{"key": "k", "value": 1}]),
    call("http.publish", "POST /v1.0/publish/x/y", "POST", "/v1.0/publish/x/y", json={"a": 1}),
    call("http.invoke", "POST /v1.0/invoke/x/method/y", "POST", "/v1.0/invoke/x/method/y", json={"a": 1}),
    call("http.secrets", "GET /v1.0/secrets/x/k", "GET", "/v1.0/secrets/x/k"),
    call("http.configuration", "GET /v1.0/configuration/x", "GET", "/v1.0/configuration/x"),
    call("http.unknown_path", "GET /v1.0/nope", "GET", "/v1.0/nope"),
    call("http.unknown_version", "GET /v2.0/bindings/out", "GET", "/v2.0/bindings/out"),
    rpc("grpc.state.get", "GetState", "GetState", store_name="x", key="k"),
    rpc("grpc.publish", "PublishEvent", "PublishEvent", pubsub_name="x", topic="y", data=b"{}"),
    rpc("grpc.invoke", "InvokeService", "InvokeService", id="x"),
    rpc("grpc.secret", "GetSecret", "GetSecret", store_name="x", key="k"),
    rpc("grpc.configuration", "GetConfiguration", "GetConfiguration", store_name="x"),
    Case("grpc.unknown_method", "a method the Dapr service does not have", "grpc",
         grpc=Grpc(None, raw_method="/dapr.proto.runtime.v1.Dapr/NoSuchMethod", raw_request=b"")),
    Case("grpc.unknown_service", "a service that does not exist", "grpc",
         grpc=Grpc(None, raw_method="/no.such.Service/Call", raw_request=b"")),
]

OUTPUT_GROUP = Group(
    "output",
    components=[Component("out", publishTopic="$T:out3", direction="output"),
                Component("in-only", input=True, probed=False, direction="input")],
    topics={"out3": 3, "in-only": 1},
    max_body_mb=1,
    cases=OUTPUT_HTTP + OUTPUT_GRPC + OTHER,
)

AUTH_GROUP = Group(
    "auth",
    components=[Component("out", publishTopic="$T:out3", direction="output")],
    topics={"out3": 3},
    env={"DAPR_API_TOKEN": TOKEN},
    cases=[
        out_http("http.auth.missing", "no dapr-api-token", {"data": 1, "operation": "create"}),
        out_http("http.auth.wrong", "a wrong dapr-api-token", {"data": 1, "operation": "create"},
                 headers={"dapr-api-token": "wrong"}),
        out_http("http.auth.right", "the right dapr-api-token", {"data": 1, "operation": "create"},
                 headers={"dapr-api-token": TOKEN}),
        out_http("http.auth.bearer", "the token as Authorization: Bearer", {"data": 1, "operation": "create"},
                 headers={"Authorization": "Bearer " + TOKEN}),
        call("http.auth.healthz", "healthz without token", "GET", "/v1.0/healthz"),
        call("http.auth.healthz_outbound", "healthz/outbound without token", "GET", "/v1.0/healthz/outbound"),
        call("http.auth.metadata", "metadata without token", "GET", "/v1.0/metadata"),
        Case("grpc.auth.missing", "no dapr-api-token", "grpc", records="out3",
             grpc=Grpc("InvokeBinding", name="out", operation="create", data=b"x")),
        Case("grpc.auth.wrong", "a wrong dapr-api-token", "grpc", records="out3",
             grpc=Grpc("InvokeBinding", name="out", operation="create", data=b"x",
                       call_metadata=[("dapr-api-token", "wrong")])),
        Case("grpc.auth.right", "the right dapr-api-token", "grpc", records="out3",
             grpc=Grpc("InvokeBinding", name="out", operation="create", data=b"x",
                       call_metadata=[("dapr-api-token", TOKEN)])),
        Case("grpc.auth.metadata", "GetMetadata without token", "grpc", grpc=Grpc("GetMetadata")),
    ],
)

# --------------------------------------------------------------------------- input



def inputs(prefix, transport):
    """Input cases, one binding (topic, group, route) each, run in parallel."""
    def case(name, doc, produce, records=None):
        return Case(f"{prefix}.{name}", doc, "input", binding=f"in-{name}", produce=produce, records=records,
                    parallel=True)

    marker = {"value": '"marker"'}
    cs = [
        case("key", "a record with a key", [{"key": "k1", "value": '{"a":1}'}]),
        case("nokey", "a record without a key", [{"value": "plain text"}]),
        case("headers", "a record with headers (one repeated)",
             [{"key": "k", "value": "{}", "headers": [["h1", "v1"], ["H-Upper", "V"], ["dup", "1"], ["dup", "2"]]}]),
        case("traceparent", "a record with a traceparent header", [{"value": "{}", "headers": [["traceparent", TP_IN]]}]),
        case("null", "a record with a null value (tombstone)", [{"key": "k", "value": None}]),
        case("binary", "a value that is not UTF-8", [{"value": {"base64": "AAH/gA=="}}]),
        case("hdr_newline", "a header value with a newline", [{"value": "{}", "headers": [["nl", "a\nb"]]}, marker]),
        case("hdr_utf8", "a header value with non-ASCII UTF-8", [{"value": "{}", "headers": [["u", "caf\u00e9"]]}, marker]),
        case("hdr_bytes", "a header value that is not UTF-8",
             [{"value": "{}", "headers": [["b", {"base64": "/w=="}]]}, marker]),
        case("hdr_framing", "headers named like HTTP framing headers",
             [{"value": "{}", "headers": [["content-type", "text/plain"], ["content-length", "1"],
                                           ["host", "example.invalid"]]}, marker]),
        case("ok204", "the app answers 204", [{"value": '"a"'}, {"value": '"b"'}]),
        case("fail404", "the app answers 404, then a marker record", [{"value": '"r"'}, marker]),
        case("fail500", "the app answers 500, then a marker record", [{"value": '"r"'}, marker]),
        case("hang", "the app hangs past the 2 s timeout, then a marker record", [{"value": '"r"'}, marker]),
        case("reply_to", "the app replies with to: [out-to] and data", [{"value": '"r"'}], records="to"),
    ]
    return cs


def input_routes(transport):
    return {
        "in-ok204": Route(status=204) if transport == "http" else Route(),
        "in-fail404": Route(status=404, unless="marker"),
        "in-fail500": Route(status=500, unless="marker"),
        "in-hang": Route(hang=True, unless="marker"),
        "in-reply_to": Route(reply={"to": ["out-to"], "data": {"reply": 1}}),
        "in-unserved": Route(options=404),
    }


def input_group(name, transport, prefix):
    cs = inputs(prefix, transport)
    # No daprd timeout policy on the binding whose app replies with a body: daprd 1.18
    # cancels the call's context when the policy returns and then sometimes fails to
    # read the body ("failed to read response body: context canceled"), at random.
    comps = [Component(c.binding, input=True, timeout=c.binding != "in-reply_to") for c in cs]
    comps.append(Component("out-to", publishTopic="$T:to", direction="output"))
    comps.append(Component("cron", type="bindings.cron", input=True, schedule="@every 1s"))
    topics = {c.binding: 1 for c in cs}
    topics["to"] = 1
    extra = [
        Case(f"{prefix}.probe", "how the sidecar asks the app which bindings it serves", "probe"),
        Case(f"{prefix}.cron", "the first bindings.cron event", "cron", binding="cron", parallel=True),
    ]
    if transport == "http":
        comps.append(Component("in-unserved", input=True))
        topics["in-unserved"] = 1
        extra.append(Case(f"{prefix}.unserved", "the app answers OPTIONS with 404: records are not delivered",
                          "unserved", binding="in-unserved", last=True))
    else:
        comps.append(Component("in-unlisted", input=True, listed=False))
        topics["in-unlisted"] = 1
        extra.append(Case(f"{prefix}.unlisted", "a binding the app does not list: records are not delivered",
                          "unserved", binding="in-unlisted", last=True))
    pre = [("in-unserved", [{"value": '"unserved"'}])] if transport == "http" else \
        [("in-unlisted", [{"value": '"unlisted"'}])]
    return Group(name, components=comps, topics=topics, app=transport, routes=input_routes(transport),
                 app_timeout="2s", cases=extra + cs, preproduce=pre)


INPUT_HTTP_GROUP = input_group("input-http", "http", "in.http")
INPUT_GRPC_GROUP = input_group("input-grpc", "grpc", "in.grpc")

SHUTDOWN_GROUPS = [
    Group("shutdown-http", components=[Component("out", publishTopic="$T:out3", direction="output")],
          topics={"out3": 3},
          cases=[Case("http.shutdown", "POST /v1.0/shutdown: answer and process exit", "shutdown", transport="http")]),
    Group("shutdown-grpc", components=[Component("out", publishTopic="$T:out3", direction="output")],
          topics={"out3": 3},
          cases=[Case("grpc.shutdown", "Shutdown rpc: answer and process exit", "shutdown", transport="grpc")]),
]

GROUPS = [
    Group("shutdown-http", components=[Component("out", publishTopic="$T:out3", direction="output")],
          topics={"out3": 3},
          cases=[Case("http.shutdown", "POST /v1.0/shutdown: answer and process exit", "shutdown", transport="http")]),
    Group("shutdown-grpc", components=[Component("out", publishTopic="$T:out3", direction="output")],
          topics={"out3": 3},
          cases=[Case("grpc.shutdown", "Shutdown rpc: answer and process exit", "shutdown", transport="grpc")]),
]

SDK_GROUP = Group("sdk", components=[Component("out", publishTopic="$T:out", direction="output")],
                  topics={"out": 1}, cases=[])

GROUPS = [OUTPUT_GROUP, AUTH_GROUP, INPUT_HTTP_GROUP, INPUT_GRPC_GROUP] + SHUTDOWN_GROUPS
