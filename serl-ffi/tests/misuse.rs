//! Misuse of handles that libserl can detect is an error with a message,
//! never undefined behaviour: a handle freed twice or used after it was
//! freed, a handle of another kind, `serl_train` re-entered from its own
//! callback; a callback may stop the run, save and evaluate.
use std::ffi::{CStr, CString, c_void};
use std::ptr;

use serl::*;

fn last_error() -> String {
    // SAFETY: serl_last_error never returns NULL.
    unsafe { CStr::from_ptr(serl_last_error()) }
        .to_string_lossy()
        .into_owned()
}

fn c(s: &str) -> CString {
    CString::new(s).expect("no NUL")
}

/// A trainer on the tiny model shipped with the tests, in a fresh directory.
fn trainer(name: &str) -> (*mut serl_trainer, std::path::PathBuf) {
    let fixtures = concat!(env!("CARGO_MANIFEST_DIR"), "/../serl-core/tests/fixtures");
    let dir = std::env::temp_dir().join(format!("serl-ffi-misuse-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = dir.join("seeds.jsonl");
    std::fs::write(
        &seeds,
        "{\"problem\": \"What is 1 plus 1?\", \"answer\": \"2\"}\n{\"problem\": \"What is 2 plus 3?\", \"answer\": \"5\"}\n",
    )
    .unwrap();
    let config = serde_json::json!({
        "model": format!("{fixtures}/tiny-llama"),
        "seeds": seeds, "eval_data": seeds, "out": dir.join("run"),
        "steps": 4, "self_instruct": false, "rollout_batch_size": 2, "n_samples_per_prompt": 2,
        "generate_max_len": 4, "input_template": "{problem}", "reward_difficulty_bounds": [0.0, 1.0],
        "train_batch_size": 4, "micro_train_batch_size": 2, "eval_k": 2, "eval_max_len": 3
    });
    let mut t = ptr::null_mut();
    // SAFETY: a valid string and out-pointer.
    let st = unsafe { serl_trainer_new(c(&config.to_string()).as_ptr(), &mut t) };
    assert_eq!(st, SERL_OK, "{}", last_error());
    (t, dir)
}

#[test]
fn freed_and_foreign_handles_are_errors() {
    let (t, dir) = trainer("freed");
    let mut stats = serl_step_stats::default();
    // A filter handle passed as a trainer.
    let mut f = ptr::null_mut();
    let seed = c("What is 1 plus 1?");
    let seeds = [seed.as_ptr()];
    // SAFETY: valid arrays and out-pointer.
    assert_eq!(
        unsafe { serl_filter_new(seeds.as_ptr(), 1, 0.7, &mut f) },
        SERL_OK
    );
    // SAFETY: a filter is not a trainer; the registry says so before any use.
    let st = unsafe { serl_step(f.cast(), &mut stats) };
    assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    assert!(
        last_error().contains("trainer is not a live handle"),
        "{}",
        last_error()
    );
    // SAFETY: a live filter, freed once; the second free and the use after
    // it are caught by the registry.
    unsafe {
        serl_filter_free(f);
        assert_eq!(last_error(), "");
        serl_filter_free(f);
        assert!(
            last_error().contains("filter is not a live handle"),
            "{}",
            last_error()
        );
        let mut kept = false;
        let st = serl_filter_offer(
            f,
            seed.as_ptr(),
            &mut kept,
            ptr::null_mut(),
            ptr::null_mut(),
        );
        assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
    }
    // SAFETY: a live trainer; then freed, used and freed again.
    unsafe {
        assert_eq!(serl_step(t, &mut stats), SERL_OK, "{}", last_error());
        serl_trainer_free(t);
        let st = serl_step(t, &mut stats);
        assert_eq!(st, SERL_ERR_INVALID_ARGUMENT);
        assert!(last_error().contains("freed already"), "{}", last_error());
        let mut json = ptr::null_mut();
        assert_eq!(
            serl_trainer_metrics_json(t, &mut json),
            SERL_ERR_INVALID_ARGUMENT
        );
        assert!(json.is_null());
        serl_trainer_free(t);
        assert!(last_error().contains("trainer is not a live handle"));
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// What the callback below did, and what libserl answered.
#[derive(Default)]
struct Seen {
    trainer: usize,
    calls: u32,
    step_status: serl_status,
    step_error: String,
    train_status: serl_status,
    free_error: String,
    save_status: serl_status,
    metrics: String,
    eval_status: serl_status,
}

unsafe extern "C" fn reenter(stats: *const serl_step_stats, user: *mut c_void) -> bool {
    // SAFETY: `user` is the `Seen` that the test passes.
    let seen = unsafe { &mut *(user as *mut Seen) };
    let t = seen.trainer as *mut serl_trainer;
    seen.calls += 1;
    // SAFETY: `stats` is valid for the call.
    assert_eq!(unsafe { (*stats).step }, seen.calls as u64);
    let mut s = serl_step_stats::default();
    // SAFETY: a live trainer, lent to this callback.
    unsafe {
        seen.step_status = serl_step(t, &mut s);
        seen.step_error = last_error();
        seen.train_status = serl_train(t, 1, None, ptr::null_mut());
        serl_trainer_free(t);
        seen.free_error = last_error();
        seen.save_status = serl_trainer_save(t, ptr::null_mut());
        let mut json = ptr::null_mut();
        if serl_trainer_metrics_json(t, &mut json) == SERL_OK {
            seen.metrics = CStr::from_ptr(json).to_string_lossy().into_owned();
            serl_string_free(json);
        }
        let mut e = serl_eval_result::default();
        seen.eval_status = serl_evaluate(t, &mut e);
    }
    // "Stop" after the second step.
    seen.calls < 2
}

#[test]
fn a_callback_may_save_evaluate_and_stop_but_not_reenter() {
    let (t, dir) = trainer("callback");
    let mut seen = Seen {
        trainer: t as usize,
        ..Default::default()
    };
    // SAFETY: a live trainer; the callback gets `seen` as user data.
    let st = unsafe { serl_train(t, 4, Some(reenter), (&mut seen as *mut Seen).cast()) };
    assert_eq!(st, SERL_OK, "{}", last_error());
    assert_eq!(seen.calls, 2, "the callback's false stops the run");
    assert_eq!(seen.step_status, SERL_ERR_INVALID_ARGUMENT);
    assert!(
        seen.step_error.contains("lent to a callback"),
        "{}",
        seen.step_error
    );
    assert_eq!(seen.train_status, SERL_ERR_INVALID_ARGUMENT);
    assert!(
        seen.free_error.contains("lent to a callback"),
        "{}",
        seen.free_error
    );
    assert_eq!(seen.save_status, SERL_OK);
    assert!(seen.metrics.contains("\"step\":2"), "{}", seen.metrics);
    assert_eq!(seen.eval_status, SERL_OK);
    // The trainer is still whole: two steps, a checkpoint of step 2.
    assert!(
        dir.join("run/checkpoints/step-000002/model.safetensors")
            .exists()
    );
    let mut s = serl_step_stats::default();
    // SAFETY: the trainer is live (the callback's free was refused).
    unsafe {
        assert_eq!(serl_step(t, &mut s), SERL_OK, "{}", last_error());
        assert_eq!(s.step, 3);
        serl_trainer_free(t);
        assert_eq!(last_error(), "");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
