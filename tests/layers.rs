//! The pipeline's layers (README, "How it works"), enforced: a module of the library names only
//! modules of lower layers (`crate::x` in its code, test modules aside), so imports point one way and no
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

/// The module a file of `src/` belongs to (`src/x.rs` and `src/x/...` are `x`), and how
/// deep inside it the file sits (`super` from a file at depth `d` leaves `x` after `d + 1`).
fn module_of(src: &Path, file: &Path) -> (String, usize) {
    let rel = file.strip_prefix(src).expect("under src");
    let parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    let module = parts[0].trim_end_matches(".rs").to_string();
    let last_is_mod = parts.last().is_some_and(|p| p == "mod.rs");
    let depth = parts.len() - 1 - usize::from(last_is_mod);
    (module, depth)
}

/// The code of a file with comments, string and character literals blanked (so that
/// `"http://"` or `"crate::x"` are not read as code), and its test module removed:
/// `#[cfg(test)] mod tests { ... }`, which must be the file's last item.
fn code(text: &str) -> Result<String, String> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < chars.len() && chars[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            i += 2;
            while i + 1 < chars.len() && !(chars[i] == '*' && chars[i + 1] == '/') {
                i += 1;
            }
            i += 2;
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && {
            // `r` starts a raw string where no identifier goes on before it; nor does `br`.
            let mut before = out.chars().rev();
            match before.next() {
                Some('b') => !ident(before.next()),
                last => !ident(last),
            }
        } {
            // A raw string: r"...", r#"..."#, br#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while chars.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if chars.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                match chars.get(j) {
                    None => break,
                    Some('"') if (1..=hashes).all(|k| chars.get(j + k) == Some(&'#')) => {
                        j += 1 + hashes;
                        break;
                    }
                    _ => j += 1,
                }
            }
            out.push_str("\"\"");
            i = j;
        } else if c == '"' {
            i += 1;
            while i < chars.len() && chars[i] != '"' {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && next == Some('\\') {
            // An escaped character literal: '\n', '\'', '\u{..}'.
            i += 2;
            while i < chars.len() && chars[i] != '\'' {
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else if c == '\'' && chars.get(i + 2) == Some(&'\'') {
            i += 3;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    let Some(start) = out.find("#[cfg(test)]") else {
        return Ok(out);
    };
    let rest = out[start + "#[cfg(test)]".len()..].trim_start();
    let body = rest
        .strip_prefix("mod tests")
        .map(str::trim_start)
        .and_then(|r| r.strip_prefix('{'))
        .ok_or("`#[cfg(test)]` on something other than `mod tests { ... }`")?;
    let mut open = 1;
    let mut end = None;
    for (k, ch) in body.char_indices() {
        match ch {
            '{' => open += 1,
            '}' => {
                open -= 1;
                if open == 0 {
                    end = Some(k);
                    break;
                }
            }
            _ => {}
        }
    }
    let end = end.ok_or("unbalanced braces in the test module")?;
    if !body[end + 1..].trim().is_empty() {
        return Err("code after the test module (it must be the last item)".into());
    }
    Ok(out[..start].to_string())
}

fn ident(c: Option<char>) -> bool {
    c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The first path segments of a `use` tree at the start of `s`: `x`, or each top-level item
/// of `{x, y::z, w::{..}}`.
fn segments(s: &str) -> Vec<String> {
    let name = |s: &str| -> String { s.chars().take_while(|c| ident(Some(*c))).collect() };
    let Some(group) = s.strip_prefix('{') else {
        return vec![name(s)];
    };
    let mut found = Vec::new();
    let mut depth = 0;
    let mut at_item = true;
    for (k, ch) in group.char_indices() {
        match ch {
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            ',' if depth == 0 => at_item = true,
            c if at_item && !c.is_whitespace() => {
                found.push(name(&group[k..]));
                at_item = false;
            }
            _ => {}
        }
    }
    found
}

/// Every crate-level module `code` names: `crate::x`, `crate::{x, y}`, and `super::x` where
/// the `super`s climb out of the file's module (`depth` as from [`module_of`]).
fn uses(code: &str, depth: usize) -> Vec<String> {
    let mut found = Vec::new();
    for (i, _) in code.match_indices("crate::") {
        if i > 0 && (ident(code[..i].chars().last()) || code[..i].ends_with('$')) {
            continue;
        }
        found.extend(segments(&code[i + "crate::".len()..]));
    }
    let mut i = 0;
    while let Some(k) = code[i..].find("super::") {
        let at = i + k;
        if at > 0 && ident(code[..at].chars().last()) {
            i = at + 1;
            continue;
        }
        let mut rest = &code[at..];
        let mut climbs = 0;
        while let Some(r) = rest.strip_prefix("super::") {
            climbs += 1;
            rest = r;
        }
        if climbs > depth {
            found.extend(segments(rest));
        }
        i = code.len() - rest.len();
    }
    found.retain(|n| !n.is_empty() && n != "self");
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
        .map(|f| module_of(&src, f).0)
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
        let (module, depth) = module_of(&src, file);
        let Some(own) = layer(&module) else {
            continue; // lib.rs and main.rs (the binary) sit on top.
        };
        let text = std::fs::read_to_string(file).expect("readable source");
        let code = match code(&text) {
            Ok(code) => code,
            Err(e) => {
                violations.push(format!("{}: {e}", file.display()));
                continue;
            }
        };
        for used in uses(&code, depth) {
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

/// The checker itself: back-references are caught however they are written, and code in
/// comments, strings or the test module is not read.
#[test]
fn the_checker_sees_back_references_and_ignores_comments_strings_and_tests() {
    let text = "use crate::model::Stat;\n\
                use crate::{app, http::{self, Serve}};\n\
                // crate::poll in a comment\n\
                /// [`crate::poll`] in a doc comment /* and */\n\
                const URL: &str = \"http://x\"; use crate::snapshot;\n\
                const QUOTE: char = '\"'; use crate::store;\n\
                const RAW: &str = r#\"crate::render \"quoted\"\"#; use super::plan;\n\
                fn f<'a>(x: &'a str) { crate::inventory::ApiFilter::new(x); }\n\
                /* crate::demo */\n\
                #[cfg(test)]\nmod tests { use crate::poll; fn g() { { } } const B: &[u8] = br#\"\"}\"#; }\n";
    let stripped = code(text).expect("well formed");
    assert_eq!(
        uses(&stripped, 0),
        [
            "model",
            "app",
            "http",
            "snapshot",
            "store",
            "inventory",
            "plan"
        ]
    );
    // `super::plan` from a file one level inside its module stays inside it; two `super`s
    // leave it.
    assert_eq!(
        uses("use super::plan; use super::super::demo;", 1),
        ["demo"]
    );
    assert!(code("#[cfg(test)]\nfn helper() {}\nfn after() {}").is_err());
    assert!(code("#[cfg(test)]\nmod tests { }\nfn after() { crate::app::run(); }").is_err());
    let config = layer("config").expect("config has a layer");
    assert!(layer("inventory").expect("inventory") > config);
    assert!(layer("http").expect("http") < layer("app").expect("app"));
    assert!(layer("demo").expect("demo") < layer("poll").expect("poll"));
}
