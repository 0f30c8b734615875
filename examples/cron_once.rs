//! Ten workers wake up at the same moment for the nightly job; exactly one runs it.
//!
//! ```text
//! cargo run --example cron_once                                   # memory://
//! cargo run --features etcd --example cron_once -- etcd://127.0.0.1:2379
//! ```
//!
//! Each worker has its own connection (as ten servers would). A worker that cannot
//! take the lock at once skips the run (`try_acquire`, like `flock -n`). The winner
//! also records the run in a fenced "done" table so a worker that shows up after the
//! winner released the lock does not run the job a second time.

use fencelock::{Fence, FencingToken};
use std::{
    collections::HashMap,
    process::ExitCode,
    sync::{Arc, Mutex},
    time::Duration,
};

const JOB: &str = "nightly-report";
const DATE: &str = "2026-11-26";

/// The "done" table: job date -> token of the run that did it, behind a fence.
#[derive(Default)]
struct DoneTable {
    fence: Fence,
    done: Mutex<HashMap<String, FencingToken>>,
}

#[tokio::main]
async fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://cron".to_owned());
    match run(&url).await {
        Ok(1) => ExitCode::SUCCESS,
        Ok(n) => {
            eprintln!("the job ran {n} times");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("cron_once failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<usize, Box<dyn std::error::Error>> {
    println!(
        "fencelock cron_once on {}: 10 workers, 1 nightly job",
        fencelock::url::redact(url)
    );
    let table = Arc::new(DoneTable::default());
    let mut workers = Vec::new();
    for id in 1..=10 {
        let client = fencelock::connect(url).await?;
        let table = table.clone();
        workers.push(tokio::spawn(async move { worker(id, client, table).await }));
    }
    let mut runs = 0;
    for w in workers {
        runs += usize::from(w.await??);
    }
    println!("\nproved: {runs} of 10 workers ran {JOB} for {DATE}");
    Ok(runs)
}

async fn worker(
    id: u32,
    client: fencelock::LockClient,
    table: Arc<DoneTable>,
) -> fencelock::Result<bool> {
    let Some(guard) = client.try_acquire(JOB).await? else {
        println!("  worker {id:2}: {JOB} is running elsewhere, skipping");
        client.close().await?;
        return Ok(false);
    };
    let ran = table.fence.apply(JOB, guard.token(), || {
        let mut done = table.done.lock().expect("not poisoned");
        if done.contains_key(DATE) {
            return false;
        }
        done.insert(DATE.to_owned(), guard.token());
        true
    })?;
    if ran {
        println!(
            "  worker {id:2}: running {JOB} for {DATE} with token {}",
            guard.token()
        );
        tokio::time::sleep(Duration::from_millis(300)).await; // the job itself
        guard.ensure_held()?;
    } else {
        println!("  worker {id:2}: {JOB} for {DATE} already done, skipping");
    }
    guard.release().await?;
    client.close().await?;
    Ok(ran)
}
