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

    /// The largest element (−∞ for none).
    fn max_of(x: &[Self]) -> Self {
        x.iter().fold(Self::neg_infinity(), |a, &b| a.max(b))
    }

    /// Σ a·b.
    fn dot(a: &[Self], b: &[Self]) -> Self {
        a.iter().zip(b).map(|(&x, &y)| x * y).sum()
    }

    /// `out[r] = rows[r] · w`.
    fn dots(rows: &[&[Self]], w: &[Self], out: &mut [Self]) {
        for (o, r) in out.iter_mut().zip(rows) {
            *o = Self::dot(r, w);
        }
    }

    /// `out[r·ws.len() + c] = rows[r] · ws[c]`, at most four of each.
    fn dots_block(rows: &[&[Self]], ws: &[&[Self]], out: &mut [Self]) {
        dots_each(rows, ws, out)
    }

    /// Asks the CPU to start loading `xs` into its caches (a hint: no
    /// effect on results).
    fn prefetch(xs: &[Self]) {
        let _ = xs;
    }

    /// One query's attention over cached positions in a single call where
    /// the type has a fused kernel ([`super::simd::attend`]); false (nothing
    /// written) sends the caller to its own loop.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        q: &[Self],
        k: &[Self],
        v: &[Self],
        stride: usize,
        n: usize,
        scale: Self,
        sc: &mut [Self],
        out: &mut [Self],
    ) -> bool {
        let _ = (q, k, v, stride, n, scale, sc, out);
        false
    }

    /// `y += a · x` elementwise (a product, then a sum: no fused rounding).
    fn axpy(y: &mut [Self], a: Self, x: &[Self]) {
        for (y, &x) in y.iter_mut().zip(x) {
            *y += a * x;
        }
    }

    /// `out = silu(g) · u` elementwise.
    fn swiglu_row(g: &[Self], u: &[Self], out: &mut [Self]) {
        for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
            *o = g * sigmoid(g) * u;
        }
    }

    /// `x ← exp(x − m)` elementwise; returns the sum.
    fn exp_shifted(x: &mut [Self], m: Self) -> Self {
        let mut s = Self::zero();
        for v in x.iter_mut() {
            *v = (*v - m).exp();
            s += *v;
        }
        s
    }
}

impl Real for f32 {
    fn of(x: f64) -> Self {
        x as f32
    }

    fn max_of(x: &[f32]) -> f32 {
        super::simd::max(x)
    }

    fn exp_shifted(x: &mut [f32], m: f32) -> f32 {
        super::simd::exp_shifted(x, m)
    }

    fn dot(a: &[f32], b: &[f32]) -> f32 {
        super::simd::dot(a, b)
    }

    fn dots(rows: &[&[f32]], w: &[f32], out: &mut [f32]) {
        super::simd::dots(rows, w, out)
    }

    fn dots_block(rows: &[&[f32]], ws: &[&[f32]], out: &mut [f32]) {
        if !super::simd::dots_4x4(rows, ws, out) {
            dots_each(rows, ws, out)
        }
    }

    fn prefetch(xs: &[f32]) {
        super::simd::prefetch(xs)
    }

    fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
        super::simd::axpy(y, a, x)
    }

    fn attend(
        q: &[f32],
        k: &[f32],
        v: &[f32],
        stride: usize,
        n: usize,
        scale: f32,
        sc: &mut [f32],
        out: &mut [f32],
    ) -> bool {
        super::simd::attend(q, k, v, stride, n, scale, sc, out)
    }

    fn swiglu_row(g: &[f32], u: &[f32], out: &mut [f32]) {
        super::simd::swiglu(g, u, out)
    }
}

/// [`Real::dots_block`] one weight row at a time through [`Real::dots`].
fn dots_each<T: Real>(rows: &[&[T]], ws: &[&[T]], out: &mut [T]) {
    assert!(rows.len() <= 4, "dots_block: at most 4 rows");
    let mut ys = [T::zero(); 4];
    for (c, w) in ws.iter().enumerate() {
        T::dots(rows, w, &mut ys[..rows.len()]);
        for (r, &y) in ys[..rows.len()].iter().enumerate() {
            out[r * ws.len() + c] = y;
        }
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

/// A matrix at `ptr` whose element `(i, j)` is `ptr[i·rs + j·cs]`.
fn strided<T>(ptr: *const T, rs: usize, cs: usize) -> Mat<T> {
    Mat {
        ptr,
        rs: rs as isize,
        cs: cs as isize,
    }
}

/// A row-major `[rows, cols]` matrix.
fn rm<T>(s: &[T], cols: usize) -> Mat<T> {
    strided(s.as_ptr(), cols, 1)
}

/// The transpose of a row-major `[rows, cols]` matrix, without a copy.
fn tr<T>(s: &[T], cols: usize) -> Mat<T> {
    strided(s.as_ptr(), 1, cols)
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
    let dst = Mat {
        ptr: dst.as_mut_ptr() as *const T,
        rs: n as isize,
        cs: 1,
    };
    // SAFETY: the caller guarantees the operands' extents; dst was checked.
    unsafe {
        gemm_strided(
            m,
            n,
            k,
            dst,
            acc,
            lhs,
            rhs,
            T::one(),
            gemm::Parallelism::Rayon(0),
        )
    };
}

/// `dst (+)= alpha · lhs · rhs` with every operand strided; `dst.ptr` is
/// written through.
///
/// # Safety
/// Every operand must address its extent through its strides, and no
/// other thread may touch `dst`'s elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_strided<T: Real>(
    m: usize,
    n: usize,
    k: usize,
    dst: Mat<T>,
    acc: bool,
    lhs: Mat<T>,
    rhs: Mat<T>,
    alpha: T,
    par: gemm::Parallelism,
) {
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: the caller guarantees the extents and exclusive access.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr as *mut T,
            dst.cs,
            dst.rs,
            acc,
            lhs.ptr,
            lhs.cs,
            lhs.rs,
            rhs.ptr,
            rhs.cs,
            rhs.rs,
            T::one(),
            alpha,
            false,
            false,
            false,
            par,
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
    if n <= SKINNY_ROWS {
        return skinny(x, w, bias, out, (n, i, o), acc);
    }
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

/// Up to this many rows (decoding: one token per sequence), [`matmul`]
/// streams each weight row once through dot products instead of a GEMM,
/// which would pack the whole weight matrix on every call.
const SKINNY_ROWS: usize = 32;

/// [`matmul`] for few rows: weight rows in parallel blocks.
fn skinny<T: Real>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    out: &mut [T],
    (n, i, o): (usize, usize, usize),
    acc: bool,
) {
    // Tiles of 16 weight rows (37 KB at width 576) stay in L1/L2 while
    // each group of 4 input rows passes over them, 4 weight rows at a time;
    // a parallel task takes a run of tiles (about 8 tasks per thread).
    const TILE: usize = 16;
    let per_task = (o / (8 * rayon::current_num_threads()).max(1))
        .max(TILE)
        .div_ceil(TILE)
        * TILE;
    let outp = Shared(out.as_mut_ptr());
    let rows: Vec<&[T]> = x[..n * i].chunks(i).collect();
    (0..o.div_ceil(per_task)).into_par_iter().for_each(|task| {
        let mut ys = [T::zero(); 16];
        let end = ((task + 1) * per_task).min(o);
        for j0 in (task * per_task..end).step_by(TILE) {
            let j1 = (j0 + TILE).min(end);
            // Decoding streams every weight from memory once per step: with
            // several groups of rows (the tile is read several times), each
            // block product warms a share of the next tile, so the first
            // pass over it does not wait on memory. With one group the
            // hardware's own prefetching does better (batch-1 decoding was
            // 15-25% slower with these hints).
            let next = if n > 4 {
                &w[(j1 * i).min(w.len())..((j1 + TILE).min(end) * i).min(w.len())]
            } else {
                &w[..0]
            };
            let calls = n.div_ceil(4) * (j1 - j0).div_ceil(4);
            let share = next.len().div_ceil(calls).div_ceil(16) * 16;
            let mut call = 0;
            for (g, grp) in rows.chunks(4).enumerate() {
                for jb in (j0..j1).step_by(4) {
                    let from = (call * share).min(next.len());
                    if from < next.len() {
                        T::prefetch(&next[from..(from + share).min(next.len())]);
                    }
                    call += 1;
                    let nc = (j1 - jb).min(4);
                    let ws: [&[T]; 4] = std::array::from_fn(|c| {
                        let j = jb + c.min(nc - 1);
                        &w[j * i..(j + 1) * i]
                    });
                    T::dots_block(grp, &ws[..nc], &mut ys);
                    for c in 0..nc {
                        let j = jb + c;
                        let add = bias.map_or(T::zero(), |b| b[j]);
                        for k in 0..grp.len() {
                            let y = ys[k * nc + c];
                            // SAFETY: this task alone writes the columns of
                            // its weight rows; (r, j) lies inside out's n × o
                            // extent.
                            let dst = unsafe { &mut *outp.at().add((g * 4 + k) * o + j) };
                            *dst = if acc { *dst + y + add } else { y + add };
                        }
                    }
                }
            }
        }
    });
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

impl AttnDims {
    /// Query heads per key/value head, query and key/value row widths and
    /// the score scale `1/sqrt(hd)`, after checking `q`, `k`, `v` extents.
    fn check<T: Real>(&self, q: &[T], k: &[T], v: &[T]) -> (usize, usize, usize, T) {
        let (qw, kw) = (self.nh * self.hd, self.nkv * self.hd);
        let n = self.b * self.t;
        assert!(
            self.nkv > 0 && self.nh.is_multiple_of(self.nkv),
            "attention: heads"
        );
        assert!(q.len() >= n * qw && k.len() >= n * kw && v.len() >= n * kw);
        (
            self.nh / self.nkv,
            qw,
            kw,
            T::of(1.0 / (self.hd as f64).sqrt()),
        )
    }
}

/// A raw pointer shared by tasks that write disjoint parts of one slice.
#[derive(Clone, Copy)]
struct Shared<T>(*mut T);
// SAFETY: only used to hand disjoint element ranges to parallel tasks.
unsafe impl<T> Send for Shared<T> {}
unsafe impl<T> Sync for Shared<T> {}

impl<T> Shared<T> {
    /// The pointer (a method, so closures capture the whole wrapper).
    fn at(&self) -> *mut T {
        self.0
    }
}

/// Row `i`'s scores `S[i, j]` (`j ≤ i`, the rest −∞) turned into
/// probabilities with the saved (or, with `lse = None`, new) log-sum-exp.
fn causal_softmax_row<T: Real>(row: &mut [T], i: usize, lse: Option<T>) -> T {
    let l = match lse {
        Some(l) => {
            T::exp_shifted(&mut row[..=i], l);
            l
        }
        None => {
            let m = T::max_of(&row[..=i]);
            let z = T::exp_shifted(&mut row[..=i], m);
            let inv = T::one() / z;
            row[..=i].iter_mut().for_each(|x| *x = *x * inv);
            m + z.ln()
        }
    };
    row[i + 1..].iter_mut().for_each(|x| *x = T::zero());
    l
}

/// Causal grouped-query attention. `q` is `[b·t, nh·hd]`, `k`/`v` are
/// `[b·t, nkv·hd]`, `out` like `q`; `lse` `[b, nh, t]` keeps each query's
/// log-sum-exp of scores for the backward, which recomputes the
/// probabilities instead of storing them. Keys before `pad[s]` of sequence
/// `s` are masked (left padding); a query with no visible key gives zeros.
/// Each (sequence, head) is a pair of matrix products over its unpadded
/// square, as in llm.c.
pub fn attention<T: Real>(
    q: &[T],
    k: &[T],
    v: &[T],
    out: &mut [T],
    lse: &mut [T],
    pad: &[u32],
    d: AttnDims,
) {
    let AttnDims { b, t, nh, hd, .. } = d;
    let (rep, qw, kw, scale) = d.check::<T>(q, k, v);
    assert!(out.len() >= b * t * qw && lse.len() >= b * nh * t && pad.len() >= b);
    let outp = Shared(out.as_mut_ptr());
    let lsep = Shared(lse.as_mut_ptr());
    let none = gemm::Parallelism::None;
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (s, h) = (bh / nh, bh % nh);
        let kvh = h / rep;
        let p0 = (pad[s] as usize).min(t);
        let tq = t - p0;
        let row0 = s * t + p0;
        // SAFETY: task (s, h) alone writes out's rows of sequence s at head
        // h and lse's (s, h) row; both inside the checked extents.
        let lrow = unsafe { std::slice::from_raw_parts_mut(lsep.at().add((s * nh + h) * t), t) };
        lrow[..p0].iter_mut().for_each(|x| *x = T::zero());
        for i in 0..p0 {
            let o = unsafe {
                std::slice::from_raw_parts_mut(outp.at().add((s * t + i) * qw + h * hd), hd)
            };
            o.iter_mut().for_each(|x| *x = T::zero());
        }
        if tq == 0 {
            return;
        }
        let mut sc = vec![T::zero(); tq * tq];
        let qm = strided(q[row0 * qw + h * hd..].as_ptr(), qw, 1);
        let kt = strided(k[row0 * kw + kvh * hd..].as_ptr(), 1, kw);
        let vm = strided(v[row0 * kw + kvh * hd..].as_ptr(), kw, 1);
        let scm = strided(sc.as_ptr(), tq, 1);
        let om = strided(
            unsafe { outp.at().add(row0 * qw + h * hd) } as *const T,
            qw,
            1,
        );
        // SAFETY: the operands address rows p0..t of sequence s at this
        // head; sc is tq × tq; om is this task's own part of out.
        unsafe {
            gemm_strided(tq, tq, hd, scm, false, qm, kt, scale, none);
            for (i, row) in sc.chunks_mut(tq).enumerate() {
                lrow[p0 + i] = causal_softmax_row(row, i, None);
            }
            gemm_strided(tq, hd, tq, om, false, scm, vm, T::one(), none);
        }
    });
}

/// Backward of [`attention`]: accumulates into `dq`, `dk`, `dv` (same
/// shapes as `q`, `k`, `v`) from `dout`, recomputing the probabilities
/// from `lse`: `dV += Pᵀ dO`, `dP = dO Vᵀ`, `dS = P ∘ (dP − rowsum(dO ∘ O))`,
/// `dQ += scale · dS K`, `dK += scale · dSᵀ Q`.
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
    let (rep, qw, kw, scale) = d.check::<T>(q, k, v);
    assert!(dq.len() >= b * t * qw && dk.len() >= b * t * kw && dv.len() >= b * t * kw);
    assert!(out.len() >= b * t * qw && dout.len() >= b * t * qw && lse.len() >= b * nh * t);
    let (dqp, dkp, dvp) = (
        Shared(dq.as_mut_ptr()),
        Shared(dk.as_mut_ptr()),
        Shared(dv.as_mut_ptr()),
    );
    let none = gemm::Parallelism::None;
    (0..b * nkv).into_par_iter().for_each(|bk| {
        let (s, kvh) = (bk / nkv, bk % nkv);
        let p0 = (pad[s] as usize).min(t);
        let tq = t - p0;
        if tq == 0 {
            return;
        }
        let row0 = s * t + p0;
        let mut pm = vec![T::zero(); tq * tq];
        let mut dpm = vec![T::zero(); tq * tq];
        let kr = row0 * kw + kvh * hd;
        let km = strided(k[kr..].as_ptr(), kw, 1);
        let kt = strided(k[kr..].as_ptr(), 1, kw);
        let vt = strided(v[kr..].as_ptr(), 1, kw);
        // SAFETY: task (s, kvh) alone touches dq rows of its query heads and
        // dk/dv rows of its key/value head in sequence s.
        let dkm = strided(unsafe { dkp.at().add(kr) } as *const T, kw, 1);
        let dvm = strided(unsafe { dvp.at().add(kr) } as *const T, kw, 1);
        for h in kvh * rep..(kvh + 1) * rep {
            let qr = row0 * qw + h * hd;
            let qm = strided(q[qr..].as_ptr(), qw, 1);
            let dom = strided(dout[qr..].as_ptr(), qw, 1);
            let dqm = strided(unsafe { dqp.at().add(qr) } as *const T, qw, 1);
            let pmm = strided(pm.as_ptr(), tq, 1);
            let pmt = strided(pm.as_ptr(), 1, tq);
            let dpmm = strided(dpm.as_ptr(), tq, 1);
            let dpmt = strided(dpm.as_ptr(), 1, tq);
            let lrow = &lse[(s * nh + h) * t + p0..(s * nh + h) * t + t];
            // SAFETY: as in `attention`; pm and dpm are tq × tq.
            unsafe {
                gemm_strided(tq, tq, hd, pmm, false, qm, kt, scale, none);
                for (i, row) in pm.chunks_mut(tq).enumerate() {
                    causal_softmax_row(row, i, Some(lrow[i]));
                }
                gemm_strided(tq, hd, tq, dvm, true, pmt, dom, T::one(), none);
                gemm_strided(tq, tq, hd, dpmm, false, dom, vt, T::one(), none);
            }
            for (i, (dp, p)) in dpm.chunks_mut(tq).zip(pm.chunks(tq)).enumerate() {
                let r = qr + i * qw;
                let dd: T = dout[r..r + hd]
                    .iter()
                    .zip(&out[r..r + hd])
                    .map(|(&a, &b)| a * b)
                    .sum();
                for (x, &pp) in dp[..=i].iter_mut().zip(p) {
                    *x = pp * (*x - dd);
                }
                dp[i + 1..].iter_mut().for_each(|x| *x = T::zero());
            }
            // SAFETY: as above.
            unsafe {
                gemm_strided(tq, hd, tq, dqm, true, dpmm, km, scale, none);
                gemm_strided(tq, hd, tq, dkm, true, dpmt, qm, scale, none);
            }
        }
    });
}

/// Attention of `d.t` new queries per sequence (`q` `[b·t, nh·hd]`) over
/// a key/value cache `[b, cap, nkv·hd]` whose first `len + t` positions are
/// filled (the new ones included): query `i` sees cache positions
/// `pad[s]..=len + i`. Writes `out` like `q`.
#[allow(clippy::too_many_arguments)]
pub fn attention_cached<T: Real>(
    q: &[T],
    kc: &[T],
    vc: &[T],
    out: &mut [T],
    pad: &[u32],
    len: usize,
    cap: usize,
    d: AttnDims,
) {
    let AttnDims { b, t, nh, nkv, hd } = d;
    let rep = nh / nkv;
    let (qw, kw) = (nh * hd, nkv * hd);
    let scale = T::of(1.0 / (hd as f64).sqrt());
    assert!(len + t <= cap && q.len() >= b * t * qw && out.len() >= b * t * qw);
    assert!(kc.len() >= b * cap * kw && vc.len() >= b * cap * kw && pad.len() >= b);
    let outp = Shared(out.as_mut_ptr());
    (0..b * nh).into_par_iter().for_each(|bh| {
        let (s, h) = (bh / nh, bh % nh);
        let kvh = h / rep;
        let p0 = pad[s] as usize;
        let mut sc = vec![T::zero(); len + t];
        for i in 0..t {
            let row = (s * t + i) * qw + h * hd;
            // SAFETY: task (s, h) alone writes out's rows of sequence s at head h.
            let o = unsafe { std::slice::from_raw_parts_mut(outp.at().add(row), hd) };
            o.iter_mut().for_each(|x| *x = T::zero());
            let last = len + i;
            if p0 > last {
                continue;
            }
            let qi = &q[row..row + hd];
            let at = |j: usize| (s * cap + j) * kw + kvh * hd;
            if T::attend(
                qi,
                &kc[at(p0)..],
                &vc[at(p0)..],
                kw,
                last + 1 - p0,
                scale,
                &mut sc,
                o,
            ) {
                continue;
            }
            for j in p0..=last {
                sc[j] = T::dot(qi, &kc[at(j)..at(j) + hd]) * scale;
            }
            let m = T::max_of(&sc[p0..=last]);
            let z = T::exp_shifted(&mut sc[p0..=last], m);
            let inv = T::one() / z;
            for j in p0..=last {
                T::axpy(o, sc[j] * inv, &vc[at(j)..at(j) + hd]);
            }
        }
    });
}

fn sigmoid<T: Real>(x: T) -> T {
    T::one() / (T::one() + (-x).exp())
}

/// `out = silu(g) · u` elementwise.
pub fn swiglu<T: Real>(g: &[T], u: &[T], out: &mut [T]) {
    // Chunks big enough that a decoding step's few rows are one or two
    // tasks, not hundreds.
    const CHUNK: usize = 1 << 14;
    out.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK).zip(u.par_chunks(CHUNK)))
        .for_each(|(o, (g, u))| T::swiglu_row(g, u, o));
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
                let m = T::max_of(row);
                let picked = row[tgt as usize];
                let z = T::exp_shifted(row, m);
                *lp = picked - m - z.ln();
                let inv = T::one() / z;
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

#[cfg(test)]
mod tests {
    //! Each backward against f64 central finite differences of the scalar
    //! `L = Σ c · out` for fixed random `c`.
    use super::*;

    fn rand(n: usize, seed: u64) -> Vec<f64> {
        let mut r = crate::eval::Rng::new(seed);
        (0..n)
            .map(|_| (r.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
            .collect()
    }

    fn dotv(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Checks `grad` against finite differences of `f` at `x` (every entry).
    fn check(name: &str, x: &[f64], grad: &[f64], mut f: impl FnMut(&[f64]) -> f64) {
        let h = 1e-6;
        for i in 0..x.len() {
            let mut p = x.to_vec();
            p[i] += h;
            let mut m = x.to_vec();
            m[i] -= h;
            let fd = (f(&p) - f(&m)) / (2.0 * h);
            let tol = 1e-7 + 1e-6 * fd.abs().max(grad[i].abs());
            assert!(
                (fd - grad[i]).abs() < tol,
                "{name}[{i}]: finite difference {fd} vs backward {}",
                grad[i]
            );
        }
    }

    #[test]
    fn matmul_backward_matches_finite_differences() {
        let (n, i, o) = (3, 5, 4);
        let (x, w, b, c) = (rand(n * i, 1), rand(o * i, 2), rand(o, 3), rand(n * o, 4));
        let loss = |x: &[f64], w: &[f64], b: &[f64]| {
            let mut out = vec![0.0; n * o];
            matmul(x, w, Some(b), &mut out, (n, i, o), false);
            dotv(&out, &c)
        };
        let mut dx = vec![0.0; n * i];
        matmul_dx(&c, &w, &mut dx, (n, i, o), false);
        let (mut dw, mut db) = (vec![0.0; o * i], vec![0.0; o]);
        matmul_dw(&c, &x, &mut dw, Some(&mut db), (n, i, o));
        check("dx", &x, &dx, |v| loss(v, &w, &b));
        check("dw", &w, &dw, |v| loss(&x, v, &b));
        check("db", &b, &db, |v| loss(&x, &w, v));
        // Accumulation adds to what is there.
        let mut acc = vec![1.0; n * i];
        matmul_dx(&c, &w, &mut acc, (n, i, o), true);
        assert!(
            acc.iter()
                .zip(&dx)
                .all(|(a, d)| (a - 1.0 - d).abs() < 1e-12)
        );
    }

    #[test]
    fn few_row_products_match_the_gemm_path() {
        // Decoding's path (≤ SKINNY_ROWS rows, f32, 4 × 4 blocks with
        // ragged edges: 7 rows, 37 weight rows) against a naive f64 product
        // and against the GEMM path on the same rows stacked past the limit.
        let (n, i, o) = (7, 203, 37);
        let f = |v: Vec<f64>| v.into_iter().map(|a| a as f32).collect::<Vec<f32>>();
        let (x, w, b) = (f(rand(n * i, 11)), f(rand(o * i, 12)), f(rand(o, 13)));
        for acc in [false, true] {
            let mut got = vec![0.5f32; n * o];
            matmul(&x, &w, Some(&b), &mut got, (n, i, o), acc);
            for r in 0..n {
                for j in 0..o {
                    let want: f64 = (0..i)
                        .map(|k| x[r * i + k] as f64 * w[j * i + k] as f64)
                        .sum::<f64>()
                        + b[j] as f64
                        + if acc { 0.5 } else { 0.0 };
                    let g = got[r * o + j] as f64;
                    assert!(
                        (g - want).abs() < 1e-4,
                        "({r}, {j}) acc {acc}: {g} vs {want}"
                    );
                }
            }
        }
        let reps = SKINNY_ROWS / n + 1;
        let big: Vec<f32> = x.iter().copied().cycle().take(reps * n * i).collect();
        let mut via_gemm = vec![0f32; reps * n * o];
        matmul(&big, &w, Some(&b), &mut via_gemm, (reps * n, i, o), false);
        let mut few = vec![0f32; n * o];
        matmul(&x, &w, Some(&b), &mut few, (n, i, o), false);
        for (a, g) in few.iter().zip(&via_gemm) {
            assert!((a - g).abs() < 1e-4, "{a} vs {g}");
        }
    }

    #[test]
    fn rmsnorm_backward_matches_finite_differences() {
        let (n, d) = (3, 6);
        let (x, w, c) = (rand(n * d, 5), rand(d, 6), rand(n * d, 7));
        let loss = |x: &[f64], w: &[f64]| {
            let (mut out, mut r) = (vec![0.0; n * d], vec![0.0; n]);
            rmsnorm(x, w, &mut out, &mut r, d, 1e-5);
            dotv(&out, &c)
        };
        let (mut out, mut r) = (vec![0.0; n * d], vec![0.0; n]);
        rmsnorm(&x, &w, &mut out, &mut r, d, 1e-5);
        let mut again = vec![0.0; n * d];
        rmsnorm_apply(&x, &w, &r, &mut again, d);
        assert_eq!(out, again);
        let (mut dx, mut dw) = (vec![0.0; n * d], vec![0.0; d]);
        rmsnorm_bwd(&x, &w, &r, &c, &mut dx, &mut dw, d);
        check("dx", &x, &dx, |v| loss(v, &w));
        check("dw", &w, &dw, |v| loss(&x, v));
    }

    #[test]
    fn rope_backward_is_the_inverse_rotation() {
        let (heads, hd, rows) = (2, 8, 3);
        let half = hd / 2;
        let pos = [0u32, 5, 2];
        let (mut cos, mut sin) = (Vec::new(), Vec::new());
        for p in 0..6 {
            for i in 0..half {
                let a = p as f64 / 10f64.powf(i as f64 / half as f64);
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        let (x, c) = (rand(rows * heads * hd, 8), rand(rows * heads * hd, 9));
        let loss = |x: &[f64]| {
            let mut y = x.to_vec();
            rope(&mut y, &pos, &cos, &sin, heads, hd, false);
            dotv(&y, &c)
        };
        let mut g = c.clone();
        rope(&mut g, &pos, &cos, &sin, heads, hd, true);
        check("dx", &x, &g, loss);
        // Position 0 is the identity.
        let mut y = x.clone();
        rope(&mut y, &pos, &cos, &sin, heads, hd, false);
        assert!(
            y[..heads * hd]
                .iter()
                .zip(&x)
                .all(|(a, b)| (a - b).abs() < 1e-15)
        );
    }

    #[test]
    fn attention_backward_matches_finite_differences() {
        // Two sequences, GQA (4 query heads over 2 key/value heads), the
        // second sequence left-padded by 2.
        let d = AttnDims {
            b: 2,
            t: 5,
            nh: 4,
            nkv: 2,
            hd: 3,
        };
        let pad = [0u32, 2];
        let (qn, kn) = (d.b * d.t * d.nh * d.hd, d.b * d.t * d.nkv * d.hd);
        let (q, k, v, c) = (rand(qn, 10), rand(kn, 11), rand(kn, 12), rand(qn, 13));
        let run = |q: &[f64], k: &[f64], v: &[f64]| {
            let (mut out, mut lse) = (vec![0.0; qn], vec![0.0; d.b * d.nh * d.t]);
            attention(q, k, v, &mut out, &mut lse, &pad, d);
            (out, lse)
        };
        let loss = |q: &[f64], k: &[f64], v: &[f64]| dotv(&run(q, k, v).0, &c);
        let (out, lse) = run(&q, &k, &v);
        // Padded queries give zeros.
        let row = (d.t) * d.nh * d.hd;
        assert!(out[row..row + 2 * d.nh * d.hd].iter().all(|&x| x == 0.0));
        let (mut dq, mut dk, mut dv) = (vec![0.0; qn], vec![0.0; kn], vec![0.0; kn]);
        attention_bwd(
            &q, &k, &v, &out, &lse, &c, &mut dq, &mut dk, &mut dv, &pad, d,
        );
        check("dq", &q, &dq, |x| loss(x, &k, &v));
        check("dk", &k, &dk, |x| loss(&q, x, &v));
        check("dv", &v, &dv, |x| loss(&q, &k, x));
        // Padded keys get no gradient.
        let kr = d.t * d.nkv * d.hd;
        assert!(dk[kr..kr + 2 * d.nkv * d.hd].iter().all(|&x| x == 0.0));
    }

    #[test]
    fn swiglu_backward_matches_finite_differences() {
        let n = 7;
        let (g, u, c) = (rand(n, 14), rand(n, 15), rand(n, 16));
        let loss = |g: &[f64], u: &[f64]| {
            let mut out = vec![0.0; n];
            swiglu(g, u, &mut out);
            dotv(&out, &c)
        };
        let (mut dg, mut du) = (vec![0.0; n], vec![0.0; n]);
        swiglu_bwd(&g, &u, &c, &mut dg, &mut du);
        check("dg", &g, &dg, |x| loss(x, &u));
        check("du", &u, &du, |x| loss(&g, x));
    }

    #[test]
    fn logprob_tail_matches_a_plain_log_softmax_and_its_backward() {
        // 5 scored positions over 4 hidden rows, chunks of 2 (so 3 chunks).
        let (v, d) = (11, 4);
        let (h, head) = (rand(4 * d, 17), rand(v * d, 18));
        let rows = [0u32, 2, 3, 2, 1];
        let targets = [3u32, 0, 10, 7, 3];
        let c = rand(5, 19);
        let loss = |h: &[f64], head: &[f64]| {
            let mut lp = vec![0.0; 5];
            let mut s = TailScratch::new(2, v, d);
            logprob_tail(h, head, &rows, &targets, &mut lp, None, &mut s, (v, d));
            dotv(&lp, &c)
        };
        // Against a direct log-softmax.
        let mut lp = vec![0.0; 5];
        let mut s = TailScratch::new(2, v, d);
        let (mut dh, mut dhead) = (vec![0.0; 4 * d], vec![0.0; v * d]);
        let mut hook = |start: usize, _: &[f64], g: &mut [f64]| {
            g.copy_from_slice(&c[start..start + g.len()]);
        };
        logprob_tail(
            &h,
            &head,
            &rows,
            &targets,
            &mut lp,
            Some((&mut hook, &mut dh, &mut dhead)),
            &mut s,
            (v, d),
        );
        for (p, (&r, &t)) in rows.iter().zip(&targets).enumerate() {
            let logits: Vec<f64> = (0..v)
                .map(|j| dotv(&h[r as usize * d..][..d], &head[j * d..][..d]))
                .collect();
            let z: f64 = logits.iter().map(|x| x.exp()).sum();
            assert!((lp[p] - (logits[t as usize] - z.ln())).abs() < 1e-12);
        }
        check("dh", &h, &dh, |x| loss(x, &head));
        check("dhead", &head, &dhead, |x| loss(&h, x));
    }

    #[test]
    fn embedding_backward_accumulates_repeated_ids() {
        let (v, d) = (5, 3);
        let table = rand(v * d, 20);
        let ids = [4u32, 1, 4];
        let mut out = vec![0.0; 3 * d];
        embedding(&table, &ids, &mut out, d);
        assert_eq!(&out[..d], &table[4 * d..5 * d]);
        let c = rand(3 * d, 21);
        let mut g = vec![0.0; v * d];
        embedding_bwd(&mut g, &ids, &c, d);
        check("dtable", &table, &g, |t| {
            let mut o = vec![0.0; 3 * d];
            embedding(t, &ids, &mut o, d);
            dotv(&o, &c)
        });
    }

    #[test]
    fn adamw_matches_the_formula_and_norms_scale() {
        let (mut w, g) = (vec![1.0f64, -2.0, 3.0], vec![0.5, -0.1, 0.0]);
        let (mut m, mut v) = (vec![0.0; 3], vec![0.0; 3]);
        adamw(&mut w, &g, &mut m, &mut v, 0.01, (0.9, 0.95), 1e-8, 0.1, 1);
        for (i, (&w0, &gi)) in [1.0f64, -2.0, 3.0].iter().zip(&g).enumerate() {
            // Step 1: m̂ = g, v̂ = g², so the step is lr·(g/(|g|+eps) + wd·w).
            let want = w0 - 0.01 * (gi / (gi.abs() + 1e-8) + 0.1 * w0);
            assert!((w[i] - want).abs() < 1e-12, "{i}: {} vs {want}", w[i]);
        }
        let mut x = vec![3.0f32, 4.0];
        assert!((sq_sum(&x) - 25.0).abs() < 1e-12);
        scale(&mut x, 0.5);
        assert_eq!(x, vec![1.5, 2.0]);
    }
}
