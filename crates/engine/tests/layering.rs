//! The engine's layering rule, checked on its sources: a module uses only
//! modules of its own layer or below, and only `ops` and `dispatch` add
//! methods to `Context` (besides `context` itself, which defines it).
//! The layers are listed in `src/lib.rs`'s documentation.

use std::path::{Path, PathBuf};

/// Top-level modules, lowest layer first; modules on one line share a layer.
const LAYERS: &[&[&str]] = &[
    &["errno", "fail_nth", "limits", "sync", "text"],
    &["memory"],
    &["pages"],
    &["ioas"],
    &["object"],
    &["driver"],
    &["context"],
    &["ops"],
    &["dispatch"],
    &["vfio"],
    &["devices"],
    &["api", "inspect"],
];

/// The longest a source file may grow before it should be split.
const MAX_LINES: usize = 500;

fn layer_of(module: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&module))
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a source file belongs to (`None` for `lib.rs`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel.components().next()?.as_os_str().to_str()?.to_owned();
    let name = first.strip_suffix(".rs").unwrap_or(&first).to_owned();
    (name != "lib").then_some(name)
}

/// Every `crate::<module>` a file's code names, with the line it is on.
/// Comments are skipped: a doc link may point up to the code that uses an item.
fn crate_references(text: &str) -> Vec<(usize, String)> {
    let mut found = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim_start().starts_with("//") {
            continue;
        }
        let mut rest = line;
        while let Some(i) = rest.find("crate::") {
            let after = &rest[i + "crate::".len()..];
            let name: String = after
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            // `softiommu_crate::x` or `super::crate` are not references.
            let before = rest[..i].chars().last();
            if !before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') && !name.is_empty() {
                found.push((n + 1, name));
            }
            rest = after;
        }
    }
    found
}

fn engine_sources() -> (PathBuf, Vec<PathBuf>) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    files.sort();
    (src, files)
}

#[test]
fn every_module_uses_only_its_layer_and_those_below() {
    let (src, files) = engine_sources();
    let mut wrong = Vec::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let own = layer_of(&module).unwrap_or_else(|| {
            panic!("{module} is in no layer: add it to LAYERS and to lib.rs's list")
        });
        let text = std::fs::read_to_string(file).unwrap();
        for (line, target) in crate_references(&text) {
            match layer_of(&target) {
                Some(layer) if layer > own => wrong.push(format!(
                    "{}:{line}: {module} (layer {own}) uses {target} (layer {layer})",
                    file.display()
                )),
                Some(_) => {}
                None => wrong.push(format!(
                    "{}:{line}: crate::{target} is no top-level module",
                    file.display()
                )),
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "imports against the layering:\n{}",
        wrong.join("\n")
    );
}

#[test]
fn only_ops_and_dispatch_add_methods_to_the_context() {
    let (src, files) = engine_sources();
    let mut wrong = Vec::new();
    for file in &files {
        let module = module_of(&src, file).unwrap_or_default();
        let text = std::fs::read_to_string(file).unwrap();
        let defines = file.ends_with("context/mod.rs");
        if text.contains("impl Context {") && !defines && module != "ops" && module != "dispatch" {
            wrong.push(file.display().to_string());
        }
    }
    assert!(
        wrong.is_empty(),
        "impl Context outside ops/dispatch: {wrong:?}"
    );
}

#[test]
fn no_source_file_grows_past_the_limit() {
    let (_, files) = engine_sources();
    let long: Vec<String> = files
        .iter()
        .filter_map(|f| {
            let n = std::fs::read_to_string(f).unwrap().lines().count();
            (n > MAX_LINES).then(|| format!("{}: {n} lines", f.display()))
        })
        .collect();
    assert!(long.is_empty(), "split these: {long:?}");
}

#[test]
fn the_reference_scanner_finds_crate_paths() {
    let refs = crate_references(
        "use crate::ioas::Prot; x = softiommu_crate::y; crate::ops::dma::f()\n/// [`crate::api`]",
    );
    let names: Vec<&str> = refs.iter().map(|(_, n)| n.as_str()).collect();
    assert_eq!(names, ["ioas", "ops"]);
}
