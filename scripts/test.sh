#!/bin/sh
# The whole test suite, on a fresh machine: installs what the tests need, then runs
# every check. CI runs exactly this (see .ci/run); so should you before pushing.
set -eu

cd "$(dirname "$0")/.."

# Debian packages the tests use. Each artifact family adds the real tool that validates
# its output here (nginx, haproxy, promtool, ...).
DEBIAN_PACKAGES="shellcheck"

missing=""
for pkg in $DEBIAN_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "== installing Debian packages:$missing"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    # shellcheck disable=SC2086 # word splitting of the package list is intended
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing
fi

echo "== formatting"
cargo fmt --all -- --check

echo "== shell scripts"
shellcheck scripts/*.sh .ci/run

echo "== cargo test"
cargo test --locked --all-targets

echo "== medianest check on the reference site (release build)"
cargo run --locked --release --quiet -- check
