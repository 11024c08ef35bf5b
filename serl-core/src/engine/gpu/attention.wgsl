// Causal GQA attention, one invocation per (sequence, head, query): an
// online softmax over keys pad[s]..=i. Writes the output row and the
// query's log-sum-exp (lse [b, nh, t]); rows before the padding get zeros.
// P: b, t, nh, nkv, hd, scale
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> k: array<f32>;
@group(0) @binding(3) var<storage, read> v: array<f32>;
@group(0) @binding(4) var<storage, read> pad: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
@group(0) @binding(6) var<storage, read_write> lse: array<f32>;
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
    let qw = nh * hd;
    let kw = nkv * hd;
    let kvh = h / (nh / nkv);
    let p0 = min(pad[s], t);
    let orow = (s * t + i) * qw + h * hd;
    if (i < p0) {
        for (var c = 0u; c < hd; c++) { out[orow + c] = 0.0; }
        lse[(s * nh + h) * t + i] = 0.0;
        return;
    }
    let scale = pf(5u);
    var acc: array<f32, MAX_HD>;
    var m = -3.0e38;
    var z = 0.0;
    for (var j = p0; j <= i; j++) {
        let kr = (s * t + j) * kw + kvh * hd;
        var sc = 0.0;
        for (var c = 0u; c < hd; c++) { sc += q[orow + c] * k[kr + c]; }
        sc *= scale;
        if (sc > m) {
            let corr = exp(m - sc);
            z *= corr;
            for (var c = 0u; c < hd; c++) { acc[c] *= corr; }
            m = sc;
        }
        let e = exp(sc - m);
        z += e;
        for (var c = 0u; c < hd; c++) { acc[c] += e * v[kr + c]; }
    }
    for (var c = 0u; c < hd; c++) { out[orow + c] = acc[c] / z; }
    lse[(s * nh + h) * t + i] = m + log(z);
}
