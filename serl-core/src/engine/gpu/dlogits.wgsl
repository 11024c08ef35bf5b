// Probabilities → ∂loss/∂logits: row j becomes g_j · (onehot(target) − p).
// P: c, v, start (targets)
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> dlp: array<f32>;
@group(0) @binding(3) var<storage, read> targets: array<u32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    let v = pu(1u);
    if (i >= pu(0u) * v) { return; }
    let j = i / v;
    let gj = dlp[j];
    var x = -logits[i] * gj;
    if (i % v == targets[pu(2u) + j]) { x += gj; }
    logits[i] = x;
}
