//! Numbers as people read them; `—` where there is nothing to show.

/// What is shown where there is no value.
pub const NONE: &str = "—";

/// A success rate: `99.5%`, `100%`.
pub fn pct(rate: Option<f64>) -> String {
    match rate {
        None => NONE.into(),
        Some(r) if r >= 1.0 => "100%".into(),
        Some(r) => {
            let p = r * 100.0;
            if p >= 99.95 {
                // Never round a failure away.
                "99.9%".into()
            } else {
                format!("{p:.1}%")
            }
        }
    }
}

/// Requests per second: `0`, `0.3`, `20.0`, `1.2k`.
pub fn rps(v: f64) -> String {
    if v <= 0.0 {
        "0".into()
    } else if v >= 1000.0 {
        format!("{:.1}k", v / 1000.0)
    } else {
        format!("{v:.1}")
    }
}

/// A latency in ms: `0.8 ms`, `12 ms`, `1.25 s`.
pub fn ms(v: Option<f64>) -> String {
    match v {
        None => NONE.into(),
        Some(v) if v >= 1000.0 => format!("{:.2} s", v / 1000.0),
        Some(v) if v < 10.0 => format!("{v:.1} ms"),
        Some(v) => format!("{v:.0} ms"),
    }
}

/// A count (TCP connections).
pub fn count(v: f64) -> String {
    format!("{:.0}", v.max(0.0))
}

/// Time left until `not_after` (Unix seconds) from `now`: `in 364 days`, `EXPIRED 3 days ago`.
pub fn expiry(not_after: i64, now: i64) -> String {
    let left = not_after - now;
    let days = left.abs() / 86_400;
    let hours = (left.abs() % 86_400) / 3600;
    let span = if days > 0 {
        format!("{days} days")
    } else {
        format!("{hours} hours")
    };
    if left < 0 {
        format!("expired {span} ago")
    } else {
        format!("in {span}")
    }
}

/// A Unix time as `2027-01-31 12:00 UTC`.
pub fn date(unix: i64) -> String {
    match k8s_openapi::jiff::Timestamp::from_second(unix) {
        Ok(t) => t.strftime("%Y-%m-%d %H:%M UTC").to_string(),
        Err(_) => unix.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert_eq!(pct(Some(0.995)), "99.5%");
        assert_eq!(pct(Some(0.99999)), "99.9%");
        assert_eq!(pct(Some(1.0)), "100%");
        assert_eq!(pct(None), "—");
        assert_eq!(rps(20.0), "20.0");
        assert_eq!(rps(0.0), "0");
        assert_eq!(ms(Some(12.4)), "12 ms");
        assert_eq!(ms(Some(1.25)), "1.2 ms");
        assert_eq!(ms(Some(1500.0)), "1.50 s");
        assert_eq!(expiry(10 * 86_400, 0), "in 10 days");
        assert_eq!(expiry(0, 3 * 86_400), "expired 3 days ago");
        assert_eq!(date(0), "1970-01-01 00:00 UTC");
    }
}
