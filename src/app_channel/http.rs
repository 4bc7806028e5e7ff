//! HTTP app channel: `OPTIONS /{route}` to ask, `POST /{route}` to deliver.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{AppChannel, AppReply, AppTarget, ChannelError, Wanted};
use crate::bindings::{BindingEvent, BoxFuture, DeliveryError};

const TRACEPARENT: &str = crate::otlp::TRACEPARENT;

/// Largest reply body read from the app.
const MAX_REPLY_BYTES: usize = 4 << 20;

/// Headers that frame the request or belong to the connection. Event metadata
/// (any producer's Kafka headers) must not set them: a stray `content-length`
/// or `transfer-encoding` would garble the request, so the message could never
/// be delivered and would block its partition.
const RESERVED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "trailer",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "upgrade",
];

pub struct HttpChannel {
    client: Client<HttpConnector, Full<Bytes>>,
    base: String,
    token: Option<HeaderValue>,
    timeout: Duration,
}

impl HttpChannel {
    pub fn new(target: &AppTarget) -> Self {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(5)));
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        let host = if target.address.contains(':') {
            format!("[{}]", target.address)
        } else {
            target.address.clone()
        };
        HttpChannel {
            client,
            base: format!("http://{host}:{}", target.port),
            token: target
                .token
                .as_deref()
                .and_then(|t| HeaderValue::from_str(t).ok()),
            timeout: target.timeout,
        }
    }

    fn url(&self, route: &str) -> String {
        format!("{}/{}", self.base, route.trim_start_matches('/'))
    }

    async fn options(&self, route: &str) -> Result<StatusCode, String> {
        // daprd's probe carries a JSON content type, and apps may route on it.
        let mut req = Request::builder()
            .method(Method::OPTIONS)
            .uri(self.url(route))
            .header(CONTENT_TYPE, "application/json");
        if let Some(t) = &self.token {
            req = req.header("dapr-api-token", t.clone());
        }
        let req = req
            .body(Full::new(Bytes::new()))
            .map_err(|e| e.to_string())?;
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| format!("no answer within {:?}", self.timeout))?
            .map_err(|e| e.to_string())?;
        Ok(resp.status())
    }
}

/// A header value that HTTP accepts: the text itself (UTF-8 passes as bytes), or
/// percent-encoded when it holds control characters.
pub(crate) fn header_value(v: &str) -> HeaderValue {
    HeaderValue::from_bytes(v.as_bytes()).unwrap_or_else(|_| {
        let mut out = String::with_capacity(v.len() * 3);
        for b in v.bytes() {
            if (0x20..0x7f).contains(&b) && b != b'%' {
                out.push(b as char);
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        HeaderValue::from_str(&out).unwrap_or_else(|_| HeaderValue::from_static(""))
    })
}

#[derive(Deserialize)]
struct Reply<'a> {
    #[serde(default)]
    to: Vec<String>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(default)]
    concurrency: Option<String>,
}

fn parse_reply(body: &Bytes) -> AppReply {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return AppReply::default();
    }
    match serde_json::from_slice::<Reply<'_>>(body) {
        Ok(r) if !r.to.is_empty() => AppReply {
            to: r.to,
            data: r
                .data
                .map(|d| crate::json::compact(body, d.get()))
                .unwrap_or_else(|| Bytes::from_static(b"null")),
            parallel: r
                .concurrency
                .is_some_and(|c| c.eq_ignore_ascii_case("parallel")),
        },
        _ => AppReply::default(),
    }
}

impl AppChannel for HttpChannel {
    fn subscriptions<'a>(
        &'a self,
        wanted: &'a [Wanted],
    ) -> BoxFuture<'a, Result<HashMap<String, String>, ChannelError>> {
        Box::pin(async move {
            let mut served = HashMap::new();
            for w in wanted {
                match self.options(&w.route).await {
                    Ok(s) if s.is_success() || s == StatusCode::METHOD_NOT_ALLOWED => {
                        served.insert(w.name.clone(), w.name.clone());
                    }
                    Ok(s) => {
                        tracing::info!(binding.name = %w.name, "app does not serve input binding {} (OPTIONS /{} answered {s}): not consuming it", w.name, w.route);
                    }
                    Err(e) => {
                        return Err(ChannelError::Discovery(format!(
                            "OPTIONS /{}: {e}",
                            w.route
                        )));
                    }
                }
            }
            Ok(served)
        })
    }

    fn deliver<'a>(
        &'a self,
        _app_name: &'a str,
        route: &'a str,
        event: &'a BindingEvent,
    ) -> BoxFuture<'a, Result<AppReply, DeliveryError>> {
        Box::pin(async move {
            let mut req = Request::builder().method(Method::POST).uri(self.url(route));
            let headers = req.headers_mut().expect("fresh builder");
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            for (k, v) in &event.metadata {
                match HeaderName::from_bytes(k.as_bytes()) {
                    Ok(name) if RESERVED_HEADERS.contains(&name.as_str()) => {
                        tracing::debug!(header = %k, "metadata key names an HTTP framing header; not sent")
                    }
                    Ok(name) => {
                        headers.insert(name, header_value(v));
                    }
                    Err(_) => {
                        tracing::debug!(header = %k, "metadata key is not a valid HTTP header name; not sent")
                    }
                }
            }
            if let Some(t) = &self.token {
                headers.insert("dapr-api-token", t.clone());
            }
            // As daprd: a delivery always carries trace context.
            if !headers.contains_key(TRACEPARENT)
                && let Ok(v) = HeaderValue::from_str(&crate::otlp::unsampled_traceparent())
            {
                headers.insert(TRACEPARENT, v);
            }
            let req = req
                .body(Full::new(event.data.clone()))
                .map_err(|e| DeliveryError::Rejected(format!("cannot build the request: {e}")))?;
            let exchange = async {
                let resp = self
                    .client
                    .request(req)
                    .await
                    .map_err(|e| DeliveryError::Unreachable(error_chain(&e)))?;
                let status = resp.status();
                let body = Limited::new(resp.into_body(), MAX_REPLY_BYTES)
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                Ok::<_, DeliveryError>((status, body))
            };
            let (status, body) = tokio::time::timeout(self.timeout, exchange)
                .await
                .map_err(|_| DeliveryError::Timeout(self.timeout))??;
            if status.is_success() {
                Ok(parse_reply(&body))
            } else {
                let snippet = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
                Err(DeliveryError::Rejected(
                    format!("HTTP {status} {snippet}").trim_end().to_string(),
                ))
            }
        })
    }
}

/// An error and its sources, joined by ": " (hyper's own message alone says little).
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_values_are_made_safe() {
        assert_eq!(header_value("plain value"), "plain value");
        assert_eq!(header_value("a\nb"), "a%0Ab");
        assert_eq!(header_value("café").as_bytes(), "café".as_bytes());
    }

    #[test]
    fn reply_with_to_is_forwarded() {
        let body =
            Bytes::from_static(br#"{"to": ["out"], "data": {"a": 1}, "concurrency": "parallel"}"#);
        let r = parse_reply(&body);
        assert_eq!(r.to, vec!["out".to_string()]);
        assert_eq!(&r.data[..], br#"{"a":1}"#);
        assert!(r.parallel);
        assert!(parse_reply(&Bytes::from_static(b"OK")).to.is_empty());
        assert!(parse_reply(&Bytes::new()).to.is_empty());
    }
}
