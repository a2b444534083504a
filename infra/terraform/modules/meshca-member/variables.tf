variable "central_role_arn" {
  description = "The central meshca functions' role (the meshca module's role_arn output): the only principal the member role trusts."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:role/.+$", var.central_role_arn))
    error_message = "central_role_arn must be an IAM role ARN."
  }
}

variable "central_bus_arn" {
  description = "The central account's default event bus (the meshca module's default_bus_arn output)."
  type        = string
  validation {
    condition     = can(regex("^arn:aws[a-z-]*:events:[a-z0-9-]+:[0-9]{12}:event-bus/.+$", var.central_bus_arn))
    error_message = "central_bus_arn must be an EventBridge event bus ARN."
  }
}

variable "role_name" {
  description = "Name of the role meshca assumes here (the meshca module's member_accounts[].role_name)."
  type        = string
  default     = "meshca-member"
  validation {
    condition     = can(regex("^[\\w+=,.@-]{1,64}$", var.role_name))
    error_message = "role_name must be an IAM role name."
  }
}

variable "external_id" {
  description = "External id the central meshca must present in AssumeRole (the meshca module's member_accounts[].external_id); null: none."
  type        = string
  default     = null
}

variable "create_role" {
  description = "Create the member role in this instance; false in the instances for further regions of the same account (IAM is global)."
  type        = bool
  default     = true
}

variable "name" {
  description = "Prefix of the forwarding rule and its role."
  type        = string
  default     = "meshca"
  validation {
    condition     = can(regex("^[a-zA-Z0-9-]{1,32}$", var.name))
    error_message = "name must be 1-32 letters, digits or hyphens."
  }
}
