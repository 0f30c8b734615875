//! Redis ACL users (Redis ≥ 7): the conformance suite as a user with exactly the
//! rights the README lists (`redis-acl`), a user missing one right refused at
//! connect with `PermissionDenied` naming it, rights taken away after connect
//! refused on the next request (also inside a script, and for a waiter's `BLPOP`),
//! wrong and unknown credentials `Unauthenticated`, and another service's user
//! unable to delete or overwrite a held lock.

use fencelock::{
    redis::{RedisBackend, RedisConfig, ACL_COMMANDS},
    ErrorKind, LockName, LockState,
};
use fencelock_integration_tests::{
    async_trial, conformance, conformance::within, redis_harness::RedisHarness,
    servers::RedisOptions, servers::RedisServer, TestError, TestResult,
};
use libtest_mimic::Trial;
use std::{
    sync::Arc,
    time::{Duration, Instant},
};

/// The connect and request timeout of the refusal cases; each must fail within it.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The password of every ACL user here.
const PW: &str = "acl-user-pw";

/// The users: name, key pattern, commands (the README's set with one change).
fn users() -> Vec<(&'static str, String, String)> {
    let without = |cmd: &str| {
        ACL_COMMANDS
            .split_whitespace()
            .filter(|c| *c != cmd)
            .collect::<Vec<_>>()
            .join(" ")
    };
    vec![
        // Exactly the documented rights, on the tests' prefix.
        ("locker", "~fltest:*".into(), ACL_COMMANDS.into()),
        // Another service: the same rights on its own prefix.
        ("other", "~other:*".into(), ACL_COMMANDS.into()),
        // One right missing each.
        ("noevalsha", "~fltest:*".into(), without("+evalsha")),
        ("noblpop", "~fltest:*".into(), without("+blpop")),
        ("norpush", "~fltest:*".into(), without("+rpush")),
        ("readonly", "%R~fltest:*".into(), ACL_COMMANDS.into()),
        // Rights taken away while it is connected.
        ("shrinking", "~fltest:*".into(), ACL_COMMANDS.into()),
    ]
}

/// The server with the ACL users and what the cases share.
pub struct Acl {
    server: Arc<RedisServer>,
}

/// Starts the server.
///
/// # Panics
///
/// When redis-server does not start (the caller already required the binary).
pub fn start() -> Acl {
    let acl_users = users()
        .into_iter()
        .map(|(name, keys, commands)| {
            format!("{name} on >{PW} resetkeys {keys} resetchannels -@all {commands}")
        })
        .collect();
    match RedisServer::start(RedisOptions {
        acl_users,
        ..RedisOptions::default()
    }) {
        Ok(server) => Acl {
            server: Arc::new(server),
        },
        Err(e) => panic!("redis-server with ACL users does not start: {e}"),
    }
}

impl Acl {
    /// The conformance suite as `locker` and the ACL cases.
    pub fn trials(&self) -> Vec<Trial> {
        let address = self.server.address();
        let harness = RedisHarness::new(&address).with_user("redis-acl", "locker", PW);
        let mut trials = conformance::trials(Arc::new(harness));
        let s = &self.server;
        trials.extend([
            acl_trial(
                "documented_rights_lock_wait_try_inspect_and_list",
                s,
                documented_rights,
            ),
            acl_trial(
                "a_missing_right_is_refused_at_connect_naming_it",
                s,
                missing_right,
            ),
            acl_trial(
                "rights_taken_after_connect_are_refused_naming_them_also_in_scripts_and_waits",
                s,
                rights_taken,
            ),
            acl_trial(
                "wrong_password_and_unknown_user_are_unauthenticated",
                s,
                wrong_credentials,
            ),
            acl_trial(
                "another_services_user_cannot_delete_or_overwrite_a_held_lock",
                s,
                other_user,
            ),
            async_trial(
                "redis-acl::security::readme_lists_the_tested_rights",
                || async { readme_rule() },
            ),
        ]);
        trials
    }
}

fn acl_trial<F, Fut>(name: &str, server: &Arc<RedisServer>, case: F) -> Trial
where
    F: FnOnce(Arc<RedisServer>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = TestResult>,
{
    let server = server.clone();
    async_trial(format!("redis-acl::security::{name}"), move || case(server))
}

fn url(address: &str, user: &str, password: &str, prefix: &str) -> String {
    let ms = TIMEOUT.as_millis();
    format!(
        "redis://{user}:{password}@{address}?prefix={prefix}&ttl=3s&connect_timeout={ms}ms&request_timeout={ms}ms"
    )
}

/// `fail`'s outcome must be an error of `kind` within [`TIMEOUT`] whose message
/// names every one of `names`; returns the time it took.
async fn refused<T: std::fmt::Debug>(
    what: &str,
    kind: ErrorKind,
    names: &[&str],
    fail: impl std::future::Future<Output = fencelock::Result<T>>,
) -> Result<Duration, TestError> {
    let started = Instant::now();
    let outcome = tokio::time::timeout(TIMEOUT + Duration::from_secs(1), fail)
        .await
        .map_err(|_| TestError::from(format!("{what}: no answer (a hang)")))?;
    let took = started.elapsed();
    let err = match outcome {
        Ok(v) => return Err(TestError::from(format!("{what}: succeeded: {v:?}"))),
        Err(e) => e,
    };
    assert_eq!(err.kind(), kind, "{what}: {err}");
    for name in names {
        assert!(
            err.to_string().contains(name),
            "{what}: the message does not name {name:?}: {err}"
        );
    }
    assert!(!err.to_string().contains(PW), "{what}: {err}");
    assert!(took <= TIMEOUT, "{what}: took {took:?}");
    eprintln!("{what}: {kind:?} in {took:?}: {err}");
    Ok(took)
}

async fn documented_rights(server: Arc<RedisServer>) -> TestResult {
    let address = server.address();
    let u = url(&address, "locker", PW, "fltest:acl-a:");
    let a = fencelock::connect(&u).await?;
    let b = fencelock::connect(&u).await?;
    let held = a.acquire("job").await?;
    assert!(b.try_acquire("job").await?.is_none());
    let waiter = tokio::spawn(async move {
        let guard = b.acquire("job").await?;
        Ok::<_, fencelock::Error>((b, guard))
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let info = a.inspect("job").await?.expect("held lock inspected");
    assert_eq!(info.token, held.token());
    assert_eq!(info.waiters, 1, "{info:?}");
    let listed = a.list("").await?;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let first = held.token();
    held.release().await?;
    let (b, next) = within(Duration::from_secs(2), "waiter granted", waiter).await???;
    assert!(next.token() > first);
    assert_eq!(next.state(), LockState::Held);
    next.release().await?;
    let again = b.try_acquire("job").await?.expect("free lock taken");
    again.release().await?;
    assert_nothing_left(&address, "fltest:acl-a:").await
}

/// No lock key is left under `prefix` (the clients' lease keys live on until the
/// clients are dropped), as the default user sees it.
async fn assert_nothing_left(address: &str, prefix: &str) -> TestResult {
    let admin = RedisBackend::connect(RedisConfig::new(address).with_prefix(prefix)).await?;
    let left: Vec<String> = admin
        .stored_keys()
        .await?
        .into_iter()
        .filter(|k| !k.contains(":lease:"))
        .collect();
    assert_eq!(left, Vec::<String>::new());
    Ok(())
}

async fn missing_right(server: Arc<RedisServer>) -> TestResult {
    let address = server.address();
    let p = "fltest:acl-b:";
    for (user, prefix, names) in [
        ("noevalsha", p, &["evalsha"][..]),
        (
            "noblpop",
            p,
            &[
                "BLPOP refused",
                "noblpop",
                "fltest:acl-b:{fencelock-probe}:w:x",
            ][..],
        ),
        ("norpush", p, &["RPUSH refused"][..]),
        ("readonly", p, &["ZADD", "HSET", "fltest:acl-b:lease:x"][..]),
        // Keys outside its pattern: every keyed command is refused.
        (
            "locker",
            "elsewhere:",
            &["ZADD", "elsewhere:{fencelock-probe}:q", "~elsewhere:*"][..],
        ),
    ] {
        let u = url(&address, user, PW, prefix);
        refused(
            &format!("connect as {user} on {prefix}"),
            ErrorKind::PermissionDenied,
            names,
            fencelock::connect(&u),
        )
        .await?;
    }
    Ok(())
}

async fn rights_taken(server: Arc<RedisServer>) -> TestResult {
    let address = server.address();
    let p = "fltest:acl-c:";
    let holder = fencelock::connect(&url(&address, "locker", PW, p)).await?;
    let c = fencelock::connect(&url(&address, "shrinking", PW, p)).await?;
    let setuser = |rule: &str| -> TestResult {
        let reply = server.command(&["ACL", "SETUSER", "shrinking", rule])?;
        assert!(reply.starts_with("+OK"), "{reply}");
        Ok(())
    };
    // A waiter whose BLPOP is refused says so instead of polling.
    let held = holder.acquire("w").await?;
    let waiting = {
        let c = c.clone();
        tokio::spawn(async move { c.acquire("w").await })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    setuser("-blpop")?;
    // The running BLPOP ends within a second (re-check); the next one is refused.
    let took = refused(
        "a waiter that may no longer BLPOP",
        ErrorKind::PermissionDenied,
        &["blpop", "BLPOP refused on fltest:acl-c:"],
        async {
            waiting
                .await
                .map_err(|e| fencelock::Error::new(ErrorKind::Backend, e.to_string()))?
        },
    )
    .await?;
    eprintln!("waiter refused {took:?} after the right was taken");
    assert_eq!(held.state(), LockState::Held);
    held.release().await?;
    setuser("+blpop")?;
    // Refused inside the enqueue script: a plain ERR from the server, which names
    // nothing; the message names the command from the probe.
    setuser("-zadd")?;
    refused(
        "acquire by a user that may no longer ZADD",
        ErrorKind::PermissionDenied,
        &["ZADD refused on fltest:acl-c:"],
        c.acquire("s"),
    )
    .await?;
    setuser("+zadd")?;
    c.acquire("s").await?.release().await?;
    // Refused at the top level.
    setuser("-evalsha")?;
    refused(
        "acquire by a user that may no longer EVALSHA",
        ErrorKind::PermissionDenied,
        &["evalsha"],
        c.acquire("t"),
    )
    .await?;
    setuser("+evalsha")?;
    assert_nothing_left(&address, p).await
}

async fn wrong_credentials(server: Arc<RedisServer>) -> TestResult {
    let address = server.address();
    let p = "fltest:acl-d:";
    let mut worst = Duration::ZERO;
    for (user, password) in [("locker", "wrong-pw"), ("nobody", PW), ("locker", "")] {
        let took = refused(
            &format!("connect as {user:?} with a wrong password"),
            ErrorKind::Unauthenticated,
            &[],
            fencelock::connect(&url(&address, user, password, p)),
        )
        .await?;
        worst = worst.max(took);
    }
    eprintln!("wrong credentials refused within {worst:?}");
    Ok(())
}

async fn other_user(server: Arc<RedisServer>) -> TestResult {
    let address = server.address();
    let p = "fltest:acl-e:";
    let holder = fencelock::connect(&url(&address, "locker", PW, p)).await?;
    let held = holder.acquire("shared").await?;
    // Through fencelock: the other service cannot even connect on this prefix.
    refused(
        "the other service's user on the holder's prefix",
        ErrorKind::PermissionDenied,
        &["other", "fltest:acl-e:"],
        fencelock::connect(&url(&address, "other", PW, p)),
    )
    .await?;
    // On its own prefix it locks the same name independently.
    let other = fencelock::connect(&url(&address, "other", PW, "other:")).await?;
    let its_own = other.try_acquire("shared").await?.expect("own prefix free");
    // By hand, as `redis-cli --user other`: every write to the holder's keys is refused.
    let admin = RedisBackend::connect(RedisConfig::new(&address).with_prefix(p)).await?;
    let keys = admin.stored_keys().await?;
    let entry = keys
        .iter()
        .find(|k| k.contains(":e:"))
        .ok_or_else(|| TestError::from(format!("no entry among {keys:?}")))?
        .clone();
    let base = admin.lock_base(&LockName::new("shared")?);
    let queue = format!("{base}q");
    let script = "return redis.call('DEL', KEYS[1])";
    let undeclared = format!("return redis.call('DEL', '{entry}')");
    for args in [
        vec!["DEL", entry.as_str()],
        vec!["HSET", entry.as_str(), "t", "1"],
        vec!["PEXPIRE", entry.as_str(), "1"],
        vec!["ZREM", queue.as_str(), "x"],
        vec!["SET", queue.as_str(), "x"],
        vec!["EVAL", script, "1", entry.as_str()],
        vec!["EVAL", undeclared.as_str(), "0"],
    ] {
        let reply = server.command_as("other", PW, &args)?;
        assert!(reply.starts_with("+OK\r\n"), "AUTH: {reply}");
        assert!(
            reply.contains("NOPERM") || reply.contains("can't access"),
            "{args:?} as other: {reply}"
        );
    }
    assert_eq!(held.state(), LockState::Held);
    held.ensure_held()?;
    tokio::time::sleep(Duration::from_millis(1100)).await; // one renewal of the 3 s ttl
    assert_eq!(held.state(), LockState::Held);
    let info = holder.inspect("shared").await?.expect("still held");
    assert_eq!(info.token, held.token());
    its_own.release().await?;
    held.release().await?;
    Ok(())
}

/// The README's `ACL SETUSER` line carries exactly the tested command set.
fn readme_rule() -> TestResult {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))?;
    let line = format!("resetchannels -@all {ACL_COMMANDS}");
    assert!(
        readme.contains(&line),
        "README.md has no ACL SETUSER line with {line:?}"
    );
    Ok(())
}
