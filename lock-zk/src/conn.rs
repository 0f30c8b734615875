//! Opening a ZooKeeper client: the servers of the URL, each bounded by its per-host
//! timeout (with the TLS probe that explains a refused handshake), digest
//! credentials, the chroot (created as persistent nodes for a lease), and the ACLs of
//! created nodes. Used by the leases (`session.rs`), the backend's own
//! session and the fault controls.

use crate::{
    config::{ZkAcl, ZkConfig, MIN_REQUESTED_SESSION_TIMEOUT},
    error,
};
use lock_core::{Error, ErrorKind, Result};
use std::time::Duration;
use zookeeper_client::{Acl, Acls, Client, CreateMode, Error as ZkError, Permission, SessionInfo};

/// Creator-only rights, plus reads for everyone (so `inspect` works for all).
static CREATOR_ALL_ANYONE_READ: [Acl; 2] = [
    Acl::new_const(Permission::ALL, "auth", ""),
    Acl::new_const(Permission::READ, "world", "anyone"),
];

/// The zookeeper-client ACL list for `acl`.
pub(crate) fn acls(acl: ZkAcl) -> Acls<'static> {
    match acl {
        ZkAcl::Open => Acls::anyone_all(),
        ZkAcl::Creator => Acls::new(&CREATOR_ALL_ANYONE_READ),
    }
}

/// Opens a session to `config`'s servers, giving up after its connect timeout.
///
/// Each server gets [`ZkConfig::per_host_timeout`] to answer before the next one is
/// tried, so one wedged server cannot use up the whole connect timeout.
///
/// `chroot`: whether the client works under the configured chroot. `resume`: an
/// existing session to attach to (fault control) instead of a new one.
pub(crate) async fn connect(
    config: &ZkConfig,
    session_timeout: Duration,
    chroot: bool,
    resume: Option<SessionInfo>,
) -> Result<Client> {
    let session_timeout = session_timeout.max(MIN_REQUESTED_SESSION_TIMEOUT);
    let mut connector = Client::connector()
        .with_session_timeout(session_timeout)
        .with_connection_timeout(config.per_host_timeout(session_timeout));
    if let Some(digest) = config.digest() {
        connector = connector.with_auth("digest", &digest);
    }
    if let Some(session) = resume {
        connector = connector.with_session(session);
    }
    let tls = crate::tls::options(config)?;
    let secure = tls.is_some();
    if let Some(tls) = tls {
        connector = connector.with_tls(tls);
    }
    let servers = config.servers();
    let target = if chroot {
        format!("{servers}{}", config.chroot())
    } else {
        servers.clone()
    };
    let limit = config.connect_timeout();
    let connecting = async move {
        match secure {
            true => connector.secure_connect(&target).await,
            false => connector.connect(&target).await,
        }
    };
    let (outcome, findings) = crate::tls::watch(config, limit, connecting).await?;
    let refusals = crate::tls::summary(&findings);
    match outcome {
        Some(Ok(client)) => Ok(client),
        Some(Err(ZkError::AuthFailed)) => Err(Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "zookeeper at {servers} rejected the credentials of user {:?} (the server refused the auth packet)",
                config.user().unwrap_or("")
            ),
        )
        .with_source(ZkError::AuthFailed)),
        Some(Err(e))
            if error::is_terminal(&e) || error::kind_of(&e) == ErrorKind::InvalidConfig =>
        {
            Err(error::map(
                e,
                format_args!("connecting to zookeeper at {servers}"),
            ))
        }
        Some(Err(e)) => Err(Error::new(
            ErrorKind::Unavailable,
            format!("cannot connect to zookeeper at {servers}: {e}{refusals}"),
        )
        .with_source(e)),
        None => Err(Error::new(
            ErrorKind::Unavailable,
            format!("zookeeper at {servers} not reachable within {limit:?}{refusals}"),
        )),
    }
}

/// Moves `client` (connected without chroot) under `config`'s chroot, first creating
/// the chroot as persistent nodes if `create` and it is missing.
pub(crate) async fn under_chroot(
    config: &ZkConfig,
    client: Client,
    create: bool,
) -> Result<Client> {
    let chroot = config.chroot();
    if chroot.is_empty() {
        return Ok(client);
    }
    if create {
        // Look before creating: creating an existing node can still fail with NoAuth
        // when its parent is closed to us.
        let exists = client
            .check_stat(chroot)
            .await
            .map_err(|e| error::map(e, format_args!("looking up the chroot {chroot}")))?;
        if exists.is_none() {
            let mode = CreateMode::Persistent.with_acls(acls(config.acl()));
            client
                .mkdir(chroot, &mode)
                .await
                .map_err(|e| error::map(e, format_args!("creating the chroot {chroot}")))?;
        }
    }
    client.chroot(chroot).map_err(|_| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("zk chroot {chroot:?} is not a valid path"),
        )
    })
}
