//! The layout has no import circles: no top-level module of `src/` imports
//! (through `crate::…`) one that imports it back, directly or not. Doc
//! comments and tests are not imports and are left out.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for entry in fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The code of a file without comments and without its `#[cfg(test)]` tail.
fn code(src: &str) -> String {
    let src = src.split("#[cfg(test)]\nmod tests").next().unwrap_or(src);
    src.lines().filter(|l| !l.trim_start().starts_with("//")).collect::<Vec<_>>().join("\n")
}

/// Top-level modules each module names as `crate::x` or in `use crate::{x, …}`.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&root, &mut files);
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in files {
        let rel = file.strip_prefix(&root).unwrap().to_string_lossy().into_owned();
        let module = rel.split('/').next().unwrap().trim_end_matches(".rs").to_string();
        if module == "lib" || module == "main" || rel.contains("conformance") || rel.ends_with("_tests.rs") {
            continue;
        }
        let code = code(&fs::read_to_string(&file).unwrap());
        let mut named = BTreeSet::new();
        for (i, _) in code.match_indices("crate::") {
            let rest = &code[i + "crate::".len()..];
            if let Some(group) = rest.strip_prefix('{') {
                let group = &group[..group.find('}').unwrap_or(group.len())];
                for item in group.split(',') {
                    let name: String =
                        item.trim().chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect();
                    named.insert(name);
                }
            } else {
                named.insert(rest.chars().take_while(|c| c.is_alphanumeric() || *c == '_').collect());
            }
        }
        named.retain(|n| !n.is_empty() && *n != module);
        edges.entry(module).or_default().extend(named);
    }
    edges
}

/// A circle through `start`, if any (depth-first).
fn circle(edges: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        edges: &BTreeMap<String, BTreeSet<String>>,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        let here = path.last().unwrap().clone();
        for next in edges.get(&here).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(edges, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(edges, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

#[test]
fn no_module_imports_one_that_imports_it() {
    let edges = imports();
    assert!(edges.len() > 20, "found the modules: {:?}", edges.keys());
    assert!(edges["uploads"].contains("ports"), "the scan sees imports");
    let circles: Vec<String> =
        edges.keys().filter_map(|m| circle(&edges, m)).map(|c| c.join(" → ")).collect();
    assert!(circles.is_empty(), "import circles:\n{}", circles.join("\n"));
}

#[test]
fn backends_know_nothing_above_the_ports() {
    let edges = imports();
    let above = ["ports", "uploads", "app", "tus", "ietf", "api", "server", "protocol"];
    let bad: Vec<_> = edges["backends"].iter().filter(|m| above.contains(&m.as_str())).collect();
    assert!(bad.is_empty(), "backends import {bad:?}");
}
