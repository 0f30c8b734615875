//! `status` and `list`.

use crate::exit::Exit;
use clap::Args;
use fencelock::LockInfo;
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// One JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The lock name.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// One JSON object per line instead of text.
    #[arg(long)]
    json: bool,
    /// Only locks whose names start with this.
    #[arg(default_value = "")]
    prefix: String,
}

pub(crate) async fn status(backend: &str, args: StatusArgs) -> Result<u8, Exit> {
    let name = fencelock::LockName::new(&args.name)?;
    let client = fencelock::connect(backend).await?;
    let info = client.inspect(&name).await?;
    let _ = client.close().await;
    match (info, args.json) {
        (Some(info), true) => println!("{}", to_json(&info)),
        (Some(info), false) => println!("{}", to_text(&info)),
        (None, true) => println!("{}", json!({ "name": name.as_str(), "held": false })),
        (None, false) => println!("{name}: free"),
    }
    Ok(0)
}

pub(crate) async fn list(backend: &str, args: ListArgs) -> Result<u8, Exit> {
    let client = fencelock::connect(backend).await?;
    let locks = client.list(&args.prefix).await?;
    let _ = client.close().await;
    for info in &locks {
        match args.json {
            true => println!("{}", to_json(info)),
            false => println!("{}", to_text(info)),
        }
    }
    Ok(0)
}

fn held_for(info: &LockInfo) -> Option<Duration> {
    info.acquired_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
}

fn to_text(info: &LockInfo) -> String {
    let held = held_for(info).map_or("unknown".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
    format!(
        "{}: held by {} with token {} (lease {}) for {held}, {} waiting",
        info.name,
        info.holder.as_deref().unwrap_or("(unknown holder)"),
        info.token,
        info.lease,
        info.waiters
    )
}

fn to_json(info: &LockInfo) -> serde_json::Value {
    let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    json!({
        "name": info.name.as_str(),
        "held": true,
        "token": info.token.get(),
        "holder": info.holder,
        "lease": info.lease.to_string(),
        "acquired_at_ms": info.acquired_at.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map(millis),
        "held_for_ms": held_for(info).map(millis),
        "waiters": info.waiters,
    })
}
