//! The question-generation prompt of SeRL's self-instruction step and the
//! difficulty filter of its majority-vote step.

use super::py;
use super::rng::Rng;

/// System message of the question-generation prompt (DESIGN.md §1 step 1).
pub const GENERATION_SYSTEM: &str = "Please act as a professional math teacher.\nYour goal is to create high quality math word problems to help students learn math.\nYou only need to create the new question. Please DO NOT solve it.";

/// First line of the user message.
pub const GENERATION_HEADER: &str = "Come up with a series of questions:\n";

/// SeRL's default number of few-shot questions in a prompt.
pub const DEFAULT_SHOTS: usize = 8;

/// At most this many few-shot questions come from the kept pool.
pub const MAX_POOL_SHOTS: usize = 2;

/// SeRL's default difficulty bounds.
pub const DEFAULT_DIFFICULTY_BOUNDS: (f64, f64) = (0.2, 0.8);

/// A chat prompt before the model's chat template is applied.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct GenerationPrompt {
    /// The system message.
    pub system: String,
    /// The user message: the numbered few-shot list ending in `N.`.
    pub user: String,
    /// The few-shot questions in prompt order, normalised.
    pub shots: Vec<String>,
}

/// Builds a question-generation prompt: up to [`MAX_POOL_SHOTS`] questions
/// sampled from `pool` (instructions kept in earlier steps), then seeds
/// until `shots` questions are chosen (fewer when there are not enough),
/// shuffled. Each question is whitespace-collapsed, trimmed and stripped of
/// trailing colons; the list ends with the next number and a dot.
pub fn build_generation_prompt<S: AsRef<str>, P: AsRef<str>>(
    seeds: &[S],
    pool: &[P],
    shots: usize,
    rng: &mut Rng,
) -> GenerationPrompt {
    let mut chosen: Vec<&str> = rng
        .sample_indices(pool.len(), MAX_POOL_SHOTS.min(shots))
        .into_iter()
        .map(|i| pool[i].as_ref())
        .collect();
    let from_seeds = shots.saturating_sub(chosen.len());
    chosen.extend(
        rng.sample_indices(seeds.len(), from_seeds)
            .into_iter()
            .map(|i| seeds[i].as_ref()),
    );
    rng.shuffle(&mut chosen);
    let shots: Vec<String> = chosen.iter().map(|q| normalize_shot(q)).collect();
    GenerationPrompt {
        system: GENERATION_SYSTEM.to_string(),
        user: numbered_list(&shots),
        shots,
    }
}

/// The user message for an explicit list of few-shot questions.
pub fn numbered_list<S: AsRef<str>>(shots: &[S]) -> String {
    let mut user = String::from(GENERATION_HEADER);
    for (i, q) in shots.iter().enumerate() {
        user.push_str(&format!("{}. {}\n", i + 1, q.as_ref()));
    }
    user.push_str(&format!("{}.", shots.len() + 1));
    user
}

/// Whitespace collapsed, trimmed, trailing `:` removed.
pub fn normalize_shot(q: &str) -> String {
    let collapsed = py::split_whitespace(q).collect::<Vec<_>>().join(" ");
    collapsed.trim_end_matches(':').to_string()
}

/// Whether a group with this agreement (mean majority-vote reward) is kept:
/// `lo <= agreement <= hi`, bounds inclusive (with 16 samples and the
/// default bounds, 4 to 12 agreeing responses are kept).
pub fn difficulty_keep(agreement: f64, lo: f64, hi: f64) -> bool {
    lo <= agreement && agreement <= hi
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_text_is_exact() {
        let p = numbered_list(&["What is 1+1?", "Find x"]);
        assert_eq!(
            p,
            "Come up with a series of questions:\n1. What is 1+1?\n2. Find x\n3."
        );
    }

    #[test]
    fn prompt_uses_at_most_two_pool_questions_and_is_seeded() {
        let seeds: Vec<String> = (0..20).map(|i| format!("seed  question {i}:")).collect();
        let pool: Vec<String> = (0..5).map(|i| format!("pool question {i}")).collect();
        let a = build_generation_prompt(&seeds, &pool, 8, &mut Rng::new(7));
        let b = build_generation_prompt(&seeds, &pool, 8, &mut Rng::new(7));
        assert_eq!(a, b);
        assert_eq!(a.shots.len(), 8);
        assert_eq!(a.shots.iter().filter(|s| s.starts_with("pool")).count(), 2);
        assert!(
            a.shots
                .iter()
                .all(|s| !s.ends_with(':') && !s.contains("  "))
        );
        assert!(a.user.ends_with("\n9."));
        let c = build_generation_prompt(&seeds, &pool, 8, &mut Rng::new(8));
        assert_ne!(a.shots, c.shots);
        let few = build_generation_prompt(&seeds[..3], &pool[..0], 8, &mut Rng::new(1));
        assert_eq!(few.shots.len(), 3);
    }

    #[test]
    fn difficulty_bounds_are_inclusive() {
        let (lo, hi) = DEFAULT_DIFFICULTY_BOUNDS;
        let keep: Vec<usize> = (0..=16)
            .filter(|&k| difficulty_keep(k as f64 / 16.0, lo, hi))
            .collect();
        assert_eq!(keep, (4..=12).collect::<Vec<_>>());
        assert!(difficulty_keep(0.2, lo, hi) && difficulty_keep(0.8, lo, hi));
    }
}
