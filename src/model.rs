//! The vocabulary every stage after ingest speaks: ids, interned names, spans and node keys.
//!
//! Nothing here knows OTLP, JSON or protobuf. Spans are compact (ids as fixed-size arrays,
//! names as interned [`Sym`]s) because millions of them pass through the assembler, and a
//! `String` per field would dominate both memory and time.

pub mod problem;

use std::fmt;

use rustc_hash::FxHashMap;

/// A 128-bit trace id. All-zero ids are invalid per the OTLP specification and never constructed
/// by the readers.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct TraceId(pub [u8; 16]);

/// A 64-bit span id.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, serde::Serialize, serde::Deserialize,
)]
pub struct SpanId(pub [u8; 8]);

macro_rules! hex_id {
    ($t:ty) => {
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                for b in self.0 {
                    write!(f, "{b:02x}")?;
                }
                Ok(())
            }
        }
        impl fmt::Debug for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }
    };
}
hex_id!(TraceId);
hex_id!(SpanId);

impl TraceId {
    /// A cheap, well-mixed 64-bit key (trace ids are random, so the low half suffices).
    pub fn low_u64(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.0[8..]);
        u64::from_be_bytes(b)
    }
}

/// An interned string: an index into an [`Interner`]. Comparing and hashing one is free, which
/// is what the per-span hot path needs.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug, serde::Serialize, serde::Deserialize,
)]
pub struct Sym(pub u32);

/// Owns every distinct service, operation, instance and peer name seen. Names are few (hundreds
/// to thousands) while spans are many, so the table stays small; it is bounded by
/// `max_symbols`, past which new names collapse into one overflow symbol (counted), so a flood of
/// unique operation names cannot grow memory without limit.
#[derive(Debug)]
pub struct Interner {
    map: FxHashMap<Box<str>, Sym>,
    names: Vec<Box<str>>,
    /// [`stable_hash`] of each name, by symbol.
    hashes: Vec<u64>,
    max_symbols: usize,
    /// Bytes the names may cost at most (see [`Interner::name_cost`]), besides their count:
    /// a budget's share, so names of 256 bytes fill it as soon as names of 20 would.
    max_bytes: usize,
    /// What the names cost now, by [`Interner::name_cost`].
    cost: usize,
    /// How many lookups were folded into [`Interner::OVERFLOW`] because the table was full.
    pub overflowed: u64,
}

impl Default for Interner {
    fn default() -> Self {
        Self::with_capacity_limit(1_000_000)
    }
}

impl Interner {
    /// The symbol every name maps to once the table is full.
    pub const OVERFLOW: Sym = Sym(0);
    /// Longest name kept, in bytes.
    pub const MAX_NAME_BYTES: usize = 256;
    const OVERFLOW_NAME: &'static str = "(too many names)";

    pub fn with_capacity_limit(max_symbols: usize) -> Self {
        let mut me = Interner {
            map: FxHashMap::default(),
            names: Vec::new(),
            hashes: Vec::new(),
            max_symbols: max_symbols.max(2),
            max_bytes: usize::MAX,
            cost: 0,
            overflowed: 0,
        };
        me.names.push(Self::OVERFLOW_NAME.into());
        me.hashes.push(stable_hash(Self::OVERFLOW_NAME.as_bytes()));
        me.map.insert(Self::OVERFLOW_NAME.into(), Self::OVERFLOW);
        me
    }

    pub fn intern(&mut self, s: &str) -> Sym {
        self.intern_within(s, self.max_symbols, self.max_bytes)
    }

    /// What one name costs the table: its text twice (key and list), its slot, symbol and
    /// hash.
    pub fn name_cost(s: &str) -> usize {
        2 * s.len() + 64
    }

    /// Bounds what the names cost, besides their count (for the memory budget's share).
    pub fn set_max_bytes(&mut self, max_bytes: usize) {
        self.max_bytes = max_bytes;
    }

    pub fn max_bytes(&self) -> usize {
        self.max_bytes
    }

    /// Names kept past the bound for what resolution names (a database, say): never more
    /// than the nodes, themselves bounded.
    pub const RESOLVED_RESERVE: usize = 65_536;

    /// Interns the name resolution gave a node, past the table's bound if need be: a flood
    /// of names that filled the table must not rename a real database "(too many names)".
    pub fn intern_resolved(&mut self, s: &str) -> Sym {
        self.intern_within(
            s,
            self.max_symbols.saturating_add(Self::RESOLVED_RESERVE),
            usize::MAX,
        )
    }

    fn intern_within(&mut self, s: &str, max: usize, max_bytes: usize) -> Sym {
        // Names are labels: past MAX_NAME_BYTES they are cut (at a character boundary), so
        // a flood of huge unique names costs bounded memory.
        let s = if s.len() > Self::MAX_NAME_BYTES {
            let mut end = Self::MAX_NAME_BYTES;
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            &s[..end]
        } else {
            s
        };
        if let Some(&sym) = self.map.get(s) {
            return sym;
        }
        // Control characters (escapes, CR, NUL) are shown as U+FFFD: names reach terminals
        // and Markdown, where an ESC sequence retitled the terminal. (A name with none was
        // looked up above; a cleaned one may be known under its clean form.)
        let cleaned;
        let s = if s.bytes().any(|b| b < 0x20 || b == 0x7f || b == 0xc2)
            && s.chars().any(char::is_control)
        {
            cleaned = s
                .chars()
                .map(|c| if c.is_control() { '\u{FFFD}' } else { c })
                .collect::<String>();
            if let Some(&sym) = self.map.get(cleaned.as_str()) {
                return sym;
            }
            cleaned.as_str()
        } else {
            s
        };
        let cost = Self::name_cost(s);
        if self.names.len() >= max || self.cost.saturating_add(cost) > max_bytes {
            self.overflowed += 1;
            return Self::OVERFLOW;
        }
        self.cost += cost;
        let sym = Sym(self.names.len() as u32);
        self.names.push(s.into());
        self.hashes.push(stable_hash(s.as_bytes()));
        self.map.insert(s.into(), sym);
        sym
    }

    /// Estimated bytes held (for the memory budget): each name twice (the map's key and the
    /// table's), its map slot, symbol and hash.
    pub fn approx_bytes(&self) -> usize {
        let text: usize = self.names.iter().map(|n| n.len()).sum();
        2 * text
            + self.names.capacity() * 16
            + self.hashes.capacity() * 8
            + self.map.capacity() * (std::mem::size_of::<(Box<str>, Sym)>() + 1)
    }

    /// Most names the table holds.
    pub fn capacity_limit(&self) -> usize {
        self.max_symbols
    }

    /// All names in symbol order (for snapshots).
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(|s| &**s)
    }

    /// The names from symbol `first` on, in symbol order (what was added since a table of
    /// `first` names), without walking the ones before.
    pub fn names_from(&self, first: usize) -> impl Iterator<Item = &str> {
        self.names
            .get(first..)
            .unwrap_or_default()
            .iter()
            .map(|s| &**s)
    }

    /// Rebuilds a table from [`Interner::names`]: the same names get the same symbols.
    pub fn from_names<'a>(names: impl IntoIterator<Item = &'a str>, max_symbols: usize) -> Self {
        let mut me = Interner::with_capacity_limit(max_symbols);
        for (i, n) in names.into_iter().enumerate() {
            if i == 0 {
                continue; // the overflow symbol, already there
            }
            // Resolved names past the bound come back too, at the same symbols.
            me.intern_resolved(n);
        }
        me
    }

    /// The symbol of a name already interned, without adding it.
    pub fn get(&self, s: &str) -> Option<Sym> {
        self.map.get(s).copied()
    }

    pub fn resolve(&self, sym: Sym) -> &str {
        self.names
            .get(sym.0 as usize)
            .map(|s| &**s)
            .unwrap_or(Self::OVERFLOW_NAME)
    }

    /// A hash of the symbol's name that is the same in every process and every run (symbols
    /// are numbered in arrival order, so they differ between instances): what a hash that
    /// leaves the process (a request's shape or route, summed across instances) is built of.
    pub fn stable_hash(&self, sym: Sym) -> u64 {
        self.hashes
            .get(sym.0 as usize)
            .copied()
            .unwrap_or_else(|| stable_hash(Self::OVERFLOW_NAME.as_bytes()))
    }

    pub fn len(&self) -> usize {
        self.names.len()
    }

    pub fn is_empty(&self) -> bool {
        self.names.len() <= 1
    }
}

/// FNV-1a, 64 bits: fixed by its definition, so the same bytes hash the same in every build,
/// process and machine.
pub fn stable_hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Combines stable hashes, order-sensitively.
pub fn stable_combine(h: u64, x: u64) -> u64 {
    (h ^ x).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29) ^ x.rotate_left(7)
}

/// OTLP's span kinds; `Unspecified` is common in converted data (Jaeger without `span.kind`,
/// Zipkin without `kind`), and the graph then falls back on service boundaries.
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
#[derive(
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    Debug,
    Default,
    PartialOrd,
    Ord,
    serde::Serialize,
    serde::Deserialize,
)]
pub enum SpanKind {
    #[default]
    Unspecified,
    Internal,
    Server,
    Client,
    Producer,
    Consumer,
}

impl SpanKind {
    pub fn from_otlp(v: i32) -> Option<SpanKind> {
        Some(match v {
            0 => SpanKind::Unspecified,
            1 => SpanKind::Internal,
            2 => SpanKind::Server,
            3 => SpanKind::Client,
            4 => SpanKind::Producer,
            5 => SpanKind::Consumer,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

/// What a node in the call graph is. Only services report spans of their own; the others are
/// seen from their callers' client spans.
#[derive(strum::IntoStaticStr, strum::EnumString)]
#[strum(serialize_all = "lowercase")]
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum NodeType {
    Service,
    Database,
    Messaging,
    External,
}

impl NodeType {
    pub fn as_str(self) -> &'static str {
        self.into()
    }

    pub fn is_virtual(self) -> bool {
        self != NodeType::Service
    }
}

/// Identity of a graph node: its type and the name users know it by. Two services and a
/// database may share a name (`auth` the service, `auth (cassandra)` the keyspace); the type
/// keeps them apart.
///
/// `system` is set only on a *raw* backend: a database or broker seen by its address (its
/// `name` is then that address), or named by nothing but its system (`name` is then the
/// system itself). `label` is the name its callers gave it, if any (a database name). Raw
/// backends are never shown: the identity resolver (`analyze::identity`) groups them into
/// the nodes callers use interchangeably, and names those as users know them.
#[derive(
    Clone, Copy, PartialEq, Eq, Hash, Debug, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub struct NodeKey {
    pub ty: NodeType,
    pub name: Sym,
    pub system: Option<Sym>,
    pub label: Option<Sym>,
}

impl NodeKey {
    /// A service, by its `service.name`.
    pub fn service(name: Sym) -> NodeKey {
        NodeKey::named(NodeType::Service, name)
    }

    /// A node known by a name of its own (services, named backends, external peers).
    pub fn named(ty: NodeType, name: Sym) -> NodeKey {
        NodeKey {
            ty,
            name,
            system: None,
            label: None,
        }
    }

    /// True for a raw backend, which the identity resolver replaces before anything is shown.
    pub fn is_raw(&self) -> bool {
        self.system.is_some()
    }
}

/// The far side of a client, producer or consumer span that is not (or not necessarily)
/// instrumented: a database, a broker or an external HTTP peer.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Peer {
    pub node: NodeKey,
    /// The address this span talked to (`host:port`); distinct addresses are the peer's
    /// instances. `None` when the span names no address: redundancy is then unknown.
    pub address: Option<Sym>,
    /// What the caller asked for, hashed (a normalized statement, an operation and table, a
    /// destination): calls of one caller with the same `usage` spread over several addresses
    /// mark those addresses as replicas of one node. 0 when nothing says.
    pub usage: u64,
    /// The call waits for work to arrive rather than doing work (`BRPOP`, `XREAD BLOCK`, a
    /// consumer's `poll` or `receive`): its duration is idle time, not the peer's latency.
    pub idle: bool,
}

/// A span link: messaging and batch consumers use links instead of parents.
#[derive(Clone, Copy, PartialEq, Eq, Debug, serde::Serialize, serde::Deserialize)]
pub struct Link {
    pub trace_id: TraceId,
    pub span_id: SpanId,
}

/// One normalized span. Times are Unix nanoseconds; `end_ns >= start_ns` is guaranteed by
/// normalization.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
pub struct Span {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub service: Sym,
    /// The process instance that produced the span; `None` means unknown, which is not the same
    /// as "one instance".
    pub instance: Option<Sym>,
    pub name: Sym,
    pub kind: SpanKind,
    pub start_ns: u64,
    pub end_ns: u64,
    pub error: bool,
    pub peer: Option<Peer>,
    pub links: Vec<Link>,
    /// Reported by a proxy (Envoy, an Istio or other ingress gateway): its client spans
    /// forward requests it received, so a proxy that starts traces still serves someone.
    pub proxy: bool,
    /// Addresses (`host:port`, as [`Peer::address`] spells them) named by the error of a
    /// failed span: its exception events or status message. A refused connection often makes
    /// no client span; this is then the only sign of which backend failed.
    pub fault_addrs: [Option<Sym>; 2],
    /// How many spans this one stands for: 1, unless probability sampling upstream kept one
    /// in n and said so (`tracestate` `ot=th:...`), when rates and counts of work done are
    /// scaled by it (its adjusted count).
    pub weight: f32,
}

impl Span {
    pub fn duration_ns(&self) -> u64 {
        self.end_ns - self.start_ns
    }
}

/// RFC 3339 in UTC with millisecond precision, from Unix nanoseconds.
pub fn rfc3339(ns: u64) -> String {
    let secs = ns / 1_000_000_000;
    let millis = (ns / 1_000_000) % 1000;
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Names bounded by what they cost fold past it, however few they are; a resolved name
    /// still gets in.
    /// A name's control characters never reach a terminal or a Markdown table.
    #[test]
    fn control_characters_in_names_are_replaced() {
        let mut t = Interner::default();
        let s = t.intern("web\u{1b}]0;pwned\u{7}\r\nx");
        assert_eq!(t.resolve(s), "web\u{FFFD}]0;pwned\u{FFFD}\u{FFFD}\u{FFFD}x");
    }

    #[test]
    fn names_past_their_bytes_fold_and_a_resolved_one_still_gets_in() {
        let mut t = Interner::with_capacity_limit(1_000);
        let long = |i: usize| format!("{i:0>200}");
        t.set_max_bytes(10 * Interner::name_cost(&long(0)));
        let syms: Vec<Sym> = (0..20).map(|i| t.intern(&long(i))).collect();
        assert_eq!(
            syms.iter().filter(|&&s| s != Interner::OVERFLOW).count(),
            10
        );
        assert_eq!(t.overflowed, 10);
        let db = t.intern_resolved("orders (postgresql)");
        assert_ne!(db, Interner::OVERFLOW);
        assert_eq!(t.resolve(db), "orders (postgresql)");
    }

    #[test]
    fn a_full_table_still_takes_resolved_names_and_restores_them() {
        let mut t = Interner::with_capacity_limit(4);
        for n in ["a", "b", "c", "flood-1"] {
            t.intern(n);
        }
        assert_eq!(t.intern("flood-2"), Interner::OVERFLOW, "full");
        let db = t.intern_resolved("orders (postgresql)");
        assert_ne!(db, Interner::OVERFLOW);
        assert_eq!(t.resolve(db), "orders (postgresql)");
        let back = Interner::from_names(t.names(), 4);
        assert_eq!(back.get("orders (postgresql)"), Some(db));
    }
}
