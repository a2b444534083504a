# meshca in a central account, serving its own clusters and those of two member accounts, each in
# two regions. One provider per account and region; the member module once per account and region
# (create_role only in the first region: IAM is global).
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

variable "ca_arn" {
  description = "ARN of the AWS Private CA (in this account, or shared with it through AWS RAM with the PathLen0 subordinate permission)."
  type        = string
}

variable "members" {
  description = "Member accounts and the role Terraform assumes in each to deploy there."
  type        = map(object({ deploy_role_arn = string }))
  default = {
    "222233334444" = { deploy_role_arn = "arn:aws:iam::222233334444:role/OrganizationAccountAccessRole" }
    "333344445555" = { deploy_role_arn = "arn:aws:iam::333344445555:role/OrganizationAccountAccessRole" }
  }
}

provider "aws" {
  region = "eu-west-1"
}

module "meshca" {
  source             = "../../modules/meshca"
  ca_arn             = var.ca_arn
  regions            = ["eu-west-1", "us-east-1"]
  member_accounts    = [for id, _ in var.members : { account = id, external_id = "meshca-${id}" }]
  cluster_events_zip = "${path.root}/../../../../target/lambda/cluster-events/bootstrap.zip"
  expiry_sweep_zip   = "${path.root}/../../../../target/lambda/expiry-sweep/bootstrap.zip"
  renewal_worker_zip = "${path.root}/../../../../target/lambda/renewal-worker/bootstrap.zip"
}

# Providers cannot be chosen by for_each: one block per account and region.
provider "aws" {
  alias  = "a_eu"
  region = "eu-west-1"
  assume_role {
    role_arn = var.members["222233334444"].deploy_role_arn
  }
}

provider "aws" {
  alias  = "a_us"
  region = "us-east-1"
  assume_role {
    role_arn = var.members["222233334444"].deploy_role_arn
  }
}

provider "aws" {
  alias  = "b_eu"
  region = "eu-west-1"
  assume_role {
    role_arn = var.members["333344445555"].deploy_role_arn
  }
}

provider "aws" {
  alias  = "b_us"
  region = "us-east-1"
  assume_role {
    role_arn = var.members["333344445555"].deploy_role_arn
  }
}

module "member_a_eu" {
  source           = "../../modules/meshca-member"
  providers        = { aws = aws.a_eu }
  central_role_arn = module.meshca.role_arn
  central_bus_arn  = module.meshca.default_bus_arn
  external_id      = "meshca-222233334444"
}

module "member_a_us" {
  source           = "../../modules/meshca-member"
  providers        = { aws = aws.a_us }
  central_role_arn = module.meshca.role_arn
  central_bus_arn  = module.meshca.default_bus_arn
  create_role      = false
}

module "member_b_eu" {
  source           = "../../modules/meshca-member"
  providers        = { aws = aws.b_eu }
  central_role_arn = module.meshca.role_arn
  central_bus_arn  = module.meshca.default_bus_arn
  external_id      = "meshca-333344445555"
}

module "member_b_us" {
  source           = "../../modules/meshca-member"
  providers        = { aws = aws.b_us }
  central_role_arn = module.meshca.role_arn
  central_bus_arn  = module.meshca.default_bus_arn
  create_role      = false
}

output "member_role_arns" {
  description = "Give each member cluster an access entry for its account's member role."
  value       = [module.member_a_eu.member_role_arn, module.member_b_eu.member_role_arn]
}
