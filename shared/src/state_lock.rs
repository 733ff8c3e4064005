//! An exclusive lock on a state directory or a database, held for the life of the
//! process.
//!
//! Two processes on one state each believe they own the log: a second `sealgate sim`
//! replaced the running enclave's socket and opened the same database, and the two
//! hosts then wrote interleaved leaves. The lock is an advisory `flock` on a small file
//! beside the state; the kernel drops it when the process ends, however it ends, so a
//! crash or a `kill -9` never leaves a stale lock behind. The holder writes its PID
//! into the file, so a refused second process can say who holds it.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The held lock; dropping it (or exiting) releases it.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
    path: PathBuf,
}

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another live process holds the lock.
    #[error(
        "{what} is already in use by another process ({}); stop that one, or start this one with another {flag}",
        pid.map_or_else(|| "its PID is not recorded yet".to_string(), |p| format!("PID {p}"))
    )]
    Held {
        what: String,
        flag: &'static str,
        pid: Option<u32>,
    },
    #[error("cannot lock {what} (lock file {}): {source}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl StateLock {
    /// Locks `path` (created if missing) for `what` (e.g. "the state directory /x"),
    /// the thing a refusal names, with `flag` the option that chooses another one. A
    /// holder that is exiting at this moment (the simulator's enclave notices its host
    /// died only when its stdin closes) is given up to `wait` to let go.
    pub fn acquire(path: &Path, what: String, flag: &'static str, wait: Duration) -> Result<Self, LockError> {
        let io = |source| LockError::Io {
            what: what.clone(),
            path: path.to_path_buf(),
            source,
        };
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(io)?;
        let deadline = Instant::now() + wait;
        loop {
            match file.try_lock() {
                Ok(()) => break,
                Err(TryLockError::WouldBlock) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(TryLockError::WouldBlock) => {
                    return Err(LockError::Held {
                        what,
                        flag,
                        pid: holder_pid(&mut file),
                    })
                }
                Err(TryLockError::Error(e)) => return Err(io(e)),
            }
        }
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        file.flush().map_err(io)?;
        Ok(Self {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// The PID the holder wrote, if it has written it yet.
fn holder_pid(file: &mut File) -> Option<u32> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_with_the_holders_pid_and_freed_on_drop() {
        let dir = std::env::temp_dir().join(format!("sealgate-lock-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.lock");
        let first = StateLock::acquire(&path, "the thing".into(), "--state", Duration::ZERO).unwrap();
        // flock locks belong to the open file, so a second open in this process conflicts
        // just as another process would.
        let err = StateLock::acquire(&path, "the thing".into(), "--state", Duration::ZERO).unwrap_err();
        let text = err.to_string();
        assert!(
            matches!(err, LockError::Held { pid: Some(p), .. } if p == std::process::id()),
            "{text}"
        );
        assert!(text.contains(&format!("PID {}", std::process::id())), "{text}");
        assert!(text.contains("another --state"), "{text}");
        drop(first);
        StateLock::acquire(&path, "the thing".into(), "--state", Duration::ZERO).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
    }
}
