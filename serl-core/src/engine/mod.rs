//! The compute engine: a fixed list of kernels, each with the backward that
//! training needs, behind the [`Backend`] seam, and one Llama-family model
//! driver written against it ([`Llama`]). Parameters, gradients and
//! optimizer moments live in flat buffers laid out by [`Layout`];
//! activations in buffers sized once per batch shape ([`Activations`]).
//!
//! The CPU backend ([`Cpu`]) is the reference; a GPU backend implements the
//! same trait, and the learner, sampler and checkpoints stay as they are.
//! Kernels never assume host memory: buffers are the backend's own type,
//! and data crosses only through [`Backend::upload`] and [`Backend::read`].

mod cpu;
mod decode;
#[cfg(feature = "wgpu")]
mod gpu;
pub mod kernels;
mod layout;
mod llama;
mod simd;

pub use cpu::Cpu;
pub use decode::KvCache;
#[cfg(feature = "wgpu")]
pub use gpu::{AdapterSummary, GpuBuf, GpuIds, GpuTailScratch, Wgpu};
pub use kernels::{AttnDims, GradFn};
pub use layout::{LayerSpans, Layout, ParamInfo, Span};
pub use llama::{Activations, Llama, Profile, TokenBatch};

/// What can go wrong in the engine.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A batch or buffer that does not fit the model (names what and why).
    #[error("engine: {0}")]
    Invalid(String),
    /// The device could not allocate or run.
    #[error("engine device: {0}")]
    Device(String),
}

/// Which backend runs the engine, from a device name: `cpu` (also `cuda`
/// and `cuda:N`, where candle's CUDA build holds the sampler's model while
/// the engine runs on the host), `wgpu` (the first high-performance
/// adapter) or `wgpu:N` (adapter N of `serl devices`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineDevice {
    /// The CPU backend.
    Cpu,
    /// The wgpu backend on an adapter (`None`: the first high-performance one).
    Wgpu(Option<usize>),
}

impl EngineDevice {
    /// Parses a device name (see the type's documentation).
    pub fn parse(name: &str) -> Result<EngineDevice, EngineError> {
        match name {
            "cpu" | "cuda" => Ok(EngineDevice::Cpu),
            n if n.starts_with("cuda:") => Ok(EngineDevice::Cpu),
            "wgpu" => Ok(EngineDevice::Wgpu(None)),
            n if n.starts_with("wgpu:") => n["wgpu:".len()..]
                .parse::<usize>()
                .map(|i| EngineDevice::Wgpu(Some(i)))
                .map_err(|_| EngineError::Invalid(format!("device {n:?}: bad adapter index"))),
            other => Err(EngineError::Invalid(format!(
                "device {other:?} (expected cpu, wgpu, wgpu:N, cuda or cuda:N)"
            ))),
        }
    }

    /// The wgpu backend for this device, shared by everything that asks
    /// for the same adapter in this process.
    #[cfg(feature = "wgpu")]
    pub fn wgpu(self) -> Result<Option<Wgpu>, EngineError> {
        match self {
            EngineDevice::Cpu => Ok(None),
            EngineDevice::Wgpu(i) => Wgpu::shared(i).map(Some),
        }
    }
}

/// Matrix-product sizes: rows, input width, output width.
pub type MmDims = (usize, usize, usize);

/// A compute device: owns buffers of `f32` and runs the kernel list on
/// them. Every call may be asynchronous; [`Backend::read`] and
/// [`Backend::sync`] wait. Spans index into buffers; a kernel's outputs
/// never alias its inputs.
pub trait Backend {
    /// A device buffer of `f32`.
    type Buf;
    /// A device buffer of `u32` (token ids, positions, row indices).
    type Ids;
    /// Working memory of the fused output tail.
    type TailScratch;

    /// A short name for messages (`cpu`).
    fn name(&self) -> String;
    /// A zeroed buffer of `len` elements.
    fn zeros(&self, len: usize) -> Result<Self::Buf, EngineError>;
    /// A buffer holding `data`.
    fn upload(&self, data: &[f32]) -> Result<Self::Buf, EngineError>;
    /// An id buffer holding `ids`.
    fn upload_ids(&self, ids: &[u32]) -> Result<Self::Ids, EngineError>;
    /// Copies `span` of `buf` to the host.
    fn read(&self, buf: &Self::Buf, span: Span) -> Result<Vec<f32>, EngineError>;
    /// [`Backend::read`] for drivers that must not block: in a browser a
    /// WebGPU read-back completes only once control returns to the page.
    /// By default the synchronous read.
    fn read_async(
        &self,
        buf: &Self::Buf,
        span: Span,
    ) -> impl std::future::Future<Output = Result<Vec<f32>, EngineError>> {
        std::future::ready(self.read(buf, span))
    }
    /// Copies `span` of `buf` to the host into `out` (replacing its
    /// contents), reusing `out`'s allocation where the backend can.
    fn read_into(
        &self,
        buf: &Self::Buf,
        span: Span,
        out: &mut Vec<f32>,
    ) -> Result<(), EngineError> {
        *out = self.read(buf, span)?;
        Ok(())
    }
    /// The first `len` elements on the host: borrowed where the buffer is
    /// host memory, copied otherwise (checkpoints, tests).
    fn host<'a>(
        &self,
        buf: &'a Self::Buf,
        len: usize,
    ) -> Result<std::borrow::Cow<'a, [f32]>, EngineError>;
    /// Overwrites `buf` from `off` with `data`.
    fn write(&self, buf: &mut Self::Buf, off: usize, data: &[f32]) -> Result<(), EngineError>;
    /// Waits for all queued work.
    fn sync(&self) -> Result<(), EngineError>;
    /// Sets the first `len` elements to zero.
    fn zero(&self, buf: &mut Self::Buf, len: usize);
    /// `dst[..len] = src[..len]`.
    fn copy(&self, src: &Self::Buf, dst: &mut Self::Buf, len: usize);
    /// `dst[..len] += src[..len]`.
    fn add(&self, dst: &mut Self::Buf, src: &Self::Buf, len: usize);

    /// `out[r] = table[ids[r]]`, rows of width `d`.
    fn embedding(
        &self,
        params: &Self::Buf,
        table: Span,
        ids: &Self::Ids,
        n: usize,
        out: &mut Self::Buf,
        d: usize,
    );
    /// `grads[table][ids[r]] += dout[r]`.
    fn embedding_bwd(
        &self,
        grads: &mut Self::Buf,
        table: Span,
        ids: &Self::Ids,
        n: usize,
        dout: &Self::Buf,
        d: usize,
    );
    /// RMSNorm of `n` rows: writes `out` and the rows' `rstd`.
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm(
        &self,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Span,
        out: &mut Self::Buf,
        rstd: &mut Self::Buf,
        n: usize,
        d: usize,
        eps: f64,
    );
    /// RMSNorm from a saved `rstd` (recomputation in the backward).
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_apply(
        &self,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Span,
        rstd: &Self::Buf,
        out: &mut Self::Buf,
        n: usize,
        d: usize,
    );
    /// RMSNorm backward: `dx += …`, `grads[w] += …`.
    #[allow(clippy::too_many_arguments)]
    fn rmsnorm_bwd(
        &self,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Span,
        rstd: &Self::Buf,
        dout: &Self::Buf,
        dx: &mut Self::Buf,
        grads: &mut Self::Buf,
        n: usize,
        d: usize,
    );
    /// `out (+)= x · wᵀ (+ bias)` with `w` `[o, i]` in `params`.
    #[allow(clippy::too_many_arguments)]
    fn matmul(
        &self,
        x: &Self::Buf,
        params: &Self::Buf,
        w: Span,
        bias: Option<Span>,
        out: &mut Self::Buf,
        dims: MmDims,
        acc: bool,
    );
    /// `dx (+)= dout · w`.
    fn matmul_dx(
        &self,
        dout: &Self::Buf,
        params: &Self::Buf,
        w: Span,
        dx: &mut Self::Buf,
        dims: MmDims,
        acc: bool,
    );
    /// `grads[w] += doutᵀ · x`, `grads[bias] += Σ dout`.
    fn matmul_dw(
        &self,
        dout: &Self::Buf,
        x: &Self::Buf,
        grads: &mut Self::Buf,
        w: Span,
        bias: Option<Span>,
        dims: MmDims,
    );
    /// Rotary embedding in place on `n` rows of `heads × hd`; `inverse` for the backward.
    #[allow(clippy::too_many_arguments)]
    fn rope(
        &self,
        x: &mut Self::Buf,
        pos: &Self::Ids,
        n: usize,
        cos: &Self::Buf,
        sin: &Self::Buf,
        heads: usize,
        hd: usize,
        inverse: bool,
    );
    /// Causal GQA attention with left-padding offsets `pad` per sequence; writes `out`, `lse`.
    #[allow(clippy::too_many_arguments)]
    fn attention(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        out: &mut Self::Buf,
        lse: &mut Self::Buf,
        pad: &Self::Ids,
        d: AttnDims,
    );
    /// Attention backward: `dq`, `dk`, `dv` accumulate.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self,
        q: &Self::Buf,
        k: &Self::Buf,
        v: &Self::Buf,
        out: &Self::Buf,
        lse: &Self::Buf,
        dout: &Self::Buf,
        dq: &mut Self::Buf,
        dk: &mut Self::Buf,
        dv: &mut Self::Buf,
        pad: &Self::Ids,
        d: AttnDims,
    );
    /// `cache[s, len + i] = src[s·t + i]` (rows of `width`; the cache holds
    /// `cap` positions per sequence).
    #[allow(clippy::too_many_arguments)]
    fn kv_write(
        &self,
        cache: &mut Self::Buf,
        src: &Self::Buf,
        b: usize,
        t: usize,
        cap: usize,
        len: usize,
        width: usize,
    );
    /// Attention of `d.t` new queries per sequence over a filled cache (see
    /// [`kernels::attention_cached`]).
    #[allow(clippy::too_many_arguments)]
    fn attention_cached(
        &self,
        q: &Self::Buf,
        kc: &Self::Buf,
        vc: &Self::Buf,
        out: &mut Self::Buf,
        pad: &Self::Ids,
        len: usize,
        cap: usize,
        d: AttnDims,
    );
    /// Copies `rows` rows of `width` from `src` (starting at row `from`) to
    /// `dst` (starting at row `to`).
    #[allow(clippy::too_many_arguments)]
    fn copy_rows(
        &self,
        src: &Self::Buf,
        from: usize,
        dst: &mut Self::Buf,
        to: usize,
        rows: usize,
        width: usize,
    );
    /// Greedy decoding's reduction of `rows` rows of `v` logits: `out[2r]`
    /// the index of row `r`'s largest logit (the first on ties, as
    /// [`crate::model::argmax`]; stored as an `f32`, exact below 2^24) and
    /// `out[2r + 1]` its log-probability. On a device this turns a decode
    /// step's read-back from `rows × v` floats into `2 × rows`. By default
    /// it reads the logits, reduces on the host and writes the result.
    fn greedy_rows(
        &self,
        logits: &Self::Buf,
        rows: usize,
        v: usize,
        out: &mut Self::Buf,
    ) -> Result<(), EngineError> {
        let l = self.read(
            logits,
            Span {
                off: 0,
                len: rows * v,
            },
        )?;
        let mut picks = Vec::with_capacity(2 * rows);
        for row in l.chunks(v.max(1)).take(rows) {
            let t = crate::model::argmax(row);
            picks.push(t as f32);
            picks.push(crate::model::logprob_of(row, t));
        }
        self.write(out, 0, &picks)
    }
    /// Whether [`Backend::greedy_rows`] saves work: a device backend, where
    /// reading a step's whole logits back costs a transfer. The CPU backend
    /// holds them in memory already.
    fn greedy_on_device(&self) -> bool {
        false
    }
    /// `out = silu(g) · u` over `len` elements.
    fn swiglu(&self, g: &Self::Buf, u: &Self::Buf, out: &mut Self::Buf, len: usize);
    /// SwiGLU backward: writes `dg`, `du`.
    fn swiglu_bwd(
        &self,
        g: &Self::Buf,
        u: &Self::Buf,
        dout: &Self::Buf,
        dg: &mut Self::Buf,
        du: &mut Self::Buf,
        len: usize,
    );
    /// Working memory for the tail over a vocabulary `v` and width `d`.
    fn tail_scratch(&self, v: usize, d: usize) -> Result<Self::TailScratch, EngineError>;
    /// The fused tail: log-probs of `targets` after hidden rows `rows`
    /// (returned to the host), and with `grad` its backward into `dh` and
    /// `grads[head]`, chunk by chunk through the loss hook.
    #[allow(clippy::too_many_arguments)]
    fn logprob_tail(
        &self,
        h: &Self::Buf,
        params: &Self::Buf,
        head: Span,
        rows: &Self::Ids,
        targets: &Self::Ids,
        n: usize,
        grad: Option<(&mut GradFn<'_, f32>, &mut Self::Buf, &mut Self::Buf)>,
        scratch: &mut Self::TailScratch,
        dims: (usize, usize),
    ) -> Result<Vec<f32>, EngineError>;
    /// One AdamW step of the whole flat parameter buffer.
    #[allow(clippy::too_many_arguments)]
    fn adamw(
        &self,
        params: &mut Self::Buf,
        grads: &Self::Buf,
        m: &mut Self::Buf,
        v: &mut Self::Buf,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        wd: f64,
        step: usize,
    );
    /// Σ x² over the first `len` elements (read back to the host).
    fn sq_sum(&self, x: &Self::Buf, len: usize) -> Result<f64, EngineError>;
    /// `x[..len] *= s`.
    fn scale(&self, x: &mut Self::Buf, len: usize, s: f64);
}
