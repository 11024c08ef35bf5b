//! `serl`: the SeRL evaluator on JSONL streams (one output line per input
//! line), for scripts and hosts that do not link libserl.
//!
//! Exit codes: 0 success, 1 bad input (the message names the line and the
//! field), 2 bad usage.

use std::fs;
use std::io::{self, BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, anyhow, bail};
use clap::{Parser, Subcommand};
use serde_json::{Map, Value, json};
use serl_core::eval::{self, CaseMode, DiversityFilter, Rng, VoteMode};

#[cfg(feature = "train")]
mod generate;
#[cfg(feature = "train")]
mod sft;
#[cfg(feature = "train")]
mod train;

#[derive(Parser)]
#[command(
    name = "serl",
    version,
    about = "SeRL: self-play reinforcement learning for LLMs with limited data"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Final answer of each response: {"response"} → {"answer", "normalized"}.
    Extract,
    /// math_verify equivalence: {"pred", "ref"} → {"equal"}.
    Equal,
    /// Majority vote of a group: {"responses"} → {"rewards", "answers", "majority", "agreement"}.
    Vote {
        /// `string` (exact normalised answers) or `equiv` (math_verify equivalence).
        #[arg(long, default_value = "string")]
        mode: VoteMode,
    },
    /// ROUGE-L of b (prediction) against a (target): {"a", "b"} → {"f", "p", "r"}.
    Rouge,
    /// Numbered-list parsing and rule filters: {"response"} → {"instructions"}.
    ParseInstructions {
        /// Keep the generated case instead of Python's `capitalize()`.
        #[arg(long)]
        keep_case: bool,
    },
    /// Diversity filter: {"instruction"} → {"kept", "max_rouge_l", "argmax"}; kept ones join the pool.
    Filter {
        /// JSONL seed set with a `problem` or `instruction` field.
        #[arg(long)]
        seeds: PathBuf,
        /// Reject when the maximum ROUGE-L F is above this.
        #[arg(long, default_value_t = eval::DEFAULT_THRESHOLD)]
        threshold: f64,
    },
    /// RL arithmetic for hosts with their own model: rl.jsonl's input fields →
    /// {"kl", "shaped_rewards", "token_rewards", "returns", "advantages",
    /// "policy_loss_token_mean", "policy_loss_seq_mean"}.
    Advantages,
    /// One question-generation prompt: → {"system", "user"}.
    Prompt {
        /// JSONL seed set with a `problem` or `instruction` field.
        #[arg(long)]
        seeds: PathBuf,
        /// JSONL kept pool (generated instructions kept earlier).
        #[arg(long)]
        pool: Option<PathBuf>,
        /// Number of few-shot questions.
        #[arg(long, default_value_t = eval::DEFAULT_SHOTS)]
        shots: usize,
        /// Seed of the sampling RNG.
        #[arg(long, default_value_t = 0)]
        seed: u64,
    },
    /// Sample from a model (Hugging Face directory or GGUF); streams text and
    /// ends with a tokens/s line on stderr.
    #[cfg(feature = "train")]
    Generate(generate::GenerateArgs),
    /// Train a model with SeRL (self-instruction + majority-vote reward);
    /// writes metrics, instructions, evaluations and checkpoints to the run directory.
    #[cfg(feature = "train")]
    Train(train::TrainArgs),
    /// Greedy pass@1, avg@k and maj@k of a model on a labelled JSONL.
    #[cfg(feature = "train")]
    Eval(train::EvalArgs),
    /// Before/after table of finished runs (from their eval.jsonl), e.g. SeRL beside its baselines.
    #[cfg(feature = "train")]
    Compare(train::CompareArgs),
    /// Supervised next-token training on a JSONL corpus (a warm start).
    #[cfg(feature = "train")]
    Sft(sft::SftArgs),
    /// Write the embedded demo's data (arithmetic word problems): sft.jsonl, seeds.jsonl, eval.jsonl.
    #[cfg(feature = "train")]
    DemoData(sft::DemoDataArgs),
    /// List the devices the engine can run on (`--device` names), one JSON line each.
    Devices,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A closed stdout (`serl … | head`) is not an error worth a message.
            if e.downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                return ExitCode::SUCCESS;
            }
            eprintln!("serl: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Extract => map_stdin(|rec| {
            let answer = eval::extract_answer(str_field(rec, "response")?);
            let normalized = eval::strip_string(&answer);
            Ok(json!({"answer": answer, "normalized": normalized}))
        }),
        Command::Equal => map_stdin(|rec| {
            Ok(json!({"equal": eval::equivalent(str_field(rec, "pred")?, str_field(rec, "ref")?)}))
        }),
        Command::Vote { mode } => map_stdin(|rec| {
            let responses = str_list_field(rec, "responses")?;
            Ok(serde_json::to_value(eval::vote(&responses, mode))?)
        }),
        Command::Rouge => map_stdin(|rec| {
            let s = eval::rouge_l(str_field(rec, "a")?, str_field(rec, "b")?);
            Ok(json!({"f": s.f, "p": s.p, "r": s.r}))
        }),
        Command::ParseInstructions { keep_case } => {
            let case = if keep_case {
                CaseMode::Keep
            } else {
                CaseMode::Capitalize
            };
            map_stdin(|rec| {
                Ok(
                    json!({"instructions": eval::parse_instructions(str_field(rec, "response")?, case)}),
                )
            })
        }
        Command::Filter { seeds, threshold } => {
            if !(0.0..=1.0).contains(&threshold) {
                bail!("--threshold {threshold} is outside [0, 1]");
            }
            let seeds = read_instructions(&seeds)?;
            let mut filter = DiversityFilter::new(&seeds, threshold);
            map_stdin(|rec| {
                let v = filter.offer(str_field(rec, "instruction")?);
                Ok(json!({"kept": v.kept, "max_rouge_l": v.max_rouge_l, "argmax": v.argmax}))
            })
        }
        Command::Advantages => map_stdin(|rec| {
            let request: serl_core::rl::AdvantageRequest =
                serde_json::from_value(Value::Object(rec.clone())).map_err(|e| anyhow!("{e}"))?;
            let out = request.compute()?;
            Ok(serde_json::to_value(out)?)
        }),
        Command::Prompt {
            seeds,
            pool,
            shots,
            seed,
        } => {
            let seeds = read_instructions(&seeds)?;
            let pool = match pool {
                Some(p) => read_instructions(&p)?,
                None => Vec::new(),
            };
            let p = eval::build_generation_prompt(&seeds, &pool, shots, &mut Rng::new(seed));
            let mut out = io::stdout().lock();
            writeln!(out, "{}", json!({"system": p.system, "user": p.user}))?;
            Ok(())
        }
        #[cfg(feature = "train")]
        Command::Generate(args) => generate::run(args),
        #[cfg(feature = "train")]
        Command::Train(args) => train::run_train(args),
        #[cfg(feature = "train")]
        Command::Eval(args) => train::run_eval(args),
        #[cfg(feature = "train")]
        Command::Compare(args) => train::run_compare(args),
        #[cfg(feature = "train")]
        Command::Sft(args) => sft::run_sft(args),
        #[cfg(feature = "train")]
        Command::DemoData(args) => sft::run_demo_data(args),
        Command::Devices => devices(),
    }
}

/// `serl devices`: the CPU, then each wgpu adapter (with the `wgpu` feature).
fn devices() -> Result<()> {
    let mut out = io::stdout().lock();
    writeln!(out, "{}", json!({"device": "cpu", "name": "host CPU"}))?;
    #[cfg(feature = "wgpu")]
    {
        let all = serl_core::engine::Wgpu::adapters();
        if all.is_empty() {
            eprintln!("no wgpu adapter (without a GPU on Linux: apt install mesa-vulkan-drivers)");
        }
        for a in all {
            writeln!(
                out,
                "{}",
                json!({
                    "device": format!("wgpu:{}", a.index),
                    "name": a.name,
                    "backend": a.backend,
                    "type": a.device_type,
                    "max_buffer_size": a.max_buffer_size,
                    "max_storage_binding": a.max_storage_binding,
                })
            )?;
        }
    }
    #[cfg(not(feature = "wgpu"))]
    eprintln!("wgpu: not in this build (cargo build --release --features wgpu)");
    Ok(())
}

/// Applies `f` to every non-blank JSON line of stdin and writes one JSON
/// line per input line; stops at the first bad line with its number.
fn map_stdin(mut f: impl FnMut(&Map<String, Value>) -> Result<Value>) -> Result<()> {
    let stdin = io::stdin().lock();
    let mut out = BufWriter::new(io::stdout().lock());
    for (i, line) in stdin.lines().enumerate() {
        let line = line.with_context(|| format!("stdin line {}: cannot read", i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let result = parse_record(&line).and_then(|rec| f(&rec));
        let value = match result {
            Ok(v) => v,
            Err(e) => {
                out.flush()?;
                return Err(e.context(format!("stdin line {}", i + 1)));
            }
        };
        writeln!(out, "{value}")?;
    }
    out.flush()?;
    Ok(())
}

fn parse_record(line: &str) -> Result<Map<String, Value>> {
    match serde_json::from_str::<Value>(line) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(anyhow!("expected a JSON object")),
        Err(e) => Err(anyhow!("invalid JSON: {e}")),
    }
}

fn str_field<'a>(rec: &'a Map<String, Value>, key: &str) -> Result<&'a str> {
    match rec.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(anyhow!("field \"{key}\" must be a string")),
        None => Err(anyhow!("missing field \"{key}\"")),
    }
}

fn str_list_field(rec: &Map<String, Value>, key: &str) -> Result<Vec<String>> {
    let Some(v) = rec.get(key) else {
        bail!("missing field \"{key}\"")
    };
    let Value::Array(items) = v else {
        bail!("field \"{key}\" must be an array of strings")
    };
    items
        .iter()
        .enumerate()
        .map(|(k, x)| {
            x.as_str()
                .map(str::to_string)
                .ok_or_else(|| anyhow!("field \"{key}\"[{k}] must be a string"))
        })
        .collect()
}

/// The `problem` (or `instruction`) of every line of a JSONL file.
fn read_instructions(path: &Path) -> Result<Vec<String>> {
    let text =
        fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let rec = parse_record(line).with_context(|| format!("{}:{}", path.display(), i + 1))?;
        let s = str_field(&rec, "problem")
            .or_else(|_| str_field(&rec, "instruction"))
            .map_err(|_| {
                anyhow!(
                    "{}:{}: needs a string field \"problem\" or \"instruction\"",
                    path.display(),
                    i + 1
                )
            })?;
        out.push(s.to_string());
    }
    if out.is_empty() {
        bail!("{}: no instructions", path.display());
    }
    Ok(out)
}
