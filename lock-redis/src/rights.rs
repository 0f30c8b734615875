//! The ACL rights fencelock needs, checked at connect with one read-only script
//! (`redis.acl_check_cmd`, Redis ≥ 7) so that a user missing one fails the connect
//! with [`ErrorKind::PermissionDenied`] naming the refused command and key, instead
//! of the first acquire (or, worse, a release with a waiter) failing half-way.
//!
//! The same check names the refused right when a request is refused later (the
//! user's rights were changed after connect): a command refused inside a script
//! comes back as a bare "can't run this command" that names neither.
//!
//! This file holds the list, the probe script and the reading of its answer; the
//! connection (`conn.rs`) runs the probe.

use crate::config::RedisConfig;
use lock_core::{Error, ErrorKind, Result};

/// The commands a Redis 7 ACL user of fencelock needs, in `ACL SETUSER` syntax:
/// every command `redis://` and `redlock://` clients send, top level and inside
/// their scripts (scripts run with the caller's rights, command by command and key
/// by key). Give them with the key pattern `~<prefix>*` and nothing else:
///
/// ```text
/// ACL SETUSER locker on >PASSWORD resetkeys ~fl:* resetchannels -@all <ACL_COMMANDS>
/// ```
///
/// `+scan` is needed only by `list` (a user without it may lock; connecting logs a
/// warning). `SCAN` is not limited by key patterns: it shows the user the *names*
/// of other keys. With a database other than 0 (`/db` in the URL) add `+select`.
/// `CONFIG GET` is not in the list on purpose (it would show the whole
/// configuration): without it the connect cannot read `maxmemory-policy` and logs a
/// warning; check `noeviction` on the server yourself.
pub const ACL_COMMANDS: &str = "+ping +evalsha +script|load +time +blpop +set +get +del +exists +pttl +pexpire +hget +hmget +hset +zadd +zrem +zrank +zscore +zrange +zcount +zremrangebyscore +rpush +scan";

/// Answers `{refused, optional refused}` (each a list of `COMMAND key …` lines), or
/// nil when the server has no `redis.acl_check_cmd` (Redis < 7: nothing checked).
/// `ARGV[1]` is the key prefix. Read only: it checks, it runs nothing.
const PROBE: &str = r"
if not redis.acl_check_cmd then return false end
local p = ARGV[1]
local b = p .. '{fencelock-probe}:'
local e, q, t, w, l, lock, wq = b .. 'e:x', b .. 'q', b .. 't', b .. 'w:x', p .. 'lease:x', b .. 'lock', b .. 'wq'
local need = {
  {'SCRIPT', 'LOAD', 'return 1'}, {'PING'}, {'TIME'},
  {'SET', l, '1', 'PX', '1000'}, {'PEXPIRE', l, '1000'}, {'EXISTS', l}, {'DEL', l},
  {'EXISTS', e}, {'PTTL', e}, {'PEXPIRE', e, '1000'}, {'HGET', e, 't'}, {'HMGET', e, 't'},
  {'HSET', e, 't', '1'}, {'DEL', e},
  {'ZRANGE', q, '0', '0'}, {'ZRANK', q, 'x'}, {'ZSCORE', q, 'x'}, {'ZADD', q, '1', 'x'},
  {'ZREM', q, 'x'},
  {'GET', t}, {'SET', t, '1', 'PX', '1000', 'GET'},
  {'BLPOP', w, '1'}, {'RPUSH', w, '1'}, {'PEXPIRE', w, '1000'}, {'DEL', w},
  {'HGET', lock, 'i'}, {'HSET', lock, 'i', 'x'}, {'DEL', lock},
  {'ZADD', wq, '1', 'x'}, {'ZREMRANGEBYSCORE', wq, '-inf', '1'}, {'ZCOUNT', wq, '1', '+inf'},
}
local optional = { {'SCAN', '0', 'MATCH', p .. '*'} }
local function refused(list)
  local out = {}
  for _, c in ipairs(list) do
    if not redis.acl_check_cmd(unpack(c)) then table.insert(out, table.concat(c, ' ')) end
  end
  return out
end
return {refused(need), refused(optional)}
";

/// The probe script.
pub(crate) fn probe_script() -> redis::Script {
    redis::Script::new(PROBE)
}

/// What the probe found, `(refused, optional refused)`: `None` when the server
/// cannot tell (Redis < 7).
pub(crate) type Refused = Option<(Vec<String>, Vec<String>)>;

/// Who the connection authenticates as, for messages.
fn user(config: &RedisConfig) -> String {
    match config.user() {
        Some(u) => format!("redis user {u:?}"),
        None => "the redis default user".to_owned(),
    }
}

/// The error naming `refused` (lines of the probe): the refused commands, then the
/// keys they were checked on.
fn denied(config: &RedisConfig, refused: &[String]) -> Error {
    let mut commands: Vec<&str> = Vec::new();
    let mut keys: Vec<&str> = Vec::new();
    for line in refused {
        let mut words = line.split(' ');
        let command = words.next().unwrap_or_default();
        if !commands.contains(&command) {
            commands.push(command);
        }
        let key = words.find(|w| w.starts_with(config.prefix()));
        if let Some(key) = key.filter(|k| !keys.contains(k)) {
            keys.push(key);
        }
    }
    let on = if keys.is_empty() {
        String::new()
    } else {
        format!(" on {}", keys.join(", "))
    };
    Error::new(
        ErrorKind::PermissionDenied,
        format!(
            "{} may not run what fencelock needs: {} refused{on} (give it the key pattern ~{}* and the commands of lock_redis::ACL_COMMANDS, listed in the README's Security section)",
            user(config),
            commands.join(", "),
            config.prefix(),
        ),
    )
}

/// Checks at connect, from the probe's answer, that the user may run every command
/// fencelock sends on keys under its prefix: `PermissionDenied` naming the refused
/// ones. A user that may not `SCAN` only gets a warning (`list` fails then). Servers
/// without `redis.acl_check_cmd` (Redis < 7) are not checked.
pub(crate) fn check(config: &RedisConfig, answer: Refused) -> Result<()> {
    let Some((refused, optional)) = answer else {
        tracing::debug!(
            address = config.address(),
            "redis has no redis.acl_check_cmd (< 7): the user's rights are not checked at connect"
        );
        return Ok(());
    };
    if !refused.is_empty() {
        return Err(denied(config, &refused));
    }
    if !optional.is_empty() {
        tracing::warn!(
            address = config.address(),
            refused = optional.join(", "),
            "the redis user may lock but not list locks (list fails with PermissionDenied): grant +scan"
        );
    }
    Ok(())
}

/// The oldest Redis fencelock's scripts run on: the acquire script writes the token
/// counter with `SET … GET` (6.2).
pub(crate) const MIN_VERSION: (u32, u32) = (6, 2);

/// The `redis_version` of an `INFO server` reply, as (major, minor).
fn version_of(info: &str) -> Option<(u32, u32)> {
    let line = info
        .lines()
        .find_map(|l| l.strip_prefix("redis_version:"))?;
    let mut parts = line.trim().split('.').map(str::parse::<u32>);
    Some((parts.next()?.ok()?, parts.next()?.ok()?))
}

/// Checks at connect that a server without `redis.acl_check_cmd` (Redis < 7) is at
/// least [`MIN_VERSION`], from its `INFO server` reply (`None`: `INFO` refused, not
/// checked): `Unsupported` naming the version otherwise, instead of a script's
/// syntax error at the first acquisition.
pub(crate) fn check_version(config: &RedisConfig, info: Option<&str>) -> Result<()> {
    let Some(info) = info else {
        tracing::warn!(
            address = config.address(),
            "cannot read the redis version (INFO refused): fencelock needs Redis >= 6.2"
        );
        return Ok(());
    };
    match version_of(info) {
        Some(version) if version < MIN_VERSION => Err(Error::new(
            ErrorKind::Unsupported,
            format!(
                "redis at {} is version {}.{}: fencelock needs Redis >= {}.{} (SET ... GET in its scripts)",
                config.address(),
                version.0,
                version.1,
                MIN_VERSION.0,
                MIN_VERSION.1
            ),
        )),
        _ => Ok(()),
    }
}

/// `err` (a `PermissionDenied` met on a request) with the rights the user lacks now
/// appended, when the probe's answer (run after the refusal) can name them.
pub(crate) fn explain(config: &RedisConfig, err: Error, answer: Result<Refused>) -> Error {
    match answer {
        Ok(Some((refused, optional))) => {
            let all: Vec<String> = refused.into_iter().chain(optional).collect();
            if all.is_empty() {
                return err;
            }
            let named = denied(config, &all);
            Error::new(
                ErrorKind::PermissionDenied,
                format!("{}; {}", err.message(), named.message()),
            )
            .with_source(err)
        }
        _ => err,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(version: &str) -> String {
        format!("# Server\r\nredis_version:{version}\r\nredis_git_sha1:00000000\r\n")
    }

    #[test]
    fn a_server_older_than_6_2_is_unsupported_at_connect() {
        let config = RedisConfig::new("127.0.0.1:6379");
        let err = check_version(&config, Some(&info("6.0.16"))).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported);
        assert!(
            err.message().contains("6.0") && err.message().contains(">= 6.2"),
            "{err}"
        );
        assert!(check_version(&config, Some(&info("5.0.14"))).is_err());
        for ok in ["6.2.0", "7.0.15", "7.4.2", "10.0.0"] {
            assert!(check_version(&config, Some(&info(ok))).is_ok(), "{ok}");
        }
        // INFO refused or unreadable: not checked (the scripts' own errors remain).
        assert!(check_version(&config, None).is_ok());
        assert!(check_version(&config, Some("# Server\r\n")).is_ok());
    }
}
