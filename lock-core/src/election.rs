//! Leader election on top of the exclusive claim: [`Election`], [`Leadership`],
//! [`Leader`] and the observe stream.
//!
//! An election named `N` *is* the lock `N`: campaigning enqueues an
//! [`Exclusive`](crate::backend::Claim::Exclusive) claim with the candidate's value as
//! its holder text, so `fencelock status N`, [`LockClient::inspect`] and foreign tools
//! see the leader like any lock holder, and the leader's term is its grant's
//! [`FencingToken`].

use crate::{
    Error, ErrorKind, FencingToken, IntoLockName, Lease, LeaseId, LockClient, LockGuard, LockInfo,
    LockName, LockState, LossCause, Result, StateWatch, MAX_HOLDER_LEN,
};
use futures::stream::{BoxStream, StreamExt};
use std::{
    fmt,
    future::Future,
    sync::Mutex,
    time::{Duration, SystemTime},
};

/// Who leads an election, as read from the server: what [`Election::leader`] returns
/// and [`Election::observe`] streams.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let election = client.election("scheduler")?;
/// let lead = election.campaign("host-a:8080").await?;
/// let leader = election.leader().await?.expect("someone leads");
/// assert_eq!((leader.term, leader.value.as_str()), (lead.term(), "host-a:8080"));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Leader {
    /// The leader's value: what it campaigned with, or last proclaimed.
    pub value: String,
    /// The leader's term: its grant's fencing token, higher than every earlier term's.
    pub term: FencingToken,
    /// When the term started (wall clock), if the backend records it.
    pub since: Option<SystemTime>,
    /// The lease the leader's entry hangs off.
    pub lease: LeaseId,
}

impl Leader {
    /// The leader described by a lock view: its first holder.
    pub fn from_info(info: &LockInfo) -> Self {
        Leader {
            value: info.holder.clone().unwrap_or_default(),
            term: info.token,
            since: info.acquired_at,
            lease: info.lease,
        }
    }
}

impl fmt::Display for Leader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "term {} value {:?}", self.term, self.value)
    }
}

/// The stream of [`Election::observe`]: `Some(leader)` or `None` (nobody leads), the
/// current state first, then one item per change.
pub type LeaderWatch = BoxStream<'static, Result<Option<Leader>>>;

fn check_value(value: &str) -> Result<()> {
    if value.len() > MAX_HOLDER_LEN {
        return Err(Error::new(
            ErrorKind::InvalidConfig,
            format!(
                "a leader's value is at most {MAX_HOLDER_LEN} bytes, not {}",
                value.len()
            ),
        ));
    }
    Ok(())
}

impl LockClient {
    /// The election named `name`: campaign to lead it, or observe who does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] for an invalid name.
    pub fn election<N>(&self, name: N) -> Result<Election>
    where
        N: IntoLockName,
    {
        Ok(Election {
            client: self.clone(),
            name: name.into_lock_name()?,
            ttl: None,
        })
    }
}

/// One election: a name that at most one campaigner leads at a time.
///
/// Cheap to clone. Every [`campaign`](Self::campaign) runs on a lease of its own,
/// granted for it and revoked when its leadership ends, so a term never outlives its
/// lease and a campaign after a lost leadership always starts a new term on a fresh
/// lease (the reconnect races of Curator's `LeaderLatch`, CURATOR-644 and -620,
/// cannot arise).
///
/// # Guarantees
///
/// - **One leader at a time** among [`Leadership`]s in state `Held`, as strong as the
///   backend's mutual exclusion (it is the lock's).
/// - **Terms are fencing tokens**: each term's [`Leadership::term`] is higher than
///   every earlier term's of the same name, so a resource that checks terms with a
///   [`Fence`](crate::Fence) rejects a deposed leader's late writes.
/// - **FIFO**: campaigners become leader in the order they campaigned, where the
///   backend's [`Capabilities::fifo`](crate::Capabilities::fifo) says so.
/// - **Nothing left behind**: a cancelled campaign removes its entry and revokes its
///   lease (in the background).
/// - **Observing needs no lease** and follows the backend's watch
///   ([`Backend::watch_lock_info`](crate::backend::Backend::watch_lock_info));
///   followers are never polled, and a follower sees a change within one watch
///   event.
/// - **Observing adds no request per change beyond the watch itself** on the
///   backends whose watch carries the state:
///   - *etcd*: one read of the election's key range at revision `R` and one prefix
///     watch from `R + 1` when [`observe`](Self::observe) starts; then the
///     contenders are kept locally, ordered by create revision, from the watch's
///     events (which carry key, value and create revision): **0 requests** per
///     change. After a broken stream or a compaction, one more read.
///   - *ZooKeeper*: one persistent recursive watch on the election's directory and
///     one `getChildren` at the start; then the children are kept locally from the
///     events' paths (the sequence suffix orders them). A new head or a new value
///     (proclaim) costs **one `getData`** of the head, the watch on the lowest node;
///     a waiter joining or leaving, or the last leader leaving, costs **0**. After a
///     reconnect, one `getChildren` and one `getData` again.
///   - *memory*: the store is read in-process at each change.
///   - A backend without its own (Redis) re-reads the head after each change
///     signal: one read per follower per change.
///
/// # Non-guarantees
///
/// - `Held` is a belief with a deadline: a paused leader may still believe it leads
///   after its lease expired. Only a resource that checks the term can stop it.
///
/// # Examples
///
/// ```
/// use lock_core::LockClient;
///
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
/// let client = LockClient::new(lock_memory::MemoryBackend::new());
/// let election = client.election("scheduler")?;
/// let first = election.campaign("a").await?;
/// let term = first.term();
/// first.resign().await?;
/// let second = election.campaign("b").await?;
/// assert!(second.term() > term);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Election {
    client: LockClient,
    name: LockName,
    ttl: Option<Duration>,
}

impl Election {
    /// The same election campaigning on leases of `ttl` instead of the client's
    /// default TTL (checked when campaigning).
    #[must_use]
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = Some(ttl);
        self
    }

    /// The election's name (the name of the lock behind it).
    pub fn name(&self) -> &LockName {
        &self.name
    }

    /// Waits (FIFO) to become the leader with `value`, on a fresh lease.
    ///
    /// Leadership is reported only once the backend granted the entry on a live lease;
    /// the returned [`Leadership`] is then `Held`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] for a value longer than [`MAX_HOLDER_LEN`] or a bad
    /// TTL; [`ErrorKind::LeaseLost`] when the lease is lost while waiting; backend
    /// errors.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe in the strong sense: a dropped campaign leaves no entry behind and
    /// its lease is revoked in the background.
    pub async fn campaign(&self, value: impl Into<String>) -> Result<Leadership> {
        let value = value.into();
        check_value(&value)?;
        let lease = match self.ttl {
            Some(ttl) => self.client.lease_with_ttl(ttl).await?,
            None => self.client.lease().await?,
        };
        let lock = lease.lock(self.name.clone())?.with_holder(value.clone());
        match lock.acquire().await {
            Ok(guard) => Ok(Leadership {
                guard,
                lease,
                value: Mutex::new(value),
            }),
            Err(e) => {
                let _ = lease.close().await;
                Err(e)
            }
        }
    }

    /// Campaigns with `value`, then runs `work(term)` as leader; see
    /// [`Leadership::run`].
    ///
    /// # Errors
    ///
    /// Those of [`campaign`](Self::campaign) and [`Leadership::run`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the work and resigns in the background.
    pub async fn run<F, Fut, T>(&self, value: impl Into<String>, work: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        self.campaign(value).await?.run(work).await
    }

    /// Who leads now; `None` when nobody does. One read, no lease.
    ///
    /// # Errors
    ///
    /// Backend errors.
    pub async fn leader(&self) -> Result<Option<Leader>> {
        let info = self.client.inspect(self.name.clone()).await?;
        Ok(info.as_ref().map(Leader::from_info))
    }

    /// Follows the election: yields who leads now (`None`: nobody), then an item each
    /// time the leader or its value changes. Needs no lease.
    ///
    /// # Guarantees
    ///
    /// - **Term order**: terms never go backwards along the stream; a read that would
    ///   show an older term than one already yielded is skipped.
    /// - **Latest wins**: each item was current when read; two items in a row differ.
    /// - The watch is in place before the first item is read, so a change after it is
    ///   seen within one watch event.
    /// - The state comes from the watch itself (see [`Election`] for what one change
    ///   costs on each backend): on etcd a follower sends no request per change, on
    ///   ZooKeeper at most one `getData` of the head per new head or new value.
    ///
    /// # Non-guarantees
    ///
    /// Changes that come and go faster than the follower reads its stream (a term
    /// that starts and ends at once, two quick proclaims) may be seen as one change:
    /// this is the latest state, not a history (on etcd each watch response is one
    /// revision, so only changes within one revision merge). A stream that ends with
    /// an error must be opened again.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Unsupported`] on a backend without watches; backend errors
    /// setting up the watch. Later errors end the stream after one `Err` item.
    ///
    /// # Examples
    ///
    /// ```
    /// use futures::StreamExt;
    /// use lock_core::LockClient;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let election = client.election("scheduler")?;
    /// let mut observe = election.observe().await?;
    /// assert_eq!(observe.next().await.unwrap()?, None); // nobody leads
    /// let lead = election.campaign("a").await?;
    /// assert_eq!(observe.next().await.unwrap()?.unwrap().value, "a");
    /// lead.proclaim("b").await?;
    /// assert_eq!(observe.next().await.unwrap()?.unwrap().value, "b");
    /// # Ok(()) }
    /// ```
    pub async fn observe(&self) -> Result<LeaderWatch> {
        let infos = self.client.watch_lock(self.name.clone()).await?;
        Ok(leader_changes(infos))
    }
}

/// The leader changes among lock snapshots: mapped, deduplicated, terms monotone.
fn leader_changes(infos: crate::LockWatch<Option<LockInfo>>) -> LeaderWatch {
    let mut last: Option<Option<Leader>> = None;
    infos
        .filter_map(move |item| {
            let out = match item {
                Err(e) => Some(Err(e)),
                Ok(info) => {
                    let now = info.as_ref().map(Leader::from_info);
                    let newest = last.as_ref().and_then(|l| l.as_ref()).map(|l| l.term);
                    let stale = matches!((&now, newest), (Some(n), Some(t)) if n.term < t);
                    if stale || last.as_ref() == Some(&now) {
                        None
                    } else {
                        last = Some(now.clone());
                        Some(Ok(now))
                    }
                }
            };
            futures::future::ready(out)
        })
        .boxed()
}

impl fmt::Debug for Election {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Election")
            .field("name", &self.name)
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// One term of leadership: proof that this campaigner leads, on a lease of its own.
///
/// Owned and `'static`; not `Clone`. Dropping it resigns in the background.
///
/// # Guarantees
///
/// - [`term`](Self::term) is this term's fencing token: strictly higher than every
///   earlier term of the election. Pass it to the resources the leader writes.
/// - [`state`](Self::state) leaves `Held` as soon as the leadership *may* be lost
///   (lease suspect or lost, local deadline, entry deleted), and `Lost` is final: a
///   term never resumes. [`run`](Self::run) cancels its work at that moment.
/// - [`proclaim`](Self::proclaim) changes the value only while this term's entry
///   exists on the server: once the term is over it fails with
///   [`ErrorKind::NotHeld`] and writes nothing.
/// - [`resign`](Self::resign) removes only this term's entry (the next campaigner in
///   FIFO order leads next) and revokes the term's lease.
///
/// # Non-guarantees
///
/// `Held` may already be stale on the server (a pause, a slow network): only a
/// resource that checks the term is safe from a deposed leader.
#[must_use = "leadership ends (resigns) as soon as it is dropped"]
pub struct Leadership {
    guard: LockGuard,
    lease: Lease,
    value: Mutex<String>,
}

impl Leadership {
    /// This term: the grant's fencing token.
    pub fn term(&self) -> FencingToken {
        self.guard.token()
    }

    /// The value this leader campaigned with or last proclaimed.
    pub fn value(&self) -> String {
        crate::backend::lock_unpoisoned(&self.value).clone()
    }

    /// The election's name.
    pub fn name(&self) -> &LockName {
        self.guard.name()
    }

    /// The term's own lease.
    pub fn lease(&self) -> &Lease {
        &self.lease
    }

    /// The lock guard behind the term, for backend-specific extensions (for example
    /// etcd's fenced transactions through
    /// [`LockGuard::backend_lock`](crate::LockGuard::backend_lock)).
    pub fn guard(&self) -> &LockGuard {
        &self.guard
    }

    /// The current state, as [`LockGuard::state`].
    pub fn state(&self) -> LockState {
        self.guard.state()
    }

    /// `true` while [`state`](Self::state) is `Held`.
    pub fn is_held(&self) -> bool {
        self.guard.is_held()
    }

    /// Why the term is `Lost`; `None` while it is not.
    pub fn loss_cause(&self) -> Option<LossCause> {
        self.guard.loss_cause()
    }

    /// `Ok(())` while `Held`, [`ErrorKind::LeaseLost`] otherwise, as
    /// [`LockGuard::ensure_held`].
    ///
    /// # Errors
    ///
    /// `LeaseLost` when the state is `Suspect` or `Lost`.
    pub fn ensure_held(&self) -> Result<()> {
        self.guard.ensure_held()
    }

    /// A watch of the state.
    pub fn watch(&self) -> StateWatch {
        self.guard.watch()
    }

    /// Resolves with the new state as soon as the leadership leaves `Held`.
    pub fn lost_signal(&self) -> impl Future<Output = LockState> + Send + 'static {
        self.guard.lost_signal()
    }

    /// Changes this leader's value to `value`, only while this term's entry exists
    /// (fenced on the term on the server). Followers see it through
    /// [`Election::observe`].
    ///
    /// A `Suspect` leader may still proclaim: the server decides by the entry, not
    /// by the local belief.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotHeld`] once the term is over (lost, resigned);
    /// [`ErrorKind::InvalidConfig`] for a value longer than [`MAX_HOLDER_LEN`];
    /// [`ErrorKind::Unsupported`] when the backend's
    /// [`Capabilities::set_value`](crate::Capabilities::set_value) is off; backend
    /// errors when the write could not be confirmed.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped proclaim may or may not have written the value.
    pub async fn proclaim(&self, value: impl Into<String>) -> Result<()> {
        let value = value.into();
        check_value(&value)?;
        let not_held = |why: &str| {
            Error::new(
                ErrorKind::NotHeld,
                format!(
                    "leadership of {} (term {}) is over: {why}",
                    self.name(),
                    self.term()
                ),
            )
        };
        if self.state().is_lost() {
            let cause = self.loss_cause().unwrap_or(LossCause::Unknown);
            return Err(not_held(cause.as_str()).with_loss_cause(cause));
        }
        let Some(held) = self.guard.held() else {
            return Err(not_held("resigned"));
        };
        held.set_value(&value).await?;
        *crate::backend::lock_unpoisoned(&self.value) = value;
        Ok(())
    }

    /// Ends the term: removes its entry (the next campaigner leads) and revokes its
    /// lease.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotHeld`] when the term was already lost; backend errors when the
    /// removal could not be confirmed (the entry then expires with its lease).
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: a dropped resign finishes in the background or expires.
    pub async fn resign(self) -> Result<()> {
        let Leadership { guard, lease, .. } = self;
        let released = guard.release().await;
        let closed = lease.close().await;
        released.and(closed)
    }

    /// Splits the term into its guard and its lease, for callers that supervise the
    /// guard themselves (the `fencelock elect` command). Ending the term is then
    /// theirs: release (or drop) the guard, then close the lease.
    pub fn into_parts(self) -> (LockGuard, Lease) {
        (self.guard, self.lease)
    }

    /// Runs `work(term)` as leader and resigns when it completes.
    ///
    /// The work is **cancelled the moment leadership leaves `Held`** (suspect or
    /// lost), and the call then returns [`ErrorKind::LeaseLost`]; with the backend's
    /// suspect window this is before the lease can expire on the server, so before
    /// any next term can start. If the work finishes but the leadership is no longer
    /// `Held` at that instant, its result is discarded and `LeaseLost` is returned
    /// too: `Ok` means the work completed while leading.
    ///
    /// # Non-guarantees
    ///
    /// Cancellation happens at the work's next await point; effects already sent
    /// cannot be recalled: pass the term to the resource.
    ///
    /// # Errors
    ///
    /// `LeaseLost` as described.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: dropping the future cancels the work and resigns in the
    /// background.
    ///
    /// # Examples
    ///
    /// ```
    /// use lock_core::LockClient;
    ///
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> lock_core::Result<()> {
    /// let client = LockClient::new(lock_memory::MemoryBackend::new());
    /// let lead = client.election("scheduler")?.campaign("a").await?;
    /// let term = lead.term();
    /// let seen = lead.run(|term| async move { term }).await?;
    /// assert_eq!(seen, term);
    /// # Ok(()) }
    /// ```
    pub async fn run<F, Fut, T>(self, work: F) -> Result<T>
    where
        F: FnOnce(FencingToken) -> Fut,
        Fut: Future<Output = T>,
    {
        let mut watch = self.watch();
        let outcome = tokio::select! {
            biased;
            state = watch.not_held() => Err(state),
            out = work(self.term()) => match self.state() {
                LockState::Held => Ok(out),
                state => Err(state),
            },
        };
        match outcome {
            Ok(out) => {
                let name = self.name().clone();
                if let Err(e) = self.resign().await {
                    tracing::debug!(election = %name, error = %e, "resign after the leader's work failed");
                }
                Ok(out)
            }
            Err(state) => {
                let (name, term) = (self.name().clone(), self.term());
                drop(self);
                Err(Error::new(
                    ErrorKind::LeaseLost,
                    format!("leadership of {name} (term {term}) became {state} during its work"),
                ))
            }
        }
    }
}

impl fmt::Debug for Leadership {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Leadership")
            .field("name", self.name())
            .field("term", &self.term())
            .field("value", &self.value())
            .field("lease", &self.lease.id())
            .field("state", &self.state())
            .finish()
    }
}
