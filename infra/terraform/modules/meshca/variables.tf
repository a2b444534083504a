variable "name" {
  description = "Prefix of every resource name (functions, role, bus, queues, alarms)."
  type        = string
  default     = "meshca"
  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{1,40}$", var.name))
    error_message = "name must be 1-40 letters, digits or hyphens."
  }
}

variable "ca_arn" {
  description = "ARN of the AWS Private CA that signs every cluster's Istio intermediate CA (or set vault instead)."
  type        = string
  default     = null
  validation {
    condition     = var.ca_arn == null || can(regex("^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:[0-9]{12}:certificate-authority/[0-9a-f-]+$", var.ca_arn))
    error_message = "ca_arn must be an acm-pca certificate-authority ARN."
  }
}

variable "xcp_identities" {
  description = "Issue TSB's XCP identities (xcp-central, mpc, xcp-edge) with EndEntityCertificate/V1 too; false keeps the role to the PathLen0 template."
  type        = bool
  default     = false
}

variable "xcp_ca_arn" {
  description = "The Private CA that signs the XCP identities, when not ca_arn (needs xcp_identities)."
  type        = string
  default     = null
  validation {
    condition     = var.xcp_ca_arn == null || can(regex("^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:[0-9]{12}:certificate-authority/[0-9a-f-]+$", var.xcp_ca_arn))
    error_message = "xcp_ca_arn must be an acm-pca certificate-authority ARN."
  }
}

variable "rotation_ca_arns" {
  description = "Private CAs a root rotation moves to (meshca rotate-root start --to ARN) or still retires: the same PathLen0-only grant as ca_arn. Add the new CA before starting; remove the old one once the rotation is done and ca_arn names the new CA."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for a in var.rotation_ca_arns : can(regex("^arn:aws[a-z-]*:acm-pca:[a-z0-9-]+:[0-9]{12}:certificate-authority/[0-9a-f-]+$", a))])
    error_message = "rotation_ca_arns must be acm-pca certificate-authority ARNs."
  }
}

variable "rotation_stuck_after_hours" {
  description = "Alarm when a root rotation stands in one phase longer than this many hours (default 72: the 26-h soak twice, plus a day)."
  type        = number
  default     = 72
  validation {
    condition     = var.rotation_stuck_after_hours >= 1
    error_message = "rotation_stuck_after_hours must be at least 1."
  }
}

variable "vault" {
  description = "Vault / OpenBao PKI as the authority instead of ca_arn: addr, mount (default pki), optional issuer, namespace, ca_cert_pem, auth_mount, and either role_id + secret_id_arn (AppRole; the secret id in Secrets Manager) or aws_role (AWS IAM login, optional aws_sts_region and aws_server_id). The functions then get no Private CA permission."
  type = object({
    addr           = string
    mount          = optional(string, "pki")
    issuer         = optional(string)
    namespace      = optional(string)
    ca_cert_pem    = optional(string)
    role_id        = optional(string)
    secret_id_arn  = optional(string)
    aws_role       = optional(string)
    auth_mount     = optional(string)
    aws_sts_region = optional(string)
    aws_server_id  = optional(string)
  })
  default = null
  validation {
    condition = var.vault == null || (can(regex("^https?://", var.vault.addr)) && (
      (var.vault.aws_role == null && var.vault.role_id != null && var.vault.secret_id_arn != null) ||
      (var.vault.aws_role != null && var.vault.role_id == null && var.vault.secret_id_arn == null)
    ))
    error_message = "vault needs an http(s) addr and either role_id + secret_id_arn (AppRole) or aws_role (AWS IAM login)."
  }
  validation {
    condition     = var.vault == null || try(var.vault.secret_id_arn == null || can(regex("^arn:aws[a-z-]*:secretsmanager:[a-z0-9-]+:[0-9]{12}:secret:.+$", var.vault.secret_id_arn)), false)
    error_message = "vault.secret_id_arn must be a Secrets Manager secret ARN."
  }
}

variable "template_arn" {
  description = "PCA template for the intermediates; null means SubordinateCACertificate_PathLen0/V1 in the CA's partition."
  type        = string
  default     = null
  validation {
    condition     = var.template_arn == null || can(regex("^arn:aws[a-z-]*:acm-pca:::template/SubordinateCACertificate_PathLen0/V1$", var.template_arn))
    error_message = "template_arn must be the SubordinateCACertificate_PathLen0/V1 template: istiod's CA may not sign further CAs."
  }
}

variable "regions" {
  description = "Regions whose EKS clusters meshca manages; empty means the provider's region."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for r in var.regions : can(regex("^[a-z]{2}(-[a-z]+)+-[0-9]$", r))])
    error_message = "regions must be region names such as eu-west-1."
  }
}

variable "ca_role_arn" {
  description = "A role in the CA's account the functions assume to call Private CA (a CA in another account not shared through AWS RAM); null: the functions' own role."
  type        = string
  default     = null
  validation {
    condition     = var.ca_role_arn == null || can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.ca_role_arn))
    error_message = "ca_role_arn must be an IAM role ARN."
  }
}

variable "ca_external_id" {
  description = "The external id the ca_role_arn role's trust policy requires, if any."
  type        = string
  default     = null
}

variable "member_accounts" {
  description = "Member accounts whose EKS clusters meshca manages through a role it assumes there (the meshca-member module): account id, its regions (default: regions), the role's name (default meshca-member) and the external id its trust policy requires, if any."
  type = list(object({
    account     = string
    regions     = optional(list(string))
    role_name   = optional(string, "meshca-member")
    external_id = optional(string)
  }))
  default = []
  validation {
    condition     = alltrue([for m in var.member_accounts : can(regex("^[0-9]{12}$", m.account))]) && length(distinct([for m in var.member_accounts : m.account])) == length(var.member_accounts)
    error_message = "member_accounts: each account is a 12-digit id, listed once."
  }
  validation {
    condition     = alltrue([for m in var.member_accounts : can(regex("^[\\w+=,.@-]{1,64}$", m.role_name))])
    error_message = "member_accounts: role_name must be an IAM role name."
  }
}

variable "security_account" {
  description = "An account whose `meshca Revoke Requested` events are honoured besides this one's (a security team's); the default bus accepts exactly those events from it. Never a member account."
  type        = string
  default     = null
  validation {
    condition     = var.security_account == null || can(regex("^[0-9]{12}$", var.security_account))
    error_message = "security_account must be a 12-digit AWS account id."
  }
}

variable "crl_mode" {
  description = "CRL mode: after each sweep, write the fleet's CRLs (the authority's and every cluster intermediate's own) into every istio-layout cluster's cacerts as ca-crl.pem, so a revoked cluster is refused by every other cluster's proxies (Istio 1.27+); adds the crl-days-left and crl-failures alarms. One-way once delivered: istiod keeps a CRL it has seen. See docs/compromise.md. Sets MESHCA_CRL_MODE."
  type        = bool
  default     = false
}

variable "crl_buckets" {
  description = "The S3 buckets your Private CAs publish CRLs to (their CrlConfiguration): in CRL mode the role may read their objects (s3:GetObject) and nothing else of S3. Required with crl_mode and a Private CA. Sets MESHCA_CRL_BUCKETS."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for b in var.crl_buckets : can(regex("^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", b))])
    error_message = "crl_buckets must be S3 bucket names."
  }
}

variable "root_crls" {
  description = "CRL mode with a root kept offline (or outside AWS): where its owner puts its CRL, as s3://BUCKET/KEY, each in a bucket of crl_buckets. Its lapse counts in the crl-days-left alarm: re-sign and upload it before. Sets MESHCA_ROOT_CRLS."
  type        = list(string)
  default     = []
  validation {
    condition     = alltrue([for u in var.root_crls : can(regex("^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]/.+$", u))])
    error_message = "root_crls must be s3://BUCKET/KEY locations."
  }
}

variable "organization_id" {
  description = "Accept forwarded EKS events from every account of this AWS Organizations organisation instead of the member accounts only (the functions still act for listed accounts only)."
  type        = string
  default     = null
  validation {
    condition     = var.organization_id == null || can(regex("^o-[a-z0-9]{10,32}$", var.organization_id))
    error_message = "organization_id must be an AWS Organizations id (o-...)."
  }
}

variable "tag_key" {
  description = "Key of the opt-in tag on EKS clusters. Sets MESHCA_TAG_KEY."
  type        = string
  default     = "meshca.io/enabled"
}

variable "tag_value" {
  description = "Value of the opt-in tag on EKS clusters. Sets MESHCA_TAG_VALUE."
  type        = string
  default     = "true"
}

variable "validity_days" {
  description = "Lifetime of each cluster intermediate, in days."
  type        = number
  default     = 365
  validation {
    condition     = var.validity_days >= 2 && floor(var.validity_days) == var.validity_days
    error_message = "validity_days must be a whole number of at least 2."
  }
}

variable "renew_before_days" {
  description = "Renew when fewer days are left; null means a third of the lifetime."
  type        = number
  default     = null
  validation {
    condition     = var.renew_before_days == null || try(var.renew_before_days >= 1, false)
    error_message = "renew_before_days must be at least 1 (and below validity_days)."
  }
}

variable "sweep_every_minutes" {
  description = "How often the expiry sweep runs; the sweep alarm fires after three missed runs."
  type        = number
  default     = 60
  validation {
    condition     = var.sweep_every_minutes >= 5 && var.sweep_every_minutes <= 1440
    error_message = "sweep_every_minutes must be between 5 and 1440."
  }
}

variable "alarm_days_left" {
  description = "Alarm when the soonest-expiring cluster intermediate has fewer days left."
  type        = number
  default     = 7
}

variable "log_retention_days" {
  description = "Retention of the functions' log groups."
  type        = number
  default     = 365
  validation {
    condition     = contains([1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be a value CloudWatch Logs accepts (1, 3, 5, 7, 14, 30, ..., 365, ...)."
  }
}

variable "cluster_events_zip" {
  description = "bootstrap.zip of cluster-events, target/lambda/cluster-events/bootstrap.zip after: cargo lambda build --release --arm64 --output-format zip -p cluster-events -p expiry-sweep -p renewal-worker (from the repository root)."
  type        = string
}

variable "renewal_worker_zip" {
  description = "bootstrap.zip of renewal-worker, target/lambda/renewal-worker/bootstrap.zip after: cargo lambda build --release --arm64 --output-format zip -p cluster-events -p expiry-sweep -p renewal-worker (from the repository root)."
  type        = string
}

variable "expiry_sweep_zip" {
  description = "bootstrap.zip of expiry-sweep, target/lambda/expiry-sweep/bootstrap.zip after: cargo lambda build --release --arm64 --output-format zip -p cluster-events -p expiry-sweep -p renewal-worker (from the repository root)."
  type        = string
}

variable "verify_every_hours" {
  description = "How often the sweep reads each healthy cluster's secrets back and repairs drift. Between those turns a healthy cluster costs no call: escrow's summary keeps it."
  type        = number
  default     = 24
  validation {
    condition     = var.verify_every_hours >= 1
    error_message = "verify_every_hours must be at least 1."
  }
}

variable "worker_concurrency" {
  description = "The work queue's MaximumConcurrency: at most this many renewal-worker instances issue at once, each at 1/N of the issue rate."
  type        = number
  default     = 4
  validation {
    condition     = var.worker_concurrency >= 2 && var.worker_concurrency <= 1000 && floor(var.worker_concurrency) == var.worker_concurrency
    error_message = "worker_concurrency must be an integer in 2..1000 (SQS MaximumConcurrency)."
  }
}

variable "key_algorithm" {
  description = "Key of each intermediate. Default (null): ec-p256. Sets MESHCA_KEY_ALGORITHM."
  type        = string
  default     = null
  validation {
    condition     = var.key_algorithm == null || contains(["ec-p256", "ec-p384", "rsa-2048", "rsa-3072", "rsa-4096"], coalesce(var.key_algorithm, "-"))
    error_message = "key_algorithm must be one of ec-p256, ec-p384, rsa-2048, rsa-3072, rsa-4096."
  }
}

variable "recovery_window_days" {
  description = "How long a deleted cluster's escrow can be restored (7-30 days). Default (null): 30. Sets MESHCA_RECOVERY_WINDOW_DAYS."
  type        = number
  default     = null
  validation {
    condition     = var.recovery_window_days == null || try(var.recovery_window_days >= 0, false)
    error_message = "recovery_window_days must be a number of at least 0."
  }
}

variable "restart_istiod" {
  description = "Restart istiod when Istio needs it (auto), always or never. Default (null): auto. Sets MESHCA_RESTART_ISTIOD."
  type        = string
  default     = null
  validation {
    condition     = var.restart_istiod == null || contains(["auto", "always", "never"], coalesce(var.restart_istiod, "-"))
    error_message = "restart_istiod must be one of auto, always, never."
  }
}

variable "adopt" {
  description = "Take over a cacerts meshca did not create (clusters migrating from the manual runbook); otherwise such clusters are skipped with the reason. Default (null): false. Sets MESHCA_ADOPT."
  type        = bool
  default     = null
}

variable "dry_run" {
  description = "Decide and report, change nothing. Default (null): false. Sets MESHCA_DRY_RUN."
  type        = bool
  default     = null
}

variable "active_poll_seconds" {
  description = "How often a new cluster is polled for ACTIVE. Default (null): 15. Sets MESHCA_ACTIVE_POLL_SECONDS."
  type        = number
  default     = null
  validation {
    condition     = var.active_poll_seconds == null || try(var.active_poll_seconds >= 0, false)
    error_message = "active_poll_seconds must be a number of at least 0."
  }
}

variable "issue_rate" {
  description = "IssueCertificate attempts per second for the deployment, retries included (Private CA's default quota is 25); each renewal-worker takes its share. Default (null): 20. Sets MESHCA_ISSUE_RATE."
  type        = number
  default     = null
  validation {
    condition     = var.issue_rate == null || try(var.issue_rate >= 0, false)
    error_message = "issue_rate must be a number of at least 0."
  }
}

variable "sweep_concurrency" {
  description = "Clusters a sweep works on at once (1-512). Default (null): 32. Sets MESHCA_SWEEP_CONCURRENCY."
  type        = number
  default     = null
  validation {
    condition     = var.sweep_concurrency == null || try(var.sweep_concurrency >= 0, false)
    error_message = "sweep_concurrency must be a number of at least 0."
  }
}

variable "fanout_threshold" {
  description = "Above this many clusters needing a look, the sweep hands them to renewal-worker through the work queue. Default (null): 1000. Sets MESHCA_FANOUT_THRESHOLD."
  type        = number
  default     = null
  validation {
    condition     = var.fanout_threshold == null || try(var.fanout_threshold >= 0, false)
    error_message = "fanout_threshold must be a number of at least 0."
  }
}

variable "kinds" {
  description = "Kinds every opted-in cluster gets, unless its kinds tag names them. Default (null): istio-cacerts. Sets MESHCA_KINDS."
  type        = list(string)
  default     = null
  validation {
    condition     = var.kinds == null || try(length(var.kinds) > 0, false)
    error_message = "kinds must name at least one item (or be null)."
  }
}

variable "kinds_tag" {
  description = "Cluster tag naming its kinds, separated by spaces or + (tag values allow no comma). Default (null): meshca.io/kinds. Sets MESHCA_KINDS_TAG."
  type        = string
  default     = null
}

variable "tsb_role_tag" {
  description = "A cluster tag value management-plane adds xcp-central and mpc. Default (null): meshca.io/tsb-role. Sets MESHCA_TSB_ROLE_TAG."
  type        = string
  default     = null
}

variable "tsb_name_tag" {
  description = "Cluster tag holding the cluster's name in TSB (xcp-edge's SPIFFE id; default the cluster name). Default (null): meshca.io/tsb-name. Sets MESHCA_TSB_NAME_TAG."
  type        = string
  default     = null
}

variable "tsb_namespace" {
  description = "Namespace of xcp-central-cert and mpc-certs. Default (null): tsb. Sets MESHCA_TSB_NAMESPACE."
  type        = string
  default     = null
}

variable "tsb_central_addresses" {
  description = "DNS names or IP addresses xcp-central must carry (JWT mode). Default (null): unset. Sets MESHCA_TSB_CENTRAL_ADDRESSES."
  type        = list(string)
  default     = null
  validation {
    condition     = var.tsb_central_addresses == null || try(length(var.tsb_central_addresses) > 0, false)
    error_message = "tsb_central_addresses must name at least one item (or be null)."
  }
}

variable "cert_manager_secret" {
  description = "Where cert-manager-ca lands, NAMESPACE/NAME. Default (null): cert-manager/istio-ca. Sets MESHCA_CERT_MANAGER_SECRET."
  type        = string
  default     = null
}

variable "secret_prefix" {
  description = "Name prefix of the escrow secrets; null means meshca/<region> (members meshca/<account>/<region>). The role may write under the prefix only. Sets MESHCA_SECRET_PREFIX."
  type        = string
  default     = null
  validation {
    condition     = var.secret_prefix == null || can(regex("^[A-Za-z0-9_+=.@-]+(/[A-Za-z0-9_+=.@-]+)*/?$", var.secret_prefix))
    error_message = "secret_prefix must be a Secrets Manager name prefix (letters, digits, / _ + = . @ -)."
  }
}
