//! Hostile input on the API ports: oversized and deeply nested bodies, odd
//! paths, non-UTF-8 values, slow-loris clients, stalled bodies, floods of idle
//! connections, garbage on the gRPC port. Each case gets a clear 4xx (with our
//! JSON error body where we answer) or a closed connection, and the sidecar
//! keeps serving afterwards. No broker is needed: the one component points at
//! an unused port, and no request here gets as far as producing.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tonic::Code;

use outrigger::api::http::ServerLimits;
use outrigger::proto::runtime::v1 as pb;
use outrigger::proto::runtime::v1::dapr_client::DaprClient;

use crate::support::*;

/// A generous bound for the server to close a connection: a deadline, not a latency.
const CLOSE_WITHIN: Duration = Duration::from_secs(30);

/// A sidecar with one Kafka output binding `orders` whose broker is not there.
async fn sidecar(tweak: impl FnOnce(&mut outrigger::SidecarConfig)) -> TestSidecar {
    let nowhere = closed_addr();
    start_sidecar(
        &[kafka_component(
            "orders",
            &nowhere,
            &[("publishTopic", "t")],
        )],
        tweak,
    )
    .await
}

/// An HTTP/1.1 request with a content-length and `connection: close`.
fn request(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut r = format!(
        "{method} {path} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(body);
    r
}

/// Reads until the peer closes the connection (EOF or reset) and returns what
/// arrived; panics if it stays open past `within`.
async fn read_until_closed(stream: &mut (impl AsyncRead + Unpin), within: Duration) -> Vec<u8> {
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let read = tokio::time::timeout(within, async {
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "the server kept the connection open past {within:?}"
    );
    out
}

/// Status and body of a raw HTTP/1.1 response.
fn parse_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw);
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP response: {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// Sends raw bytes (one request that says `connection: close`) and returns the
/// response's status and body. Writing may fail once the server has answered.
async fn raw_http(port: u16, bytes: Vec<u8>) -> (u16, String) {
    let stream = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(&bytes).await;
        wr
    });
    let raw = read_until_closed(&mut rd, CLOSE_WITHIN).await;
    let _ = writer.await;
    parse_response(&raw)
}

/// Asserts our JSON error body: `{"errorCode": code, "message": "..."}`.
fn assert_json_error(got: &(u16, String), status: u16, code: &str, what: &str) -> Value {
    assert_eq!(got.0, status, "{what}: {}", got.1);
    let body: Value = serde_json::from_str(&got.1)
        .unwrap_or_else(|e| panic!("{what}: the body is not JSON ({e}): {:?}", got.1));
    assert_eq!(body["errorCode"], code, "{what}: {body}");
    assert!(
        body["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    body
}

/// The sidecar still answers: metadata lists the component.
async fn assert_serves(port: u16) {
    let got = raw_http(port, request("GET", "/v1.0/metadata", b"")).await;
    assert_eq!(got.0, 200, "metadata after hostile input: {}", got.1);
    let body: Value = serde_json::from_str(&got.1).unwrap();
    assert_eq!(body["components"][0]["name"], "orders", "{body}");
}

/// Extra HTTP and gRPC servers over a running sidecar's state, with limits a
/// test can make short. Stopped on drop.
struct Servers {
    http: u16,
    grpc: u16,
    stop: CancellationToken,
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

async fn serve_with(sidecar: &TestSidecar, limits: ServerLimits) -> Servers {
    let state = sidecar.sidecar.as_ref().unwrap().state().clone();
    let http = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let grpc = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let servers = Servers {
        http: http.local_addr().unwrap().port(),
        grpc: grpc.local_addr().unwrap().port(),
        stop: CancellationToken::new(),
    };
    tokio::spawn(outrigger::api::http::serve(
        http,
        outrigger::api::http::router(state.clone()),
        servers.stop.clone(),
        limits,
        Arc::new(Semaphore::new(limits.max_connections)),
    ));
    tokio::spawn(outrigger::api::grpc::serve(
        state,
        grpc,
        servers.stop.clone(),
        limits,
        Arc::new(Semaphore::new(limits.max_connections)),
    ));
    servers
}

/// daprd's answer to a body over `--dapr-http-max-request-size`: 400, in Go's words.
fn assert_too_large(got: &(u16, String), what: &str) {
    let body = assert_json_error(got, 400, "ERR_MALFORMED_REQUEST", what);
    assert_eq!(
        body["message"], "failed deserializing HTTP body: stream too large",
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_bodies_are_400_stream_too_large_and_the_sidecar_keeps_serving() {
    let sidecar = sidecar(|c| c.max_request_bytes = 64 << 10).await;
    let port = sidecar.http_port();
    let path = "/v1.0/bindings/orders";

    // A declared length far over the limit is refused before any body is read.
    let head = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 10000000000\r\nconnection: close\r\n\r\n"
    );
    let got = raw_http(port, head.into_bytes()).await;
    assert_too_large(&got, "declared 10 GB");

    // Declared and sent: 1 MiB.
    let big = format!(
        "{{\"operation\":\"create\",\"data\":\"{}\"}}",
        "a".repeat(1 << 20)
    );
    let got = raw_http(port, request("POST", path, big.as_bytes())).await;
    assert_too_large(&got, "1 MiB with content-length");

    // Chunked, with no length to check up front: counted while read.
    let mut chunked = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n"
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(16 << 10) {
        chunked.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        chunked.extend_from_slice(chunk);
        chunked.extend_from_slice(b"\r\n");
    }
    chunked.extend_from_slice(b"0\r\n\r\n");
    let got = raw_http(port, chunked).await;
    assert_too_large(&got, "1 MiB chunked");

    // A chunk size that overflows: hyper refuses the framing (no JSON: it
    // answers before any handler runs) and closes.
    let overflow = format!(
        "POST {path} HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\nffffffffffffffffff\r\nabc\r\n"
    );
    let got = raw_http(port, overflow.into_bytes()).await;
    assert!((400..500).contains(&got.0), "chunk size overflow: {got:?}");

    // Setting extended metadata goes through the same limit.
    let got = raw_http(port, request("PUT", "/v1.0/metadata/big", big.as_bytes())).await;
    assert_too_large(&got, "1 MiB of extended metadata");

    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn deeply_nested_json_is_400() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let path = "/v1.0/bindings/orders";
    let deep = 100_000;
    let open = "[".repeat(deep);
    let balanced = format!("{open}{}", "]".repeat(deep));
    let cases = [
        (open.clone(), "100k [ as the whole body"),
        (balanced.clone(), "100k nested arrays as the whole body"),
        (format!("{{\"data\": {open}"), "data: 100k [ never closed"),
        (
            format!("{{\"operation\": \"create\", \"data\": {balanced}}}"),
            "data: 100k nested arrays, balanced",
        ),
        (
            format!(
                "{{\"operation\": \"create\", \"data\": {}1{}}}",
                "{\"a\":".repeat(deep),
                "}".repeat(deep)
            ),
            "data: 100k nested objects, balanced",
        ),
        (
            format!(
                "{{\"operation\": \"create\", \"metadata\": {}}}",
                "{\"a\":".repeat(deep)
            ),
            "metadata: 100k nested objects",
        ),
        (
            format!("{{\"operation\": \"create\", \"data\": 1, \"unknown\": {balanced}}}"),
            "an unknown field of 100k nested arrays beside a valid envelope",
        ),
        (
            format!(
                "{{\"operation\": \"create\", \"data\": 1, \"x\": {}1{}}}",
                "{\"a\":".repeat(deep),
                "}".repeat(deep)
            ),
            "an unknown field of 100k nested objects",
        ),
    ];
    for (body, what) in cases {
        let got = raw_http(port, request("POST", path, body.as_bytes())).await;
        let err = assert_json_error(&got, 400, "ERR_MALFORMED_REQUEST", what);
        let message = err["message"].as_str().unwrap();
        assert!(
            message.starts_with("failed deserializing HTTP body: "),
            "{what}: {message}"
        );
    }
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn odd_paths_get_clear_json_errors() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let long = "n".repeat(16 << 10);
    let bindings_long = format!("/v1.0/bindings/{long}");
    // (method, path, status, errorCode)
    let cases: Vec<(&str, &str, u16, &str)> = vec![
        // Percent-encoded bytes that are not UTF-8: axum's own rejection is plain text.
        ("POST", "/v1.0/bindings/%FF", 400, "ERR_MALFORMED_REQUEST"),
        (
            "POST",
            "/v1.0/bindings/ord%C3%28ers",
            400,
            "ERR_MALFORMED_REQUEST",
        ),
        ("PUT", "/v1.0/metadata/%FE%FF", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/state/%FF", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/state/store/%80", 400, "ERR_MALFORMED_REQUEST"),
        // Invalid percent-encoding: Go's net/http (daprd) answers 400 before routing.
        ("POST", "/v1.0/bindings/%zz", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/bindings/out1%", 400, "ERR_MALFORMED_REQUEST"),
        ("POST", "/v1.0/bindings/o%4", 400, "ERR_MALFORMED_REQUEST"),
        ("PUT", "/v1.0/metadata/%g0", 400, "ERR_MALFORMED_REQUEST"),
        ("GET", "/v1.0/healthz%", 400, "ERR_MALFORMED_REQUEST"),
        // Names no component can have are unknown bindings: 500, as daprd answers.
        (
            "POST",
            "/v1.0/bindings/..",
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        ),
        (
            "POST",
            "/v1.0/bindings/%2E%2E%2Fshutdown",
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        ),
        (
            "POST",
            "/v1.0/bindings/%00",
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        ),
        (
            "POST",
            bindings_long.as_str(),
            500,
            "ERR_INVOKE_OUTPUT_BINDING",
        ),
        // Paths that climb out of the bindings API match no route.
        // As daprd: they fall to service invocation, which finds no app id.
        (
            "POST",
            "/v1.0/bindings/../shutdown",
            404,
            "ERR_DIRECT_INVOKE",
        ),
        // A method the route does not take: the same (no 405, no Allow header).
        ("GET", "/v1.0/bindings/orders", 404, "ERR_DIRECT_INVOKE"),
        ("DELETE", "/v1.0/bindings/orders", 404, "ERR_DIRECT_INVOKE"),
    ];
    let body = br#"{"data": 1, "operation": "create"}"#;
    for (method, path, status, code) in cases {
        let what = format!("{method} {}", &path[..path.len().min(60)]);
        let got = raw_http(port, request(method, path, body)).await;
        assert_json_error(&got, status, code, &what);
    }

    // What hyper refuses before routing (no JSON from us there): a request line
    // of 2 MiB (past Go's 1 MB + 4 KiB of request line and headers), and raw
    // bytes that are not allowed in a URL.
    // hyper may reset the connection before its answer is read: a refusal either way.
    let huge = format!("/v1.0/bindings/{}", "n".repeat(2 << 20));
    let mut s = connect_and_send(port, &request("POST", &huge, body)).await;
    let raw = read_until_closed(&mut s, CLOSE_WITHIN).await;
    if !raw.is_empty() {
        let status = parse_response(&raw).0;
        assert!((400..500).contains(&status), "a 2 MiB path: {status}");
    }
    let raw =
        b"POST /v1.0/bindings/\xff\xfe HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".to_vec();
    let got = raw_http(port, raw).await;
    assert!(
        (400..500).contains(&got.0),
        "raw non-UTF-8 bytes in the path: {}",
        got.0
    );

    // `..%2Fshutdown` above must not have shut the sidecar down.
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn non_utf8_values_are_400_on_http_and_an_error_on_grpc() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let path = "/v1.0/bindings/orders";
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            b"{\"operation\":\"create\",\"metadata\":{\"key\":\"\xff\xfe\"}}".to_vec(),
            "raw 0xFF in a metadata value",
        ),
        (
            b"{\"operation\":\"create\",\"metadata\":{\"\xc3\x28\":\"v\"}}".to_vec(),
            "invalid UTF-8 in a metadata key",
        ),
        (
            br#"{"operation":"create","metadata":{"key":"\udc00"}}"#.to_vec(),
            "a lone surrogate escape in a metadata value",
        ),
        (
            b"{\"operation\":\"create\",\"data\":\"\xff\"}".to_vec(),
            "raw 0xFF in a data string",
        ),
        (
            b"{\"operation\":\"cr\xe9ate\",\"data\":1}".to_vec(),
            "Latin-1 in the operation",
        ),
    ];
    for (body, what) in cases {
        let got = raw_http(port, request("POST", path, &body)).await;
        assert_json_error(&got, 400, "ERR_MALFORMED_REQUEST", what);
    }
    // A header value that is not UTF-8 (the API token header is read as bytes).
    let raw = b"GET /v1.0/metadata HTTP/1.1\r\nhost: x\r\ndapr-api-token: \xff\xfe\r\nconnection: close\r\n\r\n".to_vec();
    let got = raw_http(port, raw).await;
    assert_eq!(
        got.0, 200,
        "no token is configured, so any bytes pass: {}",
        got.1
    );

    // gRPC: strings that are not UTF-8 fail to decode, before any binding runs.
    let mut grpc = raw_grpc(&sidecar.grpc()).await;
    let mut metadata = HashMap::new();
    metadata.insert("key".to_string(), b"\xff\xfe".to_vec());
    for (message, what) in [
        (
            RawInvoke {
                name: b"orders".to_vec(),
                data: b"x".to_vec(),
                metadata,
                operation: b"create".to_vec(),
            },
            "a metadata value",
        ),
        (
            RawInvoke {
                name: b"ord\xffers".to_vec(),
                data: b"x".to_vec(),
                metadata: HashMap::new(),
                operation: b"create".to_vec(),
            },
            "the binding name",
        ),
    ] {
        let status = invoke_raw(&mut grpc, message).await.unwrap_err();
        // What grpc-go (daprd) answers for a request that does not unmarshal.
        assert_eq!(status.code(), Code::Internal, "{what}: {status:?}");
        assert!(
            status.message().contains("UTF-8") || status.message().contains("utf-8"),
            "{what}: {status:?}"
        );
    }
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("gRPC still serves");
    assert_serves(port).await;
    sidecar.stop().await;
}

/// `InvokeBindingRequest` with bytes where the proto says string.
#[derive(Clone, PartialEq, prost::Message)]
struct RawInvoke {
    #[prost(bytes = "vec", tag = "1")]
    name: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    data: Vec<u8>,
    #[prost(map = "string, bytes", tag = "3")]
    metadata: HashMap<String, Vec<u8>>,
    #[prost(bytes = "vec", tag = "4")]
    operation: Vec<u8>,
}

async fn raw_grpc(url: &str) -> tonic::client::Grpc<tonic::transport::Channel> {
    let channel = tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap();
    tonic::client::Grpc::new(channel)
}

async fn invoke_raw(
    grpc: &mut tonic::client::Grpc<tonic::transport::Channel>,
    message: RawInvoke,
) -> Result<pb::InvokeBindingResponse, tonic::Status> {
    grpc.ready().await.unwrap();
    let path = http::uri::PathAndQuery::from_static("/dapr.proto.runtime.v1.Dapr/InvokeBinding");
    let codec = tonic_prost::ProstCodec::<RawInvoke, pb::InvokeBindingResponse>::default();
    grpc.unary(tonic::Request::new(message), path, codec)
        .await
        .map(tonic::Response::into_inner)
}

/// Opens a connection and sends `first` (possibly nothing). A server that
/// closes at once may make the write fail; the caller then sees the close.
async fn connect_and_send(port: u16, first: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).await.unwrap();
    let _ = s.write_all(first).await;
    s
}

/// Opens a connection, sends `head`, then trickles `x-slow: aaaa…` one byte
/// every 250 ms (so the headers never complete), until the server closes it.
async fn trickle_until_closed(port: u16, head: &'static [u8]) {
    let (mut rd, mut wr) = connect_and_send(port, head).await.into_split();
    let writer = tokio::spawn(async move {
        let _ = wr.write_all(b"x-slow: ").await;
        let mut tick = tokio::time::interval(Duration::from_millis(250));
        loop {
            tick.tick().await;
            if wr.write_all(b"a").await.is_err() {
                break;
            }
        }
    });
    read_until_closed(&mut rd, CLOSE_WITHIN).await;
    writer.abort();
}

#[tokio::test(flavor = "multi_thread")]
async fn slow_loris_clients_are_disconnected() {
    // The sidecar's own limits (10 s for headers): no test-only settings here.
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    tokio::join!(
        // A request line, then headers trickling in.
        trickle_until_closed(port, b"POST /v1.0/bindings/orders HTTP/1.1\r\nhost: x\r\n"),
        // A keep-alive connection that finished one request and then trickles the next.
        async {
            let mut s = connect_and_send(
                port,
                b"GET /v1.0/healthz HTTP/1.1\r\nhost: x\r\n\r\nGET /v1.0/heal",
            )
            .await;
            let raw = read_until_closed(&mut s, CLOSE_WITHIN).await;
            assert!(
                raw.starts_with(b"HTTP/1.1 204"),
                "{}",
                String::from_utf8_lossy(&raw)
            );
        },
        // A connection that never sends a byte.
        async {
            let mut s = connect_and_send(port, b"").await;
            let raw = read_until_closed(&mut s, CLOSE_WITHIN).await;
            assert!(raw.is_empty(), "{}", String::from_utf8_lossy(&raw));
        },
        // The start of the HTTP/2 preface, then nothing: the protocol is never decided.
        async {
            let mut s = connect_and_send(port, b"PRI * HTTP/2.0\r\n").await;
            read_until_closed(&mut s, CLOSE_WITHIN).await;
        },
        // The whole preface (h2c), then no SETTINGS frame: the handshake never ends.
        async {
            let mut s = connect_and_send(port, b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n").await;
            read_until_closed(&mut s, CLOSE_WITHIN).await;
        },
    );
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stalled_body_is_408() {
    let sidecar = sidecar(|_| {}).await;
    let limits = ServerLimits {
        body_read_timeout: Duration::from_secs(1),
        ..ServerLimits::default()
    };
    let servers = serve_with(&sidecar, limits).await;
    // Headers promise 100 bytes; 10 arrive.
    let mut s = connect_and_send(
        servers.http,
        b"POST /v1.0/bindings/orders HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{\"data\": 1",
    )
    .await;
    let got = parse_response(&read_until_closed(&mut s, CLOSE_WITHIN).await);
    assert_json_error(
        &got,
        408,
        "ERR_REQUEST_TIMEOUT",
        "content-length body stalled",
    );
    // Chunked: one chunk, then nothing.
    let mut s = connect_and_send(
        servers.http,
        b"PUT /v1.0/bindings/orders HTTP/1.1\r\nhost: x\r\ntransfer-encoding: chunked\r\n\r\na\r\n{\"data\": 1\r\n",
    )
    .await;
    let got = parse_response(&read_until_closed(&mut s, CLOSE_WITHIN).await);
    assert_json_error(&got, 408, "ERR_REQUEST_TIMEOUT", "chunked body stalled");
    // Extended metadata reads its body the same way.
    let mut s = connect_and_send(
        servers.http,
        b"PUT /v1.0/metadata/k HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\nab",
    )
    .await;
    let got = parse_response(&read_until_closed(&mut s, CLOSE_WITHIN).await);
    assert_json_error(&got, 408, "ERR_REQUEST_TIMEOUT", "metadata body stalled");
    assert_serves(servers.http).await;
    drop(servers);
    sidecar.stop().await;
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kb * 1024
}

/// Raises the soft open-file limit to the hard one; returns the soft limit.
fn raise_fd_limit() -> u64 {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: plain syscalls on a struct we own.
    unsafe {
        libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        if limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
    }
    limit.rlim_cur
}

#[tokio::test(flavor = "multi_thread")]
async fn thousands_of_idle_connections_neither_block_nor_bloat() {
    let sidecar = sidecar(|_| {}).await;
    // Each connection costs this process two descriptors (client and server end).
    let fds = raise_fd_limit();
    let n = 2000usize.min((fds.saturating_sub(512) / 2) as usize);
    assert!(n >= 500, "only {fds} open files allowed");
    let before = rss_bytes();
    let mut idle = Vec::with_capacity(n);
    for i in 0..n {
        let port = if i % 4 == 0 {
            sidecar.grpc_port()
        } else {
            sidecar.http_port()
        };
        idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
    }
    // Half-sent requests on some of them too.
    for s in idle.iter_mut().skip(1).step_by(8) {
        s.write_all(b"POST /v1.0/bindings/orders HTTP/1.1\r\nhost: x\r\n")
            .await
            .unwrap();
    }
    // Normal requests still get through, on both APIs.
    assert_serves(sidecar.http_port()).await;
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("gRPC serves");
    let after = rss_bytes();
    let growth = after.saturating_sub(before);
    eprintln!(
        "{n} idle connections: RSS {} MB before, {} MB after",
        before >> 20,
        after >> 20
    );
    assert!(
        growth < 200 << 20,
        "{n} idle connections grew the process by {} MB",
        growth >> 20
    );
    drop(idle);
    assert_serves(sidecar.http_port()).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn connection_limit_refuses_extra_connections_and_recovers() {
    let sidecar = sidecar(|_| {}).await;
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(3),
        max_connections: 20,
        ..ServerLimits::default()
    };
    let servers = serve_with(&sidecar, limits).await;
    for port in [servers.http, servers.grpc] {
        // Fill every slot with connections that send nothing.
        let mut idle = Vec::new();
        for _ in 0..limits.max_connections {
            idle.push(TcpStream::connect(("127.0.0.1", port)).await.unwrap());
        }
        // The next one is accepted after them (the accept queue is in order) and closed.
        let mut extra = connect_and_send(port, &request("GET", "/v1.0/healthz", b"")).await;
        let raw = read_until_closed(&mut extra, CLOSE_WITHIN).await;
        assert!(
            raw.is_empty(),
            "over the limit, got an answer: {}",
            String::from_utf8_lossy(&raw)
        );
        // The idle ones are dropped after the header timeout and free their slots.
        for s in &mut idle {
            read_until_closed(s, CLOSE_WITHIN).await;
        }
    }
    assert_serves(servers.http).await;
    let mut client = DaprClient::connect(format!("http://127.0.0.1:{}", servers.grpc))
        .await
        .unwrap();
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("gRPC serves again");
    drop(servers);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_port_survives_oversized_messages_garbage_and_http1() {
    let sidecar = sidecar(|c| c.max_request_bytes = 64 << 10).await;
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();

    // A message over the limit: RESOURCE_EXHAUSTED, and the connection goes on.
    let status = client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "orders".into(),
            data: vec![b'a'; 256 << 10].into(),
            metadata: Default::default(),
            operation: "create".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("same connection after");

    let port = sidecar.grpc_port();
    // Bytes that are not HTTP/2 at all.
    let garbage: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let mut s = connect_and_send(port, &garbage).await;
    read_until_closed(&mut s, CLOSE_WITHIN).await;
    // The HTTP/2 preface, then frames that make no sense.
    let mut bad_frames = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    bad_frames.extend_from_slice(&[0xff, 0xff, 0xff, 0x07, 0x00, 0x00, 0x00, 0x00, 0x01]);
    bad_frames.extend_from_slice(&garbage);
    let mut s = connect_and_send(port, &bad_frames).await;
    read_until_closed(&mut s, CLOSE_WITHIN).await;
    // An HTTP/1 request: the gRPC port speaks HTTP/2 only.
    let mut s = connect_and_send(
        port,
        b"POST /dapr.proto.runtime.v1.Dapr/GetMetadata HTTP/1.1\r\nhost: x\r\ncontent-type: application/grpc\r\ncontent-length: 5\r\n\r\n\0\0\0\0\0",
    )
    .await;
    let raw = read_until_closed(&mut s, CLOSE_WITHIN).await;
    assert!(
        !raw.starts_with(b"HTTP/1.1 200"),
        "HTTP/1 served on the gRPC port: {}",
        String::from_utf8_lossy(&raw)
    );

    // Still serving, on an existing and a new connection.
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("old connection");
    let mut fresh = DaprClient::connect(sidecar.grpc()).await.unwrap();
    fresh
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("new connection");
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_connections_that_never_start_are_closed() {
    let sidecar = sidecar(|_| {}).await;
    let limits = ServerLimits {
        header_read_timeout: Duration::from_secs(2),
        ..ServerLimits::default()
    };
    let servers = serve_with(&sidecar, limits).await;
    for first in [
        &b""[..],
        b"PRI * HTTP/2.0\r\n",
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
        // A SETTINGS frame that announces 6 bytes and sends 2.
        b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\x06\x04\0\0\0\0\0\0\x03",
    ] {
        let mut s = connect_and_send(servers.grpc, first).await;
        read_until_closed(&mut s, CLOSE_WITHIN).await;
    }
    let mut client = DaprClient::connect(format!("http://127.0.0.1:{}", servers.grpc))
        .await
        .unwrap();
    client
        .get_metadata(pb::GetMetadataRequest {})
        .await
        .expect("serves");
    drop(servers);
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn extended_metadata_is_bounded() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let value = vec![b'v'; 200 << 10];
    let mut refused = None;
    for i in 0..16 {
        let got = raw_http(
            port,
            request("PUT", &format!("/v1.0/metadata/k{i}"), &value),
        )
        .await;
        if got.0 != 204 {
            refused = Some((i, got));
            break;
        }
    }
    let (i, got) = refused.expect("1 MiB of extended metadata is refused");
    assert!(i >= 4, "refused too early, at key {i}");
    assert_json_error(
        &got,
        413,
        "ERR_REQUEST_TOO_LARGE",
        "extended metadata over 1 MiB",
    );
    // Replacing a key already set still works; so does gRPC's SetMetadata under the limit.
    let got = raw_http(port, request("PUT", "/v1.0/metadata/k0", b"small")).await;
    assert_eq!(got.0, 204, "{}", got.1);
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let status = client
        .set_metadata(pb::SetMetadataRequest {
            key: "g".into(),
            value: "x".repeat(1 << 20),
        })
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    client
        .set_metadata(pb::SetMetadataRequest {
            key: "g".into(),
            value: "ok".into(),
        })
        .await
        .expect("a small value");
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn hostile_component_files_are_config_errors_not_hangs() {
    init_logs();
    let head = "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: evil\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n";
    // An alias bomb: ten levels of ten references each.
    let mut bomb =
        format!("{head}    - name: l0\n      value: &l0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..10 {
        let refs = vec![format!("*l{}", i - 1); 10].join(", ");
        bomb.push_str(&format!("    - name: l{i}\n      value: &l{i} [{refs}]\n"));
    }
    let cases = [
        (
            format!(
                "{head}    - name: brokers\n      value: {}\n",
                "[a: ".repeat(100_000)
            ),
            "100k nested flow collections",
            "nest deeper than 1000 levels",
        ),
        (
            format!("{head}    {}x\n", "- ".repeat(100_000)),
            "100k nested block sequences",
            "recursion limit exceeded",
        ),
        (bomb, "an alias bomb", "repetition limit exceeded"),
        (
            "\u{feff}\0\u{1}\u{7f}: [\n".repeat(1000),
            "control characters",
            "control characters are not allowed",
        ),
    ];
    for (doc, what, why) in cases {
        let dir = components_dir(&[doc]);
        let config = test_config(dir.path());
        // On a task of its own: loading is synchronous, and a hang must not stop the timer.
        let loading = tokio::spawn(outrigger::Sidecar::start(config, CancellationToken::new()));
        let started = tokio::time::timeout(Duration::from_secs(60), loading)
            .await
            .unwrap_or_else(|_| panic!("{what}: loading did not finish within 60 s"))
            .unwrap();
        let Err(e) = started else {
            panic!("{what}: the sidecar started");
        };
        assert!(
            matches!(e, outrigger::RuntimeError::Config(_)),
            "{what}: {e}"
        );
        assert_eq!(e.exit_code(), 64, "{what}");
        assert!(e.to_string().contains(why), "{what}: {e}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_host_header_is_required_on_http11_as_go_requires_it() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let cases: [(&[u8], u16, &str); 4] = [
        (
            b"GET /v1.0/metadata HTTP/1.1\r\nconnection: close\r\n\r\n",
            400,
            "HTTP/1.1 without Host",
        ),
        (
            b"GET /v1.0/metadata HTTP/1.1\r\nhost: a\r\nhost: b\r\nconnection: close\r\n\r\n",
            400,
            "two Host headers",
        ),
        (
            b"GET /v1.0/metadata HTTP/1.0\r\n\r\n",
            200,
            "HTTP/1.0 needs no Host",
        ),
        (
            b"GET /v1.0/metadata HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n\r\n",
            200,
            "HTTP/1.1 with Host",
        ),
    ];
    for (raw, status, what) in cases {
        let got = raw_http(port, raw.to_vec()).await;
        if status == 400 {
            assert_json_error(&got, 400, "ERR_MALFORMED_REQUEST", what);
        } else {
            assert_eq!(got.0, status, "{what}: {}", got.1);
        }
    }
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn many_request_headers_are_served_up_to_gos_limit() {
    let sidecar = sidecar(|_| {}).await;
    let port = sidecar.http_port();
    let with_headers = |n: usize, size: usize| {
        let mut r =
            "GET /v1.0/metadata HTTP/1.1\r\nhost: 127.0.0.1\r\nconnection: close\r\n".to_string();
        for i in 0..n {
            r.push_str(&format!("x-h{i}: {}\r\n", "v".repeat(size)));
        }
        r.push_str("\r\n");
        r.into_bytes()
    };
    // 120 headers, 7 KB (hyper's default refuses more than 100), then 1,000
    // headers of 900 bytes: under Go's 1 MB, so daprd answers both.
    for (n, size) in [(120, 50), (1000, 900)] {
        let got = raw_http(port, with_headers(n, size)).await;
        assert_eq!(got.0, 200, "{n} headers of {size} bytes: {}", got.1);
    }
    // Past 1 MB + 4 KiB: 431, as Go answers.
    let mut s = connect_and_send(port, &with_headers(1200, 1000)).await;
    let raw = read_until_closed(&mut s, CLOSE_WITHIN).await;
    if !raw.is_empty() {
        assert_eq!(parse_response(&raw).0, 431, "1.2 MB of headers");
    }
    assert_serves(port).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_takes_large_call_metadata_and_refuses_other_content_types() {
    let sidecar = sidecar(|_| {}).await;
    // 256 pairs, 16 KB and more (tonic's default refuses 16 KiB with HTTP 431,
    // which clients see as UNKNOWN); grpc-go takes 16 MiB.
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    for (pairs, size) in [(256, 64), (512, 1000)] {
        let mut request = tonic::Request::new(pb::GetMetadataRequest {});
        for i in 0..pairs {
            request.metadata_mut().insert(
                tonic::metadata::MetadataKey::from_bytes(format!("x-m{i}").as_bytes()).unwrap(),
                "v".repeat(size).parse().unwrap(),
            );
        }
        let got = client.get_metadata(request).await;
        assert!(
            got.is_ok(),
            "{pairs} metadata pairs of {size} bytes: {got:?}"
        );
    }

    // A gRPC frame under `content-type: application/json`: grpc-go answers 415.
    let tcp = TcpStream::connect(("127.0.0.1", sidecar.grpc_port()))
        .await
        .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(tcp),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    for content_type in [Some("application/json"), Some("text/plain"), None] {
        let mut request = http::Request::post(format!(
            "http://127.0.0.1:{}/dapr.proto.runtime.v1.Dapr/GetMetadata",
            sidecar.grpc_port()
        ))
        .header("te", "trailers");
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let request = request
            .body(http_body_util::Full::new(bytes::Bytes::from_static(&[
                0, 0, 0, 0, 0,
            ])))
            .unwrap();
        send.ready().await.unwrap();
        let response = send.send_request(request).await.unwrap();
        assert_eq!(response.status(), 415, "content-type {content_type:?}");
        assert_eq!(
            response
                .headers()
                .get("grpc-status")
                .map(|v| v.to_str().unwrap()),
            Some("3"),
            "INVALID_ARGUMENT, as grpc-go sends"
        );
    }
    assert_serves(sidecar.http_port()).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn output_calls_past_the_cap_get_429_and_resource_exhausted_at_once() {
    let sidecar = sidecar(|c| c.max_output_calls_in_flight = 2).await;
    let port = sidecar.http_port();
    // Two calls whose bodies never come hold both slots (the slot is taken
    // before the body is read, so the cap bounds the bodies held too).
    let stalled = b"POST /v1.0/bindings/orders HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{";
    let mut holders = Vec::new();
    for _ in 0..2 {
        holders.push(connect_and_send(port, stalled).await);
    }
    // A call that needs a slot: to a binding that does not exist, answered 500
    // at once when it gets one, 429 when it does not.
    let probe = || async move {
        raw_http(
            port,
            request("POST", "/v1.0/bindings/nope", br#"{"operation": "create"}"#),
        )
        .await
    };
    let refused = wait_until(
        "the cap to be reached",
        Duration::from_secs(30),
        || async move {
            let got = probe().await;
            (got.0 == 429).then_some(got)
        },
    )
    .await;
    let body = assert_json_error(&refused, 429, "ERR_TOO_MANY_REQUESTS", "past the cap");
    assert!(
        body["message"].as_str().unwrap().contains("at most 2"),
        "{body}"
    );
    // The same cap on gRPC.
    let mut client = DaprClient::connect(sidecar.grpc()).await.unwrap();
    let e = client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "nope".into(),
            operation: "create".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(
        e.message().contains("too many output binding calls"),
        "{e:?}"
    );
    // Other APIs are not capped.
    assert_serves(port).await;

    // Once the stalled callers hang up, their slots are free again.
    drop(holders);
    let got = wait_until(
        "the slots to be released",
        Duration::from_secs(30),
        || async move {
            let got = probe().await;
            (got.0 != 429).then_some(got)
        },
    )
    .await;
    assert_json_error(&got, 500, "ERR_INVOKE_OUTPUT_BINDING", "after release");
    let e = client
        .invoke_binding(pb::InvokeBindingRequest {
            name: "nope".into(),
            operation: "create".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Internal, "{e:?}");
    sidecar.stop().await;
}

/// Starts a sidecar over `dir` on a task of its own (loading is synchronous,
/// and a hang must not stop the timer) and returns its start-up error.
async fn start_error(dir: &std::path::Path, what: &str) -> outrigger::RuntimeError {
    let config = test_config(dir);
    let loading = tokio::spawn(outrigger::Sidecar::start(config, CancellationToken::new()));
    let started = tokio::time::timeout(Duration::from_secs(60), loading)
        .await
        .unwrap_or_else(|_| panic!("{what}: loading did not finish within 60 s"))
        .unwrap();
    match started {
        Ok(_) => panic!("{what}: the sidecar started"),
        Err(e) => e,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn unreadable_component_files_are_errors_naming_each_file() {
    init_logs();
    use std::os::unix::fs::symlink;
    let good = kafka_component("good", "127.0.0.1:9092", &[("publishTopic", "t")]);
    let dir = components_dir(&[good]);
    let d = dir.path();
    // A Kubernetes volume whose `..data` link broke: every file is a dangling link.
    symlink(d.join("..data/gone.yaml"), d.join("dangling.yaml")).unwrap();
    symlink(d.join("loop-b.yaml"), d.join("loop-a.yaml")).unwrap();
    symlink(d.join("loop-a.yaml"), d.join("loop-b.yaml")).unwrap();
    symlink("/dev/zero", d.join("zero.yaml")).unwrap();
    let fifo = d.join("fifo.yml");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
    // A sub-folder is not a component file, whatever its name.
    std::fs::create_dir(d.join("folder.yaml")).unwrap();

    let (components, errors) = outrigger::config::load(&[d.to_path_buf()], "app");
    assert_eq!(components.len(), 1, "the good file still loads: {errors:?}");
    let expect = [
        ("dangling.yaml", "symbolic link"),
        ("fifo.yml", "a FIFO"),
        ("loop-a.yaml", "symbolic link"),
        ("loop-b.yaml", "symbolic link"),
        ("zero.yaml", "a character device"),
    ];
    let named: Vec<_> = errors
        .iter()
        .map(|e| e.file.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        named,
        expect
            .iter()
            .map(|(f, _)| f.to_string())
            .collect::<Vec<_>>(),
        "{errors:?}"
    );
    for ((_, why), e) in expect.iter().zip(&errors) {
        assert!(e.message.contains(why), "{e}");
    }

    // The sidecar refuses to start (exit 64), and neither the FIFO nor
    // /dev/zero holds it.
    let e = start_error(d, "unreadable files").await;
    assert_eq!(e.exit_code(), 64, "{e}");
    for (file, _) in expect {
        assert!(e.to_string().contains(file), "{file} not named: {e}");
    }

    // A resources path that is itself a dangling link, or a FIFO.
    let other = tempfile::tempdir().unwrap();
    let link = other.path().join("components");
    symlink(other.path().join("..data"), &link).unwrap();
    let e = start_error(&link, "a dangling resources path").await;
    assert_eq!(e.exit_code(), 64, "{e}");
    assert!(e.to_string().contains("symbolic link"), "{e}");
    let e = start_error(&fifo, "a FIFO as the resources path").await;
    assert_eq!(e.exit_code(), 64, "{e}");
    assert!(e.to_string().contains("a FIFO"), "{e}");
}

#[tokio::test(flavor = "multi_thread")]
async fn large_components_load_in_one_pass_and_broker_lists_are_bounded() {
    init_logs();
    // 10,000 metadata items (start-up used to be quadratic in them): each
    // keeps its exact line.
    let mut doc = kafka_component("big", "127.0.0.1:9092", &[("publishTopic", "t")]);
    for i in 0..10_000 {
        doc.push_str(&format!("  - {{name: extra{i}, value: v}}\n"));
    }
    let dir = components_dir(&[doc]);
    let started = std::time::Instant::now();
    let (components, errors) = outrigger::config::load(&[dir.path().to_path_buf()], "app");
    eprintln!("10,000 metadata items loaded in {:?}", started.elapsed());
    assert!(errors.is_empty(), "{errors:?}");
    let text = std::fs::read_to_string(&components[0].file).unwrap();
    let last_line = text
        .lines()
        .position(|l| l.contains("name: extra9999,"))
        .unwrap()
        + 1;
    assert_eq!(
        components[0].metadata.get_item("extra9999").unwrap().line,
        Some(last_line)
    );

    // 10,000 brokers would make librdkafka start thousands of threads: refused.
    let brokers: Vec<_> = (0..10_000)
        .map(|i| format!("10.0.{}.{}:9092", i / 250, i % 250))
        .collect();
    let doc = kafka_component("many", &brokers.join(","), &[("publishTopic", "t")]);
    let dir = components_dir(&[doc]);
    let e = start_error(dir.path(), "10,000 brokers").await;
    assert_eq!(e.exit_code(), 64, "{e}");
    let text = e.to_string();
    assert!(text.contains("field \"brokers\""), "{text}");
    assert!(text.contains("lists 10000 brokers; at most 100"), "{text}");
}
