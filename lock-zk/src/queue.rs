//! Pure pieces of the recipe: how lock names become directories, how lock nodes are
//! named, what they store, and who holds the lock given a directory's children.
//!
//! No I/O here, so every rule is unit-tested without a server.

use crate::config::ZkNodeStyle;
use lock_core::{
    backend::{
        decide, encode_value, escape_name, from_unix_millis, split_value, unescape_name,
        unix_millis, Claim, Decision,
    },
    LockName,
};
use std::time::SystemTime;

/// The directory (one znode, directly under the chroot) of the lock `name`.
///
/// The kit's [`escape_name`]: `/` is written `%2F`, so the waiters of `a` and of
/// `a/b` never share a directory; `%` cannot occur in a lock name, which makes the
/// encoding injective. The one name that would collide with ZooKeeper's reserved
/// `/zookeeper` node (when there is no chroot) gets its first letter escaped as `%7A`.
pub(crate) fn encode_name(name: &LockName) -> String {
    let encoded = escape_name(name);
    if encoded == "zookeeper" {
        "%7Aookeeper".to_owned()
    } else {
        encoded
    }
}

/// The lock name of a directory written by [`encode_name`]; `None` for any other znode.
pub(crate) fn decode_name(dir: &str) -> Option<LockName> {
    let name = unescape_name(&dir.replace("%7A", "z"))?;
    (encode_name(&name) == dir).then_some(name)
}

/// The path (relative to the chroot) of the directory of `name`.
pub(crate) fn dir_path(name: &LockName) -> String {
    format!("/{}", encode_name(name))
}

/// The marker of a read lock's node, whatever the style: kazoo's `ReadLock` writes
/// it, so fencelock readers and kazoo readers share, and every older client (which
/// reads it as kazoo's reader, or not at all) sees a contender.
pub(crate) const READ_MARKER: &str = "__rlock__";

/// The text between the uuid and the sequence of a node of `style` claiming `claim`:
/// [`READ_MARKER`] for a reader, the style's mutex marker for everything else (a
/// writer is a mutex, so a mutex of any client excludes it).
pub(crate) fn marker(style: ZkNodeStyle, claim: Claim) -> String {
    match claim {
        Claim::Read => READ_MARKER.to_owned(),
        Claim::Shared { limit } => format!("-p{limit}-lock-"),
        _ => style.marker().to_owned(),
    }
}

/// The path prefix of a protected sequential node of `style` claiming `claim`: the
/// server appends the sequence.
pub(crate) fn node_prefix(dir: &str, uuid: &str, style: ZkNodeStyle, claim: Claim) -> String {
    format!("{dir}/{uuid}{}", marker(style, claim))
}

/// Whether `child` (a node name) was created with `uuid`, in either style or as a
/// reader.
pub(crate) fn is_own(child: &str, uuid: &str) -> bool {
    child.strip_prefix(uuid).is_some_and(|rest| {
        [
            ZkNodeStyle::Curator.marker(),
            ZkNodeStyle::Kazoo.marker(),
            READ_MARKER,
        ]
        .iter()
        .any(|marker| rest.starts_with(marker))
            || rest
                .strip_prefix("-p")
                .is_some_and(|r| r.contains("-lock-"))
    })
}

/// Which recipe wrote a lock node, as read from its name. Every kind is a contender
/// of the lock; anything else in a lock directory is ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum NodeKind {
    /// `…-lock-<seq>` (or `lock-<seq>`): fencelock's `curator` style and Curator's
    /// `InterProcessMutex` (`_c_<uuid>-lock-<seq>`).
    Curator,
    /// `…__lock__<seq>`: kazoo's `Lock` and `WriteLock`, fencelock's `kazoo` style.
    KazooLock,
    /// `…__rlock__<seq>`: kazoo's `ReadLock`, which shares with other readers only.
    KazooRead,
    /// `x-<session id>-<seq>`: ZooKeeper's own `recipes.lock.WriteLock`.
    ZkRecipe,
    /// `<uuid>-p<limit>-lock-<seq>`: a fencelock semaphore permit. Its name ends in
    /// Curator's marker, so every client that does not know permits sees a mutex.
    Permit {
        /// The semaphore's size.
        limit: u32,
    },
}

impl NodeKind {
    /// What the node asks for in the grant rule: a read lock (kazoo's or fencelock's,
    /// both `…__rlock__<seq>`) shares with other readers, everything else is a mutex.
    pub(crate) fn claim(self) -> Claim {
        match self {
            NodeKind::KazooRead => Claim::Read,
            NodeKind::Permit { limit } => Claim::Shared { limit },
            _ => Claim::Exclusive,
        }
    }

    /// Whether fencelock writes nodes of this kind (in one of its styles): only then is
    /// the node's data read as fencelock's (time and holder text).
    pub(crate) fn may_be_fencelock(self) -> bool {
        matches!(
            self,
            NodeKind::Curator | NodeKind::KazooLock | NodeKind::Permit { .. }
        )
    }

    /// The client that writes nodes of this kind, as shown for a foreign holder.
    pub(crate) fn client(self) -> &'static str {
        match self {
            NodeKind::Curator => "curator",
            NodeKind::KazooLock => "kazoo",
            NodeKind::KazooRead => "kazoo-read",
            NodeKind::ZkRecipe => "zookeeper-recipe",
            NodeKind::Permit { .. } => "fencelock-semaphore",
        }
    }
}

/// The kind and sequence number of a lock node name; `None` for any other name.
///
/// The sequence is the suffix the server appends (`%010d`: ten digits, or a `-` and
/// nine or more after the counter wraps). All sequential children of one directory
/// share the directory's counter, so sequences order nodes across clients.
pub(crate) fn contender(child: &str) -> Option<(NodeKind, i64)> {
    let unsigned = child.trim_end_matches(|c: char| c.is_ascii_digit());
    if unsigned.len() == child.len() {
        return None;
    }
    // A positive sequence (`…-lock-0000000012`), else a negative one, after the
    // directory's counter wrapped (`…-lock--000000012`).
    [Some(unsigned), unsigned.strip_suffix('-')]
        .into_iter()
        .flatten()
        .find_map(|head| {
            let kind = kind_of(head)?;
            let seq = &child[head.len()..];
            (seq.len() >= 10).then_some(())?;
            Some((kind, seq.parse().ok()?))
        })
}

/// The kind of a node name without its sequence suffix.
fn kind_of(head: &str) -> Option<NodeKind> {
    if let Some(limit) = permit_limit(head) {
        Some(NodeKind::Permit { limit })
    } else if head == "lock-" || head.ends_with("-lock-") {
        Some(NodeKind::Curator)
    } else if head.ends_with("__lock__") {
        Some(NodeKind::KazooLock)
    } else if head.ends_with("__rlock__") {
        Some(NodeKind::KazooRead)
    } else {
        let session = head.strip_prefix("x-")?.strip_suffix('-')?;
        let digits = session.strip_prefix('-').unwrap_or(session);
        (!digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
            .then_some(NodeKind::ZkRecipe)
    }
}

/// The limit of a permit node's head `…-p<limit>-lock-` (limit > 0).
fn permit_limit(head: &str) -> Option<u32> {
    let (_, digits) = head.strip_suffix("-lock-")?.rsplit_once("-p")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|l| *l > 0)
}

/// The name of the node that holds permit slot `slot` of a semaphore, in its lock
/// directory: ephemeral, not sequential, its data the holder's node name. No client
/// reads it as a contender (no sequence), and it sorts after every sequence.
pub(crate) fn slot_node(slot: u32) -> String {
    format!("slot-{slot}")
}

/// The limit of a queued permit among `children` that differs from `limit`, if any.
pub(crate) fn other_limit(children: &[String], limit: u32) -> Option<u32> {
    queue(children)
        .into_iter()
        .find_map(|(_, kind)| match kind {
            NodeKind::Permit { limit: other } if other != limit => Some(other),
            _ => None,
        })
}

/// The contenders among `children`, lowest sequence (the head of the queue) first,
/// with their kind. Other names are ignored.
pub(crate) fn queue(children: &[String]) -> Vec<(&str, NodeKind)> {
    let mut nodes: Vec<(i64, &str, NodeKind)> = children
        .iter()
        .filter_map(|c| contender(c).map(|(kind, seq)| (seq, c.as_str(), kind)))
        .collect();
    nodes.sort_unstable_by(|a, b| (a.0, a.1).cmp(&(b.0, b.1)));
    nodes.into_iter().map(|(_, c, kind)| (c, kind)).collect()
}

/// The contender node names among `children`, lowest sequence (the holder) first.
pub(crate) fn sorted(children: &[String]) -> Vec<&str> {
    queue(children).into_iter().map(|(c, _)| c).collect()
}

/// How many contenders of `queue` hold the lock at once (a granted prefix: one
/// mutex, or a run of kazoo readers) and how many wait.
pub(crate) fn holders_and_waiters(queue: &[(&str, NodeKind)]) -> (usize, usize) {
    let claims: Vec<Claim> = queue.iter().map(|(_, kind)| kind.claim()).collect();
    let holders = (0..claims.len())
        .take_while(|i| decide(&claims, *i) == Some(Decision::Granted))
        .count();
    (holders, claims.len() - holders)
}

/// Where an acquisition stands in its lock's queue: the kit's [`Position`] over node
/// names. `Owner`: it holds the lock; `WaitFor(node)`: it waits for this node to go
/// away (its immediate predecessor for a mutex, the nearest earlier writer for a
/// reader), a permit waiter also wakes when this node's data is set (the semaphore
/// hand-off signal of [`decide`]); `WaitForAny(nodes)`: the first permit waiter
/// waits until any of these nodes (the permits just ahead) goes away; `Missing`: its
/// node is not among the children (deleted, or its session expired).
///
/// [`Position`]: lock_core::backend::Position
pub(crate) type Position<'a> = lock_core::backend::Position<&'a str>;

/// The position of node `own` given the children of its lock directory, in sequence
/// order, each node's claim read from its name ([`NodeKind::claim`]): the kit's
/// [`position`](lock_core::backend::position) grants the lowest sequence and has
/// each waiter watch only the node(s) [`decide`] names, whichever client wrote them
/// (a kazoo reader ahead is a predecessor like any other).
pub(crate) fn position<'a>(children: &'a [String], own: &str) -> Position<'a> {
    let nodes: Vec<(&str, Claim)> = queue(children)
        .into_iter()
        .map(|(node, kind)| (node, kind.claim()))
        .collect();
    lock_core::backend::position(&nodes, &own)
}

/// Whether a contender queues behind node `own` among `children`.
pub(crate) fn has_successor(children: &[String], own: &str) -> bool {
    let nodes = queue(children);
    nodes
        .iter()
        .position(|(c, _)| *c == own)
        .is_some_and(|i| i + 1 < nodes.len())
}

/// What a lock node stores: the acquisition time (unix milliseconds) on the first
/// line, then the holder text if one was given (the kit's value format,
/// [`encode_value`]); the time alone, without a newline, if none was.
pub(crate) fn encode_data(holder: Option<&str>, at: SystemTime) -> Vec<u8> {
    match holder {
        Some(holder) => encode_value(at, holder).into_bytes(),
        None => unix_millis(at).to_string().into_bytes(),
    }
}

/// The holder text shown for a node that [`decode_data`] does not read (another
/// client's): the client's name, then the node's data if it is printable text (kazoo
/// stores its `identifier`, Curator the host's address).
pub(crate) fn foreign_holder(kind: NodeKind, data: &[u8]) -> String {
    match std::str::from_utf8(data) {
        Ok(text) if !text.is_empty() && !text.chars().any(char::is_control) => {
            format!("{}: {text}", kind.client())
        }
        _ => kind.client().to_owned(),
    }
}

/// Reads what [`encode_data`] wrote: the holder text and the acquisition time. Data
/// written by something else yields `(None, None)`.
pub(crate) fn decode_data(data: &[u8]) -> (Option<String>, Option<SystemTime>) {
    let Ok(text) = std::str::from_utf8(data) else {
        return (None, None);
    };
    match split_value(text) {
        Some((Some(at), holder)) => (Some(holder.to_owned()), Some(at)),
        Some((None, _)) => (None, None),
        None => (None, from_unix_millis(text)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

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
    fn sequence_and_kind_are_read_from_the_name() {
        let seq = |c: &str| contender(c).map(|(_, s)| s);
        assert_eq!(seq("0f3c-lock-0000000007"), Some(7));
        assert_eq!(seq("a-lock-b-lock-0000000012"), Some(12));
        assert_eq!(seq("x-lock--2147483648"), Some(-2147483648));
        assert_eq!(seq("a-lock--000000012"), Some(-12));
        for bad in [
            "x-lock-",
            "x-lock-12a",
            "x-lock-12",
            "readme",
            "0000000012",
            "a_lock_0000000012",
            "x-0000000012",
            "x-a1-0000000012",
            "x--0000000012",
            "uuid__lock__",
            "a-lock-99999999999999999999",
        ] {
            assert_eq!(contender(bad), None, "{bad}");
        }
        let kind = |c: &str| contender(c).map(|(k, _)| k);
        assert_eq!(
            contender("_c_4f1d2a9e-0d8c-4b4a-9a52-6f7e8b3c2d1a-lock-0000000003"),
            Some((NodeKind::Curator, 3))
        );
        assert_eq!(kind("lock-0000000003"), Some(NodeKind::Curator));
        assert_eq!(
            contender("9b2c4e6f8a0b4c2d9e1f3a5b7c9d0e1f__lock__0000000004"),
            Some((NodeKind::KazooLock, 4))
        );
        assert_eq!(
            contender("9b2c4e6f8a0b4c2d9e1f3a5b7c9d0e1f__rlock__0000000005"),
            Some((NodeKind::KazooRead, 5))
        );
        assert_eq!(
            contender("x-72057594037927936-0000000006"),
            Some((NodeKind::ZkRecipe, 6))
        );
        assert_eq!(
            contender("x--72057594037927936-0000000006"),
            Some((NodeKind::ZkRecipe, 6))
        );
        assert_eq!(
            contender("x-7-000000006"),
            None,
            "nine digits is not a sequence"
        );
        assert_eq!(contender("x-7--000000006"), Some((NodeKind::ZkRecipe, -6)));
    }

    #[test]
    fn every_clients_nodes_queue_by_sequence() {
        let kids = children(&[
            "x-72057594037927936-0000000004",
            "b__rlock__0000000002",
            "_c_u-lock-0000000001",
            "junk",
            "a__lock__0000000003",
            "f-lock-0000000005",
            "c__rlock__0000000006",
        ]);
        assert_eq!(
            sorted(&kids),
            [
                "_c_u-lock-0000000001",
                "b__rlock__0000000002",
                "a__lock__0000000003",
                "x-72057594037927936-0000000004",
                "f-lock-0000000005",
                "c__rlock__0000000006",
            ]
        );
        assert_eq!(
            position(&kids, "f-lock-0000000005"),
            Position::WaitFor("x-72057594037927936-0000000004")
        );
        let kids = children(&["b__rlock__0000000002", "f-lock-0000000005"]);
        assert_eq!(
            position(&kids, "f-lock-0000000005"),
            Position::WaitFor("b__rlock__0000000002"),
            "a mutex waits for a kazoo reader ahead"
        );
        assert_eq!(position(&kids[1..], "f-lock-0000000005"), Position::Owner);
    }

    #[test]
    fn kazoo_readers_at_the_head_hold_together() {
        let kids = children(&[
            "a__rlock__0000000001",
            "b__rlock__0000000002",
            "c-lock-0000000003",
            "d__rlock__0000000004",
        ]);
        assert_eq!(holders_and_waiters(&queue(&kids)), (2, 2));
        assert_eq!(holders_and_waiters(&queue(&kids[2..])), (1, 1));
        assert_eq!(holders_and_waiters(&queue(&[])), (0, 0));
    }

    #[test]
    fn foreign_holders_are_named_by_client() {
        assert_eq!(
            foreign_holder(NodeKind::KazooLock, b"worker-7"),
            "kazoo: worker-7"
        );
        assert_eq!(
            foreign_holder(NodeKind::Curator, b"127.0.0.1"),
            "curator: 127.0.0.1"
        );
        assert_eq!(
            foreign_holder(NodeKind::ZkRecipe, &[0x12, 0x34]),
            "zookeeper-recipe"
        );
        assert_eq!(foreign_holder(NodeKind::KazooRead, b""), "kazoo-read");
        assert_eq!(foreign_holder(NodeKind::KazooRead, b"\xff"), "kazoo-read");
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
    fn the_first_permit_waiter_watches_every_permit_ahead_the_next_one_the_waiter_ahead() {
        let kids = children(&[
            "a-p2-lock-0000000001",
            "b-p2-lock-0000000002",
            "slot-0",
            "c-p2-lock-0000000003",
            "d-p2-lock-0000000004",
        ]);
        assert_eq!(position(&kids, "b-p2-lock-0000000002"), Position::Owner);
        assert_eq!(
            position(&kids, "c-p2-lock-0000000003"),
            Position::WaitForAny(vec!["a-p2-lock-0000000001", "b-p2-lock-0000000002"])
        );
        assert_eq!(
            position(&kids, "d-p2-lock-0000000004"),
            Position::WaitFor("c-p2-lock-0000000003")
        );
        assert!(has_successor(&kids, "c-p2-lock-0000000003"));
        assert!(!has_successor(&kids, "d-p2-lock-0000000004"));
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
        assert!(is_own("abc__lock__0000000001", "abc"));
        assert!(is_own("abc__rlock__0000000001", "abc"));
        assert!(!is_own("abd__rlock__0000000001", "abc"));
        assert_eq!(
            contender(&format!(
                "abc{}0000000001",
                marker(ZkNodeStyle::Curator, Claim::Read)
            )),
            Some((NodeKind::KazooRead, 1))
        );
        assert_eq!(marker(ZkNodeStyle::Curator, Claim::Write), "-lock-");
        let permit = format!(
            "abc{}0000000002",
            marker(ZkNodeStyle::Kazoo, Claim::Shared { limit: 3 })
        );
        assert_eq!(permit, "abc-p3-lock-0000000002");
        assert_eq!(contender(&permit), Some((NodeKind::Permit { limit: 3 }, 2)));
        assert!(is_own(&permit, "abc"));
        assert_eq!(
            contender("abc-p0-lock-0000000002"),
            Some((NodeKind::Curator, 2))
        );
        assert_eq!(
            contender("_c_4f1d2a9e-0d8c-lock-0000000002"),
            Some((NodeKind::Curator, 2))
        );
        assert_eq!(
            contender(&slot_node(2)),
            None,
            "slot nodes are no contenders"
        );
        let kids = children(&[&permit, "d-p4-lock-0000000003", "slot-0"]);
        assert_eq!(other_limit(&kids, 3), Some(4));
        assert_eq!(other_limit(&kids[..1], 3), None);
        assert_eq!(marker(ZkNodeStyle::Kazoo, Claim::Write), "__lock__");
        assert_eq!(
            node_prefix("/jobs", "abc", ZkNodeStyle::Curator, Claim::Exclusive),
            "/jobs/abc-lock-"
        );
        assert_eq!(
            node_prefix("/jobs", "abc", ZkNodeStyle::Kazoo, Claim::Exclusive),
            "/jobs/abc__lock__"
        );
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
        assert_eq!(decode_data(b"x\nholder"), (None, None));
        assert_eq!(
            decode_data(b"12\n"),
            (
                Some(String::new()),
                Some(UNIX_EPOCH + Duration::from_millis(12))
            )
        );
        // The on-server format, byte for byte (older clients read it).
        assert_eq!(encode_data(Some("h"), at), b"1700000000123\nh");
        assert_eq!(encode_data(None, at), b"1700000000123");
    }
}
