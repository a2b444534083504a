//! openssl as the independent judge of what meshca writes: running it, and signing certificates
//! under a delivered CA the way a workload's CA would.

use std::path::Path;
use std::process::Command;

/// `openssl <args>` in `dir`: whether it succeeded, and what it said.
pub fn run(args: &[&str], dir: &Path) -> (bool, String) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("openssl is installed by tests/run");
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// Signs a new EC P-256 certificate `<name>.pem` (key `<name>.key`) in `dir` with the CA in the
/// files `ca_cert`/`ca_key` there; `is_ca` makes it a CA, else a leaf.
pub fn sign(dir: &Path, name: &str, ca_cert: &str, ca_key: &str, is_ca: bool) {
    let ext = if is_ca {
        "basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign\n"
    } else {
        "basicConstraints=critical,CA:FALSE\n"
    };
    std::fs::write(dir.join(format!("{name}.ext")), ext).unwrap();
    let (key, csr, pem, extfile, subject) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.pem"),
        format!("{name}.ext"),
        format!("/CN={name}"),
    );
    let new_key = [
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        &key,
        "-subj",
        &subject,
        "-out",
        &csr,
    ];
    let signed = [
        "x509",
        "-req",
        "-in",
        &csr,
        "-CA",
        ca_cert,
        "-CAkey",
        ca_key,
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        &extfile,
        "-out",
        &pem,
    ];
    for args in [&new_key[..], &signed[..]] {
        let (ok, out) = run(args, dir);
        assert!(ok, "{out}");
    }
}
