//! Parsing of a generated numbered list of questions and the rule filters of
//! SeRL's self-instruction step (`post_process_response` in the reference).

use std::sync::LazyLock;

use regex::Regex;

use super::py;

/// How `parse_instructions` treats letter case.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum CaseMode {
    /// Python `str.capitalize()`: first character upper-cased, every other
    /// character LOWERED (`\Delta` → `\delta`). The reference does this, so it
    /// is the compatible default.
    #[default]
    Capitalize,
    /// Keep the text's case as generated.
    Keep,
}

/// Why an item of the generated list was dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleRejection {
    /// 3 words or fewer.
    TooShort,
    /// More than 150 words.
    TooLong,
    /// Mentions images, graphs, pictures, files, maps, drawing, plotting or "go to".
    Blacklisted,
    /// Starts with "Write a program".
    Program,
    /// Starts with ASCII punctuation.
    Punctuation,
    /// Starts with a non-ASCII character.
    NonAscii,
}

/// One item of a generated list after normalisation, with the rule verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedItem {
    /// Whitespace-collapsed, trimmed (and, by default, capitalised) text.
    pub text: String,
    /// `None` when the item passes every rule.
    pub rejection: Option<RuleRejection>,
}

/// Splits a completion into its numbered items (`\d+\.\s+(.*?)(?=\n\d+\.\s+|$)`,
/// dot matching newlines), normalises each one and applies the rule filters.
/// Returns every item, kept or not, in order.
pub fn parse_items(response: &str, case: CaseMode) -> Vec<ParsedItem> {
    raw_items(response)
        .into_iter()
        .map(|raw| {
            let collapsed = py::split_whitespace(raw).collect::<Vec<_>>().join(" ");
            let text = match case {
                CaseMode::Capitalize => capitalize(&collapsed),
                CaseMode::Keep => collapsed,
            };
            let rejection = rule_rejection(&text);
            ParsedItem { text, rejection }
        })
        .collect()
}

/// The items of a generated numbered list that pass the rule filters, as the
/// reference's `post_process_response` returns them.
pub fn parse_instructions(response: &str, case: CaseMode) -> Vec<String> {
    parse_items(response, case)
        .into_iter()
        .filter(|i| i.rejection.is_none())
        .map(|i| i.text)
        .collect()
}

/// The rule verdict for one normalised instruction.
pub fn rule_rejection(text: &str) -> Option<RuleRejection> {
    static BLACKLIST: LazyLock<Regex> = LazyLock::new(|| {
        let words = [
            "image", "images", "graph", "graphs", "picture", "pictures", "file", "files", "map",
            "maps", "draw", "plot", "go to",
        ];
        let alternatives: Vec<String> = words.iter().map(|w| py::ignore_case(w)).collect();
        Regex::new(&format!(r"\b(?:{})\b", alternatives.join("|"))).expect("valid built-in regex")
    });
    let words = py::split_whitespace(text).count();
    let first = text.chars().next();
    if words <= 3 {
        Some(RuleRejection::TooShort)
    } else if words > 150 {
        Some(RuleRejection::TooLong)
    } else if BLACKLIST.is_match(text) {
        Some(RuleRejection::Blacklisted)
    } else if text.starts_with("Write a program") {
        Some(RuleRejection::Program)
    } else if first.is_some_and(|c| c.is_ascii_punctuation()) {
        Some(RuleRejection::Punctuation)
    } else if first.is_some_and(|c| !c.is_ascii()) {
        Some(RuleRejection::NonAscii)
    } else {
        None
    }
}

/// Python `str.capitalize()`: the first character in title case, the rest
/// lowered.
pub fn capitalize(s: &str) -> String {
    let mut chars = s.chars();
    let Some(first) = chars.next() else {
        return String::new();
    };
    let mut out = titlecase(first);
    out.push_str(&chars.as_str().to_lowercase());
    out
}

/// Unicode title case of one character: `ß` → `Ss`, `ǆ` → `ǅ`; otherwise the
/// upper case with any further characters of a multi-character mapping
/// lowered (the rule behind every such title-case mapping).
fn titlecase(c: char) -> String {
    match c {
        '\u{1c4}'..='\u{1c6}' => '\u{1c5}'.to_string(),
        '\u{1c7}'..='\u{1c9}' => '\u{1c8}'.to_string(),
        '\u{1ca}'..='\u{1cc}' => '\u{1cb}'.to_string(),
        '\u{1f1}'..='\u{1f3}' => '\u{1f2}'.to_string(),
        _ => {
            let mut up = c.to_uppercase();
            let mut out: String = up.next().into_iter().collect();
            out.push_str(&up.collect::<String>().to_lowercase());
            out
        }
    }
}

/// Python `re.findall(r"\d+\.\s+(.*?)(?=\n\d+\.\s+|$)", text, re.DOTALL)`.
fn raw_items(text: &str) -> Vec<&str> {
    static ITEM_START: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\d+\.[\s\x1c-\x1f]+").expect("valid built-in regex"));
    let mut items = Vec::new();
    let mut pos = 0;
    while let Some(m) = ITEM_START.find_at(text, pos) {
        let start = m.end();
        let end = item_end(text, start);
        items.push(&text[start..end]);
        pos = end;
        if pos >= text.len() {
            break;
        }
    }
    items
}

/// The first position at or after `from` where the lookahead
/// `(?=\n\d+\.\s+|$)` holds (Python's `$` also matches before a final `\n`).
fn item_end(text: &str, from: usize) -> usize {
    static NEXT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\n\d+\.[\s\x1c-\x1f]").expect("valid built-in regex"));
    let eos = if text.ends_with('\n') {
        text.len() - 1
    } else {
        text.len()
    };
    match NEXT.find_at(text, from) {
        Some(m) if m.start() < eos => m.start(),
        _ => eos.max(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capitalize_lowers_the_rest() {
        assert_eq!(capitalize("what is \\Delta X?"), "What is \\delta x?");
        assert_eq!(capitalize(""), "");
        assert_eq!(capitalize("ßtraße"), "Sstraße");
        assert_eq!(capitalize("ǆx"), "ǅx");
    }

    #[test]
    fn keep_case_keeps_case() {
        let items = parse_instructions("1. What is $\\Delta$ of ABC here?\n2. x", CaseMode::Keep);
        assert_eq!(items, ["What is $\\Delta$ of ABC here?"]);
    }
}
