//! The critical path of one trace: the chain of work its end-to-end latency waited on.
//!
//! Jaeger's algorithm (jaeger-ui `TracePage/CriticalPath`): from the root's end, walk back
//! through the last-finishing child, then continue in the parent from that child's start.
//! Children that overflow their parent are clamped to it, children entirely outside it are
//! dropped, and subtrees behind an asynchronous hop (producer → consumer) are not waited on.
//!
//! Beyond Jaeger: the walk is iterative (a 100k-span chain does not overflow the stack);
//! back-to-back siblings (one ends exactly when the next starts) are both on the path
//! (Jaeger's strict `<` skips one, jaeger#9148); each child is considered once, so zero-length
//! spans cannot loop; several roots (or fragments) are walked under a synthetic root spanning
//! them; and an optional clock-skew tolerance (CRISP's: siblings overlapping by a small
//! fraction of their parent count as sequential) absorbs skew between hosts.

use super::tree::{Ix, Trace};
use crate::model::{NodeKey, SpanKind};

/// Settings for the walk.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CriticalPathConfig {
    /// Fraction of a parent's duration by which a sibling may overlap the next one on the path,
    /// or a child overflow its parent, and still count (CRISP uses 0.01). 0 is Jaeger's rule.
    pub skew_tolerance: f64,
}

impl Default for CriticalPathConfig {
    fn default() -> Self {
        CriticalPathConfig {
            skew_tolerance: 0.01,
        }
    }
}

/// A stretch of the critical path spent in one span (`None`: in the gap between roots).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    pub span: Option<Ix>,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl Segment {
    pub fn len_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// Whether a child's subtree is waited on by its parent. A consumer never is (the producer
/// returned once the message was handed to the broker).
pub fn is_blocking_child(t: &Trace, parent: Ix, child: Ix) -> bool {
    let (p, c) = (t.span(parent), t.span(child));
    if c.kind == SpanKind::Consumer {
        return false;
    }
    // A producer's children in other services are consumers whose kind was lost.
    !(p.kind == SpanKind::Producer && c.service != p.service)
}

struct Frame {
    span: Option<Ix>,
    lo: u64,
    cursor: u64,
    tol: u64,
    /// Candidate children, clamped to the frame: `(span, start, end)`, latest end first.
    kids: Vec<(Ix, u64, u64)>,
    next: usize,
}

fn frame(t: &Trace, span: Option<Ix>, lo: u64, hi: u64, cfg: &CriticalPathConfig) -> Frame {
    let tol = ((hi - lo) as f64 * cfg.skew_tolerance.max(0.0)) as u64;
    let candidates: &[Ix] = match span {
        Some(i) => t.children(i),
        None => &t.roots,
    };
    let mut kids: Vec<(Ix, u64, u64)> = candidates
        .iter()
        .copied()
        .filter(|&c| span.is_none_or(|p| is_blocking_child(t, p, c)))
        .filter_map(|c| {
            let s = t.span(c);
            // Entirely outside the parent: not something it waited on.
            if s.start_ns > hi || s.end_ns < lo {
                return None;
            }
            Some((c, s.start_ns.clamp(lo, hi), s.end_ns.clamp(lo, hi)))
        })
        .collect();
    kids.sort_unstable_by(|a, b| b.2.cmp(&a.2).then(a.1.cmp(&b.1)).then(a.0.cmp(&b.0)));
    Frame {
        span,
        lo,
        cursor: hi,
        tol,
        kids,
        next: 0,
    }
}

/// The critical path, segments in time order. Empty for an empty trace.
pub fn critical_path(t: &Trace, cfg: &CriticalPathConfig) -> Vec<Segment> {
    let mut out = Vec::new();
    let (root, lo, hi) = match t.roots.as_slice() {
        [] => return out,
        [r] => {
            let s = t.span(*r);
            (Some(*r), s.start_ns, s.end_ns)
        }
        roots => {
            let lo = roots.iter().map(|&r| t.span(r).start_ns).min().unwrap_or(0);
            let hi = roots.iter().map(|&r| t.span(r).end_ns).max().unwrap_or(lo);
            (None, lo, hi)
        }
    };
    let mut stack = vec![frame(t, root, lo, hi, cfg)];
    while let Some(f) = stack.last_mut() {
        // The next child to finish at or before the cursor (within tolerance); children that
        // finish later ran in parallel with one already on the path.
        while f.next < f.kids.len() && f.kids[f.next].2 > f.cursor.saturating_add(f.tol) {
            f.next += 1;
        }
        if let Some(&(c, cs, ce)) = f.kids.get(f.next) {
            f.next += 1;
            let ce = ce.min(f.cursor);
            let cs = cs.min(ce);
            if f.cursor > ce {
                out.push(Segment {
                    span: f.span,
                    start_ns: ce,
                    end_ns: f.cursor,
                });
            }
            f.cursor = cs;
            let child = frame(t, Some(c), cs, ce, cfg);
            stack.push(child);
        } else {
            if f.cursor > f.lo {
                out.push(Segment {
                    span: f.span,
                    start_ns: f.lo,
                    end_ns: f.cursor,
                });
            }
            stack.pop();
        }
    }
    out.reverse();
    out
}

/// What a segment's time counts as for its node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The node working.
    Own,
    /// A caller waiting on the node beyond the node's own server span: network and queueing
    /// before it starts or after it ends. A saturated node shows here, not in its own spans.
    Queue,
}

/// Who a segment's time belongs to: the callee for the wait around its server span, the
/// peer for a client span to an uninstrumented node, the span's service otherwise.
pub fn attribute(t: &Trace, seg: &Segment) -> Option<(NodeKey, Part)> {
    let i = seg.span?;
    let s = t.span(i);
    let service = NodeKey::service(s.service);
    if !t.is_client_like(i) {
        return Some((service, Part::Own));
    }
    // The callee this client span waited on: its longest child in another service.
    let callee = t
        .children(i)
        .iter()
        .copied()
        .filter(|&c| t.span(c).service != s.service && is_blocking_child(t, i, c))
        .max_by_key(|&c| (t.span(c).duration_ns(), std::cmp::Reverse(c)));
    if let Some(c) = callee {
        return Some((NodeKey::service(t.span(c).service), Part::Queue));
    }
    match s.peer {
        // Blocked waiting for work: nobody's work, so nobody's share of the path.
        Some(p) if p.idle => None,
        Some(p) => Some((p.node, Part::Own)),
        None => Some((service, Part::Own)),
    }
}

/// One trace's critical path with names, for printing.
#[derive(Debug, Clone)]
pub struct PathRecord {
    pub trace_id: crate::model::TraceId,
    pub duration_ns: u64,
    pub segments: Vec<PathSegment>,
}

#[derive(Debug, Clone)]
pub struct PathSegment {
    pub span_id: crate::model::SpanId,
    /// The node the time belongs to (for a wait outside a callee's span, the callee).
    pub node: crate::model::Sym,
    /// The service that reported the span.
    pub service: crate::model::Sym,
    pub operation: crate::model::Sym,
    /// "own" or "queue".
    pub part: &'static str,
    pub start_ns: u64,
    pub end_ns: u64,
}

impl PathRecord {
    pub fn of(t: &Trace, cfg: &CriticalPathConfig) -> PathRecord {
        PathRecord::from_path(t, &critical_path(t, cfg))
    }

    /// The record of a path already computed.
    pub fn from_path(t: &Trace, path: &[Segment]) -> PathRecord {
        let segments: Vec<PathSegment> = path
            .iter()
            .filter_map(|seg| {
                let i = seg.span?;
                let (node, part) = attribute(t, seg)?;
                Some(PathSegment {
                    span_id: t.span(i).span_id,
                    node: node.name,
                    service: t.span(i).service,
                    operation: t.span(i).name,
                    part: match part {
                        Part::Own => "own",
                        Part::Queue => "queue",
                    },
                    start_ns: seg.start_ns,
                    end_ns: seg.end_ns,
                })
            })
            .collect();
        let duration_ns = match (path.first(), path.last()) {
            (Some(a), Some(b)) => b.end_ns - a.start_ns,
            _ => 0,
        };
        PathRecord {
            trace_id: t.id,
            duration_ns,
            segments,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Span, SpanId, Sym, TraceId};

    fn sp(id: u32, parent: Option<u32>, svc: u32, kind: SpanKind, start: u64, end: u64) -> Span {
        let sid = |x: u32| {
            let mut b = [0u8; 8];
            b[4..].copy_from_slice(&x.to_be_bytes());
            b[0] = 1;
            SpanId(b)
        };
        Span {
            trace_id: TraceId([9; 16]),
            span_id: sid(id),
            parent: parent.map(sid),
            service: Sym(svc),
            instance: None,
            name: Sym(svc),
            kind,
            start_ns: start,
            end_ns: end,
            error: false,
            peer: None,
            links: Vec::new(),
            proxy: false,
            fault_addrs: [None; 2],
            weight: 1.0,
        }
    }

    use SpanKind::{Client, Consumer, Internal, Producer, Server};

    /// `(span id, start, end)` of the path, with `None` ids as 0.
    fn path(spans: Vec<Span>, tol: f64) -> Vec<(u32, u64, u64)> {
        let t = Trace::build(spans);
        critical_path(
            &t,
            &CriticalPathConfig {
                skew_tolerance: tol,
            },
        )
        .iter()
        .map(|s| {
            let id = s.span.map_or(0, |i| {
                let b = t.span(i).span_id.0;
                u32::from_be_bytes([b[4], b[5], b[6], b[7]])
            });
            (id, s.start_ns, s.end_ns)
        })
        .collect()
    }

    fn total(p: &[(u32, u64, u64)]) -> u64 {
        p.iter().map(|s| s.2 - s.1).sum()
    }

    #[test]
    fn overlapping_children_the_last_to_finish_wins() {
        // 2 [10,60] and 3 [20,90] overlap; 3 finishes last. 2 had not finished when 3 started,
        // so (as in Jaeger) the parent, not 2, owns the time before 3.
        let p = path(
            vec![
                sp(1, None, 1, Server, 0, 100),
                sp(2, Some(1), 2, Internal, 10, 60),
                sp(3, Some(1), 3, Internal, 20, 90),
            ],
            0.0,
        );
        assert_eq!(p, vec![(1, 0, 20), (3, 20, 90), (1, 90, 100)]);
        assert_eq!(total(&p), 100);
    }

    #[test]
    fn back_to_back_siblings_are_both_on_the_path() {
        let p = path(
            vec![
                sp(1, None, 1, Server, 0, 100),
                sp(2, Some(1), 2, Internal, 10, 50),
                sp(3, Some(1), 3, Internal, 50, 90),
            ],
            0.0,
        );
        assert_eq!(p, vec![(1, 0, 10), (2, 10, 50), (3, 50, 90), (1, 90, 100)]);
    }

    #[test]
    fn overflowing_children_are_clamped_and_outsiders_dropped() {
        let p = path(
            vec![
                sp(1, None, 1, Server, 100, 200),
                sp(2, Some(1), 2, Internal, 150, 260), // overflows the end
                sp(3, Some(1), 3, Internal, 80, 120),  // starts before the parent
                sp(4, Some(1), 4, Internal, 300, 400), // entirely after: dropped
            ],
            0.0,
        );
        assert_eq!(p, vec![(3, 100, 120), (1, 120, 150), (2, 150, 200)]);
        assert_eq!(total(&p), 100);
    }

    #[test]
    fn consumers_behind_a_producer_are_not_waited_on() {
        let p = path(
            vec![
                sp(1, None, 1, Server, 0, 100),
                sp(2, Some(1), 1, Producer, 10, 20),
                sp(3, Some(2), 2, Consumer, 30, 500),
            ],
            0.0,
        );
        assert_eq!(p, vec![(1, 0, 10), (2, 10, 20), (1, 20, 100)]);
    }

    #[test]
    fn several_roots_walk_under_a_synthetic_root() {
        let p = path(
            vec![
                sp(1, None, 1, Server, 0, 50),
                sp(2, None, 2, Server, 70, 100),
                sp(3, Some(99), 3, Server, 80, 90), // a fragment's orphan inside root 2's time
            ],
            0.0,
        );
        assert_eq!(p, vec![(1, 0, 50), (0, 50, 70), (2, 70, 100)]);
    }

    #[test]
    fn zero_length_spans_never_loop() {
        let mut spans = vec![sp(1, None, 1, Server, 0, 10)];
        for i in 2..50 {
            spans.push(sp(i, Some(1), 2, Internal, 5, 5));
        }
        spans.push(sp(60, Some(2), 3, Internal, 5, 5));
        let p = path(spans, 0.0);
        assert_eq!(total(&p), 10);
    }

    #[test]
    fn a_100k_span_chain_does_not_overflow_the_stack() {
        let n = 100_000u32;
        let spans: Vec<Span> = (0..n)
            .map(|i| {
                let parent = (i > 0).then(|| i - 1);
                sp(
                    i + 1,
                    parent.map(|p| p + 1),
                    i % 7,
                    Client,
                    u64::from(i),
                    2 * u64::from(n) - u64::from(i),
                )
            })
            .collect();
        let p = path(spans, 0.01);
        assert_eq!(total(&p), 2 * u64::from(n));
        assert_eq!(p.len(), 2 * n as usize - 1);
    }

    #[test]
    fn skew_tolerance_treats_slightly_overlapping_siblings_as_sequential() {
        // 3 starts 1 ns before 2 ends: strictly, 2 is skipped; within 1% it is on the path.
        let spans = || {
            vec![
                sp(1, None, 1, Server, 0, 1000),
                sp(2, Some(1), 2, Internal, 100, 501),
                sp(3, Some(1), 3, Internal, 500, 900),
            ]
        };
        assert!(!path(spans(), 0.0).iter().any(|s| s.0 == 2));
        let p = path(spans(), 0.01);
        assert!(p.contains(&(2, 100, 500)), "{p:?}");
        assert_eq!(total(&p), 1000);
    }

    #[test]
    fn waiting_beyond_the_server_span_belongs_to_the_callee() {
        let t = Trace::build(vec![
            sp(1, None, 1, Server, 0, 1000),
            sp(2, Some(1), 1, Client, 100, 900),
            sp(3, Some(2), 2, Server, 700, 800),
        ]);
        let cp = critical_path(&t, &CriticalPathConfig::default());
        let mut by: std::collections::BTreeMap<(u32, bool), u64> = Default::default();
        for s in &cp {
            let (node, part) = attribute(&t, s).unwrap();
            *by.entry((node.name.0, part == Part::Queue)).or_default() += s.len_ns();
        }
        assert_eq!(by.get(&(1, false)), Some(&200), "caller's own work");
        assert_eq!(
            by.get(&(2, true)),
            Some(&700),
            "wait before and after the server span"
        );
        assert_eq!(by.get(&(2, false)), Some(&100), "callee's own work");
    }
}
