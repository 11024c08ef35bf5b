// dg, du of out = silu(g) · u.       P: len
@group(0) @binding(1) var<storage, read> gate: array<f32>;
@group(0) @binding(2) var<storage, read> up: array<f32>;
@group(0) @binding(3) var<storage, read> dout: array<f32>;
@group(0) @binding(4) var<storage, read_write> dg: array<f32>;
@group(0) @binding(5) var<storage, read_write> du: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    if (i >= pu(0u)) { return; }
    let a = gate[i];
    let s = sigmoid(a);
    let d = dout[i];
    du[i] = d * a * s;
    dg[i] = d * up[i] * s * (1.0 + a * (1.0 - s));
}
