// x[i] *= s, i < len.       P: len, s
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    if (i >= pu(0u)) { return; }
    x[i] = x[i] * pf(1u);
}
