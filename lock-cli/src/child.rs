//! The child command in its own process group, and signals to that group.

use std::{io, process::ExitStatus};
use tokio::process::{Child, Command};

/// A running child whose process group fencelock signals as a whole (the command may
/// start its own children).
#[derive(Debug)]
pub(crate) struct Group {
    child: Child,
    pgid: libc::pid_t,
}

impl Group {
    /// Starts `argv` as the leader of a new process group.
    pub(crate) fn spawn(argv: &[String], env: &[(&str, String)]) -> io::Result<Group> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no command given"))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .process_group(0)
            .kill_on_drop(false)
            .env_remove(crate::PASSWORD_ENV);
        for (key, value) in env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .map_err(|e| io::Error::new(e.kind(), format!("cannot run {program:?}: {e}")))?;
        let pid = child
            .id()
            .ok_or_else(|| io::Error::other("child exited before its pid was read"))?;
        let pgid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
        Ok(Group { child, pgid })
    }

    /// Sends `signal` to every process of the group.
    pub(crate) fn signal(&self, signal: libc::c_int) {
        // SAFETY: killpg only sends a signal to the group we created; a group that is
        // already gone yields ESRCH, which is fine.
        unsafe {
            libc::killpg(self.pgid, signal);
        }
    }

    /// Waits for the group leader to exit.
    pub(crate) async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }
}

/// The shell convention for an exit status: the code, or 128 + the signal.
pub(crate) fn exit_code(status: ExitStatus) -> u8 {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => u8::try_from(code & 0xff).unwrap_or(1),
        (None, Some(sig)) => u8::try_from(128 + sig).unwrap_or(255),
        (None, None) => 1,
    }
}
