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

/// A scratch directory with a tiny model, a seed file and an eval file.
#[cfg(feature = "train")]
pub fn train_setup(name: &str) -> (std::path::PathBuf, serl_core::train::Config) {
    use serl_core::model::{DType, Device, Model, Tokenizer};
    use serl_core::train::Config;
    let dir = std::env::temp_dir().join(format!("serl-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let model = Model::random(
        serl_core::model::tiny_llama_config(),
        17,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    model
        .save_hf(&Tokenizer::byte_level(&[]).unwrap(), &dir.join("model"))
        .unwrap();
    let mut seeds = String::new();
    for i in 0..6 {
        seeds.push_str(&format!(
            "{{\"problem\": \"What is {i} plus {}?\", \"answer\": \"{}\"}}\n",
            i + 1,
            2 * i + 1
        ));
    }
    std::fs::write(dir.join("seeds.jsonl"), &seeds).unwrap();
    std::fs::write(dir.join("eval.jsonl"), "{\"question\": \"What is 2 plus 2?\", \"answer\": \"\\\\boxed{4}\"}\n{\"problem\": \"What is 1 plus 0?\", \"answer\": \"1\"}\n").unwrap();
    let cfg = Config {
        model: dir.join("model"),
        seeds: dir.join("seeds.jsonl"),
        eval_data: Some(dir.join("eval.jsonl")),
        out: dir.join("run"),
        self_instruct: false,
        rollout_batch_size: 3,
        n_samples_per_prompt: 4,
        generate_max_len: 8,
        instruction_max_new_tokens: 24,
        few_shot_generation_batch_size: 2,
        few_shot_generation: 3,
        input_template: "{problem}".into(),
        reward_difficulty_bounds: [0.0, 1.0],
        train_batch_size: 6,
        micro_train_batch_size: 3,
        actor_learning_rate: 1e-2,
        init_kl_coef: 0.01,
        eval_k: 2,
        eval_max_len: 6,
        steps: 4,
        ..Config::default()
    };
    (dir, cfg)
}
