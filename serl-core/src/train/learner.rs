//! The learner: batches of token rows → log-probs, a loss gradient, the
//! parameters' gradients, global-norm clipping and AdamW, all on the
//! compute engine ([`crate::engine`]) with f32 master weights in flat
//! buffers. The sampler's candle [`Model`] receives the weights after each
//! optimizer step ([`Learner::sync_to`]).

use std::collections::HashMap;

use candle_core::{DType, Tensor};

use super::TrainError;
use crate::engine::{Activations, Backend, Cpu, GradFn, Layout, Llama, Profile, Span, TokenBatch};
use crate::model::{EngineDecoder, Model, Tokenizer};

/// A frozen model on the engine that scores token rows (the reference
/// policy of the KL term).
pub struct Scorer {
    llama: Llama<Cpu>,
    params: Vec<f32>,
    acts: Option<Activations<Cpu>>,
}

impl Scorer {
    /// `model`'s weights (as f32) on the engine.
    pub fn new(model: &Model) -> Result<Scorer, TrainError> {
        let llama = Llama::new(Cpu, model.config().clone())?;
        let params = engine_weights(&llama, model)?;
        Ok(Scorer {
            llama,
            params,
            acts: None,
        })
    }

    /// Samples from these weights on the engine (see [`crate::model::generate`]).
    pub fn decoder(&self) -> EngineDecoder<'_> {
        EngineDecoder {
            llama: &self.llama,
            params: &self.params,
        }
    }

    /// Log-probabilities of the batch's scored targets.
    pub fn logprobs(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, TrainError> {
        let mut acts = match self.acts.take() {
            Some(a) => a,
            None => self.llama.inference_activations(batch.n())?,
        };
        let out = self.llama.forward(&self.params, batch, &mut acts, None);
        self.acts = Some(acts);
        Ok(out?)
    }
}

/// `model`'s weights as one flat f32 buffer in the engine's layout.
fn engine_weights(llama: &Llama<Cpu>, model: &Model) -> Result<Vec<f32>, TrainError> {
    let mut params = llama.backend().zeros(llama.layout().total)?;
    fill_weights(llama, model, &mut params)?;
    Ok(params)
}

/// Writes `model`'s weights (as f32) into `params`, checking that names
/// and shapes follow the engine's layout.
fn fill_weights(
    llama: &Llama<Cpu>,
    model: &Model,
    params: &mut Vec<f32>,
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
    llama: Llama<Cpu>,
    params: Vec<f32>,
    grads: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
    acts: Option<Activations<Cpu>>,
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
    /// A learner holding `model`'s weights (as f32) with zero moments.
    pub fn new(
        model: &Model,
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Result<Learner, TrainError> {
        let llama = Llama::new(Cpu, model.config().clone())?;
        let params = engine_weights(&llama, model)?;
        let total = llama.layout().total;
        let be = llama.backend();
        Ok(Learner {
            grads: be.zeros(total)?,
            m: be.zeros(total)?,
            v: be.zeros(total)?,
            params,
            llama,
            acts: None,
            betas,
            eps,
            weight_decay,
            step: 0,
        })
    }

    /// Starts (or stops) timing each kernel (see [`crate::engine::Profile`]).
    pub fn set_profiling(&mut self, on: bool) {
        self.llama.set_profiling(on);
    }

    /// Kernel times summed since profiling started.
    pub fn profile(&self) -> Option<&Profile> {
        self.llama.profile()
    }

    /// Samples from the current weights on the engine (see
    /// [`crate::model::generate`]).
    pub fn decoder(&self) -> EngineDecoder<'_> {
        EngineDecoder {
            llama: &self.llama,
            params: &self.params,
        }
    }

    /// The model's hyper-parameters.
    pub fn config(&self) -> &crate::model::ModelConfig {
        self.llama.config()
    }

    /// Where each parameter lives in the flat buffers.
    pub fn layout(&self) -> &Layout {
        self.llama.layout()
    }

    fn run(
        &mut self,
        batch: &TokenBatch,
        grad: Option<&mut GradFn<'_, f32>>,
    ) -> Result<Vec<f32>, TrainError> {
        let mut acts = match self.acts.take() {
            Some(a) => a,
            None => self.llama.activations(batch.n())?,
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

    /// Log-probabilities of the batch's scored targets (no gradient).
    pub fn logprobs(&mut self, batch: &TokenBatch) -> Result<Vec<f32>, TrainError> {
        self.run(batch, None)
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
        self.run(batch, Some(dloss))
    }

    /// The accumulated gradient of one parameter (tests, diagnostics).
    pub fn grad(&self, name: &str) -> Option<Vec<f32>> {
        let span = self.llama.span_of(name)?;
        Some(self.grads[span.off..span.off + span.len].to_vec())
    }

    /// The current value of one parameter.
    pub fn param(&self, name: &str) -> Option<Vec<f32>> {
        let span = self.llama.span_of(name)?;
        Some(self.params[span.off..span.off + span.len].to_vec())
    }

    /// Clips the accumulated gradient to a global L2 norm of `max_norm`;
    /// returns the norm before clipping.
    pub fn clip_grad_norm(&mut self, max_norm: f64) -> Result<f64, TrainError> {
        let be = self.llama.backend();
        let len = self.grads.len();
        let norm = be.sq_sum(&self.grads, len)?.sqrt();
        if norm.is_finite() && norm > max_norm {
            be.scale(&mut self.grads, len, max_norm / (norm + 1e-6));
        }
        Ok(norm)
    }

    /// One AdamW step with learning rate `lr`, then zeroes the gradient.
    pub fn optimizer_step(&mut self, lr: f64) {
        self.step += 1;
        let be = self.llama.backend();
        be.adamw(
            &mut self.params,
            &self.grads,
            &mut self.m,
            &mut self.v,
            lr,
            self.betas,
            self.eps,
            self.weight_decay,
            self.step,
        );
        let len = self.grads.len();
        be.zero(&mut self.grads, len);
    }

    /// Replaces the weights with `model`'s (same configuration; names and
    /// shapes are checked).
    pub fn set_weights(&mut self, model: &Model) -> Result<(), TrainError> {
        fill_weights(&self.llama, model, &mut self.params)
    }

    /// Sets the gradient to zero.
    pub fn zero_grad(&mut self) {
        let len = self.grads.len();
        self.llama.backend().zero(&mut self.grads, len);
    }

    /// Writes the learner's weights into `model` (in its dtype).
    pub fn sync_to(&self, model: &Model) -> Result<(), TrainError> {
        for ((_, var), info) in model.named_parameters().iter().zip(&self.layout().params) {
            let t = self.tensor(&self.params, info.span, &info.shape, model)?;
            var.set(&t.to_dtype(var.dtype())?)?;
        }
        Ok(())
    }

    fn tensor(
        &self,
        buf: &[f32],
        span: Span,
        shape: &[usize],
        model: &Model,
    ) -> Result<Tensor, TrainError> {
        Ok(Tensor::from_slice(
            &buf[span.off..span.off + span.len],
            shape,
            model.device(),
        )?)
    }

    /// The weights as named tensors in `dtype` on the CPU (Hugging Face names).
    pub fn named_tensors(&self, dtype: DType) -> Result<HashMap<String, Tensor>, TrainError> {
        let cpu = candle_core::Device::Cpu;
        let mut out = HashMap::new();
        for info in &self.layout().params {
            let s = info.span;
            let t = Tensor::from_slice(
                &self.params[s.off..s.off + s.len],
                info.shape.as_slice(),
                &cpu,
            )?;
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
        let cfg = self.llama.config().clone();
        Ok(Model::from_tensors(
            cfg,
            self.named_tensors(dtype)?,
            device,
            dtype,
            "learner weights",
        )?)
    }

    /// Writes the current weights in Hugging Face format (in `dtype`) with
    /// the tokenizer into `dir`, streaming from the flat buffer (f32: no
    /// copy; bf16/f16: one tensor converted at a time).
    pub fn save_hf(
        &self,
        tok: &Tokenizer,
        dir: &std::path::Path,
        dtype: DType,
    ) -> Result<(), TrainError> {
        std::fs::create_dir_all(dir).map_err(|e| TrainError::io(dir, e))?;
        let entries = self.layout().params.iter().map(|info| {
            let s = info.span;
            (
                info.name.clone(),
                FlatView::new(&self.params[s.off..s.off + s.len], &info.shape, dtype),
            )
        });
        write_safetensors(&dir.join("model.safetensors"), entries)?;
        crate::model::save_hf_meta(self.llama.config(), dtype, tok, dir)?;
        Ok(())
    }

    /// Writes the moments (`m.<i>`, `v.<i>`, `i` in checkpoint order) and,
    /// with `weights`, the f32 master weights (`w.<i>`: a checkpoint
    /// written in bf16 would otherwise lose them) to a safetensors file.
    pub fn save_state(&self, path: &std::path::Path, weights: bool) -> Result<(), TrainError> {
        let mut entries = Vec::new();
        for (i, info) in self.layout().params.iter().enumerate() {
            let s = info.span;
            let mut bufs = vec![("m", &self.m), ("v", &self.v)];
            if weights {
                bufs.push(("w", &self.params));
            }
            for (key, buf) in bufs {
                let view = FlatView::new(&buf[s.off..s.off + s.len], &info.shape, DType::F32);
                entries.push((format!("{key}.{i}"), view));
            }
        }
        write_safetensors(path, entries)
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
        let infos = self.layout().params.clone();
        let weights = t.contains_key("w.0");
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
                buf[info.span.off..info.span.off + info.span.len].copy_from_slice(&data);
            }
        }
        self.step = step;
        Ok(())
    }
}
