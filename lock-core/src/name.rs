//! Validated lock names.

use crate::{Error, ErrorKind, Result};
use std::{fmt, sync::Arc};

/// The longest lock name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 256;

/// A validated lock name.
///
/// Rules, checked in this one place for every backend:
/// - 1 to [`MAX_NAME_LEN`] bytes;
/// - only ASCII letters, digits and `-` `_` `.` `:` `/`;
/// - `/` separates segments: no leading or trailing `/`, no empty segment (`a//b`),
///   no `.` or `..` segment.
///
/// Breaking a rule gives an [`ErrorKind::InvalidName`] error, never a panic.
/// Names are compared exactly; backends encode them so that the waiters of lock `a`
/// never mix with those of lock `a/b`.
///
/// # Examples
///
/// ```
/// use lock_core::{ErrorKind, LockName};
///
/// let name = LockName::new("billing/charge:42")?;
/// assert_eq!(name.as_str(), "billing/charge:42");
/// assert_eq!(LockName::new("a/../b").unwrap_err().kind(), ErrorKind::InvalidName);
/// assert_eq!(LockName::new("").unwrap_err().kind(), ErrorKind::InvalidName);
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LockName(Arc<str>);

impl LockName {
    /// Validates `name`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] with a message saying which rule was broken.
    pub fn new(name: impl AsRef<str>) -> Result<Self> {
        let name = name.as_ref();
        validate(name).map_err(|why| {
            Error::new(
                ErrorKind::InvalidName,
                format!("lock name {:?} {why}", truncate(name)),
            )
        })?;
        Ok(LockName(Arc::from(name)))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn truncate(name: &str) -> &str {
    match name.char_indices().nth(64) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

fn validate(name: &str) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("is empty".into());
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "is {} bytes long, more than {MAX_NAME_LEN}",
            name.len()
        ));
    }
    if let Some(c) = name.chars().find(|c| !is_allowed(*c)) {
        return Err(format!(
            "contains {c:?}; allowed are ASCII letters, digits and - _ . : /"
        ));
    }
    for segment in name.split('/') {
        match segment {
            "" => return Err("has an empty segment or a leading or trailing '/'".into()),
            "." | ".." => return Err(format!("has a {segment:?} segment")),
            _ => {}
        }
    }
    Ok(())
}

fn is_allowed(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '/')
}

impl fmt::Display for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for LockName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl AsRef<str> for LockName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

/// Anything that can name a lock: `&str`, `String` (validated on conversion) or a
/// [`LockName`] (already valid).
///
/// # Examples
///
/// ```
/// use lock_core::{IntoLockName, LockName};
///
/// let a = "jobs/nightly".into_lock_name()?;
/// let b = a.clone().into_lock_name()?;
/// assert_eq!(a, b);
/// # Ok::<(), lock_core::Error>(())
/// ```
pub trait IntoLockName {
    /// Converts, validating where needed.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidName`] for an invalid name.
    fn into_lock_name(self) -> Result<LockName>;
}

impl IntoLockName for LockName {
    fn into_lock_name(self) -> Result<LockName> {
        Ok(self)
    }
}

impl IntoLockName for &LockName {
    fn into_lock_name(self) -> Result<LockName> {
        Ok(self.clone())
    }
}

impl IntoLockName for &str {
    fn into_lock_name(self) -> Result<LockName> {
        LockName::new(self)
    }
}

impl IntoLockName for String {
    fn into_lock_name(self) -> Result<LockName> {
        LockName::new(self)
    }
}

impl IntoLockName for &String {
    fn into_lock_name(self) -> Result<LockName> {
        LockName::new(self)
    }
}

impl std::str::FromStr for LockName {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        LockName::new(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_documented_character_set() {
        for ok in [
            "a",
            "daily-report",
            "a/b/c",
            "x_y.z:1",
            "A9",
            "a.b",
            "..a",
            &"a".repeat(256),
        ] {
            assert!(LockName::new(ok).is_ok(), "{ok:?} should be valid");
        }
    }

    #[test]
    fn rejects_every_broken_rule_with_invalid_name() {
        let long = "a".repeat(257);
        for bad in [
            "", "/a", "a/", "a//b", ".", "..", "a/./b", "a/../b", "sp ace", "é", "a\0b", "a*",
            &long,
        ] {
            let err = LockName::new(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidName, "{bad:?}");
        }
    }

    #[test]
    fn message_names_the_lock_and_the_rule() {
        let err = LockName::new("a//b").unwrap_err();
        assert!(err.to_string().contains("\"a//b\""), "{err}");
        assert!(err.to_string().contains("empty segment"), "{err}");
    }
}
