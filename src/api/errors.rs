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

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorKind::Unauthorized,
            "authorization failed: the dapr-api-token is missing or wrong",
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

    pub fn to_status(&self) -> tonic::Status {
        tonic::Status::new(self.kind.grpc_code(), self.message.clone())
    }
}

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
