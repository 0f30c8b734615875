//! Change signals for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock) and
//! `watch_list`: one persistent recursive watch (ZooKeeper 3.6+) on the lock's
//! directory, or on the root for a name prefix. It stays armed after each event, so
//! nothing between two events is missed (a one-shot children watch would need
//! re-arming); every node created or deleted under it is a signal, and so is a
//! reconnect (the session may have missed events while disconnected).

use crate::{error, queue};
use futures::StreamExt;
use lock_core::{
    backend::{ChangeStream, WatchScope},
    Error, ErrorKind, Result,
};
use zookeeper_client::{AddWatchMode, Client, EventType, SessionState};

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
