//! Fault controls and leak checks for tests and operations: expiring a session from
//! outside, breaking a lock, listing what is left on the server.

use crate::{backend::ZkBackend, conn, error, queue};
use lock_core::{Error, ErrorKind, FencingToken, LeaseId, LockName, Result};
use std::{fmt, time::Duration};
use zookeeper_client::Error as ZkError;

/// How often a read is repeated when the holder changes between two reads.
const RETRIES: usize = 5;

impl ZkBackend {
    /// A reference to the session of `lease` (one of this backend's open leases), for
    /// [`expire_session`](Self::expire_session) on this or another backend; `None` if
    /// `lease` is not open here.
    pub fn session_ref(&self, lease: LeaseId) -> Option<ZkSessionRef> {
        let session = self.live_sessions().into_iter().find(|s| s.id() == lease)?;
        Some(ZkSessionRef {
            id: lease,
            info: session.info().clone(),
            timeout: session.timeout(),
        })
    }

    /// **Fault control:** expires `session` on the server, as ZooKeeper does after a
    /// crash: it connects a second client (through this backend's servers) with the
    /// same session id and password and closes it. The server deletes the session's
    /// lock nodes at once, so the next waiters are granted; the session's own client
    /// sees its connection dropped (`Suspect`) and then the expiry (`Lost`).
    ///
    /// The server moves a session to its newest connection, so if the session's own
    /// client reconnects before the close goes through, it takes the session back and
    /// this fails with [`ErrorKind::Unavailable`]. Tests hold the owner's traffic
    /// meanwhile (the integration harness routes each client through a proxy and
    /// expires through a backend that bypasses it).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] when the server cannot be reached or the close is
    /// not confirmed. A session that already expired is not an error.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped call may or may not have expired the session.
    pub async fn expire_session(&self, session: &ZkSessionRef) -> Result<()> {
        let config = self.config();
        let lease = session.id;
        let intruder =
            match conn::connect(config, session.timeout, false, Some(session.info.clone())).await {
                Ok(client) => client,
                Err(e) if e.kind() == ErrorKind::LeaseLost => return Ok(()),
                Err(e) => return Err(e),
            };
        let mut states = intruder.state_watcher();
        drop(intruder);
        let closed = async {
            loop {
                if states.changed().await.is_terminated() {
                    return;
                }
            }
        };
        tokio::time::timeout(config.connect_timeout(), closed)
            .await
            .map_err(|_| {
                Error::new(
                    ErrorKind::Unavailable,
                    format!("closing session {lease} from outside not confirmed"),
                )
            })?;
        tracing::debug!(%lease, "zookeeper session expired from outside");
        Ok(())
    }

    /// **Fault control:** deletes the node of `name`'s current holder from this
    /// backend's own session, as an operator breaking the lock would. The holder's
    /// guard turns `Lost` when its watch fires; the next waiter is granted. Returns the
    /// deleted holder's token, `None` when the lock was free.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] and other backend errors.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped call may or may not have deleted the node.
    pub async fn delete_holder(&self, name: &LockName) -> Result<Option<FencingToken>> {
        let client = self.admin().await?;
        let dir = queue::dir_path(name);
        let what = || format!("deleting the holder of lock {name}");
        for _ in 0..RETRIES {
            let children = match client.list_children(&dir).await {
                Ok(children) => children,
                Err(ZkError::NoNode) => return Ok(None),
                Err(e) => return Err(error::map(e, what())),
            };
            let Some(owner) = queue::sorted(&children)
                .first()
                .map(|o| format!("{dir}/{o}"))
            else {
                return Ok(None);
            };
            let stat = match client.check_stat(&owner).await {
                Ok(Some(stat)) => stat,
                Ok(None) => continue,
                Err(e) => return Err(error::map(e, what())),
            };
            match client.delete(&owner, Some(stat.version)).await {
                Ok(()) => return Ok(Some(FencingToken::new(stat.czxid as u64))),
                Err(ZkError::NoNode) => continue,
                Err(e) => return Err(error::map(e, what())),
            }
        }
        Err(Error::new(
            ErrorKind::Unavailable,
            format!("{}: the holder kept changing", what()),
        ))
    }
}

impl ZkBackend {
    /// The ids of the leases (sessions) granted by this backend and not yet revoked.
    pub fn leases(&self) -> Vec<LeaseId> {
        self.live_sessions()
            .iter()
            .filter(|s| s.client().is_some())
            .map(|s| s.id())
            .collect()
    }

    /// Every znode under the chroot except the lock directories themselves
    /// (containers, which the server removes once empty), as `path (ephemeral of session ID)` or `path (persistent)`:
    /// for leak checks in tests and operations. Empty when nothing is left.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unavailable`] and other backend errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe (read only).
    pub async fn nodes(&self) -> Result<Vec<String>> {
        let client = self.admin().await?;
        let mut found = Vec::new();
        let mut pending = vec![String::new()];
        while let Some(dir) = pending.pop() {
            let parent = if dir.is_empty() { "/" } else { dir.as_str() };
            let children = match client.list_children(parent).await {
                Ok(children) => children,
                Err(ZkError::NoNode) => continue,
                Err(e) => return Err(error::map(e, format_args!("listing {parent}"))),
            };
            for child in children {
                let path = format!("{dir}/{child}");
                match client.check_stat(&path).await {
                    // Servers report containers as persistent (ephemeralOwner 0): a lock
                    // directory directly under the chroot is one; only its children count.
                    Ok(Some(stat))
                        if dir.is_empty()
                            && stat.ephemeral_owner == 0
                            && queue::decode_name(&child).is_some() => {}
                    Ok(Some(stat)) if stat.ephemeral_owner != 0 => {
                        found.push(format!(
                            "{path} (ephemeral of session {})",
                            LeaseId::new(stat.ephemeral_owner as u64)
                        ));
                    }
                    Ok(Some(_)) => found.push(format!("{path} (persistent)")),
                    Ok(None) => continue,
                    Err(e) => return Err(error::map(e, format_args!("reading {path}"))),
                }
                pending.push(path);
            }
        }
        found.sort();
        Ok(found)
    }
}

/// A reference to a ZooKeeper session (its id and password) from
/// [`ZkBackend::session_ref`], for fault injection. `Debug` shows only the id.
#[derive(Clone)]
pub struct ZkSessionRef {
    id: LeaseId,
    info: zookeeper_client::SessionInfo,
    timeout: Duration,
}

impl ZkSessionRef {
    /// The session's id (the lease id).
    pub fn id(&self) -> LeaseId {
        self.id
    }
}

impl fmt::Debug for ZkSessionRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ZkSessionRef")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}
