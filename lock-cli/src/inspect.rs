//! `status` and `list`.

use crate::exit::Exit;
use clap::Args;
use fencelock::{backend::Claim, LockInfo};
use serde_json::json;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// One JSON object instead of text (with --watch: one line per change).
    #[arg(long)]
    json: bool,
    /// Keep running and show the lock again on each change (holder, token, held-for,
    /// queue), driven by the backend's watch, not by polling.
    #[arg(long)]
    watch: bool,
    /// The lock name.
    name: String,
}

#[derive(Debug, Args)]
pub(crate) struct ListArgs {
    /// One JSON object per line instead of text (with --watch: one line per change,
    /// `{"locks":[...]}`).
    #[arg(long)]
    json: bool,
    /// Keep running and show the list again on each change, driven by the backend's
    /// watch, not by polling.
    #[arg(long)]
    watch: bool,
    /// Only locks whose names start with this.
    #[arg(default_value = "")]
    prefix: String,
}

pub(crate) async fn status(backend: &str, args: StatusArgs) -> Result<u8, Exit> {
    let name = fencelock::LockName::new(&args.name)?;
    let client = fencelock::connect(backend).await?;
    if args.watch {
        let watch = client.watch_lock(&name).await;
        let result = match watch {
            Ok(watch) => {
                follow(watch, true, |info| {
                    status_text(&name, info.as_ref(), args.json)
                })
                .await
            }
            Err(e) => Err(e.into()),
        };
        let _ = client.close().await;
        return result;
    }
    let info = client.inspect(&name).await?;
    let _ = client.close().await;
    println!("{}", status_text(&name, info.as_ref(), args.json));
    Ok(0)
}

fn status_text(name: &fencelock::LockName, info: Option<&LockInfo>, json: bool) -> String {
    match (info, json) {
        (Some(info), true) => to_json(info).to_string(),
        (Some(info), false) => to_text(info),
        (None, true) => json!({ "name": name.as_str(), "held": false }).to_string(),
        (None, false) => format!("{name}: free"),
    }
}

pub(crate) async fn list(backend: &str, args: ListArgs) -> Result<u8, Exit> {
    let client = fencelock::connect(backend).await?;
    if args.watch {
        let result = match client.watch_list(&args.prefix).await {
            Ok(watch) => {
                follow(watch, true, |locks| {
                    if args.json {
                        let locks: Vec<_> = locks.iter().map(to_json).collect();
                        json!({ "locks": locks }).to_string()
                    } else if locks.is_empty() {
                        "(no locks held)".to_owned()
                    } else {
                        list_text(&locks, false)
                    }
                })
                .await
            }
            Err(e) => Err(e.into()),
        };
        let _ = client.close().await;
        return result;
    }
    let locks = client.list(&args.prefix).await?;
    let _ = client.close().await;
    if !locks.is_empty() {
        println!("{}", list_text(&locks, args.json));
    }
    Ok(0)
}

fn list_text(locks: &[LockInfo], json: bool) -> String {
    let lines: Vec<String> = locks
        .iter()
        .map(|info| match json {
            true => to_json(info).to_string(),
            false => to_text(info),
        })
        .collect();
    lines.join("\n")
}

/// Shows each snapshot of `watch` as it comes: with `redraw` on a terminal the
/// screen is cleared first, otherwise snapshots follow each other (`--json`: one
/// line each). Runs until interrupted or its reader goes away (exit 0); an error ends it
/// with the error's exit code.
pub(crate) async fn follow<T>(
    mut watch: fencelock::LockWatch<T>,
    redraw: bool,
    mut text: impl FnMut(T) -> String,
) -> Result<u8, Exit> {
    use futures::StreamExt;
    use std::io::{IsTerminal, Write};
    let redraw = redraw && std::io::stdout().is_terminal();
    while let Some(snapshot) = watch.next().await {
        let text = text(snapshot?);
        let mut out = std::io::stdout().lock();
        let clear = if redraw { "\x1b[2J\x1b[H" } else { "" };
        // Each change must reach a pipe at once, not when a buffer fills.
        if writeln!(out, "{clear}{text}")
            .and_then(|()| out.flush())
            .is_err()
        {
            return Ok(0); // the reader is gone (a closed pipe)
        }
    }
    Err(Exit::new(
        crate::exit::UNAVAILABLE,
        "the backend's watch ended".to_owned(),
    ))
}

fn held_for(info: &LockInfo) -> Option<Duration> {
    info.acquired_at
        .and_then(|at| SystemTime::now().duration_since(at).ok())
}

/// How a holder's claim reads: `exclusive`, `read`, `write`, `permit of N`.
fn mode(claim: Claim) -> String {
    match claim {
        Claim::Read => "read".to_owned(),
        Claim::Write => "write".to_owned(),
        Claim::Shared { limit } => format!("permit of {limit}"),
        _ => "exclusive".to_owned(),
    }
}

fn to_text(info: &LockInfo) -> String {
    let held = held_for(info).map_or("unknown".to_owned(), |d| format!("{:.1}s", d.as_secs_f64()));
    let shared = info.holders.len() > 1
        || info
            .holders
            .iter()
            .any(|h| matches!(h.claim, Claim::Read | Claim::Shared { .. }));
    if shared {
        // Readers or permits: every holder on its own line.
        let lines: Vec<String> = info
            .holders
            .iter()
            .map(|h| {
                let slot = h.slot.map(|s| format!(", slot {s}")).unwrap_or_default();
                format!(
                    "  {} {} with token {} (lease {}{slot})",
                    mode(h.claim),
                    h.holder.as_deref().unwrap_or("(unknown holder)"),
                    h.token,
                    h.lease
                )
            })
            .collect();
        return format!(
            "{}: held by {} ({}), {} waiting\n{}",
            info.name,
            info.holders.len(),
            mode(info.holders.first().map_or(Claim::Exclusive, |h| h.claim)),
            info.waiters,
            lines.join("\n")
        );
    }
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
        "holders": info.holders.iter().map(|h| json!({
            "mode": mode(h.claim),
            "token": h.token.get(),
            "holder": h.holder,
            "lease": h.lease.to_string(),
            "slot": h.slot,
        })).collect::<Vec<_>>(),
    })
}
