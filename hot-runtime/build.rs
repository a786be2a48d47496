//! Folds the two ways of asking for hot mode into one cfg, `hot_mode`:
//! the `hot` feature (what `cargo hot` asks for, and this workspace's tests) or
//! `--cfg hot_runtime_hot` (`cargo hot`'s fallback, through `RUSTFLAGS`).
fn main() {
    println!("cargo::rustc-check-cfg=cfg(hot_runtime_hot)");
    println!("cargo::rustc-check-cfg=cfg(hot_mode)");
    let by_cfg = std::env::var_os("CARGO_CFG_HOT_RUNTIME_HOT").is_some();
    let by_feature = std::env::var_os("CARGO_FEATURE_HOT").is_some();
    if by_cfg || by_feature {
        println!("cargo::rustc-cfg=hot_mode");
    }
}
