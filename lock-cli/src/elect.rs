//! `fencelock elect`: campaign, run the command while leader, resign; and
//! `fencelock observe`: one line per leader change (like `etcdctl elect -l`).

use crate::{
    exit::Exit,
    inspect::follow,
    run::{connect_for_command, default_holder, seconds, supervise, Signals},
};
use clap::Args;
use fencelock::{Leader, LockName};
use serde_json::json;
use std::time::{Duration, UNIX_EPOCH};

/// How long closing the connection may take before fencelock exits anyway.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Args)]
pub(crate) struct ElectArgs {
    /// Campaign at most SECS, then exit with the -E code without running CMD.
    #[arg(short = 'w', long = "wait", value_name = "SECS")]
    wait: Option<f64>,
    /// Exit code when leadership is not obtained within -w.
    #[arg(
        short = 'E',
        long = "conflict-exit-code",
        value_name = "CODE",
        default_value_t = 1
    )]
    conflict_exit_code: u8,
    /// Lease TTL in seconds (default: the backend's, e.g. ?ttl= in the URL).
    #[arg(long, value_name = "SECS")]
    ttl: Option<f64>,
    /// On loss of leadership, SIGKILL the command this many seconds after SIGTERM
    /// (default ttl/4; at most ttl/2; never later than the lease's local deadline).
    #[arg(long, value_name = "SECS")]
    kill_after: Option<f64>,
    /// The leader's value, shown to observers [default: hostname:pid].
    #[arg(long, value_name = "TEXT")]
    value: Option<String>,
    /// The election name.
    name: String,
    /// The command to run while leader, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Debug, Args)]
pub(crate) struct ObserveArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// The election name.
    name: String,
}

pub(crate) async fn elect(backend: &str, args: ElectArgs) -> Result<u8, Exit> {
    let name = LockName::new(&args.name)?;
    let wait = args.wait.map(|v| seconds("-w", v)).transpose()?;
    let (client, ttl, kill_after) = connect_for_command(backend, args.ttl, args.kill_after).await?;
    let mut signals = Signals::new()?;
    let result = lead_and_run(
        &client,
        backend,
        &name,
        ttl,
        wait,
        kill_after,
        &args,
        &mut signals,
    )
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, client.close()).await;
    result
}

#[allow(clippy::too_many_arguments)]
async fn lead_and_run(
    client: &fencelock::LockClient,
    backend: &str,
    name: &LockName,
    ttl: Duration,
    wait: Option<Duration>,
    kill_after: Duration,
    args: &ElectArgs,
    signals: &mut Signals,
) -> Result<u8, Exit> {
    let election = client.election(name)?.with_ttl(ttl);
    let value = args.value.clone().unwrap_or_else(default_holder);
    let campaign = async {
        match wait {
            Some(wait) => tokio::time::timeout(wait, election.campaign(value))
                .await
                .ok(),
            None => Some(election.campaign(value).await),
        }
    };
    let lead = tokio::select! {
        lead = campaign => lead,
        sig = signals.recv() => return Ok(u8::try_from(128 + sig).unwrap_or(255)),
    };
    let Some(lead) = lead else {
        let by = match tokio::time::timeout(CLOSE_TIMEOUT, election.leader()).await {
            Ok(Ok(Some(leader))) => format!(" by {:?} (term {})", leader.value, leader.term),
            _ => String::new(),
        };
        eprintln!("fencelock: {name} is led{by}; not running the command");
        return Ok(args.conflict_exit_code);
    };
    let lead = lead?;
    let term = lead.term().to_string();
    let (guard, lease) = lead.into_parts();
    let result = supervise(
        guard,
        backend,
        kill_after,
        &args.command,
        &[("FENCELOCK_TERM", term)],
        signals,
    )
    .await;
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, lease.close()).await;
    result
}

pub(crate) async fn observe(backend: &str, args: ObserveArgs) -> Result<u8, Exit> {
    let name = LockName::new(&args.name)?;
    let client = fencelock::connect(backend).await?;
    let result = match client.election(&name)?.observe().await {
        Ok(watch) => {
            follow(watch, false, |leader| {
                leader_text(&name, leader.as_ref(), args.json)
            })
            .await
        }
        Err(e) => Err(e.into()),
    };
    let _ = client.close().await;
    result
}

fn leader_text(name: &LockName, leader: Option<&Leader>, json: bool) -> String {
    match (leader, json) {
        (Some(l), true) => json!({
            "name": name.as_str(),
            "leader": true,
            "term": l.term.get(),
            "value": l.value,
            "lease": l.lease.to_string(),
            "since_ms": l.since
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        })
        .to_string(),
        (Some(l), false) => format!("{name}: term {} {}", l.term, l.value),
        (None, true) => json!({ "name": name.as_str(), "leader": false }).to_string(),
        (None, false) => format!("{name}: no leader"),
    }
}
