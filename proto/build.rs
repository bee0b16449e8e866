//! Compiles `sluice/v1/*.proto` with protox (pure Rust), so no system protoc
//! is needed, then generates the prost types into OUT_DIR.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = ["template", "job", "share", "event"].map(|f| format!("sluice/v1/{f}.proto"));
    for f in &files {
        println!("cargo:rerun-if-changed={f}");
    }
    let descriptors = protox::compile(&files, ["."])?;
    prost_build::Config::new().compile_fds(descriptors)?;
    Ok(())
}
