//! One assembled trace as a tree (a forest, when parents are missing), validated.
//!
//! Broken structure is repaired visibly, never silently: a repeated span id keeps its first
//! copy, a span in a parent cycle becomes a root, a span whose parent never arrived stays a
//! root and marks the trace fragmented. Each repair is listed in [`Trace::issues`].

use rustc_hash::FxHashMap;

use crate::model::problem::SpanError;
use crate::model::{Span, SpanId, SpanKind, TraceId};

/// Index of a span within its [`Trace`].
pub type Ix = u32;

/// A validated trace. Children are stored as one flat array (`child_list`), sliced per span
/// by `child_start`, and sorted by start time: one allocation for the whole trace rather than
/// one per span.
#[derive(Debug)]
pub struct Trace {
    pub id: TraceId,
    pub spans: Vec<Span>,
    pub parent: Vec<Option<Ix>>,
    child_start: Vec<u32>,
    child_list: Vec<Ix>,
    /// Spans without a parent in this trace, by start time.
    pub roots: Vec<Ix>,
    /// Span id → index, for following links.
    by_id: FxHashMap<SpanId, Ix>,
    /// Some span names a parent that is not in the trace.
    pub fragmented: bool,
    /// Repairs made, with the span they concern (bounded to the first few).
    pub issues: Vec<(SpanId, SpanError)>,
    /// Count of all repairs, including those beyond `issues`' bound.
    pub issue_count: u32,
}

const MAX_ISSUES: usize = 16;

impl Trace {
    /// Builds the tree. `spans` must be non-empty and share one trace id.
    pub fn build(mut spans: Vec<Span>) -> Trace {
        let id = spans.first().map(|s| s.trace_id).unwrap_or_default();
        let mut issues = Vec::new();
        let mut issue_count = 0u32;
        let mut note = |span: SpanId, e: SpanError| {
            issue_count += 1;
            if issues.len() < MAX_ISSUES {
                issues.push((span, e));
            }
        };
        // Stable order by start time makes every later step deterministic whatever order the
        // spans arrived in.
        spans.sort_by(|a, b| {
            (a.start_ns, a.span_id, std::cmp::Reverse(a.end_ns)).cmp(&(
                b.start_ns,
                b.span_id,
                std::cmp::Reverse(b.end_ns),
            ))
        });
        let mut index: FxHashMap<SpanId, Ix> = FxHashMap::default();
        index.reserve(spans.len());
        let mut kept = Vec::with_capacity(spans.len());
        for s in spans {
            if index.contains_key(&s.span_id) {
                note(s.span_id, SpanError::DuplicateSpanId);
                continue;
            }
            index.insert(s.span_id, kept.len() as Ix);
            kept.push(s);
        }
        let spans = kept;
        let n = spans.len();
        let mut fragmented = false;
        let mut parent: Vec<Option<Ix>> = spans
            .iter()
            .map(|s| {
                let p = s.parent?;
                let ix = index.get(&p).copied();
                if ix.is_none() {
                    fragmented = true;
                }
                ix
            })
            .collect();
        // Break parent cycles: walk up from each span; meeting a span of the current walk
        // again means a cycle, which is cut at the span where it closed.
        let mut state = vec![0u8; n]; // 0 unvisited, 1 on the current walk, 2 done
        let mut walk = Vec::new();
        for start in 0..n {
            let mut cur = start;
            while state[cur] == 0 {
                state[cur] = 1;
                walk.push(cur);
                match parent[cur] {
                    Some(p) if state[p as usize] == 1 => {
                        parent[cur] = None;
                        note(spans[cur].span_id, SpanError::ParentCycle);
                        break;
                    }
                    Some(p) => cur = p as usize,
                    None => break,
                }
            }
            for w in walk.drain(..) {
                state[w] = 2;
            }
        }
        // Children in CSR form; spans are sorted by start, so each child list is too.
        let mut counts = vec![0u32; n + 1];
        for p in parent.iter().flatten() {
            counts[*p as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let child_start = counts.clone();
        let mut fill = counts;
        let mut child_list = vec![0; child_start[n] as usize];
        let mut roots = Vec::new();
        for (i, p) in parent.iter().enumerate() {
            match p {
                Some(p) => {
                    let slot = &mut fill[*p as usize];
                    child_list[*slot as usize] = i as Ix;
                    *slot += 1;
                }
                None => roots.push(i as Ix),
            }
        }
        Trace {
            id,
            spans,
            parent,
            child_start,
            child_list,
            roots,
            by_id: index,
            fragmented,
            issues,
            issue_count,
        }
    }

    /// Every span, parents before children (depth first from each root).
    pub fn preorder(&self) -> Vec<Ix> {
        let mut out = Vec::with_capacity(self.len());
        let mut stack: Vec<Ix> = self.roots.iter().rev().copied().collect();
        while let Some(i) = stack.pop() {
            out.push(i);
            stack.extend(self.children(i).iter().rev().copied());
        }
        out
    }

    pub fn index_of(&self, id: SpanId) -> Option<Ix> {
        self.by_id.get(&id).copied()
    }

    pub fn children(&self, i: Ix) -> &[Ix] {
        let (a, b) = (
            self.child_start[i as usize] as usize,
            self.child_start[i as usize + 1] as usize,
        );
        &self.child_list[a..b]
    }

    pub fn span(&self, i: Ix) -> &Span {
        &self.spans[i as usize]
    }

    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// The span the trace's end-to-end latency is measured on: the earliest root, preferring
    /// one whose parent is truly absent over a fragment's orphan.
    pub fn main_root(&self) -> Option<Ix> {
        self.roots
            .iter()
            .copied()
            .find(|&r| self.span(r).parent.is_none())
            .or_else(|| self.roots.first().copied())
    }

    /// True when the span waits on another node: a client or producer, or (kinds missing, as
    /// in Jaeger and Zipkin data) a span whose only child runs in another service: a wrapper
    /// around one remote call. A kind-less span with several children does work of its own.
    pub fn is_client_like(&self, i: Ix) -> bool {
        let s = self.span(i);
        match s.kind {
            SpanKind::Client | SpanKind::Producer => true,
            SpanKind::Unspecified => match self.children(i) {
                [only] => self.span(*only).service != s.service,
                _ => false,
            },
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Sym;

    pub(crate) fn sp(id: u8, parent: Option<u8>, start: u64, end: u64) -> Span {
        Span {
            trace_id: TraceId([7; 16]),
            span_id: SpanId([id; 8]),
            parent: parent.map(|p| SpanId([p; 8])),
            service: Sym(1),
            instance: None,
            name: Sym(1),
            kind: SpanKind::Internal,
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

    #[test]
    fn children_sorted_and_orphans_flagged() {
        let t = Trace::build(vec![
            sp(3, Some(1), 20, 30),
            sp(1, None, 0, 100),
            sp(2, Some(1), 10, 15),
            sp(4, Some(9), 40, 50),
        ]);
        assert!(t.fragmented);
        assert_eq!(t.roots.len(), 2);
        let root = t.main_root().unwrap();
        let kids: Vec<u8> = t
            .children(root)
            .iter()
            .map(|&c| t.span(c).span_id.0[0])
            .collect();
        assert_eq!(kids, vec![2, 3]);
    }

    #[test]
    fn cycles_and_duplicates_are_repaired_and_reported() {
        let t = Trace::build(vec![
            sp(1, Some(2), 0, 10),
            sp(2, Some(1), 1, 5),
            sp(3, Some(1), 2, 3),
            sp(3, Some(1), 2, 4),
        ]);
        assert_eq!(t.len(), 3);
        assert!(t
            .issues
            .contains(&(SpanId([3; 8]), SpanError::DuplicateSpanId)));
        assert!(t.issues.iter().any(|(_, e)| *e == SpanError::ParentCycle));
        assert_eq!(t.roots.len(), 1);
        assert!(!t.fragmented);
    }
}
