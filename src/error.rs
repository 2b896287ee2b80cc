//! The errors commands return, and the one place they become exit codes (SPEC §5).

use std::path::PathBuf;

use crate::project::diagnostic::Diagnostic;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No `release.yaml` where it was looked for.
    #[error("no release.yaml found {}", searched_where(.searched, *.explicit))]
    ConfigNotFound { searched: PathBuf, explicit: bool },

    /// `release.yaml` or a runbook has problems; each is a diagnostic.
    #[error("invalid configuration or runbook")]
    Invalid(Vec<Diagnostic>),

    /// A bad argument or value, found before anything ran.
    #[error("{message}")]
    InvalidInput {
        message: String,
        hint: Option<String>,
    },

    /// Refused: a rule stops this (lock held, stage not reached, confirmation impossible).
    #[error("refused: {message}")]
    Refused {
        message: String,
        hint: Option<String>,
    },

    /// The work failed (the audit log does not verify, a file cannot be read).
    #[error("{message}")]
    Failed {
        message: String,
        hint: Option<String>,
    },

    /// Reading or writing a file failed.
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
}

fn searched_where(searched: &std::path::Path, explicit: bool) -> String {
    if explicit {
        format!("at {}", searched.display())
    } else {
        format!("in {} or any parent folder", searched.display())
    }
}

impl Error {
    /// The exit code SPEC §5 gives this error.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::ConfigNotFound { .. } | Error::Invalid(_) | Error::InvalidInput { .. } => 2,
            Error::Io { .. } | Error::Failed { .. } => 1,
            Error::Refused { .. } => 3,
        }
    }

    /// What to do about it.
    pub fn hint(&self) -> Option<String> {
        match self {
            Error::ConfigNotFound {
                explicit: false, ..
            } => Some(
                "run `release init` to create one, or point at it with `-C DIR` or `--config FILE`"
                    .into(),
            ),
            Error::ConfigNotFound { explicit: true, .. } => {
                Some("check the path given to --config".into())
            }
            Error::InvalidInput { hint, .. }
            | Error::Refused { hint, .. }
            | Error::Failed { hint, .. } => hint.clone(),
            Error::Io { .. } | Error::Invalid(_) => None,
        }
    }

    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}
