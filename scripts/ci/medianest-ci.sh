#!/bin/sh
# CI for a medianest site repository, on any CI system.
#
#   scripts/ci/medianest-ci.sh [BASE_REF] [OUTPUT_FILE]
#
# 1. Fails (exit 1) when generated/ is stale, hand-edited or not committed, or the site
#    is invalid: `medianest check --committed` prints what to run.
# 2. Writes the review comment: the Markdown diff of this branch against its merge base
#    with BASE_REF (default origin/main) into OUTPUT_FILE (default medianest-diff.md),
#    ready to post on the pull/merge request as is.
#
# MEDIANEST names the binary (default: medianest on PATH). Needs the full history of
# BASE_REF (e.g. `fetch-depth: 0` on GitHub, `GIT_DEPTH: 0` on GitLab).
set -eu

base_ref=${1:-origin/main}
output=${2:-medianest-diff.md}
medianest=${MEDIANEST:-medianest}

"$medianest" check --committed

if ! merge_base=$(git merge-base "$base_ref" HEAD); then
    echo "error: no merge base between $base_ref and HEAD; fetch the full history of $base_ref" >&2
    exit 2
fi
"$medianest" diff "$merge_base" --format markdown > "$output"
echo "wrote the review comment to $output (against $base_ref at $(git rev-parse --short "$merge_base"))"
