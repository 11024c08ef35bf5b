//! Tensor operations of the decoder, each in two forms: a differentiable one
//! built from ops that candle can back-propagate through (candle 0.11's fused
//! `rms_norm`, `softmax_last_dim` and `rope` record no backward, so the
//! gradient would silently stop there), and the fused one for rollouts.

use candle_core::{D, DType, Result, Tensor};

/// The dtype reductions run in: f64 stays f64 (for gradient checks), the
/// rest is computed in f32.
fn wide(dt: DType) -> DType {
    if dt == DType::F64 {
        DType::F64
    } else {
        DType::F32
    }
}

/// `x @ wᵀ (+ b)` for `x` of shape `[.., in]` and a Hugging Face weight `[out, in]`.
pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let inner = dims[dims.len() - 1];
    let rows: usize = dims[..dims.len() - 1].iter().product();
    let y = x.reshape((rows, inner))?.matmul(&w.t()?)?;
    let y = match b {
        Some(b) => y.broadcast_add(b)?,
        None => y,
    };
    let mut out = dims;
    let last = out.len() - 1;
    out[last] = w.dim(0)?;
    y.reshape(out)
}

/// `x @ wᵀ (+ b)` for the rollout path: few rows of f32 on the CPU go
/// through [`super::gemv::skinny_matmul`], the rest through [`linear`].
pub fn linear_fast(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
    let dims = x.dims().to_vec();
    let k = dims[dims.len() - 1];
    let m: usize = dims[..dims.len() - 1].iter().product();
    let n = w.dim(0)?;
    let cpu_f32 = x.device().is_cpu() && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if !cpu_f32 || m > 8 || !w.is_contiguous() {
        return linear(x, w, b);
    }
    let xv: Vec<f32> = x.flatten_all()?.to_vec1()?;
    let bias: Option<Vec<f32>> = match b {
        Some(b) => Some(b.to_dtype(DType::F32)?.to_vec1()?),
        None => None,
    };
    let (storage, layout) = w.storage_and_layout();
    let out = match &*storage {
        candle_core::Storage::Cpu(cpu) => {
            let all = cpu.as_slice::<f32>()?;
            let start = layout.start_offset();
            super::gemv::skinny_matmul(&xv, m, &all[start..start + n * k], n, k, bias.as_deref())
        }
        _ => return linear(x, w, b),
    };
    drop(storage);
    let mut shape = dims;
    let last = shape.len() - 1;
    shape[last] = n;
    Tensor::from_vec(out, shape, x.device())
}

/// RMSNorm over the last dimension, differentiable; computed in f32 (f64 for f64).
pub fn rms_norm_train(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    let dt = x.dtype();
    let xf = x.to_dtype(wide(x.dtype()))?;
    let ms = xf.sqr()?.mean_keepdim(D::Minus1)?;
    let y = xf.broadcast_div(&(ms + eps)?.sqrt()?)?;
    y.to_dtype(dt)?.broadcast_mul(w)
}

/// RMSNorm over the last dimension, fused (no backward).
pub fn rms_norm_fast(x: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    candle_nn::ops::rms_norm(&x.contiguous()?, w, eps as f32)
}

/// Softmax over the last dimension, differentiable (max-shifted, computed in f32).
pub fn softmax_train(x: &Tensor) -> Result<Tensor> {
    let dt = x.dtype();
    let xf = x.to_dtype(wide(x.dtype()))?;
    // The shift is a constant for the gradient: softmax is invariant to it.
    let m = xf.max_keepdim(D::Minus1)?.detach();
    let e = xf.broadcast_sub(&m)?.exp()?;
    let s = e.sum_keepdim(D::Minus1)?;
    e.broadcast_div(&s)?.to_dtype(dt)
}

/// Log-softmax over the last dimension, differentiable, in f32 (f64 for f64).
pub fn log_softmax_train(x: &Tensor) -> Result<Tensor> {
    let xf = x.to_dtype(wide(x.dtype()))?;
    let m = xf.max_keepdim(D::Minus1)?.detach();
    let shifted = xf.broadcast_sub(&m)?;
    let lse = shifted.exp()?.sum_keepdim(D::Minus1)?.log()?;
    shifted.broadcast_sub(&lse)
}

/// Rotary embedding (rotate-half layout, as Hugging Face checkpoints use),
/// differentiable. `x` is `[B, H, T, d]`, `cos`/`sin` are `[B or 1, T, d/2]`.
pub fn rope_train(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let cos = Tensor::cat(&[cos, cos], D::Minus1)?
        .unsqueeze(1)?
        .to_dtype(x.dtype())?;
    let sin = Tensor::cat(&[sin, sin], D::Minus1)?
        .unsqueeze(1)?
        .to_dtype(x.dtype())?;
    let x1 = x.narrow(D::Minus1, 0, d / 2)?;
    let x2 = x.narrow(D::Minus1, d / 2, d / 2)?;
    let rotated = Tensor::cat(&[&x2.neg()?, &x1], D::Minus1)?;
    x.broadcast_mul(&cos)? + rotated.broadcast_mul(&sin)?
}

/// Rotary embedding, fused (no backward). `cos`/`sin` are `[B, T, d/2]`.
pub fn rope_fast(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    let dt = x.dtype();
    candle_nn::rotary_emb::rope(
        &x.contiguous()?,
        &cos.to_dtype(dt)?.contiguous()?,
        &sin.to_dtype(dt)?.contiguous()?,
    )
}

/// SiLU(gate) · up (candle's SiLU records its backward).
pub fn swiglu(gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    gate.silu()? * up
}
