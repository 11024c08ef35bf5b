//! Loading of the reference vectors shared by the integration tests, and
//! the tiny model shapes the model and engine tests share.
#![allow(dead_code)]

use serde_json::Value;

/// Every JSON line of `tests/fixtures/NAME`.
pub fn fixture(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| serde_json::from_str(l).unwrap_or_else(|e| panic!("{path}:{}: {e}", i + 1)))
        .collect()
}

/// A string field of a fixture record.
pub fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("field {key} missing in {v}"))
}

/// A tiny random-model shape: the fixture's 2-layer Llama with a few more
/// tokens and a narrower MLP, tied or untied, with Qwen2's q/k/v biases for
/// that family.
#[cfg(feature = "train")]
pub fn tiny_config(family: serl_core::model::Family, tie: bool) -> serl_core::model::ModelConfig {
    serl_core::model::ModelConfig {
        family,
        vocab_size: 259 + 8,
        intermediate_size: 48,
        max_position_embeddings: 256,
        tie_word_embeddings: tie,
        attention_bias: family == serl_core::model::Family::Qwen2,
        ..serl_core::model::tiny_llama_config()
    }
}
