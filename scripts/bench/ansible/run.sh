#!/usr/bin/env bash
# medianest against Ansible's `template` module, producing the same files (issue #6:
# "the whole build ≥ 1,000× faster than Ansible's template module producing the same
# files for 100 services"). Results: scripts/bench/ansible/RESULTS.md.
#
# 1. writes the synthetic site of 10 hosts and 100 services (examples/synth_site.rs);
# 2. times `medianest -C DIR -q build` from scratch with hyperfine, and its peak memory;
# 3. dumps every render job (`medianest dump-contexts`: template, output path, context)
#    and turns it into a playbook of one `ansible.builtin.template` task per output file,
#    the context as the task's vars (make_playbook.py), with the `yaml`/`xml`/`sh`/`md`
#    filters as filter plugins (filter_plugins/medianest.py);
# 4. runs `ansible-playbook -i localhost, -c local` ONCE under /usr/bin/time -v (it takes
#    seconds to minutes; not for CI);
# 5. compares Ansible's files with medianest's byte for byte (compare.py).
#
# Environment: HOSTS (10), SERVICES (100), RUNS (hyperfine runs, 10), BENCH_DIR (work
# dir, default a new temp dir), BENCH_OUT (results, default target/bench/ansible),
# MEDIANEST_BIN, ANSIBLE_CORE (pip requirement, default the version measured),
# CARGO_TARGET_DIR. Builds the release binaries only if they are missing.
set -euo pipefail
# No __pycache__ in scripts/bench/ (the filter plugins import ../jinja_peer.py).
export PYTHONDONTWRITEBYTECODE=1

cd "$(dirname "$0")/../../.."
ROOT=$PWD
HERE=$ROOT/scripts/bench/ansible
HOSTS=${HOSTS:-10}
SERVICES=${SERVICES:-100}
RUNS=${RUNS:-10}
ANSIBLE_CORE=${ANSIBLE_CORE:-ansible-core==2.19.14}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
OUT=${BENCH_OUT:-$TARGET/bench/ansible}
WORK=${BENCH_DIR:-$(mktemp -d /tmp/medianest-ansible.XXXXXX)}
BIN=${MEDIANEST_BIN:-$TARGET/release/medianest}
SYNTH=$TARGET/release/examples/synth_site
mkdir -p "$OUT" "$WORK"
OUT=$(cd "$OUT" && pwd)
WORK=$(cd "$WORK" && pwd)

command -v hyperfine >/dev/null || { echo "error: hyperfine is missing (apt-get install hyperfine)" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "error: /usr/bin/time is missing (apt-get install time)" >&2; exit 2; }
if [ ! -x "$BIN" ] || [ ! -x "$SYNTH" ]; then
    echo "== building (release)"
    cargo build --release --bin medianest --example synth_site
fi

VENV=$TARGET/bench/ansible-venv
if [ ! -x "$VENV/bin/ansible-playbook" ]; then
    echo "== Python venv with $ANSIBLE_CORE"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q "$ANSIBLE_CORE"
fi
PY=$VENV/bin/python

SITE=$WORK/synth-$HOSTS-$SERVICES
echo "== site: $HOSTS hosts, $SERVICES services in $SITE"
rm -rf "$SITE"
"$SYNTH" --hosts "$HOSTS" --services "$SERVICES" --out "$SITE"
"$BIN" -C "$SITE" -q build
find "$SITE/generated" -type f | wc -l >"$OUT/files"
find "$SITE/generated" -type f -printf '%s\n' | awk '{s += $1} END {print s}' >"$OUT/bytes"

{
    echo "date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
    echo "commit: $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src templates Cargo.toml || echo ' (with uncommitted changes)')"
    echo "binary: $BIN"
    echo "cpu: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
    echo "nproc: $(nproc)"
    echo "kernel: $(uname -r)"
    echo "filesystem: $(df -T "$WORK" | awk 'NR == 2 {print $2}') ($WORK)"
    echo "python: $("$PY" --version 2>&1)"
    echo "ansible: $("$VENV/bin/ansible-playbook" --version | head -1)"
    echo "jinja2: $("$PY" -c 'import jinja2; print(jinja2.__version__)')"
    echo "hyperfine: $(hyperfine --version)"
    echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
} >"$OUT/machine.txt"
cat "$OUT/machine.txt"

echo "== medianest build (hyperfine, $RUNS runs)"
hyperfine --style basic --runs "$RUNS" --warmup 2 --export-json "$OUT/medianest.hyperfine.json" \
    -n "medianest build" --prepare "rm -rf '$SITE/generated'" "'$BIN' -C '$SITE' -q build"
rm -rf "$SITE/generated"
/usr/bin/time -v "$BIN" -C "$SITE" -q build 2>"$OUT/medianest.time.txt"

echo "== playbook"
"$BIN" -C "$SITE" -q dump-contexts "$SITE/contexts.jsonl"
PLAY=$SITE/ansible
ANSIBLE_OUT=$SITE/ansible-out
rm -rf "$PLAY" "$ANSIBLE_OUT" "$SITE/ansible-home"
mkdir -p "$PLAY"
# Ansible looks for `src` and for `{% include %}`d templates in templates/ next to the
# playbook, and loads filter_plugins/ next to it.
ln -s "$ROOT/templates" "$PLAY/templates"
ln -s "$HERE/filter_plugins" "$PLAY/filter_plugins"
"$PY" "$HERE/make_playbook.py" --contexts "$SITE/contexts.jsonl" --out "$ANSIBLE_OUT" \
    --playbook "$PLAY/playbook.yml" | tee "$OUT/playbook.txt"
cp "$PLAY/playbook.yml" "$OUT/playbook.yml"

echo "== ansible-playbook (once)"
status=0
(
    cd "$PLAY"
    ANSIBLE_HOME=$SITE/ansible-home \
        ANSIBLE_PYTHON_INTERPRETER=$PY \
        ANSIBLE_NOCOLOR=1 \
        /usr/bin/time -v -o "$OUT/ansible.time.txt" \
        "$VENV/bin/ansible-playbook" -i localhost, -c local playbook.yml >"$OUT/ansible.log" 2>&1
) || status=$?
echo "ansible-playbook exit status: $status" | tee "$OUT/ansible.status"
tail -4 "$OUT/ansible.log"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"

echo "== compare"
"$PY" "$HERE/compare.py" --contexts "$SITE/contexts.jsonl" --expected "$SITE/generated" \
    --actual "$ANSIBLE_OUT" --diffs "$OUT/diffs.txt" | tee "$OUT/compare.txt" || true

"$PY" - "$OUT" <<'EOF' | tee "$OUT/summary.txt"
import json, re, sys
out = sys.argv[1]
def time_v(name):
    text = open(f"{out}/{name}").read()
    wall = re.search(r"Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)", text).group(1)
    secs = 0.0
    for part in wall.split(":"):
        secs = secs * 60 + float(part)
    rss = int(re.search(r"Maximum resident set size \(kbytes\): (\d+)", text).group(1))
    return secs, rss / 1024
hf = json.load(open(f"{out}/medianest.hyperfine.json"))["results"][0]
mean, sd = hf["mean"], hf["stddev"]
a_wall, a_rss = time_v("ansible.time.txt")
m_wall, m_rss = time_v("medianest.time.txt")
files = open(f"{out}/files").read().strip()
jobs = open(f"{out}/playbook.txt").read().split()[1]
print(f"generated files: {files} (of which rendered from templates, one Ansible task each: {jobs})")
print(f"medianest build: {1e3 * mean:.1f} ± {1e3 * sd:.1f} ms (hyperfine, {len(hf['times'])} runs), peak RSS {m_rss:.1f} MiB")
print(f"ansible-playbook: {a_wall:.2f} s wall, peak RSS {a_rss:.1f} MiB (largest single process)")
print(f"ratio (ansible wall / medianest mean): {a_wall / mean:.0f}x")
EOF
echo "== results in $OUT (work dir $WORK)"
exit "$status"
