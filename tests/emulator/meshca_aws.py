"""The emulated AWS for meshca's tests: moto's server, plus the AWS Private CA behaviour that
stock moto lacks and meshca relies on.

Added to moto 5.2.5 (each proven by tests/emulator/test_meshca_aws.py):
  * Secrets Manager versions are immutable: a ClientRequestToken reused with other data is
    ResourceExistsException even for a version staged AWSPENDING (stock moto overwrites it).
  * CA keys of the configured KeyAlgorithm (stock: always RSA 2048) and the matching
    signature family; SigningAlgorithm honoured and checked against the CA key.
  * Templates -> extensions: RootCACertificate/V1, SubordinateCACertificate_PathLen0..3/V1,
    EndEntityCertificate/V1 (BasicConstraints, KeyUsage, SKI/AKI; subject and SAN from the CSR).
  * Validity (DAYS, MONTHS, YEARS, END_DATE, ABSOLUTE), refused beyond the CA's own end.
  * IdempotencyToken: same token on the same CA within 5 minutes returns the same certificate.
  * GetCertificate's CertificateChain runs from the issuing CA up to the root, and an imported
    subordinate chain is stored decoded (stock keeps it base64).
  * A CSR with an empty subject is refused (MalformedCSRException).
  * RevokeCertificate revokes only what the CA issued, and a repeat is
    RequestAlreadyProcessedException (stock moto records any serial, any number of times).
  * CRLs as PCA publishes them: a CA whose RevocationConfiguration has an enabled
    CrlConfiguration writes its complete CRL, DER, signed with its key, to
    `<S3BucketName>/crl/<ca id>.crl` (or `<CustomPath>/<ca id>.crl`) in the emulated S3, on its
    first issuance and after each revocation, and puts that URL in a CRL distribution point of
    every certificate it issues. Real PCA publishes a revocation ~30 minutes later: the
    control `crl/hold` holds publication (revocations recorded, the old CRL stays) until
    `crl/publish`.
  * Audit reports as PCA writes them: CreateCertificateAuthorityAuditReport (JSON) answers a
    report id and the key `audit-report/<ca id>/<id>.json`; DescribeCertificateAuthorityAuditReport
    says CREATING for the first `audit_polls` calls (control `configure`), then SUCCESS, once the
    report (every certificate the CA issued: serial, subject, dates, revocation) is in the
    bucket. A second report for a CA within 30 minutes is RequestInProgressException, as PCA
    allows one each 30 minutes (control `audit/reset` forgets them).
  * Control API under /_meshca/ for tests: RequestInProgressException for the first N
    GetCertificate calls of each new certificate, an IssueCertificate TPS quota answering
    ThrottlingException, injected faults (fail N of the next M calls of an operation, or of any operation after
    skipping K: a crash at the K+1st call),
    injected bad certificates, per-operation call counts, fixtures (root PCA, two-level
    hierarchy), reset, and EKS clusters whose endpoint, CA, status, tags and authentication
    mode point at the test Kubernetes API server (`eks/cluster`), the count of distinct
    certificates signed (`stats.issued`; an idempotent replay is not one), and the entries of
    every accepted PutEvents call (`events/put`); EKS clusters in any account (`account`).
  * Many accounts, as moto keys them by the credentials AssumeRole returns: AssumeRole succeeds
    only into a role registered with `iam/role` (the one account it trusts, its external id);
    `sts/key` tells a test API server the secret and identity behind an assumed role's key.
  * Errors are AWS JSON error bodies, never HTML 500 pages.
  * SQS finds a message by its receipt handle and reads the clock once per call, not once per
    queued message (stock moto: a few calls a second on a queue thousands deep).
  * moto's dispatcher finds the backend for a host once, not on every request.
  * EKS CreateCluster checks each role ARN once (stock moto builds a boto3 session per call,
    ~75 ms: 10,000 clusters took 11 minutes to set up).

Run: python meshca_aws.py [--port 0]  -> prints "READY <port>" and serves until stdin closes.
"""

import argparse
import base64
import calendar
import collections
import datetime
import functools
import io
import os
import json
import sys
import threading
import time
import urllib.parse

import waitress

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from moto.acmpca import models as pca_models
from moto.acmpca import responses as pca_responses
from moto.acmpca.exceptions import ResourceNotFoundException
from moto.core.exceptions import JsonRESTError
from moto.moto_api._internal import mock_random
from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app
from moto.utilities.utils import get_partition
from werkzeug.wrappers import Request, Response

TEMPLATE_PREFIX = "template/"
IDEMPOTENCY_WINDOW = 300  # seconds; PCA documents five minutes


class PcaError(JsonRESTError):
    code = 400

    def __init__(self, error_type, message, status=400):
        super().__init__(error_type, message)
        self.code = status


# ---------------------------------------------------------------------------------------------
# Emulator state shared by the model patches and the control API.


class Control:
    def __init__(self):
        self.lock = threading.Lock()
        self.reset()

    def reset(self):
        with getattr(self, "lock", threading.Lock()):
            self.calls = collections.Counter()
            self.in_progress_polls = 0  # GetCertificate answers RequestInProgress this often per cert
            self.pending_polls = {}  # cert arn -> polls left
            self.issue_tps = 0  # 0: unlimited
            self.issue_times = collections.deque()
            self.issue_attempts = []  # wall time of every IssueCertificate attempt, throttled or not
            self.throttled = 0
            self.faults = {}  # operation -> {"fail": n, "of": m, "seen": k, "code":..., "status":...}
            self.bad_certificates = collections.deque()  # kinds for the next issuances
            self.idempotency = {}  # (ca arn, token) -> (cert arn, time)
            self.token_locks = {}  # (ca arn, token) -> lock held while that token is issued
            self.issued = 0  # distinct certificates signed (an idempotent replay is not one)
            self.put_events = []  # entries of every accepted PutEvents call, as sent
            self.roles = {}  # role arn -> {"trusts": account id, "external_id": str or None}
            self.crl_held = False  # True: revocations wait for crl/publish, as PCA's ~30 minutes
            self.audit_polls = 0  # DescribeCertificateAuthorityAuditReport says CREATING this often
            self.audit_reports = {}  # report id -> {"ca", "bucket", "key", "polls", "created"}
            self.audit_last = {}  # ca arn -> when its last report was asked for

    def take_fault(self, operation):
        """The fault this call meets: one set for its operation, or for every operation ("*");
        each counts the calls it sees and fails those after `skip`, `fail` of them."""
        with self.lock:
            for name in (operation, "*"):
                f = self.faults.get(name)
                if not f:
                    continue
                f["seen"] += 1
                if f["seen"] > f["of"]:
                    del self.faults[name]
                    continue
                if f["skip"] < f["seen"] <= f["skip"] + f["fail"]:
                    return f
            return None

    def admit_issue(self):
        """Sliding one-second window, like the per-account IssueCertificate quota."""
        with self.lock:
            self.issue_attempts.append(time.time())
            if not self.issue_tps:
                return True
            now = time.monotonic()
            while self.issue_times and now - self.issue_times[0] >= 1.0:
                self.issue_times.popleft()
            if len(self.issue_times) >= self.issue_tps:
                self.throttled += 1
                return False
            self.issue_times.append(now)
            return True


CONTROL = Control()

# ---------------------------------------------------------------------------------------------
# Keys and signing.

KEY_ALGORITHMS = {
    "RSA_2048": lambda: rsa.generate_private_key(65537, 2048),
    "RSA_3072": lambda: rsa.generate_private_key(65537, 3072),
    "RSA_4096": lambda: rsa.generate_private_key(65537, 4096),
    "EC_prime256v1": lambda: ec.generate_private_key(ec.SECP256R1()),
    "EC_secp384r1": lambda: ec.generate_private_key(ec.SECP384R1()),
}

SIGNING = {
    "SHA256WITHRSA": ("RSA", hashes.SHA256),
    "SHA384WITHRSA": ("RSA", hashes.SHA384),
    "SHA512WITHRSA": ("RSA", hashes.SHA512),
    "SHA256WITHECDSA": ("EC", hashes.SHA256),
    "SHA384WITHECDSA": ("EC", hashes.SHA384),
    "SHA512WITHECDSA": ("EC", hashes.SHA512),
}


def key_family(key):
    return "RSA" if isinstance(key, rsa.RSAPrivateKey) else "EC"


def _ca_init(original):
    def init(self, *args, **kwargs):
        original(self, *args, **kwargs)
        config = self.certificate_authority_configuration or {}
        algorithm = config.get("KeyAlgorithm", "RSA_2048")
        if algorithm not in KEY_ALGORITHMS:
            raise PcaError("InvalidArgsException", f"KeyAlgorithm {algorithm} is not supported")
        self._meshca_key = KEY_ALGORITHMS[algorithm]()
        self._meshca_signing = config.get("SigningAlgorithm")

    return init


def _ca_key(self):
    return self._meshca_key


def _ca_csr(self):
    builder = x509.CertificateSigningRequestBuilder().subject_name(self.issuer)
    return builder.sign(self._meshca_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


# ---------------------------------------------------------------------------------------------
# Templates.

KU_CA = x509.KeyUsage(True, False, False, False, False, True, True, False, False)
KU_END_ENTITY = x509.KeyUsage(True, False, True, False, False, False, False, False, False)


def template_extensions(template, csr, issuer_key):
    name = (template or "").split(TEMPLATE_PREFIX)[-1]
    ski = x509.SubjectKeyIdentifier.from_public_key(csr.public_key())
    aki = x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key())
    if name == "RootCACertificate/V1":
        return [(x509.BasicConstraints(ca=True, path_length=None), True), (KU_CA, True), (ski, False)]
    if name.startswith("SubordinateCACertificate_PathLen") and name.endswith("/V1"):
        n = int(name[len("SubordinateCACertificate_PathLen") : -len("/V1")])
        return [(x509.BasicConstraints(ca=True, path_length=n), True), (KU_CA, True), (ski, False), (aki, False)]
    if name in ("EndEntityCertificate/V1", ""):
        eku = x509.ExtendedKeyUsage([x509.ExtendedKeyUsageOID.SERVER_AUTH, x509.ExtendedKeyUsageOID.CLIENT_AUTH])
        return [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (KU_END_ENTITY, True),
            (eku, False),
            (ski, False),
            (aki, False),
        ]
    raise PcaError("InvalidArgsException", f"Template {template} is not supported by the emulator")


def validity_end(validity, start):
    kind, value = validity.get("Type"), validity.get("Value")
    if not isinstance(value, int) or value <= 0:
        raise PcaError("InvalidArgsException", "Validity.Value must be a positive integer")
    if kind == "DAYS":
        return start + datetime.timedelta(days=value)
    if kind == "MONTHS":
        return start + datetime.timedelta(days=30 * value)
    if kind == "YEARS":
        return start + datetime.timedelta(days=365 * value)
    if kind == "ABSOLUTE":
        return datetime.datetime.fromtimestamp(value, datetime.timezone.utc)
    if kind == "END_DATE":
        return datetime.datetime.strptime(str(value), "%Y%m%d%H%M%S").replace(tzinfo=datetime.timezone.utc)
    raise PcaError("InvalidArgsException", f"Validity.Type {kind} is not one of DAYS, MONTHS, YEARS, ABSOLUTE, END_DATE")


def issue(self, params):
    """CertificateAuthority.issue_certificate with the parameters stock moto ignores.

    Calls carrying one IdempotencyToken are served one at a time, as PCA does: without that,
    two racing calls could both miss the token and sign two certificates."""
    token = params.get("IdempotencyToken")
    if not token:
        return issue_once(self, params)
    with CONTROL.lock:
        guard = CONTROL.token_locks.setdefault((self.arn, token), threading.Lock())
    with guard:
        return issue_once(self, params)


def issue_once(self, params):
    if self.status != "ACTIVE" and params.get("TemplateArn", "").split(TEMPLATE_PREFIX)[-1] != "RootCACertificate/V1":
        raise PcaError("InvalidStateException", f"The certificate authority {self.arn} is not in the correct state ({self.status}) to issue")
    try:
        csr_pem = base64.b64decode(params["Csr"])
        csr = x509.load_pem_x509_csr(csr_pem)
    except Exception as e:  # noqa: BLE001 - any parse failure is a malformed CSR
        raise PcaError("MalformedCSRException", f"The CSR could not be parsed: {e}")
    if not csr.is_signature_valid:
        raise PcaError("MalformedCSRException", "The CSR signature does not verify")
    if len(csr.subject) == 0:
        raise PcaError("MalformedCSRException", "The CSR subject is empty")
    algorithm = params.get("SigningAlgorithm")
    if algorithm not in SIGNING:
        raise PcaError("InvalidArgsException", f"SigningAlgorithm {algorithm} is not supported")
    family, digest = SIGNING[algorithm]
    if family != key_family(self._meshca_key):
        raise PcaError(
            "InvalidArgsException",
            f"SigningAlgorithm {algorithm} does not match the CA key type {key_family(self._meshca_key)}",
        )
    if "Validity" not in params:
        raise PcaError("InvalidArgsException", "Validity is required")

    token = params.get("IdempotencyToken")
    if token:
        with CONTROL.lock:
            seen = CONTROL.idempotency.get((self.arn, token))
        if seen and time.time() - seen[1] < IDEMPOTENCY_WINDOW:
            return seen[0]

    template = params.get("TemplateArn")
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    not_after = validity_end(params["Validity"], now)
    ca_cert = self.certificate
    is_root = (template or "").endswith("RootCACertificate/V1")
    if ca_cert is not None and not is_root and not_after > ca_cert.not_valid_after_utc:
        raise PcaError(
            "ValidationException",
            f"The certificate validity ends {not_after.isoformat()}, after the CA certificate ({ca_cert.not_valid_after_utc.isoformat()})",
        )
    extensions = template_extensions(template, csr, self._meshca_key)
    public_key = csr.public_key()

    with CONTROL.lock:
        bad = CONTROL.bad_certificates.popleft() if CONTROL.bad_certificates and not is_root else None
    if bad == "not-ca":
        extensions = template_extensions("EndEntityCertificate/V1", csr, self._meshca_key)
    elif bad == "pathlen1":
        extensions = template_extensions("SubordinateCACertificate_PathLen1/V1", csr, self._meshca_key)
    elif bad == "wrong-key":
        public_key = ec.generate_private_key(ec.SECP256R1()).public_key()

    san = None
    try:
        san = csr.extensions.get_extension_for_oid(x509.ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
    except x509.ExtensionNotFound:
        pass
    builder = (
        x509.CertificateBuilder()
        .subject_name(csr.subject)
        .issuer_name(csr.subject if is_root else ca_cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=1))
        .not_valid_after(not_after)
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical)
    if crl_url(self) is not None and not is_root:
        point = x509.DistributionPoint([x509.UniformResourceIdentifier(crl_url(self))], None, None, None)
        builder = builder.add_extension(x509.CRLDistributionPoints([point]), False)
    if san is not None:
        builder = builder.add_extension(san.value, san.critical)
    cert = builder.sign(self._meshca_key, digest()).public_bytes(serialization.Encoding.PEM)

    cert_id = str(mock_random.uuid4()).replace("-", "")
    arn = f"{self.arn}/certificate/{cert_id}"
    self.issued_certificates[arn] = cert
    if not is_root:
        self.issued_certificates_certificate_chains[arn] = chain_above(self)
    with CONTROL.lock:
        if not is_root:
            CONTROL.issued += 1
        if token:
            CONTROL.idempotency[(self.arn, token)] = (arn, time.time())
        if CONTROL.in_progress_polls:
            CONTROL.pending_polls[arn] = CONTROL.in_progress_polls
    if not getattr(self, "_meshca_crl_published", False):
        publish_crl(self)
    return arn


# ---------------------------------------------------------------------------------------------
# CRLs, published to S3 as PCA does.


def crl_config(ca):
    config = (ca.revocation_configuration or {}).get("CrlConfiguration") or {}
    return config if config.get("Enabled") and config.get("S3BucketName") else None


def crl_key(ca):
    config = crl_config(ca)
    path = (config.get("CustomPath") or "crl").strip("/")
    return f"{path}/{ca.arn.split('/')[-1]}.crl"


def crl_url(ca):
    config = crl_config(ca)
    if config is None:
        return None
    host = config.get("CustomCname") or f"{config['S3BucketName']}.s3.{ca.region_name}.amazonaws.com"
    return f"http://{host}/{crl_key(ca)}"


def publish_crl(ca):
    """Writes the CA's complete CRL into its bucket (a CA without a CRL configuration, or one
    not yet holding its certificate, publishes nothing)."""
    config = crl_config(ca)
    if config is None or ca.certificate is None:
        return
    from moto.s3.models import s3_backends

    der = crl_der(ca, int(config.get("ExpirationInDays", 7)))
    s3 = s3_backends[ca.account_id][get_partition(ca.region_name)]
    s3.put_object(config["S3BucketName"], crl_key(ca), der)
    ca._meshca_crl_published = True


def crl_der(ca, days):
    """The CA's complete CRL, valid `days` from now, signed with its key, as DER."""
    now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
    reasons = {r.name.upper(): r for r in x509.ReasonFlags}
    builder = (
        x509.CertificateRevocationListBuilder()
        .issuer_name(ca.certificate.subject)
        .last_update(now)
        .next_update(now + datetime.timedelta(days=days))
        .add_extension(x509.CRLNumber(int(now.timestamp())), False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca._meshca_key.public_key()), False)
    )
    for serial, entry in ca.revoked_certificates.items():
        reason = PCA_REASONS.get(entry.get("revocation_reason", "UNSPECIFIED"), "UNSPECIFIED")
        revoked = (
            x509.RevokedCertificateBuilder()
            .serial_number(int(serial.replace(":", ""), 16))
            .revocation_date(datetime.datetime.fromtimestamp(entry["revocation_time"], datetime.timezone.utc))
            .add_extension(x509.CRLReason(reasons[reason]), False)
            .build()
        )
        builder = builder.add_revoked_certificate(revoked)
    family, digest = SIGNING.get(ca._meshca_signing or "", (None, hashes.SHA256))
    return builder.sign(ca._meshca_key, digest()).public_bytes(serialization.Encoding.DER)


# PCA's revocation reasons as X.509 reason flags.
PCA_REASONS = {
    "UNSPECIFIED": "UNSPECIFIED",
    "KEY_COMPROMISE": "KEY_COMPROMISE",
    "CERTIFICATE_AUTHORITY_COMPROMISE": "CA_COMPROMISE",
    "AFFILIATION_CHANGED": "AFFILIATION_CHANGED",
    "SUPERSEDED": "SUPERSEDED",
    "CESSATION_OF_OPERATION": "CESSATION_OF_OPERATION",
    "PRIVILEGE_WITHDRAWN": "PRIVILEGE_WITHDRAWN",
    "A_A_COMPROMISE": "AA_COMPROMISE",
}


def publish_all_crls():
    for account in list(pca_models.acmpca_backends.keys()):
        for region in list(pca_models.acmpca_backends[account].keys()):
            for ca in list(pca_models.acmpca_backends[account][region].certificate_authorities.values()):
                publish_crl(ca)


def chain_above(ca):
    """The issuing CA's certificate followed by its own chain up to the root."""
    chain = ca.certificate_bytes.strip() + b"\n"
    if ca.certificate_chain:
        chain += ca.certificate_chain.strip() + b"\n"
    return chain


# ---------------------------------------------------------------------------------------------
# Response handlers replaced or extended.


def r_issue_certificate(self):
    params = json.loads(self.body)
    ca = self.acmpca_backend.describe_certificate_authority(params.get("CertificateAuthorityArn"))
    return json.dumps({"CertificateArn": issue(ca, params)})


def r_get_certificate(self):
    params = json.loads(self.body)
    arn = params.get("CertificateArn")
    ca = self.acmpca_backend.describe_certificate_authority(params.get("CertificateAuthorityArn"))
    if arn not in ca.issued_certificates:
        raise ResourceNotFoundException(arn)
    with CONTROL.lock:
        left = CONTROL.pending_polls.get(arn, 0)
        if left:
            CONTROL.pending_polls[arn] = left - 1
    if left:
        raise PcaError("RequestInProgressException", "The request is in progress. Try again later.")
    cert, chain = ca.get_certificate(arn)
    response = {"Certificate": cert.decode().strip()}
    if chain:
        response["CertificateChain"] = chain.decode().strip()
    return json.dumps(response)


def r_revoke_certificate(self):
    """PCA revokes only what the CA itself issued; stock moto records any serial for any CA."""
    params = json.loads(self.body)
    ca = self.acmpca_backend.describe_certificate_authority(params.get("CertificateAuthorityArn"))
    serial = int(params.get("CertificateSerial", "0").replace(":", ""), 16)
    issued = (x509.load_pem_x509_certificate(c) for c in ca.issued_certificates.values())
    if not any(c.serial_number == serial for c in issued):
        raise PcaError("ResourceNotFoundException", f"The certificate with serial {params.get('CertificateSerial')} was not issued by {ca.arn}")
    if any(int(s.replace(":", ""), 16) == serial for s in ca.revoked_certificates):
        raise PcaError("RequestAlreadyProcessedException", "Your request has already been completed.")
    self.acmpca_backend.revoke_certificate(ca.arn, params["CertificateSerial"], params.get("RevocationReason", "UNSPECIFIED"))
    with CONTROL.lock:
        held = CONTROL.crl_held
    if not held:
        publish_crl(ca)
    return "{}"


AUDIT_EVERY = 1800  # seconds: PCA writes one audit report per CA each 30 minutes


def r_create_audit_report(self):
    params = json.loads(self.body)
    ca = self.acmpca_backend.describe_certificate_authority(params.get("CertificateAuthorityArn"))
    if params.get("AuditReportResponseFormat") != "JSON":
        raise PcaError("InvalidArgsException", "the emulator writes JSON audit reports only")
    report_id = str(mock_random.uuid4())
    key = f"audit-report/{ca.arn.split('/')[-1]}/{report_id}.json"
    with CONTROL.lock:
        last = CONTROL.audit_last.get(ca.arn)
        if last is not None and time.time() - last < AUDIT_EVERY:
            raise PcaError("RequestInProgressException", "An audit report was created for this CA less than 30 minutes ago.")
        CONTROL.audit_last[ca.arn] = time.time()
        CONTROL.audit_reports[report_id] = {
            "ca": ca, "bucket": params["S3BucketName"], "key": key,
            "polls": CONTROL.audit_polls, "created": time.time(),
        }
    return json.dumps({"AuditReportId": report_id, "S3Key": key})


def r_describe_audit_report(self):
    params = json.loads(self.body)
    with CONTROL.lock:
        report = CONTROL.audit_reports.get(params.get("AuditReportId"))
        if report is None or report["ca"].arn != params.get("CertificateAuthorityArn"):
            raise PcaError("ResourceNotFoundException", f"Audit report {params.get('AuditReportId')} was not found.")
        creating = report["polls"] > 0
        report["polls"] = max(report["polls"] - 1, 0)
    if not creating and not report.get("written"):
        from moto.s3.models import s3_backends

        ca = report["ca"]
        s3 = s3_backends[ca.account_id][get_partition(ca.region_name)]
        s3.put_object(report["bucket"], report["key"], json.dumps(audit_entries(ca)).encode())
        report["written"] = True
    return json.dumps({
        "AuditReportStatus": "CREATING" if creating else "SUCCESS",
        "S3BucketName": report["bucket"], "S3Key": report["key"], "CreatedAt": report["created"],
    })


def audit_entries(ca):
    """Every certificate `ca` issued, as PCA's JSON audit report lists it."""
    stamp = lambda t: t.strftime("%Y-%m-%dT%H:%M:%S+0000")
    revoked = {int(s.replace(":", ""), 16): e for s, e in ca.revoked_certificates.items()}
    entries = []
    for arn, pem in ca.issued_certificates.items():
        cert = x509.load_pem_x509_certificate(pem)
        serial = format(cert.serial_number, "x")
        serial = serial if len(serial) % 2 == 0 else "0" + serial
        entry = {
            "awsAccountId": ca.account_id,
            "certificateArn": arn,
            "serial": ":".join(serial[i : i + 2] for i in range(0, len(serial), 2)),
            "subject": cert.subject.rfc4514_string(),
            "notBefore": stamp(cert.not_valid_before_utc),
            "notAfter": stamp(cert.not_valid_after_utc),
            "issuedAt": stamp(cert.not_valid_before_utc),
        }
        if cert.serial_number in revoked:
            r = revoked[cert.serial_number]
            entry["revokedAt"] = stamp(datetime.datetime.fromtimestamp(r["revocation_time"], datetime.timezone.utc))
            entry["revocationReason"] = r.get("revocation_reason", "UNSPECIFIED")
        entries.append(entry)
    return entries


def r_import_ca_certificate(self):
    params = json.loads(self.body)
    cert = base64.b64decode(params["Certificate"])
    chain = base64.b64decode(params["CertificateChain"]) if params.get("CertificateChain") else None
    self.acmpca_backend.import_certificate_authority_certificate(
        certificate_authority_arn=params["CertificateAuthorityArn"], certificate=cert, certificate_chain=chain
    )
    return "{}"


def r_get_ca_certificate(self):
    params = json.loads(self.body)
    cert, chain = self.acmpca_backend.get_certificate_authority_certificate(params["CertificateAuthorityArn"])
    response = {"Certificate": cert.decode().strip()}
    if chain:
        response["CertificateChain"] = chain.decode().strip()
    return json.dumps(response)


# ---------------------------------------------------------------------------------------------
# Secrets Manager: versions are immutable. Stock moto lets a PutSecretValue overwrite a version
# staged AWSPENDING (its rotation shortcut); Secrets Manager refuses any change to an existing
# version: same token and same data succeeds, same token and other data is ResourceExists.


def _sm_check_versions(original):
    from moto.secretsmanager.exceptions import ResourceExistsException

    def check(self, secret_name, client_request_token, secret_string, secret_binary, on_create=False):
        existing = self.secrets.get(secret_name)
        version = existing.versions.get(client_request_token) if existing is not None and client_request_token else None
        if version is not None and "AWSPENDING" in version.get("version_stages", []):
            if version.get("secret_string") == secret_string and version.get("secret_binary") == secret_binary:
                return existing
            raise ResourceExistsException(
                f"You can't use ClientRequestToken {client_request_token} because that value is already in use for a version of secret {existing.arn}."
            )
        return original(self, secret_name, client_request_token, secret_string, secret_binary, on_create)

    return check


# ---------------------------------------------------------------------------------------------
# STS: AssumeRole succeeds only into a role registered through the control API (`iam/role`),
# from the one account its trust policy names, with its external id when it has one. Stock
# moto hands out credentials for any role ARN; a member account whose role is missing or does
# not trust the caller must fail as it does in AWS.


def _sts_assume_role(original):
    from moto.sts.exceptions import STSClientError

    def assume(self, region_name, role_session_name, role_arn, policy, duration, external_id):
        with CONTROL.lock:
            role = CONTROL.roles.get(role_arn)
        denied = f"User: arn:aws:sts::{self.account_id}:assumed-role/caller is not authorized to perform: sts:AssumeRole on resource: {role_arn}"
        if role is None or role["trusts"] != self.account_id or role.get("external_id") != external_id:
            raise STSClientError("AccessDenied", denied)
        return original(self, region_name, role_session_name, role_arn, policy, duration, external_id)

    return assume


def sts_key(body):
    """The secret and identity of an access key handed out by AssumeRole, as STS knows them:
    what a test API server needs to check an EKS token the way EKS's authenticator (via STS) does."""
    from moto.sts.models import sts_backends

    for account, by_partition in sts_backends.items():
        for backend_ in by_partition.values():
            role = backend_.get_assumed_role_from_access_key(body["id"])
            if role is not None:
                return {"secret": role.secret_access_key, "arn": role.arn, "role_arn": role.role_arn, "account": account}
    raise KeyError(f"access key {body['id']}")


def install_patches():
    from moto.eks import models as eks_models
    from moto.secretsmanager import models as sm_models
    from moto.sqs import models as sqs_models
    from moto.sts import models as sts_models

    sqs_models.Message.mark_received = _sqs_mark_received(sqs_models.Message.mark_received)
    sqs_models.Queue.delete_message = _sqs_delete_message
    sqs_models.Queue.messages = property(_sqs_visible)
    sqs_models.Queue.approximate_number_of_messages_delayed = property(lambda q: _sqs_count(q, lambda m, now: now < m.delayed_until))
    sqs_models.Queue.approximate_number_of_messages_not_visible = property(lambda q: _sqs_count(q, lambda m, now: now <= m.visible_at))

    # moto checks a cluster's role ARN by building a boto3 session (~75 ms): once per ARN.
    eks_models.validate_role_arn = functools.lru_cache(maxsize=None)(eks_models.validate_role_arn)

    sts_models.STSBackend.assume_role = _sts_assume_role(sts_models.STSBackend.assume_role)

    sm = sm_models.SecretsManagerBackend
    sm._check_with_existing_secrets_and_versions = _sm_check_versions(sm._check_with_existing_secrets_and_versions)
    ca = pca_models.CertificateAuthority
    ca.__init__ = _ca_init(ca.__init__)
    ca.key = property(_ca_key)
    ca.csr = property(_ca_csr)
    r = pca_responses.ACMPCAResponse
    r.issue_certificate = r_issue_certificate
    r.get_certificate = r_get_certificate
    r.revoke_certificate = r_revoke_certificate
    r.create_certificate_authority_audit_report = r_create_audit_report
    r.describe_certificate_authority_audit_report = r_describe_audit_report
    r.import_certificate_authority_certificate = r_import_ca_certificate
    r.get_certificate_authority_certificate = r_get_ca_certificate


# SQS: stock moto finds a receipt handle by asking every message in the queue and rebuilds the
# queue to delete one, and reads the clock (~5 us) twice per queued message to find the visible
# ones, on every send and receive: a queue thousands deep answered a few calls a second.

RECEIPTS = {}  # every receipt handle a message was given -> the message (an old one still deletes)


def _sqs_mark_received(original):
    def mark_received(self, visibility_timeout=None):
        original(self, visibility_timeout)
        RECEIPTS[self.receipt_handle] = self

    return mark_received


def _now_millis():
    return time.time() * 1000.0


def _sqs_visible(queue):
    """The visible, undelayed messages, in order (moto's own test, one clock read)."""
    now = _now_millis()
    return [m for m in queue._messages if now > m.visible_at and now >= m.delayed_until]


def _sqs_count(queue, test):
    now = _now_millis()
    return sum(1 for m in queue._messages if test(m, now))


def _sqs_delete_message(self, receipt_handle):
    from moto.sqs.exceptions import ReceiptHandleIsInvalid

    if receipt_handle in self.deleted_messages:
        return  # deleting twice is not an error
    message = RECEIPTS.get(receipt_handle)
    if message is None or message not in self._messages:
        raise ReceiptHandleIsInvalid()
    self.pending_messages.discard(message)
    self.deleted_messages.update(message.all_receipt_handles)
    for handle in message.all_receipt_handles:
        RECEIPTS.pop(handle, None)
    # A new list, as moto does: a receive iterating the old one is not disturbed.
    remaining = list(self._messages)
    remaining.remove(message)
    self._messages = remaining


# ---------------------------------------------------------------------------------------------
# Fixtures: CA hierarchies built through the backend, as an operator would through the API.


ACCOUNT = "123456789012"


def backend(region, account=ACCOUNT):
    return pca_models.acmpca_backends[account][region]


def make_ca(region, ca_type, key_algorithm, common_name, account=ACCOUNT, crl_bucket=None):
    """A CA; with `crl_bucket`, one that publishes complete CRLs there, as PCA does."""
    revocation = None
    if crl_bucket:
        revocation = {"CrlConfiguration": {"Enabled": True, "ExpirationInDays": 7, "S3BucketName": crl_bucket, "CrlType": "COMPLETE"}}
    config = {
        "KeyAlgorithm": key_algorithm,
        "SigningAlgorithm": "SHA256WITHRSA" if key_algorithm.startswith("RSA") else ("SHA384WITHECDSA" if key_algorithm == "EC_secp384r1" else "SHA256WITHECDSA"),
        "Subject": {"CommonName": common_name, "Organization": "meshca test"},
    }
    return backend(region, account).create_certificate_authority(config, revocation, ca_type, None, [])


def sign_ca(region, issuer_arn, subject_arn, template, days, account=ACCOUNT):
    b = backend(region, account)
    issuer = b.describe_certificate_authority(issuer_arn)
    subject = b.describe_certificate_authority(subject_arn)
    csr = b.get_certificate_authority_csr(subject_arn)
    params = {
        "Csr": base64.b64encode(csr).decode(),
        "SigningAlgorithm": issuer.certificate_authority_configuration["SigningAlgorithm"],
        "TemplateArn": f"arn:{get_partition(region)}:acm-pca:::template/{template}",
        "Validity": {"Type": "DAYS", "Value": days},
    }
    arn = issue(issuer, params)
    cert, chain = issuer.get_certificate(arn)
    CONTROL.pending_polls.pop(arn, None)
    full_chain = None if template == "RootCACertificate/V1" else chain
    subject.import_certificate_authority_certificate(cert, full_chain)


def fixture_hierarchy(body):
    region = body.get("region", "eu-west-1")
    key = body.get("key_algorithm", "EC_prime256v1")
    levels = int(body.get("levels", 1))
    root_days = int(body.get("root_days", 3650))
    account = body.get("account", ACCOUNT)
    bucket = body.get("crl_bucket")
    if bucket:
        from moto.s3.models import s3_backends

        s3 = s3_backends[account][get_partition(region)]
        if bucket not in s3.buckets:
            s3.create_bucket(bucket, region)
    # An offline root publishes no CRL to PCA's S3 (its certificates name no distribution point
    # there): its owner signs one by hand and puts it where meshca is told to read it.
    offline = bool(body.get("offline_root"))
    root = make_ca(region, "ROOT", key, body.get("root_name", "meshca test root"), account, None if offline else bucket)
    sign_ca(region, root, root, "RootCACertificate/V1", root_days, account)
    arns = [root]
    for level in range(1, levels):
        sub = make_ca(region, "SUBORDINATE", body.get("sub_key_algorithm", key), f"meshca test issuing CA {level}", account, bucket)
        sign_ca(region, arns[-1], sub, f"SubordinateCACertificate_PathLen{levels - level}/V1", root_days // 2, account)
        arns.append(sub)
    out = {"root": arns[0], "issuing": arns[-1], "chain": arns}
    if offline and bucket:
        ca = backend(region, account).describe_certificate_authority(root)
        der = crl_der(ca, int(body.get("offline_crl_days", 30)))
        s3.put_object(bucket, "offline/root.crl", der)
        out["root_crl"] = f"s3://{bucket}/offline/root.crl"
        out["root_crl_pem"] = x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM).decode()
    return out


# ---------------------------------------------------------------------------------------------
# WSGI wrapper: control API, counters, quotas, faults, JSON errors.


def eks_cluster(body):
    """Creates (or updates) an EKS cluster whose endpoint and CA are the test API server's;
    with `delete`, removes it (a cluster deleted while no event reached meshca)."""
    from moto.eks.models import eks_backends

    region = body.get("region", "eu-west-1")
    account = body.get("account", ACCOUNT)
    b = eks_backends[account][region]
    name = body["name"]
    if body.get("delete"):
        b.clusters.pop(name, None)
        return {}
    if name not in b.clusters:
        b.create_cluster(
            name=name,
            role_arn=f"arn:aws:iam::{account}:role/eks",
            resources_vpc_config={"subnetIds": [], "securityGroupIds": []},
            version=body.get("version", "1.33"),
            tags=body.get("tags") or {},
        )
    c = b.clusters[name]
    if "tags" in body:
        c.tags = body["tags"]
    if "status" in body:
        c.status = body["status"]
    if "endpoint" in body:
        c.endpoint = body["endpoint"]
    if "ca_pem" in body:
        c.certificate_authority = {"data": base64.b64encode(body["ca_pem"].encode()).decode()}
    if "authentication_mode" in body:
        c.access_config = {"authenticationMode": body["authentication_mode"]}
    return {"arn": c.arn}


def caller(request):
    """(account, region) of a SigV4-signed request, as moto derives them."""
    from moto.iam.models import get_account_id_from

    auth = request.headers.get("Authorization", "")
    scope = auth.split("Credential=", 1)[1].split(",", 1)[0].split("/") if "Credential=" in auth else []
    access_key = scope[0] if scope else ""
    region = scope[2] if len(scope) > 2 else "us-east-1"
    return get_account_id_from(access_key), region


def tagging_get_resources(request, body):
    """GetResources for eks:cluster (moto's Tagging API does not know EKS): the caller's
    account and region, every TagFilter (key, and one of its values if any) matched, sorted by
    ARN, ResourcesPerPage 1..100 (default 100), PaginationToken an offset."""
    from moto.eks.models import eks_backends

    account, region = caller(request)
    per_page = int(body.get("ResourcesPerPage", 100))
    if not 1 <= per_page <= 100:
        return aws_error("InvalidParameterException", "ResourcesPerPage must be between 1 and 100", 400)
    filters = body.get("TagFilters", [])

    def admitted(tags):
        return all(f["Key"] in tags and (not f.get("Values") or tags[f["Key"]] in f["Values"]) for f in filters)

    clusters = sorted((c for c in eks_backends[account][region].clusters.values() if c.tags and admitted(c.tags)), key=lambda c: c.arn)
    start = int(body.get("PaginationToken") or 0)
    page = clusters[start : start + per_page]
    out = {
        "ResourceTagMappingList": [{"ResourceARN": c.arn, "Tags": [{"Key": k, "Value": v} for k, v in c.tags.items()]} for c in page],
        "PaginationToken": str(start + per_page) if start + per_page < len(clusters) else "",
    }
    return Response(json.dumps(out), content_type="application/x-amz-json-1.1")


def aws_error(error_type, message, status):
    body = json.dumps({"__type": error_type, "message": message})
    return Response(body, status=status, content_type="application/x-amz-json-1.1", headers={"x-amzn-ErrorType": error_type})


def operation_of(request, environ):
    """The API operation: the JSON protocols' X-Amz-Target, the query protocols' (STS) Action,
    else method and path (the REST protocols: EKS)."""
    target = request.headers.get("X-Amz-Target", "")
    if target:
        return target.split(".")[-1]
    if request.method == "POST" and request.content_type.startswith("application/x-www-form-urlencoded"):
        raw = request.get_data()
        environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
        action = urllib.parse.parse_qs(raw.decode(errors="replace")).get("Action")
        if action:
            return action[0]
    return f"{request.method} {request.path}"


class Dispatcher(DomainDispatcherApplication):
    """moto's dispatcher, its backend for a host looked up once: stock moto lists its package
    directory and tries every URL pattern on each request, under one lock (a third of the CPU
    of a Secrets Manager call)."""

    @functools.lru_cache(maxsize=None)  # noqa: B019 - one instance, for the life of the process
    def get_backend_for_host(self, host):
        return super().get_backend_for_host(host)


class Emulator:
    def __init__(self):
        self.moto = Dispatcher(create_backend_app)

    def control(self, request):
        path = request.path[len("/_meshca/") :]
        body = request.get_json(silent=True) or {}
        if path == "stats":
            with CONTROL.lock:
                return {"calls": dict(CONTROL.calls), "throttled": CONTROL.throttled, "issued": CONTROL.issued}
        if path == "issue/attempts":
            with CONTROL.lock:
                return {"times": list(CONTROL.issue_attempts)}
        if path == "events/put":
            with CONTROL.lock:
                return {"entries": list(CONTROL.put_events)}
        if path == "reset":
            CONTROL.reset()
            return {}
        if path == "configure":
            with CONTROL.lock:
                if "in_progress_polls" in body:
                    CONTROL.in_progress_polls = int(body["in_progress_polls"])
                    for arn, left in list(CONTROL.pending_polls.items()):
                        CONTROL.pending_polls[arn] = min(left, CONTROL.in_progress_polls)
                if "audit_polls" in body:
                    CONTROL.audit_polls = int(body["audit_polls"])
                if "issue_tps" in body:
                    CONTROL.issue_tps = int(body["issue_tps"])
                    CONTROL.issue_times.clear()
                for f in body.get("faults", []):
                    skip = int(f.get("skip", 0))
                    CONTROL.faults[f["operation"]] = {
                        "fail": int(f["fail"]),
                        "skip": skip,
                        "of": int(f.get("of", skip + int(f["fail"]))),
                        "seen": 0,
                        "code": f.get("code", "ServiceUnavailableException"),
                        "status": int(f.get("status", 503)),
                    }
                CONTROL.bad_certificates.extend(body.get("bad_certificates", []))
            return {}
        if path == "fixtures/hierarchy":
            return fixture_hierarchy(body)
        if path == "eks/cluster":
            return eks_cluster(body)
        if path == "iam/role":
            with CONTROL.lock:
                CONTROL.roles[body["arn"]] = {"trusts": body.get("trusts", ACCOUNT), "external_id": body.get("external_id")}
            return {}
        if path == "sts/key":
            return sts_key(body)
        if path == "crl/hold":
            with CONTROL.lock:
                CONTROL.crl_held = True
            return {}
        if path == "crl/publish":
            with CONTROL.lock:
                CONTROL.crl_held = False
            publish_all_crls()
            return {}
        if path == "audit/reset":
            with CONTROL.lock:
                CONTROL.audit_last.clear()
            return {}
        if path == "ca/status":
            b = backend(body.get("region", "eu-west-1"))
            b.describe_certificate_authority(body["arn"]).status = body["status"]
            return {}
        raise KeyError(path)

    def __call__(self, environ, start_response):
        request = Request(environ)
        if request.path.startswith("/_meshca/"):
            try:
                response = Response(json.dumps(self.control(request)), content_type="application/json")
            except KeyError as e:
                response = Response(json.dumps({"error": f"unknown control {e}"}), status=404)
            except Exception as e:  # noqa: BLE001
                response = Response(json.dumps({"error": repr(e)}), status=500)
            return response(environ, start_response)

        op = operation_of(request, environ)
        with CONTROL.lock:
            CONTROL.calls[op] += 1
            # EKS is a REST protocol: its two read operations are counted by name too.
            if request.method == "GET" and request.path == "/clusters":
                CONTROL.calls["ListClusters"] += 1
            elif request.method == "GET" and request.path.count("/") == 2 and request.path.startswith("/clusters/"):
                CONTROL.calls["DescribeCluster"] += 1
        fault = CONTROL.take_fault(op)
        if fault:
            return aws_error(fault["code"], f"injected fault for {op}", fault["status"])(environ, start_response)
        if op == "IssueCertificate" and not CONTROL.admit_issue():
            return aws_error("ThrottlingException", "Rate exceeded", 400)(environ, start_response)

        if op == "GetResources":
            raw = request.get_data()
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
            body = json.loads(raw or b"{}")
            types = body.get("ResourceTypeFilters", [])
            if types and all(t.startswith("eks") for t in types):
                return tagging_get_resources(request, body)(environ, start_response)

        sent_events = None
        if op == "PutEvents":
            raw = request.get_data()
            environ["wsgi.input"], environ["CONTENT_LENGTH"] = io.BytesIO(raw), str(len(raw))
            sent_events = json.loads(raw or b"{}").get("Entries", [])
        captured = {}

        def capture(status, headers, exc_info=None):
            captured["status"], captured["headers"] = status, headers
            return lambda data: None

        try:
            body = b"".join(self.moto(environ, capture))
        except Exception as e:  # noqa: BLE001 - never an HTML page
            return aws_error("InternalFailure", f"{type(e).__name__}: {e}", 500)(environ, start_response)
        status_code = int(captured["status"].split()[0])
        if sent_events is not None and status_code == 200:
            with CONTROL.lock:
                CONTROL.put_events.extend(sent_events)
        content_type = dict((k.lower(), v) for k, v in captured["headers"]).get("content-type", "")
        if status_code >= 500 and ("html" in content_type or body.lstrip().lower().startswith(b"<!doctype")):
            return aws_error("InternalFailure", f"emulator error in {op}", 500)(environ, start_response)
        start_response(captured["status"], captured["headers"])
        return [body]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--no-stdin-watch", action="store_true", help="keep serving when stdin closes")
    args = parser.parse_args()
    install_patches()
    # waitress keeps connections alive, as AWS endpoints do (werkzeug's server closes every
    # connection, so each SDK call would pay a new TCP connection and a new thread).
    # A fleet of many accounts and regions keeps hundreds of SDK connections alive, and test API
    # servers ask sts/key on connections of their own: waitress's default of 100 connections
    # would stop accepting (until idle ones time out) long before AWS would.
    server = waitress.create_server(
        Emulator(), host=args.host, port=args.port, threads=16, channel_timeout=300, connection_limit=2000, backlog=1024, ident="meshca-aws"
    )
    print(f"READY {server.effective_port}", flush=True)
    if not args.no_stdin_watch:
        # The parent (a test binary) holds our stdin; when it exits, we go too.
        def watch():
            sys.stdin.read()
            os._exit(0)

        threading.Thread(target=watch, daemon=True).start()
    server.run()


if __name__ == "__main__":
    main()
