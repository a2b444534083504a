"""The README's local loop, end to end: scripts/local-loop starts the emulated AWS, a test
Kubernetes API server registered as EKS cluster c1, and `cargo lambda watch` for both functions,
then sends sample events with `cargo lambda invoke --data-file`. We read what the functions
answered and what landed in the cluster (fetched by kubectl), and let openssl judge the chain."""

import base64
import json
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_create_reconcile_and_sweep_through_cargo_lambda(tmp_path):
    out = tmp_path / "loop"
    # Every sample in events/, each to the function its shape belongs to; the delete last.
    events = [
        "events/eks-create-cluster.json",
        "events/reconcile-request.json",
        "events/schedule.json",
        "events/eks-create-cluster-clustername.json",
        "events/eks-create-cluster-failed.json",
        "events/direct-invoke.json",
        "events/sqs-work-batch.json",
        "events/revoke-request.json",
        "events/eks-delete-cluster.json",
    ]
    listed = sorted(os.path.basename(e) for e in events)
    assert listed == sorted(f for f in os.listdir(os.path.join(ROOT, "events")) if f.endswith(".json")), "a sample event the loop does not send"
    run = subprocess.run(
        [os.path.join(ROOT, "scripts/local-loop"), *events],
        cwd=ROOT,
        # In CRL mode, so the functions read the CAs' CRLs from S3 and write ca-crl.pem.
        env=dict(os.environ, MESHCA_LOOP_OUT=str(out), MESHCA_LOOP_CRL="1"),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]

    created = json.loads((out / "response-1.json").read_text())
    assert (created["outcome"], created["cluster"], created["generation"], created["change"]) == ("renewed", "c1", 1, "created")
    assert created["reason"].startswith("no bundle")
    again = json.loads((out / "response-2.json").read_text())
    assert (again["outcome"], again["generation"]) == ("unchanged", 1)
    sweep = json.loads((out / "response-3.json").read_text())
    assert (sweep["checked"], sweep["unchanged"], sweep["renewed"], sweep["failed"]) == (1, 1, 0, 0), sweep
    assert sweep["soonest_expiry"]["not_after"] == created["not_after"]
    # The root's, the issuing CA's (both from S3) and c1's own, written by the CreateCluster
    # already (a new cluster's CRL goes out at once); istiod 1.24 does not read them.
    crls = sweep["crls"]
    assert (crls["crls"], crls["written"], crls["unchanged"], crls["failures"]) == (3, 0, 1, []), crls
    assert crls["not_protected"] == ["c1 in eu-west-1: not protected: istiod istiod is Istio 1.24, which ignores ca-crl.pem (read from 1.27)"], crls
    # The role's grant lists neither DaemonSets nor pods: said, not taken for protection.
    assert len(crls["not_checked"]) == 1 and crls["not_checked"][0].startswith("c1 in eu-west-1: ztunnels (ambient) not checked"), crls
    assert "sidecars not checked: meshca's role may not list pods in all namespaces" in crls["not_checked"][0], crls
    by_clustername = json.loads((out / "response-4.json").read_text())
    assert (by_clustername["outcome"], by_clustername["cluster"]) == ("unchanged", "c1"), by_clustername
    refused = json.loads((out / "response-5.json").read_text())
    assert refused["outcome"] == "skipped", refused
    direct = json.loads((out / "response-6.json").read_text())
    assert (direct["outcome"], direct["cluster"]) == ("unchanged", "c1"), direct
    batch = json.loads((out / "response-7.json").read_text())
    assert batch == {"batchItemFailures": []}, batch
    revoked = json.loads((out / "response-8.json").read_text())
    assert (revoked["outcome"], revoked["cluster"]) == ("revoked", "c1"), revoked
    assert len(revoked["certificates"]) == 1, revoked
    # Held, then deleted: its certificate is not revoked a second time, its escrow is retired.
    deleted = json.loads((out / "response-9.json").read_text())
    assert (deleted["outcome"], deleted["cluster"], deleted["certificates"]) == ("revoked", "c1", []), deleted

    # What kubectl read from the cluster: meshca's secret, four files, the chain verifies.
    secret = json.loads((out / "cacerts.json").read_text())
    assert secret["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "meshca"
    assert secret["metadata"]["annotations"]["meshca.io/generation"] == "1"
    assert sorted(secret["data"]) == ["ca-cert.pem", "ca-crl.pem", "ca-key.pem", "cert-chain.pem", "root-cert.pem"]
    for name, b64 in secret["data"].items():
        (tmp_path / name).write_bytes(base64.b64decode(b64))
    verify = subprocess.run(
        ["openssl", "verify", "-CAfile", tmp_path / "root-cert.pem", "-untrusted", tmp_path / "cert-chain.pem", tmp_path / "ca-cert.pem"],
        capture_output=True,
        text=True,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    text = subprocess.run(["openssl", "x509", "-in", tmp_path / "ca-cert.pem", "-noout", "-text"], capture_output=True, text=True).stdout
    assert "CA:TRUE, pathlen:0" in text

    # The functions' logs: JSON lines with the cluster and outcome, and no key material.
    logs = "".join((out / f"watch-{fn}.log").read_text() for fn in ["cluster-events", "expiry-sweep", "renewal-worker"])
    assert "PRIVATE KEY" not in logs
    records = [json.loads(line) for line in logs.splitlines() if line.startswith("{")]
    assert any(r.get("cluster") == "c1" and r.get("outcome") == "renewed" for r in records), logs[-2000:]
    assert any(r.get("message") == "sweep done" and r.get("checked") == 1 for r in records), logs[-2000:]


def blocks_run_in_the_checkout():
    """The README's and docs' command blocks marked `<!-- runnable in checkout -->`: they run
    from the repository's root (cli/tests/docs_runnable.rs runs the other marked blocks)."""
    pages = [os.path.join(ROOT, "README.md")] + sorted(
        os.path.join(ROOT, "docs", f) for f in os.listdir(os.path.join(ROOT, "docs")) if f.endswith(".md")
    )
    found = []
    for page in pages:
        lines = open(page).read().splitlines()
        for i, line in enumerate(lines):
            if line.strip() != "<!-- runnable in checkout -->":
                continue
            assert lines[i + 1].strip() == "```sh", f"{page}:{i + 1}: the mark is not followed by a ```sh fence"
            body = []
            for text in lines[i + 2:]:
                if text.strip() == "```":
                    break
                body.append(text)
            found.append((os.path.relpath(page, ROOT), i + 3, "\n".join(body)))
    return found


def test_the_documented_loop_runs_as_written():
    blocks = blocks_run_in_the_checkout()
    assert any("scripts/local-loop" in text for _, _, text in blocks), blocks
    for page, line, text in blocks:
        run = subprocess.run(["bash", "-euo", "pipefail", "-c", text], cwd=ROOT, capture_output=True, text=True, timeout=1500)
        assert run.returncode == 0, f"{page}:{line}: the block failed as written:\n{text}\n" + run.stdout[-2000:] + run.stderr[-3000:]


def test_every_sample_event_is_described():
    readme = open(os.path.join(ROOT, "events", "README.md")).read()
    for f in os.listdir(os.path.join(ROOT, "events")):
        if f.endswith(".json"):
            assert f"| `{f}` |" in readme, f"events/README.md does not describe {f}"


def test_a_function_error_is_said_plainly_with_meshcas_error_type(tmp_path):
    bad = tmp_path / "bad-event.json"
    bad.write_text(json.dumps({"detail-type": "Something Else", "source": "aws.s3", "detail": {}}))
    run = subprocess.run(
        [os.path.join(ROOT, "scripts/local-loop"), str(bad)],
        cwd=ROOT,
        env=dict(os.environ, MESHCA_LOOP_OUT=str(tmp_path / "loop")),
        capture_output=True,
        text=True,
        timeout=1500,
    )
    assert run.returncode == 1, run.stdout[-2000:] + run.stderr[-2000:]
    said = [line for line in run.stderr.splitlines() if line.startswith("local-loop: cluster-events answered")]
    assert said and "meshca.BadEvent" in said[0] and '"Something Else"' in said[0], run.stderr[-3000:]
