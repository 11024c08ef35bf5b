//! The CPU kernels on plain slices, generic over `f32` and `f64` (the f64
//! instances serve the finite-difference tests). Row-major everywhere: a
//! matrix `[r, c]` keeps element `(i, j)` at `i·c + j`; a weight `[out, in]`
//! is stored as Hugging Face stores it. Matrix products go to the `gemm`
//! crate (run-time SIMD dispatch, rayon), row-wise work to rayon.

use num_traits::Float;
use rayon::prelude::*;

/// The element types the kernels run on.
pub trait Real: Float + Send + Sync + std::iter::Sum + std::ops::AddAssign + 'static {
    /// `x` converted (rounded for f32).
    fn of(x: f64) -> Self;
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }
}

impl Real for f64 {
    fn of(x: f64) -> Self {
        x
    }
}

/// A matrix operand: data, row stride, column stride.
#[derive(Clone, Copy)]
struct Mat<T> {
    ptr: *const T,
    rs: isize,
    cs: isize,
}

fn rm<T>(s: &[T], cols: usize) -> Mat<T> {
    Mat {
        ptr: s.as_ptr(),
        rs: cols as isize,
        cs: 1,
    }
}

/// The transpose of a row-major `[rows, cols]` matrix, without a copy.
fn tr<T>(s: &[T], cols: usize) -> Mat<T> {
    Mat {
        ptr: s.as_ptr(),
        rs: 1,
        cs: cols as isize,
    }
}

/// `dst[m, n] (+)= lhs[m, k] · rhs[k, n]`; `dst` row-major with `n` columns.
///
/// # Safety
/// `lhs` and `rhs` must address `m·k` and `k·n` elements through their
/// strides, and `dst` must hold `m·n`.
unsafe fn gemm<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [T],
    acc: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(dst.len() >= m * n, "gemm: destination too small");
    // SAFETY: the caller guarantees the operands' extents; dst was checked.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            acc,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::Rayon(0),
        );
    }
}

/// `out[n, o] (+)= x[n, i] · w[o, i]ᵀ (+ bias[o])`.
pub fn matmul<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    (n, i, o): (usize, usize, usize),
    acc: bool,
) {
    assert!(
        x.len() >= n * i && w.len() >= o * i && out.len() >= n * o,
        "matmul: sizes"
    );
    // SAFETY: sizes checked above.
    unsafe { gemm(n, o, i, out, acc, rm(x, i), tr(w, i)) };
    if let Some(b) = bias {
        assert!(b.len() >= o, "matmul: bias size");
        out[..n * o].par_chunks_mut(o).for_each(|row| {
            for (y, &bb) in row.iter_mut().zip(b) {
                *y += bb;
            }
        });
    }
}

/// `dx[n, i] (+)= dout[n, o] · w[o, i]` (the input gradient of [`matmul`]).
pub fn matmul_dx<T: Real>(
    dout: &[T],
    w: &[T],
    dx: &mut [T],
    (n, i, o): (usize, usize, usize),
    acc: bool,
) {
    assert!(
        dout.len() >= n * o && w.len() >= o * i && dx.len() >= n * i,
        "matmul_dx: sizes"
    );
    // SAFETY: sizes checked above.
    unsafe { gemm(n, i, o, dx, acc, rm(dout, o), rm(w, i)) };
}

/// `dw[o, i] += dout[n, o]ᵀ · x[n, i]` and `db[o] += Σₙ dout[n, o]`.
pub fn matmul_dw<T: Real>(
    dout: &[T],
    x: &[T],
    dw: &mut [T],
    db: Option<&mut [T]>,
    (n, i, o): (usize, usize, usize),
) {
    assert!(
        dout.len() >= n * o && x.len() >= n * i && dw.len() >= o * i,
        "matmul_dw: sizes"
    );
    // SAFETY: sizes checked above.
    unsafe { gemm(o, i, n, dw, true, tr(dout, o), rm(x, i)) };
    if let Some(db) = db {
        for row in dout[..n * o].chunks(o) {
            for (g, &d) in db.iter_mut().zip(row) {
                *g += d;
            }
        }
    }
}

/// `out[r] = table[ids[r]]` (rows of width `d`).
pub fn embedding<T: Real>(table: &[T], ids: &[u32], out: &mut [T], d: usize) {
    out[..ids.len() * d]
        .par_chunks_mut(d)
        .zip(ids.par_iter())
        .for_each(|(row, &id)| row.copy_from_slice(&table[id as usize * d..(id as usize + 1) * d]));
}

/// `dtable[ids[r]] += dout[r]` (repeated ids accumulate).
pub fn embedding_bwd<T: Real>(dtable: &mut [T], ids: &[u32], dout: &[T], d: usize) {
    for (r, &id) in ids.iter().enumerate() {
        let dst = &mut dtable[id as usize * d..(id as usize + 1) * d];
        for (g, &x) in dst.iter_mut().zip(&dout[r * d..(r + 1) * d]) {
            *g += x;
        }
    }
}

/// RMSNorm over rows of width `d`: `out = x · rstd · w`, with
/// `rstd = 1/sqrt(mean(x²) + eps)` kept per row for the backward.
pub fn rmsnorm<T: Real>(x: &[T], w: &[T], out: &mut [T], rstd: &mut [T], d: usize, eps: f64) {
    let n = rstd.len().min(x.len() / d);
    out[..n * d]
        .par_chunks_mut(d)
        .zip(rstd[..n].par_iter_mut())
        .zip(x[..n * d].par_chunks(d))
        .for_each(|((o, r), x)| {
            let ms = x.iter().map(|&v| v * v).sum::<T>() / T::of(d as f64);
            *r = T::one() / (ms + T::of(eps)).sqrt();
            for ((y, &v), &g) in o.iter_mut().zip(x).zip(w) {
                *y = v * *r * g;
            }
        });
}

/// The RMSNorm output from a saved `rstd` (recomputed in the backward).
pub fn rmsnorm_apply<T: Real>(x: &[T], w: &[T], rstd: &[T], out: &mut [T], d: usize) {
    let n = rstd.len();
    out[..n * d]
        .par_chunks_mut(d)
        .zip(rstd.par_iter())
        .zip(x[..n * d].par_chunks(d))
        .for_each(|((o, &r), x)| {
            for ((y, &v), &g) in o.iter_mut().zip(x).zip(w) {
                *y = v * r * g;
            }
        });
}

/// RMSNorm backward: `dx += ∂/∂x`, `dw += ∂/∂w` for the upstream `dout`.
pub fn rmsnorm_bwd<T: Real>(
    x: &[T],
    w: &[T],
    rstd: &[T],
    dout: &[T],
    dx: &mut [T],
    dw: &mut [T],
    d: usize,
) {
    let n = rstd.len();
    dx[..n * d]
        .par_chunks_mut(d)
        .zip(rstd.par_iter())
        .zip(x[..n * d].par_chunks(d).zip(dout[..n * d].par_chunks(d)))
        .for_each(|((dx, &r), (x, g))| {
            let s = x
                .iter()
                .zip(g)
                .zip(w)
                .map(|((&a, &b), &c)| a * b * c)
                .sum::<T>();
            let c = s * r * r * r / T::of(d as f64);
            for (((dxi, &xi), &gi), &wi) in dx.iter_mut().zip(x).zip(g).zip(w) {
                *dxi += r * wi * gi - xi * c;
            }
        });
    for ((x, g), &r) in x[..n * d].chunks(d).zip(dout[..n * d].chunks(d)).zip(rstd) {
        for ((dwi, &xi), &gi) in dw.iter_mut().zip(x).zip(g) {
            *dwi += gi * xi * r;
        }
    }
}

/// Rotary embedding in place on rows of `heads × hd` (Hugging Face's
/// rotate-half pairing `(i, i + hd/2)`); row `r` is at position `pos[r]`.
/// `cos`/`sin` are `[positions, hd/2]` tables. `inverse` rotates back (the
/// backward of a rotation is its transpose).
pub fn rope<T: Real>(
    x: &mut [T],
    pos: &[u32],
    cos: &[T],
    sin: &[T],
    heads: usize,
    hd: usize,
    inverse: bool,
) {
    let half = hd / 2;
    let w = heads * hd;
    x[..pos.len() * w]
        .par_chunks_mut(w)
        .zip(pos.par_iter())
        .for_each(|(row, &p)| {
            let c = &cos[p as usize * half..(p as usize + 1) * half];
            let s = &sin[p as usize * half..(p as usize + 1) * half];
            for head in row.chunks_mut(hd) {
                let (a, b) = head.split_at_mut(half);
                for i in 0..half {
                    let (x1, x2) = (a[i], b[i]);
                    let sn = if inverse { -s[i] } else { s[i] };
                    a[i] = x1 * c[i] - x2 * sn;
                    b[i] = x2 * c[i] + x1 * sn;
                }
            }
        });
}

/// Attention shapes: batch, sequence length, query heads, key/value heads,
/// head width.
#[derive(Debug, Clone, Copy)]
pub struct AttnDims {
    /// Sequences.
    pub b: usize,
    /// Positions per sequence.
    pub t: usize,
    /// Query heads.
    pub nh: usize,
    /// Key/value heads (each serves `nh / nkv` query heads).
    pub nkv: usize,
    /// Head width.
    pub hd: usize,
}

/// A raw pointer shared by tasks that write disjoint parts of one slice.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used to hand disjoint element ranges to parallel tasks.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

fn dot<T: Real>(a: &[T], b: &[T]) -> T {
    a.iter().zip(b).map(|(&x, &y)| x * y).sum()
}

fn axpy<T: Real>(y: &mut [T], a: T, x: &[T]) {
    for (yi, &xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

/// Causal grouped-query attention. `q` is `[b·t, nh·hd]`, `k`/`v` are
/// `[b·t, nkv·hd]`, `out` like `q`; `lse` `[b, nh, t]` keeps each query's
/// log-sum-exp of scores for the backward, which recomputes the
/// probabilities instead of storing them. Keys before `pad[s]` of sequence
/// `s` are masked (left padding); a query with no visible key gives zeros.
pub fn attention<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [T],
    lse: &mut [T],
    pad: &[u32],
    d: AttnDims,
) {
    let AttnDims { b, t, nh, nkv, hd } = d;
    let rep = nh / nkv;
    let (qw, kw) = (nh * hd, nkv * hd);
    let scale = T::of(1.0 / (hd as f64).sqrt());
    assert!(q.len() >= b * t * qw && k.len() >= b * t * kw && v.len() >= b * t * kw);
    assert!(out.len() >= b * t * qw && lse.len() >= b * nh * t && pad.len() >= b);
    let outp = Shared(out.as_mut_ptr());
    let lsep = Shared(lse.as_mut_ptr());
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (s, h) = (bh / nh, bh % nh);
        let kvh = h / rep;
        let p0 = (pad[s] as usize).min(t);
        let mut scores = vec![T::zero(); t];
        let (outp, lsep) = (outp, lsep);
        for i in 0..t {
            let row = (s * t + i) * qw + h * hd;
            // SAFETY: task (s, h) alone writes out's row (s, i) head h and
            // lse entry (s, h, i); both lie inside the checked extents.
            let o = unsafe { std::slice::from_raw_parts_mut(outp.0.add(row), hd) };
            let l = unsafe { &mut *lsep.0.add((s * nh + h) * t + i) };
            o.iter_mut().for_each(|x| *x = T::zero());
            if i < p0 {
                *l = T::zero();
                continue;
            }
            let qi = &q[row..row + hd];
            let mut m = T::neg_infinity();
            for j in p0..=i {
                let kj = &k[(s * t + j) * kw + kvh * hd..][..hd];
                let sc = dot(qi, kj) * scale;
                scores[j] = sc;
                if sc > m {
                    m = sc;
                }
            }
            let mut z = T::zero();
            for j in p0..=i {
                let e = (scores[j] - m).exp();
                z += e;
                axpy(o, e, &v[(s * t + j) * kw + kvh * hd..][..hd]);
            }
            let inv = T::one() / z;
            o.iter_mut().for_each(|x| *x = *x * inv);
            *l = m + z.ln();
        }
    });
}

/// Backward of [`attention`]: accumulates into `dq`, `dk`, `dv` (same
/// shapes as `q`, `k`, `v`) from `dout`, recomputing the probabilities
/// from `lse` (FlashAttention-2's recurrence, one key at a time).
#[allow(clippy::too_many_arguments)]
pub fn attention_bwd<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    out: &[T],
    lse: &[T],
    dout: &[T],
    dq: &mut [T],
    dk: &mut [T],
    dv: &mut [T],
    pad: &[u32],
    d: AttnDims,
) {
    let AttnDims { b, t, nh, nkv, hd } = d;
    let rep = nh / nkv;
    let (qw, kw) = (nh * hd, nkv * hd);
    let scale = T::of(1.0 / (hd as f64).sqrt());
    assert!(dq.len() >= b * t * qw && dk.len() >= b * t * kw && dv.len() >= b * t * kw);
    assert!(out.len() >= b * t * qw && dout.len() >= b * t * qw && lse.len() >= b * nh * t);
    let (dqp, dkp, dvp) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    (0..b * nkv).into_par_iter().for_each(|bk| {
        let (s, kvh) = (bk / nkv, bk % nkv);
        let p0 = (pad[s] as usize).min(t);
        let (dqp, dkp, dvp) = (dqp, dkp, dvp);
        for h in kvh * rep..(kvh + 1) * rep {
            for i in p0..t {
                let row = (s * t + i) * qw + h * hd;
                let (qi, oi, gi) = (&q[row..row + hd], &out[row..row + hd], &dout[row..row + hd]);
                let dd = dot(gi, oi);
                let l = lse[(s * nh + h) * t + i];
                // SAFETY: task (s, kvh) alone touches dq rows of its query
                // heads and dk/dv rows of its key/value head in sequence s.
                let dqi = unsafe { std::slice::from_raw_parts_mut(dqp.0.add(row), hd) };
                for j in p0..=i {
                    let kr = (s * t + j) * kw + kvh * hd;
                    let (kj, vj) = (&k[kr..kr + hd], &v[kr..kr + hd]);
                    let p = (dot(qi, kj) * scale - l).exp();
                    let dkj = unsafe { std::slice::from_raw_parts_mut(dkp.0.add(kr), hd) };
                    let dvj = unsafe { std::slice::from_raw_parts_mut(dvp.0.add(kr), hd) };
                    axpy(dvj, p, gi);
                    let ds = p * (dot(gi, vj) - dd) * scale;
                    axpy(dqi, ds, kj);
                    axpy(dkj, ds, qi);
                }
            }
        }
    });
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `out = silu(g) · u` elementwise.
pub fn swiglu<T: Real>(g: &[T], u: &[T], out: &mut [T]) {
    out.par_iter_mut()
        .zip(g.par_iter().zip(u.par_iter()))
        .for_each(|(o, (&g, &u))| *o = g * sigmoid(g) * u);
}

/// Backward of [`swiglu`]: writes `dg` and `du` from `dout`.
pub fn swiglu_bwd<T: Real>(g: &[T], u: &[T], dout: &[T], dg: &mut [T], du: &mut [T]) {
    dg.par_iter_mut()
        .zip(du.par_iter_mut())
        .zip(g.par_iter().zip(u.par_iter()).zip(dout.par_iter()))
        .for_each(|((dg, du), ((&g, &u), &d))| {
            let s = sigmoid(g);
            *du = d * g * s;
            *dg = d * u * s * (T::one() + g * (T::one() - s));
        });
}

/// `dst += src` elementwise.
pub fn add<T: Real>(dst: &mut [T], src: &[T]) {
    dst.par_iter_mut()
        .zip(src.par_iter())
        .for_each(|(d, &s)| *d += s);
}

/// Scratch of [`logprob_tail`]: one chunk of positions' logits and hidden rows.
pub struct TailScratch<T> {
    logits: Vec<T>,
    h: Vec<T>,
    dh: Vec<T>,
}

impl<T: Real> TailScratch<T> {
    /// Room for `chunk` positions over a vocabulary of `v` and width `d`.
    pub fn new(chunk: usize, v: usize, d: usize) -> Self {
        TailScratch {
            logits: vec![T::zero(); chunk * v],
            h: vec![T::zero(); chunk * d],
            dh: vec![T::zero(); chunk * d],
        }
    }
}

/// The loss gradient hook of [`logprob_tail`]: given the first position of
/// a chunk and its log-probabilities, writes ∂loss/∂log-prob for each.
pub type GradFn<'a, T> = dyn FnMut(usize, &[T], &mut [T]) + 'a;

/// The fused output tail: for each position `p`, the log-probability of
/// `targets[p]` under `softmax(h[rows[p]] · headᵀ)`, written to `lp[p]`.
/// With `grad`, the backward follows each chunk at once (the hook turns
/// log-probs into their loss gradient), adding to `dh` (`[rows, d]`) and
/// `dhead` (`[v, d]`): the `[positions, v]` logits exist one chunk at a
/// time and are never stored.
#[allow(clippy::too_many_arguments)]
pub fn logprob_tail<T: Real>(
    h: &[T],
    head: &[T],
    rows: &[u32],
    targets: &[u32],
    lp: &mut [T],
    mut grad: Option<(&mut GradFn<'_, T>, &mut [T], &mut [T])>,
    scratch: &mut TailScratch<T>,
    (v, d): (usize, usize),
) {
    let chunk = scratch.h.len() / d;
    assert!(chunk > 0 && scratch.logits.len() >= chunk * v && head.len() >= v * d);
    let mut dlp = vec![T::zero(); chunk];
    let mut start = 0;
    while start < rows.len() {
        let c = chunk.min(rows.len() - start);
        for (j, &r) in rows[start..start + c].iter().enumerate() {
            scratch.h[j * d..(j + 1) * d].copy_from_slice(&h[r as usize * d..(r as usize + 1) * d]);
        }
        matmul(
            &scratch.h,
            head,
            None,
            &mut scratch.logits,
            (c, d, v),
            false,
        );
        let tg = &targets[start..start + c];
        let lpc = &mut lp[start..start + c];
        // Log-softmax row by row; the row becomes the probabilities.
        scratch.logits[..c * v]
            .par_chunks_mut(v)
            .zip(lpc.par_iter_mut())
            .zip(tg.par_iter())
            .for_each(|((row, lp), &tgt)| {
                let m = row.iter().fold(T::neg_infinity(), |a, &b| a.max(b));
                let mut z = T::zero();
                for x in row.iter_mut() {
                    *x = (*x - m).exp();
                    z += *x;
                }
                let inv = T::one() / z;
                *lp = (row[tgt as usize] * inv).ln();
                row.iter_mut().for_each(|x| *x = *x * inv);
            });
        if let Some((f, dh, dhead)) = grad.as_mut() {
            f(start, lpc, &mut dlp[..c]);
            // ∂lp/∂logits = onehot(target) − softmax.
            scratch.logits[..c * v]
                .par_chunks_mut(v)
                .zip(dlp[..c].par_iter())
                .zip(tg.par_iter())
                .for_each(|((row, &g), &tgt)| {
                    row.iter_mut().for_each(|x| *x = -*x * g);
                    row[tgt as usize] += g;
                });
            matmul_dx(&scratch.logits, head, &mut scratch.dh, (c, d, v), false);
            matmul_dw(&scratch.logits, &scratch.h, dhead, None, (c, d, v));
            for (j, &r) in rows[start..start + c].iter().enumerate() {
                let dst = &mut dh[r as usize * d..(r as usize + 1) * d];
                for (a, &b) in dst.iter_mut().zip(&scratch.dh[j * d..(j + 1) * d]) {
                    *a += b;
                }
            }
        }
        start += c;
    }
}

/// One AdamW step over flat buffers (decoupled weight decay, bias-corrected
/// moments): `w -= lr · (m̂ / (sqrt(v̂) + eps) + wd · w)`.
#[allow(clippy::too_many_arguments)]
pub fn adamw<T: Real>(
    w: &mut [T],
    g: &[T],
    m: &mut [T],
    v: &mut [T],
    lr: f64,
    (b1, b2): (f64, f64),
    eps: f64,
    wd: f64,
    step: usize,
) {
    let c1 = T::of(1.0 - b1.powi(step as i32));
    let c2 = T::of(1.0 - b2.powi(step as i32));
    let (b1, b2, eps, wd, lr) = (T::of(b1), T::of(b2), T::of(eps), T::of(wd), T::of(lr));
    let (one_b1, one_b2) = (T::one() - b1, T::one() - b2);
    w.par_iter_mut()
        .zip(g.par_iter())
        .zip(m.par_iter_mut().zip(v.par_iter_mut()))
        .for_each(|((w, &g), (m, v))| {
            *m = b1 * *m + one_b1 * g;
            *v = b2 * *v + one_b2 * g * g;
            let delta = (*m / c1) / ((*v / c2).sqrt() + eps) + wd * *w;
            *w = *w - lr * delta;
        });
}

/// Σ x² in f64.
pub fn sq_sum<T: Real>(x: &[T]) -> f64 {
    x.par_chunks(4096)
        .map(|c| {
            c.iter()
                .map(|&a| a.to_f64().unwrap_or(f64::NAN).powi(2))
                .sum::<f64>()
        })
        .sum()
}

/// `x *= s` elementwise.
pub fn scale<T: Real>(x: &mut [T], s: f64) {
    let s = T::of(s);
    x.par_iter_mut().for_each(|a| *a = *a * s);
}
