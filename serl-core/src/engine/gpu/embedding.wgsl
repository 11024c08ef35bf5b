// out[r] = table[ids[r]], rows of width d.       P: n, d, table offset
@group(0) @binding(1) var<storage, read> table: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read_write> out: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    let d = pu(1u);
    if (i >= pu(0u) * d) { return; }
    out[i] = table[pu(2u) + ids[i / d] * d + i % d];
}
