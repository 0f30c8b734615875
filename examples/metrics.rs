//! Lock metrics on `memory://`: installs metrics-util's `DebuggingRecorder`, runs a short
//! contended workload and prints every `fencelock_…` series with its labels, then the
//! same story from `LockClient::stats()`.
//!
//! `cargo run --example metrics --features metrics`

use metrics_util::debugging::{DebugValue, DebuggingRecorder};
use std::time::Duration;

#[tokio::main(flavor = "current_thread")]
async fn main() -> fencelock::Result<()> {
    // The application installs the recorder; fencelock never does. A real service
    // would install a Prometheus or OpenTelemetry exporter here instead.
    let recorder = DebuggingRecorder::new();
    let snapshotter = recorder.snapshotter();
    recorder.install().expect("no recorder installed yet");

    let client = fencelock::connect("memory://").await?;
    let fence = client.fence();

    // Four workers contend for one lock: each waits at most 30 ms, holds it for 10 ms
    // and writes through the fence; a fifth only ever tries.
    let mut workers = Vec::new();
    for worker in 0..4 {
        let client = client.clone();
        workers.push(tokio::spawn(async move {
            for _ in 0..3 {
                match client
                    .acquire_timeout("nightly-job", Duration::from_millis(30))
                    .await
                {
                    Ok(guard) => {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        guard.release().await.ok();
                    }
                    Err(e) => println!("worker {worker}: {e}"),
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(5)).await; // a worker holds it now
    let taken = client.try_acquire("nightly-job").await?.is_none();
    println!("try_acquire found the lock held: {taken}");
    for w in workers {
        w.await.expect("worker");
    }

    // A holder that was paused writes with its old token after the lock moved on.
    let first = client.acquire("report").await?;
    let stale = first.token();
    drop(first);
    let second = client.acquire("report").await?;
    fence.check("report", second.token())?;
    println!(
        "stale write rejected: {}",
        fence.check("report", stale).is_err()
    );
    second.release().await?;

    println!("\nseries:");
    let mut lines: Vec<String> = snapshotter
        .snapshot()
        .into_vec()
        .into_iter()
        .map(|(key, _, _, value)| {
            let labels: Vec<String> = key
                .key()
                .labels()
                .map(|l| format!("{}=\"{}\"", l.key(), l.value()))
                .collect();
            let value = match value {
                DebugValue::Counter(n) => format!("{n}"),
                DebugValue::Gauge(v) => format!("{}", v.into_inner()),
                DebugValue::Histogram(v) => {
                    let total: f64 = v.iter().map(|x| x.into_inner()).sum();
                    format!("count={} sum={total:.3}s", v.len())
                }
            };
            format!("  {}{{{}}} {value}", key.key().name(), labels.join(","))
        })
        .collect();
    lines.sort();
    println!("{}", lines.join("\n"));
    println!("\nstats: {:#?}", client.stats());
    client.close().await
}
