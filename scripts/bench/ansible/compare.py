#!/usr/bin/env python3
"""Compare the files Ansible wrote with medianest's generated/ tree (scripts/bench/ansible/run.sh).

For every render job of `medianest dump-contexts`: identical byte for byte, or differing.
A differing file is also compared after undoing medianest's auto-escaping for its file
type (the escaping is chosen by the template name, src/render/escape.rs; Ansible's template
module has none): if that makes it identical, the difference is the escaping and nothing
else. Unified diffs of the differing files go to --diffs.
"""

import argparse
import difflib
import json
import os
import re
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
import jinja_peer  # noqa: E402  scripts/bench/jinja_peer.py

# Undo src/render/escape.rs md(): a backslash before each of \ ` * | < > [ ].
MD_UNESCAPE = re.compile(r"\\([\\`*|<>\[\]])")


def unescape(kind, text):
    if kind == "md":
        return MD_UNESCAPE.sub(r"\1", text)
    return None


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--contexts", required=True)
    ap.add_argument("--expected", required=True, help="medianest's generated/ tree")
    ap.add_argument("--actual", required=True, help="the tree Ansible wrote")
    ap.add_argument("--diffs", required=True, help="file to write unified diffs to")
    args = ap.parse_args()

    with open(args.contexts, encoding="utf-8") as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    same, escaping, other, missing = [], [], [], []
    with open(args.diffs, "w", encoding="utf-8") as diffs:
        for job in jobs:
            path = job["path"]
            with open(os.path.join(args.expected, path), "rb") as f:
                want = f.read()
            try:
                with open(os.path.join(args.actual, path), "rb") as f:
                    got = f.read()
            except OSError:
                missing.append(path)
                continue
            if got == want:
                same.append(path)
                continue
            kind = jinja_peer.escape_kind(job["template"])
            lines = list(
                difflib.unified_diff(
                    want.decode("utf-8").splitlines(keepends=True),
                    got.decode("utf-8").splitlines(keepends=True),
                    f"medianest/{path}",
                    f"ansible/{path}",
                    n=0,
                )
            )
            changed = sum(1 for l in lines if l.startswith("-") and not l.startswith("---"))
            if unescape(kind, want.decode("utf-8")) == got.decode("utf-8"):
                escaping.append((path, kind, changed))
            else:
                other.append((path, kind, changed))
            diffs.writelines(lines)
    total = len(jobs)
    print(f"compare: files {total} identical {len(same)} differ {len(escaping) + len(other)} missing {len(missing)}")
    for path, kind, changed in escaping:
        print(f"compare: differs only by medianest's {kind} auto-escaping: {path} ({changed} lines)")
    for path, kind, changed in other:
        print(f"compare: differs otherwise: {path} (escaping {kind}, {changed} lines)")
    for path in missing:
        print(f"compare: missing: {path}")
    sys.exit(1 if other or missing else 0)


if __name__ == "__main__":
    main()
