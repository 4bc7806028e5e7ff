//! `bindings.kafka`: output (produce, acknowledged by the broker before the reply)
//! and input (consumer-group member, per-partition order, at-least-once).

mod input;
mod metadata;
mod output;
mod producer;

pub use input::KafkaInput;
pub use metadata::{
    Auth, DeadLetter, Direction, InitialOffset, KafkaMetadata, SaslMechanism, Secret, Tls,
};
pub use output::KafkaOutput;

use std::sync::Arc;

use crate::bindings::{
    BindingError, BindingPlan, BindingType, InputBinding, InputInit, OutputBinding, OutputInit,
};
use crate::config::{Component, ConfigError};

/// `bindings.kafka` in the registry.
pub struct KafkaType;

impl BindingType for KafkaType {
    fn name(&self) -> &'static str {
        "bindings.kafka"
    }

    fn plan(&self, component: &Component) -> Result<Box<dyn BindingPlan>, Vec<ConfigError>> {
        Ok(Box::new(KafkaPlan(Arc::new(KafkaMetadata::parse(
            component,
        )?))))
    }

    fn prewarm(&self) {
        use rdkafka::bindings as rdsys;
        // librdkafka's once-per-process set-up (CRC32C tables, OpenSSL) runs
        // in the first rd_kafka_new otherwise, on the start-up's critical path
        // (0.5 ms here). Setting a certificate does it first of all ("make
        // sure OpenSSL is loaded"); a null buffer on a throwaway
        // configuration then only clears what is not there.
        let mut errstr = [0 as std::ffi::c_char; 256];
        // SAFETY: a configuration of our own, destroyed here; errstr is ours
        // and its size is passed.
        unsafe {
            let conf = rdsys::rd_kafka_conf_new();
            rdsys::rd_kafka_conf_set_ssl_cert(
                conf,
                rdsys::rd_kafka_cert_type_t::RD_KAFKA_CERT_CA,
                rdsys::rd_kafka_cert_enc_t::RD_KAFKA_CERT_ENC_PEM,
                std::ptr::null(),
                0,
                errstr.as_mut_ptr(),
                errstr.len(),
            );
            rdsys::rd_kafka_conf_destroy(conf);
        }
    }
}

/// A Kafka component's checked metadata.
#[derive(Debug)]
struct KafkaPlan(Arc<KafkaMetadata>);

impl BindingPlan for KafkaPlan {
    fn input_route(&self) -> Option<&str> {
        self.0.is_input().then_some(self.0.route.as_str())
    }

    fn input_is_explicit(&self) -> bool {
        self.0.direction.explicit && self.0.direction.input
    }

    fn output(
        &self,
        name: &str,
        init: OutputInit,
    ) -> Result<Option<Arc<dyn OutputBinding>>, BindingError> {
        if !self.0.is_output() {
            return Ok(None);
        }
        // Listed as an output binding, as daprd lists it, but with nothing
        // to write to there is no producer to build.
        if self.0.publish_topic.is_none() {
            return Ok(Some(Arc::new(output::NoTopicOutput::new(name))));
        }
        Ok(Some(Arc::new(KafkaOutput::new(
            name,
            self.0.clone(),
            init,
        )?)))
    }

    fn input(
        &self,
        name: &str,
        init: InputInit,
    ) -> Result<Option<Box<dyn InputBinding>>, BindingError> {
        if !self.0.is_input() {
            return Ok(None);
        }
        Ok(Some(Box::new(KafkaInput::new(name, self.0.clone(), init)?)))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        &*self.0
    }
}

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use rdkafka::ClientConfig;
use rdkafka::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};

/// librdkafka settings shared by producers and consumers of one component.
pub(crate) fn client_config(binding: &str, meta: &KafkaMetadata) -> ClientConfig {
    let mut c = ClientConfig::new();
    c.set("bootstrap.servers", &meta.brokers)
        .set(
            "client.id",
            meta.client_id
                .clone()
                .unwrap_or_else(|| format!("outrigger-{binding}")),
        )
        // After a broker restart, reconnect within a second instead of backing
        // off up to 10 s: records waiting for a retry are timed out only by their
        // broker's thread, so the backoff would also stretch `produceTimeout`.
        .set("reconnect.backoff.max.ms", "1000")
        // No KIP-714 metrics push to the broker (librdkafka's default is on):
        // outrigger exports its own metrics, and daprd's client pushes none.
        // On, it costs six latency histograms per broker connection, made on
        // the start-up's path, and a telemetry request per connection.
        .set("enable.metrics.push", "false")
        // librdkafka logs through our context at the level we choose.
        .set_log_level(RDKafkaLogLevel::Info);
    let tls = meta.tls.is_some();
    match &meta.auth {
        Auth::Password {
            username,
            password,
            mechanism,
        } => {
            c.set(
                "security.protocol",
                if tls { "sasl_ssl" } else { "sasl_plaintext" },
            )
            .set("sasl.mechanism", mechanism.librdkafka_name())
            .set("sasl.username", username)
            .set("sasl.password", password.expose());
        }
        Auth::None | Auth::Mtls | Auth::Certificate => {
            c.set("security.protocol", if tls { "ssl" } else { "plaintext" });
        }
    }
    if let Some(t) = &meta.tls {
        if let Some(ca) = &t.ca_cert {
            c.set("ssl.ca.pem", ca);
        }
        if let (Some(cert), Some(key)) = (&t.client_cert, &t.client_key) {
            c.set("ssl.certificate.pem", cert)
                .set("ssl.key.pem", key.expose());
        }
        if t.skip_verify {
            // Neither the chain nor the host name is checked, as Go's InsecureSkipVerify.
            c.set("enable.ssl.certificate.verification", "false")
                .set("ssl.endpoint.identification.algorithm", "none");
        }
    }
    if let Some(max) = meta.max_message_bytes {
        c.set("message.max.bytes", max.to_string());
    }
    c
}

/// Tracks whether the brokers are reachable, from librdkafka's error callback and probes.
#[derive(Debug, Default)]
pub(crate) struct BrokerHealth {
    down: AtomicBool,
    /// The brokers answered but refused us (login, certificate): set with `down`.
    refused: AtomicBool,
    reason: Mutex<String>,
}

impl BrokerHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Acquire)
    }

    pub fn problem(&self) -> Option<String> {
        self.is_down().then(|| {
            self.reason
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        })
    }

    /// Why the brokers refuse us (login, certificate), while they do: calls fail
    /// at once with it. A mere outage is not a refusal: librdkafka queues the
    /// record and it is written if the brokers are back within `produceTimeout`.
    pub fn refusal(&self) -> Option<String> {
        self.has_cause().then(|| self.problem()).flatten()
    }

    fn has_cause(&self) -> bool {
        self.is_down() && self.refused.load(Ordering::Acquire)
    }

    fn mark_down(&self, reason: String) {
        *self.reason.lock().unwrap_or_else(|p| p.into_inner()) = reason;
        self.down.store(true, Ordering::Release);
    }

    fn mark_cause(&self, reason: String) {
        self.refused.store(true, Ordering::Release);
        self.mark_down(reason);
    }

    fn mark_up(&self) -> bool {
        self.refused.store(false, Ordering::Release);
        self.down.swap(false, Ordering::AcqRel)
    }
}

/// The librdkafka context of a component's clients: routes logs to `tracing`
/// (quietly) and notices when every broker is down.
pub(crate) struct KafkaContext {
    pub binding: String,
    pub brokers: String,
    pub health: std::sync::Arc<BrokerHealth>,
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // librdkafka repeats connection failures every reconnect backoff; the error
        // callback below reports the state change once, so these stay at DEBUG.
        match level {
            RDKafkaLogLevel::Emerg | RDKafkaLogLevel::Alert | RDKafkaLogLevel::Critical => {
                tracing::error!(binding.name = %self.binding, facility = fac, "librdkafka: {message}")
            }
            _ => {
                tracing::debug!(binding.name = %self.binding, facility = fac, "librdkafka: {message}")
            }
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        match error.rdkafka_error_code() {
            Some(RDKafkaErrorCode::AllBrokersDown) => {
                if !self.health.is_down() {
                    tracing::warn!(binding.name = %self.binding, brokers = %self.brokers, "all Kafka brokers are down: {reason}");
                }
                // A refused login or certificate says more than "down": keep it.
                if !self.health.has_cause() {
                    self.health
                        .mark_down(format!("all brokers down ({}): {reason}", self.brokers));
                }
            }
            Some(RDKafkaErrorCode::Authentication)
            | Some(RDKafkaErrorCode::SaslAuthenticationFailed) => {
                if !self.health.has_cause() {
                    tracing::error!(binding.name = %self.binding, "Kafka authentication failed: {reason}");
                }
                self.health
                    .mark_cause(format!("authentication failed: {reason}"));
            }
            // A refused client certificate comes back as a transport failure
            // carrying the TLS alert.
            Some(RDKafkaErrorCode::SSL) | Some(RDKafkaErrorCode::BrokerTransportFailure)
                if error.rdkafka_error_code() == Some(RDKafkaErrorCode::SSL)
                    || reason.contains("SSL routines")
                    || reason.contains("SSL handshake") =>
            {
                if !self.health.has_cause() {
                    tracing::error!(binding.name = %self.binding, "TLS with the Kafka brokers failed: {reason}");
                }
                self.health.mark_cause(format!("TLS failed: {reason}"));
            }
            _ => {
                tracing::debug!(binding.name = %self.binding, "librdkafka error: {error}: {reason}")
            }
        }
    }
}

/// Probes the brokers once a second while they are marked down, so that output
/// calls fail fast while they are gone and work again as soon as they are back.
/// The producer owns the returned task and awaits it when it closes.
pub(crate) fn spawn_health_probe<F>(
    binding: String,
    health: std::sync::Arc<BrokerHealth>,
    stop: tokio_util::sync::CancellationToken,
    probe: F,
) -> tokio::task::JoinHandle<()>
where
    F: Fn() -> Result<(), KafkaError> + Send + Sync + Clone + 'static,
{
    let name = binding.clone();
    let run = async move {
        let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tick.tick() => {}
            }
            if !health.is_down() {
                continue;
            }
            let probe = probe.clone();
            // Not waited for once stopped: a probe of an unreachable broker
            // blocks for its timeout, which would only delay the shutdown.
            let probed = tokio::select! {
                _ = stop.cancelled() => return,
                probed = tokio::task::spawn_blocking(probe) => probed,
            };
            match probed {
                Ok(Ok(())) => {
                    if health.mark_up() {
                        tracing::info!(binding.name = %binding, "Kafka brokers reachable again");
                    }
                }
                // Still unreachable: the state already says why.
                Ok(Err(_)) => {}
                Err(e) => tracing::warn!(
                    binding.name = %binding,
                    "broker probe {}",
                    crate::tasks::join_error_message(e)
                ),
            }
        }
    };
    tokio::spawn(async move {
        if let Err(why) = crate::tasks::catch_panic(run).await {
            // Calls still work; only the fast failure while the brokers are down is lost.
            tracing::error!(binding.name = %name, "the broker probe {why}");
        }
    })
}
