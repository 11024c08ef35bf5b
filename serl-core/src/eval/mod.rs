//! The SeRL evaluator: answer extraction, equivalence, majority vote,
//! instruction parsing and filters, ROUGE-L and the diversity filter, the
//! difficulty filter and the question-generation prompt.
//!
//! Pure Rust with no ML dependency; it builds for `wasm32-unknown-unknown`.
//! This module is the only voter and filter of libserl: the CLI, the C ABI,
//! the WASM build and the trainer all call it.

mod equiv;
mod error;
mod extract;
mod filter;
mod instructions;
mod prompt;
mod py;
mod rng;
mod rouge;
mod vote;

pub use equiv::{Expr, Parsed, equivalent, parse_candidates, verify};
pub use error::Error;
pub use extract::{extract_answer, strip_string};
pub use filter::{DEFAULT_THRESHOLD, DiversityFilter, FilterVerdict};
pub use instructions::{
    CaseMode, ParsedItem, RuleRejection, capitalize, parse_instructions, parse_items,
    rule_rejection,
};
pub use prompt::{
    DEFAULT_DIFFICULTY_BOUNDS, DEFAULT_SHOTS, GENERATION_HEADER, GENERATION_SYSTEM,
    GenerationPrompt, MAX_POOL_SHOTS, build_generation_prompt, difficulty_keep, normalize_shot,
    numbered_list,
};
pub use rng::{Rng, fnv1a};
pub use rouge::{Interner, Pattern, RougeScore, rouge_l, tokenize};
pub use vote::{VoteMode, VoteResult, vote};
