//! Embeds hls.js (installed from npm into `web/node_modules` by the README commands)
//! into the binary, so the page works offline. Without it the build still succeeds and
//! the page explains how to install it.

use std::path::Path;

fn main() {
    let src = Path::new("web/node_modules/hls.js/dist/hls.min.js");
    println!("cargo:rerun-if-changed={}", src.display());
    println!("cargo:rerun-if-changed=web/package.json");
    let out = Path::new(&std::env::var("OUT_DIR").expect("OUT_DIR")).join("hls.min.js");
    if src.exists() {
        std::fs::copy(src, &out).expect("copy hls.min.js");
    } else {
        println!(
            "cargo:warning=hls.js not installed; run `npm ci --prefix host/web` (the README commands do)"
        );
        std::fs::write(
            &out,
            "window.Hls=undefined;console.error('hls.js was not installed at build time: run npm ci --prefix host/web and rebuild');",
        )
        .expect("write stub");
    }
}
