//! Fault controls on paused tokio time: deterministic lease and stall behaviour.

use lock_core::{ErrorKind, Fence, LockClient, LockState};
use lock_memory::{MemoryBackend, StoreEvent};
use std::{
    sync::{Arc, Mutex},
    time::Duration,
};
use tokio::time::{sleep, Instant};

const TTL: Duration = Duration::from_secs(3);

#[tokio::test(start_paused = true)]
async fn live_lease_is_kept_alive_far_past_its_ttl() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let lease = client.lease_with_ttl(TTL).await.unwrap();
    let guard = lease.lock("k").unwrap().acquire().await.unwrap();
    sleep(TTL * 20).await;
    assert_eq!(guard.state(), LockState::Held);
    assert_eq!(lease.deadline().map(|d| d > Instant::now()), Some(true));
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stalled_keep_alive_goes_suspect_then_lost_before_the_store_frees_the_lock() {
    let backend = MemoryBackend::new();
    let (a, b) = (
        LockClient::new(backend.clone()),
        LockClient::new(backend.clone()),
    );
    let lease = a.lease_with_ttl(TTL).await.unwrap();
    let stale = lease.lock("report").unwrap().acquire().await.unwrap();
    let mut watch = stale.watch();
    let stalled_at = Instant::now();
    backend.stall_lease(lease.id());
    let waiter = tokio::spawn(async move { b.acquire("report").await });

    assert_eq!(watch.not_held().await, LockState::Suspect);
    assert!(stalled_at.elapsed() <= TTL / 3 + Duration::from_millis(1));
    watch.lost().await;
    let lost_after = stalled_at.elapsed();
    assert!(lost_after <= TTL, "lost after {lost_after:?}");

    let next = waiter.await.unwrap().unwrap();
    let granted_after = stalled_at.elapsed();
    assert!(
        granted_after > lost_after,
        "granted at {granted_after:?} before the holder knew ({lost_after:?})"
    );
    assert!(next.token() > stale.token());

    let fence = Fence::new();
    fence.check("report", next.token()).unwrap();
    assert_eq!(
        fence.check("report", stale.token()).unwrap_err().kind(),
        ErrorKind::StaleToken
    );
    next.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn stall_shorter_than_the_deadline_returns_to_held() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let lease = client.lease_with_ttl(TTL).await.unwrap();
    let guard = lease.lock("k").unwrap().acquire().await.unwrap();
    backend.stall_lease(lease.id());
    sleep(TTL / 2).await;
    assert_eq!(guard.state(), LockState::Suspect);
    backend.resume_lease(lease.id());
    sleep(TTL / 2).await;
    assert_eq!(guard.state(), LockState::Held);
    guard.release().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn each_release_wakes_exactly_one_waiter() {
    let backend = MemoryBackend::new();
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = events.clone();
    backend.observe(move |e| sink.lock().unwrap().push(e.clone()));
    let client = LockClient::new(backend.clone());
    let held = client.acquire("herd").await.unwrap();
    let waiters: Vec<_> = (0..10)
        .map(|_| {
            let c = client.clone();
            tokio::spawn(async move { c.acquire("herd").await.unwrap().release().await.unwrap() })
        })
        .collect();
    sleep(Duration::from_millis(10)).await;
    held.release().await.unwrap();
    for w in waiters {
        w.await.unwrap();
    }
    let events = events.lock().unwrap();
    let grants = events
        .iter()
        .filter(|e| matches!(e, StoreEvent::Granted { .. }))
        .count();
    let frees = events
        .iter()
        .filter(|e| matches!(e, StoreEvent::Freed { .. }))
        .count();
    assert_eq!((grants, frees), (11, 11), "{events:?}");
    for pair in events.chunks(2) {
        assert!(
            matches!(pair, [StoreEvent::Granted { .. }, StoreEvent::Freed { .. }]),
            "{pair:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn expired_lease_frees_all_its_locks_and_fails_its_waiters() {
    let backend = MemoryBackend::new();
    let (a, b) = (
        LockClient::new(backend.clone()),
        LockClient::new(backend.clone()),
    );
    let other = a.acquire("busy").await.unwrap();
    let lease = b.lease_with_ttl(TTL).await.unwrap();
    let held = lease.lock("mine").unwrap().acquire().await.unwrap();
    let lock = lease.lock("busy").unwrap();
    let waiter = tokio::spawn(async move { lock.acquire().await });
    sleep(Duration::from_millis(10)).await;
    assert!(backend.expire_lease(lease.id()));
    assert_eq!(
        waiter.await.unwrap().unwrap_err().kind(),
        ErrorKind::LeaseLost
    );
    assert_eq!(held.state(), LockState::Lost);
    assert_eq!(
        backend.lock_count(),
        1,
        "only the other client's lock is left"
    );
    other.release().await.unwrap();
    drop(held);
    a.close().await.unwrap();
    sleep(Duration::from_millis(10)).await;
    assert!(backend.is_empty());
}

#[test]
fn guard_dropped_outside_a_runtime_frees_its_entry() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let guard = rt.block_on(client.acquire("k")).unwrap();
    drop(guard);
    assert_eq!(backend.lock_count(), 0);
}

/// Core's grant, not the backend's lock, owns release on drop: a backend's
/// `HeldLock` dropped bare (no guard, no grant) is only forgotten, its entry stays
/// until its lease goes, while a guard dropped outside a runtime (the grant's drop,
/// `release_now`) frees the entry at once.
#[test]
fn a_bare_held_lock_dropped_is_forgotten_the_guards_grant_releases() {
    use lock_core::backend::{Backend, Claim, WaitMode};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let backend = MemoryBackend::new();
    let name = lock_core::LockName::new("k").unwrap();
    let lease = rt.block_on(backend.grant_lease(TTL)).unwrap();
    let options = lock_core::AcquireOptions::default();
    let held = rt
        .block_on(lease.acquire(&name, Claim::Exclusive, WaitMode::NoWait, &options))
        .unwrap()
        .expect("free");
    drop(held);
    assert_eq!(backend.lock_count(), 1, "no Drop in the backend's lock");
    rt.block_on(lease.revoke()).unwrap();
    assert!(backend.is_empty());

    let client = LockClient::new(backend.clone());
    let guard = rt.block_on(client.acquire("k")).unwrap();
    drop(rt);
    drop(guard);
    assert_eq!(
        backend.lock_count(),
        0,
        "freed synchronously, without a runtime"
    );
}
