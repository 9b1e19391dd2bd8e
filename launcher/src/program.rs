//! Checks, before any rank starts, that the program exists and can be executed.

use crate::status::{EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND};
use nix::unistd::{AccessFlags, access};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Why the program cannot run, with the exit status a shell would give.
#[derive(Debug)]
pub struct ProgramError {
    /// 126 or 127.
    pub status: i32,
    /// What is wrong and how to fix it.
    pub message: String,
}

/// Finds `program` as a shell would: a name with a `/` is a path (relative to this folder), a
/// bare name is looked up in `PATH`. Returns an absolute path.
pub fn resolve(program: &OsStr) -> Result<PathBuf, ProgramError> {
    let shown = program.to_string_lossy();
    if program.as_bytes().contains(&b'/') {
        let path = std::path::absolute(program).map_err(|e| ProgramError {
            status: EXIT_NOT_FOUND,
            message: format!("cannot run '{shown}': {e}"),
        })?;
        return check(&path, &shown);
    }
    let search = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&search) {
        let dir = if dir.as_os_str().is_empty() { PathBuf::from(".") } else { dir };
        let candidate = dir.join(program);
        if candidate.is_file() {
            let candidate = std::path::absolute(&candidate).unwrap_or(candidate);
            if check(&candidate, &shown).is_ok() {
                return Ok(candidate);
            }
        }
    }
    Err(ProgramError {
        status: EXIT_NOT_FOUND,
        message: format!(
            "cannot run '{shown}': no such program in PATH; give its path (for example ./{shown}) or add its folder to PATH"
        ),
    })
}

fn check(path: &Path, shown: &str) -> Result<PathBuf, ProgramError> {
    match std::fs::metadata(path) {
        Err(e) => Err(ProgramError {
            status: EXIT_NOT_FOUND,
            message: format!("cannot run '{shown}': {} ({})", e.kind_text(), path.display()),
        }),
        Ok(m) if m.is_dir() => Err(ProgramError {
            status: EXIT_NOT_EXECUTABLE,
            message: format!("cannot run '{shown}': it is a directory"),
        }),
        Ok(_) if access(path, AccessFlags::X_OK).is_err() => Err(ProgramError {
            status: EXIT_NOT_EXECUTABLE,
            message: format!("cannot run '{shown}': permission denied (make it executable with chmod +x)"),
        }),
        Ok(_) => Ok(path.to_path_buf()),
    }
}

trait KindText {
    fn kind_text(&self) -> String;
}

impl KindText for std::io::Error {
    fn kind_text(&self) -> String {
        match self.kind() {
            std::io::ErrorKind::NotFound => "no such file".into(),
            std::io::ErrorKind::PermissionDenied => "permission denied".into(),
            _ => self.to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_explains_failures() {
        assert!(resolve(OsStr::new("sh")).expect("sh is in PATH").is_absolute());
        let missing = resolve(OsStr::new("./no-such-program-here")).expect_err("missing");
        assert_eq!(missing.status, EXIT_NOT_FOUND);
        assert!(missing.message.contains("no such file"), "{}", missing.message);
        let dir = resolve(OsStr::new("/tmp/")).expect_err("a directory");
        assert_eq!(dir.status, EXIT_NOT_EXECUTABLE);
        assert_eq!(resolve(OsStr::new("no-such-program-xyz")).expect_err("none").status, EXIT_NOT_FOUND);
    }
}
