//! Builds the LD_PRELOAD shim and embeds it in the `softiommu` binary, so that
//! `softiommu run` works from a single file wherever it is installed.
//!
//! The shim is built by a nested cargo with its own target directory (the outer
//! build holds the lock on the main one).

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let workspace = manifest.join("../..");
    for dir in [
        "../preload/src",
        "../preload/Cargo.toml",
        "../proto/src",
        "../proto/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", manifest.join(dir).display());
    }
    let target_dir = out.join("shim-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args([
            "build",
            "--release",
            "--quiet",
            "-p",
            "softiommu-preload",
            "--manifest-path",
        ])
        .arg(workspace.join("Cargo.toml"))
        .arg("--target-dir")
        .arg(&target_dir)
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .status()
        .expect("running cargo to build the shim");
    assert!(status.success(), "building the LD_PRELOAD shim failed");
    std::fs::copy(
        target_dir.join("release/libsoftiommu_preload.so"),
        out.join("libsoftiommu_preload.so"),
    )
    .expect("copying the shim");
}
