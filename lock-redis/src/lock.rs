//! The recipe: enqueue with one script, wait on the own wake list (woken only by the
//! release that makes this entry the head, re-checking at the latest when the entry
//! ahead would expire), hand the grant to `held.rs` (whose release is fenced, with
//! the release script in `session.rs`); and the reading of a lock's entries.

use crate::{
    conn::{retry_backoff, Conn},
    held::RedisHeldLock,
    scripts::{base, holder_info, COUNTER_TTL},
    session::{ensure_alive, remove, LeaseShared},
};
use lock_core::{
    backend::{spawn_or_expire, Liveness, WaitMode},
    AcquireOptions, Error, ErrorKind, LockInfo, LockName, Result,
};
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};

/// The longest a waiter blocks before it re-reads its position: a wake-up that
/// never comes (the releaser died between its release and its push, or the holder's
/// entry expired) costs at most this, or the time the entry ahead has left.
pub(crate) const RECHECK_MAX: Duration = Duration::from_secs(1);

/// A script's answer about one entry: `(code, token, pttl)`.
type Position = (i64, String, i64);
const LOST: i64 = 0;
const GRANTED: i64 = 1;
const WAITING: i64 = 2;
const BUSY: i64 = 3;

fn lost_while_waiting(name: &LockName) -> Error {
    Error::new(
        ErrorKind::LeaseLost,
        format!("the waiter entry of lock {name} vanished (expired, deleted by an operator, evicted or lost by the server)"),
    )
}

/// Removes an acquisition's entry unless disarmed: a dropped, failed or timed-out
/// acquire leaves nothing behind. The removal goes on the shared connection after
/// the enqueue request (Redis runs one connection's commands in order).
struct Cleanup {
    lease: Arc<LeaseShared>,
    base: String,
    id: String,
    armed: bool,
}

impl Cleanup {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let lease = self.lease.clone();
        let (base, id) = (std::mem::take(&mut self.base), std::mem::take(&mut self.id));
        let key = format!("{base}e:{id}");
        lease.untrack(&key);
        spawn_or_expire(format_args!("waiter entry {key}"), async move {
            if let Err(e) = remove(&lease, &base, &id, "").await {
                tracing::debug!(error = %e, "cleanup of a cancelled acquisition failed; the entry expires with its ttl");
            }
        });
    }
}

/// Enqueues on `lease` and, with [`WaitMode::Wait`], waits for the turn.
pub(crate) async fn acquire(
    lease: &Arc<LeaseShared>,
    name: &LockName,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<RedisHeldLock>> {
    ensure_alive(lease, format_args!("acquire {name}"))?;
    let conn = &lease.conn;
    let base = base(conn.config.prefix(), name);
    let id = lease.entry_id();
    let entry_key = format!("{base}e:{id}");
    let cleanup = Cleanup {
        lease: lease.clone(),
        base: base.clone(),
        id: id.clone(),
        armed: true,
    };
    let ttl_ms = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
    let counter_ms = u64::try_from(COUNTER_TTL.as_millis()).unwrap_or(u64::MAX);
    let lease_hex = format!("{:016x}", lease.id);
    let holder = options.holder().unwrap_or("");
    let nowait = if mode == WaitMode::NoWait { "1" } else { "0" };
    let what = || format!("acquiring lock {name}");
    let (code, token, pttl): Position = conn
        .call(&what, |mut c| {
            let mut inv = conn.scripts.enqueue.prepare_invoke();
            inv.key(format!("{base}t"))
                .key(format!("{base}q"))
                .key(&entry_key)
                .arg(&base)
                .arg(&id)
                .arg(ttl_ms)
                .arg(&lease_hex)
                .arg(holder)
                .arg(nowait)
                .arg(counter_ms);
            async move { inv.invoke_async(&mut c).await }
        })
        .await?;
    match code {
        BUSY => {
            cleanup.disarm();
            return Ok(None);
        }
        LOST => return Err(lost_while_waiting(name)),
        _ => {}
    }
    let token: u64 = token.parse().map_err(|_| {
        Error::new(
            ErrorKind::Backend,
            format!("acquiring lock {name}: the script answered token {token:?}"),
        )
    })?;
    let live = Liveness::new(None);
    lease.track(entry_key, live.clone());
    if code == WAITING {
        wait_for_turn(lease, name, &base, &id, &live, pttl).await?;
    } else if code != GRANTED {
        return Err(Error::new(
            ErrorKind::Backend,
            format!("acquiring lock {name}: the script answered code {code}"),
        ));
    }
    cleanup.disarm();
    Ok(Some(RedisHeldLock::new(
        lease,
        name.clone(),
        base,
        id,
        token,
        live,
    )))
}

/// Waits until entry `id` is the head: blocks on its own wake list for at most the
/// time the entry ahead has left (and [`RECHECK_MAX`]), then re-reads its position.
/// Fails when the lease or the entry is lost.
async fn wait_for_turn(
    lease: &Arc<LeaseShared>,
    name: &LockName,
    base: &str,
    id: &str,
    live: &Liveness,
    mut pttl: i64,
) -> Result<()> {
    let conn = &lease.conn;
    let wake_key = format!("{base}w:{id}");
    let mut lease_watch = lease.liveness.watch();
    let mut entry_watch = live.watch();
    let mut backoff = retry_backoff();
    loop {
        let ms = u64::try_from(pttl.saturating_add(10)).unwrap_or(0);
        let wait = Duration::from_millis(ms).clamp(Duration::from_millis(20), RECHECK_MAX);
        let blocked = async {
            let mut c = conn.blocker(wait).await?;
            let popped: Option<(String, String)> = conn
                .once(
                    format!("waiting for lock {name}"),
                    redis::cmd("BLPOP")
                        .arg(&wake_key)
                        .arg(wait.as_secs_f64())
                        .query_async(&mut c),
                )
                .await?;
            conn.return_blocker(c);
            Ok::<_, Error>(popped.is_some())
        };
        tokio::select! {
            woke = blocked => match woke {
                Ok(true) => {
                    conn.wakeups.fetch_add(1, Ordering::Relaxed);
                    backoff.reset();
                }
                Ok(false) => backoff.reset(),
                // A user that may not `BLPOP` (or no longer may log in) would
                // only poll: say so instead.
                Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                    return Err(conn.explain(e).await)
                }
                Err(e) if e.kind() == ErrorKind::Unauthenticated => return Err(e),
                Err(e) => {
                    tracing::debug!(error = %e, "wait for a wake-up failed; re-checking");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            },
            _ = lease_watch.lost() => {
                return Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!("lease {} was lost while waiting for lock {name}", lease.lease_id()),
                ))
            }
            _ = entry_watch.lost() => return Err(lost_while_waiting(name)),
        }
        let what = || format!("waiting for lock {name}");
        let (code, _, left): Position = conn
            .call(&what, |mut c| {
                let mut inv = conn.scripts.check.prepare_invoke();
                inv.key(format!("{base}q"))
                    .arg(base)
                    .arg(id)
                    .arg(lease.key());
                async move { inv.invoke_async(&mut c).await }
            })
            .await?;
        match code {
            GRANTED => return Ok(()),
            WAITING => pttl = left,
            _ => {
                lease.poke.notify_one();
                return Err(lost_while_waiting(name));
            }
        }
    }
}

/// The live entries of the lock at `base`, in queue order, as lock info.
pub(crate) async fn inspect(conn: &Conn, name: &LockName) -> Result<Option<LockInfo>> {
    let base = base(conn.config.prefix(), name);
    let what = || format!("reading lock {name}");
    let fields: Vec<String> = conn
        .call(&what, |mut c| {
            let mut inv = conn.scripts.inspect.prepare_invoke();
            inv.key(format!("{base}q")).arg(&base);
            async move { inv.invoke_async(&mut c).await }
        })
        .await?;
    let mut entries = fields.chunks_exact(5);
    let Some(first) = entries.next() else {
        return Ok(None);
    };
    let waiters = entries.count();
    let head = holder_info(
        first[1].parse().unwrap_or(0),
        &first[2],
        &first[3],
        &first[4],
    );
    Ok(Some(LockInfo::from_holders(
        name.clone(),
        head,
        Vec::new(),
        waiters,
    )))
}

/// The names of the locks with a queue under `conn`'s prefix whose name starts with
/// `prefix`.
pub(crate) async fn names(conn: &Conn, prefix: &str) -> Result<Vec<LockName>> {
    let key_prefix = conn.config.prefix();
    let pattern = format!("{key_prefix}{{{prefix}*}}:q");
    let keys = conn.scan(&pattern).await?;
    Ok(keys
        .iter()
        .filter_map(|k| {
            let name = k.strip_prefix(key_prefix)?.strip_prefix('{')?;
            LockName::new(name.strip_suffix("}:q")?).ok()
        })
        .collect())
}
