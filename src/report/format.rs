//! Numbers for people, formatted one way everywhere in Rust (the dashboard's `format.js` is
//! its counterpart): milliseconds in summaries ("1.2 s", "340 ms") and in tables ("340",
//! "0.812"), shares as percentages, evidence rounded.

/// Rounds for presentation (evidence is for people; four significant places are plenty).
pub fn r3(x: f64) -> f64 {
    (x * 1000.0).round() / 1000.0
}

pub fn ms(ns: f64) -> f64 {
    r3(ns / 1e6)
}

/// "1.2 s", "340 ms", "0.8 ms": durations in summaries.
pub fn human_ms(ms: f64) -> String {
    if ms >= 10_000.0 {
        format!("{:.0} s", ms / 1000.0)
    } else if ms >= 1000.0 {
        format!("{:.1} s", ms / 1000.0)
    } else if ms >= 10.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.1} ms")
    }
}

pub fn pct(x: f64) -> String {
    format!("{:.0}%", x * 100.0)
}

/// A share with one decimal (`12.5%`), for tables.
pub fn pct1(rate: f64) -> String {
    format!("{:.1}%", rate * 100.0)
}

/// Milliseconds as a table cell, with sensible precision: 0.042, 4.20, 42.0, 4200.
pub fn table_ms(v: f64) -> String {
    if v < 1.0 {
        format!("{v:.3}")
    } else if v < 10.0 {
        format!("{v:.2}")
    } else if v < 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.0}")
    }
}

/// A rate per second as people read it: whole numbers from 10 up, one decimal below, two
/// under 1 (an e-mail provider's 100 a minute is 1.67/s).
pub fn rate(per_s: f64) -> String {
    if per_s >= 10.0 {
        format!("{per_s:.0}")
    } else if per_s >= 1.0 {
        format!("{per_s:.1}")
    } else {
        format!("{per_s:.2}")
    }
}
