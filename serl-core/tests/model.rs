//! The model engine on tiny random models: the training and rollout paths
//! agree, every parameter gets a gradient, gradients match finite
//! differences, batched sampling is deterministic and batch-independent,
//! Hugging Face save/load and GGUF load round-trip.
#![cfg(feature = "train")]

mod common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::tiny_config;
use serl_core::model::generate::{self, FinishReason};
use serl_core::model::{
    ChatMessage, Family, GenerateRequest, LoadOptions, Model, SamplingParams, Tokenizer, load_model,
};

fn tokenizer() -> Tokenizer {
    let merges: Vec<(String, String)> = [
        ("Ġ", "t"),
        ("h", "e"),
        ("Ġt", "he"),
        ("a", "n"),
        ("Ġ", "a"),
        ("i", "s"),
        ("Ġ", "i"),
        ("Ġi", "s"),
    ]
    .iter()
    .map(|(a, b)| (a.to_string(), b.to_string()))
    .collect();
    Tokenizer::byte_level(&merges).expect("tokenizer")
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    let t = rows[0].len();
    Tensor::from_vec(rows.concat(), (rows.len(), t), &Device::Cpu).expect("ids")
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .expect("sub")
        .abs()
        .expect("abs")
        .flatten_all()
        .expect("flat")
        .max(0)
        .expect("max")
        .to_scalar::<f32>()
        .expect("scalar")
}

#[test]
fn training_and_rollout_paths_agree() {
    for (family, tie) in [(Family::Llama, true), (Family::Qwen2, false)] {
        let model =
            Model::random(tiny_config(family, tie), 7, &Device::Cpu, DType::F32).expect("model");
        let rows = vec![
            vec![5u32, 9, 200, 13, 7, 40, 41, 3],
            vec![100u32, 101, 102, 103, 104, 105, 106, 107],
        ];
        let train = model.logits_train(&ids(&rows)).expect("train");
        let fast = model.logits_fast(&rows).expect("fast");
        let d = max_abs_diff(&train, &fast);
        assert!(d < 1e-4, "{family:?}: paths differ by {d}");
        // Prefill + one-token decode steps give the same last logits.
        let (mut state, first) = model.prefill(&rows[0][..3], 8).expect("prefill");
        let want: Vec<Vec<f32>> = fast.get(0).expect("row").to_vec2().expect("vec");
        let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(x, y)| (x - y).abs() < 1e-4);
        assert!(close(&first, &want[2]));
        for t in 3..rows[0].len() {
            let l: Vec<Vec<f32>> = model
                .decode(&mut state, &[rows[0][t]])
                .expect("decode")
                .to_vec2()
                .expect("vec");
            assert!(close(&l[0], &want[t]), "{family:?} position {t}");
        }
        // Log-probs from both paths.
        let lp_train: Vec<Vec<f32>> = model
            .token_logprobs(&ids(&rows))
            .expect("lp")
            .to_vec2()
            .expect("v");
        let lp_fast = candle_nn::ops::log_softmax(&fast, 2).expect("ls");
        for (b, row) in rows.iter().enumerate() {
            for t in 0..row.len() - 1 {
                let f: f32 = lp_fast
                    .get(b)
                    .and_then(|x| x.get(t))
                    .and_then(|x| x.get(row[t + 1] as usize))
                    .and_then(|x| x.to_scalar())
                    .expect("lp");
                assert!(
                    (f - lp_train[b][t]).abs() < 1e-4,
                    "logprob {b},{t}: {f} vs {}",
                    lp_train[b][t]
                );
            }
        }
    }
}

#[test]
fn every_parameter_gets_a_finite_nonzero_gradient() {
    for (family, tie) in [(Family::Llama, false), (Family::Qwen2, true)] {
        let model =
            Model::random(tiny_config(family, tie), 11, &Device::Cpu, DType::F32).expect("model");
        let rows = vec![
            vec![5u32, 9, 200, 13, 7, 40],
            vec![100u32, 101, 102, 103, 104, 105],
        ];
        let loss = model
            .token_logprobs(&ids(&rows))
            .expect("lp")
            .sum_all()
            .expect("sum");
        let grads = loss.backward().expect("backward");
        let params = model.named_parameters();
        assert!(params.len() > 10);
        for (name, var) in params {
            let g = grads
                .get(var.as_tensor())
                .unwrap_or_else(|| panic!("{family:?}: no gradient for {name}"));
            let v: Vec<f32> = g.flatten_all().expect("flat").to_vec1().expect("vec");
            assert!(
                v.iter().all(|x| x.is_finite()),
                "{name}: non-finite gradient"
            );
            assert!(
                v.iter().any(|x| *x != 0.0),
                "{family:?}: zero gradient for {name}"
            );
        }
    }
}

#[test]
fn gradients_match_finite_differences() {
    let model = Model::random(
        tiny_config(Family::Qwen2, false),
        3,
        &Device::Cpu,
        DType::F64,
    )
    .expect("model");
    let rows = vec![vec![5u32, 9, 200, 13, 7], vec![100u32, 101, 102, 103, 104]];
    let input = ids(&rows);
    let loss_of = |m: &Model| -> f64 {
        m.token_logprobs(&input)
            .expect("lp")
            .sum_all()
            .expect("sum")
            .to_scalar::<f64>()
            .expect("scalar")
    };
    let loss = model
        .token_logprobs(&input)
        .expect("lp")
        .sum_all()
        .expect("sum");
    let grads = loss.backward().expect("backward");
    let mut checked = 0;
    for (name, var) in model.named_parameters() {
        let g: Vec<f64> = grads
            .get(var.as_tensor())
            .expect("grad")
            .flatten_all()
            .expect("f")
            .to_vec1()
            .expect("v");
        let orig = var.as_tensor().copy().expect("copy");
        let n = g.len();
        // Probe a few entries of every parameter, including the largest-gradient one.
        let big = (0..n)
            .max_by(|&a, &b| g[a].abs().total_cmp(&g[b].abs()))
            .unwrap_or(0);
        for &i in &[0, n / 2, big] {
            let h = 1e-5;
            let flat: Vec<f64> = orig.flatten_all().expect("f").to_vec1().expect("v");
            let mut plus = flat.clone();
            plus[i] += h;
            let mut minus = flat.clone();
            minus[i] -= h;
            var.set(&Tensor::from_vec(plus, orig.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let lp = loss_of(&model);
            var.set(&Tensor::from_vec(minus, orig.shape(), &Device::Cpu).expect("t"))
                .expect("set");
            let lm = loss_of(&model);
            var.set(&orig).expect("restore");
            let fd = (lp - lm) / (2.0 * h);
            let tol = 1e-6 + 1e-4 * fd.abs().max(g[i].abs());
            assert!(
                (fd - g[i]).abs() < tol,
                "{name}[{i}]: finite difference {fd} vs backward {}",
                g[i]
            );
            checked += 1;
        }
    }
    assert!(checked > 30);
}

#[test]
fn batched_sampling_is_seeded_and_batch_independent() {
    let model = Model::random(
        tiny_config(Family::Llama, true),
        5,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let tok = tokenizer();
    let prompts = vec![
        tok.encode("the cat is").expect("enc"),
        tok.encode("an apple").expect("enc"),
        vec![40, 41],
    ];
    let params = SamplingParams {
        n: 3,
        temperature: 1.0,
        top_p: 0.9,
        max_new_tokens: 12,
        seed: 42,
        ..Default::default()
    };
    let req = GenerateRequest {
        prompts: prompts.clone(),
        params: params.clone(),
    };
    let mut streamed = 0;
    let a = generate::generate(&model, &tok, &req, |_| streamed += 1).expect("gen");
    let b = generate::generate(&model, &tok, &req, |_| {}).expect("gen");
    assert_eq!(a.len(), 9);
    assert_eq!(streamed, a.iter().map(|g| g.token_ids.len()).sum::<usize>());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(x.token_ids, y.token_ids, "same seed, same output");
        assert_eq!(x.logprobs.len(), x.token_ids.len());
    }
    // The samples of a prompt differ from each other (shared prefill, own RNG).
    assert!(a[0].token_ids != a[1].token_ids || a[1].token_ids != a[2].token_ids);
    // Greedy decoding equals repeated argmax over the full forward.
    let greedy = SamplingParams {
        temperature: 0.0,
        max_new_tokens: 6,
        ..Default::default()
    };
    let g = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![prompts[0].clone()],
            params: greedy,
        },
        |_| {},
    )
    .expect("gen");
    let mut seq = prompts[0].clone();
    for &t in &g[0].token_ids {
        let l: Vec<Vec<f32>> = model
            .logits_fast(&[seq.clone()])
            .expect("l")
            .get(0)
            .expect("r")
            .to_vec2()
            .expect("v");
        let last = &l[seq.len() - 1];
        let am = (0..last.len()).fold(0, |b, i| if last[i] > last[b] { i } else { b });
        assert_eq!(am as u32, t);
        seq.push(t);
    }
}

#[test]
fn batch_composition_does_not_change_samples() {
    let model = Model::random(
        tiny_config(Family::Qwen2, true),
        9,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let tok = tokenizer();
    let long = tok.encode("the answer is the answer").expect("enc");
    let short = tok.encode("is").expect("enc");
    let params = SamplingParams {
        n: 2,
        temperature: 0.8,
        max_new_tokens: 10,
        seed: 1,
        ..Default::default()
    };
    let both = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![long.clone(), short.clone()],
            params: params.clone(),
        },
        |_| {},
    )
    .expect("gen");
    let first_only = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![long, vec![7]],
            params: params.clone(),
        },
        |_| {},
    )
    .expect("gen");
    // Prompt 0's samples do not depend on what else is in the batch.
    assert_eq!(both[0].token_ids, first_only[0].token_ids);
    assert_eq!(both[1].token_ids, first_only[1].token_ids);
    // The second prompt alone, offset to its place, samples as in the pair.
    let second_alone = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![short],
            params: SamplingParams {
                first_prompt: 1,
                ..params.clone()
            },
        },
        |_| {},
    )
    .expect("gen");
    assert_eq!(both[2].token_ids, second_alone[0].token_ids);
    assert_eq!(both[3].token_ids, second_alone[1].token_ids);
}

#[test]
fn stop_strings_and_eos_end_samples() {
    let model = Model::random(
        tiny_config(Family::Llama, true),
        5,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let tok = tokenizer();
    let prompt = tok.encode("the").expect("enc");
    let free = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![prompt.clone()],
            params: SamplingParams {
                temperature: 0.0,
                max_new_tokens: 20,
                ..Default::default()
            },
        },
        |_| {},
    )
    .expect("gen");
    let text = &free[0].text;
    assert_eq!(free[0].finish_reason, FinishReason::Length);
    // Stop at a piece of the greedy text: the output is cut before it.
    let chars: Vec<char> = text.chars().collect();
    if chars.len() >= 4 {
        let stop: String = chars[2..4].iter().collect();
        let cut = generate::generate(
            &model,
            &tok,
            &GenerateRequest {
                prompts: vec![prompt.clone()],
                params: SamplingParams {
                    temperature: 0.0,
                    max_new_tokens: 20,
                    stop: vec![stop.clone()],
                    ..Default::default()
                },
            },
            |_| {},
        )
        .expect("gen");
        assert_eq!(cut[0].finish_reason, FinishReason::Stop);
        assert_eq!(cut[0].text, text[..text.find(&stop).expect("stop in text")]);
    }
    // A stop token id ends the sample and is kept in token_ids.
    let first = free[0].token_ids[0];
    let eos = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![prompt],
            params: SamplingParams {
                temperature: 0.0,
                max_new_tokens: 20,
                stop_token_ids: vec![first],
                ..Default::default()
            },
        },
        |_| {},
    )
    .expect("gen");
    assert_eq!(eos[0].token_ids, vec![first]);
    assert_eq!(eos[0].finish_reason, FinishReason::Stop);
    assert_eq!(eos[0].text, "");
}

#[test]
fn bad_sampling_parameters_are_rejected() {
    let model = Model::random(
        tiny_config(Family::Llama, true),
        5,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let tok = tokenizer();
    for (params, word) in [
        (
            SamplingParams {
                top_p: 0.0,
                ..Default::default()
            },
            "top_p",
        ),
        (
            SamplingParams {
                temperature: -1.0,
                ..Default::default()
            },
            "temperature",
        ),
        (
            SamplingParams {
                n: 0,
                ..Default::default()
            },
            "n must",
        ),
        (
            SamplingParams {
                max_new_tokens: 0,
                ..Default::default()
            },
            "max_new_tokens",
        ),
    ] {
        let e = generate::generate(
            &model,
            &tok,
            &GenerateRequest {
                prompts: vec![vec![5]],
                params,
            },
            |_| {},
        )
        .expect_err("rejected");
        assert!(e.to_string().contains(word), "{e}");
    }
    let e = generate::generate(
        &model,
        &tok,
        &GenerateRequest {
            prompts: vec![vec![5000]],
            params: SamplingParams::default(),
        },
        |_| {},
    )
    .expect_err("oov");
    assert!(e.to_string().contains("outside the vocabulary"), "{e}");
}

#[test]
fn hf_save_and_load_round_trip() {
    let dir = std::env::temp_dir().join(format!("serl-hf-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    for (family, tie) in [(Family::Llama, true), (Family::Qwen2, false)] {
        let model =
            Model::random(tiny_config(family, tie), 21, &Device::Cpu, DType::F32).expect("model");
        let tok = tokenizer();
        model.save_hf(&tok, &dir).expect("save");
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "tokenizer_config.json",
            "chat_template.jinja",
        ] {
            assert!(dir.join(f).exists(), "{f} written");
        }
        let (back, tok2) = load_model(&dir, &LoadOptions::default()).expect("load");
        assert_eq!(back.config(), model.config());
        let rows = vec![vec![5u32, 9, 200, 13]];
        let d = max_abs_diff(
            &model.logits_fast(&rows).expect("a"),
            &back.logits_fast(&rows).expect("b"),
        );
        assert_eq!(d, 0.0);
        let msgs = [ChatMessage::new("user", "hi")];
        assert_eq!(
            tok.apply_chat_template(&msgs, true).expect("a"),
            tok2.apply_chat_template(&msgs, true).expect("b")
        );
        assert_eq!(
            tok2.encode("the cat 12").expect("e"),
            tok.encode("the cat 12").expect("e")
        );
    }
    // bf16 save keeps the dtype.
    let model = Model::random(
        tiny_config(Family::Llama, true),
        21,
        &Device::Cpu,
        DType::BF16,
    )
    .expect("model");
    model.save_hf(&tokenizer(), &dir).expect("save");
    let cfg = std::fs::read_to_string(dir.join("config.json")).expect("cfg");
    assert!(cfg.contains("bfloat16"));
    let (back, _) = load_model(
        &dir,
        &LoadOptions {
            device: Device::Cpu,
            dtype: DType::BF16,
        },
    )
    .expect("load");
    assert_eq!(back.dtype(), DType::BF16);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_checkpoints_get_clear_errors() {
    let dir = std::env::temp_dir().join(format!("serl-bad-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let model = Model::random(
        tiny_config(Family::Llama, true),
        21,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    model.save_hf(&tokenizer(), &dir).expect("save");
    let cfg_path = dir.join("config.json");
    let cfg = std::fs::read_to_string(&cfg_path).expect("cfg");
    std::fs::write(
        &cfg_path,
        cfg.replace("\"hidden_size\": 32", "\"hidden_size\": 64"),
    )
    .expect("w");
    let e = load_model(&dir, &LoadOptions::default())
        .err()
        .expect("shape error")
        .to_string();
    assert!(
        e.contains("model.embed_tokens.weight") && e.contains("shape"),
        "{e}"
    );
    std::fs::write(&cfg_path, "{not json").expect("w");
    let e = load_model(&dir, &LoadOptions::default())
        .err()
        .expect("json error")
        .to_string();
    assert!(e.contains("config.json") && e.contains("JSON"), "{e}");
    std::fs::write(&cfg_path, cfg.replace("\"llama\"", "\"gpt_neox\"")).expect("w");
    let e = load_model(&dir, &LoadOptions::default())
        .err()
        .expect("type error")
        .to_string();
    assert!(e.contains("gpt_neox"), "{e}");
    let e = load_model(&dir.join("missing"), &LoadOptions::default())
        .err()
        .expect("missing")
        .to_string();
    assert!(e.contains("missing"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Writes the model as a llama.cpp GGUF (q/k rows permuted as
/// convert_hf_to_gguf.py does, Q8_0 matrices), then loads it back.
#[test]
fn gguf_load_unpermutes_and_dequantises() {
    use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
    let mut cfg = tiny_config(Family::Llama, true);
    cfg.hidden_size = 64;
    cfg.intermediate_size = 64;
    cfg.head_dim = 16;
    let model = Model::random(cfg.clone(), 4, &Device::Cpu, DType::F32).expect("model");
    let tok = tokenizer();
    let permute = |w: &Tensor, n_head: usize| -> Tensor {
        let (rows, cols) = w.dims2().expect("2d");
        w.reshape((n_head, 2, rows / n_head / 2, cols))
            .expect("r")
            .transpose(1, 2)
            .expect("t")
            .contiguous()
            .expect("c")
            .reshape((rows, cols))
            .expect("r")
    };
    let mut qtensors: Vec<(String, QTensor)> = Vec::new();
    let mut originals: HashMap<String, Tensor> = HashMap::new();
    for (name, var) in model.named_parameters() {
        let t = var.as_tensor().clone();
        originals.insert(name.clone(), t.clone());
        let gg = name
            .replace("model.embed_tokens.weight", "token_embd.weight")
            .replace("model.norm.weight", "output_norm.weight")
            .replace("model.layers.", "blk.")
            .replace("input_layernorm", "attn_norm")
            .replace("self_attn.q_proj", "attn_q")
            .replace("self_attn.k_proj", "attn_k")
            .replace("self_attn.v_proj", "attn_v")
            .replace("self_attn.o_proj", "attn_output")
            .replace("post_attention_layernorm", "ffn_norm")
            .replace("mlp.gate_proj", "ffn_gate")
            .replace("mlp.up_proj", "ffn_up")
            .replace("mlp.down_proj", "ffn_down");
        let t = if gg.ends_with("attn_q.weight") {
            permute(&t, cfg.num_attention_heads)
        } else if gg.ends_with("attn_k.weight") {
            permute(&t, cfg.num_key_value_heads)
        } else {
            t
        };
        let q = if t.rank() == 2 {
            QTensor::quantize(&t, GgmlDType::Q8_0).expect("q8")
        } else {
            QTensor::quantize(&t, GgmlDType::F32).expect("f32")
        };
        qtensors.push((gg, q));
    }
    // Token strings and merges straight from the tokenizer JSON.
    let doc: serde_json::Value = {
        let dir = std::env::temp_dir().join(format!("serl-tokjson-{}", std::process::id()));
        tok.save_hf(&{
            std::fs::create_dir_all(&dir).expect("dir");
            dir.clone()
        })
        .expect("save");
        let s = std::fs::read_to_string(dir.join("tokenizer.json")).expect("read");
        let _ = std::fs::remove_dir_all(&dir);
        serde_json::from_str(&s).expect("json")
    };
    let mut tokens = vec![String::new(); cfg.vocab_size];
    for (t, id) in doc["model"]["vocab"].as_object().expect("vocab") {
        tokens[id.as_u64().expect("id") as usize] = t.clone();
    }
    let merges: Vec<gguf_file::Value> = doc["model"]["merges"]
        .as_array()
        .expect("merges")
        .iter()
        .map(|m| {
            gguf_file::Value::String(format!(
                "{} {}",
                m[0].as_str().expect("a"),
                m[1].as_str().expect("b")
            ))
        })
        .collect();
    let types: Vec<gguf_file::Value> = (0..cfg.vocab_size)
        .map(|i| gguf_file::Value::I32(if i < 3 { 3 } else { 1 }))
        .collect();
    use gguf_file::Value as V;
    let md: Vec<(&str, V)> = vec![
        ("general.architecture", V::String("llama".into())),
        ("llama.embedding_length", V::U32(cfg.hidden_size as u32)),
        (
            "llama.feed_forward_length",
            V::U32(cfg.intermediate_size as u32),
        ),
        ("llama.block_count", V::U32(cfg.num_hidden_layers as u32)),
        (
            "llama.attention.head_count",
            V::U32(cfg.num_attention_heads as u32),
        ),
        (
            "llama.attention.head_count_kv",
            V::U32(cfg.num_key_value_heads as u32),
        ),
        (
            "llama.attention.layer_norm_rms_epsilon",
            V::F32(cfg.rms_norm_eps as f32),
        ),
        ("llama.rope.freq_base", V::F32(cfg.rope_theta as f32)),
        (
            "llama.context_length",
            V::U32(cfg.max_position_embeddings as u32),
        ),
        ("tokenizer.ggml.model", V::String("gpt2".into())),
        ("tokenizer.ggml.pre", V::String("smollm".into())),
        (
            "tokenizer.ggml.tokens",
            V::Array(tokens.iter().map(|t| V::String(t.clone())).collect()),
        ),
        ("tokenizer.ggml.merges", V::Array(merges)),
        ("tokenizer.ggml.token_type", V::Array(types)),
        ("tokenizer.ggml.bos_token_id", V::U32(1)),
        ("tokenizer.ggml.eos_token_id", V::U32(2)),
        (
            "tokenizer.chat_template",
            V::String(tok.chat_template().expect("t").to_string()),
        ),
    ];
    let path = std::env::temp_dir().join(format!("serl-tiny-{}.gguf", std::process::id()));
    {
        let mut f = std::fs::File::create(&path).expect("create");
        let mdr: Vec<(&str, &V)> = md.iter().map(|(k, v)| (*k, v)).collect();
        let tr: Vec<(&str, &QTensor)> = qtensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut f, &mdr, &tr).expect("write gguf");
    }
    let (back, tok2) = load_model(&path, &LoadOptions::default()).expect("load gguf");
    let _ = std::fs::remove_file(&path);
    assert_eq!(back.config().hidden_size, 64);
    assert!(back.config().tie_word_embeddings);
    for (name, var) in back.named_parameters() {
        let d = max_abs_diff(var.as_tensor(), &originals[&name]);
        // Q8_0 keeps 8 bits per block: error well under 1% of the 0.02 scale.
        assert!(d < 1e-3, "{name}: {d} (q/k not un-permuted?)");
    }
    for text in ["the cat is 12", "<|im_start|>user\nhi<|im_end|>"] {
        assert_eq!(
            tok2.encode(text).expect("a"),
            tok.encode(text).expect("b"),
            "{text}"
        );
    }
    let msgs = [ChatMessage::new("user", "2+2?")];
    assert_eq!(
        tok2.apply_chat_template(&msgs, true).expect("a"),
        tok.apply_chat_template(&msgs, true).expect("b")
    );
}

#[test]
fn shipped_tiny_model_fixture_is_reproducible() {
    let shipped =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-llama");
    let fresh = std::env::temp_dir().join(format!("serl-tiny-fresh-{}", std::process::id()));
    let model = Model::random(
        serl_core::model::tiny_llama_config(),
        2026,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    model
        .save_hf(&Tokenizer::byte_level(&[]).expect("tok"), &fresh)
        .expect("save");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "chat_template.jinja",
    ] {
        let a = std::fs::read(shipped.join(f)).unwrap_or_else(|e| {
            panic!("{f}: {e} (cargo run -p serl-core --example make_tiny_model)")
        });
        let b = std::fs::read(fresh.join(f)).expect("fresh");
        assert!(a == b, "{f} differs from a fresh generation");
    }
    let _ = std::fs::remove_dir_all(&fresh);
}

#[test]
fn bf16_weights_run_both_paths_close_to_f32() {
    let cfg = tiny_config(Family::Qwen2, false);
    let f32m = Model::random(cfg.clone(), 13, &Device::Cpu, DType::F32).expect("f32");
    let bf16 = Model::random(cfg, 13, &Device::Cpu, DType::BF16).expect("bf16");
    let rows = vec![vec![5u32, 9, 200, 13, 7, 40]];
    let a = f32m.logits_fast(&rows).expect("a");
    let b = bf16.logits_fast(&rows).expect("b");
    let c = bf16.logits_train(&ids(&rows)).expect("c");
    assert!(max_abs_diff(&a, &b) < 0.05, "{}", max_abs_diff(&a, &b));
    assert!(max_abs_diff(&b, &c) < 0.05, "{}", max_abs_diff(&b, &c));
    // Gradients flow in bf16 too.
    let loss = bf16
        .token_logprobs(&ids(&rows))
        .expect("lp")
        .sum_all()
        .expect("sum");
    let grads = loss.backward().expect("backward");
    assert!(
        bf16.named_parameters()
            .iter()
            .all(|(_, v)| grads.get(v.as_tensor()).is_some())
    );
}

#[test]
fn logprobs_from_a_position_equal_the_tail_of_all_logprobs() {
    let model = Model::random(
        tiny_config(Family::Llama, false),
        8,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let rows = vec![
        vec![5u32, 9, 200, 13, 7, 40, 41],
        vec![1u32, 2, 3, 4, 5, 6, 7],
    ];
    let all: Vec<Vec<f32>> = model
        .token_logprobs(&ids(&rows))
        .expect("all")
        .to_vec2()
        .expect("v");
    let tail: Vec<Vec<f32>> = model
        .token_logprobs_from(&ids(&rows), 4)
        .expect("tail")
        .to_vec2()
        .expect("v");
    for (a, t) in all.iter().zip(&tail) {
        assert_eq!(t.len(), 2);
        for (x, y) in a[4..].iter().zip(t) {
            assert!((x - y).abs() < 1e-6);
        }
    }
    assert!(model.token_logprobs_from(&ids(&rows), 6).is_err());
}
