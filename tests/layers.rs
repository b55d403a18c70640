//! The layers of `ARCHITECTURE.md`, enforced: a module of the library names only modules of
//! lower layers (`crate::x` in its code, test modules aside), so imports point one way and no
//! module cycle can form. The layer table below is the drawing of the code; `src/lib.rs`
//! declares and documents the modules in the same order.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Each top-level module of `src/` and its layer: a module may use modules of lower layers
/// only (not its own layer's peers).
const LAYERS: &[(&str, u32)] = &[
    ("contract", 0),
    ("model", 1),
    ("clock", 2),
    ("config", 2),
    ("ratelimit", 3),
    ("sdk", 3),
    ("selfmetrics", 3),
    ("inventory", 4),
    ("plan", 5),
    ("source", 6),
    ("demo", 7),
    ("store", 7),
    ("snapshot", 8),
    ("otlp", 9),
    ("render", 9),
    ("http", 10),
    ("poll", 10),
    ("app", 11),
];

fn layer(module: &str) -> Option<u32> {
    LAYERS.iter().find(|(m, _)| *m == module).map(|(_, l)| *l)
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The module a file of `src/` belongs to: `src/x.rs` and `src/x/...` are `x`.
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The code of a file without comments and without its test module (`#[cfg(test)] mod tests`:
/// by convention the last item of a file).
fn code(text: &str) -> String {
    let end = text.find("#[cfg(test)]\nmod tests").unwrap_or(text.len());
    text[..end]
        .lines()
        .map(|line| match line.find("//") {
            Some(i) => &line[..i],
            None => line,
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Every module named as `crate::<module>` in `code`.
fn uses(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(i) = rest.find("crate::") {
        let after = &rest[i + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` and `super::crate` do not occur; `apigateway_exporter::` is not used
        // inside the library.
        if !name.is_empty() {
            found.push(name);
        }
        rest = after;
    }
    found
}

fn src() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("src")
}

#[test]
fn every_module_has_a_layer_and_lib_rs_lists_them_in_layer_order() {
    let src = src();
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let declared: Vec<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod ")?.strip_suffix(';'))
        .collect();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut on_disk: Vec<String> = files
        .iter()
        .map(|f| module_of(&src, f))
        .filter(|m| m != "lib" && m != "main")
        .collect();
    on_disk.sort();
    on_disk.dedup();
    let mut sorted = declared.clone();
    sorted.sort_unstable();
    assert_eq!(
        sorted, on_disk,
        "src/lib.rs declares other modules than src/ holds"
    );
    for module in &declared {
        assert!(
            layer(module).is_some(),
            "module `{module}` has no layer: add it to LAYERS in tests/layers.rs"
        );
    }
    let layers: Vec<u32> = declared.iter().filter_map(|m| layer(m)).collect();
    assert!(
        layers.windows(2).all(|w| w[0] <= w[1]),
        "src/lib.rs declares the modules out of layer order: {declared:?}"
    );
    // The crate docs name every module, in layer order too.
    let documented: Vec<&str> = lib
        .lines()
        .filter(|l| l.starts_with("//! - "))
        .flat_map(|l| l.split("[`").skip(1))
        .filter_map(|s| s.split_once("`]").map(|(name, _)| name))
        .collect();
    let mut listed = documented.clone();
    listed.sort_unstable();
    assert_eq!(
        listed, sorted,
        "the module map in src/lib.rs misses a module"
    );
    let doc_layers: Vec<u32> = documented.iter().filter_map(|m| layer(m)).collect();
    assert!(
        doc_layers.windows(2).all(|w| w[0] <= w[1]),
        "the module map in src/lib.rs is not in layer order: {documented:?}"
    );
}

#[test]
fn imports_point_down_the_layers_only() {
    let src = src();
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    files.sort();
    let mut violations = Vec::new();
    let mut edges: BTreeMap<(String, String), usize> = BTreeMap::new();
    for file in &files {
        let module = module_of(&src, file);
        let Some(own) = layer(&module) else {
            continue; // lib.rs and main.rs (the binary) sit on top.
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        for used in uses(&code(&text)) {
            if used == module {
                continue;
            }
            *edges.entry((module.clone(), used.clone())).or_default() += 1;
            match layer(&used) {
                Some(l) if l < own => {}
                Some(l) => violations.push(format!(
                    "{}: `{module}` (layer {own}) uses `crate::{used}` (layer {l})",
                    file.strip_prefix(&src).unwrap_or(file).display()
                )),
                None => violations.push(format!(
                    "{}: `crate::{used}` is not a module with a layer",
                    file.display()
                )),
            }
        }
    }
    assert!(
        violations.is_empty(),
        "imports against the layers:\n{}",
        violations.join("\n")
    );
    // The check found the imports it is about: it is not vacuous.
    assert!(edges.contains_key(&("poll".into(), "store".into())));
    assert!(edges.contains_key(&("snapshot".into(), "store".into())));
    assert!(edges.len() > 30, "only {} edges found", edges.len());
}

/// The checker itself: a back-reference of the kind this issue removed is caught, and code
/// in comments or test modules is not.
#[test]
fn the_checker_sees_back_references_and_ignores_comments_and_tests() {
    let text = "use crate::model::Stat;\n\
                // crate::app in a comment\n\
                /// [`crate::poll`] in a doc comment\n\
                fn f() { crate::inventory::ApiFilter::new(x); }\n\
                #[cfg(test)]\nmod tests { use crate::app; }\n";
    assert_eq!(uses(&code(text)), ["model", "inventory"]);
    let config = layer("config").expect("config has a layer");
    assert!(layer("inventory").expect("inventory") > config);
    assert!(layer("http").expect("http") < layer("app").expect("app"));
    assert!(layer("demo").expect("demo") < layer("poll").expect("poll"));
}
