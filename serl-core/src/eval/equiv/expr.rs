//! Mathematical values of the equivalence checker and their comparison, a
//! port of math_verify's `sympy_expr_eq` decision procedure: assignments and
//! equations unwrapped the same way, relations, sets, tuples, intervals and
//! matrices compared element by element, symbols by name, numbers with
//! 6-decimal rounding when a float is involved and exactly otherwise, and
//! symbolic equality decided by evaluation at random points (where sympy
//! calls `simplify`).

use std::borrow::Cow;

use super::num::Num;
use super::realset;

/// Relational operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelOp {
    /// `=`
    Eq,
    /// `\ne`
    Ne,
    /// `<`
    Lt,
    /// `\le`
    Le,
    /// `>`
    Gt,
    /// `\ge`
    Ge,
}

impl RelOp {
    fn flipped(self) -> RelOp {
        match self {
            RelOp::Lt => RelOp::Gt,
            RelOp::Gt => RelOp::Lt,
            RelOp::Le => RelOp::Ge,
            RelOp::Ge => RelOp::Le,
            o => o,
        }
    }
}

/// Named constants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Const {
    /// π
    Pi,
    /// Euler's number
    E,
    /// The imaginary unit
    I,
    /// +∞
    Inf,
}

/// An expression tree.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    /// A number.
    Num(Num),
    /// A free symbol.
    Sym(String),
    /// A constant.
    Const(Const),
    /// Sum.
    Add(Vec<Expr>),
    /// Product.
    Mul(Vec<Expr>),
    /// Power.
    Pow(Box<Expr>, Box<Expr>),
    /// Function application (`sin`, `log`, `factorial`, …).
    Func(String, Vec<Expr>),
    /// `x%`, i.e. `x · 1/100` kept recognisable.
    Pct(Box<Expr>),
    /// A relation.
    Rel(RelOp, Box<Expr>, Box<Expr>),
    /// A chain of relations (`a < b < c`) or several equations.
    And(Vec<Expr>),
    /// An ordered tuple.
    Tuple(Vec<Expr>),
    /// A finite set (also a bare comma list).
    Set(Vec<Expr>),
    /// An interval: start, end, left open, right open.
    Interval(Box<Expr>, Box<Expr>, bool, bool),
    /// A union of sets.
    Union(Vec<Expr>),
    /// A matrix, row-major.
    Matrix(Vec<Vec<Expr>>),
}

/// A complex value of a numeric evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
struct C {
    re: f64,
    im: f64,
}

impl C {
    fn real(re: f64) -> C {
        C { re, im: 0.0 }
    }
    fn add(self, o: C) -> C {
        C {
            re: self.re + o.re,
            im: self.im + o.im,
        }
    }
    fn mul(self, o: C) -> C {
        C {
            re: self.re * o.re - self.im * o.im,
            im: self.re * o.im + self.im * o.re,
        }
    }
    fn abs(self) -> f64 {
        self.re.hypot(self.im)
    }
    fn ln(self) -> C {
        C {
            re: self.abs().ln(),
            im: self.im.atan2(self.re),
        }
    }
    fn exp(self) -> C {
        let r = self.re.exp();
        C {
            re: r * self.im.cos(),
            im: r * self.im.sin(),
        }
    }
    fn pow(self, e: C) -> C {
        if e.im == 0.0 && e.re.fract() == 0.0 && e.re.abs() < 64.0 && self.im == 0.0 {
            return C::real(self.re.powi(e.re as i32));
        }
        if self.re == 0.0 && self.im == 0.0 {
            return if e.re > 0.0 {
                C::real(0.0)
            } else {
                C::real(f64::NAN)
            };
        }
        (self.ln().mul(e)).exp()
    }
    fn is_finite(self) -> bool {
        self.re.is_finite() && self.im.is_finite()
    }
}

impl Expr {
    /// `a - b`.
    pub fn minus(a: Expr, b: Expr) -> Expr {
        Expr::Add(vec![a, Expr::negate(b)])
    }

    /// `-a`.
    pub fn negate(a: Expr) -> Expr {
        match a {
            Expr::Num(n) => Expr::Num(n.neg()),
            a => Expr::Mul(vec![Expr::Num(Num::int(-1)), a]),
        }
    }

    /// `a / b`.
    pub fn divide(a: Expr, b: Expr) -> Expr {
        match (&a, &b) {
            (Expr::Num(x), Expr::Num(y)) if !x.is_float() && !y.is_float() => {
                if let Some(r) = y.recip() {
                    return Expr::Num(x.mul(r));
                }
            }
            _ => {}
        }
        Expr::Mul(vec![
            a,
            Expr::Pow(Box::new(b), Box::new(Expr::Num(Num::int(-1)))),
        ])
    }

    fn is_set_like(&self) -> bool {
        matches!(self, Expr::Tuple(_)) || self.is_set()
    }

    /// A sympy `Set` (not a tuple): finite set, interval, union, difference.
    fn is_set(&self) -> bool {
        match self {
            Expr::Set(_) | Expr::Interval(..) | Expr::Union(_) => true,
            Expr::Func(name, _) => name == "setminus",
            _ => false,
        }
    }

    fn is_relation(&self) -> bool {
        match self {
            Expr::Rel(..) => true,
            Expr::And(v) => !v.is_empty() && v.iter().all(|x| matches!(x, Expr::Rel(..))),
            _ => false,
        }
    }

    fn is_equation(&self) -> bool {
        match self {
            Expr::Rel(RelOp::Eq, ..) => true,
            Expr::And(v) => {
                !v.is_empty() && v.iter().all(|x| matches!(x, Expr::Rel(RelOp::Eq, ..)))
            }
            _ => false,
        }
    }

    pub(super) fn only_symbols(&self) -> bool {
        match self {
            Expr::Sym(_) => true,
            Expr::Mul(v) | Expr::Add(v) => v.iter().all(Expr::only_symbols),
            Expr::Func(_, args) => args.iter().all(Expr::only_symbols),
            _ => false,
        }
    }

    fn is_assignment(&self) -> bool {
        match self {
            Expr::Rel(RelOp::Eq, l, _) => l.only_symbols(),
            Expr::And(v) => {
                self.is_equation()
                    && matches!(v.first(), Some(Expr::Rel(_, l, _)) if l.only_symbols())
            }
            _ => false,
        }
    }

    fn first_relation(&self) -> &Expr {
        match self {
            Expr::And(v) => v.first().map_or(self, |x| x),
            _ => self,
        }
    }

    fn last_relation(&self) -> &Expr {
        match self {
            Expr::And(v) => v.last().map_or(self, Expr::last_relation),
            _ => self,
        }
    }

    fn lhs(&self) -> Option<&Expr> {
        match self {
            Expr::Rel(_, l, _) => Some(l),
            _ => None,
        }
    }

    fn rhs(&self) -> Option<&Expr> {
        match self {
            Expr::Rel(_, _, r) => Some(r),
            _ => None,
        }
    }

    /// Calls `f` on each direct sub-expression.
    fn for_each_child<'a>(&'a self, f: &mut dyn FnMut(&'a Expr)) {
        match self {
            Expr::Num(_) | Expr::Sym(_) | Expr::Const(_) => {}
            Expr::Add(v)
            | Expr::Mul(v)
            | Expr::Func(_, v)
            | Expr::And(v)
            | Expr::Tuple(v)
            | Expr::Set(v)
            | Expr::Union(v) => v.iter().for_each(f),
            Expr::Pow(a, b) | Expr::Rel(_, a, b) | Expr::Interval(a, b, ..) => {
                f(a);
                f(b);
            }
            Expr::Pct(a) => f(a),
            Expr::Matrix(rows) => rows.iter().flatten().for_each(f),
        }
    }

    /// Whether `pred` holds for this expression or any sub-expression.
    fn any_node(&self, pred: &dyn Fn(&Expr) -> bool) -> bool {
        if pred(self) {
            return true;
        }
        let mut found = false;
        self.for_each_child(&mut |c| found = found || c.any_node(pred));
        found
    }

    /// Free symbol names, in order of first occurrence.
    fn symbols<'a>(&'a self, out: &mut Vec<&'a str>) {
        if let Expr::Sym(s) = self
            && !out.contains(&s.as_str())
        {
            out.push(s);
        }
        if let Some((body, var, lo, hi)) = self.big_operator() {
            // The summation index is bound, not free.
            lo.symbols(out);
            hi.symbols(out);
            let mut inner = Vec::new();
            body.symbols(&mut inner);
            for name in inner {
                if name != var && !out.contains(&name) {
                    out.push(name);
                }
            }
            return;
        }
        self.for_each_child(&mut |c| c.symbols(out));
    }

    /// A `\sum` or `\prod` as (body, index name, lower, upper limit).
    fn big_operator(&self) -> Option<(&Expr, &str, &Expr, &Expr)> {
        match self {
            Expr::Func(name, args) if (name == "sum" || name == "prod") && args.len() == 4 => {
                match &args[1] {
                    Expr::Sym(v) => Some((&args[0], v.as_str(), &args[2], &args[3])),
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// Whether a `\sum` or `\prod` has a limit with a free symbol (then
    /// only integer points can evaluate it).
    fn has_symbolic_limits(&self) -> bool {
        self.any_node(&|e| {
            e.big_operator().is_some_and(|(_, _, lo, hi)| {
                let mut v = Vec::new();
                lo.symbols(&mut v);
                hi.symbols(&mut v);
                !v.is_empty()
            })
        })
    }

    /// This expression with every symbol `f` maps replaced.
    pub(super) fn map_symbols(&self, f: &dyn Fn(&str) -> Option<Expr>) -> Expr {
        let all = |v: &[Expr]| v.iter().map(|x| x.map_symbols(f)).collect();
        let bx = |e: &Expr| Box::new(e.map_symbols(f));
        match self {
            Expr::Sym(s) => f(s).unwrap_or_else(|| self.clone()),
            Expr::Num(_) | Expr::Const(_) => self.clone(),
            Expr::Add(v) => Expr::Add(all(v)),
            Expr::Mul(v) => Expr::Mul(all(v)),
            Expr::Func(n, v) => Expr::Func(n.clone(), all(v)),
            Expr::And(v) => Expr::And(all(v)),
            Expr::Tuple(v) => Expr::Tuple(all(v)),
            Expr::Set(v) => Expr::Set(all(v)),
            Expr::Union(v) => Expr::Union(all(v)),
            Expr::Pow(a, b) => Expr::Pow(bx(a), bx(b)),
            Expr::Rel(o, a, b) => Expr::Rel(*o, bx(a), bx(b)),
            Expr::Interval(a, b, l, r) => Expr::Interval(bx(a), bx(b), *l, *r),
            Expr::Pct(a) => Expr::Pct(bx(a)),
            Expr::Matrix(rows) => Expr::Matrix(rows.iter().map(|r| all(r)).collect()),
        }
    }

    fn contains_inf(&self) -> bool {
        self.any_node(&|e| matches!(e, Expr::Const(Const::Inf)))
    }

    /// Whether a float literal occurs anywhere.
    fn has_float(&self) -> bool {
        self.any_node(&|e| matches!(e, Expr::Num(n) if n.is_float()))
    }

    /// Exact value when the expression is rational arithmetic on numbers.
    pub fn exact(&self) -> Option<Num> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Add(v) => v
                .iter()
                .try_fold(Num::int(0), |acc, x| Some(acc.add(x.exact()?))),
            Expr::Mul(v) => v
                .iter()
                .try_fold(Num::int(1), |acc, x| Some(acc.mul(x.exact()?))),
            Expr::Pow(b, e) => match e.exact()? {
                Num::Rat(k, 1) => b.exact()?.powi(k),
                // √(p/q) of perfect squares evaluates, as sympy does.
                Num::Rat(1, 2) => match b.exact()? {
                    Num::Rat(n, d) if n >= 0 => {
                        let (rn, rd) = (isqrt(n)?, isqrt(d)?);
                        Some(Num::Rat(rn, rd))
                    }
                    _ => None,
                },
                _ => None,
            },
            Expr::Pct(a) => Some(a.exact()?.mul(Num::Rat(1, 100))),
            Expr::Func(name, args) if (name == "max" || name == "min") => {
                let mut best: Option<Num> = None;
                for a in args {
                    let v = a.exact()?;
                    best = Some(match best {
                        None => v,
                        Some(b) => {
                            let take = if name == "max" {
                                v.to_f64() > b.to_f64()
                            } else {
                                v.to_f64() < b.to_f64()
                            };
                            if take { v } else { b }
                        }
                    });
                }
                best
            }
            Expr::Func(name, _) => {
                // A finite sum or product of exact terms, as sympy's doit.
                let (body, var, lo, hi) = self.big_operator()?;
                let (Num::Rat(lo, 1), Num::Rat(hi, 1)) = (lo.exact()?, hi.exact()?) else {
                    return None;
                };
                if hi - lo > 1000 {
                    return None;
                }
                let sum = name == "sum";
                let mut acc = Num::int(if sum { 0 } else { 1 });
                for k in lo..=hi {
                    let term = body
                        .map_symbols(&|s| (s == var).then(|| Expr::Num(Num::int(k))))
                        .exact()?;
                    acc = if sum { acc.add(term) } else { acc.mul(term) };
                }
                Some(acc)
            }
            _ => None,
        }
    }

    /// Numeric value with symbols bound by `env`.
    fn eval(&self, env: &dyn Fn(&str) -> f64) -> Option<C> {
        let v = match self {
            Expr::Num(n) => C::real(n.to_f64()),
            Expr::Sym(s) => C::real(env(s)),
            Expr::Const(Const::Pi) => C::real(std::f64::consts::PI),
            Expr::Const(Const::E) => C::real(std::f64::consts::E),
            Expr::Const(Const::I) => C { re: 0.0, im: 1.0 },
            Expr::Const(Const::Inf) => return None,
            Expr::Add(v) => v
                .iter()
                .try_fold(C::real(0.0), |a, x| Some(a.add(x.eval(env)?)))?,
            Expr::Mul(v) => v
                .iter()
                .try_fold(C::real(1.0), |a, x| Some(a.mul(x.eval(env)?)))?,
            Expr::Pow(b, e) => b.eval(env)?.pow(e.eval(env)?),
            Expr::Pct(a) => a.eval(env)?.mul(C::real(0.01)),
            Expr::Func(name, args) if (name == "sum" || name == "prod") => {
                let (body, var, lo, hi) = self.big_operator()?;
                let sum = name == "sum";
                if !sum && self.has_symbolic_limits() {
                    // sympy leaves such a product unevaluated (not n!).
                    return None;
                }
                let (lo, hi) = (lo.eval(env)?, hi.eval(env)?);
                if lo.im != 0.0 || hi.im != 0.0 || lo.re.fract() != 0.0 || hi.re.fract() != 0.0 {
                    return None;
                }
                if hi.re - lo.re > 100_000.0 {
                    return None;
                }
                let mut acc = C::real(if sum { 0.0 } else { 1.0 });
                let mut k = lo.re;
                while k <= hi.re {
                    let inner = |s: &str| if s == var { k } else { env(s) };
                    let t = body.eval(&inner)?;
                    acc = if sum { acc.add(t) } else { acc.mul(t) };
                    k += 1.0;
                }
                acc
            }
            Expr::Func(name, args) if (name == "max" || name == "min") => {
                let mut best: Option<f64> = None;
                for a in args {
                    let v = a.eval(env)?;
                    if v.im != 0.0 {
                        return None;
                    }
                    best = Some(match best {
                        None => v.re,
                        Some(b) if name == "max" => b.max(v.re),
                        Some(b) => b.min(v.re),
                    });
                }
                C::real(best?)
            }
            Expr::Func(name, args) => {
                let x = args.first()?.eval(env)?;
                let real = |f: fn(f64) -> f64| (x.im == 0.0).then(|| C::real(f(x.re)));
                match name.as_str() {
                    "sin" => real(f64::sin)?,
                    "cos" => real(f64::cos)?,
                    "tan" => real(f64::tan)?,
                    "cot" => real(|t| 1.0 / t.tan())?,
                    "sec" => real(|t| 1.0 / t.cos())?,
                    "csc" => real(|t| 1.0 / t.sin())?,
                    "arcsin" => real(f64::asin)?,
                    "arccos" => real(f64::acos)?,
                    "arctan" => real(f64::atan)?,
                    "exp" => x.exp(),
                    "ln" => x.ln(),
                    "log" => match args.get(1) {
                        Some(base) => {
                            let b = base.eval(env)?.ln();
                            let l = x.ln();
                            if b.im != 0.0 || l.im != 0.0 {
                                return None;
                            }
                            C::real(l.re / b.re)
                        }
                        None => x.ln(),
                    },
                    "abs" => C::real(x.abs()),
                    "factorial" => {
                        if x.im != 0.0 || x.re < 0.0 || x.re.fract() != 0.0 || x.re > 170.0 {
                            return None;
                        }
                        C::real((1..=x.re as u64).map(|k| k as f64).product())
                    }
                    "floor" => real(f64::floor)?,
                    "ceil" => real(f64::ceil)?,
                    _ => return None,
                }
            }
            _ => return None,
        };
        v.is_finite().then_some(v)
    }

    fn is_atomic_number(&self) -> Option<Num> {
        match self {
            Expr::Num(n) => Some(*n),
            Expr::Pct(a) => match **a {
                Expr::Num(n) => Some(n),
                _ => None,
            },
            _ => None,
        }
    }

    /// `±∞` as a sign, for comparing infinite endpoints.
    pub(super) fn inf_sign(&self) -> Option<i32> {
        match self {
            Expr::Const(Const::Inf) => Some(1),
            Expr::Mul(v) if v.len() == 2 => match (&v[0], &v[1]) {
                (Expr::Num(n), Expr::Const(Const::Inf)) if n.to_f64() < 0.0 => Some(-1),
                (Expr::Num(n), Expr::Const(Const::Inf)) if n.to_f64() > 0.0 => Some(1),
                _ => None,
            },
            _ => None,
        }
    }
}

/// Symbolic equality of two scalar expressions: equal values at several
/// random points (Schwartz–Zippel), with a relative tolerance of 1e-9.
fn numerically_identical(a: &Expr, b: &Expr) -> bool {
    if a.contains_inf() || b.contains_inf() {
        return match (a.inf_sign(), b.inf_sign()) {
            (Some(x), Some(y)) => x == y,
            _ => false,
        };
    }
    let mut syms: Vec<&str> = Vec::new();
    a.symbols(&mut syms);
    b.symbols(&mut syms);
    // With a float literal involved, sympy's simplify leaves a non-zero Float
    // residue unless the values agree exactly (3840/289 vs 3840/289.0).
    let tolerance = if a.has_float() || b.has_float() {
        0.0
    } else {
        1e-9
    };
    // A sum up to `n` is only defined at integer `n`: sample integers then.
    let integers = a.has_symbolic_limits() || b.has_symbolic_limits();
    let points: &[f64] = if syms.is_empty() {
        &[0.0]
    } else if integers {
        &[0.0, 1.0, 2.0, 3.0]
    } else {
        &[0.0, 1.0, 2.0]
    };
    let mut any = false;
    for &k in points {
        let env = |s: &str| {
            let i = syms.iter().position(|x| *x == s).unwrap_or(0) as f64;
            if integers {
                return 3.0 + 4.0 * i + 3.0 * k;
            }
            // Irrational-ish, distinct per symbol and per point.
            0.5 + ((i + 1.0) * 0.7548776662466927 + k * 0.5698402909980532).fract() * 1.3
        };
        match (a.eval(&env), b.eval(&env)) {
            (Some(x), Some(y)) => {
                let d = x.add(y.mul(C::real(-1.0))).abs();
                if d > tolerance * x.abs().max(y.abs()).max(1.0) {
                    return false;
                }
                any = true;
            }
            _ => return false,
        }
    }
    any
}

/// math_verify's `sympy_numeric_eq` for scalars: with a float on one side,
/// both sides rounded to 6 decimals (an integer stays an integer, so `7` and
/// `7.0000001` differ while `\sqrt{2}` and `1.41421356` agree); otherwise
/// exact values.
fn numeric_eq(a: &Expr, b: &Expr) -> bool {
    let (na, nb) = (a.is_atomic_number(), b.is_atomic_number());
    if na.is_some() || nb.is_some() {
        let float_involved = na.is_some_and(Num::is_float) || nb.is_some_and(Num::is_float);
        if float_involved {
            return matches!((rounded(a), rounded(b)), (Some(x), Some(y)) if x == y);
        }
        // sympy's `doit` only yields a Number for rational arithmetic on
        // numbers: 50·√10 stays symbolic and is never equal to 158.113883.
        let (Some(x), Some(y)) = (a.exact(), b.exact()) else {
            return false;
        };
        return exact_number_eq(x, y);
    }
    false
}

/// A value as sympy's `round(6)` leaves it: integers exact, everything else
/// a float rounded to 6 decimals; `None` where it has no real value.
#[derive(Debug, PartialEq)]
enum Rounded {
    Int(i128),
    Float(f64),
}

fn rounded(e: &Expr) -> Option<Rounded> {
    match e.exact() {
        Some(Num::Rat(n, 1)) => Some(Rounded::Int(n)),
        Some(n) => Some(Rounded::Float(n.round_to(6))),
        None => {
            let v = e.eval(&|_| f64::NAN)?;
            (v.im == 0.0).then(|| Rounded::Float(Num::Float(v.re).round_to(6)))
        }
    }
}

/// sympy's `==` between two Numbers: a Rational equals a Float only when the
/// float holds exactly that value (3840/289 is not 3840/289.0).
fn exact_number_eq(x: Num, y: Num) -> bool {
    match (x, y) {
        (Num::Rat(..), Num::Rat(..)) => x == y,
        (Num::Float(a), Num::Float(b)) => a == b,
        (Num::Rat(n, d), Num::Float(f)) | (Num::Float(f), Num::Rat(n, d)) => {
            d > 0
                && (d & (d - 1)) == 0
                && n.unsigned_abs() < (1u128 << 53)
                && (n as f64) / (d as f64) == f
        }
    }
}

/// math_verify's `sympy_expr_eq` (strict mode).
pub fn expr_eq(gold: &Expr, pred: &Expr) -> bool {
    // Fast path for the common case of two plain numbers (no relation, set
    // or symbol handling applies): the same decision without cloning.
    if let (Some(_), Some(_)) = (gold.is_atomic_number(), pred.is_atomic_number()) {
        // Then sympy's `simplify(a - b) == 0`: exact values (8 and 8.0).
        return gold == pred
            || numeric_eq(gold, pred)
            || matches!((gold.exact(), pred.exact()), (Some(x), Some(y)) if exact_number_eq(x, y));
    }
    // Borrowed until a rule rewrites a side (most comparisons rewrite none).
    let mut gold: Cow<'_, Expr> = Cow::Borrowed(gold);
    let mut pred: Cow<'_, Expr> = Cow::Borrowed(pred);
    let g_assign = gold.is_assignment();
    let p_assign = pred.is_assignment();
    let g_eqn = gold.is_equation();
    let p_eqn = pred.is_equation();
    let truncate = |e: &Expr| -> Option<Expr> {
        let l = e.first_relation().lhs()?.clone();
        let r = e.last_relation().rhs()?.clone();
        Some(Expr::Rel(RelOp::Eq, Box::new(l), Box::new(r)))
    };
    if g_assign && let Some(t) = truncate(&gold) {
        gold = Cow::Owned(t);
    }
    if p_assign && let Some(t) = truncate(&pred) {
        pred = Cow::Owned(t);
    }
    if p_eqn && !g_eqn {
        if let Some(r) = pred.last_relation().rhs() {
            pred = Cow::Owned(r.clone());
        }
    } else if g_assign
        && !p_eqn
        && let Some(r) = gold.last_relation().rhs()
    {
        gold = Cow::Owned(r.clone());
    }
    // math_verify 0.8: a relation against a set is compared as the set it
    // describes (`-2 \le x \le 7` and `[-2, 7]`).
    if gold.is_relation()
        && pred.is_set()
        && let Some(s) = realset::relation_as_set(&gold)
    {
        gold = Cow::Owned(s);
    }
    let (gold, pred): (&Expr, &Expr) = (&gold, &pred);
    if gold == pred {
        return true;
    }
    if gold.is_relation() && pred.is_relation() {
        return compare_relational(gold, pred);
    }
    if gold.is_set_like() || pred.is_set_like() {
        return compare_sets(gold, pred);
    }
    if matches!(gold, Expr::Sym(_)) || matches!(pred, Expr::Sym(_)) {
        return compare_symbols(gold, pred);
    }
    // Sums and multiples of matrices compare by value (sympy's doit).
    if let (Some(a), Some(b)) = (matrix_value(gold), matrix_value(pred))
        && (!matches!(gold, Expr::Matrix(_)) || !matches!(pred, Expr::Matrix(_)))
    {
        return expr_eq(&Expr::Matrix(a), &Expr::Matrix(b));
    }
    if let (Expr::Matrix(a), Expr::Matrix(b)) = (gold, pred) {
        return a.len() == b.len()
            && a.iter().zip(b).all(|(ra, rb)| {
                ra.len() == rb.len() && ra.iter().zip(rb).all(|(x, y)| expr_eq(x, y))
            });
    }
    if matches!(gold, Expr::Matrix(_))
        || matches!(pred, Expr::Matrix(_))
        || gold.is_relation()
        || pred.is_relation()
    {
        return false;
    }
    numeric_eq(gold, pred) || numerically_identical(gold, pred)
}

/// The entries of a matrix, of a sum of matrices of one shape, or of a
/// number times a matrix.
fn matrix_value(e: &Expr) -> Option<Vec<Vec<Expr>>> {
    match e {
        Expr::Matrix(rows) => Some(rows.clone()),
        Expr::Add(terms) => {
            let mut acc = matrix_value(terms.first()?)?;
            for t in &terms[1..] {
                let m = matrix_value(t)?;
                if m.len() != acc.len() || m.iter().zip(&acc).any(|(x, y)| x.len() != y.len()) {
                    return None;
                }
                for (ra, rm) in acc.iter_mut().zip(m) {
                    for (x, y) in ra.iter_mut().zip(rm) {
                        *x = Expr::Add(vec![x.clone(), y]);
                    }
                }
            }
            Some(acc)
        }
        Expr::Mul(factors) if factors.len() == 2 => {
            let (k, m) = match (&factors[0], &factors[1]) {
                (k, Expr::Matrix(_)) if k.exact().is_some() => (k, &factors[1]),
                (Expr::Matrix(_), k) if k.exact().is_some() => (k, &factors[0]),
                _ => return None,
            };
            let rows = matrix_value(m)?;
            Some(
                rows.into_iter()
                    .map(|r| {
                        r.into_iter()
                            .map(|x| Expr::Mul(vec![k.clone(), x]))
                            .collect()
                    })
                    .collect(),
            )
        }
        _ => None,
    }
}

fn compare_relational(gold: &Expr, pred: &Expr) -> bool {
    match (gold, pred) {
        (Expr::And(g), Expr::And(p)) => {
            g.len() == p.len() && g.iter().zip(p).all(|(a, b)| compare_relational(a, b))
        }
        (Expr::Rel(go, gl, gr), Expr::Rel(po, pl, pr)) => {
            let gd = Expr::minus((**gl).clone(), (**gr).clone());
            if go == po && expr_eq(&gd, &Expr::minus((**pl).clone(), (**pr).clone())) {
                return true;
            }
            if go.flipped() == *po
                && *go != *po
                && expr_eq(&gd, &Expr::minus((**pr).clone(), (**pl).clone()))
            {
                return true;
            }
            // sympy's solve-and-compare: an equation and its multiple or its
            // negation have the same solutions.
            if *go == RelOp::Eq && *po == RelOp::Eq {
                let pd = Expr::minus((**pl).clone(), (**pr).clone());
                return proportional(&gd, &pd);
            }
            false
        }
        _ => false,
    }
}

/// Whether `a = k·b` for a non-zero constant `k` (same solution set).
fn proportional(a: &Expr, b: &Expr) -> bool {
    let mut syms: Vec<&str> = Vec::new();
    a.symbols(&mut syms);
    b.symbols(&mut syms);
    if syms.is_empty() {
        return false;
    }
    let env0 = |_: &str| 1.234_567;
    let (Some(x), Some(y)) = (a.eval(&env0), b.eval(&env0)) else {
        return false;
    };
    if y.abs() < 1e-12 {
        return false;
    }
    let k = x.re / y.re;
    k != 0.0
        && k.is_finite()
        && numerically_identical(a, &Expr::Mul(vec![Expr::Num(Num::Float(k)), b.clone()]))
}

fn set_items(e: &Expr) -> Option<&[Expr]> {
    match e {
        Expr::Set(v) | Expr::Tuple(v) => Some(v),
        _ => None,
    }
}

fn compare_sets(gold: &Expr, pred: &Expr) -> bool {
    let wrap = |e: &Expr| {
        if e.is_set_like() {
            e.clone()
        } else {
            Expr::Set(vec![e.clone()])
        }
    };
    let (a, b) = (wrap(gold), wrap(pred));
    if let (Expr::Interval(a0, a1, al, ar), Expr::Interval(b0, b1, bl, br)) = (&a, &b) {
        return al == bl && ar == br && endpoint_eq(a0, b0) && endpoint_eq(a1, b1);
    }
    if a == b {
        return true;
    }
    if a.is_set() && b.is_set() && realset::same_set(&a, &b) == Some(true) {
        return true;
    }
    if let (Expr::Union(x), Expr::Union(y)) = (&a, &b) {
        return x.len() == y.len() && x.iter().zip(y).all(|(p, q)| compare_sets(p, q));
    }
    if let (Some(x), Some(y)) = (set_items(&a), set_items(&b)) {
        if x.len() != y.len() {
            return false;
        }
        let unordered = matches!(a, Expr::Set(_)) && matches!(b, Expr::Set(_));
        if unordered {
            // Sets: every element matched once, whatever the order.
            let mut used = vec![false; y.len()];
            return x.iter().all(|g| {
                (0..y.len()).any(|j| {
                    if !used[j] && expr_eq(g, &y[j]) {
                        used[j] = true;
                        true
                    } else {
                        false
                    }
                })
            });
        }
        return x.iter().zip(y).all(|(g, p)| expr_eq(g, p));
    }
    let as_pair = |e: &Expr| match e {
        Expr::Interval(s, t, true, true) => Some(Expr::Tuple(vec![(**s).clone(), (**t).clone()])),
        _ => None,
    };
    if let (Some(t), Some(y)) = (as_pair(&a), set_items(&b))
        && y.len() == 2
    {
        return compare_sets(&t, &b);
    }
    if let (Some(x), Some(t)) = (set_items(&a), as_pair(&b))
        && x.len() == 2
    {
        return compare_sets(&a, &t);
    }
    false
}

fn endpoint_eq(a: &Expr, b: &Expr) -> bool {
    match (a.inf_sign(), b.inf_sign()) {
        (Some(x), Some(y)) => x == y,
        (None, None) => expr_eq(a, b),
        _ => false,
    }
}

fn compare_symbols(gold: &Expr, pred: &Expr) -> bool {
    let concat = |v: &[Expr]| -> Option<String> {
        v.iter()
            .map(|x| match x {
                Expr::Sym(s) => Some(symbol_name(s).to_string()),
                Expr::Const(Const::E) => Some("e".into()),
                _ => None,
            })
            .collect()
    };
    match (gold, pred) {
        (Expr::Sym(s), Expr::Const(Const::E)) | (Expr::Const(Const::E), Expr::Sym(s)) => {
            symbol_name(s).eq_ignore_ascii_case("e")
        }
        (Expr::Sym(s), Expr::Mul(v)) | (Expr::Mul(v), Expr::Sym(s)) => {
            concat(v).is_some_and(|c| c.to_lowercase() == symbol_name(s).to_lowercase())
        }
        // sympy's last resort, `str(gold) == str(pred)`: `\text{17}` is
        // the symbol "17" and prints as the integer 17 does.
        (Expr::Sym(s), Expr::Num(Num::Rat(n, 1))) | (Expr::Num(Num::Rat(n, 1)), Expr::Sym(s)) => {
            symbol_name(s) == n.to_string()
        }
        (Expr::Sym(g), Expr::Sym(p)) => {
            let (g, p) = (symbol_name(g), symbol_name(p));
            let norm = |s: &str| {
                if s.chars().count() > 1 {
                    s.to_lowercase()
                } else {
                    s.to_string()
                }
            };
            norm(g) == norm(p)
        }
        _ => false,
    }
}

/// Marks a symbol parsed in complex mode (see [`Expr::complex_mode`]).
pub(super) const COMPLEX_MARK: char = '\u{1}';

/// A symbol's name without the complex-mode mark: sympy compares names
/// there, whatever the assumptions.
fn symbol_name(s: &str) -> &str {
    s.strip_suffix(COMPLEX_MARK).unwrap_or(s)
}

impl Expr {
    /// The expression as latex2sympy builds it from a text it treats as
    /// complex (one with a standalone `i`, `\\det`, `\\mathbb{C}`, …): the
    /// symbols lose their `real` assumption, so they are different symbols
    /// from those of a real text (`x` and `x + i - i` are not equal to
    /// math_verify). `i` itself stays a symbol (`i^2` is not -1).
    pub(super) fn complex_mode(&self) -> Expr {
        self.map_symbols(&|s| Some(Expr::Sym(format!("{s}{COMPLEX_MARK}"))))
    }
}

/// The integer square root of a perfect square.
fn isqrt(n: i128) -> Option<i128> {
    if n < 0 {
        return None;
    }
    let r = (n as f64).sqrt().round() as i128;
    (r.checked_mul(r) == Some(n)).then_some(r)
}
