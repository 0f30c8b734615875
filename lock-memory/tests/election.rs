//! Leader election on paused tokio time: the gap between a stalled leader's work being
//! cancelled and the next term starting, measured exactly.

use lock_core::{ErrorKind, Fence, LockClient};
use lock_memory::MemoryBackend;
use std::time::Duration;
use tokio::time::Instant;

const TTL: Duration = Duration::from_secs(3);

#[tokio::test(start_paused = true)]
async fn stalled_leaders_work_is_cancelled_and_it_hands_over_at_once() {
    let backend = MemoryBackend::new();
    let (a, b) = (
        LockClient::new(backend.clone()),
        LockClient::new(backend.clone()),
    );
    let lead = a
        .election("scheduler")
        .unwrap()
        .with_ttl(TTL)
        .campaign("old")
        .await
        .unwrap();
    let (old_term, lease) = (lead.term(), lead.lease().id());
    let fence = Fence::new();
    fence.check("scheduler", old_term).unwrap();
    let work = tokio::spawn(async move {
        let result = lead
            .run(|_| async { tokio::time::sleep(TTL * 100).await })
            .await;
        (result, Instant::now())
    });
    let next = tokio::spawn(async move {
        let lead = b.election("scheduler").unwrap().campaign("new").await;
        (lead, Instant::now())
    });
    tokio::task::yield_now().await;
    let stalled_at = Instant::now();
    backend.stall_lease(lease);

    let (result, cancelled_at) = work.await.unwrap();
    assert_eq!(result.unwrap_err().kind(), ErrorKind::LeaseLost);
    let (second, started_at) = next.await.unwrap();
    let second = second.unwrap();
    let cancelled = cancelled_at - stalled_at;
    let started = started_at - stalled_at;
    println!("run: stall -> work cancelled {cancelled:?}, -> next term {started:?} (ttl {TTL:?})");
    // Cancelled once the lease turns suspect (a third of the TTL without a
    // keep-alive); the cancelled leader then resigns, so the next term follows at once
    // instead of waiting for the store to expire the lease.
    assert!(
        cancelled <= TTL / 3 + Duration::from_millis(1),
        "{cancelled:?}"
    );
    assert!(
        started_at >= cancelled_at,
        "next term before the cancellation"
    );
    assert!(
        started - cancelled < Duration::from_millis(1),
        "{started:?}"
    );
    assert!(second.term() > old_term);
    fence.check("scheduler", second.term()).unwrap();
    assert_eq!(
        fence.check("scheduler", old_term).unwrap_err().kind(),
        ErrorKind::StaleToken
    );
    second.resign().await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_leader_kept_alive_far_past_its_ttl_keeps_its_term_and_value() {
    let client = LockClient::new(MemoryBackend::new());
    let election = client.election("e").unwrap().with_ttl(TTL);
    let lead = election.campaign("v1").await.unwrap();
    tokio::time::sleep(TTL * 20).await;
    assert!(lead.is_held());
    lead.proclaim("v2").await.unwrap();
    let leader = election.leader().await.unwrap().unwrap();
    assert_eq!((leader.term, leader.value.as_str()), (lead.term(), "v2"));
    lead.resign().await.unwrap();
    assert_eq!(election.leader().await.unwrap(), None);
}

/// A leader frozen with its leadership in hand (it never resigns): its loss signal
/// fires at the suspect point, and the next term waits for the store's expiry.
#[tokio::test(start_paused = true)]
async fn a_frozen_leader_learns_of_the_loss_before_the_next_term_starts() {
    let backend = MemoryBackend::new();
    let (a, b) = (
        LockClient::new(backend.clone()),
        LockClient::new(backend.clone()),
    );
    let lead = a
        .election("e")
        .unwrap()
        .with_ttl(TTL)
        .campaign("old")
        .await
        .unwrap();
    let lost = lead.lost_signal();
    let signalled = tokio::spawn(async move {
        lost.await;
        Instant::now()
    });
    let next = tokio::spawn(async move {
        let lead = b.election("e").unwrap().campaign("new").await;
        (lead, Instant::now())
    });
    tokio::task::yield_now().await;
    let stalled_at = Instant::now();
    backend.stall_lease(lead.lease().id());
    let signalled = signalled.await.unwrap() - stalled_at;
    let (second, started) = next.await.unwrap();
    let started = started - stalled_at;
    let gap = started - signalled;
    println!("frozen: stall -> loss signal {signalled:?}, -> next term {started:?}, gap {gap:?} (ttl {TTL:?})");
    assert!(
        signalled <= TTL / 3 + Duration::from_millis(1),
        "{signalled:?}"
    );
    assert!(started >= TTL * 2 / 3, "{started:?}");
    assert!(gap >= TTL / 3, "gap {gap:?}");
    let second = second.unwrap();
    assert!(second.term() > lead.term());
    assert_eq!(
        lead.proclaim("late").await.unwrap_err().kind(),
        ErrorKind::NotHeld
    );
    second.resign().await.unwrap();
}
