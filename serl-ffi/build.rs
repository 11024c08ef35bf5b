//! Generates `serl.h` with cbindgen into OUT_DIR; with SERL_UPDATE_HEADER=1
//! it also writes the committed `include/serl.h` (a test compares the two).

use std::env;
use std::path::PathBuf;

fn main() {
    let crate_dir =
        PathBuf::from(env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("serl.h");
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-env-changed=SERL_UPDATE_HEADER");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml"))
        .expect("serl-ffi/cbindgen.toml is valid");
    let bindings = cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("cbindgen generates the C header");
    bindings.write_to_file(&out);
    if env::var("SERL_UPDATE_HEADER").is_ok_and(|v| v == "1") {
        bindings.write_to_file(crate_dir.join("../include/serl.h"));
    }
}
