//! The job's private folder, where its Unix sockets live.

use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

/// A folder only the user can enter (mode 0700), removed with everything in it on drop.
pub struct JobDir {
    path: PathBuf,
}

impl JobDir {
    /// Creates `prun-<job id>` under `$TMPDIR` (or `/tmp` when `$TMPDIR` is unset or too long
    /// for socket paths).
    pub fn create(job_id: &str) -> io::Result<JobDir> {
        let base = std::env::var_os("TMPDIR")
            .map(PathBuf::from)
            .filter(|p| p.is_absolute() && p.as_os_str().len() <= 48)
            .unwrap_or_else(|| PathBuf::from("/tmp"));
        let path = base.join(format!("prun-{job_id}"));
        std::fs::DirBuilder::new().mode(0o700).create(&path)?;
        Ok(JobDir { path })
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for JobDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}
