//! `serl generate`: sample from a model (Hugging Face directory or GGUF).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use serde_json::json;
use serl_core::engine::EngineDevice;
use serl_core::model::generate::{self, TokenEvent};
use serl_core::model::{self, ChatMessage, GenerateRequest, LoadOptions, SamplingParams};

/// Options of `serl generate`.
#[derive(Args)]
pub struct GenerateArgs {
    /// Hugging Face model directory or .gguf file.
    #[arg(long)]
    model: PathBuf,
    /// The prompt text.
    #[arg(long)]
    prompt: String,
    /// Wrap the prompt as a user message in the model's chat template.
    #[arg(long)]
    chat: bool,
    /// System message (with --chat).
    #[arg(long)]
    system: Option<String>,
    /// Samples (sharing one prefill).
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Nucleus mass.
    #[arg(long, default_value_t = 1.0)]
    top_p: f32,
    /// Keep the k most likely tokens (0: all).
    #[arg(long, default_value_t = 0)]
    top_k: usize,
    /// vLLM presence penalty.
    #[arg(long, default_value_t = 0.0)]
    presence_penalty: f32,
    /// vLLM frequency penalty.
    #[arg(long, default_value_t = 0.0)]
    frequency_penalty: f32,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 256)]
    max_new_tokens: usize,
    /// Stop string (repeatable).
    #[arg(long)]
    stop: Vec<String>,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// cpu, wgpu, wgpu:N (see `serl devices`), cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// f32 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Print {"text", "token_ids", "logprobs", "finish_reason"} per sample instead of streaming text.
    #[arg(long)]
    json: bool,
}

/// Runs `serl generate`.
pub fn run(a: GenerateArgs) -> Result<()> {
    let opts = LoadOptions {
        device: model::device_from_name(&a.device)?,
        dtype: model::dtype_from_name(&a.dtype)?,
    };
    let t0 = Instant::now();
    let (m, tok) = model::load_model(&a.model, &opts)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let load_s = t0.elapsed().as_secs_f64();
    let text = if a.chat {
        let mut msgs = Vec::new();
        if let Some(s) = &a.system {
            msgs.push(ChatMessage::new("system", s));
        }
        msgs.push(ChatMessage::new("user", &a.prompt));
        tok.apply_chat_template(&msgs, true)?
    } else {
        a.prompt.clone()
    };
    let ids = tok.encode(&text)?;
    let params = SamplingParams {
        n: a.n,
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        presence_penalty: a.presence_penalty,
        frequency_penalty: a.frequency_penalty,
        max_new_tokens: a.max_new_tokens,
        stop: a.stop.clone(),
        seed: a.seed,
        ..Default::default()
    };
    let req = GenerateRequest {
        prompts: vec![ids.clone()],
        params,
    };
    let stream = !a.json && a.n == 1;
    let mut streamed: Vec<u32> = Vec::new();
    let mut printed = 0usize;
    let mut out = io::stdout().lock();
    let t1 = Instant::now();
    let mut io_err: Option<io::Error> = None;
    let on_token = |e: TokenEvent| {
        if !stream || io_err.is_some() {
            return;
        }
        streamed.push(e.token_id);
        // Print the decoded text's new suffix; hold back an incomplete UTF-8 tail.
        if let Ok(s) = tok.decode(&streamed, true)
            && !s.ends_with('\u{fffd}')
            && s.len() > printed
            && s.is_char_boundary(printed)
        {
            if let Err(err) = out
                .write_all(&s.as_bytes()[printed..])
                .and_then(|_| out.flush())
            {
                io_err = Some(err);
            }
            printed = s.len();
        }
    };
    // The compute engine (CPU or wgpu); candle's own path on CUDA.
    let gens = if m.device().is_cpu() {
        let engine = serl_core::train::Scorer::on(EngineDevice::parse(&a.device)?, &m)?;
        generate::generate(&engine.decoder(), &tok, &req, on_token)
    } else {
        generate::generate(&m, &tok, &req, on_token)
    }?;
    if let Some(e) = io_err {
        return Err(e.into());
    }
    let secs = t1.elapsed().as_secs_f64();
    let n_tokens: usize = gens.iter().map(|g| g.token_ids.len()).sum();
    if a.json {
        for g in &gens {
            writeln!(
                out,
                "{}",
                json!({"text": g.text, "token_ids": g.token_ids, "logprobs": g.logprobs, "finish_reason": g.finish_reason})
            )?;
        }
    } else if stream {
        writeln!(out)?;
    } else {
        for g in &gens {
            writeln!(out, "--- sample {} ---\n{}", g.sample_index, g.text)?;
        }
    }
    out.flush()?;
    eprintln!(
        "{n_tokens} tokens in {secs:.2} s: {:.1} tokens/s (prompt {} tokens, {} sample(s); model loaded in {load_s:.1} s)",
        n_tokens as f64 / secs.max(1e-9),
        ids.len(),
        gens.len()
    );
    Ok(())
}
