//! `serl sft`: supervised next-token training on a JSONL corpus (a warm
//! start before SeRL). Records are `{"messages": [...]}` (the loss is on
//! the last message, an assistant turn, and its end-of-turn token),
//! `{"prompt", "completion"}` (loss on the completion) or `{"text"}` (loss on
//! every token).

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::eval::Rng;
use crate::model::{ChatMessage, Model, Tokenizer};

use super::TrainError;
use super::learner::Learner;
use super::optim::cosine_lr;
use crate::engine::TokenBatch;

/// Settings of a supervised run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SftConfig {
    /// Training corpus (JSONL).
    pub data: PathBuf,
    /// Where the trained model is written (Hugging Face format).
    pub out: PathBuf,
    /// Optimizer steps.
    pub steps: usize,
    /// Sequences per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Warm-up share of the steps.
    pub warmup_ratio: f64,
    /// Final learning rate as a share of the peak.
    pub min_lr_ratio: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient clipping (global L2 norm).
    pub max_norm: f64,
    /// Longer sequences are cut to this many tokens.
    pub max_len: usize,
    /// Seed of the batch order.
    pub seed: u64,
    /// Where the engine runs: `cpu`, `wgpu` or `wgpu:N`.
    pub device: String,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            data: PathBuf::new(),
            out: PathBuf::from("runs/sft"),
            steps: 1000,
            batch_size: 32,
            lr: 1e-3,
            warmup_ratio: 0.03,
            min_lr_ratio: 0.1,
            weight_decay: 0.0,
            max_norm: 1.0,
            max_len: 512,
            seed: 0,
            device: "cpu".into(),
        }
    }
}

/// One tokenised record: ids and how many leading ids carry no loss.
struct Record {
    ids: Vec<u32>,
    prompt_len: usize,
}

fn encode_record(
    v: &serde_json::Value,
    tok: &Tokenizer,
    at: &str,
    max_len: usize,
) -> Result<Record, TrainError> {
    let eos = tok.eos_token().unwrap_or_default().to_string();
    let (prompt, completion) = if let Some(msgs) = v.get("messages") {
        let msgs: Vec<ChatMessage> = serde_json::from_value(msgs.clone())
            .map_err(|e| TrainError::Data(format!("{at}: field \"messages\": {e}")))?;
        let Some((last, head)) = msgs.split_last() else {
            return Err(TrainError::Data(format!(
                "{at}: field \"messages\" is empty"
            )));
        };
        if last.role != "assistant" {
            return Err(TrainError::Data(format!(
                "{at}: the last message must be role \"assistant\""
            )));
        }
        (
            tok.apply_chat_template(head, true)?,
            format!("{}{eos}", last.content),
        )
    } else if let (Some(p), Some(c)) = (
        v.get("prompt").and_then(|x| x.as_str()),
        v.get("completion").and_then(|x| x.as_str()),
    ) {
        (p.to_string(), format!("{c}{eos}"))
    } else if let Some(t) = v.get("text").and_then(|x| x.as_str()) {
        (String::new(), t.to_string())
    } else {
        return Err(TrainError::Data(format!(
            "{at}: needs \"messages\", \"prompt\" + \"completion\", or \"text\""
        )));
    };
    let mut ids = tok.encode(&prompt)?;
    let prompt_len = ids.len().max(1);
    ids.extend(tok.encode(&completion)?);
    ids.truncate(max_len);
    if ids.len() <= prompt_len {
        return Err(TrainError::Data(format!(
            "{at}: nothing to learn within max_len {max_len}"
        )));
    }
    Ok(Record { ids, prompt_len })
}

/// Progress of a supervised run: (step, total, loss).
pub type SftProgress<'a> = &'a mut dyn FnMut(usize, usize, f64);

/// Figures of a finished supervised run.
#[derive(Debug, Clone, Serialize)]
pub struct SftSummary {
    /// Steps taken.
    pub steps: usize,
    /// Mean loss of the first and last 5% of steps.
    pub loss_first: f64,
    /// Mean loss of the last 5% of steps.
    pub loss_last: f64,
    /// Training tokens per second.
    pub tokens_per_s: f64,
    /// Wall seconds.
    pub seconds: f64,
}

/// Trains `model` on the corpus and saves it (with `tok`) to `cfg.out`.
pub fn sft(
    model: &Model,
    tok: &Tokenizer,
    cfg: &SftConfig,
    progress: SftProgress,
) -> Result<SftSummary, TrainError> {
    if cfg.steps == 0 || cfg.batch_size == 0 || cfg.max_len < 2 {
        return Err(TrainError::Config(
            "steps, batch_size must be >= 1 and max_len >= 2".into(),
        ));
    }
    let text = std::fs::read_to_string(&cfg.data).map_err(|e| TrainError::io(&cfg.data, e))?;
    let mut records = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = format!("{}:{}", cfg.data.display(), i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Data(format!("{at}: invalid JSON: {e}")))?;
        records.push(encode_record(&v, tok, &at, cfg.max_len)?);
    }
    if records.is_empty() {
        return Err(TrainError::Data(format!(
            "{}: no records",
            cfg.data.display()
        )));
    }
    let engine = crate::engine::EngineDevice::parse(&cfg.device)?;
    let mut learner = Learner::on(engine, model, (0.9, 0.95), 1e-8, cfg.weight_decay)?;
    let mut rng = Rng::new(cfg.seed);
    // Batches of similar lengths (as transformers' group_by_length): shuffle,
    // sort within windows of 16 batches, shuffle the batches. Padding to
    // the longest sequence of a batch then wastes little compute.
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let t0 = Instant::now();
    let mut tokens = 0usize;
    let mut losses = Vec::with_capacity(cfg.steps);
    for step in 0..cfg.steps {
        if batches.is_empty() {
            let mut order: Vec<usize> = (0..records.len()).collect();
            rng.shuffle(&mut order);
            for window in order.chunks(cfg.batch_size * 16) {
                let mut w = window.to_vec();
                w.sort_by_key(|&i| records[i].ids.len());
                batches.extend(w.chunks(cfg.batch_size).map(<[usize]>::to_vec));
            }
            rng.shuffle(&mut batches);
        }
        let batch = batches.pop().unwrap_or_default();
        // Each record's answer tokens are scored (prompt_len ≥ 1 by construction).
        let rows: Vec<&[u32]> = batch.iter().map(|&i| records[i].ids.as_slice()).collect();
        let from: Vec<usize> = batch
            .iter()
            .map(|&i| records[i].prompt_len.max(1))
            .collect();
        let tb = TokenBatch::right_padded(&rows, &from)?;
        let n_tok = tb.rows.len();
        tokens += n_tok;
        let scale = 1.0 / n_tok.max(1) as f64;
        let mut lv = 0.0;
        // Loss: the mean negative log-likelihood of the answer tokens.
        learner.accumulate(&tb, &mut |_, lp, d| {
            lv -= lp.iter().map(|&x| x as f64).sum::<f64>() * scale;
            d.fill(-scale as f32);
        })?;
        learner.clip_grad_norm(cfg.max_norm)?;
        let lr = cosine_lr(step, cfg.steps, cfg.lr, cfg.warmup_ratio, cfg.min_lr_ratio);
        learner.optimizer_step(lr);
        losses.push(lv);
        progress(step + 1, cfg.steps, lv);
    }
    learner.sync_to(model)?;
    model.save_hf(tok, &cfg.out)?;
    let k = (cfg.steps / 20).max(1);
    let mean = |xs: &[f64]| xs.iter().sum::<f64>() / xs.len().max(1) as f64;
    let secs = t0.elapsed().as_secs_f64();
    Ok(SftSummary {
        steps: cfg.steps,
        loss_first: mean(&losses[..k.min(losses.len())]),
        loss_last: mean(&losses[losses.len().saturating_sub(k)..]),
        tokens_per_s: tokens as f64 / secs.max(1e-9),
        seconds: secs,
    })
}

/// Writes JSONL records to `path` (through a temporary file).
pub fn write_jsonl(path: &Path, lines: &[serde_json::Value]) -> Result<(), TrainError> {
    let mut text = String::new();
    for l in lines {
        text.push_str(&l.to_string());
        text.push('\n');
    }
    crate::model::write_atomic(path, text.as_bytes())?;
    Ok(())
}
