//! The conformance suite: every case is a plain `async fn(Ctx) -> TestResult`, one
//! module per topic, run by every backend's runner through [`trials`].
//!
//! # Wake-ups per release
//!
//! Herd freedom is measured, not assumed: on every backend that claims
//! [`herd_free`](Capabilities::herd_free), the cases
//! `fifo::a_release_wakes_one_waiter_not_a_herd`,
//! `rw::a_writers_release_wakes_only_the_readers_it_grants` and
//! `semaphore::a_permit_release_wakes_the_next_waiter_not_a_herd` queue waiters on
//! their own clients, release, and sum [`LockStats::waiter_wakeups`] over the case's
//! clients only ([`Ctx::waiter_wakeups`]). Each asserts an explicit bound (about one
//! wake-up per grant, two per permit hand-off with the grant signal) that is below
//! what waking every queued waiter would cost (`check_wakeups` refuses a bound that
//! is not), so a herd fails. A herd-free backend that does not count fails them, and
//! `fifo::a_herd_free_backend_counts_its_wakeups` checks, on every backend, that the
//! claim comes with the count; backends that do not claim it (Redlock) have the
//! wake-up cases marked ignored, like any case whose capability is missing.
//!
//! [`LockStats::waiter_wakeups`]: fencelock::LockStats::waiter_wakeups

mod bad_input;
mod cancellation;
mod claims;
mod election;
mod exclusion;
mod fencing;
mod fifo;
mod lease_loss;
mod pause;
mod release;
mod rw;
mod semaphore;
mod try_timeout;
mod watch;

use crate::{async_trial, Harness, TestError, TestResult};
use fencelock::{Capabilities, LockClient};
use futures::future::BoxFuture;
use libtest_mimic::Trial;
use std::{
    future::Future,
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::{sync::mpsc, task::JoinHandle};

/// What a case gets: the harness and its own namespace.
#[derive(Clone)]
pub struct Ctx {
    harness: Arc<dyn Harness>,
    ns: String,
    clients: Arc<Mutex<Vec<LockClient>>>,
}

impl Ctx {
    /// A context in a fresh random namespace.
    pub fn new(harness: Arc<dyn Harness>) -> Self {
        let ns = format!("t{}", &uuid::Uuid::new_v4().simple().to_string()[..12]);
        Ctx {
            harness,
            ns,
            clients: Arc::default(),
        }
    }

    /// The harness under test.
    pub fn harness(&self) -> &dyn Harness {
        &*self.harness
    }

    /// This case's namespace.
    pub fn ns(&self) -> &str {
        &self.ns
    }

    /// A new independent client in this namespace (closed by [`finish`](Self::finish)).
    pub async fn client(&self) -> fencelock::Result<LockClient> {
        let client = self.harness.client(&self.ns).await?;
        self.clients
            .lock()
            .expect("client list poisoned only by a panicking case")
            .push(client.clone());
        Ok(client)
    }

    /// The waiter wake-ups ([`LockStats::waiter_wakeups`](fencelock::LockStats::waiter_wakeups))
    /// summed over every client of this case so far: each client is its own backend,
    /// so this counts this case's waiters and nobody else's. Fails when a client's
    /// backend does not count: only cases gated on
    /// [`herd_free`](Capabilities::herd_free) call it, and a backend that claims
    /// herd freedom must report the count that proves it.
    pub fn waiter_wakeups(&self) -> Result<u64, TestError> {
        let clients = self.clients.lock().expect("not poisoned").clone();
        let mut sum = 0;
        for client in &clients {
            sum += client.stats().waiter_wakeups.ok_or_else(|| {
                format!(
                    "{} claims herd_free but its backend counts no waiter wake-ups",
                    self.harness.name()
                )
            })?;
        }
        Ok(sum)
    }

    /// Closes every client and checks that nothing of the namespace is left on the
    /// server (polling briefly for background releases).
    pub async fn finish(self) -> TestResult {
        let clients = std::mem::take(&mut *self.clients.lock().expect("not poisoned"));
        for client in clients {
            let _ = client.close().await;
        }
        let mut left = Vec::new();
        for _ in 0..100 {
            left = self.harness.leftover(&self.ns).await?;
            if left.is_empty() {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(format!("left on the server after the case: {left:?}").into())
    }
}

/// `fut` must finish within `limit`; `what` says what was awaited.
pub async fn within<T>(
    limit: Duration,
    what: &str,
    fut: impl Future<Output = T>,
) -> Result<T, TestError> {
    tokio::time::timeout(limit, fut)
        .await
        .map_err(|_| format!("{what}: not within {limit:?}").into())
}

/// Waits (at most 10 s) until `name` has exactly `n` waiters, as `client`'s
/// [`inspect`](LockClient::inspect) reports them.
pub async fn wait_for_waiters(client: &LockClient, name: &str, n: usize) -> TestResult {
    wait_for_waiters_within(Duration::from_secs(10), client, name, n).await
}

/// As [`wait_for_waiters`], failing after `limit` (for waiters that are slow to
/// queue, such as foreign clients starting up).
pub async fn wait_for_waiters_within(
    limit: Duration,
    client: &LockClient,
    name: &str,
    n: usize,
) -> TestResult {
    within(limit, &format!("{n} waiters on {name}"), async {
        loop {
            if client.inspect(name).await?.is_some_and(|i| i.waiters == n) {
                return Ok::<_, fencelock::Error>(());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await??;
    Ok(())
}

/// How many waiters the wake-up cases queue behind the holder.
pub(crate) const HERD: usize = 8;

/// The grants of [`queue_in_order`]'s acquisitions, as `(index, guard)`.
pub(crate) type Granted<G> = mpsc::UnboundedReceiver<(usize, G)>;

/// Starts `n` acquisitions of `name`, each with `acquire(index, client)` on a fresh
/// client of the case, one after the other, each queued (as [`inspect`] on `probe`
/// shows) before the next starts, so their queue order is their index, then leaves
/// the last one time to set its watch. Each sends `(index, guard)` on the returned
/// channel once granted.
///
/// [`inspect`]: LockClient::inspect
pub(crate) async fn queue_in_order<G, F, Fut>(
    ctx: &Ctx,
    probe: &LockClient,
    name: &str,
    n: usize,
    acquire: F,
) -> Result<(Granted<G>, Vec<JoinHandle<fencelock::Result<()>>>), TestError>
where
    G: Send + 'static,
    F: Fn(usize, LockClient) -> Fut,
    Fut: Future<Output = fencelock::Result<G>> + Send + 'static,
{
    let queued = probe.inspect(name).await?.map_or(0, |i| i.waiters);
    let (tx, rx) = mpsc::unbounded_channel();
    let mut tasks = Vec::new();
    for i in 0..n {
        let acquiring = acquire(i, ctx.client().await?);
        let tx = tx.clone();
        tasks.push(tokio::spawn(async move {
            let guard = acquiring.await?;
            let _ = tx.send((i, guard));
            Ok(())
        }));
        wait_for_waiters(probe, name, queued + i + 1).await?;
    }
    // A waiter shows as queued before its watch is set: give the last one time.
    tokio::time::sleep(Duration::from_millis(100)).await;
    Ok((rx, tasks))
}

/// Waits for every task of [`queue_in_order`] to end, failing on its error.
pub(crate) async fn waiters_finished(
    waiters: Vec<JoinHandle<fencelock::Result<()>>>,
) -> TestResult {
    for w in waiters {
        within(Duration::from_secs(10), "waiter finished", w).await???;
    }
    Ok(())
}

/// Receives the next grant of `granted`, which must be waiter `expect` (FIFO), then
/// leaves a herd's needless wake-ups time to land; returns the guard and the wake-ups
/// counted since `at` (a [`Ctx::waiter_wakeups`] reading before the release).
pub(crate) async fn next_grant<G>(
    ctx: &Ctx,
    granted: &mut Granted<G>,
    expect: usize,
    at: u64,
) -> Result<(G, u64), TestError> {
    let (i, guard) = within(Duration::from_secs(10), "next waiter", granted.recv())
        .await?
        .ok_or("a waiter failed")?;
    if i != expect {
        return Err(format!("waiter {i} served before waiter {expect}: not FIFO").into());
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok((guard, ctx.waiter_wakeups()? - at))
}

/// Fails when `woken` waiter wake-ups (what [`Ctx::waiter_wakeups`] counted over
/// `what`) exceed `bound`. `herd` is what waking every queued waiter would cost
/// instead; the bound must be below it, or the check could not catch a herd.
pub(crate) fn check_wakeups(
    ctx: &Ctx,
    what: &str,
    woken: u64,
    bound: u64,
    herd: u64,
) -> TestResult {
    assert!(
        bound < herd,
        "{what}: a bound of {bound} cannot catch a herd of {herd}"
    );
    eprintln!(
        "{}: {what}: {woken} waiter wake-ups (bound {bound}, a herd {herd})",
        ctx.harness().name()
    );
    if woken > bound {
        return Err(format!(
            "{what}: {woken} waiter wake-ups, more than {bound}: a herd (waking every queued waiter would cost {herd})"
        )
        .into());
    }
    Ok(())
}

type CaseFn = fn(Ctx) -> BoxFuture<'static, TestResult>;

struct Case {
    topic: &'static str,
    name: &'static str,
    /// The capabilities the case needs (`if`).
    needs: fn(&Capabilities) -> bool,
    /// The harness hooks the case needs (`where`): a hook returning `None` gates it off.
    hooks: fn(&dyn Harness) -> bool,
    run: CaseFn,
}

macro_rules! cases {
    ($($topic:ident :: $name:ident $(where $hook:ident)? $(if $needs:expr)?),* $(,)?) => {
        &[$(Case {
            topic: stringify!($topic),
            name: stringify!($name),
            needs: { #[allow(unused_variables)] |c: &Capabilities| true $(&& $needs(c))? },
            hooks: { #[allow(unused_variables)] |h: &dyn Harness| true $(&& hooks::$hook(h))? },
            run: |ctx| Box::pin($topic::$name(ctx)),
        }),*]
    };
}

/// The `where` gates of [`CASES`]: whether the harness implements a hook (a hook
/// returning `None` gates the case off).
mod hooks {
    use crate::Harness;

    pub(super) fn cancel_spread(h: &dyn Harness) -> bool {
        h.cancel_spread().is_some()
    }

    pub(super) fn kill_notice(h: &dyn Harness) -> bool {
        h.kill_notice(h.short_ttl()).is_some()
    }

    pub(super) fn delete_notice(h: &dyn Harness) -> bool {
        h.delete_notice().is_some()
    }

    pub(super) fn process_url(h: &dyn Harness) -> bool {
        h.process_url("any").is_some()
    }

    pub(super) fn native_fence(h: &dyn Harness) -> bool {
        h.native_fence().is_some()
    }

    pub(super) fn unreachable_url(h: &dyn Harness) -> bool {
        h.unreachable_url("127.0.0.1:1").is_some()
    }
}

const CASES: &[Case] = cases![
    exclusion::second_acquirer_waits_for_release,
    exclusion::many_tasks_hold_one_at_a_time,
    exclusion::names_sharing_a_prefix_are_independent,
    fifo::waiters_are_served_in_arrival_order if |c: &Capabilities| c.fifo,
    fifo::try_acquire_does_not_jump_the_queue if |c: &Capabilities| c.fifo,
    fifo::a_herd_free_backend_counts_its_wakeups,
    fifo::a_release_wakes_one_waiter_not_a_herd if |c: &Capabilities| c.herd_free,
    try_timeout::try_acquire_returns_none_while_held,
    try_timeout::acquire_timeout_gives_timeout_and_leaves_no_waiter,
    cancellation::dropped_acquire_leaves_no_waiter,
    cancellation::random_cancellation_stress,
    cancellation::cancelled_acquires_behind_a_holder_leave_only_the_holder where cancel_spread,
    lease_loss::killed_lease_makes_guard_lost,
    lease_loss::waiter_fails_fast_when_its_lease_dies,
    lease_loss::deleted_entry_makes_guard_lost if |c: &Capabilities| c.detects_external_deletion,
    lease_loss::with_lock_cancels_section_on_loss,
    lease_loss::lost_session_is_replaced_for_new_acquires,
    lease_loss::stalled_holder_is_fenced_out,
    lease_loss::a_killed_lease_is_noticed_and_taken_over_before_its_ttl where kill_notice,
    lease_loss::a_deleted_entry_loses_the_lock_but_not_the_lease where delete_notice
        if |c: &Capabilities| c.detects_external_deletion,
    pause::a_paused_holder_is_fenced_out_in_process_and_as_a_process where process_url
        if |c: &Capabilities| c.distributed,
    fencing::tokens_increase_across_holders_and_clients,
    fencing::fence_rejects_the_stale_holder,
    fencing::native_fenced_writes_commit_only_while_held where native_fence
        if |c: &Capabilities| c.native_fenced_writes,
    release::release_then_reacquire_at_once,
    release::dropped_guard_releases_in_background,
    release::closing_a_lease_releases_all_its_locks,
    release::many_guards_dropped_at_once,
    release::inspect_shows_holder_token_and_waiters,
    bad_input::invalid_names_are_typed_errors,
    bad_input::bad_ttls_are_typed_errors,
    bad_input::unreachable_servers_are_unavailable_in_time where unreachable_url,
    claims::unsupported_claims_are_typed_errors_never_grants,
    claims::readers_share_and_a_writer_excludes_them if |c: &Capabilities| c.read_write_claims,
    claims::semaphore_grants_up_to_its_limit if |c: &Capabilities| c.shared_claims,
    watch::a_watcher_sees_acquire_handoff_and_release,
    rw::readers_share_and_writers_exclude_everyone if |c: &Capabilities| c.read_write_claims,
    rw::mixed_queue_is_fifo_without_writer_starvation if |c: &Capabilities| c.read_write_claims,
    rw::a_stream_of_readers_cannot_starve_a_writer if |c: &Capabilities| c.read_write_claims,
    rw::a_mutex_and_the_write_lock_exclude_each_other if |c: &Capabilities| c.read_write_claims,
    rw::tokens_pass_the_mode_aware_fence if |c: &Capabilities| c.read_write_claims,
    rw::a_dead_readers_lease_frees_the_writer if |c: &Capabilities| c.read_write_claims,
    rw::random_cancellation_keeps_the_policy_and_leaves_nothing if |c: &Capabilities| c.read_write_claims,
    rw::a_writers_release_wakes_only_the_readers_it_grants if |c: &Capabilities| c.herd_free && c.read_write_claims,
    semaphore::limit_is_never_exceeded_under_a_32_task_stress if |c: &Capabilities| c.shared_claims,
    semaphore::waiters_get_permits_in_arrival_order_one_per_release if |c: &Capabilities| c.shared_claims,
    semaphore::permits_freed_out_of_order_go_to_the_next_waiter if |c: &Capabilities| c.shared_claims,
    semaphore::a_limit_disagreement_is_rejected if |c: &Capabilities| c.shared_claims,
    semaphore::permits_return_after_their_lease_is_lost if |c: &Capabilities| c.shared_claims,
    semaphore::a_mutex_on_the_name_is_a_barrier if |c: &Capabilities| c.shared_claims,
    semaphore::random_cancellation_leaves_every_permit_free if |c: &Capabilities| c.shared_claims,
    semaphore::a_permit_release_wakes_the_next_waiter_not_a_herd if |c: &Capabilities| c.herd_free && c.shared_claims,
    election::one_leader_at_a_time_and_terms_increase,
    election::observers_see_every_change_in_order if |c: &Capabilities| c.set_value,
    election::proclaim_after_loss_fails if |c: &Capabilities| c.set_value,
    election::resign_hands_over_in_fifo_order if |c: &Capabilities| c.fifo,
    election::cancelled_campaigns_leave_nothing_behind,
    election::lost_leaders_work_is_cancelled_before_the_next_term,
    election::a_new_campaign_after_loss_is_a_new_term_on_a_fresh_lease,
    election::bad_values_are_typed_errors,
];

/// Every conformance case as a separately named test
/// (`<harness>::<topic>::<case>`), each in a fresh namespace and each ending with a
/// leftover check. Cases whose capability the backend lacks, or whose harness hook
/// returns `None`, are marked ignored.
pub fn trials(harness: Arc<dyn Harness>) -> Vec<Trial> {
    let caps = harness.capabilities();
    CASES
        .iter()
        .map(|case| {
            let name = format!("{}::{}::{}", harness.name(), case.topic, case.name);
            let h = harness.clone();
            let run = case.run;
            let trial = async_trial(name, move || async move {
                let ctx = Ctx::new(h);
                run(ctx.clone()).await?;
                ctx.finish().await
            });
            trial.with_ignored_flag(!((case.needs)(&caps) && (case.hooks)(&*harness)))
        })
        .collect()
}

/// The names of every conformance case, `topic::case`.
pub fn case_names() -> Vec<String> {
    CASES
        .iter()
        .map(|c| format!("{}::{}", c.topic, c.name))
        .collect()
}

const _: () = {
    const fn assert_send<T: Send + Sync + 'static>() {}
    assert_send::<fencelock::LockClient>();
    assert_send::<fencelock::LockGuard>();
    assert_send::<fencelock::Lease>();
    assert_send::<fencelock::Lock>();
};

/// Compile-time check that the futures of the public API are `Send`.
#[allow(dead_code)]
fn futures_are_send(client: LockClient, lock: fencelock::Lock, guard: fencelock::LockGuard) {
    fn is_send<T: Send>(_: &T) {}
    is_send(&client.acquire("x"));
    is_send(&client.try_acquire("x"));
    is_send(&lock.acquire_timeout(Duration::ZERO));
    is_send(&lock.with_lock(|t| async move { t }));
    is_send(&guard.lost_signal());
    is_send(&guard.release());
}
