# The Vault policy meshca needs on the PKI mount "pki" (change the mount to yours): describe the
# issuer, sign cluster intermediates, find a certificate a crashed run signed, revoke, and read
# the issuer's CRL (CRL mode). Nothing else.
path "pki/issuer/+" {
  capabilities = ["read"]
}
path "pki/root/sign-intermediate" {
  capabilities = ["update"]
}
path "pki/issuer/+/sign-intermediate" {
  capabilities = ["update"]
}
path "pki/certs" {
  capabilities = ["list"]
}
path "pki/cert/+" {
  capabilities = ["read"]
}
path "pki/revoke" {
  capabilities = ["update"]
}
path "pki/issuer/+/crl" {
  capabilities = ["read"]
}
# Its own token: how long it lives, and renewing it.
path "auth/token/lookup-self" {
  capabilities = ["read"]
}
path "auth/token/renew-self" {
  capabilities = ["update"]
}
