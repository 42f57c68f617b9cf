//! Embeds `templates/**/*.j2` into the binary as a sorted `(name, source)` table, so the
//! built-in templates ship with `medianest` and a site only needs its overrides.

use std::fs;
use std::path::{Path, PathBuf};

fn collect(dir: &Path, root: &Path, out: &mut Vec<(String, PathBuf)>) {
    let mut entries: Vec<_> =
        fs::read_dir(dir).expect("templates/ is readable").map(|e| e.expect("dir entry").path()).collect();
    entries.sort();
    for p in entries {
        if p.is_dir() {
            collect(&p, root, out);
        } else if p.extension().is_some_and(|x| x == "j2") {
            let name = p.strip_prefix(root).expect("under root").to_string_lossy().replace('\\', "/");
            out.push((name, p));
        }
    }
}

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    println!("cargo::rerun-if-changed=templates");
    let mut files = Vec::new();
    collect(&root, &root, &mut files);
    files.sort();
    let mut code =
        String::from("/// Built-in templates, sorted by name.\npub static TEMPLATES: &[(&str, &str)] = &[\n");
    for (name, path) in &files {
        code.push_str(&format!("    ({name:?}, include_str!({:?})),\n", path.display().to_string()));
    }
    code.push_str("];\n");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("builtin_templates.rs");
    fs::write(out, code).expect("OUT_DIR is writable");
}
