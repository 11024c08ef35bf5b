//! `serl train` and `serl eval`.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serl_core::model::{self, LoadOptions};
use serl_core::train::{
    Config, EvalResult, StepStats, TrainError, Trainer, evaluate_model, read_examples,
};

/// Options of `serl train`.
#[derive(Args)]
pub struct TrainArgs {
    /// Configuration file (TOML or JSON); every SeRL hyperparameter has the official default.
    #[arg(long)]
    config: Option<PathBuf>,
    /// Policy model (Hugging Face directory or .gguf); overrides the config.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Seed instructions (JSONL); overrides the config.
    #[arg(long)]
    seeds: Option<PathBuf>,
    /// Labelled evaluation set (JSONL); overrides the config.
    #[arg(long)]
    eval_data: Option<PathBuf>,
    /// Run directory; overrides the config.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Number of steps; overrides the config.
    #[arg(long)]
    steps: Option<usize>,
    /// Continue the run in this directory from its latest checkpoint.
    #[arg(long, conflicts_with_all = ["config", "model", "seeds", "eval_data", "out"])]
    resume: Option<PathBuf>,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
}

/// Options of `serl eval`.
#[derive(Args)]
pub struct EvalArgs {
    /// Model (Hugging Face directory or .gguf).
    #[arg(long)]
    model: PathBuf,
    /// Labelled JSONL (`problem`/`question` and `answer`).
    #[arg(long)]
    data: PathBuf,
    /// Samples per question for avg@k and maj@k (0: greedy only).
    #[arg(long, default_value_t = 16)]
    k: usize,
    /// Temperature of the k samples.
    #[arg(long, default_value_t = 1.0)]
    temperature: f32,
    /// Most new tokens per answer.
    #[arg(long, default_value_t = 1024)]
    max_new_tokens: usize,
    /// Evaluate the first N questions only.
    #[arg(long, default_value_t = 0)]
    limit: usize,
    /// User-message template; `{problem}` is replaced by the question.
    #[arg(long)]
    template: Option<String>,
    /// RNG seed of the samples.
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// cpu, cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
}

fn fmt_secs(s: f64) -> String {
    let s = s.max(0.0) as u64;
    if s >= 3600 {
        format!("{}h{:02}m", s / 3600, (s % 3600) / 60)
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

fn eval_line(label: &str, e: &EvalResult) -> String {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    format!(
        "{label}: pass@1 {:.1}%  avg@{k} {}  maj@{k} {}  ({} questions)",
        100.0 * e.pass_at_1,
        pct(e.avg_at_k),
        pct(e.maj_at_k),
        e.questions,
        k = e.k
    )
}

/// Runs `serl train`.
pub fn run_train(a: TrainArgs) -> Result<()> {
    let mut trainer = match &a.resume {
        Some(dir) => Trainer::resume(dir).with_context(|| format!("resuming {}", dir.display()))?,
        None => {
            let mut cfg = match &a.config {
                Some(p) => Config::from_file(p)?,
                None => Config::default(),
            };
            if let Some(m) = a.model {
                cfg.model = m;
            }
            if let Some(s) = a.seeds {
                cfg.seeds = s;
            }
            if let Some(e) = a.eval_data {
                cfg.eval_data = Some(e);
            }
            if let Some(o) = a.out {
                cfg.out = o;
            }
            if let Some(n) = a.steps {
                cfg.steps = n;
            }
            if a.config.is_none() && cfg.model.as_os_str().is_empty() {
                bail!("give --config FILE, or --model and --seeds (see `serl train --help`)");
            }
            Trainer::new(cfg)?
        }
    };
    if let Some(n) = a.steps
        && a.resume.is_some()
    {
        // Extending a finished run: the schedule is planned for the new total.
        trainer.set_total_steps(n);
    }
    let stop = trainer.stop_flag();
    ctrlc::set_handler(move || stop.store(true, Ordering::SeqCst))
        .context("installing the Ctrl-C handler")?;
    let total = trainer.config().steps;
    let out = trainer.config().out.clone();
    let has_eval = trainer.config().eval_data.is_some();
    eprintln!("serl train: run directory {}", out.display());
    if has_eval && trainer.steps_done() == 0 {
        eprintln!("evaluating the initial model ...");
        let e = trainer.evaluate()?;
        eprintln!("{}", eval_line("before", &e));
    }
    let started = Instant::now();
    let first = trainer.steps_done();
    let quiet = a.quiet;
    while trainer.steps_done() < total {
        let step = trainer.steps_done() + 1;
        let done_here = step - 1 - first;
        let elapsed = started.elapsed().as_secs_f64();
        let eta = if done_here > 0 {
            elapsed / done_here as f64 * (total - step + 1) as f64
        } else {
            f64::NAN
        };
        if !quiet {
            trainer.set_progress(Box::new(move |phase, d, n| {
                let eta = if eta.is_nan() {
                    "?".to_string()
                } else {
                    fmt_secs(eta)
                };
                eprint!(
                    "\r\x1b[2Kstep {step}/{total} [{phase} {d}/{n}] elapsed {} ETA {eta}",
                    fmt_secs(elapsed)
                );
                let _ = std::io::stderr().flush();
            }));
        }
        match trainer.step() {
            Ok(s) => {
                if !quiet {
                    eprint!("\r\x1b[2K");
                }
                eprintln!("{}", step_line(&s));
            }
            Err(TrainError::Interrupted) => {
                eprintln!(
                    "\ninterrupted: writing a checkpoint of step {} ...",
                    trainer.steps_done()
                );
                let dir = trainer.save_checkpoint()?;
                trainer.write_plot()?;
                eprintln!(
                    "saved {}; continue with `serl train --resume {}`",
                    dir.display(),
                    out.display()
                );
                std::process::exit(130);
            }
            Err(e) => return Err(e.into()),
        }
    }
    let dir = trainer.save_checkpoint()?;
    eprintln!("final checkpoint: {}", dir.display());
    if has_eval {
        let e = trainer.evaluate()?;
        eprintln!("{}", eval_line("after", &e));
    }
    eprintln!("plot: {}", trainer.write_plot()?.display());
    Ok(())
}

fn step_line(s: &StepStats) -> String {
    format!(
        "step {}: reward {:.3} agreement {:.3} kept {}/{} (generated {}, rule -{}, similar -{}, difficulty -{}) loss {:.4} kl {:.4} lr {:.2e} |g| {:.3} {:.0} tok/s  [gen {:.1}s roll {:.1}s score {:.2}s filter {:.2}s update {:.1}s]",
        s.step,
        s.reward_mean,
        s.agreement_mean,
        s.kept,
        s.kept + s.difficulty_filtered + s.expired,
        s.generated,
        s.rule_filtered,
        s.similarity_filtered,
        s.difficulty_filtered,
        s.loss,
        s.kl,
        s.lr,
        s.grad_norm,
        s.tokens_per_s,
        s.seconds.instruction_generation,
        s.seconds.rollout,
        s.seconds.scoring,
        s.seconds.filtering,
        s.seconds.update
    )
}

/// Runs `serl eval`.
pub fn run_eval(a: EvalArgs) -> Result<()> {
    let opts = LoadOptions {
        device: model::device_from_name(&a.device)?,
        dtype: model::DType::F32,
    };
    let (m, tok) = model::load_model(&a.model, &opts)
        .with_context(|| format!("loading {}", a.model.display()))?;
    let data = read_examples(&a.data, true)?;
    let mut cfg = Config {
        eval_k: a.k,
        eval_temperature: a.temperature,
        eval_max_len: a.max_new_tokens,
        eval_limit: a.limit,
        seed: a.seed,
        ..Config::default()
    };
    if let Some(t) = a.template {
        if !t.contains("{problem}") {
            bail!("--template must contain {{problem}}");
        }
        cfg.input_template = t;
    }
    let t0 = Instant::now();
    let r = evaluate_model(&m, &tok, &data, &cfg, 0)?;
    eprintln!(
        "{} in {:.1} s",
        eval_line("eval", &r),
        t0.elapsed().as_secs_f64()
    );
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}
