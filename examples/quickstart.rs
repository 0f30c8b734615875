//! The seed's story, end to end: two servers contend for `daily-report`, the holder
//! stalls past its TTL (a GC pause), the lock passes on with a higher fencing token, and
//! the stale holder's late write is rejected by the fence.
//!
//! ```text
//! cargo run --example quickstart                                  # memory://, no server
//! cargo run --features etcd --example quickstart -- etcd://127.0.0.1:2379
//! cargo run --features zk --example quickstart -- zk://127.0.0.1:2181
//! ```
//!
//! On `memory://` the pause is a real stalled keep-alive (the backend's fault control).
//! On a real server the example cannot freeze its own process, so it revokes server-1's
//! lease while server-1 still holds its guard: the server-side effect of a pause longer
//! than the TTL.

use fencelock::{Fence, FencingToken, LockClient, LockGuard, LockState};
use std::{
    process::ExitCode,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

const LOCK: &str = "daily-report";
const TTL: Duration = Duration::from_secs(2);

/// The resource: a report store that keeps the highest token it accepted.
#[derive(Default)]
struct ReportStore {
    fence: Fence,
    body: Mutex<String>,
}

impl ReportStore {
    fn write(&self, who: &str, token: FencingToken, body: &str) -> bool {
        match self.fence.apply(LOCK, token, || {
            *self.body.lock().expect("not poisoned") = body.to_owned()
        }) {
            Ok(()) => {
                println!("  [{who}] writes {body:?} with token {token} -> accepted");
                true
            }
            Err(e) => {
                println!("  [{who}] writes {body:?} with token {token} -> REJECTED ({e})");
                false
            }
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://quickstart".to_owned());
    match run(&url).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<(), Box<dyn std::error::Error>> {
    println!("fencelock quickstart on {}", fencelock::url::redact(url));
    let server1 = fencelock::connect(url).await?;
    let server2 = fencelock::connect(url).await?;
    let store = Arc::new(ReportStore::default());

    let lease1 = server1.lease_with_ttl(TTL).await?;
    println!("  [server-1] lease granted with ttl {:?}", lease1.ttl());
    let g1 = lease1.lock(LOCK)?.acquire().await?;
    println!("  [server-1] holds {LOCK} with token {}", g1.token());
    assert!(store.write("server-1", g1.token(), "report by server-1"));

    let waiter = tokio::spawn({
        let server2 = server2.clone();
        async move { server2.acquire(LOCK).await }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    println!(
        "  [server-2] waits for {LOCK} (still waiting: {})",
        !waiter.is_finished()
    );

    println!("  [server-1] pauses (a long GC) past its ttl...");
    let paused = Instant::now();
    pause(&server1, &g1).await?;
    let mut watch = g1.watch();
    let first = watch.not_held().await;
    println!(
        "  [server-1] its guard turned {first} after {:?}",
        paused.elapsed()
    );
    watch.lost().await;
    println!(
        "  [server-1] its guard turned lost after {:?}: it must stop",
        paused.elapsed()
    );

    let g2 = waiter.await??;
    println!(
        "  [server-2] holds {LOCK} with token {} after {:?}",
        g2.token(),
        paused.elapsed()
    );
    assert!(store.write("server-2", g2.token(), "report by server-2"));

    println!("  [server-1] wakes up, not having looked at its guard, and writes anyway:");
    let (t1, t2) = (g1.token(), g2.token());
    let stale_accepted = store.write("server-1", t1, "late report by server-1");
    let release = g1.release().await;
    println!(
        "  [server-1] release: {}",
        match &release {
            Ok(()) => "ok".to_owned(),
            Err(e) => e.to_string(),
        }
    );
    g2.release().await?;
    server1.close().await?;
    server2.close().await?;

    let final_body = store.body.lock().expect("not poisoned").clone();
    let proved = !stale_accepted
        && final_body == "report by server-2"
        && t2 > t1
        && first != LockState::Held;
    if proved {
        println!("\nproved: one holder at a time; after the pause the lock passed on with a higher token ({t1} -> {t2});");
        println!("        the paused holder was told it lost the lock, and its stale write was rejected by the fence.");
        println!("        the report reads {final_body:?}.");
        Ok(())
    } else {
        Err(format!(
            "story did not hold: stale write accepted={stale_accepted}, body={final_body:?}"
        )
        .into())
    }
}

/// Simulates a pause longer than the TTL for `guard`'s lease.
async fn pause(client: &LockClient, guard: &LockGuard) -> fencelock::Result<()> {
    if let Some(memory) = client.backend::<fencelock::memory::MemoryBackend>() {
        memory.stall_lease(guard.lease().id());
        return Ok(());
    }
    guard.lease().close().await
}
