//! Prints what the equivalence checker extracts from each argument, and
//! whether the first two arguments are equivalent: a tool for comparing
//! libserl with math_verify on one case.
//!
//! `cargo run --example equiv_debug -- '$\boxed{\pm 2}$' '$\boxed{\{-2,2\}}$'`
fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    for a in &args {
        println!("{a:?} -> {:?}", serl_core::eval::parse_candidates(a));
    }
    if let [a, b] = &args[..] {
        println!("equivalent: {}", serl_core::eval::equivalent(a, b));
    }
}
