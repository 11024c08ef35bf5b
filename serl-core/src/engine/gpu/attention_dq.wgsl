// dq_i += scale · Σ_j p_ij (dout_i·v_j − D_i) k_j, one invocation per
// (sequence, head, query), probabilities recomputed from lse.
// P: b, t, nh, nkv, hd, scale
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read> pad: array<u32>;
@group(0) @binding(8) var<storage, read_write> dq: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let idx = g.x + g.y * nw.x * 64u;
    let t = pu(1u);
    let nh = pu(2u);
    let nkv = pu(3u);
    let hd = pu(4u);
    if (idx >= pu(0u) * nh * t) { return; }
    let s = idx / (nh * t);
    let h = (idx / t) % nh;
    let i = idx % t;
    let p0 = min(pad[s], t);
    if (i < p0) { return; }
    let qw = nh * hd;
    let kw = nkv * hd;
    let kvh = h / (nh / nkv);
    let scale = pf(5u);
    let qr = (s * t + i) * qw + h * hd;
    let l = lse[idx];
    let di = delta[idx];
    var acc: array<f32, MAX_HD>;
    for (var j = p0; j <= i; j++) {
        let kr = (s * t + j) * kw + kvh * hd;
        var sc = 0.0;
        var dp = 0.0;
        for (var c = 0u; c < hd; c++) {
            sc += q[qr + c] * k[kr + c];
            dp += dout[qr + c] * v[kr + c];
        }
        let ds = exp(sc * scale - l) * (dp - di);
        for (var c = 0u; c < hd; c++) { acc[c] += ds * k[kr + c]; }
    }
    for (var c = 0u; c < hd; c++) { dq[qr + c] = dq[qr + c] + scale * acc[c]; }
}
