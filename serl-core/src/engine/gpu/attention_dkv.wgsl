// dv_j += Σ_i p_ij dout_i (mode 0) or dk_j += scale · Σ_i p_ij
// (dout_i·v_j − D_i) q_i (mode 1), summed over the query heads that share
// the key/value head; one invocation per (sequence, kv head, key).
// P: b, t, nh, nkv, hd, scale, mode
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> lse: array<f32>;
@group(0) @binding(5) var<storage, read> dout: array<f32>;
@group(0) @binding(6) var<storage, read> delta: array<f32>;
@group(0) @binding(7) var<storage, read> pad: array<u32>;
@group(0) @binding(8) var<storage, read_write> dkv: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let idx = g.x + g.y * nw.x * 64u;
    let t = pu(1u);
    let nh = pu(2u);
    let nkv = pu(3u);
    let hd = pu(4u);
    if (idx >= pu(0u) * nkv * t) { return; }
    let s = idx / (nkv * t);
    let kvh = (idx / t) % nkv;
    let j = idx % t;
    let p0 = min(pad[s], t);
    if (j < p0) { return; }
    let qw = nh * hd;
    let kw = nkv * hd;
    let rep = nh / nkv;
    let scale = pf(5u);
    let dk_mode = pu(6u) != 0u;
    let kr = (s * t + j) * kw + kvh * hd;
    var acc: array<f32, MAX_HD>;
    for (var h = kvh * rep; h < (kvh + 1u) * rep; h++) {
        for (var i = j; i < t; i++) {
            let qr = (s * t + i) * qw + h * hd;
            let li = (s * nh + h) * t + i;
            var sc = 0.0;
            for (var c = 0u; c < hd; c++) { sc += q[qr + c] * k[kr + c]; }
            let p = exp(sc * scale - lse[li]);
            if (dk_mode) {
                var dp = 0.0;
                for (var c = 0u; c < hd; c++) { dp += dout[qr + c] * v[kr + c]; }
                let ds = p * (dp - delta[li]);
                for (var c = 0u; c < hd; c++) { acc[c] += ds * q[qr + c]; }
            } else {
                for (var c = 0u; c < hd; c++) { acc[c] += p * dout[qr + c]; }
            }
        }
    }
    var f = 1.0;
    if (dk_mode) { f = scale; }
    for (var c = 0u; c < hd; c++) { dkv[kr + c] = dkv[kr + c] + f * acc[c]; }
}
