//! Batched sampling: prompts of different lengths in one batch, n samples
//! per prompt sharing one prefill, vLLM-style penalties, stop on EOS ids or
//! stop strings, a seeded RNG per sample (same seed, same output, whatever
//! the batch), streaming through a callback.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::llama::{Model, RolloutState};
use super::{ModelConfig, ModelError};
use crate::engine::{Backend, Cpu, KvCache, Llama};

/// What batched sampling needs of a model: a prefill into a fresh cache,
/// merging prefills into one batch, dropping finished rows, and one
/// decoding step. The compute engine ([`EngineDecoder`]) and candle's
/// rollout path ([`Model`]) both provide it.
pub trait Decoder {
    /// The key/value cache of a batch of sequences.
    type State;
    /// The model's hyper-parameters (EOS ids, vocabulary).
    fn config(&self) -> &ModelConfig;
    /// Runs one prompt into a fresh cache with room for `extra` tokens;
    /// returns the cache and the last position's logits.
    fn prefill(&self, ids: &[u32], extra: usize) -> Result<(Self::State, Vec<f32>), ModelError>;
    /// One batch from single-sequence caches, each repeated `n` times.
    fn merge(
        &self,
        parts: &[(&Self::State, usize)],
        extra: usize,
    ) -> Result<Self::State, ModelError>;
    /// Prefills several prompts into one batch in which each prompt's row
    /// is repeated `n` times, with room for `extra` tokens; returns each
    /// prompt's last-position logits. By default one [`Decoder::prefill`]
    /// per prompt, then [`Decoder::merge`]; the engine runs the prompts
    /// together (fewer, larger matrix products and kernel launches).
    fn prefill_many(
        &self,
        prompts: &[&[u32]],
        n: usize,
        extra: usize,
    ) -> Result<(Self::State, Vec<Vec<f32>>), ModelError> {
        let mut states = Vec::with_capacity(prompts.len());
        let mut logits = Vec::with_capacity(prompts.len());
        for p in prompts {
            let (s, l) = self.prefill(p, extra)?;
            states.push(s);
            logits.push(l);
        }
        let parts: Vec<(&Self::State, usize)> = states.iter().map(|s| (s, n)).collect();
        Ok((self.merge(&parts, extra)?, logits))
    }
    /// Keeps the listed rows, in order.
    fn select(&self, state: &mut Self::State, rows: &[usize]) -> Result<(), ModelError>;
    /// Appends one token per row and puts each row's next-token logits in
    /// `logits` (`[rows, vocab]`, row-major; its contents are replaced and
    /// its allocation reused where the model can).
    fn decode_step(
        &self,
        state: &mut Self::State,
        tokens: &[u32],
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError>;
    /// [`Decoder::decode_step`] for greedy decoding without penalties:
    /// puts each row's most likely token and its log-probability in
    /// `picks` and returns true, where the model can reduce the logits
    /// itself (on a device, sparing their read-back); returns false, doing
    /// nothing, where it cannot (the default).
    fn decode_step_greedy(
        &self,
        state: &mut Self::State,
        tokens: &[u32],
        picks: &mut Vec<(u32, f32)>,
    ) -> Result<bool, ModelError> {
        let _ = (state, tokens, picks);
        Ok(false)
    }
}

/// `[rows, 2]` greedy picks as read back (index as `f32`, log-prob).
fn unpack_picks(flat: &[f32], picks: &mut Vec<(u32, f32)>) {
    picks.clear();
    picks.extend(flat.chunks_exact(2).map(|p| (p[0] as u32, p[1])));
}

impl Decoder for Model {
    type State = RolloutState;

    fn config(&self) -> &ModelConfig {
        Model::config(self)
    }

    fn prefill(&self, ids: &[u32], extra: usize) -> Result<(RolloutState, Vec<f32>), ModelError> {
        Model::prefill(self, ids, extra)
    }

    fn merge(
        &self,
        parts: &[(&RolloutState, usize)],
        extra: usize,
    ) -> Result<RolloutState, ModelError> {
        RolloutState::merge(parts, extra)
    }

    fn select(&self, state: &mut RolloutState, rows: &[usize]) -> Result<(), ModelError> {
        state.select(rows)
    }

    fn decode_step(
        &self,
        state: &mut RolloutState,
        tokens: &[u32],
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        *logits = self.decode(state, tokens)?.flatten_all()?.to_vec1()?;
        Ok(())
    }
}

/// Sampling on the compute engine: a driver and the weights it reads
/// (a learner's own parameters: no copy).
pub struct EngineDecoder<'a, B: Backend = Cpu> {
    /// The model driver.
    pub llama: &'a Llama<B>,
    /// Its flat parameter buffer.
    pub params: &'a B::Buf,
}

impl<B: Backend> Decoder for EngineDecoder<'_, B> {
    type State = KvCache<B>;

    fn config(&self) -> &ModelConfig {
        self.llama.config()
    }

    fn prefill(&self, ids: &[u32], extra: usize) -> Result<(KvCache<B>, Vec<f32>), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Invalid("empty prompt".into()));
        }
        Ok(self.llama.prefill_batch(self.params, &[ids], extra)?)
    }

    fn merge(
        &self,
        parts: &[(&KvCache<B>, usize)],
        extra: usize,
    ) -> Result<KvCache<B>, ModelError> {
        Ok(self.llama.merge(parts, extra)?)
    }

    fn prefill_many(
        &self,
        prompts: &[&[u32]],
        n: usize,
        extra: usize,
    ) -> Result<(KvCache<B>, Vec<Vec<f32>>), ModelError> {
        let v = self.llama.config().vocab_size;
        let (cache, flat) = self.llama.prefill_many(self.params, prompts, n, extra)?;
        Ok((cache, flat.chunks(v).map(<[f32]>::to_vec).collect()))
    }

    fn select(&self, state: &mut KvCache<B>, rows: &[usize]) -> Result<(), ModelError> {
        Ok(self.llama.select(state, rows)?)
    }

    fn decode_step(
        &self,
        state: &mut KvCache<B>,
        tokens: &[u32],
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        Ok(self
            .llama
            .step_into(self.params, state, tokens, 1, false, logits)?)
    }

    fn decode_step_greedy(
        &self,
        state: &mut KvCache<B>,
        tokens: &[u32],
        picks: &mut Vec<(u32, f32)>,
    ) -> Result<bool, ModelError> {
        let be = self.llama.backend();
        if !be.greedy_on_device() {
            return Ok(false);
        }
        self.llama.step_greedy_enqueue(self.params, state, tokens)?;
        let (buf, span) = state
            .picks()
            .ok_or_else(|| ModelError::Invalid("the greedy step left no picks".into()))?;
        unpack_picks(&be.read(buf, span)?, picks);
        Ok(true)
    }
}

/// Sampling on whichever backend holds the weights (what learners and
/// scorers hand out; see [`crate::engine::EngineDevice`]).
pub enum AnyDecoder<'a> {
    /// On the CPU backend.
    Cpu(EngineDecoder<'a, Cpu>),
    /// On the wgpu backend.
    #[cfg(feature = "wgpu")]
    Wgpu(EngineDecoder<'a, crate::engine::Wgpu>),
}

/// The KV cache of an [`AnyDecoder`].
// One cache per `generate` call: its size does not matter (clippy sees the
// wgpu variant as large on wasm32, where the CPU's buffers are smaller).
#[allow(clippy::large_enum_variant)]
pub enum AnyCache {
    /// On the CPU backend.
    Cpu(KvCache<Cpu>),
    /// On the wgpu backend.
    #[cfg(feature = "wgpu")]
    Wgpu(KvCache<crate::engine::Wgpu>),
}

/// `$body` with `$d` (and `$s`, a cache) bound to the variant's contents.
macro_rules! any {
    ($dec:expr, $d:ident => $body:expr) => {
        match $dec {
            AnyDecoder::Cpu($d) => $body,
            #[cfg(feature = "wgpu")]
            AnyDecoder::Wgpu($d) => $body,
        }
    };
}

#[cfg(feature = "wgpu")]
fn mismatch() -> ModelError {
    ModelError::Invalid("a KV cache of another backend".into())
}

impl Decoder for AnyDecoder<'_> {
    type State = AnyCache;

    fn config(&self) -> &ModelConfig {
        any!(self, d => d.config())
    }

    fn prefill(&self, ids: &[u32], extra: usize) -> Result<(AnyCache, Vec<f32>), ModelError> {
        match self {
            AnyDecoder::Cpu(d) => d.prefill(ids, extra).map(|(c, l)| (AnyCache::Cpu(c), l)),
            #[cfg(feature = "wgpu")]
            AnyDecoder::Wgpu(d) => d.prefill(ids, extra).map(|(c, l)| (AnyCache::Wgpu(c), l)),
        }
    }

    fn merge(&self, parts: &[(&AnyCache, usize)], extra: usize) -> Result<AnyCache, ModelError> {
        match self {
            AnyDecoder::Cpu(d) => {
                let p = parts
                    .iter()
                    .map(|(c, n)| match c {
                        AnyCache::Cpu(c) => Ok::<_, ModelError>((c, *n)),
                        #[cfg(feature = "wgpu")]
                        _ => Err(mismatch()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                d.merge(&p, extra).map(AnyCache::Cpu)
            }
            #[cfg(feature = "wgpu")]
            AnyDecoder::Wgpu(d) => {
                let p = parts
                    .iter()
                    .map(|(c, n)| match c {
                        AnyCache::Wgpu(c) => Ok::<_, ModelError>((c, *n)),
                        _ => Err(mismatch()),
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                d.merge(&p, extra).map(AnyCache::Wgpu)
            }
        }
    }

    fn prefill_many(
        &self,
        prompts: &[&[u32]],
        n: usize,
        extra: usize,
    ) -> Result<(AnyCache, Vec<Vec<f32>>), ModelError> {
        match self {
            AnyDecoder::Cpu(d) => d
                .prefill_many(prompts, n, extra)
                .map(|(c, l)| (AnyCache::Cpu(c), l)),
            #[cfg(feature = "wgpu")]
            AnyDecoder::Wgpu(d) => d
                .prefill_many(prompts, n, extra)
                .map(|(c, l)| (AnyCache::Wgpu(c), l)),
        }
    }

    fn select(&self, state: &mut AnyCache, rows: &[usize]) -> Result<(), ModelError> {
        match (self, state) {
            (AnyDecoder::Cpu(d), AnyCache::Cpu(c)) => d.select(c, rows),
            #[cfg(feature = "wgpu")]
            (AnyDecoder::Wgpu(d), AnyCache::Wgpu(c)) => d.select(c, rows),
            #[cfg(feature = "wgpu")]
            _ => Err(mismatch()),
        }
    }

    fn decode_step(
        &self,
        state: &mut AnyCache,
        tokens: &[u32],
        logits: &mut Vec<f32>,
    ) -> Result<(), ModelError> {
        match (self, state) {
            (AnyDecoder::Cpu(d), AnyCache::Cpu(c)) => d.decode_step(c, tokens, logits),
            #[cfg(feature = "wgpu")]
            (AnyDecoder::Wgpu(d), AnyCache::Wgpu(c)) => d.decode_step(c, tokens, logits),
            #[cfg(feature = "wgpu")]
            _ => Err(mismatch()),
        }
    }

    fn decode_step_greedy(
        &self,
        state: &mut AnyCache,
        tokens: &[u32],
        picks: &mut Vec<(u32, f32)>,
    ) -> Result<bool, ModelError> {
        match (self, state) {
            (AnyDecoder::Cpu(d), AnyCache::Cpu(c)) => d.decode_step_greedy(c, tokens, picks),
            #[cfg(feature = "wgpu")]
            (AnyDecoder::Wgpu(d), AnyCache::Wgpu(c)) => d.decode_step_greedy(c, tokens, picks),
            #[cfg(feature = "wgpu")]
            _ => Err(mismatch()),
        }
    }
}

use super::sample::{self, Knobs};
use super::tokenizer::Tokenizer;
use crate::eval::Rng;

/// How to sample (vLLM semantics; temperature 0 means greedy).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SamplingParams {
    /// Samples per prompt.
    pub n: usize,
    /// Softmax temperature; 0 is greedy.
    pub temperature: f32,
    /// Nucleus mass in (0, 1].
    pub top_p: f32,
    /// Keep the k most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Subtracted once from the logit of every token already generated.
    pub presence_penalty: f32,
    /// Subtracted per occurrence from the logit of generated tokens.
    pub frequency_penalty: f32,
    /// Most tokens to generate per sample.
    pub max_new_tokens: usize,
    /// Generation of a sample stops when its text contains one of these
    /// (the stop string is not part of the returned text).
    pub stop: Vec<String>,
    /// Extra end-of-sequence ids besides the model's.
    pub stop_token_ids: Vec<u32>,
    /// Keep generating past end-of-sequence tokens (benchmarks; vLLM's `ignore_eos`).
    pub ignore_eos: bool,
    /// RNG seed.
    pub seed: u64,
    /// RNG streams are keyed by `first_prompt` + the prompt's index, so a
    /// request split into chunks, each given its offset, samples exactly as
    /// the whole request would.
    pub first_prompt: usize,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            n: 1,
            temperature: 1.0,
            top_p: 1.0,
            top_k: 0,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            max_new_tokens: 256,
            stop: Vec::new(),
            stop_token_ids: Vec::new(),
            ignore_eos: false,
            seed: 0,
            first_prompt: 0,
        }
    }
}

impl SamplingParams {
    /// Checks every knob is in range, naming the one that is not.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |m: String| Err(ModelError::Invalid(m));
        if self.n == 0 {
            return bad("n must be at least 1".into());
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad(format!(
                "temperature {} must be finite and >= 0",
                self.temperature
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad(format!("top_p {} must be in (0, 1]", self.top_p));
        }
        if !self.presence_penalty.is_finite() || !self.frequency_penalty.is_finite() {
            return bad("penalties must be finite".into());
        }
        if self.max_new_tokens == 0 {
            return bad("max_new_tokens must be at least 1".into());
        }
        if self.stop.iter().any(String::is_empty) {
            return bad("stop strings must not be empty".into());
        }
        Ok(())
    }
}

/// Prompts (token ids) and how to sample them.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// One token-id list per prompt.
    pub prompts: Vec<Vec<u32>>,
    /// Sampling knobs.
    pub params: SamplingParams,
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// An end-of-sequence token or a stop string.
    Stop,
    /// `max_new_tokens` reached.
    Length,
}

/// One generated sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Generation {
    /// Index of its prompt in the request.
    pub prompt_index: usize,
    /// Which of the n samples of that prompt.
    pub sample_index: usize,
    /// Generated ids (an ending EOS id included).
    pub token_ids: Vec<u32>,
    /// log p of each generated id under the model (before temperature and
    /// penalties), as an RL trainer's old-policy log-probs.
    pub logprobs: Vec<f32>,
    /// Decoded text without special tokens, cut before a stop string.
    pub text: String,
    /// Why it ended.
    pub finish_reason: FinishReason,
}

/// A token as it is produced, for streaming.
#[derive(Debug, Clone, Copy)]
pub struct TokenEvent {
    /// Prompt index.
    pub prompt_index: usize,
    /// Sample index.
    pub sample_index: usize,
    /// The new token.
    pub token_id: u32,
}

/// Stop strings are looked for in the text of this many final tokens.
const STOP_WINDOW: usize = 64;

struct Row {
    prompt: usize,
    sample: usize,
    rng: Rng,
    ids: Vec<u32>,
    logprobs: Vec<f32>,
    counts: Vec<(u32, u32)>,
    done: Option<FinishReason>,
}

/// Below this many logits in a step, rows are sampled on one thread.
const PARALLEL_SAMPLING: usize = 1 << 16;

/// Chooses each row's next token from the logits paired with it. Rows own
/// their RNGs, so the result does not depend on how they are spread over
/// threads.
fn sample_rows(work: &mut [(&mut Row, &[f32])], knobs: &Knobs) {
    let one = |buf: &mut Vec<f32>, (row, l): &mut (&mut Row, &[f32])| {
        buf.clear();
        buf.extend_from_slice(l);
        let t = sample::choose(buf, &row.counts, knobs, &mut row.rng);
        row.push(t as u32, sample::logprob_of(l, t));
    };
    let total: usize = work.iter().map(|(_, l)| l.len()).sum();
    if work.len() > 1 && total >= PARALLEL_SAMPLING {
        work.par_iter_mut().for_each_init(Vec::new, one);
    } else {
        let mut buf = Vec::new();
        for w in work.iter_mut() {
            one(&mut buf, w);
        }
    }
}

impl Row {
    fn event(&self) -> TokenEvent {
        TokenEvent {
            prompt_index: self.prompt,
            sample_index: self.sample,
            token_id: *self.ids.last().unwrap_or(&0),
        }
    }

    fn push(&mut self, token: u32, logprob: f32) {
        self.ids.push(token);
        self.logprobs.push(logprob);
        match self.counts.iter_mut().find(|(t, _)| *t == token) {
            Some((_, c)) => *c += 1,
            None => self.counts.push((token, 1)),
        }
    }
}

fn row_seed(seed: u64, prompt: usize, sample: usize) -> u64 {
    let mut r = Rng::new(seed ^ 0x5e71_0000_0000_0000);
    let a = r.next_u64();
    let mut r = Rng::new(a ^ (prompt as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let b = r.next_u64();
    Rng::new(b ^ (sample as u64).wrapping_mul(0xc2b2_ae3d_27d4_eb4f)).next_u64()
}

/// Samples `params.n` continuations of every prompt. `on_token` sees each
/// token as it is chosen. Results are ordered by prompt, then sample.
pub fn generate<D: Decoder + ?Sized>(
    model: &D,
    tokenizer: &Tokenizer,
    req: &GenerateRequest,
    mut on_token: impl FnMut(TokenEvent),
) -> Result<Vec<Generation>, ModelError> {
    let mut run = Sampling::new(model.config(), tokenizer, req)?;
    if req.prompts.is_empty() {
        return Ok(Vec::new());
    }
    let prompts: Vec<&[u32]> = req.prompts.iter().map(Vec::as_slice).collect();
    let (mut state, first) =
        model.prefill_many(&prompts, req.params.n, req.params.max_new_tokens)?;
    let first: Vec<&[f32]> = first.iter().map(Vec::as_slice).collect();
    run.start(&first, &mut on_token)?;
    let mut logits = Vec::new();
    let mut picks = Vec::new();
    while let Some(step) = run.next_step() {
        if let Some(keep) = &step.keep {
            model.select(&mut state, keep)?;
        }
        if run.greedy() && model.decode_step_greedy(&mut state, &step.tokens, &mut picks)? {
            run.accept_picks(&picks, &mut on_token)?;
            continue;
        }
        model.decode_step(&mut state, &step.tokens, &mut logits)?;
        run.accept(&logits, &mut on_token)?;
    }
    run.finish()
}

/// [`generate`] on the engine without blocking on read-backs: each step's
/// logits come back through [`Backend::read_async`], so in a browser the
/// page stays live while WebGPU works. Same seed, same tokens as
/// [`generate`] on the same backend.
pub async fn generate_async<B: Backend>(
    dec: &EngineDecoder<'_, B>,
    tokenizer: &Tokenizer,
    req: &GenerateRequest,
    mut on_token: impl FnMut(TokenEvent),
) -> Result<Vec<Generation>, ModelError> {
    let mut run = Sampling::new(dec.config(), tokenizer, req)?;
    if req.prompts.is_empty() {
        return Ok(Vec::new());
    }
    let (llama, params) = (dec.llama, dec.params);
    let be = llama.backend();
    let extra = req.params.max_new_tokens;
    let missing = || ModelError::Invalid("the model step left no logits".into());
    let prompts: Vec<&[u32]> = req.prompts.iter().map(Vec::as_slice).collect();
    let mut parts = Vec::new();
    let mut first = Vec::new();
    for r in Llama::<B>::prefill_batches(&prompts) {
        let cache = llama.prefill_enqueue(params, &prompts[r], extra)?;
        let (buf, span) = cache.logits().ok_or_else(missing)?;
        first.extend(be.read_async(buf, span).await?);
        parts.push(cache);
    }
    let refs: Vec<(&KvCache<B>, usize)> = parts.iter().map(|c| (c, req.params.n)).collect();
    let mut state = llama.merge(&refs, extra)?;
    drop(refs);
    drop(parts);
    let v = dec.config().vocab_size.max(1);
    let rows: Vec<&[f32]> = first.chunks(v).collect();
    run.start(&rows, &mut on_token)?;
    drop(rows);
    let greedy = run.greedy() && be.greedy_on_device();
    let mut picks = Vec::new();
    while let Some(step) = run.next_step() {
        if let Some(keep) = &step.keep {
            llama.select(&mut state, keep)?;
        }
        if greedy {
            llama.step_greedy_enqueue(params, &mut state, &step.tokens)?;
            let (buf, span) = state.picks().ok_or_else(missing)?;
            unpack_picks(&be.read_async(buf, span).await?, &mut picks);
            run.accept_picks(&picks, &mut on_token)?;
            continue;
        }
        llama.step_enqueue(params, &mut state, &step.tokens, 1, false)?;
        let (buf, span) = state.logits().ok_or_else(missing)?;
        let logits = be.read_async(buf, span).await?;
        run.accept(&logits, &mut on_token)?;
    }
    run.finish()
}

impl AnyDecoder<'_> {
    /// [`generate_async`] on whichever backend holds the weights.
    pub async fn generate_async(
        &self,
        tokenizer: &Tokenizer,
        req: &GenerateRequest,
        on_token: impl FnMut(TokenEvent),
    ) -> Result<Vec<Generation>, ModelError> {
        match self {
            AnyDecoder::Cpu(d) => generate_async(d, tokenizer, req, on_token).await,
            #[cfg(feature = "wgpu")]
            AnyDecoder::Wgpu(d) => generate_async(d, tokenizer, req, on_token).await,
        }
    }
}

/// One decoding step a [`Sampling`] asks of its model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SamplingStep {
    /// Rows of the batch to keep, in order, before the step (those still
    /// running); `None` when every row runs on.
    pub keep: Option<Vec<usize>>,
    /// The token to append to each (kept) row.
    pub tokens: Vec<u32>,
}

/// Batched sampling as a state machine, apart from the model: for drivers
/// that cannot block on a model step (WebGPU in a browser reads results
/// back asynchronously). [`generate`] is this machine driven by a
/// [`Decoder`]; any other driver that hands it the same logits gets the
/// same tokens.
///
/// Drive it as: [`Sampling::start`] with each prompt's prefill logits,
/// then while [`Sampling::next_step`] yields a step, apply it to the model
/// and pass the step's logits to [`Sampling::accept`]; then
/// [`Sampling::finish`].
pub struct Sampling<'t> {
    tokenizer: &'t Tokenizer,
    params: SamplingParams,
    knobs: Knobs,
    eos: Vec<u32>,
    vocab: usize,
    prompts: usize,
    rows: Vec<Row>,
    /// Rows of the batch still running, as indices into `rows` (ascending:
    /// exactly the rows not done).
    active: Vec<usize>,
}

impl<'t> Sampling<'t> {
    /// Checks the request (knobs in range, no empty prompt) and sets up its
    /// stop tokens: the model's and the tokenizer's EOS ids unless
    /// `ignore_eos`, plus `stop_token_ids`.
    pub fn new(
        config: &ModelConfig,
        tokenizer: &'t Tokenizer,
        req: &GenerateRequest,
    ) -> Result<Sampling<'t>, ModelError> {
        let p = &req.params;
        p.validate()?;
        if let Some(pi) = req.prompts.iter().position(Vec::is_empty) {
            return Err(ModelError::Invalid(format!("prompt {pi} is empty")));
        }
        let mut eos: Vec<u32> = Vec::new();
        if !p.ignore_eos {
            eos.extend(&config.eos_token_ids);
            eos.extend(tokenizer.eos_ids());
        }
        eos.extend(&p.stop_token_ids);
        let knobs = Knobs {
            temperature: p.temperature,
            top_p: p.top_p,
            top_k: p.top_k,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
        };
        Ok(Sampling {
            tokenizer,
            params: p.clone(),
            knobs,
            eos,
            vocab: config.vocab_size,
            prompts: req.prompts.len(),
            rows: Vec::new(),
            active: Vec::new(),
        })
    }

    /// Samples every row's first token from its prompt's prefill logits
    /// (one slice per prompt, in order). The batch then holds each
    /// prompt's row `n` times, prompt by prompt.
    pub fn start(
        &mut self,
        first: &[&[f32]],
        on_token: &mut impl FnMut(TokenEvent),
    ) -> Result<(), ModelError> {
        if first.len() != self.prompts || first.iter().any(|l| l.len() != self.vocab) {
            return Err(ModelError::Invalid(format!(
                "prefill returned {} logit rows of lengths {:?} for {} prompts of {}",
                first.len(),
                first.iter().map(|l| l.len()).collect::<Vec<_>>(),
                self.prompts,
                self.vocab
            )));
        }
        if !self.rows.is_empty() {
            return Err(ModelError::Invalid("sampling already started".into()));
        }
        let p = &self.params;
        for pi in 0..first.len() {
            for s in 0..p.n {
                self.rows.push(Row {
                    prompt: pi,
                    sample: s,
                    rng: Rng::new(row_seed(p.seed, p.first_prompt + pi, s)),
                    ids: Vec::new(),
                    logprobs: Vec::new(),
                    counts: Vec::new(),
                    done: None,
                });
            }
        }
        let mut work: Vec<(&mut Row, &[f32])> = self
            .rows
            .iter_mut()
            .map(|r| {
                let l = first[r.prompt];
                (r, l)
            })
            .collect();
        sample_rows(&mut work, &self.knobs);
        for (row, _) in work {
            on_token(row.event());
            check_done(row, &self.eos, &self.params, self.tokenizer)?;
        }
        self.active = (0..self.rows.len()).collect();
        Ok(())
    }

    /// The next decoding step, or `None` when every sample has ended.
    pub fn next_step(&mut self) -> Option<SamplingStep> {
        let keep: Vec<usize> = (0..self.active.len())
            .filter(|&j| self.rows[self.active[j]].done.is_none())
            .collect();
        if keep.is_empty() {
            self.active.clear();
            return None;
        }
        let keep = if keep.len() != self.active.len() {
            self.active = keep.iter().map(|&j| self.active[j]).collect();
            Some(keep)
        } else {
            None
        };
        let tokens = self
            .active
            .iter()
            .map(|&r| *self.rows[r].ids.last().unwrap_or(&0))
            .collect();
        Some(SamplingStep { keep, tokens })
    }

    /// Samples each running row's next token from the step's logits
    /// (`[rows, vocab]`, row-major, rows as [`Sampling::next_step`] left them).
    pub fn accept(
        &mut self,
        logits: &[f32],
        on_token: &mut impl FnMut(TokenEvent),
    ) -> Result<(), ModelError> {
        let v = self.vocab;
        if logits.len() != self.active.len() * v {
            return Err(ModelError::Invalid(format!(
                "decode step returned {} logits for {} rows of {v}",
                logits.len(),
                self.active.len()
            )));
        }
        // The running rows, in order, are the batch's rows.
        let mut work: Vec<(&mut Row, &[f32])> = self
            .rows
            .iter_mut()
            .filter(|r| r.done.is_none())
            .zip(logits.chunks(v))
            .collect();
        sample_rows(&mut work, &self.knobs);
        for (row, _) in work {
            on_token(row.event());
            check_done(row, &self.eos, &self.params, self.tokenizer)?;
        }
        Ok(())
    }

    /// Whether every choice is the most likely token with nothing added to
    /// the logits (temperature 0, no penalties): then a step's result is
    /// each row's greedy pick, which a device can compute
    /// ([`Sampling::accept_picks`]).
    pub fn greedy(&self) -> bool {
        let p = &self.params;
        p.temperature <= 1e-5 && p.presence_penalty == 0.0 && p.frequency_penalty == 0.0
    }

    /// [`Sampling::accept`] for a greedy run ([`Sampling::greedy`]) given
    /// each running row's most likely token and its log-probability.
    pub fn accept_picks(
        &mut self,
        picks: &[(u32, f32)],
        on_token: &mut impl FnMut(TokenEvent),
    ) -> Result<(), ModelError> {
        if !self.greedy() {
            return Err(ModelError::Invalid(
                "greedy picks given to a sampling run that is not greedy".into(),
            ));
        }
        if picks.len() != self.active.len() || picks.iter().any(|&(t, _)| t as usize >= self.vocab)
        {
            return Err(ModelError::Invalid(format!(
                "greedy step returned {} picks for {} rows of {}",
                picks.len(),
                self.active.len(),
                self.vocab
            )));
        }
        let rows = self.rows.iter_mut().filter(|r| r.done.is_none());
        for (row, &(t, lp)) in rows.zip(picks) {
            row.push(t, lp);
            on_token(row.event());
            check_done(row, &self.eos, &self.params, self.tokenizer)?;
        }
        Ok(())
    }

    /// Every sample, ordered by prompt, then sample: its ids, log-probs and
    /// decoded text (cut before a stop string).
    pub fn finish(self) -> Result<Vec<Generation>, ModelError> {
        let mut out = Vec::with_capacity(self.rows.len());
        for row in self.rows {
            let body: &[u32] = match row.ids.last() {
                Some(t) if self.eos.contains(t) => &row.ids[..row.ids.len() - 1],
                _ => &row.ids,
            };
            let mut text = self.tokenizer.decode(body, true)?;
            if let Some(cut) = self
                .params
                .stop
                .iter()
                .filter_map(|s| text.find(s.as_str()))
                .min()
            {
                text.truncate(cut);
            }
            out.push(Generation {
                prompt_index: row.prompt,
                sample_index: row.sample,
                token_ids: row.ids,
                logprobs: row.logprobs,
                text,
                finish_reason: row.done.unwrap_or(FinishReason::Length),
            });
        }
        Ok(out)
    }
}

fn check_done(
    row: &mut Row,
    eos: &[u32],
    p: &SamplingParams,
    tok: &Tokenizer,
) -> Result<(), ModelError> {
    let last = *row.ids.last().unwrap_or(&0);
    if eos.contains(&last) {
        row.done = Some(FinishReason::Stop);
    } else if !p.stop.is_empty() {
        let from = row.ids.len().saturating_sub(STOP_WINDOW);
        let tail = tok.decode(&row.ids[from..], true)?;
        if p.stop.iter().any(|s| tail.contains(s.as_str())) {
            row.done = Some(FinishReason::Stop);
        }
    }
    if row.done.is_none() && row.ids.len() >= p.max_new_tokens {
        row.done = Some(FinishReason::Length);
    }
    Ok(())
}
