//! Errors as Linux reports them: an errno, plus a message for library users.

pub use softiommu_uapi::errno::Errno;
use std::fmt;

/// Result of an engine operation.
pub type Result<T> = std::result::Result<T, Errno>;

/// The typed API's error: the errno Linux would return, and what went wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    /// The errno Linux would return.
    pub errno: Errno,
    /// What the call was doing when it failed.
    pub message: String,
}

impl Error {
    /// An error `errno` met while doing `what`.
    pub fn new(errno: Errno, what: impl Into<String>) -> Self {
        Error {
            errno,
            message: what.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.message, self.errno)
    }
}

impl std::error::Error for Error {}
