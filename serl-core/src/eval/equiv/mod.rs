//! Equivalence of two answers as math_verify decides it for SeRL's majority
//! reward, without Python or sympy: extraction of candidates from the text,
//! a LaTeX parser, and a comparison procedure on the parsed values.

mod envscan;
mod expr;
mod extract;
mod latex;
mod num;
mod realset;

pub use expr::Expr;
pub use extract::{Parsed, parse_candidates};

use expr::expr_eq;

/// math_verify's `verify(gold, target)`: any value pair equal, or any pair
/// of fallback strings equal and non-empty.
pub fn verify(gold: &[Parsed], target: &[Parsed]) -> bool {
    gold.iter().any(|g| {
        target.iter().any(|t| match (g, t) {
            (Parsed::Value(a), Parsed::Value(b)) => expr_eq(a, b),
            (Parsed::Text(a), Parsed::Text(b)) => {
                let (a, b) = (a.trim(), b.trim());
                !a.is_empty() && a == b
            }
            _ => false,
        })
    })
}

/// Whether two answers are equivalent as SeRL's math_verify reward decides
/// it: `ref` is parsed as the gold answer and `pred` as the prediction, and
/// either direction passing counts.
pub fn equivalent(pred: &str, reference: &str) -> bool {
    let p = parse_candidates(pred);
    let r = parse_candidates(reference);
    verify(&r, &p) || verify(&p, &r)
}
