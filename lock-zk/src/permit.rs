//! Semaphore permit slots: a granted permit takes the lowest free slot node of its
//! lock's directory (its `czxid` is the permit's fencing token) and frees it on
//! release, before the permit's own node.

use crate::{error, queue, session::Session};
use lock_core::{backend::Backoff, Error, ErrorKind, FencingToken, LockName, Result};
use std::time::Duration;
use zookeeper_client::{Client, CreateMode, Error as ZkError, Stat};

/// A granted permit's slot: the ephemeral node [`queue::slot_node`] in the lock's
/// directory, whose `czxid` is the permit's fencing token. A slot node is created only
/// while absent, so successive holders of one slot get increasing tokens.
#[derive(Debug, Clone)]
pub(crate) struct PermitSlot {
    pub(crate) slot: u32,
    pub(crate) path: String,
    pub(crate) token: FencingToken,
}

/// How many rounds over every slot a granted permit tries before giving up.
const SLOT_ROUNDS: usize = 50;

/// Takes the lowest free slot of semaphore `name` for the granted node `node`.
/// [`decide`](lock_core::backend::decide) grants at most `limit` permits, so a slot is
/// free, or held by a permit whose node is already gone (released a moment ago, or
/// deleted by an operator): such a slot node is deleted (on its version) and taken on
/// the next round.
pub(crate) async fn claim_permit_slot(
    session: &Session,
    client: &Client,
    name: &LockName,
    dir: &str,
    node: &str,
    limit: u32,
) -> Result<PermitSlot> {
    let what = || format!("taking a permit slot of semaphore {name}");
    let mode = CreateMode::Ephemeral.with_acls(session.acls());
    let mut backoff = Backoff::new(Duration::from_millis(5), Duration::from_millis(200));
    for _ in 0..SLOT_ROUNDS {
        for slot in 0..limit {
            let path = format!("{dir}/{}", queue::slot_node(slot));
            let found = |stat: &Stat| PermitSlot {
                slot,
                path: path.clone(),
                token: FencingToken::new(stat.czxid as u64),
            };
            match client.create(&path, node.as_bytes(), &mode).await {
                Ok((stat, _)) => return Ok(found(&stat)),
                Err(ZkError::NodeExists) => {}
                // It may have been created: the next round reads whose it is.
                Err(e) if error::is_indeterminate(&e) => continue,
                Err(e) => return Err(error::map(e, what())),
            }
            let (data, stat) = match client.get_data(&path).await {
                Ok(read) => read,
                Err(ZkError::NoNode) => continue,
                Err(e) if error::is_indeterminate(&e) => continue,
                Err(e) => return Err(error::map(e, what())),
            };
            if data == node.as_bytes() {
                return Ok(found(&stat)); // our own create of an indeterminate attempt
            }
            let owner = format!("{dir}/{}", String::from_utf8_lossy(&data));
            match client.check_stat(&owner).await {
                Ok(None) => {
                    // Stale: its permit is gone. Free it; taken on the next round.
                    let _ = client.delete(&path, Some(stat.version)).await;
                }
                Ok(Some(_)) => {}
                Err(e) if error::is_indeterminate(&e) => {}
                Err(e) => return Err(error::map(e, what())),
            }
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!("no free permit slot of semaphore {name} after {SLOT_ROUNDS} rounds"),
    ))
}

/// Deletes a permit's slot node if it is still this permit's (same `czxid`): before
/// the permit's own node, so the next permit finds the slot free at once. A slot node
/// left behind (no connection) goes with the session, or is freed as stale by the
/// next permit once the permit's node is gone.
pub(crate) async fn release_slot(session: &Session, permit: &PermitSlot) {
    let Some(client) = session.client() else {
        return;
    };
    if let Ok(Some(stat)) = client.check_stat(&permit.path).await {
        if stat.czxid as u64 == permit.token.get() {
            let _ = client.delete(&permit.path, Some(stat.version)).await;
        }
    }
}
