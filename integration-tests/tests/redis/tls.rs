//! Redis over TLS (`rediss://`, certificates made at test time): the conformance
//! suite on a server that requires client certificates (`redis-tls`) and on three
//! such masters with Redlock (`redlock-tls`), every bad
//! certificate and the plain/TLS port mix-ups, each typed, within the connect timeout
//! and naming the side that refused, and no key or password in any log line or
//! message.

use fencelock::{redis::RedisConfig, ErrorKind};
use fencelock_integration_tests::{
    async_trial, conformance,
    redis_harness::{RedisHarness, RedlockHarness},
    secrets::{assert_no_secret, Capture},
    servers::{CertFiles, Flaw, Pki, RedisOptions, RedisServer, RedisTls},
    TestError, TestResult,
};
use libtest_mimic::Trial;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// The connect timeout the refusal cases use; each must fail within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The TLS servers and what their tests share.
pub struct Secured {
    world: Arc<World>,
}

/// Certificates and servers.
struct World {
    pki: Pki,
    client: CertFiles,
    /// TLS only, client certificates required.
    secure: RedisServer,
    /// TLS only, client certificates required, a password (for the leak check).
    with_password: RedisServer,
    password: String,
    /// A plain-text server.
    plain: RedisServer,
    /// Three TLS masters (client certificates required) for Redlock.
    masters: Vec<RedisServer>,
    /// The first 40 characters of the client key's base64 body.
    key_body: String,
}

fn tls_options(pki: &Pki, flaw: Flaw, auth_clients: bool) -> std::io::Result<RedisOptions> {
    Ok(RedisOptions {
        tls: Some(RedisTls {
            server: pki.server(flaw)?,
            ca: pki.ca().to_owned(),
            auth_clients,
        }),
        ..RedisOptions::default()
    })
}

/// Starts the TLS servers.
///
/// # Panics
///
/// When redis-server cannot serve TLS (the caller already required the binary).
pub fn start() -> Secured {
    let attempt = || -> std::io::Result<World> {
        let pki = Pki::new()?;
        let secure = RedisServer::start(tls_options(&pki, Flaw::None, true)?)?;
        let password = format!("pw-{}", uuid::Uuid::new_v4().simple());
        let with_password = RedisServer::start(RedisOptions {
            password: Some(password.clone()),
            ..tls_options(&pki, Flaw::None, true)?
        })?;
        let plain = RedisServer::start(RedisOptions::default())?;
        let masters = (0..3)
            .map(|_| RedisServer::start(tls_options(&pki, Flaw::None, true)?))
            .collect::<std::io::Result<Vec<_>>>()?;
        let client = pki.client("locker", false)?;
        let key = std::fs::read_to_string(&client.key)?;
        let body: String = key.lines().filter(|l| !l.starts_with("-----")).collect();
        Ok(World {
            key_body: body[..40.min(body.len())].to_owned(),
            client,
            secure,
            with_password,
            password,
            plain,
            masters,
            pki,
        })
    };
    match attempt() {
        Ok(world) => Secured {
            world: Arc::new(world),
        },
        Err(e) => panic!("redis-server with TLS does not start: {e}"),
    }
}

impl Secured {
    /// The conformance suite over TLS and the TLS security cases.
    pub fn trials(&self) -> Vec<Trial> {
        let w = &self.world;
        let harness = RedisHarness::new(w.secure.address()).with_tls(
            "redis-tls",
            w.pki.ca(),
            Some((w.client.cert.as_path(), w.client.key.as_path())),
        );
        let mut trials = conformance::trials(Arc::new(harness));
        let redlock = RedlockHarness::new(w.masters.iter().map(RedisServer::address).collect())
            .with_tls(
                "redlock-tls",
                w.pki.ca(),
                Some((w.client.cert.as_path(), w.client.key.as_path())),
            );
        trials.extend(conformance::trials(Arc::new(redlock)));
        let bad = w.clone();
        trials.push(async_trial(
            "redis-tls::security::bad_certificates_and_port_mixups_fail_fast_and_typed",
            move || bad_certificates(bad),
        ));
        trials.push(no_secret_trial(w.clone()));
        trials
    }
}

impl World {
    fn tls(ca: &std::path::Path, client: Option<&CertFiles>) -> String {
        let mut tls = format!("&ca={}", ca.display());
        if let Some(c) = client {
            tls += &format!("&cert={}&key={}", c.cert.display(), c.key.display());
        }
        tls
    }

    fn url(scheme: &str, address: &str, tls: &str) -> String {
        format!(
            "{scheme}://{address}?connect_timeout={}ms{tls}",
            CONNECT_TIMEOUT.as_millis()
        )
    }

    fn good_tls(&self) -> String {
        Self::tls(self.pki.ca(), Some(&self.client))
    }

    fn secrets(&self) -> Vec<(&str, &str)> {
        vec![
            ("the password", &self.password),
            ("the client key", &self.key_body),
        ]
    }
}

/// Every bad certificate and port mix-up: `Unauthenticated`, within the connect
/// timeout, a message naming the side that refused, no secret. Prints the times.
async fn bad_certificates(w: Arc<World>) -> TestResult {
    let flawed = [Flaw::Expired, Flaw::NotYetValid, Flaw::WrongHost]
        .into_iter()
        .map(|flaw| Ok((flaw, RedisServer::start(tls_options(&w.pki, flaw, false)?)?)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let foreign = w.pki.client("locker", true)?;
    let ca = w.pki.ca();
    let secure = w.secure.address();
    let mut cases: Vec<(String, String, &str)> = vec![
        (
            "server certificate of another ca".into(),
            World::url(
                "rediss",
                &secure,
                &World::tls(w.pki.other_ca(), Some(&w.client)),
            ),
            "client refused the server's certificate",
        ),
        (
            "no ca: the system's roots".into(),
            World::url("rediss", &secure, ""),
            "client refused the server's certificate",
        ),
        (
            "no client certificate".into(),
            World::url("rediss", &secure, &World::tls(ca, None)),
            "server refused",
        ),
        (
            "client certificate of another ca".into(),
            World::url("rediss", &secure, &World::tls(ca, Some(&foreign))),
            "server refused",
        ),
        (
            "plain-text client against the tls port".into(),
            World::url("redis", &secure, ""),
            "speaks tls",
        ),
        (
            "tls client against a plain-text port".into(),
            World::url("rediss", &w.plain.address(), &w.good_tls()),
            "does not speak tls",
        ),
    ];
    let masters: Vec<String> = w.masters.iter().map(RedisServer::address).collect();
    cases.push((
        "redlock without client certificate".into(),
        World::url(
            "redlock",
            &masters.join(","),
            &format!("&tls=true{}", World::tls(ca, None)),
        ),
        "server refused",
    ));
    for (flaw, server) in &flawed {
        cases.push((
            format!("server certificate {flaw:?}"),
            World::url("rediss", &server.address(), &w.good_tls()),
            "client refused the server's certificate",
        ));
    }
    let mut report = String::new();
    let mut failures = Vec::new();
    for (label, url, hint) in cases {
        let started = Instant::now();
        let result = tokio::time::timeout(CONNECT_TIMEOUT * 3, fencelock::connect(&url))
            .await
            .map_err(|_| format!("{label}: hung past 3 × the connect timeout"))?;
        let took = started.elapsed();
        let err = match result {
            Ok(_) => {
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
    eprintln!("redis tls refusals (connect timeout {CONNECT_TIMEOUT:?}):\n{report}");
    drop(flawed);
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("\n").into()),
    }
}

/// A whole TLS + password scenario, and a refused one, with every tracing event
/// recorded, then searched (with every Debug/Display collected) for the password and
/// the client key.
fn no_secret_trial(w: Arc<World>) -> Trial {
    Trial::test(
        "redis-tls::security::no_secret_in_logs_or_messages",
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
            if capture.lines() < 1 {
                return Err(format!("only {} tracing lines recorded", capture.lines()).into());
            }
            assert_no_secret("tracing output", &capture.text(), &w.secrets())?;
            assert_no_secret("debug/display output", &texts, &w.secrets())?;
            Ok(())
        },
    )
}

async fn scenario(w: &World) -> Result<String, TestError> {
    let address = w.with_password.address();
    let url = format!(
        "rediss://:{}@{address}?connect_timeout=5s{}",
        w.password,
        w.good_tls()
    );
    let mut out = format!(
        "{}\n{:?}\n{:?}\n",
        fencelock::url::redact(&url),
        fencelock::url::BackendUrl::parse(&url)?,
        RedisConfig::from_url(&url)?
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
    for refused in [
        format!(
            "rediss://:{}@{address}?connect_timeout=2s{}",
            w.password,
            World::tls(w.pki.ca(), None)
        ),
        format!(
            "rediss://:wrong-{}@{address}?connect_timeout=2s{}",
            w.password,
            w.good_tls()
        ),
    ] {
        let err = fencelock::connect(&refused)
            .await
            .expect_err("a refused connect");
        out.push_str(&format!("{err}\n{err:?}\n"));
    }
    Ok(out)
}
