//! `bindings.cron`: an input binding that fires on a schedule (`@every 15s`,
//! `@daily`, or a cron expression with 5 or 6 fields, seconds first as in Dapr).
//! A tick the app does not accept is logged, not retried: ticks are not data.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use chrono::{Local, Utc};
use tokio_util::sync::CancellationToken;

use crate::bindings::{
    BindingError, BindingEvent, BindingPlan, BindingType, BoxFuture, EventSink, InputBinding,
    InputInit, OutputBinding, OutputInit,
};
use crate::config::{Component, ConfigError, FieldReader, parse_duration};
use crate::status::{InputState, InputStatus};

#[derive(Debug, Clone)]
pub enum Schedule {
    Every(Duration),
    Cron(Box<cron::Schedule>),
}

#[derive(Debug, Clone)]
pub struct CronMetadata {
    pub schedule: Schedule,
    pub schedule_text: String,
    pub route: String,
    pub direction_explicit: bool,
}

impl CronMetadata {
    pub fn parse(component: &Component) -> Result<Self, Vec<ConfigError>> {
        let mut r = FieldReader::new(component);
        let text = r
            .required("schedule", "e.g. \"@every 15s\" or \"*/10 * * * * *\"")
            .unwrap_or_default()
            .to_string();
        let schedule = if text.is_empty() {
            Schedule::Every(Duration::from_secs(1))
        } else {
            parse_schedule(&text).unwrap_or_else(|e| {
                r.error("schedule", e);
                Schedule::Every(Duration::from_secs(1))
            })
        };
        let direction_explicit = match r.str("direction").map(|d| d.trim().to_ascii_lowercase()) {
            None => false,
            Some(d) if d == "input" => true,
            Some(d) => {
                r.error(
                    "direction",
                    format!("bindings.cron is input only, got {d:?}"),
                );
                false
            }
        };
        let route = crate::bindings::read_route(&mut r, &component.name);
        r.finish(CronMetadata {
            schedule,
            schedule_text: text,
            route,
            direction_explicit,
        })
    }
}

/// Parses Dapr's schedule syntax (robfig/cron with optional seconds and descriptors).
pub fn parse_schedule(text: &str) -> Result<Schedule, String> {
    let t = text.trim();
    if let Some(every) = t.strip_prefix("@every") {
        let d = parse_duration(every.trim()).map_err(|e| format!("bad @every interval: {e}"))?;
        if d < Duration::from_millis(10) {
            return Err(format!("@every interval {d:?} is too short (minimum 10ms)"));
        }
        return Ok(Schedule::Every(d));
    }
    let expression = match t {
        "@midnight" => "@daily".to_string(),
        _ if t.starts_with('@') => t.to_string(),
        _ => {
            let fields: Vec<&str> = t.split_whitespace().collect();
            let mut fields: Vec<String> = match fields.len() {
                5 => std::iter::once("0")
                    .chain(fields.iter().copied())
                    .map(str::to_string)
                    .collect(),
                6 => fields.iter().map(|s| s.to_string()).collect(),
                n => {
                    return Err(format!(
                        "expected 5 or 6 fields (seconds first), got {n} in {t:?}"
                    ));
                }
            };
            // Dapr counts weekdays from Sunday = 0; the cron crate from Sunday = 1.
            fields[5] = shift_weekdays(&fields[5])?;
            fields.join(" ")
        }
    };
    cron::Schedule::from_str(&expression)
        .map(|s| Schedule::Cron(Box::new(s)))
        .map_err(|e| format!("invalid cron expression {t:?}: {e}"))
}

fn shift_weekdays(field: &str) -> Result<String, String> {
    let shift = |n: &str| -> Result<String, String> {
        match n.parse::<u8>() {
            Ok(d @ 0..=6) => Ok((d + 1).to_string()),
            Ok(7) => Ok("1".into()),
            Ok(d) => Err(format!("day of week {d} is out of range 0-6")),
            Err(_) => Ok(n.to_string()), // a name such as MON, or * and ?
        }
    };
    field
        .split(',')
        .map(|part| {
            let (range, step) = match part.split_once('/') {
                Some((r, s)) => (r, Some(s)),
                None => (part, None),
            };
            let range = match range.split_once('-') {
                Some((a, b)) => format!("{}-{}", shift(a)?, shift(b)?),
                None => shift(range)?,
            };
            Ok(match step {
                Some(s) => format!("{range}/{s}"),
                None => range,
            })
        })
        .collect::<Result<Vec<_>, String>>()
        .map(|parts| parts.join(","))
}

impl Schedule {
    /// Time until the next firing.
    fn next_delay(&self) -> Option<Duration> {
        match self {
            Schedule::Every(d) => Some(*d),
            Schedule::Cron(s) => {
                let next = s.upcoming(Local).next()?;
                (next.with_timezone(&Utc) - Utc::now())
                    .to_std()
                    .ok()
                    .or(Some(Duration::ZERO))
            }
        }
    }
}

/// `bindings.cron` in the registry.
pub struct CronType;

impl BindingType for CronType {
    fn name(&self) -> &'static str {
        "bindings.cron"
    }

    fn plan(&self, component: &Component) -> Result<Box<dyn BindingPlan>, Vec<ConfigError>> {
        Ok(Box::new(CronMetadata::parse(component)?))
    }
}

impl BindingPlan for CronMetadata {
    fn input_route(&self) -> Option<&str> {
        Some(&self.route)
    }

    fn input_is_explicit(&self) -> bool {
        self.direction_explicit
    }

    fn output(
        &self,
        _name: &str,
        _init: OutputInit,
    ) -> Result<Option<Arc<dyn OutputBinding>>, BindingError> {
        Ok(None)
    }

    fn input(
        &self,
        name: &str,
        init: InputInit,
    ) -> Result<Option<Box<dyn InputBinding>>, BindingError> {
        Ok(Some(Box::new(CronInput {
            name: name.to_string(),
            meta: self.clone(),
            status: init.status,
        })))
    }

    fn as_any(&self) -> &dyn std::any::Any {
        self
    }
}

pub struct CronInput {
    name: String,
    meta: CronMetadata,
    status: Arc<InputStatus>,
}

impl InputBinding for CronInput {
    fn run(
        self: Box<Self>,
        sink: Arc<dyn EventSink>,
        shutdown: CancellationToken,
    ) -> BoxFuture<'static, ()> {
        Box::pin(async move {
            let status = self.status.clone();
            status.set(
                InputState::Subscribed,
                format!("schedule {}", self.meta.schedule_text),
            );
            tracing::info!(binding.name = %self.name, schedule = %self.meta.schedule_text, "cron schedule started");
            // What daprd sends: Go's `time.Local.String()`, which is always "Local".
            let zone = "Local".to_string();
            loop {
                let Some(delay) = self.meta.schedule.next_delay() else {
                    tracing::info!(binding.name = %self.name, "the schedule has no further firing");
                    break;
                };
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(delay) => {}
                }
                let mut metadata = HashMap::with_capacity(2);
                metadata.insert("timeZone".to_string(), zone.clone());
                metadata.insert("readTimeUTC".to_string(), go_time_string(Utc::now()));
                let event = BindingEvent {
                    data: bytes::Bytes::new(),
                    metadata,
                    origin: None,
                };
                match sink.deliver(&event).await {
                    Ok(()) => {
                        status.delivered.fetch_add(1, Ordering::Relaxed);
                        status.recovered();
                    }
                    Err(e) => {
                        status.failed_attempts.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(binding.name = %self.name, "cron event not accepted by the app: {e}");
                    }
                }
            }
            status.set(InputState::Stopped, "");
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_dapr_schedules() {
        assert!(
            matches!(parse_schedule("@every 15s"), Ok(Schedule::Every(d)) if d == Duration::from_secs(15))
        );
        assert!(matches!(
            parse_schedule("*/10 * * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(
            parse_schedule("0 30 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(
            parse_schedule("30 * * * *"),
            Ok(Schedule::Cron(_))
        ));
        assert!(matches!(parse_schedule("@hourly"), Ok(Schedule::Cron(_))));
        assert!(matches!(parse_schedule("@midnight"), Ok(Schedule::Cron(_))));
        for bad in [
            "@every",
            "@every 1x",
            "* * *",
            "61 * * * * *",
            "0 0 0 * * 9",
            "@fortnightly",
        ] {
            assert!(parse_schedule(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn weekdays_count_from_sunday_zero() {
        assert_eq!(shift_weekdays("0").unwrap(), "1");
        assert_eq!(shift_weekdays("1-5").unwrap(), "2-6");
        assert_eq!(shift_weekdays("*/2").unwrap(), "*/2");
        assert_eq!(shift_weekdays("MON,3").unwrap(), "MON,4");
        // Monday at 09:00 (Dapr's 1) must land on a Monday.
        let Schedule::Cron(s) = parse_schedule("0 0 9 * * 1").unwrap() else {
            panic!()
        };
        use chrono::Datelike;
        let next = s.upcoming(Utc).next().unwrap();
        assert_eq!(next.weekday(), chrono::Weekday::Mon);
    }
}

/// Go's `time.Time.String()` of a UTC time, as daprd sends `readTimeUTC`:
/// `2006-01-02 15:04:05.999999999 +0000 UTC`, trailing zeros of the fraction dropped.
fn go_time_string(t: chrono::DateTime<Utc>) -> String {
    let nanos = t.timestamp_subsec_nanos();
    let mut out = t.format("%Y-%m-%d %H:%M:%S").to_string();
    if nanos > 0 {
        let frac = format!("{nanos:09}");
        out.push('.');
        out.push_str(frac.trim_end_matches('0'));
    }
    out.push_str(" +0000 UTC");
    out
}

#[cfg(test)]
mod go_time_tests {
    use chrono::TimeZone;

    #[test]
    fn formats_like_go() {
        let t = chrono::Utc
            .with_ymd_and_hms(2026, 12, 1, 20, 59, 1)
            .unwrap();
        assert_eq!(super::go_time_string(t), "2026-12-01 20:59:01 +0000 UTC");
        let t = t + chrono::Duration::nanoseconds(120_000_000);
        assert_eq!(super::go_time_string(t), "2026-12-01 20:59:01.12 +0000 UTC");
    }
}
