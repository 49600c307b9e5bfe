//! Snapshots of the live state (names, nodes, windowed aggregates), so a restart keeps the
//! graph, the history and the findings. Written to a temporary file and renamed into place,
//! so a crash mid-write leaves the previous snapshot intact. Traces still being assembled are
//! not saved: at most `trace_idle` of them is lost, plus what came after the last snapshot.

use std::collections::BTreeMap;
use std::fs;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::analyze::graph::{GraphAgg, NodeTable};
use crate::engine::Engine;
use crate::ingest::Normalizer;
use crate::model::{Interner, NodeKey};

const FILE: &str = "state.bin";
/// Bumped whenever the snapshot layout changes; older snapshots are ignored, not misread.
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: unreadable snapshot: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// What `save` writes: the same layout as [`Snapshot`], borrowed, so a snapshot costs no copy
/// of the state.
#[derive(Serialize)]
struct SnapshotRef<'a> {
    version: u32,
    names: Vec<&'a str>,
    nodes: &'a [NodeKey],
    buckets: &'a BTreeMap<u64, GraphAgg>,
    retired: &'a GraphAgg,
}

#[derive(Deserialize)]
struct Snapshot {
    version: u32,
    names: Vec<String>,
    nodes: Vec<NodeKey>,
    buckets: BTreeMap<u64, GraphAgg>,
    retired: GraphAgg,
}

#[derive(Debug, Clone)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Creates the directory if needed.
    pub fn open(dir: &Path) -> Result<StateDir, StateError> {
        fs::create_dir_all(dir).map_err(|source| StateError::Io {
            path: dir.to_owned(),
            source,
        })?;
        Ok(StateDir {
            dir: dir.to_owned(),
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
        let (buckets, retired) = engine.analyzer.windows.parts();
        let snap = SnapshotRef {
            version: VERSION,
            names: engine.interner().names().collect(),
            nodes: engine.analyzer.nodes.keys(),
            buckets,
            retired,
        };
        bincode::serialize(&snap).map_err(|e| StateError::Corrupt {
            path: self.path(),
            message: e.to_string(),
        })
    }

    /// Writes encoded bytes to a temporary file, syncs it and renames it into place.
    pub fn write(&self, bytes: &[u8]) -> Result<(), StateError> {
        let tmp = self.dir.join(format!("{FILE}.tmp"));
        let io = |source| StateError::Io {
            path: tmp.clone(),
            source,
        };
        let f = fs::File::create(&tmp).map_err(io)?;
        let mut w = BufWriter::new(f);
        w.write_all(bytes).map_err(io)?;
        w.flush().map_err(io)?;
        w.get_ref().sync_all().map_err(io)?;
        fs::rename(&tmp, self.path()).map_err(|source| StateError::Io {
            path: self.path(),
            source,
        })
    }

    /// Restores the last snapshot into a fresh engine. `Ok(false)` when there is none.
    pub fn restore(
        &self,
        engine: &mut Engine,
        max_names: usize,
        max_nodes: usize,
    ) -> Result<bool, StateError> {
        let path = self.path();
        let f = match fs::File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(source) => return Err(StateError::Io { path, source }),
        };
        let snap: Snapshot =
            bincode::deserialize_from(BufReader::new(f)).map_err(|e| StateError::Corrupt {
                path: path.clone(),
                message: e.to_string(),
            })?;
        if snap.version != VERSION {
            return Err(StateError::Corrupt {
                path,
                message: format!("version {} (this build reads {VERSION})", snap.version),
            });
        }
        engine.normalizer = Normalizer::new(Interner::from_names(
            snap.names.iter().map(String::as_str),
            max_names,
        ));
        engine.analyzer.nodes = NodeTable::from_keys(&snap.nodes, max_nodes);
        engine.analyzer.windows.restore(snap.buckets, snap.retired);
        Ok(true)
    }
}
