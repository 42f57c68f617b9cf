#!/usr/bin/env python3
"""The Jinja2 peer of the medianest renderer, for scripts/bench/run.sh.

Renders the same templates (medianest's templates/ folder) with the same contexts
(written by the hidden `medianest dump-contexts FILE`) in memory, with settings
equivalent to src/render/: trim_blocks, lstrip_blocks, keep_trailing_newline,
StrictUndefined, loop controls, and medianest's escaping emulated in Python:

- the escaping is chosen by the template name (src/render/escape.rs auto_escape_for);
- every printed value goes through `finalize`, which does what the minijinja formatter
  in src/render/mod.rs does, with the escaping of the template it is printed from
  (an included template keeps its own, as in minijinja): booleans print `true`/`false`, numbers print raw, `none`,
  undefined values, lists and maps are errors, strings are escaped (yaml, xml, sh, md,
  json) unless marked safe;
- the `yaml`, `xml`, `sh` and `md` filters escape and mark the result safe.

Prints one line per phase (`peer: <phase> <ms>`), and with --expected compares every
output byte for byte with the tree medianest wrote.
"""

import argparse
import json
import os
import sys
import time

import jinja2
from markupsafe import Markup

SH_SAFE = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./:=@%+,")


YAML_RAW_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}


def esc_yaml(s):
    # src/render/escape.rs yaml(): a JSON string literal, with the characters YAML does
    # not allow raw (DEL, C1, U+FEFF, U+FFFE/F) and U+2028/9 as \uXXXX.
    out = ['"']
    for c in s:
        o = ord(c)
        if c in YAML_RAW_ESCAPES:
            out.append(YAML_RAW_ESCAPES[c])
        elif o < 0x20 or 0x7F <= o <= 0x9F or o in (0x2028, 0x2029, 0xFEFF, 0xFFFE, 0xFFFF):
            out.append("\\u%04x" % o)
        else:
            out.append(c)
    out.append('"')
    return "".join(out)


XML_ESCAPES = {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&apos;", "\t": "&#9;", "\n": "&#10;", "\r": "&#13;"}


def esc_xml(s):
    out = []
    for c in s:
        o = ord(c)
        if c in XML_ESCAPES:
            out.append(XML_ESCAPES[c])
        elif o < 0x20 or o in (0xFFFE, 0xFFFF):
            out.append("\ufffd")
        else:
            out.append(c)
    return "".join(out)


def esc_sh(s):
    if s and all(c in SH_SAFE for c in s):
        return s
    return "'" + s.replace("'", "'\\''") + "'"


def esc_md(s):
    out = []
    for c in s:
        if c in "\\`*|<>[]":
            out.append("\\")
        out.append(c)
    return "".join(out)


ESCAPES = {"yaml": esc_yaml, "xml": esc_xml, "sh": esc_sh, "md": esc_md, "json": esc_yaml}


def escape_kind(name):
    """src/render/escape.rs auto_escape_for."""
    if name.endswith(".j2"):
        name = name[:-3]
    ext = name.rsplit(".", 1)[-1]
    return {
        "yaml": "yaml",
        "yml": "yaml",
        "xml": "xml",
        "svg": "xml",
        "sh": "sh",
        "md": "md",
        "html": "html",
        "htm": "html",
        "json": "json",
    }.get(ext, "none")


KINDS = {}


def kind_of(name):
    kind = KINDS.get(name)
    if kind is None:
        kind = KINDS[name] = escape_kind(name or "")
    return kind


@jinja2.pass_context
def finalize(ctx, v):
    """The minijinja formatter of src/render/mod.rs. The escaping is the one of the
    template being rendered (ctx.name), so an included template keeps its own, as in
    minijinja, where auto-escape is chosen per template name."""
    if isinstance(v, Markup):
        return str(v)
    if isinstance(v, jinja2.Undefined):
        str(v)  # StrictUndefined raises
    if v is None:
        raise ValueError("`none` was printed; guard it with `{% if %}`")
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return str(v)
    if isinstance(v, (list, dict, tuple)):
        raise ValueError("a list or map was printed; loop over it or use `|join`")
    s = str(v)
    kind = kind_of(ctx.name)
    escape = ESCAPES.get(kind)
    if escape is not None:
        return escape(s)
    if kind == "html":
        return str(Markup.escape(s))
    return s


def environment(templates):
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
        autoescape=False,
        auto_reload=False,
        extensions=["jinja2.ext.loopcontrols"],
        finalize=finalize,
        cache_size=-1,
    )
    for name, fn in ESCAPES.items():
        if name != "json":
            env.filters[name] = (lambda f: lambda v: Markup(f(str(v))))(fn)
    return env


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--templates", required=True, help="medianest's templates/ folder")
    ap.add_argument("--contexts", required=True, help="JSON lines from `medianest dump-contexts`")
    ap.add_argument("--expected", help="the generated/ tree to compare outputs with")
    ap.add_argument("--repeat", type=int, default=1, help="render this many times, report the best")
    args = ap.parse_args()

    t0 = time.perf_counter()
    with open(args.contexts, encoding="utf-8") as f:
        jobs = [json.loads(line) for line in f if line.strip()]
    t1 = time.perf_counter()
    env = environment(args.templates)
    compiled = {}
    for job in jobs:
        name = job["template"]
        if name not in compiled:
            compiled[name] = env.get_template(name)
    t2 = time.perf_counter()
    best = None
    outputs = None
    for _ in range(max(1, args.repeat)):
        start = time.perf_counter()
        out = []
        for job in jobs:
            text = compiled[job["template"]].render(job["context"])
            if not text.endswith("\n"):
                text += "\n"
            out.append(text.encode("utf-8"))
        took = time.perf_counter() - start
        if best is None or took < best:
            best = took
        outputs = out
    total = sum(len(b) for b in outputs)
    print(f"peer: contexts {1e3 * (t1 - t0):.3f} ms")
    print(f"peer: templates {1e3 * (t2 - t1):.3f} ms")
    print(f"peer: render {1e3 * best:.3f} ms")
    print(f"peer: jobs {len(jobs)} bytes {total}")

    if args.expected:
        same, differ = 0, []
        for job, data in zip(jobs, outputs):
            path = os.path.join(args.expected, job["path"])
            try:
                with open(path, "rb") as f:
                    want = f.read()
            except OSError:
                want = None
            if want == data:
                same += 1
            else:
                differ.append(job["path"])
        print(f"peer: identical {same} differ {len(differ)}")
        for p in differ[:10]:
            print(f"peer: differs {p}")
        if differ:
            sys.exit(1)


if __name__ == "__main__":
    main()
