#!/usr/bin/env python3
"""The largest owners of heap bytes in a dhat profile (examples/heapprofile.rs).

    python3 scripts/heap_owners.py dhat-heap.json [--top 5] [--at end|gmax]

An owner is the innermost frame of the exporter's own sources on the stack that allocated
the bytes (file and line): the code that decided to keep them. Bytes are those live
at the end of the profile (the steady state) or at its peak (`--at gmax`).
"""

import argparse
import os
import json
import re
import sys
from collections import defaultdict

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def owner(frames, ftbl):
    """The innermost frame in the exporter's own sources: dhat names frames
    `0x…: function (dir/src/file.rs:line:col)` with the last few directories of the path; a
    frame is ours when that path, from its `src/`, is a file of this repository's `src/`."""
    for i in frames:
        frame = ftbl[i]
        text = frame.split(": ", 1)[-1]
        name, _, place = text.partition(" (")
        path = place.rstrip(")").split(":", 1)[0]
        at = path.find("src/")
        # Another crate's `src/` comes after its own directory (`dhat-0.3.3/src/lib.rs`).
        ours = path[:at] in ("", os.path.basename(REPO) + "/")
        if at < 0 or not ours or not os.path.isfile(os.path.join(REPO, path[at:])):
            continue
        name = re.sub(r"<.*>", "", name)
        line = place.rstrip(")").split(":")[1] if ":" in place else "?"
        return f"{name} ({path[at:]}:{line})"
    return "(outside the exporter's code)"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("profile")
    p.add_argument("--top", type=int, default=5)
    p.add_argument("--at", choices=["end", "gmax"], default="end")

    a = p.parse_args()
    with open(a.profile, encoding="utf-8") as f:
        d = json.load(f)
    key = "eb" if a.at == "end" else "gb"
    blocks = "ebk" if a.at == "end" else "gbk"
    by_owner = defaultdict(lambda: [0, 0])
    for pp in d["pps"]:
        o = owner(pp["fs"], d["ftbl"])
        by_owner[o][0] += pp[key]
        by_owner[o][1] += pp[blocks]
    total = sum(b for b, _ in by_owner.values())
    print(f"{total / 1e6:.1f} MB live at {a.at} in {sum(n for _, n in by_owner.values())} blocks")
    print("| owner | MB | share | blocks |")
    print("|---|---:|---:|---:|")
    for o, (b, n) in sorted(by_owner.items(), key=lambda kv: -kv[1][0])[: a.top]:
        print(f"| `{o}` | {b / 1e6:.1f} | {100 * b / max(total, 1):.0f} % | {n} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
