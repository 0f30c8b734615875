//! Leader election: failover after SIGKILL of the leader process against the TTL
//! (etcd, ZooKeeper), and observe latency with 8 followers against the new leader's
//! own grant latency measured in the same run (memory, etcd, ZooKeeper). Servers are
//! started here (temp dirs, free loopback ports) and stopped at the end.
//!
//! ```text
//! cargo bench -p fencelock-integration-tests --features etcd,zk --bench election          # 5 kills, 50 changes
//! cargo bench -p fencelock-integration-tests --features etcd,zk --bench election -- 3 20  # fewer
//! ```
//!
//! Failover: a leader child process (this binary, re-executed) campaigns and holds;
//! a follower in this process waits in `Election::run`; the child gets SIGKILL; the
//! time until the follower's work starts is compared with the lease's granted TTL
//! (target: at most TTL + 0.5 s).
//!
//! Observe latency: two campaigners hand leadership back and forth by resigning;
//! 8 followers (each its own connection) observe. For each change, the time from the
//! resign call to each follower's stream item showing the new term, and (baseline)
//! to the new leader's own `campaign` returning.

use fencelock::{Election, LockClient};
use fencelock_integration_tests::servers::{EtcdCluster, ZkEnsemble};
use futures::StreamExt;
use std::{
    io::{BufRead, BufReader},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const LEADER_ENV: &str = "FENCELOCK_BENCH_LEADER";
const TTL: Duration = Duration::from_secs(2);
const FOLLOWERS: usize = 8;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

fn main() -> Result<(), BoxError> {
    let rt = tokio::runtime::Runtime::new()?;
    if let Ok(url) = std::env::var(LEADER_ENV) {
        return rt.block_on(leader_child(&url));
    }
    let args: Vec<u32> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let kills = args.first().copied().unwrap_or(5);
    let changes = args.get(1).copied().unwrap_or(50);
    println!("election bench: {kills} leader kills per backend, {changes} leader changes x {FOLLOWERS} followers");
    let etcd = EtcdCluster::start(1)?;
    let zk = ZkEnsemble::start(1)?;
    let urls = [
        ("memory", "memory://bench".to_owned()),
        ("etcd", etcd.url("bench")),
        ("zk", zk.url("/bench")),
    ];
    println!(
        "\n| backend | observe p50 | observe p99 | grant p50 (baseline) | ratio p50 | ratio p99 |"
    );
    println!("|---|---|---|---|---|---|");
    for (name, url) in &urls {
        rt.block_on(observe_latency(name, url, changes))?;
    }
    println!("\n| backend | granted TTL | failover p50 | failover max | max / TTL | target TTL + 0.5 s |");
    println!("|---|---|---|---|---|---|");
    for (name, url) in &urls[1..] {
        rt.block_on(failover(name, url, kills))?;
    }
    Ok(())
}

/// The leader child: campaigns, says so on stdout, and holds until killed.
async fn leader_child(url: &str) -> Result<(), BoxError> {
    let client = fencelock::connect(url).await?;
    let lead = client
        .election("failover")?
        .with_ttl(TTL)
        .campaign("child")
        .await?;
    println!("LEADER {} {}", lead.term(), lead.lease().ttl().as_millis());
    std::future::pending::<()>().await;
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn quantile(samples: &mut [f64], q: f64) -> f64 {
    samples.sort_by(f64::total_cmp);
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i.min(samples.len() - 1)]
}

async fn failover(name: &str, url: &str, kills: u32) -> Result<(), BoxError> {
    let mut samples = Vec::new();
    let mut granted = TTL;
    for _ in 0..kills {
        let mut child = Command::new(std::env::current_exe()?)
            .env(LEADER_ENV, url)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let line = tokio::task::spawn_blocking(move || {
            let mut line = String::new();
            BufReader::new(stdout).read_line(&mut line).map(|_| line)
        })
        .await??;
        let ttl_ms: u64 = line
            .split_whitespace()
            .nth(2)
            .and_then(|t| t.parse().ok())
            .ok_or_else(|| format!("leader child said {line:?}"))?;
        granted = Duration::from_millis(ttl_ms);
        let client = fencelock::connect(url).await?;
        let election = client.election("failover")?.with_ttl(TTL);
        let follower = {
            let election = election.clone();
            tokio::spawn(
                async move { election.run("follower", |_| async { Instant::now() }).await },
            )
        };
        while client
            .inspect("failover")
            .await?
            .is_none_or(|i| i.waiters == 0)
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let killed = Instant::now();
        child.kill()?; // SIGKILL
        let _ = child.wait();
        let started = tokio::time::timeout(Duration::from_secs(30), follower).await???;
        samples.push(ms(started - killed));
        client.close().await?;
    }
    let max = samples.iter().copied().fold(0.0, f64::max);
    let p50 = quantile(&mut samples, 0.5);
    let ttl = ms(granted);
    println!(
        "| {name} | {ttl:.0} ms | {p50:.0} ms | {max:.0} ms | {:.2} | {} |",
        max / ttl,
        if max <= ttl + 500.0 { "met" } else { "missed" }
    );
    Ok(())
}

async fn observe_latency(name: &str, url: &str, changes: u32) -> Result<(), BoxError> {
    let mut followers = Vec::new();
    for _ in 0..FOLLOWERS {
        let client = fencelock::connect(url).await?;
        let mut stream = client.election("observed")?.observe().await?;
        // The current state (nobody leads) first.
        stream.next().await.ok_or("observe ended")??;
        followers.push((client, stream));
    }
    let (a, b) = (
        fencelock::connect(url).await?,
        fencelock::connect(url).await?,
    );
    let elections: [Election; 2] = [a.election("observed")?, b.election("observed")?];
    let mut lead = elections[0].campaign("a").await?;
    for (_, stream) in &mut followers {
        stream.next().await.ok_or("observe ended")??;
    }
    let (mut seen, mut grants) = (Vec::new(), Vec::new());
    for i in 0..changes {
        let next = elections[((i + 1) % 2) as usize].clone();
        let value = format!("v{i}");
        let waiting = tokio::spawn(async move {
            let lead = next.campaign(value).await;
            (lead, Instant::now())
        });
        while a.inspect("observed").await?.is_none_or(|i| i.waiters == 0) {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let resigned = Instant::now();
        lead.resign().await?;
        let watching = followers.iter_mut().map(|(_, stream)| async move {
            loop {
                match stream.next().await {
                    Some(Ok(Some(_))) => return Ok(Instant::now()),
                    Some(Ok(None)) => continue,
                    Some(Err(e)) => return Err(BoxError::from(e)),
                    None => return Err("observe ended".into()),
                }
            }
        });
        let times = futures::future::try_join_all(watching).await?;
        let (new_lead, granted_at) = waiting.await?;
        lead = new_lead?;
        grants.push(ms(granted_at - resigned));
        seen.extend(times.into_iter().map(|t| ms(t - resigned)));
    }
    lead.resign().await?;
    let (p50, p99) = (quantile(&mut seen, 0.5), quantile(&mut seen, 0.99));
    let g50 = quantile(&mut grants, 0.5);
    println!(
        "| {name} | {p50:.2} ms | {p99:.2} ms | {g50:.2} ms | {:.2} | {:.2} |",
        p50 / g50,
        p99 / g50
    );
    for (client, _) in followers {
        client.close().await?;
    }
    for c in [a, b] {
        let c: LockClient = c;
        c.close().await?;
    }
    Ok(())
}
