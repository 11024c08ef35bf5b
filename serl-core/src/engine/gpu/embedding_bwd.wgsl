// grads[table][ids[r]] += dout[r]: one invocation per column walks the
// rows in order, so repeated ids accumulate without atomics.
// P: n, d, table offset
@group(0) @binding(1) var<storage, read_write> grads: array<f32>;
@group(0) @binding(2) var<storage, read> ids: array<u32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let j = flat(g, nw);
    let d = pu(1u);
    if (j >= d) { return; }
    for (var r = 0u; r < pu(0u); r++) {
        let at = pu(2u) + ids[r] * d + j;
        grads[at] = grads[at] + dout[r * d + j];
    }
}
