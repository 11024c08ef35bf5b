//! `serl sft` and `serl demo-data`.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::Args;
use serl_core::model::{self, DType, Device, LoadOptions, Model};
use serl_core::train::{SftConfig, demo, sft, write_jsonl};

/// Options of `serl sft`.
#[derive(Args)]
pub struct SftArgs {
    /// Training corpus: JSONL of {"messages"}, {"prompt","completion"} or {"text"}.
    #[arg(long)]
    data: PathBuf,
    /// Output directory (Hugging Face format).
    #[arg(long)]
    out: PathBuf,
    /// Start from this model (Hugging Face directory or .gguf) ...
    #[arg(long, conflicts_with = "preset")]
    model: Option<PathBuf>,
    /// ... or from a fresh random model: `demo` (the embedded demo's shape, byte-level tokenizer).
    #[arg(long)]
    preset: Option<String>,
    /// Seed of the fresh model's weights and of the batch order.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Optimizer steps.
    #[arg(long, default_value_t = 1000)]
    steps: usize,
    /// Sequences per step.
    #[arg(long, default_value_t = 32)]
    batch_size: usize,
    /// Peak learning rate (cosine schedule, 3% warm-up, to 10%).
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Longest sequence in tokens.
    #[arg(long, default_value_t = 512)]
    max_len: usize,
    /// Where the engine runs: cpu, wgpu or wgpu:N (see `serl devices`).
    #[arg(long, default_value = "cpu")]
    device: String,
}

/// Options of `serl demo-data`.
#[derive(Args)]
pub struct DemoDataArgs {
    /// Output directory: sft.jsonl, seeds.jsonl, eval.jsonl.
    #[arg(long)]
    out: PathBuf,
    /// Generator seed.
    #[arg(long, default_value_t = 2026)]
    seed: u64,
    /// Solved problems in sft.jsonl (plus a question list every eighth).
    #[arg(long, default_value_t = 20_000)]
    n_sft: usize,
    /// Task family: `two-step` (worked solutions), `direct` (the same
    /// problems, three in five solutions only the answer) or `split`
    /// (products worked in one step or split into tens and units).
    #[arg(long, default_value = "two-step")]
    family: demo::Family,
    /// Held-out evaluation problems.
    #[arg(long, default_value_t = 200)]
    n_eval: usize,
}

/// Runs `serl sft`.
pub fn run_sft(a: SftArgs) -> Result<()> {
    let (m, tok) = match (&a.model, a.preset.as_deref()) {
        (Some(p), None) => model::load_model(p, &LoadOptions::default())
            .with_context(|| format!("loading {}", p.display()))?,
        (None, Some("demo")) => {
            // A byte-level BPE learned from the corpus's message texts.
            let records: Vec<serde_json::Value> =
                super::train::read_jsonl(&a.data, "a JSON record")?;
            let tok = demo::demo_tokenizer(&records)?;
            let m = Model::random(
                demo::demo_model_config(tok.vocab_size()),
                a.seed,
                &Device::Cpu,
                DType::F32,
            )?;
            (m, tok)
        }
        (None, Some(other)) => bail!("--preset {other:?}: the only preset is \"demo\""),
        _ => bail!("give --model PATH or --preset demo"),
    };
    eprintln!("{} parameters", m.config().num_parameters());
    let cfg = SftConfig {
        data: a.data,
        out: a.out.clone(),
        steps: a.steps,
        batch_size: a.batch_size,
        lr: a.lr,
        max_len: a.max_len,
        seed: a.seed,
        device: a.device,
        ..SftConfig::default()
    };
    let mut recent = Vec::new();
    let s = sft(&m, &tok, &cfg, &mut |step, total, loss| {
        recent.push(loss);
        if step % 50 == 0 || step == total {
            let mean = recent.iter().sum::<f64>() / recent.len() as f64;
            recent.clear();
            eprint!("\r\x1b[2Ksft step {step}/{total} loss {mean:.4}");
            let _ = std::io::stderr().flush();
        }
    })?;
    eprintln!();
    eprintln!(
        "saved {}: loss {:.4} -> {:.4}, {:.0} tokens/s, {:.0} s",
        a.out.display(),
        s.loss_first,
        s.loss_last,
        s.tokens_per_s,
        s.seconds
    );
    Ok(())
}

/// Runs `serl demo-data`.
pub fn run_demo_data(a: DemoDataArgs) -> Result<()> {
    let d = demo::demo_data(a.family, a.seed, a.n_sft, a.n_eval);
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let ex = |xs: &[serl_core::train::Example]| -> Vec<serde_json::Value> {
        xs.iter()
            .map(|e| serde_json::json!({"problem": e.problem, "answer": e.answer}))
            .collect()
    };
    write_jsonl(&a.out.join("sft.jsonl"), &d.sft)?;
    write_jsonl(&a.out.join("seeds.jsonl"), &ex(&d.seeds))?;
    write_jsonl(&a.out.join("eval.jsonl"), &ex(&d.eval))?;
    eprintln!(
        "wrote {}: {} sft records, {} seeds, {} eval problems",
        a.out.display(),
        d.sft.len(),
        d.seeds.len(),
        d.eval.len()
    );
    Ok(())
}
