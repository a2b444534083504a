# meshca: the two Lambda functions, their triggers, the key, alarms, and a role that can do what
# meshca does and nothing else. The same resources and policy as infra/cdk.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  partition    = data.aws_partition.current.partition
  account      = data.aws_caller_identity.current.account_id
  region       = data.aws_region.current.name
  regions      = length(var.regions) > 0 ? var.regions : [local.region]
  template_arn = coalesce(var.template_arn, "arn:${local.partition}:acm-pca:::template/SubordinateCACertificate_PathLen0/V1")
  # Exactly one authority: Private CA (ca_arn) or Vault (vault).
  pca = var.ca_arn == null ? [] : [var.ca_arn]
  # The configured CA and those a root rotation moves to or still retires: one PathLen0-only grant.
  pca_arns = var.ca_arn == null ? [] : concat([var.ca_arn], var.rotation_ca_arns)
  # TSB's XCP identities: the end-entity template, on their CA (xcp_ca_arn, else ca_arn).
  xcp_ca_arn          = coalesce(var.xcp_ca_arn, var.ca_arn, "none")
  xcp_ca              = var.xcp_identities ? [local.xcp_ca_arn] : []
  xcp_own_ca          = var.xcp_identities && var.xcp_ca_arn != null && var.xcp_ca_arn != var.ca_arn ? [var.xcp_ca_arn] : []
  end_entity_template = "arn:${local.partition}:acm-pca:::template/EndEntityCertificate/V1"
  vault_secret_id     = try(var.vault.secret_id_arn, null) == null ? [] : [var.vault.secret_id_arn]
  authority_environment = var.ca_arn != null ? {
    MESHCA_CA_ARN       = var.ca_arn
    MESHCA_TEMPLATE_ARN = local.template_arn
    } : merge(
    { MESHCA_AUTHORITY = "vault", MESHCA_VAULT_ADDR = var.vault.addr, MESHCA_VAULT_MOUNT = var.vault.mount },
    var.vault.issuer == null ? {} : { MESHCA_VAULT_ISSUER = var.vault.issuer },
    var.vault.namespace == null ? {} : { MESHCA_VAULT_NAMESPACE = var.vault.namespace },
    var.vault.ca_cert_pem == null ? {} : { MESHCA_VAULT_CACERT = var.vault.ca_cert_pem },
    var.vault.auth_mount == null ? {} : { MESHCA_VAULT_AUTH_MOUNT = var.vault.auth_mount },
    var.vault.aws_sts_region == null ? {} : { MESHCA_VAULT_AWS_STS_REGION = var.vault.aws_sts_region },
    var.vault.aws_server_id == null ? {} : { MESHCA_VAULT_AWS_SERVER_ID = var.vault.aws_server_id },
    var.vault.aws_role != null ? { MESHCA_VAULT_AUTH = "aws-iam", MESHCA_VAULT_AWS_ROLE = var.vault.aws_role } : {
      MESHCA_VAULT_AUTH                              = "approle"
      MESHCA_VAULT_ROLE_ID                           = var.vault.role_id
      MESHCA_VAULT_SECRET_ID_ARN                     = var.vault.secret_id_arn
    },
  )
  environment = merge(
    local.authority_environment,
    var.xcp_ca_arn == null ? {} : { MESHCA_XCP_CA_ARN = var.xcp_ca_arn },
    var.ca_role_arn == null ? {} : { MESHCA_CA_ROLE_ARN = var.ca_role_arn },
    var.secret_prefix == null ? {} : { MESHCA_SECRET_PREFIX = local.secret_prefix },
    { for k, v in local.direct_settings : k => v if v != null },
    {
      MESHCA_REGIONS        = join(",", local.regions)
      MESHCA_VALIDITY_DAYS  = tostring(var.validity_days)
      MESHCA_KMS_KEY_ID     = aws_kms_key.meshca.arn
      MESHCA_EVENT_BUS      = aws_cloudwatch_event_bus.reconcile.name
      MESHCA_WORK_QUEUE_URL = aws_sqs_queue.work.url
      MESHCA_SWEEP_MINUTES  = tostring(var.sweep_every_minutes)
      # Healthy clusters' secrets are read back about once per verify_every_hours.
      MESHCA_VERIFY_EVERY = tostring(max(1, floor(var.verify_every_hours * 60 / var.sweep_every_minutes + 0.5)))
    },
    var.renew_before_days == null ? {} : { MESHCA_RENEW_BEFORE_DAYS = tostring(var.renew_before_days) },
    local.members_environment,
    local.security_environment,
    local.crl_environment,
  )
  # The settings passed through as given (infra/cdk/lib/settings.json, mapping "direct"); null
  # leaves the variable unset and the functions' own default applies.
  direct_settings = {
    MESHCA_CA_EXTERNAL_ID        = var.ca_external_id
    MESHCA_TAG_KEY               = var.tag_key
    MESHCA_TAG_VALUE             = var.tag_value
    MESHCA_KEY_ALGORITHM         = var.key_algorithm
    MESHCA_RECOVERY_WINDOW_DAYS  = var.recovery_window_days == null ? null : tostring(var.recovery_window_days)
    MESHCA_RESTART_ISTIOD        = var.restart_istiod
    MESHCA_ADOPT                 = var.adopt == null ? null : tostring(var.adopt)
    MESHCA_DRY_RUN               = var.dry_run == null ? null : tostring(var.dry_run)
    MESHCA_ACTIVE_POLL_SECONDS   = var.active_poll_seconds == null ? null : tostring(var.active_poll_seconds)
    MESHCA_ISSUE_RATE            = var.issue_rate == null ? null : tostring(var.issue_rate)
    MESHCA_SWEEP_CONCURRENCY     = var.sweep_concurrency == null ? null : tostring(var.sweep_concurrency)
    MESHCA_FANOUT_THRESHOLD      = var.fanout_threshold == null ? null : tostring(var.fanout_threshold)
    MESHCA_KINDS                 = var.kinds == null ? null : join(" ", var.kinds)
    MESHCA_KINDS_TAG             = var.kinds_tag
    MESHCA_TSB_ROLE_TAG          = var.tsb_role_tag
    MESHCA_TSB_NAME_TAG          = var.tsb_name_tag
    MESHCA_TSB_NAMESPACE         = var.tsb_namespace
    MESHCA_TSB_CENTRAL_ADDRESSES = var.tsb_central_addresses == null ? null : join(" ", var.tsb_central_addresses)
    MESHCA_CERT_MANAGER_SECRET   = var.cert_manager_secret
  }
  # Escrow secrets: under secret_prefix in every region of ours and our members', else under
  # meshca/<region>/ (members: meshca/<account>/<region>/).
  secret_prefix  = var.secret_prefix == null ? null : trimsuffix(var.secret_prefix, "/")
  escrow_regions = distinct(concat(local.regions, flatten([for m in local.members : m.regions])))
  escrow_secrets = local.secret_prefix == null ? concat(
    [for r in local.regions : "arn:${local.partition}:secretsmanager:${r}:${local.account}:secret:meshca/${r}/*"], local.member_secrets,
  ) : [for r in local.escrow_regions : "arn:${local.partition}:secretsmanager:${r}:${local.account}:secret:${local.secret_prefix}/*"]
  # Member accounts: the role meshca assumes in each, and the regions of its clusters.
  members = [for m in var.member_accounts : {
    account     = m.account
    role_arn    = "arn:${local.partition}:iam::${m.account}:role/${m.role_name}"
    regions     = m.regions == null ? local.regions : m.regions
    external_id = m.external_id
  }]
  member_roles = [for m in local.members : m.role_arn]
  # A CA in another account, called as a role there.
  ca_role              = var.ca_role_arn == null ? [] : [var.ca_role_arn]
  member_assume        = length(local.members) > 0 ? [local.member_roles] : []
  member_secrets       = flatten([for m in local.members : [for r in m.regions : "arn:${local.partition}:secretsmanager:${r}:${local.account}:secret:meshca/${m.account}/${r}/*"]])
  security_environment = var.security_account == null ? {} : { MESHCA_SECURITY_ACCOUNT = var.security_account }
  # CRL mode: the role reads the objects of the CAs' CRL buckets, nothing else of S3.
  crl_read = var.crl_mode && length(var.crl_buckets) > 0 ? [[for b in var.crl_buckets : "arn:${local.partition}:s3:::${b}/*"]] : []
  # CRL mode with a Private CA: a revocation lists generations issued before the ledger from its audit report.
  crl_audit = var.crl_mode && var.ca_arn != null ? [local.pca_arns] : []
  crl_environment = merge(
    var.crl_mode ? { MESHCA_CRL_MODE = "true" } : {},
    length(var.crl_buckets) > 0 ? { MESHCA_CRL_BUCKETS = join(",", var.crl_buckets) } : {},
    length(var.root_crls) > 0 ? { MESHCA_ROOT_CRLS = join(",", var.root_crls) } : {},
  )
  members_environment = length(local.members) == 0 ? {} : {
    MESHCA_ACCOUNTS = jsonencode([for m in local.members : merge({ account = m.account, role = m.role_arn, regions = m.regions }, m.external_id == null ? {} : { externalId = m.external_id })])
  }
  functions = {
    cluster_events = { name = "cluster-events", zip = var.cluster_events_zip, memory = 256, description = "meshca: a CA for each new opted-in EKS cluster, revocation when deleted" }
    expiry_sweep   = { name = "expiry-sweep", zip = var.expiry_sweep_zip, memory = 512, description = "meshca: renews what is due and repairs drifted cacerts across the fleet" }
    renewal_worker = { name = "renewal-worker", zip = var.renewal_worker_zip, memory = 256, description = "meshca: reconciles the clusters the sweep queued, at its share of the issue rate" }
  }
}

# --- Key: escrow secrets (this region), logs, dead letters, alarm messages ---------------------

data "aws_iam_policy_document" "key" {
  # checkov:skip=CKV_AWS_109:A key policy's "*" resource is the key itself; the account root keeps administration as AWS recommends.
  # checkov:skip=CKV_AWS_111:As above: key policies name no other resource.
  # checkov:skip=CKV_AWS_356:As above: key policies name no other resource.
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account}:root"]
    }
  }
  statement {
    sid       = "LogsOfThisAccountInThisRegion"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account}:log-group:*"]
    }
  }
  statement {
    sid       = "EventBridgeWritesDeadLetters"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
  statement {
    sid       = "CloudWatchPublishesAlarms"
    actions   = ["kms:GenerateDataKey*", "kms:Decrypt"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
  }
}

resource "aws_kms_key" "meshca" {
  description         = "meshca: encrypts the escrowed cluster CA bundles, the functions' logs, dead letters and alarm messages"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.key.json
}

resource "aws_cloudwatch_event_bus" "reconcile" {
  name = "${var.name}-reconcile"
}

# --- Role: exactly the calls meshca makes ---------------------------------------------------------

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "meshca" {
  name               = "${var.name}-functions"
  description        = "meshca functions: issue PathLen0 intermediates from one CA, escrow them, deliver them to opted-in EKS clusters"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

data "aws_iam_policy_document" "meshca" {
  # checkov:skip=CKV_AWS_356:eks:ListClusters, tag:GetResources and secretsmanager:ListSecrets have no resource type; they are the only actions granted on "*".
  # checkov:skip=CKV_AWS_111:Writes are scoped: secrets under meshca/<region>/, PutEvents on the meshca bus, logs on meshca's log groups.
  # Private CA only: IssueCertificate with the PathLen0 template, on the one CA.
  dynamic "statement" {
    for_each = local.pca
    content {
      sid       = "IssuePathLen0FromTheConfiguredCaOnly"
      actions   = ["acm-pca:IssueCertificate"]
      resources = local.pca_arns
      condition {
        test     = "StringEquals"
        variable = "acm-pca:TemplateArn"
        values   = [local.template_arn]
      }
    }
  }
  dynamic "statement" {
    for_each = local.pca
    content {
      sid       = "ReadAndRevokeOnTheConfiguredCa"
      actions   = ["acm-pca:GetCertificate", "acm-pca:DescribeCertificateAuthority", "acm-pca:GetCertificateAuthorityCertificate", "acm-pca:RevokeCertificate"]
      resources = local.pca_arns
    }
  }
  # CRL mode with a Private CA: its published CRLs, in the buckets named, and nothing else of S3.
  dynamic "statement" {
    for_each = local.crl_read
    content {
      sid       = "ReadTheCaCrlsOnly"
      actions   = ["s3:GetObject"]
      resources = statement.value
    }
  }
  # CRL mode with a Private CA: its audit report (written into its CRL bucket), for generations
  # issued before meshca kept a ledger.
  dynamic "statement" {
    for_each = local.crl_audit
    content {
      sid       = "ListWhatTheCaIssuedByAuditReport"
      actions   = ["acm-pca:CreateCertificateAuthorityAuditReport", "acm-pca:DescribeCertificateAuthorityAuditReport"]
      resources = statement.value
    }
  }
  # XCP identities only: IssueCertificate with the end-entity template, on their CA.
  dynamic "statement" {
    for_each = local.xcp_ca
    content {
      sid       = "IssueXcpIdentitiesWithTheEndEntityTemplateOnly"
      actions   = ["acm-pca:IssueCertificate"]
      resources = [statement.value]
      condition {
        test     = "StringEquals"
        variable = "acm-pca:TemplateArn"
        values   = [local.end_entity_template]
      }
    }
  }
  dynamic "statement" {
    for_each = local.xcp_own_ca
    content {
      sid       = "ReadAndRevokeOnTheXcpCa"
      actions   = ["acm-pca:GetCertificate", "acm-pca:DescribeCertificateAuthority", "acm-pca:GetCertificateAuthorityCertificate", "acm-pca:RevokeCertificate"]
      resources = [statement.value]
    }
  }
  # Vault with AppRole only: the one secret holding the secret id, read-only.
  dynamic "statement" {
    for_each = local.vault_secret_id
    content {
      sid       = "ReadTheVaultSecretIdOnly"
      actions   = ["secretsmanager:GetSecretValue"]
      resources = [statement.value]
    }
  }
  statement {
    sid = "EscrowUnderTheMeshcaPrefix"
    actions = ["secretsmanager:CreateSecret", "secretsmanager:GetSecretValue", "secretsmanager:PutSecretValue",
      "secretsmanager:UpdateSecretVersionStage", "secretsmanager:DeleteSecret", "secretsmanager:TagResource",
    "secretsmanager:UntagResource", "secretsmanager:DescribeSecret"]
    resources = local.escrow_secrets
  }
  # A CA in another account only: the role there, and no other.
  dynamic "statement" {
    for_each = local.ca_role
    content {
      sid       = "AssumeTheCaAccountRoleOnly"
      actions   = ["sts:AssumeRole"]
      resources = [statement.value]
    }
  }
  # Member accounts only: their member roles, and no other role anywhere.
  dynamic "statement" {
    for_each = local.member_assume
    content {
      sid       = "AssumeTheMemberRolesOnly"
      actions   = ["sts:AssumeRole"]
      resources = statement.value
    }
  }
  statement {
    sid       = "DescribeClusters"
    actions   = ["eks:DescribeCluster"]
    resources = [for r in local.regions : "arn:${local.partition}:eks:${r}:${local.account}:cluster/*"]
  }
  # Listing calls have no resource type. The sweep lists opted-in clusters by tag and reads
  # escrow summaries 100 secrets a call, describing and reading only what needs a closer look.
  statement {
    sid       = "ListClusters"
    actions   = ["eks:ListClusters", "tag:GetResources", "secretsmanager:ListSecrets"]
    resources = ["*"]
  }
  statement {
    sid       = "FanOutOnTheWorkQueueOnly"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "ConsumeTheWorkQueueOnly"
    actions   = ["sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:ChangeMessageVisibility", "sqs:GetQueueAttributes"]
    resources = [aws_sqs_queue.work.arn]
  }
  statement {
    sid       = "WorkQueueKeyThroughSqsOnly"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.meshca.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["sqs.${local.region}.amazonaws.com"]
    }
  }
  statement {
    sid       = "FanOutOnTheMeshcaBusOnly"
    actions   = ["events:PutEvents"]
    resources = [aws_cloudwatch_event_bus.reconcile.arn]
  }
  statement {
    sid       = "EscrowKeyThroughSecretsManagerOnly"
    actions   = ["kms:GenerateDataKey", "kms:Decrypt"]
    resources = [aws_kms_key.meshca.arn]
    # A KMS key serves its own region: escrow in other managed regions uses the AWS-managed key.
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["secretsmanager.${local.region}.amazonaws.com"]
    }
  }
  statement {
    sid       = "OwnLogsOnly"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = [for k, _ in local.functions : "${aws_cloudwatch_log_group.fn[k].arn}:*"]
  }
}

resource "aws_iam_role_policy" "meshca" {
  name   = "meshca"
  role   = aws_iam_role.meshca.id
  policy = data.aws_iam_policy_document.meshca.json
  lifecycle {
    precondition {
      condition     = !(var.crl_mode && var.ca_arn != null && length(var.crl_buckets) == 0)
      error_message = "crl_mode with a Private CA reads its CRLs from S3: name the buckets of the CAs' CrlConfiguration in crl_buckets."
    }
    precondition {
      condition     = var.crl_mode || length(var.crl_buckets) == 0 && length(var.root_crls) == 0
      error_message = "crl_buckets or root_crls is given but crl_mode is not true."
    }
    precondition {
      condition     = alltrue([for u in var.root_crls : contains(var.crl_buckets, split("/", trimprefix(u, "s3://"))[0])])
      error_message = "each of root_crls must be in a bucket of crl_buckets (the role may read only those)."
    }
  }
}

# --- Functions -------------------------------------------------------------------------------------

resource "aws_cloudwatch_log_group" "fn" {
  for_each          = local.functions
  name              = "/aws/lambda/${var.name}-${each.value.name}"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.meshca.arn
}

resource "aws_lambda_function" "fn" {
  # checkov:skip=CKV_AWS_116:Invoked by EventBridge or the work queue only; each rule target and the queue have their own retries and SQS dead-letter queue.
  # checkov:skip=CKV_AWS_117:Reaches public EKS API endpoints and AWS APIs; no VPC resource is accessed. Private-endpoint clusters need a VPC configuration (README).
  # checkov:skip=CKV_AWS_115:Reserved concurrency would fail deployment in accounts with a low concurrency quota; the sweep bounds its own concurrency and IssueCertificate rate.
  # checkov:skip=CKV_AWS_173:The environment holds only ARNs and settings, no secret; the key material lives in Secrets Manager under the CMK.
  # checkov:skip=CKV_AWS_45:MESHCA_ACCOUNTS lists account ids and role ARNs (an external id guards against a confused deputy; it is not a secret).
  # checkov:skip=CKV_AWS_272:Code signing needs a signing profile the user owns; the zips are built from this repository by cargo lambda.
  # checkov:skip=CKV_AWS_50:JSON logs and EMF metrics carry cluster, step and outcome; X-Ray would add IAM grants on "*".
  lifecycle {
    precondition {
      condition     = (var.ca_arn == null) != (var.vault == null)
      error_message = "Give exactly one authority: ca_arn (AWS Private CA) or vault (Vault / OpenBao)."
    }
    precondition {
      condition     = !var.xcp_identities || var.ca_arn != null || var.xcp_ca_arn != null
      error_message = "xcp_identities need a Private CA: ca_arn or xcp_ca_arn (Vault does not sign them)."
    }
    precondition {
      condition     = var.xcp_ca_arn == null || var.xcp_identities
      error_message = "xcp_ca_arn is set but xcp_identities is not true."
    }
    precondition {
      condition     = var.ca_role_arn == null || (var.ca_arn != null && try(split(":", var.ca_role_arn)[4] == split(":", var.ca_arn)[4], false))
      error_message = "ca_role_arn must be a role of the CA's account (and needs ca_arn)."
    }
  }
  for_each         = local.functions
  function_name    = "${var.name}-${each.value.name}"
  description      = each.value.description
  role             = aws_iam_role.meshca.arn
  filename         = each.value.zip
  source_code_hash = filebase64sha256(each.value.zip)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]
  memory_size      = each.value.memory
  # CreateCluster waits for ACTIVE (EKS takes ~10 min) within one invocation; a large sweep runs
  # at the IssueCertificate budget. Both get Lambda's longest timeout.
  timeout = 900
  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.fn[each.key].name
  }
  environment {
    # A worker is one of at most worker_concurrency: it takes that share of the issue rate.
    variables = merge(local.environment, each.key == "renewal_worker" ? { MESHCA_WORKER_CONCURRENCY = tostring(var.worker_concurrency) } : {})
  }
  depends_on = [aws_iam_role_policy.meshca]
}

# --- Triggers: retried, then dead-lettered -------------------------------------------------------------

resource "aws_sqs_queue" "dlq" {
  for_each                  = toset(["cluster-events", "sweep"])
  name                      = "${var.name}-${each.key}-dlq"
  kms_master_key_id         = aws_kms_key.meshca.arn
  message_retention_seconds = 1209600
}

# --- Fan-out: the work queue, consumed by renewal-worker at a bounded concurrency ----------------

resource "aws_sqs_queue" "work_dlq" {
  name                      = "${var.name}-work-dlq"
  kms_master_key_id         = aws_kms_key.meshca.arn
  message_retention_seconds = 1209600
}

resource "aws_sqs_queue" "work" {
  name              = "${var.name}-work"
  kms_master_key_id = aws_kms_key.meshca.arn
  # Six times the worker's timeout, as Lambda advises for an SQS event source.
  visibility_timeout_seconds = 5400
  message_retention_seconds  = 345600
  redrive_policy             = jsonencode({ deadLetterTargetArn = aws_sqs_queue.work_dlq.arn, maxReceiveCount = 3 })
}

resource "aws_lambda_event_source_mapping" "work" {
  event_source_arn        = aws_sqs_queue.work.arn
  function_name           = aws_lambda_function.fn["renewal_worker"].arn
  batch_size              = 10
  function_response_types = ["ReportBatchItemFailures"]
  scaling_config {
    maximum_concurrency = var.worker_concurrency
  }
}

data "aws_iam_policy_document" "dlq" {
  for_each = aws_sqs_queue.dlq
  statement {
    sid       = "EventBridgeDeadLetters"
    actions   = ["sqs:SendMessage"]
    resources = [each.value.arn]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = ["arn:${local.partition}:events:${local.region}:${local.account}:rule/*${var.name}-*"]
    }
  }
  statement {
    sid     = "TlsOnly"
    effect  = "Deny"
    actions = ["sqs:*"]
    principals {
      type        = "AWS"
      identifiers = ["*"]
    }
    resources = [each.value.arn]
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "dlq" {
  for_each  = aws_sqs_queue.dlq
  queue_url = each.value.id
  policy    = data.aws_iam_policy_document.dlq[each.key].json
}

resource "aws_cloudwatch_event_rule" "eks" {
  name        = "${var.name}-eks-create-delete"
  description = "CloudTrail CreateCluster/DeleteCluster of EKS clusters in this region, and those member accounts forward"
  event_pattern = jsonencode(merge(
    length(local.members) == 0 ? {} : { account = concat([local.account], [for m in local.members : m.account]) },
    {
      source        = ["aws.eks"]
      "detail-type" = ["AWS API Call via CloudTrail"]
      detail        = { eventSource = ["eks.amazonaws.com"], eventName = ["CreateCluster", "DeleteCluster"] }
    },
  ))
}

# Member accounts forward their EKS events onto this account's default bus, and the security
# account may put `meshca Revoke Requested` there; no one else may. A bus has one policy: both
# statements are in it.
data "aws_iam_policy_document" "member_events" {
  dynamic "statement" {
    for_each = length(local.members) > 0 ? [1] : []
    content {
      sid       = "MeshcaMemberAccountsForwardEksEvents"
      actions   = ["events:PutEvents"]
      resources = ["arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"]
      principals {
        type        = "AWS"
        identifiers = var.organization_id == null ? [for m in local.members : "arn:${local.partition}:iam::${m.account}:root"] : ["*"]
      }
      dynamic "condition" {
        for_each = var.organization_id == null ? [] : [var.organization_id]
        content {
          test     = "StringEquals"
          variable = "aws:PrincipalOrgID"
          values   = [condition.value]
        }
      }
    }
  }
  dynamic "statement" {
    for_each = var.security_account == null ? [] : [var.security_account]
    content {
      sid       = "MeshcaSecurityAccountRevokes"
      actions   = ["events:PutEvents"]
      resources = ["arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"]
      principals {
        type        = "AWS"
        identifiers = ["arn:${local.partition}:iam::${statement.value}:root"]
      }
      condition {
        test     = "StringEquals"
        variable = "events:source"
        values   = ["meshca"]
      }
      condition {
        test     = "StringEquals"
        variable = "events:detail-type"
        values   = ["meshca Revoke Requested"]
      }
    }
  }
}

resource "aws_cloudwatch_event_bus_policy" "member_events" {
  count          = length(local.members) > 0 || var.security_account != null ? 1 : 0
  event_bus_name = "default"
  policy         = data.aws_iam_policy_document.member_events.json
  lifecycle {
    precondition {
      condition     = var.organization_id == null || length(var.member_accounts) > 0
      error_message = "organization_id needs member_accounts: the functions act for listed accounts only."
    }
    precondition {
      condition     = var.security_account == null || !contains([for m in local.members : m.account], var.security_account)
      error_message = "security_account is a member account, and a member can never revoke."
    }
    precondition {
      condition     = var.security_account != local.account
      error_message = "security_account is this deployment's own account, which may revoke anyway."
    }
  }
}

resource "aws_cloudwatch_event_rule" "reconcile" {
  name           = "${var.name}-reconcile-requests"
  description    = "meshca Reconcile Requested: one cluster each, fanned out by the sweep"
  event_bus_name = aws_cloudwatch_event_bus.reconcile.name
  event_pattern  = jsonencode({ source = ["meshca"], "detail-type" = ["meshca Reconcile Requested"] })
}

# A compromised cluster revoked from AWS (docs/compromise.md): this account, or the security
# account, puts `meshca Revoke Requested` on the default bus.
resource "aws_cloudwatch_event_rule" "revoke" {
  name        = "${var.name}-revoke-requests"
  description = "meshca Revoke Requested: revoke and hold one cluster, from this account or the security account"
  event_pattern = jsonencode({
    account       = concat([local.account], var.security_account == null ? [] : [var.security_account])
    source        = ["meshca"]
    "detail-type" = ["meshca Revoke Requested"]
  })
}

resource "aws_cloudwatch_event_rule" "sweep" {
  name                = "${var.name}-sweep"
  description         = "meshca expiry sweep"
  schedule_expression = var.sweep_every_minutes == 60 ? "rate(1 hour)" : "rate(${var.sweep_every_minutes} minutes)"
}

locals {
  triggers = {
    eks       = { rule = aws_cloudwatch_event_rule.eks, bus = "default", fn = "cluster_events", dlq = "cluster-events", retries = 4 }
    reconcile = { rule = aws_cloudwatch_event_rule.reconcile, bus = aws_cloudwatch_event_bus.reconcile.name, fn = "cluster_events", dlq = "cluster-events", retries = 4 }
    revoke    = { rule = aws_cloudwatch_event_rule.revoke, bus = "default", fn = "cluster_events", dlq = "cluster-events", retries = 4 }
    sweep     = { rule = aws_cloudwatch_event_rule.sweep, bus = "default", fn = "expiry_sweep", dlq = "sweep", retries = 2 }
  }
}

resource "aws_cloudwatch_event_target" "fn" {
  for_each       = local.triggers
  rule           = each.value.rule.name
  event_bus_name = each.value.bus
  arn            = aws_lambda_function.fn[each.value.fn].arn
  retry_policy {
    maximum_retry_attempts       = each.value.retries
    maximum_event_age_in_seconds = 21600
  }
  dead_letter_config {
    arn = aws_sqs_queue.dlq[each.value.dlq].arn
  }
}

resource "aws_lambda_permission" "events" {
  for_each      = local.triggers
  statement_id  = "events-${each.key}"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.fn[each.value.fn].function_name
  principal     = "events.amazonaws.com"
  source_arn    = each.value.rule.arn
}

# --- Alarms ------------------------------------------------------------------------------------------

resource "aws_sns_topic" "alarms" {
  name              = "${var.name}-alarms"
  display_name      = "meshca alarms"
  kms_master_key_id = aws_kms_key.meshca.arn
}

resource "aws_cloudwatch_metric_alarm" "errors" {
  for_each            = local.functions
  alarm_name          = "${var.name}-${each.value.name}-errors"
  alarm_description   = "meshca ${each.value.name} failed invocations (a reconcile that failed, or bad configuration). Runbook: docs/alarms/function-errors.md"
  namespace           = "AWS/Lambda"
  metric_name         = "Errors"
  dimensions          = { FunctionName = aws_lambda_function.fn[each.key].function_name }
  statistic           = "Sum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "dead_letters" {
  for_each            = merge(aws_sqs_queue.dlq, { work = aws_sqs_queue.work_dlq })
  alarm_name          = "${var.name}-${each.key}-dead-letters"
  alarm_description   = "meshca ${each.key}: messages that could not be handled after retries wait in its dead-letter queue. Runbook: docs/alarms/dead-letters.md"
  namespace           = "AWS/SQS"
  metric_name         = "ApproximateNumberOfMessagesVisible"
  dimensions          = { QueueName = each.value.name }
  statistic           = "Maximum"
  period              = 300
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "clusters_failed" {
  alarm_name          = "${var.name}-clusters-failed"
  alarm_description   = "The expiry sweep reported clusters it could not renew, repair or hand on. Runbook: docs/alarms/clusters-failed.md"
  namespace           = "meshca"
  metric_name         = "ClustersFailed"
  statistic           = "Maximum"
  period              = min(var.sweep_every_minutes, 1440) * 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "soonest_days_left" {
  alarm_name          = "${var.name}-soonest-days-left"
  alarm_description   = "A cluster's Istio intermediate CA has under ${var.alarm_days_left} days left (meshca could not renew it). Runbook: docs/alarms/soonest-days-left.md"
  namespace           = "meshca"
  metric_name         = "SoonestDaysLeft"
  statistic           = "Minimum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = var.alarm_days_left
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# CRL mode: the fleet's first CRL lapsing soon (past it, every proxy holding the CRLs refuses
# every peer), and clusters the sweep could not give the CRLs.
resource "aws_cloudwatch_metric_alarm" "crl_days_left" {
  count               = var.crl_mode ? 1 : 0
  alarm_name          = "${var.name}-crl-days-left"
  alarm_description   = "The fleet's first CRL lapses within 2 days: past it, every proxy holding the CRLs refuses every peer. Runbook: docs/alarms/crl-days-left.md"
  namespace           = "meshca"
  metric_name         = "CrlDaysLeft"
  statistic           = "Minimum"
  period              = min(var.sweep_every_minutes, 1440) * 60
  evaluation_periods  = 1
  threshold           = 2
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "crl_failures" {
  count               = var.crl_mode ? 1 : 0
  alarm_name          = "${var.name}-crl-failures"
  alarm_description   = "The sweep could not give every istio cluster the fleet's CRLs (or could not build them). Runbook: docs/alarms/crl-failures.md"
  namespace           = "meshca"
  metric_name         = "CrlFailures"
  statistic           = "Maximum"
  period              = min(var.sweep_every_minutes, 1440) * 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "root_rotation_stuck" {
  alarm_name          = "${var.name}-root-rotation-stuck"
  alarm_description   = "A root rotation has stood in one phase for over ${var.rotation_stuck_after_hours} h: see the sweep's blockers (meshca rotate-root status). Runbook: docs/alarms/root-rotation-stuck.md"
  namespace           = "meshca"
  metric_name         = "RotationPhaseAgeSeconds"
  statistic           = "Maximum"
  period              = 3600
  evaluation_periods  = 1
  threshold           = var.rotation_stuck_after_hours * 3600
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

resource "aws_cloudwatch_metric_alarm" "sweep_not_running" {
  alarm_name          = "${var.name}-sweep-not-running"
  alarm_description   = "The meshca expiry sweep missed three scheduled runs. Runbook: docs/alarms/sweep-not-running.md"
  namespace           = "AWS/Lambda"
  metric_name         = "Invocations"
  dimensions          = { FunctionName = aws_lambda_function.fn["expiry_sweep"].function_name }
  statistic           = "Sum"
  period              = min(3 * var.sweep_every_minutes, 1440) * 60
  evaluation_periods  = 1
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
}

# --- Dashboard -----------------------------------------------------------------------------------------

# Per-cluster detail comes from the functions' log lines through Logs Insights: as metrics it
# would be a billed series per cluster (docs/cost.md). The same queries as the CDK stack's.
locals {
  log_sources = join(" | ", [for k, _ in local.functions : "SOURCE '${aws_cloudwatch_log_group.fn[k].name}'"])
  per_cluster_query = join(" | ", [
    "filter ispresent(Cluster) and ispresent(Outcome)",
    "stats min(DaysLeft) as days_left, latest(Outcome) as outcome, sum(Renewals) as renewals, sum(Failures) as failures by Account, Region, Cluster",
    "sort days_left asc",
    "limit 100",
  ])
  failures_query = join(" | ", [
    "filter Failures > 0",
    "stats count(*) as failures, latest(Outcome) as outcome by Account, Region, Cluster",
    "sort failures desc",
    "limit 100",
  ])
}

resource "aws_cloudwatch_dashboard" "fleet" {
  dashboard_name = "${var.name}-fleet"
  dashboard_body = jsonencode({
    widgets = [
      { type = "log", x = 0, y = 0, width = 24, height = 8, properties = { title = "Days left per cluster, soonest first (account, region, cluster)", region = local.region, view = "table", query = "${local.log_sources} | ${local.per_cluster_query}" } },
      { type = "log", x = 0, y = 8, width = 24, height = 8, properties = { title = "Failed reconciles per cluster", region = local.region, view = "table", query = "${local.log_sources} | ${local.failures_query}" } },
      { type = "metric", x = 0, y = 16, width = 12, height = 6, properties = { title = "Renewals and failures in the fleet", region = local.region, view = "timeSeries", period = 3600, metrics = [["meshca", "Renewals", { stat = "Sum" }], ["meshca", "Failures", { stat = "Sum" }]] } },
      { type = "metric", x = 12, y = 16, width = 12, height = 6, properties = { title = "IssueCertificate calls throttled by PCA", region = local.region, view = "timeSeries", period = 3600, metrics = [["meshca", "IssueThrottled", { stat = "Sum" }]] } },
      { type = "metric", x = 0, y = 22, width = 12, height = 6, properties = { title = "Sweep: clusters checked, renewed, failed", region = local.region, view = "timeSeries", period = 3600, metrics = [["meshca", "ClustersChecked", { stat = "Maximum" }], ["meshca", "ClustersRenewed", { stat = "Sum" }], ["meshca", "ClustersFailed", { stat = "Sum" }]] } },
      { type = "metric", x = 12, y = 22, width = 12, height = 6, properties = { title = "Soonest days left in the fleet", region = local.region, view = "singleValue", period = 3600, metrics = [["meshca", "SoonestDaysLeft", { stat = "Minimum" }]] } },
    ]
  })
}
