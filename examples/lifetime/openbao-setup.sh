#!/usr/bin/env bash
# The OpenBao (or Vault) side of examples/lifetime/: a PKI engine with a root CA and the
# role shop-orders, the database engine on PostgreSQL with the role shop-orders, and
# the policy the operator's kubernetes-auth role needs (issue, renew and revoke only).
# Run with BAO_ADDR and BAO_TOKEN of an admin; PG_URL like postgresql://{{username}}:{{password}}@postgres.shop:5432/orders
set -euo pipefail
bao secrets enable pki
bao secrets tune -max-lease-ttl=87600h pki
bao write -field=certificate pki/root/generate/internal common_name="shop root CA" ttl=87600h >/dev/null
bao write pki/roles/shop-orders allowed_domains=shop.svc,shop.svc.cluster.local \
  allow_subdomains=true allow_bare_domains=true max_ttl=720h key_type=ec key_bits=256

bao secrets enable database
bao write database/config/orders plugin_name=postgresql-database-plugin \
  allowed_roles=shop-orders connection_url="$PG_URL" username=vault password="$PG_PASSWORD"
bao write database/roles/shop-orders db_name=orders default_ttl=1h max_ttl=24h \
  creation_statements="CREATE ROLE \"{{name}}\" WITH LOGIN PASSWORD '{{password}}' VALID UNTIL '{{expiration}}'; GRANT app TO \"{{name}}\";" \
  revocation_statements="DROP ROLE IF EXISTS \"{{name}}\";"

bao policy write appinfra-lifetime - <<'POLICY'
path "pki/issue/shop-*"        { capabilities = ["update"] }
path "pki/revoke"              { capabilities = ["update"] }
path "database/creds/shop-*"   { capabilities = ["read"] }
path "sys/leases/renew"        { capabilities = ["update"] }
path "sys/leases/revoke"       { capabilities = ["update"] }
POLICY
