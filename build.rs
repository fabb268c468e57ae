//! Embeds the browser consoles (`web/dist/**`, built by `npm run build` in `web/`) into the
//! binary, so the one `hotline serve` command serves the API and the consoles.
//!
//! Generates `$OUT_DIR/web_assets.rs`: `static WEB_ASSETS: &[(&str, &str, &[u8])]` of
//! (URL path, Content-Type, bytes). Without a build, a single page explains (in Chinese
//! and English) how to build the consoles.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    let manifest_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let dist = manifest_dir.join("web").join("dist");
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").unwrap_or_default());

    let mut files = Vec::new();
    if dist.join("index.html").is_file() {
        println!("cargo:rerun-if-changed=web/dist");
        collect(&dist, &dist, &mut files);
    } else {
        // No build yet: watch `web/` so that a later `npm run build` (which creates
        // `web/dist`) is picked up; a missing path would rerun this script every build.
        if manifest_dir.join("web").is_dir() {
            println!("cargo:rerun-if-changed=web");
        }
        let page = out_dir.join("web_not_built.html");
        if let Err(e) = std::fs::write(&page, NOT_BUILT_PAGE) {
            panic!("cannot write {}: {e}", page.display());
        }
        files.push(("/index.html".to_owned(), page));
    }
    files.sort();

    let mut code = String::from("static WEB_ASSETS: &[(&str, &str, &[u8])] = &[\n");
    for (url, path) in &files {
        let _ = writeln!(
            code,
            "    ({url:?}, {ct:?}, include_bytes!({path:?})),",
            ct = content_type(url),
            path = path.display().to_string(),
        );
    }
    code.push_str("];\n");
    let target = out_dir.join("web_assets.rs");
    if let Err(e) = std::fs::write(&target, code) {
        panic!("cannot write {}: {e}", target.display());
    }
}

/// Every file under `dir`, as (URL path relative to `root`, file path).
fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, PathBuf)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(relative) = path.strip_prefix(root) {
            let url: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            files.push((format!("/{}", url.join("/")), path));
        }
    }
}

fn content_type(url: &str) -> &'static str {
    let extension = url.rsplit_once('.').map_or("", |(_, ext)| ext);
    match extension {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" | "map" => "application/json",
        "webmanifest" => "application/manifest+json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "woff" => "font/woff",
        "txt" => "text/plain; charset=utf-8",
        "wav" => "audio/wav",
        _ => "application/octet-stream",
    }
}

const NOT_BUILT_PAGE: &str = r#"<!doctype html>
<html lang="zh-CN">
<head><meta charset="utf-8"><title>12348 热线 — 控制台未构建 / consoles not built</title>
<style>body{font-family:sans-serif;max-width:44em;margin:3em auto;line-height:1.6}code,pre{background:#f3f3f3;padding:.2em .4em}</style>
</head>
<body>
<h1>控制台尚未构建</h1>
<p>此服务器程序构建时没有找到 <code>web/dist</code>，因此未内嵌浏览器控制台。API（<code>/api</code>）照常可用。</p>
<p>构建控制台并重新编译服务器：</p>
<pre>cd web &amp;&amp; npm ci &amp;&amp; npm run build &amp;&amp; cd .. &amp;&amp; cargo build --release</pre>
<p>或直接运行 <code>scripts/serve.sh</code>（按需构建后启动服务器）。</p>
<hr>
<h1 lang="en">Consoles not built</h1>
<p lang="en">This server binary was compiled without <code>web/dist</code>, so the browser consoles are not embedded. The API under <code>/api</code> works as usual.</p>
<p lang="en">Build the consoles, then rebuild the server (commands above), or run <code>scripts/serve.sh</code>, which builds them when needed and starts the server.</p>
</body>
</html>
"#;
