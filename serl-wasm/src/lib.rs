//! libserl's evaluator for JavaScript (browsers and Node.js): the voter,
//! answer extraction and equivalence, ROUGE-L, instruction parsing and the
//! diversity filter, with JavaScript-shaped arguments and results.
//!
//! A thin layer over [`serl_core::eval`]: it converts types and turns
//! errors into JavaScript `Error`s with the Rust message. Nothing here
//! panics on bad input: wrong types are errors.

use serde::Serialize;
use serl_core::eval::{self, CaseMode, DiversityFilter as CoreFilter, Rng, VoteMode};
use wasm_bindgen::prelude::*;

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** A response's final answer as SeRL extracts it, and normalised once more. */
export interface ExtractedAnswer { answer: string; normalized: string; }
/** Options of vote(). */
export interface VoteOptions { mode?: "string" | "equiv"; }
/** The outcome of a majority vote. */
export interface VoteResult { rewards: number[]; answers: string[]; majority: string; agreement: number; }
/** ROUGE-L of a prediction against a target. */
export interface RougeScore { f: number; p: number; r: number; }
/** Options of parseInstructions(). */
export interface ParseOptions { keepCase?: boolean; }
/** One item of a generated list with the rule that rejected it, if any. */
export interface ParsedItem { text: string; kept: boolean; rejection: null | "tooShort" | "tooLong" | "blacklisted" | "program" | "punctuation" | "nonAscii"; }
/** The diversity filter's verdict on one instruction. */
export interface FilterVerdict { kept: boolean; maxRougeL: number; argmax: number | null; closest: string | null; }
/** A question-generation prompt (apply the model's chat template to it). */
export interface GenerationPrompt { system: string; user: string; shots: string[]; }
"#;

fn to_js<T: Serialize>(value: &T) -> Result<JsValue, JsError> {
    value
        .serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(|e| JsError::new(&e.to_string()))
}

fn strings(value: JsValue, name: &str) -> Result<Vec<String>, JsError> {
    serde_wasm_bindgen::from_value(value)
        .map_err(|_| JsError::new(&format!("{name} must be an array of strings")))
}

/// Reads an optional string-valued or boolean option of an options object.
fn option(options: &JsValue, key: &str) -> Result<JsValue, JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(JsValue::UNDEFINED);
    }
    if !options.is_object() {
        return Err(JsError::new("options must be an object"));
    }
    js_get(options, key)
}

#[wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_namespace = Reflect, js_name = get, catch)]
    fn reflect_get(target: &JsValue, key: &JsValue) -> Result<JsValue, JsValue>;
}

fn js_get(target: &JsValue, key: &str) -> Result<JsValue, JsError> {
    reflect_get(target, &JsValue::from_str(key))
        .map_err(|_| JsError::new(&format!("cannot read option {key}")))
}

/// The final answer of a model response, as SeRL's `extract_answer`, and
/// that answer normalised once more (what the string vote compares).
#[wasm_bindgen(js_name = extractAnswer, unchecked_return_type = "ExtractedAnswer")]
pub fn extract_answer(response: &str) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Out {
        answer: String,
        normalized: String,
    }
    let answer = eval::extract_answer(response);
    let normalized = eval::strip_string(&answer);
    to_js(&Out { answer, normalized })
}

/// Whether `pred` is equivalent to `ref` as math_verify decides it for
/// SeRL's majority reward (`ref` is the gold answer; either direction passes).
#[wasm_bindgen(js_name = answersEqual)]
pub fn answers_equal(pred: &str, reference: &str) -> bool {
    eval::equivalent(pred, reference)
}

/// SeRL's majority-vote self-reward over a group of responses.
/// `options.mode` is `"string"` (default) or `"equiv"`.
#[wasm_bindgen(unchecked_return_type = "VoteResult")]
pub fn vote(
    #[wasm_bindgen(unchecked_param_type = "string[]")] responses: JsValue,
    #[wasm_bindgen(unchecked_param_type = "VoteOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsError> {
    let responses = strings(responses, "responses")?;
    if responses.is_empty() {
        return Err(JsError::new("responses is empty"));
    }
    let mode = match option(&options, "mode")?.as_string().as_deref() {
        None => VoteMode::String,
        Some(m) => m
            .parse::<VoteMode>()
            .map_err(|e| JsError::new(&e.to_string()))?,
    };
    to_js(&eval::vote(&responses, mode))
}

/// ROUGE-L (rouge_score semantics) of prediction `b` against target `a`.
#[wasm_bindgen(js_name = rougeL, unchecked_return_type = "RougeScore")]
pub fn rouge_l(a: &str, b: &str) -> Result<JsValue, JsError> {
    to_js(&eval::rouge_l(a, b))
}

/// The questions of a generated numbered list that pass SeRL's rule
/// filters. `options.keepCase` keeps the generated case instead of the
/// reference's `capitalize()`.
#[wasm_bindgen(js_name = parseInstructions, unchecked_return_type = "string[]")]
pub fn parse_instructions(
    text: &str,
    #[wasm_bindgen(unchecked_param_type = "ParseOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsError> {
    to_js(&eval::parse_instructions(text, case_mode(&options)?))
}

/// Every item of a generated numbered list, with the rule that rejected it.
#[wasm_bindgen(js_name = parseItems, unchecked_return_type = "ParsedItem[]")]
pub fn parse_items(
    text: &str,
    #[wasm_bindgen(unchecked_param_type = "ParseOptions | undefined")] options: JsValue,
) -> Result<JsValue, JsError> {
    #[derive(Serialize)]
    struct Item {
        text: String,
        kept: bool,
        rejection: Option<&'static str>,
    }
    let items: Vec<Item> = eval::parse_items(text, case_mode(&options)?)
        .into_iter()
        .map(|i| Item {
            kept: i.rejection.is_none(),
            rejection: i.rejection.map(|r| match r {
                eval::RuleRejection::TooShort => "tooShort",
                eval::RuleRejection::TooLong => "tooLong",
                eval::RuleRejection::Blacklisted => "blacklisted",
                eval::RuleRejection::Program => "program",
                eval::RuleRejection::Punctuation => "punctuation",
                eval::RuleRejection::NonAscii => "nonAscii",
            }),
            text: i.text,
        })
        .collect();
    to_js(&items)
}

fn case_mode(options: &JsValue) -> Result<CaseMode, JsError> {
    Ok(if option(options, "keepCase")?.as_bool() == Some(true) {
        CaseMode::Keep
    } else {
        CaseMode::Capitalize
    })
}

/// SeRL's difficulty filter on a group's rewards: keep when
/// `lo <= mean(rewards) <= hi` (SeRL: 0.2 and 0.8, inclusive).
#[wasm_bindgen(js_name = difficultyKeep)]
pub fn difficulty_keep(
    #[wasm_bindgen(unchecked_param_type = "number[]")] rewards: JsValue,
    lo: f64,
    hi: f64,
) -> Result<bool, JsError> {
    let rewards: Vec<f64> = serde_wasm_bindgen::from_value(rewards)
        .map_err(|_| JsError::new("rewards must be an array of numbers"))?;
    if rewards.is_empty() {
        return Err(JsError::new("rewards is empty"));
    }
    if !(0.0..=1.0).contains(&lo) || !(0.0..=1.0).contains(&hi) || lo > hi {
        return Err(JsError::new(&format!(
            "bounds [{lo}, {hi}] are not within 0 <= lo <= hi <= 1"
        )));
    }
    let agreement = rewards.iter().sum::<f64>() / rewards.len() as f64;
    Ok(eval::difficulty_keep(agreement, lo, hi))
}

/// SeRL's question-generation prompt: up to 2 questions from `pool` and
/// seeds up to `shots` in all (default 8), shuffled with `seed`.
#[wasm_bindgen(js_name = buildGenerationPrompt, unchecked_return_type = "GenerationPrompt")]
pub fn build_generation_prompt(
    #[wasm_bindgen(unchecked_param_type = "string[]")] seeds: JsValue,
    #[wasm_bindgen(unchecked_param_type = "string[]")] pool: JsValue,
    shots: Option<u32>,
    seed: Option<f64>,
) -> Result<JsValue, JsError> {
    let seeds = strings(seeds, "seeds")?;
    let pool = if pool.is_undefined() || pool.is_null() {
        Vec::new()
    } else {
        strings(pool, "pool")?
    };
    if seeds.is_empty() {
        return Err(JsError::new("seeds is empty"));
    }
    let shots = shots.unwrap_or(eval::DEFAULT_SHOTS as u32) as usize;
    if shots == 0 {
        return Err(JsError::new("shots is 0"));
    }
    let seed = seed.unwrap_or(0.0);
    if !(seed.is_finite() && seed >= 0.0 && seed.fract() == 0.0) {
        return Err(JsError::new("seed must be a non-negative integer"));
    }
    let p = eval::build_generation_prompt(&seeds, &pool, shots, &mut Rng::new(seed as u64));
    to_js(&p)
}

/// SeRL's diversity filter: seeds plus the instructions kept so far; an
/// instruction whose ROUGE-L F against any of them is above the threshold
/// is rejected. Call `free()` when done.
#[wasm_bindgen]
pub struct DiversityFilter {
    inner: CoreFilter,
}

#[wasm_bindgen]
impl DiversityFilter {
    /// A filter over `seeds` with `threshold` in [0, 1] (default 0.7).
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(unchecked_param_type = "string[]")] seeds: JsValue,
        threshold: Option<f64>,
    ) -> Result<DiversityFilter, JsError> {
        let seeds = strings(seeds, "seeds")?;
        let threshold = threshold.unwrap_or(eval::DEFAULT_THRESHOLD);
        if !(0.0..=1.0).contains(&threshold) {
            return Err(JsError::new(&format!(
                "threshold {threshold} is outside [0, 1]"
            )));
        }
        Ok(DiversityFilter {
            inner: CoreFilter::new(&seeds, threshold),
        })
    }

    /// Scores an instruction against the pool; kept ones join it.
    #[wasm_bindgen(unchecked_return_type = "FilterVerdict")]
    pub fn offer(&mut self, instruction: &str) -> Result<JsValue, JsError> {
        #[derive(Serialize)]
        #[serde(rename_all = "camelCase")]
        struct Out {
            kept: bool,
            max_rouge_l: f64,
            argmax: Option<usize>,
            closest: Option<String>,
        }
        let v = self.inner.offer(instruction);
        let closest = v
            .argmax
            .and_then(|i| self.inner.pool_text(i))
            .map(str::to_string);
        to_js(&Out {
            kept: v.kept,
            max_rouge_l: v.max_rouge_l,
            argmax: v.argmax,
            closest,
        })
    }

    /// Number of pool entries (seeds plus kept instructions).
    #[wasm_bindgen(getter, js_name = poolSize)]
    pub fn pool_size(&self) -> usize {
        self.inner.pool_len()
    }
}
