//! The Llama-family decoder: one set of weights, a differentiable training
//! forward and a cached rollout forward.

use std::collections::HashMap;

use candle_core::{DType, Device, IndexOp, Tensor, Var};

use super::ModelError;
use super::config::ModelConfig;
use super::ops;

/// Longest position table built up front (longer contexts error out).
const MAX_ROPE_POSITIONS: usize = 32_768;

struct Layer {
    input_norm: Var,
    q: Var,
    q_bias: Option<Var>,
    k: Var,
    k_bias: Option<Var>,
    v: Var,
    v_bias: Option<Var>,
    o: Var,
    post_norm: Var,
    gate: Var,
    up: Var,
    down: Var,
}

impl Layer {
    /// The layer's weights in [`parameter_shapes`] order.
    fn vars(&self) -> Vec<&Var> {
        let mut out = vec![&self.input_norm, &self.q];
        out.extend(&self.q_bias);
        out.push(&self.k);
        out.extend(&self.k_bias);
        out.push(&self.v);
        out.extend(&self.v_bias);
        out.extend([&self.o, &self.post_norm, &self.gate, &self.up, &self.down]);
        out
    }

    /// Takes a layer's weights from `next`, in [`parameter_shapes`] order.
    fn from_vars(
        next: &mut impl FnMut() -> Result<Var, ModelError>,
        bias: bool,
    ) -> Result<Layer, ModelError> {
        let bias_var = |next: &mut dyn FnMut() -> Result<Var, ModelError>| {
            if bias { next().map(Some) } else { Ok(None) }
        };
        Ok(Layer {
            input_norm: next()?,
            q: next()?,
            q_bias: bias_var(next)?,
            k: next()?,
            k_bias: bias_var(next)?,
            v: next()?,
            v_bias: bias_var(next)?,
            o: next()?,
            post_norm: next()?,
            gate: next()?,
            up: next()?,
            down: next()?,
        })
    }
}

/// Which form of the shared layer arithmetic runs: the differentiable ops
/// (training) or the fused ones (rollouts).
#[derive(Clone, Copy)]
enum Path {
    Train,
    Rollout,
}

impl Path {
    fn linear(self, x: &Tensor, w: &Tensor, b: Option<&Var>) -> candle_core::Result<Tensor> {
        let b = b.map(|v| v.as_tensor());
        match self {
            Path::Train => ops::linear(x, w, b),
            Path::Rollout => ops::linear_fast(x, w, b),
        }
    }

    fn norm(self, x: &Tensor, w: &Tensor, eps: f64) -> candle_core::Result<Tensor> {
        match self {
            Path::Train => ops::rms_norm_train(x, w, eps),
            Path::Rollout => ops::rms_norm_fast(x, w, eps),
        }
    }

    fn rope(self, x: &Tensor, cos: &Tensor, sin: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Path::Train => ops::rope_train(x, cos, sin)?.contiguous(),
            Path::Rollout => ops::rope_fast(x, cos, sin),
        }
    }
}

/// Batch, new positions, query heads, key/value heads, head width.
#[derive(Clone, Copy)]
struct Dims {
    b: usize,
    t: usize,
    nh: usize,
    nkv: usize,
    hd: usize,
}

impl Layer {
    /// Normalised input → rotated queries and keys `[B, H, T, d]`, values
    /// `[B, KV, T, d]` (all contiguous).
    fn qkv(
        &self,
        x: &Tensor,
        d: Dims,
        cos: &Tensor,
        sin: &Tensor,
        eps: f64,
        path: Path,
    ) -> candle_core::Result<(Tensor, Tensor, Tensor)> {
        let a = path.norm(x, &self.input_norm, eps)?;
        let proj = |w: &Var, bias: Option<&Var>, heads: usize| -> candle_core::Result<Tensor> {
            path.linear(&a, w, bias)?
                .reshape((d.b, d.t, heads, d.hd))?
                .transpose(1, 2)
        };
        let q = path.rope(&proj(&self.q, self.q_bias.as_ref(), d.nh)?, cos, sin)?;
        let k = path.rope(&proj(&self.k, self.k_bias.as_ref(), d.nkv)?, cos, sin)?;
        let v = proj(&self.v, self.v_bias.as_ref(), d.nkv)?.contiguous()?;
        Ok((q, k, v))
    }

    /// The attention output projection and the SwiGLU MLP, each with its residual.
    fn finish(&self, x: Tensor, ctx: &Tensor, eps: f64, path: Path) -> candle_core::Result<Tensor> {
        let x = (x + path.linear(ctx, &self.o, None)?)?;
        let m = path.norm(&x, &self.post_norm, eps)?;
        let g = path.linear(&m, &self.gate, None)?;
        let u = path.linear(&m, &self.up, None)?;
        x + path.linear(&ops::swiglu(&g, &u)?, &self.down, None)?
    }
}

/// A decoder whose parameters are candle [`Var`]s (trainable in place).
pub struct Model {
    cfg: ModelConfig,
    device: Device,
    dtype: DType,
    embed: Var,
    layers: Vec<Layer>,
    norm: Var,
    lm_head: Option<Var>,
    cos: Tensor,
    sin: Tensor,
}

/// The key/value cache of a batch of sequences being sampled. Rows are
/// left-padded to a common length; pad slots are masked out.
pub struct RolloutState {
    kv: Vec<(Tensor, Tensor)>,
    len: usize,
    cap: usize,
    pad: Vec<usize>,
    next_pos: Vec<usize>,
}

impl RolloutState {
    /// Number of sequences (rows).
    pub fn batch(&self) -> usize {
        self.pad.len()
    }

    /// Filled length of the cache (including left padding).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing has been cached yet.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Keeps only the listed rows (in that order); finished sequences leave
    /// the batch so later steps do not compute them.
    pub fn select(&mut self, rows: &[usize]) -> Result<(), ModelError> {
        if rows.is_empty() {
            return Err(ModelError::Invalid("select: no rows".into()));
        }
        let dev = self.kv[0].0.device().clone();
        let idx = Tensor::from_vec(
            rows.iter().map(|&r| r as u32).collect::<Vec<_>>(),
            rows.len(),
            &dev,
        )?;
        for (k, v) in self.kv.iter_mut() {
            *k = k.index_select(&idx, 0)?;
            *v = v.index_select(&idx, 0)?;
        }
        self.pad = rows.iter().map(|&r| self.pad[r]).collect();
        self.next_pos = rows.iter().map(|&r| self.next_pos[r]).collect();
        Ok(())
    }

    /// Builds a batch from single-sequence states, each repeated `n` times
    /// (the n samples of one prompt share its prefill), with room for `extra`
    /// more tokens.
    pub fn merge(
        parts: &[(&RolloutState, usize)],
        extra: usize,
    ) -> Result<RolloutState, ModelError> {
        let first = parts
            .first()
            .ok_or_else(|| ModelError::Invalid("merge: no states".into()))?
            .0;
        let longest = parts.iter().map(|(s, _)| s.len).max().unwrap_or(0);
        let cap = longest + extra;
        let n_layers = first.kv.len();
        let mut kv = Vec::with_capacity(n_layers);
        for l in 0..n_layers {
            let (b0, h, _, d) = first.kv[l].0.dims4()?;
            let _ = b0;
            let mut ks = Vec::new();
            let mut vs = Vec::new();
            for (s, n) in parts {
                if s.batch() != 1 {
                    return Err(ModelError::Invalid(
                        "merge: states must hold one sequence".into(),
                    ));
                }
                let (k, v) = &s.kv[l];
                let k = k.narrow(2, 0, s.len)?;
                let v = v.narrow(2, 0, s.len)?;
                let padn = longest - s.len;
                let (k, v) = if padn > 0 {
                    let z = Tensor::zeros((1, h, padn, d), k.dtype(), k.device())?;
                    (Tensor::cat(&[&z, &k], 2)?, Tensor::cat(&[&z, &v], 2)?)
                } else {
                    (k, v)
                };
                for _ in 0..*n {
                    ks.push(k.clone());
                    vs.push(v.clone());
                }
            }
            let k = Tensor::cat(&ks, 0)?;
            let v = Tensor::cat(&vs, 0)?;
            let rows = k.dim(0)?;
            let kbuf = Tensor::zeros((rows, h, cap, d), k.dtype(), k.device())?;
            let vbuf = Tensor::zeros((rows, h, cap, d), v.dtype(), v.device())?;
            kbuf.slice_set(&k.contiguous()?, 2, 0)?;
            vbuf.slice_set(&v.contiguous()?, 2, 0)?;
            kv.push((kbuf, vbuf));
        }
        let mut pad = Vec::new();
        let mut next_pos = Vec::new();
        for (s, n) in parts {
            for _ in 0..*n {
                pad.push(longest - s.len + s.pad[0]);
                next_pos.push(s.next_pos[0]);
            }
        }
        Ok(RolloutState {
            kv,
            len: longest,
            cap,
            pad,
            next_pos,
        })
    }
}

/// f64 models keep f64 outputs (gradient checks); others give f32.
fn wide(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

fn var(t: Tensor, dtype: DType) -> Result<Var, ModelError> {
    Ok(Var::from_tensor(&t.to_dtype(dtype)?)?)
}

impl Model {
    /// Builds a model from tensors named as in Hugging Face checkpoints
    /// (`model.layers.N.self_attn.q_proj.weight`, ...), checking every shape.
    pub fn from_tensors(
        cfg: ModelConfig,
        mut tensors: HashMap<String, Tensor>,
        device: &Device,
        dtype: DType,
        origin: &str,
    ) -> Result<Self, ModelError> {
        let mut vars = Vec::new();
        for (name, shape) in parameter_shapes(&cfg) {
            let t = tensors.remove(&name).ok_or_else(|| {
                ModelError::Format(format!("{origin}: tensor {name:?} is missing"))
            })?;
            if t.dims() != shape.as_slice() {
                return Err(ModelError::Format(format!(
                    "{origin}: tensor {name:?} has shape {:?}, expected {shape:?}",
                    t.dims()
                )));
            }
            vars.push(var(t.to_device(device)?, dtype)?);
        }
        let mut vars = vars.into_iter();
        // parameter_shapes lists exactly the weights taken here, in this order.
        let mut next = || {
            vars.next()
                .ok_or_else(|| ModelError::Format(format!("{origin}: too few tensors")))
        };
        let embed = next()?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|_| Layer::from_vars(&mut next, cfg.attention_bias))
            .collect::<Result<Vec<_>, _>>()?;
        let norm = next()?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            Some(next()?)
        };
        let (cos, sin) = rope_tables(&cfg, device)?;
        Ok(Model {
            cfg,
            device: device.clone(),
            dtype,
            embed,
            layers,
            norm,
            lm_head,
            cos,
            sin,
        })
    }

    /// A randomly initialised model (normal(0, 0.02) weights, unit norms) for tests and demos.
    pub fn random(
        cfg: ModelConfig,
        seed: u64,
        device: &Device,
        dtype: DType,
    ) -> Result<Self, ModelError> {
        cfg.validate("random model")?;
        let mut rng = crate::eval::Rng::new(seed);
        let mut tensors = HashMap::new();
        for (name, shape) in parameter_shapes(&cfg) {
            let n: usize = shape.iter().product();
            let data: Vec<f32> = if name.ends_with("norm.weight") {
                vec![1.0; n]
            } else if name.ends_with(".bias") {
                vec![0.0; n]
            } else {
                (0..n).map(|_| 0.02 * normal(&mut rng)).collect()
            };
            tensors.insert(name, Tensor::from_vec(data, shape, &Device::Cpu)?);
        }
        Model::from_tensors(cfg, tensors, device, dtype, "random model")
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Where the weights live.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// The weights' dtype.
    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// Every trainable parameter with its Hugging Face name, in checkpoint order.
    pub fn named_parameters(&self) -> Vec<(String, &Var)> {
        let mut vars = vec![&self.embed];
        for layer in &self.layers {
            vars.extend(layer.vars());
        }
        vars.push(&self.norm);
        vars.extend(&self.lm_head);
        let names = parameter_shapes(&self.cfg);
        // parameter_shapes and Layer::vars list the same weights in the same
        // order; a count mismatch means one of them was changed alone.
        debug_assert_eq!(names.len(), vars.len(), "parameter list out of step");
        names.into_iter().map(|(name, _)| name).zip(vars).collect()
    }

    /// A deep copy with independent weights (e.g. the frozen reference model).
    pub fn try_clone(&self) -> Result<Model, ModelError> {
        let mut tensors = HashMap::new();
        for (name, v) in self.named_parameters() {
            tensors.insert(name, v.as_tensor().copy()?);
        }
        Model::from_tensors(
            self.cfg.clone(),
            tensors,
            &self.device,
            self.dtype,
            "model copy",
        )
    }

    fn head(&self) -> &Tensor {
        match &self.lm_head {
            Some(h) => h.as_tensor(),
            None => self.embed.as_tensor(),
        }
    }

    fn check_ids(&self, ids: &[u32]) -> Result<(), ModelError> {
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({} tokens)",
                self.cfg.vocab_size
            )));
        }
        Ok(())
    }

    /// Training forward over right-padded `[B, T]` token ids: the logits
    /// `[B, T, V]` (f32), differentiable with respect to every parameter.
    pub fn logits_train(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        let h = self.hidden_train(ids)?;
        Ok(ops::linear(&h, self.head(), None)?.to_dtype(wide(self.dtype))?)
    }

    /// Differentiable per-token log-probabilities `[B, T-1]` (f32):
    /// entry `t` is log p(ids[t+1] | ids[..=t]).
    pub fn token_logprobs(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        self.token_logprobs_from(ids, 0)
    }

    /// Like [`Model::token_logprobs`] for positions `from..T-1` only (entry
    /// `t` is log p(ids[from+t+1] | ids[..=from+t])): the output head and
    /// its softmax run only where a loss is taken, e.g. on responses after a
    /// shared prompt length, which saves most of the logits' memory.
    pub fn token_logprobs_from(&self, ids: &Tensor, from: usize) -> Result<Tensor, ModelError> {
        let (b, t) = ids.dims2()?;
        if t < 2 || from >= t - 1 {
            return Err(ModelError::Invalid(format!(
                "token_logprobs needs at least 2 tokens and from ({from}) < T - 1 ({})",
                t.saturating_sub(1)
            )));
        }
        let n = t - 1 - from;
        let h = self.hidden_train(ids)?.narrow(1, from, n)?;
        let logits = ops::linear(&h, self.head(), None)?;
        let lp = ops::log_softmax_train(&logits)?;
        let targets = ids.narrow(1, from + 1, n)?.contiguous()?.unsqueeze(2)?;
        Ok(lp.gather(&targets, 2)?.reshape((b, n))?)
    }

    fn hidden_train(&self, ids: &Tensor) -> Result<Tensor, ModelError> {
        let (b, t) = ids.dims2()?;
        self.check_ids(&ids.flatten_all()?.to_vec1::<u32>()?)?;
        if t > self.cos.dim(0)? {
            return Err(ModelError::Invalid(format!(
                "sequence of {t} tokens is longer than the position table"
            )));
        }
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let rep = nh / nkv;
        let mut x = self
            .embed
            .as_tensor()
            .index_select(&ids.flatten_all()?, 0)?
            .reshape((b, t, cfg.hidden_size))?;
        let cos = self.cos.narrow(0, 0, t)?.unsqueeze(0)?;
        let sin = self.sin.narrow(0, 0, t)?.unsqueeze(0)?;
        let mask = causal_mask(t, t, 0, &self.device)?.to_dtype(self.dtype)?;
        let scale = 1.0 / (hd as f64).sqrt();
        let dims = Dims { b, t, nh, nkv, hd };
        for layer in &self.layers {
            let (q, k, v) = layer.qkv(&x, dims, &cos, &sin, cfg.rms_norm_eps, Path::Train)?;
            // Grouped-query attention without copying K/V: the `rep` query
            // heads that share a key/value head are stacked along time.
            let qg = q.reshape((b, nkv, rep * t, hd))?;
            let scores = (qg.matmul(&k.t()?)? * scale)?.reshape((b, nh, t, t))?;
            let probs = ops::softmax_train(&scores.broadcast_add(&mask)?)?;
            let ctx = probs
                .reshape((b, nkv, rep * t, t))?
                .matmul(&v)?
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            x = layer.finish(x, &ctx, cfg.rms_norm_eps, Path::Train)?;
        }
        Ok(ops::rms_norm_train(&x, &self.norm, cfg.rms_norm_eps)?)
    }

    /// An empty cache for `batch` rows with room for `cap` tokens.
    pub fn new_state(&self, batch: usize, cap: usize) -> Result<RolloutState, ModelError> {
        let (nkv, hd) = (self.cfg.num_key_value_heads, self.cfg.head_dim);
        let mut kv = Vec::with_capacity(self.layers.len());
        for _ in &self.layers {
            kv.push((
                Tensor::zeros((batch, nkv, cap, hd), self.dtype, &self.device)?,
                Tensor::zeros((batch, nkv, cap, hd), self.dtype, &self.device)?,
            ));
        }
        Ok(RolloutState {
            kv,
            len: 0,
            cap,
            pad: vec![0; batch],
            next_pos: vec![0; batch],
        })
    }

    /// Runs one prompt through the rollout path into a fresh cache with room
    /// for `extra` more tokens; returns the cache and the last position's
    /// logits (f32).
    pub fn prefill(
        &self,
        ids: &[u32],
        extra: usize,
    ) -> Result<(RolloutState, Vec<f32>), ModelError> {
        if ids.is_empty() {
            return Err(ModelError::Invalid("empty prompt".into()));
        }
        let mut state = self.new_state(1, ids.len() + extra)?;
        let logits = self.step(&mut state, &[ids.to_vec()], false)?;
        Ok((state, logits.i(0)?.i(0)?.to_vec1::<f32>()?))
    }

    /// Appends one token per row and returns the next-token logits `[B, V]` (f32).
    pub fn decode(&self, state: &mut RolloutState, tokens: &[u32]) -> Result<Tensor, ModelError> {
        let rows: Vec<Vec<u32>> = tokens.iter().map(|&t| vec![t]).collect();
        Ok(self.step(state, &rows, false)?.squeeze(1)?)
    }

    /// Log-probabilities of each row's tokens after the first, through the
    /// rollout path (no gradient): entry `t` of row `r` is
    /// log p(rows[r][t+1] | rows[r][..=t]). Rows may differ in length.
    pub fn sequence_logprobs(&self, rows: &[Vec<u32>]) -> Result<Vec<Vec<f32>>, ModelError> {
        let longest = rows.iter().map(Vec::len).max().unwrap_or(0);
        if longest < 2 {
            return Ok(rows.iter().map(|_| Vec::new()).collect());
        }
        // Right padding: causal attention keeps pads from touching real tokens.
        let padded: Vec<Vec<u32>> = rows
            .iter()
            .map(|r| {
                let mut p = r.clone();
                p.resize(longest, 0);
                p
            })
            .collect();
        let logits = self.logits_fast(&padded)?;
        let lsm = candle_nn::ops::log_softmax(&logits.narrow(1, 0, longest - 1)?, 2)?;
        let targets = Tensor::from_vec(
            padded
                .iter()
                .flat_map(|r| r[1..].to_vec())
                .collect::<Vec<u32>>(),
            (rows.len(), longest - 1, 1),
            &self.device,
        )?;
        let lp: Vec<Vec<f32>> = lsm.gather(&targets, 2)?.squeeze(2)?.to_vec2()?;
        Ok(lp
            .into_iter()
            .zip(rows)
            .map(|(mut v, r)| {
                v.truncate(r.len().saturating_sub(1));
                v
            })
            .collect())
    }

    /// Rollout-path logits for every position of equal-length rows `[B, T, V]`
    /// (no gradient; used to check the two paths agree and for scoring).
    pub fn logits_fast(&self, rows: &[Vec<u32>]) -> Result<Tensor, ModelError> {
        let t = rows.first().map(Vec::len).unwrap_or(0);
        let mut state = self.new_state(rows.len(), t)?;
        self.step(&mut state, rows, true)
    }

    /// The cached forward: appends `rows` (equal lengths) to every row of the
    /// cache; returns logits for the last (or every) new position, f32.
    fn step(
        &self,
        state: &mut RolloutState,
        rows: &[Vec<u32>],
        all: bool,
    ) -> Result<Tensor, ModelError> {
        let b = rows.len();
        if b != state.batch() {
            return Err(ModelError::Invalid(format!(
                "{b} rows for a cache of {}",
                state.batch()
            )));
        }
        let t = rows[0].len();
        if t == 0 || rows.iter().any(|r| r.len() != t) {
            return Err(ModelError::Invalid(
                "rows must be non-empty and of equal length".into(),
            ));
        }
        if state.len + t > state.cap {
            return Err(ModelError::Invalid(format!(
                "cache full: {} + {t} tokens exceed its capacity {}",
                state.len, state.cap
            )));
        }
        let flat: Vec<u32> = rows.concat();
        self.check_ids(&flat)?;
        let cfg = &self.cfg;
        let (nh, nkv, hd) = (
            cfg.num_attention_heads,
            cfg.num_key_value_heads,
            cfg.head_dim,
        );
        let rep = nh / nkv;
        let max_pos = self.cos.dim(0)?;
        let mut pos = Vec::with_capacity(b * t);
        for r in 0..b {
            for j in 0..t {
                let p = state.next_pos[r] + j;
                if p >= max_pos {
                    return Err(ModelError::Invalid(format!(
                        "position {p} exceeds the position table ({max_pos})"
                    )));
                }
                pos.push(p as u32);
            }
        }
        let pos = Tensor::from_vec(pos, b * t, &self.device)?;
        let cos = self.cos.index_select(&pos, 0)?.reshape((b, t, hd / 2))?;
        let sin = self.sin.index_select(&pos, 0)?.reshape((b, t, hd / 2))?;
        let l_new = state.len + t;
        let mask = if t == 1 && state.pad.iter().all(|&p| p == 0) {
            None
        } else {
            let mut m = vec![0f32; b * t * l_new];
            for r in 0..b {
                for i in 0..t {
                    for j in 0..l_new {
                        if j < state.pad[r] || j > state.len + i {
                            m[(r * t + i) * l_new + j] = f32::NEG_INFINITY;
                        }
                    }
                }
            }
            Some(Tensor::from_vec(m, (b, 1, 1, t, l_new), &self.device)?.to_dtype(self.dtype)?)
        };
        let ids = Tensor::from_vec(flat, b * t, &self.device)?;
        let mut x =
            self.embed
                .as_tensor()
                .index_select(&ids, 0)?
                .reshape((b, t, cfg.hidden_size))?;
        let scale = 1.0 / (hd as f64).sqrt();
        let dims = Dims { b, t, nh, nkv, hd };
        for (layer, (kbuf, vbuf)) in self.layers.iter().zip(state.kv.iter()) {
            let (q, k, v) = layer.qkv(&x, dims, &cos, &sin, cfg.rms_norm_eps, Path::Rollout)?;
            kbuf.slice_set(&k, 2, state.len)?;
            vbuf.slice_set(&v, 2, state.len)?;
            let keys = kbuf.narrow(2, 0, l_new)?;
            let vals = vbuf.narrow(2, 0, l_new)?;
            let qg = q.reshape((b, nkv, rep * t, hd))?;
            let mut scores = (qg.matmul(&keys.t()?)? * scale)?;
            if let Some(m) = &mask {
                scores = scores
                    .reshape((b, nkv, rep, t, l_new))?
                    .broadcast_add(m)?
                    .reshape((b, nkv, rep * t, l_new))?;
            }
            let probs = candle_nn::ops::softmax_last_dim(&scores.to_dtype(wide(self.dtype))?)?
                .to_dtype(self.dtype)?;
            let ctx = probs
                .matmul(&vals)?
                .reshape((b, nh, t, hd))?
                .transpose(1, 2)?
                .reshape((b, t, nh * hd))?;
            x = layer.finish(x, &ctx, cfg.rms_norm_eps, Path::Rollout)?;
        }
        state.len = l_new;
        for p in state.next_pos.iter_mut() {
            *p += t;
        }
        let x = if all { x } else { x.narrow(1, t - 1, 1)? };
        let x = ops::rms_norm_fast(&x, &self.norm, cfg.rms_norm_eps)?;
        Ok(ops::linear_fast(&x, self.head(), None)?.to_dtype(DType::F32)?)
    }
}

/// Hugging Face names and shapes of every parameter of a configuration, in
/// checkpoint order (named in one place: [`crate::engine::Layout`]).
pub fn parameter_shapes(cfg: &ModelConfig) -> Vec<(String, Vec<usize>)> {
    crate::engine::Layout::new(cfg)
        .params
        .into_iter()
        .map(|p| (p.name, p.shape))
        .collect()
}

/// Standard normal sample (Box–Muller) from the crate's seeded generator.
fn normal(rng: &mut crate::eval::Rng) -> f32 {
    let u1 = ((rng.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64;
    let u2 = ((rng.next_u64() >> 11) as f64) / (1u64 << 53) as f64;
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// cos/sin tables `[positions, head_dim/2]` (f32), computed in f64.
fn rope_tables(cfg: &ModelConfig, device: &Device) -> Result<(Tensor, Tensor), ModelError> {
    let n = cfg.max_position_embeddings.clamp(1, MAX_ROPE_POSITIONS);
    let inv = cfg.rope_inv_freq();
    let half = inv.len();
    let mut cos = Vec::with_capacity(n * half);
    let mut sin = Vec::with_capacity(n * half);
    for p in 0..n {
        for f in &inv {
            // transformers computes the angle in f32 (inv_freq f32 × position).
            let angle = (*f as f32 * p as f32) as f64;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    Ok((
        Tensor::from_vec(cos, (n, half), device)?,
        Tensor::from_vec(sin, (n, half), device)?,
    ))
}

/// Additive causal mask `[t, l]` for `t` new queries after `offset` cached keys.
fn causal_mask(t: usize, l: usize, offset: usize, device: &Device) -> Result<Tensor, ModelError> {
    let mut m = vec![0f32; t * l];
    for i in 0..t {
        for j in (offset + i + 1)..l {
            m[i * l + j] = f32::NEG_INFINITY;
        }
    }
    Ok(Tensor::from_vec(m, (t, l), device)?)
}
