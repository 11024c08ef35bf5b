fn main() {
    let only = std::env::args().nth(2);
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(1000);
    for (name, s) in [
        (
            "parens",
            format!("\\boxed{{{}1{}}}", "(".repeat(n), ")".repeat(n)),
        ),
        (
            "braces",
            format!("\\boxed{{{}1{}}}", "{".repeat(n), "}".repeat(n)),
        ),
        (
            "frac",
            format!("\\boxed{{{}1{}}}", "\\frac{1}{".repeat(n), "}".repeat(n)),
        ),
        ("minus", format!("\\boxed{{{}1}}", "-".repeat(n))),
        ("pow", format!("\\boxed{{{}2}}", "2^".repeat(n))),
        (
            "sqrt",
            format!("\\boxed{{{}2{}}}", "\\sqrt{".repeat(n), "}".repeat(n)),
        ),
        (
            "powbrace",
            format!("\\boxed{{{}2{}}}", "2^{".repeat(n), "}".repeat(n)),
        ),
        (
            "sub",
            format!("\\boxed{{x{}}}", "_{x".repeat(n) + &"}".repeat(n)),
        ),
        (
            "abs",
            format!("\\boxed{{{}1{}}}", "|".repeat(n), "|".repeat(n)),
        ),
        (
            "left",
            format!(
                "\\boxed{{{}1{}}}",
                "\\left(".repeat(n),
                "\\right)".repeat(n)
            ),
        ),
        (
            "brackets",
            format!("\\boxed{{{}1{}}}", "[".repeat(n), "]".repeat(n)),
        ),
        ("fact", format!("\\boxed{{3{}}}", "!".repeat(n))),
        (
            "text",
            format!("{}1{}", "\\boxed{".repeat(n), "}".repeat(n)),
        ),
        (
            "dollars",
            format!("${}1$", "\\text{".repeat(n) + &"}".repeat(n)),
        ),
    ] {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let t = std::time::Instant::now();
        let e = serl_core::eval::equivalent(&s, "1");
        let v = serl_core::eval::vote(&[s.as_str(), "1"], serl_core::eval::VoteMode::Equiv);
        println!("{name} {n}: {e} {:?} {:?}", v.agreement, t.elapsed());
    }
}
