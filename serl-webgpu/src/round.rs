//! A self-play round without a server: SeRL's steps 1–6 (the model writes
//! problems from few-shot prompts, the rule and diversity filters judge
//! them, each kept problem is answered `n` times, a majority vote rewards
//! the answers, the difficulty filter keeps the informative groups), with
//! the model on whichever engine backend holds it and every read-back
//! awaited, so a browser page stays live while WebGPU works. The update is
//! left out. Every judgement is the evaluator's ([`serl_core::eval`]), as
//! in the trainer.

use serde::Serialize;
use serl_core::eval::{self, CaseMode, DiversityFilter, Rng};
use serl_core::model::{
    AnyDecoder, ChatMessage, GenerateRequest, Generation, ModelError, SamplingParams, Tokenizer,
    generate::TokenEvent,
};
use serl_core::train::Config;

/// A problem the model wrote and what the filters made of it.
#[derive(Debug, Clone, Serialize)]
pub struct Written {
    /// The problem, normalised as the trainer keeps it.
    pub text: String,
    /// `kept`, `rule_filtered` or `similarity_filtered`.
    pub status: &'static str,
    /// Why a rule rejected it.
    pub reason: Option<String>,
    /// Its ROUGE-L against the pool when the diversity filter rejected it.
    pub rouge_l: Option<f64>,
}

/// One problem's answers and their vote.
#[derive(Debug, Clone, Serialize)]
pub struct Voted {
    /// The problem.
    pub problem: String,
    /// The sampled answers, in sample order.
    pub answers: Vec<String>,
    /// Each answer's extracted, normalised final answer.
    pub extracted: Vec<String>,
    /// 1 for answers in the majority, 0 otherwise.
    pub rewards: Vec<f64>,
    /// The majority answer.
    pub majority: String,
    /// The share of answers agreeing with the majority.
    pub agreement: f64,
    /// Whether the difficulty filter keeps the group for the update.
    pub kept: bool,
}

/// Generated tokens of a call, for throughput figures.
fn tokens(gens: &[Generation]) -> usize {
    gens.iter().map(|g| g.token_ids.len()).sum()
}

/// A chat prompt's token ids, through the model's chat template.
pub fn chat_ids(tok: &Tokenizer, system: &str, user: &str) -> Result<Vec<u32>, ModelError> {
    let mut msgs = Vec::new();
    if !system.is_empty() {
        msgs.push(ChatMessage::new("system", system));
    }
    msgs.push(ChatMessage::new("user", user));
    let text = tok.apply_chat_template(&msgs, true)?;
    tok.encode(&text)
}

/// The model and the settings a round plays with.
pub struct Player<'a> {
    /// The model, on any engine backend.
    pub dec: &'a AnyDecoder<'a>,
    /// Its tokenizer and chat template.
    pub tok: &'a Tokenizer,
    /// The SeRL configuration: prompts, sampling, filters, vote mode.
    pub cfg: &'a Config,
}

impl Player<'_> {
    /// Step 1–3: `cfg.few_shot_generation_batch_size` few-shot prompts from
    /// the seeds and the pool, one completion each, every listed item through
    /// the rule filters and then the diversity filter (against the seeds and
    /// what this call kept), until `need` are kept; the pool (problems kept
    /// before) supplies few-shot examples. Returns every item
    /// with its verdict and the generated-token count.
    pub async fn write_problems(
        &self,
        seeds: &[String],
        pool: &[String],
        need: usize,
        rng: &mut Rng,
        on_token: impl FnMut(TokenEvent),
    ) -> Result<(Vec<Written>, usize), ModelError> {
        let Player { dec, tok, cfg } = *self;
        let mut prompts = Vec::new();
        for _ in 0..cfg.few_shot_generation_batch_size {
            let p = eval::build_generation_prompt(seeds, pool, cfg.few_shot_generation, rng);
            prompts.push(chat_ids(tok, &p.system, &p.user)?);
        }
        let params = SamplingParams {
            n: 1,
            temperature: cfg.instruction_temperature,
            top_p: cfg.instruction_top_p,
            presence_penalty: cfg.instruction_presence_penalty,
            max_new_tokens: cfg.instruction_max_new_tokens,
            seed: rng.next_u64(),
            ..Default::default()
        };
        let gens = dec
            .generate_async(tok, &GenerateRequest { prompts, params }, on_token)
            .await?;
        let case = if cfg.keep_case {
            CaseMode::Keep
        } else {
            CaseMode::Capitalize
        };
        // As in the trainer: against the seeds and what this call kept.
        let mut filter = DiversityFilter::new(seeds, cfg.rouge_threshold);
        let mut out = Vec::new();
        let mut kept = 0;
        for g in &gens {
            // The completion continues the numbered list after "9." (as in the trainer).
            let text = format!("9. {}", g.text.trim_start());
            for item in eval::parse_items(&text, case) {
                if let Some(r) = item.rejection {
                    out.push(Written {
                        text: item.text,
                        status: "rule_filtered",
                        reason: Some(format!("{r:?}")),
                        rouge_l: None,
                    });
                    continue;
                }
                if kept >= need {
                    break;
                }
                let v = filter.offer_fast(&item.text);
                if v.kept {
                    kept += 1;
                    out.push(Written {
                        text: item.text,
                        status: "kept",
                        reason: None,
                        rouge_l: None,
                    });
                } else {
                    out.push(Written {
                        text: item.text,
                        status: "similarity_filtered",
                        reason: None,
                        rouge_l: Some(v.max_rouge_l),
                    });
                }
            }
        }
        Ok((out, tokens(&gens)))
    }

    /// Steps 4–6: `n` answers to each problem (the configuration's input
    /// template, system prompt, temperature, top-p and length), a majority
    /// vote per problem in the configuration's vote mode, and the difficulty
    /// filter's verdict. Returns the groups and the generated-token count.
    pub async fn answer_and_vote(
        &self,
        problems: &[String],
        n: usize,
        rng: &mut Rng,
        on_token: impl FnMut(TokenEvent),
    ) -> Result<(Vec<Voted>, usize), ModelError> {
        let Player { dec, tok, cfg } = *self;
        if problems.is_empty() {
            return Ok((Vec::new(), 0));
        }
        let prompts = problems
            .iter()
            .map(|p| {
                let user = cfg.input_template.replace("{problem}", p);
                chat_ids(tok, &cfg.system_prompt, &user)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let params = SamplingParams {
            n,
            temperature: cfg.temperature,
            top_p: cfg.top_p,
            max_new_tokens: cfg.generate_max_len,
            seed: rng.next_u64(),
            ..Default::default()
        };
        let gens = dec
            .generate_async(tok, &GenerateRequest { prompts, params }, on_token)
            .await?;
        let count = tokens(&gens);
        let [lo, hi] = cfg.reward_difficulty_bounds;
        let mut out = Vec::with_capacity(problems.len());
        let mut it = gens.into_iter();
        for problem in problems {
            let answers: Vec<String> = it.by_ref().take(n).map(|g| g.text).collect();
            let v = eval::vote(&answers, cfg.vote_mode);
            out.push(Voted {
                problem: problem.clone(),
                kept: eval::difficulty_keep(v.agreement, lo, hi),
                answers,
                extracted: v.answers,
                rewards: v.rewards,
                majority: v.majority,
                agreement: v.agreement,
            });
        }
        Ok((out, count))
    }
}
