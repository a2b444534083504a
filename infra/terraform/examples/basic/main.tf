# meshca for the clusters of two regions, deployed in eu-west-1.
#
#   cargo lambda build --release --arm64 --output-format zip -p cluster-events -p expiry-sweep -p renewal-worker   (from the repository root)
#   terraform init && terraform apply -var ca_arn=arn:aws:acm-pca:eu-west-1:111122223333:certificate-authority/...

terraform {
  required_version = ">= 1.5"
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.40"
    }
  }
}

provider "aws" {
  region = "eu-west-1"
}

variable "ca_arn" {
  description = "ARN of the AWS Private CA (the company root or an issuing CA below it)."
  type        = string
}

module "meshca" {
  source             = "../../modules/meshca"
  ca_arn             = var.ca_arn
  regions            = ["eu-west-1", "us-east-1"]
  validity_days      = 90
  renew_before_days  = 30
  cluster_events_zip = "${path.root}/../../../../target/lambda/cluster-events/bootstrap.zip"
  expiry_sweep_zip   = "${path.root}/../../../../target/lambda/expiry-sweep/bootstrap.zip"
  renewal_worker_zip = "${path.root}/../../../../target/lambda/renewal-worker/bootstrap.zip"
}

output "role_arn" {
  description = "Grant this role access to each opted-in cluster."
  value       = module.meshca.role_arn
}

output "grant_cluster_access" {
  description = "The two commands to run per cluster."
  value       = module.meshca.grant_cluster_access
}

output "alarm_topic_arn" {
  description = "Subscribe to meshca's alarms."
  value       = module.meshca.alarm_topic_arn
}
