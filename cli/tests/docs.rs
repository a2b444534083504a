//! The front door holds together: the README stays one page, every relative link in it and in
//! `docs/` leads to a file that exists, and every page of `docs/` is reachable from the README.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Every Markdown file of the README and `docs/`, recursively.
fn pages() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "md") {
                out.push(path);
            }
        }
    }
    let mut out = vec![root().join("README.md")];
    walk(&root().join("docs"), &mut out);
    out.sort();
    out
}

/// The relative targets of `[text](target)` links in `text`, anchors dropped.
fn links(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(at) = rest.find("](") {
        rest = &rest[at + 2..];
        let end = rest.find([')', ' ', '\n']).unwrap_or(rest.len());
        let target = &rest[..end];
        let external = ["http://", "https://", "mailto:", "#"]
            .iter()
            .any(|p| target.starts_with(p));
        if !external && !target.is_empty() {
            out.push(target.split('#').next().unwrap_or_default().to_string());
        }
    }
    out
}

#[test]
fn the_readme_is_one_page() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let n = readme.lines().count();
    assert!(
        n <= 200,
        "README.md has {n} lines; what a task needs belongs in docs/"
    );
}

#[test]
fn every_relative_link_leads_somewhere_and_every_page_is_reachable() {
    let mut reached = BTreeSet::new();
    let mut broken = Vec::new();
    for page in pages() {
        let text = std::fs::read_to_string(&page).unwrap();
        for target in links(&text) {
            let path = page.parent().unwrap().join(&target);
            match path.canonicalize() {
                Ok(p) => {
                    reached.insert(p);
                }
                Err(_) => broken.push(format!("{}: {target}", page.display())),
            }
        }
    }
    assert!(
        broken.is_empty(),
        "links to nothing:\n{}",
        broken.join("\n")
    );
    let unreached: Vec<String> = pages()
        .into_iter()
        .filter(|p| p.file_name().is_some_and(|n| n != "README.md") || p.parent() != Some(&root()))
        .filter(|p| !reached.contains(&p.canonicalize().unwrap()))
        .map(|p| p.display().to_string())
        .collect();
    assert!(
        unreached.is_empty(),
        "pages no link reaches:\n{}",
        unreached.join("\n")
    );
}

#[test]
fn the_link_reader_finds_links_and_skips_external_ones() {
    let found = links("see [a](docs/a.md#top), [b](https://x.example) and [c](../c.md).");
    assert_eq!(found, ["docs/a.md", "../c.md"]);
}
