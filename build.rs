//! Bundles the web editor's assets (`web/`: Bootstrap and CodeMirror from
//! the npm registry through the committed `web/package-lock.json`, and the
//! page scripts) into `OUT_DIR/web/`, with gzip and brotli copies, where
//! `src/web/assets.rs` embeds them.
//!
//! Done here rather than by a separate script so that a plain `cargo build`
//! (and the README's commands) keep working: `npm ci` runs when
//! `web/node_modules` is missing or older than the lockfile, then esbuild.
//! Without node and npm the rest of ctm still builds; `ctm serve` then
//! refuses to start and says why (written to `missing.txt`).

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    for path in [
        "web/src",
        "web/build.mjs",
        "web/package.json",
        "web/package-lock.json",
    ] {
        println!("cargo:rerun-if-changed={path}");
    }
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo")).join("web");
    std::fs::create_dir_all(&out).expect("OUT_DIR is writable");
    let missing = match bundle(&manifest.join("web"), &out) {
        Ok(()) => String::new(),
        Err(why) => {
            println!("cargo:warning=ctm serve will not work: {why}");
            for bundle in ["app.js", "app.css", "container.js", "container.css"] {
                for suffix in ["", ".gz", ".br"] {
                    std::fs::write(out.join(format!("{bundle}{suffix}")), b"")
                        .expect("OUT_DIR is writable");
                }
            }
            format!(
                "this ctm was built without the web editor's assets: {why}. \
                 Install nodejs and npm, then build again."
            )
        }
    };
    std::fs::write(out.join("missing.txt"), missing).expect("OUT_DIR is writable");
}

fn bundle(web: &Path, out: &Path) -> Result<(), String> {
    let installed = web.join("node_modules/.package-lock.json");
    let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    if modified(&installed) < modified(&web.join("package-lock.json")) {
        run(
            Command::new("npm")
                .args(["ci", "--no-audit", "--no-fund"])
                .current_dir(web),
            "npm ci",
        )?;
    }
    run(
        Command::new("node")
            .arg("build.mjs")
            .arg(out)
            .current_dir(web),
        "node build.mjs",
    )
}

fn run(command: &mut Command, what: &str) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {what}: {e}"))?;
    if output.status.success() {
        return Ok(());
    }
    Err(format!(
        "{what} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr).trim()
    ))
}
