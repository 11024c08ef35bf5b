// grads[off + c] += Σ_r x[r·cols + c], one invocation per column (bias
// gradients).       P: rows, cols, off
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> grads: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let c = flat(g, nw);
    let cols = pu(1u);
    if (c >= cols) { return; }
    var s = 0.0;
    for (var r = 0u; r < pu(0u); r++) {
        s += x[r * cols + c];
    }
    grads[pu(2u) + c] = grads[pu(2u) + c] + s;
}
