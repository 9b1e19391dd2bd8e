//! Collects the runnable examples of the runtime's documentation (the fenced code in its `///`
//! and `//!` comments and the README's Rust blocks, as `cargo test --doc` runs them) into
//! functions for `prun-docjob`, so that the tests run each under `prun` at several rank counts,
//! where `cargo test --doc` runs each as a world of one rank.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.parent().expect("the tests crate sits in the workspace").to_path_buf();
    let src = root.join("runtime").join("src");
    println!("cargo:rerun-if-changed={}", src.display());
    let mut files = Vec::new();
    walk(&src, &mut files);
    files.sort();
    // the README is the crate's documentation too (a doctest of lib.rs)
    let readme = root.join("README.md");
    println!("cargo:rerun-if-changed={}", readme.display());
    files.push(readme);
    let mut table = String::new();
    let mut bodies = String::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read a source file of the runtime");
        let name = file.strip_prefix(&root).unwrap_or(file).display().to_string();
        let markdown = file.extension().is_some_and(|e| e == "md");
        for (line, body) in examples(&text, markdown) {
            let n = table.lines().count();
            writeln!(table, "    (\"{name}:{line}\", example_{n}),").expect("writing to a String");
            // a whole program (the README's first) in a module of its own, its `main` called
            let function = if body.contains("fn main()") {
                let body = body.replacen("fn main()", "pub(super) fn main()", 1);
                format!(
                    "mod program_{n} {{\n{body}}}\n\nfn example_{n}() -> Result<(), prun::Error> {{\n    program_{n}::main()\n}}"
                )
            } else {
                format!("fn example_{n}() -> Result<(), prun::Error> {{\n{body}}}")
            };
            writeln!(bodies, "{function}\n").expect("writing to a String");
        }
    }
    let out = format!(
        "/// Every runnable example of the runtime's documentation: where it starts, and its body.\n\
         pub static EXAMPLES: &[(&str, fn() -> Result<(), prun::Error>)] = &[\n{table}];\n\n{bodies}"
    );
    let dest = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("doc_examples.rs");
    std::fs::write(dest, out).expect("write the examples");
}

/// The `.rs` files under `dir`.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read the runtime's sources").flatten() {
        let path = entry.path();
        if path.is_dir() {
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// The examples that rustdoc runs (a fence with no language, or `rust`) in one file's doc
/// comments, or in a Markdown file: the line of the opening fence, and the code with hidden
/// lines (`# `) shown.
fn examples(text: &str, markdown: bool) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    let mut open: Option<(usize, bool, String)> = None;
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        // `////` is a plain comment, not documentation
        let doc = if markdown {
            line
        } else if let Some(doc) = trimmed.strip_prefix("///").or_else(|| trimmed.strip_prefix("//!")) {
            if doc.starts_with('/') {
                continue;
            }
            doc.strip_prefix(' ').unwrap_or(doc)
        } else {
            continue;
        };
        if let Some(info) = doc.trim_start().strip_prefix("```") {
            match open.take() {
                Some((at, true, body)) => found.push((at, body)),
                Some((_, false, _)) => {}
                None => {
                    let runs = info.split(',').all(|a| matches!(a.trim(), "" | "rust"));
                    open = Some((i + 1, runs, String::new()));
                }
            }
            continue;
        }
        if let Some((_, _, body)) = open.as_mut() {
            // rustdoc's hidden lines (`#` alone or `# ` after any indentation) are code here;
            // `##` is a line that starts with `#`
            let code = doc.trim_start();
            let shown = match code.strip_prefix('#') {
                Some("") => "",
                Some(rest) if rest.starts_with('#') => rest,
                Some(rest) => rest.strip_prefix(' ').unwrap_or(doc),
                None => doc,
            };
            body.push_str(shown);
            body.push('\n');
        }
    }
    found
}
