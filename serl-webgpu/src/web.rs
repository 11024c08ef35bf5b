//! The JavaScript API (wasm-bindgen): `SelfPlay.load(...)` puts a model on
//! WebGPU (or the CPU), then `writeProblems` and `answer` run the halves of
//! a self-play round, each a promise, with a callback per generated token.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use serl_core::engine::{EngineDevice, Wgpu};
use serl_core::eval::Rng;
use serl_core::model::{AnyDecoder, Tokenizer, generate::TokenEvent};
use serl_core::model::{HfFiles, LoadOptions, load_model_from_memory};
use serl_core::train::{Config, Scorer, parse_examples};
use wasm_bindgen::prelude::*;

use crate::round;

struct Inner {
    scorer: Scorer,
    tok: Tokenizer,
    cfg: Config,
    seeds: Vec<String>,
    /// Problems the model wrote that a vote kept (few-shot examples later).
    pool: RefCell<Vec<String>>,
    rng: RefCell<Rng>,
    /// A round is running: a second call is refused until it ends (one
    /// device queue, one RNG).
    busy: Cell<bool>,
}

impl Inner {
    fn player<'a>(&'a self, dec: &'a AnyDecoder<'a>) -> round::Player<'a> {
        round::Player {
            dec,
            tok: &self.tok,
            cfg: &self.cfg,
        }
    }
}

/// A model loaded for self-play in the page.
#[wasm_bindgen]
pub struct SelfPlay {
    inner: Rc<Inner>,
}

fn js(e: impl std::fmt::Display) -> JsValue {
    JsError::new(&e.to_string()).into()
}

/// A plain JavaScript object (not a `Map`) for a JSON value.
fn to_js(v: &serde_json::Value) -> Result<JsValue, JsValue> {
    use serde::Serialize;
    v.serialize(&serde_wasm_bindgen::Serializer::json_compatible())
        .map_err(js)
}

/// Calls `f(prompt_index, sample_index)` per token; a throwing callback is
/// ignored (the round goes on).
fn token_callback(f: Option<js_sys::Function>) -> impl FnMut(TokenEvent) {
    move |e: TokenEvent| {
        if let Some(f) = &f {
            let _ = f.call2(
                &JsValue::NULL,
                &JsValue::from(e.prompt_index as u32),
                &JsValue::from(e.sample_index as u32),
            );
        }
    }
}

/// Holds `busy` for a round; clears it when dropped.
struct Busy(Rc<Inner>);

impl Busy {
    fn take(inner: &Rc<Inner>) -> Result<Busy, JsValue> {
        if inner.busy.replace(true) {
            return Err(js("a round is already running on this model"));
        }
        Ok(Busy(Rc::clone(inner)))
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

#[wasm_bindgen]
impl SelfPlay {
    /// Loads a Hugging Face model from its files' contents (`config.json`,
    /// `model.safetensors`, `tokenizer.json`, and where the model has them
    /// `tokenizer_config.json` and `chat_template.jinja`), a SeRL
    /// configuration (TOML, as `serl train --config` reads: its sampling
    /// and filter settings are used; paths are ignored) and the seed
    /// problems (JSONL), onto `device`: `"webgpu"` (the browser's adapter)
    /// or `"cpu"`.
    #[allow(clippy::too_many_arguments)]
    pub async fn load(
        config_json: String,
        weights: Vec<u8>,
        tokenizer_json: String,
        tokenizer_config: Option<String>,
        chat_template: Option<String>,
        serl_toml: String,
        seeds_jsonl: String,
        device: String,
    ) -> Result<SelfPlay, JsValue> {
        let files = HfFiles {
            config_json: &config_json,
            safetensors: &weights,
            tokenizer_json: &tokenizer_json,
            tokenizer_config_json: tokenizer_config.as_deref(),
            chat_template: chat_template.as_deref(),
            origin: "model",
        };
        let (model, tok) = load_model_from_memory(&files, &LoadOptions::default()).map_err(js)?;
        drop(weights);
        let cfg = Config::from_toml(&serl_toml).map_err(js)?;
        let seeds: Vec<String> = parse_examples(&seeds_jsonl, "seeds.jsonl", false)
            .map_err(js)?
            .into_iter()
            .map(|e| e.problem)
            .collect();
        if seeds.is_empty() {
            return Err(js("seeds.jsonl: no problems"));
        }
        let scorer = match device.as_str() {
            "webgpu" => Scorer::on_wgpu(Wgpu::new_async(None).await.map_err(js)?, &model),
            "cpu" => Scorer::on(EngineDevice::Cpu, &model),
            other => return Err(js(format!("device {other:?}: use \"webgpu\" or \"cpu\""))),
        }
        .map_err(js)?;
        let rng = Rng::new(cfg.seed);
        Ok(SelfPlay {
            inner: Rc::new(Inner {
                scorer,
                tok,
                cfg,
                seeds,
                pool: RefCell::new(Vec::new()),
                rng: RefCell::new(rng),
                busy: Cell::new(false),
            }),
        })
    }

    /// The backend and adapter the model runs on: `cpu`, or `wgpu (…)`
    /// with the adapter's name (`BrowserWebGpu adapter` where the browser
    /// keeps it to itself).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> String {
        self.inner.scorer.backend_name()
    }

    /// The seed problems.
    #[wasm_bindgen(getter)]
    pub fn seeds(&self) -> Vec<String> {
        self.inner.seeds.clone()
    }

    /// Problems written earlier that a vote kept.
    #[wasm_bindgen(getter)]
    pub fn pool(&self) -> Vec<String> {
        self.inner.pool.borrow().clone()
    }

    /// Steps 1–3: the model writes problems from few-shot prompts until
    /// `need` pass the rule and diversity filters (one batch of
    /// completions). Resolves to `{written: [{text, status, reason,
    /// rouge_l}], tokens}`. `on_token(prompt, sample)` is called per token.
    #[wasm_bindgen(js_name = writeProblems)]
    pub fn write_problems(
        &self,
        need: usize,
        on_token: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let _busy = Busy::take(&inner)?;
            let mut rng = inner.rng.borrow().clone();
            let pool = inner.pool.borrow().clone();
            let dec = inner.scorer.decoder();
            let player = inner.player(&dec);
            let (written, tokens) = player
                .write_problems(
                    &inner.seeds,
                    &pool,
                    need,
                    &mut rng,
                    token_callback(on_token),
                )
                .await
                .map_err(js)?;
            *inner.rng.borrow_mut() = rng;
            to_js(&serde_json::json!({"written": written, "tokens": tokens}))
        })
    }

    /// Steps 4–6: `n` answers to each problem, a majority vote per problem
    /// and the difficulty filter's verdict; problems whose group is kept
    /// join the pool. Resolves to `{groups: [{problem, answers, extracted,
    /// rewards, majority, agreement, kept}], tokens}`.
    pub fn answer(
        &self,
        problems: Vec<String>,
        n: usize,
        on_token: Option<js_sys::Function>,
    ) -> js_sys::Promise {
        let inner = Rc::clone(&self.inner);
        wasm_bindgen_futures::future_to_promise(async move {
            let _busy = Busy::take(&inner)?;
            let mut rng = inner.rng.borrow().clone();
            let dec = inner.scorer.decoder();
            let player = inner.player(&dec);
            let (groups, tokens) = player
                .answer_and_vote(&problems, n, &mut rng, token_callback(on_token))
                .await
                .map_err(js)?;
            *inner.rng.borrow_mut() = rng;
            inner
                .pool
                .borrow_mut()
                .extend(groups.iter().filter(|g| g.kept).map(|g| g.problem.clone()));
            to_js(&serde_json::json!({"groups": groups, "tokens": tokens}))
        })
    }
}
