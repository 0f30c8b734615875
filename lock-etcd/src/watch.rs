//! The per-client watch multiplexer: every watch of one backend (waiters watching
//! their predecessor, guards watching their own key) shares ONE etcd watch stream.
//!
//! A subscriber gets the events of one key from a start revision. When the stream
//! breaks, or etcd cancels the watch (compaction, lost leader), the subscriber gets
//! [`Signal::Reset`] and re-reads the state itself instead of hanging.

use crate::members::Members;
use etcd_client::{
    EventType, WatchOptions, WatchRequestSender, WatchResponse, WatchResponseStream,
};
use futures::StreamExt;
use lock_core::backend::Backoff;
use std::{
    collections::HashMap,
    sync::atomic::{AtomicI64, Ordering},
    sync::Arc,
    time::Duration,
};
use tokio::sync::mpsc;

/// What a subscriber learns about its key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    /// The key was written (created or overwritten).
    Put { create_revision: i64, lease: i64 },
    /// The key was deleted (released, expired or deleted by someone else), at
    /// `revision`.
    Delete { revision: i64 },
    /// The watch is registered on the server: it reports every change after
    /// `revision` (a watch from the current revision says here where it starts).
    Created { revision: i64 },
    /// The watch is gone (stream broken, watch cancelled): re-read the state.
    Reset,
}

enum Command {
    Add {
        id: i64,
        key: Vec<u8>,
        start_revision: i64,
        tx: mpsc::UnboundedSender<Signal>,
    },
    Cancel(i64),
    Shutdown,
}

/// Handle to the multiplexer task. Cheap to share.
#[derive(Debug)]
pub(crate) struct WatchMux {
    tx: mpsc::UnboundedSender<Command>,
    next_id: AtomicI64,
}

/// One watched key. Dropping it cancels the watch.
#[derive(Debug)]
pub(crate) struct Subscription {
    id: i64,
    rx: mpsc::UnboundedReceiver<Signal>,
    mux: mpsc::UnboundedSender<Command>,
}

impl Subscription {
    /// The next signal; `Reset` if the multiplexer has shut down.
    pub(crate) async fn next(&mut self) -> Signal {
        self.rx.recv().await.unwrap_or(Signal::Reset)
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let _ = self.mux.send(Command::Cancel(self.id));
    }
}

impl WatchMux {
    /// Starts the multiplexer task on the current runtime. The stream is opened on
    /// the first watch.
    pub(crate) fn start(members: Arc<Members>, request_timeout: Duration) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(members, request_timeout, rx));
        WatchMux {
            tx,
            next_id: AtomicI64::new(1),
        }
    }

    /// Watches `key` from `start_revision` (inclusive; 0: from the next change on,
    /// which etcd serves without its 100 ms catch-up loop for watches that start in
    /// the past).
    pub(crate) fn watch(&self, key: &[u8], start_revision: i64) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::unbounded_channel();
        if self
            .tx
            .send(Command::Add {
                id,
                key: key.to_vec(),
                start_revision,
                tx: tx.clone(),
            })
            .is_err()
        {
            let _ = tx.send(Signal::Reset);
        }
        Subscription {
            id,
            rx,
            mux: self.tx.clone(),
        }
    }

    /// Stops the task; every subscriber gets `Reset`.
    pub(crate) fn shutdown(&self) {
        let _ = self.tx.send(Command::Shutdown);
    }
}

type Stream = (WatchRequestSender, WatchResponseStream);

struct State {
    members: Arc<Members>,
    request_timeout: Duration,
    stream: Option<Stream>,
    /// The member the stream is open on.
    member: usize,
    subs: HashMap<i64, mpsc::UnboundedSender<Signal>>,
    /// Whether the last attempt to open a stream failed, and the wait before the next
    /// (100 ms doubling up to 800 ms).
    failed: bool,
    backoff: Backoff,
}

/// How often the stream checks that its member is still the one requests go to.
const MEMBER_CHECK: Duration = Duration::from_millis(250);

async fn run(
    members: Arc<Members>,
    request_timeout: Duration,
    mut commands: mpsc::UnboundedReceiver<Command>,
) {
    let mut st = State {
        members,
        request_timeout,
        stream: None,
        member: 0,
        subs: HashMap::new(),
        failed: false,
        backoff: Backoff::new(Duration::from_millis(100), Duration::from_millis(800)),
    };
    let mut checks = tokio::time::interval(MEMBER_CHECK);
    checks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let check_member = st.stream.is_some() && st.members.len() > 1;
        let message = async {
            match st.stream.as_mut() {
                Some((_, responses)) => responses.next().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            command = commands.recv() => match command {
                None | Some(Command::Shutdown) => break,
                Some(Command::Add { id, key, start_revision, tx }) => {
                    st.add(id, key, start_revision, tx).await;
                }
                Some(Command::Cancel(id)) => st.cancel(id).await,
            },
            message = message => match message {
                Some(Ok(response)) => st.dispatch(&response),
                Some(Err(e)) => st.reset(&format!("watch stream failed: {e}")),
                None => st.reset("watch stream closed by etcd"),
            },
            // A stalled member sends nothing, not even an error: once requests and
            // keep-alives moved off the stream's member, so does the stream (every
            // subscriber re-reads and watches again, on the member requests go to).
            _ = checks.tick(), if check_member => {
                if st.members.preferred() != st.member {
                    st.reset("the watch stream's member is no longer the preferred one");
                }
            }
        }
    }
    st.reset("watch multiplexer shut down");
}

impl State {
    async fn add(
        &mut self,
        id: i64,
        key: Vec<u8>,
        start_revision: i64,
        tx: mpsc::UnboundedSender<Signal>,
    ) {
        if tx.is_closed() {
            return;
        }
        let options = WatchOptions::new()
            .with_start_revision(start_revision)
            .with_watch_id(id);
        self.subs.insert(id, tx);
        if let Some((sender, _)) = self.stream.as_mut() {
            self.members.count_request();
            if sender.watch(key, Some(options)).await.is_err() {
                self.reset("watch stream closed");
            }
            return;
        }
        if self.failed {
            // Do not hammer a cluster that just refused a stream.
            tokio::time::sleep(self.backoff.next_delay()).await;
        }
        let member = self.members.preferred();
        let mut watch = self.members.client(member).watch_client();
        let limit = self.members.attempt_limit(self.request_timeout);
        match tokio::time::timeout(limit, watch.watch(key, Some(options))).await {
            Ok(Ok(stream)) => {
                self.failed = false;
                self.backoff.reset();
                self.member = member;
                self.stream = Some(stream.split());
            }
            Ok(Err(e)) => {
                self.failed = true;
                self.members.skip(member);
                self.reset(&format!("cannot open watch stream: {e}"));
            }
            Err(_) => {
                self.failed = true;
                self.members.skip(member);
                self.reset("opening the watch stream timed out");
            }
        }
    }

    async fn cancel(&mut self, id: i64) {
        if self.subs.remove(&id).is_none() {
            return;
        }
        if let Some((sender, _)) = self.stream.as_mut() {
            self.members.count_request();
            if sender.cancel(id).await.is_err() {
                self.reset("watch stream closed");
            }
        }
    }

    fn dispatch(&mut self, response: &WatchResponse) {
        let id = response.watch_id();
        if response.canceled() {
            tracing::debug!(
                id,
                reason = response.cancel_reason(),
                compacted = response.compact_revision(),
                "watch cancelled by etcd"
            );
            if let Some(tx) = self.subs.remove(&id) {
                let _ = tx.send(Signal::Reset);
            }
            return;
        }
        let Some(tx) = self.subs.get(&id) else {
            return;
        };
        if response.created() {
            let revision = response.header().map_or(0, |h| h.revision());
            let _ = tx.send(Signal::Created { revision });
        }
        for event in response.events() {
            let signal = match (event.event_type(), event.kv()) {
                (EventType::Delete, kv) => Signal::Delete {
                    revision: kv.map_or(0, |kv| kv.mod_revision()),
                },
                (EventType::Put, Some(kv)) => Signal::Put {
                    create_revision: kv.create_revision(),
                    lease: kv.lease(),
                },
                (EventType::Put, None) => Signal::Reset,
            };
            let _ = tx.send(signal);
        }
    }

    /// Drops the stream and tells every subscriber to re-read.
    fn reset(&mut self, why: &str) {
        if !self.subs.is_empty() || self.stream.is_some() {
            tracing::debug!(subscribers = self.subs.len(), "{why}");
        }
        self.stream = None;
        for (_, tx) in self.subs.drain() {
            let _ = tx.send(Signal::Reset);
        }
    }
}
