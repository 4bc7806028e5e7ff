//! Prometheus metrics, served as text on `--metrics-port` (`/metrics`).
//!
//! Names follow daprd's where daprd has one (`dapr_component_*_binding_*`), so
//! existing dashboards keep working; outrigger's own additions are `outrigger_*`.
//! Every series is created at start-up, one per component, so the hot path only
//! touches atomics: no lock, no allocation.

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::status::InputStatus;

/// Upper bounds of the latency buckets, in milliseconds (as daprd reports latencies).
const BUCKETS_MS: [f64; 15] = [
    0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0,
    10000.0,
];

/// A fixed-bucket latency histogram.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; BUCKETS_MS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let ms = d.as_secs_f64() * 1000.0;
        if let Some(i) = BUCKETS_MS.iter().position(|b| ms <= *b) {
            self.buckets[i].fetch_add(1, Ordering::Relaxed);
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, bound) in BUCKETS_MS.iter().enumerate() {
            cumulative += self.buckets[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{bound}\"}} {cumulative}");
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {count}");
        let sum_ms = self.sum_micros.load(Ordering::Relaxed) as f64 / 1000.0;
        let _ = writeln!(out, "{name}_sum{{{labels}}} {sum_ms}");
        let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
    }
}

/// Counters of one output binding.
#[derive(Debug, Default)]
pub struct OutputMetrics {
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub latency: Histogram,
}

impl OutputMetrics {
    pub fn record(&self, ok: bool, took: Duration) {
        if ok { &self.success } else { &self.failure }.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }
}

/// Counters of one input binding's app channel (deliveries are counted by its status).
#[derive(Debug, Default)]
pub struct AppChannelMetrics {
    pub success: AtomicU64,
    pub failure: AtomicU64,
    pub latency: Histogram,
}

impl AppChannelMetrics {
    pub fn record(&self, ok: bool, took: Duration) {
        if ok { &self.success } else { &self.failure }.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
    }
}

/// Every metric of one sidecar.
#[derive(Debug, Default)]
pub struct Metrics {
    app_id: String,
    outputs: HashMap<String, (String, OutputMetrics)>,
    app_channel: HashMap<String, Arc<AppChannelMetrics>>,
    inputs: Vec<Arc<InputStatus>>,
    /// Sidecar tasks (API servers, the app channel) that panicked or ended early.
    pub task_failures: AtomicU64,
}

impl Metrics {
    /// `outputs`: (name, type) of each output binding; `inputs`: each input binding's status.
    pub fn new(app_id: &str, outputs: &[(String, String)], inputs: &[Arc<InputStatus>]) -> Self {
        Metrics {
            app_id: app_id.to_string(),
            outputs: outputs
                .iter()
                .map(|(n, t)| (n.clone(), (t.clone(), OutputMetrics::default())))
                .collect(),
            app_channel: inputs
                .iter()
                .map(|s| (s.name.clone(), Arc::new(AppChannelMetrics::default())))
                .collect(),
            inputs: inputs.to_vec(),
            task_failures: AtomicU64::new(0),
        }
    }

    pub fn output(&self, binding: &str) -> Option<&OutputMetrics> {
        self.outputs.get(binding).map(|(_, m)| m)
    }

    pub fn app_channel(&self, binding: &str) -> Option<Arc<AppChannelMetrics>> {
        self.app_channel.get(binding).cloned()
    }

    /// The Prometheus text exposition of every series.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let app = escape(&self.app_id);
        let mut outputs: Vec<_> = self.outputs.iter().collect();
        outputs.sort_by(|a, b| a.0.cmp(b.0));

        help(
            &mut out,
            "dapr_component_output_binding_count",
            "counter",
            "Output binding calls, by success.",
        );
        for (name, (ty, m)) in &outputs {
            for (ok, v) in [("true", &m.success), ("false", &m.failure)] {
                let _ = writeln!(
                    out,
                    "dapr_component_output_binding_count{{app_id=\"{app}\",component=\"{}\",type=\"{}\",success=\"{ok}\"}} {}",
                    escape(name),
                    escape(ty),
                    v.load(Ordering::Relaxed)
                );
            }
        }
        help(
            &mut out,
            "dapr_component_output_binding_latencies",
            "histogram",
            "Output binding call latency in milliseconds, until the backend acknowledged.",
        );
        for (name, (ty, m)) in &outputs {
            m.latency.render(
                &mut out,
                "dapr_component_output_binding_latencies",
                &format!(
                    "app_id=\"{app}\",component=\"{}\",type=\"{}\"",
                    escape(name),
                    escape(ty)
                ),
            );
        }

        let mut inputs: Vec<_> = self.inputs.iter().map(|s| s.snapshot()).collect();
        inputs.sort_by(|a, b| a.name.cmp(&b.name));
        help(
            &mut out,
            "dapr_component_input_binding_count",
            "counter",
            "Input binding events delivered to the app (accepted).",
        );
        for s in &inputs {
            let _ = writeln!(
                out,
                "dapr_component_input_binding_count{{app_id=\"{app}\",component=\"{}\",type=\"{}\",success=\"true\"}} {}",
                escape(&s.name),
                escape(&s.component_type),
                s.delivered
            );
        }
        help(
            &mut out,
            "outrigger_input_binding_failed_attempts_total",
            "counter",
            "Deliveries the app did not accept (each is retried, or dead-lettered).",
        );
        for s in &inputs {
            let _ = writeln!(
                out,
                "outrigger_input_binding_failed_attempts_total{{app_id=\"{app}\",component=\"{}\"}} {}",
                escape(&s.name),
                s.failed_attempts
            );
        }
        help(
            &mut out,
            "outrigger_input_binding_dead_lettered_total",
            "counter",
            "Messages moved to the dead-letter topic.",
        );
        for s in &inputs {
            let _ = writeln!(
                out,
                "outrigger_input_binding_dead_lettered_total{{app_id=\"{app}\",component=\"{}\"}} {}",
                escape(&s.name),
                s.dead_lettered
            );
        }
        help(
            &mut out,
            "outrigger_log_lines_dropped_total",
            "counter",
            "Log and app output lines dropped because stdout did not keep up.",
        );
        let _ = writeln!(
            out,
            "outrigger_log_lines_dropped_total{{app_id=\"{app}\"}} {}",
            crate::logging::dropped_lines()
        );
        help(
            &mut out,
            "outrigger_task_failures_total",
            "counter",
            "Sidecar tasks (API servers, the app channel) that panicked or ended early.",
        );
        let _ = writeln!(
            out,
            "outrigger_task_failures_total{{app_id=\"{app}\"}} {}",
            self.task_failures.load(Ordering::Relaxed)
        );
        help(
            &mut out,
            "outrigger_input_binding_task_failures_total",
            "counter",
            "Tasks of the input binding (consumer, partition workers) that panicked or ended early.",
        );
        for s in &inputs {
            let _ = writeln!(
                out,
                "outrigger_input_binding_task_failures_total{{app_id=\"{app}\",component=\"{}\"}} {}",
                escape(&s.name),
                s.task_failures
            );
        }
        help(
            &mut out,
            "outrigger_input_binding_up",
            "gauge",
            "1 when the input binding is subscribed and delivering.",
        );
        for s in &inputs {
            let up = matches!(s.state, crate::status::InputState::Subscribed) as u8;
            let _ = writeln!(
                out,
                "outrigger_input_binding_up{{app_id=\"{app}\",component=\"{}\",state=\"{}\"}} {up}",
                escape(&s.name),
                s.state.as_str()
            );
        }
        help(
            &mut out,
            "outrigger_input_binding_consumer_lag",
            "gauge",
            "Messages of each assigned partition the app has not accepted yet (Kafka, updated every 5 s).",
        );
        for status in &self.inputs {
            for ((topic, partition), lag) in status.lag() {
                let _ = writeln!(
                    out,
                    "outrigger_input_binding_consumer_lag{{app_id=\"{app}\",component=\"{}\",topic=\"{}\",partition=\"{partition}\"}} {lag}",
                    escape(&status.name),
                    escape(&topic)
                );
            }
        }
        let mut channels: Vec<_> = self.app_channel.iter().collect();
        channels.sort_by(|a, b| a.0.cmp(b.0));
        help(
            &mut out,
            "dapr_component_input_binding_latencies",
            "histogram",
            "App channel latency of input deliveries in milliseconds (each attempt).",
        );
        for (name, m) in &channels {
            m.latency.render(
                &mut out,
                "dapr_component_input_binding_latencies",
                &format!("app_id=\"{app}\",component=\"{}\"", escape(name)),
            );
        }
        help(
            &mut out,
            "outrigger_app_channel_requests_total",
            "counter",
            "Requests to the app, by success.",
        );
        for (name, m) in &channels {
            for (ok, v) in [("true", &m.success), ("false", &m.failure)] {
                let _ = writeln!(
                    out,
                    "outrigger_app_channel_requests_total{{app_id=\"{app}\",component=\"{}\",success=\"{ok}\"}} {}",
                    escape(name),
                    v.load(Ordering::Relaxed)
                );
            }
        }
        process_metrics(&mut out);
        out
    }
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Resident memory, CPU time and start time of this process, from /proc.
fn process_metrics(out: &mut String) {
    let Ok(stat) = std::fs::read_to_string("/proc/self/stat") else {
        return;
    };
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let value = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf only reads system configuration.
    let (hz, page) = unsafe {
        (
            libc::sysconf(libc::_SC_CLK_TCK) as f64,
            libc::sysconf(libc::_SC_PAGESIZE) as f64,
        )
    };
    help(
        out,
        "process_cpu_seconds_total",
        "counter",
        "User and system CPU time spent, in seconds.",
    );
    let _ = writeln!(
        out,
        "process_cpu_seconds_total {}",
        (value(11) + value(12)) / hz
    );
    help(
        out,
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
    );
    let _ = writeln!(out, "process_resident_memory_bytes {}", value(21) * page);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(300));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let mut out = String::new();
        h.render(&mut out, "x", "a=\"b\"");
        assert!(out.contains("x_bucket{a=\"b\",le=\"0.5\"} 1\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"5\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"10000\"} 2\n"), "{out}");
        assert!(out.contains("x_bucket{a=\"b\",le=\"+Inf\"} 3\n"), "{out}");
        assert!(out.contains("x_count{a=\"b\"} 3\n"), "{out}");
    }

    #[test]
    fn renders_outputs_with_labels() {
        let m = Metrics::new("app\"1", &[("orders".into(), "bindings.kafka".into())], &[]);
        m.output("orders")
            .unwrap()
            .record(true, Duration::from_millis(2));
        m.output("orders")
            .unwrap()
            .record(false, Duration::from_millis(2));
        let text = m.render();
        assert!(text.contains(
            "dapr_component_output_binding_count{app_id=\"app\\\"1\",component=\"orders\",type=\"bindings.kafka\",success=\"true\"} 1"
        ), "{text}");
        assert!(text.contains("success=\"false\"} 1"), "{text}");
        assert!(text.contains("process_resident_memory_bytes "), "{text}");
    }

    #[test]
    fn task_failures_are_counted_per_binding_and_for_the_sidecar() {
        let input = Arc::new(InputStatus::new("in", "bindings.kafka"));
        let m = Metrics::new("app", &[], std::slice::from_ref(&input));
        input.task_failed("the worker of partition t[0] panicked: boom; stopped");
        m.task_failures.fetch_add(2, Ordering::Relaxed);
        let text = m.render();
        assert!(
            text.contains(
                "outrigger_input_binding_task_failures_total{app_id=\"app\",component=\"in\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("outrigger_task_failures_total{app_id=\"app\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "outrigger_input_binding_up{app_id=\"app\",component=\"in\",state=\"error\"} 0"
            ),
            "{text}"
        );
    }
}
