//! `fencecheck holder`: one holder as its own OS process, so SIGKILL and SIGSTOP are
//! real. SIGTERM stops it cleanly; SIGUSR1 expires its ZooKeeper session from a second
//! connection that bypasses its fault proxy.

use crate::{
    history::{JsonlWriter, Op, Recorder},
    holder::{self, Gate, HolderConfig, LeaseSlot, Mode, TokenMode},
};
use std::{net::SocketAddr, path::PathBuf, time::Duration};
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

/// Arguments of a holder process.
#[derive(clap::Args, Debug, Clone)]
pub struct HolderArgs {
    /// The lock service URL (through the fault proxy).
    #[arg(long)]
    pub url: String,
    /// The same service without the proxy (for session expiry from outside).
    #[arg(long)]
    pub direct_url: Option<String>,
    /// The register's address.
    #[arg(long)]
    pub register: SocketAddr,
    /// The holder's unique id.
    #[arg(long)]
    pub id: u32,
    /// The slot it fills.
    #[arg(long, default_value_t = 0)]
    pub slot: u32,
    /// The lock name.
    #[arg(long)]
    pub name: String,
    /// TTL / session timeout in ms.
    #[arg(long)]
    pub ttl_ms: u64,
    /// Read-modify-writes per cycle.
    #[arg(long, default_value_t = 3)]
    pub writes: u32,
    /// Seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The history file.
    #[arg(long)]
    pub out: PathBuf,
    /// **Test only**: the token sent to the register.
    #[arg(long, value_enum, default_value = "real")]
    pub token_mode: TokenMode,
    /// What it locks.
    #[arg(long, value_enum, default_value = "mutex")]
    pub mode: Mode,
    /// The semaphore's limit.
    #[arg(long, default_value_t = 2)]
    pub limit: u32,
    /// Campaign in the election `name` instead of acquiring the lock.
    #[arg(long)]
    pub election: bool,
}

/// Runs a holder process; `true` on a clean exit.
pub async fn holder_main(args: HolderArgs) -> bool {
    let out = match JsonlWriter::create(&args.out) {
        Ok(out) => out,
        Err(e) => {
            eprintln!("fencecheck holder: cannot open {}: {e}", args.out.display());
            return false;
        }
    };
    let rec = Recorder::new(out, args.id, args.name.clone());
    rec.record(
        0,
        Op::Start {
            pid: std::process::id(),
            slot: args.slot,
        },
    );
    let client = match fencelock::connect(&args.url).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("fencecheck holder {}: cannot connect: {e}", args.id);
            return false;
        }
    };
    let (stop_tx, stop) = watch::channel(false);
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::spawn(async move {
                term.recv().await;
                let _ = stop_tx.send(true);
            });
        }
        Err(e) => eprintln!("fencecheck holder: no SIGTERM handler: {e}"),
    }
    let lease = LeaseSlot::default();
    spawn_expirer(&client, args.direct_url.clone(), lease.clone());
    let cfg = HolderConfig {
        id: args.id,
        name: args.name.clone(),
        ttl: Duration::from_millis(args.ttl_ms),
        writes: args.writes,
        seed: args.seed,
        register: args.register,
        token_mode: args.token_mode,
        mode: args.mode,
        limit: args.limit,
        election: args.election,
    };
    let result = holder::run(client.clone(), cfg, rec, Gate::default(), stop, lease).await;
    let _ = tokio::time::timeout(Duration::from_secs(2), client.close()).await;
    match result {
        Ok(()) => true,
        Err(e) => {
            eprintln!("fencecheck holder {}: {e}", args.id);
            false
        }
    }
}

#[cfg(feature = "zk")]
fn spawn_expirer(client: &fencelock::LockClient, direct_url: Option<String>, lease: LeaseSlot) {
    let Some(direct_url) = direct_url.filter(|u| u.starts_with("zk://")) else {
        return;
    };
    let client = client.clone();
    let mut usr1 = match signal(SignalKind::user_defined1()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("fencecheck holder: no SIGUSR1 handler: {e}");
            return;
        }
    };
    tokio::spawn(async move {
        while usr1.recv().await.is_some() {
            let Some(id) = *lease.lock().unwrap_or_else(|e| e.into_inner()) else {
                continue;
            };
            let Some(own) = client.backend::<fencelock::zk::ZkBackend>() else {
                continue;
            };
            let Some(session) = own.session_ref(id) else {
                eprintln!("fencecheck holder: lease {id} is not open here");
                continue;
            };
            let expired = async {
                let direct = fencelock::zk::ZkBackend::from_url(&direct_url).await?;
                let r = direct.expire_session(&session).await;
                let _ = lock_core_close(&direct).await;
                r
            };
            match tokio::time::timeout(Duration::from_secs(5), expired).await {
                Ok(Ok(())) => eprintln!("fencecheck holder: session {id} expired from outside"),
                Ok(Err(e)) => eprintln!("fencecheck holder: expiring session {id} failed: {e}"),
                Err(_) => eprintln!("fencecheck holder: expiring session {id} timed out"),
            }
        }
    });
}

#[cfg(feature = "zk")]
async fn lock_core_close(backend: &fencelock::zk::ZkBackend) -> fencelock::Result<()> {
    use fencelock::backend::Backend;
    backend.close().await
}

#[cfg(not(feature = "zk"))]
fn spawn_expirer(_client: &fencelock::LockClient, _direct_url: Option<String>, _lease: LeaseSlot) {}
