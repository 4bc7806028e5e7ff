//! The one table of API errors: Dapr error code, HTTP status and gRPC code.

use http::StatusCode;
use tonic::Code;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    MalformedRequest,
    InvokeOutputBinding,
    Unauthorized,
    RequestTooLarge,
    NotImplemented,
    NotFound,
    RequestTimeout,
    MethodNotAllowed,
    /// daprd's answer to a path it does not route: it takes it for service
    /// invocation without an app id.
    DirectInvoke,
    TooManyRequests,
    UnsupportedMediaType,
}

/// (kind, errorCode, HTTP status, gRPC code)
#[rustfmt::skip]
const TABLE: &[(ErrorKind, &str, StatusCode, Code)] = &[
    (ErrorKind::MalformedRequest, "ERR_MALFORMED_REQUEST", StatusCode::BAD_REQUEST, Code::InvalidArgument),
    // daprd answers an unknown binding, an unsupported operation and a failed
    // write alike: HTTP 500, gRPC INTERNAL.
    (ErrorKind::InvokeOutputBinding, "ERR_INVOKE_OUTPUT_BINDING", StatusCode::INTERNAL_SERVER_ERROR, Code::Internal),
    (ErrorKind::Unauthorized, "ERR_UNAUTHORIZED", StatusCode::UNAUTHORIZED, Code::Unauthenticated),
    (ErrorKind::RequestTooLarge, "ERR_REQUEST_TOO_LARGE", StatusCode::PAYLOAD_TOO_LARGE, Code::ResourceExhausted),
    (ErrorKind::NotImplemented, "ERR_NOT_IMPLEMENTED", StatusCode::NOT_IMPLEMENTED, Code::Unimplemented),
    (ErrorKind::NotFound, "ERR_NOT_FOUND", StatusCode::NOT_FOUND, Code::NotFound),
    (ErrorKind::RequestTimeout, "ERR_REQUEST_TIMEOUT", StatusCode::REQUEST_TIMEOUT, Code::DeadlineExceeded),
    (ErrorKind::MethodNotAllowed, "ERR_METHOD_NOT_ALLOWED", StatusCode::METHOD_NOT_ALLOWED, Code::Unimplemented),
    (ErrorKind::DirectInvoke, "ERR_DIRECT_INVOKE", StatusCode::NOT_FOUND, Code::NotFound),
    // More output calls in flight than --max-output-calls-in-flight: answered at once.
    (ErrorKind::TooManyRequests, "ERR_TOO_MANY_REQUESTS", StatusCode::TOO_MANY_REQUESTS, Code::ResourceExhausted),
    // grpc-go's answer to a request on the gRPC port that is not gRPC.
    (ErrorKind::UnsupportedMediaType, "ERR_UNSUPPORTED_MEDIA_TYPE", StatusCode::UNSUPPORTED_MEDIA_TYPE, Code::InvalidArgument),
];

impl ErrorKind {
    fn row(self) -> &'static (ErrorKind, &'static str, StatusCode, Code) {
        TABLE
            .iter()
            .find(|r| r.0 == self)
            .expect("every kind has a row")
    }
    pub fn code(self) -> &'static str {
        self.row().1
    }
    pub fn http_status(self) -> StatusCode {
        self.row().2
    }
    pub fn grpc_code(self) -> Code {
        self.row().3
    }
}

/// An error answered to an API caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ApiError {
            kind,
            message: message.into(),
        }
    }

    pub fn malformed(why: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::MalformedRequest,
            format!("failed deserializing HTTP body: {why}"),
        )
    }

    pub fn invoke_output(binding: &str, cause: impl std::fmt::Display) -> Self {
        Self::new(
            ErrorKind::InvokeOutputBinding,
            format!("error invoking output binding {binding}: {cause}"),
        )
    }

    /// daprd's words: whether a token was presented at all is said (over gRPC,
    /// in the error details), the token itself never.
    pub fn unauthorized(presented: bool) -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            if presented {
                "authentication error: api token mismatch"
            } else {
                "missing api token in request metadata"
            },
        )
    }

    /// daprd's answer to a path it does not serve.
    pub fn no_route() -> Self {
        Self::new(
            ErrorKind::DirectInvoke,
            "failed getting app id either from the URL path or the header dapr-app-id",
        )
    }

    pub fn too_large(limit: usize) -> Self {
        Self::new(
            ErrorKind::RequestTooLarge,
            format!(
                "the request body exceeds the limit of {limit} bytes (--dapr-http-max-request-size)"
            ),
        )
    }

    pub fn too_many_in_flight(limit: usize) -> Self {
        Self::new(
            ErrorKind::TooManyRequests,
            format!(
                "too many output binding calls in flight (at most {limit}, --max-output-calls-in-flight); retry later"
            ),
        )
    }

    /// The gRPC status, with daprd's `google.rpc.ErrorInfo` details where daprd
    /// sends them (output binding and token errors).
    pub fn to_status(&self) -> tonic::Status {
        let code = self.kind.grpc_code();
        let (message, info) = match self.kind {
            ErrorKind::InvokeOutputBinding => (
                self.message.clone(),
                Some(ErrorInfo {
                    reason: self.kind.code().to_string(),
                    domain: DAPR_DOMAIN.to_string(),
                    metadata: Default::default(),
                }),
            ),
            ErrorKind::Unauthorized => (
                "Unauthorized".to_string(),
                Some(ErrorInfo {
                    reason: "Unauthorized".to_string(),
                    domain: DAPR_DOMAIN.to_string(),
                    metadata: [
                        ("http.code".to_string(), "401".to_string()),
                        ("http.error_message".to_string(), self.message.clone()),
                    ]
                    .into(),
                }),
            ),
            _ => (self.message.clone(), None),
        };
        let Some(info) = info else {
            return tonic::Status::new(code, message);
        };
        let details = RpcStatus {
            code: code as i32,
            message: message.clone(),
            details: vec![prost_types::Any {
                type_url: "type.googleapis.com/google.rpc.ErrorInfo".to_string(),
                value: prost::Message::encode_to_vec(&info),
            }],
        };
        tonic::Status::with_details(
            code,
            message,
            prost::Message::encode_to_vec(&details).into(),
        )
    }
}

const DAPR_DOMAIN: &str = "dapr.io";

/// `google.rpc.Status`, the payload of `grpc-status-details-bin`.
#[derive(Clone, PartialEq, prost::Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
    #[prost(message, repeated, tag = "3")]
    details: Vec<prost_types::Any>,
}

/// `google.rpc.ErrorInfo`.
#[derive(Clone, PartialEq, prost::Message)]
struct ErrorInfo {
    #[prost(string, tag = "1")]
    reason: String,
    #[prost(string, tag = "2")]
    domain: String,
    #[prost(map = "string, string", tag = "3")]
    metadata: std::collections::HashMap<String, String>,
}

impl ApiError {}

/// Names the Dapr building block an unserved API belongs to.
pub fn building_block(method: &str) -> &'static str {
    let m = method;
    if m.contains("Actor") || m.contains("Reminder") {
        "actors"
    } else if m.contains("Workflow") {
        "workflows"
    } else if m.contains("State") || m.contains("Transaction") {
        "state management"
    } else if m.contains("Publish") || m.contains("Subscribe") && m.contains("Topic") {
        "publish and subscribe"
    } else if m.contains("InvokeService") {
        "service invocation"
    } else if m.contains("Secret") {
        "secrets"
    } else if m.contains("Configuration") {
        "configuration"
    } else if m.contains("Lock") {
        "distributed lock"
    } else if m.contains("Job") {
        "jobs"
    } else if m.contains("Crypt") {
        "cryptography"
    } else if m.contains("Conversation") {
        "conversation"
    } else {
        "this API"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_one_row() {
        for kind in [
            ErrorKind::MalformedRequest,
            ErrorKind::InvokeOutputBinding,
            ErrorKind::Unauthorized,
            ErrorKind::RequestTooLarge,
            ErrorKind::NotImplemented,
            ErrorKind::NotFound,
            ErrorKind::RequestTimeout,
            ErrorKind::MethodNotAllowed,
            ErrorKind::DirectInvoke,
            ErrorKind::TooManyRequests,
            ErrorKind::UnsupportedMediaType,
        ] {
            assert_eq!(TABLE.iter().filter(|r| r.0 == kind).count(), 1, "{kind:?}");
        }
        assert_eq!(
            ErrorKind::MalformedRequest.http_status(),
            StatusCode::BAD_REQUEST
        );
        assert_eq!(ErrorKind::Unauthorized.grpc_code(), Code::Unauthenticated);
    }

    #[test]
    fn names_building_blocks() {
        assert_eq!(building_block("SaveState"), "state management");
        assert_eq!(building_block("PublishEvent"), "publish and subscribe");
        assert_eq!(
            building_block("SubscribeTopicEventsAlpha1"),
            "publish and subscribe"
        );
        assert_eq!(building_block("InvokeService"), "service invocation");
        assert_eq!(building_block("GetBulkSecret"), "secrets");
        assert_eq!(building_block("StartWorkflowBeta1"), "workflows");
        assert_eq!(building_block("RegisterActorReminder"), "actors");
    }
}
