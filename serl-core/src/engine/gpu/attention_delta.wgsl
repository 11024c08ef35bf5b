// D[s, h, i] = dout_i · out_i (the softmax backward's row term).
// P: b, t, nh, hd
@group(0) @binding(1) var<storage, read> dout: array<f32>;
@group(0) @binding(2) var<storage, read> out: array<f32>;
@group(0) @binding(3) var<storage, read_write> delta: array<f32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) g: vec3<u32>, @builtin(num_workgroups) nw: vec3<u32>) {
    let idx = g.x + g.y * nw.x * 64u;
    let t = pu(1u);
    let nh = pu(2u);
    let hd = pu(3u);
    if (idx >= pu(0u) * nh * t) { return; }
    let s = idx / (nh * t);
    let h = (idx / t) % nh;
    let i = idx % t;
    let row = (s * t + i) * nh * hd + h * hd;
    var d = 0.0;
    for (var c = 0u; c < hd; c++) { d += dout[row + c] * out[row + c]; }
    delta[idx] = d;
}
