//! Pure pieces of the recipe: the key layout, the value format and the queue
//! position. No I/O here, so all of it is unit-tested without a server.
//!
//! Key layout: etcd's own (`etcdctl lock`, Go's `concurrency.NewMutex`). Lock `N`
//! under key prefix `P` is the range `P/N/` (`N/` with no prefix), and each
//! acquisition puts one key `P/N/<lease id hex>` in it, attached to its lease,
//! exactly the key Go's recipe puts for `NewMutex(session, "P/N")`. The name is
//! written as it is, `/` included, so `etcdctl lock team/nightly` meets lock
//! `team/nightly`. A second acquisition of the same lock on the same lease (which
//! Go's recipe would give the same key, and so a shared "hold") gets its own key
//! `P/N/<lease id hex>-<slot>` instead; every key of the range orders by create
//! revision whatever its suffix, so the queue is one queue for all clients.
//!
//! **Claims in the key.** A read lock's key is `P/N/r<lease id hex>[-<slot>]`; a
//! write lock's is a mutex's (`P/N/<lease id hex>[-<slot>]`), so a v0.1 mutex and a
//! write lock on one name exclude each other, and every key that does not have the
//! reader form (etcd's recipe, `etcdctl lock`, anything foreign) is an exclusive
//! holder. A v0.1 client reads the whole range, so it treats readers as exclusive
//! holders too: over-restrictive, never unsafe.
//!
//! Lock ranges may nest: the range of lock `team/nightly` (`team/nightly/`) lies
//! inside the range of lock `team` (`team/`), and so do the keys of lock `nightly`
//! of a client whose prefix is `/locks/team` inside those of lock `team` under
//! `/locks`. Only direct children of a range contend ([`is_direct_child`]); the
//! recipe reads past deeper keys, so nested locks never block, count or break each
//! other. The cheap single-key reads stay as they are and a full keys-only read of
//! the range happens only when such a key shows up. (Go's recipe counts every key
//! of its range, deeper ones too: a Go holder of lock `team` also waits for a
//! fencelock holder of `team/nightly`. That over-excludes, never under-excludes.)

use lock_core::{
    backend::{split_value, Claim},
    LockName,
};
use std::time::SystemTime;

/// The key prefix that a lock name is appended to: `P/`, or nothing.
fn dir(prefix: &str) -> String {
    if prefix.is_empty() {
        String::new()
    } else {
        format!("{prefix}/")
    }
}

/// The key range (a prefix ending in `/`) holding every waiter of `name`.
pub(crate) fn lock_range(prefix: &str, name: &LockName) -> String {
    format!("{}{name}/", dir(prefix))
}

/// The key prefix of every lock whose name starts with `name_prefix` (empty: the
/// whole key space, read as every key).
pub(crate) fn list_range(prefix: &str, name_prefix: &str) -> String {
    format!("{}{name_prefix}", dir(prefix))
}

/// The marker of a reader's key, before its lease id.
const READER: u8 = b'r';
/// The marker of a semaphore permit's key, before its limit.
const PERMIT: u8 = b'p';

/// The waiter key of `name` on lease `lease` in key slot `slot` claiming `claim`:
/// etcd's recipe's key for slot 0, a suffixed one for the others, with the reader
/// marker for [`Claim::Read`].
pub(crate) fn waiter_key(
    prefix: &str,
    name: &LockName,
    lease: i64,
    slot: u32,
    claim: Claim,
) -> String {
    let range = lock_range(prefix, name);
    let marker = match claim {
        Claim::Read => "r".to_owned(),
        Claim::Shared { limit } => format!("p{limit}."),
        _ => String::new(),
    };
    match slot {
        0 => format!("{range}{marker}{lease:x}"),
        _ => format!("{range}{marker}{lease:x}-{slot}"),
    }
}

/// The key that holds permit slot `slot` of semaphore `name`, attached to the
/// holder's lease, its value the holder's waiter key. Not a contender of any lock:
/// `%` cannot occur in a lock name, so no lock's range has it as a direct child.
pub(crate) fn permit_slot_key(prefix: &str, name: &LockName, slot: u32) -> String {
    format!("{}%slot/{slot}", lock_range(prefix, name))
}

/// Splits `p<limit>.<rest>` into the limit and the rest.
fn permit_limit(suffix: &[u8]) -> Option<(u32, &[u8])> {
    let rest = suffix.strip_prefix(&[PERMIT])?;
    let dot = rest.iter().position(|b| *b == b'.')?;
    let digits = std::str::from_utf8(&rest[..dot]).ok()?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((digits.parse().ok()?, &rest[dot + 1..]))
}

/// Whether `suffix` is `<hex>` or `<hex>-<digits>`.
fn is_lease_suffix(suffix: &[u8]) -> bool {
    let (id, slot) = match suffix.iter().position(|b| *b == b'-') {
        Some(dash) => (&suffix[..dash], Some(&suffix[dash + 1..])),
        None => (suffix, None),
    };
    !id.is_empty()
        && id.iter().all(u8::is_ascii_hexdigit)
        && slot.is_none_or(|s| !s.is_empty() && s.iter().all(u8::is_ascii_digit))
}

/// What the contender `key` of the lock whose range is `range` claims: a reader's key
/// (`r<lease hex>[-<slot>]`) is [`Claim::Read`], a permit's (`p<limit>.<lease
/// hex>[-<slot>]`) is [`Claim::Shared`]; every other key, fencelock's writers and
/// mutexes and every foreign client's, is [`Claim::Exclusive`].
pub(crate) fn claim_of(range: &str, key: &[u8]) -> Claim {
    match key.strip_prefix(range.as_bytes()) {
        Some([READER, rest @ ..]) if is_lease_suffix(rest) => Claim::Read,
        Some(suffix) => match permit_limit(suffix) {
            Some((limit, rest)) if limit > 0 && is_lease_suffix(rest) => Claim::Shared { limit },
            _ => Claim::Exclusive,
        },
        None => Claim::Exclusive,
    }
}

/// The lock name a lock key under `prefix` belongs to; `None` for keys that are not
/// lock keys. A lock key (fencelock's or etcd's recipe's) is attached to a lease and
/// its last segment is that lease's id in hex, optionally followed by `-<slot>`.
pub(crate) fn name_of(prefix: &str, key: &[u8], lease: i64) -> Option<LockName> {
    let rest = key.strip_prefix(dir(prefix).as_bytes())?;
    let rest = std::str::from_utf8(rest).ok()?;
    let (name, suffix) = rest.rsplit_once('/')?;
    if lease == 0 {
        return None;
    }
    let suffix = match permit_limit(suffix.as_bytes()) {
        Some((_, rest)) => std::str::from_utf8(rest).ok()?,
        None => suffix.strip_prefix('r').unwrap_or(suffix),
    };
    // `<lease in hex>[-<slot>]`; the hex may be zero-padded (etcdctl prints lease ids
    // as `%016x`), so it is compared as a number.
    let (hex, slot) = match suffix.split_once('-') {
        Some((hex, slot)) => (hex, Some(slot)),
        None => (suffix, None),
    };
    let lease_ok = !hex.is_empty()
        && hex.bytes().all(|b| b.is_ascii_hexdigit())
        && u64::from_str_radix(hex, 16).is_ok_and(|id| i64::try_from(id) == Ok(lease));
    let slot_ok = slot.is_none_or(|s| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()));
    (lease_ok && slot_ok)
        .then(|| LockName::new(name).ok())
        .flatten()
}

/// Whether `key` is a contender of the lock whose range is `range`: a direct child
/// (`<range><suffix>` with no `/` in the suffix), whoever wrote it (fencelock,
/// `etcdctl lock`, Go's `concurrency.Mutex`, or anything else). Keys deeper down
/// belong to a nested lock (lock `a/b` inside the range of `a`, or a client whose
/// prefix runs through this range); they never count, so nested locks do not block
/// each other.
pub(crate) fn is_direct_child(range: &str, key: &[u8]) -> bool {
    key.strip_prefix(range.as_bytes())
        .is_some_and(|rest| !rest.is_empty() && !rest.contains(&b'/'))
}

/// The value stored in a waiter key: the kit's value format
/// ([`encode_value`](lock_core::backend::encode_value): acquisition time in unix
/// milliseconds, a newline, and the holder text, empty when there is none).
pub(crate) fn encode_value(at: SystemTime, holder: Option<&str>) -> String {
    lock_core::backend::encode_value(at, holder.unwrap_or(""))
}

/// Reads a value written by [`encode_value`]; a value with no newline is read as
/// holder text alone (a foreign election's proposal).
pub(crate) fn decode_value(value: &[u8]) -> (Option<SystemTime>, Option<String>) {
    let text = String::from_utf8_lossy(value);
    let non_empty = |holder: &str| (!holder.is_empty()).then(|| holder.to_owned());
    match split_value(&text) {
        Some((at, holder)) => (at, non_empty(holder)),
        // A value without a time line is a foreign client's: `etcdctl elect NAME
        // VALUE` (Go's `concurrency.Election`) stores the proposal as is.
        None => (None, non_empty(&text)),
    }
}

/// Whether the earlier contender `key` can be the entry [`decide`](lock_core::backend::decide) makes a waiter
/// claiming `own` wait for: any direct child for a writer, mutex or permit, a
/// non-reader one for a reader.
pub(crate) fn blocks(range: &str, own: Claim, key: &[u8]) -> bool {
    is_direct_child(range, key) && (own != Claim::Read || claim_of(range, key) != Claim::Read)
}

/// The limit of a queued permit that differs from `limit`, if any.
pub(crate) fn other_limit(range: &str, waiters: &[Waiter], limit: u32) -> Option<u32> {
    waiters.iter().find_map(|w| match claim_of(range, &w.key) {
        Claim::Shared { limit: other } if other != limit => Some(other),
        _ => None,
    })
}

/// One waiter as etcd reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Waiter {
    pub(crate) key: Vec<u8>,
    pub(crate) create_revision: i64,
}

/// Where a waiter stands in its lock's queue: the kit's [`Position`] over keys.
/// `Owner`: first in line, the lock is ours; `WaitFor(key)`: wait until that key
/// (the one just ahead) is deleted, a permit waiter also when it is rewritten (the
/// semaphore hand-off signal of [`decide`](lock_core::backend::decide));
/// `WaitForAny(keys)`: the first permit waiter waits until any of these keys (the
/// permits just ahead) is deleted; `Missing`: our key is not in the queue (deleted,
/// or its lease expired).
pub(crate) type Position = lock_core::backend::Position<Vec<u8>>;

/// The position of `own` among `waiters` of the lock whose range is `range`: any
/// subset of the queue, in any order, that contains the entry
/// [`decide`](lock_core::backend::decide) would name (for a writer or mutex the key
/// just ahead, for a reader the nearest earlier non-reader, see [`blocks`]; for a
/// permit, every key ahead). The queue is ordered by create revision and each
/// entry's claim is read from its key ([`claim_of`]); the kit's
/// [`position`](lock_core::backend::position) decides: a writer waits for the one
/// just ahead, a reader for the nearest earlier writer, so a release wakes only the
/// waiters it grants.
pub(crate) fn position(range: &str, waiters: &[Waiter], own: &[u8]) -> Position {
    let mut sorted: Vec<&Waiter> = waiters.iter().collect();
    sorted.sort_by_key(|w| w.create_revision);
    sorted.dedup_by(|a, b| a.key == b.key);
    let queue: Vec<(&[u8], Claim)> = sorted
        .iter()
        .map(|w| (w.key.as_slice(), claim_of(range, &w.key)))
        .collect();
    lock_core::backend::position(&queue, &own).map(<[u8]>::to_vec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    /// A waiter `key` created at `rev`.
    pub(crate) fn w(key: &str, rev: i64) -> Waiter {
        Waiter {
            key: key.as_bytes().to_vec(),
            create_revision: rev,
        }
    }

    #[test]
    fn owner_is_smallest_create_revision_and_each_waits_for_the_one_ahead() {
        let q = [w("c", 30), w("a", 10), w("b", 20)];
        assert_eq!(position("", &q, b"a"), Position::Owner);
        assert_eq!(position("", &q, b"b"), Position::WaitFor(b"a".to_vec()));
        assert_eq!(position("", &q, b"c"), Position::WaitFor(b"b".to_vec()));
        assert_eq!(position("", &q, b"zz"), Position::Missing);
        assert_eq!(position("", &[], b"a"), Position::Missing);
        assert_eq!(position("", &[w("a", 5), w("a", 5)], b"a"), Position::Owner);
    }

    #[test]
    fn the_first_permit_waiter_watches_every_permit_ahead_the_next_one_the_waiter_ahead() {
        let n = LockName::new("s").unwrap();
        let range = lock_range("/p", &n);
        let s = Claim::Shared { limit: 2 };
        let k: Vec<String> = (1..=4).map(|l| waiter_key("/p", &n, l, 0, s)).collect();
        let q: Vec<Waiter> = k
            .iter()
            .zip([10, 20, 30, 40])
            .map(|(k, r)| w(k, r))
            .collect();
        assert_eq!(position(&range, &q, k[1].as_bytes()), Position::Owner);
        assert_eq!(
            position(&range, &q, k[2].as_bytes()),
            Position::WaitForAny(vec![k[0].clone().into_bytes(), k[1].clone().into_bytes()])
        );
        assert_eq!(
            position(&range, &q, k[3].as_bytes()),
            Position::WaitFor(k[2].clone().into_bytes())
        );
    }

    #[test]
    fn readers_share_and_wait_for_the_nearest_earlier_writer() {
        let n = LockName::new("d").unwrap();
        let range = lock_range("/p", &n);
        let key = |lease, claim| waiter_key("/p", &n, lease, 0, claim);
        let (r1, r2, w1, r3) = (
            key(0xa, Claim::Read),
            key(0xb, Claim::Read),
            key(0xc, Claim::Write),
            key(0xd, Claim::Read),
        );
        assert_eq!(r1, "/p/d/ra");
        assert_eq!(w1, "/p/d/c", "a writer's key is a mutex's");
        assert_eq!(claim_of(&range, r1.as_bytes()), Claim::Read);
        assert_eq!(claim_of(&range, w1.as_bytes()), Claim::Exclusive);
        assert_eq!(claim_of(&range, b"/p/d/694d"), Claim::Exclusive, "etcdctl");
        assert_eq!(
            claim_of(&range, b"/p/d/rabbit"),
            Claim::Exclusive,
            "foreign"
        );
        assert_eq!(claim_of(&range, b"/p/d/r"), Claim::Exclusive);
        assert_eq!(claim_of(&range, b"/p/d/ra-2"), Claim::Read);
        assert_eq!(name_of("/p", r1.as_bytes(), 0xa), Some(n.clone()));
        let q = [w(&r1, 10), w(&r2, 20), w(&w1, 30), w(&r3, 40)];
        assert_eq!(position(&range, &q, r2.as_bytes()), Position::Owner);
        assert_eq!(
            position(&range, &q, w1.as_bytes()),
            Position::WaitFor(r2.clone().into_bytes())
        );
        assert_eq!(
            position(&range, &q, r3.as_bytes()),
            Position::WaitFor(w1.clone().into_bytes())
        );
        // The subset a reader reads: the nearest earlier non-reader and itself.
        assert!(blocks(&range, Claim::Read, w1.as_bytes()));
        assert!(!blocks(&range, Claim::Read, r2.as_bytes()));
        assert!(blocks(&range, Claim::Write, r2.as_bytes()));
        assert_eq!(
            position(&range, &[w(&r3, 40)], r3.as_bytes()),
            Position::Owner
        );
    }

    #[test]
    fn layout_is_etcds_recipe_and_nested_locks_do_not_share_a_range() {
        let a = LockName::new("a").unwrap();
        let ab = LockName::new("a/b").unwrap();
        // `etcdctl lock a` / `NewMutex(s, "a")` puts `a/<lease hex>`.
        assert_eq!(lock_range("", &a), "a/");
        assert_eq!(waiter_key("", &a, 0x694d, 0, Claim::Exclusive), "a/694d");
        assert_eq!(lock_range("/p", &ab), "/p/a/b/");
        assert_eq!(
            waiter_key("/p", &ab, 0xbeef, 0, Claim::Exclusive),
            "/p/a/b/beef"
        );
        let key = waiter_key("/p", &ab, 0xbeef, 3, Claim::Exclusive);
        assert_eq!(key, "/p/a/b/beef-3");
        // the nested lock's keys are in `a`'s range, but not direct children
        assert!(key.starts_with(&lock_range("/p", &a)));
        assert!(!is_direct_child(&lock_range("/p", &a), key.as_bytes()));
        assert_eq!(name_of("/p", key.as_bytes(), 0xbeef), Some(ab.clone()));
        assert_eq!(name_of("/p", b"/p/a/b/beef", 0xbeef), Some(ab.clone()));
        assert_eq!(name_of("", b"a/694d", 0x694d), Some(a.clone()));
        // Zero-padded, as etcdctl prints a lease id whose top nibble is 0.
        assert_eq!(name_of("", b"a/0000694d-0", 0x694d), Some(a.clone()));
        assert_eq!(name_of("", b"a/0694e", 0x694d), None);
        assert_eq!(name_of("/q", key.as_bytes(), 0xbeef), None);
        // not a lock key: no lease, another lease, no hex suffix, bad name
        assert_eq!(name_of("/p", key.as_bytes(), 0), None);
        assert_eq!(name_of("/p", key.as_bytes(), 0xbee), None);
        assert_eq!(name_of("", b"config/db", 0x1), None);
        assert_eq!(name_of("", b"a/1-", 0x1), None);
        assert_eq!(name_of("", b"a/1-x", 0x1), None);
        assert_eq!(name_of("", b"/a/1", 0x1), None);
        assert_eq!(name_of("/p", b"/p/a", 0xa), None);
        assert_eq!(list_range("/p", "a/"), "/p/a/");
        assert_eq!(list_range("", ""), "");
    }

    #[test]
    fn only_direct_children_of_a_range_contend() {
        let team = LockName::new("team").unwrap();
        let range = lock_range("/locks", &team);
        assert!(is_direct_child(&range, b"/locks/team/beef-1"));
        assert!(is_direct_child(&range, b"/locks/team/694d7f3a2b1c"));
        // lock `nightly` of a client whose prefix is `/locks/team`
        let nested = waiter_key(
            "/locks/team",
            &LockName::new("nightly").unwrap(),
            0xbeef,
            0,
            Claim::Exclusive,
        );
        assert!(nested.starts_with(&range));
        assert!(!is_direct_child(&range, nested.as_bytes()));
        assert!(!is_direct_child(&range, b"/locks/team/"));
        assert!(!is_direct_child(&range, b"/locks/teams/beef"));
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
        assert_eq!(decode_value(b"junk"), (None, Some("junk".into())));
        assert_eq!(decode_value(b""), (None, None));
        assert_eq!(decode_value(b"x\nh").1.as_deref(), Some("h"));
        // The on-server format, byte for byte (older clients read it).
        assert_eq!(v, "1700000000123\nweb-3:4711");
        assert_eq!(encode_value(at, None), "1700000000123\n");
    }
}
