// dst[j] = src[rows[start + j]], rows of width d.       P: c, d, start
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    let d = pu(1u);
    if (i >= pu(0u) * d) { return; }
    dst[i] = src[rows[pu(2u) + i / d] * d + i % d];
}
