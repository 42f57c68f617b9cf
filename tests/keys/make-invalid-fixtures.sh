#!/bin/bash
# Makes the invalid fixtures of the secrets checks (ciphertexts are random: made once, committed).
set -euo pipefail
cd "$(dirname "$0")/../.."; R0=$PWD
B=$R0/target/debug/medianest
INV=$R0/tests/testsuite/invalid
BASE=$R0/tests/testsuite/fixtures/base-site
K=$(mktemp -d)
ssh-keygen -q -t ed25519 -N '' -C 'app1 TEST-ONLY' -f "$K"/app1
ssh-keygen -q -t ed25519 -N '' -C 'app1 new TEST-ONLY' -f "$K"/app1b
ssh-keygen -q -t ed25519 -N '' -C 'db1 TEST-ONLY' -f "$K"/db1
ssh-keygen -q -t ed25519 -N '' -C 'db2 TEST-ONLY' -f "$K"/db2
age-keygen -o "$K"/rec 2>/dev/null
R=$(age-keygen -y "$K"/rec)
K1=$(cut -d' ' -f1-2 "$K"/app1.pub); K2=$(cut -d' ' -f1-2 "$K"/app1b.pub)
KD1=$(cut -d' ' -f1-2 "$K"/db1.pub); KD2=$(cut -d' ' -f1-2 "$K"/db2.pub)
# db1 and db2 always have their keys: their backup job reads the backup secrets (and
# app1, the MinIO host, reads minio_tls_ca_key).
db_keys() { sed -e "s|^\[hosts.db1\]$|[hosts.db1]\nssh_host_key = \"$KD1\"|" -e "s|^\[hosts.db2\]$|[hosts.db2]\nssh_host_key = \"$KD2\"|"; }
hosts_with() { sed "s|^\[hosts.app1\]$|[hosts.app1]\nssh_host_key = \"$1\"|" "$BASE"/hosts.toml | db_keys; }
BACKUP="backup_repository_password backup_s3_access_key backup_s3_secret_key minio_tls_ca_key"
backup_secrets() { for n in $BACKUP; do cp "$T"/site/secrets/$n.age "$1"/secrets/; done; }
mk() { # mk <case>: a temp repo = base + [secrets] + app1 key K1
  T=$(mktemp -d); mkdir -p "$T"/site; cp "$BASE"/*.toml "$T"/site/
  hosts_with "$K1" > "$T"/site/hosts.toml
  printf '[secrets]\nrecovery = ["%s"]\n' "$R" > "$T"/site/zz-case.toml
  for n in $BACKUP; do printf 'x' | $B -C "$T" secrets set "$n" -q; done
  echo "$T"
}
case_dir() { rm -rf "${INV:?}/$1"; mkdir -p "$INV/$1/site/secrets"; echo "$INV/$1/site"; }
ZZ="# The site delivers its secrets: recovery key TEST-ONLY.
[secrets]
recovery = [\"$R\"]"

T=$(mk); printf 'x' | $B -C "$T" secrets set db_password -q

# secret-missing: the site delivers secrets, db_password has no ciphertext.
D=$(case_dir secret-missing--no-ciphertext); backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; echo "$ZZ" > "$D"/zz-case.toml

# secret-no-host-key: app1 needs db_password and declares no key (the file is for K1).
D=$(case_dir secret-no-host-key--host-needs-secrets); echo "$ZZ" > "$D"/zz-case.toml
db_keys < "$BASE"/hosts.toml > "$D"/hosts.toml
cp "$T"/site/secrets/db_password.age "$D"/secrets/; backup_secrets "$D"

# secret-recipients: app1's key changed since the file was written.
D=$(case_dir secret-recipients--host-key-changed); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "$K2" > "$D"/hosts.toml; cp "$T"/site/secrets/db_password.age "$D"/secrets/

# secret-recipients: written with the age CLI, no recipients list.
D=$(case_dir secret-recipients--not-written-by-medianest); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; printf 'x' | age -r "$K1" -r "$R" -o "$D"/secrets/db_password.age

# secret-unused: orphan.age names no service.
T2=$(mk); sed -i 's/secrets = \["db_password"\]/secrets = ["db_password", "orphan"]/' "$T2"/site/services.toml
printf 'x' | $B -C "$T2" secrets set orphan -q
D=$(case_dir secret-unused--no-service-names-it); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; cp "$T"/site/secrets/db_password.age "$D"/secrets/; cp "$T2"/site/secrets/orphan.age "$D"/secrets/

# secret-swapped: db_password.age holds orphan.
D=$(case_dir secret-swapped--moved-between-names); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; cp "$T2"/site/secrets/orphan.age "$D"/secrets/db_password.age

# secret-plaintext: a value committed next to the ciphertexts.
D=$(case_dir secret-plaintext--a-value-beside-the-ciphertexts); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; cp "$T"/site/secrets/db_password.age "$D"/secrets/; printf 'correct horse battery staple\n' > "$D"/secrets/db_password.txt

# bad-value: a container that reads delivered secrets runs as a user named, not numbered.
D=$(case_dir bad-value--secrets-container-user-by-name); backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; cp "$T"/site/secrets/db_password.age "$D"/secrets/
sed 's/^user = "1001:1001"$/user = "www-data"/' "$BASE"/services.toml > "$D"/services.toml
echo "$ZZ" > "$D"/zz-case.toml

# bad-value: an RSA host key; a recovery key that is not one.
D=$(case_dir bad-value--ssh-host-key-rsa); echo "$ZZ" > "$D"/zz-case.toml; backup_secrets "$D"
hosts_with "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 app1" > "$D"/hosts.toml
# bad-value: the recovery key mistyped, in a site otherwise complete (its files are for
# the intended key R): that error alone, no cascade of "not encrypted to exactly".
D=$(case_dir bad-value--secrets-recovery-not-a-key); backup_secrets "$D"
hosts_with "$K1" > "$D"/hosts.toml; cp "$T"/site/secrets/db_password.age "$D"/secrets/
printf '[secrets]\nrecovery = ["operator@laptop"]\n' > "$D"/zz-case.toml
echo "done"
