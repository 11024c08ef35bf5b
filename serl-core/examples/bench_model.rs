//! Model-engine figures for the README (release build):
//!
//!   generate MODEL BATCH PREFILL NEW  — tokens/s of batched sampling
//!     (BATCH prompts of PREFILL tokens, NEW new tokens each, EOS ignored)
//!   train LAYERS WIDTH BATCH SEQ     — seconds per training-path step
//!     (forward + backward of the summed token log-probs) on a random Llama
//!   export-f32 GGUF_IN GGUF_OUT      — the GGUF with every tensor
//!     dequantised to F32 (llama.cpp at the precision this engine runs)
//!
//! Prints one JSON line per run.

use std::time::Instant;

use serl_core::model::generate::{self};
use serl_core::model::{
    DType, Device, Family, GenerateRequest, LoadOptions, Model, ModelConfig, SamplingParams,
};

fn arg(i: usize) -> String {
    std::env::args().nth(i).unwrap_or_else(|| {
        eprintln!("usage: bench_model generate MODEL BATCH PREFILL NEW | train LAYERS WIDTH BATCH SEQ | export-f32 IN OUT");
        std::process::exit(2)
    })
}

fn num(i: usize) -> usize {
    arg(i).parse().unwrap_or_else(|_| {
        eprintln!("argument {i} must be a number");
        std::process::exit(2)
    })
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
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
            // Warm-up (allocations, thread pool).
            let warm = SamplingParams {
                max_new_tokens: 2,
                ..params.clone()
            };
            generate::generate(
                &model,
                &tok,
                &GenerateRequest {
                    prompts: prompts.clone(),
                    params: warm,
                },
                |_| {},
            )?;
            let t = Instant::now();
            let out =
                generate::generate(&model, &tok, &GenerateRequest { prompts, params }, |_| {})?;
            let secs = t.elapsed().as_secs_f64();
            let n: usize = out.iter().map(|g| g.token_ids.len()).sum();
            println!(
                "{{\"bench\": \"generate\", \"batch\": {batch}, \"prefill\": {prefill}, \"new\": {new}, \"seconds\": {secs:.3}, \"new_tokens\": {n}, \"tokens_per_s\": {:.2}}}",
                n as f64 / secs
            );
        }
        "train" => {
            let (layers, width, batch, seq) = (num(2), num(3), num(4), num(5));
            let cfg = ModelConfig {
                family: Family::Llama,
                vocab_size: 32_000,
                hidden_size: width,
                intermediate_size: width * 8 / 3 / 64 * 64,
                num_hidden_layers: layers,
                num_attention_heads: width / 64,
                num_key_value_heads: width / 64,
                head_dim: 64,
                rms_norm_eps: 1e-5,
                rope_theta: 10_000.0,
                rope_scaling: None,
                max_position_embeddings: seq,
                tie_word_embeddings: true,
                attention_bias: false,
                bos_token_id: Some(1),
                eos_token_ids: vec![2],
            };
            let params = cfg.num_parameters();
            let model = Model::random(cfg, 1, &Device::Cpu, DType::F32)?;
            let ids: Vec<u32> = (0..batch * seq)
                .map(|i| ((i * 7919) % 32_000) as u32)
                .collect();
            let ids = candle_core::Tensor::from_vec(ids, (batch, seq), &Device::Cpu)?;
            let mut times = Vec::new();
            for _ in 0..4 {
                let t = Instant::now();
                let loss = model.token_logprobs(&ids)?.sum_all()?;
                let grads = loss.backward()?;
                std::hint::black_box(&grads);
                times.push(t.elapsed().as_secs_f64());
            }
            times.remove(0);
            times.sort_by(f64::total_cmp);
            println!(
                "{{\"bench\": \"train_step\", \"parameters\": {params}, \"batch\": {batch}, \"seq\": {seq}, \"median_seconds\": {:.3}}}",
                times[times.len() / 2]
            );
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
        other => {
            eprintln!("unknown mode {other:?}");
            std::process::exit(2)
        }
    }
    Ok(())
}
