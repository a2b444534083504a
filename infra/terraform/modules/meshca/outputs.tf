output "role_arn" {
  description = "The role both functions run as: grant it access to each cluster (an EKS access entry mapping it to the Kubernetes group meshca, and the RBAC meshca access prints for the kinds)."
  value       = aws_iam_role.meshca.arn
}

output "grant_cluster_access" {
  description = "Run per cluster (authentication mode API or API_AND_CONFIG_MAP; the namespaces of the kinds must exist): exactly what meshca writes, derived by meshca access from the kinds."
  value       = "aws eks create-access-entry --cluster-name CLUSTER --principal-arn ${aws_iam_role.meshca.arn} --kubernetes-groups meshca && meshca access${join("", [for k in coalesce(var.kinds, ["istio-cacerts"]) : " --kind ${k}"])}${var.tsb_namespace == null ? "" : " --tsb-namespace ${var.tsb_namespace}"}${var.cert_manager_secret == null ? "" : " --cert-manager-secret ${var.cert_manager_secret}"} | kubectl --context CLUSTER apply -f -"
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

output "renewal_worker_function" {
  description = "Name of the renewal-worker function."
  value       = aws_lambda_function.fn["renewal_worker"].function_name
}

output "log_groups" {
  description = "Each function's log group (JSON lines: cluster, step, outcome), by function."
  value       = { for k, v in local.functions : v.name => aws_cloudwatch_log_group.fn[k].name }
}

output "dead_letter_queues" {
  description = "URL of each dead-letter queue: cluster-events and sweep (EventBridge targets), work (renewal-worker). docs/alarms/dead-letters.md says how to redrive them."
  value       = merge({ for k, q in aws_sqs_queue.dlq : k => q.url }, { work = aws_sqs_queue.work_dlq.url })
}

output "work_queue_url" {
  description = "The work queue renewal-worker consumes."
  value       = aws_sqs_queue.work.url
}
