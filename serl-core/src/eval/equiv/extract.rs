//! Candidate extraction from free text, as math_verify's `parse` does it with
//! its default configuration (LaTeX and plain-expression targets): regexes
//! grouped by priority (final-answer phrases, `\boxed`, "answer", then plain
//! math), matches tried from the rightmost, the first one that parses wins,
//! and the first matched string is kept as a string fallback.

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex};

use super::envscan;
use super::expr::Expr;
use super::latex::{self, BoxedMode};
use super::num::Num;
use crate::eval::py;

/// One element of math_verify's parse result.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// A parsed mathematical value.
    Value(Expr),
    /// The fallback string of the first match.
    Text(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Target {
    Latex,
    Expr,
}

/// Where a match of a pattern can start, so that the (anchored) backtracking
/// regex is only tried there instead of at every position of a long text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// `$`, `\[`, `\(`, `\frac`, `-\frac`, or whitespace before `[`.
    LatexEnv,
    /// Like `LatexEnv`, for the plain environment pattern matched directly.
    LatexEnvPlain,
    /// A LaTeX environment start whose content reaches a `\boxed{` before
    /// its closing delimiter.
    LatexEnvBoxed,
    /// `\boxed{`.
    Boxed,
    /// An ASCII-case-insensitive literal.
    Literal(&'static str),
    /// Start of text, whitespace or `=` (the expression anchors).
    ExprAnchor,
    /// An `ExprAnchor` followed by a run of expression characters that holds
    /// an operator (the plain-expression pattern needs one).
    ExprWithOperator,
}

/// Patterns matched by hand-written code instead of the backtracking regex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direct {
    /// The plain LaTeX environments ([`envscan::match_at`]).
    Env,
    /// `(?i:answer)` (`:` when the flag is set), up to 50 characters, then
    /// the LaTeX environments: the lazy gap is tried shortest first.
    AnswerEnv { colon: bool },
    /// The LaTeX environments that contain a `\boxed{…}` ([`envscan::match_boxed_at`]).
    BoxedEnv,
    /// `\\boxed\{.+\}` (dot matching newlines): from `\boxed{` to the
    /// text's last `}`, with at least one character between.
    Boxed,
    /// `(?i:final answer).{0,100}?\s+is:?\s*` then the LaTeX environments.
    FinalAnswerEnv,
}

struct Pattern {
    /// The pattern prefixed with `\G`: matches only at the search position.
    re: Regex,
    /// Capture-group indices of `re`, looked up once.
    groups: GroupIndex,
    /// Matched directly instead of through `re` (same matches).
    direct: Option<Direct>,
    start: Start,
    priority: u32,
    target: Target,
}

const ENV_KINDS: [&str; 6] = [
    "latexDisplayDollar",
    "latexDisplayBracket",
    "latexInlineDollar",
    "latexInlineParenthesis",
    "latexInlineBracket",
    "latexFraction",
];

fn latex_env(prefix: &str, boxed: bool) -> String {
    let percent = format!(r"(?P<{prefix}percent>(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct))");
    let base = [
        r"(?:[^$]|\$(?!\$))",
        r"(?:[^\\]|\\(?!\]))",
        r"(?:\\[$]|[^\n$])",
        r"(?:[^\\\n]|\\(?!\)))",
        r"[^\n\]\[]",
    ];
    let body = |c: &str| {
        if boxed {
            format!(r"{c}*?\\boxed\{{{c}+?\}}{c}*?")
        } else {
            format!("{c}+?")
        }
    };
    let mut pats = vec![
        format!(
            r"(?<!\\)\$\$(?P<{prefix}latexDisplayDollar>{})(?<!\\)\$\$",
            body(base[0])
        ),
        format!(
            r"(?<!\\)\\\[(?P<{prefix}latexDisplayBracket>{})(?<!\\)\\\]",
            body(base[1])
        ),
        format!(
            r"(?<!\\|\d)\$(?P<{prefix}latexInlineDollar>{})(?<!\\)\$",
            body(base[2])
        ),
        format!(
            r"(?<!\\)\\\((?P<{prefix}latexInlineParenthesis>{})(?<!\\)\\\)",
            body(base[3])
        ),
        format!(r"\s\[(?P<{prefix}latexInlineBracket>{})\]\s", body(base[4])),
    ];
    if !boxed {
        let n = r"-?\d+(?:[.,]\d+)?";
        pats.push(format!(
            r"(?P<{prefix}latexFraction>-?\\frac\{{{n}\}}\{{{n}\}})"
        ));
    }
    format!(r"(?:(?:{})\s*{percent}?)", pats.join("|"))
}

/// `(?i:final answer is)`, `(?i:final answer)` and `(?i:answer)` of the
/// reference, case folds spelled out (no Unicode case tables needed).
fn anchor_words() -> (String, String, String) {
    (
        py::ignore_case("final answer is"),
        py::ignore_case("final answer"),
        py::ignore_case("answer"),
    )
}

fn latex_patterns() -> Vec<(String, u32, Start)> {
    let (fai, fa, ans) = anchor_words();
    let first = latex_env("first_", false);
    let next: String = (1..=5)
        .map(|i| {
            format!(
                r"(?:\s*(?:,?and|,?or|,)\s*{})?",
                latex_env(&format!("next{i}_"), false)
            )
        })
        .collect();
    let l = format!("(?:{first}{next})");
    let first_b = latex_env("first_", true);
    let next_b: String = (1..=5)
        .map(|i| {
            format!(
                r"\s*(?:\s*(?:,?and|,?or|,)\s*{})?",
                latex_env(&format!("next{i}_"), true)
            )
        })
        .collect();
    vec![
        (
            format!(r"{fai}:?\s*{l}\.?\s?I hope"),
            0,
            Start::Literal("final answer is"),
        ),
        (
            format!(r"{fa}.{{0,100}}?\s+is:?\s*{l}"),
            50,
            Start::Literal("final answer"),
        ),
        (
            format!(r"{ans}:.{{0,50}}?{l}"),
            100,
            Start::Literal("answer:"),
        ),
        (
            format!(r"{ans}.{{0,50}}?{l}"),
            200,
            Start::Literal("answer"),
        ),
        (l, 300, Start::LatexEnvPlain),
        (format!("{first_b}{next_b}"), 50, Start::LatexEnvBoxed),
        (
            r"(?P<first_latexBoxed>\\boxed\{.+\})".to_string(),
            50,
            Start::Boxed,
        ),
    ]
    .into_iter()
    .map(|(p, k, s)| (format!("(?s){p}"), k, s))
    .collect()
}

fn expr_patterns() -> Vec<(String, u32, Start)> {
    let (fai, fa, ans) = anchor_words();
    // math_verify's number pattern starts with `(?<!\d)`; every use of it is
    // preceded by the anchor `(?:^|\s|=)` and optional `**` / currency sign,
    // none of them a digit, so the look-behind always holds and is left out
    // (which keeps these patterns free of backtracking-only features).
    let number = r"(?:(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|(?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|(?P<decimal3>\.\d+)|(?P<integer3>-?\d+))(?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?";
    let ops = r"+\-*×/^()÷";
    let chars = format!(r"[\d.\s{ops}]");
    let expr = format!(r"(?P<expr>-?\(?-?\d{chars}*[{ops}]{chars}+\)?)");
    let currency = "[$€£¥₹₽₪₩₫฿₡₢₣₤₥₦₧₨₭₮₯₰₱₲₳₴₵₶₷₸₺₻₼₾₿]";
    let prefix = r"(?:^|\s|=)(?:\*\*)?";
    let suffix = r"(?:\*\*)?(?:\.|,|:|\s|\)|\$|$)";
    let ewa = format!("(?:{prefix}{expr}{suffix})");
    let nwa = format!("(?:{prefix}{currency}?{number})");
    let eon = format!("(?:{ewa}|{nwa})");
    vec![
        (
            format!(r"{fai}:?\s*{eon}\.?\s?I hope"),
            0,
            Start::Literal("final answer is"),
        ),
        (
            format!(r"{fa}.{{0,100}}?\s+is:?{eon}"),
            50,
            Start::Literal("final answer"),
        ),
        (
            format!(r"{ans}:(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"),
            100,
            Start::Literal("answer:"),
        ),
        (
            format!(r"{ans}(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"),
            200,
            Start::Literal("answer"),
        ),
        (ewa, 300, Start::ExprWithOperator),
        (nwa, 300, Start::ExprAnchor),
    ]
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let mut all: Vec<Pattern> = latex_patterns()
        .into_iter()
        .map(|(p, priority, start)| (p, priority, start, Target::Latex))
        .chain(
            expr_patterns()
                .into_iter()
                .map(|(p, priority, start)| (p, priority, start, Target::Expr)),
        )
        .map(|(p, priority, start, target)| {
            let re = Regex::new(&format!(r"\G(?:{p})"))
                .unwrap_or_else(|e| panic!("built-in pattern {p}: {e}"));
            Pattern {
                groups: GroupIndex::of(&re),
                re,
                direct: match (start, target) {
                    (Start::LatexEnvPlain, _) => Some(Direct::Env),
                    (Start::LatexEnvBoxed, _) => Some(Direct::BoxedEnv),
                    (Start::Literal("answer:"), Target::Latex) => {
                        Some(Direct::AnswerEnv { colon: true })
                    }
                    (Start::Literal("answer"), Target::Latex) => {
                        Some(Direct::AnswerEnv { colon: false })
                    }
                    (Start::Boxed, _) => Some(Direct::Boxed),
                    (Start::Literal("final answer"), Target::Latex) => Some(Direct::FinalAnswerEnv),
                    _ => None,
                },
                start: if start == Start::LatexEnvPlain {
                    Start::LatexEnv
                } else {
                    start
                },
                priority,
                target,
            }
        })
        .collect();
    all.sort_by_key(|p| p.priority); // stable: LaTeX before expressions
    all
});

/// Whether a match of a pattern of kind `start` can begin at byte `i`.
fn can_start(start: Start, b: &[u8], i: usize) -> bool {
    let at = |k: usize, s: &[u8]| b.get(i + k..i + k + s.len()) == Some(s);
    match start {
        Start::LatexEnv | Start::LatexEnvPlain => match b[i] {
            b'$' => true,
            b'\\' => at(1, b"[") || at(1, b"(") || at(1, b"frac"),
            b'-' => at(1, b"\\frac"),
            c => (c.is_ascii_whitespace() || c >= 0x80) && next_char_is(b, i, b'['),
        },
        Start::LatexEnvBoxed => {
            let boxed: Vec<usize> = (i..b.len())
                .filter(|&k| b.get(k..k + 7) == Some(b"\\boxed{"))
                .collect();
            can_start(Start::LatexEnv, b, i) && env_reaches_boxed(b, i, &boxed)
        }
        Start::Boxed => at(0, b"\\boxed{"),
        Start::Literal(lit) => {
            b.len() >= i + lit.len() && b[i..i + lit.len()].eq_ignore_ascii_case(lit.as_bytes())
        }
        Start::ExprAnchor | Start::ExprWithOperator => {
            // `^`, whitespace or `=`, then `**`, a currency sign, `-`, `(`
            // (each optional) and a digit or `.`; non-ASCII bytes are let
            // through (Unicode spaces and digits).
            let anchor = b[i] == b'=' || b[i].is_ascii_whitespace() || b[i] >= 0x80;
            (i == 0 && number_follows(b, 0)) || (anchor && number_follows(b, i + char_len(b[i])))
        }
    }
}

/// Whether the environment starting at `i` can contain a `\\boxed{` (at one
/// of the sorted positions `boxed`) before its closing delimiter: a
/// necessary condition for the boxed-environment pattern.
fn env_reaches_boxed(b: &[u8], i: usize, boxed: &[usize]) -> bool {
    let at = |k: usize, s: &[u8]| b.get(k..k + s.len()) == Some(s);
    if b[i] == b'-' || at(i, b"\\frac") {
        return false;
    }
    let (from, close): (usize, &[u8]) = if at(i, b"$$") {
        (i + 2, b"$$")
    } else if b[i] == b'$' {
        (i + 1, b"$")
    } else if at(i, b"\\[") {
        (i + 2, b"\\]")
    } else if at(i, b"\\(") {
        (i + 2, b"\\)")
    } else {
        (i + 1, b"]")
    };
    let Some(&nb) = boxed.get(boxed.partition_point(|&k| k < from)) else {
        return false;
    };
    let window = &b[from..nb];
    let stop = match close {
        b"$$" => memchr::memmem::find(window, b"$$").is_some(),
        b"$" => memchr::memchr2_iter(b'\n', b'$', window)
            .any(|k| window[k] == b'\n' || k + from == 0 || b[k + from - 1] != b'\\'),
        b"\\]" => memchr::memmem::find(window, b"\\]").is_some(),
        b"\\)" => {
            memchr::memchr(b'\n', window).is_some()
                || memchr::memmem::find(window, b"\\)").is_some()
        }
        _ => memchr::memchr3(b'\n', b'[', b']', window).is_some(),
    };
    !stop
}

/// For each byte position, whether the maximal run of expression characters
/// (digits, `.`, whitespace, `+-*/^()`) starting there, or right after an
/// anchor there, contains an operator. Non-ASCII characters count as
/// operators (`×`, `÷`, and to stay a superset for Unicode digits).
fn operator_ahead(text: &str) -> Vec<bool> {
    let b = text.as_bytes();
    let mut out = vec![false; b.len() + 1];
    for i in (0..b.len()).rev() {
        let c = b[i];
        out[i] = match c {
            b'+' | b'-' | b'*' | b'/' | b'^' | b'(' | b')' => true,
            _ if c >= 0x80 => true,
            b'0'..=b'9' | b'.' => out[i + 1],
            _ if c.is_ascii_whitespace() => out[i + 1],
            // An anchor that is not an expression character itself.
            b'=' => out[i + 1],
            _ => false,
        };
    }
    out
}

/// Whether a number can start at byte `k` after the optional `**`, currency
/// sign, `-` and `(` of the expression patterns.
fn number_follows(b: &[u8], mut k: usize) -> bool {
    if b.get(k..k + 2) == Some(b"**") {
        k += 2;
    }
    match b.get(k) {
        Some(b'$') => k += 1,
        Some(&c) if c >= 0x80 => return true,
        _ => {}
    }
    for skip in [b'-', b'(', b'-'] {
        if b.get(k) == Some(&skip) {
            k += 1;
        }
    }
    b.get(k)
        .is_some_and(|c| c.is_ascii_digit() || *c == b'.' || *c >= 0x80)
}

fn char_len(first: u8) -> usize {
    match first {
        x if x < 0x80 => 1,
        x if x >= 0xF0 => 4,
        x if x >= 0xE0 => 3,
        _ => 2,
    }
}

/// Whether the character after the one starting at byte `i` is `c`.
fn next_char_is(b: &[u8], i: usize, c: u8) -> bool {
    b.get(i + char_len(b[i])) == Some(&c)
}

/// Candidate start positions of each [`Start`] kind in one text, computed
/// once per text and shared by every pattern of that kind.
struct Starts<'t> {
    text: &'t str,
    cache: Vec<(Start, Vec<usize>)>,
}

impl<'t> Starts<'t> {
    fn new(text: &'t str) -> Self {
        Starts {
            text,
            cache: Vec::new(),
        }
    }

    fn get(&mut self, start: Start) -> &[usize] {
        if let Some(k) = self.cache.iter().position(|(s, _)| *s == start) {
            return &self.cache[k].1;
        }
        let b = self.text.as_bytes();
        let positions: Vec<usize> = match start {
            // memchr finds the few bytes that can begin a pattern; the byte
            // loops they replace were a fifth of a vote's time.
            Start::Literal(lit) => {
                let first = lit.as_bytes()[0];
                memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), b)
                    .filter(|&i| can_start(start, b, i))
                    .collect()
            }
            Start::Boxed => memchr::memmem::find_iter(b, b"\\boxed{").collect(),
            Start::LatexEnv | Start::LatexEnvPlain => env_starts(self.text, true),
            Start::LatexEnvBoxed => {
                let boxed: Vec<usize> = self.get(Start::Boxed).to_vec();
                if boxed.is_empty() {
                    Vec::new()
                } else {
                    // Fractions never hold a \boxed, so their starts (and the
                    // scan over every backslash) are left out here.
                    env_starts(self.text, false)
                        .into_iter()
                        .filter(|&i| env_reaches_boxed(b, i, &boxed))
                        .collect()
                }
            }
            // Without this filter the expression pattern scans the whole run
            // of digits and spaces after every anchor (quadratic on long
            // number lists) only to find no operator.
            Start::ExprWithOperator => {
                let has_op = operator_ahead(self.text);
                let anchors = self.get(Start::ExprAnchor).to_vec();
                anchors.into_iter().filter(|&i| has_op[i]).collect()
            }
            Start::ExprAnchor => {
                let mut v = Vec::new();
                if number_follows(b, 0) {
                    v.push(0);
                }
                for (i, &c) in b.iter().enumerate() {
                    let anchor = c == b'=' || c.is_ascii_whitespace() || c >= 0xC0;
                    if anchor && v.last() != Some(&i) && number_follows(b, i + char_len(c)) {
                        v.push(i);
                    }
                }
                v
            }
        };
        self.cache.push((start, positions));
        &self.cache[self.cache.len() - 1].1
    }
}

/// Where a LaTeX environment can start: `$`, `\\[`, `\\(`, whitespace before
/// `[`, and with `fractions` also `\\frac` and `-\\frac`. Sorted.
fn env_starts(text: &str, fractions: bool) -> Vec<usize> {
    let b = text.as_bytes();
    let at = |k: usize, s: &[u8]| b.get(k..k + s.len()) == Some(s);
    let mut v: Vec<usize> = memchr::memchr_iter(b'$', b).collect();
    if fractions {
        for i in memchr::memchr2_iter(b'\\', b'-', b) {
            let start = match b[i] {
                b'\\' => at(i + 1, b"[") || at(i + 1, b"(") || at(i + 1, b"frac"),
                _ => at(i + 1, b"\\frac"),
            };
            if start {
                v.push(i);
            }
        }
    } else {
        v.extend(memchr::memmem::find_iter(b, b"\\[").chain(memchr::memmem::find_iter(b, b"\\(")));
    }
    // Whitespace before "[": find where that character starts.
    for i in memchr::memchr_iter(b'[', b) {
        if let Some(c) = text[..i].chars().next_back()
            && (c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
        {
            v.push(i - c.len_utf8());
        }
    }
    v.sort_unstable();
    v.dedup();
    v
}

/// One regex match: captures of the backtracking regex, or the groups of the
/// direct environment matcher.
enum Found<'t> {
    Caps(Captures<'t, str>),
    Env(envscan::EnvMatch<'t>),
}

impl Found<'_> {
    fn range(&self) -> (usize, usize) {
        match self {
            Found::Caps(c) => c.get(0).map_or((0, 0), |m| (m.start(), m.end())),
            Found::Env(m) => (m.start, m.end),
        }
    }
}

/// A directly matched pattern anchored at `i`.
fn match_direct(d: Direct, text: &str, i: usize) -> Option<envscan::EnvMatch<'_>> {
    match d {
        Direct::Env => envscan::match_at(text, i),
        Direct::BoxedEnv => envscan::match_boxed_at(text, i),
        Direct::FinalAnswerEnv => match_final_answer_env(text, i),
        Direct::Boxed => {
            let body = i + r"\boxed{".len();
            let last = body + 1 + text.get(body + 1..)?.rfind('}')?;
            Some(envscan::EnvMatch {
                start: i,
                end: last + 1,
                groups: vec![envscan::EnvGroup {
                    kind: "latexBoxed",
                    content: &text[i..=last],
                    percent: false,
                }],
            })
        }
        Direct::AnswerEnv { colon } => {
            let from = i + if colon { 7 } else { 6 };
            let gap = text.get(from..)?;
            // `.{0,50}?` with DOTALL: 0 to 50 characters, fewest first.
            let ends = std::iter::once(0)
                .chain(gap.char_indices().map(|(k, c)| k + c.len_utf8()))
                .take(51);
            ends.into_iter()
                .find_map(|k| envscan::match_at(text, from + k))
                .map(|m| envscan::EnvMatch { start: i, ..m })
        }
    }
}

/// The priority-50 "final answer … is" LaTeX pattern at `i`, as the regex
/// engine walks it: the lazy gap shortest first, `\s+` and `\s*` greedy (the
/// latter backing off, since the inline-bracket environment begins with a
/// space), `:` taken when present.
fn match_final_answer_env(text: &str, i: usize) -> Option<envscan::EnvMatch<'_>> {
    let from = i + "final answer".len();
    let gap = text.get(from..)?;
    let space_run = |mut k: usize| -> Vec<usize> {
        let mut ends = vec![k];
        while let Some(c) = text[k..].chars().next().filter(|&c| envscan::is_space(c)) {
            k += c.len_utf8();
            ends.push(k);
        }
        ends
    };
    let gaps = std::iter::once(0)
        .chain(gap.char_indices().map(|(k, c)| k + c.len_utf8()))
        .take(101);
    for g in gaps {
        let spaces = space_run(from + g);
        let Some(&q) = spaces.last() else { continue };
        if spaces.len() < 2 || !text[q..].starts_with("is") {
            continue;
        }
        let r = q + 2;
        let colon = [r + 1, r];
        let starts: &[usize] = if text[r..].starts_with(':') {
            &colon
        } else {
            &colon[1..]
        };
        for &r0 in starts {
            for &e in space_run(r0).iter().rev() {
                if let Some(m) = envscan::match_at(text, e) {
                    return Some(envscan::EnvMatch { start: i, ..m });
                }
            }
        }
    }
    None
}

/// Python's `finditer`: non-overlapping leftmost matches, tried only at the
/// positions where the pattern can start.
fn find_all<'t>(p: &Pattern, text: &'t str, starts: &mut Starts<'t>) -> Vec<Found<'t>> {
    let mut out = Vec::new();
    let mut next = 0;
    for &i in starts.get(p.start) {
        if i < next {
            continue;
        }
        let found = if let Some(d) = p.direct {
            match_direct(d, text, i).map(Found::Env)
        } else {
            // An error is the backtracking limit: no match at this position.
            p.re.captures_from_pos(text, i)
                .ok()
                .flatten()
                .map(Found::Caps)
        };
        if let Some(f) = found {
            let (s, e) = f.range();
            out.push(f);
            next = if e > s { e } else { i + 1 };
        }
    }
    out
}

/// math_verify's `parse(text)`: at most one parsed value, then the first
/// matched string as a fallback.
pub fn parse_candidates(text: &str) -> Vec<Parsed> {
    let pats = &*PATTERNS;
    let mut result = Vec::new();
    let mut fallback: Option<String> = None;
    let mut starts = Starts::new(text);
    let mut i = 0;
    while i < pats.len() {
        let prio = pats[i].priority;
        let group: Vec<&Pattern> = pats[i..]
            .iter()
            .take_while(|p| p.priority == prio)
            .collect();
        i += group.len();
        if !prefilter(prio, text) {
            continue;
        }
        let mut matches: Vec<(usize, usize, usize, Found)> = Vec::new();
        for (k, p) in group.iter().enumerate() {
            for f in find_all(p, text, &mut starts) {
                let (s, e) = f.range();
                matches.push((e, s, k, f));
            }
        }
        // Rightmost end first, then leftmost start, then pattern order.
        matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut found = None;
        for (_, _, k, m) in &matches {
            let (value, s) = match (group[*k].target, m) {
                (Target::Latex, Found::Caps(caps)) => {
                    extract_latex(&latex_groups(&group[*k].groups, caps))
                }
                (Target::Latex, Found::Env(m)) => extract_latex(&m.groups),
                (Target::Expr, Found::Caps(caps)) => {
                    let g = &group[*k].groups;
                    extract_expr(&|name| {
                        let at = EXPR_GROUPS.iter().position(|n| *n == name)?;
                        caps.get(g.expr[at]?).map(|m| m.as_str())
                    })
                }
                (Target::Expr, Found::Env(_)) => (None, String::new()),
            };
            if fallback.is_none() && !s.is_empty() {
                fallback = Some(s);
            }
            if let Some(v) = value {
                found = Some(v);
                break;
            }
        }
        if let Some(v) = found {
            result.push(Parsed::Value(v));
            break;
        }
    }
    if let Some(f) = fallback {
        result.push(Parsed::Text(f));
    }
    result
}

/// Cheap checks that skip priority groups which cannot match.
fn prefilter(priority: u32, text: &str) -> bool {
    let has = |w: &str| {
        text.as_bytes()
            .windows(w.len())
            .any(|x| x.eq_ignore_ascii_case(w.as_bytes()))
    };
    match priority {
        // Both priority-0 patterns end in a literal "I hope".
        0 => has("final answer is") && text.contains("I hope"),
        50 => text.contains("\\boxed") || has("final answer"),
        100 | 200 => has("answer"),
        _ => true,
    }
}

const PREFIXES: [&str; 6] = ["first_", "next1_", "next2_", "next3_", "next4_", "next5_"];

/// The named groups of an expression pattern, in the order
/// [`extract_expr`] asks for them.
const EXPR_GROUPS: [&str; 8] = [
    "integer1", "integer2", "integer3", "decimal1", "decimal2", "decimal3", "percent", "expr",
];

/// One prefix's groups: the percent group and the (kind, group) pairs.
type PrefixIndex = (Option<usize>, Vec<(&'static str, usize)>);

/// Capture-group indices of one pattern: named lookups hash the name on
/// every call, and a vote makes thousands of them.
struct GroupIndex {
    /// Per prefix, in order.
    env: Vec<PrefixIndex>,
    /// The groups of [`EXPR_GROUPS`].
    expr: [Option<usize>; 8],
}

impl GroupIndex {
    fn of(re: &Regex) -> Self {
        let names: Vec<Option<&str>> = re.capture_names().collect();
        let find = |n: &str| names.iter().position(|x| *x == Some(n));
        let kinds = || {
            ENV_KINDS
                .iter()
                .copied()
                .chain(std::iter::once("latexBoxed"))
        };
        GroupIndex {
            env: PREFIXES
                .iter()
                .map(|prefix| {
                    (
                        find(&format!("{prefix}percent")),
                        kinds()
                            .filter_map(|k| Some((k, find(&format!("{prefix}{k}"))?)))
                            .collect(),
                    )
                })
                .collect(),
            expr: EXPR_GROUPS.map(find),
        }
    }
}

/// The environment groups of a LaTeX pattern's captures, in group order.
fn latex_groups<'t>(index: &GroupIndex, caps: &Captures<'t, str>) -> Vec<envscan::EnvGroup<'t>> {
    index
        .env
        .iter()
        .filter_map(|(percent, kinds)| {
            let (kind, m) = kinds.iter().find_map(|(kind, at)| {
                caps.get(*at)
                    .filter(|m| !m.as_str().is_empty())
                    .map(|m| (*kind, m))
            })?;
            let percent = percent
                .and_then(|at| caps.get(at))
                .is_some_and(|m| !m.as_str().is_empty());
            Some(envscan::EnvGroup {
                kind,
                content: m.as_str(),
                percent,
            })
        })
        .collect()
}

fn extract_latex(groups: &[envscan::EnvGroup]) -> (Option<Expr>, String) {
    let mut exprs: Vec<Option<Expr>> = Vec::new();
    let mut strs: Vec<String> = Vec::new();
    for g in groups {
        let mode = if g.kind == "latexBoxed" {
            BoxedMode::Last
        } else {
            BoxedMode::All
        };
        let normalized = latex::normalize(g.content, mode);
        let parsed = parse_latex_with_fallback(&normalized)
            .map(|e| if g.percent { Expr::Pct(Box::new(e)) } else { e });
        strs.push(normalized);
        exprs.push(parsed);
    }
    if exprs.is_empty() {
        return (None, String::new());
    }
    if exprs.len() > 1 && exprs.iter().all(Option::is_some) {
        let mut items = Vec::new();
        for e in exprs.into_iter().flatten() {
            match e {
                Expr::Set(v) => items.extend(v),
                e => items.push(e),
            }
        }
        return (Some(Expr::Set(items)), strs.join(" and "));
    }
    (exprs.swap_remove(0), strs.swap_remove(0))
}

/// `parse_latex_cached`: the whole string, else its last equation part.
fn parse_latex_with_fallback(latex_src: &str) -> Option<Expr> {
    let parse = |src: &str| {
        let e = latex::parse(src)?;
        Some(if latex::treat_as_complex(src) {
            e.complex_mode()
        } else {
            e
        })
    };
    if let Some(e) = parse(latex_src) {
        return Some(e);
    }
    if latex_src.contains(',') || latex_src.contains(';') {
        return None;
    }
    let parts = split_equations(latex_src);
    if parts.len() > 2 {
        parse(parts.last()?)
    } else {
        None
    }
}

/// Splits at `=` not preceded by `\`, `<`, `!` or `>`.
fn split_equations(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut prev: Option<char> = None;
    for (i, c) in s.char_indices() {
        if c == '=' && !matches!(prev, Some('\\' | '<' | '!' | '>')) {
            parts.push(&s[start..i]);
            start = i + 1;
        }
        prev = Some(c);
    }
    parts.push(&s[start..]);
    parts
}

/// The number or expression of an expression-pattern match; `group` reads a
/// named group of the match.
fn extract_expr<'a>(group_text: &dyn Fn(&str) -> Option<&'a str>) -> (Option<Expr>, String) {
    const INTEGER: [&str; 3] = ["integer1", "integer2", "integer3"];
    const DECIMAL: [&str; 3] = ["decimal1", "decimal2", "decimal3"];
    let group = |names: &[&str; 3]| {
        names
            .iter()
            .find_map(|n| group_text(n).filter(|s| !s.is_empty()).map(str::to_string))
    };
    let integer = group(&INTEGER).unwrap_or_default();
    let decimal = group(&DECIMAL).unwrap_or_default();
    let pct = group_text("percent").is_some_and(|m| !m.is_empty());
    if !integer.is_empty() || !decimal.is_empty() {
        let mut int: String = integer.chars().filter(|c| *c != ',' && *c != ' ').collect();
        int = int.trim_start_matches('0').to_string();
        if int.is_empty() {
            int = "0".into();
        }
        let number_str = format!("{int}{}", decimal.replace(',', "."));
        let value = Num::parse_decimal(&number_str).map(|n| {
            let e = Expr::Num(n);
            if pct { Expr::Pct(Box::new(e)) } else { e }
        });
        return (value, number_str);
    }
    let expr = group_text("expr").unwrap_or_default().to_string();
    if expr.is_empty() {
        return (None, expr);
    }
    (parse_python_arith(&expr), expr)
}

/// sympy `parse_expr` on the arithmetic the expression pattern admits:
/// numbers, `+ - * / ^` (as `**`) and parentheses; anything else (juxtaposed
/// numbers, `×`, `÷`, unbalanced parentheses) is a parse error.
fn parse_python_arith(s: &str) -> Option<Expr> {
    let s = s.replace('\n', " ").replace('^', "**");
    let toks: Vec<char> = s.chars().collect();
    let mut p = Arith { t: &toks, i: 0 };
    let e = p.sum()?;
    p.ws();
    (p.i == toks.len()).then_some(e)
}

struct Arith<'a> {
    t: &'a [char],
    i: usize,
}

impl Arith<'_> {
    fn ws(&mut self) {
        while self.t.get(self.i).is_some_and(|c| c.is_whitespace()) {
            self.i += 1;
        }
    }
    fn peek(&mut self) -> Option<char> {
        self.ws();
        self.t.get(self.i).copied()
    }
    fn sum(&mut self) -> Option<Expr> {
        let mut terms = vec![self.product()?];
        while let Some(c @ ('+' | '-')) = self.peek() {
            self.i += 1;
            let t = self.product()?;
            terms.push(if c == '-' { Expr::negate(t) } else { t });
        }
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::Add(terms)
        })
    }
    fn product(&mut self) -> Option<Expr> {
        let mut acc = self.unary()?;
        loop {
            match self.peek() {
                Some('*') if self.t.get(self.i + 1) != Some(&'*') => {
                    self.i += 1;
                    acc = Expr::Mul(vec![acc, self.unary()?]);
                }
                Some('/') => {
                    self.i += 1;
                    acc = Expr::divide(acc, self.unary()?);
                }
                _ => return Some(acc),
            }
        }
    }
    fn unary(&mut self) -> Option<Expr> {
        match self.peek() {
            Some('-') => {
                self.i += 1;
                Some(Expr::negate(self.unary()?))
            }
            Some('+') => {
                self.i += 1;
                self.unary()
            }
            _ => self.power(),
        }
    }
    fn power(&mut self) -> Option<Expr> {
        let base = self.atom()?;
        if self.peek() == Some('*') && self.t.get(self.i + 1) == Some(&'*') {
            self.i += 2;
            let e = self.unary()?;
            return Some(Expr::Pow(Box::new(base), Box::new(e)));
        }
        Some(base)
    }
    fn atom(&mut self) -> Option<Expr> {
        match self.peek()? {
            '(' => {
                self.i += 1;
                let e = self.sum()?;
                (self.peek() == Some(')')).then(|| {
                    self.i += 1;
                    e
                })
            }
            c if c.is_ascii_digit() || c == '.' => {
                let start = self.i;
                while self
                    .t
                    .get(self.i)
                    .is_some_and(|c| c.is_ascii_digit() || *c == '.')
                {
                    self.i += 1;
                }
                let lit: String = self.t[start..self.i].iter().collect();
                if lit.len() > 1 && lit.starts_with('0') && !lit.starts_with("0.") {
                    return None; // Python rejects leading zeros
                }
                Some(Expr::Num(Num::parse_decimal(&lit)?))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every text of the reference vectors: the direct environment matcher
    /// gives exactly the regex's matches at every candidate position.
    #[test]
    fn direct_env_matcher_equals_the_regex() {
        let direct: Vec<&Pattern> = PATTERNS.iter().filter(|p| p.direct.is_some()).collect();
        assert_eq!(direct.len(), 6);
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut texts: Vec<String> = Vec::new();
        for (file, keys) in [
            ("vote.jsonl", &["responses"][..]),
            ("extract.jsonl", &["input"]),
            ("postprocess.jsonl", &["response"]),
        ] {
            let data = std::fs::read_to_string(format!("{dir}/{file}")).expect("fixture");
            for line in data.lines() {
                let v: serde_json::Value = serde_json::from_str(line).expect("JSON");
                for k in keys {
                    match &v[*k] {
                        serde_json::Value::String(s) => texts.push(s.clone()),
                        serde_json::Value::Array(a) => {
                            texts.extend(a.iter().filter_map(|x| x.as_str().map(String::from)))
                        }
                        _ => {}
                    }
                }
            }
        }
        texts.extend(
            [
                "$a$ and $b$, $c$ or \\(d\\) , [e] ",
                " [x]  $$y$$ % and -\\frac{1}{2}",
                "$1$ percent,and $2$ Pct",
            ]
            .map(String::from),
        );
        let mut checked = 0;
        // Python's `\s` also matches U+001C..U+001F; the direct matcher follows
        // Python there and the Rust regex cannot, so such texts are skipped.
        for t in texts
            .iter()
            .filter(|t| !t.contains(['\u{1c}', '\u{1d}', '\u{1e}', '\u{1f}']))
        {
            for p in &direct {
                let Some(d) = p.direct else { continue };
                for &i in Starts::new(t.as_str()).get(p.start) {
                    let got = match_direct(d, t, i);
                    let regex =
                        p.re.captures_from_pos(t.as_str(), i)
                            .ok()
                            .flatten()
                            .map(|c| {
                                let (s, e) = c.get(0).map_or((0, 0), |m| (m.start(), m.end()));
                                envscan::EnvMatch {
                                    start: s,
                                    end: e,
                                    groups: latex_groups(&p.groups, &c),
                                }
                            });
                    assert_eq!(got, regex, "{d:?}: text {t:?} at {i}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 10_000, "{checked}");
    }
}
