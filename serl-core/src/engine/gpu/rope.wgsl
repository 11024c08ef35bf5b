// Rotary embedding in place, rotate-half pairing (k, k + hd/2); row r at
// position pos[r]; sin negated for the inverse.       P: n, heads, hd, inverse
@group(0) @binding(1) var<storage, read_write> x: array<f32>;
@group(0) @binding(2) var<storage, read> pos: array<u32>;
@group(0) @binding(3) var<storage, read> cosv: array<f32>;
@group(0) @binding(4) var<storage, read> sinv: array<f32>;
@compute @workgroup_size(256)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let i = flat(g, nw);
    let heads = pu(1u);
    let hd = pu(2u);
    let half = hd / 2u;
    if (i >= pu(0u) * heads * half) { return; }
    let r = i / (heads * half);
    let h = (i / half) % heads;
    let k = i % half;
    let p = pos[r];
    let c = cosv[p * half + k];
    var s = sinv[p * half + k];
    if (pu(3u) != 0u) { s = -s; }
    let base = r * heads * hd + h * hd + k;
    let x1 = x[base];
    let x2 = x[base + half];
    x[base] = x1 * c - x2 * s;
    x[base + half] = x2 * c + x1 * s;
}
