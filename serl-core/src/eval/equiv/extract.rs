//! Candidate extraction from free text, as math_verify's `parse` does it with
//! its default configuration (LaTeX and plain-expression targets): regexes
//! grouped by priority (final-answer phrases, `\boxed`, "answer", then plain
//! math), matches tried from the rightmost, the first one that parses wins,
//! and the first matched string is kept as a string fallback.

use std::sync::LazyLock;

use fancy_regex::{Captures, Regex};

use super::expr::Expr;
use super::latex::{self, BoxedMode};
use super::num::Num;

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

struct Pattern {
    re: Regex,
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

fn latex_patterns() -> Vec<(String, u32)> {
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
        (format!(r"(?i:final answer is):?\s*{l}\.?\s?I hope"), 0),
        (format!(r"(?i:final answer.{{0,100}}?)\s+is:?\s*{l}"), 50),
        (format!(r"(?i:answer):.{{0,50}}?{l}"), 100),
        (format!(r"(?i:answer).{{0,50}}?{l}"), 200),
        (l, 300),
        (format!("{first_b}{next_b}"), 50),
        (r"(?P<first_latexBoxed>\\boxed\{.+\})".to_string(), 50),
    ]
    .into_iter()
    .map(|(p, k)| (format!("(?s){p}"), k))
    .collect()
}

fn expr_patterns() -> Vec<(String, u32)> {
    let number = r"(?<!\d)(?:(?P<integer1>-?[1-9]\d{0,2}(?:[ ,]\d{3})+)(?P<decimal1>\.\d+)?|(?P<integer2>-?\d+)(?P<decimal2>[.,]\d+)|(?P<decimal3>\.\d+)|(?P<integer3>-?\d+))(?P<percent>\s*(?:%|[Pp]ercent|\s*[Pp]ercentage|\s*[Pp]ct))?";
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
        (format!(r"(?i:final answer is):?\s*{eon}\.?\s?I hope"), 0),
        (format!(r"(?i:final answer.{{0,100}}?)\s+is:?{eon}"), 50),
        (
            format!(r"(?i:answer):(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"),
            100,
        ),
        (
            format!(r"(?i:answer)(?:.{{0,100}}=\s*|.{{0,50}}?){eon}(?!\s*=)"),
            200,
        ),
        (ewa, 300),
        (nwa, 300),
    ]
}

static PATTERNS: LazyLock<Vec<Pattern>> = LazyLock::new(|| {
    let mut all: Vec<Pattern> = latex_patterns()
        .into_iter()
        .map(|(p, priority)| (p, priority, Target::Latex))
        .chain(
            expr_patterns()
                .into_iter()
                .map(|(p, priority)| (p, priority, Target::Expr)),
        )
        .map(|(p, priority, target)| Pattern {
            re: Regex::new(&p).unwrap_or_else(|e| panic!("built-in pattern {p}: {e}")),
            priority,
            target,
        })
        .collect();
    all.sort_by_key(|p| p.priority); // stable: LaTeX before expressions
    all
});

/// math_verify's `parse(text)`: at most one parsed value, then the first
/// matched string as a fallback.
pub fn parse_candidates(text: &str) -> Vec<Parsed> {
    let pats = &*PATTERNS;
    let mut result = Vec::new();
    let mut fallback: Option<String> = None;
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
        let mut matches: Vec<(usize, usize, usize, Captures<str>)> = Vec::new();
        for (k, p) in group.iter().enumerate() {
            for caps in p.re.captures_iter(text) {
                let Ok(caps) = caps else { break };
                let Some(m) = caps.get(0) else { continue };
                matches.push((m.end(), m.start(), k, caps));
            }
        }
        // Rightmost end first, then leftmost start, then pattern order.
        matches.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let mut found = None;
        for (_, _, k, caps) in &matches {
            let (value, s) = match group[*k].target {
                Target::Latex => extract_latex(caps),
                Target::Expr => extract_expr(caps),
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
    let lower_has = |w: &str| text.len() >= w.len() && text.to_ascii_lowercase().contains(w);
    match priority {
        0 | 50 => lower_has("final answer") || text.contains("\\boxed"),
        100 | 200 => lower_has("answer"),
        _ => true,
    }
}

fn extract_latex(caps: &Captures<str>) -> (Option<Expr>, String) {
    let mut groups: Vec<(&str, String)> = Vec::new();
    let prefixes = ["first_", "next1_", "next2_", "next3_", "next4_", "next5_"];
    for prefix in prefixes {
        let kinds = ENV_KINDS
            .iter()
            .copied()
            .chain(std::iter::once("latexBoxed"));
        for kind in kinds {
            if let Some(m) = caps.name(&format!("{prefix}{kind}")) {
                if !m.as_str().is_empty() {
                    groups.push((prefix, format!("{kind}\u{0}{}", m.as_str())));
                    break;
                }
            }
        }
    }
    let mut exprs: Vec<Option<Expr>> = Vec::new();
    let mut strs: Vec<String> = Vec::new();
    for (prefix, tagged) in &groups {
        let (kind, latex_src) = tagged.split_once('\u{0}').unwrap_or(("", tagged));
        let pct = caps
            .name(&format!("{prefix}percent"))
            .is_some_and(|m| !m.as_str().is_empty());
        let mode = if kind == "latexBoxed" {
            BoxedMode::Last
        } else {
            BoxedMode::All
        };
        let normalized = latex::normalize(latex_src, mode);
        let parsed = parse_latex_with_fallback(&normalized)
            .map(|e| if pct { Expr::Pct(Box::new(e)) } else { e });
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
    if let Some(e) = latex::parse(latex_src) {
        return Some(e);
    }
    if latex_src.contains(',') || latex_src.contains(';') {
        return None;
    }
    let parts = split_equations(latex_src);
    if parts.len() > 2 {
        latex::parse(parts.last()?)
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

fn extract_expr(caps: &Captures<str>) -> (Option<Expr>, String) {
    let group = |prefix: &str| {
        (1..=3).find_map(|k| {
            caps.name(&format!("{prefix}{k}"))
                .map(|m| m.as_str().to_string())
                .filter(|s| !s.is_empty())
        })
    };
    let integer = group("integer").unwrap_or_default();
    let decimal = group("decimal").unwrap_or_default();
    let pct = caps.name("percent").is_some_and(|m| !m.as_str().is_empty());
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
    let expr = caps
        .name("expr")
        .map(|m| m.as_str().to_string())
        .unwrap_or_default();
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
