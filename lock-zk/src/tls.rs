//! TLS to ZooKeeper's secure client port: zookeeper-client's options from the URL's
//! `ca`, `cert` and `key` files, and a probe that says why a connect failed.
//!
//! zookeeper-client swallows the reason of a failed TLS handshake (it logs it at
//! debug level and tries the next server until the session timeout), so a refused
//! certificate would look like an unreachable server. When a connect has not
//! succeeded after [`PROBE_AFTER`], [`probe`] runs one handshake of its own against
//! every server, with the same files, and reports what refused it:
//!
//! - the client refused the server's certificate (rustls's reason: expired, not yet
//!   valid, not valid for the host name, unknown issuer, ...);
//! - the server refused the client (a TLS alert, e.g. a missing or untrusted client
//!   certificate);
//! - the server does not speak TLS on that port (a plain-text port), or, for a client
//!   without `ca`, it does (a secure port).
//!
//! When every server refused, connecting fails at once with
//! [`ErrorKind::Unauthenticated`]; otherwise the findings are added to the message of
//! the connect's own failure. The probe never sends a ZooKeeper request and never
//! shows key material.

use crate::config::ZkConfig;
use lock_core::{Error, ErrorKind, Result};
use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::{
    net::{TcpStream, ToSocketAddrs},
    path::Path,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

/// How long a connect may go without success before the probe looks for a refusal.
pub(crate) const PROBE_AFTER: Duration = Duration::from_millis(150);

/// How long the probe waits after a TLS 1.3 handshake for an alert: the server checks
/// the client's certificate only after the client considers the handshake done.
const ALERT_WAIT: Duration = Duration::from_millis(300);

/// The process-wide rustls crypto provider: zookeeper-client's rustls has both ring and
/// aws-lc-rs compiled in, and then asks for an installed default. Installs ring (the
/// one etcd's client uses) unless another was installed first.
pub(crate) fn install_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race to another installer is fine: any provider works.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidConfig,
            format!("cannot read tls file {}: {e}", path.display()),
        )
        .with_source(e)
    })
}

fn bad_file(path: &Path, what: &str, e: impl std::fmt::Display) -> Error {
    Error::new(
        ErrorKind::InvalidConfig,
        format!("tls file {} holds no usable {what}: {e}", path.display()),
    )
}

/// zookeeper-client's TLS options for `config`, `None` without `ca`.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] when a file cannot be read or holds no certificate or
/// key (the message names the file, never its content).
pub(crate) fn options(config: &ZkConfig) -> Result<Option<zookeeper_client::TlsOptions>> {
    let Some(ca) = config.tls_ca() else {
        return Ok(None);
    };
    install_provider();
    let mut options = zookeeper_client::TlsOptions::new()
        .with_pem_ca(&read(ca)?)
        .map_err(|e| bad_file(ca, "ca certificate", e))?;
    if let Some((cert, key)) = config.tls_identity() {
        options = options
            .with_pem_identity(&read(cert)?, &read(key)?)
            .map_err(|e| bad_file(cert, "certificate and key", e))?;
    }
    Ok(Some(options))
}

/// A rustls client config like zookeeper-client's for `config` (its CA, its client
/// certificate), or, without `ca`, one that only records whether the server presented
/// a certificate at all (and then refuses it).
fn probe_config(config: &ZkConfig, spoke_tls: &Arc<AtomicBool>) -> Result<ClientConfig> {
    install_provider();
    let builder = ClientConfig::builder();
    let Some(ca) = config.tls_ca() else {
        return Ok(builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(Detector(spoke_tls.clone())))
            .with_no_client_auth());
    };
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(read(ca)?.as_bytes()) {
        let cert = cert.map_err(|e| bad_file(ca, "ca certificate", e))?;
        roots
            .add(cert)
            .map_err(|e| bad_file(ca, "ca certificate", e))?;
    }
    let builder = builder.with_root_certificates(roots);
    match config.tls_identity() {
        None => Ok(builder.with_no_client_auth()),
        Some((cert, key)) => {
            let chain = CertificateDer::pem_slice_iter(read(cert)?.as_bytes())
                .collect::<std::result::Result<Vec<_>, _>>()
                .map_err(|e| bad_file(cert, "certificate", e))?;
            let key_der = PrivateKeyDer::from_pem_slice(read(key)?.as_bytes())
                .map_err(|e| bad_file(key, "private key", e))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| bad_file(key, "private key for the certificate", e))
        }
    }
}

/// What one server's probe found: `Some(reason)` when the TLS layer refused, with the
/// side that refused.
pub(crate) type Finding = (String, Option<String>);

/// Probes every server of `config` (in parallel, each within `limit`).
pub(crate) async fn probe(config: &ZkConfig, limit: Duration) -> Vec<Finding> {
    let probes = config.hosts().iter().map(|host| {
        let (host, config) = (host.clone(), config.clone());
        tokio::task::spawn_blocking(move || {
            let spoke_tls = Arc::new(AtomicBool::new(false));
            let client = Arc::new(probe_config(&config, &spoke_tls).ok()?);
            let tls = config.tls_ca().is_some();
            let finding = probe_one(&host, client, tls, &spoke_tls, limit);
            Some((host, finding))
        })
    });
    futures::future::join_all(probes)
        .await
        .into_iter()
        .filter_map(|r| r.ok().flatten())
        .collect()
}

/// One handshake with `host`; `Some(reason)` when TLS refused.
fn probe_one(
    host: &str,
    client: Arc<ClientConfig>,
    tls: bool,
    spoke_tls: &AtomicBool,
    limit: Duration,
) -> Option<String> {
    let deadline = Instant::now() + limit;
    let left = || {
        deadline
            .saturating_duration_since(Instant::now())
            .max(Duration::from_millis(1))
    };
    let (name, _) = host.rsplit_once(':')?;
    let name = name.trim_start_matches('[').trim_end_matches(']');
    let addr = host.to_socket_addrs().ok()?.next()?;
    let mut sock = TcpStream::connect_timeout(&addr, limit).ok()?;
    let server_name = ServerName::try_from(name.to_owned()).ok()?;
    let mut conn = ClientConnection::new(client, server_name).ok()?;
    let mut answered = false;
    let handshake = loop {
        sock.set_read_timeout(Some(left())).ok()?;
        sock.set_write_timeout(Some(left())).ok()?;
        match conn.complete_io(&mut sock) {
            Ok((read, _)) => answered |= read > 0,
            Err(e) => break Err(e),
        }
        if !conn.is_handshaking() {
            break Ok(());
        }
    };
    if !tls {
        // A plain client: only whether the server speaks TLS matters.
        return spoke_tls.load(Ordering::SeqCst).then(|| {
            "the server speaks TLS on this port (a secure client port): the url needs ca= \
             (and cert=, key= if the server asks for client certificates)"
                .to_owned()
        });
    }
    if let Err(e) = handshake {
        let rustls = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
        return Some(match rustls {
            Some(r) => describe(r),
            None if !answered => format!(
                "the server closed the connection without answering the TLS hello \
                 (a plain-text client port?): {e}"
            ),
            None => format!("tls handshake failed: {e}"),
        });
    }
    // TLS 1.3: the server judges the client's certificate after the client finished
    // its handshake; a refusal comes as an alert or a close. Silence means accepted.
    let quiet_until = Instant::now() + ALERT_WAIT.min(left());
    loop {
        let wait = quiet_until.saturating_duration_since(Instant::now());
        if wait.is_zero() {
            return None;
        }
        sock.set_read_timeout(Some(wait)).ok()?;
        match conn.read_tls(&mut sock) {
            Ok(0) => {
                return Some(
                    "the server closed the connection after the TLS handshake \
                     (it refused the client's certificate?)"
                        .to_owned(),
                )
            }
            Ok(_) => {
                if let Err(e) = conn.process_new_packets() {
                    return Some(describe(&e));
                }
            }
            Err(_) => return None,
        }
    }
}

/// Which side refused and why, from rustls's error.
fn describe(e: &rustls::Error) -> String {
    match e {
        rustls::Error::InvalidCertificate(why) => {
            format!("the client refused the server's certificate: {why}")
        }
        rustls::Error::AlertReceived(alert) => format!(
            "the server refused the TLS handshake with alert {alert:?} \
             (a missing, expired or untrusted client certificate?)"
        ),
        rustls::Error::InvalidMessage(_)
        | rustls::Error::InappropriateMessage { .. }
        | rustls::Error::InappropriateHandshakeMessage { .. } => {
            "the server does not speak TLS on this port (a plain-text client port?)".to_owned()
        }
        other => format!("tls handshake failed: {other}"),
    }
}

/// A verifier for the plain client's probe: notes that the server presented a
/// certificate, then refuses it, so the probe never completes a handshake.
#[derive(Debug)]
struct Detector(Arc<AtomicBool>);

impl ServerCertVerifier for Detector {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        self.0.store(true, Ordering::SeqCst);
        Err(rustls::Error::General("probe only".into()))
    }

    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("probe only".into()))
    }

    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("probe only".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Runs `connecting` for at most `limit`. If it has not finished after
/// [`PROBE_AFTER`], [`probe`]s every server meanwhile: when each one refused TLS,
/// fails at once. Returns the connect's outcome (`None`: timed out) and what the
/// probe found (empty when it did not run).
///
/// # Errors
///
/// [`ErrorKind::Unauthenticated`] when every server refused TLS, naming each server,
/// the side that refused and why.
pub(crate) async fn watch<T>(
    config: &ZkConfig,
    limit: Duration,
    connecting: impl std::future::Future<Output = T>,
) -> Result<(Option<T>, Vec<Finding>)> {
    let connecting = tokio::time::timeout(limit, connecting);
    tokio::pin!(connecting);
    let probing = async {
        tokio::time::sleep(PROBE_AFTER).await;
        probe(config, limit.saturating_sub(PROBE_AFTER)).await
    };
    let findings = tokio::select! {
        outcome = &mut connecting => return Ok((outcome.ok(), Vec::new())),
        findings = probing => findings,
    };
    let refused = findings.iter().filter(|(_, f)| f.is_some()).count();
    if refused > 0 && refused == config.hosts().len() {
        return Err(Error::new(
            ErrorKind::Unauthenticated,
            format!(
                "tls to zookeeper at {} failed:{}",
                config.hosts().join(","),
                summary(&findings)
            ),
        ));
    }
    Ok((connecting.await.ok(), findings))
}

/// The probe's refusals as ` host: reason; …`, empty when none.
pub(crate) fn summary(findings: &[Finding]) -> String {
    findings
        .iter()
        .filter_map(|(host, f)| f.as_ref().map(|f| format!(" {host}: {f}")))
        .collect::<Vec<_>>()
        .join(";")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_name_the_side_that_refused() {
        let expired = rustls::Error::InvalidCertificate(rustls::CertificateError::Expired);
        assert!(describe(&expired).starts_with("the client refused the server's certificate"));
        let alert = rustls::Error::AlertReceived(rustls::AlertDescription::BadCertificate);
        assert!(describe(&alert).contains("the server refused"));
        let plain = rustls::Error::InvalidMessage(rustls::InvalidMessage::InvalidContentType);
        assert!(describe(&plain).contains("does not speak TLS"));
        let findings = vec![
            ("a:1".to_owned(), Some("why".to_owned())),
            ("b:2".to_owned(), None),
        ];
        assert_eq!(summary(&findings), " a:1: why");
    }

    #[test]
    fn unreadable_tls_files_are_invalid_config() {
        let cfg = ZkConfig::new(["h:1"]).with_tls_ca("/nonexistent/ca.pem");
        let err = options(&cfg).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidConfig);
        assert!(err.message().contains("/nonexistent/ca.pem"), "{err}");
        assert!(options(&ZkConfig::new(["h:1"])).unwrap().is_none());
    }
}
