"""What the documented build steps produce, checked after infra/check ran them as a user would:
the Terraform build command gives every zip the examples reference, each an arm64 `bootstrap`;
a bundled `cdk synth` (no MESHCA_SKIP_BUNDLING) gives three arm64 assets that the template uses;
the Terraform files are formatted as `terraform fmt` would."""

import glob
import json
import os
import re
import shutil
import subprocess
import zipfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(HERE, "terraform", "examples")
AARCH64 = 0xB7  # ELF e_machine


def is_arm64_elf(data: bytes) -> bool:
    return data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == AARCH64


def referenced_zips():
    """Every `*_zip = "${path.root}/…"` of every example, resolved against its directory."""
    out = []
    for main in sorted(glob.glob(os.path.join(EXAMPLES, "*", "main.tf"))):
        for rel in re.findall(r'_zip\s*=\s*"\$\{path\.root\}/([^"]+)"', open(main).read()):
            out.append((main, os.path.normpath(os.path.join(os.path.dirname(main), rel))))
    return out


def test_every_zip_the_examples_reference_exists_and_holds_an_arm64_bootstrap():
    zips = referenced_zips()
    assert len(zips) == 6, zips  # three functions, two examples
    for main, path in zips:
        assert os.path.isfile(path), f"{main} references {path}, which the documented build did not produce"
        with zipfile.ZipFile(path) as z:
            assert z.namelist() == ["bootstrap"], (path, z.namelist())
            assert is_arm64_elf(z.read("bootstrap")), f"{path}: bootstrap is not an arm64 ELF"
            assert z.getinfo("bootstrap").external_attr >> 16 & 0o111, f"{path}: bootstrap is not executable"


def test_the_examples_document_the_build_command_that_was_run():
    commands = {re.search(r"^#\s+(cargo lambda build [^(]+?)\s+\(from the repository root\)", open(m).read(), re.M).group(1) for m in glob.glob(os.path.join(EXAMPLES, "*", "main.tf"))}
    assert len(commands) == 1, commands
    command = commands.pop()
    for fn in ["cluster-events", "expiry-sweep", "renewal-worker"]:
        assert f"-p {fn}" in command
    assert command in open(os.path.join(ROOT, "README.md")).read() or command in open(os.path.join(ROOT, "docs", "deploy.md")).read()


def bundled_assets(out):
    template = json.load(open(os.path.join(HERE, "cdk", out, "Meshca.template.json")))
    fns = [r for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
    keys = {f["Properties"]["Code"]["S3Key"] for f in fns}
    return fns, keys


def test_the_bundled_synth_holds_three_arm64_bootstraps_the_template_uses():
    fns, keys = bundled_assets("cdk.out")
    assert len(fns) == 3 and len(keys) == 3, keys
    for key in keys:
        asset = os.path.join(HERE, "cdk", "cdk.out", "asset." + key.removesuffix(".zip"))
        bootstrap = os.path.join(asset, "bootstrap")
        assert os.path.isfile(bootstrap), f"{asset} has no bootstrap: {os.listdir(asset) if os.path.isdir(asset) else 'no such asset'}"
        assert is_arm64_elf(open(bootstrap, "rb").read(64)), f"{bootstrap} is not an arm64 ELF"


def test_the_copy_outside_the_checkout_synthesised_the_same_functions():
    _, here = bundled_assets("cdk.out")
    copy = os.environ.get("MESHCA_CDK_COPY_OUT")
    assert copy, "infra/check sets MESHCA_CDK_COPY_OUT to the copy's cdk.out"
    template = json.load(open(os.path.join(copy, "Meshca.template.json")))
    keys = {r["Properties"]["Code"]["S3Key"] for r in template["Resources"].values() if r["Type"] == "AWS::Lambda::Function"}
    assert keys == here, "the same code, built from the checkout the copy names"


def test_terraform_fmt_check_passes_and_would_catch_a_misformatted_file(tmp_path):
    fmt = os.path.join(HERE, "cdk", "scripts", "terraform-fmt.js")
    ok = subprocess.run(["node", fmt, os.path.join(HERE, "terraform")], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "0 unformatted" in ok.stdout
    bad = tmp_path / "bad"
    shutil.copytree(os.path.join(HERE, "terraform", "examples", "basic"), bad)
    text = (bad / "main.tf").read_text().replace("  source             =", "  source =")
    (bad / "main.tf").write_text(text)
    caught = subprocess.run(["node", fmt, str(bad)], capture_output=True, text=True)
    assert caught.returncode == 1 and "main.tf: not formatted" in caught.stderr, caught.stdout + caught.stderr
