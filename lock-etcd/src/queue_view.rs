//! The waiting side's view of a lock's queue: per client and lock, one prefix watch
//! on the lock's range (kept by `watch_lock::follow_queue`) that stays registered
//! while the client waits there (and [`IDLE`] after), and the queue kept from its
//! events, so a waiter is granted **without a request**: the release's delete event
//! reaches the view, and the waiter behind it decides from the view alone.
//!
//! Why it is safe: the keys ahead of a waiter are fixed once its key is written (no
//! later key gets a smaller create revision), so the view at any revision at or
//! after the waiter's own create revision holds exactly the keys still ahead of it.
//! The view is a prefix of etcd's history (one read at revision `G`, then every
//! event after `G` in order), so "nobody blocking ahead at revision `V`" stays true
//! after `V`: the same decision a read at `V` gives.
//!
//! Why it is fast: a watch registered once is served from etcd's synced group for
//! good; a watch opened per wait under contention often starts in the past and is
//! served only by etcd's 100 ms catch-up loop (etcd < 3.7; see `wait.rs`). And the
//! wake-up needs no re-read of the queue.
//!
//! Herd-free wake-ups: every event of the lock reaches each client with a view on
//! it (one event per client, not per waiter), but a waiter is woken only by an
//! event on a key it waits for (the one [`position`](queue::position) names) or on
//! its own key; the wake-up counter counts the first kind.
//!
//! When the stream breaks, etcd cancels the watch (compaction) or the stream's
//! member is no longer the preferred one (a stalled member), the view is read again
//! and its waiters wait for that; a waiter whose lease is lost stops waiting. No I/O
//! here: this file is the state and the waiting; the follower does the I/O.

use crate::queue::{self, Position, Waiter};
use lock_core::backend::{lock_unpoisoned, Liveness};
use std::{
    collections::{BTreeMap, HashMap},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, Weak,
    },
    time::{Duration, Instant},
};
use tokio::{sync::Notify, task::JoinHandle};

/// How long a view stays registered after its last waiter left.
pub(crate) const IDLE: Duration = Duration::from_secs(10);

/// The views of one connection, by lock range.
#[derive(Debug, Default)]
pub(crate) struct QueueViews {
    views: Mutex<HashMap<String, Arc<QueueView>>>,
}

impl QueueViews {
    /// Forgets every view (the backend is closing): a view's follower ends once it
    /// has no waiter left.
    pub(crate) fn shutdown(&self) {
        lock_unpoisoned(&self.views).clear();
    }

    /// Forgets `view` if it is still the view of `range` (its follower ended).
    pub(crate) fn forget(&self, range: &str, view: &Arc<QueueView>) {
        let mut views = lock_unpoisoned(&self.views);
        if views.get(range).is_some_and(|v| Arc::ptr_eq(v, view)) {
            views.remove(range);
        }
    }

    /// The view of `range` (`start`ed if there is none), with one more waiter on it.
    pub(crate) fn join(&self, range: &str, start: impl FnOnce() -> Arc<QueueView>) -> Joined {
        let mut views = lock_unpoisoned(&self.views);
        // A view whose follower ended (which `FollowerEnd` normally forgets) is
        // replaced, never joined.
        if views.get(range).is_some_and(|v| v.follower_ended()) {
            views.remove(range);
        }
        let view = views.entry(range.to_owned()).or_insert_with(start).clone();
        lock_unpoisoned(&view.state).waiters += 1;
        Joined(view)
    }

    /// Whether `view` has no waiter and has been idle for [`IDLE`]; then it is
    /// removed (its follower ends).
    pub(crate) fn reap(&self, range: &str, view: &Arc<QueueView>) -> bool {
        let mut views = lock_unpoisoned(&self.views);
        let idle = {
            let st = lock_unpoisoned(&view.state);
            st.waiters == 0 && st.last_used.elapsed() >= IDLE
        };
        if idle && views.get(range).is_some_and(|v| Arc::ptr_eq(v, view)) {
            views.remove(range);
        }
        idle
    }
}

/// One lock's view, shared by the client's waiters on it.
#[derive(Debug)]
pub(crate) struct QueueView {
    range: String,
    state: Mutex<ViewState>,
    /// Woken whenever the view is read again, breaks or fails.
    resync: Notify,
    follower: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for QueueView {
    fn drop(&mut self) {
        if let Some(task) = lock_unpoisoned(&self.follower).take() {
            task.abort();
        }
    }
}

#[derive(Debug)]
struct ViewState {
    /// The contenders (direct children of the range) by create revision, then key:
    /// the keys one transaction writes share a create revision.
    by_revision: BTreeMap<(i64, Vec<u8>), ()>,
    revision_of: HashMap<Vec<u8>, i64>,
    /// Every change up to this revision is applied.
    revision: i64,
    /// Whether the view follows the watch (false while it is read again).
    synced: bool,
    /// Whether the last read was refused (not a transient failure).
    failed: bool,
    /// The waiters to wake on an event of a key: on its delete, and (the flag) on a
    /// put too (a waiter's own key, whose creation brings the view up to it).
    interest: HashMap<Vec<u8>, Vec<(Weak<Notify>, bool)>>,
    waiters: usize,
    last_used: Instant,
}

impl ViewState {
    fn put(&mut self, range: &str, key: &[u8], create_revision: i64) {
        if !queue::is_direct_child(range, key) {
            return;
        }
        self.delete(key);
        self.revision_of.insert(key.to_vec(), create_revision);
        self.by_revision.insert((create_revision, key.to_vec()), ());
    }

    fn delete(&mut self, key: &[u8]) {
        if let Some(revision) = self.revision_of.remove(key) {
            self.by_revision.remove(&(revision, key.to_vec()));
        }
    }

    /// Wakes the waiters interested in `key`'s delete (`put`: in its put), each
    /// once (it registers again if it still waits); a rewrite of a key ahead
    /// (a holder's new value) wakes nobody.
    fn wake(&mut self, key: &[u8], put: bool) {
        let Some(waiters) = self.interest.get_mut(key) else {
            return;
        };
        waiters.retain(|(w, on_put)| {
            if put && !on_put {
                return w.strong_count() > 0;
            }
            if let Some(w) = w.upgrade() {
                w.notify_one();
            }
            false
        });
        if waiters.is_empty() {
            self.interest.remove(key);
        }
    }

    fn register(&mut self, key: &[u8], notify: &Arc<Notify>, on_put: bool) {
        let list = self.interest.entry(key.to_vec()).or_default();
        list.retain(|(w, _)| w.strong_count() > 0);
        match list
            .iter_mut()
            .find(|(w, _)| w.as_ptr() == Arc::as_ptr(notify))
        {
            Some(entry) => entry.1 |= on_put,
            None => list.push((Arc::downgrade(notify), on_put)),
        }
    }
}

/// One waiter on a view; dropping it counts the waiter out.
#[derive(Debug)]
pub(crate) struct Joined(Arc<QueueView>);

impl Drop for Joined {
    fn drop(&mut self) {
        let mut st = lock_unpoisoned(&self.0.state);
        st.waiters -= 1;
        st.last_used = Instant::now();
    }
}

/// A change the follower read from the watch.
#[derive(Debug)]
pub(crate) enum Change<'a> {
    Put {
        key: &'a [u8],
        create_revision: i64,
        revision: i64,
    },
    Delete {
        key: &'a [u8],
        revision: i64,
    },
}

impl QueueView {
    /// A view of `range` (not yet read); [`set_follower`](Self::set_follower) gives
    /// it the task that keeps it.
    pub(crate) fn new(range: &str) -> Arc<QueueView> {
        Arc::new(QueueView {
            range: range.to_owned(),
            state: Mutex::new(ViewState {
                by_revision: BTreeMap::new(),
                revision_of: HashMap::new(),
                revision: 0,
                synced: false,
                failed: false,
                interest: HashMap::new(),
                waiters: 0,
                last_used: Instant::now(),
            }),
            resync: Notify::new(),
            follower: Mutex::new(None),
        })
    }

    /// The task that keeps the view, stopped when the view is dropped.
    pub(crate) fn set_follower(&self, task: JoinHandle<()>) {
        *lock_unpoisoned(&self.follower) = Some(task);
    }

    fn follower_ended(&self) -> bool {
        lock_unpoisoned(&self.follower)
            .as_ref()
            .is_some_and(JoinHandle::is_finished)
    }

    /// The range was read at `revision`: the view starts over from these keys.
    pub(crate) fn reset_to(&self, revision: i64, keys: &[Waiter]) {
        let mut st = lock_unpoisoned(&self.state);
        st.by_revision.clear();
        st.revision_of.clear();
        for k in keys {
            st.put(&self.range, &k.key, k.create_revision);
        }
        st.revision = revision;
        st.synced = true;
        st.failed = false;
        drop(st);
        self.resync.notify_waiters();
    }

    /// Applies the changes of one watch response, in order, and wakes the waiters
    /// on their keys.
    pub(crate) fn apply<'a>(&self, changes: impl IntoIterator<Item = Change<'a>>) {
        let mut st = lock_unpoisoned(&self.state);
        for change in changes {
            let (key, revision, put) = match change {
                Change::Put {
                    key,
                    create_revision,
                    revision,
                } => {
                    st.put(&self.range, key, create_revision);
                    (key, revision, true)
                }
                Change::Delete { key, revision } => {
                    st.delete(key);
                    (key, revision, false)
                }
            };
            st.revision = st.revision.max(revision);
            st.wake(key, put);
        }
    }

    /// The view lost its watch (`failed`: the read was refused, not a transient
    /// failure): every waiter waits for it to be read again, or (`failed`) waits by
    /// reading instead.
    pub(crate) fn unsync(&self, failed: bool) {
        let mut st = lock_unpoisoned(&self.state);
        st.synced = false;
        st.failed = failed;
        for (_, waiters) in st.interest.drain() {
            for w in waiters.iter().filter_map(|(w, _)| w.upgrade()) {
                w.notify_one();
            }
        }
        drop(st);
        self.resync.notify_waiters();
    }
}

/// How a wait in a view ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Waited {
    /// Granted: the view saw the lock ours at this revision.
    Granted(i64),
    /// Our key was deleted or replaced.
    KeyGone,
    /// The lease was lost meanwhile.
    LeaseLost,
    /// The view cannot be had (etcd refused its read or watch): wait by reading.
    Unavailable,
}

impl Joined {
    /// Waits until our key (`key`, created at `own_rev`) is granted, counting in
    /// `wakeups` each wake-up by an event on a key waited for.
    pub(crate) async fn wait_for_turn(
        &self,
        key: &[u8],
        own_rev: i64,
        lease: &Liveness,
        wakeups: &AtomicU64,
    ) -> Waited {
        let view = &self.0;
        let notify = Arc::new(Notify::new());
        let mut lease_lost = lease.watch();
        let mut targets: Vec<Vec<u8>> = Vec::new();
        loop {
            let resync = view.resync.notified();
            tokio::pin!(resync);
            resync.as_mut().enable();
            {
                let mut st = lock_unpoisoned(&view.state);
                if st.failed && !st.synced {
                    return Waited::Unavailable;
                }
                if st.synced && st.revision >= own_rev {
                    if targets.iter().any(|k| !st.revision_of.contains_key(k)) {
                        wakeups.fetch_add(1, Ordering::Relaxed);
                    }
                    if st.revision_of.get(key) != Some(&own_rev) {
                        return Waited::KeyGone;
                    }
                    let waiters: Vec<Waiter> = st
                        .by_revision
                        .range(..=(own_rev, key.to_vec()))
                        .map(|((r, k), ())| Waiter {
                            key: k.clone(),
                            create_revision: *r,
                        })
                        .collect();
                    targets = match queue::position(&view.range, &waiters, key) {
                        Position::Owner => return Waited::Granted(st.revision),
                        Position::WaitFor(k) => vec![k],
                        Position::WaitForAny(keys) => keys,
                        Position::Missing => return Waited::KeyGone,
                    };
                    for k in &targets {
                        st.register(k, &notify, false);
                    }
                }
                if st.synced {
                    // Our own key's events: its creation brings the view up to
                    // `own_rev`; its deletion ends the wait.
                    st.register(key, &notify, true);
                }
            }
            tokio::select! {
                () = notify.notified() => {}
                () = &mut resync => {}
                _ = lease_lost.lost() => return Waited::LeaseLost,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::queue::tests::w;

    fn put(key: &str, rev: i64) -> Change<'_> {
        Change::Put {
            key: key.as_bytes(),
            create_revision: rev,
            revision: rev,
        }
    }

    fn del(key: &str, rev: i64) -> Change<'_> {
        Change::Delete {
            key: key.as_bytes(),
            revision: rev,
        }
    }

    fn joined(views: &QueueViews) -> (Joined, Arc<QueueView>) {
        let view = QueueView::new("l/");
        let v = view.clone();
        (views.join("l/", move || v), view)
    }

    #[tokio::test]
    async fn granted_on_the_delete_of_the_key_ahead_with_one_wake_up() {
        let views = QueueViews::default();
        let (j, view) = joined(&views);
        view.reset_to(12, &[w("l/a", 10), w("l/b", 11), w("l/c", 12)]);
        let wakeups = AtomicU64::new(0);
        let live = Liveness::new(None);
        let c = j.wait_for_turn(b"l/c", 12, &live, &wakeups);
        tokio::pin!(c);
        // Not granted while a or b is there; the release of a wakes b only.
        assert!(futures::poll!(c.as_mut()).is_pending());
        view.apply([del("l/a", 13), put("l/d", 14)]);
        assert!(futures::poll!(c.as_mut()).is_pending());
        assert_eq!(wakeups.load(Ordering::Relaxed), 0);
        view.apply([del("l/b", 15)]);
        assert_eq!(c.await, Waited::Granted(15));
        assert_eq!(wakeups.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn waits_until_the_view_reaches_its_own_key_and_fails_when_it_goes() {
        let views = QueueViews::default();
        let (j, view) = joined(&views);
        view.reset_to(5, &[w("l/a", 4)]);
        let wakeups = AtomicU64::new(0);
        let live = Liveness::new(None);
        let own = j.wait_for_turn(b"l/b", 7, &live, &wakeups);
        tokio::pin!(own);
        // The view is at 5: a's delete at 6 says nothing yet about our key at 7.
        view.apply([del("l/a", 6)]);
        assert!(futures::poll!(own.as_mut()).is_pending());
        view.apply([put("l/b", 7)]);
        assert_eq!(own.await, Waited::Granted(7));

        let j2 = views.join("l/", || unreachable!("the view is registered"));
        view.apply([put("l/c", 8), put("l/d", 9)]);
        let d = j2.wait_for_turn(b"l/d", 9, &live, &wakeups);
        tokio::pin!(d);
        assert!(futures::poll!(d.as_mut()).is_pending());
        view.apply([del("l/d", 10)]);
        assert_eq!(d.await, Waited::KeyGone);
    }

    #[tokio::test]
    async fn a_broken_view_holds_its_waiters_until_read_again_and_a_refused_one_lets_go() {
        let views = QueueViews::default();
        let (j, view) = joined(&views);
        view.reset_to(3, &[w("l/a", 2), w("l/b", 3)]);
        let wakeups = AtomicU64::new(0);
        let live = Liveness::new(None);
        let b = j.wait_for_turn(b"l/b", 3, &live, &wakeups);
        tokio::pin!(b);
        assert!(futures::poll!(b.as_mut()).is_pending());
        view.unsync(false);
        assert!(futures::poll!(b.as_mut()).is_pending());
        // Read again: a left meanwhile.
        view.reset_to(9, &[w("l/b", 3)]);
        assert_eq!(b.await, Waited::Granted(9));

        view.unsync(true);
        assert_eq!(
            j.wait_for_turn(b"l/b", 3, &live, &wakeups).await,
            Waited::Unavailable
        );
    }

    #[tokio::test]
    async fn keys_of_one_transaction_share_a_create_revision_and_each_counts() {
        let views = QueueViews::default();
        let (j, view) = joined(&views);
        view.reset_to(12, &[w("l/x", 10), w("l/y", 10), w("l/c", 12)]);
        let wakeups = AtomicU64::new(0);
        let live = Liveness::new(None);
        let c = j.wait_for_turn(b"l/c", 12, &live, &wakeups);
        tokio::pin!(c);
        view.apply([del("l/y", 13)]);
        assert!(
            futures::poll!(c.as_mut()).is_pending(),
            "granted while l/x (created at 10) still exists"
        );
        // A rewrite of the key ahead wakes nobody; its delete grants.
        view.apply([Change::Put {
            key: b"l/x",
            create_revision: 10,
            revision: 14,
        }]);
        assert!(futures::poll!(c.as_mut()).is_pending());
        assert_eq!(wakeups.load(Ordering::Relaxed), 0);
        view.apply([del("l/x", 15)]);
        assert_eq!(c.await, Waited::Granted(15));
    }

    #[tokio::test]
    async fn idle_views_are_reaped_only_without_waiters() {
        let views = QueueViews::default();
        let (j, view) = joined(&views);
        assert!(!views.reap("l/", &view));
        drop(j);
        lock_unpoisoned(&view.state).last_used = Instant::now() - IDLE;
        assert!(views.reap("l/", &view));
        assert!(lock_unpoisoned(&views.views).is_empty());
    }
}
