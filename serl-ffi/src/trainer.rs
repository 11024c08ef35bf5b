//! The SeRL trainer as an opaque handle: create from a JSON configuration,
//! step, train with a callback, evaluate, save, resume, read metrics.

use std::ffi::{c_char, c_void};
use std::path::Path;

use serl_core::train::{Config, EvalResult, StepStats, TrainError, Trainer};

use crate::boundary::{FfiError, guard, serl_status};
use crate::convert::{out_arg, owned_c_string, str_arg};
use crate::handles::{Access, Lease, lease, register, unregister};

/// A SeRL trainer (policy, frozen reference, optimizer, self-instruction
/// state, run directory). One call at a time per handle (it may move between
/// threads): a second call while one runs, a handle used after
/// [`serl_trainer_free`] and `serl_train` re-entered from its callback are
/// refused with SERL_ERR_INVALID_ARGUMENT.
pub struct serl_trainer {
    inner: Trainer,
}

/// The headline figures of one training step (the full record is a line of
/// `metrics.jsonl` in the run directory and in [`serl_trainer_metrics_json`]).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct serl_step_stats {
    /// Step number, 1-based.
    pub step: u64,
    /// Mean reward of the sequences trained on.
    pub reward_mean: f64,
    /// Mean agreement (majority share) over every group scored.
    pub agreement_mean: f64,
    /// Instructions generated this step.
    pub generated: u64,
    /// Instructions dropped by the rule filters.
    pub rule_filtered: u64,
    /// Instructions dropped by the ROUGE-L diversity filter.
    pub similarity_filtered: u64,
    /// Groups dropped by the difficulty filter.
    pub difficulty_filtered: u64,
    /// Groups trained on.
    pub kept: u64,
    /// Share of labelled groups whose majority answer is right; NaN without labels.
    pub label_accuracy: f64,
    /// The same share over the groups trained on (after the difficulty
    /// filter); NaN without labels.
    pub kept_label_accuracy: f64,
    /// Mean KL(policy ‖ reference) per response token.
    pub kl: f64,
    /// Mean policy loss.
    pub loss: f64,
    /// Learning rate of the last optimizer step.
    pub lr: f64,
    /// Gradient norm before clipping.
    pub grad_norm: f64,
    /// Mean |log(π/π_old)| per response token over the update's passes
    /// (about 0 in the first pass: the sampler's log-probs are reproduced).
    pub log_ratio_abs_mean: f64,
    /// Share of response tokens whose PPO ratio was clipped.
    pub clip_fraction: f64,
    /// Generated tokens per second.
    pub tokens_per_s: f64,
    /// Seconds writing instructions.
    pub seconds_instruction_generation: f64,
    /// Seconds sampling responses.
    pub seconds_rollout: f64,
    /// Seconds voting.
    pub seconds_scoring: f64,
    /// Seconds in the filters.
    pub seconds_filtering: f64,
    /// Seconds in the policy update.
    pub seconds_update: f64,
}

/// Accuracy on the configuration's `eval_data`.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct serl_eval_result {
    /// Steps the model had taken.
    pub step: u64,
    /// Questions evaluated.
    pub questions: u64,
    /// Samples per question for avg@k / maj@k (0: greedy only).
    pub k: u64,
    /// Greedy accuracy.
    pub pass_at_1: f64,
    /// Mean accuracy of the k samples; NaN when k is 0.
    pub avg_at_k: f64,
    /// Accuracy of the majority answer of the k samples; NaN when k is 0.
    pub maj_at_k: f64,
}

/// Called after each step of [`serl_train`]; return false to stop early.
/// It may call [`serl_evaluate`], [`serl_trainer_save`] and
/// [`serl_trainer_metrics_json`] on the trainer, not step, train or free it.
pub type serl_step_callback =
    Option<unsafe extern "C" fn(stats: *const serl_step_stats, user_data: *mut c_void) -> bool>;

fn stats_of(s: &StepStats) -> serl_step_stats {
    serl_step_stats {
        step: s.step as u64,
        reward_mean: s.reward_mean,
        agreement_mean: s.agreement_mean,
        generated: s.generated as u64,
        rule_filtered: s.rule_filtered as u64,
        similarity_filtered: s.similarity_filtered as u64,
        difficulty_filtered: s.difficulty_filtered as u64,
        kept: s.kept as u64,
        label_accuracy: s.label_accuracy.unwrap_or(f64::NAN),
        kept_label_accuracy: s.kept_label_accuracy.unwrap_or(f64::NAN),
        kl: s.kl,
        loss: s.loss,
        lr: s.lr,
        grad_norm: s.grad_norm,
        log_ratio_abs_mean: s.log_ratio_abs_mean,
        clip_fraction: s.clip_fraction,
        tokens_per_s: s.tokens_per_s,
        seconds_instruction_generation: s.seconds.instruction_generation,
        seconds_rollout: s.seconds.rollout,
        seconds_scoring: s.seconds.scoring,
        seconds_filtering: s.seconds.filtering,
        seconds_update: s.seconds.update,
    }
}

fn eval_of(e: &EvalResult) -> serl_eval_result {
    serl_eval_result {
        step: e.step as u64,
        questions: e.questions as u64,
        k: e.k as u64,
        pass_at_1: e.pass_at_1,
        avg_at_k: e.avg_at_k.unwrap_or(f64::NAN),
        maj_at_k: e.maj_at_k.unwrap_or(f64::NAN),
    }
}

fn train_err(e: TrainError) -> FfiError {
    match e {
        TrainError::Config(_) | TrainError::Data(_) => FfiError::BadData(e.to_string()),
        TrainError::Io { .. } | TrainError::Checkpoint(_) => FfiError::Io(e.to_string()),
        other => FfiError::Runtime(other.to_string()),
    }
}

/// The kind name of trainer handles in messages.
const TRAINER: &str = "trainer";

fn handle(t: *mut serl_trainer, access: Access) -> Result<Lease<serl_trainer>, FfiError> {
    lease(t, TRAINER, access)
}

/// Creates a trainer from a JSON configuration (the fields of `serl train`'s
/// config file; paths relative to the working directory): loads the model,
/// seeds and evaluation set and creates the run directory. A bad field gives
/// SERL_ERR_BAD_DATA with its name. Free with [`serl_trainer_free`].
///
/// # Safety
/// `config_json` is a NUL-terminated string; `trainer_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_trainer_new(
    config_json: *const c_char,
    trainer_out: *mut *mut serl_trainer,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let json = unsafe { str_arg(config_json, "config_json") }?;
        let out = out_arg(trainer_out, "trainer_out")?;
        let cfg = Config::from_json(json).map_err(train_err)?;
        let inner = Trainer::new(cfg).map_err(train_err)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = register(serl_trainer { inner }, TRAINER) };
        Ok(())
    })
}

/// Continues the run in `run_dir` from its latest checkpoint (with the
/// configuration it was started with).
///
/// # Safety
/// `run_dir` is a NUL-terminated string; `trainer_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_trainer_resume(
    run_dir: *const c_char,
    trainer_out: *mut *mut serl_trainer,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let dir = unsafe { str_arg(run_dir, "run_dir") }?;
        let out = out_arg(trainer_out, "trainer_out")?;
        let inner = Trainer::resume(Path::new(dir)).map_err(train_err)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = register(serl_trainer { inner }, TRAINER) };
        Ok(())
    })
}

/// Runs one SeRL step (self-instruction, rollouts, majority vote, filters,
/// policy update) and writes its figures to `*stats_out` when not NULL.
///
/// # Safety
/// `trainer` is NULL or a handle from libserl; `stats_out` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_step(
    trainer: *mut serl_trainer,
    stats_out: *mut serl_step_stats,
) -> serl_status {
    guard(|| {
        let mut t = handle(trainer, Access::Exclusive)?;
        let s = t.get().inner.step().map_err(train_err)?;
        if !stats_out.is_null() {
            // SAFETY: checked non-NULL.
            unsafe { *stats_out = stats_of(&s) };
        }
        Ok(())
    })
}

/// Runs up to `steps` steps, calling `callback` (when not NULL) after each;
/// the callback returning false stops early (still SERL_OK).
///
/// # Safety
/// `trainer` is NULL or a handle from libserl; `callback` is NULL or a
/// function safe to call with `user_data`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_train(
    trainer: *mut serl_trainer,
    steps: usize,
    callback: serl_step_callback,
    user_data: *mut c_void,
) -> serl_status {
    guard(|| {
        let mut t = handle(trainer, Access::Exclusive)?;
        for _ in 0..steps {
            let s = t.get().inner.step().map_err(train_err)?;
            if let Some(cb) = callback {
                let c = stats_of(&s);
                // The callback may evaluate, save or read the metrics
                // through the handle, but not step, train or free it.
                // SAFETY: per this function's contract.
                if !t.lend(|| unsafe { cb(&c, user_data) }) {
                    break;
                }
            }
        }
        Ok(())
    })
}

/// Evaluates the policy on the configuration's `eval_data` (greedy pass@1,
/// avg@k and maj@k with k = `eval_k`) and appends to `eval.jsonl`.
///
/// # Safety
/// `trainer` is NULL or a handle from libserl; `result_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_evaluate(
    trainer: *mut serl_trainer,
    result_out: *mut serl_eval_result,
) -> serl_status {
    guard(|| {
        let mut t = handle(trainer, Access::FromCallback)?;
        let t = &mut t.get().inner;
        let out = out_arg(result_out, "result_out")?;
        if t.config().eval_data.is_none() {
            return Err(FfiError::InvalidArgument(
                "the configuration has no eval_data".into(),
            ));
        }
        let r = t.evaluate().map_err(train_err)?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = eval_of(&r) };
        Ok(())
    })
}

/// Writes a checkpoint of the current step into the run directory
/// (`checkpoints/step-N`, Hugging Face format plus optimizer and trainer
/// state); `*dir_out` (when not NULL) receives its path, owned by the caller.
///
/// # Safety
/// `trainer` is NULL or a handle from libserl; `dir_out` is NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_trainer_save(
    trainer: *mut serl_trainer,
    dir_out: *mut *mut c_char,
) -> serl_status {
    guard(|| {
        let mut t = handle(trainer, Access::FromCallback)?;
        let dir = t.get().inner.save_checkpoint().map_err(train_err)?;
        if !dir_out.is_null() {
            let s = owned_c_string(&dir.display().to_string(), "the checkpoint path")?;
            // SAFETY: checked non-NULL.
            unsafe { *dir_out = s };
        }
        Ok(())
    })
}

/// Every step's full statistics so far as a JSON array (the lines of
/// `metrics.jsonl`); `*json_out` is owned by the caller.
///
/// # Safety
/// `trainer` is NULL or a handle from libserl; `json_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_trainer_metrics_json(
    trainer: *mut serl_trainer,
    json_out: *mut *mut c_char,
) -> serl_status {
    guard(|| {
        let mut t = handle(trainer, Access::FromCallback)?;
        let out = out_arg(json_out, "json_out")?;
        let json = serde_json::to_string(t.get().inner.history())
            .map_err(|e| FfiError::BadData(e.to_string()))?;
        let s = owned_c_string(&json, "the metrics")?;
        // SAFETY: checked non-NULL above.
        unsafe { *out = s };
        Ok(())
    })
}

/// Frees a trainer. NULL is a no-op. A handle freed already, or one a call
/// is using (e.g. from `serl_train`'s callback), is left alone, with the
/// reason in [`serl_last_error`](crate::serl_last_error).
///
/// # Safety
/// `trainer` is NULL or a handle from libserl.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_trainer_free(trainer: *mut serl_trainer) {
    guard(|| {
        drop(unregister(trainer, TRAINER)?);
        Ok(())
    });
}
