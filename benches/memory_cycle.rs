//! Uncontended acquire+release on the memory backend, side by side with
//! `tokio::sync::Mutex` lock+unlock in the same run, as a ratio.
//!
//! `cargo bench --bench memory_cycle` (add `-- --quick` for a short run). With
//! `--features metrics` it also times the cycle with a cheap (atomic adds) recorder
//! and with metrics-util's `DebuggingRecorder` installed against no recorder, in the
//! same run, and prints the ratios.

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

/// The cycle with the `metrics` feature on, in the same run, alternating rounds: no
/// recorder, a cheap recorder (atomic adds only, as an exporter's hot path would be),
/// and metrics-util's `DebuggingRecorder` (stores every histogram sample: a worst
/// case). Each round makes its client inside the recorder's scope, since a client
/// registers its series when it is made.
#[cfg(feature = "metrics")]
fn recorder_overhead(rounds: usize, iters: u32) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let make = || {
        rt.block_on(async {
            let client = fencelock::LockClient::new(fencelock::memory::MemoryBackend::new());
            let lease = client.lease().await.expect("lease");
            lease.lock("bench").expect("name")
        })
    };
    let cycle = |lock: &fencelock::Lock| {
        rt.block_on(async {
            let start = Instant::now();
            for _ in 0..iters {
                let guard = lock.acquire().await.expect("acquire");
                guard.release().await.expect("release");
            }
            start.elapsed() / iters
        })
    };
    let (mut bare, mut cheap, mut debugging) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        let lock = make();
        bare.push(cycle(&lock));
        let recorder = atomic::AtomicRecorder;
        cheap.push(metrics::with_local_recorder(&recorder, || cycle(&make())));
        // A fresh recorder each round, so its stored samples stay small.
        let recorder = metrics_util::debugging::DebuggingRecorder::new();
        debugging.push(metrics::with_local_recorder(&recorder, || cycle(&make())));
    }
    let (bare, cheap, debugging) = (median(bare), median(cheap), median(debugging));
    let ratio = |d: Duration| d.as_secs_f64() / bare.as_secs_f64();
    println!("feature metrics, median of {rounds} rounds x {iters} iterations, same run:");
    println!("  {:<44} {:>10}", "no recorder", format!("{bare:.2?}"));
    println!(
        "  {:<44} {:>10}  {:.2}x  (target: under 1.10x)",
        "atomic-adds recorder installed",
        format!("{cheap:.2?}"),
        ratio(cheap)
    );
    println!(
        "  {:<44} {:>10}  {:.2}x",
        "metrics-util DebuggingRecorder installed",
        format!("{debugging:.2?}"),
        ratio(debugging)
    );
}

/// A recorder whose every update is one or two relaxed atomic adds: what a real
/// exporter's hot path costs at least.
#[cfg(feature = "metrics")]
mod atomic {
    use metrics::{
        Counter, CounterFn, Gauge, GaugeFn, Histogram, HistogramFn, Key, KeyName, Metadata,
        Recorder, SharedString, Unit,
    };
    use std::sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    };

    #[derive(Debug)]
    pub(crate) struct AtomicRecorder;

    #[derive(Debug, Default)]
    struct Cell(AtomicU64);

    impl CounterFn for Cell {
        fn increment(&self, value: u64) {
            self.0.fetch_add(value, Ordering::Relaxed);
        }

        fn absolute(&self, value: u64) {
            self.0.fetch_max(value, Ordering::Relaxed);
        }
    }

    impl GaugeFn for Cell {
        fn increment(&self, value: f64) {
            self.0.fetch_add(value as u64, Ordering::Relaxed);
        }

        fn decrement(&self, value: f64) {
            self.0.fetch_sub(value as u64, Ordering::Relaxed);
        }

        fn set(&self, value: f64) {
            self.0.store(value as u64, Ordering::Relaxed);
        }
    }

    /// Count and sum (in nanoseconds), as a Prometheus summary without quantiles.
    #[derive(Debug, Default)]
    struct Sum {
        count: AtomicU64,
        nanos: AtomicU64,
    }

    impl HistogramFn for Sum {
        fn record(&self, value: f64) {
            self.count.fetch_add(1, Ordering::Relaxed);
            self.nanos
                .fetch_add((value * 1e9) as u64, Ordering::Relaxed);
        }
    }

    impl Recorder for AtomicRecorder {
        fn describe_counter(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_gauge(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}
        fn describe_histogram(&self, _: KeyName, _: Option<Unit>, _: SharedString) {}

        fn register_counter(&self, _: &Key, _: &Metadata<'_>) -> Counter {
            Counter::from_arc(Arc::new(Cell::default()))
        }

        fn register_gauge(&self, _: &Key, _: &Metadata<'_>) -> Gauge {
            Gauge::from_arc(Arc::new(Cell::default()))
        }

        fn register_histogram(&self, _: &Key, _: &Metadata<'_>) -> Histogram {
            Histogram::from_arc(Arc::new(Sum::default()))
        }
    }
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}
