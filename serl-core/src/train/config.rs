//! Every SeRL hyperparameter, with the official defaults, read from TOML or
//! JSON and validated with messages that name the field.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::eval::VoteMode;
use crate::model::SamplingParams;
use crate::rl::{Estimator, KlEstimator};

use super::TrainError;

/// Where the sequence reward comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RewardSource {
    /// SeRL: 1 for responses in the majority-answer cluster (no labels).
    MajorityVote,
    /// Baseline: 1 when the response's answer is equivalent to the `answer` label.
    GroundTruth,
}

/// The trainer's configuration (OpenRLHF/SeRL argument names where they exist).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Policy model: Hugging Face directory or .gguf file.
    pub model: PathBuf,
    /// Seed instructions: JSONL with `problem` (or `question`/`instruction`), optional `answer`.
    pub seeds: PathBuf,
    /// Labelled evaluation set (JSONL with `problem`/`question` and `answer`).
    pub eval_data: Option<PathBuf>,
    /// Run directory (metrics, instructions, checkpoints).
    pub out: PathBuf,
    /// Where the model file is loaded: `cpu`, `cuda` or `cuda:N` (training,
    /// rollouts and evaluation compute on the engine's CPU backend).
    pub device: String,
    /// Checkpoint dtype: `f32` or `bf16` (the engine computes in f32 and
    /// keeps f32 master weights).
    pub dtype: String,
    /// Seed of every random choice (prompts, sampling).
    pub seed: u64,
    /// Training steps (SeRL steps: generate, reward, filter, update).
    pub steps: usize,

    /// Self-instruction on (SeRL); off trains on the seed instructions only.
    pub self_instruct: bool,
    /// Reward source.
    pub reward: RewardSource,
    /// Label the model's own problems with the demo task family's arithmetic
    /// (`train::demo::answer_of`) so that `label_accuracy` and
    /// `kept_label_accuracy` cover them; a metric only, never the reward.
    pub demo_labels: bool,
    /// Majority-vote answer matching: `string` or `equiv`.
    pub vote_mode: VoteMode,
    /// Few-shot questions per generation prompt.
    pub few_shot_generation: usize,
    /// Generation prompts per self-instruction round.
    pub few_shot_generation_batch_size: usize,
    /// Temperature of instruction generation.
    pub instruction_temperature: f32,
    /// Top-p of instruction generation.
    pub instruction_top_p: f32,
    /// Presence penalty of instruction generation (vLLM semantics).
    pub instruction_presence_penalty: f32,
    /// Most tokens per instruction-generation completion.
    pub instruction_max_new_tokens: usize,
    /// ROUGE-L F above which a new instruction is rejected.
    pub rouge_threshold: f64,
    /// Keep generated case instead of the reference's `str.capitalize()`.
    pub keep_case: bool,
    /// Rounds of generate → roll out → filter per step before training on
    /// what was kept (the official loop has no cap; this one stops a step
    /// that cannot fill its batch).
    pub max_rounds_per_step: usize,

    /// Instructions (groups) per step.
    pub rollout_batch_size: usize,
    /// Responses per instruction.
    pub n_samples_per_prompt: usize,
    /// Rollout temperature.
    pub temperature: f32,
    /// Rollout top-p.
    pub top_p: f32,
    /// Most tokens per response.
    pub generate_max_len: usize,
    /// User-message template of a rollout; `{problem}` is replaced by the instruction.
    pub input_template: String,
    /// System message of rollouts and evaluation (none when empty).
    pub system_prompt: String,
    /// Keep a group when its agreement (mean reward) is in these bounds (inclusive).
    pub reward_difficulty_bounds: [f64; 2],

    /// Advantage estimator.
    pub advantage_estimator: Estimator,
    /// KL estimator.
    pub kl_estimator: KlEstimator,
    /// KL coefficient (0: no reference model at all).
    pub init_kl_coef: f64,
    /// Put the KL in the loss (coefficient `init_kl_coef`) instead of the reward.
    pub use_kl_loss: bool,
    /// PPO clip ε.
    pub eps_clip: f64,
    /// Discount of the returns.
    pub gamma: f64,
    /// Peak learning rate.
    pub actor_learning_rate: f64,
    /// Warm-up share of the optimizer steps.
    pub lr_warmup_ratio: f64,
    /// Final learning rate as a share of the peak (cosine schedule).
    pub min_lr_ratio: f64,
    /// AdamW β1, β2.
    pub adam_betas: [f64; 2],
    /// AdamW ε.
    pub adam_eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Gradient clipping (global L2 norm).
    pub max_norm: f64,
    /// Sequences per optimizer step.
    pub train_batch_size: usize,
    /// Sequences per forward/backward pass (gradients accumulate up to `train_batch_size`).
    pub micro_train_batch_size: usize,
    /// Passes over each step's experience.
    pub max_epochs: usize,

    /// Evaluate every this many steps (0: only before and after).
    pub eval_steps: usize,
    /// Samples per evaluation question for avg@k and maj@k (0: greedy only).
    pub eval_k: usize,
    /// Evaluation temperature for the k samples.
    pub eval_temperature: f32,
    /// Most tokens per evaluation response.
    pub eval_max_len: usize,
    /// Use at most this many evaluation questions (0: all).
    pub eval_limit: usize,
    /// Sequences generated together during evaluation (more is faster for
    /// small models and costs KV-cache memory).
    pub eval_batch_size: usize,
    /// Write a checkpoint every this many steps (0: only at the end).
    pub save_steps: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            model: PathBuf::new(),
            seeds: PathBuf::new(),
            eval_data: None,
            out: PathBuf::from("runs/serl"),
            device: "cpu".into(),
            dtype: "f32".into(),
            seed: 42,
            steps: 10,
            self_instruct: true,
            reward: RewardSource::MajorityVote,
            demo_labels: false,
            vote_mode: VoteMode::Equiv,
            few_shot_generation: 8,
            few_shot_generation_batch_size: 4,
            instruction_temperature: 0.8,
            instruction_top_p: 0.95,
            instruction_presence_penalty: 2.0,
            instruction_max_new_tokens: 1024,
            rouge_threshold: 0.7,
            keep_case: false,
            max_rounds_per_step: 8,
            rollout_batch_size: 16,
            n_samples_per_prompt: 16,
            temperature: 1.0,
            top_p: 1.0,
            generate_max_len: 1024,
            input_template:
                "{problem}\nPlease reason step by step, and put your final answer within \\boxed{}."
                    .into(),
            system_prompt: String::new(),
            reward_difficulty_bounds: [0.2, 0.8],
            advantage_estimator: Estimator::Reinforce,
            kl_estimator: KlEstimator::K1,
            init_kl_coef: 1e-4,
            use_kl_loss: false,
            eps_clip: 0.2,
            gamma: 1.0,
            actor_learning_rate: 5e-7,
            lr_warmup_ratio: 0.03,
            min_lr_ratio: 0.1,
            adam_betas: [0.9, 0.95],
            adam_eps: 1e-8,
            weight_decay: 0.0,
            max_norm: 1.0,
            train_batch_size: 16,
            micro_train_batch_size: 4,
            max_epochs: 1,
            eval_steps: 0,
            eval_k: 16,
            eval_temperature: 1.0,
            eval_max_len: 1024,
            eval_limit: 0,
            eval_batch_size: 16,
            save_steps: 0,
        }
    }
}

impl Config {
    /// Reads a `.toml` or `.json` file (by extension; TOML otherwise) and
    /// validates it. Relative paths in it are taken relative to the file.
    pub fn from_file(path: &Path) -> Result<Config, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
        let is_json = path.extension().and_then(|e| e.to_str()) == Some("json");
        let mut cfg: Config = if is_json {
            serde_json::from_str(&text).map_err(|e| {
                TrainError::Config(format!(
                    "{}:{}:{}: {e}",
                    path.display(),
                    e.line(),
                    e.column()
                ))
            })?
        } else {
            Config::from_toml(&text)
                .map_err(|e| TrainError::Config(format!("{}: {e}", path.display())))?
        };
        if let Some(base) = path.parent() {
            cfg.rebase(base);
        }
        Ok(cfg)
    }

    /// How self-instruction samples (one completion per few-shot prompt).
    pub fn instruction_sampling(&self, seed: u64) -> SamplingParams {
        SamplingParams {
            n: 1,
            temperature: self.instruction_temperature,
            top_p: self.instruction_top_p,
            presence_penalty: self.instruction_presence_penalty,
            max_new_tokens: self.instruction_max_new_tokens,
            seed,
            ..Default::default()
        }
    }

    /// How rollouts sample: `n` answers per problem (the trainer's
    /// `n_samples_per_prompt`).
    pub fn rollout_sampling(&self, n: usize, seed: u64) -> SamplingParams {
        SamplingParams {
            n,
            temperature: self.temperature,
            top_p: self.top_p,
            max_new_tokens: self.generate_max_len,
            seed,
            ..Default::default()
        }
    }

    /// Parses a TOML configuration (`serl train --config`'s form); paths
    /// stay as given.
    pub fn from_toml(text: &str) -> Result<Config, TrainError> {
        toml::from_str(text).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// Parses a JSON configuration (the C ABI's form); paths stay as given.
    pub fn from_json(text: &str) -> Result<Config, TrainError> {
        serde_json::from_str(text).map_err(|e| {
            TrainError::Config(format!(
                "config JSON line {} column {}: {e}",
                e.line(),
                e.column()
            ))
        })
    }

    fn rebase(&mut self, base: &Path) {
        let fix = |p: &mut PathBuf| {
            if !p.as_os_str().is_empty() && p.is_relative() {
                *p = base.join(&*p);
            }
        };
        fix(&mut self.model);
        fix(&mut self.seeds);
        fix(&mut self.out);
        if let Some(e) = self.eval_data.as_mut() {
            fix(e);
        }
    }

    /// Checks ranges and combinations; the message names the field.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |m: String| Err(TrainError::Config(m));
        if self.model.as_os_str().is_empty() {
            return bad("model: no model path given".into());
        }
        if !self.model.exists() {
            return bad(format!("model: {} does not exist", self.model.display()));
        }
        if self.seeds.as_os_str().is_empty() {
            return bad("seeds: no seed file given".into());
        }
        if !self.seeds.is_file() {
            return bad(format!("seeds: {} is not a file", self.seeds.display()));
        }
        if let Some(e) = &self.eval_data
            && !e.is_file()
        {
            return bad(format!("eval_data: {} is not a file", e.display()));
        }
        let [lo, hi] = self.reward_difficulty_bounds;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return bad(format!(
                "reward_difficulty_bounds: [{lo}, {hi}] must satisfy 0 <= lo <= hi <= 1"
            ));
        }
        if self.n_samples_per_prompt == 0 {
            return bad("n_samples_per_prompt must be at least 1".into());
        }
        if self.advantage_estimator == Estimator::Rloo && self.n_samples_per_prompt < 2 {
            return bad("advantage_estimator rloo needs n_samples_per_prompt >= 2 (it leaves one sample out)".into());
        }
        for (name, v) in [
            ("rollout_batch_size", self.rollout_batch_size),
            ("train_batch_size", self.train_batch_size),
            ("micro_train_batch_size", self.micro_train_batch_size),
            ("max_epochs", self.max_epochs),
            ("generate_max_len", self.generate_max_len),
            ("few_shot_generation", self.few_shot_generation),
            (
                "few_shot_generation_batch_size",
                self.few_shot_generation_batch_size,
            ),
            (
                "instruction_max_new_tokens",
                self.instruction_max_new_tokens,
            ),
            ("max_rounds_per_step", self.max_rounds_per_step),
            ("eval_max_len", self.eval_max_len),
        ] {
            if v == 0 {
                return bad(format!("{name} must be at least 1"));
            }
        }
        if self.micro_train_batch_size > self.train_batch_size {
            return bad(format!(
                "micro_train_batch_size ({}) is larger than train_batch_size ({})",
                self.micro_train_batch_size, self.train_batch_size
            ));
        }
        if !(0.0..=1.0).contains(&self.rouge_threshold) {
            return bad(format!(
                "rouge_threshold {} is outside [0, 1]",
                self.rouge_threshold
            ));
        }
        for (name, v) in [
            ("temperature", self.temperature),
            ("instruction_temperature", self.instruction_temperature),
            ("eval_temperature", self.eval_temperature),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return bad(format!("{name} {v} must be finite and >= 0"));
            }
        }
        for (name, v) in [
            ("top_p", self.top_p),
            ("instruction_top_p", self.instruction_top_p),
        ] {
            if !(v > 0.0 && v <= 1.0) {
                return bad(format!("{name} {v} must be in (0, 1]"));
            }
        }
        if !(self.actor_learning_rate >= 0.0 && self.actor_learning_rate.is_finite()) {
            return bad(format!(
                "actor_learning_rate {} must be finite and >= 0",
                self.actor_learning_rate
            ));
        }
        if !(0.0..=1.0).contains(&self.lr_warmup_ratio) || !(0.0..=1.0).contains(&self.min_lr_ratio)
        {
            return bad("lr_warmup_ratio and min_lr_ratio must be in [0, 1]".into());
        }
        let [b1, b2] = self.adam_betas;
        if !(0.0..1.0).contains(&b1) || !(0.0..1.0).contains(&b2) {
            return bad(format!("adam_betas [{b1}, {b2}] must be in [0, 1)"));
        }
        if self.max_norm <= 0.0 || self.eps_clip <= 0.0 {
            return bad("max_norm and eps_clip must be positive".into());
        }
        if !self.input_template.contains("{problem}") {
            return bad("input_template must contain {problem}".into());
        }
        crate::model::device_from_name(&self.device)
            .map_err(|e| TrainError::Config(format!("device: {e}")))?;
        crate::model::dtype_from_name(&self.dtype)
            .map_err(|e| TrainError::Config(format!("dtype: {e}")))?;
        Ok(())
    }

    /// Optimizer steps the schedule plans for (every step full).
    pub fn planned_optimizer_steps(&self) -> usize {
        let seqs = self.rollout_batch_size * self.n_samples_per_prompt;
        (self.steps * self.max_epochs * seqs.div_ceil(self.train_batch_size)).max(1)
    }
}
