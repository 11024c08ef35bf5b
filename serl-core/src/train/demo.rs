//! The embedded demo's task families: two-step arithmetic word problems with
//! worked solutions that end in `\boxed{answer}`, or only that answer
//! ([`Family`]), and "Come up with a series of questions" lists in SeRL's
//! generation prompt, so a small model learns both to solve and to write
//! problems. Generated from a seed, byte for byte the same on every
//! platform.

use serde_json::json;

use crate::eval::{GENERATION_SYSTEM, Rng, fnv1a, numbered_list};

use super::Example;

const NAMES: &[&str] = &[
    "Ann", "Ben", "Cara", "Dan", "Eva", "Finn", "Gia", "Hugo", "Ivy", "Jon", "Kim", "Leo", "Mia",
    "Ned", "Ola", "Pia",
];
const ITEMS: &[&str] = &[
    "apples", "books", "cards", "coins", "eggs", "pens", "shells", "stamps", "marbles", "cookies",
    "stickers", "rocks",
];

/// One generated problem: question, worked solution, answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Problem {
    /// The question text.
    pub question: String,
    /// Step-by-step solution ending in `\boxed{answer}`.
    pub solution: String,
    /// The answer.
    pub answer: i64,
}

fn pick<'a>(rng: &mut Rng, xs: &[&'a str]) -> &'a str {
    xs[rng.below(xs.len())]
}

fn range(rng: &mut Rng, lo: i64, hi: i64) -> i64 {
    lo + rng.below((hi - lo + 1) as usize) as i64
}

/// The true answer of a question in one of the five templates' shapes, as
/// the model's own problems have them: the three numbers are read in order
/// and the template is recognised by its verb phrase, so mixed-up names and
/// items ("Ola has 90 rocks. Pia gets 59 more…") still get the arithmetic's
/// answer. `None` for anything else. It measures how often a majority vote
/// on self-made problems is right; the trainer never reads it.
pub fn answer_of(question: &str) -> Option<i64> {
    let nums: Vec<i64> = question
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let &[a, b, c] = nums.as_slice() else {
        return None;
    };
    let has = |s: &str| question.contains(s);
    if has(" more and then gives away ") {
        Some(a + b - c)
    } else if has(" bags with ") && has(" left over") {
        Some(a * b + c)
    } else if has("A box holds ") && has(" takes out ") && has(" puts in ") {
        Some(a - b + c)
    } else if has(" red ") && has(" blue ") && has(" times as many ") {
        Some((a + b) * c)
    } else if has(" pages on Monday, ") && has(" pages on Wednesday") {
        Some(a + b + c)
    } else {
        None
    }
}

/// Which problems and solutions the demo data holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Family {
    /// Five two-step templates with one worked-solution format ([`problem`]).
    #[default]
    TwoStep,
    /// Three templates, two of them multiplying a two-digit number by a
    /// digit, each multiplication worked either in one step or split into
    /// tens and units ([`split_problem`]): a short path and a longer one of
    /// easier steps.
    Split,
    /// The [`TwoStep`](Family::TwoStep) problems, with three in five
    /// solutions cut to the bare answer (`The answer is \boxed{84}.`):
    /// a guess, which greedy decoding takes, beside the worked path
    /// ([`direct_problem`]).
    Direct,
}

impl std::str::FromStr for Family {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "two-step" => Ok(Family::TwoStep),
            "split" => Ok(Family::Split),
            "direct" => Ok(Family::Direct),
            _ => Err(format!("unknown family {s:?} (two-step, split or direct)")),
        }
    }
}

/// A random problem of `family`.
pub fn problem_of(family: Family, rng: &mut Rng) -> Problem {
    match family {
        Family::TwoStep => problem(rng),
        Family::Split => split_problem(rng),
        Family::Direct => direct_problem(rng),
    }
}

/// Share of [`Family::Direct`] solutions that state only the answer, in
/// fifths: above one half, so that the supervised model's most likely first
/// token, the one greedy decoding takes, starts the guess.
const DIRECT_FIFTHS: u64 = 3;

/// A random problem of [`Family::Direct`]: [`problem`]'s question, answer
/// and random draws, with the solution cut to its last sentence for
/// [`DIRECT_FIFTHS`] of the questions. Which ones is a hash of the question
/// text rather than a draw, so `demo_data` of this family holds the same
/// questions, seeds and held-out problems as [`Family::TwoStep`]'s with
/// the same seed, and differs only in solutions.
pub fn direct_problem(rng: &mut Rng) -> Problem {
    let mut p = problem(rng);
    if fnv1a(&p.question) % 5 < DIRECT_FIFTHS {
        p.solution = format!("The answer is \\boxed{{{}}}.", p.answer);
    }
    p
}

/// Share of multiplications worked split into tens and units in
/// [`Family::Split`] solutions, in fifths: below one half, so that the
/// supervised model's most likely path, the one greedy decoding takes, is
/// the one-step product.
const SPLIT_FIFTHS: usize = 2;

/// `x * y = x*y.` in one step, or, when `split` and the two-digit operand
/// (`x` or `y`) is not a multiple of ten, split into its tens and units:
/// `Split 47 into 40 and 7. 6 * 40 = 240. 6 * 7 = 42. 240 + 42 = 282.`
fn product_step(x: i64, y: i64, split: bool) -> String {
    let p = x * y;
    let (two, other, two_first) = if x >= 10 { (x, y, true) } else { (y, x, false) };
    let (t, u) = (two / 10 * 10, two % 10);
    if !split || u == 0 {
        return format!("{x} * {y} = {p}.");
    }
    let mul = |d: i64| {
        if two_first {
            format!("{d} * {other} = {}.", d * other)
        } else {
            format!("{other} * {d} = {}.", d * other)
        }
    };
    format!(
        "Split {two} into {t} and {u}. {} {} {} + {} = {p}.",
        mul(t),
        mul(u),
        t * other,
        u * other
    )
}

/// A random problem of [`Family::Split`]: "gets … gives away" as in
/// [`problem`], "fills a bags with b each" with `b` up to 98, and "red and
/// blue, c times as many" with `c` up to 9.
pub fn split_problem(rng: &mut Rng) -> Problem {
    let name = pick(rng, NAMES);
    let item = pick(rng, ITEMS);
    match rng.below(3) {
        0 => gets_and_gives(rng, name, item),
        1 => {
            let (a, b, c) = (range(rng, 3, 9), range(rng, 12, 98), range(rng, 5, 40));
            let split = rng.below(5) < SPLIT_FIFTHS;
            let (s1, s2) = (a * b, a * b + c);
            Problem {
                question: fills_bags(name, item, a, b, c),
                solution: format!(
                    "{} {s1} + {c} = {s2}. The answer is \\boxed{{{s2}}}.",
                    product_step(a, b, split)
                ),
                answer: s2,
            }
        }
        _ => {
            let (a, b, c) = (range(rng, 11, 49), range(rng, 11, 49), range(rng, 3, 9));
            let split = rng.below(5) < SPLIT_FIFTHS;
            let (s1, s2) = (a + b, (a + b) * c);
            Problem {
                question: red_and_blue(name, item, a, b, c),
                solution: format!(
                    "{a} + {b} = {s1}. {} The answer is \\boxed{{{s2}}}.",
                    product_step(s1, c, split)
                ),
                answer: s2,
            }
        }
    }
}

/// A random problem of one of five two-step templates (numbers up to 99).
pub fn problem(rng: &mut Rng) -> Problem {
    let name = pick(rng, NAMES);
    let item = pick(rng, ITEMS);
    match rng.below(5) {
        0 => gets_and_gives(rng, name, item),
        1 => {
            let (a, b, c) = (range(rng, 3, 9), range(rng, 11, 29), range(rng, 5, 40));
            let (s1, s2) = (a * b, a * b + c);
            Problem {
                question: fills_bags(name, item, a, b, c),
                solution: format!(
                    "{} {s1} + {c} = {s2}. The answer is \\boxed{{{s2}}}.",
                    product_step(a, b, false)
                ),
                answer: s2,
            }
        }
        2 => {
            let (a, b) = (range(rng, 40, 99), range(rng, 11, 35));
            let c = range(rng, 11, 40);
            let (s1, s2) = (a - b, a - b + c);
            Problem {
                question: format!(
                    "A box holds {a} {item}. {name} takes out {b} {item} and later puts in {c} {item}. How many {item} are in the box?"
                ),
                solution: format!(
                    "{a} - {b} = {s1}. {s1} + {c} = {s2}. The answer is \\boxed{{{s2}}}."
                ),
                answer: s2,
            }
        }
        3 => {
            let (a, b, c) = (range(rng, 11, 49), range(rng, 11, 49), range(rng, 2, 4));
            let (s1, s2) = (a + b, (a + b) * c);
            Problem {
                question: red_and_blue(name, item, a, b, c),
                solution: format!(
                    "{a} + {b} = {s1}. {} The answer is \\boxed{{{s2}}}.",
                    product_step(s1, c, false)
                ),
                answer: s2,
            }
        }
        _ => {
            let (a, b) = (range(rng, 21, 99), range(rng, 11, 39));
            let c = range(rng, 11, 39);
            let (s1, s2) = (a + b, a + b + c);
            Problem {
                question: format!(
                    "{name} reads {a} pages on Monday, {b} pages on Tuesday and {c} pages on Wednesday. How many pages does {name} read in total?"
                ),
                solution: format!(
                    "{a} + {b} = {s1}. {s1} + {c} = {s2}. The answer is \\boxed{{{s2}}}."
                ),
                answer: s2,
            }
        }
    }
}

/// "`name` fills a bags with b `item` each and has c left over" (a * b + c).
fn fills_bags(name: &str, item: &str, a: i64, b: i64, c: i64) -> String {
    format!(
        "{name} fills {a} bags with {b} {item} each and has {c} {item} left over. How many {item} does {name} have in all?"
    )
}

/// "`name` has a red and b blue `item`; a friend has c times as many" ((a + b) * c).
fn red_and_blue(name: &str, item: &str, a: i64, b: i64, c: i64) -> String {
    format!(
        "{name} has {a} red {item} and {b} blue {item}. A friend has {c} times as many {item} as {name}. How many {item} does the friend have?"
    )
}

/// "`name` has a, gets b more and then gives away c" (a + b - c).
fn gets_and_gives(rng: &mut Rng, name: &str, item: &str) -> Problem {
    let (a, b) = (range(rng, 12, 89), range(rng, 11, 59));
    let c = range(rng, 3, (a + b - 1).min(60));
    let (s1, s2) = (a + b, a + b - c);
    Problem {
        question: format!(
            "{name} has {a} {item}. {name} gets {b} more and then gives away {c}. How many {item} does {name} have now?"
        ),
        solution: format!("{a} + {b} = {s1}. {s1} - {c} = {s2}. The answer is \\boxed{{{s2}}}."),
        answer: s2,
    }
}

/// The demo's files: supervised chat records for `serl sft`, 50 seed
/// problems (labels used for evaluation only) and a held-out labelled set.
pub struct DemoData {
    /// `{"messages": [...]}` records: solutions and question lists.
    pub sft: Vec<serde_json::Value>,
    /// The seeds SeRL starts from.
    pub seeds: Vec<Example>,
    /// Held-out evaluation problems (never in training).
    pub eval: Vec<Example>,
}

/// Generates the demo data of `family`: `n_sft` solved problems plus
/// `n_sft / 8` question lists, 50 seeds and `n_eval` held-out problems, all
/// distinct.
pub fn demo_data(family: Family, seed: u64, n_sft: usize, n_eval: usize) -> DemoData {
    let mut rng = Rng::new(seed);
    let mut seen = std::collections::HashSet::new();
    let mut fresh = |rng: &mut Rng| loop {
        let p = problem_of(family, rng);
        if seen.insert(p.question.clone()) {
            return p;
        }
    };
    let eval: Vec<Example> = (0..n_eval)
        .map(|_| {
            let p = fresh(&mut rng);
            Example {
                problem: p.question,
                answer: Some(p.answer.to_string()),
            }
        })
        .collect();
    let seeds: Vec<Example> = (0..50)
        .map(|_| {
            let p = fresh(&mut rng);
            Example {
                problem: p.question,
                answer: Some(p.answer.to_string()),
            }
        })
        .collect();
    let mut sft = Vec::new();
    let mut pool = Vec::new();
    for i in 0..n_sft {
        let p = fresh(&mut rng);
        sft.push(json!({"messages": [
            {"role": "user", "content": p.question},
            {"role": "assistant", "content": p.solution},
        ]}));
        pool.push(p.question);
        // A question list every eighth problem, in the trainer's prompt
        // format with DEMO_SHOTS shots, and two new questions to continue it.
        if i % 8 == 7 && pool.len() >= DEMO_SHOTS + 2 {
            let idx = rng.sample_indices(pool.len(), DEMO_SHOTS + 2);
            let shots: Vec<&str> = idx[..DEMO_SHOTS]
                .iter()
                .map(|&j| pool[j].as_str())
                .collect();
            let answer = format!(
                " {}\n{}. {}",
                pool[idx[DEMO_SHOTS]],
                DEMO_SHOTS + 2,
                pool[idx[DEMO_SHOTS + 1]]
            );
            sft.push(json!({"messages": [
                {"role": "system", "content": GENERATION_SYSTEM},
                {"role": "user", "content": numbered_list(&shots)},
                {"role": "assistant", "content": answer},
            ]}));
        }
    }
    DemoData { sft, seeds, eval }
}

/// Few-shot questions in the demo's generation prompts (SeRL's default is
/// 8; 4 keeps the small model's prompts short).
pub const DEMO_SHOTS: usize = 4;

/// BPE merges the demo tokenizer learns from the corpus.
pub const DEMO_MERGES: usize = 700;

/// The demo's tokenizer: a byte-level BPE with [`DEMO_MERGES`] merges
/// learned from the message texts of `records` (`{"messages": [...]}`).
pub fn demo_tokenizer(
    records: &[serde_json::Value],
) -> Result<crate::model::Tokenizer, crate::model::ModelError> {
    let texts: Vec<&str> = records
        .iter()
        .filter_map(|r| r.get("messages").and_then(|m| m.as_array()))
        .flatten()
        .filter_map(|m| m.get("content").and_then(|c| c.as_str()))
        .collect();
    crate::model::Tokenizer::train_byte_level(&texts, DEMO_MERGES)
}

/// Shape of the demo model `serl sft --preset demo` creates: a 4-layer
/// Llama of width 128 (about 1M parameters, 4 MB in f32) over a
/// `vocab_size`-token byte-level BPE vocabulary.
pub fn demo_model_config(vocab_size: usize) -> crate::model::ModelConfig {
    crate::model::ModelConfig {
        vocab_size,
        hidden_size: 128,
        intermediate_size: 384,
        num_hidden_layers: 4,
        head_dim: 32,
        rms_norm_eps: 1e-5,
        // Heads, RoPE, tied embeddings and special ids as the tiny test model.
        ..crate::model::tiny_llama_config()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn solutions_are_right_and_data_is_deterministic() {
        let mut rng = Rng::new(1);
        for _ in 0..500 {
            let p = problem(&mut rng);
            assert!(p.answer > 0);
            assert!(p.solution.ends_with(&format!("\\boxed{{{}}}.", p.answer)));
            assert_eq!(
                crate::eval::extract_answer(&p.solution),
                p.answer.to_string()
            );
            assert_eq!(answer_of(&p.question), Some(p.answer), "{}", p.question);
        }
        // The model's own problems mix names and items; the arithmetic stands.
        assert_eq!(
            answer_of(
                "Ola has 90 rocks. Pia gets 59 more and then gives away 42. How many pens does Ann have now?"
            ),
            Some(107)
        );
        assert_eq!(answer_of("Ola has 90 rocks. How many rocks?"), None);
        assert_eq!(
            answer_of("A box holds 5 eggs and 7 pens and 9 cards."),
            None
        );
        let a = demo_data(Family::TwoStep, 7, 200, 30);
        let b = demo_data(Family::TwoStep, 7, 200, 30);
        assert_eq!(a.sft, b.sft);
        assert_eq!(a.eval.len(), 30);
        assert_eq!(a.seeds.len(), 50);
        assert!(a.sft.len() >= 220);
        let evalq: std::collections::HashSet<_> =
            a.eval.iter().map(|e| e.problem.clone()).collect();
        for r in &a.sft {
            assert!(!evalq.contains(r["messages"][0]["content"].as_str().unwrap_or_default()));
        }
    }

    /// Every `x op y = z` in a solution holds.
    fn equations_hold(solution: &str) -> bool {
        let re = regex::Regex::new(r"(\d+) ([-+*]) (\d+) = (\d+)").expect("regex");
        re.captures_iter(solution).all(|c| {
            let n = |i: usize| c[i].parse::<i64>().expect("number");
            let v = match &c[2] {
                "+" => n(1) + n(3),
                "-" => n(1) - n(3),
                _ => n(1) * n(3),
            };
            v == n(4)
        })
    }

    #[test]
    fn split_family_works_products_both_ways_and_right() {
        assert_eq!(
            product_step(6, 47, true),
            "Split 47 into 40 and 7. 6 * 40 = 240. 6 * 7 = 42. 240 + 42 = 282."
        );
        assert_eq!(
            product_step(47, 6, true),
            "Split 47 into 40 and 7. 40 * 6 = 240. 7 * 6 = 42. 240 + 42 = 282."
        );
        assert_eq!(product_step(6, 40, true), "6 * 40 = 240.");
        assert_eq!(product_step(6, 47, false), "6 * 47 = 282.");
        let mut rng = Rng::new(3);
        let (mut products, mut split) = (0, 0);
        for _ in 0..3000 {
            let p = split_problem(&mut rng);
            assert!(equations_hold(&p.solution), "{}", p.solution);
            assert_eq!(
                crate::eval::extract_answer(&p.solution),
                p.answer.to_string()
            );
            assert_eq!(answer_of(&p.question), Some(p.answer), "{}", p.question);
            if p.solution.contains(" * ") {
                products += 1;
                split += p.solution.contains("Split ") as usize;
            }
        }
        // Two templates of three multiply; 2 in 5 of those are split (a
        // few less: multiples of ten are never split).
        assert!((1900..2100).contains(&products), "{products}");
        let share = split as f64 / products as f64;
        assert!((0.33..0.42).contains(&share), "{share}");
        let d = demo_data(Family::Split, 5, 400, 20);
        assert_eq!(d.eval.len(), 20);
        assert!(d.sft.iter().any(|r| {
            r["messages"][1]["content"]
                .as_str()
                .is_some_and(|s| s.starts_with("Split "))
        }));
        assert_eq!("split".parse(), Ok(Family::Split));
        assert!("three-step".parse::<Family>().is_err());
    }

    #[test]
    fn direct_family_is_the_two_step_problems_with_three_in_five_answers_bare() {
        let two = demo_data(Family::TwoStep, 9, 2000, 30);
        let direct = demo_data(Family::Direct, 9, 2000, 30);
        // Same questions, seeds and held-out set; only solutions differ.
        assert_eq!(two.seeds, direct.seeds);
        assert_eq!(two.eval, direct.eval);
        assert_eq!(two.sft.len(), direct.sft.len());
        let (mut solved, mut bare) = (0, 0);
        for (t, d) in two.sft.iter().zip(&direct.sft) {
            let (tm, dm) = (&t["messages"], &d["messages"]);
            assert_eq!(tm[0], dm[0]);
            let (ts, ds) = (
                tm[1]["content"].as_str().expect("text"),
                dm[1]["content"].as_str().expect("text"),
            );
            if tm[0]["role"] == "system" {
                assert_eq!(ts, ds);
                continue;
            }
            solved += 1;
            if ts != ds {
                bare += 1;
                // The bare answer is the worked solution's last sentence.
                assert!(ds.starts_with("The answer is \\boxed{"), "{ds}");
                assert!(ts.ends_with(ds), "{ts} / {ds}");
            }
        }
        assert_eq!(solved, 2000);
        let share = f64::from(bare) / f64::from(solved);
        assert!((0.56..0.64).contains(&share), "{share}");
        // Deterministic: the same draws give the same problem and solution.
        let p = direct_problem(&mut Rng::new(11));
        let q = direct_problem(&mut Rng::new(11));
        assert_eq!(p, q);
        assert_eq!("direct".parse(), Ok(Family::Direct));
    }
}
