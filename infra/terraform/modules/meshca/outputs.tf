output "role_arn" {
  description = "The role both functions run as: grant it access to each cluster (an EKS access entry with AmazonEKSEditPolicy scoped to namespace istio-system)."
  value       = aws_iam_role.meshca.arn
}

output "grant_cluster_access" {
  description = "Run per cluster (authentication mode API or API_AND_CONFIG_MAP; istio-system must exist for a namespace-scoped entry)."
  value       = "aws eks create-access-entry --cluster-name CLUSTER --principal-arn ${aws_iam_role.meshca.arn} && aws eks associate-access-policy --cluster-name CLUSTER --principal-arn ${aws_iam_role.meshca.arn} --policy-arn arn:${local.partition}:eks::aws:cluster-access-policy/AmazonEKSEditPolicy --access-scope type=namespace,namespaces=istio-system"
}

output "cluster_events_function" {
  description = "Name of the cluster-events function."
  value       = aws_lambda_function.fn["cluster_events"].function_name
}

output "expiry_sweep_function" {
  description = "Name of the expiry-sweep function."
  value       = aws_lambda_function.fn["expiry_sweep"].function_name
}

output "reconcile_bus_name" {
  description = "The bus that carries meshca Reconcile Requested events."
  value       = aws_cloudwatch_event_bus.reconcile.name
}

output "key_arn" {
  description = "KMS key of the escrow secrets (in this region), logs, dead letters and alarm topic."
  value       = aws_kms_key.meshca.arn
}

output "alarm_topic_arn" {
  description = "Subscribe to be told when meshca needs a human."
  value       = aws_sns_topic.alarms.arn
}

output "default_bus_arn" {
  description = "The default event bus member accounts forward their EKS events to (the meshca-member module's central_bus_arn)."
  value       = "arn:${local.partition}:events:${local.region}:${local.account}:event-bus/default"
}

output "dashboard_name" {
  description = "CloudWatch dashboard of the fleet: days left per account, region and cluster, renewals, failures, throttles."
  value       = aws_cloudwatch_dashboard.fleet.dashboard_name
}
