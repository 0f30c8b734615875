//! Pure pieces of the recipe: the key layout, the value format and the queue
//! position. No I/O here, so all of it is unit-tested without a server.
//!
//! Key layout: `<prefix>/<encoded name>/<lease id hex>-<slot>`. The name is encoded by
//! replacing `/` with `%2F` (`%` never occurs in a valid name), so the range
//! `<prefix>/<encoded name>/` holds the waiters of exactly one lock: lock `a` never
//! sees the waiters of lock `a/b`. The encoding preserves prefixes, so listing the
//! locks whose names start with `p` is one range read of `<prefix>/<encoded p>`.
//!
//! Client prefixes may nest (`/locks` and `/locks/team`): then the keys of lock
//! `nightly` under `/locks/team` lie inside the range of lock `team` under `/locks`.
//! Only direct children of a range contend ([`is_direct_child`]); the recipe reads
//! past deeper keys, so nested prefixes never block, count or break each other. The
//! cheap single-key reads stay as they are and a full keys-only read of the range
//! happens only when such a key shows up.

use lock_core::{
    backend::{decide, Claim, Decision},
    LockName,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The key range (a prefix ending in `/`) holding every waiter of `name`.
pub(crate) fn lock_range(prefix: &str, name: &LockName) -> String {
    format!("{prefix}/{}/", encode(name.as_str()))
}

/// The key prefix of every lock whose name starts with `name_prefix`.
pub(crate) fn list_range(prefix: &str, name_prefix: &str) -> String {
    format!("{prefix}/{}", encode(name_prefix))
}

/// The waiter key of `name` on lease `lease` in key slot `slot`.
pub(crate) fn waiter_key(prefix: &str, name: &LockName, lease: i64, slot: u32) -> String {
    format!("{}{lease:x}-{slot}", lock_range(prefix, name))
}

/// The lock name a key under `prefix` belongs to; `None` for foreign keys.
pub(crate) fn name_of(prefix: &str, key: &[u8]) -> Option<LockName> {
    let rest = key.strip_prefix(prefix.as_bytes())?.strip_prefix(b"/")?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (encoded, suffix) = rest.split_once('/')?;
    if suffix.is_empty() || suffix.contains('/') {
        return None;
    }
    LockName::new(encoded.replace("%2F", "/")).ok()
}

/// Whether `key` is a contender of the lock whose range is `range`: a direct child
/// (`<range><suffix>` with no `/` in the suffix). Keys deeper down belong to another
/// namespace whose prefix happens to run through this range (client prefix `/locks`
/// with lock `team` vs client prefix `/locks/team`); they never count, so nested
/// prefixes do not block each other. etcd's own recipe (`etcdctl lock`, Go's
/// `concurrency.Mutex`) also keys its contenders as direct children.
pub(crate) fn is_direct_child(range: &str, key: &[u8]) -> bool {
    key.strip_prefix(range.as_bytes())
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/'))
}

fn encode(name: &str) -> String {
    name.replace('/', "%2F")
}

/// The value stored in a waiter key: acquisition time in unix milliseconds, a
/// newline, and the holder text.
pub(crate) fn encode_value(at: SystemTime, holder: Option<&str>) -> String {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis();
    format!("{millis}\n{}", holder.unwrap_or(""))
}

/// Reads a value written by [`encode_value`]; garbage gives `(None, None)`.
pub(crate) fn decode_value(value: &[u8]) -> (Option<SystemTime>, Option<String>) {
    let text = String::from_utf8_lossy(value);
    let Some((millis, holder)) = text.split_once('\n') else {
        return (None, None);
    };
    let at = millis
        .parse::<u64>()
        .ok()
        .and_then(|m| UNIX_EPOCH.checked_add(Duration::from_millis(m)));
    let holder = (!holder.is_empty()).then(|| holder.to_owned());
    (at, holder)
}

/// One waiter as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
}

/// Where a waiter stands in its lock's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position {
    /// First in line: the lock is ours.
    Owner,
    /// Wait until this key (the one just ahead) is deleted.
    WaitFor(Vec<u8>),
    /// Our key is not in the queue (deleted, or its lease expired).
    Missing,
}

/// The position of `own` among `waiters` (any subset of the queue that contains the
/// keys around `own`, in any order). The queue is ordered by create revision and
/// every entry is an [`Claim::Exclusive`] mutex claim, so [`decide`] grants the
/// smallest and has each waiter wait only for the one just ahead of it: a release
/// wakes exactly one waiter.
pub(crate) fn position(waiters: &[Waiter], own: &[u8]) -> Position {
    let mut sorted: Vec<&Waiter> = waiters.iter().collect();
    sorted.sort_by_key(|w| w.create_revision);
    sorted.dedup_by(|a, b| a.key == b.key);
    let Some(index) = sorted.iter().position(|w| w.key == own) else {
        return Position::Missing;
    };
    match decide(&vec![Claim::Exclusive; sorted.len()], index) {
        Some(Decision::Granted) => Position::Owner,
        Some(Decision::WaitFor(ahead)) => sorted
            .get(ahead)
            .map_or(Position::Missing, |w| Position::WaitFor(w.key.clone())),
        None => Position::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(key: &str, rev: i64) -> Waiter {
        Waiter {
            key: key.as_bytes().to_vec(),
            create_revision: rev,
        }
    }

    #[test]
    fn owner_is_smallest_create_revision_and_each_waits_for_the_one_ahead() {
        let q = [w("c", 30), w("a", 10), w("b", 20)];
        assert_eq!(position(&q, b"a"), Position::Owner);
        assert_eq!(position(&q, b"b"), Position::WaitFor(b"a".to_vec()));
        assert_eq!(position(&q, b"c"), Position::WaitFor(b"b".to_vec()));
        assert_eq!(position(&q, b"zz"), Position::Missing);
        assert_eq!(position(&[], b"a"), Position::Missing);
        assert_eq!(position(&[w("a", 5), w("a", 5)], b"a"), Position::Owner);
    }

    #[test]
    fn names_are_encoded_so_nested_locks_do_not_share_a_range() {
        let a = LockName::new("a").unwrap();
        let ab = LockName::new("a/b").unwrap();
        assert_eq!(lock_range("/p", &a), "/p/a/");
        assert_eq!(lock_range("/p", &ab), "/p/a%2Fb/");
        assert!(!lock_range("/p", &ab).starts_with(&lock_range("/p", &a)));
        let key = waiter_key("/p", &ab, 0xbeef, 3);
        assert_eq!(key, "/p/a%2Fb/beef-3");
        assert_eq!(name_of("/p", key.as_bytes()), Some(ab.clone()));
        assert_eq!(name_of("/q", key.as_bytes()), None);
        assert_eq!(name_of("/p", b"/p/a"), None);
        assert!(list_range("/p", "a/").starts_with("/p/a%2F"));
        assert!(lock_range("", &a).starts_with("/a/"));
    }

    #[test]
    fn only_direct_children_of_a_range_contend() {
        let team = LockName::new("team").unwrap();
        let range = lock_range("/locks", &team);
        assert!(is_direct_child(&range, b"/locks/team/beef-0"));
        assert!(is_direct_child(&range, b"/locks/team/694d7f3a2b1c"));
        // lock `nightly` of a client whose prefix is `/locks/team`
        let nested = waiter_key("/locks/team", &LockName::new("nightly").unwrap(), 0xbeef, 0);
        assert!(nested.starts_with(&range));
        assert!(!is_direct_child(&range, nested.as_bytes()));
        assert!(!is_direct_child(&range, b"/locks/team/"));
        assert!(!is_direct_child(&range, b"/locks/teams/beef-0"));
    }

    #[test]
    fn value_round_trips_and_tolerates_garbage() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        let v = encode_value(at, Some("web-3:4711"));
        assert_eq!(
            decode_value(v.as_bytes()),
            (Some(at), Some("web-3:4711".to_owned()))
        );
        assert_eq!(
            decode_value(encode_value(at, None).as_bytes()),
            (Some(at), None)
        );
        assert_eq!(decode_value(b"junk"), (None, None));
        assert_eq!(decode_value(b"x\nh").1.as_deref(), Some("h"));
    }
}
