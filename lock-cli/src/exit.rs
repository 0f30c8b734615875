//! Exit codes, documented in `fencelock --help`.

use fencelock::{Error, ErrorKind};

/// Bad usage: invalid flags, name, URL or TTL (clap uses 2 as well).
pub(crate) const USAGE: u8 = 2;
/// The backend could not be reached (sysexits EX_UNAVAILABLE).
pub(crate) const UNAVAILABLE: u8 = 69;
/// The backend refused the credentials, a certificate, or the rights of the user
/// (sysexits EX_NOPERM).
pub(crate) const NO_PERMISSION: u8 = 77;
/// Any other failure of fencelock itself (sysexits EX_SOFTWARE).
pub(crate) const SOFTWARE: u8 = 70;
/// The lock became suspect or lost, while waiting or while the command ran (then the
/// command was terminated) (sysexits EX_TEMPFAIL).
pub(crate) const LOCK_LOST: u8 = 75;
/// The command was found but cannot be executed (the shell's code).
pub(crate) const COMMAND_NOT_EXECUTABLE: u8 = 126;
/// The command was not found (the shell's code).
pub(crate) const COMMAND_NOT_FOUND: u8 = 127;

/// A failure that ends the program with a one-line message and a code.
#[derive(Debug)]
pub(crate) struct Exit {
    pub(crate) code: u8,
    pub(crate) message: String,
}

impl Exit {
    pub(crate) fn new(code: u8, message: impl Into<String>) -> Self {
        Exit {
            code,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Exit::new(USAGE, message)
    }
}

impl From<Error> for Exit {
    fn from(err: Error) -> Self {
        let code = match err.kind() {
            ErrorKind::InvalidName
            | ErrorKind::InvalidConfig
            | ErrorKind::UnsupportedScheme
            | ErrorKind::FeatureDisabled
            | ErrorKind::Unsupported => USAGE,
            ErrorKind::Unavailable | ErrorKind::Timeout => UNAVAILABLE,
            ErrorKind::LeaseLost => LOCK_LOST,
            ErrorKind::Unauthenticated | ErrorKind::PermissionDenied => NO_PERMISSION,
            _ => SOFTWARE,
        };
        Exit::new(code, err.to_string())
    }
}

impl From<std::io::Error> for Exit {
    fn from(err: std::io::Error) -> Self {
        Exit::new(SOFTWARE, err.to_string())
    }
}
