//! The shape of `conductor/src` stays what ARCHITECTURE.md says: what each folder must
//! not import, no NATS code in the master, no import circles between files, and no
//! file past 700 lines (its unit tests aside).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// A source file: its module path (`master::feeding::lanes`) and its text without
/// comments.
struct Source {
    module: Vec<String>,
    path: PathBuf,
    code: String,
    lines_before_tests: usize,
}

fn sources() -> Vec<Source> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("conductor/src");
    let mut files = Vec::new();
    collect(&root, &mut files);
    files
        .into_iter()
        .map(|path| {
            let relative = path.strip_prefix(&root).unwrap().with_extension("");
            let mut module: Vec<String> = relative
                .components()
                .map(|c| c.as_os_str().to_string_lossy().into_owned())
                .collect();
            if matches!(module.last().map(String::as_str), Some("mod" | "lib")) {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines: Vec<&str> = text.lines().collect();
            let lines_before_tests = lines
                .windows(2)
                .position(|w| w[0].starts_with("#[cfg(test)]") && w[1].starts_with("mod "))
                .unwrap_or(lines.len());
            let code = lines
                .iter()
                .map(|line| match line.find("//") {
                    Some(at) => &line[..at],
                    None => line,
                })
                .collect::<Vec<_>>()
                .join("\n");
            Source {
                module,
                path,
                code,
                lines_before_tests,
            }
        })
        .collect()
}

fn collect(dir: &Path, into: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            collect(&path, into);
        } else if path.extension().is_some_and(|e| e == "rs") {
            into.push(path);
        }
    }
}

fn in_folder(source: &Source, folder: &[&str]) -> bool {
    source.module.len() >= folder.len() && source.module[..folder.len()] == *folder
}

/// Every `crate::…`, `super::…` and `self::…` path the file names, as a module path.
fn paths_named(source: &Source) -> Vec<Vec<String>> {
    let mut paths = Vec::new();
    let code = &source.code;
    for (at, _) in code.match_indices("::") {
        // Walk back to the start of the path.
        let start = code[..at]
            .rfind(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':'))
            .map_or(0, |i| i + 1);
        let head = &code[start..at];
        // The later `::`s of a path: its first one is read below.
        if head.contains("::") {
            continue;
        }
        let base: Vec<String> = match head {
            "crate" => Vec::new(),
            "self" => source.module.clone(),
            "super" => source.module[..source.module.len().saturating_sub(1)].to_vec(),
            _ => continue,
        };
        let mut path = base;
        let mut rest = &code[at + 2..];
        // `super::super::x`
        while let Some(after) = rest.strip_prefix("super::") {
            path.pop();
            rest = after;
        }
        let tail: String = rest
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == ':' || *c == '{')
            .collect();
        if let Some((prefix, _)) = tail.split_once('{') {
            // `use crate::a::{b, c::d}`: each item.
            let prefix: Vec<String> = split(prefix);
            let group_end = rest.find('}').unwrap_or(rest.len());
            let group = &rest[rest.find('{').unwrap() + 1..group_end];
            for item in group.split(',') {
                let mut full = path.clone();
                full.extend(prefix.iter().cloned());
                full.extend(split(item.trim()));
                paths.push(full);
            }
        } else {
            path.extend(split(&tail));
            paths.push(path);
        }
    }
    paths
}

fn split(path: &str) -> Vec<String> {
    path.split("::")
        .map(|p| p.trim().to_string())
        .filter(|p| {
            !p.is_empty() && p != "self" && p.chars().all(|c| c.is_alphanumeric() || c == '_')
        })
        .collect()
}

/// The modules each file imports, resolved to files, ancestors and descendants aside
/// (a module and its own parent may name each other, as Rust means them to).
fn import_graph(sources: &[Source]) -> BTreeMap<Vec<String>, BTreeSet<Vec<String>>> {
    let modules: BTreeSet<Vec<String>> = sources.iter().map(|s| s.module.clone()).collect();
    let related = |a: &[String], b: &[String]| a.starts_with(b) || b.starts_with(a);
    let mut graph = BTreeMap::new();
    for source in sources {
        let mut targets = BTreeSet::new();
        for path in paths_named(source) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|prefix| modules.contains(prefix));
            if let Some(target) = target {
                if !related(&target, &source.module) {
                    targets.insert(target);
                }
            }
        }
        graph.insert(source.module.clone(), targets);
    }
    graph
}

#[test]
fn the_source_tree_reads_as_it_should() {
    let sources = sources();
    assert!(sources.len() > 30, "conductor/src not found");
    // What each folder must not import.
    let rules: &[(&[&str], &[&str], &str)] = &[
        (
            &["master"],
            &["crate::transport::local", "crate::transport::nats", "nats"],
            "the master knows transports only by their trait",
        ),
        (
            &["master"],
            &["cfg(feature"],
            "the master has no feature-gated code",
        ),
        (
            &["transport"],
            &["crate::master"],
            "a transport only carries",
        ),
        (
            &["transport", "local"],
            &["crate::transport::nats"],
            "one backend never uses another",
        ),
        (
            &["transport", "nats"],
            &["crate::transport::local"],
            "one backend never uses another",
        ),
        (
            &["worker"],
            &["crate::master", "crate::transport"],
            "a worker talks frames over one socket",
        ),
        (
            &["wire"],
            &[
                "crate::master",
                "crate::worker",
                "crate::transport",
                "crate::handle",
            ],
            "the wire knows bytes only",
        ),
        (
            &["boot"],
            &["crate::master"],
            "a worker process never runs master code",
        ),
    ];
    let mut broken = Vec::new();
    for source in &sources {
        for (folder, forbidden, why) in rules {
            if !in_folder(source, folder) {
                continue;
            }
            for word in *forbidden {
                let found = match *word {
                    // Any mention of the backend's name, not only an import.
                    "nats" => source.code.to_lowercase().contains("nats"),
                    word => source.code.contains(word),
                };
                if found {
                    broken.push(format!("{} names `{word}`: {why}", source.path.display()));
                }
            }
        }
        if source.lines_before_tests > 700 {
            broken.push(format!(
                "{} has {} lines: split it along a concept",
                source.path.display(),
                source.lines_before_tests
            ));
        }
    }
    assert!(broken.is_empty(), "\n{}", broken.join("\n"));
}

#[test]
fn no_file_imports_one_that_imports_it_back() {
    let graph = import_graph(&sources());
    // Every cycle passes through some module that can reach itself.
    let mut cycles = Vec::new();
    for start in graph.keys() {
        let mut seen = BTreeSet::new();
        let mut stack: Vec<(Vec<String>, Vec<Vec<String>>)> = vec![(start.clone(), vec![])];
        while let Some((module, trail)) = stack.pop() {
            for next in &graph[&module] {
                let mut trail = trail.clone();
                trail.push(module.clone());
                if next == start {
                    cycles.push(
                        trail
                            .iter()
                            .chain([start])
                            .map(|m| m.join("::"))
                            .collect::<Vec<_>>()
                            .join(" -> "),
                    );
                } else if seen.insert(next.clone()) {
                    stack.push((next.clone(), trail));
                }
            }
        }
    }
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn the_import_reader_sees_imports() {
    // The checks above are only as good as the reader: it must see plain, grouped and
    // relative imports.
    let source = Source {
        module: vec!["master".into(), "feeding".into(), "lanes".into()],
        path: PathBuf::new(),
        code: "use crate::transport::lane::{Lane, MAX};\nuse super::super::ledger::Ledger;\nlet x = crate::wire::control_frame(&y);".into(),
        lines_before_tests: 0,
    };
    let paths: Vec<String> = paths_named(&source).iter().map(|p| p.join("::")).collect();
    assert!(
        paths.contains(&"transport::lane::Lane".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"master::ledger::Ledger".to_string()),
        "{paths:?}"
    );
    assert!(
        paths.contains(&"wire::control_frame".to_string()),
        "{paths:?}"
    );
}
