//! The fenced register: a test-only TCP service on `127.0.0.1:0` holding, per lock
//! name, a fenced counter (a read or write with a token older than the highest seen is
//! rejected; every accepted access raises the highest) and an **unfenced** counter
//! (the positive control: it accepts everything, so a paused holder loses updates).
//!
//! Requests and answers are JSON lines. Every access is logged with the register's
//! own arrival time, in apply order.
//!
//! The cells live in this process ([`RegisterKind::Memory`]) or in a real PostgreSQL
//! table fenced by `lock-fence` ([`RegisterKind::Postgres`]: the database itself
//! refuses stale tokens; one database connection and transaction per access).

use crate::{history::mono_ns, pg_register::PgRegister};
use serde::{Deserialize, Serialize};
use std::{
    collections::HashMap,
    io,
    net::SocketAddr,
    sync::{Arc, Mutex},
};
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader},
    net::{TcpListener, TcpStream},
    task::JoinHandle,
};

/// Where the register keeps its cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RegisterKind {
    /// A map in this process, behind a mutex.
    #[default]
    Memory,
    /// A table in a PostgreSQL server the register starts (temp dir, free loopback
    /// port), fenced by `lock_fence::postgres::fenced`.
    Postgres,
}

/// A request to the register.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// `read` or `write`.
    pub op: String,
    /// The lock name the counters belong to.
    pub name: String,
    /// The holder incarnation.
    pub holder: u32,
    /// The holder's cycle.
    pub cycle: u64,
    /// The fencing token presented.
    pub token: u64,
    /// For a write: the new fenced counter value.
    pub value: u64,
    /// For a write: the new unfenced counter value.
    pub uvalue: u64,
    /// A read under a shared (read) lock: checked against the highest *write*
    /// token only (`Fence::check_read`); every other access is checked against
    /// every token accepted (`Fence::check_write`).
    #[serde(default)]
    pub shared: bool,
}

/// The register's answer.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
pub struct Reply {
    /// Whether the fenced part was accepted.
    pub accepted: bool,
    /// The fenced counter (after the access).
    pub value: u64,
    /// The unfenced counter (after the access).
    pub uvalue: u64,
}

/// One applied access, as the register saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegEntry {
    /// Arrival time (mono ns).
    pub t: u64,
    /// The holder incarnation.
    pub holder: u32,
    /// The holder's cycle.
    pub cycle: u64,
    /// The lock name.
    pub name: String,
    /// `read` or `write`.
    pub op: String,
    /// The token presented.
    pub token: u64,
    /// Whether the fenced part was accepted.
    pub accepted: bool,
    /// The highest token seen before this access.
    pub highest_before: u64,
    /// The fenced counter before.
    pub value_before: u64,
    /// The fenced counter written (accepted writes only).
    pub value_written: Option<u64>,
    /// The unfenced counter before.
    pub u_before: u64,
    /// The unfenced counter written (writes only).
    pub u_written: Option<u64>,
    /// A shared read (see [`Request::shared`]).
    #[serde(default)]
    pub shared: bool,
    /// The highest token accepted from an exclusive access before this one.
    #[serde(default)]
    pub highest_write_before: u64,
}

#[derive(Debug, Default, Clone, Copy)]
struct Cell {
    highest: u64,
    highest_write: u64,
    value: u64,
    uvalue: u64,
}

/// The register's state and log; also usable without TCP (unit tests).
#[derive(Debug)]
pub struct RegisterState {
    fenced: bool,
    cells: HashMap<String, Cell>,
    log: Vec<RegEntry>,
    last_access: Option<(u32, u64)>,
}

impl RegisterState {
    /// A register; `fenced = false` disables the fence (a broken variant).
    pub fn new(fenced: bool) -> Self {
        RegisterState {
            fenced,
            cells: HashMap::new(),
            log: Vec::new(),
            last_access: None,
        }
    }

    /// Applies `req` at time `t` and logs it.
    pub fn apply(&mut self, req: &Request, t: u64) -> Reply {
        let cell = self.cells.entry(req.name.clone()).or_default();
        let before = *cell;
        let bar = if req.shared {
            cell.highest_write
        } else {
            cell.highest
        };
        let accepted = !self.fenced || req.token >= bar;
        let is_write = req.op == "write";
        if accepted {
            cell.highest = cell.highest.max(req.token);
            if !req.shared {
                cell.highest_write = cell.highest_write.max(req.token);
            }
            if is_write {
                cell.value = req.value;
            }
        }
        if is_write {
            cell.uvalue = req.uvalue;
        }
        self.last_access = Some((req.holder, t));
        self.log.push(RegEntry {
            t,
            holder: req.holder,
            cycle: req.cycle,
            name: req.name.clone(),
            op: req.op.clone(),
            token: req.token,
            accepted,
            highest_before: before.highest,
            value_before: before.value,
            value_written: (accepted && is_write).then_some(req.value),
            u_before: before.uvalue,
            u_written: is_write.then_some(req.uvalue),
            shared: req.shared,
            highest_write_before: before.highest_write,
        });
        Reply {
            accepted,
            value: cell.value,
            uvalue: cell.uvalue,
        }
    }

    /// The log so far, in apply order.
    pub fn log(&self) -> &[RegEntry] {
        &self.log
    }

    /// Logs an access that a database applied.
    fn push(&mut self, entry: RegEntry) {
        self.last_access = Some((entry.holder, entry.t));
        self.log.push(entry);
    }
}

/// The register service, listening on `127.0.0.1:0`. Dropping it stops it.
#[derive(Debug)]
pub struct Register {
    addr: SocketAddr,
    state: Arc<Mutex<RegisterState>>,
    task: JoinHandle<()>,
    /// The database, for [`RegisterKind::Postgres`]; its server stops on drop.
    pg: Option<Arc<PgRegister>>,
}

impl Register {
    /// Starts the service.
    ///
    /// # Errors
    ///
    /// When it cannot bind.
    pub async fn start(fenced: bool) -> io::Result<Register> {
        Self::listen(fenced, None).await
    }

    /// Starts a fenced register of `kind` (for PostgreSQL, its server first).
    ///
    /// # Errors
    ///
    /// When it cannot bind, or the database cannot be started or set up.
    pub async fn start_with(kind: RegisterKind) -> io::Result<Register> {
        match kind {
            RegisterKind::Memory => Self::start(true).await,
            RegisterKind::Postgres => {
                let pg = Arc::new(PgRegister::start().await?);
                Self::listen(true, Some(pg)).await
            }
        }
    }

    async fn listen(fenced: bool, pg: Option<Arc<PgRegister>>) -> io::Result<Register> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(RegisterState::new(fenced)));
        let (shared, db) = (state.clone(), pg.clone());
        let task = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let _ = stream.set_nodelay(true);
                tokio::spawn(serve(stream, shared.clone(), db.clone()));
            }
        });
        Ok(Register {
            addr,
            state,
            task,
            pg,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// A copy of the log so far, in apply order (for a database, the order of the
    /// stamps taken under its row lock).
    pub fn log(&self) -> Vec<RegEntry> {
        let mut log = self.lock().log.clone();
        if self.pg.is_some() {
            log.sort_by_key(|e| e.t);
        }
        log
    }

    /// The holder of the latest access and its time (the likely lock holder).
    pub fn last_access(&self) -> Option<(u32, u64)> {
        self.lock().last_access
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RegisterState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Drop for Register {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve(stream: TcpStream, state: Arc<Mutex<RegisterState>>, pg: Option<Arc<PgRegister>>) {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    let mut db = match &pg {
        Some(pg) => match pg.connect().await {
            Ok(conn) => Some(conn),
            Err(e) => {
                tracing::warn!("register: cannot connect to the database: {e}");
                return;
            }
        },
        None => None,
    };
    let lock = || state.lock().unwrap_or_else(|e| e.into_inner());
    while let Ok(Some(line)) = lines.next_line().await {
        let answer = match (serde_json::from_str::<Request>(&line), db.as_mut()) {
            (Ok(req), None) => {
                let reply = lock().apply(&req, mono_ns());
                serde_json::to_string(&reply).unwrap_or_default()
            }
            (Ok(req), Some(conn)) => match crate::pg_register::apply(conn, &req).await {
                Ok((reply, entry)) => {
                    lock().push(entry);
                    serde_json::to_string(&reply).unwrap_or_default()
                }
                // No answer: the holder records the access as failed (indeterminate).
                Err(e) => {
                    tracing::warn!("register: database access failed: {e}");
                    return;
                }
            },
            (Err(e), _) => format!("{{\"error\":{:?}}}", e.to_string()),
        };
        if write.write_all(answer.as_bytes()).await.is_err()
            || write.write_all(b"\n").await.is_err()
        {
            return;
        }
    }
}

/// A holder's connection to the register.
#[derive(Debug)]
pub struct RegisterClient {
    lines: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
    write: tokio::net::tcp::OwnedWriteHalf,
}

impl RegisterClient {
    /// Connects to `addr`.
    ///
    /// # Errors
    ///
    /// The connection's.
    pub async fn connect(addr: SocketAddr) -> io::Result<Self> {
        let stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        let (read, write) = stream.into_split();
        Ok(RegisterClient {
            lines: BufReader::new(read).lines(),
            write,
        })
    }

    /// Sends `req` and waits for the answer.
    ///
    /// # Errors
    ///
    /// A broken connection or a malformed answer.
    pub async fn call(&mut self, req: &Request) -> io::Result<Reply> {
        let mut line = serde_json::to_string(req).map_err(io::Error::other)?;
        line.push('\n');
        self.write.write_all(line.as_bytes()).await?;
        let answer = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| io::Error::new(io::ErrorKind::UnexpectedEof, "register closed"))?;
        serde_json::from_str(&answer).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(op: &str, token: u64, value: u64) -> Request {
        Request {
            op: op.into(),
            name: "n".into(),
            holder: 1,
            cycle: 1,
            token,
            value,
            uvalue: value,
            shared: false,
        }
    }

    #[test]
    fn fence_rejects_older_tokens_and_reads_raise_the_highest() {
        let mut reg = RegisterState::new(true);
        assert!(reg.apply(&req("read", 5, 0), 1).accepted);
        assert!(!reg.apply(&req("write", 4, 1), 2).accepted);
        assert!(reg.apply(&req("write", 5, 1), 3).accepted);
        assert!(reg.apply(&req("read", 6, 0), 4).accepted);
        let late = reg.apply(&req("write", 5, 2), 5);
        assert!(!late.accepted, "a read with 6 fences out 5");
        assert_eq!(late.value, 1);
        assert_eq!(late.uvalue, 2, "the unfenced counter takes everything");
    }

    #[test]
    fn shared_reads_are_checked_against_the_highest_write_only() {
        let mut reg = RegisterState::new(true);
        let shared = |token| Request {
            shared: true,
            ..req("read", token, 0)
        };
        assert!(reg.apply(&shared(6), 1).accepted);
        assert!(reg.apply(&shared(5), 2).accepted, "readers share");
        assert!(!reg.apply(&req("write", 5, 1), 3).accepted, "6 was read");
        assert!(reg.apply(&req("write", 7, 1), 4).accepted);
        assert!(!reg.apply(&shared(6), 5).accepted, "7 was written");
        assert_eq!(reg.log()[4].highest_write_before, 7);
    }

    #[test]
    fn unfenced_register_accepts_everything() {
        let mut reg = RegisterState::new(false);
        reg.apply(&req("read", 9, 0), 1);
        assert!(reg.apply(&req("write", 1, 1), 2).accepted);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn postgres_register_refuses_stale_tokens_and_keeps_the_control() {
        use fencelock_integration_tests::servers::{require, PgServer};
        if !require(PgServer::available(), "PostgreSQL (initdb, postgres)") {
            return;
        }
        let reg = Register::start_with(RegisterKind::Postgres).await.unwrap();
        let mut c = RegisterClient::connect(reg.addr()).await.unwrap();
        assert!(c.call(&req("read", 5, 0)).await.unwrap().accepted);
        assert!(!c.call(&req("write", 4, 1)).await.unwrap().accepted);
        assert!(c.call(&req("write", 5, 1)).await.unwrap().accepted);
        assert!(c.call(&req("read", 6, 0)).await.unwrap().accepted);
        let late = c.call(&req("write", 5, 2)).await.unwrap();
        assert!(!late.accepted, "a read with 6 fences out 5");
        assert_eq!((late.value, late.uvalue), (1, 2));
        let log = reg.log();
        assert_eq!(log.len(), 5);
        assert_eq!(log[4].highest_before, 6);
        assert_eq!(log[4].value_before, 1);
    }

    #[tokio::test]
    async fn serves_over_tcp() {
        let reg = Register::start(true).await.unwrap();
        let mut c = RegisterClient::connect(reg.addr()).await.unwrap();
        assert!(c.call(&req("write", 3, 7)).await.unwrap().accepted);
        assert!(!c.call(&req("write", 2, 8)).await.unwrap().accepted);
        assert_eq!(reg.log().len(), 2);
        assert_eq!(reg.last_access().map(|a| a.0), Some(1));
    }
}
