//! Builds the dashboard (`dashboard/`, Vite) into `OUT_DIR` and writes `assets.rs`: every built
//! file as `include_bytes!`, so the binary carries the whole front end and a fresh clone's
//! `cargo build`, `cargo clippy` or `sam build` needs nothing but Node 20 and npm. Cargo reruns
//! this only when a source of the front end changed (the `rerun-if-changed` lines), and npm
//! installs only when `node_modules` is missing or older than the lockfile, so a warm build
//! costs nothing. `DASHBOARD_DIST=/path/to/dist` embeds an already built folder instead.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let out = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());
    let front = manifest.join("../../dashboard");
    println!("cargo:rerun-if-env-changed=DASHBOARD_DIST");
    for input in [
        "src",
        "index.html",
        "public",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
        "tsconfig.json",
    ] {
        println!("cargo:rerun-if-changed={}", front.join(input).display());
    }
    let dist = match std::env::var_os("DASHBOARD_DIST") {
        Some(dist) => PathBuf::from(dist),
        None => {
            let dist = out.join("dist");
            build(&front, &dist);
            dist
        }
    };
    let mut files = Vec::new();
    walk(&dist, &dist, &mut files);
    files.sort();
    assert!(files.iter().any(|(p, _)| p == "index.html"), "no index.html in {}", dist.display());
    let mut code = String::from("pub static ASSETS: &[Asset] = &[\n");
    for (path, full) in &files {
        let bytes = std::fs::read(full).unwrap_or_else(|e| panic!("{}: {e}", full.display()));
        let hash = fnv1a(&bytes);
        let etag = format!("\"{hash:016x}\"");
        let gzip = match gzipped(&bytes) {
            Some(gz) if is_text(path) && gz.len() < bytes.len() => {
                std::fs::create_dir_all(out.join("gz")).unwrap_or_else(|e| panic!("gz dir: {e}"));
                let gz_path = out.join("gz").join(format!("{hash:016x}.gz"));
                std::fs::write(&gz_path, gz).unwrap_or_else(|e| panic!("{}: {e}", gz_path.display()));
                format!("Some(include_bytes!({:?}))", gz_path.display())
            }
            _ => "None".to_owned(),
        };
        writeln!(
            code,
            "    Asset {{ path: {path:?}, body: include_bytes!({:?}), gzip: {gzip}, etag: {etag:?} }},",
            full.display()
        )
        .unwrap_or_default();
    }
    code.push_str("];\n");
    std::fs::write(out.join("assets.rs"), code).unwrap_or_else(|e| panic!("write assets.rs: {e}"));
}

/// `npm ci` when needed, then `vite build` into `dist`.
fn build(front: &Path, dist: &Path) {
    let installed = front.join("node_modules/.package-lock.json");
    if modified(&installed) < modified(&front.join("package-lock.json")) {
        run(Command::new("npm").args(["ci", "--no-audit", "--no-fund"]).current_dir(front), "npm ci");
    }
    run(
        Command::new("node")
            .arg("node_modules/vite/bin/vite.js")
            .args(["build", "--emptyOutDir", "--logLevel", "warn", "--outDir"])
            .arg(dist)
            .current_dir(front),
        "vite build",
    );
}

fn run(command: &mut Command, what: &str) {
    // Never let a tool download a browser or ask a question.
    command.env("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1").env("CI", "true").stdin(std::process::Stdio::null());
    match command.status() {
        Ok(status) if status.success() => {}
        Ok(status) => {
            panic!("{what} failed ({status}): the dashboard needs Node 20 and npm (see dashboard/README.md)")
        }
        Err(e) => panic!("{what} could not start ({e}): the dashboard needs Node 20 and npm"),
    }
}

fn modified(path: &Path) -> SystemTime {
    std::fs::metadata(path).and_then(|m| m.modified()).unwrap_or(SystemTime::UNIX_EPOCH)
}

fn walk(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let entries = std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let relative = relative.to_string_lossy().replace('\\', "/");
            files.push((relative, path));
        }
    }
}

fn is_text(path: &str) -> bool {
    [".html", ".js", ".css", ".svg", ".json", ".txt", ".map"].iter().any(|ext| path.ends_with(ext))
}

fn gzipped(bytes: &[u8]) -> Option<Vec<u8>> {
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(bytes).ok()?;
    encoder.finish().ok()
}

/// A content hash for the ETag (FNV-1a, 64 bits): no build dependency for a cache validator.
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
