// Shared by every kernel: up to 16 scalar parameters in a uniform buffer
// (u32, or f32 bit patterns), and the flat index of a 1-D launch whose
// 256-wide groups are spread over x and y (x is capped at 65,535 groups).
struct Params { v: array<vec4<u32>, 4> }
@group(0) @binding(0) var<uniform> P: Params;
fn pu(i: u32) -> u32 { return P.v[i / 4u][i % 4u]; }
fn pf(i: u32) -> f32 { return bitcast<f32>(pu(i)); }
fn flat(g: vec3<u32>, nw: vec3<u32>) -> u32 { return g.x + g.y * nw.x * 256u; }
fn group_index(w: vec3<u32>, nw: vec3<u32>) -> u32 { return w.x + w.y * nw.x; }
fn sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + exp(-x)); }
// Head widths up to this fit the attention kernels' private accumulators.
const MAX_HD: u32 = 256u;
