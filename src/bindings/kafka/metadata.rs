//! Typed metadata of `bindings.kafka`, parsed once at load time.

use std::fmt;
use std::time::Duration;

use crate::config::{Component, ConfigError, FieldReader, format_duration};

const DEFAULT_RETRY_INTERVAL: Duration = Duration::from_millis(100);
const DEFAULT_RETRY_MAX_INTERVAL: Duration = Duration::from_secs(10);
const DEFAULT_HEARTBEAT_INTERVAL: Duration = Duration::from_secs(3);
const DEFAULT_SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const DEFAULT_PRODUCE_TIMEOUT: Duration = Duration::from_secs(10);
/// Batching delay of the producer for calls that overlap others: 1 ms keeps
/// batches forming under load at a small latency cost (BENCHMARKS.md).
pub(crate) const DEFAULT_PRODUCER_LINGER: Duration = Duration::from_millis(1);
const DEFAULT_MAX_DELIVERY_ATTEMPTS: u32 = 5;
/// `maxInFlightPerPartition` when `deliveryOrder: key` does not say.
const DEFAULT_MAX_IN_FLIGHT_PER_PARTITION: u32 = 64;
/// Above this a partition would hold too many records in memory (twice this
/// many: in flight plus waiting behind a busy key).
const MAX_IN_FLIGHT_PER_PARTITION: u32 = 1024;
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
    /// SASL PLAIN or SCRAM (daprd's `password`).
    Password {
        username: String,
        password: Secret,
        mechanism: SaslMechanism,
    },
    /// TLS, with a client certificate when one is given (daprd's `mtls`).
    Mtls,
    /// TLS that trusts `caCert` (daprd's `certificate`).
    Certificate,
}

/// Transport security towards the brokers. Certificates and keys are PEM text,
/// as Dapr's metadata carries them (not file paths).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tls {
    pub ca_cert: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<Secret>,
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

/// How the records of one partition reach the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryOrder {
    /// One at a time, in offset order (daprd's model; the default).
    Partition,
    /// Records with the same key in offset order, different keys concurrently,
    /// at most `max_in_flight` deliveries per partition at once.
    Key { max_in_flight: u32 },
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
    /// `producerLinger` when given; without it a call alone in flight is sent
    /// at once and overlapping calls are batched for [`DEFAULT_PRODUCER_LINGER`].
    pub producer_linger: Option<Duration>,
    pub direction: Direction,
    pub route: String,
    /// URL-query-escape `__key` and header values given to the app (daprd's `escapeHeaders`).
    pub escape_headers: bool,
    /// Metadata keys kept out of record headers, and header keys kept out of
    /// event metadata (daprd's `excludeHeaderMetaRegex`).
    pub exclude_header_meta: Option<HeaderFilter>,
    pub dead_letter: Option<DeadLetter>,
    pub delivery_order: DeliveryOrder,
}

/// A compiled `excludeHeaderMetaRegex` (unanchored search, as Go's `MatchString`).
#[derive(Debug, Clone)]
pub struct HeaderFilter(regex::Regex);

impl HeaderFilter {
    pub fn excludes(&self, key: &str) -> bool {
        self.0.is_match(key)
    }
}

impl PartialEq for HeaderFilter {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for HeaderFilter {}

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
        let tls = parse_tls(r, &auth);

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

        // The one duration daprd reads as milliseconds when it is a bare number.
        let consume_retry_interval = match r.str("consumeRetryInterval").map(str::trim) {
            Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()) => {
                match v.parse::<u32>() {
                    Ok(ms) => Duration::from_millis(ms.into()),
                    Err(_) => {
                        r.error("consumeRetryInterval", format!("out of range: {v}"));
                        DEFAULT_RETRY_INTERVAL
                    }
                }
            }
            _ => r.duration("consumeRetryInterval", DEFAULT_RETRY_INTERVAL),
        };
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
        let producer_linger = r
            .str("producerLinger")
            .is_some()
            .then(|| r.duration("producerLinger", DEFAULT_PRODUCER_LINGER));
        if producer_linger.is_some_and(|l| l > Duration::from_secs(1)) {
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

        let delivery_order = parse_delivery_order(r);

        let exclude_header_meta = match r.str("excludeHeaderMetaRegex") {
            None | Some("") => None,
            Some(re) => match regex::RegexBuilder::new(re).size_limit(1 << 20).build() {
                Ok(re) => Some(HeaderFilter(re)),
                Err(e) => {
                    r.error(
                        "excludeHeaderMetaRegex",
                        format!("not a valid regular expression: {e}"),
                    );
                    None
                }
            },
        };

        let route = crate::bindings::read_route(r, &name);

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
            exclude_header_meta,
            dead_letter,
            delivery_order,
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

    /// Deliveries one partition may have in flight at once: 1 with
    /// `deliveryOrder: partition`, `maxInFlightPerPartition` with `key`.
    pub fn max_in_flight_per_partition(&self) -> u32 {
        match self.delivery_order {
            DeliveryOrder::Partition => 1,
            DeliveryOrder::Key { max_in_flight } => max_in_flight,
        }
    }

    /// True with `deliveryOrder: key`.
    pub fn key_ordered(&self) -> bool {
        matches!(self.delivery_order, DeliveryOrder::Key { .. })
    }

    pub fn is_output(&self) -> bool {
        if self.direction.explicit {
            self.direction.output
        } else {
            true
        }
    }
}

/// `deliveryOrder` (`partition` or `key`) and, with `key` only,
/// `maxInFlightPerPartition` (1 to MAX_IN_FLIGHT_PER_PARTITION).
fn parse_delivery_order(r: &mut FieldReader<'_>) -> DeliveryOrder {
    let key = match r.str("deliveryOrder").map(str::trim) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("partition") => false,
        Some(v) if v.eq_ignore_ascii_case("key") => true,
        Some(v) => {
            r.error(
                "deliveryOrder",
                format!("expected `partition` (one at a time per partition, the default) or `key` (in order per key, keys in parallel), got {v:?}"),
            );
            false
        }
    };
    let given = r.str("maxInFlightPerPartition").is_some();
    if !key {
        if given
            && r.str("deliveryOrder")
                .is_none_or(|v| v.trim().eq_ignore_ascii_case("partition"))
        {
            r.error(
                "maxInFlightPerPartition",
                "needs `deliveryOrder: key`: in partition order one record per partition is in flight",
            );
        }
        return DeliveryOrder::Partition;
    }
    let max_in_flight = if given {
        match r.number::<u64>("maxInFlightPerPartition") {
            Some(n) if n < 1 => {
                r.error("maxInFlightPerPartition", "must be at least 1");
                DEFAULT_MAX_IN_FLIGHT_PER_PARTITION
            }
            Some(n) if n > u64::from(MAX_IN_FLIGHT_PER_PARTITION) => {
                r.error(
                    "maxInFlightPerPartition",
                    format!("must be at most {MAX_IN_FLIGHT_PER_PARTITION}, got {n}"),
                );
                DEFAULT_MAX_IN_FLIGHT_PER_PARTITION
            }
            Some(n) => n as u32,
            // `number` has said why.
            None => DEFAULT_MAX_IN_FLIGHT_PER_PARTITION,
        }
    } else {
        DEFAULT_MAX_IN_FLIGHT_PER_PARTITION
    };
    DeliveryOrder::Key { max_in_flight }
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
            // As daprd: with a password it means SASL, without one mTLS.
            Some(true) if r.str("saslPassword").is_some_and(|p| !p.is_empty()) => "password".into(),
            Some(true) => "mtls".into(),
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
        "mtls" => Auth::Mtls,
        "certificate" => Auth::Certificate,
        "oidc" | "oidc_private_key_jwt" | "awsiam" => {
            r.error(
                "authType",
                format!("`{auth_type}` is not supported; use none, password, mtls or certificate"),
            );
            Auth::None
        }
        other => {
            r.error(
                "authType",
                format!("unknown authType {other:?}; expected none, password, mtls or certificate"),
            );
            Auth::None
        }
    }
}

/// daprd's rules: TLS is on for every authType but `none`, unless `disableTls`;
/// a client certificate is used with `mtls` only. What would be ignored is said.
fn parse_tls(r: &mut FieldReader<'_>, auth: &Auth) -> Option<Tls> {
    let disable_tls = r.bool("disableTls", false);
    let skip_verify = r.bool("skipVerify", false);
    let ca_cert = pem_field(r, "caCert", "CERTIFICATE");
    let client_cert = pem_field(r, "clientCert", "CERTIFICATE");
    let client_key = pem_field(r, "clientKey", "PRIVATE KEY");
    let name = &r.component().name;
    let ignored = |r: &FieldReader<'_>, fields: &[&str], why: &str| {
        for f in fields {
            if r.str(f).is_some() {
                tracing::warn!(binding.name = %name, field = *f, "metadata field has no effect: {why}");
            }
        }
    };
    match auth {
        Auth::None => {
            ignored(
                r,
                &["caCert", "clientCert", "clientKey", "skipVerify"],
                "authType is none, so the connection is plaintext (use authType certificate or mtls for TLS)",
            );
            None
        }
        Auth::Password { .. } => {
            ignored(
                r,
                &["clientCert", "clientKey"],
                "a client certificate is only sent with authType mtls",
            );
            if disable_tls {
                ignored(r, &["caCert", "skipVerify"], "disableTls is true");
                return None;
            }
            Some(Tls {
                ca_cert,
                client_cert: None,
                client_key: None,
                skip_verify,
            })
        }
        Auth::Mtls => {
            if disable_tls {
                r.error(
                    "disableTls",
                    "authType mtls needs TLS: disableTls cannot be true",
                );
            }
            if client_cert.is_some() != client_key.is_some() {
                // Named at the one given, so the error points at a line of the file.
                let (given, missing) = if client_cert.is_some() {
                    ("clientCert", "clientKey")
                } else {
                    ("clientKey", "clientCert")
                };
                r.error(
                    given,
                    format!("{missing} is missing: clientCert and clientKey are given together or not at all"),
                );
            }
            Some(Tls {
                ca_cert,
                client_cert,
                client_key: client_key.map(Secret),
                skip_verify,
            })
        }
        Auth::Certificate => {
            if ca_cert.is_none() && r.str("caCert").is_none() {
                r.error(
                    "caCert",
                    "required for authType certificate (the CA to trust, PEM)",
                );
            }
            if disable_tls {
                r.error(
                    "disableTls",
                    "authType certificate is TLS: disableTls cannot be true",
                );
            }
            ignored(
                r,
                &["clientCert", "clientKey"],
                "a client certificate is only sent with authType mtls",
            );
            Some(Tls {
                ca_cert,
                client_cert: None,
                client_key: None,
                skip_verify,
            })
        }
    }
}

/// A PEM value (certificate or key text): refused when it holds no PEM block of
/// the expected kind, so a file path or a truncated secret fails at load time.
fn pem_field(r: &mut FieldReader<'_>, field: &str, kind: &str) -> Option<String> {
    let v = r.str(field)?.trim();
    if v.is_empty() {
        return None;
    }
    let begin = v.find("-----BEGIN ");
    let ok = begin.is_some_and(|b| {
        let label_end = v[b + 11..].find("-----").map(|e| b + 11 + e);
        label_end.is_some_and(|e| {
            let label = &v[b + 11..e];
            label.ends_with(kind) && v[e..].contains(&format!("-----END {label}-----"))
        })
    });
    if !ok {
        // Never echo the value: it may be a key.
        r.error(
            field,
            format!("expected PEM text (-----BEGIN ...{kind}----- ... -----END ...{kind}-----), not a file path or other text"),
        );
        return None;
    }
    Some(v.to_string())
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::KafkaMetadata;

    fn parse(extra: &str) -> Result<KafkaMetadata, Vec<crate::config::ConfigError>> {
        let text = format!(
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: k\nspec:\n  type: bindings.kafka\n  version: v1\n  metadata:\n  - name: brokers\n    value: localhost:9092\n  - name: publishTopic\n    value: t\n  - name: authType\n    value: none\n{extra}"
        );
        let (components, errors) = crate::config::load_str(Path::new("k.yaml"), &text, "app");
        assert!(errors.is_empty(), "{errors:?}");
        KafkaMetadata::parse(&components[0])
    }

    #[test]
    fn producer_linger_is_adaptive_unless_given() {
        assert_eq!(parse("").unwrap().producer_linger, None);
        let given = parse("  - name: producerLinger\n    value: 0ms\n").unwrap();
        assert_eq!(given.producer_linger, Some(Duration::ZERO));
        let given = parse("  - name: producerLinger\n    value: 5ms\n").unwrap();
        assert_eq!(given.producer_linger, Some(Duration::from_millis(5)));
        let errors = parse("  - name: producerLinger\n    value: 2s\n").unwrap_err();
        assert!(
            errors
                .iter()
                .any(|e| e.to_string().contains("producerLinger")),
            "{errors:?}"
        );
    }
}
