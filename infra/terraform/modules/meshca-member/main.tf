# What a member account needs so the central meshca can serve its clusters: the role meshca
# assumes (EKS read calls only, trusting the central function role alone) and a rule forwarding the
# account's EKS CreateCluster/DeleteCluster to the central default bus. The same as the CDK
# MeshcaMemberStack. One instance per account (its provider); create_role = false in the
# instances of further regions of the same account (IAM is global).

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}

locals {
  partition = data.aws_partition.current.partition
  account   = data.aws_caller_identity.current.account_id
}

data "aws_iam_policy_document" "trust" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "AWS"
      identifiers = [var.central_role_arn]
    }
    dynamic "condition" {
      for_each = var.external_id == null ? [] : [var.external_id]
      content {
        test     = "StringEquals"
        variable = "sts:ExternalId"
        values   = [condition.value]
      }
    }
  }
}

resource "aws_iam_role" "member" {
  count                = var.create_role ? 1 : 0
  name                 = var.role_name
  description          = "meshca (central account): list and describe EKS clusters; each cluster grants this role the RBAC of meshca access"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = 3600
}

data "aws_iam_policy_document" "member" {
  # checkov:skip=CKV_AWS_356:eks:ListClusters and tag:GetResources have no resource type; they are the only actions granted on "*".
  statement {
    sid       = "ListClusters"
    actions   = ["eks:ListClusters", "tag:GetResources"]
    resources = ["*"]
  }
  statement {
    sid       = "DescribeClusters"
    actions   = ["eks:DescribeCluster"]
    resources = ["arn:${local.partition}:eks:*:${local.account}:cluster/*"]
  }
}

resource "aws_iam_role_policy" "member" {
  count  = var.create_role ? 1 : 0
  name   = "meshca-member"
  role   = aws_iam_role.member[0].id
  policy = data.aws_iam_policy_document.member.json
}

# --- EKS events forwarded to the central bus --------------------------------------------------------

resource "aws_cloudwatch_event_rule" "forward" {
  name        = "${var.name}-forward-eks-create-delete"
  description = "meshca: this account's EKS CreateCluster/DeleteCluster, forwarded to the central account"
  event_pattern = jsonencode({
    source        = ["aws.eks"]
    "detail-type" = ["AWS API Call via CloudTrail"]
    detail        = { eventSource = ["eks.amazonaws.com"], eventName = ["CreateCluster", "DeleteCluster"] }
  })
}

data "aws_iam_policy_document" "events_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["events.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "forward" {
  name_prefix        = "${var.name}-forward-"
  description        = "EventBridge: put this account's EKS events onto meshca's central bus"
  assume_role_policy = data.aws_iam_policy_document.events_assume.json
}

data "aws_iam_policy_document" "forward" {
  statement {
    sid       = "PutOntoTheCentralBusOnly"
    actions   = ["events:PutEvents"]
    resources = [var.central_bus_arn]
  }
}

resource "aws_iam_role_policy" "forward" {
  name   = "forward"
  role   = aws_iam_role.forward.id
  policy = data.aws_iam_policy_document.forward.json
}

resource "aws_cloudwatch_event_target" "forward" {
  rule     = aws_cloudwatch_event_rule.forward.name
  arn      = var.central_bus_arn
  role_arn = aws_iam_role.forward.arn
}
