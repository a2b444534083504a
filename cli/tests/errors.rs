//! Errors as a user meets them: each names its cause once (an error that says its cause and
//! also keeps it as its source once printed it twice), and exits 1.

use assert_cmd::Command;

fn stderr_of(dir: &std::path::Path, args: &[&str]) -> String {
    let out = Command::cargo_bin("meshca")
        .unwrap()
        .current_dir(dir)
        .env_remove("KUBECONFIG")
        .args(args)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{args:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn an_error_names_its_cause_once() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("hostname"), "vm\n").unwrap();
    let cases: [(&[&str], &str); 2] = [
        (&["inspect", "hostname"], "is not a Secret manifest"),
        (
            &[
                "issue",
                "--cluster",
                "c1",
                "--context",
                "nope",
                "--kubeconfig",
                "missing",
            ],
            "No such file or directory",
        ),
    ];
    for (args, cause) in cases {
        let said = stderr_of(d, args);
        assert_eq!(
            said.matches(cause).count(),
            1,
            "{args:?} says {cause:?} once: {said}"
        );
        let errors: Vec<&str> = said
            .lines()
            .filter(|l| l.starts_with("meshca: error: "))
            .collect();
        assert_eq!(errors.len(), 1, "{said}");
    }
}
