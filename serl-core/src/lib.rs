//! libserl: SeRL (self-play reinforcement learning for LLMs with limited
//! data, arXiv 2505.20347) as an embeddable library.
//!
//! [`eval`] is the evaluator every surface calls: answer extraction and
//! equivalence, majority-vote self-reward, instruction parsing and filters.
//! [`rl`] is the reinforcement-learning arithmetic (KL, advantages, PPO loss).
//! [`engine`] (feature `train`) is the compute: forward and backward
//! kernels behind a backend seam, and the Llama-family driver on them.
//! [`model`] (feature `train`) is the model engine: a trainable
//! Llama/Qwen2 decoder in candle, HF and GGUF loading, tokenizer, sampling.
//! [`train`] (feature `train`) is the SeRL trainer built on both.

#[cfg(feature = "train")]
pub mod engine;
pub mod eval;
#[cfg(feature = "train")]
pub mod model;
pub mod rl;
#[cfg(feature = "train")]
pub mod train;

/// The README's Rust examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
