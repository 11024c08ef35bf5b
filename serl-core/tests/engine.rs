//! The compute engine's whole-model forward and backward against the
//! candle autograd path (the oracle) in f64: Llama and Qwen2 (biases), tied
//! and untied heads, grouped-query attention, mixed lengths with right
//! padding, scored positions that start at different prompt lengths.
#![cfg(feature = "train")]

mod common;

use candle_core::{DType, Device, Tensor};
use common::tiny_config;
use serl_core::engine::TokenBatch;
use serl_core::model::{Family, Model, ModelConfig};
use serl_core::train::Learner;

/// Weights of `m` as an f64 model (the oracle).
fn as_f64(m: &Model) -> Model {
    let mut t = std::collections::HashMap::new();
    for (name, v) in m.named_parameters() {
        t.insert(name, v.as_tensor().to_dtype(DType::F64).expect("f64"));
    }
    Model::from_tensors(m.config().clone(), t, &Device::Cpu, DType::F64, "oracle").expect("model")
}

fn rel_err(a: &[f64], b: &[f64]) -> f64 {
    let num: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).powi(2))
        .sum::<f64>()
        .sqrt();
    let den: f64 = b.iter().map(|y| y * y).sum::<f64>().sqrt();
    num / den.max(1e-30)
}

/// Sequences of different lengths and the first scored index of each.
fn batch() -> (Vec<Vec<u32>>, Vec<usize>) {
    let seqs = vec![
        vec![5u32, 9, 200, 13, 7, 40, 41, 42, 266],
        vec![100u32, 101, 102, 103],
        vec![1u32, 2, 3, 4, 5, 6, 7],
    ];
    (seqs, vec![3, 1, 5])
}

#[test]
fn engine_gradients_match_candle_autograd() {
    for (family, tie, kv) in [
        (Family::Llama, true, 2),
        (Family::Qwen2, false, 2),
        (Family::Llama, false, 4),
        (Family::Qwen2, true, 1),
    ] {
        let cfg = ModelConfig {
            num_key_value_heads: kv,
            ..tiny_config(family, tie)
        };
        let model = Model::random(cfg, 21, &Device::Cpu, DType::F32).expect("model");
        let oracle = as_f64(&model);
        let (seqs, from) = batch();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let tb = TokenBatch::right_padded(&refs, &from).expect("batch");
        // Loss = Σ c_p · lp_p with fixed, varied weights.
        let coef: Vec<f32> = (0..tb.rows.len())
            .map(|i| 0.3 + 0.17 * (i % 5) as f32 - 0.4 * (i % 2) as f32)
            .collect();

        let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
        let lp = learner
            .accumulate(&tb, &mut |start, _lp, d| {
                d.copy_from_slice(&coef[start..start + d.len()]);
            })
            .expect("engine");

        // The oracle: candle's autograd over token_logprobs, same weights in f64.
        let t = tb.t;
        let ids = Tensor::from_vec(tb.ids.clone(), (tb.b, t), &Device::Cpu).expect("ids");
        let all = oracle.token_logprobs(&ids).expect("lp"); // [b, t-1]
        let mut w = vec![0f64; tb.b * (t - 1)];
        for (p, &r) in tb.rows.iter().enumerate() {
            let (s, i) = (r as usize / t, r as usize % t);
            w[s * (t - 1) + i] = coef[p] as f64;
        }
        let wt = Tensor::from_vec(w, (tb.b, t - 1), &Device::Cpu).expect("w");
        let loss = (all.clone() * wt).expect("mul").sum_all().expect("sum");
        let all: Vec<Vec<f64>> = all.to_vec2().expect("lp");
        for (p, &r) in tb.rows.iter().enumerate() {
            let (s, i) = (r as usize / t, r as usize % t);
            assert!(
                (lp[p] as f64 - all[s][i]).abs() < 1e-4,
                "{family:?}: log-prob {p}: engine {} vs oracle {}",
                lp[p],
                all[s][i]
            );
        }
        let grads = loss.backward().expect("backward");
        for (name, var) in oracle.named_parameters() {
            let want: Vec<f64> = grads
                .get(var.as_tensor())
                .expect("oracle grad")
                .flatten_all()
                .expect("flat")
                .to_vec1()
                .expect("vec");
            let got: Vec<f64> = learner
                .grad(&name)
                .expect("engine grad")
                .iter()
                .map(|&x| x as f64)
                .collect();
            assert!(
                got.iter().all(|x| x.is_finite()),
                "{family:?}: {name} not finite"
            );
            assert!(
                got.iter().any(|&x| x != 0.0),
                "{family:?} tie={tie}: {name} has no gradient"
            );
            let e = rel_err(&got, &want);
            assert!(
                e < 1e-4,
                "{family:?} tie={tie} kv={kv}: {name}: relative error {e:e}"
            );
        }
    }
}

#[test]
fn padding_and_batch_composition_do_not_change_results() {
    // One sequence alone and inside a padded batch: same log-probs and
    // gradients (pads never reach a scored position).
    let model = Model::random(
        tiny_config(Family::Llama, true),
        5,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let (seqs, from) = batch();
    let mut solo = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
    let one = TokenBatch::right_padded(&[&seqs[1]], &from[1..2]).expect("batch");
    let lp1 = solo
        .accumulate(&one, &mut |_, _, d| d.fill(1.0))
        .expect("solo");
    let mut mixed = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let all = TokenBatch::right_padded(&refs, &from).expect("batch");
    let first = 9 - 3; // scored positions of sequence 0
    let lp = mixed
        .accumulate(&all, &mut |start, _, d| {
            for (j, x) in d.iter_mut().enumerate() {
                let p = start + j;
                *x = if (first..first + 3).contains(&p) {
                    1.0
                } else {
                    0.0
                };
            }
        })
        .expect("mixed");
    for (a, b) in lp1.iter().zip(&lp[first..first + 3]) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
    for info in solo.layout().params.clone() {
        let (a, b) = (
            solo.grad(&info.name).expect("g"),
            mixed.grad(&info.name).expect("g"),
        );
        let a: Vec<f64> = a.iter().map(|&x| x as f64).collect();
        let b: Vec<f64> = b.iter().map(|&x| x as f64).collect();
        assert!(rel_err(&b, &a) < 1e-5, "{}: {}", info.name, rel_err(&b, &a));
    }
}

#[test]
fn optimizer_step_moves_each_weight_by_lr_and_syncs_to_the_model() {
    let model = Model::random(
        tiny_config(Family::Qwen2, false),
        8,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
    let (seqs, from) = batch();
    let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
    let tb = TokenBatch::right_padded(&refs, &from).expect("batch");
    learner
        .accumulate(&tb, &mut |_, _, d| d.fill(-1.0))
        .expect("fwd");
    let name = "model.layers.0.mlp.up_proj.weight";
    let (before, g) = (
        learner.param(name).expect("p"),
        learner.grad(name).expect("g"),
    );
    let norm = learner.clip_grad_norm(1e9).expect("norm");
    assert!(norm > 0.0 && norm.is_finite());
    learner.optimizer_step(0.01);
    let after = learner.param(name).expect("p");
    for ((b, a), g) in before.iter().zip(&after).zip(&g) {
        // Adam's first step is lr·g/(|g| + eps): lr·sign(g) but for tiny g.
        let want = b - 0.01 * g / (g.abs() + 1e-8);
        assert!((a - want).abs() < 1e-6, "{b} -> {a} (g {g})");
    }
    assert!(learner.grad(name).expect("g").iter().all(|&x| x == 0.0));
    learner.sync_to(&model).expect("sync");
    let (_, var) = model
        .named_parameters()
        .into_iter()
        .find(|(n, _)| n == name)
        .expect("param");
    let synced: Vec<f32> = var
        .as_tensor()
        .flatten_all()
        .expect("f")
        .to_vec1()
        .expect("v");
    assert_eq!(synced, after);
    // Clipping scales the gradient to the bound.
    learner
        .accumulate(&tb, &mut |_, _, d| d.fill(-1.0))
        .expect("fwd");
    let n1 = learner.clip_grad_norm(1e-3).expect("clip");
    let n2 = learner.clip_grad_norm(1e9).expect("norm");
    assert!(n1 > 1e-3 && (n2 - 1e-3).abs() < 1e-6, "{n1} {n2}");
}

#[test]
fn bad_batches_get_clear_errors() {
    let model = Model::random(
        tiny_config(Family::Llama, true),
        1,
        &Device::Cpu,
        DType::F32,
    )
    .expect("model");
    let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
    let e = TokenBatch::right_padded(&[&[1, 2, 3]], &[0]).expect_err("from 0");
    assert!(e.to_string().contains("first token"), "{e}");
    let tb = TokenBatch::right_padded(&[&[1, 2, 999]], &[1]).expect("batch");
    let e = learner.logprobs(&tb).expect_err("oov");
    assert!(e.to_string().contains("token id 999"), "{e}");
    let long: Vec<u32> = vec![3; 300];
    let tb = TokenBatch::right_padded(&[&long], &[1]).expect("batch");
    let e = learner.logprobs(&tb).expect_err("too long");
    assert!(e.to_string().contains("position table"), "{e}");
}

#[test]
fn engine_sampling_matches_candle_rollouts() {
    use serl_core::model::Tokenizer;
    use serl_core::model::generate::{self, GenerateRequest, SamplingParams};
    let tok = Tokenizer::byte_level(&[]).expect("tokenizer");
    for (family, tie) in [(Family::Llama, true), (Family::Qwen2, false)] {
        let cfg = ModelConfig {
            vocab_size: 259,
            ..tiny_config(family, tie)
        };
        let model = Model::random(cfg, 13, &Device::Cpu, DType::F32).expect("model");
        let scorer = serl_core::train::Scorer::new(&model).expect("scorer");
        // Prompts of different lengths: the merged batch is left-padded,
        // and rows leave it as they stop.
        let prompts = vec![
            vec![5u32, 9, 200, 13],
            vec![100u32],
            vec![1u32, 2, 3, 4, 5, 6, 7, 8],
        ];
        for (temperature, stop) in [(0.0, vec![]), (1.0, vec![2u32, 77])] {
            let req = GenerateRequest {
                prompts: prompts.clone(),
                params: SamplingParams {
                    n: 2,
                    temperature,
                    max_new_tokens: 14,
                    ignore_eos: true,
                    stop_token_ids: stop,
                    seed: 7,
                    ..Default::default()
                },
            };
            let want = generate::generate(&model, &tok, &req, |_| {}).expect("candle");
            let got = generate::generate(&scorer.decoder(), &tok, &req, |_| {}).expect("engine");
            assert_eq!(want.len(), got.len());
            for (w, g) in want.iter().zip(&got) {
                assert_eq!(w.token_ids, g.token_ids, "{family:?} T={temperature}");
                for (a, b) in w.logprobs.iter().zip(&g.logprobs) {
                    assert!((a - b).abs() < 1e-4, "{a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn scoring_without_a_backward_gives_the_learners_log_probs() {
    // The reference policy scores in an inference arena (one layer's
    // activations, reused by every layer, two stream buffers alternating):
    // the same bits as the training arena's forward, for an odd and an even
    // number of layers, and as the batch grows past the arena.
    use serl_core::engine::{Cpu, Llama};
    use serl_core::train::Scorer;
    for layers in [3, 4] {
        let cfg = ModelConfig {
            num_hidden_layers: layers,
            ..tiny_config(Family::Qwen2, false)
        };
        let model = Model::random(cfg.clone(), 8, &Device::Cpu, DType::F32).expect("model");
        let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0).expect("learner");
        let mut scorer = Scorer::new(&model).expect("scorer");
        let (seqs, from) = batch();
        let refs: Vec<&[u32]> = seqs.iter().map(Vec::as_slice).collect();
        let small = TokenBatch::right_padded(&refs[1..2], &from[1..2]).expect("batch");
        let all = TokenBatch::right_padded(&refs, &from).expect("batch");
        for tb in [&small, &all] {
            let want = learner
                .accumulate(tb, &mut |_, _, d| d.fill(1.0))
                .expect("learner");
            let got = scorer.logprobs(tb).expect("scorer");
            assert_eq!(got.len(), want.len());
            for (g, w) in got.iter().zip(&want) {
                assert_eq!(g.to_bits(), w.to_bits(), "{layers} layers: {g} vs {w}");
            }
        }
        // A backward cannot run in an inference arena.
        let mut llama = Llama::new(Cpu, cfg).expect("llama");
        let params = vec![0.01f32; llama.layout().total];
        let mut grads = vec![0f32; llama.layout().total];
        let mut acts = llama.inference_activations(all.n()).expect("arena");
        let e = llama
            .forward(
                &params,
                &all,
                &mut acts,
                Some((&mut |_, _, d: &mut [f32]| d.fill(1.0), &mut grads)),
            )
            .expect_err("backward in an inference arena");
        assert!(e.to_string().contains("training activations"), "{e}");
    }
}

#[test]
fn batched_prefill_matches_one_prompt_at_a_time() {
    // Prompts of mixed lengths prefilled together (left-padded, in two
    // batches: 40 × up to 130 tokens exceed one batch's 4,096), each row
    // repeated for 2 samples, against one prefill per prompt merged: the
    // same first logits, then the same logits over decode steps.
    use serl_core::engine::{Cpu, Llama};
    let cfg = tiny_config(Family::Qwen2, false);
    let llama = Llama::new(Cpu, cfg.clone()).expect("llama");
    let total = llama.layout().total;
    let params: Vec<f32> = (0..total)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 0.3)
        .collect();
    let v = cfg.vocab_size as u32;
    let prompts: Vec<Vec<u32>> = (0..40)
        .map(|p| {
            (0..1 + (p * 37) % 130)
                .map(|i| ((p * 31 + i * 7) as u32) % v)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = prompts.iter().map(Vec::as_slice).collect();
    let (mut batched, first) = llama.prefill_many(&params, &refs, 2, 6).expect("batched");
    let mut singles = Vec::new();
    let mut want_first = Vec::new();
    for p in &refs {
        let mut c = llama.new_cache(1, p.len() + 6).expect("cache");
        want_first.extend(
            llama
                .step(&params, &mut c, p, p.len(), false)
                .expect("prefill"),
        );
        singles.push(c);
    }
    let parts: Vec<_> = singles.iter().map(|c| (c, 2)).collect();
    let mut merged = llama.merge(&parts, 6).expect("merge");
    let close = |a: &[f32], b: &[f32], what: &str| {
        assert_eq!(a.len(), b.len(), "{what}");
        let worst = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs() / (1.0 + y.abs()))
            .fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "{what}: {worst}");
    };
    close(&first, &want_first, "prefill logits");
    assert_eq!(batched.batch(), 80);
    for step in 0..6u32 {
        let tokens: Vec<u32> = (0..80u32).map(|r| (r * 13 + step * 5) % v).collect();
        let got = llama
            .step(&params, &mut batched, &tokens, 1, false)
            .expect("step");
        let want = llama
            .step(&params, &mut merged, &tokens, 1, false)
            .expect("step");
        close(&got, &want, &format!("decode step {step}"));
    }
    assert!(llama.prefill_many(&params, &[&[1, 2], &[]], 1, 4).is_err());
}
