// Attention of t new queries per sequence over a key/value cache
// [b, cap, nkv·hd]: query i sees cache positions pad[s]..=len + i.
// P: b, t, nh, nkv, hd, scale, len, cap
@group(0) @binding(1) var<storage, read> q: array<f32>;
@group(0) @binding(2) var<storage, read> kc: array<f32>;
@group(0) @binding(3) var<storage, read> vc: array<f32>;
@group(0) @binding(4) var<storage, read> pad: array<u32>;
@group(0) @binding(5) var<storage, read_write> out: array<f32>;
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
    let cap = pu(7u);
    let last = pu(6u) + i;
    let p0 = pad[s];
    let orow = (s * t + i) * qw + h * hd;
    var acc: array<f32, MAX_HD>;
    var m = -3.0e38;
    var z = 0.0;
    let scale = pf(5u);
    for (var j = p0; j <= last; j++) {
        let kr = (s * cap + j) * kw + kvh * hd;
        var sc = 0.0;
        for (var c = 0u; c < hd; c++) { sc += q[orow + c] * kc[kr + c]; }
        sc *= scale;
        if (sc > m) {
            let corr = exp(m - sc);
            z *= corr;
            for (var c = 0u; c < hd; c++) { acc[c] *= corr; }
            m = sc;
        }
        let e = exp(sc - m);
        z += e;
        for (var c = 0u; c < hd; c++) { acc[c] += e * vc[kr + c]; }
    }
    var inv = 0.0;
    if (z > 0.0) { inv = 1.0 / z; }
    for (var c = 0u; c < hd; c++) { out[orow + c] = acc[c] * inv; }
}
