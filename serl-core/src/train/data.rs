//! Instruction and evaluation records (JSONL).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TrainError;

/// A question, with its label when the data has one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// The question text (`problem`, `question` or `instruction` in the file).
    pub problem: String,
    /// The reference answer (`answer`), used for evaluation, the
    /// ground-truth baseline and the label-accuracy metric only.
    pub answer: Option<String>,
}

/// Reads a JSONL file of questions; errors name the file, line and field.
pub fn read_examples(path: &Path, need_answers: bool) -> Result<Vec<Example>, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|e| TrainError::io(path, e))?;
    parse_examples(&text, &path.display().to_string(), need_answers)
}

/// Parses the JSONL `text` of questions; errors name `origin`, the line and
/// the field.
pub fn parse_examples(
    text: &str,
    origin: &str,
    need_answers: bool,
) -> Result<Vec<Example>, TrainError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let at = || format!("{origin}:{}", i + 1);
        let v: serde_json::Value = serde_json::from_str(line)
            .map_err(|e| TrainError::Data(format!("{}: invalid JSON: {e}", at())))?;
        let problem = ["problem", "question", "instruction"]
            .iter()
            .find_map(|k| v.get(*k).and_then(|x| x.as_str()))
            .ok_or_else(|| {
                TrainError::Data(format!(
                    "{}: needs a string field \"problem\" (or \"question\")",
                    at()
                ))
            })?;
        let answer = match v.get("answer") {
            Some(serde_json::Value::String(s)) => Some(s.clone()),
            Some(serde_json::Value::Number(n)) => Some(n.to_string()),
            Some(serde_json::Value::Null) | None => None,
            Some(_) => {
                return Err(TrainError::Data(format!(
                    "{}: field \"answer\" must be a string or number",
                    at()
                )));
            }
        };
        if need_answers && answer.is_none() {
            return Err(TrainError::Data(format!(
                "{}: field \"answer\" is missing (needed here)",
                at()
            )));
        }
        out.push(Example {
            problem: problem.to_string(),
            answer,
        });
    }
    if out.is_empty() {
        return Err(TrainError::Data(format!("{origin}: no records")));
    }
    Ok(out)
}

/// Whether `response` answers `label` correctly (math_verify equivalence;
/// a `\boxed{}` label and a plain one both work).
pub fn is_correct(response: &str, label: &str) -> bool {
    crate::eval::equivalent(response, label)
}
