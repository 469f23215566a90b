#!/usr/bin/env python3
# SPDX-License-Identifier: Apache-2.0
"""The layering the build checks: every `#include "..."` edge between modules
under src/ must be allowed by the table in docs/architecture.md ("Layering"),
and no module includes another module's internal header (internal.h,
private.h). Usage: layering.py SOURCE_ROOT. Exits 1 listing every offence."""

import os
import re
import sys

INTERNAL = ("internal.h", "private.h")


def module_of(rel):
    """src-relative path -> module: the first folder, driver/<backend> for
    the drivers."""
    parts = rel.split("/")
    if parts[0] == "driver" and len(parts) > 2:
        return "driver/" + parts[1]
    return parts[0]


def read_table(doc):
    """The rows of the table under '## Layering': | `module` | `a`, `b` |."""
    allowed, extra, inside = {}, {}, False
    for line in open(doc, encoding="utf-8"):
        if line.startswith("## "):
            inside = line.strip() == "## Layering"
            continue
        if not inside or not line.startswith("| `"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        mod = cells[0].strip("`")
        names = re.findall(r"`([^`]+)`", cells[1]) if len(cells) > 1 else []
        allowed[mod] = {n for n in names if not n.endswith(".h")}
        extra[mod] = {n for n in names if n.endswith(".h")}
    return allowed, extra


def edges(src):
    for root, _, files in os.walk(src):
        for f in sorted(files):
            if not f.endswith((".c", ".h")):
                continue
            path = os.path.join(root, f)
            rel = os.path.relpath(path, src)
            with open(path, encoding="utf-8", errors="replace") as fh:
                for n, line in enumerate(fh, 1):
                    m = re.match(r'\s*#\s*include\s+"([^"]+)"', line)
                    if not m:
                        continue
                    inc = m.group(1)
                    if "/" not in inc:
                        inc = os.path.normpath(os.path.join(os.path.dirname(rel), inc))
                    yield rel, n, inc


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.dirname(__file__))
    src = os.path.join(root, "src")
    allowed, extra = read_table(os.path.join(root, "docs", "architecture.md"))
    if not allowed:
        print("docs/architecture.md has no '## Layering' table")
        return 1
    bad = []
    modules = set()
    for rel, n, inc in edges(src):
        frm, to = module_of(rel), module_of(inc)
        modules.add(frm)
        if frm == to:
            continue
        if os.path.basename(inc) in INTERNAL:
            bad.append(f"src/{rel}:{n}: includes {inc}, the internal header of {to}")
            continue
        if frm not in allowed:
            bad.append(f"src/{rel}:{n}: module {frm} is not in the Layering table")
            continue
        if to not in allowed[frm] and inc not in extra[frm]:
            bad.append(f"src/{rel}:{n}: {frm} may not include {inc} ({to} is not below it)")
    for mod in sorted(set(allowed) - modules):
        if os.path.isdir(os.path.join(src, mod)):
            bad.append(f"docs/architecture.md: module {mod} has no sources")
    for b in bad:
        print(b)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
