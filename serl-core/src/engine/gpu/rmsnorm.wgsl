// RMSNorm, one workgroup per row: out = x · rstd · w. Mode 0 computes and
// stores rstd = 1/sqrt(mean(x²) + eps); mode 1 reuses the stored one.
// P: n, d, w offset, eps, mode
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@group(0) @binding(4) var<storage, read_write> rstd: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    let r = group_index(wg, nw);
    let d = pu(1u);
    if (r >= pu(0u)) { return; }
    var s = 0.0;
    for (var j = l; j < d; j += 256u) {
        let v = x[r * d + j];
        s += v * v;
    }
    red[l] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] += red[l + st]; }
        workgroupBarrier();
    }
    var rs = 0.0;
    if (pu(4u) == 0u) {
        rs = 1.0 / sqrt(red[0] / f32(d) + pf(3u));
        if (l == 0u) { rstd[r] = rs; }
    } else {
        rs = rstd[r];
    }
    let wo = pu(2u);
    for (var j = l; j < d; j += 256u) {
        out[r * d + j] = x[r * d + j] * rs * w[wo + j];
    }
}
