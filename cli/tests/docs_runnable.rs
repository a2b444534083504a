//! Every command block the README and `docs/` mark runnable runs exactly as written: in a fresh
//! directory, with the built `meshca` on PATH, and a real kube-apiserver (tests/kube/build) with
//! an istiod behind each kubeconfig context the page names (`demo` is the current one). A
//! block is marked by a comment on the line before its fence: `<!-- runnable -->`, or
//! `<!-- runnable after: COMMAND -->` when the page assumes something done before it (the
//! command runs first, unseen by the reader). A page's blocks run in order in one directory.
//! Blocks marked `<!-- runnable in checkout -->` run from the repository's root, in
//! tests/e2e/test_local_loop.py; `<!-- runnable by infra/check -->`, in infra/check.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use meshca_test_support::kube::RealApiServer;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

struct Block {
    line: usize,
    after: Option<String>,
    text: String,
}

/// The marked blocks of one page, in order.
fn marked(text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let Some(mark) = line
            .trim()
            .strip_prefix("<!-- runnable")
            .and_then(|m| m.strip_suffix("-->"))
        else {
            continue;
        };
        // Run elsewhere: from the checkout's root by tests/e2e (the local loop), or by
        // infra/check (the CDK synth), which has what they need.
        if mark.trim() == "in checkout" || mark.trim().starts_with("by ") {
            continue;
        }
        let after = mark
            .trim()
            .strip_prefix("after:")
            .map(|c| c.trim().to_string());
        assert!(
            lines.get(i + 1).is_some_and(|l| l.trim() == "```sh"),
            "line {}: a runnable mark not followed by a ```sh fence",
            i + 1
        );
        let body: Vec<&str> = lines[i + 2..]
            .iter()
            .take_while(|l| l.trim() != "```")
            .copied()
            .collect();
        out.push(Block {
            line: i + 3,
            after,
            text: body.join("\n"),
        });
    }
    out
}

fn pages() -> BTreeMap<PathBuf, Vec<Block>> {
    let mut files = vec![root().join("README.md")];
    for entry in std::fs::read_dir(root().join("docs")).unwrap() {
        let p = entry.unwrap().path();
        if p.extension().is_some_and(|e| e == "md") {
            files.push(p);
        }
    }
    files
        .into_iter()
        .map(|p| {
            let blocks = marked(&std::fs::read_to_string(&p).unwrap());
            (p, blocks)
        })
        .filter(|(_, b)| !b.is_empty())
        .collect()
}

/// The contexts a page's blocks name with `--context`, and `demo` for bare `kubectl`.
fn contexts(blocks: &[Block]) -> Vec<String> {
    let mut names = vec!["demo".to_string()];
    for b in blocks {
        let text = format!("{} {}", b.after.as_deref().unwrap_or_default(), b.text);
        let words: Vec<&str> = text.split_whitespace().collect();
        for w in words.windows(2).filter(|w| w[0] == "--context") {
            if !names.iter().any(|n| n == w[1]) {
                names.push(w[1].to_string());
            }
        }
    }
    names
}

#[test]
fn every_runnable_block_runs_as_written() {
    let pages = pages();
    let count: usize = pages.values().map(Vec::len).sum();
    assert!(count >= 4, "runnable blocks found: {count}");
    let meshca = assert_cmd::cargo::cargo_bin("meshca");
    // The tools the pages name (`bao`, `cargo lambda`) as tests/setup installs them.
    let path = format!(
        "{}:{}:{}",
        meshca.parent().unwrap().display(),
        root().join("tests/.venv/bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    for (page, blocks) in pages {
        let dir = tempfile::tempdir().unwrap();
        let mut servers = Vec::new();
        let mut kubeconfigs = Vec::new();
        for name in contexts(&blocks) {
            let real = RealApiServer::start();
            real.kubectl(&["create", "namespace", "istio-system"], None);
            real.seed_istiod("docker.io/istio/pilot:1.27.1");
            let file = dir.path().join(format!("{name}.kubeconfig"));
            std::fs::write(&file, real.kubeconfig(&name)).unwrap();
            kubeconfigs.push(file.display().to_string());
            servers.push(real);
        }
        for b in &blocks {
            let script = format!("{}\n{}", b.after.as_deref().unwrap_or("true"), b.text);
            let out = Command::new("bash")
                .args(["-euo", "pipefail", "-c", &script])
                .current_dir(dir.path())
                .env("PATH", &path)
                .env("KUBECONFIG", kubeconfigs.join(":"))
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}:{}: the block failed as written:\n{}\n--- stdout\n{}\n--- stderr\n{}",
                page.display(),
                b.line,
                b.text,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
    }
}

/// The reader of marks: a block, its line, its precondition; a mark without a fence is refused.
#[test]
fn marks_are_read_with_their_precondition() {
    let page = "x\n<!-- runnable after: meshca issue --cluster a -->\n```sh\nmeshca fleet\n```\n\
                <!-- runnable -->\n```sh\nmeshca --help\nmeshca fleet --json\n```\n\
                <!-- runnable in checkout -->\n```sh\nscripts/local-loop\n```\n";
    let blocks = marked(page);
    assert_eq!(blocks.len(), 2);
    assert_eq!(blocks[0].after.as_deref(), Some("meshca issue --cluster a"));
    assert_eq!(
        (blocks[0].line, blocks[0].text.as_str()),
        (4, "meshca fleet")
    );
    assert_eq!(blocks[1].text, "meshca --help\nmeshca fleet --json");
    assert_eq!(contexts(&blocks), ["demo"]);
    let bad = std::panic::catch_unwind(|| marked("<!-- runnable -->\ntext\n"));
    assert!(bad.is_err());
}
