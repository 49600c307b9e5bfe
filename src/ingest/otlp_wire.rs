//! A borrowing reader of OTLP trace protobuf (`ExportTraceServiceRequest`, and `TracesData`,
//! which has the same field 1): it walks the bytes where they lie and hands out slices of them,
//! so the fields the normalizer reads cost no allocation and everything else (events, scopes,
//! attributes nobody reads, schema URLs) is skipped by its length.
//!
//! prost decodes a 400-byte span into about twenty heap objects that are dropped a moment
//! later; under load that decoding and freeing was over a third of the daemon's CPU.
//!
//! Validation is split by level, because what a mistake costs differs: the framing down to
//! each span ([`count_spans`]) is checked for the whole request before any of it is used, so a
//! request cut short is refused whole, as before; a fault *inside* one span (a bad attribute,
//! a name that is not UTF-8) rejects that span alone. What is skipped is not validated, so a
//! request prost would refuse for, say, invalid UTF-8 in an event name is accepted here.

use std::fmt;

/// Where and why the bytes are not protobuf.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireError {
    /// Byte offset within the message being read.
    pub at: usize,
    pub what: &'static str,
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed protobuf at byte {}: {}", self.at, self.what)
    }
}

impl std::error::Error for WireError {}

/// One field's value as it is on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Fixed32(u32),
    Len(&'a [u8]),
}

/// The fields of one message, in order. Stops after the first error.
#[derive(Clone)]
pub struct Fields<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// Nesting allowed for (deprecated) groups, which OTLP never uses but protobuf allows anywhere.
const MAX_GROUP_DEPTH: u32 = 32;

impl<'a> Fields<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    fn err(&mut self, what: &'static str) -> WireError {
        let at = self.pos;
        self.pos = self.buf.len();
        WireError { at, what }
    }

    /// Most varints (tags, lengths, kinds) are one byte.
    #[inline(always)]
    fn varint(&mut self) -> Result<u64, WireError> {
        match self.buf.get(self.pos) {
            Some(&b) if b < 0x80 => {
                self.pos += 1;
                Ok(u64::from(b))
            }
            _ => self.varint_long(),
        }
    }

    fn varint_long(&mut self) -> Result<u64, WireError> {
        let mut v = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err(self.err("truncated varint"));
            };
            self.pos += 1;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(self.err("varint longer than 10 bytes"))
    }

    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&e| e <= self.buf.len())
            .ok_or_else(|| self.err("length runs past the end"))?;
        let s = &self.buf[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    /// Skips a group's fields up to its end tag.
    fn skip_group(&mut self, field: u32, depth: u32) -> Result<(), WireError> {
        if depth > MAX_GROUP_DEPTH {
            return Err(self.err("groups nested too deep"));
        }
        loop {
            if self.pos >= self.buf.len() {
                return Err(self.err("group without its end"));
            }
            let tag = self.varint()?;
            let (f, wt) = ((tag >> 3) as u32, tag & 7);
            match wt {
                0 => drop(self.varint()?),
                1 => drop(self.take(8)?),
                2 => {
                    let n = self.varint()?;
                    self.take(usize::try_from(n).unwrap_or(usize::MAX))?;
                }
                3 => self.skip_group(f, depth + 1)?,
                4 if f == field => return Ok(()),
                5 => drop(self.take(4)?),
                _ => return Err(self.err("bad wire type in group")),
            }
        }
    }

    #[inline]
    fn field(&mut self) -> Result<Option<(u32, Wire<'a>)>, WireError> {
        loop {
            if self.pos >= self.buf.len() {
                return Ok(None);
            }
            let tag = self.varint()?;
            let field = tag >> 3;
            if field == 0 || field > u64::from(u32::MAX >> 3) {
                return Err(self.err("invalid field number"));
            }
            let field = field as u32;
            let v = match tag & 7 {
                0 => Wire::Varint(self.varint()?),
                1 => {
                    let b = self.take(8)?;
                    Wire::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
                }
                2 => {
                    let n = self.varint()?;
                    Wire::Len(self.take(usize::try_from(n).unwrap_or(usize::MAX))?)
                }
                3 => {
                    self.skip_group(field, 1)?;
                    continue;
                }
                5 => {
                    let b = self.take(4)?;
                    Wire::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or([0; 4])))
                }
                _ => return Err(self.err("invalid wire type")),
            };
            return Ok(Some((field, v)));
        }
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = Result<(u32, Wire<'a>), WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        self.field().transpose()
    }
}

/// The length-delimited occurrences of field `n` of a message; any other wire type for it is
/// an error, as it is for prost.
fn submessages<'a>(msg: &'a [u8], n: u32, what: &'static str) -> Submessages<'a> {
    Submessages {
        fields: Fields::new(msg),
        n,
        what,
    }
}

struct Submessages<'a> {
    fields: Fields<'a>,
    n: u32,
    what: &'static str,
}

impl<'a> Iterator for Submessages<'a> {
    type Item = Result<&'a [u8], WireError>;

    #[inline]
    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let start = self.fields.pos;
            match self.fields.field() {
                Ok(Some((f, Wire::Len(b)))) if f == self.n => return Some(Ok(b)),
                Ok(Some((f, _))) if f == self.n => {
                    self.fields.pos = self.fields.buf.len();
                    return Some(Err(WireError {
                        at: start,
                        what: self.what,
                    }));
                }
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// `ExportTraceServiceRequest.resource_spans` (or `TracesData.resource_spans`).
pub fn resource_spans(msg: &[u8]) -> impl Iterator<Item = Result<&[u8], WireError>> {
    submessages(msg, 1, "resource_spans is not a message")
}

/// `ResourceSpans.scope_spans`.
pub fn scope_spans(rs: &[u8]) -> impl Iterator<Item = Result<&[u8], WireError>> {
    submessages(rs, 2, "scope_spans is not a message")
}

/// `ScopeSpans.spans`.
pub fn spans(ss: &[u8]) -> impl Iterator<Item = Result<&[u8], WireError>> {
    submessages(ss, 2, "spans is not a message")
}

/// The attributes of `ResourceSpans.resource` (every occurrence, in order, as prost merges
/// them).
pub fn resource_attributes(rs: &[u8]) -> impl Iterator<Item = Result<KeyValue<'_>, WireError>> {
    submessages(rs, 1, "resource is not a message").flat_map(|r| {
        let (res, err) = match r {
            Ok(res) => (res, None),
            Err(e) => (&[][..], Some(Err(e))),
        };
        err.into_iter().chain(attributes(res, 1))
    })
}

/// Each `resource_spans` entry of a request whose framing was checked: its byte range, tag
/// included, and its span count. Any run of consecutive entries is itself a request.
pub fn resource_spans_entries(msg: &[u8]) -> Vec<(std::ops::Range<usize>, u64)> {
    let mut out = Vec::new();
    let mut fields = Fields::new(msg);
    loop {
        let start = fields.pos;
        match fields.field() {
            Ok(Some((1, Wire::Len(rs)))) => {
                let n = scope_spans(rs)
                    .flatten()
                    .map(|ss| spans(ss).count() as u64)
                    .sum();
                out.push((start..fields.pos, n));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => return out,
        }
    }
}

/// Spans in a request, with its framing checked down to each span: what a receiver counts and
/// refuses whole if it is cut short.
pub fn count_spans(msg: &[u8]) -> Result<u64, WireError> {
    let mut n = 0;
    for rs in resource_spans(msg) {
        for ss in scope_spans(rs?) {
            for s in spans(ss?) {
                s?;
                n += 1;
            }
        }
    }
    Ok(n)
}

/// An attribute value, as far as the normalizer cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Value<'a> {
    /// Not checked for UTF-8 until used.
    Str(&'a [u8]),
    Int(i64),
    Bool(bool),
    /// Double, bytes, array, map or nothing.
    Other,
}

#[derive(Debug, Clone, Copy)]
pub struct KeyValue<'a> {
    pub key: &'a [u8],
    pub value: Value<'a>,
}

/// `KeyValue`s at field `n` of a message.
fn attributes(msg: &[u8], n: u32) -> impl Iterator<Item = Result<KeyValue<'_>, WireError>> {
    submessages(msg, n, "attribute is not a message").map(|kv| key_value(kv?))
}

fn key_value(kv: &[u8]) -> Result<KeyValue<'_>, WireError> {
    // As every SDK writes it: key (field 1) then value (field 2), each with a one-byte length,
    // and nothing else. Read in place; anything else takes the general path below.
    if let [0x0a, klen, rest @ ..] = kv {
        let k = usize::from(*klen);
        if k < 0x80 {
            if let Some((key, [0x12, vlen, any @ ..])) = rest.split_at_checked(k) {
                if *vlen < 0x80 && usize::from(*vlen) == any.len() {
                    return Ok(KeyValue {
                        key,
                        value: any_value(any)?,
                    });
                }
            }
        }
    }
    let mut key: &[u8] = &[];
    let mut value = Value::Other;
    let mut fields = Fields::new(kv);
    while let Some((f, v)) = fields.field()? {
        match (f, v) {
            (1, Wire::Len(k)) => key = k,
            (2, Wire::Len(any)) => value = any_value(any)?,
            (1 | 2, _) => return Err(fields.err("key or value of the wrong wire type")),
            _ => {}
        }
    }
    Ok(KeyValue { key, value })
}

fn any_value(any: &[u8]) -> Result<Value<'_>, WireError> {
    // The common case, a string value alone with a one-byte length, read in place.
    if let [0x0a, n, s @ ..] = any {
        if *n < 0x80 && usize::from(*n) == s.len() {
            return Ok(Value::Str(s));
        }
    }
    let mut value = Value::Other;
    let mut fields = Fields::new(any);
    while let Some((f, v)) = fields.field()? {
        value = match (f, v) {
            (1, Wire::Len(s)) => Value::Str(s),
            (2, Wire::Varint(b)) => Value::Bool(b != 0),
            (3, Wire::Varint(i)) => Value::Int(i as i64),
            (4, Wire::Fixed64(_)) | (5..=7, Wire::Len(_)) => Value::Other,
            (1..=7, _) => return Err(fields.err("value of the wrong wire type")),
            _ => value,
        };
    }
    Ok(value)
}

/// One span's own fields; attributes and links are read on demand from `raw`.
#[derive(Debug, Clone, Copy, Default)]
pub struct SpanView<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    /// The W3C `tracestate`, not checked for UTF-8 yet.
    pub trace_state: &'a [u8],
    /// Not checked for UTF-8 yet.
    pub name: &'a [u8],
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    /// `Status.code`.
    pub status_code: i32,
    /// `Status.message`, not checked for UTF-8 yet.
    pub status_message: &'a [u8],
    /// The stretch of the span holding its attributes, and the one holding its links, so that
    /// reading them again skips the rest.
    attrs: &'a [u8],
    links: &'a [u8],
    events: &'a [u8],
}

impl<'a> SpanView<'a> {
    pub fn parse(raw: &'a [u8]) -> Result<Self, WireError> {
        let mut s = SpanView::default();
        let (mut attrs, mut links, mut events) =
            ((usize::MAX, 0), (usize::MAX, 0), (usize::MAX, 0));
        let mut fields = Fields::new(raw);
        loop {
            let start = fields.pos;
            let Some((f, v)) = fields.field()? else {
                break;
            };
            match (f, v) {
                (1, Wire::Len(b)) => s.trace_id = b,
                (2, Wire::Len(b)) => s.span_id = b,
                (3, Wire::Len(b)) => s.trace_state = b,
                (4, Wire::Len(b)) => s.parent_span_id = b,
                (5, Wire::Len(b)) => s.name = b,
                (6, Wire::Varint(k)) => s.kind = k as i32,
                (7, Wire::Fixed64(t)) => s.start_time_unix_nano = t,
                (8, Wire::Fixed64(t)) => s.end_time_unix_nano = t,
                (15, Wire::Len(st)) => {
                    let (code, message) = status(st)?;
                    s.status_code = code.unwrap_or(s.status_code);
                    s.status_message = message.unwrap_or(s.status_message);
                }
                (9, Wire::Len(_)) => attrs = (attrs.0.min(start), fields.pos),
                (13, Wire::Len(_)) => links = (links.0.min(start), fields.pos),
                (11, Wire::Len(_)) => events = (events.0.min(start), fields.pos),
                (1 | 2 | 3 | 4 | 5 | 6 | 7 | 8 | 9 | 11 | 13 | 15, _) => {
                    return Err(fields.err("span field of the wrong wire type"))
                }
                _ => {}
            }
        }
        let stretch = |(from, to): (usize, usize)| raw.get(from..to).unwrap_or_default();
        s.attrs = stretch(attrs);
        s.links = stretch(links);
        s.events = stretch(events);
        Ok(s)
    }

    /// `(name, attributes)` of each event; read only for failed spans (an exception's message).
    pub fn events(
        &self,
    ) -> impl Iterator<
        Item = Result<
            (
                &'a [u8],
                impl Iterator<Item = Result<KeyValue<'a>, WireError>>,
            ),
            WireError,
        >,
    > {
        submessages(self.events, 11, "event is not a message").map(|e| {
            let e = e?;
            let mut name: &[u8] = &[];
            let mut fields = Fields::new(e);
            while let Some((f, v)) = fields.field()? {
                match (f, v) {
                    (2, Wire::Len(b)) => name = b,
                    (2, _) => return Err(fields.err("event name of the wrong wire type")),
                    _ => {}
                }
            }
            Ok((name, attributes(e, 3)))
        })
    }

    pub fn attributes(&self) -> impl Iterator<Item = Result<KeyValue<'a>, WireError>> {
        attributes(self.attrs, 9)
    }

    /// `(trace_id, span_id)` of each link.
    pub fn links(&self) -> impl Iterator<Item = Result<(&'a [u8], &'a [u8]), WireError>> {
        submessages(self.links, 13, "link is not a message").map(|l| {
            let (mut t, mut s): (&[u8], &[u8]) = (&[], &[]);
            let mut fields = Fields::new(l?);
            while let Some((f, v)) = fields.field()? {
                match (f, v) {
                    (1, Wire::Len(b)) => t = b,
                    (2, Wire::Len(b)) => s = b,
                    (1 | 2, _) => return Err(fields.err("link id of the wrong wire type")),
                    _ => {}
                }
            }
            Ok((t, s))
        })
    }
}

/// `Status.code` and `Status.message`.
fn status(st: &[u8]) -> Result<(Option<i32>, Option<&[u8]>), WireError> {
    let (mut code, mut message) = (None, None);
    let mut fields = Fields::new(st);
    while let Some((f, v)) = fields.field()? {
        match (f, v) {
            (3, Wire::Varint(c)) => code = Some(c as i32),
            (2, Wire::Len(m)) => message = Some(m),
            (2 | 3, _) => return Err(fields.err("status field of the wrong wire type")),
            _ => {}
        }
    }
    Ok((code, message))
}

#[cfg(test)]
mod tests {
    use super::*;
    use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
    use prost::Message;

    #[test]
    fn truncation_anywhere_is_an_error_not_a_panic() {
        let cfg = crate::simulate::SimConfig {
            traces: 3,
            ..Default::default()
        };
        let resource_spans = crate::simulate::generate(&cfg)
            .flat_map(|r| r.resource_spans)
            .collect::<Vec<_>>();
        let want = crate::ingest::batch::span_count(&resource_spans);
        let bytes = ExportTraceServiceRequest { resource_spans }.encode_to_vec();
        assert_eq!(count_spans(&bytes), Ok(want));
        for cut in 0..bytes.len() {
            let _ = count_spans(&bytes[..cut]);
        }
        assert!(count_spans(&bytes[..bytes.len() - 1]).is_err());
    }

    #[test]
    fn groups_are_skipped() {
        // field 5 start-group, field 1 varint 7, field 5 end-group, then field 2 varint 1
        let msg = [0x2b, 0x08, 0x07, 0x2c, 0x10, 0x01];
        let f: Vec<_> = Fields::new(&msg).collect();
        assert_eq!(f, vec![Ok((2, Wire::Varint(1)))]);
        assert!(Fields::new(&[0x2b, 0x08]).any(|f| f.is_err()));
    }
}
