//! The observability case shared by the real-server runners (`etcd.rs`, `zk.rs`): a
//! grant, a release and one forced loss (an operator deletes the holder's entry),
//! asserted in `LockClient::stats()` and, with the `metrics` feature, in the series a
//! `DebuggingRecorder` saw. The memory backend's cases live in `observability.rs`.

use fencelock::{ErrorKind, LockClient, LockName, LossCause};
use fencelock_integration_tests::{conformance::within, Harness, TestResult};
use metrics_util::{
    debugging::{DebugValue, DebuggingRecorder},
    MetricKind,
};
use std::time::Duration;

/// Runs the case on a client that `make` builds around the backend under test;
/// `label` is the expected `backend` label.
pub async fn grant_release_and_forced_loss(
    h: &dyn Harness,
    ns: &str,
    label: &str,
    make: impl FnOnce() -> LockClient,
) -> TestResult {
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    // The client registers its series with the recorder current when it is made.
    let client = metrics::with_local_recorder(&recorder, make);
    let ttl = h.short_ttl().max(Duration::from_secs(2));
    let lease = client.lease_with_ttl(ttl).await?;

    let guard = lease.lock("obs-a")?.acquire().await?;
    let s = client.stats();
    assert_eq!(
        (s.acquires_granted, s.tokens_issued, s.locks_held),
        (1, 1, 1)
    );
    guard.release().await?;
    let s = client.stats();
    assert_eq!((s.releases, s.losses, s.locks_held), (1, 0, 0));

    let guard = lease.lock("obs-b")?.acquire().await?;
    h.delete_holder(ns, &LockName::new("obs-b")?).await?;
    within(
        Duration::from_secs(5),
        "guard lost after the operator's delete",
        guard.watch().lost(),
    )
    .await?;
    assert_eq!(guard.loss_cause(), Some(LossCause::EntryDeleted));
    let s = client.stats();
    assert_eq!((s.losses, s.locks_held), (1, 0), "{s:?}");
    assert_eq!(s.losses_by_cause.get(LossCause::EntryDeleted), 1, "{s:?}");
    assert_eq!(
        guard.release().await.map_err(|e| e.kind()),
        Err(ErrorKind::NotHeld)
    );

    // Keep-alives: several per TTL on every backend.
    within(ttl * 2, "a keep-alive confirmed", async {
        while client.stats().keep_alives == 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await?;
    assert!(
        lease.state().is_held(),
        "an operator's delete spares the lease"
    );
    lease.close().await?;
    let s = client.stats();
    assert_eq!((s.releases, s.losses, s.tokens_issued), (1, 1, 2), "{s:?}");

    if cfg!(feature = "metrics") {
        let series: Vec<_> = snapshotter.snapshot().into_vec();
        let find = |kind: MetricKind, name: &str, labels: &[(&str, &str)]| {
            series.iter().find_map(|(key, _, _, value)| {
                let k = key.key();
                let mut got: Vec<(&str, &str)> = k.labels().map(|l| (l.key(), l.value())).collect();
                let mut want = vec![("backend", label)];
                want.extend_from_slice(labels);
                got.sort();
                want.sort();
                (key.kind() == kind && k.name() == name && got == want).then_some(value)
            })
        };
        let samples =
            |name: &str, labels: &[(&str, &str)]| match find(MetricKind::Histogram, name, labels) {
                Some(DebugValue::Histogram(v)) => v.iter().map(|x| x.into_inner()).collect(),
                _ => Vec::new(),
            };
        let counter =
            |name: &str, labels: &[(&str, &str)]| match find(MetricKind::Counter, name, labels) {
                Some(DebugValue::Counter(n)) => *n,
                _ => 0,
            };
        let gauge = |name: &str| match find(MetricKind::Gauge, name, &[]) {
            Some(DebugValue::Gauge(v)) => v.into_inner(),
            _ => f64::NAN,
        };
        let waits = samples("fencelock_acquire_wait_seconds", &[("outcome", "granted")]);
        assert_eq!(waits.len(), 2, "{waits:?}");
        assert_eq!(
            samples("fencelock_hold_seconds", &[("cause", "released")]).len(),
            1
        );
        assert_eq!(
            samples("fencelock_hold_seconds", &[("cause", "lost")]).len(),
            1
        );
        assert_eq!(
            counter("fencelock_losses_total", &[("cause", "entry_deleted")]),
            1
        );
        assert_eq!(
            counter(
                "fencelock_state_transitions_total",
                &[("scope", "lock"), ("from", "held"), ("to", "lost")]
            ),
            1
        );
        assert_eq!(counter("fencelock_tokens_issued_total", &[]), 2);
        assert_eq!(gauge("fencelock_locks_held"), 0.0);
        assert_eq!(gauge("fencelock_acquires_in_flight"), 0.0);
        let rtts = samples("fencelock_keep_alive_seconds", &[]);
        let margins = samples("fencelock_keep_alive_margin_seconds", &[]);
        assert!(
            !rtts.is_empty() && rtts.len() == margins.len(),
            "{rtts:?} {margins:?}"
        );
        assert!(rtts.iter().all(|r| *r >= 0.0 && *r < ttl.as_secs_f64()));
        assert!(margins.iter().all(|m| *m > 0.0 && *m < ttl.as_secs_f64()));
    }
    Ok(())
}
