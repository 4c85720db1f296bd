//! Istio's `networking.istio.io/v1` fields that carry resilience policy, exactly as users write
//! them in a VirtualService (`http[].retries`, `http[].fault`) — parsed here so that routing
//! (which reads the VirtualService) carries them to this crate's compilers untouched — and
//! Istio's duration syntax, shared by every Istio duration field.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// VirtualService `http[].retries` (Istio `HTTPRetry`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpRetry {
    /// Retries allowed after the first attempt; 0 disables retries.
    pub attempts: Option<i32>,
    /// Timeout of each attempt (Istio duration, e.g. `2s`).
    pub per_try_timeout: Option<String>,
    /// Comma-separated Envoy retry conditions; integers are retriable status codes.
    pub retry_on: Option<String>,
    /// Whether retries go to other localities (no localities here: read and reported).
    pub retry_remote_localities: Option<bool>,
    /// When false, a retry may go to an endpoint already tried (Istio's default is true:
    /// previous hosts are avoided).
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries (Envoy's default 25 ms when unset).
    pub backoff: Option<String>,
}

/// A percentage as Istio writes it: `{value: 12.5}`.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq)]
pub struct Percent {
    /// 0.0 to 100.0.
    #[serde(default)]
    pub value: f64,
}

/// VirtualService `http[].fault` (Istio `HTTPFaultInjection`).
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HttpFaultInjection {
    /// Delay requests before forwarding.
    pub delay: Option<FaultDelay>,
    /// Answer requests locally with an error instead of forwarding them.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultDelay {
    /// The delay (Istio duration).
    pub fixed_delay: Option<String>,
    /// Share of requests delayed.
    pub percentage: Option<Percent>,
    /// Deprecated integer percentage, still honoured by Istio when set.
    pub percent: Option<i32>,
}

/// `fault.abort`.
#[derive(Clone, Debug, Default, Deserialize, Serialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct FaultAbort {
    /// HTTP status of the local answer.
    pub http_status: Option<i32>,
    /// gRPC status name (e.g. `UNAVAILABLE`) of the local answer.
    pub grpc_status: Option<String>,
    /// HTTP/2 error (reset) instead of an answer.
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    pub percentage: Option<Percent>,
}

/// Parses an Istio duration as the Istio API accepts it (Go's `time.ParseDuration` syntax,
/// which Istio's CRD conversion uses): a sequence of decimal numbers, each with an optional
/// fraction and a unit `ns`, `us`/`µs`, `ms`, `s`, `m` or `h` — `30ms`, `1.5s`, `1m30s`.
/// Negative values are refused (no Istio field accepts them).
pub fn parse_istio_duration(value: &str) -> Result<Duration, String> {
    let text = value.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = 0f64;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(|| {
                format!("'{value}' has a number without a unit (ns, us, ms, s, m, h)")
            })?;
        let (number, tail) = rest.split_at(digits);
        let number: f64 = number
            .parse()
            .map_err(|_| format!("'{value}' is not a duration such as 30ms, 1.5s or 1m30s"))?;
        let unit_len = tail
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(tail.len());
        let (unit, tail) = tail.split_at(unit_len);
        let seconds_per_unit = match unit {
            "ns" => 1e-9,
            "us" | "µs" | "μs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => {
                return Err(format!(
                    "'{value}' has an unknown unit '{unit}' (use ns, us, ms, s, m or h)"
                ))
            }
        };
        total += number * seconds_per_unit;
        rest = tail;
    }
    Duration::try_from_secs_f64(total).map_err(|e| format!("'{value}' is out of range: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations() {
        let ms = Duration::from_millis;
        for (text, want) in [
            ("30ms", ms(30)),
            ("1.5s", ms(1500)),
            ("1m30s", ms(90_000)),
            ("3m", ms(180_000)),
            ("1h", ms(3_600_000)),
            ("0", ms(0)),
            ("0s", ms(0)),
            ("250us", Duration::from_micros(250)),
        ] {
            assert_eq!(parse_istio_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn bad_durations_say_why() {
        for text in ["", "10", "-1s", "1x", "s", "1.2.3s"] {
            assert!(parse_istio_duration(text).is_err(), "{text}");
        }
    }
}
