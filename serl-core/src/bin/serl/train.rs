//! `serl train` and `serl eval`.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::Args;
use serl_core::engine::EngineDevice;
use serl_core::model::{self, LoadOptions};
use serl_core::train::{
    Config, EvalResult, StepStats, TrainError, Trainer, evaluate_model_answers, read_examples,
    write_jsonl,
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
    /// Sequences generated together (more is faster for small models).
    #[arg(long, default_value_t = 16)]
    batch_size: usize,
    /// cpu, wgpu, wgpu:N (see `serl devices`), cuda or cuda:N.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also write every question's answers here (JSONL: greedy, samples, majority, each right or not).
    #[arg(long)]
    answers: Option<PathBuf>,
}

/// Options of `serl compare`.
#[derive(Args)]
pub struct CompareArgs {
    /// Run directories, each with an eval.jsonl.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
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
    if e.k == 0 {
        return format!(
            "{label}: pass@1 {:.1}%  ({} questions)",
            100.0 * e.pass_at_1,
            e.questions
        );
    }
    format!(
        "{label}: pass@1 {:.1}%  avg@{k} {}  maj@{k} {}  ({} questions)",
        100.0 * e.pass_at_1,
        pct(e.avg_at_k),
        pct(e.maj_at_k),
        e.questions,
        k = e.k
    )
}

/// The embedded demo's configuration: a shipped 1M-parameter model, 50
/// seed problems and a held-out set (see demo/README.md).
const DEMO_CONFIG: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../demo/serl-demo.toml");

/// `base`, or `base-2`, `base-3`, ... : the first that holds no run yet.
fn free_run_dir(base: &Path) -> PathBuf {
    let taken = |p: &Path| p.join("metrics.jsonl").exists() || p.join("checkpoints").exists();
    if !taken(base) {
        return base.to_path_buf();
    }
    let name = base
        .file_name()
        .map_or_else(|| "run".to_string(), |n| n.to_string_lossy().into_owned());
    (2..)
        .map(|i| base.with_file_name(format!("{name}-{i}")))
        .find(|p| !taken(p))
        .unwrap_or_else(|| base.to_path_buf())
}

/// A text progress bar of `width` cells, `frac` of them full.
fn bar(frac: f64, width: usize) -> String {
    let full = ((frac.clamp(0.0, 1.0) * width as f64).round() as usize).min(width);
    format!("[{}{}]", "#".repeat(full), "-".repeat(width - full))
}

/// The before/after table printed at the end of a run.
fn eval_table(before: Option<&EvalResult>, after: &EvalResult) -> String {
    let k = after.k;
    let mut t = format!(
        "{:<8} {:>8} {:>8} {:>8}\n",
        "",
        "pass@1",
        format!("avg@{k}"),
        format!("maj@{k}")
    );
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}%", 100.0 * v));
    let row = |label: &str, e: &EvalResult| {
        format!(
            "{label:<8} {:>8} {:>8} {:>8}\n",
            pct(Some(e.pass_at_1)),
            pct(e.avg_at_k),
            pct(e.maj_at_k)
        )
    };
    if let Some(b) = before {
        t.push_str(&row("before", b));
    }
    t.push_str(&row("after", after));
    if let Some(b) = before {
        let d = |a: Option<f64>, b: Option<f64>| {
            a.zip(b)
                .map_or("-".to_string(), |(a, b)| format!("{:+.1}", 100.0 * (a - b)))
        };
        t.push_str(&format!(
            "{:<8} {:>8} {:>8} {:>8}\n",
            "change",
            d(Some(after.pass_at_1), Some(b.pass_at_1)),
            d(after.avg_at_k, b.avg_at_k),
            d(after.maj_at_k, b.maj_at_k)
        ));
    }
    t
}

/// Runs `serl train`.
pub fn run_train(a: TrainArgs) -> Result<()> {
    let mut trainer = match &a.resume {
        Some(dir) => Trainer::resume(dir).with_context(|| format!("resuming {}", dir.display()))?,
        None => {
            let demo = a.config.is_none() && a.model.is_none();
            let mut cfg = match (&a.config, demo) {
                (Some(p), _) => Config::from_file(p)?,
                (None, true) => {
                    let p = Path::new(DEMO_CONFIG);
                    if !p.exists() {
                        bail!(
                            "no --config or --model given, and the embedded demo ({}) is not here: \
                             run from a clone of the repository, or give --config FILE",
                            p.display()
                        );
                    }
                    eprintln!(
                        "serl train: no --config or --model given; running the embedded demo \
                         (demo/serl-demo.toml)"
                    );
                    Config::from_file(p)?
                }
                (None, false) => Config::default(),
            };
            if demo {
                cfg.out = free_run_dir(Path::new("runs/demo"));
            }
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
            if a.config.is_none() && !demo && cfg.seeds.as_os_str().is_empty() {
                bail!("--model needs --seeds (see `serl train --help`)");
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
    // The first Ctrl-C stops at the next phase boundary and saves the last
    // finished step; a second one exits at once (checkpoints are written
    // to a temporary directory and renamed, so none is left half-written).
    let stop = trainer.stop_flag();
    ctrlc::set_handler(move || {
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\ninterrupted again: exiting without a checkpoint");
            std::process::exit(130);
        }
    })
    .context("installing the Ctrl-C handler")?;
    let total = trainer.config().steps;
    let out = trainer.config().out.clone();
    let has_eval = trainer.config().eval_data.is_some();
    eprintln!("serl train: run directory {}", out.display());
    let mut before = None;
    if has_eval && trainer.steps_done() == 0 {
        eprintln!("evaluating the initial model ...");
        let e = trainer.evaluate()?;
        eprintln!("{}", eval_line("before", &e));
        before = Some(e);
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
                let within = if n > 0 { d as f64 / n as f64 } else { 0.0 };
                let frac = (step - 1) as f64 / total as f64 + within / total as f64;
                eprint!(
                    "\r\x1b[2K{} step {step}/{total} {phase} {d}/{n} · {} elapsed · ETA {eta}",
                    bar(frac, 24),
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
                if let Some(e) = &s.eval {
                    eprintln!("{}", eval_line(&format!("step {}", s.step), e));
                }
            }
            Err(TrainError::Interrupted) => {
                let done = trainer.steps_done();
                if trainer.checkpointed_step() == Some(done) {
                    eprintln!("\ninterrupted: step {done} is already saved");
                } else {
                    eprintln!("\ninterrupted: writing a checkpoint of step {done} ...");
                    trainer.save_checkpoint()?;
                }
                trainer.write_plot()?;
                eprintln!(
                    "saved {}; continue with `serl train --resume {}`",
                    trainer.checkpoint_dir(done).display(),
                    out.display()
                );
                std::process::exit(130);
            }
            Err(e) => return Err(e.into()),
        }
    }
    if trainer.checkpointed_step() != Some(trainer.steps_done()) {
        trainer.save_checkpoint()?;
    }
    eprintln!(
        "final checkpoint: {}",
        trainer.checkpoint_dir(trainer.steps_done()).display()
    );
    if has_eval {
        let last = trainer.history().last().and_then(|s| s.eval.clone());
        let e = match last.filter(|e| e.step == trainer.steps_done()) {
            Some(e) => e,
            None => trainer.evaluate()?,
        };
        eprintln!("{}", eval_line("after", &e));
        eprint!("\n{}", eval_table(before.as_ref(), &e));
    }
    eprintln!(
        "plot: {} (in {})",
        trainer.write_plot()?.display(),
        fmt_secs(started.elapsed().as_secs_f64())
    );
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
        eval_batch_size: a.batch_size,
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
    // The compute engine (CPU or wgpu); candle's own path on CUDA.
    let (r, questions) = if m.device().is_cpu() {
        let engine = serl_core::train::Scorer::on(EngineDevice::parse(&a.device)?, &m)?;
        evaluate_model_answers(&engine.decoder(), &tok, &data, &cfg, 0)?
    } else {
        evaluate_model_answers(&m, &tok, &data, &cfg, 0)?
    };
    eprintln!(
        "{} in {:.1} s",
        eval_line("eval", &r),
        t0.elapsed().as_secs_f64()
    );
    if let Some(path) = &a.answers {
        let lines = questions
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()?;
        write_jsonl(path, &lines).with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{}", serde_json::to_string(&r)?);
    Ok(())
}

/// Runs `serl compare`: a Markdown table with one row per run, its first
/// (before) and last evaluation from eval.jsonl, and the seconds its steps
/// took from metrics.jsonl (evaluations not included).
pub fn run_compare(a: CompareArgs) -> Result<()> {
    let pct = |x: Option<f64>| x.map_or("-".to_string(), |v| format!("{:.1}", 100.0 * v));
    let pair = |b: Option<f64>, e: Option<f64>| format!("{} → {}", pct(b), pct(e));
    let mut rows = Vec::new();
    let mut k = 0;
    for run in &a.runs {
        let path = run.join("eval.jsonl");
        let evals: Vec<EvalResult> = read_jsonl(&path, "an evaluation record")?;
        let (Some(first), Some(last)) = (evals.first(), evals.last()) else {
            bail!("{}: no evaluation recorded", path.display());
        };
        let metrics = run.join("metrics.jsonl");
        let mut seconds = 0.0;
        if metrics.exists() {
            for s in read_jsonl::<StepStats>(&metrics, "a step record")? {
                let t = &s.seconds;
                seconds +=
                    t.instruction_generation + t.rollout + t.scoring + t.filtering + t.update;
            }
        }
        k = last.k;
        rows.push(format!(
            "| {} | {} | {} | {} | {} | {} |",
            run.display(),
            last.step,
            pair(Some(first.pass_at_1), Some(last.pass_at_1)),
            pair(first.avg_at_k, last.avg_at_k),
            pair(first.maj_at_k, last.maj_at_k),
            fmt_secs(seconds)
        ));
    }
    println!("| run | steps | greedy pass@1 (%) | avg@{k} (%) | maj@{k} (%) | training time |");
    println!("| --- | --- | --- | --- | --- | --- |");
    for r in rows {
        println!("{r}");
    }
    Ok(())
}

/// The non-blank lines of a JSONL file as `T`s; an error names the file and
/// line and says what the line should have been (`what`).
pub fn read_jsonl<T: serde::de::DeserializeOwned>(path: &Path, what: &str) -> Result<Vec<T>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not {what}", path.display(), i + 1))
        })
        .collect()
}
