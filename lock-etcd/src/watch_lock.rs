//! Live views of locks on one etcd watch stream of their own, over the key range of
//! the lock (or of every lock under a name prefix), opened again (on the member
//! requests go to) when it breaks.
//!
//! - [`changes`]: change signals for `watch_list` (and the default `watch_lock`):
//!   every event in the range is a signal, and so is a re-opened stream, since
//!   changes may have been missed meanwhile.
//! - [`lock_infos`]: the state of one lock kept from the watch itself, for
//!   `watch_lock` and `Election::observe`: one read of the lock's range at revision
//!   `R` (keys, values, create revisions), then a prefix watch from `R + 1` whose
//!   events carry the same (a put: key, value, create revision, lease; a delete: the
//!   key). The contenders (direct children of the range) are kept in a map ordered by
//!   create revision and each event is applied to it, so a change costs the watcher
//!   **no request**: the head, its value and the queue length come from the map.
//!   When the stream breaks or etcd cancels the watch (compaction), the range is read
//!   once more and the watch continues after that read's revision.

use crate::{
    conn::{retry_backoff, Conn},
    error,
    queue::{self, Waiter},
    queue_view::{Change, Joined, QueueView},
    view,
};
use etcd_client::{
    EventType, GetOptions, KeyValue, WatchOptions, WatchRequestSender, WatchResponseStream,
};
use futures::StreamExt;
use lock_core::{
    backend::{follow_lock, Backoff, ChangeStream, LockInfoWatch},
    ErrorKind, LockInfo, LockName, Result,
};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, Weak},
};

type Stream = (WatchRequestSender, WatchResponseStream);

/// Watches every key starting with `range`; returns once etcd confirmed the watch.
pub(crate) async fn changes(conn: Arc<Conn>, range: String) -> Result<ChangeStream> {
    let first = open(&conn, &range, 0).await?;
    let state = (conn, range, Some(first), retry_backoff());
    Ok(
        futures::stream::unfold(state, |(conn, range, mut stream, mut backoff)| async move {
            loop {
                let Some((_, responses)) = stream.as_mut() else {
                    tokio::time::sleep(backoff.next_delay()).await;
                    match open(&conn, &range, 0).await {
                        Ok(opened) => {
                            backoff.reset();
                            // Changes may have happened while no watch was in place.
                            return Some((Ok(()), (conn, range, Some(opened), backoff)));
                        }
                        Err(e) if e.is_retryable() || e.kind() == ErrorKind::Backend => {
                            tracing::debug!(%range, error = %e, "re-opening the lock watch failed");
                            continue;
                        }
                        Err(e) => return Some((Err(e), (conn, range, None, backoff))),
                    }
                };
                match responses.next().await {
                    Some(Ok(r)) if !r.events().is_empty() => {
                        return Some((Ok(()), (conn, range, stream, backoff)));
                    }
                    Some(Ok(r)) if r.canceled() => stream = None,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(%range, error = %e, "lock watch stream failed; re-opening");
                        stream = None;
                    }
                    None => stream = None,
                }
            }
        })
        .boxed(),
    )
}

/// Opens a watch stream on `range` from revision `start` (0: from now on) and waits
/// for etcd to confirm it.
async fn open(conn: &Conn, range: &str, start: i64) -> Result<Stream> {
    open_on(conn, range, start).await.map(|(stream, _)| stream)
}

/// [`open`], also returning the member the stream is open on.
async fn open_on(conn: &Conn, range: &str, start: i64) -> Result<(Stream, usize)> {
    let what = || format!("watching {range}");
    let member = conn.members.preferred();
    let limit = conn.members.attempt_limit(conn.config.request_timeout());
    let opened = tokio::time::timeout(limit, async {
        let mut client = conn.members.client(member).watch_client();
        let stream = client
            .watch(
                range,
                Some(WatchOptions::new().with_prefix().with_start_revision(start)),
            )
            .await
            .map_err(|e| error::map(e, what()))?;
        let (sender, mut responses) = stream.split();
        match responses.next().await {
            Some(Ok(r)) if r.created() && !r.canceled() => Ok((sender, responses)),
            Some(Ok(r)) => Err(lock_core::Error::new(
                ErrorKind::Backend,
                format!("{}: etcd refused the watch: {}", what(), r.cancel_reason()),
            )),
            Some(Err(e)) => Err(error::map(e, what())),
            None => Err(lock_core::Error::new(
                ErrorKind::Unavailable,
                format!("{}: the watch stream closed", what()),
            )),
        }
    })
    .await;
    match opened {
        Ok(Ok(stream)) => {
            conn.members.prefer(member);
            Ok((stream, member))
        }
        Ok(Err(e)) => {
            conn.members.skip(member);
            Err(e)
        }
        Err(_) => {
            conn.members.skip(member);
            Err(error::timed_out(what(), limit))
        }
    }
}

/// The contenders of one lock (direct children of its range), by create revision.
#[derive(Default)]
struct Contenders {
    /// By create revision, then key: the keys one transaction writes share one.
    by_revision: BTreeMap<(i64, Vec<u8>), KeyValue>,
    revision_of: HashMap<Vec<u8>, i64>,
}

impl Contenders {
    /// A key was written: a new contender, or a contender's new value.
    fn put(&mut self, range: &str, kv: &KeyValue) {
        if !queue::is_direct_child(range, kv.key()) {
            return;
        }
        self.delete(kv.key());
        self.revision_of
            .insert(kv.key().to_vec(), kv.create_revision());
        self.by_revision
            .insert((kv.create_revision(), kv.key().to_vec()), kv.clone());
    }

    /// A key was deleted.
    fn delete(&mut self, key: &[u8]) {
        if let Some(revision) = self.revision_of.remove(key) {
            self.by_revision.remove(&(revision, key.to_vec()));
        }
    }

    /// The lock's view, as `inspect` reads it.
    fn info(&self, name: &LockName, range: &str) -> Option<LockInfo> {
        let kvs: Vec<&KeyValue> = self.by_revision.values().collect();
        let count = i64::try_from(kvs.len()).unwrap_or(i64::MAX);
        view::info(name.clone(), range, &kvs, count)
    }
}

/// Reads the contenders of `range` at some revision `R` and opens a watch on it from
/// `R + 1`: two requests.
async fn follow(conn: &Conn, range: &str) -> Result<(Contenders, Stream)> {
    let resp = conn
        .call(&|| format!("reading lock range {range:?}"), |mut c| {
            let range = range.to_owned();
            async move { c.get(range, Some(GetOptions::new().with_prefix())).await }
        })
        .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let mut contenders = Contenders::default();
    for kv in resp.kvs() {
        contenders.put(range, kv);
    }
    let stream = open(conn, range, revision + 1).await?;
    Ok((contenders, stream))
}

struct Follower {
    conn: Arc<Conn>,
    name: LockName,
    range: String,
    contenders: Contenders,
    stream: Option<Stream>,
    /// What was yielded last (`None`: nothing yet).
    last: Option<Option<LockInfo>>,
    backoff: Backoff,
}

impl Follower {
    /// The current view if it differs from the last one yielded.
    fn changed(&mut self) -> Option<Option<LockInfo>> {
        let now = self.contenders.info(&self.name, &self.range);
        (self.last.as_ref() != Some(&now)).then(|| {
            self.last = Some(now.clone());
            now
        })
    }

    /// The next view that differs from the last one, or the error that ends the
    /// stream.
    async fn next(&mut self) -> Result<Option<LockInfo>> {
        loop {
            let Some((_, responses)) = self.stream.as_mut() else {
                tokio::time::sleep(self.backoff.next_delay()).await;
                match follow(&self.conn, &self.range).await {
                    Ok((contenders, stream)) => {
                        self.backoff.reset();
                        (self.contenders, self.stream) = (contenders, Some(stream));
                        if let Some(now) = self.changed() {
                            return Ok(now);
                        }
                        continue;
                    }
                    Err(e) if e.is_retryable() || e.kind() == ErrorKind::Backend => {
                        tracing::debug!(range = %self.range, error = %e, "re-reading the followed lock failed");
                        continue;
                    }
                    Err(e) => return Err(e),
                }
            };
            match responses.next().await {
                Some(Ok(r)) if r.canceled() => {
                    tracing::debug!(
                        range = %self.range,
                        reason = r.cancel_reason(),
                        compacted = r.compact_revision(),
                        "lock watch cancelled by etcd; reading the range again"
                    );
                    self.stream = None;
                }
                Some(Ok(r)) => {
                    for event in r.events() {
                        match (event.event_type(), event.kv()) {
                            (EventType::Put, Some(kv)) => self.contenders.put(&self.range, kv),
                            (EventType::Delete, Some(kv)) => self.contenders.delete(kv.key()),
                            // An event without its key: read the range again.
                            (_, None) => self.stream = None,
                        }
                    }
                    if let Some(now) = self.changed() {
                        return Ok(now);
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!(range = %self.range, error = %e, "lock watch stream failed; re-opening");
                    self.stream = None;
                }
                None => self.stream = None,
            }
        }
    }
}

/// The state of lock `name` (range `range`) now, then after each change, kept from
/// the watch's events (see the module docs); returns once etcd confirmed the watch.
pub(crate) async fn lock_infos(
    conn: Arc<Conn>,
    name: LockName,
    range: String,
) -> Result<LockInfoWatch> {
    let (contenders, stream) = follow(&conn, &range).await?;
    let mut follower = Follower {
        conn,
        name,
        range,
        contenders,
        stream: Some(stream),
        last: None,
        backoff: retry_backoff(),
    };
    let first = follower.changed().unwrap_or(None);
    Ok(follow_lock(first, follower, |mut f| async move {
        let item = f.next().await;
        (item, f)
    }))
}

/// How often a waiters' view checks that it is still wanted and that its stream's
/// member is still the one requests go to.
const QUEUE_CHECK: std::time::Duration = std::time::Duration::from_millis(250);

/// The view of `range` for this client's waiters (see `queue_view.rs`), started
/// with its follower if there is none, with one more waiter on it.
pub(crate) fn join_queue(conn: &Arc<Conn>, range: &str) -> Joined {
    conn.views.join(range, || {
        let view = QueueView::new(range);
        let task = tokio::spawn(follow_queue(
            Arc::downgrade(&view),
            Arc::downgrade(conn),
            range.to_owned(),
        ));
        view.set_follower(task);
        view
    })
}

/// Opens a watch on `range` from now, then reads the range's keys: the read's
/// revision is at or after the watch's start, so the read plus the events after it
/// are the whole history from there on.
async fn open_queue(conn: &Conn, range: &str) -> Result<(Stream, usize, i64, Vec<Waiter>)> {
    let (stream, member) = open_on(conn, range, 0).await?;
    let resp = conn
        .call(&|| format!("reading lock range {range:?}"), |mut c| {
            let range = range.to_owned();
            async move {
                c.get(
                    range,
                    Some(GetOptions::new().with_prefix().with_keys_only()),
                )
                .await
            }
        })
        .await?;
    let revision = resp.header().map_or(0, |h| h.revision());
    let keys = resp
        .kvs()
        .iter()
        .map(|kv| Waiter {
            key: kv.key().to_vec(),
            create_revision: kv.create_revision(),
        })
        .collect();
    Ok((stream, member, revision, keys))
}

/// The waiters' view's task: reads and follows the range until the view is idle
/// (or gone), reading it again whenever the watch breaks or its member is no longer
/// the preferred one.
async fn follow_queue(view: Weak<QueueView>, conn: Weak<Conn>, range: String) {
    let _end = FollowerEnd {
        view: view.clone(),
        conn: conn.clone(),
        range: range.clone(),
    };
    let mut backoff = retry_backoff();
    let mut checks = tokio::time::interval(QUEUE_CHECK);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let Some(c) = conn.upgrade() else { return };
        let opened = open_queue(&c, &range).await;
        let members = c.members.clone();
        drop(c);
        let Some(v) = view.upgrade() else { return };
        let (mut stream, member, base) = match opened {
            Ok((stream, member, revision, keys)) => {
                backoff.reset();
                v.reset_to(revision, &keys);
                (stream, member, revision)
            }
            Err(e) => {
                tracing::debug!(%range, error = %e, "reading the lock's queue for its waiters failed");
                // A refusal (rights, say): the waiters wait by reading instead.
                v.unsync(!e.is_retryable());
                drop(v);
                tokio::time::sleep(backoff.next_delay()).await;
                if !queue_wanted(&view, &conn, &range) {
                    return;
                }
                continue;
            }
        };
        drop(v);
        loop {
            tokio::select! {
                message = stream.1.next() => {
                    let Some(v) = view.upgrade() else { return };
                    match message {
                        Some(Ok(r)) if r.canceled() => {
                            tracing::debug!(%range, reason = r.cancel_reason(), "lock watch cancelled by etcd; reading the queue again");
                            break;
                        }
                        Some(Ok(r)) => {
                            if r.events().iter().any(|e| e.kv().is_none()) {
                                break;
                            }
                            // Changes already in the read are skipped (the events of
                            // one Txn share a revision, so compare with the read's).
                            v.apply(r.events().iter().filter_map(|e| {
                                let kv = e.kv()?;
                                let revision = kv.mod_revision();
                                (revision > base).then_some(match e.event_type() {
                                    EventType::Put => Change::Put {
                                        key: kv.key(),
                                        create_revision: kv.create_revision(),
                                        revision,
                                    },
                                    EventType::Delete => Change::Delete {
                                        key: kv.key(),
                                        revision,
                                    },
                                })
                            }));
                        }
                        Some(Err(e)) => {
                            tracing::debug!(%range, error = %e, "lock watch failed; reading the queue again");
                            break;
                        }
                        None => break,
                    }
                }
                _ = checks.tick() => {
                    if !queue_wanted(&view, &conn, &range) {
                        return;
                    }
                    if members.len() > 1 && members.preferred() != member {
                        tracing::debug!(%range, "the lock watch's member is no longer the preferred one; reading the queue again");
                        break;
                    }
                }
            }
        }
        let Some(v) = view.upgrade() else { return };
        v.unsync(false);
        drop(v);
        tokio::time::sleep(backoff.next_delay()).await;
        if !queue_wanted(&view, &conn, &range) {
            return;
        }
    }
}

/// However a view's follower ends (the view idle, the backend gone, the follower's
/// runtime shut down, a panic), the view's waiters go on by reading and the view
/// leaves the registry, so no later waiter joins a view that nobody keeps.
struct FollowerEnd {
    view: Weak<QueueView>,
    conn: Weak<Conn>,
    range: String,
}

impl Drop for FollowerEnd {
    fn drop(&mut self) {
        let Some(v) = self.view.upgrade() else {
            return;
        };
        if let Some(c) = self.conn.upgrade() {
            c.views.forget(&self.range, &v);
        }
        v.unsync(true);
    }
}

/// Whether the view still has waiters or was used within `queue_view::IDLE` (else
/// it is removed and its follower ends).
fn queue_wanted(view: &Weak<QueueView>, conn: &Weak<Conn>, range: &str) -> bool {
    let (Some(v), Some(c)) = (view.upgrade(), conn.upgrade()) else {
        return false;
    };
    !c.views.reap(range, &v)
}
