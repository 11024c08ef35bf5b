//! The committed `include/serl.h` is what cbindgen generates from this code.

#[test]
fn committed_header_is_fresh() {
    let fresh = include_str!(concat!(env!("OUT_DIR"), "/serl.h"));
    let committed_path = concat!(env!("CARGO_MANIFEST_DIR"), "/../include/serl.h");
    let committed = std::fs::read_to_string(committed_path).expect("include/serl.h exists");
    assert!(
        fresh == committed,
        "include/serl.h is stale: regenerate it with `SERL_UPDATE_HEADER=1 cargo build -p serl-ffi` and commit it"
    );
}
