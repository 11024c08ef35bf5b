// RMSNorm backward into the input, one workgroup per row:
// dx += rstd·w·g − x·(Σ x·g·w)·rstd³/d.       P: n, d, w offset
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> w: array<f32>;
@group(0) @binding(3) var<storage, read> rstd: array<f32>;
@group(0) @binding(4) var<storage, read> dout: array<f32>;
@group(0) @binding(5) var<storage, read_write> dx: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    let r = group_index(wg, nw);
    let d = pu(1u);
    if (r >= pu(0u)) { return; }
    let wo = pu(2u);
    var s = 0.0;
    for (var j = l; j < d; j += 256u) {
        s += x[r * d + j] * dout[r * d + j] * w[wo + j];
    }
    red[l] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] += red[l + st]; }
        workgroupBarrier();
    }
    let rs = rstd[r];
    let c = red[0] * rs * rs * rs / f32(d);
    for (var j = l; j < d; j += 256u) {
        let i = r * d + j;
        dx[i] = dx[i] + (rs * w[wo + j] * dout[i] - x[i] * c);
    }
}
