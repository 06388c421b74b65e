//! Names and directories private to one test.

use std::{
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
    time::{SystemTime, UNIX_EPOCH},
};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A name unique to this process and call, `{prefix}_{pid}_{n}_{nanos}`: usable as a file name
/// and, with a lower-case prefix, as an unquoted PostgreSQL identifier. The clock part keeps
/// names apart across runs whose process ids repeat.
pub fn unique_name(prefix: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh directory under the system temp directory, removed with its contents on drop.
#[derive(Debug)]
pub struct TempDir {
    path: PathBuf,
}

impl TempDir {
    /// Creates `carechain-{tag}_…` (a [`unique_name`]) under the system temp directory.
    pub fn new(tag: &str) -> Self {
        let path = std::env::temp_dir().join(unique_name(&format!("carechain-{tag}")));
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create the temp dir {}: {e}", path.display()));
        Self { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
