//! Errors of the evaluator.

/// What can go wrong when configuring the evaluator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// A vote mode name other than `string` or `equiv`.
    #[error("unknown vote mode {0:?} (expected \"string\" or \"equiv\")")]
    UnknownVoteMode(String),
}
