//! Live views of locks: [`LockClient::watch_lock`] and [`LockClient::watch_list`],
//! driven by the backend's own watch ([`Backend::watch_changes`]), not by polling.

use crate::{backend::Backend, IntoLockName, LockClient, LockInfo, LockName, Result};
use futures::stream::{BoxStream, StreamExt};
use std::{fmt, future::Future, sync::Arc};

/// What a backend watch covers: one lock, or every lock whose name starts with a
/// prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum WatchScope {
    /// The lock of this name (its holder and its waiters).
    Lock(LockName),
    /// Every lock whose name starts with this (`""`: all).
    Prefix(String),
}

impl fmt::Display for WatchScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WatchScope::Lock(name) => write!(f, "lock {name}"),
            WatchScope::Prefix(p) => write!(f, "locks with prefix {p:?}"),
        }
    }
}

/// Change signals from [`Backend::watch_changes`]: each item says "something in the
/// scope may have changed, read again".
pub type ChangeStream = BoxStream<'static, Result<()>>;

/// A stream of snapshots from [`LockClient::watch_lock`] (`T = Option<LockInfo>`) or
/// [`LockClient::watch_list`] (`T = Vec<LockInfo>`): the current one first, then one
/// per change, never the same twice in a row.
pub type LockWatch<T> = BoxStream<'static, Result<T>>;

/// What [`Backend::watch_lock_info`] yields: the lock's state now, then after each
/// change (`None`: free). Repeats are allowed; the client drops them.
pub type LockInfoWatch = LockWatch<Option<LockInfo>>;

/// A [`LockInfoWatch`] for a backend that follows a lock itself: `first`, then what
/// each `next(state)` yields (with the state to go on with); ends after the first
/// error. The shape of every override of [`Backend::watch_lock_info`].
pub fn follow_lock<S, F, Fut>(first: Option<LockInfo>, state: S, mut next: F) -> LockInfoWatch
where
    S: Send + 'static,
    F: FnMut(S) -> Fut + Send + 'static,
    Fut: Future<Output = (Result<Option<LockInfo>>, S)> + Send + 'static,
{
    let rest = futures::stream::unfold(Some(state), move |state| {
        let step = state.map(&mut next);
        async move {
            let (item, state) = step?.await;
            let go_on = item.is_ok();
            Some((item, go_on.then_some(state)))
        }
    });
    futures::stream::once(futures::future::ready(Ok(first)))
        .chain(rest)
        .boxed()
}

/// The snapshots `read` returns: first at once, then after each change signal when
/// they differ from the last one yielded. Ends after the first error.
pub(crate) fn snapshots<T, F, Fut>(changes: ChangeStream, read: F) -> LockWatch<T>
where
    T: PartialEq + Clone + Send + 'static,
    F: Fn() -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T>> + Send + 'static,
{
    struct St<T, F> {
        changes: ChangeStream,
        read: F,
        last: Option<T>,
        done: bool,
    }
    let st = St {
        changes,
        read,
        last: None,
        done: false,
    };
    futures::stream::unfold(st, |mut st| async move {
        if st.done {
            return None;
        }
        if st.last.is_some() {
            loop {
                match st.changes.next().await? {
                    Ok(()) => {}
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
                match (st.read)().await {
                    Ok(now) if st.last.as_ref() == Some(&now) => continue,
                    Ok(now) => {
                        st.last = Some(now.clone());
                        return Some((Ok(now), st));
                    }
                    Err(e) => {
                        st.done = true;
                        return Some((Err(e), st));
                    }
                }
            }
        }
        match (st.read)().await {
            Ok(now) => {
                st.last = Some(now.clone());
                Some((Ok(now), st))
            }
            Err(e) => {
                st.done = true;
                Some((Err(e), st))
            }
        }
    })
    .boxed()
}

/// `items` without repeats, ended after the first error.
fn distinct<T>(items: LockWatch<T>) -> LockWatch<T>
where
    T: PartialEq + Clone + Send + 'static,
{
    let mut last: Option<T> = None;
    let mut failed = false;
    items
        .take_while(move |item| {
            let go = !failed;
            failed |= item.is_err();
            futures::future::ready(go)
        })
        .filter_map(move |item| {
            let out = match item {
                Ok(now) if last.as_ref() == Some(&now) => None,
                Ok(now) => {
                    last = Some(now.clone());
                    Some(Ok(now))
                }
                Err(e) => Some(Err(e)),
            };
            futures::future::ready(out)
        })
        .boxed()
}

impl LockClient {
    /// Watches the lock `name`: yields who holds it now (`None`: free), then a new
    /// snapshot each time the holder, its token or the number of waiters changes.
    ///
    /// Driven by the backend's watch (memory: its store's changes; etcd: a watch on
    /// the lock's key range; ZooKeeper: a persistent recursive watch on the lock's
    /// directory), not by polling, through
    /// [`Backend::watch_lock_info`](crate::backend::Backend::watch_lock_info): etcd
    /// and ZooKeeper keep the lock's state from the watch's events, so a change
    /// costs the watcher no request (ZooKeeper: one read of the holder's data when
    /// the holder or its data changed); see [`Election`](crate::Election).
    ///
    /// # Guarantees
    ///
    /// Two snapshots in a row always differ; the last one yielded was current when
    /// read. The watch is in place before the first snapshot is read, so no later
    /// change is missed.
    ///
    /// # Non-guarantees
    ///
    /// Changes that come and go between two reads (a grant released at once) may be
    /// seen as one change or not at all: this is a view of the present, not a history.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`](crate::ErrorKind::InvalidName);
    /// [`ErrorKind::Unsupported`](crate::ErrorKind::Unsupported) for a backend without
    /// watches; backend errors setting up the watch. Errors later end the stream
    /// after one `Err` item.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use lock_core::LockClient;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let mut watch = client.watch_lock("daily-report").await?;
    /// assert!(watch.next().await.unwrap()?.is_none()); // free
    /// let guard = client.acquire("daily-report").await?;
    /// let held = watch.next().await.unwrap()?.expect("held");
    /// assert_eq!(held.token, guard.token());
    /// guard.release().await?;
    /// assert!(watch.next().await.unwrap()?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn watch_lock<N>(&self, name: N) -> Result<LockWatch<Option<LockInfo>>>
    where
        N: IntoLockName,
    {
        let name = name.into_lock_name()?;
        let backend: Arc<dyn Backend> = self.backend_arc();
        Ok(distinct(backend.watch_lock_info(&name).await?))
    }

    /// Watches the held locks whose names start with `prefix` (`""`: all): yields
    /// the list now, then a new one each time it changes. Same guarantees and errors
    /// as [`watch_lock`](Self::watch_lock).
    ///
    /// # Errors
    ///
    /// As [`watch_lock`](Self::watch_lock).
    pub async fn watch_list(&self, prefix: &str) -> Result<LockWatch<Vec<LockInfo>>> {
        let backend: Arc<dyn Backend> = self.backend_arc();
        let prefix = prefix.to_owned();
        let changes = backend
            .watch_changes(&WatchScope::Prefix(prefix.clone()))
            .await?;
        Ok(snapshots(changes, move || {
            let (backend, prefix) = (backend.clone(), prefix.clone());
            async move { backend.list(&prefix).await }
        }))
    }
}
