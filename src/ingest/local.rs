//! Normalizing where a request arrives, so the pipeline task is not the one serial stage that
//! reads every byte: each receiver thread keeps its own [`Normalizer`], whose names are
//! numbered in the thread's own *space*, and sends with its spans the names it interned since
//! its last delivered batch. The pipeline ([`Spaces`]) interns those into the engine's table
//! and renumbers each span's few symbols through a plain array.
//!
//! Order is what makes the deltas add up: a thread normalizes, builds the delta and queues the
//! batch without yielding, and the queue keeps one thread's sends in order, so the pipeline
//! sees each space's names in the order they were numbered. A batch the queue refuses takes
//! its delta with it: the next one sends those names again.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

use rustc_hash::FxHashMap;

use super::batch::Batch;
use super::normalize::{Normalizer, TimeLimits};
use crate::model::problem::BatchReport;
use crate::model::{Interner, Span, Sym};

/// Names a thread interned that the pipeline has not seen yet: `names[i]` is symbol
/// `first + i` of `space`.
#[derive(Debug, Default)]
pub struct NameDelta {
    pub space: u32,
    pub first: u32,
    pub names: Vec<Box<str>>,
    /// Spaces this thread used before `space` and will not send again: every batch of them
    /// was queued before this one.
    pub retired: Vec<u32>,
    /// Names this thread's full table folded into its overflow name since the last delivered
    /// batch, to be counted with the engine's.
    pub overflowed: u64,
}

/// What a receiver thread's normalizer is bounded by.
#[derive(Debug, Clone, Copy)]
pub struct LocalLimits {
    pub time: TimeLimits,
    pub max_names: usize,
}

struct Local {
    space: u32,
    norm: Normalizer,
    /// Symbols of this space the pipeline has been sent.
    sent: usize,
    /// Overflows the pipeline has been told of.
    overflow_sent: u64,
    /// Estimated bytes of the names delivered (counted in [`LOCAL_NAME_BYTES`]).
    cost: usize,
    /// Spaces given up whose retirement has not been delivered yet.
    retired: Vec<u32>,
}

impl Local {
    fn new(max_names: usize) -> Local {
        Local {
            space: NEXT_SPACE.fetch_add(1, Ordering::Relaxed),
            norm: Normalizer::new(Interner::with_capacity_limit(max_names)),
            sent: 0,
            overflow_sent: 0,
            cost: 0,
            retired: Vec::new(),
        }
    }

    /// Starts a new space once the table holds [`ROLL_AT`] names (or half the engine's bound,
    /// if lower, so one batch rarely fills it): the old table's memory goes, and the
    /// pipeline is told to drop its mapping.
    fn roll_if_full(&mut self, max_names: usize) {
        if self.norm.interner.len() < ROLL_AT.min(max_names / 2) {
            return;
        }
        LOCAL_NAME_BYTES.fetch_sub(self.cost, Ordering::Relaxed);
        let mut next = Local::new(max_names);
        next.retired = std::mem::take(&mut self.retired);
        next.retired.push(self.space);
        *self = next;
    }
}

/// Names a receiver thread's table holds before it starts a new space: more than a real
/// system has, so only a flood rolls it.
pub const ROLL_AT: usize = 32_768;

thread_local! {
    static LOCAL: RefCell<Option<Local>> = const { RefCell::new(None) };
}

static NEXT_SPACE: AtomicU32 = AtomicU32::new(0);

/// Estimated bytes of every receiver thread's name table (for the memory budget).
static LOCAL_NAME_BYTES: AtomicUsize = AtomicUsize::new(0);

/// What the receivers' own name tables hold, estimated: the engine's table holds the same
/// names again.
pub fn local_name_bytes() -> usize {
    LOCAL_NAME_BYTES.load(Ordering::Relaxed)
}

/// Normalizes `batch` on this thread and hands the spans and the new names to `send`, which
/// returns whether the pipeline took them.
pub fn normalize_here<T, E>(
    batch: &Batch,
    limits: LocalLimits,
    mut report: BatchReport,
    send: impl FnOnce(Vec<Span>, NameDelta, BatchReport) -> Result<T, E>,
) -> Result<T, E> {
    LOCAL.with(|cell| {
        let mut cell = cell.borrow_mut();
        let local = cell.get_or_insert_with(|| Local::new(limits.max_names));
        local.roll_if_full(limits.max_names);
        local.norm.time_limits = limits.time;
        let mut spans = Vec::with_capacity(batch.span_count() as usize);
        local.norm.normalize_batch(batch, &mut spans, &mut report);
        let names: Vec<Box<str>> = local
            .norm
            .interner
            .names_from(local.sent)
            .map(Box::from)
            .collect();
        let n = names.len();
        let overflowed = local.norm.interner.overflowed;
        let delta = NameDelta {
            space: local.space,
            first: local.sent as u32,
            names,
            retired: local.retired.clone(),
            overflowed: overflowed - local.overflow_sent,
        };
        let cost: usize = delta.names.iter().map(|n| Interner::name_cost(n)).sum();
        let r = send(spans, delta, report);
        if r.is_ok() {
            LOCAL_NAME_BYTES.fetch_add(cost, Ordering::Relaxed);
            local.cost += cost;
            local.retired.clear();
            local.sent += n;
            local.overflow_sent = overflowed;
        }
        r
    })
}

/// The pipeline's side: for each space, the engine's symbol of each of its symbols.
#[derive(Debug, Default)]
pub struct Spaces {
    tables: FxHashMap<u32, Vec<Sym>>,
}

impl Spaces {
    /// Takes in a batch's new names and renumbers its spans into `names`' symbols.
    pub fn renumber(&mut self, delta: NameDelta, spans: &mut [Span], names: &mut Interner) {
        names.overflowed += delta.overflowed;
        for old in &delta.retired {
            self.tables.remove(old);
        }
        let table = self.tables.entry(delta.space).or_default();
        let first = delta.first as usize;
        for (i, name) in delta.names.iter().enumerate() {
            match (first + i).cmp(&table.len()) {
                // Sent again after a refused batch raced a delivered one: known already.
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => table.push(names.intern(name)),
                // A gap cannot happen (see the module's note); were it to, the names in it
                // fold into the overflow name rather than into someone else's.
                std::cmp::Ordering::Greater => {
                    table.resize(first + i, Interner::OVERFLOW);
                    table.push(names.intern(name));
                }
            }
        }
        let map = |s: Sym| {
            table
                .get(s.0 as usize)
                .copied()
                .unwrap_or(Interner::OVERFLOW)
        };
        for s in spans {
            s.service = map(s.service);
            s.name = map(s.name);
            s.instance = s.instance.map(map);
            if let Some(p) = &mut s.peer {
                p.node.name = map(p.node.name);
                p.node.system = p.node.system.map(map);
                p.node.label = p.node.label.map(map);
                p.address = p.address.map(map);
            }
            for a in &mut s.fault_addrs {
                *a = a.map(map);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::batch::WireBatch;
    use prost::Message;

    /// Spans normalized on several threads and renumbered are the spans one normalizer
    /// makes, name for name.
    #[test]
    fn spans_normalized_on_many_threads_renumber_to_one_table() {
        let cfg = crate::simulate::SimConfig {
            scenario: crate::simulate::Scenario::SlowPayment,
            traces: 120,
            ..Default::default()
        };
        // And failures whose exception names a database address (symbols in fault_addrs).
        let refused = crate::simulate::SimConfig {
            scenario: crate::simulate::Scenario::Lab(crate::simulate::Lab::RefusedConnections),
            traces: 120,
            ..Default::default()
        };
        let batches: Vec<Batch> = crate::simulate::generate(&cfg)
            .chain(crate::simulate::generate(&refused))
            .map(|r| Batch::Wire(WireBatch::new(r.encode_to_vec().into()).expect("valid")))
            .collect();
        let limits = LocalLimits {
            time: TimeLimits::default(),
            max_names: 1000,
        };
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::scope(|s| {
            for chunk in batches.chunks(batches.len() / 3 + 1) {
                let tx = tx.clone();
                s.spawn(move || {
                    for (i, b) in chunk.iter().enumerate() {
                        let report = BatchReport::default();
                        // Every fifth batch is refused: its names must arrive with the next.
                        let _ = normalize_here(b, limits, report, |spans, delta, _| {
                            if i % 5 == 4 {
                                return Err(());
                            }
                            tx.send((spans, delta)).map_err(|_| ())
                        });
                    }
                });
            }
        });
        drop(tx);
        let mut spaces = Spaces::default();
        let mut names = Interner::default();
        let mut got = Vec::new();
        for (mut spans, delta) in rx {
            spaces.renumber(delta, &mut spans, &mut names);
            got.extend(spans);
        }
        let mut one = Normalizer::default();
        let mut want = Vec::new();
        for (i, b) in batches.iter().enumerate() {
            if i % (batches.len() / 3 + 1) % 5 != 4 {
                one.normalize_batch(b, &mut want, &mut BatchReport::default());
            }
        }
        let show = |spans: &[Span], names: &Interner| {
            let mut v: Vec<String> = spans
                .iter()
                .map(|s| {
                    let peer = s.peer.as_ref().map(|p| {
                        (
                            names.resolve(p.node.name).to_owned(),
                            p.node.system.map(|x| names.resolve(x).to_owned()),
                            p.address.map(|x| names.resolve(x).to_owned()),
                        )
                    });
                    format!(
                        "{} {} {} {:?} {peer:?}",
                        s.span_id,
                        names.resolve(s.service),
                        names.resolve(s.name),
                        s.instance.map(|i| names.resolve(i))
                    )
                })
                .collect();
            v.sort();
            v
        };
        assert!(got.len() > 1000);
        assert_eq!(show(&got, &names), show(&want, &one.interner));
    }

    /// A thread that sees more distinct names than its table keeps starts new spaces rather
    /// than folding them: every span keeps its own name, and the pipeline forgets the spaces
    /// given up (one table left, not one per roll).
    #[test]
    fn a_thread_past_its_table_rolls_to_a_new_space_and_folds_nothing() {
        use opentelemetry_proto::tonic::common::v1::{any_value, AnyValue};
        let cfg = crate::simulate::SimConfig {
            traces: 60,
            ..Default::default()
        };
        // Each request's services renamed apart: far more names than the table keeps.
        let batches: Vec<Batch> = crate::simulate::generate(&cfg)
            .enumerate()
            .map(|(i, mut r)| {
                for rs in &mut r.resource_spans {
                    for kv in rs.resource.iter_mut().flat_map(|r| r.attributes.iter_mut()) {
                        if kv.key == "service.name" {
                            let old = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                                Some(any_value::Value::StringValue(s)) => s.clone(),
                                _ => String::new(),
                            };
                            kv.value = Some(AnyValue {
                                value: Some(any_value::Value::StringValue(format!("{old}-{i}"))),
                            });
                        }
                    }
                }
                Batch::Decoded(r.resource_spans)
            })
            .collect();
        let limits = LocalLimits {
            time: TimeLimits::default(),
            max_names: 80,
        };
        let got = std::thread::spawn(move || {
            let mut out = Vec::new();
            for b in &batches {
                normalize_here(b, limits, BatchReport::default(), |spans, d, _| {
                    out.push((spans, d));
                    Ok::<_, ()>(())
                })
                .expect("sent");
            }
            (out, batches)
        })
        .join()
        .expect("thread");
        let (sent, batches) = got;
        assert!(
            sent.iter().any(|(_, d)| !d.retired.is_empty()),
            "never rolled"
        );
        let mut spaces = Spaces::default();
        let mut names = Interner::default();
        let mut renamed = Vec::new();
        for (mut spans, d) in sent {
            assert_eq!(d.overflowed, 0);
            spaces.renumber(d, &mut spans, &mut names);
            renamed.extend(spans);
        }
        assert_eq!(spaces.tables.len(), 1);
        assert_eq!(names.overflowed, 0);
        let mut one = Normalizer::default();
        let mut want = Vec::new();
        for b in &batches {
            one.normalize_batch(b, &mut want, &mut BatchReport::default());
        }
        let show = |spans: &[Span], names: &Interner| -> Vec<String> {
            spans
                .iter()
                .map(|s| {
                    format!(
                        "{} {} {}",
                        s.span_id,
                        names.resolve(s.service),
                        names.resolve(s.name)
                    )
                })
                .collect()
        };
        assert_eq!(show(&renamed, &names), show(&want, &one.interner));
    }

    /// A thread whose own table is full folds names into the overflow name, and says so: the
    /// engine's count includes it.
    #[test]
    fn names_a_full_thread_table_folds_are_counted_by_the_engine() {
        let cfg = crate::simulate::SimConfig {
            traces: 20,
            ..Default::default()
        };
        let batch = Batch::Decoded(
            crate::simulate::generate(&cfg)
                .flat_map(|r| r.resource_spans)
                .collect(),
        );
        let limits = LocalLimits {
            time: TimeLimits::default(),
            max_names: 4,
        };
        let got = std::thread::spawn(move || {
            normalize_here(&batch, limits, BatchReport::default(), |spans, d, _| {
                Ok::<_, ()>((spans, d))
            })
        })
        .join()
        .expect("thread");
        let (mut spans, delta) = got.expect("sent");
        assert!(delta.overflowed > 0);
        let folded = delta.overflowed;
        let mut names = Interner::default();
        Spaces::default().renumber(delta, &mut spans, &mut names);
        assert_eq!(names.overflowed, folded);
        assert!(spans.iter().any(|s| s.name == Interner::OVERFLOW));
    }
}
