#!/bin/sh
# The pull agent's kill loop (#13): N `kill -9`s at random moments of an apply (default
# 1,000; CI runs 200 inside `cargo test`), each followed by a run that must converge to
# the branch's commit with 0 torn files and 0 leftovers (temporary files beside the
# targets, staging copies, stray backups). Needs root (files are written with owners).
#
#   scripts/bench/agent-kill-loop.sh [runs]
set -eu
runs=${1:-1000}
cd "$(dirname "$0")/../.."
start=$(date +%s)
MEDIANEST_KILL_RUNS=$runs cargo test --test testsuite \
    agent::random_sigkills_during_apply_leave_no_torn_file -- --exact --nocapture 2>&1 |
    grep -E "sigkill runs:|test result:|panicked" 
echo "kill loop: $runs runs in $(( $(date +%s) - start )) s (build included)"
