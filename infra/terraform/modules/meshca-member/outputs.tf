output "member_role_arn" {
  description = "Give each cluster of this account an access entry for this role (Kubernetes group meshca) and the RBAC meshca access prints for its kinds."
  value       = var.create_role ? aws_iam_role.member[0].arn : "arn:${local.partition}:iam::${local.account}:role/${var.role_name}"
}

output "grant_cluster_access" {
  description = "Run per cluster of this account (authentication mode API or API_AND_CONFIG_MAP; the namespaces of the kinds must exist); add --kind for each kind the cluster gets."
  value       = "aws eks create-access-entry --cluster-name CLUSTER --principal-arn arn:${local.partition}:iam::${local.account}:role/${var.role_name} --kubernetes-groups meshca && meshca access --kind istio-cacerts | kubectl --context CLUSTER apply -f -"
}
