//! One etcd client per cluster member, and which member requests go to.
//!
//! etcd-client's own client balances requests over every endpoint of one channel and
//! keeps sending to a member that accepts connections but never answers (a stalled
//! or wedged member): its requests time out, keep-alives included. So every unary
//! request and keep-alive of this backend goes to one *preferred* member, through a
//! client of its own, and moves on to the next member as soon as the preferred one
//! fails to answer in time (see `Conn::call_counted` in `conn.rs` and the keep-alive
//! task in `session.rs`). The members are connected lazily (etcd-client opens the
//! connection on first use), so a hung member costs nothing until it is chosen.

use crate::error;
use etcd_client::{Client, ConnectOptions};
use lock_core::{Error, ErrorKind, Result};
use std::{
    sync::atomic::{AtomicU64, AtomicUsize, Ordering},
    time::Duration,
};
use tokio::time::Instant;

/// How long one attempt on one member may take when there are other members to try:
/// an eighth of the request timeout, within these bounds (a stalled member is left
/// after at most this long; a request that needs an election waits on the next one).
pub(crate) const MEMBER_ATTEMPT: (Duration, Duration) =
    (Duration::from_millis(500), Duration::from_secs(2));

/// The members' clients, in the order of the configured endpoints.
pub(crate) struct Members {
    endpoints: Vec<String>,
    clients: Vec<Client>,
    preferred: AtomicUsize,
    /// Requests sent: see [`Members::requests`].
    requests: AtomicU64,
}

impl Members {
    /// A client per endpoint, built in parallel by `deadline`. Without credentials
    /// this needs no network (etcd-client connects on first use); with them, each
    /// client authenticates, and the members that fail to are left out (the others
    /// serve). Fails only when no member is left, with the first member's error.
    pub(crate) async fn connect(
        endpoints: &[String],
        options: &ConnectOptions,
        deadline: Instant,
    ) -> Result<Members> {
        let built = futures::future::join_all(endpoints.iter().map(|endpoint| async move {
            let what = || format!("connecting to etcd at {endpoint}");
            match tokio::time::timeout_at(
                deadline,
                Client::connect([endpoint], Some(options.clone())),
            )
            .await
            {
                Ok(Ok(client)) => Ok((endpoint.clone(), client)),
                Ok(Err(e)) => Err(error::map(e, what())),
                Err(_) => Err(error::timed_out(
                    what(),
                    deadline.saturating_duration_since(Instant::now()),
                )),
            }
        }))
        .await;
        let mut first_error = None;
        let (mut names, mut clients) = (Vec::new(), Vec::new());
        for result in built {
            match result {
                Ok((endpoint, client)) => {
                    names.push(endpoint);
                    clients.push(client);
                }
                Err(e) => {
                    tracing::debug!(error = %e, "etcd member left out");
                    first_error.get_or_insert(e);
                }
            }
        }
        if clients.is_empty() {
            return Err(first_error
                .unwrap_or_else(|| Error::new(ErrorKind::InvalidConfig, "no etcd endpoint")));
        }
        Ok(Members {
            endpoints: names,
            clients,
            preferred: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        })
    }

    /// A single member around an existing client (unit tests).
    #[cfg(test)]
    pub(crate) fn single(endpoint: &str, client: Client) -> Members {
        Members {
            endpoints: vec![endpoint.to_owned()],
            clients: vec![client],
            preferred: AtomicUsize::new(0),
            requests: AtomicU64::new(0),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.clients.len()
    }

    /// The member requests go to now.
    pub(crate) fn preferred(&self) -> usize {
        self.preferred.load(Ordering::Relaxed) % self.clients.len()
    }

    /// Makes `member` the preferred one (it answered first).
    pub(crate) fn prefer(&self, member: usize) {
        self.preferred
            .store(member % self.clients.len(), Ordering::Relaxed);
    }

    /// The client of `member`, for one request (or one stream to open): counted in
    /// [`requests`](Self::requests).
    pub(crate) fn client(&self, member: usize) -> Client {
        self.count_request();
        self.clients[member % self.clients.len()].clone()
    }

    /// Counts a request sent on an open stream (a watch added to or cancelled on
    /// the shared watch stream).
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The requests sent so far: every attempt of a unary request (reads, writes,
    /// transactions, lease grants and revocations), every stream opened (watch and
    /// keep-alive streams) and every watch created or cancelled on an open stream.
    /// Keep-alive messages on an open keep-alive stream are not counted.
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    pub(crate) fn endpoint(&self, member: usize) -> &str {
        &self.endpoints[member % self.endpoints.len()]
    }

    /// `member` did not answer in time: if it is still the preferred one, the next
    /// member is. Returns the member to use now.
    pub(crate) fn skip(&self, member: usize) -> usize {
        let n = self.clients.len();
        let member = member % n;
        if n > 1 {
            let next = (member + 1) % n;
            if self
                .preferred
                .compare_exchange(member, next, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
            {
                tracing::debug!(
                    from = self.endpoint(member),
                    to = self.endpoint(next),
                    "etcd member did not answer in time; moving on"
                );
            }
        }
        self.preferred()
    }

    /// The time one attempt may take: with several members, short enough to leave a
    /// stalled one quickly ([`MEMBER_ATTEMPT`]); alone, a third of the request timeout
    /// (at least 1 s).
    pub(crate) fn attempt_limit(&self, request_timeout: Duration) -> Duration {
        let alone = (request_timeout / 3)
            .max(Duration::from_secs(1))
            .min(request_timeout);
        if self.clients.len() > 1 {
            (request_timeout / 8)
                .clamp(MEMBER_ATTEMPT.0, MEMBER_ATTEMPT.1)
                .min(alone)
        } else {
            alone
        }
    }
}
