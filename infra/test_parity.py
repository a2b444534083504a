"""The Terraform module grants what the CDK app grants, triggers on the same events and configures
the functions alike; its variables are documented and validated. Reads the module with python-hcl2
(checkov's own parser) and the template `cdk synth` wrote to infra/cdk/cdk.out."""

import json
import os

import hcl2

HERE = os.path.dirname(os.path.abspath(__file__))
MODULE = os.path.join(HERE, "terraform", "modules", "meshca")


def one(v):
    """python-hcl2 wraps single values in lists."""
    while isinstance(v, list) and len(v) == 1:
        v = v[0]
    return v


def load(name):
    with open(os.path.join(MODULE, name)) as f:
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
XCP_LOCALS = {"${local.xcp_ca}", "${local.xcp_own_ca}"}


def tf_role_statements(authority="pca"):
    doc = blocks(load("main.tf"), "data", "aws_iam_policy_document")["meshca"]
    dynamic = [d["statement"] for d in doc.get("dynamic", []) if "statement" in d]
    chosen = [one(d["content"]) for d in dynamic if one(d["for_each"]) == AUTHORITY_LOCALS[authority]]
    assert all(one(d["for_each"]) in set(AUTHORITY_LOCALS.values()) | XCP_LOCALS for d in dynamic), "a dynamic statement outside the known switches"
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
    assert star == ["ListClusters"], "only eks:ListClusters, which has no resource type, is granted on *"


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
