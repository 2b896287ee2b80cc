//! State kept by `release`: the audit log (the only record of what happened), locks, and
//! the redaction of secrets on their way there.

pub mod audit;
pub mod history;
pub mod lock;
pub mod redact;
