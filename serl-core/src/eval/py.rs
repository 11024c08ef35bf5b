//! Small helpers that reproduce Python `str` semantics the reference relies on
//! (`str.strip`, `str.split()`, `str.isspace`, float `repr`).

/// Whether `c` is whitespace for Python's `str.isspace` / `str.split()`.
///
/// Python also counts the information separators U+001C..U+001F, which Rust's
/// `char::is_whitespace` does not.
pub fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

/// Python `str.strip()` with no argument.
pub fn strip(s: &str) -> &str {
    s.trim_matches(is_space)
}

/// Python `str.split()` with no argument.
pub fn split_whitespace(s: &str) -> impl Iterator<Item = &str> {
    s.split(is_space).filter(|w| !w.is_empty())
}

/// Whether `c` is a word character for Python's Unicode `\w`.
pub fn is_word(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// A regex matching `literal` as Python's `re.IGNORECASE` does (ASCII case
/// plus the folds Python adds: `i` ↔ `İ`/`ı`, `k` ↔ `K` (Kelvin), `s` ↔ `ſ`),
/// spelled out so that the regex engine needs no Unicode case tables.
pub fn ignore_case(literal: &str) -> String {
    literal
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            'i' => "[iI\\x{130}\\x{131}]".to_string(),
            'k' => "[kK\\x{212A}]".to_string(),
            's' => "[sS\\x{17F}]".to_string(),
            l if l.is_ascii_lowercase() => format!("[{l}{}]", l.to_ascii_uppercase()),
            ' ' => " ".to_string(),
            other => regex::escape(&other.to_string()),
        })
        .collect()
}

/// Python `repr(float)`: shortest round-trip digits, exponent form outside
/// `1e-4 <= |x| < 1e16`.
pub fn float_repr(x: f64) -> String {
    if x.is_nan() {
        return "nan".into();
    }
    if x.is_infinite() {
        return if x > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let ax = x.abs();
    if ax != 0.0 && !(1e-4..1e16).contains(&ax) {
        // Rust prints e.g. "1e16" / "1.5e-5"; Python writes "1e+16" / "1.5e-05".
        let s = format!("{x:e}");
        let (mant, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = match exp.strip_prefix('-') {
            Some(d) => ('-', d),
            None => ('+', exp),
        };
        let digits = if digits.len() < 2 {
            format!("0{digits}")
        } else {
            digits.to_string()
        };
        return format!("{mant}e{sign}{digits}");
    }
    let s = format!("{x}");
    if s.contains('.') { s } else { format!("{s}.0") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_repr_matches_python() {
        assert_eq!(float_repr(5.25), "5.25");
        assert_eq!(float_repr(5.0), "5.0");
        assert_eq!(float_repr(1e16), "1e+16");
        assert_eq!(float_repr(1.5e-5), "1.5e-05");
        assert_eq!(float_repr(0.1 + 0.2), "0.30000000000000004");
    }

    #[test]
    fn ignore_case_matches_pythons_folds() {
        let re = regex::Regex::new(&format!("^{}$", ignore_case("final answer is"))).unwrap();
        for s in [
            "final answer is",
            "FINAL ANSWER IS",
            "F\u{131}nal an\u{17F}wer \u{130}s",
        ] {
            assert!(re.is_match(s), "{s}");
        }
        assert!(!re.is_match("final  answer is"));
    }

    #[test]
    fn python_whitespace() {
        assert_eq!(strip("\u{1c} a \u{85}"), "a");
        assert_eq!(
            split_whitespace(" a\u{1f}b  c").collect::<Vec<_>>(),
            ["a", "b", "c"]
        );
    }
}
