"""Ansible filter plugins for the medianest templates: `yaml`, `xml`, `sh` and `md`.

These are the escaping filters medianest gives its templates (src/render/escape.rs). The
escaping itself is imported from scripts/bench/jinja_peer.py, the Jinja2 peer, so the two
benchmarks cannot drift apart. Unlike medianest (and the peer), Ansible's template module
has no auto-escaping chosen by file type and no custom `finalize`: only values passed
through one of these filters explicitly are escaped.
"""

import os
import sys

_BENCH = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))
if _BENCH not in sys.path:
    sys.path.insert(0, _BENCH)

import jinja_peer  # noqa: E402  scripts/bench/jinja_peer.py


def _escaper(fn):
    def escape(value):
        return fn(str(value))

    escape.__name__ = fn.__name__
    return escape


class FilterModule:
    """yaml, xml, sh, md: escape a value for that file type (src/render/escape.rs)."""

    def filters(self):
        return {
            "yaml": _escaper(jinja_peer.esc_yaml),
            "xml": _escaper(jinja_peer.esc_xml),
            "sh": _escaper(jinja_peer.esc_sh),
            "md": _escaper(jinja_peer.esc_md),
        }
