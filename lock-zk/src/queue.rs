//! Pure pieces of the recipe: how lock names become directories, how lock nodes are
//! named, what they store, and who holds the lock given a directory's children.
//!
//! No I/O here, so every rule is unit-tested without a server.

use lock_core::{
    backend::{decide, Claim, Decision},
    LockName,
};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The marker between a node's uuid and its sequence number.
const LOCK_MARKER: &str = "-lock-";

/// The directory (one znode, directly under the chroot) of the lock `name`.
///
/// `/` is written `%2F`, so the waiters of `a` and of `a/b` never share a directory;
/// `%` cannot occur in a lock name, which makes the encoding injective. The one name
/// that would collide with ZooKeeper's reserved `/zookeeper` node (when there is no
/// chroot) gets its first letter escaped as `%7A`.
pub(crate) fn encode_name(name: &LockName) -> String {
    let encoded = name.as_str().replace('/', "%2F");
    if encoded == "zookeeper" {
        "%7Aookeeper".to_owned()
    } else {
        encoded
    }
}

/// The lock name of a directory written by [`encode_name`]; `None` for any other znode.
pub(crate) fn decode_name(dir: &str) -> Option<LockName> {
    let decoded = dir.replace("%2F", "/").replace("%7A", "z");
    let name = LockName::new(decoded).ok()?;
    (encode_name(&name) == dir).then_some(name)
}

/// The path (relative to the chroot) of the directory of `name`.
pub(crate) fn dir_path(name: &LockName) -> String {
    format!("/{}", encode_name(name))
}

/// The path prefix of a protected sequential node: the server appends the sequence.
pub(crate) fn node_prefix(dir: &str, uuid: &str) -> String {
    format!("{dir}/{uuid}{LOCK_MARKER}")
}

/// Whether `child` (a node name) was created with `uuid`.
pub(crate) fn is_own(child: &str, uuid: &str) -> bool {
    child
        .strip_prefix(uuid)
        .is_some_and(|rest| rest.starts_with(LOCK_MARKER))
}

/// The sequence number of a lock node name `<uuid>-lock-<seq>`; `None` for other names.
pub(crate) fn sequence(child: &str) -> Option<i64> {
    let (_, seq) = child.rsplit_once(LOCK_MARKER)?;
    if seq.is_empty() || !seq.bytes().all(|b| b.is_ascii_digit() || b == b'-') {
        return None;
    }
    seq.parse().ok()
}

/// The lock nodes among `children`, lowest sequence (the holder) first. Other names
/// are ignored.
pub(crate) fn sorted(children: &[String]) -> Vec<&str> {
    let mut nodes: Vec<(i64, &str)> = children
        .iter()
        .filter_map(|c| sequence(c).map(|s| (s, c.as_str())))
        .collect();
    nodes.sort_unstable();
    nodes.into_iter().map(|(_, c)| c).collect()
}

/// Where an acquisition stands in its lock's queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Position<'a> {
    /// Its node has the lowest sequence: it holds the lock.
    Owner,
    /// It waits for this node (its immediate predecessor) to go away.
    WaitFor(&'a str),
    /// Its node is not among the children (deleted, or its session expired).
    Missing,
}

/// The position of node `own` given the children of its lock directory. Every lock
/// node is an [`Claim::Exclusive`] mutex claim, so [`decide`] grants the lowest
/// sequence and has each waiter watch only its immediate predecessor.
pub(crate) fn position<'a>(children: &'a [String], own: &str) -> Position<'a> {
    let nodes = sorted(children);
    let Some(index) = nodes.iter().position(|c| *c == own) else {
        return Position::Missing;
    };
    match decide(&vec![Claim::Exclusive; nodes.len()], index) {
        Some(Decision::Granted) => Position::Owner,
        Some(Decision::WaitFor(ahead)) => nodes
            .get(ahead)
            .map_or(Position::Missing, |node| Position::WaitFor(node)),
        None => Position::Missing,
    }
}

/// What a lock node stores: the acquisition time (unix milliseconds) on the first
/// line, then the holder text if one was given.
pub(crate) fn encode_data(holder: Option<&str>, at: SystemTime) -> Vec<u8> {
    let millis = at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    match holder {
        Some(holder) => format!("{millis}\n{holder}").into_bytes(),
        None => millis.to_string().into_bytes(),
    }
}

/// Reads what [`encode_data`] wrote: the holder text and the acquisition time. Data
/// written by something else yields `(None, None)`.
pub(crate) fn decode_data(data: &[u8]) -> (Option<String>, Option<SystemTime>) {
    let Ok(text) = std::str::from_utf8(data) else {
        return (None, None);
    };
    let (millis, holder) = match text.split_once('\n') {
        Some((m, h)) => (m, Some(h.to_owned())),
        None => (text, None),
    };
    match millis.parse::<u64>() {
        Ok(ms) => (holder, UNIX_EPOCH.checked_add(Duration::from_millis(ms))),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> LockName {
        LockName::new(s).unwrap()
    }

    fn children(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn names_with_slashes_get_their_own_directory() {
        assert_eq!(encode_name(&name("a")), "a");
        assert_eq!(encode_name(&name("a/b")), "a%2Fb");
        assert_ne!(dir_path(&name("a/b")), dir_path(&name("a")));
        assert_eq!(dir_path(&name("jobs/nightly:1")), "/jobs%2Fnightly:1");
        assert_eq!(encode_name(&name("zookeeper")), "%7Aookeeper");
        assert_eq!(encode_name(&name("zookeeper/x")), "zookeeper%2Fx");
    }

    #[test]
    fn decoding_inverts_encoding_and_rejects_foreign_nodes() {
        for n in ["a", "a/b", "jobs/nightly:1", "zookeeper", "zzz", "x.y_z-1"] {
            assert_eq!(decode_name(&encode_name(&name(n))), Some(name(n)), "{n}");
        }
        for foreign in ["zookeeper", "a/b", "a%2F", "%41", "bad name", ""] {
            assert_eq!(decode_name(foreign), None, "{foreign}");
        }
    }

    #[test]
    fn sequence_is_read_from_the_suffix() {
        assert_eq!(sequence("0f3c-lock-0000000007"), Some(7));
        assert_eq!(sequence("a-lock-b-lock-0000000012"), Some(12));
        assert_eq!(sequence("x-lock--2147483648"), Some(-2147483648));
        assert_eq!(sequence("x-lock-"), None);
        assert_eq!(sequence("x-lock-12a"), None);
        assert_eq!(sequence("readme"), None);
    }

    #[test]
    fn lowest_sequence_holds_and_each_waiter_watches_its_predecessor() {
        let kids = children(&[
            "c-lock-0000000003",
            "a-lock-0000000001",
            "junk",
            "b-lock-0000000002",
        ]);
        assert_eq!(position(&kids, "a-lock-0000000001"), Position::Owner);
        assert_eq!(
            position(&kids, "b-lock-0000000002"),
            Position::WaitFor("a-lock-0000000001")
        );
        assert_eq!(
            position(&kids, "c-lock-0000000003"),
            Position::WaitFor("b-lock-0000000002")
        );
        assert_eq!(position(&kids, "d-lock-0000000004"), Position::Missing);
        assert_eq!(
            sorted(&kids),
            [
                "a-lock-0000000001",
                "b-lock-0000000002",
                "c-lock-0000000003"
            ]
        );
    }

    #[test]
    fn a_cancelled_middle_waiter_hands_its_successor_to_the_one_before() {
        let kids = children(&["a-lock-0000000001", "c-lock-0000000003"]);
        assert_eq!(
            position(&kids, "c-lock-0000000003"),
            Position::WaitFor("a-lock-0000000001")
        );
    }

    #[test]
    fn own_nodes_are_recognised_by_uuid() {
        assert!(is_own("abc-lock-0000000001", "abc"));
        assert!(!is_own("abcd-lock-0000000001", "abc"));
        assert!(!is_own("xabc-lock-0000000001", "abc"));
        assert_eq!(node_prefix("/jobs", "abc"), "/jobs/abc-lock-");
    }

    #[test]
    fn node_data_round_trips() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            decode_data(&encode_data(Some("web-3:4711"), at)),
            (Some("web-3:4711".into()), Some(at))
        );
        assert_eq!(
            decode_data(&encode_data(Some("multi\nline"), at)),
            (Some("multi\nline".into()), Some(at))
        );
        assert_eq!(decode_data(&encode_data(None, at)), (None, Some(at)));
        assert_eq!(decode_data(b"\xff"), (None, None));
        assert_eq!(decode_data(b"hello"), (None, None));
    }
}
