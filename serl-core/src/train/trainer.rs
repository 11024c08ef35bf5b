//! One SeRL training step (DESIGN.md §1): self-instruction, rollouts,
//! majority-vote reward, difficulty filter, and the policy update.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use candle_core::{DType, Device};
use serde::{Deserialize, Serialize};

use crate::eval::{self, CaseMode, DiversityFilter, Rng};
use crate::model::generate::{self, Decoder, Generation};
use crate::model::{
    self, ChatMessage, GenerateRequest, LoadOptions, Model, SamplingParams, Tokenizer,
};
use crate::rl::{self, RlConfig};

use super::TrainError;
use super::config::{Config, RewardSource};
use super::data::{Example, is_correct, read_examples};
use super::learner::{Learner, Scorer};
use super::optim::cosine_lr;
use crate::engine::TokenBatch;

/// A reward function replacing the configured one: (response text, the
/// question with its label) → reward.
pub type RewardFn = Box<dyn Fn(&str, &Example) -> f64 + Send>;

/// The true answer of a question without one (a self-made problem), when
/// the host can tell; used only to measure how often majority votes are
/// right (`label_accuracy`, `kept_label_accuracy`), never as reward.
pub type LabelFn = Box<dyn Fn(&str) -> Option<String> + Send>;

/// Seconds spent in each phase of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseSeconds {
    /// Writing new instructions.
    pub instruction_generation: f64,
    /// Sampling responses.
    pub rollout: f64,
    /// Majority vote / rewards.
    pub scoring: f64,
    /// Rule, diversity and difficulty filters.
    pub filtering: f64,
    /// Log-probs, loss, backward and optimizer.
    pub update: f64,
}

/// What one step did, as a line of `metrics.jsonl`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Step number (1-based).
    pub step: usize,
    /// Mean reward over the sequences trained on.
    pub reward_mean: f64,
    /// Mean agreement over every group scored this step (kept or not).
    pub agreement_mean: f64,
    /// Agreement histogram over all groups scored: [0,.2), [.2,.4), [.4,.6), [.6,.8), [.8,1].
    pub agreement_histogram: [usize; 5],
    /// Instructions generated (parsed items).
    pub generated: usize,
    /// Dropped by the rule filters.
    pub rule_filtered: usize,
    /// Dropped by the ROUGE-L diversity filter.
    pub similarity_filtered: usize,
    /// Groups dropped by the difficulty filter.
    pub difficulty_filtered: usize,
    /// Groups trained on.
    pub kept: usize,
    /// Kept groups beyond the batch (they expire with the step).
    pub expired: usize,
    /// Generate → roll out → filter rounds this step.
    pub rounds: usize,
    /// Share of scored groups with a label whose majority answer is correct
    /// (shows majority-vote reward drifting into consensus on wrong answers).
    pub label_accuracy: Option<f64>,
    /// The same over the kept groups only: how often the pseudo-labels
    /// trained on are right.
    #[serde(default)]
    pub kept_label_accuracy: Option<f64>,
    /// Mean KL(policy ‖ reference) estimate per response token.
    pub kl: f64,
    /// Mean policy loss over the optimizer steps.
    pub loss: f64,
    /// Learning rate of the last optimizer step.
    pub lr: f64,
    /// Gradient norm (before clipping) of the last optimizer step.
    pub grad_norm: f64,
    /// Optimizer steps taken this step.
    pub optimizer_steps: usize,
    /// Mean |log π_θ − log π_old| over the response tokens the loss saw:
    /// about 0 in the first epoch, where the training path must reproduce
    /// the sampler's log-probs; larger values mean the two disagree.
    #[serde(default)]
    pub log_ratio_abs_mean: f64,
    /// Share of those tokens whose ratio fell outside 1 ± eps_clip.
    #[serde(default)]
    pub clip_fraction: f64,
    /// Mean response length in tokens (trained sequences).
    pub response_len_mean: f64,
    /// Generated tokens per second over instruction generation and rollouts.
    pub tokens_per_s: f64,
    /// Seconds per phase.
    pub seconds: PhaseSeconds,
    /// Evaluation after this step, when one ran.
    pub eval: Option<EvalResult>,
}

/// Accuracy on the labelled evaluation set.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Step the model had taken.
    pub step: usize,
    /// Questions evaluated.
    pub questions: usize,
    /// Greedy accuracy.
    pub pass_at_1: f64,
    /// Mean accuracy of the k samples (None when k = 0).
    pub avg_at_k: Option<f64>,
    /// Accuracy of the k samples' majority answer.
    pub maj_at_k: Option<f64>,
    /// k.
    pub k: usize,
}

/// One question of an evaluation: what the model answered and whether it was right.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct QuestionEval {
    /// The question.
    pub problem: String,
    /// Its label.
    pub label: String,
    /// The greedy answer (extracted and normalised, as voting sees it).
    pub greedy: String,
    /// Whether the greedy answer is right.
    pub greedy_correct: bool,
    /// The k samples' answers (empty when k = 0).
    pub samples: Vec<String>,
    /// How many of the k samples are right.
    pub samples_correct: usize,
    /// The samples' majority answer (empty when k = 0 or no sample has one).
    pub majority: String,
    /// Whether the majority answer is right.
    pub majority_correct: bool,
}

/// Progress reports while a step runs: (phase, done, total).
pub type ProgressFn = Box<dyn FnMut(&str, usize, usize) + Send>;

/// What a checkpoint stores besides weights and optimizer moments.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct TrainerState {
    step: usize,
    rng_state: u64,
    pool: Vec<String>,
    fixed_cursor: usize,
    order: Vec<usize>,
    optimizer_step: usize,
    history: Vec<StepStats>,
    /// The configuration of the run that wrote it (absent in checkpoints of
    /// earlier versions).
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Configuration fields a resumed run may change: where it writes, how far
/// it goes, where it runs and how often it saves.
const RESUMABLE_CHANGES: [&str; 4] = ["out", "steps", "device", "save_steps"];

struct Group {
    example: Example,
    generated: bool,
    prompt_ids: Vec<u32>,
    samples: Vec<Generation>,
    rewards: Vec<f64>,
    agreement: f64,
    /// The majority answer (majority-vote reward only): the pseudo-label.
    majority: Option<String>,
    /// Whether it is right, when the question's answer is known.
    majority_correct: Option<bool>,
}

impl Group {
    /// The group's line in `instructions.jsonl`.
    fn log_line(&self, step: usize, status: &str) -> serde_json::Value {
        serde_json::json!({"step": step, "instruction": self.example.problem, "status": status,
            "agreement": self.agreement, "majority": self.majority,
            "majority_correct": self.majority_correct})
    }
}

/// The SeRL trainer: a policy, its frozen reference, the optimizer and the
/// self-instruction state.
pub struct Trainer {
    cfg: Config,
    /// The dtype checkpoints are written in (the engine computes in f32).
    dtype: DType,
    reference: Option<Scorer>,
    tokenizer: Tokenizer,
    learner: Learner,
    seeds: Vec<Example>,
    eval_set: Vec<Example>,
    pool: Vec<String>,
    rng: Rng,
    step: usize,
    fixed_cursor: usize,
    order: Vec<usize>,
    history: Vec<StepStats>,
    reward_fn: Option<RewardFn>,
    labeler: Option<LabelFn>,
    progress: Option<ProgressFn>,
    stop: Arc<AtomicBool>,
    /// The step of the checkpoint this trainer last wrote or resumed from.
    checkpointed: Option<usize>,
}

impl Trainer {
    /// Loads the model, seeds and evaluation set and creates the run
    /// directory (writing `config.json` there).
    pub fn new(cfg: Config) -> Result<Trainer, TrainError> {
        Trainer::load(cfg, true)
    }

    /// Loads `cfg.model` on the configured device and builds the trainer.
    fn load(cfg: Config, fresh: bool) -> Result<Trainer, TrainError> {
        cfg.validate()?;
        let opts = LoadOptions {
            device: model::device_from_name(&cfg.device)?,
            dtype: model::dtype_from_name(&cfg.dtype)?,
        };
        let (model, tokenizer) = model::load_model(&cfg.model, &opts)?;
        Trainer::build(cfg, model, tokenizer, fresh)
    }

    /// Like [`Trainer::new`] with an already loaded policy.
    pub fn with_model(
        cfg: Config,
        model: Model,
        tokenizer: Tokenizer,
    ) -> Result<Trainer, TrainError> {
        Trainer::build(cfg, model, tokenizer, true)
    }

    /// `fresh`: a new run, which must not reuse another run's directory.
    fn build(
        cfg: Config,
        model: Model,
        tokenizer: Tokenizer,
        fresh: bool,
    ) -> Result<Trainer, TrainError> {
        cfg.validate()?;
        // A second run appending to another run's logs would corrupt both.
        if fresh && (cfg.out.join("metrics.jsonl").exists() || cfg.out.join("checkpoints").exists())
        {
            return Err(TrainError::Config(format!(
                "out: {} already holds a run; resume it or choose another directory",
                cfg.out.display()
            )));
        }
        if tokenizer.chat_template().is_none() {
            return Err(TrainError::Config(
                "model: its tokenizer has no chat template".into(),
            ));
        }
        let need_labels = cfg.reward == RewardSource::GroundTruth;
        let seeds = read_examples(&cfg.seeds, need_labels)?;
        let eval_set = match &cfg.eval_data {
            Some(p) => read_examples(p, true)?,
            None => Vec::new(),
        };
        // The learner keeps f32 weights, gradients and two AdamW moments; the
        // reference one more copy of the weights.
        let reference = cfg.init_kl_coef > 0.0;
        model::memory::ensure_weights_fit(
            model.config(),
            4 + u64::from(reference),
            if reference {
                "the f32 weights, gradients, AdamW moments and reference"
            } else {
                "the f32 weights, gradients and AdamW moments"
            },
            &cfg.model.display().to_string(),
        )?;
        let engine = crate::engine::EngineDevice::parse(&cfg.device)?;
        let reference = if reference {
            Some(Scorer::on(engine, &model)?)
        } else {
            None
        };
        let learner = Learner::on(
            engine,
            &model,
            (cfg.adam_betas[0], cfg.adam_betas[1]),
            cfg.adam_eps,
            cfg.weight_decay,
        )?;
        std::fs::create_dir_all(&cfg.out).map_err(|e| TrainError::io(&cfg.out, e))?;
        let text =
            serde_json::to_string_pretty(&cfg).map_err(|e| TrainError::Config(e.to_string()))?;
        crate::model::write_atomic(&cfg.out.join("config.json"), text.as_bytes())?;
        let labeler = cfg
            .demo_labels
            .then(|| -> LabelFn { Box::new(|q| super::demo::answer_of(q).map(|a| a.to_string())) });
        // From here on the learner holds the weights; the loaded copy goes.
        let dtype = model.dtype();
        drop(model);
        Ok(Trainer {
            rng: Rng::new(cfg.seed),
            cfg,
            dtype,
            reference,
            tokenizer,
            learner,
            seeds,
            eval_set,
            pool: Vec::new(),
            step: 0,
            fixed_cursor: 0,
            order: Vec::new(),
            history: Vec::new(),
            reward_fn: None,
            labeler,
            progress: None,
            stop: Arc::new(AtomicBool::new(false)),
            checkpointed: None,
        })
    }

    /// Replaces the configured reward by `f` (e.g. a task-specific checker).
    pub fn set_reward_fn(&mut self, f: RewardFn) {
        self.reward_fn = Some(f);
    }

    /// Labels self-made problems for the label-accuracy metrics (replaces
    /// the demo labeller that `demo_labels` installs).
    pub fn set_labeler(&mut self, f: LabelFn) {
        self.labeler = Some(f);
    }

    /// Receives (phase, done, total) while steps run.
    pub fn set_progress(&mut self, f: ProgressFn) {
        self.progress = Some(f);
    }

    /// A flag that, once set, makes the running step stop at the next phase
    /// boundary with [`TrainError::Interrupted`] (state as before the step).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Changes the total number of steps (e.g. to extend a resumed run);
    /// the learning-rate schedule is planned for the new total.
    pub fn set_total_steps(&mut self, steps: usize) {
        self.cfg.steps = steps;
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// A candle model holding the current policy weights (a copy, in the
    /// configured dtype, on the CPU).
    pub fn model(&self) -> Result<Model, TrainError> {
        self.learner.to_model(self.dtype, &Device::Cpu)
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// Steps taken.
    pub fn steps_done(&self) -> usize {
        self.step
    }

    /// The step of the checkpoint in the run directory that this trainer
    /// last wrote or resumed from; `Some(steps_done())` means the current
    /// state is saved.
    pub fn checkpointed_step(&self) -> Option<usize> {
        self.checkpointed
    }

    /// Every step's statistics so far.
    pub fn history(&self) -> &[StepStats] {
        &self.history
    }

    /// Generated instructions kept so far (the few-shot pool).
    pub fn pool(&self) -> &[String] {
        &self.pool
    }

    fn report(&mut self, phase: &str, done: usize, total: usize) {
        if let Some(p) = self.progress.as_mut() {
            p(phase, done, total);
        }
    }

    fn check_stop(&self) -> Result<(), TrainError> {
        if self.stop.load(Ordering::SeqCst) {
            return Err(TrainError::Interrupted);
        }
        Ok(())
    }

    fn chat_ids(&self, system: &str, user: &str) -> Result<Vec<u32>, TrainError> {
        let mut msgs = Vec::new();
        if !system.is_empty() {
            msgs.push(ChatMessage::new("system", system));
        }
        msgs.push(ChatMessage::new("user", user));
        let text = self.tokenizer.apply_chat_template(&msgs, true)?;
        Ok(self.tokenizer.encode(&text)?)
    }

    fn rollout_ids(&self, problem: &str) -> Result<Vec<u32>, TrainError> {
        let user = self.cfg.input_template.replace("{problem}", problem);
        self.chat_ids(&self.cfg.system_prompt, &user)
    }

    /// Runs one SeRL step and appends its statistics to `metrics.jsonl`.
    /// On an error (or an interrupt) the trainer is left as before the step,
    /// except for an error writing the step's checkpoint (`save_steps`):
    /// that comes after the step is done, so [`Trainer::steps_done`] counts
    /// it and [`Trainer::save_checkpoint`] may be retried.
    pub fn step(&mut self) -> Result<StepStats, TrainError> {
        let rng_before = self.rng.clone();
        let cursor_before = self.fixed_cursor;
        let order_before = self.order.clone();
        let stats = match self.step_inner() {
            Ok(s) => s,
            Err(e) => {
                self.rng = rng_before;
                self.fixed_cursor = cursor_before;
                self.order = order_before;
                return Err(e);
            }
        };
        if self.cfg.save_steps > 0 && self.step.is_multiple_of(self.cfg.save_steps) {
            self.report("checkpoint", 0, 1);
            self.save_checkpoint()?;
        }
        Ok(stats)
    }

    fn step_inner(&mut self) -> Result<StepStats, TrainError> {
        let cfg = self.cfg.clone();
        let mut stats = StepStats {
            step: self.step + 1,
            ..Default::default()
        };
        let mut kept: Vec<Group> = Vec::new();
        let mut log: Vec<serde_json::Value> = Vec::new();
        let mut gen_tokens = 0usize;
        let mut gen_secs = 0.0f64;
        let mut agreements = Vec::new();
        let mut labelled = (0usize, 0usize);
        let seed_texts: Vec<String> = self.seeds.iter().map(|e| e.problem.clone()).collect();
        // The diversity filter compares against the seeds and this step's accepted batch.
        let mut diversity = DiversityFilter::new(&seed_texts, cfg.rouge_threshold);
        let case = if cfg.keep_case {
            CaseMode::Keep
        } else {
            CaseMode::Capitalize
        };
        while kept.len() < cfg.rollout_batch_size && stats.rounds < cfg.max_rounds_per_step {
            self.check_stop()?;
            stats.rounds += 1;
            let need = cfg.rollout_batch_size - kept.len();
            // 1–3: new instructions (or the next fixed ones).
            let pending: Vec<(Example, bool)> = if cfg.self_instruct {
                let t = Instant::now();
                let mut pending = Vec::new();
                let mut attempts = 0;
                while pending.len() < need && attempts < 4 {
                    attempts += 1;
                    self.report("instructions", pending.len(), need);
                    let mut prompts = Vec::new();
                    for _ in 0..cfg.few_shot_generation_batch_size {
                        let p = eval::build_generation_prompt(
                            &seed_texts,
                            &self.pool,
                            cfg.few_shot_generation,
                            &mut self.rng,
                        );
                        prompts.push(self.chat_ids(&p.system, &p.user)?);
                    }
                    let params = cfg.instruction_sampling(self.rng.next_u64());
                    let gens = generate::generate(
                        &self.learner.decoder(),
                        &self.tokenizer,
                        &GenerateRequest { prompts, params },
                        |_| {},
                    )?;
                    gen_tokens += gens.iter().map(|g| g.token_ids.len()).sum::<usize>();
                    let tf = Instant::now();
                    for g in &gens {
                        // The completion continues the numbered list after "9.".
                        let text = format!("9. {}", g.text.trim_start());
                        for item in eval::parse_items(&text, case) {
                            stats.generated += 1;
                            if let Some(r) = item.rejection {
                                stats.rule_filtered += 1;
                                log.push(serde_json::json!({"step": stats.step, "instruction": item.text, "status": "rule_filtered", "reason": format!("{r:?}")}));
                                continue;
                            }
                            if pending.len() >= need {
                                break;
                            }
                            let v = diversity.offer_fast(&item.text);
                            if !v.kept {
                                stats.similarity_filtered += 1;
                                log.push(serde_json::json!({"step": stats.step, "instruction": item.text, "status": "similarity_filtered", "rouge_l": v.max_rouge_l}));
                                continue;
                            }
                            pending.push((
                                Example {
                                    problem: item.text,
                                    answer: None,
                                },
                                true,
                            ));
                        }
                    }
                    stats.seconds.filtering += tf.elapsed().as_secs_f64();
                }
                let el = t.elapsed().as_secs_f64();
                stats.seconds.instruction_generation += el;
                gen_secs += el;
                pending
            } else {
                let mut v = Vec::new();
                for _ in 0..need {
                    if self.fixed_cursor.is_multiple_of(self.seeds.len()) {
                        // A new pass over the fixed set, in a fresh order.
                        self.order = (0..self.seeds.len()).collect();
                        self.rng.shuffle(&mut self.order);
                    }
                    let i = self.order[self.fixed_cursor % self.seeds.len()];
                    v.push((self.seeds[i].clone(), false));
                    self.fixed_cursor += 1;
                }
                v
            };
            if pending.is_empty() {
                continue;
            }
            self.check_stop()?;
            // 4: rollouts.
            let t = Instant::now();
            self.report("rollouts", 0, pending.len());
            let prompts: Vec<Vec<u32>> = pending
                .iter()
                .map(|(e, _)| self.rollout_ids(&e.problem))
                .collect::<Result<_, _>>()?;
            let params = cfg.rollout_sampling(cfg.n_samples_per_prompt, self.rng.next_u64());
            let gens = generate::generate(
                &self.learner.decoder(),
                &self.tokenizer,
                &GenerateRequest {
                    prompts: prompts.clone(),
                    params,
                },
                |_| {},
            )?;
            gen_tokens += gens.iter().map(|g| g.token_ids.len()).sum::<usize>();
            let el = t.elapsed().as_secs_f64();
            stats.seconds.rollout += el;
            gen_secs += el;
            // 5: rewards.
            let t = Instant::now();
            let mut groups = Vec::new();
            let mut it = gens.into_iter();
            for ((example, generated), prompt_ids) in pending.into_iter().zip(prompts) {
                let samples: Vec<Generation> = it.by_ref().take(cfg.n_samples_per_prompt).collect();
                let texts: Vec<&str> = samples.iter().map(|g| g.text.as_str()).collect();
                let (rewards, majority) = match (&self.reward_fn, cfg.reward) {
                    (Some(f), _) => (
                        texts.iter().map(|t| f(t, &example)).collect::<Vec<f64>>(),
                        None,
                    ),
                    (None, RewardSource::MajorityVote) => {
                        let v = eval::vote(&texts, cfg.vote_mode);
                        (v.rewards, Some(v.majority))
                    }
                    (None, RewardSource::GroundTruth) => {
                        let label = example.answer.as_deref().unwrap_or_default();
                        (
                            texts
                                .iter()
                                .map(|t| if is_correct(t, label) { 1.0 } else { 0.0 })
                                .collect(),
                            None,
                        )
                    }
                };
                let label = example
                    .answer
                    .clone()
                    .or_else(|| self.labeler.as_ref().and_then(|f| f(&example.problem)));
                let majority_correct = match (label.as_deref(), majority.as_deref()) {
                    (Some(label), Some(maj)) => Some(!maj.is_empty() && is_correct(maj, label)),
                    _ => None,
                };
                if let Some(ok) = majority_correct {
                    labelled.0 += 1;
                    labelled.1 += usize::from(ok);
                }
                let agreement = rewards.iter().sum::<f64>() / rewards.len().max(1) as f64;
                agreements.push(agreement);
                groups.push(Group {
                    example,
                    generated,
                    prompt_ids,
                    samples,
                    rewards,
                    agreement,
                    majority,
                    majority_correct,
                });
            }
            stats.seconds.scoring += t.elapsed().as_secs_f64();
            // 6: difficulty filter.
            let t = Instant::now();
            let [lo, hi] = cfg.reward_difficulty_bounds;
            for g in groups {
                if eval::difficulty_keep(g.agreement, lo, hi) {
                    if kept.len() < cfg.rollout_batch_size {
                        kept.push(g);
                    } else {
                        stats.expired += 1;
                        log.push(g.log_line(stats.step, "expired"));
                    }
                } else {
                    stats.difficulty_filtered += 1;
                    log.push(g.log_line(stats.step, "difficulty_filtered"));
                }
            }
            stats.seconds.filtering += t.elapsed().as_secs_f64();
        }
        self.check_stop()?;
        stats.kept = kept.len();
        for a in &agreements {
            stats.agreement_histogram[((a * 5.0).floor() as usize).min(4)] += 1;
        }
        stats.agreement_mean = agreements.iter().sum::<f64>() / agreements.len().max(1) as f64;
        stats.label_accuracy = (labelled.0 > 0).then(|| labelled.1 as f64 / labelled.0 as f64);
        let kept_labels: Vec<bool> = kept.iter().filter_map(|g| g.majority_correct).collect();
        stats.kept_label_accuracy = (!kept_labels.is_empty()).then(|| {
            kept_labels.iter().filter(|&&ok| ok).count() as f64 / kept_labels.len() as f64
        });
        stats.tokens_per_s = gen_tokens as f64 / gen_secs.max(1e-9);
        // 7: update.
        let t = Instant::now();
        if !kept.is_empty() {
            self.report("update", 0, kept.len());
            self.update(&kept, &mut stats)?;
        }
        stats.seconds.update = t.elapsed().as_secs_f64();
        // The step is done: commit pool, logs and metrics.
        for g in &kept {
            if g.generated {
                self.pool.push(g.example.problem.clone());
            }
            let mut line = g.log_line(stats.step, "kept");
            line["generated"] = g.generated.into();
            log.push(line);
        }
        self.step += 1;
        if cfg.eval_steps > 0
            && self.step.is_multiple_of(cfg.eval_steps)
            && !self.eval_set.is_empty()
        {
            stats.eval = Some(self.evaluate()?);
        }
        append_jsonl(&cfg.out.join("instructions.jsonl"), &log)?;
        append_jsonl(
            &cfg.out.join("metrics.jsonl"),
            &[serde_json::to_value(&stats).map_err(|e| TrainError::Data(e.to_string()))?],
        )?;
        self.history.push(stats.clone());
        Ok(stats)
    }

    /// The policy update on the kept groups (PPO-clip, token-level mean).
    fn update(&mut self, groups: &[Group], stats: &mut StepStats) -> Result<(), TrainError> {
        let cfg = self.cfg.clone();
        struct Seq {
            ids: Vec<u32>,
            prompt_len: usize,
            old: Vec<f64>,
        }
        let mut seqs = Vec::new();
        let mut rewards = Vec::new();
        for g in groups {
            for (s, r) in g.samples.iter().zip(&g.rewards) {
                let mut ids = g.prompt_ids.clone();
                ids.extend(&s.token_ids);
                seqs.push(Seq {
                    ids,
                    prompt_len: g.prompt_ids.len(),
                    old: s.logprobs.iter().map(|&x| x as f64).collect(),
                });
                rewards.push(*r);
            }
        }
        let b = seqs.len();
        let t_max = seqs.iter().map(|s| s.old.len()).max().unwrap_or(0);
        let mask: Vec<Vec<f64>> = seqs
            .iter()
            .map(|s| {
                (0..t_max)
                    .map(|t| if t < s.old.len() { 1.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let pad = |v: &[f64]| {
            let mut x = v.to_vec();
            x.resize(t_max, 0.0);
            x
        };
        let old: Vec<Vec<f64>> = seqs.iter().map(|s| pad(&s.old)).collect();
        // Reference log-probs over the response tokens, micro-batch by micro-batch.
        let refp: Vec<Vec<f64>> = match &mut self.reference {
            Some(r) => {
                let mut out = Vec::with_capacity(b);
                for chunk in seqs.chunks(cfg.micro_train_batch_size) {
                    let rows: Vec<&[u32]> = chunk.iter().map(|s| s.ids.as_slice()).collect();
                    let from: Vec<usize> = chunk.iter().map(|s| s.prompt_len.max(1)).collect();
                    let lp = r.logprobs(&TokenBatch::right_padded(&rows, &from)?)?;
                    let mut at = 0;
                    for (s, &f) in chunk.iter().zip(&from) {
                        let n = s.ids.len() - f;
                        out.push(pad(&lp[at..at + n]
                            .iter()
                            .map(|&x| x as f64)
                            .collect::<Vec<_>>()));
                        at += n;
                    }
                }
                out
            }
            None => old.clone(),
        };
        let kl_in_reward = !cfg.use_kl_loss && self.reference.is_some();
        let rl_cfg = RlConfig {
            estimator: cfg.advantage_estimator,
            kl_estimator: cfg.kl_estimator,
            kl_coef: if kl_in_reward { cfg.init_kl_coef } else { 0.0 },
            clip_eps: cfg.eps_clip,
            n_samples_per_prompt: cfg.n_samples_per_prompt,
            gamma: cfg.gamma,
            reward_clip: (-10.0, 10.0),
        };
        let out = rl::compute(&rl_cfg, &mask, &rewards, &old, &refp, &old, &old)?;
        let n_tok: f64 = mask.iter().flatten().sum();
        let kl_all = rl::kl(
            &old.concat(),
            &refp.concat(),
            &mask.concat(),
            cfg.kl_estimator,
        );
        stats.kl = kl_all.iter().sum::<f64>() / n_tok.max(1.0);
        stats.reward_mean = rewards.iter().sum::<f64>() / b.max(1) as f64;
        stats.response_len_mean = n_tok / b.max(1) as f64;

        let planned = cfg.planned_optimizer_steps();
        let kl_loss = cfg.use_kl_loss && self.reference.is_some();
        let mut losses = Vec::new();
        let (mut drift, mut clipped, mut seen) = (0.0, 0.0, 0.0);
        for _epoch in 0..cfg.max_epochs {
            let mut order: Vec<usize> = (0..b).collect();
            self.rng.shuffle(&mut order);
            for batch in order.chunks(cfg.train_batch_size) {
                let tokens: f64 = batch
                    .iter()
                    .map(|&i| seqs[i].old.len() as f64)
                    .sum::<f64>()
                    .max(1.0);
                seen += tokens;
                let mut batch_loss = 0.0;
                for micro in batch.chunks(cfg.micro_train_batch_size) {
                    // Every response token is scored, in order: the k-th
                    // scored position of sequence i is its k-th response token.
                    let rows: Vec<&[u32]> = micro.iter().map(|&i| seqs[i].ids.as_slice()).collect();
                    let from: Vec<usize> =
                        micro.iter().map(|&i| seqs[i].prompt_len.max(1)).collect();
                    let tb = TokenBatch::right_padded(&rows, &from)?;
                    let (mut a, mut o, mut rf) = (Vec::new(), Vec::new(), Vec::new());
                    for &i in micro {
                        let s = &seqs[i];
                        for k in 0..s.ids.len() - s.prompt_len.max(1) {
                            a.push(out.advantages[i].get(k).copied().unwrap_or(0.0));
                            o.push(old[i].get(k).copied().unwrap_or(0.0));
                            rf.push(refp[i].get(k).copied().unwrap_or(0.0));
                        }
                    }
                    let eps = cfg.eps_clip;
                    let kl_coef = cfg.init_kl_coef;
                    let kl_est = cfg.kl_estimator;
                    let mut micro_loss = 0.0;
                    // PPO-clip (and the KL loss) per token, summed over the
                    // batch's tokens: the loss and its derivative in one place.
                    self.learner.accumulate(&tb, &mut |start, lp, d| {
                        for (j, (&l, g)) in lp.iter().zip(d.iter_mut()).enumerate() {
                            let p = start + j;
                            let log_ratio = l as f64 - o[p];
                            let ratio = log_ratio.exp();
                            drift += log_ratio.abs();
                            if (ratio - 1.0).abs() > eps {
                                clipped += 1.0;
                            }
                            let surr1 = ratio * a[p];
                            let surr2 = ratio.clamp(1.0 - eps, 1.0 + eps) * a[p];
                            micro_loss += -surr1.min(surr2) / tokens;
                            // ∂(−min(surr1, surr2))/∂lp: the unclipped branch's
                            // −ratio·A, or 0 where the clamp holds the ratio.
                            let inside = ratio >= 1.0 - eps && ratio <= 1.0 + eps;
                            let mut dl = if surr1 <= surr2 || inside {
                                -surr1
                            } else {
                                0.0
                            };
                            if kl_loss {
                                let lr = l as f64 - rf[p];
                                let (k, dk) = match kl_est {
                                    rl::KlEstimator::K1 => (lr, 1.0),
                                    rl::KlEstimator::K2 => (0.5 * lr * lr, lr),
                                    rl::KlEstimator::K3 => {
                                        ((-lr).exp() - 1.0 + lr, 1.0 - (-lr).exp())
                                    }
                                };
                                micro_loss += kl_coef * k / tokens;
                                dl += kl_coef * dk;
                            }
                            *g = (dl / tokens) as f32;
                        }
                    })?;
                    batch_loss += micro_loss;
                }
                let norm = self.learner.clip_grad_norm(cfg.max_norm)?;
                let lr = cosine_lr(
                    self.learner.step,
                    planned,
                    cfg.actor_learning_rate,
                    cfg.lr_warmup_ratio,
                    cfg.min_lr_ratio,
                );
                self.learner.optimizer_step(lr);
                stats.lr = lr;
                stats.grad_norm = norm;
                stats.optimizer_steps += 1;
                losses.push(batch_loss);
            }
        }
        stats.loss = losses.iter().sum::<f64>() / losses.len().max(1) as f64;
        stats.log_ratio_abs_mean = drift / seen.max(1.0);
        stats.clip_fraction = clipped / seen.max(1.0);
        Ok(())
    }

    /// Greedy pass@1 and (with `eval_k` > 0) avg@k and maj@k on the
    /// evaluation set; appends the result to `eval.jsonl`.
    pub fn evaluate(&mut self) -> Result<EvalResult, TrainError> {
        let r = evaluate_model(
            &self.learner.decoder(),
            &self.tokenizer,
            &self.eval_set,
            &self.cfg,
            self.step,
        )?;
        append_jsonl(
            &self.cfg.out.join("eval.jsonl"),
            &[serde_json::to_value(&r).map_err(|e| TrainError::Data(e.to_string()))?],
        )?;
        Ok(r)
    }

    /// Runs `steps` steps, calling `on_step` after each.
    pub fn train(
        &mut self,
        steps: usize,
        mut on_step: impl FnMut(&StepStats),
    ) -> Result<(), TrainError> {
        for _ in 0..steps {
            let s = self.step()?;
            on_step(&s);
        }
        Ok(())
    }

    /// Writes `metrics.svg` in the run directory: reward, agreement, kept
    /// ratio and the evaluations of `eval.jsonl`, per step.
    pub fn write_plot(&self) -> Result<PathBuf, TrainError> {
        let ep = self.cfg.out.join("eval.jsonl");
        let evals: Vec<EvalResult> = std::fs::read_to_string(&ep)
            .unwrap_or_default()
            .lines()
            .filter_map(|l| serde_json::from_str(l).ok())
            .collect();
        let svg = super::plot::metrics_svg(&self.history, &evals);
        let path = self.cfg.out.join("metrics.svg");
        crate::model::write_atomic(&path, svg.as_bytes())?;
        Ok(path)
    }

    fn checkpoint_root(&self) -> PathBuf {
        self.cfg.out.join("checkpoints")
    }

    /// Where [`Trainer::save_checkpoint`] writes the checkpoint of `step`.
    pub fn checkpoint_dir(&self, step: usize) -> PathBuf {
        self.checkpoint_root().join(format!("step-{step:06}"))
    }

    /// Writes a checkpoint of the current step (`checkpoints/step-N`: Hugging
    /// Face weights + tokenizer, optimizer moments, trainer state) and points
    /// `checkpoints/latest` at it. Written to a temporary directory first.
    pub fn save_checkpoint(&mut self) -> Result<PathBuf, TrainError> {
        let dir = self.checkpoint_dir(self.step);
        self.save_to(&dir)?;
        let name = dir.file_name().unwrap_or_default().as_encoded_bytes();
        crate::model::write_atomic(&self.checkpoint_root().join("latest"), name)?;
        self.checkpointed = Some(self.step);
        Ok(dir)
    }

    /// Writes a checkpoint into `dir` (replaced atomically when it exists).
    pub fn save_to(&self, dir: &Path) -> Result<(), TrainError> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).map_err(|e| TrainError::io(parent, e))?;
        let mut tmp_name = dir
            .file_name()
            .map(|n| n.to_os_string())
            .unwrap_or_default();
        tmp_name.push(".tmp");
        let tmp = dir.with_file_name(tmp_name);
        let _ = std::fs::remove_dir_all(&tmp);
        self.learner.save_hf(&self.tokenizer, &tmp, self.dtype)?;
        self.learner
            .save_state(&tmp.join("optimizer.safetensors"), self.dtype != DType::F32)?;
        let state = TrainerState {
            step: self.step,
            rng_state: self.rng.state(),
            pool: self.pool.clone(),
            fixed_cursor: self.fixed_cursor,
            order: self.order.clone(),
            optimizer_step: self.learner.step,
            history: self.history.clone(),
            config: Some(
                serde_json::to_value(&self.cfg)
                    .map_err(|e| TrainError::Checkpoint(e.to_string()))?,
            ),
        };
        let text = serde_json::to_string_pretty(&state)
            .map_err(|e| TrainError::Checkpoint(e.to_string()))?;
        let sp = tmp.join("trainer_state.json");
        std::fs::write(&sp, text).map_err(|e| TrainError::io(&sp, e))?;
        let old = dir.with_extension("old");
        if dir.exists() {
            let _ = std::fs::remove_dir_all(&old);
            std::fs::rename(dir, &old).map_err(|e| TrainError::io(dir, e))?;
        }
        std::fs::rename(&tmp, dir).map_err(|e| TrainError::io(dir, e))?;
        let _ = std::fs::remove_dir_all(&old);
        Ok(())
    }

    /// Continues a run from its directory: the configuration it was started
    /// with (`config.json`) and its latest checkpoint. The reference model is
    /// the original `model` of the configuration.
    pub fn resume(run_dir: &Path) -> Result<Trainer, TrainError> {
        let cfg_path = run_dir.join("config.json");
        let text = std::fs::read_to_string(&cfg_path).map_err(|e| TrainError::io(&cfg_path, e))?;
        let mut cfg = Config::from_json(&text)?;
        cfg.out = run_dir.to_path_buf();
        let root = run_dir.join("checkpoints");
        tidy_checkpoints(&root)?;
        let latest = root.join("latest");
        let name = std::fs::read_to_string(&latest).map_err(|e| TrainError::io(&latest, e))?;
        let ck = root.join(name.trim());
        let mut t = Trainer::resume_checked(cfg, &ck, true)?;
        t.checkpointed = Some(t.step);
        Ok(t)
    }

    /// Continues with `cfg` from checkpoint directory `ck` (`cfg` may differ
    /// from the configuration the checkpoint was written with).
    pub fn resume_from(cfg: Config, ck: &Path) -> Result<Trainer, TrainError> {
        Trainer::resume_checked(cfg, ck, false)
    }

    /// `same_run`: the checkpoint must have been written with `cfg` (up to
    /// [`RESUMABLE_CHANGES`]).
    fn resume_checked(cfg: Config, ck: &Path, same_run: bool) -> Result<Trainer, TrainError> {
        let mut t = Trainer::load(cfg, false)?;
        let opts = LoadOptions {
            device: Device::Cpu,
            dtype: t.dtype,
        };
        let (m, _) = model::load_model(ck, &opts)?;
        if m.config() != t.learner.config() {
            return Err(TrainError::Checkpoint(format!(
                "{}: the checkpoint's model configuration differs from the run's model",
                ck.display()
            )));
        }
        t.learner.set_weights(&m)?;
        drop(m);
        let sp = ck.join("trainer_state.json");
        let text = std::fs::read_to_string(&sp).map_err(|e| TrainError::io(&sp, e))?;
        let st: TrainerState = serde_json::from_str(&text)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", sp.display())))?;
        if st.history.len() != st.step {
            return Err(TrainError::Checkpoint(format!(
                "{}: step {} with {} steps of history",
                sp.display(),
                st.step,
                st.history.len()
            )));
        }
        if let (true, Some(theirs)) = (same_run, &st.config) {
            let ours =
                serde_json::to_value(&t.cfg).map_err(|e| TrainError::Config(e.to_string()))?;
            let differ = config_differences(&ours, theirs);
            if !differ.is_empty() {
                return Err(TrainError::Checkpoint(format!(
                    "{}: written by a run with another configuration ({} differ from {})",
                    sp.display(),
                    differ.join(", "),
                    t.cfg.out.join("config.json").display()
                )));
            }
        }
        let op = ck.join("optimizer.safetensors");
        let moments = candle_core::safetensors::load(&op, &Device::Cpu)
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", op.display())))?;
        t.learner
            .load_state(moments, st.optimizer_step, &op.display().to_string())?;
        t.step = st.step;
        t.rng = Rng::new(st.rng_state);
        t.pool = st.pool;
        t.fixed_cursor = st.fixed_cursor;
        t.order = st.order;
        if t.fixed_cursor > 0 && t.order.len() != t.seeds.len() {
            return Err(TrainError::Checkpoint(format!(
                "{}: the seed file changed size since the checkpoint",
                sp.display()
            )));
        }
        let mut sorted = t.order.clone();
        sorted.sort_unstable();
        if t.fixed_cursor > 0 && !sorted.iter().copied().eq(0..t.seeds.len()) {
            return Err(TrainError::Checkpoint(format!(
                "{}: \"order\" is not an order of the {} seeds",
                sp.display(),
                t.seeds.len()
            )));
        }
        t.history = st.history;
        // Steps after the checkpoint are forgotten: rewrite metrics.jsonl from its history.
        let lines = t
            .history
            .iter()
            .map(serde_json::to_value)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| TrainError::Checkpoint(format!("{}: {e}", sp.display())))?;
        super::sft::write_jsonl(&t.cfg.out.join("metrics.jsonl"), &lines)?;
        for log in ["instructions.jsonl", "eval.jsonl"] {
            drop_lines_after(&t.cfg.out.join(log), t.step)?;
        }
        Ok(t)
    }
}

/// The top-level fields in which two configurations (as JSON) differ, but
/// for [`RESUMABLE_CHANGES`].
fn config_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return vec!["the whole configuration".into()];
    };
    let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
    keys.sort();
    keys.dedup();
    keys.into_iter()
        .filter(|k| !RESUMABLE_CHANGES.contains(&k.as_str()) && a.get(*k) != b.get(*k))
        .cloned()
        .collect()
}

/// Puts a run's `checkpoints` directory in order after a crash, a kill or a
/// full disk: half-written `step-N.tmp` directories and `latest.tmp…` files
/// go; a `step-N.old` whose replacement never landed is put back.
fn tidy_checkpoints(root: &Path) -> Result<(), TrainError> {
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io(root, e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| TrainError::io(root, e))?;
        let path = entry.path();
        let name = entry.file_name().to_string_lossy().into_owned();
        if crate::model::is_tmp_name(&name) {
            let r = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            r.map_err(|e| TrainError::io(&path, e))?;
        } else if let Some(stem) = name.strip_suffix(".old") {
            let kept = root.join(stem);
            let r = if kept.exists() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::rename(&path, &kept)
            };
            r.map_err(|e| TrainError::io(&path, e))?;
        }
    }
    Ok(())
}

/// Drops the lines of a run's JSONL log written by steps after `step` (a
/// resumed run writes them again) and a torn last line.
fn drop_lines_after(path: &Path, step: usize) -> Result<(), TrainError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(TrainError::io(path, e)),
    };
    let mut kept = String::with_capacity(text.len());
    for line in text.split_inclusive('\n') {
        let keep = line.ends_with('\n')
            && serde_json::from_str::<serde_json::Value>(line)
                .is_ok_and(|v| v["step"].as_u64().is_none_or(|s| s as usize <= step));
        if keep {
            kept.push_str(line);
        }
    }
    if kept.len() != text.len() {
        crate::model::write_atomic(path, kept.as_bytes())?;
    }
    Ok(())
}

/// Greedy pass@1, avg@k and maj@k of `model` on labelled `examples`.
pub fn evaluate_model<D: Decoder + ?Sized>(
    model: &D,
    tok: &Tokenizer,
    examples: &[Example],
    cfg: &Config,
    step: usize,
) -> Result<EvalResult, TrainError> {
    Ok(evaluate_model_answers(model, tok, examples, cfg, step)?.0)
}

/// [`evaluate_model`] with every question's answers (e.g. to see whether
/// wrong samples agree with each other).
pub fn evaluate_model_answers<D: Decoder + ?Sized>(
    model: &D,
    tok: &Tokenizer,
    examples: &[Example],
    cfg: &Config,
    step: usize,
) -> Result<(EvalResult, Vec<QuestionEval>), TrainError> {
    let n = if cfg.eval_limit > 0 {
        cfg.eval_limit.min(examples.len())
    } else {
        examples.len()
    };
    let examples = &examples[..n];
    let mut prompts = Vec::with_capacity(n);
    for e in examples {
        let mut msgs = Vec::new();
        if !cfg.system_prompt.is_empty() {
            msgs.push(ChatMessage::new("system", &cfg.system_prompt));
        }
        msgs.push(ChatMessage::new(
            "user",
            &cfg.input_template.replace("{problem}", &e.problem),
        ));
        prompts.push(tok.encode(&tok.apply_chat_template(&msgs, true)?)?);
    }
    let mut result = EvalResult {
        step,
        questions: n,
        k: cfg.eval_k,
        ..Default::default()
    };
    if n == 0 {
        return Ok((result, Vec::new()));
    }
    let greedy = SamplingParams {
        temperature: 0.0,
        max_new_tokens: cfg.eval_max_len,
        ..Default::default()
    };
    let gens = generate_chunked(model, tok, &prompts, &greedy, cfg.eval_batch_size)?;
    let mut questions: Vec<QuestionEval> = gens
        .iter()
        .zip(examples)
        .map(|(g, e)| {
            let label = e.answer.clone().unwrap_or_default();
            QuestionEval {
                problem: e.problem.clone(),
                greedy: eval::strip_string(&eval::extract_answer(&g.text)),
                greedy_correct: is_correct(&g.text, &label),
                label,
                ..Default::default()
            }
        })
        .collect();
    let correct = questions.iter().filter(|q| q.greedy_correct).count();
    result.pass_at_1 = correct as f64 / n as f64;
    if cfg.eval_k > 0 {
        let sampled = SamplingParams {
            n: cfg.eval_k,
            temperature: cfg.eval_temperature,
            max_new_tokens: cfg.eval_max_len,
            seed: cfg.seed,
            ..Default::default()
        };
        let gens = generate_chunked(model, tok, &prompts, &sampled, cfg.eval_batch_size)?;
        for (group, q) in gens.chunks(cfg.eval_k).zip(&mut questions) {
            let texts: Vec<&str> = group.iter().map(|g| g.text.as_str()).collect();
            q.samples_correct = texts.iter().filter(|t| is_correct(t, &q.label)).count();
            let v = eval::vote(&texts, eval::VoteMode::Equiv);
            q.majority_correct = !v.majority.is_empty() && is_correct(&v.majority, &q.label);
            q.samples = v.answers;
            q.majority = v.majority;
        }
        let sample_hits: usize = questions.iter().map(|q| q.samples_correct).sum();
        let maj_hits = questions.iter().filter(|q| q.majority_correct).count();
        result.avg_at_k = Some(sample_hits as f64 / (n * cfg.eval_k) as f64);
        result.maj_at_k = Some(maj_hits as f64 / n as f64);
    }
    Ok((result, questions))
}

/// `params.n` generations per prompt, in prompt order, about `rows`
/// sequences at a time (bounded batches keep the KV cache small). Sampled
/// outputs do not depend on `rows`: each (prompt, sample) has its own RNG
/// stream keyed by the prompt's index in `prompts`.
fn generate_chunked<D: Decoder + ?Sized>(
    model: &D,
    tok: &Tokenizer,
    prompts: &[Vec<u32>],
    params: &SamplingParams,
    rows: usize,
) -> Result<Vec<generate::Generation>, TrainError> {
    let per = (rows / params.n.max(1)).max(1);
    let mut out = Vec::with_capacity(prompts.len() * params.n.max(1));
    for (ci, ps) in prompts.chunks(per).enumerate() {
        out.extend(generate::generate(
            model,
            tok,
            &GenerateRequest {
                prompts: ps.to_vec(),
                params: SamplingParams {
                    first_prompt: params.first_prompt + ci * per,
                    ..params.clone()
                },
            },
            |_| {},
        )?);
    }
    Ok(out)
}

fn append_jsonl(path: &Path, lines: &[serde_json::Value]) -> Result<(), TrainError> {
    if lines.is_empty() {
        return Ok(());
    }
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| TrainError::io(path, e))?;
    let mut buf = String::new();
    for l in lines {
        buf.push_str(&l.to_string());
        buf.push('\n');
    }
    f.write_all(buf.as_bytes())
        .map_err(|e| TrainError::io(path, e))
}
