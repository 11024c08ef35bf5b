// Greedy decoding's read-back, per row of logits (one workgroup each):
// out[2r] = the index of the row's largest logit (the first on ties, as the
// CPU's argmax; 0 when no logit beats -inf), as an f32 (exact below 2^24);
// out[2r + 1] = its log-probability, −log Σ exp(x − max).
// P: rows, v
@group(0) @binding(1) var<storage, read> logits: array<f32>;
@group(0) @binding(2) var<storage, read_write> out: array<f32>;
var<workgroup> best: array<f32, 256>;
var<workgroup> at: array<u32, 256>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    let r = group_index(wg, nw);
    let v = pu(1u);
    if (r >= pu(0u)) { return; }
    let base = r * v;
    var m = bitcast<f32>(0xff800000u);
    var i = 0xffffffffu;
    for (var j = l; j < v; j += 256u) {
        let x = logits[base + j];
        if (x > m) { m = x; i = j; }
    }
    best[l] = m;
    at[l] = i;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) {
            let b = best[l + st];
            let bi = at[l + st];
            if (b > best[l] || (b == best[l] && bi < at[l])) {
                best[l] = b;
                at[l] = bi;
            }
        }
        workgroupBarrier();
    }
    let mx = best[0];
    var idx = at[0];
    if (idx == 0xffffffffu) { idx = 0u; }
    var z = 0.0;
    for (var j = l; j < v; j += 256u) { z += exp(logits[base + j] - mx); }
    red[l] = z;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] += red[l + st]; }
        workgroupBarrier();
    }
    if (l == 0u) {
        out[2u * r] = f32(idx);
        out[2u * r + 1u] = logits[base + idx] - mx - log(red[0]);
    }
}
