//! Final-answer extraction and normalisation, ported from the official SeRL
//! evaluation code (`evaluation/parser.py`: `extract_answer(…, "math")` and
//! `strip_string`). Every quirk of the reference is kept on purpose, because
//! the string-majority reward compares these normalised strings; the vectors
//! in `tests/fixtures/extract.jsonl` pin them down.

use std::sync::LazyLock;

use regex::Regex;

use super::py;

/// Extracts the final answer of a model response and normalises it once,
/// exactly like the reference's `extract_answer(response, "math")`.
///
/// Order of precedence: the Minerva pattern `final answer is $…$. I hope`,
/// then the text after the last `boxed` (a brace-balanced group, or the text
/// up to the first `$`), then `he answer is`, `final answer is`, `答案是`, and
/// finally the last number in the comma-stripped text.
pub fn extract_answer(response: &str) -> String {
    let text: std::borrow::Cow<str> = if response.contains("ки") {
        response.replace("ки", "").into()
    } else {
        response.into()
    };
    let pred: String = if text.contains("final answer is $") && text.contains("$. I hope") {
        let tail = text.split_once("final answer is $").map_or("", |(_, t)| t);
        py::strip(tail.split_once("$. I hope").map_or(tail, |(h, _)| h)).to_string()
    } else if text.contains("boxed") {
        let ans = text.rsplit("boxed").next().unwrap_or("");
        if ans.is_empty() {
            return String::new();
        }
        boxed_group(ans)
    } else if let Some(tail) = last_after(&text, "he answer is") {
        py::strip(tail).to_string()
    } else if let Some(tail) = last_after(&text, "final answer is") {
        py::strip(tail).to_string()
    } else if let Some((_, tail)) = text.split_once("答案是") {
        // Python: split("答案是")[1] — the text up to the next occurrence.
        let tail = tail.split("答案是").next().unwrap_or("");
        let tail = py::strip(tail);
        py::strip(tail.split("\n\n").next().unwrap_or("")).to_string()
    } else {
        last_number(&text.replace(',', "")).unwrap_or_default()
    };

    let mut pred = remove_newline_runs(&pred);
    if pred.starts_with(':') {
        pred.remove(0);
    }
    if pred.ends_with('.') {
        pred.pop();
    }
    if pred.ends_with('/') {
        pred.pop();
    }
    strip_string(&pred)
}

/// The text after the last occurrence of `pat`, if `pat` occurs.
fn last_after<'a>(text: &'a str, pat: &str) -> Option<&'a str> {
    text.rfind(pat).map(|i| &text[i + pat.len()..])
}

/// The content of the group that follows `boxed`: brace-balanced when it
/// starts with `{` (an unclosed brace takes the rest), else the text up to
/// the first `$`, stripped (`\boxed 5$` gives `5`, `\boxed {5}` gives `{5}`).
fn boxed_group(ans: &str) -> String {
    if let Some(rest) = ans.strip_prefix('{') {
        let mut depth = 1usize;
        let mut out = String::new();
        for c in rest.chars() {
            match c {
                '{' => depth += 1,
                '}' => {
                    depth -= 1;
                    if depth == 0 {
                        break;
                    }
                }
                _ => {}
            }
            out.push(c);
        }
        out
    } else {
        py::strip(ans.split('$').next().unwrap_or("")).to_string()
    }
}

/// The last match of Python's `-?\d*\.?\d+` (Unicode digits).
fn last_number(text: &str) -> Option<String> {
    static NUM: LazyLock<Regex> = LazyLock::new(|| re(r"-?\d*\.?\d+"));
    NUM.find_iter(text).last().map(|m| m.as_str().to_string())
}

/// Python `re.sub(r"\n\s*", "", s)`.
fn remove_newline_runs(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\n' {
            while chars.peek().is_some_and(|&n| py::is_space(n)) {
                chars.next();
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn re(pattern: &str) -> Regex {
    // The patterns are literals of this module; a failure is a programming error
    // caught by every test that touches extraction.
    Regex::new(pattern).expect("valid built-in regex")
}

// ─── strip_string ──────────────────────────────────────────────────────────

/// Unit words the reference removes as whole tokens (MathQA's list, with a
/// plural `s` appended to each afterwards). They are live regular expressions
/// in the reference: `.` matches any character (`"a ."` removes `"a x"`).
/// Single letters such as `a`, `c`, `d`, `g`, `h`, `l`, `m`, `o`, `s`, `t`
/// are on it, so `\frac{a}{b}` becomes `\frac{}{b}`.
const UNIT_TEXTS: [&str; 132] = [
    "east",
    "degree",
    "mph",
    "kmph",
    "ft",
    "m sqaure",
    " m east",
    "sq m",
    "deg",
    "mile",
    "q .",
    "monkey",
    "prime",
    "ratio",
    "profit of rs",
    "rd",
    "o",
    "gm",
    "p . m",
    "lb",
    "tile",
    "per",
    "dm",
    "lt",
    "gain",
    "ab",
    "way",
    "west",
    "a .",
    "b .",
    "c .",
    "d .",
    "e .",
    "f .",
    "g .",
    "h .",
    "t",
    "a",
    "h",
    "no change",
    "men",
    "soldier",
    "pie",
    "bc",
    "excess",
    "st",
    "inches",
    "noon",
    "percent",
    "by",
    "gal",
    "kmh",
    "c",
    "acre",
    "rise",
    "a . m",
    "th",
    "π r 2",
    "sq",
    "mark",
    "l",
    "toy",
    "coin",
    "sq . m",
    "gallon",
    "° f",
    "profit",
    "minw",
    "yr",
    "women",
    "feet",
    "am",
    "pm",
    "hr",
    "cu cm",
    "square",
    "v â € ™",
    "are",
    "rupee",
    "rounds",
    "cubic",
    "cc",
    "mtr",
    "s",
    "ohm",
    "number",
    "kmph",
    "day",
    "hour",
    "minute",
    "min",
    "second",
    "man",
    "woman",
    "sec",
    "cube",
    "mt",
    "sq inch",
    "mp",
    "∏ cm ³",
    "hectare",
    "more",
    "sec",
    "unit",
    "cu . m",
    "cm 2",
    "rs .",
    "rs",
    "kg",
    "g",
    "month",
    "km",
    "m",
    "cm",
    "mm",
    "apple",
    "liter",
    "loss",
    "yard",
    "pure",
    "year",
    "increase",
    "decrease",
    "d",
    "less",
    "Surface",
    "litre",
    "pi sq m",
    "s .",
    "metre",
    "meter",
    "inch",
];

/// One unit pattern: its characters (`None` = the regex `.`) and the
/// characters a string must contain for the pattern to possibly match.
struct UnitPattern {
    chars: Vec<Option<char>>,
    ascii_mask: u128,
    needs_non_ascii: bool,
}

static UNIT_PATTERNS: LazyLock<Vec<UnitPattern>> = LazyLock::new(|| {
    let plurals = UNIT_TEXTS.iter().map(|u| format!("{u}s"));
    UNIT_TEXTS
        .iter()
        .map(|u| u.to_string())
        .chain(plurals)
        .map(|u| {
            let chars: Vec<Option<char>> = u
                .chars()
                .map(|c| if c == '.' { None } else { Some(c) })
                .collect();
            let mut ascii_mask = 0u128;
            let mut needs_non_ascii = false;
            for c in chars.iter().flatten() {
                if c.is_ascii() {
                    ascii_mask |= 1u128 << (*c as u32);
                } else {
                    needs_non_ascii = true;
                }
            }
            UnitPattern {
                chars,
                ascii_mask,
                needs_non_ascii,
            }
        })
        .collect()
});

/// Python `re.sub(r"(^|\W)" + unit + r"($|\W)", r"\1\2", s)`: removes every
/// whole-token occurrence of `unit`, scanning left to right; the delimiter
/// after one occurrence is consumed, so it cannot start the next one.
/// `starts` lists, in increasing order, the positions where the unit's first
/// character occurs (its only possible starts).
fn remove_unit(s: &[char], unit: &UnitPattern, starts: &[u32]) -> Option<Vec<char>> {
    let n = s.len();
    let u = &unit.chars;
    let unit_at = |p: usize| -> bool {
        p + u.len() <= n
            && u.iter().zip(&s[p..p + u.len()]).all(|(pc, sc)| match pc {
                Some(c) => c == sc,
                None => *sc != '\n',
            })
    };
    let mut spans: Vec<(usize, usize)> = Vec::new(); // (unit start, match end)
    let mut last_end = 0usize;
    for &us in starts {
        let us = us as usize;
        // The prefix group: `^` at 0, else one `\W` character not yet consumed.
        let prefix_ok =
            (us == 0 && spans.is_empty()) || (us >= 1 && us > last_end && !py::is_word(s[us - 1]));
        if !prefix_ok || !unit_at(us) {
            continue;
        }
        let e = us + u.len();
        let end = if e == n {
            e
        } else if !py::is_word(s[e]) {
            e + 1
        } else {
            continue;
        };
        spans.push((us, end));
        last_end = end;
    }
    if spans.is_empty() {
        return None;
    }
    let mut out = Vec::with_capacity(n);
    let mut prev = 0;
    for (us, _) in spans {
        out.extend_from_slice(&s[prev..us]);
        prev = us + u.len();
    }
    out.extend_from_slice(&s[prev..]);
    Some(out)
}

fn remove_units(s: String) -> String {
    // Every unit has a letter or a non-ASCII character: most answers
    // (numbers, fractions of numbers) have neither and skip the scan.
    if !s.chars().any(|c| c.is_ascii_alphabetic() || !c.is_ascii()) {
        return s;
    }
    let mut chars: Vec<char> = s.chars().collect();
    let mask_of = |chars: &[char]| -> (u128, bool) {
        chars.iter().fold((0u128, false), |(m, na), &c| {
            if c.is_ascii() {
                (m | 1u128 << (c as u32), na)
            } else {
                (m, true)
            }
        })
    };
    let (mut mask, mut non_ascii) = mask_of(&chars);
    let mut starts: Vec<u32> = Vec::new();
    for _ in 0..2 {
        for unit in UNIT_PATTERNS.iter() {
            // Every literal character of the unit must occur somewhere.
            if unit.ascii_mask & !mask != 0 || (unit.needs_non_ascii && !non_ascii) {
                continue;
            }
            let Some(Some(first)) = unit.chars.first() else {
                continue;
            };
            starts.clear();
            starts.extend(
                chars
                    .iter()
                    .enumerate()
                    .filter(|(_, c)| *c == first)
                    .map(|(i, _)| i as u32),
            );
            if let Some(next) = remove_unit(&chars, unit, &starts) {
                // The reference keeps the old string when removal empties it.
                if !next.is_empty() {
                    chars = next;
                    (mask, non_ascii) = mask_of(&chars);
                }
            }
        }
    }
    chars.into_iter().collect()
}

/// Normalises an answer string like the reference's `strip_string`
/// (units removed). Not idempotent: the string-majority reward applies it to
/// an already extracted answer once more.
pub fn strip_string(input: &str) -> String {
    static ARRAY_BEGIN: LazyLock<Regex> = LazyLock::new(|| re(r"\\begin\{array\}\{.*?\}"));
    static ARRAY_END: LazyLock<Regex> = LazyLock::new(|| re(r"\\end\{array\}"));
    static TEXT_TAIL: LazyLock<Regex> = LazyLock::new(|| re(r"\\text\{.*?\}$"));
    static TEXT: LazyLock<Regex> = LazyLock::new(|| re(r"\\text\{(.*?)\}"));
    static MBOX: LazyLock<Regex> = LazyLock::new(|| re(r"\\mbox\{.*?\}"));
    static TRAILING_ZEROS_MID: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+)\.0*([^\d])"));
    static TRAILING_ZEROS_END: LazyLock<Regex> = LazyLock::new(|| re(r"(\d+)\.0*$"));
    static SQRT: LazyLock<Regex> = LazyLock::new(|| re(r"\\sqrt(\w+)"));

    let mut s = py::strip(input).to_string();
    rep(&mut s, "\n", "");
    s.truncate(s.trim_end_matches('.').len());
    let has_backslash = s.contains('\\');
    if has_backslash {
        rep(&mut s, "\\!", "");
    }
    if s.contains("array") {
        s = ARRAY_BEGIN.replace_all(&s, r"\begin{pmatrix}").into_owned();
        s = ARRAY_END.replace_all(&s, r"\end{pmatrix}").into_owned();
    }
    rep(&mut s, "bmatrix", "pmatrix");
    rep(&mut s, "tfrac", "frac");
    rep(&mut s, "dfrac", "frac");
    if has_backslash {
        for (from, to) in [
            ("\\neq", "\\ne"),
            ("\\leq", "\\le"),
            ("\\geq", "\\ge"),
            ("\\left", ""),
            ("\\right", ""),
            ("\\{", "{"),
            ("\\}", "}"),
        ] {
            rep(&mut s, from, to);
        }
    }

    // A trailing \text{…} is a unit: drop it unless nothing would remain.
    if s.contains("\\text{") {
        let t = TEXT_TAIL.replace_all(&s, "");
        let t = py::strip(&t);
        if !t.is_empty() && t != s {
            s = t.to_string();
        }
    }

    s = remove_units(s);

    for (from, to) in [
        ("^{\\circ}", ""),
        ("^\\circ", ""),
        ("\\$", ""),
        ("$", ""),
        ("\\(", ""),
        ("\\)", ""),
    ] {
        rep(&mut s, from, to);
    }

    s = word_to_number(&s).unwrap_or(s);

    if s.contains("\\text{") {
        s = TEXT.replace_all(&s, "${1}").into_owned();
    }
    for key in [
        "x=", "y=", "z=", "x\\in", "y\\in", "z\\in", "x\\to", "y\\to", "z\\to",
    ] {
        rep(&mut s, key, "");
    }
    for (from, to) in [
        ("\\emptyset", "{}"),
        ("(-\\infty,\\infty)", "\\mathbb{R}"),
        ("\\%", ""),
        ("%", ""),
        (" .", " 0."),
        ("{.", "{0."),
    ] {
        rep(&mut s, from, to);
    }
    // (The reference's `{…}`/`(…)`/`[…]` unwrapping needs `isalnum()` on a
    // string that starts with a bracket, so it never fires.)

    rep(&mut s, "infinity", "\\infty");
    if !s.contains("\\infty") {
        rep(&mut s, "inf", "\\infty");
    }
    rep(&mut s, "+\\inity", "\\infty");
    // "and" is removed as a substring: "band" becomes "b".
    rep(&mut s, "and", "");
    rep(&mut s, "\\mathbf", "");
    if s.contains("\\mbox{") {
        s = MBOX.replace_all(&s, "").into_owned();
    }
    // (The reference's quote removal discards its result: no effect.)
    if s.contains('j') && !s.contains('i') {
        rep(&mut s, "j", "i");
    }
    if s.contains('.') {
        s = TRAILING_ZEROS_MID.replace_all(&s, "${1}${2}").into_owned();
        s = TRAILING_ZEROS_END.replace_all(&s, "${1}").into_owned();
    }
    if s.is_empty() {
        return s;
    }
    if s.starts_with('.') {
        s.insert(0, '0');
    }
    // "k = 5" → "5": exactly one "=" with at most two characters before it.
    if let Some((lhs, rhs)) = s.split_once('=')
        && !rhs.contains('=')
        && lhs.chars().count() <= 2
    {
        s = rhs.to_string();
    }
    if s.contains("\\sqrt") {
        s = SQRT.replace_all(&s, "\\sqrt{${1}}").into_owned();
    }
    rep(&mut s, " ", "");
    if s.contains("\\frac") {
        s = fix_fracs(&s);
    }
    fix_a_slash_b(&s)
}

/// Replaces every occurrence of `from` in place; allocates only when there
/// is one (answers are short, so a plain scan beats a substring searcher).
fn rep(s: &mut String, from: &str, to: &str) {
    let (h, n) = (s.as_bytes(), from.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return;
    }
    let first = n[0];
    if let Some(i) = (0..=h.len() - n.len()).find(|&i| h[i] == first && &h[i..i + n.len()] == n) {
        let tail = s[i..].replace(from, to);
        s.truncate(i);
        s.push_str(&tail);
    }
}

/// `\frac12` → `\frac{1}{2}`, `\frac1b` → `\frac{1}{b}`, `\frac1{72}` →
/// `\frac{1}{72}`; a `\frac` with fewer than two characters after it returns
/// the input unchanged (the reference's early `return string`).
fn fix_fracs(s: &str) -> String {
    let mut parts = s.split("\\frac");
    let mut out = parts.next().unwrap_or("").to_string();
    for sub in parts {
        out.push_str("\\frac");
        let chars: Vec<char> = sub.chars().collect();
        if chars.first() == Some(&'{') {
            out.push_str(sub);
            continue;
        }
        if chars.len() < 2 {
            return s.to_string();
        }
        let (a, b) = (chars[0], chars[1]);
        let post: String = chars[2..].iter().collect();
        if b != '{' {
            out.push_str(&format!("{{{a}}}{{{b}}}{post}"));
        } else {
            out.push_str(&format!("{{{a}}}{b}{post}"));
        }
    }
    out
}

/// `3/4` → `\frac{3}{4}` when both sides are canonical integers (or contain
/// `sqrt`), as the reference's `_fix_a_slash_b` round-trip check requires.
fn fix_a_slash_b(s: &str) -> String {
    let mut it = s.split('/');
    let (Some(a), Some(b), None) = (it.next(), it.next(), it.next()) else {
        return s.to_string();
    };
    let canonical = |t: &str| t.contains("sqrt") || is_canonical_int(t);
    if canonical(a) && canonical(b) {
        format!("\\frac{{{a}}}{{{b}}}")
    } else {
        s.to_string()
    }
}

/// Whether `str(int(t)) == t` in Python.
pub(crate) fn is_canonical_int(t: &str) -> bool {
    let digits = t.strip_prefix('-').unwrap_or(t);
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && (digits == "0" && !t.starts_with('-') || !digits.starts_with('0'))
}

// ─── word2number ───────────────────────────────────────────────────────────

fn word_value(w: &str) -> Option<i64> {
    const WORDS: [(&str, i64); 32] = [
        ("zero", 0),
        ("one", 1),
        ("two", 2),
        ("three", 3),
        ("four", 4),
        ("five", 5),
        ("six", 6),
        ("seven", 7),
        ("eight", 8),
        ("nine", 9),
        ("ten", 10),
        ("eleven", 11),
        ("twelve", 12),
        ("thirteen", 13),
        ("fourteen", 14),
        ("fifteen", 15),
        ("sixteen", 16),
        ("seventeen", 17),
        ("eighteen", 18),
        ("nineteen", 19),
        ("twenty", 20),
        ("thirty", 30),
        ("forty", 40),
        ("fifty", 50),
        ("sixty", 60),
        ("seventy", 70),
        ("eighty", 80),
        ("ninety", 90),
        ("hundred", 100),
        ("thousand", 1000),
        ("million", 1_000_000),
        ("billion", 1_000_000_000),
    ];
    WORDS.iter().find(|(k, _)| *k == w).map(|&(_, v)| v)
}

/// `word2number.w2n.word_to_num` as the reference calls it: any number word
/// anywhere in the text turns the whole text into that number ("no one" →
/// "1"); `None` where the library raises (the text is then kept).
fn word_to_number(text: &str) -> Option<String> {
    if !text.bytes().any(|b| b.is_ascii_alphabetic()) && text.is_ascii() {
        // No number word is possible: only an all-digit string converts.
        if !text.is_empty() && text.bytes().all(|b| b.is_ascii_digit()) {
            let t = text.trim_start_matches('0');
            return Some(if t.is_empty() { "0".into() } else { t.into() });
        }
        return None;
    }
    let sentence = text.replace('-', " ").to_lowercase();
    if !sentence.is_empty() && sentence.chars().all(|c| c.is_ascii_digit()) {
        let t = sentence.trim_start_matches('0');
        return Some(if t.is_empty() { "0".into() } else { t.into() });
    }
    if !sentence.is_empty() && sentence.chars().all(char::is_numeric) {
        // Python's isdigit() holds but int() may fail on non-decimal digits.
        return None;
    }
    let mut clean: Vec<&str> = py::split_whitespace(&sentence)
        .filter(|w| *w == "point" || word_value(w).is_some())
        .collect();
    if clean.is_empty() {
        return None;
    }
    let count = |v: &[&str], w: &str| v.iter().filter(|x| **x == w).count();
    if ["thousand", "million", "billion", "point"]
        .iter()
        .any(|w| count(&clean, w) > 1)
    {
        return None;
    }
    let mut decimals: Vec<&str> = Vec::new();
    if let Some(i) = clean.iter().position(|w| *w == "point") {
        decimals = clean[i + 1..].to_vec();
        clean.truncate(i);
    }
    let idx = |w: &str| clean.iter().position(|x| *x == w);
    let (bi, mi, ti) = (idx("billion"), idx("million"), idx("thousand"));
    let lt = |a: Option<usize>, b: Option<usize>| matches!((a, b), (Some(x), Some(y)) if x < y);
    if ti.is_some() && (lt(ti, mi) || lt(ti, bi)) || lt(mi, bi) {
        return None;
    }
    let mut total: i64 = 0;
    if clean.len() == 1 {
        total = word_value(clean[0])?;
    } else if clean.len() > 1 {
        let formation = |ws: &[&str]| -> Option<i64> {
            let n: Vec<i64> = ws.iter().map(|w| word_value(w)).collect::<Option<_>>()?;
            Some(match n.len() {
                0 => return None, // IndexError in the reference
                4 => n[0] * n[1] + n[2] + n[3],
                3 => n[0] * n[1] + n[2],
                2 if n.contains(&100) => n[0] * n[1],
                2 => n[0] + n[1],
                _ => n[0],
            })
        };
        if let Some(b) = bi {
            total += formation(&clean[..b])? * 1_000_000_000;
        }
        if let Some(m) = mi {
            let start = bi.map_or(0, |b| b + 1);
            total += formation(clean.get(start..m)?)? * 1_000_000;
        }
        if let Some(t) = ti {
            let start = mi.or(bi).map_or(0, |x| x + 1);
            total += formation(clean.get(start..t)?)? * 1000;
        }
        let last = clean.len() - 1;
        // The reference's if/elif chain, including its quirk that a trailing
        // "thousand" falls through to the million branch.
        total += if let Some(t) = ti
            && t != last
        {
            formation(&clean[t + 1..])?
        } else if let Some(m) = mi
            && m != last
        {
            formation(&clean[m + 1..])?
        } else if let Some(b) = bi
            && b != last
        {
            formation(&clean[b + 1..])?
        } else if ti.is_none() && mi.is_none() && bi.is_none() {
            formation(&clean)?
        } else {
            0
        };
    }
    if !decimals.is_empty() {
        let digits: Option<String> = decimals
            .iter()
            .map(|w| word_value(w).filter(|v| *v < 10).map(|v| v.to_string()))
            .collect();
        if let Some(d) = digits {
            let frac: f64 = format!("0.{d}").parse().ok()?;
            return Some(py::float_repr(total as f64 + frac));
        }
    }
    Some(total.to_string())
}
