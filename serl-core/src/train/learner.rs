//! The learner: batches of token rows → log-probs, a loss gradient, the
//! parameters' gradients, global-norm clipping and AdamW, all on the
//! compute engine ([`crate::engine`]) with f32 master weights in flat
//! buffers on the configured backend (CPU, or wgpu with the `wgpu`
//! feature). The sampler's candle [`Model`] receives the weights after each
//! optimizer step ([`Learner::sync_to`]).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::TrainError;
#[cfg(feature = "wgpu")]
use crate::engine::Wgpu;
use crate::engine::{
    Activations, Backend, Cpu, EngineDevice, GradFn, Layout, Llama, Profile, TokenBatch,
};
use crate::model::{AnyDecoder, EngineDecoder, Model, Tokenizer};

/// One model on one backend: the driver, the flat weights and (for a
/// learner) gradients and AdamW moments, and the activation arena.
struct Core<B: Backend> {
    llama: Llama<B>,
    params: B::Buf,
    grads: B::Buf,
    m: B::Buf,
    v: B::Buf,
    acts: Option<Activations<B>>,
    /// Whether the arena is for training (else inference only).
    train: bool,
}

impl<B: Backend> Core<B> {
    /// `model`'s weights on `be`; with `train`, zeroed gradients and moments.
    fn new(be: B, model: &Model, train: bool) -> Result<Self, TrainError> {
        let llama = Llama::new(be, model.config().clone())?;
        let total = llama.layout().total;
        let be = llama.backend();
        let mut params = be.zeros(total)?;
        fill_weights(&llama, model, &mut params)?;
        let opt = if train { total } else { 0 };
        Ok(Core {
            grads: be.zeros(opt)?,
            m: be.zeros(opt)?,
            v: be.zeros(opt)?,
            params,
            llama,
            acts: None,
            train,
        })
    }

    fn run(
        &mut self,
        batch: &TokenBatch,
        grad: Option<&mut GradFn<'_, f32>>,
    ) -> Result<Vec<f32>, TrainError> {
        let mut acts = match self.acts.take() {
            Some(a) => a,
            None if self.train => self.llama.activations(batch.n())?,
            None => self.llama.inference_activations(batch.n())?,
        };
        let out = self.llama.forward(
            &self.params,
            batch,
            &mut acts,
            grad.map(|g| (g, &mut self.grads)),
        );
        self.acts = Some(acts);
        Ok(out?)
    }

    fn span_of(&self, which: &B::Buf, name: &str) -> Option<Vec<f32>> {
        let span = self.llama.span_of(name)?;
        self.llama.backend().read(which, span).ok()
    }

    fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64, TrainError> {
        let be = self.llama.backend();
        let len = self.llama.layout().total;
        let norm = be.sq_sum(&self.grads, len)?.sqrt();
        if norm.is_finite() && norm > max_norm {
            be.scale(&mut self.grads, len, max_norm / (norm + 1e-6));
        }
        Ok(norm)
    }

    #[allow(clippy::too_many_arguments)]
    fn optimizer_step(&mut self, lr: f64, betas: (f64, f64), eps: f64, wd: f64, step: usize) {
        let be = self.llama.backend();
        be.adamw(
            &mut self.params,
            &self.grads,
            &mut self.m,
            &mut self.v,
            lr,
            betas,
            eps,
            wd,
            step,
        );
        let len = self.llama.layout().total;
        be.zero(&mut self.grads, len);
    }

    fn zero_grad(&mut self) {
        let len = self.llama.layout().total;
        self.llama.backend().zero(&mut self.grads, len);
    }

    /// The weights on the host (borrowed on the CPU backend).
    fn host_params(&self) -> Result<std::borrow::Cow<'_, [f32]>, TrainError> {
        let len = self.llama.layout().total;
        Ok(self.llama.backend().host(&self.params, len)?)
    }

    fn save_state(&self, path: &std::path::Path, weights: bool) -> Result<(), TrainError> {
        let be = self.llama.backend();
        let len = self.llama.layout().total;
        let (m, v) = (be.host(&self.m, len)?, be.host(&self.v, len)?);
        let w = if weights {
            Some(be.host(&self.params, len)?)
        } else {
            None
        };
        let mut entries = Vec::new();
        for (i, info) in self.llama.layout().params.iter().enumerate() {
            let s = info.span;
            let mut bufs = vec![("m", &m), ("v", &v)];
            if let Some(w) = &w {
                bufs.push(("w", w));
            }
            for (key, buf) in bufs {
                let view = FlatView::new(&buf[s.off..s.off + s.len], &info.shape, DType::F32);
                entries.push((format!("{key}.{i}"), view));
            }
        }
        write_safetensors(path, entries)
    }

    fn load_state(
        &mut self,
        t: &mut HashMap<String, Tensor>,
        origin: &str,
    ) -> Result<(), TrainError> {
        let infos = self.llama.layout().params.clone();
        let weights = t.contains_key("w.0");
        let be = self.llama.backend();
        for (i, info) in infos.iter().enumerate() {
            for (key, buf) in [
                ("m", &mut self.m),
                ("v", &mut self.v),
                ("w", &mut self.params),
            ] {
                if key == "w" && !weights {
                    continue;
                }
                let name = format!("{key}.{i}");
                let x = t.remove(&name).ok_or_else(|| {
                    TrainError::Checkpoint(format!("{origin}: optimizer state {name} missing"))
                })?;
                if x.dims() != info.shape.as_slice() {
                    return Err(TrainError::Checkpoint(format!(
                        "{origin}: optimizer state {name} ({}) has shape {:?}, expected {:?}",
                        info.name,
                        x.dims(),
                        info.shape
                    )));
                }
                let data: Vec<f32> = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
                be.write(buf, info.span.off, &data)?;
            }
        }
        Ok(())
    }
}

/// A [`Core`] on whichever backend the device names.
/// (Boxed: the cores differ in size by backend.)
enum Engine {
    Cpu(Box<Core<Cpu>>),
    #[cfg(feature = "wgpu")]
    Wgpu(Box<Core<Wgpu>>),
}

/// `$body` with `$c` bound to the engine's core, whatever its backend.
macro_rules! on {
    ($e:expr, $c:ident => $body:expr) => {
        match $e {
            Engine::Cpu($c) => $body,
            #[cfg(feature = "wgpu")]
            Engine::Wgpu($c) => $body,
        }
    };
}

impl Engine {
    fn new(device: EngineDevice, model: &Model, train: bool) -> Result<Engine, TrainError> {
        match device {
            EngineDevice::Cpu => Ok(Engine::Cpu(Box::new(Core::new(Cpu, model, train)?))),
            #[cfg(feature = "wgpu")]
            EngineDevice::Wgpu(i) => Ok(Engine::Wgpu(Box::new(Core::new(
                Wgpu::shared(i)?,
                model,
                train,
            )?))),
            #[cfg(not(feature = "wgpu"))]
            EngineDevice::Wgpu(_) => Err(TrainError::Config(
                "device wgpu: this build has no wgpu backend (build with the `wgpu` feature)"
                    .into(),
            )),
        }
    }

    fn decoder(&self) -> AnyDecoder<'_> {
        match self {
            Engine::Cpu(c) => AnyDecoder::Cpu(EngineDecoder {
                llama: &c.llama,
                params: &c.params,
            }),
            #[cfg(feature = "wgpu")]
            Engine::Wgpu(c) => AnyDecoder::Wgpu(EngineDecoder {
                llama: &c.llama,
                params: &c.params,
            }),
        }
    }
}

/// A frozen model on the engine that scores token rows (the reference
/// policy of the KL term).
pub struct Scorer {
    engine: Engine,
}

impl Scorer {
    /// `model`'s weights (as f32) on the engine's CPU backend.
    pub fn new(model: &Model) -> Result<Scorer, TrainError> {
        Scorer::on(EngineDevice::Cpu, model)
    }

    /// `model`'s weights (as f32) on `device`'s backend.
    pub fn on(device: EngineDevice, model: &Model) -> Result<Scorer, TrainError> {
        Ok(Scorer {
            engine: Engine::new(device, model, false)?,
        })
    }

    /// `model`'s weights (as f32) on a wgpu device the caller opened (in a
    /// browser, with [`Wgpu::new_async`]).
    #[cfg(feature = "wgpu")]
    pub fn on_wgpu(device: Wgpu, model: &Model) -> Result<Scorer, TrainError> {
        Ok(Scorer {
            engine: Engine::Wgpu(Box::new(Core::new(device, model, false)?)),
        })
    }

    /// Samples from these weights on the engine (see [`crate::model::generate`]).
    pub fn decoder(&self) -> AnyDecoder<'_> {
        self.engine.decoder()
    }

    /// The backend's name (`cpu`, `wgpu (NVIDIA H200)`).
    pub fn backend_name(&self) -> String {
        on!(&self.engine, c => c.llama.backend().name())
    }

    /// Log-probabilities of the batch's scored targets.
    pub fn logprobs(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, TrainError> {
        on!(&mut self.engine, c => c.run(batch, None))
    }
}

/// Writes `model`'s weights (as f32) into `params`, checking that names
/// and shapes follow the engine's layout.
fn fill_weights<B: Backend>(
    llama: &Llama<B>,
    model: &Model,
    params: &mut B::Buf,
) -> Result<(), TrainError> {
    let layout = llama.layout();
    let be = llama.backend();
    let named = model.named_parameters();
    if named.len() != layout.params.len() {
        return Err(TrainError::Config(format!(
            "model has {} parameters, its layout {}",
            named.len(),
            layout.params.len()
        )));
    }
    for ((name, var), info) in named.iter().zip(&layout.params) {
        if *name != info.name || var.as_tensor().dims() != info.shape.as_slice() {
            return Err(TrainError::Config(format!(
                "parameter {name:?} {:?} does not match the layout's {:?} {:?}",
                var.as_tensor().dims(),
                info.name,
                info.shape
            )));
        }
        let data: Vec<f32> = var
            .as_tensor()
            .to_dtype(DType::F32)?
            .flatten_all()?
            .to_vec1()?;
        be.write(params, info.span.off, &data)?;
    }
    Ok(())
}

/// A parameter of a flat buffer as a safetensors entry: f32 bytes borrowed
/// as they are, other dtypes converted when written.
struct FlatView<'a> {
    data: &'a [f32],
    shape: Vec<usize>,
    dtype: DType,
}

impl<'a> FlatView<'a> {
    fn new(data: &'a [f32], shape: &[usize], dtype: DType) -> Self {
        let dtype = if matches!(dtype, DType::BF16 | DType::F16) {
            dtype
        } else {
            DType::F32
        };
        FlatView {
            data,
            shape: shape.to_vec(),
            dtype,
        }
    }
}

impl safetensors::View for FlatView<'_> {
    fn dtype(&self) -> safetensors::Dtype {
        match self.dtype {
            DType::BF16 => safetensors::Dtype::BF16,
            DType::F16 => safetensors::Dtype::F16,
            _ => safetensors::Dtype::F32,
        }
    }

    fn shape(&self) -> &[usize] {
        &self.shape
    }

    fn data(&self) -> std::borrow::Cow<'_, [u8]> {
        use std::borrow::Cow;
        match self.dtype {
            DType::BF16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|&x| half::bf16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            DType::F16 => Cow::Owned(
                self.data
                    .iter()
                    .flat_map(|&x| half::f16::from_f32(x).to_le_bytes())
                    .collect(),
            ),
            // safetensors is little-endian, as the f32s in memory are here.
            _ if cfg!(target_endian = "little") => Cow::Borrowed(bytemuck::cast_slice(self.data)),
            _ => Cow::Owned(self.data.iter().flat_map(|x| x.to_le_bytes()).collect()),
        }
    }

    fn data_len(&self) -> usize {
        self.data.len() * if self.dtype == DType::F32 { 4 } else { 2 }
    }
}

/// Writes safetensors entries to `path` through a temporary file.
fn write_safetensors<'a>(
    path: &std::path::Path,
    entries: impl IntoIterator<Item = (String, FlatView<'a>)>,
) -> Result<(), TrainError> {
    let tmp = crate::model::store_tmp_path(path);
    safetensors::serialize_to_file(entries, None, &tmp).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        TrainError::Checkpoint(format!("{}: {e}", tmp.display()))
    })?;
    std::fs::rename(&tmp, path).map_err(|e| TrainError::io(path, e))
}

/// Weights, gradients and AdamW moments of one model on the engine.
pub struct Learner {
    engine: Engine,
    /// AdamW β1, β2.
    pub betas: (f64, f64),
    /// AdamW ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: usize,
}

impl Learner {
    /// A learner holding `model`'s weights (as f32) with zero moments, on
    /// the engine's CPU backend.
    pub fn new(
        model: &Model,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Result<Learner, TrainError> {
        Learner::on(EngineDevice::Cpu, model, betas, eps, weight_decay)
    }

    /// [`Learner::new`] on `device`'s backend.
    pub fn on(
        device: EngineDevice,
        model: &Model,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Result<Learner, TrainError> {
        Ok(Learner {
            engine: Engine::new(device, model, true)?,
            betas,
            eps,
            weight_decay,
            step: 0,
        })
    }

    /// The backend's name (`cpu`, `wgpu (NVIDIA H200)`).
    pub fn backend_name(&self) -> String {
        on!(&self.engine, c => c.llama.backend().name())
    }

    /// Starts (or stops) timing each kernel (see [`crate::engine::Profile`]).
    pub fn set_profiling(&mut self, on: bool) {
        on!(&mut self.engine, c => c.llama.set_profiling(on))
    }

    /// Kernel times summed since profiling started.
    pub fn profile(&self) -> Option<&Profile> {
        on!(&self.engine, c => c.llama.profile())
    }

    /// Samples from the current weights on the engine (see
    /// [`crate::model::generate`]).
    pub fn decoder(&self) -> AnyDecoder<'_> {
        self.engine.decoder()
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &crate::model::ModelConfig {
        on!(&self.engine, c => c.llama.config())
    }

    /// Where each parameter lives in the flat buffers.
    pub fn layout(&self) -> &Layout {
        on!(&self.engine, c => c.llama.layout())
    }

    /// Log-probabilities of the batch's scored targets (no gradient).
    pub fn logprobs(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, TrainError> {
        on!(&mut self.engine, c => c.run(batch, None))
    }

    /// Forward and backward: returns the scored log-probs and adds the
    /// gradient of the loss into the gradient buffer. `dloss` maps a chunk
    /// of log-probs (from index `start` of the batch's scored positions) to
    /// ∂loss/∂log-prob.
    pub fn accumulate(
        &mut self,
        batch: &TokenBatch,
        dloss: &mut GradFn<'_, f32>,
    ) -> Result<Vec<f32>, TrainError> {
        on!(&mut self.engine, c => c.run(batch, Some(dloss)))
    }

    /// The accumulated gradient of one parameter (tests, diagnostics).
    pub fn grad(&self, name: &str) -> Option<Vec<f32>> {
        on!(&self.engine, c => c.span_of(&c.grads, name))
    }

    /// The current value of one parameter.
    pub fn param(&self, name: &str) -> Option<Vec<f32>> {
        on!(&self.engine, c => c.span_of(&c.params, name))
    }

    /// Clips the accumulated gradient to a global L2 norm of `max_norm`;
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64, TrainError> {
        on!(&mut self.engine, c => c.clip_grad_norm(max_norm))
    }

    /// One AdamW step with learning rate `lr`, then zeroes the gradient.
    pub fn optimizer_step(&mut self, lr: f64) {
        self.step += 1;
        let (betas, eps, wd, step) = (self.betas, self.eps, self.weight_decay, self.step);
        on!(&mut self.engine, c => c.optimizer_step(lr, betas, eps, wd, step))
    }

    /// Replaces the weights with `model`'s (same configuration; names and
    /// shapes are checked).
    pub fn set_weights(&mut self, model: &Model) -> Result<(), TrainError> {
        on!(&mut self.engine, c => fill_weights(&c.llama, model, &mut c.params))
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        on!(&mut self.engine, c => c.zero_grad())
    }

    fn host_params(&self) -> Result<std::borrow::Cow<'_, [f32]>, TrainError> {
        on!(&self.engine, c => c.host_params())
    }

    /// Writes the learner's weights into `model` (in its dtype).
    pub fn sync_to(&self, model: &Model) -> Result<(), TrainError> {
        let host = self.host_params()?;
        for ((_, var), info) in model.named_parameters().iter().zip(&self.layout().params) {
            let s = info.span;
            let t = Tensor::from_slice(
                &host[s.off..s.off + s.len],
                info.shape.as_slice(),
                model.device(),
            )?;
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    /// The weights as named tensors in `dtype` on the CPU (Hugging Face names).
    pub fn named_tensors(&self, dtype: DType) -> Result<HashMap<String, Tensor>, TrainError> {
        let cpu = candle_core::Device::Cpu;
        let host = self.host_params()?;
        let mut out = HashMap::new();
        for info in &self.layout().params {
            let s = info.span;
            let t = Tensor::from_slice(&host[s.off..s.off + s.len], info.shape.as_slice(), &cpu)?;
            out.insert(info.name.clone(), t.to_dtype(dtype)?);
        }
        Ok(out)
    }

    /// A candle model holding the current weights (in `dtype`, on `device`).
    pub fn to_model(
        &self,
        dtype: DType,
        device: &candle_core::Device,
    ) -> Result<Model, TrainError> {
        let cfg = self.config().clone();
        Ok(Model::from_tensors(
            cfg,
            self.named_tensors(dtype)?,
            device,
            dtype,
            "learner weights",
        )?)
    }

    /// Writes the current weights in Hugging Face format (in `dtype`) with
    /// the tokenizer into `dir`, streaming from the flat buffer (f32 on the
    /// CPU backend: no copy; bf16/f16: one tensor converted at a time).
    pub fn save_hf(
        &self,
        tok: &Tokenizer,
        dir: &std::path::Path,
        dtype: DType,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let host = self.host_params()?;
        let entries = self.layout().params.iter().map(|info| {
            let s = info.span;
            (
                info.name.clone(),
                FlatView::new(&host[s.off..s.off + s.len], &info.shape, dtype),
            )
        });
        write_safetensors(&dir.join("model.safetensors"), entries)?;
        crate::model::save_hf_meta(self.config(), dtype, tok, dir)?;
        Ok(())
    }

    /// Writes the moments (`m.<i>`, `v.<i>`, `i` in checkpoint order) and,
    /// with `weights`, the f32 master weights (`w.<i>`: a checkpoint
    /// written in bf16 would otherwise lose them) to a safetensors file.
    pub fn save_state(&self, path: &std::path::Path, weights: bool) -> Result<(), TrainError> {
        on!(&self.engine, c => c.save_state(path, weights))
    }

    /// Restores moments (and master weights, where saved) written by
    /// [`Learner::save_state`] and the step count; `origin` names the
    /// file in errors.
    pub fn load_state(
        &mut self,
        mut t: HashMap<String, Tensor>,
        step: usize,
        origin: &str,
    ) -> Result<(), TrainError> {
        on!(&mut self.engine, c => c.load_state(&mut t, origin))?;
        self.step = step;
        Ok(())
    }
}
