//! The Llama-family model driver (Llama 3.x, Qwen2/2.5 with q/k/v biases,
//! SmolLM2; GQA; tied or untied head): one forward and one backward,
//! written once against the [`Backend`] kernel list.

use super::kernels::{AttnDims, GradFn};
use super::{Backend, EngineError, Layout, Span};
use crate::model::ModelConfig;

/// Longest position table built (as the candle path's).
const MAX_ROPE_POSITIONS: usize = 32_768;

/// A batch of token rows and the positions whose next token is scored.
#[derive(Debug, Clone, Default)]
pub struct TokenBatch {
    /// `b × t` token ids, row-major.
    pub ids: Vec<u32>,
    /// Sequences.
    pub b: usize,
    /// Positions per sequence.
    pub t: usize,
    /// Left padding of each sequence (keys before it are masked and
    /// positions count from it); zeros for right-padded rows.
    pub pad: Vec<u32>,
    /// Scored positions: the flat index `s·t + i` whose hidden state predicts…
    pub rows: Vec<u32>,
    /// …this token.
    pub targets: Vec<u32>,
}

impl TokenBatch {
    /// Right-padded rows (pad id 0) scoring, for each sequence `s`, the
    /// tokens at indices `from[s]..len` (each predicted from the one before;
    /// `from[s] ≥ 1`).
    pub fn right_padded(seqs: &[&[u32]], from: &[usize]) -> Result<TokenBatch, EngineError> {
        let b = seqs.len();
        let t = seqs.iter().map(|s| s.len()).max().unwrap_or(0);
        if b == 0 || t == 0 || from.len() != b {
            return Err(EngineError::Invalid(format!(
                "batch of {b} sequences (longest {t}) with {} start positions",
                from.len()
            )));
        }
        let mut ids = Vec::with_capacity(b * t);
        let (mut rows, mut targets) = (Vec::new(), Vec::new());
        for (s, (seq, &f)) in seqs.iter().zip(from).enumerate() {
            if f == 0 {
                return Err(EngineError::Invalid(format!(
                    "sequence {s}: the first token has no prediction to score"
                )));
            }
            ids.extend_from_slice(seq);
            ids.extend(std::iter::repeat_n(0, t - seq.len()));
            for i in f..seq.len() {
                rows.push((s * t + i - 1) as u32);
                targets.push(seq[i]);
            }
        }
        Ok(TokenBatch {
            ids,
            b,
            t,
            pad: vec![0; b],
            rows,
            targets,
        })
    }

    /// Sequences × positions.
    pub fn n(&self) -> usize {
        self.b * self.t
    }
}

/// What one layer's forward keeps for its backward. The MLP's inputs
/// (gate and up projections, 2 × intermediate per position: half of all
/// this) are not kept: the backward recomputes them from `x_mid`, bit for
/// bit, for two more matrix products per layer.
struct LayerActs<B: Backend> {
    x_mid: B::Buf,
    rstd1: B::Buf,
    rstd2: B::Buf,
    q: B::Buf,
    k: B::Buf,
    v: B::Buf,
    ctx: B::Buf,
    lse: B::Buf,
}

/// Activation and gradient memory for batches of up to `cap` positions,
/// allocated once and reused (grown when a larger batch comes). A training
/// arena keeps every layer's activations for the backward; an inference
/// arena ([`Llama::inference_activations`]) one layer's, reused by all.
pub struct Activations<B: Backend> {
    cap: usize,
    train: bool,
    /// Residual stream: the input of each layer, then the last output
    /// (inference: two buffers, alternating).
    stream: Vec<B::Buf>,
    /// One per layer (inference: one).
    layers: Vec<LayerActs<B>>,
    rstd_f: B::Buf,
    hf: B::Buf,
    // Scratch shared by all layers.
    norm: B::Buf,
    g: B::Buf,
    u: B::Buf,
    rstd_mlp: B::Buf,
    hsw: B::Buf,
    dx: B::Buf,
    dnorm: B::Buf,
    dhsw: B::Buf,
    dg: B::Buf,
    du: B::Buf,
    dq: B::Buf,
    dk: B::Buf,
    dv: B::Buf,
    dctx: B::Buf,
    tail: B::TailScratch,
}

impl<B: Backend> Activations<B> {
    fn new(be: &B, cfg: &ModelConfig, cap: usize, train: bool) -> Result<Self, EngineError> {
        let (h, i) = (cfg.hidden_size, cfg.intermediate_size);
        let nq = cfg.num_attention_heads * cfg.head_dim;
        let nkv = cfg.num_key_value_heads * cfg.head_dim;
        let z = |w: usize| be.zeros(cap * w);
        // Gradient scratch only where a backward runs.
        let zg = |w: usize| be.zeros(if train { cap * w } else { 0 });
        let kept = if train { cfg.num_hidden_layers } else { 1 };
        let mut stream = Vec::with_capacity(kept + 1);
        for _ in 0..=kept {
            stream.push(z(h)?);
        }
        let mut layers = Vec::with_capacity(kept);
        for _ in 0..kept {
            layers.push(LayerActs {
                x_mid: z(h)?,
                rstd1: z(1)?,
                rstd2: z(1)?,
                q: z(nq)?,
                k: z(nkv)?,
                v: z(nkv)?,
                ctx: z(nq)?,
                lse: z(cfg.num_attention_heads)?,
            });
        }
        Ok(Activations {
            cap,
            train,
            stream,
            layers,
            rstd_f: z(1)?,
            hf: z(h)?,
            norm: z(h)?,
            g: z(i)?,
            u: z(i)?,
            rstd_mlp: z(1)?,
            hsw: z(i)?,
            dx: zg(h)?,
            dnorm: zg(h)?,
            dhsw: zg(i)?,
            dg: zg(i)?,
            du: zg(i)?,
            dq: zg(nq)?,
            dk: zg(nkv)?,
            dv: zg(nkv)?,
            dctx: zg(nq)?,
            tail: be.tail_scratch(cfg.vocab_size, h)?,
        })
    }

    /// Positions this memory holds.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// The stream buffer that is layer `l`'s input (`l` = layers: the last
    /// output).
    fn slot(&self, l: usize) -> usize {
        if self.train { l } else { l % 2 }
    }
}

/// The widths the kernels are called with, from the configuration.
#[derive(Clone, Copy)]
pub(super) struct Widths {
    pub h: usize,
    pub im: usize,
    pub nh: usize,
    pub nkv: usize,
    pub hd: usize,
    pub nq: usize,
    pub nk: usize,
    pub eps: f64,
}

/// Where the attention block's input side writes.
pub(super) struct QkvOut<'a, B: Backend> {
    pub norm: &'a mut B::Buf,
    pub rstd: &'a mut B::Buf,
    pub q: &'a mut B::Buf,
    pub k: &'a mut B::Buf,
    pub v: &'a mut B::Buf,
}

/// Where the MLP's input side writes.
pub(super) struct MlpOut<'a, B: Backend> {
    pub norm: &'a mut B::Buf,
    pub rstd: &'a mut B::Buf,
    pub g: &'a mut B::Buf,
    pub u: &'a mut B::Buf,
}

/// Seconds and calls of each kernel, summed over forward passes.
#[derive(Debug, Default, Clone)]
pub struct Profile {
    /// (kernel, seconds, calls), in first-call order.
    pub kernels: Vec<(&'static str, f64, usize)>,
}

impl Profile {
    fn add(&mut self, name: &'static str, secs: f64) {
        match self.kernels.iter_mut().find(|k| k.0 == name) {
            Some(k) => {
                k.1 += secs;
                k.2 += 1;
            }
            None => self.kernels.push((name, secs, 1)),
        }
    }
}

/// Runs a kernel call on backend `$be`, adding its time to the profile
/// when one is kept. Profiling waits for the backend after each call, so
/// an asynchronous backend (wgpu) is timed per kernel too, at the cost of
/// its pipelining.
macro_rules! timed {
    ($be:expr, $p:expr, $name:expr, $e:expr) => {{
        let t0 = $p.as_ref().map(|_| std::time::Instant::now());
        let r = $e;
        if let (Some(p), Some(t0)) = ($p.as_mut(), t0) {
            // A device error surfaces at the next read; the profile only times.
            let _ = $be.sync();
            p.add($name, t0.elapsed().as_secs_f64());
        }
        r
    }};
}

/// The model driver: a configuration, its parameter layout, a backend and
/// the RoPE tables on it.
pub struct Llama<B: Backend> {
    pub(super) be: B,
    pub(super) cfg: ModelConfig,
    pub(super) layout: Layout,
    pub(super) rope_len: usize,
    pub(super) cos: B::Buf,
    pub(super) sin: B::Buf,
    profile: Option<Profile>,
}

impl<B: Backend> Llama<B> {
    /// A driver for `cfg` on `be`.
    pub fn new(be: B, cfg: ModelConfig) -> Result<Self, EngineError> {
        let layout = Layout::new(&cfg);
        let (cos, sin) = (be.zeros(0)?, be.zeros(0)?);
        let limit = cfg.max_position_embeddings.clamp(1, MAX_ROPE_POSITIONS);
        let mut llama = Llama {
            be,
            cfg,
            layout,
            rope_len: 0,
            cos,
            sin,
            profile: None,
        };
        // The whole table up front (at most 32,768 × head_dim/2 × 2 floats),
        // so decoding needs no mutable driver.
        llama.ensure_rope(limit)?;
        Ok(llama)
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.be
    }

    /// The configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.cfg
    }

    /// Where each parameter lives.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// Activation memory for forward and backward passes on batches of up
    /// to `positions` tokens.
    pub fn activations(&self, positions: usize) -> Result<Activations<B>, EngineError> {
        Activations::new(&self.be, &self.cfg, positions, true)
    }

    /// Activation memory for forward passes only (scoring): one layer's
    /// worth, a fraction of [`Llama::activations`]'.
    pub fn inference_activations(&self, positions: usize) -> Result<Activations<B>, EngineError> {
        Activations::new(&self.be, &self.cfg, positions, false)
    }

    /// Grows the RoPE tables to `len` positions (computed as transformers
    /// does: the angle in f32, its cosine and sine in f64).
    fn ensure_rope(&mut self, len: usize) -> Result<(), EngineError> {
        if len <= self.rope_len {
            return Ok(());
        }
        let limit = self
            .cfg
            .max_position_embeddings
            .clamp(1, MAX_ROPE_POSITIONS);
        if len > limit {
            return Err(EngineError::Invalid(format!(
                "sequence of {len} positions is longer than the position table ({limit})"
            )));
        }
        let inv = self.cfg.rope_inv_freq();
        let (mut cos, mut sin) = (Vec::with_capacity(len * inv.len()), Vec::new());
        for p in 0..len {
            for f in &inv {
                let angle = (*f as f32 * p as f32) as f64;
                cos.push(angle.cos() as f32);
                sin.push(angle.sin() as f32);
            }
        }
        self.cos = self.be.upload(&cos)?;
        self.sin = self.be.upload(&sin)?;
        self.rope_len = len;
        Ok(())
    }

    fn check(&self, batch: &TokenBatch) -> Result<(), EngineError> {
        let n = batch.n();
        if batch.ids.len() != n
            || batch.pad.len() != batch.b
            || batch.rows.len() != batch.targets.len()
        {
            return Err(EngineError::Invalid(format!(
                "batch of {} × {} with {} ids, {} pads, {} rows, {} targets",
                batch.b,
                batch.t,
                batch.ids.len(),
                batch.pad.len(),
                batch.rows.len(),
                batch.targets.len()
            )));
        }
        let v = self.cfg.vocab_size;
        if let Some(&bad) = batch
            .ids
            .iter()
            .chain(&batch.targets)
            .find(|&&id| id as usize >= v)
        {
            return Err(EngineError::Invalid(format!(
                "token id {bad} is outside the vocabulary ({v} tokens)"
            )));
        }
        if let Some(&bad) = batch.rows.iter().find(|&&r| r as usize >= n) {
            return Err(EngineError::Invalid(format!(
                "scored row {bad} is outside the batch ({n} positions)"
            )));
        }
        Ok(())
    }

    /// Runs the batch: returns the log-probability of each scored target.
    /// With `grad = (hook, grads)`, the backward follows: the hook maps
    /// log-probs to ∂loss/∂log-prob chunk by chunk (see [`GradFn`]) and
    /// every parameter's gradient is added into `grads` (laid out as the
    /// parameters).
    pub fn forward(
        &mut self,
        params: &B::Buf,
        batch: &TokenBatch,
        acts: &mut Activations<B>,
        grad: Option<(&mut GradFn<'_, f32>, &mut B::Buf)>,
    ) -> Result<Vec<f32>, EngineError> {
        let mut prof = self.profile.take();
        let out = self.forward_inner(params, batch, acts, grad, &mut prof);
        self.profile = prof;
        out
    }

    /// Starts (or stops) summing each kernel's time over forward passes.
    /// Kernels are timed as the host sees them: exact on the CPU backend,
    /// launch times on an asynchronous device.
    pub fn set_profiling(&mut self, on: bool) {
        self.profile = on.then(Profile::default);
    }

    /// The kernel times summed since profiling started.
    pub fn profile(&self) -> Option<&Profile> {
        self.profile.as_ref()
    }

    fn forward_inner(
        &mut self,
        params: &B::Buf,
        batch: &TokenBatch,
        acts: &mut Activations<B>,
        grad: Option<(&mut GradFn<'_, f32>, &mut B::Buf)>,
        prof: &mut Option<Profile>,
    ) -> Result<Vec<f32>, EngineError> {
        self.check(batch)?;
        if grad.is_some() && !acts.train {
            return Err(EngineError::Invalid(
                "a backward pass needs training activations, not inference ones".into(),
            ));
        }
        let n = batch.n();
        if n > acts.cap {
            *acts = Activations::new(&self.be, &self.cfg, n, acts.train)?;
        }
        self.ensure_rope(batch.t)?;
        let cfg = &self.cfg;
        let be = &self.be;
        let lay = &self.layout;
        let Widths {
            h,
            im,
            nh,
            nkv,
            hd,
            nq,
            nk,
            eps,
        } = self.widths();
        let dims = AttnDims {
            b: batch.b,
            t: batch.t,
            nh,
            nkv,
            hd,
        };
        let pos: Vec<u32> = (0..n)
            .map(|r| ((r % batch.t) as u32).saturating_sub(batch.pad[r / batch.t]))
            .collect();
        let ids = be.upload_ids(&batch.ids)?;
        let pos = be.upload_ids(&pos)?;
        let pad = be.upload_ids(&batch.pad)?;
        let rows = be.upload_ids(&batch.rows)?;
        let targets = be.upload_ids(&batch.targets)?;
        let a = acts;

        timed!(
            be,
            prof,
            "embedding",
            be.embedding(params, lay.embed, &ids, n, &mut a.stream[0], h)
        );
        for (l, ls) in lay.layers.iter().enumerate() {
            let (xi, oi) = (a.slot(l), a.slot(l + 1));
            let kept = a.layers.len();
            let la = &mut a.layers[l % kept];
            let (x, out) = pair_mut(&mut a.stream, xi, oi);
            let io = QkvOut {
                norm: &mut a.norm,
                rstd: &mut la.rstd1,
                q: &mut la.q,
                k: &mut la.k,
                v: &mut la.v,
            };
            self.attn_in(params, ls, x, io, &pos, n, prof);
            timed!(
                be,
                prof,
                "attention",
                be.attention(&la.q, &la.k, &la.v, &mut la.ctx, &mut la.lse, &pad, dims)
            );
            timed!(be, prof, "copy", be.copy(x, &mut la.x_mid, n * h));
            timed!(
                be,
                prof,
                "matmul",
                be.matmul(&la.ctx, params, ls.o, None, &mut la.x_mid, (n, nq, h), true)
            );
            let io = MlpOut {
                norm: &mut a.norm,
                rstd: &mut la.rstd2,
                g: &mut a.g,
                u: &mut a.u,
            };
            self.mlp_in(params, ls, &la.x_mid, io, n, prof);
            timed!(
                be,
                prof,
                "swiglu",
                be.swiglu(&a.g, &a.u, &mut a.hsw, n * im)
            );
            timed!(be, prof, "copy", be.copy(&la.x_mid, out, n * h));
            timed!(
                be,
                prof,
                "matmul",
                be.matmul(&a.hsw, params, ls.down, None, out, (n, im, h), true)
            );
        }
        let last = &a.stream[a.slot(cfg.num_hidden_layers)];
        timed!(
            be,
            prof,
            "rmsnorm",
            be.rmsnorm(last, params, lay.norm, &mut a.hf, &mut a.rstd_f, n, h, eps)
        );
        let np = batch.rows.len();
        let tail_dims = (cfg.vocab_size, h);
        let mut grad = grad;
        // With a gradient, `dnorm` receives ∂loss/∂(final normed hidden).
        if grad.is_some() {
            timed!(be, prof, "zero", be.zero(&mut a.dnorm, n * h));
        }
        let tail_grad = grad
            .as_mut()
            .map(|(hook, grads)| (&mut **hook, &mut a.dnorm, &mut **grads));
        let lp = timed!(
            be,
            prof,
            "logprob_tail",
            be.logprob_tail(
                &a.hf,
                params,
                lay.head,
                &rows,
                &targets,
                np,
                tail_grad,
                &mut a.tail,
                tail_dims,
            )
        )?;
        let Some((_, grads)) = grad else {
            return Ok(lp);
        };

        // Backward.
        timed!(be, prof, "zero", be.zero(&mut a.dx, n * h));
        timed!(
            be,
            prof,
            "rmsnorm_bwd",
            be.rmsnorm_bwd(
                last, params, lay.norm, &a.rstd_f, &a.dnorm, &mut a.dx, grads, n, h,
            )
        );
        for (l, (ls, la)) in lay.layers.iter().zip(a.layers.iter()).enumerate().rev() {
            let x = &a.stream[l];
            // MLP: out = x_mid + down(silu(gate(m)) · up(m)), m = norm(x_mid);
            // gate(m) and up(m) recomputed (the same bits as the forward's).
            let io = MlpOut {
                norm: &mut a.norm,
                rstd: &mut a.rstd_mlp,
                g: &mut a.g,
                u: &mut a.u,
            };
            self.mlp_in(params, ls, &la.x_mid, io, n, prof);
            timed!(
                be,
                prof,
                "swiglu",
                be.swiglu(&a.g, &a.u, &mut a.hsw, n * im)
            );
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dx, &a.hsw, grads, ls.down, None, (n, im, h))
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dx, params, ls.down, &mut a.dhsw, (n, im, h), false)
            );
            timed!(
                be,
                prof,
                "swiglu_bwd",
                be.swiglu_bwd(&a.g, &a.u, &a.dhsw, &mut a.dg, &mut a.du, n * im)
            );
            // (`norm` still holds norm(x_mid) from the recomputation.)
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dg, &a.norm, grads, ls.gate, None, (n, h, im))
            );
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.du, &a.norm, grads, ls.up, None, (n, h, im))
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dg, params, ls.gate, &mut a.dnorm, (n, h, im), false)
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.du, params, ls.up, &mut a.dnorm, (n, h, im), true)
            );
            timed!(
                be,
                prof,
                "rmsnorm_bwd",
                be.rmsnorm_bwd(
                    &la.x_mid,
                    params,
                    ls.post_norm,
                    &la.rstd2,
                    &a.dnorm,
                    &mut a.dx,
                    grads,
                    n,
                    h,
                )
            );
            // Attention: x_mid = x + o(attn(rope(q(a)), rope(k(a)), v(a))), a = norm(x).
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dx, &la.ctx, grads, ls.o, None, (n, nq, h))
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dx, params, ls.o, &mut a.dctx, (n, nq, h), false)
            );
            timed!(be, prof, "zero", be.zero(&mut a.dq, n * nq));
            timed!(be, prof, "zero", be.zero(&mut a.dk, n * nk));
            timed!(be, prof, "zero", be.zero(&mut a.dv, n * nk));
            timed!(
                be,
                prof,
                "attention_bwd",
                be.attention_bwd(
                    &la.q, &la.k, &la.v, &la.ctx, &la.lse, &a.dctx, &mut a.dq, &mut a.dk,
                    &mut a.dv, &pad, dims,
                )
            );
            timed!(
                be,
                prof,
                "rope",
                be.rope(&mut a.dq, &pos, n, &self.cos, &self.sin, nh, hd, true)
            );
            timed!(
                be,
                prof,
                "rope",
                be.rope(&mut a.dk, &pos, n, &self.cos, &self.sin, nkv, hd, true)
            );
            timed!(
                be,
                prof,
                "rmsnorm_apply",
                be.rmsnorm_apply(x, params, ls.input_norm, &la.rstd1, &mut a.norm, n, h)
            );
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dq, &a.norm, grads, ls.q, ls.q_bias, (n, h, nq))
            );
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dk, &a.norm, grads, ls.k, ls.k_bias, (n, h, nk))
            );
            timed!(
                be,
                prof,
                "matmul_dw",
                be.matmul_dw(&a.dv, &a.norm, grads, ls.v, ls.v_bias, (n, h, nk))
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dq, params, ls.q, &mut a.dnorm, (n, h, nq), false)
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dk, params, ls.k, &mut a.dnorm, (n, h, nk), true)
            );
            timed!(
                be,
                prof,
                "matmul_dx",
                be.matmul_dx(&a.dv, params, ls.v, &mut a.dnorm, (n, h, nk), true)
            );
            timed!(
                be,
                prof,
                "rmsnorm_bwd",
                be.rmsnorm_bwd(
                    x,
                    params,
                    ls.input_norm,
                    &la.rstd1,
                    &a.dnorm,
                    &mut a.dx,
                    grads,
                    n,
                    h,
                )
            );
        }
        timed!(
            be,
            prof,
            "embedding_bwd",
            be.embedding_bwd(grads, lay.embed, &ids, n, &a.dx, h)
        );
        be.sync()?;
        Ok(lp)
    }

    /// The widths of this configuration.
    pub(super) fn widths(&self) -> Widths {
        let c = &self.cfg;
        let (nh, nkv, hd) = (c.num_attention_heads, c.num_key_value_heads, c.head_dim);
        Widths {
            h: c.hidden_size,
            im: c.intermediate_size,
            nh,
            nkv,
            hd,
            nq: nh * hd,
            nk: nkv * hd,
            eps: c.rms_norm_eps,
        }
    }

    /// The attention block's input side on `n` rows of `x`: RMSNorm, the
    /// q/k/v projections (with biases), RoPE on q and k at `pos`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attn_in(
        &self,
        params: &B::Buf,
        ls: &super::LayerSpans,
        x: &B::Buf,
        o: QkvOut<'_, B>,
        pos: &B::Ids,
        n: usize,
        prof: &mut Option<Profile>,
    ) {
        let (be, w) = (&self.be, self.widths());
        let (h, nq, nk) = (w.h, w.nq, w.nk);
        timed!(
            be,
            prof,
            "rmsnorm",
            be.rmsnorm(x, params, ls.input_norm, o.norm, o.rstd, n, h, w.eps)
        );
        timed!(
            be,
            prof,
            "matmul",
            be.matmul(o.norm, params, ls.q, ls.q_bias, o.q, (n, h, nq), false)
        );
        timed!(
            be,
            prof,
            "matmul",
            be.matmul(o.norm, params, ls.k, ls.k_bias, o.k, (n, h, nk), false)
        );
        timed!(
            be,
            prof,
            "matmul",
            be.matmul(o.norm, params, ls.v, ls.v_bias, o.v, (n, h, nk), false)
        );
        timed!(
            be,
            prof,
            "rope",
            be.rope(o.q, pos, n, &self.cos, &self.sin, w.nh, w.hd, false)
        );
        timed!(
            be,
            prof,
            "rope",
            be.rope(o.k, pos, n, &self.cos, &self.sin, w.nkv, w.hd, false)
        );
    }

    /// The MLP's input side on `n` rows of `x`: RMSNorm, the gate and up
    /// projections.
    pub(super) fn mlp_in(
        &self,
        params: &B::Buf,
        ls: &super::LayerSpans,
        x: &B::Buf,
        o: MlpOut<'_, B>,
        n: usize,
        prof: &mut Option<Profile>,
    ) {
        let (be, w) = (&self.be, self.widths());
        let (h, im) = (w.h, w.im);
        timed!(
            be,
            prof,
            "rmsnorm",
            be.rmsnorm(x, params, ls.post_norm, o.norm, o.rstd, n, h, w.eps)
        );
        timed!(
            be,
            prof,
            "matmul",
            be.matmul(o.norm, params, ls.gate, None, o.g, (n, h, im), false)
        );
        timed!(
            be,
            prof,
            "matmul",
            be.matmul(o.norm, params, ls.up, None, o.u, (n, h, im), false)
        );
    }

    /// The span of parameter `name`, if the layout has it.
    pub fn span_of(&self, name: &str) -> Option<Span> {
        self.layout
            .params
            .iter()
            .find(|p| p.name == name)
            .map(|p| p.span)
    }
}

/// `(&v[a], &mut v[b])` for `a ≠ b`.
fn pair_mut<T>(v: &mut [T], a: usize, b: usize) -> (&T, &mut T) {
    assert_ne!(a, b, "pair_mut: one element twice");
    if a < b {
        let (lo, hi) = v.split_at_mut(b);
        (&lo[a], &mut hi[0])
    } else {
        let (lo, hi) = v.split_at_mut(a);
        (&hi[0], &mut lo[b])
    }
}
