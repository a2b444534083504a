"""The Terraform module grants what the CDK app grants, triggers on the same events and configures
the functions alike; its variables are documented and validated. Reads the module with python-hcl2
(checkov's own parser) and the template `cdk synth` wrote to infra/cdk/cdk.out."""

import json
import re
import os

import hcl2

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, "terraform", "modules", "meshca")
MEMBER_MODULE = os.path.join(HERE, "terraform", "modules", "meshca-member")


def one(v):
    """python-hcl2 wraps single values in lists."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def load(name, module=MODULE):
    with open(os.path.join(module, name)) as f:
        return hcl2.load(f)


def blocks(doc, kind, type_):
    return {name: body for item in doc.get(kind, []) for t, named in item.items() if t == type_ for name, body in named.items()}


def template(out="cdk.out"):
    """The Private CA stack (cdk.out), or the Vault one (cdk.out.vault): infra/check synthesises both."""
    with open(os.path.join(HERE, "cdk", out, "Meshca.template.json")) as f:
        return json.load(f)


def cdk_role_statements(out="cdk.out"):
    policies = [r for r in template(out)["Resources"].values() if r["Type"] == "AWS::IAM::Policy"]
    assert len(policies) == 1
    return policies[0]["Properties"]["PolicyDocument"]["Statement"]


# The module's dynamic statements, by the local their for_each reads: present for one authority only.
AUTHORITY_LOCALS = {"pca": "${local.pca}", "vault": "${local.vault_secret_id}"}
# Statements for TSB's XCP identities, off unless xcp_identities: not in the synthesised stacks.
XCP_LOCALS = {"${local.xcp_ca}", "${local.xcp_own_ca}", "${local.ca_role}"}
# The member roles: on with member_accounts, as in the Private CA stack infra/check synthesises.
MEMBER_LOCAL = "${local.member_assume}"
# CRL mode's read of the CAs' CRL buckets: off in the synthesised stacks (infra/cdk/test checks
# the CDK side, test_crl_mode_reads_the_named_buckets_only the Terraform side).
CRL_LOCAL = "${local.crl_read}"
CRL_AUDIT_LOCAL = "${local.crl_audit}"


def tf_role_statements(authority="pca"):
    doc = blocks(load("main.tf"), "data", "aws_iam_policy_document")["meshca"]
    dynamic = [d["statement"] for d in doc.get("dynamic", []) if "statement" in d]
    switches = {AUTHORITY_LOCALS[authority]} | ({MEMBER_LOCAL} if authority == "pca" else set())
    chosen = [one(d["content"]) for d in dynamic if one(d["for_each"]) in switches]
    assert all(one(d["for_each"]) in set(AUTHORITY_LOCALS.values()) | XCP_LOCALS | {MEMBER_LOCAL, CRL_LOCAL, CRL_AUDIT_LOCAL} for d in dynamic), "a dynamic statement outside the known switches"
    return doc["statement"] + chosen


def actions(a):
    a = one(a)
    return sorted([a] if isinstance(a, str) else a)


def test_the_role_policies_grant_the_same_actions_statement_by_statement():
    for authority, out in [("pca", "cdk.out"), ("vault", "cdk.out.vault")]:
        cdk = {s["Sid"]: actions(s["Action"]) for s in cdk_role_statements(out) if "Sid" in s}
        tf = {one(s["sid"]): actions(s["actions"]) for s in tf_role_statements(authority)}
        # CDK's log-group grant carries no Sid; Terraform names it.
        logs = tf.pop("OwnLogsOnly")
        assert logs == ["logs:CreateLogStream", "logs:PutLogEvents"]
        assert [s for s in cdk_role_statements(out) if "Sid" not in s][0]["Action"] == logs
        assert tf == cdk, authority
    vault = {one(s["sid"]) for s in tf_role_statements("vault")}
    assert "ReadTheVaultSecretIdOnly" in vault and not any("acm-pca" in str(s["actions"]) for s in tf_role_statements("vault"))


def test_issue_certificate_carries_the_template_condition_in_terraform_too():
    issue = [s for s in tf_role_statements() if "acm-pca:IssueCertificate" in actions(s["actions"])]
    assert len(issue) == 1 and actions(issue[0]["actions"]) == ["acm-pca:IssueCertificate"]
    cond = one(issue[0]["condition"])
    assert (one(cond["test"]), one(cond["variable"])) == ("StringEquals", "acm-pca:TemplateArn")
    assert one(cond["values"]) == "${local.template_arn}"
    star = [one(s["sid"]) for s in tf_role_statements() if one(s["resources"]) == "*"]
    assert star == ["ListClusters"], "only the listing calls, which have no resource type, are granted on *"
    listing = [actions(s["actions"]) for s in tf_role_statements() if one(s["sid"]) == "ListClusters"][0]
    assert listing == ["eks:ListClusters", "secretsmanager:ListSecrets", "tag:GetResources"]


def test_the_same_environment_and_event_patterns():
    tf_main = open(os.path.join(MODULE, "main.tf")).read()
    for out in ["cdk.out", "cdk.out.vault"]:
        fns = [r for r in template(out)["Resources"].values() if r["Type"] == "AWS::Lambda::Function"]
        for var in fns[0]["Properties"]["Environment"]["Variables"]:
            assert var in tf_main, f"{var} is set by CDK ({out}) but not by Terraform"
    rules = [r["Properties"] for r in template()["Resources"].values() if r["Type"] == "AWS::Events::Rule"]
    eks = [r for r in rules if "EventPattern" in r and r["EventPattern"].get("source") == ["aws.eks"]][0]["EventPattern"]
    assert eks["detail"]["eventName"] == ["CreateCluster", "DeleteCluster"]
    for needle in ['"AWS API Call via CloudTrail"', '"CreateCluster", "DeleteCluster"', '"meshca Reconcile Requested"', 'runtime          = "provided.al2023"', '"arm64"', "timeout = 900"]:
        assert needle in tf_main, needle


def test_every_variable_is_described_and_the_risky_ones_validated():
    variables = {name: body for item in load("variables.tf")["variable"] for name, body in item.items()}
    assert len(variables) >= 10
    for name, body in variables.items():
        assert one(body.get("description", "")).strip(), f"variable {name} has no description"
    for name in ["ca_arn", "vault", "template_arn", "regions", "validity_days", "renew_before_days", "log_retention_days", "name"]:
        assert "validation" in variables[name], f"variable {name} is not validated"
    outputs = {name for item in load("outputs.tf")["output"] for name in item}
    assert {"role_arn", "grant_cluster_access", "alarm_topic_arn"} <= outputs


def test_xcp_identities_get_the_end_entity_template_on_their_ca_only():
    doc = blocks(load("main.tf"), "data", "aws_iam_policy_document")["meshca"]
    dynamic = [d["statement"] for d in doc.get("dynamic", []) if "statement" in d]
    xcp = {one(d["for_each"]): one(d["content"]) for d in dynamic}
    issue = xcp["${local.xcp_ca}"]
    assert actions(issue["actions"]) == ["acm-pca:IssueCertificate"]
    cond = one(issue["condition"])
    assert (one(cond["test"]), one(cond["variable"]), one(cond["values"])) == ("StringEquals", "acm-pca:TemplateArn", "${local.end_entity_template}")
    own = xcp["${local.xcp_own_ca}"]
    assert "acm-pca:IssueCertificate" not in actions(own["actions"])
    main = open(os.path.join(MODULE, "main.tf")).read()
    assert 'end_entity_template = "arn:${local.partition}:acm-pca:::template/EndEntityCertificate/V1"' in " ".join(main.split())


def test_a_root_rotation_widens_the_pathlen0_grant_and_both_stacks_alarm_when_it_is_stuck():
    pca = {one(s["sid"]): s for s in tf_role_statements()}
    for sid in ["IssuePathLen0FromTheConfiguredCaOnly", "ReadAndRevokeOnTheConfiguredCa"]:
        assert one(pca[sid]["resources"]) == "${local.pca_arns}", sid
    main = " ".join(open(os.path.join(MODULE, "main.tf")).read().split())
    assert "pca_arns = var.ca_arn == null ? [] : concat([var.ca_arn], var.rotation_ca_arns)" in main
    alarms = blocks(load("main.tf"), "resource", "aws_cloudwatch_metric_alarm")
    stuck = alarms["root_rotation_stuck"]
    assert (one(stuck["metric_name"]), one(stuck["statistic"]), one(stuck["comparison_operator"])) == ("RotationPhaseAgeSeconds", "Maximum", "GreaterThanThreshold")
    cdk = [r["Properties"] for r in template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Alarm"]
    assert [a for a in cdk if a.get("MetricName") == "RotationPhaseAgeSeconds"][0]["Threshold"] == 72 * 3600
    variables = {name: body for item in load("variables.tf")["variable"] for name, body in item.items()}
    assert one(variables["rotation_stuck_after_hours"]["default"]) == 72


def member_template():
    with open(os.path.join(HERE, "cdk", "cdk.out.member", "MeshcaMember.template.json")) as f:
        return json.load(f)


def test_member_accounts_assume_their_roles_only_and_only_they_forward_events():
    pca = {one(s["sid"]): s for s in tf_role_statements()}
    assume = pca["AssumeTheMemberRolesOnly"]
    assert actions(assume["actions"]) == ["sts:AssumeRole"] and one(assume["resources"]) == "${statement.value}"
    main = " ".join(open(os.path.join(MODULE, "main.tf")).read().split())
    assert 'role_arn = "arn:${local.partition}:iam::${m.account}:role/${m.role_name}"' in main
    assert "member_assume = length(local.members) > 0 ? [local.member_roles] : []" in main
    assert '"arn:${local.partition}:secretsmanager:${r}:${local.account}:secret:meshca/${m.account}/${r}/*"' in main
    cdk_policy = [r["Properties"] for r in template()["Resources"].values() if r["Type"] == "AWS::Events::EventBusPolicy"]
    assert len(cdk_policy) == 1 and cdk_policy[0]["EventBusName"] == "default"
    tf_policy = blocks(load("main.tf"), "data", "aws_iam_policy_document")["member_events"]
    statement = bus_statements(tf_policy)["MeshcaMemberAccountsForwardEksEvents"]
    assert one(statement["sid"]) == cdk_policy[0]["StatementId"]
    assert actions(statement["actions"]) == [cdk_policy[0]["Statement"]["Action"]]
    env = [r for r in template()["Resources"].values() if r["Type"] == "AWS::Lambda::Function"][0]["Properties"]["Environment"]["Variables"]
    assert "MESHCA_ACCOUNTS" in env and "MESHCA_ACCOUNTS" in main
    rules = [r["Properties"]["EventPattern"] for r in template()["Resources"].values() if r["Type"] == "AWS::Events::Rule" and "EventPattern" in r["Properties"]]
    assert any("account" in p for p in rules), "the CDK rule takes EKS events from listed accounts only"
    assert "account = concat([local.account], [for m in local.members : m.account])" in main


def bus_statements(doc):
    """The default bus's policy statements, each a dynamic block (present when its setting is)."""
    return {one(c["sid"]): c for d in doc["dynamic"] for c in d["statement"]["content"]}


def test_revoke_requests_are_routed_and_the_security_account_may_send_only_them():
    main = open(os.path.join(MODULE, "main.tf")).read()
    rules = blocks(load("main.tf"), "resource", "aws_cloudwatch_event_rule")
    assert "revoke" in rules and "'meshca Revoke Requested'" in one(rules["revoke"]["event_pattern"])
    assert 'revoke    = { rule = aws_cloudwatch_event_rule.revoke, bus = "default", fn = "cluster_events"' in main
    cdk_rules = [r["Properties"]["EventPattern"] for r in template()["Resources"].values() if r["Type"] == "AWS::Events::Rule" and "EventPattern" in r["Properties"]]
    assert [p["account"] for p in cdk_rules if p.get("detail-type") == ["meshca Revoke Requested"]] == [["111122223333"]]
    security = bus_statements(blocks(load("main.tf"), "data", "aws_iam_policy_document")["member_events"])["MeshcaSecurityAccountRevokes"]
    conditions = {one(c["variable"]): one(c["values"]) for c in security["condition"]}
    assert conditions == {"events:source": "meshca", "events:detail-type": "meshca Revoke Requested"}
    variables = {name: body for item in load("variables.tf")["variable"] for name, body in item.items()}
    assert "validation" in variables["security_account"]
    assert "MESHCA_SECURITY_ACCOUNT = var.security_account" in main


def test_the_member_module_grants_what_the_member_stack_grants():
    cdk_statements = [s for r in member_template()["Resources"].values() if r["Type"] == "AWS::IAM::Policy" for s in r["Properties"]["PolicyDocument"]["Statement"]]
    cdk_actions = sorted(a for s in cdk_statements for a in actions(s["Action"]))
    docs = blocks(load("main.tf", MEMBER_MODULE), "data", "aws_iam_policy_document")
    tf_actions = sorted(a for name in ["member", "forward"] for s in docs[name]["statement"] for a in actions(s["actions"]))
    assert tf_actions == cdk_actions == ["eks:DescribeCluster", "eks:ListClusters", "events:PutEvents", "tag:GetResources"]
    roles = [r["Properties"] for r in member_template()["Resources"].values() if r["Type"] == "AWS::IAM::Role" and r["Properties"].get("RoleName")]
    trust = roles[0]["AssumeRolePolicyDocument"]["Statement"][0]
    tf_trust = one(docs["trust"]["statement"])
    assert one(one(tf_trust["principals"])["identifiers"]) == "${var.central_role_arn}"
    assert trust["Principal"]["AWS"].startswith("arn:aws:iam::") and trust["Action"] == "sts:AssumeRole"
    assert one(one(one(tf_trust["dynamic"])["condition"]["content"])["variable"]) == "sts:ExternalId"
    assert trust["Condition"] == {"StringEquals": {"sts:ExternalId": "meshca-222233334444"}}
    assert roles[0]["MaxSessionDuration"] == 3600
    main = " ".join(open(os.path.join(MEMBER_MODULE, "main.tf")).read().split())
    for needle in ['"AWS API Call via CloudTrail"', '"CreateCluster", "DeleteCluster"', "arn = var.central_bus_arn"]:
        assert needle in main, needle
    variables = {name: body for item in load("variables.tf", MEMBER_MODULE)["variable"] for name, body in item.items()}
    for name, body in variables.items():
        assert one(body.get("description", "")).strip(), f"variable {name} has no description"
    for name in ["central_role_arn", "central_bus_arn", "role_name", "name"]:
        assert "validation" in variables[name], name


def test_both_stacks_draw_the_fleet_dashboard_with_per_cluster_rows_from_the_logs():
    dashboards = [r for r in template()["Resources"].values() if r["Type"] == "AWS::CloudWatch::Dashboard"]
    assert len(dashboards) == 1
    cdk_body = json.dumps(dashboards[0])
    main = open(os.path.join(MODULE, "main.tf")).read()
    assert 'resource "aws_cloudwatch_dashboard" "fleet"' in main
    for metric in ["Renewals", "Failures", "IssueThrottled", "SoonestDaysLeft", "ClustersFailed"]:
        assert metric in main and metric in cdk_body, metric
    # The same Logs Insights queries, line for line, over the functions' log groups.
    locals_block = main[main.index("per_cluster_query = join("):main.index('resource "aws_cloudwatch_dashboard"')]
    lines = re.findall(r'^\s+"((?:filter|stats|sort|limit) [^"]*)",$', locals_block, re.M)
    assert len(lines) == 8, lines
    for line in lines:
        assert json.dumps(line)[1:-1] in cdk_body, line
    assert main.count('type = "log"') == 2 and cdk_body.count('\\"type\\":\\"log\\"') == 2
    # No billed series per cluster: nothing graphs or alarms on a Cluster dimension.
    for text in (main, cdk_body):
        assert "SEARCH(" not in text and "Cluster}" not in text


def test_a_ca_in_another_account_is_called_as_the_role_there_and_no_other():
    doc = blocks(load("main.tf"), "data", "aws_iam_policy_document")["meshca"]
    dynamic = [d["statement"] for d in doc.get("dynamic", []) if "statement" in d]
    content = [one(d["content"]) for d in dynamic if one(d["for_each"]) == "${local.ca_role}"][0]
    assert one(content["sid"]) == "AssumeTheCaAccountRoleOnly" and actions(content["actions"]) == ["sts:AssumeRole"]
    main = open(os.path.join(MODULE, "main.tf")).read()
    assert "MESHCA_CA_ROLE_ARN" in main and "MESHCA_CA_EXTERNAL_ID" in main
    cdk = open(os.path.join(HERE, "cdk", "lib", "meshca-stack.ts")).read()
    assert "sid: 'AssumeTheCaAccountRoleOnly'" in cdk and "MESHCA_CA_ROLE_ARN" in cdk


SETTINGS = json.load(open(os.path.join(HERE, "cdk", "lib", "settings.json")))["settings"]


def variables():
    return {name: body for item in load("variables.tf")["variable"] for name, body in item.items()}


def test_every_setting_with_a_name_is_a_terraform_variable_of_that_name():
    declared = variables()
    for s in SETTINGS:
        tf = s["terraform"]
        if tf is None:
            continue
        top, _, attribute = tf.partition(".")
        assert top in declared, f"{s['env']}: no Terraform variable {top}"
        if attribute:
            assert re.search(rf"\b{attribute}'?\s*[=:]", str(one(declared[top]["type"]))), f"{s['env']}: variable {top} has no attribute {attribute}"


def test_direct_settings_pass_through_unchanged_with_the_functions_defaults():
    declared = variables()
    main = blocks_of_locals()
    direct = one(main["direct_settings"])
    for s in [s for s in SETTINGS if s["mapping"] == "direct"]:
        value = str(direct.get(s["env"]))
        assert f"var.{s['terraform']}" in value, f"{s['env']} is not set from var.{s['terraform']} in direct_settings: {value}"
        default = one(declared[s["terraform"]].get("default"))
        assert default is None or str(default).lower() == s["default"], f"{s['terraform']}: default {default!r}, the functions' is {s['default']!r}"
        if default is None and s["default"] is not None:
            assert s["default"] in one(declared[s["terraform"]]["description"]), f"{s['terraform']}: the description does not say the default {s['default']}"
    assert len(direct) == len([s for s in SETTINGS if s["mapping"] == "direct"]), "direct_settings sets exactly the direct settings"


def test_the_module_sets_only_listed_variables():
    listed = {s["env"] for s in SETTINGS}
    text = open(os.path.join(MODULE, "main.tf")).read()
    for var in set(re.findall(r"\b(MESHCA_[A-Z_]+)\s*=", text)):
        assert var in listed, f"{var} is set by the Terraform module but not in infra/cdk/lib/settings.json"


def blocks_of_locals():
    merged = {}
    for item in load("main.tf").get("locals", []):
        merged.update(item)
    return merged


def test_a_custom_escrow_prefix_is_what_the_role_may_write_under():
    locals_ = blocks_of_locals()
    assert "secret:${local.secret_prefix}/*" in str(locals_["escrow_secrets"])
    escrow = [s for s in tf_role_statements() if one(s["sid"]) == "EscrowUnderTheMeshcaPrefix"][0]
    assert one(escrow["resources"]) == "${local.escrow_secrets}"


def test_every_alarm_names_its_runbook_page_and_the_outputs_say_where_to_look():
    alarms = blocks(load("main.tf"), "resource", "aws_cloudwatch_metric_alarm")
    pages = set()
    for name, body in alarms.items():
        m = re.search(r"Runbook: (docs/alarms/[a-z-]+\.md)$", one(body["alarm_description"]))
        assert m, f"alarm {name} names no runbook"
        assert os.path.isfile(os.path.join(os.path.dirname(HERE), m.group(1))), m.group(1)
        pages.add(m.group(1))
    assert "clusters_failed" in alarms and len(pages) == 8
    outputs = {name for item in load("outputs.tf")["output"] for name in item}
    assert {"cluster_events_function", "expiry_sweep_function", "renewal_worker_function", "log_groups", "dead_letter_queues", "work_queue_url", "dashboard_name"} <= outputs


def test_the_configuration_reference_is_the_settings_list_and_names_only_real_context_keys():
    import settings_doc

    doc = open(settings_doc.DOC).read()
    assert settings_doc.section(doc) == settings_doc.table(), "docs/configuration.md is out of date: python3 infra/settings_doc.py --write"
    cdk_code = open(os.path.join(HERE, "cdk", "lib", "meshca-stack.ts")).read() + open(os.path.join(HERE, "cdk", "lib", "meshca-member-stack.ts")).read()
    cdk_code += open(os.path.join(HERE, "cdk", "bin", "meshca.ts")).read()
    deployment_only = doc[doc.index("## Deployment-only settings"):]
    keys = re.findall(r"^\| `([a-zA-Z]+)` \|", deployment_only, re.M) + re.findall(r"`(vault[A-Z][A-Za-z]+|central[A-Z][A-Za-z]+|memberRoleName|externalId|createRole)`", deployment_only)
    assert len(keys) > 20
    for key in keys:
        assert re.search(rf"(ctx|num|minutes|tryGetContext)\(['`](meshca:)?{key}['`]\)", cdk_code), f"docs/configuration.md names context key {key}, which the CDK app does not read"
    readme = open(os.path.join(os.path.dirname(HERE), "README.md")).read()
    assert "docs/configuration.md" in readme


def test_cluster_access_is_meshca_access_for_the_configured_kinds():
    """The access the module tells users to grant is what `meshca access` prints for its kinds
    (a Role per namespace), never an edit policy on the namespace."""
    outputs = load("outputs.tf")["output"]
    text = one(next(o["grant_cluster_access"]["value"] for o in outputs if "grant_cluster_access" in o))
    assert "--kubernetes-groups meshca" in text and "meshca access" in text, text
    assert 'coalesce(var.kinds, ["istio-cacerts"])' in text, text
    # Moved landings are granted where the functions deliver them.
    assert '" --tsb-namespace ${var.tsb_namespace}"' in text, text
    assert '" --cert-manager-secret ${var.cert_manager_secret}"' in text, text
    assert "AmazonEKSEditPolicy" not in text, text


def test_the_cost_rows_count_what_the_stacks_create():
    """bench/run prices a deployment from bench/prices.json: its alarms, keys and the sweep's memory
    are what both stacks create."""
    prices = json.load(open(os.path.join(os.path.dirname(HERE), "bench", "prices.json")))["deployment"]
    resources = template()["Resources"].values()
    of = lambda t: [r for r in resources if r["Type"] == t]
    assert len(of("AWS::CloudWatch::Alarm")) == prices["alarms"]
    assert len(of("AWS::KMS::Key")) == prices["kms_keys"]
    sweep = [f for f in of("AWS::Lambda::Function") if "renews what is due" in f["Properties"]["Description"]]
    assert [f["Properties"]["MemorySize"] for f in sweep] == [prices["sweep_memory_mb"]]
    main = open(os.path.join(MODULE, "main.tf")).read()
    assert re.search(r'expiry_sweep += \{[^}]*memory = %d,' % prices["sweep_memory_mb"], main)
    assert main.count('resource "aws_kms_key"') == prices["kms_keys"]


# ---------------------------------------------------------------------------------------------
# The role grants every AWS call the functions' code makes. The CDK test's list of allowed
# actions says "the functions call exactly these"; this reads the calls from the code itself.

# SDK crate -> (botocore service model, IAM prefix)
SDK_SERVICES = {
    "aws_sdk_acmpca": ("acm-pca", "acm-pca"),
    "aws_sdk_eks": ("eks", "eks"),
    "aws_sdk_eventbridge": ("events", "events"),
    "aws_sdk_resourcegroupstagging": ("resourcegroupstaggingapi", "tag"),
    "aws_sdk_s3": ("s3", "s3"),
    "aws_sdk_secretsmanager": ("secretsmanager", "secretsmanager"),
    "aws_sdk_sqs": ("sqs", "sqs"),
    "aws_sdk_sts": ("sts", "sts"),
}
# The crates the functions are built from that call AWS (the CLI's own code is not deployed).
FUNCTION_SOURCES = [os.path.join(HERE, "..", "shared", "aws", "src"), os.path.join(HERE, "..", "functions")]
# Batch calls SQS authorises with the single call's action.
AUTHORISED_AS = {
    "sqs:SendMessageBatch": "sqs:SendMessage",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
}
# Calls no role is granted, with the reason.
UNGRANTED = {
    # Asking who the caller is (the functions learn their own account so) needs no permission:
    # AWS answers any principal, even one whose policies deny it.
    "sts:GetCallerIdentity",
}
# Calls granted only in a mode that is off in the synthesised stacks, by the switch that grants them.
GRANTED_IN_CRL_MODE = {
    "s3:GetObject",
    "acm-pca:CreateCertificateAuthorityAuditReport",
    "acm-pca:DescribeCertificateAuthorityAuditReport",
}


def snake(name):
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def operations(model):
    import botocore.loaders

    return botocore.loaders.Loader().load_service_model(model, "service-2")["operations"].keys()


def calls_in_code():
    """(IAM action, file) for each SDK operation called as `.op()` in a file that uses its crate."""
    by_crate = {crate: {snake(op): f"{prefix}:{op}" for op in operations(model)} for crate, (model, prefix) in SDK_SERVICES.items()}
    found = {}
    for root in FUNCTION_SOURCES:
        for dirpath, _, files in os.walk(root):
            if "/tests" in dirpath or "/target" in dirpath:
                continue
            for name in files:
                if not name.endswith(".rs"):
                    continue
                path = os.path.join(dirpath, name)
                text = re.split(r"#\[cfg\(test\)\]", open(path).read())[0]
                for crate in {c for c in SDK_SERVICES if c in text}:
                    for op, action in by_crate[crate].items():
                        if re.search(rf"\.{op}\(\)", text):
                            found.setdefault(AUTHORISED_AS.get(action, action), set()).add(os.path.relpath(path, os.path.join(HERE, "..")))
    return found


def granted(statements):
    actions = set()
    for s in statements:
        a = one(s.get("Action", s.get("actions")))
        actions |= set(a if isinstance(a, list) else [a])
    return actions


def test_the_role_grants_every_aws_call_the_functions_make():
    calls = calls_in_code()
    assert {"secretsmanager:PutSecretValue", "acm-pca:IssueCertificate", "eks:DescribeCluster"} <= calls.keys(), calls
    # Each deployment grants every call but those of the authority it does not use.
    deployments = [
        ("CDK, Private CA", granted(cdk_role_statements("cdk.out")), ()),
        ("CDK, Vault", granted(cdk_role_statements("cdk.out.vault")), ("acm-pca:",)),
        ("Terraform, Private CA", granted(tf_role_statements("pca")), ()),
        ("Terraform, Vault", granted(tf_role_statements("vault")), ("acm-pca:",)),
    ]
    for name, grants, unused in deployments:
        needed = {a: f for a, f in calls.items() if a not in UNGRANTED | GRANTED_IN_CRL_MODE and not any(a.startswith(p) for p in unused)}
        missing = {a: sorted(files) for a, files in needed.items() if a not in grants}
        assert not missing, f"{name} grants none of these calls the functions make: {missing}"


def test_the_call_finder_sees_a_call_the_role_lacks(tmp_path, monkeypatch):
    src = tmp_path / "x.rs"
    src.write_text("use aws_sdk_secretsmanager::Client;\nfn f(c: &Client) { c.rotate_secret().send(); }\n#[cfg(test)]\nmod t { fn g(c: &aws_sdk_sqs::Client) { c.purge_queue(); } }\n")
    monkeypatch.setattr(__import__(__name__), "FUNCTION_SOURCES", [str(tmp_path)])
    calls = calls_in_code()
    assert calls == {"secretsmanager:RotateSecret": {os.path.relpath(str(src), os.path.join(HERE, ".."))}}


def test_crl_mode_reads_the_named_buckets_only():
    """The functions read a Private CA's CRLs from S3 in CRL mode (functions/lambda/src/crls.rs):
    Terraform grants s3:GetObject on the named buckets' objects under the CRL switch alone, as
    the CDK stack does (infra/cdk/test), and refuses CRL mode with a Private CA and no bucket."""
    assert set(calls_in_code()) & GRANTED_IN_CRL_MODE == GRANTED_IN_CRL_MODE
    doc = blocks(load("main.tf"), "data", "aws_iam_policy_document")["meshca"]
    dynamic = [d["statement"] for d in doc.get("dynamic", []) if "statement" in d]
    crl = {one(d["for_each"]): one(d["content"]) for d in dynamic}[CRL_LOCAL]
    assert (one(crl["sid"]), actions(crl["actions"]), one(crl["resources"])) == ("ReadTheCaCrlsOnly", ["s3:GetObject"], "${statement.value}")
    audit = {one(d["for_each"]): one(d["content"]) for d in dynamic}[CRL_AUDIT_LOCAL]
    assert (one(audit["sid"]), actions(audit["actions"]), one(audit["resources"])) == (
        "ListWhatTheCaIssuedByAuditReport",
        ["acm-pca:CreateCertificateAuthorityAuditReport", "acm-pca:DescribeCertificateAuthorityAuditReport"],
        "${statement.value}",
    )
    main = " ".join(open(os.path.join(MODULE, "main.tf")).read().split())
    assert 'crl_read = var.crl_mode && length(var.crl_buckets) > 0 ? [[for b in var.crl_buckets : "arn:${local.partition}:s3:::${b}/*"]] : []' in main
    assert "crl_audit = var.crl_mode && var.ca_arn != null ? [local.pca_arns] : []" in main
    assert "condition = !(var.crl_mode && var.ca_arn != null && length(var.crl_buckets) == 0)" in main
    alarms = blocks(load("main.tf"), "resource", "aws_cloudwatch_metric_alarm")
    for name, metric in [("crl_days_left", "CrlDaysLeft"), ("crl_failures", "CrlFailures")]:
        assert (one(alarms[name]["metric_name"]), one(alarms[name]["count"])) == (metric, "${var.crl_mode ? 1 : 0}")
    cdk = open(os.path.join(HERE, "cdk", "lib", "meshca-stack.ts")).read()
    assert "sid: 'ReadTheCaCrlsOnly'" in cdk and "actions: ['s3:GetObject']" in cdk
    assert "sid: 'ListWhatTheCaIssuedByAuditReport'" in cdk
