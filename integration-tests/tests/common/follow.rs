//! The request cost of following an election, shared by the real-server runners
//! (`etcd.rs`, `zk.rs`): two followers observe while the leader changes by a
//! campaign, a proclaim, a waiter joining, a resign handing over to it, a lease
//! loss and a last campaign and resign. Every follower must see every change in term
//! order, and its backend must send at most `per_read` requests for each change that
//! needs the head's data (a new head or a new value: 0 on etcd, whose watch events
//! carry the data; 1 `getData` on ZooKeeper) and none for any other change.

use fencelock::{FencingToken, LeaderWatch, LockClient};
use fencelock_integration_tests::{
    conformance::{within, Ctx},
    TestResult,
};
use futures::StreamExt;
use std::time::Duration;

/// What a follower must see next: `(term, value)` or nobody.
type Brief = Option<(FencingToken, String)>;

struct Follower {
    client: LockClient,
    watch: LeaderWatch,
    /// The backend's request count after the first item and after the last step.
    base: u64,
    sent: u64,
    seen: Vec<Brief>,
}

/// Runs the case; `requests` reads a client's backend request counter.
pub async fn followers_send_no_request_per_change(
    ctx: &Ctx,
    requests: fn(&LockClient) -> u64,
    per_read: u64,
) -> TestResult {
    const NAME: &str = "follow";
    let mut followers = Vec::new();
    for _ in 0..2 {
        let client = ctx.client().await?;
        let watch = client.election(NAME)?.observe().await?;
        followers.push(Follower {
            client,
            watch,
            base: 0,
            sent: 0,
            seen: Vec::new(),
        });
    }
    // Each follower sees `expect` next, having sent at most `budget` requests since
    // the last step.
    async fn step(
        followers: &mut [Follower],
        expect: Brief,
        budget: u64,
        requests: fn(&LockClient) -> u64,
        what: &str,
    ) -> TestResult {
        for (i, f) in followers.iter_mut().enumerate() {
            let item = within(
                Duration::from_secs(10),
                "the next leader change",
                f.watch.next(),
            )
            .await?
            .ok_or("the observe stream ended")??;
            let brief = item.map(|l| (l.term, l.value));
            f.seen.push(brief.clone());
            assert_eq!(brief, expect, "follower {i} after {what}: saw {:?}", f.seen);
            let now = requests(&f.client);
            assert!(
                now - f.sent <= budget,
                "follower {i} sent {} requests for {what} (at most {budget}); seen {:?}",
                now - f.sent,
                f.seen
            );
            f.sent = now;
        }
        Ok(())
    }
    // The first item: whatever reading the state at the start costs.
    for f in &mut followers {
        let first = within(Duration::from_secs(10), "the first item", f.watch.next())
            .await?
            .ok_or("the observe stream ended")??;
        assert_eq!(first, None);
        f.seen.push(None);
        f.sent = requests(&f.client);
        f.base = f.sent;
    }
    let (a, b) = (ctx.client().await?, ctx.client().await?);
    let (ea, eb) = (a.election(NAME)?, b.election(NAME)?);

    let lead = ea.campaign("a").await?;
    let t1 = lead.term();
    step(
        &mut followers,
        Some((t1, "a".into())),
        per_read,
        requests,
        "a campaign",
    )
    .await?;
    lead.proclaim("b").await?;
    step(
        &mut followers,
        Some((t1, "b".into())),
        per_read,
        requests,
        "a proclaim",
    )
    .await?;

    // A waiter joins (no leader change, no request), then the leader resigns and
    // hands over to it.
    let waiter = tokio::spawn(async move { eb.campaign("x").await });
    within(
        Duration::from_secs(10),
        "the second campaigner queued",
        async {
            loop {
                if a.inspect(NAME).await?.is_some_and(|i| i.waiters == 1) {
                    return Ok::<_, fencelock::Error>(());
                }
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        },
    )
    .await??;
    lead.resign().await?;
    let second = within(Duration::from_secs(10), "the hand-over", waiter).await???;
    let t2 = second.term();
    assert!(t2 > t1, "term did not increase: {t1} then {t2}");
    step(
        &mut followers,
        Some((t2, "x".into())),
        per_read,
        requests,
        "a waiter joining and a hand-over",
    )
    .await?;

    // The second leader's lease is lost: nobody leads.
    ctx.harness().kill_lease(ctx.ns(), second.lease()).await?;
    step(&mut followers, None, 0, requests, "a lease loss").await?;
    drop(second);

    let last = ea.campaign("c").await?;
    let t3 = last.term();
    assert!(t3 > t2, "term did not increase: {t2} then {t3}");
    step(
        &mut followers,
        Some((t3, "c".into())),
        per_read,
        requests,
        "a campaign after the loss",
    )
    .await?;
    last.resign().await?;
    step(&mut followers, None, 0, requests, "a resign").await?;

    // Nothing trails behind: no item and no request after the last change either.
    for (i, f) in followers.iter_mut().enumerate() {
        let more = tokio::time::timeout(Duration::from_millis(300), f.watch.next()).await;
        assert!(
            more.is_err(),
            "follower {i} yielded after the last change: {more:?}"
        );
        let now = requests(&f.client);
        assert_eq!(
            now, f.sent,
            "follower {i} kept sending after the last change"
        );
        eprintln!(
            "{} follower {i}: {} requests to start, {} over 7 changes (4 new heads or values)",
            ctx.harness().name(),
            f.base,
            f.sent - f.base
        );
    }
    Ok(())
}
