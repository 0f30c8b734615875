//! A lock holder in a child process, for the cases that pause a real process
//! (`SIGSTOP`) while it holds a lock.
//!
//! The child is the runner's own test binary, started again with [`HOLDER_ENV`] set:
//! every runner whose harness gives a [`process_url`](crate::Harness::process_url)
//! calls [`child_main`] first thing in its `main`.

use crate::TestError;
use std::{
    io::{BufRead, BufReader, Write},
    process::{Command, Stdio},
    time::Duration,
};
use tokio::sync::mpsc;

/// Set to `<url> <lock>` in a holder child's environment.
pub const HOLDER_ENV: &str = "FENCELOCK_HOLDER";

/// When this process was started as a holder child ([`HOLDER_ENV`] is set), runs the
/// child and exits; otherwise returns at once.
///
/// The child acquires the lock with a 2 s lease, prints `TOKEN n`, then every 50 ms
/// prints `STATE s` and, while held, `WRITE n` (a write it would send to the
/// resource). It exits when its parent stops reading.
pub fn child_main() {
    let Ok(spec) = std::env::var(HOLDER_ENV) else {
        return;
    };
    let Some((url, name)) = spec.split_once(' ') else {
        eprintln!("bad {HOLDER_ENV}");
        std::process::exit(2);
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime for the child");
    rt.block_on(async {
        let client = fencelock::connect(url).await.expect("child connects");
        let lease = client
            .lease_with_ttl(Duration::from_secs(2))
            .await
            .expect("child lease");
        let guard = lease
            .lock(name)
            .expect("valid name")
            .acquire()
            .await
            .expect("child acquires");
        let mut out = std::io::stdout();
        let _ = writeln!(out, "TOKEN {}", guard.token());
        loop {
            let state = guard.state();
            let mut report = format!("STATE {state}\n");
            if state.is_held() {
                report.push_str(&format!("WRITE {}\n", guard.token()));
            }
            if out
                .write_all(report.as_bytes())
                .and_then(|()| out.flush())
                .is_err()
            {
                std::process::exit(0); // the parent is gone
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    std::process::exit(0);
}

/// A running holder child: its output lines, and signals. Dropping it continues and
/// kills the child, however the case ends.
#[derive(Debug)]
pub struct HolderChild {
    child: std::process::Child,
    /// The child's output, one line at a time.
    pub lines: mpsc::UnboundedReceiver<String>,
}

impl HolderChild {
    /// Starts a child that acquires lock `name` through `url`.
    ///
    /// # Errors
    ///
    /// When the child cannot be started.
    pub fn spawn(url: &str, name: &str) -> Result<HolderChild, TestError> {
        let mut child = Command::new(std::env::current_exe()?)
            .env(HOLDER_ENV, format!("{url} {name}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()?;
        let (tx, lines) = mpsc::unbounded_channel::<String>();
        let stdout = child.stdout.take().ok_or("no child stdout")?;
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Ok(HolderChild { child, lines })
    }

    /// Pauses the child (`SIGSTOP`).
    pub fn pause(&self) {
        signal(self.child.id(), libc::SIGSTOP);
    }

    /// Continues the child (`SIGCONT`).
    pub fn resume(&self) {
        signal(self.child.id(), libc::SIGCONT);
    }
}

impl Drop for HolderChild {
    fn drop(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn signal(pid: u32, sig: libc::c_int) {
    // SAFETY: kill(2) has no memory-safety preconditions; the child is ours and unreaped.
    unsafe { libc::kill(pid as libc::pid_t, sig) };
}
