//! Typed metadata of `bindings.kafka`, parsed once at load time.

use std::fmt;
use std::time::Duration;

use crate::config::{Component, ConfigError, FieldReader, format_duration};

const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Batching delay of the producer: 1 ms keeps batches forming under load at a
/// small latency cost; 0 gives the lowest latency for light traffic (BENCHMARKS.md).
const DEFAULT_PRODUCER_LINGER: Duration = Duration::from_millis(1);
const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;
/// Most seed brokers one component may list (librdkafka runs a thread for each).
pub const MAX_BROKERS: usize = 100;

/// Fields Dapr's Kafka binding knows that librdkafka does not need; accepted silently.
const IGNORED: &[&str] = &[
    "version",
    "consumerID",
    "consumerFetchMin",
    "consumerFetchDefault",
    "channelBufferSize",
    "clientConnectionTopicMetadataRefreshInterval",
    "clientConnectionKeepAliveInterval",
    "schemaCachingEnabled",
    "schemaLatestVersionCacheTTL",
    "excludeHeaderMetaRegex",
];

/// A secret value: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    Plain,
    ScramSha256,
    ScramSha512,
}

impl SaslMechanism {
    pub fn librdkafka_name(self) -> &'static str {
        match self {
            SaslMechanism::Plain => "PLAIN",
            SaslMechanism::ScramSha256 => "SCRAM-SHA-256",
            SaslMechanism::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Auth {
    None,
    Password {
        username: String,
        password: Secret,
        mechanism: SaslMechanism,
    },
}

/// Transport security towards the brokers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca_cert: Option<String>,
    pub skip_verify: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InitialOffset {
    Newest,
    Oldest,
}

/// Which ways the binding is used; `explicit` when the component says so.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Direction {
    pub input: bool,
    pub output: bool,
    pub explicit: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeadLetter {
    pub topic: String,
    pub max_attempts: u32,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaMetadata {
    pub brokers: String,
    pub topics: Vec<String>,
    pub consumer_group: Option<String>,
    pub publish_topic: Option<String>,
    pub auth: Auth,
    pub tls: Option<Tls>,
    pub initial_offset: InitialOffset,
    pub client_id: Option<String>,
    pub max_message_bytes: Option<u64>,
    pub compression: Option<&'static str>,
    pub assignment_strategy: Option<&'static str>,
    pub consume_retry_interval: Duration,
    pub consume_retry_max_interval: Duration,
    pub heartbeat_interval: Duration,
    pub session_timeout: Duration,
    pub produce_timeout: Duration,
    pub producer_linger: Duration,
    pub direction: Direction,
    pub route: String,
    pub escape_headers: bool,
    pub dead_letter: Option<DeadLetter>,
}

impl KafkaMetadata {
    pub fn parse(component: &Component) -> Result<Self, Vec<ConfigError>> {
        let mut reader = FieldReader::new(component);
        let r = &mut reader;
        let name = component.name.clone();
        let brokers = r
            .required("brokers", "a comma-separated list of host:port")
            .map(|b| {
                b.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default();
        // librdkafka starts a thread per broker listed: bound what one component costs.
        let listed = brokers.split(',').filter(|b| !b.is_empty()).count();
        if listed > MAX_BROKERS {
            r.error(
                "brokers",
                format!("lists {listed} brokers; at most {MAX_BROKERS} (a few seed brokers are enough: the client learns the rest)"),
            );
        }
        for broker in brokers
            .split(',')
            .filter(|b| !b.is_empty())
            .take(MAX_BROKERS)
        {
            let host_port = broker.rsplit_once(':');
            if host_port.is_none_or(|(h, p)| h.is_empty() || p.parse::<u16>().is_err()) {
                r.error("brokers", format!("{broker:?} is not host:port"));
            }
        }

        let direction = parse_direction(r);
        let topics = r.list("topics");
        let consumer_group = r.str("consumerGroup").map(str::to_string);
        let publish_topic = r.str("publishTopic").map(str::to_string);
        if direction.explicit && direction.input {
            if topics.is_empty() {
                r.error(
                    "topics",
                    "required for an input binding (`direction` names input)",
                );
            }
            if consumer_group.is_none() {
                r.error(
                    "consumerGroup",
                    "required for an input binding (`direction` names input)",
                );
            }
        }
        if direction.explicit && direction.output && publish_topic.is_none() {
            r.error(
                "publishTopic",
                "required for an output binding (`direction` names output)",
            );
        }
        if !topics.is_empty() && consumer_group.is_none() && !direction.explicit {
            r.error(
                "consumerGroup",
                "`topics` is set, so the binding consumes: a consumer group is required",
            );
        }

        let auth = parse_auth(r);
        let disable_tls = r.bool("disableTls", false);
        let skip_verify = r.bool("skipVerify", false);
        let ca_cert = r.str("caCert").map(str::to_string);
        // As Dapr: password auth goes over TLS unless `disableTls`; no auth is plaintext
        // unless a CA certificate is given.
        let tls = match (&auth, disable_tls) {
            (_, true) => None,
            (Auth::Password { .. }, false) => Some(Tls {
                ca_cert,
                skip_verify,
            }),
            (Auth::None, false) => ca_cert.map(|ca| Tls {
                ca_cert: Some(ca),
                skip_verify,
            }),
        };

        let initial_offset = match r.str("initialOffset") {
            None => InitialOffset::Newest,
            Some(v) => match v.to_ascii_lowercase().as_str() {
                "newest" | "latest" => InitialOffset::Newest,
                "oldest" | "earliest" => InitialOffset::Oldest,
                // The value as written, so the user can find it.
                _ => {
                    r.error(
                        "initialOffset",
                        format!("expected `newest` or `oldest`, got {v:?}"),
                    );
                    InitialOffset::Newest
                }
            },
        };
        let compression = match r.str("compression").map(str::to_ascii_lowercase).as_deref() {
            None | Some("none") => None,
            Some("gzip") => Some("gzip"),
            Some("snappy") => Some("snappy"),
            Some("lz4") => Some("lz4"),
            Some("zstd") => Some("zstd"),
            Some(other) => {
                r.error(
                    "compression",
                    format!("expected none, gzip, snappy, lz4 or zstd, got {other:?}"),
                );
                None
            }
        };
        let assignment_strategy = match r
            .str("consumerGroupRebalanceStrategy")
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None => None,
            Some("range") => Some("range"),
            Some("roundrobin") => Some("roundrobin"),
            Some("sticky") => {
                // librdkafka's sticky assignor is cooperative; outrigger's consumer is built
                // for eager rebalances, where order guarantees are simplest to keep.
                tracing::warn!(binding.name = %name, "consumerGroupRebalanceStrategy sticky is served as range");
                Some("range")
            }
            Some(other) => {
                r.error(
                    "consumerGroupRebalanceStrategy",
                    format!("expected range, sticky or roundrobin, got {other:?}"),
                );
                None
            }
        };

        let consume_retry_interval = r.duration("consumeRetryInterval", DEFAULT_RETRY_INTERVAL);
        let consume_retry_max_interval = r.duration(
            "consumeRetryMaxInterval",
            DEFAULT_RETRY_MAX_INTERVAL.max(consume_retry_interval),
        );
        if consume_retry_interval.is_zero() {
            r.error("consumeRetryInterval", "must be greater than zero");
        }
        if r.str("consumeRetryEnabled").is_some() && !r.bool("consumeRetryEnabled", true) {
            tracing::warn!(
                binding.name = %name,
                "consumeRetryEnabled=false is ignored: outrigger never skips a failed message; \
                 set deadLetterTopic and maxDeliveryAttempts to move poison messages aside"
            );
        }
        let heartbeat_interval = r.duration("heartbeatInterval", DEFAULT_HEARTBEAT_INTERVAL);
        let session_timeout = r.duration("sessionTimeout", DEFAULT_SESSION_TIMEOUT);
        if heartbeat_interval >= session_timeout {
            // Name the field that was written; both may be defaults only in part.
            let field = if r.str("heartbeatInterval").is_some() {
                "heartbeatInterval"
            } else {
                "sessionTimeout"
            };
            r.error(
                field,
                format!(
                    "heartbeatInterval ({}) must be shorter than sessionTimeout ({})",
                    format_duration(heartbeat_interval),
                    format_duration(session_timeout)
                ),
            );
        }
        let producer_linger = r.duration("producerLinger", DEFAULT_PRODUCER_LINGER);
        if producer_linger > Duration::from_secs(1) {
            r.error(
                "producerLinger",
                "must be at most 1s (each call waits for its batch)",
            );
        }
        let produce_timeout = r.duration("produceTimeout", DEFAULT_PRODUCE_TIMEOUT);
        if produce_timeout.is_zero() {
            r.error("produceTimeout", "must be greater than zero");
        }

        let dead_letter = match r.str("deadLetterTopic") {
            None => {
                if r.str("maxDeliveryAttempts").is_some() {
                    r.error("maxDeliveryAttempts", "needs `deadLetterTopic`: without it a message is retried until it is delivered");
                }
                None
            }
            Some(topic) => {
                let max_attempts = r
                    .number::<u32>("maxDeliveryAttempts")
                    .unwrap_or(DEFAULT_MAX_DELIVERY_ATTEMPTS);
                if max_attempts == 0 {
                    r.error("maxDeliveryAttempts", "must be at least 1");
                }
                if topics.iter().any(|t| t == topic) {
                    r.error(
                        "deadLetterTopic",
                        "must not be one of `topics` (poison messages would loop)",
                    );
                }
                Some(DeadLetter {
                    topic: topic.to_string(),
                    max_attempts,
                })
            }
        };

        let route = r
            .str("route")
            .map(|s| s.trim_start_matches('/').to_string())
            .unwrap_or_else(|| name.clone());

        let meta = KafkaMetadata {
            brokers,
            topics,
            consumer_group,
            publish_topic,
            auth,
            tls,
            initial_offset,
            client_id: r.str("clientID").map(str::to_string),
            max_message_bytes: r.number("maxMessageBytes"),
            compression,
            assignment_strategy,
            consume_retry_interval,
            consume_retry_max_interval,
            heartbeat_interval,
            session_timeout,
            produce_timeout,
            producer_linger,
            direction,
            route,
            escape_headers: r.bool("escapeHeaders", false),
            dead_letter,
        };
        reader.accept_unused(IGNORED);
        reader.finish(meta)
    }

    /// Consumes when told so, or when topics and a group are given (Dapr's rule).
    pub fn is_input(&self) -> bool {
        if self.direction.explicit {
            self.direction.input
        } else {
            !self.topics.is_empty() && self.consumer_group.is_some()
        }
    }

    pub fn is_output(&self) -> bool {
        if self.direction.explicit {
            self.direction.output
        } else {
            true
        }
    }
}

fn parse_direction(r: &mut FieldReader<'_>) -> Direction {
    match r.str("direction") {
        None => Direction {
            input: true,
            output: true,
            explicit: false,
        },
        Some(v) => {
            let mut d = Direction {
                input: false,
                output: false,
                explicit: true,
            };
            let mut unknown = Vec::new();
            for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                match part.to_ascii_lowercase().as_str() {
                    "input" => d.input = true,
                    "output" => d.output = true,
                    _ => unknown.push(part),
                }
            }
            // One error per field: a wrong word already explains why nothing was named.
            if !unknown.is_empty() {
                r.error(
                    "direction",
                    format!(
                        "expected `input`, `output` or `input, output`, got {}",
                        unknown
                            .iter()
                            .map(|u| format!("{u:?}"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
            } else if !d.input && !d.output {
                r.error("direction", "names neither input nor output");
            }
            d
        }
    }
}

fn parse_auth(r: &mut FieldReader<'_>) -> Auth {
    let auth_type = match (r.str("authType"), r.str("authRequired")) {
        (Some(t), _) => t.to_ascii_lowercase(),
        // Legacy field: authRequired "true" meant SASL password.
        (None, Some(req)) => match crate::config::parse_bool(req) {
            Some(true) => "password".into(),
            Some(false) => "none".into(),
            None => {
                r.error(
                    "authRequired",
                    format!("expected true or false, got {req:?}"),
                );
                "none".into()
            }
        },
        (None, None) => "none".into(),
    };
    match auth_type.as_str() {
        "none" => Auth::None,
        "password" => {
            let username = r
                .required("saslUsername", "needed for authType password")
                .unwrap_or_default()
                .to_string();
            let password = r
                .required("saslPassword", "needed for authType password")
                .unwrap_or_default()
                .to_string();
            let mechanism = match r.str("saslMechanism") {
                None => SaslMechanism::Plain,
                Some(v) => match v.to_ascii_uppercase().as_str() {
                    "PLAIN" | "PLAINTEXT" => SaslMechanism::Plain,
                    "SHA-256" | "SCRAM-SHA-256" => SaslMechanism::ScramSha256,
                    "SHA-512" | "SCRAM-SHA-512" => SaslMechanism::ScramSha512,
                    _ => {
                        r.error(
                            "saslMechanism",
                            format!("expected PLAIN, SHA-256 or SHA-512, got {v:?}"),
                        );
                        SaslMechanism::Plain
                    }
                },
            };
            Auth::Password {
                username,
                password: Secret(password),
                mechanism,
            }
        }
        "mtls" => {
            r.error(
                "authType",
                "`mtls` is not supported yet; use `none` or `password` (SASL PLAIN/SCRAM over TLS)",
            );
            Auth::None
        }
        "oidc" | "oidc_private_key_jwt" | "awsiam" | "certificate" => {
            r.error(
                "authType",
                format!("`{auth_type}` is not supported; use `none` or `password`"),
            );
            Auth::None
        }
        other => {
            r.error(
                "authType",
                format!("unknown authType {other:?}; expected none or password"),
            );
            Auth::None
        }
    }
}
