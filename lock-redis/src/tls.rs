//! TLS to Redis (`rediss://`, `redlock://…?tls=true`): redis-rs's rustls client built
//! from the configuration's `ca`, `cert` and `key` files, and the reading of a failed
//! handshake: which side refused, and why.
//!
//! rustls's reason travels inside the I/O error redis-rs returns: a certificate the
//! client refused, an alert from the server (it refused the client's certificate),
//! or bytes that are not TLS (a plain-text port) each become an [`ErrorKind::Unauthenticated`] naming the side
//! (read in `error.rs`, with every other redis-rs error). A plain/TLS
//! port mix-up often shows no TLS error (a reset, or a hello that gets no answer), so
//! a failed or slow connect runs [`mixup`], one bounded probe connection. Key
//! material never reaches a message: only the files' paths do.

use crate::config::RedisConfig;
use lock_core::{Error, ErrorKind, Result};
use rustls::pki_types::ServerName;
use std::{
    io::{Read, Write},
    net::{TcpStream, ToSocketAddrs},
    path::Path,
    sync::Arc,
    time::Duration,
};

/// The process-wide rustls crypto provider: redis-rs asks rustls for the installed
/// default, and the workspace's rustls has both ring and aws-lc-rs compiled in.
/// Installs ring (as lock-zk does) unless another was installed first.
fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any provider works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("cannot read tls file {}: {e}", path.display()),
        )
        .with_source(e)
    })
}

/// The redis-rs client for `config`: plain, or TLS with its files.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] when a file cannot be read or holds no usable
/// certificate or key (the message names the file, never its content).
pub(crate) fn client(config: &RedisConfig, info: redis::ConnectionInfo) -> Result<redis::Client> {
    if !config.tls() {
        return redis::Client::open(info).map_err(|e| crate::error::map(e, "redis address"));
    }
    install_provider();
    let (ca, identity) = config.tls_files();
    let root_cert = ca.map(|p| read(p)).transpose()?;
    let client_tls = match identity {
        None => None,
        Some((cert, key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
    };
    let files = [ca.map(|p| p.display().to_string())]
        .into_iter()
        .chain(identity.map(|(c, k)| Some(format!("{} and {}", c.display(), k.display()))))
        .flatten()
        .collect::<Vec<_>>()
        .join(", ");
    redis::Client::build_with_tls(
        info,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
    .map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("redis tls files ({files}) hold no usable certificate or key: {e}"),
        )
    })
}

/// How long a connect may go without success before [`mixup`] looks for a
/// plain/TLS port mix-up (a TLS hello to a plain port gets no answer at all).
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(150);

/// Whether the server at `config`'s address speaks the other protocol than the
/// client: a plain-text reply to a TLS client's `PING`, or a certificate presented
/// to a plain client's TLS hello. `Some(reason)` names the mix-up; `None` when the
/// probe found nothing (or could not run) within `limit`.
pub(crate) async fn mixup(config: &RedisConfig, limit: Duration) -> Option<String> {
    let (host, port) = config.host_port().ok()?;
    let tls = config.tls();
    tokio::task::spawn_blocking(move || {
        let addr = (host.as_str(), port).to_socket_addrs().ok()?.next()?;
        let mut sock = TcpStream::connect_timeout(&addr, limit).ok()?;
        sock.set_read_timeout(Some(limit)).ok()?;
        sock.set_write_timeout(Some(limit)).ok()?;
        if tls {
            sock.write_all(b"PING\r\n").ok()?;
            let mut reply = [0u8; 1];
            let n = sock.read(&mut reply).ok()?;
            return (n == 1 && matches!(reply[0], b'+' | b'-')).then(|| {
                "the server does not speak TLS on this port (a plain-text port? use redis://)"
                    .to_owned()
            });
        }
        // A plain client: does the server answer a TLS hello with a certificate? With
        // no trusted roots any certificate is refused, which is all this needs to see.
        install_provider();
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(rustls::RootCertStore::empty())
            .with_no_client_auth();
        let name = ServerName::try_from(host).ok()?;
        let mut conn = rustls::ClientConnection::new(Arc::new(client), name).ok()?;
        while conn.is_handshaking() {
            if let Err(e) = conn.complete_io(&mut sock) {
                let presented = e
                    .get_ref()
                    .and_then(|i| i.downcast_ref::<rustls::Error>())
                    .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                return presented.then(|| {
                    "the server speaks TLS on this port (a tls-port): use rediss:// with ca= \
                     (and cert=, key= if it asks for client certificates)"
                        .to_owned()
                });
            }
        }
        None
    })
    .await
    .ok()
    .flatten()
}
