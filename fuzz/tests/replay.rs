//! Every seed and every kept crash input of every fuzz target, through the
//! target's body (stable toolchain; `cargo test --manifest-path fuzz/Cargo.toml`).

use std::path::Path;

#[test]
fn seeds_and_regressions_pass_every_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut ran = 0;
    for (name, body) in serl_fuzz::TARGETS {
        let mut inputs = 0;
        for kind in ["seeds", "regressions"] {
            let dir = root.join(kind).join(name);
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            let mut files: Vec<_> = entries.map(|e| e.expect("entry").path()).collect();
            files.sort();
            for f in files {
                let data = std::fs::read(&f).expect("input");
                let r = std::panic::catch_unwind(|| body(&data));
                assert!(r.is_ok(), "{name}: {} fails", f.display());
                inputs += 1;
            }
        }
        assert!(inputs > 0, "{name} has no seeds");
        ran += inputs;
    }
    println!("{ran} inputs");
}
