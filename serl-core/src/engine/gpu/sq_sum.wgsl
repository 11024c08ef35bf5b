// Partial sums of squares: workgroup w sums elements [w·2048, (w+1)·2048).
// P: len
@group(0) @binding(1) var<storage, read> x: array<f32>;
@group(0) @binding(2) var<storage, read_write> partial: array<f32>;
var<workgroup> red: array<f32, 256>;
@compute @workgroup_size(256)
fn main(@builtin(workgroup_id) wg: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>,
        @builtin(local_invocation_index) l: u32) {
    let w = group_index(wg, nw);
    let len = pu(0u);
    if (w * 2048u >= len) { return; }
    var s = 0.0;
    for (var e = 0u; e < 8u; e++) {
        let i = w * 2048u + e * 256u + l;
        if (i < len) { s += x[i] * x[i]; }
    }
    red[l] = s;
    workgroupBarrier();
    for (var st = 128u; st > 0u; st >>= 1u) {
        if (l < st) { red[l] += red[l + st]; }
        workgroupBarrier();
    }
    if (l == 0u) { partial[w] = red[0]; }
}
