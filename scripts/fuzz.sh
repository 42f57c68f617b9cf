#!/usr/bin/env bash
# Fuzzes load → resolve → verify → lower → render with cargo-fuzz (libFuzzer) for a
# bounded time per target, on the nightly toolchain. Not part of scripts/test.sh (too
# slow for CI); the proptests in tests/testsuite/properties.rs are the short version.
#
#   scripts/fuzz.sh [SECONDS per target, default 60]
#
# Targets (fuzz/fuzz_targets/): site_bytes (arbitrary bytes as site files, seeded with
# the reference site, the fixture and the bad-input corpus) and site_structured (random
# sites built by `arbitrary`, often valid). FUZZ_TARGETS picks targets, FUZZ_SANITIZER
# the sanitizer (default address). Crashes are saved under fuzz/artifacts/<target>/
# and make the script fail; the last lines print the executions per target.
set -euo pipefail

cd "$(dirname "$0")/.."
SECONDS_PER_TARGET=${1:-60}
TARGETS=${FUZZ_TARGETS:-"site_bytes site_structured"}
SANITIZER=${FUZZ_SANITIZER:-address}

rustup toolchain list | grep -q '^nightly' || { echo "error: the nightly toolchain is needed (rustup toolchain install nightly)" >&2; exit 2; }
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "== installing cargo-fuzz"
    cargo install cargo-fuzz --locked
fi

# Seeds for site_bytes: every site file we have, alone, and each site as one file.
seeds=fuzz/corpus/site_bytes
mkdir -p "$seeds"
n=0
while IFS= read -r -d '' f; do
    n=$((n + 1))
    cp "$f" "$seeds/seed-$n.toml"
done < <(find site tests/testsuite/fixtures tests/testsuite/invalid -name '*.toml' -print0 | sort -z)
find site -name '*.toml' -print0 | sort -z | xargs -0 cat >"$seeds/seed-reference-site.toml"
find tests/testsuite/fixtures/base-site -name '*.toml' -print0 | sort -z | xargs -0 cat >"$seeds/seed-base-site.toml"

log=$(mktemp -d)
trap 'rm -rf "$log"' EXIT
status=0
for t in $TARGETS; do
    echo "== fuzzing $t for ${SECONDS_PER_TARGET}s"
    mkdir -p "fuzz/corpus/$t"
    if ! cargo +nightly fuzz run --sanitizer "$SANITIZER" "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -print_final_stats=1 -timeout=20 -rss_limit_mb=4096 \
        >"$log/$t.txt" 2>&1; then
        status=1
        echo "!! $t found a crash:"
        grep -E "panicked|ERROR|SUMMARY|Test unit written|artifact_prefix" "$log/$t.txt" | head -20
    fi
    tail -n 3 "$log/$t.txt" | grep -v '^$' || true
    cp "$log/$t.txt" "fuzz/artifacts/$t.log" 2>/dev/null || { mkdir -p fuzz/artifacts && cp "$log/$t.txt" "fuzz/artifacts/$t.log"; }
done
echo "== summary"
for t in $TARGETS; do
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "fuzz/artifacts/$t.log" | tail -1)
    speed=$(sed -n 's/^stat::average_exec_per_sec: *//p' "fuzz/artifacts/$t.log" | tail -1)
    cov=$(grep -oE 'cov: [0-9]+' "fuzz/artifacts/$t.log" | tail -1)
    crashes=$(find "fuzz/artifacts/$t" -type f 2>/dev/null | wc -l)
    echo "$t: ${runs:-?} executions (${speed:-?}/s), ${cov:-cov: ?}, ${crashes} crash file(s), corpus $(find "fuzz/corpus/$t" -type f | wc -l) inputs"
done
exit "$status"
