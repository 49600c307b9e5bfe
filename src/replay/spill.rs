//! Spans set aside on disk, split by trace id, when replay holds more than its in-flight
//! limits: every span of a trace lands in the same part, so each part assembles on its own into
//! whole traces whatever order the input was in, and memory holds one part at a time. The
//! files live in a directory under `$TMPDIR`, removed when the spill is done or dropped.

use std::fs::File;
use std::io::{self, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::analyze::engine::{SpanSpill, SpillOpener, SpilledPart};
use crate::model::{Span, TraceId};

/// Opens a spill in a new directory under `$TMPDIR` when the engine first needs one.
pub fn on_disk() -> SpillOpener {
    Box::new(|| {
        let dir = tempfile::Builder::new()
            .prefix("chokepoint-spill-")
            .tempdir()
            .map_err(|e| format!("{}: {e}", std::env::temp_dir().display()))?;
        let spill = Spill::new(dir.path(), "0", 0).map_err(|e| e.to_string())?;
        Ok(Box::new(DiskSpill { dir, spill }) as Box<dyn SpanSpill>)
    })
}

/// A spill and the directory that holds its files.
struct DiskSpill {
    dir: tempfile::TempDir,
    spill: Spill,
}

impl SpanSpill for DiskSpill {
    fn put(&mut self, span: &Span) -> Result<(), String> {
        self.spill.write(span).map_err(|e| e.to_string())
    }

    fn into_parts(self: Box<Self>, max_spans: usize) -> Box<dyn Iterator<Item = SpilledPart>> {
        let DiskSpill { dir, spill } = *self;
        let total = spill.spans();
        let (mut todo, failed) = match spill.close() {
            Ok(parts) => (parts, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        todo.reverse();
        let mut failed = failed.map(|e| SpilledPart {
            spans: Vec::new(),
            lost: total,
            error: Some(format!("writing the spill: {e}")),
        });
        let mut tag = 0u64;
        Box::new(std::iter::from_fn(move || {
            if let Some(f) = failed.take() {
                return Some(f);
            }
            loop {
                let part = todo.pop()?;
                // A part still over the limits is split again (by the next trace-id byte),
                // up to one split per byte of a trace id.
                if part.spans > max_spans && part.depth < 15 {
                    tag += 1;
                    match part.split(dir.path(), &format!("s{tag}")) {
                        Ok(mut parts) => {
                            parts.reverse();
                            todo.extend(parts);
                            continue;
                        }
                        // Assembled as it is: the assembler completes early what overflows.
                        Err(e) => tracing::warn!(error = %e, "cannot split a spilled part"),
                    }
                }
                return Some(part.load());
            }
        }))
    }
}

/// Parts a spill is split into: a part holds about 1/64 of what was spilled.
const PARTS: usize = 64;

/// Spans written out, by part, into files of a directory the caller owns.
pub struct Spill {
    /// Which trace-id byte chooses the part (a part split again uses the next one).
    depth: usize,
    parts: Vec<Part>,
}

struct Part {
    path: PathBuf,
    out: BufWriter<File>,
    spans: usize,
}

/// One part, written and closed: read it back with [`Written::read`].
pub struct Written {
    path: PathBuf,
    pub spans: usize,
    /// The depth it was split at.
    pub depth: usize,
}

impl Spill {
    /// A spill into `dir`, its files named after `tag` (unique within `dir`).
    pub fn new(dir: &Path, tag: &str, depth: usize) -> io::Result<Self> {
        let parts = (0..PARTS)
            .map(|i| {
                let path = dir.join(format!("{tag}-{i}"));
                let out = BufWriter::with_capacity(1 << 15, File::create_new(&path)?);
                Ok(Part {
                    path,
                    out,
                    spans: 0,
                })
            })
            .collect::<io::Result<_>>()?;
        Ok(Spill { depth, parts })
    }

    /// The part of `trace`: trace ids are random (or hashed), so one byte of them splits
    /// evenly; each depth uses another byte.
    fn part_of(&self, trace: &TraceId) -> usize {
        usize::from(trace.0[15 - self.depth % 16]) % PARTS
    }

    pub fn write(&mut self, span: &Span) -> io::Result<()> {
        let i = self.part_of(&span.trace_id);
        let part = &mut self.parts[i];
        bincode::serialize_into(&mut part.out, span).map_err(into_io)?;
        part.spans += 1;
        Ok(())
    }

    pub fn spans(&self) -> usize {
        self.parts.iter().map(|p| p.spans).sum()
    }

    /// Flushes every part and hands them over, empty ones left out (and removed).
    pub fn close(self) -> io::Result<Vec<Written>> {
        let mut written = Vec::with_capacity(self.parts.len());
        for mut p in self.parts {
            p.out.flush()?;
            drop(p.out);
            if p.spans == 0 {
                std::fs::remove_file(&p.path)?;
                continue;
            }
            written.push(Written {
                path: p.path,
                spans: p.spans,
                depth: self.depth,
            });
        }
        Ok(written)
    }
}

impl Written {
    /// The part's spans, in the order written.
    pub fn read(&self) -> io::Result<impl Iterator<Item = io::Result<Span>>> {
        let mut r = BufReader::with_capacity(1 << 16, File::open(&self.path)?);
        let n = self.spans;
        Ok((0..n).map(move |_| bincode::deserialize_from(&mut r).map_err(into_io)))
    }

    /// Splits this part (too large to hold at once) into parts of its own, one trace-id byte
    /// further, and removes its file.
    pub fn split(&self, dir: &Path, tag: &str) -> io::Result<Vec<Written>> {
        let mut s = Spill::new(dir, tag, self.depth + 1)?;
        for span in self.read()? {
            s.write(&span?)?;
        }
        self.remove()?;
        s.close()
    }

    /// Reads the part back whole and removes its file.
    fn load(&self) -> SpilledPart {
        let mut spans = Vec::with_capacity(self.spans);
        let mut error = None;
        match self.read() {
            Ok(it) => {
                for s in it {
                    match s {
                        Ok(s) => spans.push(s),
                        Err(e) => {
                            error = Some(format!("reading the spill: {e}"));
                            break;
                        }
                    }
                }
            }
            Err(e) => error = Some(format!("reading the spill: {e}")),
        }
        let _ = self.remove();
        SpilledPart {
            lost: self.spans - spans.len(),
            spans,
            error,
        }
    }

    pub fn remove(&self) -> io::Result<()> {
        std::fs::remove_file(&self.path)
    }
}

#[allow(clippy::boxed_local)] // bincode's error type is a box
fn into_io(e: bincode::Error) -> io::Error {
    match *e {
        bincode::ErrorKind::Io(e) => e,
        other => io::Error::new(io::ErrorKind::InvalidData, other),
    }
}
