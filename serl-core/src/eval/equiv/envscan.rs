//! A direct matcher for math_verify's plain LaTeX-environment pattern
//! (`$$…$$`, `\[…\]`, `$…$`, `\(…\)`, ` […] `, `\frac{n}{m}`, an optional
//! percent sign, and up to five more environments joined by "and", "or" or
//! commas). It gives the same matches as the regular expression it replaces
//! (a test runs both over the reference texts), without a backtracking VM:
//! this pattern is tried at every `$` of every response.

/// One matched environment: its kind (the regex group name without prefix),
/// its content, and whether a percent sign follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvGroup<'t> {
    /// `latexDisplayDollar`, `latexInlineDollar`, …
    pub kind: &'static str,
    /// The environment's content (the group's text).
    pub content: &'t str,
    /// Whether a percent group matched after it.
    pub percent: bool,
}

/// A match of the whole pattern at a position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvMatch<'t> {
    /// Byte range of the match.
    pub start: usize,
    /// End of the match (exclusive).
    pub end: usize,
    /// The first environment and the joined ones.
    pub groups: Vec<EnvGroup<'t>>,
}

fn char_at(t: &str, i: usize) -> Option<char> {
    t.get(i..).and_then(|s| s.chars().next())
}

fn prev_char(t: &str, i: usize) -> Option<char> {
    t.get(..i).and_then(|s| s.chars().next_back())
}

/// Python's Unicode `\s`.
pub(super) fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python's Unicode `\d` (decimal digits; ASCII plus the common scripts'
/// digits via `is_numeric`, an approximation outside ASCII).
fn is_digit(c: char) -> bool {
    c.is_ascii_digit() || (!c.is_ascii() && c.is_numeric())
}

/// One environment at `i`: (end, kind, content range).
fn env_at(t: &str, i: usize, boxed: bool) -> Option<(usize, &'static str, usize, usize)> {
    let found = env_at_plain(t, i, boxed)?;
    // In the boxed variant the content must hold `\boxed{`, one character or
    // more, then `}`: the regex's lazy `X*?\boxed\{X+?\}X*?` over the same
    // content (every environment kind has one possible closing here).
    if boxed && !has_boxed_group(&t[found.2..found.3]) {
        return None;
    }
    Some(found)
}

/// Whether `content` holds `\boxed{`, at least one character, then `}`.
fn has_boxed_group(content: &str) -> bool {
    content.match_indices("\\boxed{").any(|(k, m)| {
        let mut rest = content[k + m.len()..].chars();
        rest.next().is_some() && rest.as_str().contains('}')
    })
}

fn env_at_plain(t: &str, i: usize, boxed: bool) -> Option<(usize, &'static str, usize, usize)> {
    let b = t.as_bytes();
    let at = |k: usize, s: &str| t.get(k..).is_some_and(|r| r.starts_with(s));
    let not_escaped = |k: usize| k == 0 || b[k - 1] != b'\\';
    // 1. $$ … $$ and 2. \[ … \]: the content runs to the first closing
    // delimiter (it cannot hold one), which must not be escaped.
    let display = |open: &str, close: &str, kind: &'static str| {
        if !(at(i, open) && not_escaped(i)) {
            return None;
        }
        let from = i + open.len();
        let k = from + t[from..].find(close)?;
        (k > from && b[k - 1] != b'\\').then_some((k + close.len(), kind, from, k))
    };
    if let Some(m) = display("$$", "$$", "latexDisplayDollar") {
        return Some(m);
    }
    if let Some(m) = display("\\[", "\\]", "latexDisplayBracket") {
        return Some(m);
    }
    // 3. $ … $ : units are "\$" or one character other than newline and "$".
    if b.get(i) == Some(&b'$') && not_escaped(i) && !prev_char(t, i).is_some_and(is_digit) {
        let mut k = i + 1;
        let mut units = 0;
        loop {
            if units > 0 && b.get(k) == Some(&b'$') && b[k - 1] != b'\\' {
                return Some((k + 1, "latexInlineDollar", i + 1, k));
            }
            if at(k, "\\$") {
                k += 2;
            } else {
                match char_at(t, k) {
                    Some(c) if c != '\n' && c != '$' => k += c.len_utf8(),
                    _ => break,
                }
            }
            units += 1;
        }
    }
    // 4. \( … \) : units are one character other than newline and "\", or a
    //    "\" not followed by ")".
    if at(i, "\\(") && not_escaped(i) {
        let mut k = i + 2;
        loop {
            if k > i + 2 && at(k, "\\)") && b[k - 1] != b'\\' {
                return Some((k + 2, "latexInlineParenthesis", i + 2, k));
            }
            match char_at(t, k) {
                Some('\\') if !at(k, "\\)") => k += 1,
                Some(c) if c != '\n' && c != '\\' => k += c.len_utf8(),
                _ => break,
            }
        }
    }
    // 5. \s[ … ]\s : the content holds no newline or bracket.
    if let Some(c) = char_at(t, i)
        && is_space(c)
        && at(i + c.len_utf8(), "[")
    {
        let from = i + c.len_utf8() + 1;
        let rel = t[from..].find(['\n', '[', ']']);
        if let Some(r) = rel {
            let k = from + r;
            if k > from
                && b[k] == b']'
                && let Some(after) = char_at(t, k + 1).filter(|c| is_space(*c))
            {
                return Some((k + 1 + after.len_utf8(), "latexInlineBracket", from, k));
            }
        }
    }
    // 6. -?\frac{N}{N} with N = -?\d+(?:[.,]\d+)? (not in the boxed variant)
    if boxed {
        return None;
    }
    let f = if b.get(i) == Some(&b'-') { i + 1 } else { i };
    if at(f, "\\frac{") {
        let number = |k: usize| -> Option<usize> {
            let mut k = k;
            if b.get(k) == Some(&b'-') {
                k += 1;
            }
            let digits = |mut k: usize| {
                let s = k;
                while let Some(c) = char_at(t, k).filter(|c| is_digit(*c)) {
                    k += c.len_utf8();
                }
                (k > s).then_some(k)
            };
            let k = digits(k)?;
            if matches!(b.get(k), Some(b'.' | b','))
                && let Some(k2) = digits(k + 1)
            {
                return Some(k2);
            }
            Some(k)
        };
        let n1 = number(f + 6)?;
        if at(n1, "}{") {
            let n2 = number(n1 + 2)?;
            if at(n2, "}") {
                return Some((n2 + 1, "latexFraction", i, n2 + 1));
            }
        }
    }
    None
}

/// `\s*(?:\\?%|[Pp]ercent|[Pp]ercentage|[Pp]ct)?` from `k`: (end, percent?).
fn percent_after(t: &str, mut k: usize) -> (usize, bool) {
    while let Some(c) = char_at(t, k).filter(|c| is_space(*c)) {
        k += c.len_utf8();
    }
    let rest = &t[k..];
    for p in ["\\%", "%", "Percent", "percent", "Pct", "pct"] {
        if rest.starts_with(p) {
            return (k + p.len(), true);
        }
    }
    (k, false)
}

/// The pattern anchored at `i`.
pub fn match_at(t: &str, i: usize) -> Option<EnvMatch<'_>> {
    match_at_with(t, i, false)
}

/// The boxed variant anchored at `i`: every environment must contain a
/// `\boxed{…}`, and there is no fraction alternative.
pub fn match_boxed_at(t: &str, i: usize) -> Option<EnvMatch<'_>> {
    match_at_with(t, i, true)
}

fn match_at_with(t: &str, i: usize, boxed: bool) -> Option<EnvMatch<'_>> {
    let (end, kind, cs, ce) = env_at(t, i, boxed)?;
    let (mut end, percent) = percent_after(t, end);
    let mut groups = vec![EnvGroup {
        kind,
        content: &t[cs..ce],
        percent,
    }];
    'next: for _ in 0..5 {
        // \s*(?:,?and|,?or|,)\s*{env}
        let mut k = end;
        while let Some(c) = char_at(t, k).filter(|c| is_space(*c)) {
            k += c.len_utf8();
        }
        let rest = &t[k..];
        let sep = [",and", "and", ",or", "or", ","]
            .iter()
            .find(|s| rest.starts_with(**s));
        let Some(sep) = sep else { break };
        let after_sep = k + sep.len();
        let mut ws_end = after_sep;
        let mut last_ws = None;
        while let Some(c) = char_at(t, ws_end).filter(|c| is_space(*c)) {
            last_ws = Some(ws_end);
            ws_end += c.len_utf8();
        }
        // Greedy \s* first; give one whitespace back for " [" environments.
        for pos in std::iter::once(ws_end).chain(last_ws) {
            if let Some((e, kind, cs, ce)) = env_at(t, pos, boxed) {
                let (e, percent) = percent_after(t, e);
                groups.push(EnvGroup {
                    kind,
                    content: &t[cs..ce],
                    percent,
                });
                end = e;
                continue 'next;
            }
        }
        break;
    }
    Some(EnvMatch {
        start: i,
        end,
        groups,
    })
}
