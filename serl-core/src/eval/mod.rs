//! The SeRL evaluator: answer extraction, equivalence, majority vote,
//! instruction parsing and filters, ROUGE-L and the diversity filter, the
//! difficulty filter and the question-generation prompt.
//!
//! Pure Rust with no ML dependency; it builds for `wasm32-unknown-unknown`.
//! This module is the only voter and filter of libserl: the CLI, the C ABI,
//! the WASM build and the trainer all call it.

mod extract;
mod py;

pub use extract::{extract_answer, strip_string};
