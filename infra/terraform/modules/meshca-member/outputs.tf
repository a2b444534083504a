output "member_role_arn" {
  description = "Give each cluster of this account an access entry for this role (AmazonEKSEditPolicy scoped to istio-system)."
  value       = var.create_role ? aws_iam_role.member[0].arn : "arn:${local.partition}:iam::${local.account}:role/${var.role_name}"
}

output "grant_cluster_access" {
  description = "Run per cluster of this account (authentication mode API or API_AND_CONFIG_MAP; istio-system must exist for a namespace-scoped entry)."
  value       = "aws eks create-access-entry --cluster-name CLUSTER --principal-arn arn:${local.partition}:iam::${local.account}:role/${var.role_name} && aws eks associate-access-policy --cluster-name CLUSTER --principal-arn arn:${local.partition}:iam::${local.account}:role/${var.role_name} --policy-arn arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy --access-scope type=namespace,namespaces=istio-system"
}
