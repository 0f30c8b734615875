//! ZooKeeper with client TLS on its secure client port (`ssl.clientAuth=need`,
//! certificates made at test time): the conformance suite over TLS with digest auth
//! and `acl=creator` on one server (`zk-tls`) and over TLS on three (`zk-tls-3`),
//! every bad certificate and the plain/TLS port mix-ups, each typed, fast and
//! telling which side refused, and no secret in any log line or message.

use fencelock::{zk::ZkBackend, ErrorKind};
use fencelock_integration_tests::{
    async_trial, conformance,
    secrets::{assert_no_secret, Capture},
    servers::{self, CertFiles, ClientAuth, Flaw, Pki, ZkEnsemble, ZkOptions, ZkTls},
    zk_harness::ZkHarness,
    TestError, TestResult,
};
use libtest_mimic::Trial;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// The connect timeout the bad-certificate cases use; each must fail within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The secured servers and what their tests share.
pub struct Secured {
    single: ZkEnsemble,
    triple: Option<ZkEnsemble>,
    world: Arc<World>,
}

/// Certificates, the digest password and the servers' addresses.
struct World {
    pki: Pki,
    client: CertFiles,
    password: String,
    /// The single server's secure client port (`127.0.0.1:PORT`).
    secure: String,
    /// Its plain client port.
    plain: String,
    /// The first 40 characters of the client key's base64 body.
    key_body: String,
}

fn secret() -> String {
    format!("pw-{}", uuid::Uuid::new_v4().simple())
}

/// The servers' TLS settings: `server` certificate, client certificates required.
fn server_tls(pki: &Pki, flaw: Flaw) -> std::io::Result<ZkTls> {
    Ok(ZkTls {
        server: pki.server(flaw)?,
        ca: pki.ca().to_owned(),
        client_auth: ClientAuth::Need,
    })
}

/// Starts a secured single server and, if `triple`, a secured 3-server ensemble,
/// or says why they skip (a failure under CI).
pub fn start(triple: bool) -> Option<Secured> {
    let attempt = || -> std::io::Result<Secured> {
        let pki = Pki::new()?;
        let tls = server_tls(&pki, Flaw::None)?;
        let three = {
            let tls = tls.clone();
            std::thread::spawn(move || {
                triple
                    .then(|| ZkEnsemble::start_secured(3, ZkOptions::default(), tls))
                    .transpose()
            })
        };
        let single = ZkEnsemble::start_secured(1, ZkOptions::default(), tls)?;
        let triple = three
            .join()
            .map_err(|_| std::io::Error::other("starting 3 servers panicked"))??;
        let client = pki.client("locker", false)?;
        let key = std::fs::read_to_string(&client.key)?;
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        let world = World {
            client,
            password: secret(),
            secure: single.secure_connect_string(),
            plain: single.connect_string(),
            key_body: body[..40.min(body.len())].to_owned(),
            pki,
        };
        Ok(Secured {
            single,
            triple,
            world: Arc::new(world),
        })
    };
    match attempt() {
        Ok(s) => Some(s),
        Err(e) if servers::ci() => panic!("ZooKeeper with TLS is required under CI: {e}"),
        Err(e) => {
            eprintln!("skipping the zk tls tests: {e}");
            None
        }
    }
}

impl Secured {
    /// The conformance suites over TLS and the TLS security cases.
    pub fn trials(&self) -> Vec<Trial> {
        let w = &self.world;
        let identity = Some((w.client.cert.as_path(), w.client.key.as_path()));
        let single = ZkHarness::new(&w.secure)
            .with_name("zk-tls")
            .with_digest("locker", &w.password)
            .with_tls(w.pki.ca(), identity);
        let mut trials = conformance::trials(Arc::new(single));
        if let Some(triple) = &self.triple {
            let harness = ZkHarness::new(triple.secure_connect_string())
                .with_name("zk-tls-3")
                .with_tls(w.pki.ca(), identity);
            trials.extend(conformance::trials(Arc::new(harness)));
        }
        let w = w.clone();
        trials.push(async_trial(
            "zk-tls::security::bad_certificates_and_port_mixups_fail_fast_and_typed",
            {
                let w = w.clone();
                move || bad_certificates(w)
            },
        ));
        trials.push(no_secret_trial(w));
        trials
    }

    /// Stops the servers.
    pub fn stop(self) {
        drop(self.triple);
        drop(self.single);
    }
}

impl World {
    /// A `zk://` URL of `locker` on `hosts` with the TLS options `tls`.
    fn url(&self, hosts: &str, tls: &str) -> String {
        format!(
            "zk://locker:{}@{hosts}/fencelock-secure/tls?connect_timeout={}ms&acl=creator{tls}",
            self.password,
            CONNECT_TIMEOUT.as_millis()
        )
    }

    fn tls(ca: &std::path::Path, client: Option<&CertFiles>) -> String {
        let mut tls = format!("&ca={}", ca.display());
        if let Some(c) = client {
            tls += &format!("&cert={}&key={}", c.cert.display(), c.key.display());
        }
        tls
    }

    fn good_tls(&self) -> String {
        Self::tls(self.pki.ca(), Some(&self.client))
    }

    fn secrets(&self) -> Vec<(&str, &str)> {
        vec![
            ("the digest password", &self.password),
            ("the client key", &self.key_body),
        ]
    }
}

/// Every bad certificate and port mix-up: `Unauthenticated`, within the connect
/// timeout, a message naming the side that refused, no secret. Prints the times.
async fn bad_certificates(w: Arc<World>) -> TestResult {
    let flawed = tokio::task::spawn_blocking({
        let w = w.clone();
        move || -> std::io::Result<Vec<(Flaw, ZkEnsemble)>> {
            let starts: Vec<_> = [Flaw::Expired, Flaw::NotYetValid, Flaw::WrongHost]
                .into_iter()
                .map(|flaw| {
                    let tls = server_tls(&w.pki, flaw);
                    std::thread::spawn(move || {
                        Ok((
                            flaw,
                            ZkEnsemble::start_secured(1, ZkOptions::default(), tls?)?,
                        ))
                    })
                })
                .collect();
            starts
                .into_iter()
                .map(|s| {
                    s.join()
                        .map_err(|_| std::io::Error::other("start panicked"))?
                })
                .collect()
        }
    })
    .await??;
    let foreign = w.pki.client("locker", true)?;
    let ca = w.pki.ca();
    let mut cases: Vec<(String, String, &str)> = vec![
        (
            "server certificate of another ca".into(),
            w.url(&w.secure, &World::tls(w.pki.other_ca(), Some(&w.client))),
            "client refused the server's certificate",
        ),
        (
            "no client certificate".into(),
            w.url(&w.secure, &World::tls(ca, None)),
            "server",
        ),
        (
            "client certificate of another ca".into(),
            w.url(&w.secure, &World::tls(ca, Some(&foreign))),
            "server",
        ),
        (
            "plain-text client against the tls port".into(),
            w.url(&w.secure, ""),
            "speaks tls",
        ),
        (
            "tls client against a plain-text port".into(),
            w.url(&w.plain, &w.good_tls()),
            "plain-text client port",
        ),
    ];
    for (flaw, ensemble) in &flawed {
        cases.push((
            format!("server certificate {flaw:?}"),
            w.url(&ensemble.secure_connect_string(), &w.good_tls()),
            "client refused the server's certificate",
        ));
    }
    let mut report = String::new();
    let mut failures = Vec::new();
    for (label, url, hint) in cases {
        let started = Instant::now();
        let result = tokio::time::timeout(CONNECT_TIMEOUT * 3, async {
            // A lease opens a session: the connect that must fail.
            let backend = ZkBackend::from_url(&url).await?;
            fencelock::LockClient::new(backend)
                .session()
                .await
                .map(drop)
        })
        .await
        .map_err(|_| format!("{label}: hung past 3 × the connect timeout"))?;
        let took = started.elapsed();
        let err = match result {
            Ok(()) => {
                failures.push(format!("{label}: connected"));
                continue;
            }
            Err(e) => e,
        };
        report.push_str(&format!(
            "  {label:42} {:?} in {took:.2?}: {err}\n",
            err.kind()
        ));
        if let Err(leak) = assert_no_secret(&label, &format!("{err} / {err:?}"), &w.secrets()) {
            failures.push(leak);
        }
        if err.kind() != ErrorKind::Unauthenticated {
            failures.push(format!(
                "{label}: {:?}, expected Unauthenticated: {err}",
                err.kind()
            ));
        }
        if !err
            .to_string()
            .to_lowercase()
            .contains(&hint.to_lowercase())
        {
            failures.push(format!("{label}: message lacks {hint:?}: {err}"));
        }
        if took > CONNECT_TIMEOUT + Duration::from_millis(500) {
            failures.push(format!("{label}: took {took:?}, over the connect timeout"));
        }
    }
    eprintln!("zk tls refusals (connect timeout {CONNECT_TIMEOUT:?}):\n{report}");
    drop(flawed);
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("\n").into()),
    }
}

/// A whole TLS + digest scenario, and a refused one, with every tracing event
/// recorded, then searched (with every Debug/Display collected) for the password and
/// the client key.
fn no_secret_trial(w: Arc<World>) -> Trial {
    Trial::test(
        "zk-tls::security::no_secret_in_logs_or_messages",
        move || {
            let capture = Capture::default();
            let texts = tracing::subscriber::with_default(capture.clone(), || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(scenario(&w)).map_err(|e| e.to_string())
            });
            let texts = texts?;
            if capture.lines() < 3 {
                return Err(format!("only {} tracing lines recorded", capture.lines()).into());
            }
            assert_no_secret("tracing output", &capture.text(), &w.secrets())?;
            assert_no_secret("debug/display output", &texts, &w.secrets())?;
            Ok(())
        },
    )
}

async fn scenario(w: &World) -> Result<String, TestError> {
    // The bad-certificate case may be starting servers meanwhile: a patient connect.
    let url = w.url(&w.secure, &w.good_tls()).replace(
        &format!("connect_timeout={}ms", CONNECT_TIMEOUT.as_millis()),
        "connect_timeout=5s",
    );
    let mut out = format!(
        "{}\n{:?}\n{:?}\n",
        fencelock::url::redact(&url),
        fencelock::url::BackendUrl::parse(&url)?,
        fencelock::zk::ZkConfig::from_url(&url)?
    );
    let client = fencelock::connect(&url).await?;
    out.push_str(&format!("{client:?}\n"));
    let guard = client.acquire("leak-check").await?;
    out.push_str(&format!(
        "{guard:?}\n{:?}\n",
        client.inspect("leak-check").await?
    ));
    guard.release().await?;
    client.close().await?;
    let refused = w.url(&w.secure, &World::tls(w.pki.ca(), None));
    let err = match fencelock::connect(&refused).await {
        Ok(c) => c
            .session()
            .await
            .map(drop)
            .expect_err("connected without a certificate"),
        Err(e) => e,
    };
    out.push_str(&format!("{err}\n{err:?}\n"));
    Ok(out)
}
