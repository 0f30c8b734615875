//! The Redlock recipe: take the entry on a majority of masters within the validity
//! window (the first master breaks ties), write the quorum's token back, retry after
//! a random delay; read a lock by majority.

use super::{
    conn::{release_all, Nodes},
    held::RedlockHeldLock,
    session::RlLeaseShared,
};
use crate::scripts::{base, holder_info, COUNTER_TTL};
use lock_core::{
    backend::{lock_unpoisoned, spawn_or_expire, Liveness, WaitMode},
    AcquireOptions, Error, ErrorKind, LockInfo, LockName, LossCause, Result,
};
use std::{
    collections::{BTreeSet, HashMap},
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use tokio::time::Instant;

/// The clock drift allowed for, per Redlock: 1% of the TTL plus 2 ms.
fn drift(ttl: Duration) -> Duration {
    ttl / 100 + Duration::from_millis(2)
}

/// Releases on every master unless disarmed (a dropped or failed acquire).
struct Undo {
    nodes: Arc<Nodes>,
    key: String,
    id: String,
    armed: bool,
}

impl Drop for Undo {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (nodes, key, id) = (self.nodes.clone(), self.key.clone(), self.id.clone());
        spawn_or_expire(format_args!("redlock entry {}", self.key), async move {
            release_all(&nodes, &key, &id).await;
        });
    }
}

/// Acquires `name` on `lease`: the entry on a majority of masters within the
/// validity window, and the quorum's token written back to a majority; with
/// [`WaitMode::Wait`], retried after a random 10–60 ms delay until granted.
pub(super) async fn acquire(
    lease: &Arc<RlLeaseShared>,
    name: &LockName,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<RedlockHeldLock>> {
    let nodes = &lease.nodes;
    if lease.liveness.state().is_lost() {
        return Err(Error::new(
            ErrorKind::LeaseLost,
            format!("lease {:x} is lost; cannot acquire {name}", lease.id),
        ));
    }
    let base = base(nodes.prefix(), name);
    let (key, counter, wq) = (
        format!("{base}lock"),
        format!("{base}t"),
        format!("{base}wq"),
    );
    let id = format!(
        "{:016x}.{}",
        lease.id,
        lease.next_entry.fetch_add(1, Ordering::Relaxed)
    );
    let mut undo = Undo {
        nodes: nodes.clone(),
        key: key.clone(),
        id: id.clone(),
        armed: true,
    };
    let ttl_ms = u64::try_from(lease.ttl.as_millis()).unwrap_or(u64::MAX);
    let counter_ms = u64::try_from(COUNTER_TTL.as_millis()).unwrap_or(u64::MAX);
    let lease_hex = format!("{:016x}", lease.id);
    let holder = options.holder().unwrap_or("");
    let wait = if mode == WaitMode::Wait { "1" } else { "0" };
    let majority = nodes.majority();
    let mut lost_watch = lease.liveness.watch();
    let lease_key = lease.key();
    loop {
        let started = Instant::now();
        let acquire_on = |which: std::ops::Range<usize>| {
            nodes.on(which, nodes.node_timeout(lease.ttl), |_, mut c| {
                let mut inv = nodes.scripts.acquire.prepare_invoke();
                inv.key(&key)
                    .key(&counter)
                    .key(&wq)
                    .key(&lease_key)
                    .arg(&id)
                    .arg(ttl_ms)
                    .arg(counter_ms)
                    .arg(&lease_hex)
                    .arg(holder)
                    .arg(wait);
                async move { inv.invoke_async::<(i64, String)>(&mut c).await }
            })
        };
        // The first master breaks ties: a contender refused there does not go on to
        // the others, so contenders rarely split the votes and all retry.
        let mut results = acquire_on(0..1).await;
        if !matches!(results[0], Ok((0, _))) {
            results.extend(acquire_on(1..nodes.conns.len()).await);
        }
        let validity = lease
            .ttl
            .saturating_sub(started.elapsed())
            .saturating_sub(drift(lease.ttl));
        let mut tokens = Vec::new();
        let mut errors = Vec::new();
        let mut lease_gone = 0;
        for r in results {
            match r {
                Ok((1, t)) => tokens.extend(t.parse::<u64>().ok()),
                Ok((-1, _)) => lease_gone += 1,
                Ok(_) => {}
                Err(e) => errors.push(e),
            }
        }
        if tokens.len() >= majority && !validity.is_zero() {
            let token = tokens.iter().copied().max().unwrap_or(0);
            // Write the token back to a majority before reporting the grant.
            let acks = nodes
                .all(nodes.node_timeout(lease.ttl), |_, mut c| {
                    let mut inv = nodes.scripts.commit.prepare_invoke();
                    inv.key(&counter)
                        .key(&key)
                        .arg(token)
                        .arg(counter_ms)
                        .arg(&id);
                    async move { inv.invoke_async::<i64>(&mut c).await }
                })
                .await
                .into_iter()
                .filter(Result::is_ok)
                .count();
            if acks >= majority && started.elapsed() < lease.ttl.saturating_sub(drift(lease.ttl)) {
                // The lease's deadline (from its last renewal sent before `started`)
                // bounds the entry too: its entries were set after that.
                let live = Liveness::new(None);
                lock_unpoisoned(&lease.entries).insert(id.clone(), (key.clone(), live.clone()));
                undo.armed = false;
                return Ok(Some(RedlockHeldLock::new(
                    lease,
                    name.clone(),
                    key,
                    id,
                    token,
                    live,
                )));
            }
        }
        // Not granted: undo whatever was set, then give up or retry.
        release_all(nodes, &key, &id).await;
        if lease_gone >= majority {
            lease.liveness.lose_with(LossCause::LeaseExpired);
            return Err(Error::new(
                ErrorKind::LeaseLost,
                format!(
                    "lease {:x} is gone from a majority of masters; cannot acquire {name}",
                    lease.id
                ),
            ));
        }
        if errors.len() > nodes.conns.len() - majority {
            return Err(nodes.unavailable(format_args!("acquiring lock {name}"), &errors));
        }
        if mode == WaitMode::NoWait {
            undo.armed = false;
            return Ok(None);
        }
        let delay = Duration::from_millis(10 + u64::from(uuid::Uuid::new_v4().as_bytes()[0]) % 50);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = lost_watch.lost() => {
                return Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!("lease {:x} was lost while waiting for lock {name}", lease.id),
                ));
            }
        }
    }
}

/// The entry a majority of masters holds for `name`, with the highest token any of
/// them reports, and the most waiters any of them saw lately.
pub(super) async fn inspect(nodes: &Nodes, name: &LockName) -> Result<Option<LockInfo>> {
    Ok(majority_entry(nodes, name).await?.map(|(_, info)| info))
}

/// [`inspect`] with the entry's id, which a conditional delete compares against.
pub(super) async fn majority_entry(
    nodes: &Nodes,
    name: &LockName,
) -> Result<Option<(String, LockInfo)>> {
    let base = base(nodes.prefix(), name);
    let results = nodes
        .all(nodes.config.first().request_timeout(), |_, mut c| {
            let mut inv = nodes.scripts.inspect.prepare_invoke();
            inv.key(format!("{base}lock")).key(format!("{base}wq"));
            async move {
                inv.invoke_async::<(String, String, String, String, String, usize)>(&mut c)
                    .await
            }
        })
        .await;
    let mut answers = Vec::new();
    let mut errors = Vec::new();
    for r in results {
        match r {
            Ok(a) => answers.push(a),
            Err(e) => errors.push(e),
        }
    }
    if answers.len() < nodes.majority() {
        return Err(nodes.unavailable(format_args!("reading lock {name}"), &errors));
    }
    let waiters = answers.iter().map(|a| a.5).max().unwrap_or(0);
    // The entry a majority holds, with the highest token any of them reports.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for a in answers.iter().filter(|a| !a.0.is_empty()) {
        *counts.entry(a.0.as_str()).or_default() += 1;
    }
    let Some((id, _)) = counts.into_iter().find(|(_, n)| *n >= nodes.majority()) else {
        return Ok(None);
    };
    let mine: Vec<_> = answers.iter().filter(|a| a.0 == id).collect();
    let token = mine
        .iter()
        .filter_map(|a| a.1.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    let first = mine[0];
    let head = holder_info(token, &first.2, &first.3, &first.4);
    Ok(Some((
        id.to_owned(),
        LockInfo::from_holders(name.clone(), head, Vec::new(), waiters),
    )))
}

/// The names of the locks under the prefix whose name starts with `prefix`, on any
/// master that answers.
pub(super) async fn names(nodes: &Nodes, prefix: &str) -> BTreeSet<LockName> {
    let mut names = BTreeSet::new();
    for c in &nodes.conns {
        let pattern = format!("{}{{{prefix}*}}:lock", nodes.prefix());
        if let Ok(keys) = c.scan(&pattern).await {
            names.extend(keys.iter().filter_map(|k| {
                let n = k.strip_prefix(nodes.prefix())?.strip_prefix('{')?;
                LockName::new(n.strip_suffix("}:lock")?).ok()
            }));
        }
    }
    names
}
