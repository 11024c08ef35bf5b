// RMSNorm backward into the weight: grads[w][j] += Σ_r dout·x·rstd, one
// invocation per column.       P: n, d, w offset
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read> rstd: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> grads: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let j = flat(g, nw);
    let d = pu(1u);
    if (j >= d) { return; }
    var s = 0.0;
    for (var r = 0u; r < pu(0u); r++) {
        s += dout[r * d + j] * x[r * d + j] * rstd[r];
    }
    let at = pu(2u) + j;
    grads[at] = grads[at] + s;
}
