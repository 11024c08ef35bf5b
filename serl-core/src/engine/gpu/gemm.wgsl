// C[m, n] = α Σ_k A(m, k) · B(k, n) (+ C if accumulating) (+ bias[n]),
// with A and B addressed through offsets and row/column strides, so one
// kernel serves x·wᵀ, dout·w and doutᵀ·x without transposed copies.
// Tiles of 64 × 64 outputs, 16 deep; each invocation owns a 4 × 4 block.
// P: m, n, k, a_off, a_rs, a_cs, b_off, b_rs, b_cs, c_off, c_rs,
//    flags (1 accumulate, 2 bias), bias_off, alpha
@group(0) @binding(1) var<storage, read> A: array<f32>;
@group(0) @binding(2) var<storage, read> B: array<f32>;
@group(0) @binding(3) var<storage, read> bias: array<f32>;
@group(0) @binding(4) var<storage, read_write> C: array<f32>;
const BM: u32 = 64u;
const BN: u32 = 64u;
const BK: u32 = 16u;
var<workgroup> As: array<f32, 1024>; // [BK][BM]
var<workgroup> Bs: array<f32, 1024>; // [BK][BN]
@compute @workgroup_size(16, 16)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(local_invocation_id) lid: vec3<u32>) {
    let M = pu(0u);
    let N = pu(1u);
    let K = pu(2u);
    let a_off = pu(3u);
    let a_rs = pu(4u);
    let a_cs = pu(5u);
    let b_off = pu(6u);
    let b_rs = pu(7u);
    let b_cs = pu(8u);
    let tid = lid.y * 16u + lid.x;
    let m0 = wg.y * BM;
    let n0 = wg.x * BN;
    var acc: array<f32, 16>;
    for (var k0 = 0u; k0 < K; k0 += BK) {
        for (var e = 0u; e < 4u; e++) {
            let idx = tid + e * 256u;
            let kk = idx / BM;
            let mm = idx % BM;
            let gk = k0 + kk;
            var va = 0.0;
            if (m0 + mm < M && gk < K) { va = A[a_off + (m0 + mm) * a_rs + gk * a_cs]; }
            As[idx] = va;
            var vb = 0.0;
            if (n0 + mm < N && gk < K) { vb = B[b_off + gk * b_rs + (n0 + mm) * b_cs]; }
            Bs[idx] = vb;
        }
        workgroupBarrier();
        for (var kk = 0u; kk < BK; kk++) {
            var a: array<f32, 4>;
            var b: array<f32, 4>;
            for (var i = 0u; i < 4u; i++) {
                a[i] = As[kk * BM + lid.y * 4u + i];
                b[i] = Bs[kk * BN + lid.x * 4u + i];
            }
            for (var i = 0u; i < 4u; i++) {
                for (var j = 0u; j < 4u; j++) {
                    acc[i * 4u + j] = fma(a[i], b[j], acc[i * 4u + j]);
                }
            }
        }
        workgroupBarrier();
    }
    let c_off = pu(9u);
    let c_rs = pu(10u);
    let flags = pu(11u);
    let alpha = pf(13u);
    for (var i = 0u; i < 4u; i++) {
        let gm = m0 + lid.y * 4u + i;
        if (gm >= M) { break; }
        for (var j = 0u; j < 4u; j++) {
            let gn = n0 + lid.x * 4u + j;
            if (gn >= N) { break; }
            var v = alpha * acc[i * 4u + j];
            if ((flags & 2u) != 0u) { v += bias[pu(12u) + gn]; }
            let at = c_off + gm * c_rs + gn;
            if ((flags & 1u) != 0u) { v += C[at]; }
            C[at] = v;
        }
    }
}
