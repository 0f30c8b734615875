//! ZooKeeper with digest auth and `acl=creator`: the conformance suite with
//! credentials, another user (or a wrong password, which ZooKeeper cannot tell from
//! another user) can neither take, delete nor overwrite a holder's nodes, the
//! refusals are typed and fast, and no secret shows in any log line or message.
//!
//! TLS to ZooKeeper's secure client port is not tested: lock-zk does not enable
//! zookeeper-client's `tls` feature yet (see the README).

use fencelock::{zk::ZkBackend, ErrorKind, LockName};
use fencelock_integration_tests::{
    async_trial,
    conformance::{self, within},
    secrets::{assert_no_secret, Capture},
    zk_harness::ZkHarness,
    TestError, TestResult,
};
use libtest_mimic::Trial;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// Users and passwords of the digest tests.
struct World {
    servers: String,
    locker: String,
    intruder: String,
}

fn secret() -> String {
    format!("pw-{}", uuid::Uuid::new_v4().simple())
}

/// The conformance suite as `locker` with `acl=creator`, and the security cases.
pub fn trials(servers: &str) -> Vec<Trial> {
    let w = Arc::new(World {
        servers: servers.to_owned(),
        locker: secret(),
        intruder: secret(),
    });
    let harness = Arc::new(
        ZkHarness::new(servers)
            .with_name("zk-digest")
            .with_digest("locker", &w.locker),
    );
    let mut trials = conformance::trials(harness);
    trials.push(case(
        "another_user_cannot_take_break_or_overwrite_a_lock",
        &w,
        another_user,
    ));
    trials.push(no_secret_trial(w));
    trials
}

fn case<F, Fut>(name: &str, w: &Arc<World>, f: F) -> Trial
where
    F: FnOnce(Arc<World>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = TestResult> + Send + 'static,
{
    let w = w.clone();
    async_trial(format!("zk-digest::security::{name}"), move || f(w))
}

impl World {
    /// A URL as `user:password` (none when `user` is empty) under chroot `root`.
    fn url(&self, user: &str, password: &str, root: &str, acl: bool) -> String {
        let userinfo = match user {
            "" => String::new(),
            _ => format!("{user}:{password}@"),
        };
        let acl = if acl { "&acl=creator" } else { "" };
        format!(
            "zk://{userinfo}{}{root}?connect_timeout=2s{acl}",
            self.servers
        )
    }

    fn secrets(&self) -> Vec<(&str, &str)> {
        vec![
            ("the locker password", &self.locker),
            ("the intruder password", &self.intruder),
        ]
    }
}

/// `locker` holds a lock under a creator-only chroot; the intruder (another user),
/// `locker` with a wrong password, and an anonymous client each fail to take it,
/// to delete the holder's node and to overwrite it, with `PermissionDenied`; the
/// holder keeps its lock.
async fn another_user(w: Arc<World>) -> TestResult {
    let root = format!(
        "/fencelock-secure/t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let holder = fencelock::connect(&w.url("locker", &w.locker, &root, true)).await?;
    let name = LockName::new("payroll")?;
    let guard = holder.acquire(&name).await?;
    let mut report = String::new();
    for (label, user, password) in [
        ("another user", "intruder", w.intruder.as_str()),
        ("wrong password", "locker", "wrong-password-123"),
        ("anonymous", "", ""),
    ] {
        let started = Instant::now();
        let other = ZkBackend::from_url(&w.url(user, password, &root, !user.is_empty())).await?;
        let client = fencelock::LockClient::new(other.clone());
        // Reading is open (`acl=creator` gives everyone read).
        let info = client
            .inspect(&name)
            .await?
            .ok_or("the holder is not visible")?;
        assert_eq!(info.token, guard.token());
        let err = within(Duration::from_secs(5), label, client.try_acquire(&name))
            .await?
            .expect_err("another user took the lock");
        let took = started.elapsed();
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{label}: {err}");
        assert!(err.message().contains("acl"), "{label}: {err}");
        let err = other
            .delete_holder(&name)
            .await
            .expect_err("another user deleted the holder's node");
        assert_eq!(err.kind(), ErrorKind::PermissionDenied, "{label}: {err}");
        report.push_str(&format!(
            "  {label:16} PermissionDenied in {took:.2?}: {err}\n"
        ));
        for text in [format!("{err}"), format!("{err:?}")] {
            assert_no_secret(label, &text, &w.secrets())?;
        }
        client.close().await?;
    }
    // Overwriting the node's data: a raw client as the intruder.
    let raw = within(
        Duration::from_secs(5),
        "raw connect",
        zookeeper_client::Client::connector()
            .with_auth("digest", format!("intruder:{}", w.intruder).as_bytes())
            .connect(&w.servers),
    )
    .await??;
    let dir = format!("{root}/payroll");
    let (children, _) = raw.get_children(&dir).await?;
    let node = format!("{dir}/{}", children.first().ok_or("no holder node")?);
    for (what, result) in [
        (
            "set_data",
            raw.set_data(&node, b"mine", None).await.map(drop),
        ),
        ("delete", raw.delete(&node, None).await),
        ("delete dir", raw.delete(&dir, None).await),
    ] {
        match result {
            Err(zookeeper_client::Error::NoAuth) => {}
            other => return Err(format!("{what} by another user: {other:?}").into()),
        }
    }
    assert!(
        raw.check_stat(&node).await?.is_some(),
        "the holder's node is gone"
    );
    assert!(guard.is_held(), "the holder lost its lock");
    eprintln!("zk refusals (acl=creator):\n{report}");
    guard.release().await?;
    holder.close().await?;
    Ok(())
}

/// A whole digest scenario with every tracing event recorded, then searched (with
/// every Debug/Display collected) for the passwords.
fn no_secret_trial(w: Arc<World>) -> Trial {
    Trial::test(
        "zk-digest::security::no_secret_in_logs_or_messages",
        move || {
            let capture = Capture::default();
            let texts = tracing::subscriber::with_default(capture.clone(), || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .map_err(|e| e.to_string())?;
                rt.block_on(scenario(&w)).map_err(|e| e.to_string())
            })?;
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
    let root = format!(
        "/fencelock-secure/t{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let url = w.url("locker", &w.locker, &root, true);
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
    let intruder = fencelock::connect(&w.url("intruder", &w.intruder, &root, true)).await?;
    let err = intruder
        .try_acquire("leak-check")
        .await
        .expect_err("intruder took it");
    out.push_str(&format!("{err}\n{err:?}\n"));
    intruder.close().await?;
    guard.release().await?;
    client.close().await?;
    Ok(out)
}
