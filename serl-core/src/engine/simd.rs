//! f32 row primitives the compiler vectorises (16 independent lanes,
//! branch-free bodies), compiled for AVX-512 and AVX2+FMA as well as the
//! baseline, and chosen at run time by what the CPU has.

/// Cephes-style `exp` for f32: range reduction by `ln 2`, a degree-6
/// polynomial, and the exponent put in by bits. About 2 ulp over the
/// range used here; inputs below −87.3 give ≈ 1e-38 rather than 0.
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const MAGIC: f32 = 12_582_912.0; // 1.5 · 2^23: adding it rounds to an integer.
    let x = x.clamp(-87.3, 88.7);
    let fx = (x * LOG2E + MAGIC) - MAGIC;
    let r = x - fx * C1 - fx * C2;
    let z = r * r;
    let p = ((((1.987_569_1e-4 * r + 1.398_199_9e-3) * r + 8.333_452e-3) * r + 4.166_579_6e-2) * r
        + 1.666_666_5e-1)
        * r
        + 0.5;
    let y = p * z + r + 1.0;
    let n = fx as i32;
    y * f32::from_bits(((n + 127) as u32) << 23)
}

const LANES: usize = 16;

#[inline(always)]
fn exp_shifted_body(x: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = x.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for (v, a) in c.iter_mut().zip(acc.iter_mut()) {
            let e = exp_approx(*v - m);
            *v = e;
            *a += e;
        }
    }
    let mut s = 0.0;
    for v in chunks.into_remainder() {
        *v = exp_approx(*v - m);
        s += *v;
    }
    acc.iter().sum::<f32>() + s
}

#[inline(always)]
fn max_body(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut chunks = x.chunks_exact(LANES);
    for c in &mut chunks {
        for (v, a) in c.iter().zip(acc.iter_mut()) {
            *a = if *v > *a { *v } else { *a };
        }
    }
    let mut m = acc.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for &v in chunks.remainder() {
        m = m.max(v);
    }
    m
}

#[inline(always)]
fn dot_body(a: &[f32], b: &[f32]) -> f32 {
    dot1(a, b)
}

/// `out[r] = rows[r] · w`: four rows at a time, so each chunk of `w` is
/// loaded once for four independent accumulators (kept in registers: the
/// four-row body has no dynamic count).
#[inline(always)]
fn dots_body(rows: &[&[f32]], w: &[f32], out: &mut [f32]) {
    let mut r = 0;
    while r + 4 <= rows.len() {
        let q = dot4(rows[r], rows[r + 1], rows[r + 2], rows[r + 3], w);
        out[r..r + 4].copy_from_slice(&q);
        r += 4;
    }
    while r < rows.len() {
        out[r] = dot1(rows[r], w);
        r += 1;
    }
}

#[inline(always)]
fn dot1(a: &[f32], w: &[f32]) -> f32 {
    let k = a.len().min(w.len());
    let full = k / (2 * LANES) * (2 * LANES);
    let (mut s0, mut s1) = ([0f32; LANES], [0f32; LANES]);
    let mut i = 0;
    while i < full {
        let (x, y) = (&a[i..i + 2 * LANES], &w[i..i + 2 * LANES]);
        for l in 0..LANES {
            s0[l] += x[l] * y[l];
            s1[l] += x[LANES + l] * y[LANES + l];
        }
        i += 2 * LANES;
    }
    let mut s: f32 = s0.iter().zip(&s1).map(|(p, q)| p + q).sum();
    for t in full..k {
        s += a[t] * w[t];
    }
    s
}

#[inline(always)]
fn dot4(a: &[f32], b: &[f32], c: &[f32], d: &[f32], w: &[f32]) -> [f32; 4] {
    let k = a.len().min(b.len()).min(c.len()).min(d.len()).min(w.len());
    let full = k / LANES * LANES;
    let (mut sa, mut sb, mut sc, mut sd) =
        ([0f32; LANES], [0f32; LANES], [0f32; LANES], [0f32; LANES]);
    let mut i = 0;
    while i < full {
        let y = &w[i..i + LANES];
        let (xa, xb, xc, xd) = (
            &a[i..i + LANES],
            &b[i..i + LANES],
            &c[i..i + LANES],
            &d[i..i + LANES],
        );
        for l in 0..LANES {
            sa[l] += xa[l] * y[l];
            sb[l] += xb[l] * y[l];
            sc[l] += xc[l] * y[l];
            sd[l] += xd[l] * y[l];
        }
        i += LANES;
    }
    let mut out = [
        sa.iter().sum::<f32>(),
        sb.iter().sum::<f32>(),
        sc.iter().sum::<f32>(),
        sd.iter().sum::<f32>(),
    ];
    for t in full..k {
        out[0] += a[t] * w[t];
        out[1] += b[t] * w[t];
        out[2] += c[t] * w[t];
        out[3] += d[t] * w[t];
    }
    out
}

/// `out[r][c] = x[r] · w[c]` for four rows by four weight rows: sixteen
/// AVX-512 accumulators, so each chunk loaded feeds four fused
/// multiply-adds (the four-row body feeds one, with a separate multiply
/// and add). Decoding a batch spends its time here.
///
/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dot4x4_avx512(x: &[&[f32]; 4], w: &[&[f32]; 4]) -> [[f32; 4]; 4] {
    use std::arch::x86_64::*;
    let k = x.iter().chain(w.iter()).map(|s| s.len()).min().unwrap_or(0);
    let full = k / 16 * 16;
    let mut acc = [[_mm512_setzero_ps(); 4]; 4];
    let mut i = 0;
    while i < full {
        // SAFETY: i + 16 ≤ k, within every slice.
        unsafe {
            let xs = [
                _mm512_loadu_ps(x[0].as_ptr().add(i)),
                _mm512_loadu_ps(x[1].as_ptr().add(i)),
                _mm512_loadu_ps(x[2].as_ptr().add(i)),
                _mm512_loadu_ps(x[3].as_ptr().add(i)),
            ];
            for (c, wc) in w.iter().enumerate() {
                let y = _mm512_loadu_ps(wc.as_ptr().add(i));
                for (r, &xr) in xs.iter().enumerate() {
                    acc[r][c] = _mm512_fmadd_ps(xr, y, acc[r][c]);
                }
            }
        }
        i += 16;
    }
    let mut out = [[0f32; 4]; 4];
    for (r, row) in out.iter_mut().enumerate() {
        for (c, o) in row.iter_mut().enumerate() {
            let mut s = _mm512_reduce_add_ps(acc[r][c]);
            for t in full..k {
                s += x[r][t] * w[c][t];
            }
            *o = s;
        }
    }
    out
}

/// `out[r·4 + c] = rows[r] · ws[c]` when there are four of each and the
/// CPU has AVX-512 (fused multiply-adds, so the last bits may differ from
/// [`dots`]); returns false, writing nothing, otherwise.
pub fn dots_4x4(rows: &[&[f32]], ws: &[&[f32]], out: &mut [f32]) -> bool {
    #[cfg(target_arch = "x86_64")]
    if let (Ok(x), Ok(w)) = (<&[&[f32]; 4]>::try_from(rows), <&[&[f32]; 4]>::try_from(ws))
        && out.len() >= 16
        && std::arch::is_x86_feature_detected!("avx512f")
    {
        // SAFETY: the feature was just detected.
        let q = unsafe { dot4x4_avx512(x, w) };
        for (r, q) in q.iter().enumerate() {
            out[r * 4..r * 4 + 4].copy_from_slice(q);
        }
        return true;
    }
    let _ = (rows, ws, out);
    false
}

/// Hints the CPU to bring `xs` into its level-2 cache, one request per
/// 64-byte line (no effect on results; nothing off x86-64).
pub fn prefetch(xs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in xs.chunks(16) {
        // SAFETY: SSE is part of x86-64; a prefetch never faults and reads
        // nothing architecturally.
        unsafe {
            std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(
                line.as_ptr().cast(),
            )
        };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = xs;
}

macro_rules! dispatch {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty) => {
        /// Runs the body with the widest vector unit the CPU has.
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn wide($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the feature was just detected.
                    return unsafe { wide($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the features were just detected.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

#[inline(always)]
fn axpy_body(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn swiglu_body(g: &[f32], u: &[f32], out: &mut [f32]) {
    for ((o, &g), &u) in out.iter_mut().zip(g).zip(u) {
        *o = g / (1.0 + exp_approx(-g)) * u;
    }
}

dispatch!(exp_shifted, exp_shifted_body, (x: &mut [f32], m: f32) -> f32);
dispatch!(axpy, axpy_body, (y: &mut [f32], a: f32, x: &[f32]) -> ());
dispatch!(swiglu, swiglu_body, (g: &[f32], u: &[f32], out: &mut [f32]) -> ());
dispatch!(max, max_body, (x: &[f32]) -> f32);
dispatch!(dot_portable, dot_body, (a: &[f32], b: &[f32]) -> f32);

/// `a · b` over the shorter length. Decode attention calls it once per
/// cached position on head-sized vectors (64 elements), where summing the
/// lanes costs as much as the products: with AVX-512 the lanes are summed
/// as a tree and the tail is a masked load.
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected.
        return unsafe { dot_avx512(a, b) };
    }
    dot_portable(a, b)
}

/// One query's attention over `n` cached positions, when the CPU has
/// AVX-512 (returns false, writing nothing, otherwise): key and value `j`
/// start at `j · stride` in `k` and `v` and are `out.len()` long; `sc`
/// (at least `n`) is scratch, left holding `exp(sⱼ − max s)`; `out = Σⱼ pⱼ vⱼ` with
/// `p = softmax(scale · q·kⱼ)`. The same arithmetic as [`dot`], [`max`],
/// [`exp_shifted`] and a product-then-sum accumulation, in one call (decode
/// attention made one call per position before, which cost more than the
/// 64-element products themselves).
#[allow(clippy::too_many_arguments)]
pub fn attend(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    n: usize,
    scale: f32,
    sc: &mut [f32],
    out: &mut [f32],
) -> bool {
    let hd = out.len();
    let fits = |x: &[f32]| n == 0 || (n - 1) * stride + hd <= x.len();
    assert!(
        fits(k) && fits(v) && sc.len() >= n && q.len() >= hd,
        "attend: sizes"
    );
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        // SAFETY: the feature was just detected; sizes checked above.
        unsafe { attend_avx512(q, k, v, stride, n, scale, sc, out) };
        return true;
    }
    let _ = scale;
    false
}

/// # Safety
/// The CPU must have AVX-512F; sizes as [`attend`] checks them.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn attend_avx512(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    stride: usize,
    n: usize,
    scale: f32,
    sc: &mut [f32],
    out: &mut [f32],
) {
    let hd = out.len();
    for (j, s) in sc[..n].iter_mut().enumerate() {
        // SAFETY: the caller has AVX-512F.
        *s = unsafe { dot_avx512(&q[..hd], &k[j * stride..j * stride + hd]) } * scale;
    }
    let m = max_body(&sc[..n]);
    let inv = 1.0 / exp_shifted_body(&mut sc[..n], m);
    out.fill(0.0);
    for (j, &s) in sc[..n].iter().enumerate() {
        axpy_body(out, s * inv, &v[j * stride..j * stride + hd]);
    }
}

/// # Safety
/// The CPU must have AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn dot_avx512(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let k = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let (mut s0, mut s1) = (_mm512_setzero_ps(), _mm512_setzero_ps());
    let mut i = 0;
    // SAFETY: every load reads elements below k (the tail through a mask).
    unsafe {
        while i + 32 <= k {
            s0 = _mm512_fmadd_ps(_mm512_loadu_ps(pa.add(i)), _mm512_loadu_ps(pb.add(i)), s0);
            s1 = _mm512_fmadd_ps(
                _mm512_loadu_ps(pa.add(i + 16)),
                _mm512_loadu_ps(pb.add(i + 16)),
                s1,
            );
            i += 32;
        }
        while i < k {
            let n = (k - i).min(16);
            let m: __mmask16 = if n == 16 { 0xffff } else { (1u16 << n) - 1 };
            s0 = _mm512_fmadd_ps(
                _mm512_maskz_loadu_ps(m, pa.add(i)),
                _mm512_maskz_loadu_ps(m, pb.add(i)),
                s0,
            );
            i += n;
        }
    }
    _mm512_reduce_add_ps(_mm512_add_ps(s0, s1))
}
dispatch!(dots, dots_body, (rows: &[&[f32]], w: &[f32], out: &mut [f32]) -> ());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_is_within_a_few_ulp_of_std() {
        let mut worst = 0f64;
        let mut x = -87.0f32;
        while x < 88.0 {
            let (a, b) = (exp_approx(x) as f64, (x as f64).exp());
            worst = worst.max((a - b).abs() / b);
            x += 0.001_37;
        }
        assert!(worst < 5e-7, "worst relative error {worst:e}");
        assert!(exp_approx(f32::NEG_INFINITY) < 1e-37);
    }

    #[test]
    fn dots_match_plain_dot_products() {
        let w: Vec<f32> = (0..203).map(|i| (i % 13) as f32 * 0.25 - 1.5).collect();
        let xs: Vec<Vec<f32>> = (0..6)
            .map(|r| (0..203).map(|i| ((i * (r + 3)) % 7) as f32 - 3.0).collect())
            .collect();
        let refs: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let mut out = vec![0f32; 6];
        dots(&refs, &w, &mut out);
        for (x, o) in xs.iter().zip(&out) {
            let want: f32 = x.iter().zip(&w).map(|(a, b)| a * b).sum();
            assert!((o - want).abs() < 1e-3, "{o} vs {want}");
            assert!((dot(x, &w) - want).abs() < 1e-3);
        }
    }

    #[test]
    fn blocks_match_dot_products() {
        // Four rows by four weight rows, of a length with a tail, against
        // f64 sums (where the CPU has no AVX-512 there is nothing to check).
        let xs: Vec<Vec<f32>> = (0..4)
            .map(|r| {
                (0..203)
                    .map(|i| ((i * (r + 3)) % 11) as f32 * 0.37 - 1.9)
                    .collect()
            })
            .collect();
        let ws: Vec<Vec<f32>> = (0..4)
            .map(|c| {
                (0..203)
                    .map(|i| ((i * (c + 5)) % 13) as f32 * 0.21 - 1.3)
                    .collect()
            })
            .collect();
        let xr: Vec<&[f32]> = xs.iter().map(Vec::as_slice).collect();
        let wr: Vec<&[f32]> = ws.iter().map(Vec::as_slice).collect();
        let mut got = [0f32; 16];
        assert!(!dots_4x4(&xr[..3], &wr, &mut got), "only four by four");
        if !dots_4x4(&xr, &wr, &mut got) {
            return;
        }
        for r in 0..4 {
            for c in 0..4 {
                let want: f64 = xs[r]
                    .iter()
                    .zip(&ws[c])
                    .map(|(&a, &b)| a as f64 * b as f64)
                    .sum();
                let g = got[r * 4 + c] as f64;
                assert!((g - want).abs() < 1e-3, "({r}, {c}): {g} vs {want}");
            }
        }
    }

    #[test]
    fn fused_attention_matches_f64() {
        // Head size 64 and 72 (a masked tail), keys/values strided inside
        // wider rows, 1 and 37 positions; against softmax and sums in f64.
        for (hd, stride, n) in [(64, 192, 37), (72, 80, 1), (64, 64, 5)] {
            let f = |i: usize, m: usize| ((i * m) % 97) as f32 / 48.0 - 1.0;
            let q: Vec<f32> = (0..hd).map(|i| f(i, 13)).collect();
            let k: Vec<f32> = (0..n * stride).map(|i| f(i, 7)).collect();
            let v: Vec<f32> = (0..n * stride).map(|i| f(i, 11)).collect();
            let scale = 0.125f32;
            let (mut sc, mut out) = (vec![0f32; n], vec![9f32; hd]);
            if !attend(&q, &k, &v, stride, n, scale, &mut sc, &mut out) {
                return;
            }
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (0..hd)
                        .map(|d| q[d] as f64 * k[j * stride + d] as f64)
                        .sum::<f64>()
                        * scale as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - m).exp()).sum();
            for d in 0..hd {
                let want: f64 = (0..n)
                    .map(|j| (s[j] - m).exp() / z * v[j * stride + d] as f64)
                    .sum();
                let got = out[d] as f64;
                assert!(
                    (got - want).abs() < 1e-5,
                    "hd {hd}, n {n}, d {d}: {got} vs {want}"
                );
            }
            for (j, p) in sc.iter().enumerate() {
                assert!((*p as f64 - (s[j] - m).exp()).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn swiglu_and_axpy_match_scalar_loops() {
        let g: Vec<f32> = (0..1037).map(|i| (i as f32 - 518.0) / 9.0).collect();
        let u: Vec<f32> = (0..1037).map(|i| ((i * 31) % 17) as f32 - 8.0).collect();
        let mut out = vec![0f32; g.len()];
        swiglu(&g, &u, &mut out);
        for ((o, &g), &u) in out.iter().zip(&g).zip(&u) {
            let want = g as f64 / (1.0 + (-g as f64).exp()) * u as f64;
            assert!(
                (*o as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
                "{o} vs {want}"
            );
        }
        let mut y = u.clone();
        axpy(&mut y, 0.5, &g);
        for ((y, &u), &g) in y.iter().zip(&u).zip(&g) {
            assert_eq!(*y, u + 0.5 * g);
        }
    }

    #[test]
    fn rows_match_scalar_loops() {
        let row: Vec<f32> = (0..1037)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0 - 5.0)
            .collect();
        let m = max(&row);
        assert_eq!(m, row.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b)));
        let mut e = row.clone();
        let s = exp_shifted(&mut e, m);
        let want: f64 = row.iter().map(|&v| ((v - m) as f64).exp()).sum();
        assert!(((s as f64) - want).abs() / want < 1e-5);
        for (a, &v) in e.iter().zip(&row) {
            assert!((*a as f64 - ((v - m) as f64).exp()).abs() < 1e-6);
        }
    }
}
