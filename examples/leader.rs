//! Three workers campaign to lead; the leader's term fences its writes; a leader that
//! stalls past its TTL is replaced by one with a higher term, and its late write is
//! rejected; a follower observes every change.
//!
//! ```text
//! cargo run --example leader                                   # memory://
//! cargo run --features etcd --example leader -- etcd://127.0.0.1:2379
//! cargo run --features zk --example leader -- zk://127.0.0.1:2181/leader-demo
//! ```
//!
//! Each worker runs on its own thread with its own runtime and connection, as three
//! processes would. The first leader then *stalls*: on a real server its whole runtime
//! freezes (a `std::thread::sleep`, as a GC pause or a SIGSTOP would), so no keep-alive
//! goes out and the server expires its lease; on `memory://` the store's fault control
//! stops its keep-alives. When it wakes it still holds its `Leadership` and tries one
//! more write with its old term: the register's [`Fence`] rejects it.

use fencelock::{ErrorKind, Fence, FencingToken, LockState};
use futures::StreamExt;
use std::{
    process::ExitCode,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

const ELECTION: &str = "scheduler";
const TTL: Duration = Duration::from_secs(2);

/// The resource the leaders write: a log behind a fence on the leader's term.
#[derive(Default)]
struct Register {
    fence: Fence,
    log: Mutex<Vec<(FencingToken, String)>>,
}

impl Register {
    fn write(&self, term: FencingToken, what: String) -> fencelock::Result<()> {
        self.fence.apply(ELECTION, term, || {
            self.log.lock().expect("not poisoned").push((term, what));
        })
    }
}

#[derive(Default)]
struct Outcome {
    late_write_rejected: AtomicBool,
}

fn main() -> ExitCode {
    let url = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "memory://leader".to_owned());
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(run(&url)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("leader failed: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(url: &str) -> Result<bool, Box<dyn std::error::Error>> {
    println!(
        "fencelock leader on {}: 3 workers campaign for {ELECTION:?}",
        fencelock::url::redact(url)
    );
    let follower = fencelock::connect(url).await?;
    let mut observe = follower.election(ELECTION)?.observe().await?;
    let mut seen = vec![observe.next().await.ok_or("observe ended")??];
    let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
    let observer = tokio::spawn(async move {
        loop {
            let change = tokio::select! {
                change = observe.next() => change.ok_or(fencelock::Error::new(ErrorKind::Backend, "observe ended"))??,
                _ = &mut stopped => break,
            };
            match &change {
                Some(l) => println!("  follower: leader is {} (term {})", l.value, l.term),
                None => println!("  follower: no leader"),
            }
            seen.push(change);
        }
        Ok::<_, fencelock::Error>(seen)
    });

    let register = Arc::new(Register::default());
    let outcome = Arc::new(Outcome::default());
    let stall_taken = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (1..=3)
        .map(|id| {
            let (url, register, outcome, stall_taken) = (
                url.to_owned(),
                register.clone(),
                outcome.clone(),
                stall_taken.clone(),
            );
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()?;
                rt.block_on(worker(id, &url, &register, &outcome, &stall_taken))
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| "a worker panicked")?
            .map_err(|e| e.to_string())?;
    }
    // Let the follower see the last resignation, then stop it.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop.send(());
    let seen = observer.await??;
    follower.close().await?;

    let log = register.log.lock().expect("not poisoned").clone();
    let terms: Vec<FencingToken> = seen.iter().flatten().map(|l| l.term).collect();
    let leaders: Vec<&str> = seen.iter().flatten().map(|l| l.value.as_str()).collect();
    let mut distinct = terms.clone();
    distinct.dedup();
    let ordered =
        log.windows(2).all(|w| w[0].0 <= w[1].0) && terms.windows(2).all(|w| w[0] <= w[1]);
    let rejected = outcome.late_write_rejected.load(Ordering::SeqCst);
    println!("\nregister (term, write):");
    for (term, what) in &log {
        println!("  {term:>6}  {what}");
    }
    println!("\nproved:");
    println!("  - the register accepted writes only in term order: {ordered}");
    println!("  - the stalled leader's late write was rejected by the fence: {rejected}");
    println!(
        "  - the follower saw {} leaders in term order: {leaders:?}",
        distinct.len()
    );
    Ok(ordered && rejected && distinct.len() == 3)
}

async fn worker(
    id: u32,
    url: &str,
    register: &Register,
    outcome: &Outcome,
    stall_taken: &AtomicBool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let client = fencelock::connect(url).await?;
    let election = client.election(ELECTION)?.with_ttl(TTL);
    let name = format!("worker-{id}");
    let lead = election.campaign(name.clone()).await?;
    let term = lead.term();
    println!("  {name}: leader with term {term}");
    register.write(term, format!("{name}: first write"))?;

    if !stall_taken.swap(true, Ordering::SeqCst) {
        let pause = lead.lease().ttl() * 2 + Duration::from_secs(1);
        println!(
            "  {name}: stalls for {pause:?} (its lease's TTL is {:?})",
            lead.lease().ttl()
        );
        stall(&client, lead.lease().id(), pause).await;
        // Give the runtime a moment to notice what happened while it was frozen.
        tokio::time::sleep(Duration::from_millis(100)).await;
        println!("  {name}: wakes up, leadership is {}", lead.state());
        match register.write(term, format!("{name}: late write after the stall")) {
            Err(e) if e.kind() == ErrorKind::StaleToken => {
                println!("  {name}: late write with term {term} rejected: {e}");
                outcome.late_write_rejected.store(true, Ordering::SeqCst);
            }
            Err(e) => return Err(e.into()),
            Ok(()) => println!("  {name}: late write with term {term} ACCEPTED"),
        }
        if lead.state() != LockState::Lost {
            println!("  {name}: still believes it leads");
        }
        drop(lead);
    } else {
        for i in 1..=2 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            lead.ensure_held()?;
            register.write(term, format!("{name}: write {i}"))?;
        }
        println!("  {name}: resigns");
        lead.resign().await?;
    }
    client.close().await?;
    Ok(())
}

/// Pauses this worker for `pause` so that its lease `lease` expires on the server.
async fn stall(client: &fencelock::LockClient, lease: fencelock::LeaseId, pause: Duration) {
    // The memory store's keep-alives run on this thread's runtime: stop them with the
    // store's fault control and wait without freezing the runtime.
    #[cfg(feature = "memory")]
    if let Some(memory) = client.backend::<fencelock::memory::MemoryBackend>() {
        memory.stall_lease(lease);
        tokio::time::sleep(pause).await;
        return;
    }
    let _ = (client, lease);
    // A real pause: nothing of this worker runs, keep-alives included.
    std::thread::sleep(pause);
}
