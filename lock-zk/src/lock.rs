//! The recipe (Curator's `InterProcessMutex` / `LockInternals`, kazoo's `Lock`):
//! enqueue a protected ephemeral sequential node → position → watch only the
//! predecessor → owner.

use crate::{
    error,
    held::ZkHeldLock,
    permit::claim_permit_slot,
    queue::{self, Position},
    session::{retry_backoff, watch_node, NodeEvent, Session, RETRIES},
};
use lock_core::{
    backend::{spawn_or_expire, Claim, WaitMode},
    AcquireOptions, Error, ErrorKind, FencingToken, LockName, Result,
};
use std::{
    fmt,
    sync::{atomic::Ordering, Arc},
    time::SystemTime,
};
use zookeeper_client::{Client, CreateMode, Error as ZkError, EventType, Stat};

fn lost(name: &LockName, why: impl fmt::Display) -> Error {
    Error::new(ErrorKind::LeaseLost, format!("lock {name}: {why}"))
}

/// Deletes the node of an acquisition unless disarmed, on a spawned task: what makes a
/// dropped, failed or timed-out `acquire` leave nothing behind. Before the node's name
/// is known (the create's reply may have been lost), it finds the node by its uuid.
struct NodeCleanup {
    session: Arc<Session>,
    dir: String,
    uuid: String,
    node: Option<String>,
    armed: bool,
}

impl NodeCleanup {
    fn disarm(mut self) {
        self.armed = false;
    }
}

impl Drop for NodeCleanup {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (session, dir, uuid, node) = (
            self.session.clone(),
            std::mem::take(&mut self.dir),
            std::mem::take(&mut self.uuid),
            self.node.take(),
        );
        let what = format!("the node of a cancelled acquisition in {dir}");
        spawn_or_expire(format_args!("{what}"), async move {
            if let Err(e) = delete_own(&session, &dir, &uuid, node.as_deref()).await {
                tracing::debug!(%dir, error = %e, "cleanup of a cancelled acquisition failed; the node goes with its session");
            }
        });
    }
}

/// Deletes this acquisition's node: `node` if known, else whichever child of `dir`
/// carries `uuid`. Retries indeterminate failures while the session lives.
async fn delete_own(session: &Session, dir: &str, uuid: &str, node: Option<&str>) -> Result<()> {
    let mut last = None;
    let mut backoff = retry_backoff();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        let Some(client) = session.client() else {
            return Ok(());
        };
        let node = match node {
            Some(node) => node.to_owned(),
            None => match client.sync(dir).await.and(client.list_children(dir).await) {
                Ok(children) => match children.into_iter().find(|c| queue::is_own(c, uuid)) {
                    Some(node) => node,
                    None => return Ok(()),
                },
                Err(ZkError::NoNode) => return Ok(()),
                Err(e) if error::is_indeterminate(&e) => {
                    last = Some(e);
                    continue;
                }
                Err(e) => return Err(error::map(e, format_args!("cleaning up {dir}"))),
            },
        };
        match client.delete(&format!("{dir}/{node}"), None).await {
            Ok(()) | Err(ZkError::NoNode) => return Ok(()),
            Err(e) if error::is_indeterminate(&e) => last = Some(e),
            Err(e) if error::is_terminal(&e) => return Ok(()),
            Err(e) => return Err(error::map(e, format_args!("cleaning up {dir}/{node}"))),
        }
    }
    Err(error::map(
        last.unwrap_or(ZkError::ConnectionLoss),
        format_args!("cleaning up {dir}"),
    ))
}

/// Creates the protected node, creating the lock directory (a container) if needed.
/// After an indeterminate failure it looks for its own node by `uuid` before trying
/// again, so one acquisition never leaves two nodes. Returns the node name and stat.
async fn create_node(
    session: &Session,
    client: &Client,
    name: &LockName,
    dir: &str,
    uuid: &str,
    data: &[u8],
    claim: Claim,
) -> Result<(String, Stat)> {
    let marker = queue::marker(session.node_style(), claim);
    let prefix = queue::node_prefix(dir, uuid, session.node_style(), claim);
    let acls = session.acls();
    let node_mode = CreateMode::EphemeralSequential.with_acls(acls);
    let mut last = None;
    for _ in 0..RETRIES {
        match client.create(&prefix, data, &node_mode).await {
            Ok((stat, seq)) => return Ok((format!("{uuid}{marker}{seq}"), stat)),
            Err(ZkError::NoNode) => match client
                .create(dir, &[], &CreateMode::Container.with_acls(acls))
                .await
            {
                Ok(_) | Err(ZkError::NodeExists) => continue,
                Err(e) => {
                    return Err(error::map(
                        e,
                        format_args!("creating the directory of lock {name}"),
                    ))
                }
            },
            Err(e) if error::is_indeterminate(&e) => {
                tracing::debug!(lock = %name, error = %e, "create indeterminate; looking for our node");
                if session.liveness().state().is_lost() {
                    return Err(lost(name, "session lost while creating the lock node"));
                }
                // Catch up with the leader first, so a create that did commit shows.
                let _ = client.sync(dir).await;
                match client.list_children(dir).await {
                    Ok(children) => {
                        if let Some(node) = children.into_iter().find(|c| queue::is_own(c, uuid)) {
                            match client.check_stat(&format!("{dir}/{node}")).await {
                                Ok(Some(stat)) => return Ok((node, stat)),
                                Ok(None) => {}
                                Err(e) => last = Some(e),
                            }
                        }
                    }
                    Err(e) => last = Some(e),
                }
                last.get_or_insert(e);
            }
            Err(e) => return Err(error::map(e, format_args!("enqueueing for lock {name}"))),
        }
    }
    Err(error::map(
        last.unwrap_or(ZkError::ConnectionLoss),
        format_args!("enqueueing for lock {name}"),
    ))
}

/// The acquisition recipe. See the crate docs for the steps and their guarantees.
pub(crate) async fn acquire(
    session: &Arc<Session>,
    name: &LockName,
    claim: Claim,
    mode: WaitMode,
    options: &AcquireOptions,
) -> Result<Option<ZkHeldLock>> {
    if session.liveness().state().is_lost() {
        return Err(lost(name, format_args!("session {} is lost", session.id())));
    }
    let client = session.client_for(format_args!("acquiring lock {name}"))?;
    let dir = queue::dir_path(name);
    let acquired_at = SystemTime::now();
    let data = queue::encode_data(options.holder(), acquired_at);
    let mut cleanup = NodeCleanup {
        session: session.clone(),
        dir: dir.clone(),
        uuid: uuid::Uuid::new_v4().simple().to_string(),
        node: None,
        armed: true,
    };
    let mut lease_watch = session.liveness().watch();
    let mut requeues = 0;
    'enqueue: loop {
        // Our node (or the whole directory) was deleted from outside while we waited,
        // e.g. by an operator's `deleteall`: enqueue again, at the back, under a new
        // uuid, unless the session itself is gone.
        if requeues > 0 {
            if session.liveness().state().is_lost() {
                return Err(lost(name, format_args!("session {} is lost", session.id())));
            }
            if requeues > RETRIES {
                return Err(lost(
                    name,
                    format_args!("our lock node was deleted {requeues} times while waiting"),
                ));
            }
            tracing::debug!(lock = %name, "lock node deleted while waiting; enqueueing again");
            cleanup.uuid = uuid::Uuid::new_v4().simple().to_string();
            cleanup.node = None;
        }
        requeues += 1;
        let uuid = cleanup.uuid.clone();
        let (node, stat) = create_node(session, &client, name, &dir, &uuid, &data, claim).await?;
        cleanup.node = Some(node.clone());
        let path = format!("{dir}/{node}");
        let token = FencingToken::new(stat.czxid as u64);
        // The first read also sets a watch on the directory: if we own the lock at
        // once (the uncontended case) it is the held lock's first deletion watch, at
        // no extra request. A waiter never re-arms it, so a change wakes at most one
        // holder.
        let (children, dir_watch) = match client.list_and_watch_children(&dir).await {
            Ok(read) => read,
            Err(ZkError::NoNode) => continue 'enqueue, // directory deleted meanwhile
            Err(e) => {
                return Err(error::map(
                    e,
                    format_args!("reading the queue of lock {name}"),
                ))
            }
        };
        let mut dir_watch: Option<NodeEvent> = Some(Box::pin(dir_watch.changed()));
        let mut children = Some(children);
        let mut parked: Option<NodeEvent> = None;
        let signal_grant;
        let first_watch = loop {
            let children = match children.take() {
                Some(first) => first,
                None => match client.list_children(&dir).await {
                    Ok(children) => children,
                    Err(ZkError::NoNode) => continue 'enqueue,
                    Err(e) => {
                        return Err(error::map(
                            e,
                            format_args!("reading the queue of lock {name}"),
                        ))
                    }
                },
            };
            if let Claim::Shared { limit } = claim {
                if let Some(other) = queue::other_limit(&children, limit) {
                    if delete_own(session, &dir, &uuid, Some(&node)).await.is_ok() {
                        cleanup.disarm();
                    }
                    return Err(Error::new(
                        ErrorKind::InvalidConfig,
                        format!("semaphore {name} has limit {other}, not {limit}"),
                    ));
                }
            }
            let targets: Vec<String> = match queue::position(&children, &node) {
                Position::Missing => continue 'enqueue,
                // Owner at the first read: the directory watch is still armed and ours.
                Position::Owner => {
                    // The semaphore hand-off rule of `decide`: a permit with a node
                    // behind it signals its grant, so that waiter watches the
                    // permits ahead of it from now on.
                    signal_grant = matches!(claim, Claim::Shared { .. })
                        && queue::has_successor(&children, &node);
                    break dir_watch.take();
                }
                Position::WaitFor(_) | Position::WaitForAny(_) if mode == WaitMode::NoWait => {
                    if delete_own(session, &dir, &uuid, Some(&node)).await.is_ok() {
                        cleanup.disarm();
                    }
                    return Ok(None); // our own delete fired the directory watch: dropping it is free
                }
                Position::WaitFor(p) => vec![format!("{dir}/{p}")],
                Position::WaitForAny(nodes) => {
                    nodes.into_iter().map(|p| format!("{dir}/{p}")).collect()
                }
            };
            // From here on the directory watch is parked unpolled: it fires (once) on
            // the next change of the queue. It is dropped only after a later read,
            // when its notification has surely arrived: dropping an armed watch costs
            // a request.
            if parked.is_none() {
                parked = dir_watch.take();
            }
            // A data watch on each: it fires when the node goes, or when its data is
            // set (a permit's grant signal).
            let mut events = Vec::with_capacity(targets.len());
            for target in &targets {
                match watch_node(&client, target)
                    .await
                    .map_err(|e| error::map(e, format_args!("watching the queue of lock {name}")))?
                {
                    Some(event) => events.push(event),
                    None => break, // already gone: read the queue again
                }
            }
            if events.len() < targets.len() {
                continue;
            }
            tokio::select! {
                (ev, _, _) = futures::future::select_all(events) => {
                    session.wakeups.fetch_add(1, Ordering::Relaxed);
                    if ev.event_type == EventType::Session {
                        return Err(lost(name, format_args!("session {} while waiting", ev.session_state)));
                    }
                }
                _ = lease_watch.lost() => {
                    return Err(lost(name, format_args!("session {} lost while waiting", session.id())));
                }
            }
        };
        drop(parked);
        if signal_grant {
            // Same data, any version: only the event matters. If our node is gone,
            // the held lock's first watch reports the loss.
            match client.set_data(&format!("{dir}/{node}"), &data, None).await {
                Ok(_) | Err(ZkError::NoNode) => {}
                Err(e) => {
                    return Err(error::map(
                        e,
                        format_args!("signalling the grant of semaphore {name}"),
                    ))
                }
            }
        }
        let permit = match claim {
            Claim::Shared { limit } => {
                Some(claim_permit_slot(session, &client, name, &dir, &node, limit).await?)
            }
            _ => None,
        };
        cleanup.disarm();
        let token = permit.as_ref().map_or(token, |p| p.token);
        let held = ZkHeldLock::new(session.clone(), name.clone(), path, token, first_watch)
            .with_acquired_at(acquired_at);
        return Ok(Some(held.with_permit(permit)));
    }
}
