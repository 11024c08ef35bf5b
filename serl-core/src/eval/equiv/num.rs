//! Numbers of the equivalence checker: exact rationals where the arithmetic
//! stays in `i128`, otherwise (and for decimal literals, like sympy's
//! `Float`) floating point.

/// An exact rational or a float.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// Numerator and positive denominator, in lowest terms.
    Rat(i128, i128),
    /// A decimal literal or an inexact result.
    Float(f64),
}

fn gcd(mut a: i128, mut b: i128) -> i128 {
    a = a.abs();
    b = b.abs();
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

impl Num {
    /// An integer.
    pub fn int(n: i128) -> Self {
        Num::Rat(n, 1)
    }

    /// `n / d` in lowest terms; `None` for a zero denominator.
    pub fn rat(n: i128, d: i128) -> Option<Self> {
        if d == 0 {
            return None;
        }
        let g = gcd(n, d).max(1);
        let (n, d) = (n / g, d / g);
        Some(if d < 0 {
            Num::Rat(n.checked_neg()?, d.checked_neg()?)
        } else {
            Num::Rat(n, d)
        })
    }

    /// The value as `f64`.
    pub fn to_f64(self) -> f64 {
        match self {
            Num::Rat(n, d) => n as f64 / d as f64,
            Num::Float(x) => x,
        }
    }

    /// Whether this is a float (a sympy `Float`).
    pub fn is_float(self) -> bool {
        matches!(self, Num::Float(_))
    }

    /// Whether this is zero.
    pub fn is_zero(self) -> bool {
        self.to_f64() == 0.0
    }

    /// Parses a decimal literal: integers exactly, numbers with a fraction
    /// part as floats (`"0.5"` is a sympy Float).
    pub fn parse_decimal(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.is_empty() {
            return None;
        }
        if s.bytes().all(|b| b.is_ascii_digit())
            || (s.starts_with('-') && s.len() > 1 && s[1..].bytes().all(|b| b.is_ascii_digit()))
        {
            return match s.parse::<i128>() {
                Ok(n) => Some(Num::int(n)),
                Err(_) => s.parse::<f64>().ok().map(Num::Float),
            };
        }
        let ok = s.bytes().all(|b| {
            b.is_ascii_digit() || b == b'.' || b == b'-' || b == b'e' || b == b'E' || b == b'+'
        });
        if ok {
            s.parse::<f64>()
                .ok()
                .filter(|x| x.is_finite())
                .map(Num::Float)
        } else {
            None
        }
    }

    fn both_rat(a: Num, b: Num) -> Option<(i128, i128, i128, i128)> {
        match (a, b) {
            (Num::Rat(an, ad), Num::Rat(bn, bd)) => Some((an, ad, bn, bd)),
            _ => None,
        }
    }

    /// Sum.
    pub fn add(self, o: Num) -> Num {
        Self::both_rat(self, o)
            .and_then(|(an, ad, bn, bd)| {
                Num::rat(
                    an.checked_mul(bd)?.checked_add(bn.checked_mul(ad)?)?,
                    ad.checked_mul(bd)?,
                )
            })
            .unwrap_or(Num::Float(self.to_f64() + o.to_f64()))
    }

    /// Product.
    pub fn mul(self, o: Num) -> Num {
        Self::both_rat(self, o)
            .and_then(|(an, ad, bn, bd)| Num::rat(an.checked_mul(bn)?, ad.checked_mul(bd)?))
            .unwrap_or(Num::Float(self.to_f64() * o.to_f64()))
    }

    /// Negation.
    pub fn neg(self) -> Num {
        match self {
            Num::Rat(n, d) => n
                .checked_neg()
                .map_or(Num::Float(-(n as f64) / d as f64), |n| Num::Rat(n, d)),
            Num::Float(x) => Num::Float(-x),
        }
    }

    /// Reciprocal; `None` for zero.
    pub fn recip(self) -> Option<Num> {
        match self {
            Num::Rat(n, d) => Num::rat(d, n),
            Num::Float(x) if x != 0.0 => Some(Num::Float(1.0 / x)),
            Num::Float(_) => None,
        }
    }

    /// Integer power when exact, else `None`.
    pub fn powi(self, e: i128) -> Option<Num> {
        if e.unsigned_abs() > 4096 {
            return None;
        }
        let base = if e < 0 { self.recip()? } else { self };
        let mut acc = Num::int(1);
        for _ in 0..e.unsigned_abs() {
            acc = acc.mul(base);
            if let Num::Float(x) = acc
                && !x.is_finite()
            {
                return None;
            }
        }
        Some(acc)
    }

    /// Rounded to `digits` decimals (sympy `round`), as `f64`.
    pub fn round_to(self, digits: i32) -> f64 {
        let scale = 10f64.powi(digits);
        (self.to_f64() * scale).round() / scale
    }
}
