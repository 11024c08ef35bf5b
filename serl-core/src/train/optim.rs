//! AdamW with a checkpointable state, the cosine-with-minimum learning-rate
//! schedule with linear warm-up, and global gradient-norm clipping.

use std::collections::HashMap;

use candle_core::{DType, Tensor, Var};

use super::TrainError;

/// Adam moments of every parameter plus the step count.
pub struct AdamW {
    /// β1, β2.
    pub betas: (f64, f64),
    /// ε.
    pub eps: f64,
    /// Decoupled weight decay.
    pub weight_decay: f64,
    /// Optimizer steps taken.
    pub step: usize,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
}

impl AdamW {
    /// Zero moments for these parameters.
    pub fn new(
        params: &[&Var],
        betas: (f64, f64),
        eps: f64,
        weight_decay: f64,
    ) -> Result<Self, TrainError> {
        let mut m = Vec::with_capacity(params.len());
        let mut v = Vec::with_capacity(params.len());
        for p in params {
            m.push(p.as_tensor().zeros_like()?.to_dtype(DType::F32)?);
            v.push(p.as_tensor().zeros_like()?.to_dtype(DType::F32)?);
        }
        Ok(AdamW {
            betas,
            eps,
            weight_decay,
            step: 0,
            m,
            v,
        })
    }

    /// One update with learning rate `lr`; `grads[i]` belongs to `params[i]`.
    pub fn update(&mut self, params: &[&Var], grads: &[Tensor], lr: f64) -> Result<(), TrainError> {
        self.step += 1;
        let (b1, b2) = self.betas;
        let c1 = 1.0 - b1.powi(self.step as i32);
        let c2 = 1.0 - b2.powi(self.step as i32);
        for (i, (p, g)) in params.iter().zip(grads).enumerate() {
            let g = g.to_dtype(DType::F32)?;
            self.m[i] = ((&self.m[i] * b1)? + (&g * (1.0 - b1))?)?;
            self.v[i] = ((&self.v[i] * b2)? + (g.sqr()? * (1.0 - b2))?)?;
            let mhat = (&self.m[i] / c1)?;
            let vhat = (&self.v[i] / c2)?;
            let w = p.as_tensor().to_dtype(DType::F32)?;
            let mut delta = (mhat / (vhat.sqrt()? + self.eps)?)?;
            if self.weight_decay != 0.0 {
                delta = (delta + (&w * self.weight_decay)?)?;
            }
            let next = (w - (delta * lr)?)?;
            p.set(&next.to_dtype(p.dtype())?)?;
        }
        Ok(())
    }

    /// The moments as named tensors (`m.<i>`, `v.<i>`) for a checkpoint.
    pub fn state_tensors(&self) -> HashMap<String, Tensor> {
        let mut out = HashMap::new();
        for (i, (m, v)) in self.m.iter().zip(&self.v).enumerate() {
            out.insert(format!("m.{i}"), m.clone());
            out.insert(format!("v.{i}"), v.clone());
        }
        out
    }

    /// Restores moments saved by [`AdamW::state_tensors`].
    pub fn load_state(
        &mut self,
        mut t: HashMap<String, Tensor>,
        step: usize,
    ) -> Result<(), TrainError> {
        for i in 0..self.m.len() {
            let m = t
                .remove(&format!("m.{i}"))
                .ok_or_else(|| TrainError::Checkpoint(format!("optimizer state m.{i} missing")))?;
            let v = t
                .remove(&format!("v.{i}"))
                .ok_or_else(|| TrainError::Checkpoint(format!("optimizer state v.{i} missing")))?;
            if m.dims() != self.m[i].dims() || v.dims() != self.v[i].dims() {
                return Err(TrainError::Checkpoint(format!(
                    "optimizer state {i} has the wrong shape"
                )));
            }
            self.m[i] = m.to_device(self.m[i].device())?;
            self.v[i] = v.to_device(self.v[i].device())?;
        }
        self.step = step;
        Ok(())
    }
}

/// Learning rate at optimizer step `step` (0-based) of `total`: linear
/// warm-up over `warmup_ratio·total` steps, then cosine decay from `peak` to
/// `min_ratio·peak` (OpenRLHF's `cosine_with_min_lr`).
pub fn cosine_lr(step: usize, total: usize, peak: f64, warmup_ratio: f64, min_ratio: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return peak * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let progress = ((step - warmup) as f64 / span as f64).min(1.0);
    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
    peak * (min_ratio + (1.0 - min_ratio) * cosine)
}

/// Scales `grads` so their global L2 norm is at most `max_norm`; returns the
/// norm before clipping.
pub fn clip_grad_norm(grads: &mut [Tensor], max_norm: f64) -> Result<f64, TrainError> {
    let mut sq = 0.0f64;
    for g in grads.iter() {
        sq += g
            .to_dtype(DType::F64)?
            .sqr()?
            .sum_all()?
            .to_scalar::<f64>()?;
    }
    let norm = sq.sqrt();
    if norm.is_finite() && norm > max_norm {
        let scale = max_norm / (norm + 1e-6);
        for g in grads.iter_mut() {
            *g = (&*g * scale)?;
        }
    }
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedule_warms_up_then_decays_to_the_minimum() {
        let total = 100;
        assert!((cosine_lr(0, total, 1.0, 0.03, 0.1) - 1.0 / 3.0).abs() < 1e-12);
        assert!((cosine_lr(2, total, 1.0, 0.03, 0.1) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(3, total, 1.0, 0.03, 0.1) - 1.0).abs() < 1e-12);
        assert!((cosine_lr(100, total, 1.0, 0.03, 0.1) - 0.1).abs() < 1e-12);
        let mid = cosine_lr(3 + 97 / 2, total, 1.0, 0.03, 0.1);
        assert!((mid - 0.55).abs() < 0.02);
    }

    #[test]
    fn adamw_first_step_moves_each_weight_by_lr() {
        let dev = candle_core::Device::Cpu;
        let w = Var::from_tensor(&Tensor::new(&[1.0f32, -2.0, 3.0], &dev).unwrap()).unwrap();
        let mut opt = AdamW::new(&[&w], (0.9, 0.95), 1e-8, 0.0).unwrap();
        let g = Tensor::new(&[0.5f32, -0.1, 0.0], &dev).unwrap();
        opt.update(&[&w], &[g], 0.01).unwrap();
        let v: Vec<f32> = w.as_tensor().to_vec1().unwrap();
        // Adam's first step is lr·sign(g) (0 where g = 0).
        assert!(
            (v[0] - 0.99).abs() < 1e-6 && (v[1] + 1.99).abs() < 1e-6 && (v[2] - 3.0).abs() < 1e-6
        );
    }

    #[test]
    fn clipping_scales_to_the_max_norm() {
        let dev = candle_core::Device::Cpu;
        let mut g = vec![Tensor::new(&[3.0f32, 4.0], &dev).unwrap()];
        let n = clip_grad_norm(&mut g, 1.0).unwrap();
        assert!((n - 5.0).abs() < 1e-9);
        let v: Vec<f32> = g[0].to_vec1().unwrap();
        assert!((v[0] - 0.6).abs() < 1e-5 && (v[1] - 0.8).abs() < 1e-5);
    }
}
