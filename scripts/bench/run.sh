#!/usr/bin/env bash
# Benchmarks of medianest against the physical limit and a Jinja2 peer (BENCHMARKS.md).
#
# For the reference site and synthetic sites (examples/synth_site.rs), in one run:
#   - hyperfine, side by side: cold build, `cp -r` and `sha256sum` of the same output
#     tree (same filesystem), no-op rebuild, check, diff against HEAD;
#   - /usr/bin/time -v: peak memory of a cold build and a check, against the output size;
#   - per-phase times (MEDIANEST_TIMINGS=1) with 1 and 2 render threads;
#   - the Jinja2 peer (scripts/bench/jinja_peer.py) rendering the same templates with the
#     same contexts (`medianest dump-contexts`), in memory, checked byte for byte;
#   - that a no-op rebuild leaves every mtime alone.
# Results go to $BENCH_OUT (default target/bench/), with summary.md to paste into
# BENCHMARKS.md. Not a test: numbers depend on the machine and its load.
#
# Environment: SIZES="100:1000 1000:10000" (hosts:services), SCALING (extra sizes for
# the scaling curve, default "1000:2500 1000:5000 1000:20000"; empty to skip), RUNS
# (hyperfine runs per command, default 5), BENCH_DIR (work dir, default a new temp dir),
# MEDIANEST_BIN (benchmark this binary instead of the release build, e.g. a patched
# one), CARGO_TARGET_DIR.
set -euo pipefail

cd "$(dirname "$0")/../.."
ROOT=$PWD
SIZES=${SIZES-"100:1000 1000:10000"}
SCALING=${SCALING-"1000:2500 1000:5000 1000:20000"}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$TARGET/bench}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/medianest-bench.XXXXXX)}
mkdir -p "$OUT" "$WORK"

if ! command -v hyperfine >/dev/null; then
    echo "== installing hyperfine"
    if [ "$(id -u)" -eq 0 ]; then SUDO=""; else SUDO="sudo"; fi
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends hyperfine time
fi
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }

echo "== building (release)"
cargo build --release --bin medianest --example synth_site
BIN=${MEDIANEST_BIN:-$TARGET/release/medianest}
SYNTH=$TARGET/release/examples/synth_site

VENV=$OUT/venv
if [ ! -x "$VENV/bin/python" ]; then
    echo "== Python venv with Jinja2 for the peer"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q jinja2
fi
PY=$VENV/bin/python

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src templates Cargo.toml || echo ' (with uncommitted changes)')"
    echo "binary: $BIN"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "nproc: $(nproc)"
    echo "memory: $(awk '/MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)"
    echo "kernel: $(uname -r)"
    echo "filesystem: $(df -T "$WORK" | awk 'NR == 2 {print $2}') ($WORK)"
    echo "rustc: $(rustc --version)"
    echo "python: $("$PY" --version 2>&1), jinja2 $("$PY" -c 'import jinja2; print(jinja2.__version__)')"
    echo "hyperfine: $(hyperfine --version)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

# bench NAME DIR: every measurement on the site in DIR/site.
bench() {
    local name=$1 dir=$2
    echo "== $name"
    rm -rf "$dir/generated" "$dir/copy" "$dir/.git" "$dir/.medianest"
    "$BIN" -C "$dir" -q build
    git -C "$dir" init -q
    git -C "$dir" add site generated
    git -C "$dir" -c user.name=bench -c user.email=bench@localhost commit -q -m "bench: $name"
    find "$dir/generated" -type f | wc -l >"$OUT/$name.files"
    # Bytes of the files themselves (directory sizes differ between filesystems).
    find "$dir/generated" -type f -printf '%s\n' | awk '{s += $1} END {print s}' >"$OUT/$name.bytes"
    find "$dir/site" -type f -printf '%s\n' | awk '{s += $1} END {print s}' >"$OUT/$name.site-bytes"

    # `sync` before the writers, so that neither pays for the other's pending writeback
    # (on a disk it otherwise decides who is slower; on tmpfs it costs nothing).
    hyperfine --style basic --runs "$RUNS" --warmup 1 --export-json "$OUT/$name.hyperfine.json" \
        -n "cold build" --prepare "rm -rf '$dir/generated' '$dir/.medianest'; sync" "'$BIN' -C '$dir' -q build" \
        -n "cp -r" --prepare "rm -rf '$dir/copy'; sync" "cp -r '$dir/generated' '$dir/copy'" \
        -n "sha256sum" --prepare "true" "find '$dir/generated' -type f -print0 | xargs -0 sha256sum >/dev/null" \
        -n "no-op build" --prepare "true" "'$BIN' -C '$dir' -q build" \
        -n "check" --prepare "true" "'$BIN' -C '$dir' -q check" \
        -n "check --no-cache" --prepare "true" "'$BIN' -C '$dir' -q --no-cache check" \
        -n "diff HEAD" --prepare "true" "'$BIN' -C '$dir' diff HEAD --stat >/dev/null"
    rm -rf "$dir/copy"

    # A no-op rebuild writes nothing: every mtime stays put.
    touch "$dir/stamp"
    sleep 0.05
    "$BIN" -C "$dir" -q build
    find "$dir/generated" -newer "$dir/stamp" -type f | wc -l >"$OUT/$name.touched"
    rm -f "$dir/stamp"

    rm -rf "$dir/generated"
    /usr/bin/time -v "$BIN" -C "$dir" -q build 2>"$OUT/$name.time-build.txt"
    /usr/bin/time -v "$BIN" -C "$dir" -q --no-cache check 2>"$OUT/$name.time-check.txt"

    : >"$OUT/$name.timings.txt"
    for threads in 1 2; do
        for _ in $(seq "$RUNS"); do
            RAYON_NUM_THREADS=$threads MEDIANEST_TIMINGS=1 "$BIN" -C "$dir" -q --no-cache check 2>&1 |
                sed -n "s/^timing: /threads=$threads /p" >>"$OUT/$name.timings.txt"
        done
    done

    "$BIN" -C "$dir" -q dump-contexts "$dir/contexts.jsonl"
    # A difference is reported in the summary; it does not stop the benchmarks.
    "$PY" "$ROOT/scripts/bench/jinja_peer.py" --templates "$ROOT/templates" --contexts "$dir/contexts.jsonl" \
        --expected "$dir/generated" --repeat 3 | tee "$OUT/$name.peer.txt" || true
    rm -f "$dir/contexts.jsonl"
}

names=""
mkdir -p "$WORK/reference"
rm -rf "$WORK/reference/site"
cp -r "$ROOT/site" "$WORK/reference/site"
bench reference "$WORK/reference"
names="reference"
for size in $SIZES $SCALING; do
    hosts=${size%%:*}
    services=${size##*:}
    name="synth-$hosts-$services"
    "$SYNTH" --hosts "$hosts" --services "$services" --out "$WORK/$name"
    bench "$name" "$WORK/$name"
    names="$names $name"
done

echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
# shellcheck disable=SC2086 # one argument per site name
"$PY" "$ROOT/scripts/bench/summarize.py" "$OUT" $names | tee "$OUT/summary.md"
echo "== results in $OUT (work dir $WORK)"
