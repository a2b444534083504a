//! The domain's modules form layers: vocabularies (kind, bundle, terms) below the ports that use
//! them (authority, escrow, delivery) below the reconciler. A module that reaches up — as
//! `KindSpec::escrow_key` once made `kind` depend on `escrow` and the two on each other — makes a
//! cycle, and a cycle makes every module in it a single unit nobody can read or test alone.
//! This test reads `src/` and fails naming the cycle.

use std::collections::{BTreeMap, BTreeSet};

type Graph = BTreeMap<String, BTreeSet<String>>;

/// The modules each module names through `crate::…` outside its test module.
fn module_graph() -> Graph {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = Graph::new();
    for entry in std::fs::read_dir(&src).expect("src/ is readable") {
        let path = entry.expect("a directory entry").path();
        let Some(name) = path.file_stem().and_then(|s| s.to_str()) else {
            continue;
        };
        if name == "lib" || path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("a readable module");
        let code = text.split("#[cfg(test)]").next().unwrap_or_default();
        graph.insert(name.to_string(), references(code, name));
    }
    graph
}

/// `crate::m::…` and `use crate::{m::…, n::…}` in `code`, except `own`.
fn references(code: &str, own: &str) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut add = |m: &str| {
        if m != own && !m.is_empty() {
            found.insert(m.to_string());
        }
    };
    for (i, _) in code.match_indices("crate::") {
        let rest = &code[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let group = &group[..group.find("};").unwrap_or(group.len())];
            for item in group.split(',') {
                if let Some((m, _)) = item.trim().split_once("::") {
                    add(m.trim());
                }
            }
        } else {
            let end = rest
                .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
                .unwrap_or(rest.len());
            if rest[end..].starts_with("::") {
                add(&rest[..end]);
            }
        }
    }
    found
}

/// One cycle of `graph`, as the path that closes it, if there is any.
fn a_cycle(graph: &Graph) -> Option<Vec<String>> {
    fn visit(
        graph: &Graph,
        node: &str,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| n == node) {
            let mut cycle = path[at..].to_vec();
            cycle.push(node.to_string());
            return Some(cycle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(graph, next, path, done) {
                return Some(cycle);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    graph
        .keys()
        .find_map(|n| visit(graph, n, &mut Vec::new(), &mut done))
}

#[test]
fn the_domain_modules_have_no_import_cycle() {
    let graph = module_graph();
    assert!(graph.len() > 15, "read too few modules: {:?}", graph.keys());
    assert!(
        graph["reconcile"].contains("escrow"),
        "the reader misses `use crate::{{…}}`"
    );
    if let Some(cycle) = a_cycle(&graph) {
        panic!(
            "the domain's modules import each other in a cycle: {}",
            cycle.join(" → ")
        );
    }
}

#[test]
fn the_reader_sees_both_forms_of_import_and_the_search_finds_a_cycle() {
    let refs = references(
        "use crate::{kind::Kind, escrow::{EscrowKey, Current}};\nfn f(_: crate::bundle::Bundle) {}\n\
         // crate::kind itself, and crate::Settings (the root), are no module edge\nuse crate::Profile;",
        "kind",
    );
    assert_eq!(refs, ["bundle", "escrow"].map(String::from).into());
    let mut graph = Graph::new();
    graph.insert("kind".into(), ["csr".into()].into());
    graph.insert("csr".into(), ["escrow".into()].into());
    graph.insert("escrow".into(), ["kind".into()].into());
    let cycle = a_cycle(&graph).expect("kind → csr → escrow → kind is a cycle");
    assert_eq!(cycle.first(), cycle.last());
    graph.get_mut("escrow").expect("escrow").clear();
    assert_eq!(a_cycle(&graph), None);
}
