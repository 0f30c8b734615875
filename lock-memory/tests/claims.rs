//! Every claim of the grant-policy seam on the memory backend, whose queue runs on
//! `lock_core::backend::decide`: readers share, a queued writer stops later readers,
//! semaphore permits up to the limit, a permit with another limit is refused.

use lock_core::{backend::Claim, ErrorKind, Lock, LockClient, LockGuard};
use lock_memory::MemoryBackend;
use std::time::Duration;

const SHORT: Duration = Duration::from_millis(50);

async fn lock(client: &LockClient, claim: Claim) -> Lock {
    client
        .lease()
        .await
        .unwrap()
        .lock("doc")
        .unwrap()
        .with_claim(claim)
}

async fn holds(lock: &Lock) -> LockGuard {
    lock.try_acquire().await.unwrap().expect("granted at once")
}

#[tokio::test]
async fn readers_share_a_queued_writer_waits_for_them_and_later_readers_wait_for_it() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let (r1, r2) = (
        holds(&lock(&client, Claim::Read).await).await,
        holds(&lock(&client, Claim::Read).await).await,
    );
    let info = client.inspect("doc").await.unwrap().expect("held");
    assert_eq!(info.holders.len(), 2, "two readers hold at once");
    assert!(info.holders.iter().all(|h| h.claim == Claim::Read));
    assert_eq!(info.token, r1.token());

    let writer = lock(&client, Claim::Write).await;
    assert!(writer.try_acquire().await.unwrap().is_none());
    let waiting_writer = tokio::spawn(async move { writer.acquire().await });
    tokio::time::sleep(SHORT).await;
    let late_reader = lock(&client, Claim::Read).await;
    let err = late_reader.acquire_timeout(SHORT).await.unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "no writer starvation");
    let late_reader = tokio::spawn(async move { late_reader.acquire().await });
    tokio::time::sleep(SHORT).await;
    assert_eq!(client.inspect("doc").await.unwrap().unwrap().waiters, 2);

    r1.release().await.unwrap();
    tokio::time::sleep(SHORT).await;
    assert!(!waiting_writer.is_finished(), "one reader still holds");
    let r2_token = r2.token();
    r2.release().await.unwrap();
    let w = waiting_writer.await.unwrap().unwrap();
    assert!(w.token() > r2_token);
    tokio::time::sleep(SHORT).await;
    assert!(!late_reader.is_finished(), "the writer holds");
    w.release().await.unwrap();
    let r3 = late_reader.await.unwrap().unwrap();
    r3.release().await.unwrap();
    assert_eq!(backend.lock_count(), 0, "no entry left after every release");
}

#[tokio::test]
async fn semaphore_grants_up_to_its_limit_and_a_release_passes_a_permit_on() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let permit = Claim::Shared { limit: 2 };
    let (a, b) = (
        holds(&lock(&client, permit).await).await,
        holds(&lock(&client, permit).await).await,
    );
    let third = lock(&client, permit).await;
    assert!(third.try_acquire().await.unwrap().is_none(), "limit 2");
    assert_eq!(
        client.inspect("doc").await.unwrap().unwrap().holders.len(),
        2
    );
    let waiting = tokio::spawn(async move { third.acquire().await });
    tokio::time::sleep(SHORT).await;
    // b's permit, freed out of queue order while a holds, goes to the waiter at once.
    b.release().await.unwrap();
    let c = tokio::time::timeout(Duration::from_secs(5), waiting)
        .await
        .expect("granted while a still holds")
        .unwrap()
        .unwrap();
    a.release().await.unwrap();
    c.release().await.unwrap();
    assert_eq!(backend.lock_count(), 0, "no entry left");
}

#[tokio::test]
async fn semaphores_of_different_limits_on_one_name_are_refused_never_over_granted() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let two = holds(&lock(&client, Claim::Shared { limit: 2 }).await).await;
    let three = lock(&client, Claim::Shared { limit: 3 }).await;
    let err = three.try_acquire().await.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    let err = three.acquire().await.map(|_| ()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{err}");
    assert_eq!(
        client.inspect("doc").await.unwrap().unwrap().holders.len(),
        1
    );
    let mutex = lock(&client, Claim::Exclusive).await;
    assert!(mutex.try_acquire().await.unwrap().is_none());
    two.release().await.unwrap();
    holds(&three).await.release().await.unwrap();
    assert_eq!(backend.lock_count(), 0, "no entry left");
}

#[tokio::test]
async fn a_waiting_reader_dropped_leaves_no_entry_and_blocks_no_one() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let w = holds(&lock(&client, Claim::Write).await).await;
    let reader = lock(&client, Claim::Read).await;
    assert_eq!(
        reader.acquire_timeout(SHORT).await.unwrap_err().kind(),
        ErrorKind::Timeout
    );
    assert_eq!(client.inspect("doc").await.unwrap().unwrap().waiters, 0);
    w.release().await.unwrap();
    holds(&reader).await.release().await.unwrap();
    assert_eq!(backend.lock_count(), 0, "no entry left");
}

#[tokio::test]
async fn capabilities_list_the_claims_memory_grants() {
    let caps = LockClient::new(MemoryBackend::new()).capabilities();
    for claim in [
        Claim::Exclusive,
        Claim::Read,
        Claim::Write,
        Claim::Shared { limit: 4 },
    ] {
        assert!(caps.supports(claim), "{claim:?}");
    }
}

#[tokio::test]
async fn permits_take_distinct_slots_and_each_slot_s_tokens_increase() {
    let backend = MemoryBackend::new();
    let client = LockClient::new(backend.clone());
    let sem = client.semaphore("pool", 3).await.unwrap();
    let mut last: [u64; 3] = [0; 3];
    let mut held = Vec::new();
    for round in 0..20 {
        while held.len() < 3 {
            let p = sem.try_acquire().await.unwrap().expect("a free permit");
            let slot = p.slot() as usize;
            assert!(slot < 3);
            assert!(p.token().get() > last[slot], "slot {slot} token went back");
            last[slot] = p.token().get();
            held.push(p);
        }
        let mut slots: Vec<u32> = held.iter().map(|p| p.slot()).collect();
        slots.sort_unstable();
        assert_eq!(slots, [0, 1, 2], "distinct slots");
        assert!(sem.try_acquire().await.unwrap().is_none(), "limit 3");
        let info = client.inspect("pool").await.unwrap().unwrap();
        assert_eq!(info.holders.len(), 3);
        assert!(info.holders.iter().all(|h| h.slot.is_some()));
        held.remove(round % 3).release().await.unwrap();
    }
    drop(held);
    tokio::time::sleep(SHORT).await;
    assert_eq!(backend.lock_count(), 0, "no entry left");
}
