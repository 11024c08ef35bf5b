//! The CPU backend: host vectors and the kernels of [`super::kernels`].

use super::kernels::{self as k, AttnDims, GradFn, TailScratch};
use super::{Backend, EngineError, MmDims, Span};

/// Positions per chunk of the fused output tail: the `[chunk, vocab]`
/// logits are its largest buffer (50 MB for SmolLM2's 49,152 tokens); a
/// smaller chunk re-packs the head matrix more often (64: +40% tail time
/// on the 32k-vocabulary bench).
const TAIL_CHUNK: usize = 256;

/// The CPU backend (SIMD through the `gemm` crate, threads through rayon).
#[derive(Debug, Default, Clone, Copy)]
pub struct Cpu;

fn at(buf: &[f32], s: Span) -> &[f32] {
    &buf[s.off..s.off + s.len]
}

fn at_mut(buf: &mut [f32], s: Span) -> &mut [f32] {
    &mut buf[s.off..s.off + s.len]
}

impl Backend for Cpu {
    type Buf = Vec<f32>;
    type Ids = Vec<u32>;
    type TailScratch = TailScratch<f32>;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn zeros(&self, len: usize) -> Result<Vec<f32>, EngineError> {
        let mut v = Vec::new();
        v.try_reserve_exact(len)
            .map_err(|_| EngineError::Device(format!("cannot allocate {len} floats")))?;
        v.resize(len, 0.0);
        Ok(v)
    }

    fn upload(&self, data: &[f32]) -> Result<Vec<f32>, EngineError> {
        Ok(data.to_vec())
    }

    fn upload_ids(&self, ids: &[u32]) -> Result<Vec<u32>, EngineError> {
        Ok(ids.to_vec())
    }

    fn read(&self, buf: &Vec<f32>, span: Span) -> Result<Vec<f32>, EngineError> {
        let mut out = Vec::new();
        self.read_into(buf, span, &mut out)?;
        Ok(out)
    }

    fn read_into(&self, buf: &Vec<f32>, span: Span, out: &mut Vec<f32>) -> Result<(), EngineError> {
        let src = buf
            .get(span.off..span.off + span.len)
            .ok_or_else(|| EngineError::Invalid(format!("read of {span:?} past {}", buf.len())))?;
        out.clear();
        out.extend_from_slice(src);
        Ok(())
    }

    fn host<'a>(
        &self,
        buf: &'a Vec<f32>,
        len: usize,
    ) -> Result<std::borrow::Cow<'a, [f32]>, EngineError> {
        buf.get(..len)
            .map(std::borrow::Cow::Borrowed)
            .ok_or_else(|| EngineError::Invalid(format!("{len} elements of {}", buf.len())))
    }

    fn write(&self, buf: &mut Vec<f32>, off: usize, data: &[f32]) -> Result<(), EngineError> {
        buf.get_mut(off..off + data.len())
            .ok_or_else(|| EngineError::Invalid(format!("write at {off} past {}", data.len())))?
            .copy_from_slice(data);
        Ok(())
    }

    fn sync(&self) -> Result<(), EngineError> {
        Ok(())
    }

    fn zero(&self, buf: &mut Vec<f32>, len: usize) {
        buf[..len].fill(0.0);
    }

    fn copy(&self, src: &Vec<f32>, dst: &mut Vec<f32>, len: usize) {
        dst[..len].copy_from_slice(&src[..len]);
    }

    fn add(&self, dst: &mut Vec<f32>, src: &Vec<f32>, len: usize) {
        k::add(&mut dst[..len], &src[..len]);
    }

    fn embedding(
        &self,
        params: &Vec<f32>,
        table: Span,
        ids: &Vec<u32>,
        n: usize,
        out: &mut Vec<f32>,
        d: usize,
    ) {
        k::embedding(at(params, table), &ids[..n], out, d);
    }

    fn embedding_bwd(
        &self,
        grads: &mut Vec<f32>,
        table: Span,
        ids: &Vec<u32>,
        n: usize,
        dout: &Vec<f32>,
        d: usize,
    ) {
        k::embedding_bwd(at_mut(grads, table), &ids[..n], dout, d);
    }

    fn rmsnorm(
        &self,
        x: &Vec<f32>,
        params: &Vec<f32>,
        w: Span,
        out: &mut Vec<f32>,
        rstd: &mut Vec<f32>,
        n: usize,
        d: usize,
        eps: f64,
    ) {
        k::rmsnorm(&x[..n * d], at(params, w), out, &mut rstd[..n], d, eps);
    }

    fn rmsnorm_apply(
        &self,
        x: &Vec<f32>,
        params: &Vec<f32>,
        w: Span,
        rstd: &Vec<f32>,
        out: &mut Vec<f32>,
        n: usize,
        d: usize,
    ) {
        k::rmsnorm_apply(x, at(params, w), &rstd[..n], out, d);
    }

    fn rmsnorm_bwd(
        &self,
        x: &Vec<f32>,
        params: &Vec<f32>,
        w: Span,
        rstd: &Vec<f32>,
        dout: &Vec<f32>,
        dx: &mut Vec<f32>,
        grads: &mut Vec<f32>,
        n: usize,
        d: usize,
    ) {
        k::rmsnorm_bwd(x, at(params, w), &rstd[..n], dout, dx, at_mut(grads, w), d);
    }

    fn matmul(
        &self,
        x: &Vec<f32>,
        params: &Vec<f32>,
        w: Span,
        bias: Option<Span>,
        out: &mut Vec<f32>,
        dims: MmDims,
        acc: bool,
    ) {
        k::matmul(
            x,
            at(params, w),
            bias.map(|b| at(params, b)),
            out,
            dims,
            acc,
        );
    }

    fn matmul_dx(
        &self,
        dout: &Vec<f32>,
        params: &Vec<f32>,
        w: Span,
        dx: &mut Vec<f32>,
        dims: MmDims,
        acc: bool,
    ) {
        k::matmul_dx(dout, at(params, w), dx, dims, acc);
    }

    fn matmul_dw(
        &self,
        dout: &Vec<f32>,
        x: &Vec<f32>,
        grads: &mut Vec<f32>,
        w: Span,
        bias: Option<Span>,
        dims: MmDims,
    ) {
        match bias {
            // The weight and bias spans never overlap (Layout hands them out back to back).
            Some(b) if b.off >= w.off + w.len => {
                let (lo, hi) = grads.split_at_mut(b.off);
                k::matmul_dw(dout, x, at_mut(lo, w), Some(&mut hi[..b.len]), dims);
            }
            Some(b) => {
                let (lo, hi) = grads.split_at_mut(w.off);
                k::matmul_dw(dout, x, &mut hi[..w.len], Some(at_mut(lo, b)), dims);
            }
            None => k::matmul_dw(dout, x, at_mut(grads, w), None, dims),
        }
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        pos: &Vec<u32>,
        n: usize,
        cos: &Vec<f32>,
        sin: &Vec<f32>,
        heads: usize,
        hd: usize,
        inverse: bool,
    ) {
        k::rope(x, &pos[..n], cos, sin, heads, hd, inverse);
    }

    fn attention(
        &self,
        q: &Vec<f32>,
        kk: &Vec<f32>,
        v: &Vec<f32>,
        out: &mut Vec<f32>,
        lse: &mut Vec<f32>,
        pad: &Vec<u32>,
        d: AttnDims,
    ) {
        k::attention(q, kk, v, out, lse, pad, d);
    }

    fn attention_bwd(
        &self,
        q: &Vec<f32>,
        kk: &Vec<f32>,
        v: &Vec<f32>,
        out: &Vec<f32>,
        lse: &Vec<f32>,
        dout: &Vec<f32>,
        dq: &mut Vec<f32>,
        dk: &mut Vec<f32>,
        dv: &mut Vec<f32>,
        pad: &Vec<u32>,
        d: AttnDims,
    ) {
        k::attention_bwd(q, kk, v, out, lse, dout, dq, dk, dv, pad, d);
    }

    fn kv_write(
        &self,
        cache: &mut Vec<f32>,
        src: &Vec<f32>,
        b: usize,
        t: usize,
        cap: usize,
        len: usize,
        width: usize,
    ) {
        for s in 0..b {
            let dst = (s * cap + len) * width;
            cache[dst..dst + t * width].copy_from_slice(&src[s * t * width..(s + 1) * t * width]);
        }
    }

    fn attention_cached(
        &self,
        q: &Vec<f32>,
        kc: &Vec<f32>,
        vc: &Vec<f32>,
        out: &mut Vec<f32>,
        pad: &Vec<u32>,
        len: usize,
        cap: usize,
        d: AttnDims,
    ) {
        k::attention_cached(q, kc, vc, out, pad, len, cap, d);
    }

    fn copy_rows(
        &self,
        src: &Vec<f32>,
        from: usize,
        dst: &mut Vec<f32>,
        to: usize,
        rows: usize,
        width: usize,
    ) {
        dst[to * width..(to + rows) * width]
            .copy_from_slice(&src[from * width..(from + rows) * width]);
    }

    fn swiglu(&self, g: &Vec<f32>, u: &Vec<f32>, out: &mut Vec<f32>, len: usize) {
        k::swiglu(&g[..len], &u[..len], &mut out[..len]);
    }

    fn swiglu_bwd(
        &self,
        g: &Vec<f32>,
        u: &Vec<f32>,
        dout: &Vec<f32>,
        dg: &mut Vec<f32>,
        du: &mut Vec<f32>,
        len: usize,
    ) {
        k::swiglu_bwd(
            &g[..len],
            &u[..len],
            &dout[..len],
            &mut dg[..len],
            &mut du[..len],
        );
    }

    fn tail_scratch(&self, v: usize, d: usize) -> Result<TailScratch<f32>, EngineError> {
        Ok(TailScratch::new(TAIL_CHUNK, v, d))
    }

    fn logprob_tail(
        &self,
        h: &Vec<f32>,
        params: &Vec<f32>,
        head: Span,
        rows: &Vec<u32>,
        targets: &Vec<u32>,
        n: usize,
        grad: Option<(&mut GradFn<'_, f32>, &mut Vec<f32>, &mut Vec<f32>)>,
        scratch: &mut TailScratch<f32>,
        dims: (usize, usize),
    ) -> Result<Vec<f32>, EngineError> {
        let mut lp = vec![0f32; n];
        let grad = grad.map(|(f, dh, grads)| (f, dh.as_mut_slice(), at_mut(grads, head)));
        k::logprob_tail(
            h,
            at(params, head),
            &rows[..n],
            &targets[..n],
            &mut lp,
            grad,
            scratch,
            dims,
        );
        Ok(lp)
    }

    fn adamw(
        &self,
        params: &mut Vec<f32>,
        grads: &Vec<f32>,
        m: &mut Vec<f32>,
        v: &mut Vec<f32>,
        lr: f64,
        betas: (f64, f64),
        eps: f64,
        wd: f64,
        step: usize,
    ) {
        k::adamw(params, grads, m, v, lr, betas, eps, wd, step);
    }

    fn sq_sum(&self, x: &Vec<f32>, len: usize) -> Result<f64, EngineError> {
        Ok(k::sq_sum(&x[..len]))
    }

    fn scale(&self, x: &mut Vec<f32>, len: usize, s: f64) {
        k::scale(&mut x[..len], s);
    }
}
