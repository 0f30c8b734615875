//! etcd with security on: client TLS with client certificates required, auth with a
//! root user and a `locker` user whose role may read and write only the test prefix
//! (the README's least-privilege recipe), the conformance suite over it (1 and 3
//! members), every bad credential and certificate, another service's user against a
//! held lock, and no secret in any log line or message.

use fencelock::{etcd::EtcdBackend, ErrorKind, LockName};
use fencelock_integration_tests::{
    async_trial,
    conformance::{self, within},
    etcd_harness::{EtcdHarness, EtcdSecurity, TEST_PREFIX},
    secrets::{assert_no_secret, Capture},
    servers::{self, EtcdCluster, EtcdTls, Flaw, Pki},
    TestResult,
};
use libtest_mimic::Trial;
use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

/// The connect timeout the bad-credential cases use; each must fail within it.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// The secured clusters and what their tests share.
pub struct Secured {
    single: EtcdCluster,
    triple: EtcdCluster,
    world: Arc<World>,
}

/// Users, passwords and certificates of the secured clusters.
struct World {
    pki: Pki,
    single: Vec<String>,
    plain: Vec<String>,
    /// (label, secret) of every password and key in play.
    secrets: Vec<(&'static str, String)>,
    locker: EtcdSecurity,
    reader_password: String,
    intruder_password: String,
    nobody_password: String,
}

fn secret() -> String {
    format!("pw-{}", uuid::Uuid::new_v4().simple())
}

/// The least-privilege recipe of the README, on `cluster`, plus the users with
/// fewer rights the tests need.
fn provision(cluster: &mut EtcdCluster, w: &World) -> std::io::Result<()> {
    cluster.enable_auth(&w.locker.root_password)?;
    let prefix = format!("{TEST_PREFIX}/");
    cluster.add_prefix_user("locker", &w.locker.password, "readwrite", &prefix)?;
    // Read-only on the prefix: can look, cannot lock.
    cluster.add_prefix_user("reader", &w.reader_password, "read", &prefix)?;
    // Another service: reads the prefix, writes only its own.
    cluster.add_prefix_user("intruder", &w.intruder_password, "read", &prefix)?;
    cluster.add_prefix_user(
        "intruder",
        &w.intruder_password,
        "readwrite",
        "/other-service/",
    )?;
    // A user with no role at all.
    cluster.ctl(&["user", "add", &format!("nobody:{}", w.nobody_password)])?;
    Ok(())
}

/// Starts the secured clusters, or says why they skip (a failure under CI).
pub fn start() -> Option<Secured> {
    let attempt = || -> std::io::Result<Secured> {
        let pki = Pki::new()?;
        let server = pki.server(Flaw::None)?;
        let client = pki.client("locker", false)?;
        let tls = EtcdTls {
            server,
            ca: pki.ca().to_owned(),
        };
        let mut single = EtcdCluster::start_secured(1, tls.clone())?;
        let mut triple = EtcdCluster::start_secured(3, tls)?;
        let locker = EtcdSecurity {
            user: "locker".into(),
            password: secret(),
            root_password: secret(),
            ca: pki.ca().to_owned(),
            client_cert: client.cert.clone(),
            client_key: client.key.clone(),
        };
        let key = std::fs::read_to_string(&client.key)?;
        let key_body: String = key
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect::<Vec<_>>()
            .concat();
        let world = World {
            single: single.endpoints(),
            plain: single.plain_endpoints(),
            secrets: Vec::new(),
            reader_password: secret(),
            intruder_password: secret(),
            nobody_password: secret(),
            locker,
            pki,
        };
        let mut world = world;
        world.secrets = vec![
            ("the locker password", world.locker.password.clone()),
            ("the root password", world.locker.root_password.clone()),
            ("the reader password", world.reader_password.clone()),
            ("the intruder password", world.intruder_password.clone()),
            ("the nobody password", world.nobody_password.clone()),
            (
                "the client key",
                key_body[..40.min(key_body.len())].to_owned(),
            ),
        ];
        provision(&mut single, &world)?;
        provision(&mut triple, &world)?;
        Ok(Secured {
            single,
            triple,
            world: Arc::new(world),
        })
    };
    match attempt() {
        Ok(s) => Some(s),
        Err(e) if servers::ci() => panic!("secured etcd is required under CI: {e}"),
        Err(e) => {
            eprintln!("skipping the secured etcd tests: {e}");
            None
        }
    }
}

impl Secured {
    /// The conformance suite on both secured clusters and the security cases.
    pub fn trials(&self) -> Vec<Trial> {
        let single = Arc::new(EtcdHarness::secured(
            self.single.endpoints(),
            self.world.locker.clone(),
        ));
        let triple = Arc::new(EtcdHarness::secured(
            self.triple.endpoints(),
            self.world.locker.clone(),
        ));
        let mut trials = conformance::trials(single);
        trials.extend(conformance::trials(triple));
        let w = &self.world;
        trials.push(case(
            "bad_credentials_and_certificates_fail_fast_and_typed",
            w,
            bad_credentials,
        ));
        trials.push(case(
            "fewer_rights_than_the_recipe_are_permission_denied",
            w,
            fewer_rights,
        ));
        trials.push(case("another_user_cannot_break_a_lock", w, another_user));
        trials.push(no_secret_in_logs_trial(w.clone()));
        trials
    }
}

fn case<F, Fut>(name: &str, w: &Arc<World>, f: F) -> Trial
where
    F: FnOnce(Arc<World>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = TestResult> + Send + 'static,
{
    let w = w.clone();
    async_trial(format!("etcd-tls::security::{name}"), move || f(w))
}

impl World {
    /// A URL of `user:password` on `endpoints` under the test prefix, with TLS
    /// options `tls` (`ca=…&cert=…&key=…`, or empty).
    fn url(&self, user: &str, password: &str, endpoints: &[String], tls: &str) -> String {
        format!(
            "etcd://{user}:{password}@{}{TEST_PREFIX}/sec?connect_timeout={}ms{tls}",
            endpoints.join(","),
            CONNECT_TIMEOUT.as_millis()
        )
    }

    fn tls(&self, ca: &std::path::Path, cert: &std::path::Path, key: &std::path::Path) -> String {
        format!(
            "&ca={}&cert={}&key={}",
            ca.display(),
            cert.display(),
            key.display()
        )
    }

    fn good_tls(&self) -> String {
        self.tls(
            &self.locker.ca,
            &self.locker.client_cert,
            &self.locker.client_key,
        )
    }

    fn locker_url(&self) -> String {
        self.url(
            "locker",
            &self.locker.password,
            &self.single,
            &self.good_tls(),
        )
    }

    fn secrets(&self) -> Vec<(&str, &str)> {
        self.secrets.iter().map(|(l, s)| (*l, s.as_str())).collect()
    }
}

/// A one-member secured etcd (no auth) whose server certificate has `flaw`.
fn flawed_server(w: &World, flaw: Flaw) -> std::io::Result<EtcdCluster> {
    EtcdCluster::start_secured(
        1,
        EtcdTls {
            server: w.pki.server(flaw)?,
            ca: w.pki.ca().to_owned(),
        },
    )
}

/// Every bad-credential case: the kind, within the connect timeout, a message that
/// says who refused, and no secret in it. Prints the measured times.
async fn bad_credentials(w: Arc<World>) -> TestResult {
    let flawed = tokio::task::spawn_blocking({
        let w = w.clone();
        move || -> std::io::Result<Vec<(Flaw, EtcdCluster)>> {
            [Flaw::Expired, Flaw::NotYetValid, Flaw::WrongHost]
                .into_iter()
                .map(|f| Ok((f, flawed_server(&w, f)?)))
                .collect()
        }
    })
    .await??;
    let foreign = w.pki.client("locker", true)?;
    let no_cert = format!("&ca={}", w.locker.ca.display());
    let pw = &w.locker.password;
    let mut cases: Vec<(String, String, ErrorKind, &str)> = vec![
        (
            "wrong password".into(),
            w.url("locker", "wrong-password-123", &w.single, &w.good_tls()),
            ErrorKind::Unauthenticated,
            "authentication failed",
        ),
        (
            "unknown user".into(),
            w.url("ghost", pw, &w.single, &w.good_tls()),
            ErrorKind::Unauthenticated,
            "authentication failed",
        ),
        (
            "no client certificate".into(),
            w.url("locker", pw, &w.single, &no_cert),
            ErrorKind::Unauthenticated,
            "tls",
        ),
        (
            "client certificate of another ca".into(),
            w.url(
                "locker",
                pw,
                &w.single,
                &w.tls(&w.locker.ca, &foreign.cert, &foreign.key),
            ),
            ErrorKind::Unauthenticated,
            "tls",
        ),
        (
            "server certificate of another ca".into(),
            w.url(
                "locker",
                pw,
                &w.single,
                &w.tls(
                    w.pki.other_ca(),
                    &w.locker.client_cert,
                    &w.locker.client_key,
                ),
            ),
            ErrorKind::Unauthenticated,
            "tls",
        ),
        (
            "plain-text client against the tls port".into(),
            w.url("locker", pw, &w.single, ""),
            ErrorKind::Unauthenticated,
            "tls",
        ),
        (
            "tls client against a plain-text port".into(),
            w.url("locker", pw, &w.plain, &w.good_tls()),
            ErrorKind::Unauthenticated,
            "tls",
        ),
    ];
    for (flaw, cluster) in &flawed {
        cases.push((
            format!("server certificate {flaw:?}"),
            w.url("locker", pw, &cluster.endpoints(), &w.good_tls()),
            ErrorKind::Unauthenticated,
            "tls",
        ));
    }
    let mut report = String::new();
    let mut failures = Vec::new();
    for (label, url, kind, hint) in cases {
        let started = Instant::now();
        let result = within(CONNECT_TIMEOUT * 3, &label, EtcdBackend::from_url(&url)).await?;
        let took = started.elapsed();
        let err = match result {
            Ok(_) => {
                failures.push(format!("{label}: connected"));
                continue;
            }
            Err(e) => e,
        };
        let text = format!("{err} / {err:?}");
        report.push_str(&format!(
            "  {label:42} {:?} in {took:.2?}: {err}\n",
            err.kind()
        ));
        if std::env::var_os("FENCELOCK_SHOW_SOURCES").is_some() {
            report.push_str(&format!("      {err:?}\n"));
        }
        if let Err(leak) = assert_no_secret(&label, &text, &w.secrets()) {
            failures.push(leak);
        }
        if err.kind() != kind {
            failures.push(format!(
                "{label}: {:?}, expected {kind:?}: {err:?}",
                err.kind()
            ));
        }
        if !err.to_string().to_lowercase().contains(hint) {
            failures.push(format!("{label}: message lacks {hint:?}: {err}"));
        }
        if took > CONNECT_TIMEOUT + Duration::from_millis(500) {
            failures.push(format!("{label}: took {took:?}, over the connect timeout"));
        }
    }
    eprintln!("etcd bad credentials (connect timeout {CONNECT_TIMEOUT:?}):\n{report}");
    drop(flawed);
    match failures.is_empty() {
        true => Ok(()),
        false => Err(failures.join("\n").into()),
    }
}

/// The recipe's rights work (the conformance suite runs on them); fewer rights give
/// `PermissionDenied`, not `Backend` and not a hang.
async fn fewer_rights(w: Arc<World>) -> TestResult {
    let name = LockName::new("job")?;
    // Read-only: connects and inspects, cannot take the lock.
    let reader =
        fencelock::connect(&w.url("reader", &w.reader_password, &w.single, &w.good_tls())).await?;
    assert!(reader.inspect(&name).await?.is_none());
    let lease = reader.lease().await?;
    let err = within(
        Duration::from_secs(10),
        "reader acquire",
        lease.lock(&name)?.try_acquire(),
    )
    .await?
    .expect_err("a read-only user took a lock");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(err.message().contains("permission denied"), "{err}");
    let _ = lease.close().await;
    let _ = reader.close().await;
    // No role: cannot even read the prefix.
    let started = Instant::now();
    let err = fencelock::connect(&w.url("nobody", &w.nobody_password, &w.single, &w.good_tls()))
        .await
        .expect_err("a user without a role connected");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    assert!(
        started.elapsed() < CONNECT_TIMEOUT,
        "{:?}",
        started.elapsed()
    );
    // The recipe needs a prefix: without one the client reads outside it.
    let url = w.locker_url().replace(&format!("{TEST_PREFIX}/sec"), "");
    let err = fencelock::connect(&url)
        .await
        .expect_err("connected with no prefix");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    Ok(())
}

/// A user of another service can read the lock prefix but can neither delete nor
/// overwrite the holder's key; the holder keeps its lock.
async fn another_user(w: Arc<World>) -> TestResult {
    use etcd_client::{
        Certificate, Client, ConnectOptions, DeleteOptions, GetOptions, Identity, TlsOptions,
    };
    let holder = fencelock::connect(&w.locker_url()).await?;
    let name = LockName::new("payroll")?;
    let lease = holder.lease().await?;
    let guard = lease.lock(&name)?.acquire().await?;
    let read = |p: &PathBuf| std::fs::read(p);
    let tls = TlsOptions::new()
        .ca_certificate(Certificate::from_pem(read(&w.locker.ca)?))
        .identity(Identity::from_pem(
            read(&w.locker.client_cert)?,
            read(&w.locker.client_key)?,
        ));
    let options = ConnectOptions::new()
        .with_user("intruder", w.intruder_password.clone())
        .with_tls(tls)
        .with_connect_timeout(CONNECT_TIMEOUT);
    let mut intruder = Client::connect(w.single.clone(), Some(options)).await?;
    let range = format!("{TEST_PREFIX}/sec/payroll/");
    let keys = intruder
        .get(range.clone(), Some(GetOptions::new().with_prefix()))
        .await?;
    let key = keys
        .kvs()
        .first()
        .ok_or("the holder's key is not readable")?
        .key()
        .to_vec();
    let denied = |r: Result<(), etcd_client::Error>, what: &str| -> TestResult {
        match r {
            Err(etcd_client::Error::GRpcStatus(s)) if s.message().contains("permission denied") => {
                Ok(())
            }
            other => Err(format!("{what} by another user: {other:?}").into()),
        }
    };
    denied(
        intruder.delete(key.clone(), None).await.map(drop),
        "deleting the holder's key",
    )?;
    denied(
        intruder
            .delete(range.clone(), Some(DeleteOptions::new().with_prefix()))
            .await
            .map(drop),
        "deleting the lock's range",
    )?;
    denied(
        intruder.put(key.clone(), "mine", None).await.map(drop),
        "overwriting the holder's key",
    )?;
    // Through fencelock too: break_lock is a typed PermissionDenied.
    let other =
        EtcdBackend::from_url(&w.url("intruder", &w.intruder_password, &w.single, &w.good_tls()))
            .await?;
    let err = other
        .break_lock(&name)
        .await
        .expect_err("intruder broke the lock");
    assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{err}");
    let after = intruder.get(key.clone(), None).await?;
    assert_eq!(after.kvs().len(), 1, "the holder's key is gone");
    assert!(guard.is_held(), "the holder lost its lock");
    guard.release().await?;
    let _ = lease.close().await;
    holder.close().await?;
    Ok(())
}

/// Runs a whole secured scenario (connect, lock, inspect, release, refusals) with a
/// subscriber that records every tracing event and span at every level on this
/// thread, then searches it and every Debug/Display collected for a secret.
fn no_secret_in_logs_trial(w: Arc<World>) -> Trial {
    Trial::test(
        "etcd-tls::security::no_secret_in_logs_or_messages",
        move || {
            let capture = Capture::default();
            let texts = tracing::subscriber::with_default(capture.clone(), || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(scenario(&w)).map_err(|e| e.to_string())
            })?;
            let log = capture.text();
            if capture.lines() < 5 {
                return Err(format!("only {} tracing lines recorded", capture.lines()).into());
            }
            assert_no_secret("tracing output", &log, &w.secrets())?;
            assert_no_secret("debug/display output", &texts, &w.secrets())?;
            Ok(())
        },
    )
}

async fn scenario(w: &World) -> Result<String, fencelock_integration_tests::TestError> {
    let mut out = String::new();
    let url = w.locker_url();
    out.push_str(&format!("{}\n", fencelock::url::redact(&url)));
    out.push_str(&format!("{:?}\n", fencelock::url::BackendUrl::parse(&url)?));
    out.push_str(&format!(
        "{:?}\n",
        fencelock::etcd::EtcdConfig::from_url(&url)?
    ));
    let client = fencelock::connect(&url).await?;
    out.push_str(&format!("{client:?}\n"));
    let lease = client.lease().await?;
    out.push_str(&format!("{lease:?}\n"));
    let name = LockName::new("leak-check")?;
    let guard = lease.lock(&name)?.acquire().await?;
    out.push_str(&format!("{guard:?}\n{:?}\n", client.inspect(&name).await?));
    guard.release().await?;
    lease.close().await?;
    client.close().await?;
    for bad in [
        w.url("locker", "wrong-password-123", &w.single, &w.good_tls()),
        w.url("nobody", &w.nobody_password, &w.single, &w.good_tls()),
        w.url("locker", &w.locker.password, &w.single, ""),
    ] {
        let err = fencelock::connect(&bad)
            .await
            .expect_err("bad credentials connected");
        out.push_str(&format!("{err}\n{err:?}\n"));
        let mut source = std::error::Error::source(&err);
        while let Some(s) = source {
            out.push_str(&format!("{s}\n{s:?}\n"));
            source = s.source();
        }
    }
    Ok(out)
}
