"""The launcher's own behaviour, through boto3 over HTTP, with openssl reading the certificates."""

import base64
import json
import os
import subprocess
import sys
import time
import urllib.request

import boto3
import pytest
from botocore.exceptions import ClientError
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

HERE = os.path.dirname(os.path.abspath(__file__))
REGION = "eu-west-1"
TEMPLATE = "arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1"


@pytest.fixture(scope="module")
def endpoint():
    proc = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "meshca_aws.py")], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    line = proc.stdout.readline()
    assert line.startswith("READY "), line
    yield f"http://127.0.0.1:{line.split()[1]}"
    proc.stdin.close()
    proc.wait(timeout=10)


def control(endpoint, path, body=None):
    req = urllib.request.Request(f"{endpoint}/_meshca/{path}", data=json.dumps(body or {}).encode(), method="POST")
    req.add_header("content-type", "application/json")
    with urllib.request.urlopen(req) as r:
        return json.loads(r.read())


@pytest.fixture
def pca(endpoint):
    control(endpoint, "reset")
    return boto3.client(
        "acm-pca", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )


def csr(cn="c1 istio intermediate CA", key=None):
    key = key or ec.generate_private_key(ec.SECP256R1())
    names = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    builder = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(names))
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def issue(pca, ca, algorithm="SHA256WITHECDSA", template=TEMPLATE, days=30, token=None, request=None):
    kwargs = dict(
        CertificateAuthorityArn=ca,
        Csr=request or csr(),
        SigningAlgorithm=algorithm,
        TemplateArn=template,
        Validity={"Type": "DAYS", "Value": days},
    )
    if token:
        kwargs["IdempotencyToken"] = token
    return pca.issue_certificate(**kwargs)["CertificateArn"]


def openssl_text(pem, tmp_path):
    p = tmp_path / "cert.pem"
    p.write_text(pem)
    return subprocess.run(["openssl", "x509", "-in", str(p), "-noout", "-text"], capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize(
    "template,expect",
    [
        ("SubordinateCACertificate_PathLen0/V1", "CA:TRUE, pathlen:0"),
        ("SubordinateCACertificate_PathLen1/V1", "CA:TRUE, pathlen:1"),
        ("SubordinateCACertificate_PathLen2/V1", "CA:TRUE, pathlen:2"),
        ("SubordinateCACertificate_PathLen3/V1", "CA:TRUE, pathlen:3"),
        ("EndEntityCertificate/V1", "CA:FALSE"),
    ],
)
def test_templates_set_the_documented_extensions(endpoint, pca, tmp_path, template, expect):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    arn = issue(pca, ca, template=f"arn:aws:acm-pca:::template/{template}")
    text = openssl_text(pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"], tmp_path)
    assert f"X509v3 Basic Constraints: critical\n                {expect}" in text
    if template.startswith("Subordinate"):
        assert "X509v3 Key Usage: critical\n                Digital Signature, Certificate Sign, CRL Sign" in text
        assert "Extended Key Usage" not in text
        assert "Authority Key Identifier" in text and "Subject Key Identifier" in text
    else:
        assert "TLS Web Server Authentication" in text


def test_end_entity_identities_get_both_ekus_and_the_csr_s_uri_san(endpoint, pca, tmp_path):
    """EndEntityCertificate/V1 as PCA documents it: CA:FALSE, KU digitalSignature+keyEncipherment,
    EKU serverAuth+clientAuth, subject and SANs from the CSR (TSB's XCP identities rely on it)."""
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    key = ec.generate_private_key(ec.SECP256R1())
    request = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "xcp-edge east-1")]))
        .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier("spiffe://xcp.tetrate.io/east-1")]), critical=False)
        .sign(key, hashes.SHA256())
        .public_bytes(serialization.Encoding.PEM)
    )
    arn = issue(pca, ca, template="arn:aws:acm-pca:::template/EndEntityCertificate/V1", request=request)
    text = openssl_text(pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"], tmp_path)
    assert "X509v3 Basic Constraints: critical\n                CA:FALSE" in text
    assert "Digital Signature, Key Encipherment" in text
    assert "TLS Web Server Authentication, TLS Web Client Authentication" in text
    assert "URI:spiffe://xcp.tetrate.io/east-1" in text
    assert "Subject: CN = xcp-edge east-1" in text


def test_root_template_is_self_signed_without_pathlen(endpoint, pca, tmp_path):
    root = control(endpoint, "fixtures/hierarchy")["root"]
    pem = pca.get_certificate_authority_certificate(CertificateAuthorityArn=root)["Certificate"]
    text = openssl_text(pem, tmp_path)
    assert "CA:TRUE\n" in text and "pathlen" not in text
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert cert.subject == cert.issuer


def test_validity_and_signing_algorithm_are_honoured(endpoint, pca):
    for key, algorithm, hash_name in [("EC_secp384r1", "SHA384WITHECDSA", "sha384"), ("RSA_2048", "SHA256WITHRSA", "sha256")]:
        ca = control(endpoint, "fixtures/hierarchy", {"key_algorithm": key})["issuing"]
        arn = issue(pca, ca, algorithm=algorithm, days=17)
        cert = x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"].encode())
        assert cert.signature_hash_algorithm.name == hash_name
        days = (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() / 86400
        assert 17 <= days < 17.01
        wrong = "SHA256WITHRSA" if key.startswith("EC") else "SHA256WITHECDSA"
        with pytest.raises(ClientError) as e:
            issue(pca, ca, algorithm=wrong)
        assert e.value.response["Error"]["Code"] == "InvalidArgsException"


def test_validity_beyond_the_ca_is_refused(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy", {"root_days": 100})["issuing"]
    with pytest.raises(ClientError) as e:
        issue(pca, ca, days=200)
    assert e.value.response["Error"]["Code"] == "ValidationException"


def test_empty_subject_is_a_malformed_csr(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    with pytest.raises(ClientError) as e:
        issue(pca, ca, request=csr(cn=None))
    assert e.value.response["Error"]["Code"] == "MalformedCSRException"


def test_idempotency_token_returns_the_same_certificate(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    a = issue(pca, ca, token="tok-1")
    assert issue(pca, ca, token="tok-1") == a
    assert issue(pca, ca, token="tok-2") != a
    assert control(endpoint, "stats")["calls"]["IssueCertificate"] == 3


def test_chain_runs_up_to_the_root_in_a_two_level_hierarchy(endpoint, pca):
    h = control(endpoint, "fixtures/hierarchy", {"levels": 2})
    arn = issue(pca, h["issuing"])
    got = pca.get_certificate(CertificateAuthorityArn=h["issuing"], CertificateArn=arn)
    chain = x509.load_pem_x509_certificates(got["CertificateChain"].encode())
    root = pca.get_certificate_authority_certificate(CertificateAuthorityArn=h["root"])["Certificate"]
    assert len(chain) == 2
    assert chain[-1] == x509.load_pem_x509_certificate(root.encode())
    ca_cert = pca.get_certificate_authority_certificate(CertificateAuthorityArn=h["issuing"])
    assert x509.load_pem_x509_certificates(ca_cert["CertificateChain"].encode())[0] == chain[-1], "imported chain is PEM, not base64"


def test_get_certificate_is_in_progress_for_the_first_polls(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    control(endpoint, "configure", {"in_progress_polls": 2})
    arn = issue(pca, ca)
    for _ in range(2):
        with pytest.raises(ClientError) as e:
            pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)
        assert e.value.response["Error"]["Code"] == "RequestInProgressException"
    assert pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"]


def test_issue_quota_throttles(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    control(endpoint, "configure", {"issue_tps": 3})
    pca.meta.config.retries = {"max_attempts": 1}
    raw = boto3.client(
        "acm-pca", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
        config=__import__("botocore.config").config.Config(retries={"max_attempts": 1, "mode": "standard"}),
    )
    codes = []
    for _ in range(6):
        try:
            issue(raw, ca)
            codes.append("ok")
        except ClientError as e:
            codes.append(e.response["Error"]["Code"])
    assert codes[:3] == ["ok"] * 3 and "ThrottlingException" in codes[3:], codes
    time.sleep(1.1)
    issue(raw, ca)
    assert control(endpoint, "stats")["throttled"] >= 1
    # Every attempt is timed, the throttled ones too.
    times = control(endpoint, "issue/attempts")["times"]
    stats = control(endpoint, "stats")
    assert len(times) == stats["calls"]["IssueCertificate"] >= 7 and times == sorted(times) and times[-1] - times[0] >= 1.1, times


def test_injected_faults_fail_n_of_m_with_aws_error_codes(endpoint, pca):
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t",
                      config=__import__("botocore.config").config.Config(retries={"total_max_attempts": 1, "mode": "standard"}))
    control(endpoint, "configure", {"faults": [{"operation": "CreateSecret", "fail": 2, "of": 3, "code": "InternalServiceError", "status": 500}]})
    results = []
    for i in range(4):
        try:
            sm.create_secret(Name=f"s{i}", SecretString="x")
            results.append("ok")
        except ClientError as e:
            results.append(e.response["Error"]["Code"])
    assert results == ["InternalServiceError", "InternalServiceError", "ok", "ok"]
    # Any operation ("*"), after skipping two calls: the third call fails, whatever it is.
    control(endpoint, "configure", {"faults": [{"operation": "*", "skip": 2, "fail": 1, "code": "InternalServiceError", "status": 500}]})
    results = []
    for call in [lambda: sm.create_secret(Name="t0", SecretString="x"), lambda: sm.list_secrets(),
                 lambda: sm.get_secret_value(SecretId="t0"), lambda: sm.get_secret_value(SecretId="t0")]:
        try:
            call()
            results.append("ok")
        except ClientError as e:
            results.append(e.response["Error"]["Code"])
    assert results == ["ok", "ok", "InternalServiceError", "ok"]


def test_injected_bad_certificates(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    control(endpoint, "configure", {"bad_certificates": ["not-ca", "pathlen1", "wrong-key"]})
    key = ec.generate_private_key(ec.SECP256R1())
    certs = []
    for _ in range(3):
        arn = issue(pca, ca, request=csr(key=key))
        certs.append(x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=ca, CertificateArn=arn)["Certificate"].encode()))
    bc = [c.extensions.get_extension_for_class(x509.BasicConstraints).value for c in certs]
    assert not bc[0].ca
    assert bc[1].ca and bc[1].path_length == 1
    assert certs[2].public_key() != key.public_key()


def test_inactive_ca_refuses_and_errors_are_json(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    control(endpoint, "ca/status", {"arn": ca, "status": "DISABLED"})
    with pytest.raises(ClientError) as e:
        issue(pca, ca)
    assert e.value.response["Error"]["Code"] == "InvalidStateException"
    with pytest.raises(ClientError) as e:
        pca.describe_certificate_authority(CertificateAuthorityArn=ca.replace(ca[-4:], "0000"))
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_a_ca_revokes_only_what_it_issued(endpoint, pca):
    one = control(endpoint, "fixtures/hierarchy")["issuing"]
    other = control(endpoint, "fixtures/hierarchy")["issuing"]
    arn = issue(pca, one)
    cert = x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=one, CertificateArn=arn)["Certificate"].encode())
    serial = format(cert.serial_number, "x")
    with pytest.raises(ClientError) as e:
        pca.revoke_certificate(CertificateAuthorityArn=other, CertificateSerial=serial, RevocationReason="SUPERSEDED")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"
    pca.revoke_certificate(CertificateAuthorityArn=one, CertificateSerial=serial, RevocationReason="SUPERSEDED")
    with pytest.raises(ClientError) as e:
        pca.revoke_certificate(CertificateAuthorityArn=one, CertificateSerial=serial, RevocationReason="KEY_COMPROMISE")
    assert e.value.response["Error"]["Code"] == "RequestAlreadyProcessedException"


def test_secret_versions_are_immutable_even_when_pending(endpoint):
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    sm.create_secret(Name="imm")
    token = "0123456789abcdef0123456789abcdef"
    sm.put_secret_value(SecretId="imm", ClientRequestToken=token, SecretString="one", VersionStages=["AWSPENDING"])
    sm.put_secret_value(SecretId="imm", ClientRequestToken=token, SecretString="one", VersionStages=["AWSPENDING"])
    with pytest.raises(ClientError) as e:
        sm.put_secret_value(SecretId="imm", ClientRequestToken=token, SecretString="two", VersionStages=["AWSPENDING"])
    assert e.value.response["Error"]["Code"] == "ResourceExistsException"
    assert sm.get_secret_value(SecretId="imm", VersionId=token)["SecretString"] == "one"


def test_eks_cluster_points_at_the_test_api_server(endpoint):
    eks = boto3.client("eks", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    pem = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"
    control(endpoint, "eks/cluster", {"region": REGION, "name": "c1", "endpoint": "https://127.0.0.1:6443",
                                      "ca_pem": pem, "tags": {"meshca.io/enabled": "true"}, "authentication_mode": "API"})
    c = eks.describe_cluster(name="c1")["cluster"]
    assert c["status"] == "ACTIVE"
    assert c["endpoint"] == "https://127.0.0.1:6443"
    assert base64.b64decode(c["certificateAuthority"]["data"]).decode() == pem
    assert c["tags"] == {"meshca.io/enabled": "true"}
    assert c["accessConfig"]["authenticationMode"] == "API"
    control(endpoint, "eks/cluster", {"region": REGION, "name": "c1", "status": "CREATING"})
    assert eks.describe_cluster(name="c1")["cluster"]["status"] == "CREATING"
    assert eks.list_clusters()["clusters"] == ["c1"]
    control(endpoint, "eks/cluster", {"region": REGION, "name": "c1", "delete": True})
    assert eks.list_clusters()["clusters"] == []
    with pytest.raises(ClientError) as e:
        eks.describe_cluster(name="c1")
    assert e.value.response["Error"]["Code"] == "ResourceNotFoundException"


def test_idempotent_replays_are_not_counted_as_issued(endpoint, pca):
    ca = control(endpoint, "fixtures/hierarchy", {"key_algorithm": "EC_prime256v1", "levels": 1})["issuing"]
    before = control(endpoint, "stats")["issued"]
    first = issue(pca, ca, token="t-replay")
    assert issue(pca, ca, token="t-replay") == first
    issue(pca, ca, token="t-other")
    assert control(endpoint, "stats")["issued"] - before == 2


def test_put_events_entries_are_recorded_as_sent(endpoint):
    events = boto3.client(
        "events", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    entry = {"Source": "meshca", "DetailType": "meshca Reconcile Requested", "Detail": json.dumps({"cluster": "c7"})}
    out = events.put_events(Entries=[entry, dict(entry, Detail=json.dumps({"cluster": "c8"}))])
    assert out["FailedEntryCount"] == 0
    sent = control(endpoint, "events/put")["entries"]
    assert [json.loads(e["Detail"])["cluster"] for e in sent[-2:]] == ["c7", "c8"]


def test_conditional_secret_writes_are_atomic_under_concurrency(endpoint):
    """Secrets Manager takes one version per ClientRequestToken, even when writers race: of many
    PutSecretValue calls with one token and different data, exactly one succeeds."""
    from concurrent.futures import ThreadPoolExecutor

    control(endpoint, "reset")
    sm = boto3.client("secretsmanager", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    for round_ in range(5):
        name = f"meshca/race/{round_}"
        sm.create_secret(Name=name)
        token = f"00000000-0000-0000-0000-00000000000{round_}"

        def put(i):
            try:
                sm.put_secret_value(SecretId=name, SecretString=f"writer {i}", ClientRequestToken=token, VersionStages=["AWSPENDING"])
                return True
            except ClientError as e:
                assert e.response["Error"]["Code"] == "ResourceExistsException", e
                return False

        with ThreadPoolExecutor(max_workers=12) as pool:
            won = sum(pool.map(put, range(12)))
        assert won == 1, f"round {round_}: {won} writers won one token"


def test_racing_calls_with_one_idempotency_token_sign_one_certificate(endpoint, pca):
    """PCA's idempotency holds for concurrent calls too: one certificate, one ARN for all."""
    from concurrent.futures import ThreadPoolExecutor

    ca = control(endpoint, "fixtures/hierarchy")["issuing"]
    request = csr()
    for round_ in range(5):
        before = control(endpoint, "stats")["issued"]
        token = f"race-{round_}"
        with ThreadPoolExecutor(max_workers=12) as pool:
            arns = set(pool.map(lambda _: issue(pca, ca, token=token, request=request), range(12)))
        assert len(arns) == 1, arns
        assert control(endpoint, "stats")["issued"] == before + 1


def test_member_accounts_through_assumed_roles(endpoint):
    """Clusters live in the account whose role was assumed; a role that is missing, trusts another
    account or wants another external id cannot be assumed; sts/key tells the key's identity."""
    control(endpoint, "reset")
    member, other = "222233334444", "333344445555"
    role = f"arn:aws:iam::{member}:role/meshca-member"
    control(endpoint, "iam/role", {"arn": role, "trusts": "123456789012", "external_id": "xid"})
    control(endpoint, "iam/role", {"arn": f"arn:aws:iam::{other}:role/meshca-member", "trusts": "999999999999"})
    control(endpoint, "eks/cluster", {"account": member, "region": REGION, "name": "team-a", "tags": {"meshca.io/enabled": "true"}})
    sts = boto3.client("sts", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    creds = sts.assume_role(RoleArn=role, RoleSessionName="meshca", ExternalId="xid")["Credentials"]
    as_member = boto3.client("eks", region_name=REGION, endpoint_url=endpoint, aws_access_key_id=creds["AccessKeyId"],
                             aws_secret_access_key=creds["SecretAccessKey"], aws_session_token=creds["SessionToken"])
    home = boto3.client("eks", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    assert as_member.list_clusters()["clusters"] == ["team-a"]
    assert as_member.describe_cluster(name="team-a")["cluster"]["arn"].split(":")[4] == member
    assert "team-a" not in home.list_clusters()["clusters"]
    for arn, xid in [(role, None), (role, "wrong"), (f"arn:aws:iam::{other}:role/meshca-member", None), (f"arn:aws:iam::{other}:role/none", None)]:
        with pytest.raises(ClientError) as e:
            sts.assume_role(RoleArn=arn, RoleSessionName="meshca", **({"ExternalId": xid} if xid else {}))
        assert e.value.response["Error"]["Code"] == "AccessDenied", arn
    assert control(endpoint, "stats")["calls"]["AssumeRole"] == 5, "query-protocol calls are counted by their Action"
    known = control(endpoint, "sts/key", {"id": creds["AccessKeyId"]})
    assert known["secret"] == creds["SecretAccessKey"]
    assert known["account"] == member and known["role_arn"] == role
    assert known["arn"] == f"arn:aws:sts::{member}:assumed-role/meshca-member/meshca"


def test_tagging_lists_opted_in_eks_clusters_by_tag_in_pages(endpoint):
    control(endpoint, "reset")
    for i in range(7):
        tags = {"meshca.io/enabled": "true" if i % 2 == 0 else "false", "team": f"t{i}"}
        control(endpoint, "eks/cluster", {"region": REGION, "name": f"tagged-{i}", "tags": tags})
    control(endpoint, "eks/cluster", {"region": "us-east-1", "name": "tagged-elsewhere", "tags": {"meshca.io/enabled": "true"}})
    tagging = boto3.client("resourcegroupstaggingapi", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    seen, token, pages = [], "", 0
    while True:
        out = tagging.get_resources(
            ResourceTypeFilters=["eks:cluster"], TagFilters=[{"Key": "meshca.io/enabled", "Values": ["true"]}], ResourcesPerPage=3, PaginationToken=token
        )
        pages += 1
        seen += [(m["ResourceARN"].split("/")[-1], {t["Key"]: t["Value"] for t in m["Tags"]}) for m in out["ResourceTagMappingList"]]
        token = out["PaginationToken"]
        if not token:
            break
    names = [n for n, _ in seen if n.startswith("tagged-")]
    assert names == ["tagged-0", "tagged-2", "tagged-4", "tagged-6"], names  # this region only, the tag's value matched
    assert pages >= 2
    assert dict(seen)["tagged-2"]["team"] == "t2"  # every tag of the cluster comes along
    # EKS's REST reads are counted by operation name as well as by path.
    eks = boto3.client("eks", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="t", aws_secret_access_key="t")
    eks.list_clusters()
    eks.describe_cluster(name="tagged-0")
    calls = control(endpoint, "stats")["calls"]
    assert (calls["ListClusters"], calls["DescribeCluster"], calls["GET /clusters/tagged-0"]) == (1, 1, 1)
    with pytest.raises(ClientError) as e:
        tagging.get_resources(ResourceTypeFilters=["eks:cluster"], ResourcesPerPage=101)
    assert e.value.response["Error"]["Code"] == "InvalidParameterException"


def test_sqs_messages_are_found_by_any_receipt_handle_they_were_given(endpoint):
    sqs = boto3.client("sqs", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing")
    url = sqs.create_queue(QueueName="deep", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    for i in range(0, 300, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": f"m{i + j}"} for j in range(10)])
    first = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=1)["Messages"][0]
    # Visible again at once (timeout 0): received a second time, under a new handle.
    again = [m for m in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10)["Messages"] if m["MessageId"] == first["MessageId"]]
    assert again and again[0]["ReceiptHandle"] != first["ReceiptHandle"]
    sqs.delete_message(QueueUrl=url, ReceiptHandle=first["ReceiptHandle"])  # the old handle deletes it
    sqs.delete_message(QueueUrl=url, ReceiptHandle=again[0]["ReceiptHandle"])  # twice is no error
    with pytest.raises(ClientError) as e:
        sqs.delete_message(QueueUrl=url, ReceiptHandle="not-a-handle")
    assert e.value.response["Error"]["Code"] in ("ReceiptHandleIsInvalid", "AWS.SimpleQueueService.ReceiptHandleIsInvalid")
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"VisibilityTimeout": "600"})
    seen = set()
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        seen.update(m["Body"] for m in batch)
    assert len(seen) == 299 and first["Body"] not in seen, "every message but the deleted one"
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attrs["ApproximateNumberOfMessages"], attrs["ApproximateNumberOfMessagesNotVisible"]) == ("0", "299")


def test_a_ca_with_a_crl_configuration_publishes_complete_crls_to_s3_as_pca_does(endpoint, pca):
    """Each CA of a two-level hierarchy writes its CRL as DER under crl/<ca id>.crl, names it in
    the CDP of what it issues, lists a revocation with its reason, and holds publication when
    told (PCA publishes ~30 minutes after a revocation)."""
    h = control(endpoint, "fixtures/hierarchy", {"levels": 2, "crl_bucket": "meshca-crls"})
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    config = pca.describe_certificate_authority(CertificateAuthorityArn=h["issuing"])["CertificateAuthority"]
    assert config["RevocationConfiguration"]["CrlConfiguration"]["S3BucketName"] == "meshca-crls"

    def crl_of(ca):
        key = f"crl/{ca.split('/')[-1]}.crl"
        return x509.load_der_x509_crl(s3.get_object(Bucket="meshca-crls", Key=key)["Body"].read())

    def cert_of(ca):
        return x509.load_pem_x509_certificate(pca.get_certificate_authority_certificate(CertificateAuthorityArn=ca)["Certificate"].encode())

    issuing, root = cert_of(h["issuing"]), cert_of(h["root"])
    # The root published when it signed the issuing CA, and named it there.
    assert crl_of(h["root"]).is_signature_valid(root.public_key())
    cdp = issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
    assert cdp[0].full_name[0].value == f"http://meshca-crls.s3.{REGION}.amazonaws.com/crl/{h['root'].split('/')[-1]}.crl"

    arn = issue(pca, h["issuing"])
    leaf = x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=h["issuing"], CertificateArn=arn)["Certificate"].encode())
    first = crl_of(h["issuing"])
    assert first.is_signature_valid(issuing.public_key()) and len(first) == 0
    assert first.issuer == issuing.subject
    with pytest.raises(x509.ExtensionNotFound):
        first.extensions.get_extension_for_class(x509.IssuingDistributionPoint)  # complete, not partitioned

    control(endpoint, "crl/hold")
    pca.revoke_certificate(CertificateAuthorityArn=h["issuing"], CertificateSerial=format(leaf.serial_number, "x"), RevocationReason="KEY_COMPROMISE")
    assert len(crl_of(h["issuing"])) == 0, "held: the revocation is not published yet"
    control(endpoint, "crl/publish")
    listed = crl_of(h["issuing"]).get_revoked_certificate_by_serial_number(leaf.serial_number)
    assert listed is not None
    assert listed.extensions.get_extension_for_class(x509.CRLReason).value.reason == x509.ReasonFlags.key_compromise


def test_a_ca_without_a_crl_configuration_publishes_nothing(endpoint, pca):
    h = control(endpoint, "fixtures/hierarchy", {"levels": 2})
    arn = issue(pca, h["issuing"])
    leaf = x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=h["issuing"], CertificateArn=arn)["Certificate"].encode())
    with pytest.raises(x509.ExtensionNotFound):
        leaf.extensions.get_extension_for_class(x509.CRLDistributionPoints)


def test_an_offline_root_names_no_crl_in_s3_and_its_owner_puts_one_elsewhere(endpoint, pca):
    """`offline_root`: the root has no CRL configuration, so the issuing CA's certificate names
    no distribution point, and the fixture puts the root's CRL, signed with its key, where its
    owner would (offline/root.crl in the bucket)."""
    h = control(endpoint, "fixtures/hierarchy", {"levels": 2, "crl_bucket": "meshca-crls", "offline_root": True})
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    issuing = x509.load_pem_x509_certificate(pca.get_certificate_authority_certificate(CertificateAuthorityArn=h["issuing"])["Certificate"].encode())
    root = x509.load_pem_x509_certificate(pca.get_certificate_authority_certificate(CertificateAuthorityArn=h["root"])["Certificate"].encode())
    with pytest.raises(x509.ExtensionNotFound):
        issuing.extensions.get_extension_for_class(x509.CRLDistributionPoints)
    assert h["root_crl"] == "s3://meshca-crls/offline/root.crl"
    crl = x509.load_der_x509_crl(s3.get_object(Bucket="meshca-crls", Key="offline/root.crl")["Body"].read())
    assert crl.is_signature_valid(root.public_key()) and crl.issuer == root.subject
    assert x509.load_pem_x509_crl(h["root_crl_pem"].encode()) == crl


def test_a_ca_writes_its_audit_report_to_s3_once_each_30_minutes(endpoint, pca):
    """The JSON audit report lists what the CA issued (colon serial, RFC 4514 subject, dates)
    and what it revoked; it is CREATING for the configured polls, and a second one within 30
    minutes is refused as PCA refuses it."""
    h = control(endpoint, "fixtures/hierarchy", {"levels": 2, "crl_bucket": "meshca-crls"})
    s3 = boto3.client(
        "s3", region_name=REGION, endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing"
    )
    arns = [issue(pca, h["issuing"]) for _ in range(2)]
    leaves = [
        x509.load_pem_x509_certificate(pca.get_certificate(CertificateAuthorityArn=h["issuing"], CertificateArn=a)["Certificate"].encode())
        for a in arns
    ]
    pca.revoke_certificate(CertificateAuthorityArn=h["issuing"], CertificateSerial=format(leaves[0].serial_number, "x"), RevocationReason="KEY_COMPROMISE")
    control(endpoint, "configure", {"audit_polls": 1})
    made = pca.create_certificate_authority_audit_report(
        CertificateAuthorityArn=h["issuing"], S3BucketName="meshca-crls", AuditReportResponseFormat="JSON"
    )
    assert made["S3Key"] == f"audit-report/{h['issuing'].split('/')[-1]}/{made['AuditReportId']}.json"
    describe = lambda: pca.describe_certificate_authority_audit_report(CertificateAuthorityArn=h["issuing"], AuditReportId=made["AuditReportId"])
    assert describe()["AuditReportStatus"] == "CREATING"
    with pytest.raises(ClientError):
        s3.get_object(Bucket="meshca-crls", Key=made["S3Key"])
    assert describe()["AuditReportStatus"] == "SUCCESS"
    report = json.loads(s3.get_object(Bucket="meshca-crls", Key=made["S3Key"])["Body"].read())
    by_arn = {e["certificateArn"]: e for e in report}
    assert set(by_arn) >= set(arns)
    first, second = by_arn[arns[0]], by_arn[arns[1]]
    assert first["serial"].replace(":", "") == format(leaves[0].serial_number, "x").zfill(len(first["serial"].replace(":", "")))
    assert first["subject"] == leaves[0].subject.rfc4514_string() and "CN=" in first["subject"]
    assert (first["revocationReason"], "revokedAt" in second) == ("KEY_COMPROMISE", False)
    assert first["notAfter"].endswith("+0000")
    with pytest.raises(ClientError) as e:
        pca.create_certificate_authority_audit_report(
            CertificateAuthorityArn=h["issuing"], S3BucketName="meshca-crls", AuditReportResponseFormat="JSON"
        )
    assert e.value.response["Error"]["Code"] == "RequestInProgressException"
    control(endpoint, "audit/reset")
    control(endpoint, "configure", {"audit_polls": 0})
