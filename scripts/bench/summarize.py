#!/usr/bin/env python3
"""Turns the files scripts/bench/run.sh writes into the Markdown tables of BENCHMARKS.md.

usage: summarize.py OUT_DIR NAME...
"""

import json
import os
import re
import sys


def read(out, name, ext, default=""):
    try:
        with open(os.path.join(out, f"{name}.{ext}"), encoding="utf-8") as f:
            return f.read()
    except OSError:
        return default


def ms(seconds):
    return f"{seconds * 1e3:.0f}" if seconds >= 0.1 else f"{seconds * 1e3:.1f}"


def peak_kib(text):
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", text)
    return int(m.group(1)) if m else 0


def mib(n):
    return f"{n / 1048576:.1f}"


def sizes(name):
    m = re.match(r"synth-(\d+)-(\d+)", name)
    return (int(m.group(1)), int(m.group(2))) if m else None


def main():
    out, names = sys.argv[1], sys.argv[2:]
    rows, phases, peers, scale = [], [], [], []
    for name in names:
        hf = json.loads(read(out, name, "hyperfine.json", "{}") or "{}")
        r = {x["command"]: x for x in hf.get("results", [])}
        if not r:
            continue
        cold, cp = r["cold build"]["mean"], r["cp -r"]["mean"]
        noop, check = r["no-op build"]["mean"], r["check"]["mean"]
        # The compiling check (no fingerprint); older runs did not have it.
        full = r.get("check --no-cache", r["check"])["mean"]
        out_bytes = int(read(out, name, "bytes", "0").strip() or 0)
        rss_build = peak_kib(read(out, name, "time-build.txt")) * 1024
        rss_check = peak_kib(read(out, name, "time-check.txt")) * 1024
        hs = sizes(name)
        label = f"{hs[0]:,} / {hs[1]:,}" if hs else "reference"
        rows.append(
            f"| {label} | {read(out, name, 'files').strip()} | {mib(out_bytes)} "
            f"| {ms(cold)} ± {ms(r['cold build']['stddev'])} | {ms(cp)} | {ms(r['sha256sum']['mean'])} "
            f"| **{cold / cp:.2f}x** | {ms(noop)} | **{100 * noop / cold:.1f}%** | {ms(check)} "
            f"| **{100 * check / cold:.1f}%** | {ms(full)} | {ms(r['diff HEAD']['mean'])} | {read(out, name, 'touched').strip()} "
            f"| {mib(rss_build)} / {mib(rss_check)} | **{rss_build / out_bytes:.1f}x** |"
        )
        best = {}
        for line in read(out, name, "timings.txt").splitlines():
            m = re.match(r"threads=(\d) (\S+)\s+([\d.]+) ms", line)
            if m:
                key = (m.group(1), m.group(2))
                best[key] = min(best.get(key, 1e18), float(m.group(3)))
        peer = {}
        for line in read(out, name, "peer.txt").splitlines():
            m = re.match(r"peer: (\w+) ([\d.]+) ms", line)
            if m:
                peer[m.group(1)] = float(m.group(2))
            m = re.match(r"peer: identical (\d+) differ (\d+)", line)
            if m:
                peer["identical"], peer["differ"] = int(m.group(1)), int(m.group(2))
        cols = ["load", "analyze", "templates", "lower", "render", "plans", "compare"]
        for t in ("1", "2"):
            phases.append(f"| {label} | {t} | " + " | ".join(f"{best.get((t, c), 0):.1f}" for c in cols) + " |")
        if peer:
            r1, r2 = best.get(("1", "render"), 0), best.get(("2", "render"), 0)
            l1 = best.get(("1", "lower"), 0)
            peers.append(
                f"| {label} | {l1:.1f} | {r1:.1f} | {r2:.1f} | {peer.get('contexts', 0):.1f} "
                f"| {peer.get('render', 0):.1f} | **{peer.get('render', 0) / r1:.1f}x** "
                f"| **{peer.get('render', 0) / r2:.1f}x** | {peer.get('identical', 0)} / "
                f"{peer.get('identical', 0) + peer.get('differ', 0)} |"
            )
        if hs:
            scale.append((hs, cold, full, best.get(("2", "load"), 0) + best.get(("2", "analyze"), 0),
                          best.get(("2", "lower"), 0) + best.get(("2", "render"), 0)))

    print("### Build, check and diff against the physical limit\n")
    print("Mean of the hyperfine runs, in ms; all columns of a row come from one hyperfine run.\n")
    print("| hosts / services | files | output MiB | cold build | cp -r | sha256sum | cold / cp -r | no-op build "
          "| no-op / cold | check | check / cold | check --no-cache | diff HEAD | files touched by no-op "
          "| peak RSS MiB build / check --no-cache | peak RSS / output |")
    print("| --- |" + " ---: |" * 15)
    print("\n".join(rows))
    print("\n### Phases (in memory, best of the runs, ms)\n")
    print("| hosts / services | threads | load | analyze | templates | lower | render | plans | compare |")
    print("| --- |" + " ---: |" * 8)
    print("\n".join(phases))
    print("\n### Render phase against the Jinja2 peer (same templates, same contexts, in memory, ms)\n")
    print("| hosts / services | medianest lower | medianest render, 1 thread | medianest render, 2 threads "
          "| Jinja2 contexts (json) | Jinja2 render | Jinja2 / medianest, 1 thread | Jinja2 / medianest, 2 threads "
          "| outputs identical |")
    print("| --- |" + " ---: |" * 8)
    print("\n".join(peers))
    if scale:
        print("\n### Scaling (ms per 1,000 services)\n")
        print("| hosts / services | cold build | per 1k services | check --no-cache | per 1k services "
              "| load + analyze | lower + render |")
        print("| --- |" + " ---: |" * 6)
        for (h, s), cold, check, front, back in sorted(scale, key=lambda x: (x[0][0], x[0][1])):
            print(f"| {h:,} / {s:,} | {ms(cold)} | {1e3 * cold / (s / 1000):.0f} | {ms(check)} "
                  f"| {1e3 * check / (s / 1000):.0f} | {front:.0f} | {back:.0f} |")


if __name__ == "__main__":
    main()
