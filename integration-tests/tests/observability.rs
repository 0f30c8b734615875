//! Lock metrics and `LockClient::stats()` on the memory backend, scenario by scenario.
//!
//! Each test installs its own `metrics_util::debugging::DebuggingRecorder` with
//! `metrics::with_local_recorder` around a current-thread runtime (paused time), so
//! tests running in parallel do not see each other's series. The series are asserted
//! only with the `metrics` feature (`--features metrics` or `--all-features`); the
//! `stats()` counts always.

use fencelock::{memory::MemoryBackend, ErrorKind, FencingToken, LockClient, LockState, LossCause};
use metrics_util::{
    debugging::{DebugValue, DebuggingRecorder},
    CompositeKey, MetricKind,
};
use std::{future::Future, time::Duration};

const METRICS: bool = cfg!(feature = "metrics");

/// The series recorded while running one scenario.
struct Series(Vec<(CompositeKey, DebugValue)>);

impl Series {
    fn find(&self, kind: MetricKind, name: &str, labels: &[(&str, &str)]) -> Option<&DebugValue> {
        self.0.iter().find_map(|(key, value)| {
            let k = key.key();
            let mut got: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
            let mut want = labels.to_vec();
            got.sort();
            want.sort();
            (key.kind() == kind && k.name() == name && got == want).then_some(value)
        })
    }

    fn counter(&self, name: &str, labels: &[(&str, &str)]) -> u64 {
        match self.find(MetricKind::Counter, name, labels) {
            Some(DebugValue::Counter(n)) => *n,
            None => 0,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn gauge(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        match self.find(MetricKind::Gauge, name, labels) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            None => 0.0,
            other => panic!("{name}: {other:?}"),
        }
    }

    fn samples(&self, name: &str, labels: &[(&str, &str)]) -> Vec<f64> {
        match self.find(MetricKind::Histogram, name, labels) {
            Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
            None => Vec::new(),
            other => panic!("{name}: {other:?}"),
        }
    }

    /// Samples of `fencelock_acquire_wait_seconds` for `outcome` on memory.
    fn waits(&self, outcome: &str) -> Vec<f64> {
        self.samples(
            "fencelock_acquire_wait_seconds",
            &[("backend", "memory"), ("outcome", outcome)],
        )
    }

    fn holds(&self, cause: &str) -> Vec<f64> {
        self.samples(
            "fencelock_hold_seconds",
            &[("backend", "memory"), ("cause", cause)],
        )
    }

    fn transitions(&self, scope: &str, from: &str, to: &str) -> u64 {
        self.counter(
            "fencelock_state_transitions_total",
            &[
                ("backend", "memory"),
                ("scope", scope),
                ("from", from),
                ("to", to),
            ],
        )
    }

    fn memory_gauge(&self, name: &str) -> f64 {
        self.gauge(name, &[("backend", "memory")])
    }

    fn losses(&self, cause: &str) -> u64 {
        self.counter(
            "fencelock_losses_total",
            &[("backend", "memory"), ("cause", cause)],
        )
    }

    fn memory_counter(&self, name: &str) -> u64 {
        self.counter(name, &[("backend", "memory")])
    }

    /// No series carries a lock-name label, every one a `backend` label.
    fn check_labels(&self) {
        for (key, _) in &self.0 {
            let names: Vec<&str> = key.key().labels().map(|l| l.key()).collect();
            assert!(names.contains(&"backend"), "{key:?}");
            assert!(!names.iter().any(|n| n.contains("name")), "{key:?}");
        }
    }
}

/// Runs `scenario` on a paused current-thread runtime with a recorder of its own.
fn recorded<F, Fut>(scenario: F) -> Series
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = ()>,
{
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .start_paused(true)
        .build()
        .expect("runtime");
    metrics::with_local_recorder(&recorder, || rt.block_on(scenario()));
    let series = Series(
        snapshotter
            .snapshot()
            .into_vec()
            .into_iter()
            .map(|(key, _, _, value)| (key, value))
            .collect(),
    );
    series.check_labels();
    series
}

fn memory_client() -> LockClient {
    LockClient::new(MemoryBackend::new())
}

fn memory(client: &LockClient) -> &MemoryBackend {
    client.backend::<MemoryBackend>().expect("memory backend")
}

#[test]
fn a_granted_acquire_and_its_release() {
    let series = recorded(|| async {
        let client = memory_client();
        let guard = client.acquire("a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(250)).await;
        let s = client.stats();
        assert_eq!(
            (
                s.acquires_granted,
                s.locks_held,
                s.tokens_issued,
                s.acquires_in_flight
            ),
            (1, 1, 1, 0)
        );
        guard.release().await.unwrap();
        let s = client.stats();
        assert_eq!((s.releases, s.losses, s.locks_held), (1, 0, 0));
        assert_eq!(
            s.acquires_not_granted + s.acquires_failed + s.acquires_cancelled,
            0
        );
    });
    if METRICS {
        assert_eq!(series.waits("granted").len(), 1);
        assert_eq!(series.holds("released"), vec![0.25]);
        assert_eq!(series.memory_counter("fencelock_tokens_issued_total"), 1);
        assert_eq!(series.memory_gauge("fencelock_locks_held"), 0.0);
        assert_eq!(series.memory_gauge("fencelock_acquires_in_flight"), 0.0);
        assert!(series.holds("lost").is_empty() && series.waits("cancelled").is_empty());
    }
}

#[test]
fn a_dropped_guard_counts_as_dropped() {
    let series = recorded(|| async {
        let client = memory_client();
        drop(client.acquire("a").await.unwrap());
        let s = client.stats();
        assert_eq!((s.releases, s.losses, s.locks_held), (1, 0, 0));
    });
    if METRICS {
        assert_eq!(series.holds("dropped").len(), 1);
        assert!(series.holds("released").is_empty());
    }
}

#[test]
fn a_try_acquire_that_finds_the_lock_held() {
    let series = recorded(|| async {
        let client = memory_client();
        let _guard = client.acquire("a").await.unwrap();
        let other = client.lease().await.unwrap().lock("a").unwrap();
        assert!(other.try_acquire().await.unwrap().is_none());
        let s = client.stats();
        assert_eq!((s.acquires_granted, s.acquires_not_granted), (1, 1));
        assert_eq!((s.tokens_issued, s.locks_held), (1, 1));
    });
    if METRICS {
        assert_eq!(series.waits("granted").len(), 1);
        assert_eq!(series.waits("not_granted").len(), 1);
        assert_eq!(series.memory_counter("fencelock_tokens_issued_total"), 1);
        // The holder's guard is dropped at the end of the scenario.
        assert_eq!(series.holds("dropped").len(), 1);
        assert_eq!(series.memory_gauge("fencelock_locks_held"), 0.0);
    }
}

#[test]
fn an_acquire_timeout_that_times_out_counts_once() {
    let series = recorded(|| async {
        let client = memory_client();
        let _guard = client.acquire("a").await.unwrap();
        let other = client.lease().await.unwrap().lock("a").unwrap();
        let err = other
            .acquire_timeout(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Timeout);
        let s = client.stats();
        assert_eq!((s.acquires_timed_out, s.acquires_cancelled), (1, 0));
        assert_eq!(s.acquires_in_flight, 0);
    });
    if METRICS {
        assert_eq!(series.waits("timeout"), vec![0.05]);
        assert!(series.waits("cancelled").is_empty());
        assert_eq!(series.memory_gauge("fencelock_acquires_in_flight"), 0.0);
    }
}

#[test]
fn a_dropped_acquire_counts_as_cancelled() {
    let series = recorded(|| async {
        let client = memory_client();
        let _guard = client.acquire("a").await.unwrap();
        let other = client.lease().await.unwrap().lock("a").unwrap();
        let waiter = tokio::spawn(async move { other.acquire().await.map(drop) });
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(client.stats().acquires_in_flight, 1);
        waiter.abort();
        assert!(waiter.await.unwrap_err().is_cancelled());
        let s = client.stats();
        assert_eq!((s.acquires_cancelled, s.acquires_in_flight), (1, 0));
        assert_eq!((s.acquires_granted, s.tokens_issued), (1, 1));
    });
    if METRICS {
        assert_eq!(series.waits("cancelled"), vec![0.03]);
        assert_eq!(series.memory_gauge("fencelock_acquires_in_flight"), 0.0);
    }
}

#[test]
fn a_stalled_lease_goes_suspect_then_lost() {
    let series = recorded(|| async {
        let client = memory_client();
        let lease = client.lease_with_ttl(Duration::from_secs(3)).await.unwrap();
        let guard = lease.lock("a").unwrap().acquire().await.unwrap();
        assert!(memory(&client).stall_lease(lease.id()));
        let mut watch = guard.watch();
        assert_eq!(watch.not_held().await, LockState::Suspect);
        assert_eq!(client.stats().losses, 0, "suspect is no loss");
        watch.lost().await;
        let s = client.stats();
        assert_eq!((s.losses, s.releases, s.locks_held), (1, 0, 0));
        assert_eq!(guard.loss_cause(), Some(LossCause::DeadlinePassed));
        assert_eq!(s.losses_by_cause.get(LossCause::DeadlinePassed), 1);
        assert!(s.keep_alive_failures >= 1, "{s:?}");
        drop(guard);
        let s = client.stats();
        assert_eq!(
            (s.losses, s.releases),
            (1, 0),
            "dropping a lost guard adds nothing"
        );
        // A waiter on the lost lease fails at once with LeaseLost.
        let err = lease.lock("b").unwrap().acquire().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::LeaseLost);
        assert_eq!(err.loss_cause(), Some(LossCause::DeadlinePassed));
        assert_eq!(client.stats().acquires_lease_lost, 1);
    });
    if METRICS {
        assert_eq!(series.transitions("lease", "held", "suspect"), 1);
        assert_eq!(series.transitions("lease", "suspect", "lost"), 1);
        assert_eq!(series.transitions("lease", "suspect", "held"), 0);
        assert_eq!(series.holds("lost").len(), 1);
        assert!(series.holds("dropped").is_empty());
        assert_eq!(series.waits("lease_lost").len(), 1);
        assert_eq!(series.memory_gauge("fencelock_locks_held"), 0.0);
        assert_eq!(series.losses("deadline_passed"), 1);
        assert!(series.memory_counter("fencelock_keep_alive_failures_total") >= 1);
    }
}

#[test]
fn a_resumed_lease_goes_back_to_held() {
    let series = recorded(|| async {
        let client = memory_client();
        let lease = client.lease_with_ttl(Duration::from_secs(3)).await.unwrap();
        let guard = lease.lock("a").unwrap().acquire().await.unwrap();
        memory(&client).stall_lease(lease.id());
        let mut watch = guard.watch();
        assert_eq!(watch.not_held().await, LockState::Suspect);
        memory(&client).resume_lease(lease.id());
        assert_eq!(
            watch.changed_from(LockState::Suspect).await,
            LockState::Held
        );
        guard.release().await.unwrap();
        let s = client.stats();
        assert_eq!((s.losses, s.releases), (0, 1));
    });
    if METRICS {
        assert_eq!(series.transitions("lease", "held", "suspect"), 1);
        assert_eq!(series.transitions("lease", "suspect", "held"), 1);
        assert_eq!(
            series.transitions("lock", "held", "lost"),
            0,
            "release is no loss"
        );
        assert_eq!(series.holds("released").len(), 1);
    }
}

#[test]
fn an_operator_delete_is_a_loss() {
    let series = recorded(|| async {
        let client = memory_client();
        let guard = client.acquire("a").await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(
            memory(&client).delete_holder(guard.name()),
            Some(guard.token())
        );
        let s = client.stats();
        assert_eq!((s.losses, s.locks_held), (1, 0));
        assert_eq!(s.losses_by_cause.get(LossCause::EntryDeleted), 1);
        assert_eq!(guard.loss_cause(), Some(LossCause::EntryDeleted));
        let lost = guard.ensure_held().unwrap_err();
        assert_eq!(lost.loss_cause(), Some(LossCause::EntryDeleted));
        let err = guard.release().await.unwrap_err();
        assert_eq!(err.kind(), ErrorKind::NotHeld);
        let s = client.stats();
        assert_eq!((s.losses, s.releases), (1, 0));
    });
    if METRICS {
        assert_eq!(series.transitions("lock", "held", "lost"), 1);
        assert_eq!(series.transitions("lease", "held", "lost"), 0);
        assert_eq!(series.holds("lost"), vec![0.1]);
        assert!(series.holds("released").is_empty());
        assert_eq!(series.losses("entry_deleted"), 1);
        assert_eq!(series.losses("unknown"), 0);
    }
}

#[test]
fn keep_alives_are_timed_with_the_margin_left() {
    // Memory renews every T/3 and answers at once: round trip 0, and at each renewal
    // the local deadline (0.9 T after the previous one was sent) is 0.9 T − T/3 away.
    let series = recorded(|| async {
        let client = memory_client();
        let lease = client.lease_with_ttl(Duration::from_secs(3)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2_500)).await;
        let s = client.stats();
        assert_eq!((s.keep_alives, s.keep_alive_failures), (2, 0));
        lease.close().await.unwrap();
    });
    if METRICS {
        let rtt = series.samples("fencelock_keep_alive_seconds", &[("backend", "memory")]);
        assert_eq!(rtt, vec![0.0, 0.0]);
        let margin = series.samples(
            "fencelock_keep_alive_margin_seconds",
            &[("backend", "memory")],
        );
        assert_eq!(margin.len(), 2);
        for m in margin {
            assert!((m - 1.7).abs() < 1e-6, "{m}");
        }
        assert_eq!(
            series.memory_counter("fencelock_keep_alive_failures_total"),
            0
        );
    }
}

#[test]
fn each_loss_carries_its_cause() {
    let series = recorded(|| async {
        let client = memory_client();
        // Lease closed by its owner: its guards are lost with `lease_revoked`.
        let lease = client.lease().await.unwrap();
        let closed = lease.lock("a").unwrap().acquire().await.unwrap();
        lease.close().await.unwrap();
        assert_eq!(closed.loss_cause(), Some(LossCause::LeaseRevoked));
        assert_eq!(lease.loss_cause(), Some(LossCause::LeaseRevoked));
        // Lease expired on the "server".
        let lease = client.lease().await.unwrap();
        let expired = lease.lock("b").unwrap().acquire().await.unwrap();
        assert!(memory(&client).expire_lease(lease.id()));
        assert_eq!(expired.loss_cause(), Some(LossCause::LeaseExpired));
        // Released: no cause, no loss.
        let guard = client.acquire("c").await.unwrap();
        assert_eq!(guard.loss_cause(), None);
        guard.release().await.unwrap();
        let s = client.stats();
        let by_cause: Vec<_> = s.losses_by_cause.iter().collect();
        assert_eq!(
            by_cause,
            vec![(LossCause::LeaseExpired, 1), (LossCause::LeaseRevoked, 1)]
        );
        assert_eq!((s.losses, s.releases), (2, 1));
        drop((closed, expired));
    });
    if METRICS {
        assert_eq!(series.losses("lease_revoked"), 1);
        assert_eq!(series.losses("lease_expired"), 1);
        assert_eq!(series.losses("released"), 0);
        assert_eq!(series.holds("lost").len(), 2);
    }
}

#[test]
fn a_stale_token_rejected_by_a_fence() {
    let series = recorded(|| async {
        let client = memory_client();
        let fence = client.fence();
        let first = client.acquire("a").await.unwrap();
        let stale = first.token();
        first.release().await.unwrap();
        let second = client.acquire("a").await.unwrap();
        fence.check("a", second.token()).unwrap();
        fence.check("a", second.token()).unwrap();
        let err = fence.check("a", stale).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::StaleToken);
        assert_eq!(client.stats().fence_rejections, 1);
        assert_eq!(client.stats().tokens_issued, 2);
        // A standalone fence counts under backend="none", not in the client's stats.
        let alone = fencelock::Fence::new();
        alone.check("a", FencingToken::new(2)).unwrap();
        assert!(alone.check("a", FencingToken::new(1)).is_err());
        assert_eq!(client.stats().fence_rejections, 1);
    });
    if METRICS {
        assert_eq!(series.memory_counter("fencelock_fence_rejections_total"), 1);
        assert_eq!(
            series.counter("fencelock_fence_rejections_total", &[("backend", "none")]),
            1
        );
        assert_eq!(series.memory_counter("fencelock_tokens_issued_total"), 2);
    }
}

#[test]
fn clones_share_stats_and_clients_do_not() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let client = memory_client();
        let clone = client.clone();
        let other = memory_client();
        clone.acquire("a").await.unwrap().release().await.unwrap();
        assert_eq!(client.stats().acquires_granted, 1);
        // The other client has counted nothing (its backend's wake-ups included).
        let mut fresh = other.stats();
        assert_eq!(fresh.waiter_wakeups, Some(0));
        fresh.waiter_wakeups = None;
        assert_eq!(fresh, Default::default());
    });
}

/// What `tracing` emitted on one test's thread, as text: each span with its fields
/// (recorded ones included) and each event with its level, target and fields.
#[derive(Clone, Default)]
struct Capture {
    spans: std::sync::Arc<std::sync::Mutex<Vec<(u64, String)>>>,
    events: std::sync::Arc<std::sync::Mutex<Vec<(tracing::Level, String)>>>,
}

thread_local! {
    /// The capture of the test running on this thread, if any.
    static CURRENT: std::cell::RefCell<Option<Capture>> = const { std::cell::RefCell::new(None) };
}

/// The global subscriber, installed once per test binary: it hands everything to the
/// current thread's [`Capture`]. (A global one, because `with_default` races with
/// callsites registered by tests running in parallel without a subscriber.)
struct Router {
    next_id: std::sync::atomic::AtomicU64,
}

fn current() -> Option<Capture> {
    CURRENT.with(|c| c.borrow().clone())
}

struct Fields<'a>(&'a mut String);

impl tracing::field::Visit for Fields<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={:?}", field.name(), value));
    }

    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={}", field.name(), value));
    }
}

impl tracing::Subscriber for Router {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let id = 1 + self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if let Some(capture) = current() {
            let mut text = span.metadata().name().to_owned();
            span.record(&mut Fields(&mut text));
            capture.spans.lock().unwrap().push((id, text));
        }
        tracing::span::Id::from_u64(id)
    }

    fn record(&self, id: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        if let Some(capture) = current() {
            let mut spans = capture.spans.lock().unwrap();
            if let Some((_, text)) = spans.iter_mut().find(|(i, _)| *i == id.into_u64()) {
                values.record(&mut Fields(text));
            }
        }
    }

    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}

    fn event(&self, event: &tracing::Event<'_>) {
        if let Some(capture) = current() {
            let mut text = event.metadata().target().to_owned();
            event.record(&mut Fields(&mut text));
            capture
                .events
                .lock()
                .unwrap()
                .push((*event.metadata().level(), text));
        }
    }

    fn enter(&self, _: &tracing::span::Id) {}

    fn exit(&self, _: &tracing::span::Id) {}
}

impl Capture {
    /// Runs `scenario` on a paused current-thread runtime (so every task runs on this
    /// thread) while capturing.
    fn run<F, Fut>(&self, scenario: F)
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = ()>,
    {
        static INSTALLED: std::sync::Once = std::sync::Once::new();
        INSTALLED.call_once(|| {
            tracing::subscriber::set_global_default(Router {
                next_id: std::sync::atomic::AtomicU64::new(0),
            })
            .expect("no other global subscriber in this test binary");
        });
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .expect("runtime");
        CURRENT.with(|c| *c.borrow_mut() = Some(self.clone()));
        rt.block_on(scenario());
        drop(rt);
        CURRENT.with(|c| *c.borrow_mut() = None);
    }

    fn span_texts(&self) -> Vec<String> {
        let spans = self.spans.lock().unwrap();
        spans.iter().map(|(_, text)| text.clone()).collect()
    }

    fn warnings(&self) -> Vec<String> {
        let events = self.events.lock().unwrap();
        events
            .iter()
            .filter(|(level, _)| *level <= tracing::Level::WARN)
            .map(|(_, text)| text.clone())
            .collect()
    }

    fn all_text(&self) -> String {
        let mut text = self.span_texts().join("\n");
        for (_, event) in self.events.lock().unwrap().iter() {
            text.push('\n');
            text.push_str(event);
        }
        text
    }
}

#[test]
fn a_loss_is_one_warning_with_its_cause_and_spans_carry_the_grant() {
    let capture = Capture::default();
    capture.run(|| async {
        let client = memory_client();
        let guard = client.acquire("orders/1").await.unwrap();
        memory(&client).delete_holder(guard.name());
        assert_eq!(guard.state(), LockState::Lost);
        let _ = guard.ensure_held();
        assert!(guard.release().await.is_err());
        // A release is no loss and logs no warning.
        client
            .acquire("orders/2")
            .await
            .unwrap()
            .release()
            .await
            .unwrap();
    });
    let warnings = capture.warnings();
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    let warning = &warnings[0];
    for field in [
        "cause=entry_deleted",
        "lock=orders/1",
        "token=1",
        "backend=memory",
        "lease=",
    ] {
        assert!(warning.contains(field), "{field} missing in {warning}");
    }
    let spans = capture.span_texts();
    let acquire = spans
        .iter()
        .find(|s| s.starts_with("acquire") && s.contains("lock=orders/2"))
        .expect("an acquire span");
    for field in ["lease=", "backend=memory", "token=2"] {
        assert!(acquire.contains(field), "{field} missing in {acquire}");
    }
    let release = spans
        .iter()
        .find(|s| s.starts_with("release") && s.contains("lock=orders/2"))
        .expect("a release span");
    for field in ["lease=", "backend=memory", "token=2"] {
        assert!(release.contains(field), "{field} missing in {release}");
    }
}

#[test]
fn no_credential_reaches_the_log_or_an_error() {
    const SECRET: &str = "s3cret-pw";
    let capture = Capture::default();
    let mut errors = Vec::new();
    capture.run(|| async {
        let err = fencelock::connect(&format!("memory://user:{SECRET}@store"))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        errors.push(format!("{err} {err:?}"));
        // A real-server URL with a password, pointing at a closed loopback port.
        #[cfg(feature = "etcd")]
        {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .unwrap()
                .port();
            let url = format!(
                "etcd://user:{SECRET}@127.0.0.1:{port}/t?connect_timeout=200ms&request_timeout=200ms"
            );
            let err = tokio::time::timeout(Duration::from_secs(60), fencelock::connect(&url))
                .await
                .expect("connect gives up")
                .unwrap_err();
            errors.push(format!("{err} {err:?}"));
        }
    });
    for text in errors.iter().chain([&capture.all_text()]) {
        assert!(!text.contains(SECRET), "secret leaked: {text}");
    }
}
