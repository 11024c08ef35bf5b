// Per row of logits (one workgroup each): lp[lp_off + j] = logit[target] −
// max − log Σ exp; the row becomes the probabilities.
// P: c, v, start (targets), lp_off
@group(0) @binding(1) var<storage, read_write> logits: array<f32>;
@group(0) @binding(2) var<storage, read> targets: array<u32>;
@group(0) @binding(3) var<storage, read_write> lp: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    let r = group_index(wg, nw);
    let v = pu(1u);
    if (r >= pu(0u)) { return; }
    let base = r * v;
    var m = -3.0e38;
    for (var j = l; j < v; j += 256u) { m = max(m, logits[base + j]); }
    red[l] = m;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] = max(red[l], red[l + st]); }
        workgroupBarrier();
    }
    let mx = red[0];
    workgroupBarrier();
    var z = 0.0;
    for (var j = l; j < v; j += 256u) {
        let e = exp(logits[base + j] - mx);
        z += e;
    }
    red[l] = z;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] += red[l + st]; }
        workgroupBarrier();
    }
    let zs = red[0];
    let tgt = targets[pu(2u) + r];
    let picked = logits[base + tgt];
    workgroupBarrier();
    if (l == 0u) { lp[pu(3u) + r] = picked - mx - log(zs); }
    let inv = 1.0 / zs;
    for (var j = l; j < v; j += 256u) {
        logits[base + j] = exp(logits[base + j] - mx) * inv;
    }
}
