//! Compiles the Dapr proto subset in `proto/` with tonic's prost codegen.
//! protoc comes from `protoc-bin-vendored`, so no system protoc is needed.

use std::path::PathBuf;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the env concurrently.
    unsafe {
        std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?);
    }
    let well_known = protoc_bin_vendored::include_path()?;
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    let protos: Vec<PathBuf> = [
        "common/v1/common.proto",
        "runtime/v1/binding.proto",
        "runtime/v1/metadata.proto",
        "runtime/v1/dapr.proto",
        "runtime/v1/appcallback.proto",
    ]
    .iter()
    .map(|p| PathBuf::from("proto/dapr/proto").join(p))
    .collect();
    tonic_prost_build::configure()
        .file_descriptor_set_path(out.join("dapr_descriptor.bin"))
        // Payloads stay `bytes::Bytes` end to end: no copy between the wire and Kafka.
        .bytes(".")
        .compile_protos(&protos, &[PathBuf::from("proto"), well_known])?;
    println!("cargo:rerun-if-changed=proto");
    // Not PIE: the loader then relocates almost nothing at start (see
    // .cargo/config.toml); Go's binaries, daprd's included, are not PIE either.
    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if target_os == "linux" && target_env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    Ok(())
}
