// dst[rows[start + j]] += src[j], one invocation per column walking the
// rows in order (repeated rows accumulate).       P: c, d, start
@group(0) @binding(1) var<storage, read> src: array<f32>;
@group(0) @binding(2) var<storage, read> rows: array<u32>;
@group(0) @binding(3) var<storage, read_write> dst: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let col = flat(g, nw);
    let d = pu(1u);
    if (col >= d) { return; }
    for (var j = 0u; j < pu(0u); j++) {
        let at = rows[pu(2u) + j] * d + col;
        dst[at] = dst[at] + src[j * d + col];
    }
}
