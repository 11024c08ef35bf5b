//! Model-engine figures for the README (release build):
//!
//!   generate MODEL BATCH PREFILL NEW  — tokens/s of batched sampling
//!     (BATCH prompts of PREFILL tokens, NEW new tokens each, EOS ignored)
//!   train LAYERS WIDTH BATCH SEQ     — seconds per training step (forward
//!     + backward of the summed token log-probs) on a random Llama: the
//!     compute engine's learner, then the candle autograd path (the oracle)
//!   update MODEL MICRO SEQ STEPS     — one update as the trainer runs it:
//!     reference forward, the engine's forward + backward, clipping and AdamW
//!     on a loaded model (micro-batch MICRO × SEQ tokens, median of STEPS)
//!   export-f32 GGUF_IN GGUF_OUT      — the GGUF with every tensor
//!     dequantised to F32 (llama.cpp at the precision this engine runs)
//!   device DEVICE SHAPE NEW MICRO SEQ — on one engine device (`cpu`,
//!     `wgpu`, `wgpu:N`) and a random model of a named shape
//!     (`smollm2-135m`, `qwen2.5-1.5b`, `tiny`): greedy generation tokens/s
//!     at batch 1 and 64 (64-token prompts, NEW new tokens) with the decode
//!     steps' weight + KV-cache GB/s, and one update (reference forward,
//!     forward + backward, clipping, AdamW on MICRO × SEQ tokens) with its
//!     model TFLOP/s (what scripts/gpu-bench.sh runs); with `SERL_PROFILE`
//!     set, the update's forward + backward kernel by kernel on stderr
//!
//! Prints one JSON line per run.

use std::time::Instant;

use serl_core::engine::TokenBatch;
use serl_core::model::generate::{self};
use serl_core::model::{
    DType, Decoder, Device, GenerateRequest, LoadOptions, Model, ModelConfig, SamplingParams,
    Tokenizer,
};
use serl_core::train::{Learner, Scorer};

fn arg(i: usize) -> String {
    std::env::args().nth(i).unwrap_or_else(|| {
        eprintln!("usage: bench_model generate MODEL BATCH PREFILL NEW | train LAYERS WIDTH BATCH SEQ | update MODEL MICRO SEQ STEPS | export-f32 IN OUT | device DEVICE SHAPE NEW MICRO SEQ");
        std::process::exit(2)
    })
}

fn num(i: usize) -> usize {
    arg(i).parse().unwrap_or_else(|_| {
        eprintln!("argument {i} must be a number");
        std::process::exit(2)
    })
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// Median seconds of `runs` calls after one warm-up call.
fn median(runs: usize, mut f: impl FnMut() -> Res<()>) -> Res<f64> {
    f()?;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Peak resident memory of this process (Linux; 0 elsewhere).
fn peak_rss_mb() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb / 1024)
}

/// With `SERL_PROFILE` set, prints the learner's kernel times to stderr.
fn print_profile(learner: &mut Learner, runs: usize) {
    if let Some(p) = learner.profile() {
        let total: f64 = p.kernels.iter().map(|k| k.1).sum();
        let mut ks = p.kernels.clone();
        ks.sort_by(|a, b| b.1.total_cmp(&a.1));
        for (name, secs, calls) in ks {
            eprintln!(
                "{name:>14}: {:8.3} s per step ({:5.1}%), {} calls",
                secs / runs as f64,
                100.0 * secs / total,
                calls / runs
            );
        }
    }
}

/// Seconds and new tokens of one request, after a 2-token warm-up.
fn time_generate<D: Decoder>(
    model: &D,
    tok: &Tokenizer,
    req: &GenerateRequest,
) -> Res<(f64, usize)> {
    let warm = GenerateRequest {
        prompts: req.prompts.clone(),
        params: SamplingParams {
            max_new_tokens: 2,
            ..req.params.clone()
        },
    };
    generate::generate(model, tok, &warm, |_| {})?;
    let t = Instant::now();
    let out = generate::generate(model, tok, req, |_| {})?;
    Ok((
        t.elapsed().as_secs_f64(),
        out.iter().map(|g| g.token_ids.len()).sum(),
    ))
}

fn main() -> Res<()> {
    match arg(1).as_str() {
        "generate" => {
            let (model, tok) = serl_core::model::load_model(
                std::path::Path::new(&arg(2)),
                &LoadOptions::default(),
            )?;
            let (batch, prefill, new) = (num(3), num(4), num(5));
            let base = tok.encode("The quick brown fox jumps over the lazy dog and keeps running through the forest while ")?;
            let prompts: Vec<Vec<u32>> = (0..batch)
                .map(|b| {
                    let mut p: Vec<u32> =
                        base.iter().cycle().skip(b).take(prefill).copied().collect();
                    p[0] = base[b % base.len()];
                    p
                })
                .collect();
            let params = SamplingParams {
                temperature: 1.0,
                max_new_tokens: new,
                ignore_eos: true,
                seed: 1,
                ..Default::default()
            };
            let req = GenerateRequest { prompts, params };
            let scorer = Scorer::new(&model)?;
            let engine = time_generate(&scorer.decoder(), &tok, &req)?;
            let candle = if std::env::var_os("SKIP_CANDLE").is_some() {
                (f64::NAN, 0)
            } else {
                time_generate(&model, &tok, &req)?
            };
            println!(
                "{{\"bench\": \"generate\", \"batch\": {batch}, \"prefill\": {prefill}, \"new\": {new}, \"new_tokens\": {}, \"tokens_per_s\": {:.2}, \"candle_tokens_per_s\": {:.2}}}",
                engine.1,
                engine.1 as f64 / engine.0,
                candle.1 as f64 / candle.0
            );
        }
        "train" => {
            let (layers, width, batch, seq) = (num(2), num(3), num(4), num(5));
            let cfg = ModelConfig {
                vocab_size: 32_000,
                hidden_size: width,
                intermediate_size: width * 8 / 3 / 64 * 64,
                num_hidden_layers: layers,
                num_attention_heads: width / 64,
                num_key_value_heads: width / 64,
                head_dim: 64,
                rms_norm_eps: 1e-5,
                max_position_embeddings: seq,
                // Llama family, RoPE base, tied head and special ids as the tiny model.
                ..serl_core::model::tiny_llama_config()
            };
            let params = cfg.num_parameters();
            let model = Model::random(cfg, 1, &Device::Cpu, DType::F32)?;
            let rows: Vec<Vec<u32>> = (0..batch)
                .map(|b| {
                    (0..seq)
                        .map(|i| (((b * seq + i) * 7919) % 32_000) as u32)
                        .collect()
                })
                .collect();
            let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
            let tb = TokenBatch::right_padded(&refs, &vec![1; batch])?;
            let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0)?;
            // The sampler's copy of the weights stays, as in the trainer.
            let profiling = std::env::var_os("SERL_PROFILE").is_some();
            let engine = median(4, || {
                learner.zero_grad();
                learner.set_profiling(profiling);
                learner.accumulate(&tb, &mut |_, _, d| d.fill(1.0))?;
                print_profile(&mut learner, 1);
                Ok(())
            })?;
            let ids = candle_core::Tensor::from_vec(rows.concat(), (batch, seq), &Device::Cpu)?;
            let candle = if std::env::var_os("SKIP_CANDLE").is_some() {
                f64::NAN
            } else {
                median(4, || {
                    let loss = model.token_logprobs(&ids)?.sum_all()?;
                    std::hint::black_box(loss.backward()?);
                    Ok(())
                })?
            };
            println!(
                "{{\"bench\": \"train_step\", \"parameters\": {params}, \"batch\": {batch}, \"seq\": {seq}, \"engine_median_seconds\": {engine:.3}, \"candle_median_seconds\": {candle:.3}, \"peak_rss_mb\": {}}}",
                peak_rss_mb()
            );
        }
        "update" => {
            let (model, _) = serl_core::model::load_model(
                std::path::Path::new(&arg(2)),
                &LoadOptions::default(),
            )?;
            let (micro, seq, steps) = (num(3), num(4), num(5));
            let tb = update_batch(micro, seq, model.config().vocab_size)?;
            let mut learner = Learner::new(&model, (0.9, 0.95), 1e-8, 0.0)?;
            let mut reference = Scorer::new(&model)?;
            // The learner samples from its own weights: the loaded copy goes,
            // as in the trainer.
            drop(model);
            let profiling = std::env::var_os("SERL_PROFILE").is_some();
            let secs = median(steps, || {
                learner.set_profiling(profiling);
                // The reference forward, as the trainer runs it.
                std::hint::black_box(reference.logprobs(&tb)?);
                learner.accumulate(&tb, &mut |_, _, d| d.fill(1e-3))?;
                learner.clip_grad_norm(1.0)?;
                learner.optimizer_step(1e-6);
                print_profile(&mut learner, 1);
                Ok(())
            })?;
            println!(
                "{{\"bench\": \"update\", \"micro\": {micro}, \"seq\": {seq}, \"median_seconds\": {secs:.3}, \"peak_rss_mb\": {}}}",
                peak_rss_mb()
            );
        }
        "kernels" => {
            // The matrix product at SmolLM2's MLP shape (576 → 1536) and head
            // shape (576 → 49,152), by rows: GFLOP/s and weight GB/s.
            use serl_core::engine::kernels::matmul;
            for (i, o) in [(576usize, 1536usize), (576, 49_152)] {
                let w: Vec<f32> = (0..i * o)
                    .map(|k| ((k * 7919) % 1000) as f32 * 1e-3)
                    .collect();
                for n in [1usize, 4, 16, 64, 1280] {
                    let x: Vec<f32> = (0..n * i).map(|k| ((k * 31) % 100) as f32 * 1e-2).collect();
                    let mut out = vec![0f32; n * o];
                    let reps = (2e9 / (2.0 * (n * i * o) as f64)).clamp(3.0, 200.0) as usize;
                    let secs = median(reps, || {
                        matmul(&x, &w, None, &mut out, (n, i, o), false);
                        Ok(())
                    })?;
                    println!(
                        "{{\"bench\": \"matmul\", \"rows\": {n}, \"in\": {i}, \"out\": {o}, \"gflops\": {:.1}, \"weight_gb_per_s\": {:.1}}}",
                        2.0 * (n * i * o) as f64 / secs / 1e9,
                        (4 * i * o) as f64 / secs / 1e9
                    );
                }
            }
        }
        "export-f32" => {
            use candle_core::quantized::{GgmlDType, QTensor, gguf_file};
            let mut f = std::fs::File::open(arg(2))?;
            let content = gguf_file::Content::read(&mut f)?;
            let mut tensors = Vec::new();
            let mut names: Vec<&String> = content.tensor_infos.keys().collect();
            names.sort();
            for name in names {
                let q = content.tensor(&mut f, name, &Device::Cpu)?;
                let t = q.dequantize(&Device::Cpu)?;
                tensors.push((name.clone(), QTensor::quantize(&t, GgmlDType::F32)?));
            }
            let mut md: Vec<(&str, &gguf_file::Value)> = content
                .metadata
                .iter()
                .map(|(k, v)| (k.as_str(), v))
                .collect();
            md.sort_by_key(|(k, _)| *k);
            // general.file_type 0 = all F32.
            let ft = gguf_file::Value::U32(0);
            md.retain(|(k, _)| *k != "general.file_type");
            md.push(("general.file_type", &ft));
            let mut out = std::fs::File::create(arg(3))?;
            let refs: Vec<(&str, &QTensor)> =
                tensors.iter().map(|(n, t)| (n.as_str(), t)).collect();
            gguf_file::write(&mut out, &md, &refs)?;
            println!("{{\"bench\": \"export\", \"tensors\": {}}}", refs.len());
        }
        "device" => device_bench()?,
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2)
        }
    }
    Ok(())
}

/// `micro` synthetic token rows of `seq` tokens over a vocabulary of
/// `vocab`, scored from a 64-token prompt on, as rollouts are.
fn update_batch(micro: usize, seq: usize, vocab: usize) -> Res<TokenBatch> {
    let rows: Vec<Vec<u32>> = (0..micro)
        .map(|b| {
            (0..seq)
                .map(|i| (((b * seq + i) * 7919) % vocab) as u32)
                .collect()
        })
        .collect();
    let refs: Vec<&[u32]> = rows.iter().map(Vec::as_slice).collect();
    Ok(TokenBatch::right_padded(
        &refs,
        &vec![64.min(seq - 1); micro],
    )?)
}

/// A model shape by name, for random weights of real sizes.
fn named_shape(name: &str) -> Option<ModelConfig> {
    use serl_core::model::Family;
    let base = serl_core::model::tiny_llama_config();
    match name {
        "tiny" => Some(base),
        "smollm2-135m" => Some(ModelConfig {
            vocab_size: 49_152,
            hidden_size: 576,
            intermediate_size: 1536,
            num_hidden_layers: 30,
            num_attention_heads: 9,
            num_key_value_heads: 3,
            head_dim: 64,
            rms_norm_eps: 1e-5,
            rope_theta: 100_000.0,
            max_position_embeddings: 8192,
            ..base
        }),
        "qwen2.5-1.5b" => Some(ModelConfig {
            family: Family::Qwen2,
            vocab_size: 151_936,
            hidden_size: 1536,
            intermediate_size: 8960,
            num_hidden_layers: 28,
            num_attention_heads: 12,
            num_key_value_heads: 2,
            head_dim: 128,
            rms_norm_eps: 1e-6,
            rope_theta: 1_000_000.0,
            max_position_embeddings: 32_768,
            attention_bias: true,
            ..base
        }),
        _ => None,
    }
}

/// Floating-point operations of one forward pass over `rows` × `seq`
/// tokens scoring `scored` of them: the matrix products, causal attention
/// and the head at the scored positions only (as the engine runs it).
fn forward_flops(c: &ModelConfig, rows: usize, seq: usize, scored: usize) -> f64 {
    let (d, hd) = (c.hidden_size as f64, c.head_dim as f64);
    let (h, kv, i) = (
        c.num_attention_heads as f64,
        c.num_key_value_heads as f64,
        c.intermediate_size as f64,
    );
    let per_token = d * (h + 2.0 * kv) * hd + h * hd * d + 3.0 * d * i;
    let tokens = (rows * seq) as f64;
    let attn = 2.0 * 2.0 * h * hd * (seq as f64 * (seq as f64 + 1.0) / 2.0) * rows as f64;
    c.num_hidden_layers as f64 * (2.0 * per_token * tokens + attn)
        + 2.0 * d * c.vocab_size as f64 * (rows * scored) as f64
}

fn device_bench() -> Res<()> {
    use serl_core::engine::EngineDevice;
    let device = EngineDevice::parse(&arg(2))?;
    let shape = arg(3);
    let cfg = named_shape(&shape).ok_or_else(|| format!("unknown shape {shape:?}"))?;
    let (new, micro, seq) = (num(4), num(5), num(6));
    let params = cfg.num_parameters();
    let model = Model::random(cfg.clone(), 1, &Device::Cpu, DType::F32)?;
    let mut learner = Learner::on(device, &model, (0.9, 0.95), 1e-8, 0.0)?;
    let mut reference = Scorer::on(device, &model)?;
    drop(model);
    let name = learner.backend_name();
    let v = cfg.vocab_size;
    // Greedy decoding from the learner's weights, as rollouts sample.
    for batch in [1usize, 64] {
        let dec = learner.decoder();
        let prompt = 64usize;
        let run = |steps: usize| -> Res<(f64, f64)> {
            let t = Instant::now();
            let mut parts = Vec::new();
            let mut next = Vec::new();
            for b in 0..batch {
                let ids: Vec<u32> = (0..prompt)
                    .map(|i| (((b * 131 + i) * 7919) % v) as u32)
                    .collect();
                let (cache, logits) = dec.prefill(&ids, steps)?;
                next.push(argmax(&logits));
                parts.push(cache);
            }
            let refs: Vec<_> = parts.iter().map(|c| (c, 1)).collect();
            let mut state = dec.merge(&refs, steps)?;
            drop(parts);
            let prefill = t.elapsed().as_secs_f64();
            let t = Instant::now();
            let mut logits = Vec::new();
            for _ in 0..steps {
                dec.decode_step(&mut state, &next, &mut logits)?;
                next = logits.chunks(v).map(argmax).collect();
            }
            Ok((prefill, t.elapsed().as_secs_f64()))
        };
        run(2)?;
        let (prefill, decode) = run(new)?;
        // Each decode step reads every weight once and the rows' caches.
        let kv_row = 2.0 * (cfg.num_hidden_layers * cfg.num_key_value_heads * cfg.head_dim) as f64;
        let mean_len = prompt as f64 + new as f64 / 2.0;
        let bytes = 4.0 * (params as f64 + batch as f64 * kv_row * mean_len) * new as f64;
        println!(
            "{{\"bench\": \"device_generate\", \"device\": {name:?}, \"shape\": {shape:?}, \"parameters\": {params}, \"batch\": {batch}, \"new\": {new}, \"tokens_per_s\": {:.2}, \"decode_tokens_per_s\": {:.2}, \"decode_gb_per_s\": {:.2}, \"prefill_seconds\": {prefill:.3}}}",
            (batch * new) as f64 / (prefill + decode),
            (batch * new) as f64 / decode,
            bytes / decode / 1e9
        );
    }
    let prompt = 64.min(seq - 1);
    let tb = update_batch(micro, seq, v)?;
    let profiling = std::env::var_os("SERL_PROFILE").is_some();
    let secs = median(1, || {
        std::hint::black_box(reference.logprobs(&tb)?);
        learner.accumulate(&tb, &mut |_, _, d| d.fill(1e-3))?;
        learner.clip_grad_norm(1.0)?;
        learner.optimizer_step(1e-6);
        Ok(())
    })?;
    if profiling {
        // Once more, kernel by kernel (the backend waits after each).
        learner.set_profiling(true);
        learner.accumulate(&tb, &mut |_, _, d| d.fill(1e-3))?;
        print_profile(&mut learner, 1);
    }
    // Reference forward, forward, and a backward of twice a forward.
    let flops = 4.0 * forward_flops(&cfg, micro, seq, seq - prompt);
    println!(
        "{{\"bench\": \"device_update\", \"device\": {name:?}, \"shape\": {shape:?}, \"parameters\": {params}, \"micro\": {micro}, \"seq\": {seq}, \"seconds\": {secs:.3}, \"tflops\": {:.3}, \"peak_rss_mb\": {}}}",
        flops / secs / 1e12,
        peak_rss_mb()
    );
    Ok(())
}

/// The largest logit's token.
fn argmax(x: &[f32]) -> u32 {
    serl_core::model::argmax(x) as u32
}
