//! Snapshots of the live state (names, nodes, windowed aggregates), so a restart keeps the
//! graph, the history and the findings. Written to a temporary file and renamed into place,
//! so a crash mid-write leaves the previous snapshot intact. Traces still being assembled are
//! not saved: at most `trace_idle` of them is lost, plus what came after the last snapshot.
//!
//! A snapshot can't hurt: it starts with a header (magic, format version, payload length,
//! CRC-32 of the payload), checked before anything is decoded; decoding is bounded by the
//! payload's length (a length prefix can't ask for more memory than the file holds) and
//! cannot panic; what it restores is checked against itself (every node id in range). A bad
//! file is moved aside for a human and the daemon starts empty, saying why.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::engine::Engine;
use crate::analyze::graph::GraphAgg;
use crate::analyze::node::NodeTable;
use crate::model::{Interner, NodeKey};

const FILE: &str = "state.bin";
/// The first bytes of every snapshot.
const MAGIC: &[u8; 8] = b"CHKPSNAP";
/// Bumped whenever the snapshot layout changes; older snapshots are moved aside, not misread.
const VERSION: u32 = 5;
/// Magic, version (u32), payload length (u64), CRC-32 of the payload (u32); little-endian.
const HEADER: usize = 8 + 4 + 8 + 4;

fn codec() -> impl bincode::Options {
    use bincode::Options;
    bincode::DefaultOptions::new()
        .with_fixint_encoding()
        .allow_trailing_bytes()
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unreadable snapshot: {message}")]
    Corrupt { path: PathBuf, message: String },
    #[error(
        "{path}: another chokepoint uses this state directory (its lock file is held); give each daemon its own"
    )]
    Locked { path: PathBuf },
}

/// What `save` writes: the same layout as [`Snapshot`], borrowed, so a snapshot costs no copy
/// of the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    names: Vec<&'a str>,
    nodes: &'a [NodeKey],
    buckets: &'a BTreeMap<u64, GraphAgg>,
    retired: &'a GraphAgg,
}

#[derive(Deserialize)]
struct Snapshot {
    names: Vec<String>,
    nodes: Vec<NodeKey>,
    buckets: BTreeMap<u64, GraphAgg>,
    retired: GraphAgg,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
    /// Held while the directory is in use: two daemons on one directory overwrote each
    /// other's history (whichever stopped last won).
    _lock: std::sync::Arc<fs::File>,
}

impl StateDir {
    /// Creates the directory if needed and locks it (`lock`, released when the process
    /// ends, however it ends).
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| StateError::Io { path, source }
        };
        fs::create_dir_all(dir).map_err(io(dir))?;
        let lock_path = dir.join("lock");
        let lock = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(StateError::Locked {
                    path: dir.to_owned(),
                })
            }
            Err(fs::TryLockError::Error(e)) => return Err(io(&lock_path)(e)),
        }
        Ok(StateDir {
            dir: dir.to_owned(),
            _lock: std::sync::Arc::new(lock),
        })
    }

    pub fn path(&self) -> PathBuf {
        self.dir.join(FILE)
    }

    /// Encodes and writes a snapshot (both on the calling thread).
    pub fn save(&self, engine: &Engine) -> Result<(), StateError> {
        let bytes = self.encode(engine)?;
        self.write(&bytes)
    }

    /// The snapshot's bytes: quick (no I/O), so the pipeline can do it between batches and
    /// hand the slow part, [`StateDir::write`], to a blocking thread.
    pub fn encode(&self, engine: &Engine) -> Result<Vec<u8>, StateError> {
        use bincode::Options;
        let (buckets, retired) = engine.windows().parts();
        let snap = SnapshotRef {
            names: engine.interner().names().collect(),
            nodes: engine.nodes().keys(),
            buckets,
            retired,
        };
        let payload = codec().serialize(&snap).map_err(|e| StateError::Corrupt {
            path: self.path(),
            message: e.to_string(),
        })?;
        Ok(frame(&payload))
    }

    /// Writes encoded bytes to a temporary file, syncs it and renames it into place. The
    /// temporary file is made new (whatever was at its name is removed first, and a link
    /// put there meanwhile fails the write instead of being followed: a symlink there had
    /// the snapshot overwrite a file outside the directory), readable by the owner only.
    pub fn write(&self, bytes: &[u8]) -> Result<(), StateError> {
        use std::os::unix::fs::OpenOptionsExt;
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let io = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        match fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io(e)),
            _ => {}
        }
        let f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(io)?;
        let mut w = BufWriter::new(f);
        w.write_all(bytes).map_err(io)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        fs::rename(&tmp, self.path()).map_err(|source| StateError::Io {
            path: self.path(),
            source,
        })
    }

    /// Restores the last snapshot into a fresh engine. `Ok(false)` when there is none. A
    /// snapshot that can't be used is moved aside (`state.bin.bad-<unix seconds>`), the
    /// engine is left empty, and the error says why and where the file went.
    pub fn restore(
        &self,
        engine: &mut Engine,
        max_names: usize,
        max_nodes: usize,
    ) -> Result<bool, StateError> {
        let path = self.path();
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        match decode(&bytes, max_names, max_nodes) {
            Ok(snap) => {
                engine.restore_tables(
                    Interner::from_names(snap.names.iter().map(String::as_str), max_names),
                    NodeTable::from_keys(&snap.nodes, max_nodes),
                );
                engine.windows_mut().restore(snap.buckets, snap.retired);
                Ok(true)
            }
            Err(message) => {
                let stamp = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let mut aside = self.dir.join(format!("{FILE}.bad-{stamp}"));
                let mut n = 1;
                while aside.exists() {
                    n += 1;
                    aside = self.dir.join(format!("{FILE}.bad-{stamp}-{n}"));
                }
                let kept = match fs::rename(&path, &aside) {
                    Ok(()) => format!("moved aside to {}", aside.display()),
                    Err(e) => format!("could not be moved aside ({e})"),
                };
                Err(StateError::Corrupt {
                    path,
                    message: format!("{message}; {kept}; starting empty"),
                })
            }
        }
    }
}

/// A payload with the snapshot header in front (magic, version, length, CRC-32). Public so the
/// fuzzer can reach the decoder behind the checksum, which random bytes almost never pass.
pub fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u64).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    out
}

/// Whether a snapshot file's bytes would restore, and if not, why (for fuzzing and tools).
pub fn check_snapshot(bytes: &[u8], max_names: usize, max_nodes: usize) -> Result<(), String> {
    decode(bytes, max_names, max_nodes).map(|_| ())
}

/// Checks and decodes a snapshot file's bytes; never panics, never allocates more than the
/// file's size allows.
fn decode(bytes: &[u8], max_names: usize, max_nodes: usize) -> Result<Snapshot, String> {
    use bincode::Options;
    if bytes.len() < HEADER || &bytes[..8] != MAGIC {
        return Err("not a chokepoint snapshot (no header)".into());
    }
    let u32_at = |i: usize| u32::from_le_bytes(bytes[i..i + 4].try_into().unwrap_or([0; 4]));
    let version = u32_at(8);
    if version != VERSION {
        return Err(format!(
            "format version {version} (this build reads {VERSION})"
        ));
    }
    let len = u64::from_le_bytes(bytes[12..20].try_into().unwrap_or([0; 8]));
    let payload = &bytes[HEADER..];
    if len != payload.len() as u64 {
        return Err(format!(
            "truncated or padded: the header says {len} bytes, the file holds {}",
            payload.len()
        ));
    }
    if crc32fast::hash(payload) != u32_at(20) {
        return Err("checksum mismatch: the file is damaged".into());
    }
    let snap: Snapshot = std::panic::catch_unwind(|| {
        codec()
            .with_limit(payload.len() as u64)
            .deserialize::<Snapshot>(payload)
    })
    .map_err(|_| "decoding failed".to_owned())?
    .map_err(|e| format!("undecodable: {e}"))?;
    if snap.names.len() > max_names.max(1) || snap.nodes.len() > max_nodes.max(2) {
        return Err(format!(
            "{} names and {} nodes: more than this configuration keeps",
            snap.names.len(),
            snap.nodes.len()
        ));
    }
    let nodes = snap.nodes.len() as u32;
    let in_range = |g: &GraphAgg| {
        g.nodes.keys().all(|n| n.0 < nodes)
            && g.edges.keys().all(|k| k.from.0 < nodes && k.to.0 < nodes)
            && g.facts
                .cp
                .keys()
                .all(|(op, n)| n.0 < nodes && op.service.0 < nodes)
            && g.facts
                .reach
                .keys()
                .all(|(op, n)| n.0 < nodes && op.service.0 < nodes)
            && g.facts.ops.keys().all(|op| op.service.0 < nodes)
    };
    if !snap.buckets.values().all(in_range) || !in_range(&snap.retired) {
        return Err("node ids out of range: the file does not hold together".into());
    }
    Ok(snap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_never_panics_and_says_why() {
        let why = |b: &[u8]| decode(b, 10, 10).err().unwrap_or_default();
        assert!(why(b"").contains("header"));
        assert!(why(&[0xFF; 4096]).contains("header"));
        let mut bad = MAGIC.to_vec();
        bad.extend_from_slice(&VERSION.to_le_bytes());
        bad.extend_from_slice(&u64::MAX.to_le_bytes());
        bad.extend_from_slice(&0u32.to_le_bytes());
        assert!(why(&bad).contains("truncated"));
    }
}
