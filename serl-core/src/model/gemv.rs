//! `x @ wᵀ` for few rows (decoding: one token per sequence): every weight
//! row is read once and dotted with all rows of `x`, in parallel over
//! weight rows, with AVX2+FMA when the CPU has it. A general GEMM packs the
//! weight matrix on every call, which costs more than the product itself at
//! these shapes.

use rayon::prelude::*;

/// Dot product, 8 lanes × 4 accumulators when AVX2 and FMA are there.
#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
        {
            // SAFETY: the features were just detected.
            return unsafe { dot_avx2(a, b) };
        }
    }
    dot_plain(a, b)
}

fn dot_plain(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let chunks = a.len() / 8;
    for c in 0..chunks {
        for l in 0..8 {
            acc[l] += a[c * 8 + l] * b[c * 8 + l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for i in chunks * 8..a.len() {
        s += a[i] * b[i];
    }
    s
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot_avx2(a: &[f32], b: &[f32]) -> f32 {
    use std::arch::x86_64::*;
    let n = a.len().min(b.len());
    let (pa, pb) = (a.as_ptr(), b.as_ptr());
    let mut acc = [_mm256_setzero_ps(); 4];
    let mut i = 0;
    // SAFETY: every load is within the first n elements of both slices.
    unsafe {
        while i + 32 <= n {
            for (k, a_k) in acc.iter_mut().enumerate() {
                let x = _mm256_loadu_ps(pa.add(i + 8 * k));
                let y = _mm256_loadu_ps(pb.add(i + 8 * k));
                *a_k = _mm256_fmadd_ps(x, y, *a_k);
            }
            i += 32;
        }
        while i + 8 <= n {
            acc[0] = _mm256_fmadd_ps(
                _mm256_loadu_ps(pa.add(i)),
                _mm256_loadu_ps(pb.add(i)),
                acc[0],
            );
            i += 8;
        }
        let s = _mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]));
        let mut lanes = [0f32; 8];
        _mm256_storeu_ps(lanes.as_mut_ptr(), s);
        let mut total: f32 = lanes.iter().sum();
        while i < n {
            total += *pa.add(i) * *pb.add(i);
            i += 1;
        }
        total
    }
}

/// `out[r][j] = Σ_k x[r][k]·w[j][k] (+ bias[j])` for `x` of `m × k` and `w`
/// of `n × k` (row-major); returns `m × n`.
pub fn skinny_matmul(
    x: &[f32],
    m: usize,
    w: &[f32],
    n: usize,
    k: usize,
    bias: Option<&[f32]>,
) -> Vec<f32> {
    // Columns of the output (weight rows) in parallel blocks; each block
    // writes its own `m × block` tile, transposed into place afterwards.
    const BLOCK: usize = 64;
    let tiles: Vec<(usize, Vec<f32>)> = (0..n.div_ceil(BLOCK))
        .into_par_iter()
        .map(|b| {
            let j0 = b * BLOCK;
            let j1 = (j0 + BLOCK).min(n);
            let mut tile = vec![0f32; (j1 - j0) * m];
            for j in j0..j1 {
                let wr = &w[j * k..(j + 1) * k];
                let add = bias.map_or(0.0, |bv| bv[j]);
                for r in 0..m {
                    tile[(j - j0) * m + r] = dot(&x[r * k..(r + 1) * k], wr) + add;
                }
            }
            (j0, tile)
        })
        .collect();
    let mut out = vec![0f32; m * n];
    for (j0, tile) in tiles {
        let width = tile.len() / m.max(1);
        for jj in 0..width {
            for r in 0..m {
                out[r * n + j0 + jj] = tile[jj * m + r];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_the_naive_product() {
        let (m, n, k) = (3, 131, 77);
        let x: Vec<f32> = (0..m * k)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 50.0)
            .collect();
        let w: Vec<f32> = (0..n * k)
            .map(|i| ((i * 53 % 97) as f32 - 48.0) / 48.0)
            .collect();
        let b: Vec<f32> = (0..n).map(|j| j as f32 / 10.0).collect();
        let got = skinny_matmul(&x, m, &w, n, k, Some(&b));
        for r in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|i| x[r * k + i] * w[j * k + i]).sum::<f32>() + b[j];
                assert!((got[r * n + j] - want).abs() < 1e-4, "{r},{j}");
            }
        }
        assert!((dot_plain(&x[..k], &w[..k]) - dot(&x[..k], &w[..k])).abs() < 1e-4);
    }
}
