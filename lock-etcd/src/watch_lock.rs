//! Change signals for [`LockClient::watch_lock`](lock_core::LockClient::watch_lock) and
//! `watch_list`: one etcd watch, on a stream of its own, over the key range of the
//! lock (or of every lock under a name prefix). Every event in the range (a key
//! created by an acquire, deleted by a release or an expiry) is a signal; when the
//! stream breaks it is opened again (on the member requests go to) and a signal is
//! sent, since changes may have been missed meanwhile.

use crate::{error, session::Conn};
use etcd_client::{WatchOptions, WatchRequestSender, WatchResponseStream};
use futures::StreamExt;
use lock_core::{backend::ChangeStream, ErrorKind, Result};
use std::sync::Arc;

type Stream = (WatchRequestSender, WatchResponseStream);

/// Watches every key starting with `range`; returns once etcd confirmed the watch.
pub(crate) async fn changes(conn: Arc<Conn>, range: String) -> Result<ChangeStream> {
    let first = open(&conn, &range).await?;
    let state = (conn, range, Some(first), crate::session::retry_backoff());
    Ok(
        futures::stream::unfold(state, |(conn, range, mut stream, mut backoff)| async move {
            loop {
                let Some((_, responses)) = stream.as_mut() else {
                    tokio::time::sleep(backoff.next_delay()).await;
                    match open(&conn, &range).await {
                        Ok(opened) => {
                            backoff.reset();
                            // Changes may have happened while no watch was in place.
                            return Some((Ok(()), (conn, range, Some(opened), backoff)));
                        }
                        Err(e) if e.is_retryable() || e.kind() == ErrorKind::Backend => {
                            tracing::debug!(%range, error = %e, "re-opening the lock watch failed");
                            continue;
                        }
                        Err(e) => return Some((Err(e), (conn, range, None, backoff))),
                    }
                };
                match responses.next().await {
                    Some(Ok(r)) if !r.events().is_empty() => {
                        return Some((Ok(()), (conn, range, stream, backoff)));
                    }
                    Some(Ok(r)) if r.canceled() => stream = None,
                    Some(Ok(_)) => {}
                    Some(Err(e)) => {
                        tracing::debug!(%range, error = %e, "lock watch stream failed; re-opening");
                        stream = None;
                    }
                    None => stream = None,
                }
            }
        })
        .boxed(),
    )
}

/// Opens a watch stream on `range` and waits for etcd to confirm it.
async fn open(conn: &Conn, range: &str) -> Result<Stream> {
    let what = || format!("watching {range}");
    let member = conn.members.preferred();
    let limit = conn.members.attempt_limit(conn.config.request_timeout());
    let opened = tokio::time::timeout(limit, async {
        let mut client = conn.members.client(member).watch_client();
        let stream = client
            .watch(range, Some(WatchOptions::new().with_prefix()))
            .await
            .map_err(|e| error::map(e, what()))?;
        let (sender, mut responses) = stream.split();
        match responses.next().await {
            Some(Ok(r)) if r.created() && !r.canceled() => Ok((sender, responses)),
            Some(Ok(r)) => Err(lock_core::Error::new(
                ErrorKind::Backend,
                format!("{}: etcd refused the watch: {}", what(), r.cancel_reason()),
            )),
            Some(Err(e)) => Err(error::map(e, what())),
            None => Err(lock_core::Error::new(
                ErrorKind::Unavailable,
                format!("{}: the watch stream closed", what()),
            )),
        }
    })
    .await;
    match opened {
        Ok(Ok(stream)) => {
            conn.members.prefer(member);
            Ok(stream)
        }
        Ok(Err(e)) => {
            conn.members.skip(member);
            Err(e)
        }
        Err(_) => {
            conn.members.skip(member);
            Err(error::timed_out(what(), limit))
        }
    }
}
