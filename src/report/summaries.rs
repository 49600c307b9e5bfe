//! A finding's summary: the sentence an operator reads first, written from the scores and
//! fitted to the cause, with the numbers that make it true.

use crate::analyze::bottleneck::{BottleneckScore, Cause};
use crate::analyze::spof::SpofScore;
use crate::report::finding::Context;
use crate::report::format::{human_ms, pct, rate};

/// What a bottleneck finding says, in one paragraph, by its cause.
pub fn bottleneck_summary(b: &BottleneckScore, name: &str, ctx: &Context<'_>) -> String {
    let share = format!(
        "{name} holds {} of end-to-end request time on the critical path",
        pct(b.share.share)
    );
    match &b.cause {
        Cause::Change(c) => format!(
            "{name}'s critical-path time per request rose from {} to {} ({:.1}×) for \
             requests of the same kind, {} of today's end-to-end latency",
            human_ms(c.baseline_ms_per_request),
            human_ms(c.now_ms_per_request),
            c.ratio,
            pct(c.explains_share_of_latency.max(0.0))
        ),
        Cause::Waiting(w) => {
            format!(
                "Callers wait {} (median) outside {name}'s own spans, {:.0}× the system's \
                 typical {}: requests queue before it starts on them (saturated, starved or \
                 a slow network to it), {} per request",
                human_ms(w.gap_p50_ms),
                w.ratio,
                human_ms(w.typical_gap_ms),
                human_ms(w.excess_ms_per_request)
            )
        }
        Cause::SlowCaller(w) => {
            format!(
                "{name} waits {} (median) on every one of its callees, {:.0}× the system's \
                 typical {}: its own process is slow to send and receive (CPU starved, \
                 paused), not its callees",
                human_ms(w.gap_p50_ms),
                w.ratio,
                human_ms(w.typical_gap_ms)
            )
        }
        Cause::Backlog(q) => {
            format!(
                "{name} can't keep up: messages wait {} (p50) / {} (p99) in {} before it starts \
                 on them{}; no entry request waits on it, so end-to-end latency doesn't show it",
                human_ms(q.p50_ms),
                human_ms(q.p99_ms),
                ctx.name(q.via),
                if q.growing {
                    format!(
                        ", and the delay grew by {} over the window",
                        human_ms(q.growth_over_window_ms)
                    )
                } else {
                    String::new()
                }
            )
        }
        Cause::Capacity(c) => {
            let cap = c.capacity_rps.unwrap_or(0.0);
            let state = match c.headroom() {
                Some(h) if h < 1.0 || c.queue_growing => format!(
                    "beyond it now: asked {}/s, it completes {}/s and its queue grows",
                    rate(c.rate_rps),
                    rate(c.done_rps)
                ),
                Some(h) => format!(
                    "{} of it now ({}/s): {:.2}× the load and it gives out",
                    pct(1.0 / h),
                    rate(c.rate_rps),
                    h
                ),
                None => String::new(),
            };
            format!(
                "{name} can complete about {}/s ({} limit, {} confidence) and runs {state}",
                rate(cap),
                c.limit.as_str(),
                c.certainty.as_str()
            )
        }
        Cause::Saturation(s) => {
            format!(
                "{name}'s latency climbs with load: {:.1}x slower in its busiest periods than \
                 in its quietest (correlation {:.2} over {} periods of 10 s); it is running \
                 out of capacity",
                s.busy_over_quiet, s.correlation, s.buckets
            )
        }
        Cause::Share => {
            let mut s = share;
            if b.share.queue_share > 0.05 * b.share.share && b.share.share > 0.0 {
                s.push_str(&format!(
                    ", {} of it spent by callers waiting outside its own spans",
                    pct(b.share.queue_share / b.share.share)
                ));
            }
            match &b.what_if {
                Some(w) => format!(
                    "{s}; twice as fast, it would save users {} at the median and {} at p99 \
                     ({} of its operations' median request)",
                    human_ms(w.saves_p50_ms().max(0.0)),
                    human_ms(w.saves_p99_ms().max(0.0)),
                    pct(w.saves_share_of_median)
                ),
                None => s,
            }
        }
    }
}

/// What a SPOF finding says: what its loss would fail, who waits on it, its instances, what
/// its callers did when it failed, and first, when it is failing now, since when.
pub fn spof_summary(s: &SpofScore, name: &str, ctx: &Context<'_>) -> String {
    let op = ctx.op_name(&s.reach_operation);
    let inst = match (s.instances, s.instances_seen) {
        (Some(1), Some(k)) if k > 1 => {
            format!("one instance serves it now (of {k} seen in the window)")
        }
        (Some(1), _) => "it runs as a single instance".to_owned(),
        (Some(k), _) => format!(
            "it runs as {k}{} instances",
            if s.instances_more { "+" } else { "" }
        ),
        (None, _) => "nothing identifies its instances, so its redundancy is unknown".to_owned(),
    };
    let hard = match s.hardness {
        Some(h) if s.fallback_seen => format!(
            "{} of the requests in which it failed failed too (its callers fell back in the rest)",
            pct(h)
        ),
        Some(h) => format!("{} of the requests in which it failed failed too", pct(h)),
        None => "it was never seen failing, so no fallback is known (untested: counted as hard)"
            .to_owned(),
    };
    let mut summary = format!(
        "{name}: its loss would fail {} of entry requests; {} of {op} requests wait on it \
         synchronously, {inst}, and {hard}",
        pct(s.requests_lost_share),
        pct(s.reach)
    );
    if s.active {
        if let Some(v) = &s.vanished {
            summary = format!(
                "{name} is failing requests now: {} of {} requests no longer make calls the \
                 baseline always made ({}); {summary}",
                pct(v.rate),
                ctx.op_name(&v.operation),
                if v.as_caller {
                    "it stopped making its calls midway"
                } else {
                    "calls to it stopped being answered"
                }
            );
        } else if let Some(f) = &s.failing_now {
            let when = match f.until_ns {
                Some(u) => format!(
                    " from {} to {}",
                    crate::model::rfc3339(f.since_ns),
                    crate::model::rfc3339(u)
                ),
                None => format!(
                    " since {}, still failing",
                    crate::model::rfc3339(f.since_ns)
                ),
            };
            summary = format!(
                "{name} is failing requests now: {} requests failed because of it{when} ({} of \
                 those that needed it while it failed, {} of all requests{}); {summary}",
                f.failed_requests,
                pct(f.rate_while_failing),
                pct(f.rate),
                f.baseline_rate
                    .map_or(String::new(), |b| format!(", baseline {}", pct(b)))
            );
        }
    }
    summary
}
