// One AdamW step (decoupled decay, bias-corrected moments).
// P: len, b1, b2, eps, wd, lr, c1, c2 (c = 1 − βᵗ)
@group(0) @binding(1) var<storage, read_write> w: array<f32>;
@group(0) @binding(2) var<storage, read> grad: array<f32>;
@group(0) @binding(3) var<storage, read_write> m: array<f32>;
@group(0) @binding(4) var<storage, read_write> v: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    if (i >= pu(0u)) { return; }
    let b1 = pf(1u);
    let b2 = pf(2u);
    let gi = grad[i];
    let mi = b1 * m[i] + (1.0 - b1) * gi;
    let vi = b2 * v[i] + (1.0 - b2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    let delta = (mi / pf(6u)) / (sqrt(vi / pf(7u)) + pf(3u)) + pf(4u) * w[i];
    w[i] = w[i] - pf(5u) * delta;
}
