//! Apps that misbehave on the wire: an HTTP app that answers bytes that are not
//! HTTP, or hangs up mid-delivery; a gRPC app whose answer is not a valid
//! protobuf message. Nothing is lost or skipped, the partition waits, retries
//! back off (the gaps grow), and `/v1.0/metadata` shows the binding retrying
//! with the attempt and the cause.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use prost::Message;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use outrigger::app_channel::AppProtocol;
use outrigger::proto::runtime::v1::ListInputBindingsResponse;

use crate::support::*;

const DEADLINE: Duration = Duration::from_secs(60);
const RETRY: Duration = Duration::from_millis(100);

/// How the fake app answers a delivery of the poison offset while not released.
#[derive(Clone, Copy, Debug)]
enum Fault {
    /// Bytes that are not an HTTP response, then close.
    Garbage,
    /// Read the request, close without a word (a crash mid-delivery).
    HangUp,
}

/// What the fake app saw: (offset, when) of every delivery attempt, and the
/// offsets it accepted, in order.
#[derive(Default)]
struct Seen {
    attempts: Mutex<Vec<(i64, Instant)>>,
    accepted: Mutex<Vec<i64>>,
    released: AtomicBool,
}

impl Seen {
    fn attempts_at(&self, offset: i64) -> Vec<Instant> {
        let a = self.attempts.lock().unwrap();
        a.iter()
            .filter(|(o, _)| *o == offset)
            .map(|(_, t)| *t)
            .collect()
    }
    fn accepted(&self) -> Vec<i64> {
        self.accepted.lock().unwrap().clone()
    }
}

/// Reads one HTTP/1 request (head and content-length body) from `s`.
async fn read_request(s: &mut TcpStream) -> Option<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let len: usize = head
        .lines()
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("content-length")
                .then(|| v.trim().parse().ok())?
        })
        .unwrap_or(0);
    while buf.len() < head_end + len {
        let n = s.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    Some(head)
}

/// A raw-socket HTTP app: serves `OPTIONS`, accepts every delivery except
/// `poison`, which meets `fault` until the test releases it.
async fn raw_http_app(poison: i64, fault: Fault) -> (u16, Arc<Seen>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut sock, _)) = listener.accept().await else {
                return;
            };
            let seen = s2.clone();
            tokio::spawn(async move {
                while let Some(head) = read_request(&mut sock).await {
                    if head.starts_with("OPTIONS") {
                        let _ = sock
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                            .await;
                        continue;
                    }
                    let offset: i64 = head
                        .lines()
                        .find_map(|l| {
                            let (k, v) = l.split_once(':')?;
                            k.eq_ignore_ascii_case("__offset")
                                .then(|| v.trim().parse().ok())?
                        })
                        .expect("an __offset header");
                    seen.attempts.lock().unwrap().push((offset, Instant::now()));
                    if offset == poison && !seen.released.load(Ordering::SeqCst) {
                        match fault {
                            Fault::Garbage => {
                                let _ =
                                    sock.write_all(b"\x00\xffNOT HTTP AT ALL\r\n\r\n\x7f").await;
                            }
                            Fault::HangUp => {}
                        }
                        return; // drop the socket
                    }
                    seen.accepted.lock().unwrap().push(offset);
                    let _ = sock
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .await;
                }
            });
        }
    });
    (port, seen)
}

/// Drives one faulty app: offset 2 of 5 fails until the test has seen the
/// binding retrying in the metadata and at least 4 attempts; then it is
/// released and everything must arrive, in order, once each after the fault.
async fn survive(app_port: u16, protocol: AppProtocol, seen: Arc<Seen>, cause: &'static str) {
    const POISON: i64 = 2;
    let broker = Broker::start();
    let topic = unique("app-faults");
    broker.create_topic(&topic, 1);
    produce(&broker.addr(), &topic, numbered(5, 1)).await;
    let sidecar = start_sidecar(
        &[input_component(
            "faulty",
            &broker.addr(),
            &topic,
            &unique("group"),
            &[("consumeRetryInterval", "100ms"), ("direction", "input")],
        )],
        |c| {
            c.app_port = Some(app_port);
            c.app_protocol = protocol;
        },
    )
    .await;
    let http = sidecar.http();

    let status = wait_input_state(&http, "faulty", "retrying", DEADLINE).await;
    let detail = status["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains(&format!("@{POISON}")) && detail.contains("attempt"),
        "the detail names the offset and attempt: {detail}"
    );
    assert!(
        detail.to_lowercase().contains(cause),
        "the detail says why ({cause}): {detail}"
    );
    wait_cond("4 attempts at the poison offset", DEADLINE, || {
        seen.attempts_at(POISON).len() >= 4
    })
    .await;
    // The partition waits: nothing after the poison offset was offered.
    assert_eq!(seen.accepted(), vec![0, 1], "later messages wait");
    let times = seen.attempts_at(POISON);
    // Back-off, not a busy loop: each gap at least the doubled interval
    // (100, 200, 400 ms; lower bounds only, so a slow machine cannot fail this).
    for (i, pair) in times.windows(2).take(3).enumerate() {
        let gap = pair[1] - pair[0];
        let floor = RETRY * 2u32.pow(i as u32) - Duration::from_millis(20);
        assert!(gap >= floor, "gap {i} was {gap:?}, expected ≥ {floor:?}");
    }

    seen.released.store(true, Ordering::SeqCst);
    wait_cond("all five accepted", DEADLINE, || seen.accepted().len() >= 5).await;
    assert_eq!(
        seen.accepted(),
        vec![0, 1, 2, 3, 4],
        "in order, nothing skipped"
    );
    wait_input_state(&http, "faulty", "subscribed", DEADLINE).await;
    sidecar.stop().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_app_answering_garbage_loses_nothing_and_backs_off() {
    let (port, seen) = raw_http_app(2, Fault::Garbage).await;
    survive(port, AppProtocol::Http, seen, "unreachable").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn http_app_hanging_up_mid_delivery_loses_nothing_and_backs_off() {
    let (port, seen) = raw_http_app(2, Fault::HangUp).await;
    survive(port, AppProtocol::Http, seen, "closed").await;
}

/// A gRPC frame: flag 0, 4-byte big-endian length, the message.
fn grpc_frame(msg: &[u8]) -> Bytes {
    let mut v = Vec::with_capacity(5 + msg.len());
    v.push(0);
    v.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    v.extend_from_slice(msg);
    Bytes::from(v)
}

/// A gRPC app on bare HTTP/2: lists `faulty`; `OnBindingEvent` for the poison
/// offset answers grpc-status 0 with bytes that are not a `BindingEventResponse`.
async fn garbage_grpc_app(poison: i64) -> (u16, Arc<Seen>) {
    use hyper::service::service_fn;
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let seen = Arc::new(Seen::default());
    let s2 = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                return;
            };
            let seen = s2.clone();
            tokio::spawn(async move {
                let svc = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let seen = seen.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let body = req
                            .into_body()
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let payload: Bytes = if path.ends_with("/ListInputBindings") {
                            grpc_frame(
                                &ListInputBindingsResponse {
                                    bindings: vec!["faulty".into()],
                                }
                                .encode_to_vec(),
                            )
                        } else {
                            let event = outrigger::proto::runtime::v1::BindingEventRequest::decode(
                                body.get(5..).unwrap_or_default(),
                            )
                            .expect("a BindingEventRequest");
                            let offset: i64 = event.metadata["__offset"].parse().unwrap();
                            seen.attempts.lock().unwrap().push((offset, Instant::now()));
                            if offset == poison && !seen.released.load(Ordering::SeqCst) {
                                // Field 1 (a string) declared 100 bytes long, 3 present.
                                grpc_frame(b"\x0a\x64abc")
                            } else {
                                seen.accepted.lock().unwrap().push(offset);
                                grpc_frame(&[])
                            }
                        };
                        let mut trailers = http::HeaderMap::new();
                        trailers.insert("grpc-status", "0".parse().unwrap());
                        let frames = futures::stream::iter(vec![
                            Ok::<_, std::convert::Infallible>(Frame::data(payload)),
                            Ok(Frame::trailers(trailers)),
                        ]);
                        let resp = hyper::Response::builder()
                            .header("content-type", "application/grpc")
                            .body(StreamBody::new(frames))
                            .unwrap();
                        Ok::<_, std::convert::Infallible>(resp)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    (port, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn grpc_app_answering_garbage_loses_nothing_and_backs_off() {
    let (port, seen) = garbage_grpc_app(2).await;
    survive(port, AppProtocol::Grpc, seen, "decod").await;
}
