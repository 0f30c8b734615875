//! Certificates made at test time for TLS servers and clients: a CA, server and
//! client certificates, and the bad ones a client or server must refuse (expired,
//! not yet valid, another CA, another host name). Nothing is committed; every run
//! makes fresh keys in a temporary directory that is removed on drop.

use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    date_time_ymd, BasicConstraints, Certificate, CertificateParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType,
};
use tempfile::TempDir;

use super::temp_dir;

/// A certificate and its key as PEM files.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
}

/// Which flaw a certificate has, for the refusal tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    /// Valid from 2020 to 2090, for `127.0.0.1` and `localhost`.
    None,
    /// Valid only in 2001.
    Expired,
    /// Valid only from 2090.
    NotYetValid,
    /// Valid, but only for `other.invalid`.
    WrongHost,
}

/// A test PKI: a CA (and a second, unrelated CA) with certificates issued on demand.
#[derive(Debug)]
pub struct Pki {
    dir: TempDir,
    ca: Issuer,
    other_ca: Issuer,
    /// The CA certificate file clients and servers trust.
    ca_file: PathBuf,
    /// The unrelated CA's certificate file.
    other_ca_file: PathBuf,
    serial: std::sync::atomic::AtomicU32,
}

struct Issuer {
    cert: Certificate,
    key: KeyPair,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Issuer { .. }")
    }
}

fn to_io(e: rcgen::Error) -> io::Error {
    io::Error::other(format!("certificate generation: {e}"))
}

impl Issuer {
    fn new(name: &str) -> io::Result<Issuer> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(to_io)?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2095, 1, 1);
        let key = KeyPair::generate().map_err(to_io)?;
        let cert = params.self_signed(&key).map_err(to_io)?;
        Ok(Issuer { cert, key })
    }
}

impl Pki {
    /// Makes the two CAs in a new temporary directory.
    ///
    /// # Errors
    /// When the directory or a file cannot be written.
    pub fn new() -> io::Result<Pki> {
        let dir = temp_dir("fencelock-pki-")?;
        let ca = Issuer::new("fencelock test ca")?;
        let other_ca = Issuer::new("fencelock unrelated ca")?;
        let ca_file = dir.path().join("ca.pem");
        let other_ca_file = dir.path().join("other-ca.pem");
        std::fs::write(&ca_file, ca.cert.pem())?;
        std::fs::write(&other_ca_file, other_ca.cert.pem())?;
        Ok(Pki {
            dir,
            ca,
            other_ca,
            ca_file,
            other_ca_file,
            serial: 0.into(),
        })
    }

    /// The CA certificate (PEM file) to trust.
    pub fn ca(&self) -> &Path {
        &self.ca_file
    }

    /// The unrelated CA's certificate (PEM file): trusting it instead of
    /// [`Pki::ca`] refuses every server certificate of this PKI.
    pub fn other_ca(&self) -> &Path {
        &self.other_ca_file
    }

    /// A server certificate (server and client auth, since etcd members also dial
    /// each other with it) with `flaw`, issued by the CA.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn server(&self, flaw: Flaw) -> io::Result<CertFiles> {
        self.issue("server", flaw, false)
    }

    /// A client certificate whose common name is `user` (etcd maps it to that user
    /// when no password is given), issued by the CA, or by the unrelated CA when
    /// `foreign`.
    ///
    /// # Errors
    /// When a file cannot be written.
    pub fn client(&self, user: &str, foreign: bool) -> io::Result<CertFiles> {
        self.issue(user, Flaw::None, foreign)
    }

    fn issue(&self, name: &str, flaw: Flaw, foreign: bool) -> io::Result<CertFiles> {
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(to_io)?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.subject_alt_names = match flaw {
            Flaw::WrongHost => vec![SanType::DnsName("other.invalid".try_into().map_err(to_io)?)],
            _ => vec![
                SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                SanType::DnsName("localhost".try_into().map_err(to_io)?),
            ],
        };
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        (params.not_before, params.not_after) = match flaw {
            Flaw::Expired => (date_time_ymd(2001, 1, 1), date_time_ymd(2001, 12, 31)),
            Flaw::NotYetValid => (date_time_ymd(2090, 1, 1), date_time_ymd(2094, 1, 1)),
            _ => (date_time_ymd(2020, 1, 1), date_time_ymd(2090, 1, 1)),
        };
        let issuer = if foreign { &self.other_ca } else { &self.ca };
        let key = KeyPair::generate().map_err(to_io)?;
        let cert = params
            .signed_by(&key, &issuer.cert, &issuer.key)
            .map_err(to_io)?;
        let n = self
            .serial
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let stem = format!("{name}-{flaw:?}-{n}").to_lowercase();
        let files = CertFiles {
            cert: self.dir.path().join(format!("{stem}.pem")),
            key: self.dir.path().join(format!("{stem}-key.pem")),
        };
        std::fs::write(&files.cert, cert.pem())?;
        std::fs::write(&files.key, key.serialize_pem())?;
        Ok(files)
    }
}
