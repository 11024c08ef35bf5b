//! What the C ABI adds to a vote of 16 responses: the same group through
//! `serl_core::eval::vote` and through `serl_vote` (CStrings built beforehand,
//! as a C host would hold them).
use std::ffi::{CString, c_char};
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serl_core::eval::{self, VoteMode};

fn group() -> Vec<String> {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../serl-core/tests/fixtures/vote.jsonl"
    );
    let text = std::fs::read_to_string(path).expect("vote fixtures");
    // A real group of 16 MATH-style responses (line 97 of vote.jsonl).
    let line = text.lines().nth(96).expect("line 97");
    let v: Vec<String> = line
        .split("\"responses\": ")
        .nth(1)
        .and_then(|rest| {
            let end = rest.find("], \"extracted\"")?;
            Some(rest[..=end].to_string())
        })
        .and_then(|arr| parse_string_array(&arr))
        .expect("responses array");
    assert_eq!(v.len(), 16);
    v
}

/// A JSON array of strings (the fixture's escaping: \\, \", \n, \t, \uXXXX).
fn parse_string_array(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s
        .trim()
        .strip_prefix('[')?
        .strip_suffix(']')?
        .chars()
        .peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ' ' || *c == ',') {
            chars.next();
        }
        match chars.next() {
            None => return Some(out),
            Some('"') => {}
            Some(_) => return None,
        }
        let mut cur = String::new();
        loop {
            match chars.next()? {
                '"' => break,
                '\\' => match chars.next()? {
                    'n' => cur.push('\n'),
                    't' => cur.push('\t'),
                    'u' => {
                        let hex: String = (0..4).filter_map(|_| chars.next()).collect();
                        cur.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                    }
                    c => cur.push(c),
                },
                c => cur.push(c),
            }
        }
        out.push(cur);
    }
}

fn benches(c: &mut Criterion) {
    let responses = group();
    let owned: Vec<CString> = responses
        .iter()
        .map(|r| CString::new(r.as_str()).expect("no NUL"))
        .collect();
    let ptrs: Vec<*const c_char> = owned.iter().map(|c| c.as_ptr()).collect();
    let mut g = c.benchmark_group("vote16");
    g.sample_size(50);
    for (name, mode, cmode) in [
        ("string", VoteMode::String, serl::SERL_VOTE_STRING),
        ("equiv", VoteMode::Equiv, serl::SERL_VOTE_EQUIV),
    ] {
        g.bench_function(format!("rust_{name}"), |b| {
            b.iter(|| black_box(eval::vote(&responses, mode)))
        });
        g.bench_function(format!("c_abi_{name}"), |b| {
            let mut rewards = [0.0f64; 16];
            b.iter(|| {
                let mut majority: *mut c_char = std::ptr::null_mut();
                let mut agreement = 0.0;
                // SAFETY: 16 valid C strings, a 16-double buffer, valid out-pointers.
                let st = unsafe {
                    serl::serl_vote(
                        ptrs.as_ptr(),
                        16,
                        cmode,
                        rewards.as_mut_ptr(),
                        &mut majority,
                        &mut agreement,
                    )
                };
                assert_eq!(st, serl::SERL_OK);
                // SAFETY: returned by serl_vote.
                unsafe { serl::serl_string_free(majority) };
                black_box(agreement)
            })
        });
    }
    g.finish();
}

criterion_group!(ffi, benches);
criterion_main!(ffi);
