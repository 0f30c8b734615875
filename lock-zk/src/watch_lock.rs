//! Change signals for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock) and
//! `watch_list`: one persistent recursive watch (ZooKeeper 3.6+) on the lock's
//! directory, or on the root for a name prefix. It stays armed after each event, so
//! nothing between two events is missed (a one-shot children watch would need
//! re-arming); every node created or deleted under it is a signal, and so is a
//! reconnect (the session may have missed events while disconnected).
//!
//! [`lock_infos`] (for `watch_lock` and `Election::observe`) keeps the state of one
//! lock from the same watch instead of re-reading it per event: the events name the
//! node created or deleted, and the sequence suffix of a node's name gives its place
//! in the queue ([`queue::queue`]), so the set of children is kept locally from one
//! `getChildren` at the start. Only a holder's data is not in the event: it is read
//! (`getData`) when a node becomes a holder or a holder's data changes (a
//! proclaim), which is the watch on the lowest node. So a change costs the watcher
//! nothing (a waiter joining or leaving, the last holder leaving) or one `getData`
//! (a new holder, a new value). After a reconnect the children and the holders'
//! data are read again, since events may have been lost meanwhile (ZOOKEEPER-4698).

use crate::{error, inspect::holder_info, queue};
use futures::StreamExt;
use lock_core::{
    backend::{follow_lock, ChangeStream, LockInfoWatch, WatchScope},
    Error, ErrorKind, HolderInfo, LockInfo, LockName, Result,
};
use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};
use zookeeper_client::{
    AddWatchMode, Client, Error as ZkError, EventType, PersistentWatcher, SessionState,
};

/// Watches the nodes of `scope`; returns once the server set the watch.
pub(crate) async fn changes(client: &Client, scope: &WatchScope) -> Result<ChangeStream> {
    let path = match scope {
        WatchScope::Lock(name) => queue::dir_path(name),
        WatchScope::Prefix(_) => "/".to_owned(),
        other => {
            return Err(Error::new(
                ErrorKind::Unsupported,
                format!("zookeeper cannot watch {other}"),
            ))
        }
    };
    let watcher = client
        .watch(&path, AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| error::map(e, format!("watching {path}")))?;
    Ok(
        futures::stream::unfold(Some(watcher), |watcher| async move {
            let mut watcher = watcher?;
            loop {
                let event = watcher.changed().await;
                match (event.event_type, event.session_state) {
                    (EventType::Session, SessionState::SyncConnected) => {
                        return Some((Ok(()), Some(watcher)))
                    }
                    (EventType::Session, state) if state.is_terminated() => {
                        let err = Error::new(
                            ErrorKind::Unavailable,
                            format!("zookeeper session {state:?}: the lock watch ended"),
                        );
                        return Some((Err(err), None));
                    }
                    (EventType::Session, _) => {}
                    _ => return Some((Ok(()), Some(watcher))),
                }
            }
        })
        .boxed(),
    )
}

/// How often a follower re-reads when the holder it read left between two reads.
const READ_RETRIES: usize = 5;

/// One lock followed through a persistent recursive watch on its directory.
struct Follower {
    client: Client,
    name: LockName,
    dir: String,
    watcher: PersistentWatcher,
    /// The directory's children (lock nodes, slot nodes, anything else).
    children: BTreeSet<String>,
    /// The holders read so far, by node name; dropped when their data changes.
    holders: HashMap<String, HolderInfo>,
    /// What was yielded last (`None`: nothing yet).
    last: Option<Option<LockInfo>>,
    requests: Arc<AtomicU64>,
}

impl Follower {
    /// Reads the children again (after a reconnect or at the start).
    async fn reload(&mut self) -> Result<()> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let children = match self.client.list_children(&self.dir).await {
            Ok(children) => children,
            Err(ZkError::NoNode) => Vec::new(),
            Err(e) => {
                return Err(error::map(
                    e,
                    format!("reading the lock nodes of {}", self.name),
                ))
            }
        };
        self.children = children.into_iter().collect();
        self.holders.clear();
        Ok(())
    }

    /// The lock's view from the children, reading the data of holders not read yet.
    async fn info(&mut self) -> Result<Option<LockInfo>> {
        for _ in 0..READ_RETRIES {
            let children: Vec<String> = self.children.iter().cloned().collect();
            let nodes = queue::queue(&children);
            let (held, waiters) = queue::holders_and_waiters(&nodes);
            let mut holders = Vec::with_capacity(held);
            for &(node, kind) in &nodes[..held] {
                if let Some(h) = self.holders.get(node) {
                    holders.push(h.clone());
                    continue;
                }
                self.requests.fetch_add(1, Ordering::Relaxed);
                match self.client.get_data(&format!("{}/{node}", self.dir)).await {
                    Ok((data, stat)) => {
                        let h = holder_info(kind, &data, &stat);
                        self.holders.insert(node.to_owned(), h.clone());
                        holders.push(h);
                    }
                    // Gone already: its deletion event follows; sequential nodes
                    // never come back.
                    Err(ZkError::NoNode) => {
                        self.children.remove(node);
                        break;
                    }
                    Err(e) => {
                        return Err(error::map(
                            e,
                            format!("reading the holder of {}", self.name),
                        ))
                    }
                }
            }
            if holders.len() < held {
                continue;
            }
            self.holders
                .retain(|node, _| nodes[..held].iter().any(|(n, _)| n == node));
            let mut holders = holders.into_iter();
            return Ok(holders.next().map(|first| {
                LockInfo::from_holders(self.name.clone(), first, holders.collect(), waiters)
            }));
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("following lock {}: the holder kept changing", self.name),
        ))
    }

    /// The current view if it differs from the last one yielded.
    async fn changed(&mut self) -> Result<Option<Option<LockInfo>>> {
        let now = self.info().await?;
        Ok((self.last.as_ref() != Some(&now)).then(|| {
            self.last = Some(now.clone());
            now
        }))
    }

    /// Applies one watch event; `true` when the view may have changed.
    async fn apply(&mut self, event: zookeeper_client::WatchedEvent) -> Result<bool> {
        let child = event
            .path
            .strip_prefix(self.dir.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .filter(|c| !c.is_empty() && !c.contains('/'));
        match (event.event_type, event.session_state, child) {
            (EventType::Session, SessionState::SyncConnected, _) => {
                self.reload().await?;
                Ok(true)
            }
            (EventType::Session, state, _) if state.is_terminated() => Err(Error::new(
                ErrorKind::Unavailable,
                format!("zookeeper session {state:?}: the lock watch ended"),
            )),
            (EventType::NodeCreated, _, Some(child)) => Ok(self.children.insert(child.to_owned())),
            (EventType::NodeDeleted, _, Some(child)) => {
                self.holders.remove(child);
                Ok(self.children.remove(child))
            }
            (EventType::NodeDataChanged, _, Some(child)) => {
                Ok(self.holders.remove(child).is_some())
            }
            // The directory itself deleted: no contender is left.
            (EventType::NodeDeleted, _, None) if event.path == self.dir => {
                self.holders.clear();
                self.children.clear();
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// The next view that differs from the last one yielded.
    async fn next(&mut self) -> Result<Option<LockInfo>> {
        loop {
            let event = self.watcher.changed().await;
            if self.apply(event).await? {
                if let Some(now) = self.changed().await? {
                    return Ok(now);
                }
            }
        }
    }
}

/// The state of lock `name` now, then after each change, kept from a persistent
/// recursive watch on its directory (see the module docs); returns once the server
/// set the watch and the first state was read. Each request is counted in
/// `requests`.
pub(crate) async fn lock_infos(
    client: Client,
    name: LockName,
    requests: Arc<AtomicU64>,
) -> Result<LockInfoWatch> {
    let dir = queue::dir_path(&name);
    requests.fetch_add(1, Ordering::Relaxed);
    let watcher = client
        .watch(&dir, AddWatchMode::PersistentRecursive)
        .await
        .map_err(|e| error::map(e, format!("watching {dir}")))?;
    let mut follower = Follower {
        client,
        name,
        dir,
        watcher,
        children: BTreeSet::new(),
        holders: HashMap::new(),
        last: None,
        requests,
    };
    follower.reload().await?;
    let first = follower.changed().await?.unwrap_or(None);
    Ok(follow_lock(first, follower, |mut f| async move {
        let item = f.next().await;
        (item, f)
    }))
}
