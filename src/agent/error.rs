//! The agent's own error type: a refusal, kept apart from the modules that raise it
//! (`source` for history and signatures, `fsops` for unsafe paths) so neither imports
//! the other to say "refused".

use anyhow::{Result, anyhow};

/// Why a pull was refused (the repository did not prove itself).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct Refusal(pub String);

/// An error that refuses the pull.
pub fn refusal(msg: impl Into<String>) -> anyhow::Error {
    anyhow!(Refusal(msg.into()))
}

/// Refuses the pull.
pub fn refuse<T>(msg: impl Into<String>) -> Result<T> {
    Err(refusal(msg))
}
