//! The held lock: its own-node watch (external deletion → lost) and release (a lock
//! dropped without one is released by lock-core's grant, which calls `release`).

use crate::{
    error,
    permit::{release_slot, PermitSlot},
    session::{retry_backoff, watch_node, NodeEvent, Session, RETRIES},
};
use async_trait::async_trait;
use lock_core::backend::Liveness;
use lock_core::{backend::HeldLock, Error, ErrorKind, FencingToken, LockName, LossCause, Result};
use std::{
    any::Any,
    fmt,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Weak,
    },
    time::{Duration, SystemTime},
};
use zookeeper_client::{Error as ZkError, EventType};

/// A granted acquisition on ZooKeeper: the lock node `<chroot>/<lock dir>/<uuid>-lock-<seq>`
/// (`<uuid>__lock__<seq>` with `node_style=kazoo`).
///
/// Use it through [`LockGuard::backend_lock`](lock_core::LockGuard::backend_lock) for
/// ZooKeeper-specific extensions, such as [`fenced_write`](Self::fenced_write).
pub struct ZkHeldLock {
    pub(crate) session: Arc<Session>,
    name: LockName,
    path: String,
    token: FencingToken,
    liveness: Liveness,
    released: bool,
    /// Tells the watch task that a deletion of the node is our own release, so it
    /// ends without another request.
    releasing: Arc<AtomicBool>,
    acquired_at: SystemTime,
    /// A semaphore permit's slot node; its `czxid` is the token.
    permit: Option<PermitSlot>,
}

impl ZkHeldLock {
    pub(crate) fn new(
        session: Arc<Session>,
        name: LockName,
        path: String,
        token: FencingToken,
        first: Option<NodeEvent>,
    ) -> Self {
        let liveness = Liveness::new(None);
        let releasing = Arc::new(AtomicBool::new(false));
        tokio::spawn(watch_own(
            Arc::downgrade(&session),
            path.clone(),
            liveness.clone(),
            releasing.clone(),
            first,
        ));
        ZkHeldLock {
            session,
            name,
            path,
            token,
            liveness,
            released: false,
            releasing,
            acquired_at: SystemTime::now(),
            permit: None,
        }
    }

    /// The time written into the node's data at enqueueing, kept by
    /// [`set_value`](HeldLock::set_value).
    pub(crate) fn with_acquired_at(mut self, at: SystemTime) -> Self {
        self.acquired_at = at;
        self
    }

    pub(crate) fn with_permit(mut self, permit: Option<PermitSlot>) -> Self {
        self.permit = permit;
        self
    }

    /// The lock node's path, relative to the chroot (`/<lock dir>/<uuid>-lock-<seq>`, or
    /// `…__lock__<seq>` with `node_style=kazoo`).
    pub fn node_path(&self) -> &str {
        &self.path
    }

    /// The lock's name.
    pub fn name(&self) -> &LockName {
        &self.name
    }
}

/// Turns `liveness` lost when the node at `path` is deleted by someone else (an
/// operator, or the server when the session ends).
///
/// `first` is the directory watch set by the acquiring read, if it is still armed.
/// When it fires (someone joined the queue, or our node went) and the lock is not
/// being released, the task switches to a data watch on the node itself, which fires
/// only for the node. So an uncontended cycle costs no request beyond create, read
/// and delete, and a contended one at most one.
async fn watch_own(
    session: Weak<Session>,
    path: String,
    liveness: Liveness,
    releasing: Arc<AtomicBool>,
    first: Option<NodeEvent>,
) {
    let mut next = first;
    let cause = loop {
        let event = match next.take() {
            Some(event) => Some(event.await),
            None => None,
        };
        if releasing.load(Ordering::SeqCst) {
            return; // our own release; it updates the liveness itself
        }
        match event.map(|e| (e.event_type, e.session_state)) {
            Some((EventType::NodeDeleted, _)) => break LossCause::EntryDeleted,
            Some((EventType::Session, state)) if state.is_terminated() => {
                break error::session_end_cause(state)
            }
            _ => {}
        }
        let Some(client) = session.upgrade().and_then(|s| s.client()) else {
            break LossCause::Disconnected;
        };
        match watch_node(&client, &path).await {
            Ok(Some(event)) => next = Some(event),
            Ok(None) => break LossCause::EntryDeleted,
            Err(e) if error::is_terminal(&e) => break error::loss_cause_of(&e),
            Err(e) => {
                tracing::debug!(%path, error = %e, "watching the lock node failed; retrying");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    if !releasing.load(Ordering::SeqCst) {
        tracing::debug!(%path, %cause, "lock node gone");
        liveness.lose_with(cause);
    }
}

impl fmt::Debug for ZkHeldLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkHeldLock")
            .field("name", &self.name)
            .field("path", &self.path)
            .field("token", &self.token)
            .field("session", &self.session.id())
            .field("liveness", &self.liveness)
            .finish()
    }
}

#[async_trait]
impl HeldLock for ZkHeldLock {
    fn token(&self) -> FencingToken {
        self.token
    }

    fn liveness(&self) -> &Liveness {
        &self.liveness
    }

    async fn release(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        self.releasing.store(true, Ordering::SeqCst);
        if let Some(permit) = self.permit.take() {
            release_slot(&self.session, &permit).await;
        }
        let result = release_node(&self.session, &self.name, &self.path, self.token).await;
        self.liveness.lose_with(LossCause::Released);
        result
    }

    async fn set_value(&self, value: &str) -> Result<()> {
        let not_held = || {
            Error::new(
                ErrorKind::NotHeld,
                format!(
                    "lock {} (token {}) is no longer held; its value was not changed",
                    self.name, self.token
                ),
            )
        };
        if self.released || self.liveness.state().is_lost() {
            return Err(not_held());
        }
        let Some(client) = self.session.client() else {
            return Err(not_held());
        };
        // The node's path is unique to this acquisition: writing it can never touch a
        // newer holder's node, and a deleted node is `NoNode`.
        let data = crate::queue::encode_data(Some(value), self.acquired_at);
        match client.set_data(&self.path, &data, None).await {
            Ok(_) => Ok(()),
            Err(ZkError::NoNode) => Err(not_held()),
            Err(e) if error::is_terminal(&e) => Err(not_held().with_source(e)),
            Err(e) => Err(error::map(
                e,
                format_args!(
                    "setting the value of lock {} (token {})",
                    self.name, self.token
                ),
            )),
        }
    }

    fn slot(&self) -> Option<u32> {
        self.permit.as_ref().map(|p| p.slot)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}

/// Deletes the node at `path`. The path is unique to this acquisition, so this can
/// never delete a newer holder's node.
async fn release_node(
    session: &Session,
    name: &LockName,
    path: &str,
    token: FencingToken,
) -> Result<()> {
    let not_held = || {
        Error::new(
            ErrorKind::NotHeld,
            format!("lock {name} (token {token}) was lost before release"),
        )
    };
    let mut tried = false;
    let mut backoff = retry_backoff();
    for attempt in 0..RETRIES {
        if attempt > 0 {
            tokio::time::sleep(backoff.next_delay()).await;
        }
        let Some(client) = session.client() else {
            return Err(not_held());
        };
        match client.delete(path, None).await {
            Ok(()) => return Ok(()),
            // After an indeterminate attempt, a missing node is most likely our own delete.
            Err(ZkError::NoNode) if tried => return Ok(()),
            Err(ZkError::NoNode) => return Err(not_held()),
            Err(e) if error::is_terminal(&e) => return Err(not_held().with_source(e)),
            Err(e) if error::is_indeterminate(&e) && !session.liveness().state().is_lost() => {
                tried = true
            }
            Err(e) => {
                return Err(error::map(
                    e,
                    format_args!("releasing lock {name} (token {token})"),
                ))
            }
        }
    }
    Err(Error::new(
        ErrorKind::Unavailable,
        format!(
            "release of lock {name} (token {token}) not confirmed; the node goes with its session"
        ),
    ))
}
