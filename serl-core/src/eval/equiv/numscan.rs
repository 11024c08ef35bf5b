//! A direct matcher for math_verify's anchored number pattern
//! (`(?:^|\s|=)(?:\*\*)?[currency]?` then a number with optional thousands
//! separators, decimals and percent sign). It gives the regex's matches (a
//! test compares them at every candidate of every fixture text) without
//! the regex engines: the pattern is tried before every number in a text.

use std::sync::LazyLock;

use regex::Regex;

/// A byte range.
type Span = (usize, usize);
/// A number alternative's end, integer span, decimal span and index (1–4).
type NumberParts = (usize, Option<Span>, Option<Span>, u8);

/// A number match: its range and the groups `extract_expr` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberMatch<'t> {
    /// Start of the match (the anchor).
    pub start: usize,
    /// End of the match.
    pub end: usize,
    /// The `integerN` group, if any.
    pub integer: Option<&'t str>,
    /// The `decimalN` group, if any.
    pub decimal: Option<&'t str>,
    /// The `percent` group, if it matched.
    pub percent: Option<&'t str>,
    /// Which alternative matched (1–4), to name the groups.
    pub alternative: u8,
}

const CURRENCY: &str = "$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₭₮₯₰₱₲₳₴₵₶₷₸₺₻₼₾₿";

/// Python's `\d` (Unicode decimal digits).
fn is_digit(c: char) -> bool {
    static ND: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\d$").expect("valid built-in regex"));
    c.is_ascii_digit() || (!c.is_ascii() && ND.is_match(c.encode_utf8(&mut [0; 4])))
}

/// Python's `\s`.
fn is_space(c: char) -> bool {
    static WS: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"^\s$").expect("valid built-in regex"));
    c.is_ascii_whitespace()
        || c == '\u{b}'
        || (!c.is_ascii() && WS.is_match(c.encode_utf8(&mut [0; 4])))
}

fn at(t: &str, k: usize) -> Option<char> {
    t.get(k..).and_then(|s| s.chars().next())
}

/// End of a run of digits starting at `k` (k itself when there is none).
fn digits(t: &str, mut k: usize) -> usize {
    while let Some(c) = at(t, k).filter(|c| is_digit(*c)) {
        k += c.len_utf8();
    }
    k
}

/// `(?:[ ,]\d{3})+` greedy from `k`: the end, if at least one group.
fn thousands(t: &str, mut k: usize) -> Option<usize> {
    let mut groups = 0;
    while let Some(sep) = at(t, k).filter(|c| *c == ' ' || *c == ',') {
        let mut j = k + sep.len_utf8();
        let mut n = 0;
        while n < 3 {
            match at(t, j).filter(|c| is_digit(*c)) {
                Some(c) => {
                    j += c.len_utf8();
                    n += 1;
                }
                None => break,
            }
        }
        if n < 3 {
            break;
        }
        k = j;
        groups += 1;
    }
    (groups > 0).then_some(k)
}

/// The number alternatives at `k`: (end, integer range, decimal range, alternative).
fn number(t: &str, k: usize) -> Option<NumberParts> {
    let neg = if at(t, k) == Some('-') { 1 } else { 0 };
    let d = k + neg;
    // 1: -?[1-9]\d{0,2}(?:[ ,]\d{3})+ (\.\d+)?
    if let Some(first) = at(t, d).filter(|c| ('1'..='9').contains(c)) {
        // Lead of 3, 2 or 1 digits, the longest that works (greedy \d{0,2}).
        let mut ends = vec![d + first.len_utf8()];
        let mut j = ends[0];
        for _ in 0..2 {
            match at(t, j).filter(|c| is_digit(*c)) {
                Some(c) => {
                    j += c.len_utf8();
                    ends.push(j);
                }
                None => break,
            }
        }
        for &lead_end in ends.iter().rev() {
            if let Some(int_end) = thousands(t, lead_end) {
                let mut end = int_end;
                let mut dec = None;
                if at(t, end) == Some('.') {
                    let de = digits(t, end + 1);
                    if de > end + 1 {
                        dec = Some((end, de));
                        end = de;
                    }
                }
                return Some((end, Some((k, int_end)), dec, 1));
            }
        }
    }
    // 2: -?\d+[.,]\d+
    let de = digits(t, d);
    if de > d {
        if let Some(sep) = at(t, de).filter(|c| *c == '.' || *c == ',') {
            let fe = digits(t, de + sep.len_utf8());
            if fe > de + sep.len_utf8() {
                return Some((fe, Some((k, de)), Some((de, fe)), 2));
            }
        }
    }
    // 3: \.\d+ (no sign)
    if at(t, k) == Some('.') {
        let fe = digits(t, k + 1);
        if fe > k + 1 {
            return Some((fe, None, Some((k, fe)), 3));
        }
    }
    // 4: -?\d+
    (de > d).then_some((de, Some((k, de)), None, 4))
}

/// `\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct)` from `k`: its end.
fn percent(t: &str, k: usize) -> Option<usize> {
    let mut j = k;
    while let Some(c) = at(t, j).filter(|c| is_space(*c)) {
        j += c.len_utf8();
    }
    let rest = &t[j..];
    ["%", "Percent", "percent", "Pct", "pct"]
        .iter()
        .find(|p| rest.starts_with(**p))
        .map(|p| j + p.len())
}

/// The rest of the pattern after the anchor, from `k`.
fn after_anchor(t: &str, k: usize) -> Option<(NumberParts, Option<Span>)> {
    let mut k = k;
    if t.get(k..).is_some_and(|s| s.starts_with("**")) {
        k += 2;
    }
    if let Some(c) = at(t, k).filter(|c| CURRENCY.contains(*c)) {
        k += c.len_utf8();
    }
    let (end, int, dec, alt) = number(t, k)?;
    let pct = percent(t, end).map(|p| (end, p));
    Some(((pct.map_or(end, |p| p.1), int, dec, alt), pct))
}

/// The pattern anchored at byte `i`.
pub fn match_at(t: &str, i: usize) -> Option<NumberMatch<'_>> {
    // `^` first, then one whitespace character or `=`.
    let found = if i == 0 { after_anchor(t, 0) } else { None }.or_else(|| {
        let c = at(t, i)?;
        (is_space(c) || c == '=')
            .then(|| after_anchor(t, i + c.len_utf8()))
            .flatten()
    })?;
    let ((end, int, dec, alternative), pct) = found;
    Some(NumberMatch {
        start: i,
        end,
        integer: int.map(|(a, b)| &t[a..b]),
        decimal: dec.map(|(a, b)| &t[a..b]),
        percent: pct.map(|(a, b)| &t[a..b]),
        alternative,
    })
}
