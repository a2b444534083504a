#!/usr/bin/env bash
# The manual runbook meshca replaces, for one cluster, as an operator would script it:
# key and CSR with openssl, a PathLen0 subordinate from AWS Private CA with the aws CLI, the CA
# certificate for the root, then kubectl creates istio-system/cacerts and restarts istiod.
# Usage: runbook.sh CLUSTER CA_ARN KUBECONFIG WORKDIR
set -euo pipefail
cluster=$1
ca=$2
export KUBECONFIG=$3
dir=$4
mkdir -p "$dir" && cd "$dir"

openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -keyout ca-key.pem \
  -subj "/O=meshca/CN=$cluster istio intermediate CA" -out ca.csr 2>/dev/null
arn=$(aws acm-pca issue-certificate --certificate-authority-arn "$ca" --csr fileb://ca.csr \
  --signing-algorithm SHA256WITHECDSA --validity Value=30,Type=DAYS \
  --template-arn arn:aws:acm-pca:::template/SubordinateCACertificate_PathLen0/V1 \
  --idempotency-token "$cluster" --query CertificateArn --output text)
aws acm-pca wait certificate-issued --certificate-authority-arn "$ca" --certificate-arn "$arn"
aws acm-pca get-certificate --certificate-authority-arn "$ca" --certificate-arn "$arn" \
  --query Certificate --output text >ca-cert.pem
aws acm-pca get-certificate --certificate-authority-arn "$ca" --certificate-arn "$arn" \
  --query CertificateChain --output text >chain.pem
cat ca-cert.pem chain.pem >cert-chain.pem
aws acm-pca get-certificate-authority-certificate --certificate-authority-arn "$ca" \
  --query CertificateChain --output text >root-cert.pem
kubectl create secret generic cacerts -n istio-system --from-file=ca-cert.pem --from-file=ca-key.pem \
  --from-file=cert-chain.pem --from-file=root-cert.pem --dry-run=client -o json |
  kubectl create --validate=false -f - >/dev/null
kubectl -n istio-system rollout restart deployment/istiod >/dev/null
