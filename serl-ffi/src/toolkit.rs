//! The evaluator toolkit, for hosts that run their own model: answer
//! extraction, equivalence, majority vote, ROUGE-L, instruction parsing,
//! the generation prompt and the difficulty filter. All thread-safe.

use std::ffi::c_char;

use serl_core::eval::{self, CaseMode, Rng, VoteMode};

use crate::boundary::{FfiError, guard, serl_status};
use crate::convert::{
    free_c_string, out_arg, owned_c_string, owned_c_string_pair, str_arg, str_array_arg,
    str_array_arg_or_empty,
};

/// How [`serl_vote`] groups answers.
pub type serl_vote_mode = u32;
/// Exact match of the normalised answers (SeRL's string-majority reward).
pub const SERL_VOTE_STRING: serl_vote_mode = 0;
/// Mathematical equivalence as math_verify decides it.
pub const SERL_VOTE_EQUIV: serl_vote_mode = 1;

/// ROUGE-L of a prediction against a target.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct serl_rouge {
    /// F-measure, 2PR/(P+R).
    pub f: f64,
    /// Precision: LCS / prediction tokens.
    pub p: f64,
    /// Recall: LCS / target tokens.
    pub r: f64,
}

/// libserl's version, e.g. "0.1.0". Static: do not free.
#[unsafe(no_mangle)]
pub extern "C" fn serl_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}

/// Frees a string returned by libserl. NULL is a no-op.
///
/// # Safety
/// `s` is NULL or a string returned by libserl that was not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_string_free(s: *mut c_char) {
    // A free must not unwind into C either; there is nothing to report.
    let _ = std::panic::catch_unwind(|| {
        // SAFETY: forwarded contract.
        unsafe { free_c_string(s) }
    });
}

/// Frees an array of `len` strings returned by libserl (e.g. by
/// [`serl_parse_instructions`]). NULL is a no-op.
///
/// # Safety
/// `items` is NULL or an array returned by libserl with exactly `len`
/// elements, not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_string_array_free(items: *mut *mut c_char, len: usize) {
    let _ = std::panic::catch_unwind(|| {
        if items.is_null() {
            return;
        }
        // SAFETY: allocated as a boxed slice of `len` in serl_parse_instructions.
        let boxed = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(items, len)) };
        for &s in boxed.iter() {
            // SAFETY: each element came from owned_c_string.
            unsafe { free_c_string(s) }
        }
    });
}

/// Extracts the final answer of a model response (`*answer_out`, as SeRL's
/// `extract_answer`) and normalises it once more (`*normalized_out`, as the
/// string-majority reward compares answers). Both strings are the caller's.
///
/// # Safety
/// `response` is a NUL-terminated string; the out-pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_extract_answer(
    response: *const c_char,
    answer_out: *mut *mut c_char,
    normalized_out: *mut *mut c_char,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let response = unsafe { str_arg(response, "response") }?;
        let answer_out = out_arg(answer_out, "answer_out")?;
        let normalized_out = out_arg(normalized_out, "normalized_out")?;
        let answer = eval::extract_answer(response);
        let normalized = eval::strip_string(&answer);
        let (a, n) = owned_c_string_pair(
            (&answer, "the answer"),
            (&normalized, "the normalized answer"),
        )?;
        // SAFETY: checked non-NULL above.
        unsafe {
            *answer_out = a;
            *normalized_out = n;
        }
        Ok(())
    })
}

/// Whether `pred` is equivalent to `ref` as math_verify decides it for
/// SeRL's majority reward (`ref` is the gold answer; either direction passes).
///
/// # Safety
/// `pred` and `ref` are NUL-terminated strings; `equal_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_answers_equal(
    pred: *const c_char,
    r#ref: *const c_char,
    equal_out: *mut bool,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (pred, reference) = unsafe { (str_arg(pred, "pred")?, str_arg(r#ref, "ref")?) };
        let equal_out = out_arg(equal_out, "equal_out")?;
        let equal = eval::equivalent(pred, reference);
        // SAFETY: checked non-NULL above.
        unsafe { *equal_out = equal };
        Ok(())
    })
}

/// Majority vote over a group of `n` responses: writes each response's
/// reward (1.0 in the majority cluster, else 0.0) into the caller's buffer
/// `rewards_out` of `n` doubles; `*majority_out` (a string the caller owns)
/// and `*agreement_out` (the mean reward) are written when not NULL.
///
/// # Safety
/// `responses` points to `n` NUL-terminated strings; `rewards_out` to `n`
/// writable doubles; `majority_out` and `agreement_out` are NULL or valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_vote(
    responses: *const *const c_char,
    n: usize,
    mode: serl_vote_mode,
    rewards_out: *mut f64,
    majority_out: *mut *mut c_char,
    agreement_out: *mut f64,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let responses = unsafe { str_array_arg(responses, n, "responses") }?;
        let rewards_out = out_arg(rewards_out, "rewards_out")?;
        let mode = match mode {
            SERL_VOTE_STRING => VoteMode::String,
            SERL_VOTE_EQUIV => VoteMode::Equiv,
            other => {
                return Err(FfiError::InvalidArgument(format!(
                    "mode {other} is not SERL_VOTE_STRING or SERL_VOTE_EQUIV"
                )));
            }
        };
        let v = eval::vote(&responses, mode);
        let majority = if majority_out.is_null() {
            None
        } else {
            Some(owned_c_string(&v.majority, "the majority answer")?)
        };
        // SAFETY: rewards_out has room for n doubles; the others were checked.
        unsafe {
            std::ptr::copy_nonoverlapping(v.rewards.as_ptr(), rewards_out, n);
            if let Some(m) = majority {
                *majority_out = m;
            }
            if !agreement_out.is_null() {
                *agreement_out = v.agreement;
            }
        }
        Ok(())
    })
}

/// ROUGE-L (rouge_score semantics) of `prediction` against `target`.
///
/// # Safety
/// `target` and `prediction` are NUL-terminated strings; `out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_rouge_l(
    target: *const c_char,
    prediction: *const c_char,
    out: *mut serl_rouge,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let (t, p) = unsafe {
            (
                str_arg(target, "target")?,
                str_arg(prediction, "prediction")?,
            )
        };
        let out = out_arg(out, "out")?;
        let s = eval::rouge_l(t, p);
        // SAFETY: checked non-NULL above.
        unsafe {
            *out = serl_rouge {
                f: s.f,
                p: s.p,
                r: s.r,
            }
        };
        Ok(())
    })
}

/// Parses a generated numbered list of questions and applies SeRL's rule
/// filters; `*items_out` receives `*len_out` strings (free the array with
/// [`serl_string_array_free`]). `keep_case` false reproduces the reference's
/// `capitalize()`; true keeps the generated case.
///
/// # Safety
/// `response` is a NUL-terminated string; the out-pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_parse_instructions(
    response: *const c_char,
    keep_case: bool,
    items_out: *mut *mut *mut c_char,
    len_out: *mut usize,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let response = unsafe { str_arg(response, "response") }?;
        let items_out = out_arg(items_out, "items_out")?;
        let len_out = out_arg(len_out, "len_out")?;
        let case = if keep_case {
            CaseMode::Keep
        } else {
            CaseMode::Capitalize
        };
        let items = eval::parse_instructions(response, case);
        let mut ptrs: Vec<*mut c_char> = Vec::with_capacity(items.len());
        for item in &items {
            match owned_c_string(item, "an instruction") {
                Ok(p) => ptrs.push(p),
                Err(e) => {
                    for p in ptrs {
                        // SAFETY: allocated just above and not handed out.
                        unsafe { free_c_string(p) };
                    }
                    return Err(e);
                }
            }
        }
        let len = ptrs.len();
        let array = Box::into_raw(ptrs.into_boxed_slice()).cast::<*mut c_char>();
        // SAFETY: checked non-NULL above.
        unsafe {
            *items_out = array;
            *len_out = len;
        }
        Ok(())
    })
}

/// Builds SeRL's question-generation prompt: up to 2 questions from `pool`
/// (instructions kept earlier; `n_pool` may be 0) and seeds up to `shots` in
/// all, shuffled by a generator seeded with `seed`. Writes the system and
/// user messages (the caller's strings); the chat template is the caller's.
///
/// # Safety
/// `seeds` points to `n_seeds` strings, `pool` to `n_pool` (or anything
/// when `n_pool` is 0); the out-pointers are valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_build_generation_prompt(
    seeds: *const *const c_char,
    n_seeds: usize,
    pool: *const *const c_char,
    n_pool: usize,
    shots: usize,
    seed: u64,
    system_out: *mut *mut c_char,
    user_out: *mut *mut c_char,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let seeds = unsafe { str_array_arg(seeds, n_seeds, "seeds") }?;
        // SAFETY: per this function's contract.
        let pool = unsafe { str_array_arg_or_empty(pool, n_pool, "pool") }?;
        let system_out = out_arg(system_out, "system_out")?;
        let user_out = out_arg(user_out, "user_out")?;
        if shots == 0 {
            return Err(FfiError::InvalidArgument("shots is 0".into()));
        }
        let p = eval::build_generation_prompt(&seeds, &pool, shots, &mut Rng::new(seed));
        let (s, u) = owned_c_string_pair(
            (&p.system, "the system message"),
            (&p.user, "the user message"),
        )?;
        // SAFETY: checked non-NULL above.
        unsafe {
            *system_out = s;
            *user_out = u;
        }
        Ok(())
    })
}

/// SeRL's difficulty filter: `*keep_out` is whether `lo <= agreement <= hi`
/// (bounds inclusive; SeRL uses 0.2 and 0.8). The bounds must satisfy
/// 0 <= lo <= hi <= 1.
///
/// # Safety
/// `keep_out` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_difficulty_keep(
    agreement: f64,
    lo: f64,
    hi: f64,
    keep_out: *mut bool,
) -> serl_status {
    guard(|| {
        let keep_out = out_arg(keep_out, "keep_out")?;
        if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
            return Err(FfiError::InvalidArgument(format!(
                "bounds [{lo}, {hi}] are not within 0 <= lo <= hi <= 1"
            )));
        }
        if !agreement.is_finite() {
            return Err(FfiError::InvalidArgument(format!(
                "agreement {agreement} is not a finite number"
            )));
        }
        // SAFETY: checked non-NULL above.
        unsafe { *keep_out = eval::difficulty_keep(agreement, lo, hi) };
        Ok(())
    })
}

/// SeRL's RL arithmetic for hosts that run their own model: `request_json`
/// is a JSON object with `estimator` ("reinforce", "rloo",
/// "reinforce_baseline", "group_norm", "dr_grpo", "raft"), `kl_estimator` ("k1",
/// "k2", "k3"), `kl_coef`, `n_samples_per_prompt`, `action_mask` (B×T),
/// `rewards` (B), `log_probs` and `ref_log_probs` (B×T), and optionally
/// `clip_eps` (0.2), `gamma` (1), `reward_clip` ([-10, 10]),
/// `old_log_probs`, `new_log_probs`. `*result_json` receives (a string the
/// caller owns) `{"kl", "shaped_rewards", "token_rewards", "returns",
/// "advantages", "policy_loss_token_mean", "policy_loss_seq_mean"}`.
/// Malformed JSON or inconsistent shapes give SERL_ERR_BAD_DATA.
///
/// # Safety
/// `request_json` is a NUL-terminated string; `result_json` is valid.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn serl_advantages(
    request_json: *const c_char,
    result_json: *mut *mut c_char,
) -> serl_status {
    guard(|| {
        // SAFETY: per this function's contract.
        let request = unsafe { str_arg(request_json, "request_json") }?;
        let result_json = out_arg(result_json, "result_json")?;
        let request: serl_core::rl::AdvantageRequest = serde_json::from_str(request)
            .map_err(|e| FfiError::BadData(format!("request_json: {e}")))?;
        let out = request
            .compute()
            .map_err(|e| FfiError::BadData(e.to_string()))?;
        let json =
            serde_json::to_string(&out).map_err(|e| FfiError::BadData(format!("result: {e}")))?;
        let s = owned_c_string(&json, "the result")?;
        // SAFETY: checked non-NULL above.
        unsafe { *result_json = s };
        Ok(())
    })
}
