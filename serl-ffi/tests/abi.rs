//! The C ABI called from Rust: results equal the library's, errors are
//! statuses with messages, out-parameters stay untouched on error.
use std::ffi::{CStr, CString, c_char};
use std::ptr;

use serl::*;

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

fn last_error() -> String {
    // SAFETY: serl_last_error never returns NULL.
    unsafe { CStr::from_ptr(serl_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn take(s: *mut c_char) -> String {
    // SAFETY: a string returned by libserl.
    let out = unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned();
    // SAFETY: returned by libserl, freed once.
    unsafe { serl_string_free(s) };
    out
}

#[test]
fn extract_and_equal() {
    let r = c("so the answer is $\\boxed{\\dfrac{1}{2}}$.");
    let (mut a, mut n) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { serl_extract_answer(r.as_ptr(), &mut a, &mut n) },
        SERL_OK
    );
    assert_eq!(
        (take(a), take(n)),
        ("\\frac{1}{2}".to_string(), "\\frac{1}{2}".to_string())
    );
    let mut eq = false;
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { serl_answers_equal(c("\\frac{1}{2}").as_ptr(), c("0.5").as_ptr(), &mut eq) },
        SERL_OK
    );
    assert!(eq);
}

#[test]
fn vote_writes_rewards_majority_and_agreement() {
    let rs: Vec<CString> = ["\\boxed{1}", "\\boxed{2}", "\\boxed{1}", "\\boxed{3}"]
        .iter()
        .map(|s| c(s))
        .collect();
    let ptrs: Vec<*const c_char> = rs.iter().map(|s| s.as_ptr()).collect();
    for mode in [SERL_VOTE_STRING, SERL_VOTE_EQUIV] {
        let mut rewards = [9.0; 4];
        let mut majority = ptr::null_mut();
        let mut agreement = -1.0;
        // SAFETY: 4 strings, a 4-double buffer, valid out-pointers.
        let st = unsafe {
            serl_vote(
                ptrs.as_ptr(),
                4,
                mode,
                rewards.as_mut_ptr(),
                &mut majority,
                &mut agreement,
            )
        };
        assert_eq!(st, SERL_OK);
        assert_eq!(rewards, [1.0, 0.0, 1.0, 0.0]);
        assert_eq!(take(majority), "1");
        assert_eq!(agreement, 0.5);
    }
    // Optional outputs may be NULL.
    let mut rewards = [0.0; 4];
    // SAFETY: as above, with NULL optional outputs.
    let st = unsafe {
        serl_vote(
            ptrs.as_ptr(),
            4,
            SERL_VOTE_STRING,
            rewards.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(st, SERL_OK);
}

#[test]
fn bad_arguments_are_statuses_with_messages() {
    let mut rewards = [7.0; 2];
    // SAFETY: NULL responses are rejected before any dereference.
    let st = unsafe {
        serl_vote(
            ptr::null(),
            2,
            SERL_VOTE_STRING,
            rewards.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("responses is NULL"));
    assert_eq!(rewards, [7.0; 2], "out-parameters untouched on error");

    let x = c("x");
    let one = [x.as_ptr()];
    // SAFETY: an empty array is rejected.
    let st = unsafe {
        serl_vote(
            one.as_ptr(),
            0,
            SERL_VOTE_STRING,
            rewards.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("empty"));

    let holder = c("x");
    let with_null = [holder.as_ptr(), ptr::null()];
    // SAFETY: the NULL element is detected.
    let st = unsafe {
        serl_vote(
            with_null.as_ptr(),
            2,
            SERL_VOTE_STRING,
            rewards.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("responses[1]"));

    // SAFETY: an unknown mode is rejected.
    let st = unsafe {
        serl_vote(
            one.as_ptr(),
            1,
            7,
            rewards.as_mut_ptr(),
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("mode 7"));

    let bad = [0xffu8, 0xfe, 0];
    let mut eq = false;
    // SAFETY: a NUL-terminated byte string that is not UTF-8.
    let st = unsafe { serl_answers_equal(bad.as_ptr().cast(), c("1").as_ptr(), &mut eq) };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(last_error().contains("pred is not valid UTF-8"));

    let mut keep = false;
    // SAFETY: valid out-pointer; bounds rejected.
    assert_eq!(
        unsafe { serl_difficulty_keep(0.5, 0.9, 0.1, &mut keep) },
        SERL_ERR_INVALID_ARGUMENT
    );
    // SAFETY: valid out-pointer.
    assert_eq!(
        unsafe { serl_difficulty_keep(0.25, 0.2, 0.8, &mut keep) },
        SERL_OK
    );
    assert!(keep);
    assert_eq!(last_error(), "", "a successful call clears the message");
}

#[test]
fn parse_instructions_filter_and_prompt() {
    let text = c(
        "1. What is the sum of 2 and 3 apples?\n2. Draw a graph of y = x now\n3. Find x if x plus 2 is 5",
    );
    let (mut items, mut len) = (ptr::null_mut(), 0usize);
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { serl_parse_instructions(text.as_ptr(), false, &mut items, &mut len) },
        SERL_OK
    );
    assert_eq!(len, 2);
    // SAFETY: `items` holds `len` strings from libserl.
    let got: Vec<String> = (0..len)
        .map(|i| {
            unsafe { CStr::from_ptr(*items.add(i)) }
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    assert_eq!(
        got,
        [
            "What is the sum of 2 and 3 apples?",
            "Find x if x plus 2 is 5"
        ]
    );
    // SAFETY: returned by serl_parse_instructions with this length.
    unsafe { serl_string_array_free(items, len) };

    let seeds: Vec<CString> = [
        "How many primes are below 20?",
        "What is the area of a unit circle?",
    ]
    .iter()
    .map(|s| c(s))
    .collect();
    let sp: Vec<*const c_char> = seeds.iter().map(|s| s.as_ptr()).collect();
    let mut f = ptr::null_mut();
    // SAFETY: valid seeds and out-pointer.
    assert_eq!(
        unsafe { serl_filter_new(sp.as_ptr(), sp.len(), 0.7, &mut f) },
        SERL_OK
    );
    let (mut kept, mut max, mut argmax) = (false, 0.0, 0i64);
    // SAFETY: a live filter and valid out-pointers.
    assert_eq!(
        unsafe {
            serl_filter_offer(
                f,
                c("How many primes are below 30?").as_ptr(),
                &mut kept,
                &mut max,
                &mut argmax,
            )
        },
        SERL_OK
    );
    assert!(!kept && max > 0.7 && argmax == 0);
    // SAFETY: as above.
    assert_eq!(
        unsafe {
            serl_filter_offer(
                f,
                c("Compute the derivative of x cubed").as_ptr(),
                &mut kept,
                &mut max,
                &mut argmax,
            )
        },
        SERL_OK
    );
    assert!(kept);
    // SAFETY: from serl_filter_new; NULL free is a no-op.
    unsafe {
        serl_filter_free(f);
        serl_filter_free(ptr::null_mut());
    }
    let (mut sys, mut user) = (ptr::null_mut(), ptr::null_mut());
    // SAFETY: valid arrays (empty pool) and out-pointers.
    assert_eq!(
        unsafe {
            serl_build_generation_prompt(sp.as_ptr(), 2, ptr::null(), 0, 8, 1, &mut sys, &mut user)
        },
        SERL_OK
    );
    assert!(take(sys).starts_with("Please act as a professional math teacher."));
    assert!(take(user).ends_with("\n3."));
}

#[test]
fn rouge_and_version() {
    let mut s = serl_rouge::default();
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { serl_rouge_l(c("the cat sat").as_ptr(), c("the cat").as_ptr(), &mut s) },
        SERL_OK
    );
    assert_eq!((s.p, s.r), (1.0, 2.0 / 3.0));
    // SAFETY: a static string.
    let v = unsafe { CStr::from_ptr(serl_version()) }
        .to_str()
        .expect("UTF-8")
        .to_string();
    assert_eq!(v, env!("CARGO_PKG_VERSION"));
}

#[test]
fn advantages_through_json() {
    let req = c(
        r#"{"estimator": "group_norm", "kl_estimator": "k1", "kl_coef": 0.0, "n_samples_per_prompt": 2,
        "action_mask": [[1, 1], [1, 0]], "rewards": [1, 0], "log_probs": [[0, 0], [0, 0]], "ref_log_probs": [[0, 0], [0, 0]]}"#,
    );
    let mut out = ptr::null_mut();
    // SAFETY: valid pointers.
    assert_eq!(unsafe { serl_advantages(req.as_ptr(), &mut out) }, SERL_OK);
    let v: String = take(out);
    assert!(
        v.contains("\"advantages\"") && v.contains("\"policy_loss_token_mean\""),
        "{v}"
    );
    let bad = c(r#"{"estimator": "rloo"}"#);
    let mut out = ptr::null_mut();
    // SAFETY: valid pointers.
    assert_eq!(
        unsafe { serl_advantages(bad.as_ptr(), &mut out) },
        SERL_ERR_BAD_DATA
    );
    assert!(out.is_null());
    assert!(last_error().contains("missing field"), "{}", last_error());
}
