//! The event model: JSON lines stamped with `CLOCK_MONOTONIC` nanoseconds, which every
//! process on the machine shares, so holder, register and nemesis logs merge into one
//! timeline.

use serde::{Deserialize, Serialize};
use std::{
    fs::File,
    io::{self, BufRead, BufReader, LineWriter, Write},
    path::Path,
    sync::{Arc, Mutex},
};
use tokio::time::Instant;

/// Nanoseconds of `CLOCK_MONOTONIC` now (the same clock in every process).
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    if rc != 0 {
        return 0;
    }
    let secs = u64::try_from(ts.tv_sec).unwrap_or(0);
    let nanos = u64::try_from(ts.tv_nsec).unwrap_or(0);
    secs.saturating_mul(1_000_000_000).saturating_add(nanos)
}

/// Converts a tokio [`Instant`] (a `CLOCK_MONOTONIC` reading on Linux) to [`mono_ns`]
/// nanoseconds, by its distance from now.
pub fn instant_to_ns(at: Instant) -> u64 {
    let (now_ns, now) = (mono_ns(), Instant::now());
    if at >= now {
        let ahead = u64::try_from((at - now).as_nanos()).unwrap_or(u64::MAX);
        now_ns.saturating_add(ahead)
    } else {
        let behind = u64::try_from((now - at).as_nanos()).unwrap_or(u64::MAX);
        now_ns.saturating_sub(behind)
    }
}

/// What a holder, the nemesis or the truth poller observed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Op {
    /// A holder (incarnation) started.
    Start {
        /// The OS process id (the run's own for in-process holders).
        pid: u32,
        /// The slot it fills (a restarted holder keeps the slot, not the id).
        slot: u32,
    },
    /// A lease was granted.
    Lease {
        /// The lease id.
        lease: u64,
        /// The TTL the server granted, in milliseconds.
        granted_ttl_ms: u64,
    },
    /// A lease could not be granted.
    LeaseFail {
        /// The error.
        error: String,
    },
    /// An acquire was invoked.
    AcquireInvoke,
    /// An acquire succeeded.
    AcquireOk {
        /// The real fencing token of the grant.
        token: u64,
        /// The lease it hangs off.
        lease: u64,
        /// The local deadline at the grant (mono ns), if any.
        deadline: Option<u64>,
    },
    /// What an [`AcquireOk`](Op::AcquireOk) of a read-write lock or semaphore holds
    /// (recorded right after it; a mutex grant has none).
    Role {
        /// `read`, `write` or `permit`.
        role: String,
        /// The register cell it fences on: the lock name, or `name#slot` for a permit.
        key: String,
    },
    /// An acquire certainly failed (nothing was granted).
    AcquireFail {
        /// The error.
        error: String,
    },
    /// An acquire timed out or failed in a way that may have taken effect.
    AcquireIndeterminate {
        /// The error.
        error: String,
    },
    /// The guard's state changed (`suspect`, `held`, `lost`), with its deadline.
    State {
        /// The new state.
        state: String,
        /// The local deadline now (mono ns).
        deadline: Option<u64>,
    },
    /// The guard's local deadline moved (a keep-alive was confirmed).
    Deadline {
        /// The new local deadline (mono ns).
        deadline: u64,
    },
    /// A register access was answered.
    Access {
        /// `read` or `write`.
        op: String,
        /// The token sent (differs from the real one only in broken mode).
        sent_token: u64,
        /// Whether the fenced part was accepted.
        accepted: bool,
    },
    /// A register access failed (indeterminate: it may have been applied).
    AccessFail {
        /// The error.
        error: String,
    },
    /// The holder gave up its cycle because its guard left `Held`.
    Abandon {
        /// The state it saw.
        state: String,
    },
    /// A release was invoked.
    ReleaseInvoke,
    /// A release was confirmed.
    ReleaseOk,
    /// A release failed (`not held`: the lock was already lost).
    ReleaseFail {
        /// The error kind.
        kind: String,
    },
    /// The holder stopped cleanly.
    Exit,
    /// An election observer saw this leader (`None`: nobody leads) on its stream.
    Observed {
        /// The leader's term, if any.
        term: Option<u64>,
        /// The leader's value.
        value: String,
    },
}

/// One line of a holder history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Mono ns when it was observed.
    pub t: u64,
    /// The holder incarnation's unique id.
    pub holder: u32,
    /// The holder's cycle number (0 before the first acquire).
    pub cycle: u64,
    /// The lock name.
    pub name: String,
    /// What happened.
    #[serde(flatten)]
    pub op: Op,
}

/// An append-only JSON-lines file, flushed per line (a SIGKILL loses nothing that was
/// written). Cheap to clone.
#[derive(Debug, Clone)]
pub struct JsonlWriter {
    out: Arc<Mutex<LineWriter<File>>>,
}

impl JsonlWriter {
    /// Creates (truncates) `path`.
    ///
    /// # Errors
    ///
    /// The file's.
    pub fn create(path: &Path) -> io::Result<Self> {
        Ok(JsonlWriter {
            out: Arc::new(Mutex::new(LineWriter::new(File::create(path)?))),
        })
    }

    /// Appends `value` as one line; errors are reported on stderr only (a history
    /// writer must never stop the holder).
    pub fn write<T: Serialize>(&self, value: &T) {
        let line = match serde_json::to_string(value) {
            Ok(line) => line,
            Err(e) => {
                eprintln!("fencecheck: cannot encode event: {e}");
                return;
            }
        };
        let mut out = self.out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = writeln!(out, "{line}") {
            eprintln!("fencecheck: cannot write event: {e}");
        }
    }
}

/// Reads a JSON-lines file; a torn last line (a process killed mid-write) is skipped.
///
/// # Errors
///
/// The file's, or a malformed line other than the last.
pub fn read_jsonl<T: for<'de> Deserialize<'de>>(path: &Path) -> io::Result<Vec<T>> {
    let lines: Vec<String> = BufReader::new(File::open(path)?)
        .lines()
        .collect::<io::Result<_>>()?;
    let mut out = Vec::with_capacity(lines.len());
    let last = lines.len().saturating_sub(1);
    for (i, line) in lines.iter().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str(line) {
            Ok(v) => out.push(v),
            Err(_) if i == last => {}
            Err(e) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{}:{}: {e}", path.display(), i + 1),
                ))
            }
        }
    }
    Ok(out)
}

/// A holder's event sink: stamps and writes events of one holder incarnation.
#[derive(Debug, Clone)]
pub struct Recorder {
    out: JsonlWriter,
    holder: u32,
    name: String,
}

impl Recorder {
    /// A recorder for holder `holder` on lock `name`, writing to `out`.
    pub fn new(out: JsonlWriter, holder: u32, name: impl Into<String>) -> Self {
        Recorder {
            out,
            holder,
            name: name.into(),
        }
    }

    /// Records `op` of `cycle` now.
    pub fn record(&self, cycle: u64, op: Op) {
        self.out.write(&Event {
            t: mono_ns(),
            holder: self.holder,
            cycle,
            name: self.name.clone(),
            op,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_torn_tail_is_skipped() {
        let dir = std::env::temp_dir().join(format!("fc-hist-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("h.jsonl");
        let w = JsonlWriter::create(&path).unwrap();
        let rec = Recorder::new(w, 3, "lk");
        rec.record(1, Op::AcquireInvoke);
        rec.record(
            1,
            Op::AcquireOk {
                token: 9,
                lease: 2,
                deadline: Some(5),
            },
        );
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(b"{\"t\":1,\"hol"))
            .unwrap();
        let back: Vec<Event> = read_jsonl(&path).unwrap();
        assert_eq!(back.len(), 2);
        assert_eq!(
            back[1].op,
            Op::AcquireOk {
                token: 9,
                lease: 2,
                deadline: Some(5)
            }
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn mono_clock_moves_forward() {
        let a = mono_ns();
        let b = mono_ns();
        assert!(a > 0 && b >= a);
        let later = instant_to_ns(Instant::now() + std::time::Duration::from_secs(1));
        assert!(later > b + 900_000_000);
    }
}
