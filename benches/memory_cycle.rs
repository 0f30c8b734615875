//! Uncontended acquire+release on the memory backend, side by side with
//! `tokio::sync::Mutex` lock+unlock in the same run, as a ratio.
//!
//! `cargo bench --bench memory_cycle` (add `-- --quick` for a short run). With
//! `--features metrics` it also times the cycle with metrics-util's `DebuggingRecorder`
//! installed against no recorder, in the same run, and prints that ratio.

use std::time::{Duration, Instant};

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let (rounds, iters) = if quick { (3, 20_000) } else { (7, 200_000) };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let (ours, baseline) = rt.block_on(async {
        let client = fencelock::LockClient::new(fencelock::memory::MemoryBackend::new());
        let lease = client.lease().await.expect("lease");
        let lock = lease.lock("bench").expect("name");
        let mutex = tokio::sync::Mutex::new(0u64);
        let (mut ours, mut baseline) = (Vec::new(), Vec::new());
        for _ in 0..rounds {
            let start = Instant::now();
            for _ in 0..iters {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            }
            ours.push(start.elapsed() / iters);
            let start = Instant::now();
            for _ in 0..iters {
                let mut g = mutex.lock().await;
                *g += 1;
                drop(std::hint::black_box(g));
            }
            baseline.push(start.elapsed() / iters);
        }
        (median(ours), median(baseline))
    });
    println!("uncontended cycle, median of {rounds} rounds x {iters} iterations, same run:");
    println!(
        "  {:<44} {:>10}",
        "fencelock memory acquire+release",
        format!("{ours:.2?}")
    );
    println!(
        "  {:<44} {:>10}",
        "tokio::sync::Mutex lock+unlock (baseline)",
        format!("{baseline:.2?}")
    );
    println!(
        "  ratio: {:.1}x  (target: memory cycle under 2 us)",
        ours.as_secs_f64() / baseline.as_secs_f64()
    );
    #[cfg(feature = "metrics")]
    recorder_overhead(rounds, iters / 4);
}

/// The cycle with the `metrics` feature on: no recorder against a recorder installed
/// (thread-local, alternating rounds), same run.
#[cfg(feature = "metrics")]
fn recorder_overhead(rounds: usize, iters: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let client = fencelock::LockClient::new(fencelock::memory::MemoryBackend::new());
    let lock = rt.block_on(async {
        let lease = client.lease().await.expect("lease");
        lease.lock("bench").expect("name")
    });
    let cycle = || {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            }
            start.elapsed() / iters
        })
    };
    let (mut bare, mut recorded) = (Vec::new(), Vec::new());
    for _ in 0..rounds {
        bare.push(cycle());
        // A fresh recorder each round, so its stored samples stay small.
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        recorded.push(metrics::with_local_recorder(&recorder, cycle));
    }
    let (bare, recorded) = (median(bare), median(recorded));
    println!("feature metrics, median of {rounds} rounds x {iters} iterations, same run:");
    println!("  {:<44} {:>10}", "no recorder", format!("{bare:.2?}"));
    println!(
        "  {:<44} {:>10}",
        "metrics-util DebuggingRecorder installed",
        format!("{recorded:.2?}")
    );
    println!(
        "  ratio: {:.2}x",
        recorded.as_secs_f64() / bare.as_secs_f64()
    );
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
