//! Sets of real numbers as sympy decides their equality
//! (`symmetric_difference(...).is_empty`), and relations in one variable as
//! the sets they describe (sympy's `as_set`), for sets whose elements and
//! endpoints are exact rationals or infinities.
//!
//! Two such sets (finite unions, differences of intervals and points) are
//! equal exactly when they agree at every endpoint, in every gap between
//! consecutive endpoints and beyond the outermost ones, so equality is
//! decided by probing those points.

use super::expr::{Expr, RelOp};
use super::num::Num;

/// A rational as (numerator, positive denominator).
type Q = (i128, i128);

fn q_cmp(a: Q, b: Q) -> Option<std::cmp::Ordering> {
    Some(a.0.checked_mul(b.1)?.cmp(&b.0.checked_mul(a.1)?))
}

fn q_mid(a: Q, b: Q) -> Option<Q> {
    let n = a.0.checked_mul(b.1)?.checked_add(b.0.checked_mul(a.1)?)?;
    let d = a.1.checked_mul(b.1)?.checked_mul(2)?;
    match Num::rat(n, d)? {
        Num::Rat(n, d) => Some((n, d)),
        Num::Float(_) => None,
    }
}

/// An endpoint: -∞, a rational, or +∞.
#[derive(Debug, Clone, Copy, PartialEq)]
enum End {
    NegInf,
    At(Q),
    PosInf,
}

fn end_of(e: &Expr) -> Option<End> {
    match e.inf_sign() {
        Some(1) => return Some(End::PosInf),
        Some(_) => return Some(End::NegInf),
        None => {}
    }
    exact_q(e).map(End::At)
}

fn exact_q(e: &Expr) -> Option<Q> {
    match e.exact()? {
        Num::Rat(n, d) => Some((n, d)),
        Num::Float(_) => None,
    }
}

/// Whether `x` lies in the set `e`; `None` where `e` is not such a set.
fn contains(e: &Expr, x: Q) -> Option<bool> {
    use std::cmp::Ordering::*;
    match e {
        Expr::Set(items) => {
            for it in items {
                if q_cmp(exact_q(it)?, x)? == Equal {
                    return Some(true);
                }
            }
            Some(false)
        }
        Expr::Interval(a, b, lopen, ropen) => {
            let above = match end_of(a)? {
                End::NegInf => true,
                End::PosInf => false,
                End::At(a) => match q_cmp(x, a)? {
                    Greater => true,
                    Equal => !lopen,
                    Less => false,
                },
            };
            let below = match end_of(b)? {
                End::PosInf => true,
                End::NegInf => false,
                End::At(b) => match q_cmp(x, b)? {
                    Less => true,
                    Equal => !ropen,
                    Greater => false,
                },
            };
            Some(above && below)
        }
        Expr::Union(parts) => {
            let mut any = false;
            for p in parts {
                any |= contains(p, x)?;
            }
            Some(any)
        }
        Expr::Func(name, args) if name == "setminus" && args.len() == 2 => {
            Some(contains(&args[0], x)? && !contains(&args[1], x)?)
        }
        _ => None,
    }
}

/// The finite endpoints and points of a set.
fn endpoints(e: &Expr, out: &mut Vec<Q>) -> Option<()> {
    match e {
        Expr::Set(items) => {
            for it in items {
                out.push(exact_q(it)?);
            }
        }
        Expr::Interval(a, b, ..) => {
            for end in [end_of(a)?, end_of(b)?] {
                if let End::At(q) = end {
                    out.push(q);
                }
            }
        }
        Expr::Union(parts) => {
            for p in parts {
                endpoints(p, out)?;
            }
        }
        Expr::Func(name, args) if name == "setminus" && args.len() == 2 => {
            endpoints(&args[0], out)?;
            endpoints(&args[1], out)?;
        }
        _ => return None,
    }
    Some(())
}

/// Whether `a` and `b` are the same set of reals; `None` where either is
/// not a set of this kind (symbolic elements, floats, tuples).
pub fn same_set(a: &Expr, b: &Expr) -> Option<bool> {
    let mut pts = Vec::new();
    endpoints(a, &mut pts)?;
    endpoints(b, &mut pts)?;
    if pts.len() > 256 {
        return None;
    }
    let mut sorted: Vec<Q> = Vec::with_capacity(pts.len());
    for p in pts {
        // Insertion keeps the list sorted and free of duplicates.
        let mut at = sorted.len();
        let mut dup = false;
        for (k, s) in sorted.iter().enumerate() {
            match q_cmp(p, *s)? {
                std::cmp::Ordering::Equal => {
                    dup = true;
                    break;
                }
                std::cmp::Ordering::Less => {
                    at = k;
                    break;
                }
                std::cmp::Ordering::Greater => {}
            }
        }
        if !dup {
            sorted.insert(at, p);
        }
    }
    let mut probes = Vec::with_capacity(2 * sorted.len() + 2);
    match (sorted.first(), sorted.last()) {
        (Some(&lo), Some(&hi)) => {
            probes.push((lo.0.checked_sub(lo.1)?, lo.1));
            probes.push((hi.0.checked_add(hi.1)?, hi.1));
        }
        _ => probes.push((0, 1)),
    }
    for w in sorted.windows(2) {
        probes.push(q_mid(w[0], w[1])?);
    }
    probes.extend(sorted.iter().copied());
    for x in probes {
        if contains(a, x)? != contains(b, x)? {
            return Some(false);
        }
    }
    Some(true)
}

/// A relation in one variable as the set of its solutions (sympy's
/// `as_set` on `x < 3`, `-2 \le x \le 7`, `0 < f(x) < 1`, `|x| < 3`);
/// `None` for anything else.
pub fn relation_as_set(e: &Expr) -> Option<Expr> {
    let rels: Vec<&Expr> = match e {
        Expr::Rel(..) => vec![e],
        Expr::And(v) => v.iter().collect(),
        _ => return None,
    };
    let mut var: Option<&Expr> = None;
    let (mut lo, mut lo_open) = (Expr::negate(inf()), true);
    let (mut hi, mut hi_open) = (inf(), true);
    let mut single = None;
    for r in &rels {
        let Expr::Rel(op, l, rr) = r else {
            return None;
        };
        // The variable side: names only (a function value like f(x) counts).
        let (v, c, op) = if l.only_symbols() || is_abs_of_name(l) {
            (&**l, &**rr, *op)
        } else if rr.only_symbols() || is_abs_of_name(rr) {
            (&**rr, &**l, flip(*op))
        } else {
            return None;
        };
        match var {
            None => var = Some(v),
            Some(w) if w == v => {}
            Some(_) => return None,
        }
        end_of(c)?;
        if is_abs_of_name(v) {
            // |x| < c is (-c, c); only that form.
            if rels.len() != 1 || !matches!(op, RelOp::Lt | RelOp::Le) {
                return None;
            }
            let open = op == RelOp::Lt;
            return Some(Expr::Interval(
                Box::new(Expr::negate(c.clone())),
                Box::new(c.clone()),
                open,
                open,
            ));
        }
        match op {
            RelOp::Lt | RelOp::Le => {
                (hi, hi_open) = tighter((hi, hi_open), (c.clone(), op == RelOp::Lt), true)?
            }
            RelOp::Gt | RelOp::Ge => {
                (lo, lo_open) = tighter((lo, lo_open), (c.clone(), op == RelOp::Gt), false)?
            }
            RelOp::Eq | RelOp::Ne if rels.len() == 1 => single = Some((op, c.clone())),
            _ => return None,
        }
    }
    if let Some((op, c)) = single {
        return Some(match op {
            RelOp::Eq => Expr::Set(vec![c]),
            _ => Expr::Union(vec![
                Expr::Interval(
                    Box::new(Expr::negate(inf())),
                    Box::new(c.clone()),
                    true,
                    true,
                ),
                Expr::Interval(Box::new(c), Box::new(inf()), true, true),
            ]),
        });
    }
    Some(Expr::Interval(Box::new(lo), Box::new(hi), lo_open, hi_open))
}

fn inf() -> Expr {
    Expr::Const(super::expr::Const::Inf)
}

fn is_abs_of_name(e: &Expr) -> bool {
    matches!(e, Expr::Func(n, a) if n == "abs" && a.len() == 1 && a[0].only_symbols())
}

fn flip(op: RelOp) -> RelOp {
    match op {
        RelOp::Lt => RelOp::Gt,
        RelOp::Gt => RelOp::Lt,
        RelOp::Le => RelOp::Ge,
        RelOp::Ge => RelOp::Le,
        o => o,
    }
}

/// The tighter of two bounds (value, open): the smaller for an upper bound,
/// the larger for a lower one; at equal values, open wins.
fn tighter(a: (Expr, bool), b: (Expr, bool), upper: bool) -> Option<(Expr, bool)> {
    use std::cmp::Ordering::*;
    let loosest = if upper { End::PosInf } else { End::NegInf };
    Some(match (end_of(&a.0)?, end_of(&b.0)?) {
        (x, _) if x == loosest => b,
        (_, y) if y == loosest => a,
        (End::At(x), End::At(y)) => match (q_cmp(x, y)?, upper) {
            (Less, true) | (Greater, false) => a,
            (Greater, true) | (Less, false) => b,
            (Equal, _) => (a.0, a.1 || b.1),
        },
        _ => return None,
    })
}
