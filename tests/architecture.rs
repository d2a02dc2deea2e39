//! ARCHITECTURE.md's checkable claims, checked: the dependency arrows it draws are exactly the
//! workspace dependencies each package declares, every folder of its code map exists (and every
//! crate folder is in it), and every repository path it names exists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every package of the workspace: its name, folder, and the workspace packages (and other
/// crates) among its normal dependencies.
struct Package {
    folder: String,
    workspace_deps: BTreeSet<String>,
    other_deps: BTreeSet<String>,
}

fn packages() -> BTreeMap<String, Package> {
    let root = root();
    let mut manifests = vec![(String::new(), root.join("Cargo.toml"))];
    manifests.push(("xtask".into(), root.join("xtask/Cargo.toml")));
    for entry in std::fs::read_dir(root.join("crates")).unwrap() {
        let dir = entry.unwrap().path();
        if dir.join("Cargo.toml").is_file() {
            let folder = format!("crates/{}", dir.file_name().unwrap().to_string_lossy());
            manifests.push((folder, dir.join("Cargo.toml")));
        }
    }
    let parsed: Vec<(String, toml::Table)> = manifests
        .into_iter()
        .map(|(folder, path)| (folder, read(&path).parse::<toml::Table>().unwrap()))
        .collect();
    let names: BTreeSet<String> = parsed
        .iter()
        .map(|(_, t)| t["package"]["name"].as_str().unwrap().to_string())
        .collect();
    parsed
        .into_iter()
        .map(|(folder, t)| {
            let name = t["package"]["name"].as_str().unwrap().to_string();
            let deps: BTreeSet<String> = t
                .get("dependencies")
                .and_then(toml::Value::as_table)
                .map(|d| d.keys().cloned().collect())
                .unwrap_or_default();
            let (workspace_deps, other_deps) = deps.into_iter().partition(|d| names.contains(d));
            let package = Package {
                folder,
                workspace_deps,
                other_deps,
            };
            (name, package)
        })
        .collect()
}

/// The names in a comma-separated list, each cut at its first space (`bszo (facade)` → `bszo`),
/// up to a parenthesised remark.
fn names(list: &str) -> Vec<String> {
    let list = list.split(" (").next().unwrap_or("").trim();
    if list.is_empty() || list.starts_with('(') || list == "no workspace crate" {
        return Vec::new();
    }
    list.split(',')
        .map(|n| n.split_whitespace().next().unwrap_or("").to_string())
        .filter(|n| !n.is_empty())
        .collect()
}

#[test]
fn the_dependency_arrows_are_the_manifests() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let packages = packages();
    let mut drawn: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in doc.lines().filter(|l| l.contains("──►")) {
        let (left, right) = line.split_once("──►").unwrap();
        let targets = names(right);
        for source in left.split(',') {
            let source = source.split_whitespace().next().unwrap().to_string();
            assert!(
                packages.contains_key(&source),
                "ARCHITECTURE.md draws `{source}`, which is no package of the workspace"
            );
            assert!(
                drawn.insert(source.clone(), targets.clone()).is_none(),
                "ARCHITECTURE.md draws `{source}` twice"
            );
        }
    }
    for (name, package) in &packages {
        let Some(targets) = drawn.get(name) else {
            panic!("ARCHITECTURE.md draws no arrow line for the package `{name}`");
        };
        let (workspace, other): (Vec<String>, Vec<String>) = targets
            .iter()
            .cloned()
            .partition(|t| packages.contains_key(t));
        let workspace: BTreeSet<String> = workspace.into_iter().collect();
        assert_eq!(
            workspace, package.workspace_deps,
            "ARCHITECTURE.md's arrows from `{name}` against its Cargo.toml [dependencies]"
        );
        for crate_name in other {
            assert!(
                package
                    .other_deps
                    .iter()
                    .any(|d| d.starts_with(&crate_name)),
                "ARCHITECTURE.md draws `{name}` ──► `{crate_name}`, which it does not depend on"
            );
        }
    }
}

#[test]
fn the_code_map_names_every_crate_and_only_existing_folders() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let packages = packages();
    let map = doc
        .split("## Code map")
        .nth(1)
        .expect("ARCHITECTURE.md has a code map")
        .split("\n## ")
        .next()
        .unwrap();
    let mut folders = BTreeSet::new();
    for row in map.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let folder = cells[1].trim_matches('`').trim_end_matches('/');
        assert!(
            root().join(folder).exists(),
            "the code map names `{folder}`, which does not exist"
        );
        let package = cells[2].trim_matches('`');
        if package != "—" {
            let found = packages
                .get(package)
                .unwrap_or_else(|| panic!("the code map names the package `{package}`"));
            let expected = if found.folder.is_empty() {
                "src"
            } else {
                &found.folder
            };
            assert_eq!(folder, expected, "the code map's folder of `{package}`");
        }
        folders.insert(folder.to_string());
    }
    for package in packages.values().filter(|p| !p.folder.is_empty()) {
        assert!(
            folders.contains(&package.folder),
            "the code map lacks `{}`",
            package.folder
        );
    }
}

#[test]
fn every_path_it_names_exists() {
    let doc = read(&root().join("ARCHITECTURE.md"));
    let mut named = 0;
    for (i, piece) in doc.split('`').enumerate() {
        // Odd pieces are inside backticks.
        let looks_like_path = i % 2 == 1
            && !piece.contains(' ')
            && !piece.contains('*')
            && (piece.starts_with("crates/")
                || piece.starts_with("xtask/")
                || piece.starts_with("configs/")
                || piece.starts_with("scripts/")
                || piece.starts_with("docs/")
                || piece.starts_with("tests/")
                || piece.starts_with("examples/"));
        if looks_like_path {
            let path = piece.split(':').next().unwrap();
            assert!(
                root().join(path).exists(),
                "ARCHITECTURE.md names `{piece}`, which does not exist"
            );
            named += 1;
        }
    }
    assert!(
        named >= 10,
        "only {named} paths found: is the check reading the document?"
    );
}
