//! The fenced register kept in a real PostgreSQL table: the database, through
//! `lock_fence::postgres::fenced`, decides which accesses pass the fence.
//!
//! Each holder connection gets its own database connection, so accesses are concurrent
//! transactions at READ COMMITTED. One access is one transaction:
//!
//! 1. `fenced(tx, name, token)`: accepted, or refused with `StaleToken`. Either way the
//!    statement leaves the name's fence row locked until the transaction ends, which
//!    orders all accesses of one name;
//! 2. read the cell (`fc_cells`: fenced counter, unfenced counter, highest token seen);
//! 3. write the fenced counter only if accepted, the unfenced control counter always;
//! 4. stamp the access's time, still under the row lock, and commit.
//!
//! The log is sorted by that stamp, which is then the fence order per name, and the
//! checker judges it as it judges the in-memory register.

use crate::{
    history::mono_ns,
    register::{RegEntry, Reply, Request},
};
use fencelock_integration_tests::servers::PgServer;
use lock_fence::{postgres, sqlx, Error, FencingToken};
use sqlx::{Connection, PgConnection};
use std::io;

/// The cells table: one row per lock name.
const CREATE_CELLS: &str = "CREATE TABLE IF NOT EXISTS fc_cells (
    name TEXT PRIMARY KEY,
    value BIGINT NOT NULL DEFAULT 0,
    uvalue BIGINT NOT NULL DEFAULT 0,
    highest BIGINT NOT NULL DEFAULT 0
)";

/// A PostgreSQL database holding the register, with the server it started.
#[derive(Debug)]
pub(crate) struct PgRegister {
    url: String,
    /// Stopped (by PID) when the register is dropped.
    _server: PgServer,
}

fn io_err(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

impl PgRegister {
    /// Starts a PostgreSQL server in a temp dir on a free loopback port and creates the
    /// tables.
    pub(crate) async fn start() -> io::Result<PgRegister> {
        let server = tokio::task::spawn_blocking(PgServer::start)
            .await
            .map_err(io_err)??;
        let url = server.url("postgres");
        let mut conn = PgConnection::connect(&url).await.map_err(io_err)?;
        postgres::create_fences_table(&mut conn)
            .await
            .map_err(io_err)?;
        sqlx::query(CREATE_CELLS)
            .execute(&mut conn)
            .await
            .map_err(io_err)?;
        conn.close().await.map_err(io_err)?;
        Ok(PgRegister {
            url,
            _server: server,
        })
    }

    /// A connection for one holder.
    pub(crate) async fn connect(&self) -> io::Result<PgConnection> {
        PgConnection::connect(&self.url).await.map_err(io_err)
    }
}

/// Applies `req` in one transaction on `conn` and returns the answer and the log entry.
pub(crate) async fn apply(conn: &mut PgConnection, req: &Request) -> io::Result<(Reply, RegEntry)> {
    let mut tx = conn.begin().await.map_err(io_err)?;
    let token = FencingToken::new(req.token);
    let accepted = match postgres::fenced(&mut tx, &req.name, token).await {
        Ok(()) => true,
        Err(Error::Stale(_)) => false,
        Err(e) => return Err(io_err(e)),
    };
    sqlx::query("INSERT INTO fc_cells (name) VALUES ($1) ON CONFLICT (name) DO NOTHING")
        .bind(&req.name)
        .execute(&mut *tx)
        .await
        .map_err(io_err)?;
    let (value, uvalue, highest): (i64, i64, i64) =
        sqlx::query_as("SELECT value, uvalue, highest FROM fc_cells WHERE name = $1")
            .bind(&req.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(io_err)?;
    let (value, uvalue, highest) = (value as u64, uvalue as u64, highest as u64);
    let is_write = req.op == "write";
    let reply = Reply {
        accepted,
        value: if accepted && is_write {
            req.value
        } else {
            value
        },
        uvalue: if is_write { req.uvalue } else { uvalue },
    };
    let new_highest = if accepted {
        highest.max(req.token)
    } else {
        highest
    };
    sqlx::query("UPDATE fc_cells SET value = $2, uvalue = $3, highest = $4 WHERE name = $1")
        .bind(&req.name)
        .bind(reply.value as i64)
        .bind(reply.uvalue as i64)
        .bind(new_highest as i64)
        .execute(&mut *tx)
        .await
        .map_err(io_err)?;
    // Still under the fence row's lock: the stamps order the accesses of one name.
    let t = mono_ns();
    tx.commit().await.map_err(io_err)?;
    let entry = RegEntry {
        t,
        holder: req.holder,
        cycle: req.cycle,
        name: req.name.clone(),
        op: req.op.clone(),
        token: req.token,
        accepted,
        highest_before: highest,
        value_before: value,
        value_written: (accepted && is_write).then_some(req.value),
        u_before: uvalue,
        u_written: is_write.then_some(req.uvalue),
        shared: false,
        highest_write_before: highest,
    };
    Ok((reply, entry))
}
