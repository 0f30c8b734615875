//! How a lock's data is written on a server: the value codec (acquisition time and
//! holder text) and the name escaping (a lock name as one path segment).
//!
//! These are on-server formats: clients of different versions read each other's
//! entries, so they never change.

use crate::LockName;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `at` in unix milliseconds (0 before the epoch): the time line of a value.
///
/// # Examples
///
/// ```
/// use lock_core::backend::unix_millis;
/// use std::time::{Duration, UNIX_EPOCH};
///
/// assert_eq!(unix_millis(UNIX_EPOCH + Duration::from_millis(1_700_000_000_123)), 1_700_000_000_123);
/// assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
/// ```
pub fn unix_millis(at: SystemTime) -> u128 {
    at.duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// Reads a time line written by [`unix_millis`]; `None` unless it is a number of
/// milliseconds (that fits a `SystemTime`).
///
/// # Examples
///
/// ```
/// use lock_core::backend::{from_unix_millis, unix_millis};
/// use std::time::SystemTime;
///
/// let now = SystemTime::now();
/// let at = from_unix_millis(&unix_millis(now).to_string()).unwrap();
/// assert!(now.duration_since(at).unwrap().as_millis() < 1);
/// assert_eq!(from_unix_millis("soon"), None);
/// ```
pub fn from_unix_millis(text: &str) -> Option<SystemTime> {
    let millis = text.parse::<u64>().ok()?;
    UNIX_EPOCH.checked_add(Duration::from_millis(millis))
}

/// The value of a lock entry: the acquisition time in unix milliseconds, a newline,
/// and the holder text (etcd's keys, ZooKeeper's nodes that carry a holder).
///
/// # Examples
///
/// ```
/// use lock_core::backend::{encode_value, split_value};
/// use std::time::{Duration, UNIX_EPOCH};
///
/// let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
/// let value = encode_value(at, "web-3:4711");
/// assert_eq!(value, "1700000000123\nweb-3:4711");
/// assert_eq!(split_value(&value), Some((Some(at), "web-3:4711")));
/// ```
pub fn encode_value(at: SystemTime, holder: &str) -> String {
    format!("{}\n{holder}", unix_millis(at))
}

/// Splits a value written by [`encode_value`] into its time (`None` when the first
/// line is not a time) and its holder text (possibly empty). `None` when `value` has
/// no newline: then it is not such a value, and each backend reads it its own way
/// (etcd: holder text alone, as `etcdctl elect` writes it; ZooKeeper: a time alone).
///
/// # Examples
///
/// ```
/// use lock_core::backend::split_value;
///
/// assert_eq!(split_value("x\nholder"), Some((None, "holder")));
/// assert_eq!(split_value("a\nb\nc").map(|v| v.1), Some("b\nc"));
/// assert_eq!(split_value("no newline"), None);
/// ```
pub fn split_value(value: &str) -> Option<(Option<SystemTime>, &str)> {
    let (millis, holder) = value.split_once('\n')?;
    Some((from_unix_millis(millis), holder))
}

/// A lock name as one path segment: `/` is written `%2F`, so the entries of `a` and
/// of `a/b` never share a directory. Injective, since `%` cannot occur in a lock
/// name.
///
/// # Examples
///
/// ```
/// use lock_core::{backend::{escape_name, unescape_name}, LockName};
///
/// let name = LockName::new("jobs/nightly:1")?;
/// assert_eq!(escape_name(&name), "jobs%2Fnightly:1");
/// assert_eq!(unescape_name("jobs%2Fnightly:1"), Some(name));
/// # Ok::<(), lock_core::Error>(())
/// ```
pub fn escape_name(name: &LockName) -> String {
    name.as_str().replace('/', "%2F")
}

/// The lock name of a segment written by [`escape_name`]; `None` for any other text
/// (not a lock name, or not written that way, such as `a/b` or `a%2f`).
pub fn unescape_name(segment: &str) -> Option<LockName> {
    let name = LockName::new(segment.replace("%2F", "/")).ok()?;
    (escape_name(&name) == segment).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> LockName {
        LockName::new(s).unwrap()
    }

    #[test]
    fn value_round_trips_with_and_without_holder() {
        let at = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(encode_value(at, ""), "1700000000123\n");
        assert_eq!(split_value(&encode_value(at, "")), Some((Some(at), "")));
        let value = encode_value(at, "a\nb");
        assert_eq!(split_value(&value), Some((Some(at), "a\nb")));
    }

    #[test]
    fn value_garbage_is_read_without_panicking() {
        assert_eq!(split_value(""), None);
        assert_eq!(split_value("\n"), Some((None, "")));
        assert_eq!(split_value("-1\nh"), Some((None, "h")));
        assert_eq!(split_value(&format!("{}\nh", u128::MAX)), Some((None, "h")));
        assert_eq!(from_unix_millis(""), None);
        assert_eq!(from_unix_millis("1.5"), None);
        assert_eq!(from_unix_millis("0"), Some(UNIX_EPOCH));
    }

    #[test]
    fn times_before_the_epoch_are_written_as_zero() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_millis(5)), 0);
        assert_eq!(
            encode_value(UNIX_EPOCH - Duration::from_secs(1), "h"),
            "0\nh"
        );
    }

    #[test]
    fn names_escape_injectively_and_only_escaped_segments_unescape() {
        for n in ["a", "a/b", "a/b/c", "jobs/nightly:1", "x.y_z-1"] {
            let escaped = escape_name(&name(n));
            assert!(!escaped.contains('/'), "{escaped}");
            assert_eq!(unescape_name(&escaped), Some(name(n)));
        }
        assert_ne!(escape_name(&name("a/b")), escape_name(&name("a")));
        assert_eq!(unescape_name("a/b"), None, "not escaped");
        assert_eq!(unescape_name("a%2f"), None, "lower case is not ours");
        assert_eq!(unescape_name("%2F"), None, "empty segments");
        assert_eq!(unescape_name(""), None);
        assert_eq!(unescape_name("%"), None);
    }
}
