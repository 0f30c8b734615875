//! The conformance suite: every case is a plain `async fn(Ctx) -> TestResult`, one
//! module per topic, run by every backend's runner through [`trials`].

mod bad_input;
mod cancellation;
mod claims;
mod election;
mod exclusion;
mod fencing;
mod fifo;
mod lease_loss;
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

type CaseFn = fn(Ctx) -> BoxFuture<'static, TestResult>;

struct Case {
    topic: &'static str,
    name: &'static str,
    needs: fn(&Capabilities) -> bool,
    run: CaseFn,
}

macro_rules! cases {
    ($($topic:ident :: $name:ident $(if $needs:expr)?),* $(,)?) => {
        &[$(Case {
            topic: stringify!($topic),
            name: stringify!($name),
            needs: { #[allow(unused_variables)] |c: &Capabilities| true $(&& $needs(c))? },
            run: |ctx| Box::pin($topic::$name(ctx)),
        }),*]
    };
}

const CASES: &[Case] = cases![
    exclusion::second_acquirer_waits_for_release,
    exclusion::many_tasks_hold_one_at_a_time,
    exclusion::names_sharing_a_prefix_are_independent,
    fifo::waiters_are_served_in_arrival_order if |c: &Capabilities| c.fifo,
    fifo::try_acquire_does_not_jump_the_queue if |c: &Capabilities| c.fifo,
    try_timeout::try_acquire_returns_none_while_held,
    try_timeout::acquire_timeout_gives_timeout_and_leaves_no_waiter,
    cancellation::dropped_acquire_leaves_no_waiter,
    cancellation::random_cancellation_stress,
    lease_loss::killed_lease_makes_guard_lost,
    lease_loss::waiter_fails_fast_when_its_lease_dies,
    lease_loss::deleted_entry_makes_guard_lost if |c: &Capabilities| c.detects_external_deletion,
    lease_loss::with_lock_cancels_section_on_loss,
    lease_loss::lost_session_is_replaced_for_new_acquires,
    lease_loss::stalled_holder_is_fenced_out,
    fencing::tokens_increase_across_holders_and_clients,
    fencing::fence_rejects_the_stale_holder,
    release::release_then_reacquire_at_once,
    release::dropped_guard_releases_in_background,
    release::closing_a_lease_releases_all_its_locks,
    release::many_guards_dropped_at_once,
    release::inspect_shows_holder_token_and_waiters,
    bad_input::invalid_names_are_typed_errors,
    bad_input::bad_ttls_are_typed_errors,
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
    semaphore::limit_is_never_exceeded_under_a_32_task_stress if |c: &Capabilities| c.shared_claims,
    semaphore::waiters_get_permits_in_arrival_order_one_per_release if |c: &Capabilities| c.shared_claims,
    semaphore::permits_freed_out_of_order_go_to_the_next_waiter if |c: &Capabilities| c.shared_claims,
    semaphore::a_limit_disagreement_is_rejected if |c: &Capabilities| c.shared_claims,
    semaphore::permits_return_after_their_lease_is_lost if |c: &Capabilities| c.shared_claims,
    semaphore::a_mutex_on_the_name_is_a_barrier if |c: &Capabilities| c.shared_claims,
    semaphore::random_cancellation_leaves_every_permit_free if |c: &Capabilities| c.shared_claims,
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
/// leftover check. Cases whose capability the backend lacks are marked ignored.
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
            trial.with_ignored_flag(!(case.needs)(&caps))
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
