//! Reading the locks on the server from the backend's own session:
//! [`inspect`](lock_core::backend::Backend::inspect) of one lock and
//! [`list`](lock_core::backend::Backend::list) of a prefix, and the holder a lock node
//! describes (also used by `watch_lock.rs`).

use crate::{error, queue};
use lock_core::{Error, ErrorKind, FencingToken, HolderInfo, LeaseId, LockInfo, LockName, Result};
use std::{
    sync::atomic::{AtomicU64, Ordering},
    time::{Duration, UNIX_EPOCH},
};
use zookeeper_client::{Client, Error as ZkError, Stat};

/// How often `inspect` re-reads when the owner leaves between two reads.
const INSPECT_RETRIES: usize = 5;

/// The holder that lock node `node` of `kind` describes, from its data and stat.
pub(crate) fn holder_info(kind: queue::NodeKind, data: &[u8], stat: &Stat) -> HolderInfo {
    let (holder, at) = match queue::decode_data(data) {
        (holder, Some(at)) if kind.may_be_fencelock() => (holder, Some(at)),
        // Another client's node: name the client, take the time from the stat.
        _ => (Some(queue::foreign_holder(kind, data)), None),
    };
    let at = at.or_else(|| UNIX_EPOCH.checked_add(Duration::from_millis(stat.ctime.max(0) as u64)));
    HolderInfo::new(
        FencingToken::new(stat.czxid as u64),
        LeaseId::new(stat.ephemeral_owner as u64),
    )
    .with_holder(holder)
    .with_acquired_at(at)
    .with_claim(kind.claim())
}

/// Reads the holder of `name` through `client`, counting each request in
/// `requests`.
pub(crate) async fn inspect(
    client: &Client,
    name: &LockName,
    requests: &AtomicU64,
) -> Result<Option<LockInfo>> {
    let dir = queue::dir_path(name);
    let what = || format!("inspecting lock {name}");
    for _ in 0..INSPECT_RETRIES {
        requests.fetch_add(1, Ordering::Relaxed);
        let children = match client.list_children(&dir).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => return Ok(None),
            Err(e) => return Err(error::map(e, what())),
        };
        let nodes = queue::queue(&children);
        let (held, waiters) = queue::holders_and_waiters(&nodes);
        let mut holders = Vec::with_capacity(held);
        for &(node, kind) in &nodes[..held] {
            requests.fetch_add(1, Ordering::Relaxed);
            let (data, stat) = match client.get_data(&format!("{dir}/{node}")).await {
                Ok(read) => read,
                Err(ZkError::NoNode) => break,
                Err(e) => return Err(error::map(e, what())),
            };
            holders.push(holder_info(kind, &data, &stat));
        }
        if holders.len() < held {
            continue; // a holder left between the two reads
        }
        let mut holders = holders.into_iter();
        let Some(first) = holders.next() else {
            return Ok(None);
        };
        let info = LockInfo::from_holders(name.clone(), first, holders.collect(), waiters);
        return Ok(Some(info));
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("{}: the holder kept changing", what()),
    ))
}

/// Reads every lock whose name starts with `prefix` through `client`, sorted by name,
/// counting each request in `requests`.
pub(crate) async fn list(
    client: &Client,
    prefix: &str,
    requests: &AtomicU64,
) -> Result<Vec<LockInfo>> {
    requests.fetch_add(1, Ordering::Relaxed);
    let dirs = match client.list_children("/").await {
        Ok(dirs) => dirs,
        // No chroot yet: nobody ever took a lock here.
        Err(ZkError::NoNode) => return Ok(Vec::new()),
        Err(e) => return Err(error::map(e, "listing locks")),
    };
    let mut names: Vec<LockName> = dirs
        .iter()
        .filter_map(|d| queue::decode_name(d))
        .filter(|n| n.as_str().starts_with(prefix))
        .collect();
    names.sort();
    let infos = futures::future::join_all(names.iter().map(|n| inspect(client, n, requests))).await;
    infos.into_iter().filter_map(Result::transpose).collect()
}
