//! LaTeX answers to [`Expr`]: the normalisation math_verify applies
//! (`normalize_latex` of latex2sympy2_extended, the parts that matter for
//! answers) and a recursive-descent parser for the math that answers use.
//! Anything the parser does not understand is a parse failure, as an
//! exception is in the reference, and extraction moves on.

use std::sync::LazyLock;

use regex::Regex;

use super::expr::{Const, Expr, RelOp};
use super::num::Num;
use crate::eval::extract::is_canonical_int;

/// Deepest nesting of groups, and longest chain of postfix operators, in
/// an answer that parses.
const MAX_DEPTH: usize = 200;

fn re(p: &str) -> Regex {
    Regex::new(p).expect("valid built-in regex")
}

// ─── normalisation ─────────────────────────────────────────────────────────

/// Which `\boxed{}` contents [`normalize`] keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoxedMode {
    /// Every boxed group, joined by commas.
    All,
    /// The last boxed group (and the ones before it joined by a separator).
    Last,
}

/// latex2sympy2_extended's `extract_boxed_content`.
pub fn extract_boxed_content(text: &str, mode: BoxedMode) -> String {
    let b = text.as_bytes();
    let mut results: Vec<String> = Vec::new();
    let mut current = text.len();
    let mut max_pos = text.len();
    let mut last_boxed_start: Option<usize> = None;
    loop {
        let boxed = text[..current].rfind("\\boxed");
        let fbox = text[..current].rfind("\\fbox");
        let (start, cmd_len) = match (boxed, fbox) {
            (None, None) => break,
            (Some(x), Some(y)) if y > x => (y, 5),
            (Some(x), _) => (x, 6),
            (None, Some(y)) => (y, 5),
        };
        let mut next = start + cmd_len;
        while next < max_pos && (b[next] as char).is_ascii_whitespace() {
            next += 1;
        }
        if next >= max_pos {
            break;
        }
        if b[next] == b'{' {
            let mut depth = 1;
            let mut end = None;
            let mut i = next;
            while i + 1 < max_pos {
                i += 1;
                match b[i] {
                    b'{' => depth += 1,
                    b'}' => {
                        depth -= 1;
                        if depth == 0 {
                            end = Some(i);
                            break;
                        }
                    }
                    _ => {}
                }
            }
            let Some(end) = end else {
                if results.is_empty() {
                    results.push(text[next..].to_string());
                }
                break;
            };
            let content = text[next + 1..end].trim().to_string();
            if mode == BoxedMode::Last
                && let Some(lb) = last_boxed_start
            {
                let between = text.get(end + 1..lb).unwrap_or("");
                let sep = between.contains("and")
                    || between.contains("or")
                    || between.contains(',')
                    || between.contains(';');
                if !(between.chars().count() < 70 && sep) {
                    break;
                }
            }
            results.push(content);
            last_boxed_start = Some(start);
            max_pos = start;
        } else {
            if results.is_empty() {
                results.push(text[next..].to_string());
            }
            break;
        }
        current = start;
    }
    if results.is_empty() {
        return text.to_string();
    }
    results.reverse();
    results.join(",")
}

/// math_verify's default `normalize_latex` (basic LaTeX clean-up, units,
/// malformed operators, nits; boxed content extracted).
pub fn normalize(text: &str, boxed: BoxedMode) -> String {
    static LEFT: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\\m?left(\\\{|\{|\\\||\||\[|\(|\\lbrace|\\lbrack|\\vert|\\lvert|\\lceil|\\lfloor|\\langle)",
        )
    });
    static RIGHT: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\\m?right(\\\}|\}|\\\||\||\]|\)|\\rbrace|\\rbrack|\\vert|\\rvert|\\rceil|\\rfloor|\\rangle)",
        )
    });
    static REMOVE: LazyLock<Regex> =
        LazyLock::new(|| re(r#"\\mathrm\{th\}|\\!\s*|\\text\s*\{\s*\}|\\\$|\$|\\displaystyle"#));
    static QUOTES: LazyLock<Regex> = LazyLock::new(|| re(r#"(^|[^\\])["']"#));
    static MATH_TEXT: LazyLock<Regex> =
        LazyLock::new(|| re(r"\\math(?:rm|it|bf)|\\text(?:normal|bf|it|rm)"));
    static FRAC: LazyLock<Regex> = LazyLock::new(|| re(r"\\[dtc]frac"));
    static AND_OR: LazyLock<Regex> =
        LazyLock::new(|| re(r"(^|[^a-zA-Z])(,?\s*(?:and|or))($|[^a-zA-Z])"));
    static TEXT_AND: LazyLock<Regex> = LazyLock::new(|| re(r",?\s*\\text\{\s*(?:and|or)\s*\}"));
    static BACKSLASH_SPACE: LazyLock<Regex> = LazyLock::new(|| re(r"(^|[^\\])\\\s"));
    static LDOTS: LazyLock<Regex> = LazyLock::new(|| re(r",?\\ldots"));
    static PERCENT: LazyLock<Regex> = LazyLock::new(|| {
        re(r"\s*percentage|\\text\{percentage\}|\s*percent|\\text\{percent\}|\s*pct|\\text\{pct\}")
    });
    static BRACED_COMMA: LazyLock<Regex> = LazyLock::new(|| re(r"\s*\{\s*,\s*\}"));
    static UNIT_TEXT: LazyLock<Regex> =
        LazyLock::new(|| re(r"(\\(?:text|mbox)\{.*?\})(\^\d|\{\^\d\})?$"));
    static EMPTY_TEXT: LazyLock<Regex> = LazyLock::new(|| re(r"\\text\s*\{\s*\}"));
    static SLASH_CMD: LazyLock<Regex> = LazyLock::new(|| re(r"\\\\([a-zA-Z])"));
    static MAL_POW: LazyLock<Regex> = LazyLock::new(|| re(r"\^\s?\((.*?)\)"));
    static MAL_FRAC_DD: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s?(\d)\s?(\d+)"));
    static MAL_FRAC_BD: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s?\{(.*?)\}\s?(\d)"));
    static MAL_FRAC_DB: LazyLock<Regex> = LazyLock::new(|| re(r"\\frac\s?(\d)\s?\{(.*?)\}"));
    static MAL_SQRT: LazyLock<Regex> = LazyLock::new(|| re(r"\\sqrt\s?(\d)"));

    // Each rewrite runs only when its trigger text is present (most answers
    // need none of them).
    let sub = |t: String, trigger: &[&str], re: &Regex, with: &str| -> String {
        if trigger.iter().any(|k| t.contains(k)) {
            re.replace_all(&t, with).into_owned()
        } else {
            t
        }
    };
    let mut t = if text.contains("\\boxed") || text.contains("\\fbox") {
        extract_boxed_content(text, boxed)
    } else {
        text.to_string()
    };
    if t.contains("\\mathrm") || t.contains("{\\rm") {
        t = t
            .replace("\\mathrm{T}", "T")
            .replace("\\mathrm{d}", "d")
            .replace("{\\rm d}", "d");
    }
    t = sub(t, &["left"], &LEFT, "${1}");
    t = sub(t, &["right"], &RIGHT, "${1}");
    t = sub(
        t,
        &["\\mathrm{th}", "\\!", "\\text", "$", "\\displaystyle"],
        &REMOVE,
        "",
    );
    t = sub(t, &["\"", "'"], &QUOTES, "${1}");
    t = sub(t, &["\\math", "\\text"], &MATH_TEXT, "\\text");
    t = sub(t, &["frac"], &FRAC, "\\frac");
    t = t
        .replace(" .", " 0.")
        .replace("{.", "{0.")
        .replace("~=", "\\approx");
    // `14{,}916`: a braced comma is a plain one.
    t = sub(t, &[","], &BRACED_COMMA, ",");
    t = sub(t, &["\\text"], &TEXT_AND, ",");
    t = sub(t, &["and", "or"], &AND_OR, "${1},${3}");
    t = sub(t, &["\\"], &BACKSLASH_SPACE, "${1} ");
    if t.contains("infinity") {
        t = t.replace("infinity", "\\infty");
    }
    t = sub(t, &["ldots"], &LDOTS, " ");
    t = sub(t, &["percent", "pct"], &PERCENT, "\\%");
    if t.contains(" sqrt") {
        t = t.replace(" sqrt", "\\sqrt");
    }
    if t.contains(['\n', '\t']) {
        t = t.replace(['\n', '\t'], " ");
    }
    if !t.contains("matrix") {
        t = sub(t, &["\\\\"], &SLASH_CMD, "\\${1}");
    }
    // Units: a trailing \text{…} (optionally squared) goes.
    if t.contains("\\text") || t.contains("\\mbox") {
        let stripped = UNIT_TEXT.replace_all(&t, "");
        let stripped = stripped.trim();
        if !stripped.is_empty() && stripped != t {
            t = stripped.to_string();
        }
        t = EMPTY_TEXT.replace_all(&t, " ").into_owned();
    }
    // Nits.
    if t.starts_with('.') {
        t.insert(0, '0');
    }
    if t == "0.5" {
        t = "\\frac{1}{2}".into();
    }
    // Malformed operators.
    t = sub(t, &["^"], &MAL_POW, "^{${1}}");
    if t.contains("\\frac") {
        t = MAL_FRAC_DD
            .replace_all(&t, "\\frac{${1}}{${2}}")
            .into_owned();
        t = MAL_FRAC_BD
            .replace_all(&t, "\\frac{${1}}{${2}}")
            .into_owned();
        t = MAL_FRAC_DB
            .replace_all(&t, "\\frac{${1}}{${2}}")
            .into_owned();
    }
    t = sub(t, &["\\sqrt"], &MAL_SQRT, "\\sqrt{${1}}");
    t = fix_a_slash_b(&t);
    t
}

/// math_verify's `should_treat_as_complex`: a standalone `i` and the other
/// complex-number, matrix and vector markers.
pub fn treat_as_complex(latex: &str) -> bool {
    static COMPLEX: LazyLock<Regex> = LazyLock::new(|| {
        re(
            r"\\mathbb\{C\}|\\i\b|\bi\b|\\text\{i\}|\\mathrm\{i\}|\\imath\b|\\det|\\operatorname\{tr\}|\\operatorname\{rank\}|\\text\{rank\}|\\arg\{|\\Re\{|\\Im\{|\\operatorname\{Re\}|\\operatorname\{Im\}|\\text\{Re\}|\\text\{Im\}",
        )
    });
    latex.contains(['i', 'C', 'd', 'r', 'R', 'I']) && COMPLEX.is_match(latex)
}

/// `a/b` → `\\frac{a}{b}` for two canonical integers.
fn fix_a_slash_b(t: &str) -> String {
    let mut it = t.split('/');
    if let (Some(a), Some(b), None) = (it.next(), it.next(), it.next())
        && is_canonical_int(a)
        && is_canonical_int(b)
    {
        return format!("\\frac{{{a}}}{{{b}}}");
    }
    t.to_string()
}

// ─── tokens ────────────────────────────────────────────────────────────────

#[derive(Debug, Clone, PartialEq)]
enum Tok {
    Num(String),
    Letter(char),
    Cmd(String),
    Sym(char),
}

/// Words latex2sympy's lexer reads as matrix or function names wherever
/// they occur in a run of letters (`north` holds `orth`, `street` holds
/// `tr`): such a run is not a product of symbols and the parse fails.
const LEXER_WORDS: [&str; 26] = [
    "tr",
    "orth",
    "eig",
    "svd",
    "diag",
    "nullspace",
    "rref",
    "hstack",
    "vstack",
    "norm",
    "rank",
    "cols",
    "rows",
    "eye",
    "zeros",
    "ones",
    "gcd",
    "lcm",
    "floor",
    "ceil",
    "arsinh",
    "arcsinh",
    "arcosh",
    "arccosh",
    "artanh",
    "arctanh",
];

/// Commands whose braced argument is raw text, not math.
const RAW_GROUPS: [&str; 13] = [
    "text",
    "mbox",
    "textbf",
    "textit",
    "textrm",
    "textnormal",
    "operatorname",
    "begin",
    "end",
    "mathbb",
    "mathrm",
    "mathit",
    "mathbf",
];

fn tokenize(s: &str) -> Option<Vec<Tok>> {
    let chars: Vec<char> = s.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    // Brace depth inside a raw-text group, if in one.
    let mut raw: Option<usize> = None;
    while i < chars.len() {
        let c = chars[i];
        match (c, raw) {
            ('{', Some(d)) => raw = Some(d + 1),
            ('}', Some(1)) => raw = None,
            ('}', Some(d)) => raw = Some(d - 1),
            ('{', None) if matches!(out.last(), Some(Tok::Cmd(n)) if RAW_GROUPS.contains(&n.as_str())) => {
                raw = Some(1)
            }
            _ => {}
        }
        if raw.is_none()
            && c.is_ascii_alphabetic()
            && (i == 0 || !chars[i - 1].is_ascii_alphabetic())
        {
            let run: String = chars[i..]
                .iter()
                .take_while(|c| c.is_ascii_alphabetic())
                .collect();
            if LEXER_WORDS.iter().any(|w| run.contains(w)) {
                return None;
            }
        }
        if c.is_whitespace() || c == '~' {
            i += 1;
        } else if c.is_ascii_digit()
            || (c == '.' && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit()))
        {
            let start = i;
            while i < chars.len() && chars[i].is_ascii_digit() {
                i += 1;
            }
            if i < chars.len()
                && chars[i] == '.'
                && chars.get(i + 1).is_some_and(|d| d.is_ascii_digit())
            {
                i += 1;
                while i < chars.len() && chars[i].is_ascii_digit() {
                    i += 1;
                }
            }
            out.push(Tok::Num(chars[start..i].iter().collect()));
        } else if c == '\\' {
            i += 1;
            let start = i;
            while i < chars.len() && chars[i].is_ascii_alphabetic() {
                i += 1;
            }
            if i == start {
                // \{ \} \, \; \% \\ etc.; `\(` and `\)` are parentheses.
                let &n = chars.get(i)?;
                i += 1;
                if n == '(' || n == ')' {
                    out.push(Tok::Sym(n));
                } else {
                    out.push(Tok::Cmd(n.to_string()));
                }
            } else {
                out.push(Tok::Cmd(chars[start..i].iter().collect()));
            }
        } else if c.is_ascii_alphabetic() {
            out.push(Tok::Letter(c));
            i += 1;
        } else if c == 'π' {
            out.push(Tok::Cmd("pi".into()));
            i += 1;
        } else if c == '∞' {
            out.push(Tok::Cmd("infty".into()));
            i += 1;
        } else if "+-*/^_()[]{}=<>,!|%&:;'".contains(c)
            || c == '×'
            || c == '÷'
            || c == '≤'
            || c == '≥'
            || c == '≠'
        {
            out.push(Tok::Sym(c));
            i += 1;
        } else {
            return None;
        }
    }
    Some(out)
}

// ─── parser ────────────────────────────────────────────────────────────────

/// Parses normalised LaTeX math into an [`Expr`]; `None` where the input is
/// not math this parser understands.
pub fn parse(latex: &str) -> Option<Expr> {
    static THOUSANDS: LazyLock<Regex> =
        LazyLock::new(|| re(r"^\s*-?\d{1,3}(?:,\d{3})+(?:\.\d+)?\s*$"));
    if THOUSANDS.is_match(latex) {
        // "35,280" is one number with a thousands separator, not a list.
        return Num::parse_decimal(&latex.replace(',', "")).map(Expr::Num);
    }
    let toks = tokenize(latex)?;
    if toks.is_empty() {
        return None;
    }
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
    };
    let e = p.list()?;
    (p.pos == p.toks.len()).then_some(e)
}

struct Parser {
    toks: Vec<Tok>,
    pos: usize,
    depth: usize,
}

const FUNCS: [&str; 17] = [
    "sin", "cos", "tan", "cot", "sec", "csc", "arcsin", "arccos", "arctan", "sinh", "cosh", "tanh",
    "ln", "log", "exp", "floor", "ceil",
];

const GREEK: [&str; 27] = [
    "alpha",
    "beta",
    "gamma",
    "delta",
    "theta",
    "lambda",
    "mu",
    "sigma",
    "phi",
    "omega",
    "tau",
    "rho",
    "epsilon",
    "varepsilon",
    "varphi",
    "Delta",
    "Omega",
    "Gamma",
    "Theta",
    "psi",
    "chi",
    "eta",
    "zeta",
    "xi",
    "nu",
    "kappa",
    "Sigma",
];

impl Parser {
    fn peek(&self) -> Option<&Tok> {
        self.toks.get(self.pos)
    }

    fn is_sym(&self, c: char) -> bool {
        self.peek() == Some(&Tok::Sym(c))
    }

    fn is_cmd(&self, name: &str) -> bool {
        matches!(self.peek(), Some(Tok::Cmd(n)) if n == name)
    }

    fn eat_sym(&mut self, c: char) -> bool {
        if self.is_sym(c) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn eat_cmd(&mut self, name: &str) -> bool {
        if self.is_cmd(name) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    fn skip_spacing(&mut self) {
        while matches!(self.peek(), Some(Tok::Cmd(n)) if [",", ";", ":", "quad", "qquad", " ", "!"].contains(&n.as_str()))
        {
            self.pos += 1;
        }
    }

    /// Top level: a comma list becomes a set of its items; `;` separates
    /// groups, and groups of several items become tuples
    /// (`p=5,q=2;p=7,q=2` is `{(p=5, q=2), (p=7, q=2)}`), as latex2sympy's
    /// `convert_elements_to_set_or_tuple` does.
    fn list(&mut self) -> Option<Expr> {
        let mut groups = vec![vec![self.relation()?]];
        loop {
            if self.eat_sym(',') {
                groups.last_mut()?.push(self.relation()?);
            } else if self.eat_sym(';') {
                groups.push(vec![self.relation()?]);
            } else {
                break;
            }
        }
        if groups.len() == 1 {
            let mut items = groups.pop()?;
            return Some(if items.len() == 1 {
                items.pop()?
            } else {
                Expr::Set(items)
            });
        }
        if groups.iter().all(|g| g.len() == 1) {
            return Some(Expr::Set(groups.into_iter().flatten().collect()));
        }
        Some(Expr::Set(groups.into_iter().map(Expr::Tuple).collect()))
    }

    fn rel_op(&mut self) -> Option<RelOp> {
        // ASCII `>=`, `<=` and `!=`, as latex2sympy's lexer reads them.
        let two = |c: char| self.toks.get(self.pos + 1) == Some(&Tok::Sym('=')) && self.is_sym(c);
        for (c, op) in [('>', RelOp::Ge), ('<', RelOp::Le), ('!', RelOp::Ne)] {
            if two(c) {
                self.pos += 2;
                return Some(op);
            }
        }
        let op = match self.peek()? {
            Tok::Sym('=') => RelOp::Eq,
            Tok::Sym('<') => RelOp::Lt,
            Tok::Sym('>') => RelOp::Gt,
            Tok::Sym('≤') => RelOp::Le,
            Tok::Sym('≥') => RelOp::Ge,
            Tok::Sym('≠') => RelOp::Ne,
            Tok::Cmd(c) => match c.as_str() {
                "le" | "leq" | "leqslant" => RelOp::Le,
                "ge" | "geq" | "geqslant" => RelOp::Ge,
                "ne" | "neq" => RelOp::Ne,
                // `x \in S` is read as `x = S` (latex2sympy's
                // interpret_contains_as_eq).
                "in" => RelOp::Eq,
                "gt" => RelOp::Gt,
                "lt" => RelOp::Lt,
                _ => return None,
            },
            _ => return None,
        };
        self.pos += 1;
        Some(op)
    }

    fn relation(&mut self) -> Option<Expr> {
        let mut first = self.union()?;
        // `a \approx b` is b when a is a name (`x \approx 11`), else a
        // (`\pi \approx 3.14`): latex2sympy keeps the exact side.
        while self.eat_cmd("approx") {
            let rhs = self.union()?;
            if first.only_symbols() {
                first = rhs;
            }
        }
        let mut parts = Vec::new();
        let mut lhs = first.clone();
        while let Some(op) = self.rel_op() {
            let rhs = self.union()?;
            parts.push(Expr::Rel(op, Box::new(lhs), Box::new(rhs.clone())));
            lhs = rhs;
        }
        Some(match parts.len() {
            0 => first,
            1 => parts.pop()?,
            _ => Expr::And(parts),
        })
    }

    fn union(&mut self) -> Option<Expr> {
        let mut acc = self.expr()?;
        loop {
            if self.eat_cmd("cup") {
                let next = self.expr()?;
                acc = match acc {
                    Expr::Union(mut parts) => {
                        parts.push(next);
                        Expr::Union(parts)
                    }
                    a => Expr::Union(vec![a, next]),
                };
            } else if self.eat_cmd("setminus") {
                let next = self.expr()?;
                acc = Expr::Func("setminus".into(), vec![acc, next]);
            } else {
                return Some(acc);
            }
        }
    }

    fn expr(&mut self) -> Option<Expr> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return None;
        }
        let mut terms = Vec::new();
        // `\pm b` is the set {-b, b} and `a \pm b` is {a - b, a + b}
        // (latex2sympy; `\mp` alike); nothing may follow.
        if self.eat_cmd("pm") || self.eat_cmd("mp") {
            let t = self.term()?;
            self.depth -= 1;
            return Some(Expr::Set(vec![Expr::negate(t.clone()), t]));
        }
        let neg = if self.eat_sym('-') {
            true
        } else {
            self.eat_sym('+');
            false
        };
        let t = self.term()?;
        terms.push(if neg { Expr::negate(t) } else { t });
        loop {
            self.skip_spacing();
            if self.eat_cmd("pm") || self.eat_cmd("mp") {
                let t = self.term()?;
                let base = if terms.len() == 1 {
                    terms.pop()?
                } else {
                    Expr::Add(terms)
                };
                self.depth -= 1;
                return Some(Expr::Set(vec![
                    Expr::minus(base.clone(), t.clone()),
                    Expr::Add(vec![base, t]),
                ]));
            }
            if self.eat_sym('+') {
                terms.push(self.term()?);
            } else if self.eat_sym('-') {
                let t = self.term()?;
                terms.push(Expr::negate(t));
            } else {
                break;
            }
        }
        self.depth -= 1;
        Some(if terms.len() == 1 {
            terms.pop()?
        } else {
            Expr::Add(terms)
        })
    }

    fn starts_atom(&self) -> bool {
        match self.peek() {
            Some(Tok::Num(_)) | Some(Tok::Letter(_)) => true,
            Some(Tok::Sym(c)) => matches!(c, '(' | '[' | '{'),
            Some(Tok::Cmd(c)) => {
                FUNCS.contains(&c.as_str())
                    || GREEK.contains(&c.as_str())
                    || matches!(
                        c.as_str(),
                        "frac"
                            | "dfrac"
                            | "tfrac"
                            | "cfrac"
                            | "sqrt"
                            | "pi"
                            | "infty"
                            | "{"
                            | "mbox"
                            | "operatorname"
                            | "begin"
                            | "mathbb"
                            | "lfloor"
                            | "lceil"
                            | "binom"
                            | "dbinom"
                            | "tbinom"
                            | "sum"
                            | "prod"
                            | "max"
                            | "min"
                            | "det"
                    )
            }
            None => false,
        }
    }

    fn term(&mut self) -> Option<Expr> {
        let mut factors = vec![self.unary()?];
        loop {
            self.skip_spacing();
            if self.eat_sym('*')
                || self.eat_cmd("cdot")
                || self.eat_cmd("times")
                || self.eat_sym('×')
            {
                factors.push(self.unary()?);
            } else if self.eat_sym('/')
                || self.eat_cmd("div")
                || self.eat_sym('÷')
                || self.eat_sym(':')
            {
                let d = self.unary()?;
                let n = if factors.len() == 1 {
                    factors.pop()?
                } else {
                    Expr::Mul(std::mem::take(&mut factors))
                };
                factors.push(Expr::divide(n, d));
            } else if self.is_cmd("text") {
                // A unit after a value: \text{ cm}.
                let save = self.pos;
                self.pos += 1;
                if self.group_raw().is_none() {
                    self.pos = save;
                    break;
                }
            } else if self.starts_atom() && !self.is_sym('|') {
                let next = self.postfix()?;
                // A mixed number: 2\frac{1}{2} is 5/2.
                let mixed = self.toks.get(self.pos.wrapping_sub(1)).is_some()
                    && factors.len() == 1
                    && matches!(factors[0], Expr::Num(Num::Rat(_, 1)))
                    && matches!(next, Expr::Num(Num::Rat(_, d)) if d != 1);
                if mixed {
                    let whole = factors.pop()?;
                    if let (Expr::Num(w), Expr::Num(f)) = (&whole, &next) {
                        let sum = if w.to_f64() < 0.0 {
                            w.add(f.neg())
                        } else {
                            w.add(*f)
                        };
                        factors.push(Expr::Num(sum));
                    }
                } else {
                    factors.push(next);
                }
            } else {
                break;
            }
        }
        Some(if factors.len() == 1 {
            factors.pop()?
        } else {
            Expr::Mul(factors)
        })
    }

    fn unary(&mut self) -> Option<Expr> {
        // A run of signs in a loop, not by recursion: model text can hold
        // thousands of them, and only the parity matters (`--1` is 1).
        let mut negative = false;
        loop {
            if self.eat_sym('-') {
                negative = !negative;
            } else if !self.eat_sym('+') {
                break;
            }
        }
        let e = self.postfix()?;
        Some(if negative { Expr::negate(e) } else { e })
    }

    fn postfix(&mut self) -> Option<Expr> {
        let mut base = self.atom()?;
        // Each operator wraps the tree once more; a chain as long as the
        // nesting limit (`2^2^2^…`, `3!!!…`) is not an answer, and deeper
        // trees would exhaust the stack when evaluated.
        let mut wraps = 0;
        loop {
            wraps += 1;
            if wraps > MAX_DEPTH {
                return None;
            }
            if self.eat_sym('^') {
                if self.eat_cmd("circ") {
                    continue;
                }
                if self.is_sym('{')
                    && matches!(self.toks.get(self.pos + 1), Some(Tok::Cmd(c)) if c == "circ")
                    && self.toks.get(self.pos + 2) == Some(&Tok::Sym('}'))
                {
                    self.pos += 3;
                    continue;
                }
                let e = self.script_arg()?;
                base = Expr::Pow(Box::new(base), Box::new(e));
            } else if self.is_sym('!') && self.toks.get(self.pos + 1) != Some(&Tok::Sym('=')) {
                self.pos += 1;
                base = Expr::Func("factorial".into(), vec![base]);
            } else if self.eat_cmd("%") || self.eat_sym('%') {
                base = Expr::Pct(Box::new(base));
            } else if self.is_sym('_') {
                // Subscripts name a new symbol: x_1, 1204_9.
                self.pos += 1;
                let sub = self.script_raw()?;
                // A subscript on a number is a base (4343_6) and is ignored,
                // as latex2sympy does.
                base = match base {
                    Expr::Sym(s) => Expr::Sym(format!("{s}_{sub}")),
                    n @ Expr::Num(_) => n,
                    _ => return None,
                };
            } else if self.eat_sym('\'') {
                base = match base {
                    Expr::Sym(s) => Expr::Sym(format!("{s}'")),
                    _ => return None,
                };
            } else {
                break;
            }
        }
        Some(base)
    }

    /// The argument of `^`: a braced group or one token.
    fn script_arg(&mut self) -> Option<Expr> {
        if self.eat_sym('{') {
            let e = self.list()?;
            self.eat_sym('}').then_some(e)
        } else {
            match self.peek()?.clone() {
                Tok::Num(n) => {
                    self.pos += 1;
                    // ^23 means ^2 · 3 in LaTeX; keep the first digit.
                    let first: String = n.chars().take(1).collect();
                    if n.len() > 1 {
                        let rest = n[1..].to_string();
                        self.toks.insert(self.pos, Tok::Num(rest));
                    }
                    Some(Expr::Num(Num::parse_decimal(&first)?))
                }
                _ => self.atom(),
            }
        }
    }

    /// The raw text of a subscript: a braced group or one token.
    fn script_raw(&mut self) -> Option<String> {
        if self.is_sym('{') {
            return self.group_raw();
        }
        let t = self.peek()?.clone();
        self.pos += 1;
        Some(match t {
            Tok::Num(n) => n.chars().take(1).collect(),
            Tok::Letter(c) => c.to_string(),
            Tok::Cmd(c) => c,
            Tok::Sym(c) => c.to_string(),
        })
    }

    /// A `{…}` group as raw text (for \text and subscripts).
    fn group_raw(&mut self) -> Option<String> {
        if !self.eat_sym('{') {
            return None;
        }
        let mut depth = 1;
        let mut out = String::new();
        while let Some(t) = self.peek().cloned() {
            self.pos += 1;
            match t {
                Tok::Sym('{') => {
                    depth += 1;
                    out.push('{');
                }
                Tok::Sym('}') => {
                    depth -= 1;
                    if depth == 0 {
                        return Some(out);
                    }
                    out.push('}');
                }
                Tok::Num(n) => out.push_str(&n),
                Tok::Letter(c) | Tok::Sym(c) => out.push(c),
                Tok::Cmd(c) => {
                    out.push('\\');
                    out.push_str(&c);
                }
            }
        }
        None
    }

    fn braced(&mut self) -> Option<Expr> {
        if !self.eat_sym('{') {
            // \frac12-style single tokens are fixed by normalisation; accept one atom.
            return self.atom();
        }
        let e = self.list()?;
        self.eat_sym('}').then_some(e)
    }

    fn atom(&mut self) -> Option<Expr> {
        self.skip_spacing();
        let t = self.peek()?.clone();
        self.pos += 1;
        match t {
            Tok::Num(n) => Some(Expr::Num(Num::parse_decimal(&n)?)),
            Tok::Letter('e') => Some(Expr::Const(Const::E)),
            // latex2sympy lower-cases symbol names ("C" and "c" are one symbol);
            // `i` stays a symbol.
            Tok::Letter(c) => Some(Expr::Sym(c.to_ascii_lowercase().to_string())),
            Tok::Sym('(') => self.bracketed(false),
            Tok::Sym('[') => self.bracketed(true),
            Tok::Sym('{') => {
                let e = self.list()?;
                self.eat_sym('}').then_some(e)
            }
            Tok::Sym('|') => {
                let e = self.expr()?;
                self.eat_sym('|').then(|| Expr::Func("abs".into(), vec![e]))
            }
            Tok::Cmd(c) => self.command(&c),
            _ => None,
        }
    }

    /// `( … )` or `[ … ]`: a group, an interval or a tuple.
    fn bracketed(&mut self, square: bool) -> Option<Expr> {
        let mut items = vec![self.relation()?];
        let mut semicolons = false;
        loop {
            if self.eat_sym(',') {
                items.push(self.relation()?);
            } else if self.eat_sym(';') {
                semicolons = true;
                items.push(self.relation()?);
            } else {
                break;
            }
        }
        if semicolons {
            // `(1; 2)` is a tuple, never an interval.
            let closed = if square {
                self.eat_sym(']')
            } else {
                self.eat_sym(')')
            };
            return closed.then_some(Expr::Tuple(items));
        }
        let close_round = self.eat_sym(')');
        let close_square = !close_round && self.eat_sym(']');
        if !close_round && !close_square {
            return None;
        }
        match items.len() {
            1 if square == close_square => items.pop(),
            1 => None,
            2 => {
                let b = items.pop()?;
                let a = items.pop()?;
                Some(Expr::Interval(
                    Box::new(a),
                    Box::new(b),
                    !square,
                    close_round,
                ))
            }
            _ if square == close_square => Some(Expr::Tuple(items)),
            _ => None,
        }
    }

    fn command(&mut self, c: &str) -> Option<Expr> {
        match c {
            "frac" | "dfrac" | "tfrac" | "cfrac" => {
                let n = self.braced()?;
                let d = self.braced()?;
                Some(Expr::divide(n, d))
            }
            "sqrt" => {
                let index = if self.eat_sym('[') {
                    let e = self.expr()?;
                    if !self.eat_sym(']') {
                        return None;
                    }
                    Some(e)
                } else {
                    None
                };
                let x = self.braced()?;
                let exp = match index {
                    Some(k) => Expr::divide(Expr::Num(Num::int(1)), k),
                    None => Expr::Num(Num::rat(1, 2)?),
                };
                Some(Expr::Pow(Box::new(x), Box::new(exp)))
            }
            "pi" => Some(Expr::Const(Const::Pi)),
            "mathbb" => {
                let raw = self.group_raw()?;
                if raw == "R" {
                    // sympy's Reals is Interval(-oo, oo).
                    let inf = || Box::new(Expr::Const(Const::Inf));
                    return Some(Expr::Interval(
                        Box::new(Expr::negate(*inf())),
                        inf(),
                        true,
                        true,
                    ));
                }
                Some(Expr::Sym(format!("mathbb_{raw}")))
            }
            "emptyset" => Some(Expr::Set(Vec::new())),
            "infty" | "infin" => Some(Expr::Const(Const::Inf)),
            "e" => Some(Expr::Const(Const::E)),
            "{" => {
                let mut items = Vec::new();
                if !self.eat_cmd("}") {
                    items.push(self.relation()?);
                    while self.eat_sym(',') {
                        items.push(self.relation()?);
                    }
                    if !self.eat_cmd("}") {
                        return None;
                    }
                }
                Some(Expr::Set(items))
            }
            "text" | "mbox" | "textbf" | "operatorname" => {
                // latex2sympy makes the text a symbol, digits included
                // (`\text{3}` is the symbol "3", not the number 3).
                let raw = self.group_raw()?;
                let raw = raw.trim();
                if raw.is_empty() {
                    return None;
                }
                if FUNCS.contains(&raw) {
                    return self.function(raw);
                }
                // Spaces and enclosing parentheses go, case is folded:
                // \text{(C)} is the symbol "c", \text{3 cm} is "3cm".
                let name: String = raw.chars().filter(|c| !c.is_whitespace()).collect();
                let name = name
                    .strip_prefix('(')
                    .and_then(|n| n.strip_suffix(')'))
                    .unwrap_or(&name);
                Some(Expr::Sym(name.to_lowercase()))
            }
            "begin" => self.matrix(),
            "max" | "min" => {
                if !self.eat_sym('(') {
                    return None;
                }
                let mut args = vec![self.expr()?];
                while self.eat_sym(',') {
                    args.push(self.expr()?);
                }
                self.eat_sym(')').then(|| Expr::Func(c.to_string(), args))
            }
            "det" => {
                // latex2sympy evaluates the determinant while parsing.
                self.skip_spacing();
                match self.atom()? {
                    Expr::Matrix(rows) => determinant(&rows).map(Expr::Num),
                    _ => None,
                }
            }
            "sum" | "prod" => {
                // \sum_{k=a}^{b} body: the body is one product-level term.
                if !self.eat_sym('_') || !self.eat_sym('{') {
                    return None;
                }
                let Some(Tok::Letter(v)) = self.peek().cloned() else {
                    return None;
                };
                self.pos += 1;
                if !self.eat_sym('=') {
                    return None;
                }
                let lo = self.expr()?;
                if !self.eat_sym('}') || !self.eat_sym('^') {
                    return None;
                }
                let hi = self.script_arg()?;
                let body = self.term()?;
                let var = Expr::Sym(v.to_ascii_lowercase().to_string());
                Some(Expr::Func(c.to_string(), vec![body, var, lo, hi]))
            }
            "left" | "right" | "big" | "Big" | "bigg" | "Bigg" => self.atom(),
            g if GREEK.contains(&g) => Some(Expr::Sym(g.to_string())),
            "circ" => Some(Expr::Num(Num::int(1))),
            "lfloor" => {
                let e = self.expr()?;
                self.eat_cmd("rfloor")
                    .then(|| Expr::Func("floor".into(), vec![e]))
            }
            "lceil" => {
                let e = self.expr()?;
                self.eat_cmd("rceil")
                    .then(|| Expr::Func("ceil".into(), vec![e]))
            }
            "binom" | "dbinom" | "tbinom" => {
                let n_expr = self.braced()?;
                let k = self.braced()?.exact()?;
                let n = match n_expr.exact() {
                    Some(n) => n,
                    None => {
                        // binomial(n, k) for a small integer k is the
                        // polynomial n(n-1)…(n-k+1)/k!.
                        let Num::Rat(k, 1) = k else { return None };
                        if !(0..=10).contains(&k) {
                            return None;
                        }
                        let mut factors: Vec<Expr> = (0..k)
                            .map(|j| Expr::minus(n_expr.clone(), Expr::Num(Num::int(j))))
                            .collect();
                        let fact: i128 = (1..=k).product();
                        factors.push(Expr::Num(Num::rat(1, fact)?));
                        return Some(Expr::Mul(factors));
                    }
                };
                let (Num::Rat(n, 1), Num::Rat(k, 1)) = (n, k) else {
                    return None;
                };
                if k < 0 || k > n || n > 60 {
                    return None;
                }
                let mut acc: i128 = 1;
                for j in 0..k {
                    acc = acc * (n - j) / (j + 1);
                }
                Some(Expr::Num(Num::int(acc)))
            }
            f if FUNCS.contains(&f) => self.function(f),
            _ => None,
        }
    }

    fn function(&mut self, name: &str) -> Option<Expr> {
        let mut base = None;
        if name == "log" {
            // latex2sympy: `\log x` is the base-10 logarithm.
            base = Some(if self.eat_sym('_') {
                self.script_arg()?
            } else {
                Expr::Num(Num::int(10))
            });
        }
        let mut power = None;
        if self.eat_sym('^') {
            power = Some(self.script_arg()?);
        }
        let arg = if self.is_sym('(') {
            self.pos += 1;
            let e = self.expr()?;
            if !self.eat_sym(')') {
                return None;
            }
            e
        } else {
            self.postfix()?
        };
        let mut args = vec![arg];
        args.extend(base);
        let f = Expr::Func(name.to_string(), args);
        Some(match power {
            Some(p) => Expr::Pow(Box::new(f), Box::new(p)),
            None => f,
        })
    }

    fn matrix(&mut self) -> Option<Expr> {
        let env = self.group_raw()?;
        if !env.ends_with("matrix") && env != "array" {
            return None;
        }
        if env == "array" && self.is_sym('{') {
            self.group_raw()?;
        }
        let mut rows = vec![Vec::new()];
        loop {
            if self.is_cmd("end") {
                self.pos += 1;
                self.group_raw()?;
                break;
            }
            if self.eat_cmd("\\") {
                rows.push(Vec::new());
                continue;
            }
            if self.eat_sym('&') {
                continue;
            }
            let e = self.relation()?;
            rows.last_mut()?.push(e);
        }
        if rows.last().is_some_and(Vec::is_empty) {
            rows.pop();
        }
        if env == "vmatrix" {
            return determinant(&rows).map(Expr::Num);
        }
        Some(Expr::Matrix(rows))
    }
}

/// The exact determinant of a square matrix of exact numbers (up to 4×4).
fn determinant(rows: &[Vec<Expr>]) -> Option<Num> {
    let n = rows.len();
    if n == 0 || n > 4 || rows.iter().any(|r| r.len() != n) {
        return None;
    }
    let m: Vec<Vec<Num>> = rows
        .iter()
        .map(|r| r.iter().map(Expr::exact).collect::<Option<Vec<_>>>())
        .collect::<Option<_>>()?;
    Some(det_of(&m))
}

fn det_of(m: &[Vec<Num>]) -> Num {
    if m.len() == 1 {
        return m[0][0];
    }
    let mut acc = Num::int(0);
    for (j, &a) in m[0].iter().enumerate() {
        let minor: Vec<Vec<Num>> = m[1..]
            .iter()
            .map(|r| {
                r.iter()
                    .enumerate()
                    .filter(|&(k, _)| k != j)
                    .map(|(_, &x)| x)
                    .collect()
            })
            .collect();
        let term = a.mul(det_of(&minor));
        acc = acc.add(if j % 2 == 0 { term } else { term.neg() });
    }
    acc
}
