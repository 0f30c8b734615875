//! Parsing of backend URLs (`scheme://[user[:password]@]host:port[,host:port…][/path][?key=value&…]`),
//! shared by every backend's config so they all accept the same forms.

use crate::{Error, ErrorKind, Result};
use std::{fmt, time::Duration};

/// A backend URL split into its parts. Host lists are comma-separated, which general
/// URL parsers reject, hence this small parser.
///
/// `Debug` never shows the password.
///
/// The password can also come from a file: the query parameter
/// `password_file=/path` (every backend with credentials accepts it) reads it from
/// that file (one trailing newline dropped), so it appears in neither the URL, the
/// shell history nor the process list. It cannot be combined with a password in
/// the URL, and needs a user name.
///
/// # Examples
///
/// ```
/// use lock_core::url::BackendUrl;
/// use std::time::Duration;
///
/// let url = BackendUrl::parse("etcd://app:s3cret@10.0.0.1:2379,10.0.0.2:2379/locks?ttl=15s")?;
/// assert_eq!(url.scheme, "etcd");
/// assert_eq!(url.hosts, ["10.0.0.1:2379", "10.0.0.2:2379"]);
/// assert_eq!(url.path, "/locks");
/// assert_eq!(url.duration_param("ttl")?, Some(Duration::from_secs(15)));
/// assert!(!format!("{url:?}").contains("s3cret"));
/// # Ok::<(), lock_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackendUrl {
    /// The scheme, lowercased (`etcd`, `zk`, `memory`).
    pub scheme: String,
    /// The user name, percent-decoded.
    pub username: Option<String>,
    /// The password, percent-decoded.
    pub password: Option<String>,
    /// `host:port` entries in the order given (may be empty, as in `memory://`).
    pub hosts: Vec<String>,
    /// The path including its leading `/`, or `""`.
    pub path: String,
    /// Query parameters in order, percent-decoded.
    pub params: Vec<(String, String)>,
}

fn invalid(msg: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidConfig, msg)
}

/// The scheme of `url` (the part before `://`), lowercased.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] when there is no `scheme://`.
pub fn scheme_of(url: &str) -> Result<String> {
    match url.split_once("://") {
        Some((scheme, _))
            if !scheme.is_empty()
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')) =>
        {
            Ok(scheme.to_ascii_lowercase())
        }
        _ => Err(invalid(format!(
            "{:?} is not a backend url; expected scheme://…",
            redact(url)
        ))),
    }
}

/// `url` without its password (`user:secret@` becomes `user@`), for handing on to
/// other processes; the user name, hosts, path and parameters stay.
///
/// # Examples
///
/// ```
/// use lock_core::url::without_password;
///
/// assert_eq!(without_password("etcd://app:s3cret@h:1/locks?ttl=5s"), "etcd://app@h:1/locks?ttl=5s");
/// assert_eq!(without_password("zk://h:1/x"), "zk://h:1/x");
/// ```
pub fn without_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

/// `url` with `password` (percent-encoded) as the password of its user, replacing
/// any password it had.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] when `url` names no user (`scheme://user@host…`);
/// the message never holds the password.
///
/// # Examples
///
/// ```
/// use lock_core::url::{with_password, BackendUrl};
///
/// let url = with_password("etcd://app@h:1/locks", "p@ss:/word")?;
/// assert_eq!(BackendUrl::parse(&url)?.password.as_deref(), Some("p@ss:/word"));
/// assert!(with_password("etcd://h:1", "x").is_err());
/// # Ok::<(), lock_core::Error>(())
/// ```
pub fn with_password(url: &str, password: &str) -> Result<String> {
    let bare = without_password(url);
    let (scheme, rest) = bare
        .split_once("://")
        .ok_or_else(|| invalid("a password needs a backend url with a user"))?;
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let at = rest[..authority_end].rfind('@').ok_or_else(|| {
        invalid(format!(
            "a password was given but {} names no user (scheme://user@host:port…)",
            redact(url)
        ))
    })?;
    let encoded: String = password
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect();
    Ok(format!(
        "{scheme}://{}:{encoded}@{}",
        &rest[..at],
        &rest[at + 1..]
    ))
}

/// Reads a password from `path`: the file's content without one trailing newline.
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] naming the path (never the content) when it cannot
/// be read or is not UTF-8.
pub fn read_password_file(path: &str) -> Result<String> {
    let content = std::fs::read(path).map_err(|e| {
        invalid(format!("cannot read the password file {path}: {e}")).with_source(e)
    })?;
    let mut text = String::from_utf8(content)
        .map_err(|_| invalid(format!("the password file {path} is not utf-8")))?;
    if text.ends_with('\n') {
        text.pop();
        if text.ends_with('\r') {
            text.pop();
        }
    }
    Ok(text)
}

/// `url` with any password replaced by `***`, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or("");
            format!("{scheme}://{user}:***@{}", &rest[at + 1..])
        }
        None => url.to_owned(),
    }
}

impl BackendUrl {
    /// Splits `url`.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] naming what is malformed (never the password).
    pub fn parse(url: &str) -> Result<Self> {
        let scheme = scheme_of(url)?;
        let rest = &url[scheme.len() + 3..];
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, ""),
        };
        let (userinfo, hostlist) = match authority.rfind('@') {
            Some(at) => (Some(&authority[..at]), &authority[at + 1..]),
            None => (None, authority),
        };
        let (username, password) = match userinfo {
            None => (None, None),
            Some(info) => {
                let (user, pass) = match info.split_once(':') {
                    Some((u, p)) => (u, Some(decode(p, "password")?)),
                    None => (info, None),
                };
                (Some(decode(user, "user name")?), pass)
            }
        };
        let hosts = parse_hosts(hostlist)?;
        let mut params = parse_query(query)?;
        let mut password = password;
        if let Some(i) = params.iter().position(|(k, _)| k == "password_file") {
            let (_, path) = params.remove(i);
            if password.is_some() {
                return Err(invalid(
                    "give the password either in the url or in password_file, not both",
                ));
            }
            if username.is_none() {
                return Err(invalid(
                    "password_file needs a user name (scheme://user@host…)",
                ));
            }
            password = Some(read_password_file(&path)?);
        }
        Ok(BackendUrl {
            scheme,
            username,
            password,
            hosts,
            path: path.trim_end_matches('/').to_owned(),
            params,
        })
    }

    /// The last value of query parameter `key`.
    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Query parameter `key` read as a duration (see [`parse_duration`]).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] when present but not a duration.
    pub fn duration_param(&self, key: &str) -> Result<Option<Duration>> {
        self.param(key)
            .map(|v| {
                parse_duration(v).map_err(|e| invalid(format!("parameter {key}: {}", e.message())))
            })
            .transpose()
    }

    /// Fails on any query parameter not in `known`, so typos do not pass silently.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::InvalidConfig`] naming the unknown parameter and the known ones.
    pub fn reject_unknown_params(&self, known: &[&str]) -> Result<()> {
        match self
            .params
            .iter()
            .find(|(k, _)| !known.contains(&k.as_str()))
        {
            Some((k, _)) => Err(invalid(format!(
                "unknown parameter {k:?} in {} url; known: {}",
                self.scheme,
                known.join(", ")
            ))),
            None => Ok(()),
        }
    }
}

impl fmt::Debug for BackendUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendUrl")
            .field("scheme", &self.scheme)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("hosts", &self.hosts)
            .field("path", &self.path)
            .field("params", &self.params)
            .finish()
    }
}

fn parse_hosts(list: &str) -> Result<Vec<String>> {
    if list.is_empty() {
        return Ok(Vec::new());
    }
    list.split(',')
        .map(|h| {
            let (host, port) = h
                .rsplit_once(':')
                .ok_or_else(|| invalid(format!("host {h:?} needs a port (host:port)")))?;
            let bare = host.trim_start_matches('[').trim_end_matches(']');
            if bare.is_empty()
                || !bare
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | ':' | '_'))
            {
                return Err(invalid(format!(
                    "host {host:?} is not a valid host name or address"
                )));
            }
            match port.parse::<u16>() {
                Ok(p) if p > 0 => Ok(h.to_owned()),
                _ => Err(invalid(format!(
                    "port {port:?} of {host:?} is not a number in 1..=65535"
                ))),
            }
        })
        .collect()
}

fn parse_query(query: &str) -> Result<Vec<(String, String)>> {
    query
        .split('&')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            Ok((decode(k, "parameter name")?, decode(v, "parameter value")?))
        })
        .collect()
}

fn decode(s: &str, what: &str) -> Result<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| invalid(format!("bad percent-escape in {what}")))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| invalid(format!("{what} is not valid utf-8")))
}

/// Parses `500ms`, `15s`, `2m`, `1h`, or a plain number of seconds (`15`, `0.5`).
///
/// # Errors
///
/// [`ErrorKind::InvalidConfig`] for anything else (including negative values).
///
/// # Examples
///
/// ```
/// use lock_core::url::parse_duration;
/// use std::time::Duration;
///
/// assert_eq!(parse_duration("250ms")?, Duration::from_millis(250));
/// assert_eq!(parse_duration("2m")?, Duration::from_secs(120));
/// assert_eq!(parse_duration("1.5")?, Duration::from_millis(1500));
/// assert!(parse_duration("soon").is_err());
/// # Ok::<(), lock_core::Error>(())
/// ```
pub fn parse_duration(s: &str) -> Result<Duration> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let scale = match unit {
        "ms" => 0.001,
        "" | "s" => 1.0,
        "m" => 60.0,
        "h" => 3600.0,
        _ => {
            return Err(invalid(format!(
                "{s:?} is not a duration (use e.g. 500ms, 15s, 2m)"
            )))
        }
    };
    num.parse::<f64>()
        .ok()
        .and_then(|n| Duration::try_from_secs_f64(n * scale).ok())
        .ok_or_else(|| invalid(format!("{s:?} is not a duration (use e.g. 500ms, 15s, 2m)")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_malformed_urls_with_invalid_config() {
        for bad in [
            "",
            "etcd",
            "://x",
            "etcd://host",
            "etcd://h:0",
            "etcd://h:99999",
            "etcd://h:1,",
            "etcd://:1",
            "zk://h:1?x=%zz",
            "etcd://h h:1",
        ] {
            let err = BackendUrl::parse(bad).expect_err(bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
        }
    }

    #[test]
    fn password_is_decoded_but_never_shown() {
        let url = BackendUrl::parse("etcd://u:p%40ss@[::1]:2379?ttl=5s").unwrap();
        assert_eq!(url.password.as_deref(), Some("p@ss"));
        assert_eq!(url.hosts, ["[::1]:2379"]);
        assert!(!format!("{url:?}").contains("p@ss"));
        assert_eq!(redact("etcd://u:p%40ss@h:1/x"), "etcd://u:***@h:1/x");
        let err = BackendUrl::parse("etcd://u:secret@h:bad").unwrap_err();
        assert!(!err.to_string().contains("secret"), "{err}");
    }

    #[test]
    fn password_file_and_helpers() {
        let dir = std::env::temp_dir().join(format!("fencelock-pw-{}", std::process::id()));
        std::fs::write(&dir, "s3cr&t:/\n").unwrap();
        let path = dir.display().to_string();
        let url =
            BackendUrl::parse(&format!("etcd://u@h:1/x?password_file={path}&ttl=2s")).unwrap();
        assert_eq!(url.password.as_deref(), Some("s3cr&t:/"));
        assert_eq!(url.params, [("ttl".to_owned(), "2s".to_owned())]);
        for bad in [
            format!("etcd://u:p@h:1?password_file={path}"),
            format!("etcd://h:1?password_file={path}"),
            "etcd://u@h:1?password_file=/nonexistent/pw".to_owned(),
        ] {
            let err = BackendUrl::parse(&bad).expect_err(&bad);
            assert_eq!(err.kind(), ErrorKind::InvalidConfig, "{bad}");
            assert!(!err.to_string().contains("s3cr"), "{err}");
        }
        std::fs::remove_file(&dir).unwrap();
        let with = with_password("etcd://u:old@h:1/x?a=b", "s3cr&t:/").unwrap();
        assert_eq!(
            BackendUrl::parse(&with).unwrap().password.as_deref(),
            Some("s3cr&t:/")
        );
        assert_eq!(without_password(&with), "etcd://u@h:1/x?a=b");
        assert!(!with_password("etcd://h:1", "s3cret")
            .unwrap_err()
            .to_string()
            .contains("s3cret"));
    }

    #[test]
    fn unknown_params_are_rejected() {
        let url = BackendUrl::parse("memory://?ttl=1s&tll=2s").unwrap();
        assert!(url.reject_unknown_params(&["ttl"]).is_err());
        assert!(url.reject_unknown_params(&["ttl", "tll"]).is_ok());
    }
}
