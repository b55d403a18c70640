#!/usr/bin/env python3
"""The metric names of the exporter's contract, and a check of PromQL against them.

    python3 tests/metric_contract.py names
    python3 tests/metric_contract.py check [--allow NAME]... < LINES

The contract is the `## Metrics` section of README.md, which tests/demo.rs keeps equal, in
both directions, to the families the exporter serves:
- every backticked `aws_apigateway_...` and `aws_lambda_...` name in that section (a name followed by `_` or `*`
  is a prefix in prose, not a name);
- `_sum` and `_count` of the latency summaries (`*latency_seconds`), and `_bucket`, `_sum`,
  `_count` of every name on a line that calls it a histogram.

`check` reads lines `WHERE TAB PROMQL` and prints `WHERE TAB NAME` for every metric name in
the PromQL that is not in the contract: names starting with `aws_apigateway_` or `aws_lambda_`, and
recording-rule names (containing `:`) unless passed with --allow. Exits 1 if it printed
anything, 2 if a contract file is missing.
"""

import os
import re
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NAME = re.compile(r"aws_(?:apigateway|lambda)_[a-z0-9_]*[a-z0-9]")


def read(path):
    try:
        return path.read_text(encoding="utf-8")
    except OSError as e:
        print(f"cannot read the metric contract {path}: {e}", file=sys.stderr)
        sys.exit(2)


def backticked(text):
    """Inline code spans, fenced code blocks left out."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.findall(r"`([^`\n]+)`", text)


def full_names(text):
    names = set()
    for span in backticked(text):
        for m in NAME.finditer(span):
            # `aws_apigateway_route_*` and `aws_apigateway_exporter_*` are prefixes, not names.
            if span[m.end() : m.end() + 1] in ("_", "*") or span[m.end() : m.end() + 2] == "_*":
                continue
            names.add(m.group(0))
    return names


def sections(text):
    """{heading: body} for the `## ` sections of a markdown file."""
    out, heading = {}, ""
    for line in text.splitlines():
        if line.startswith("## "):
            heading = line[3:].strip()
            out[heading] = []
        else:
            out.setdefault(heading, []).append(line)
    return {h: "\n".join(body) for h, body in out.items()}


def names():
    readme = read(REPO / "README.md")
    section = readme.split("\n## Metrics", 1)[-1].split("\n## ", 1)[0]
    result = full_names(section)
    # Summaries: the latency and duration families (quantiles, `_sum`, `_count`).
    result |= {
        n + s
        for n in result
        if n.endswith("latency_seconds") or n.endswith("duration_seconds")
        for s in ("_sum", "_count")
    }
    # Histograms: the names on a line that says so.
    for line in section.splitlines():
        if "histogram" in line:
            result |= {n + s for n in full_names(line) for s in ("_bucket", "_sum", "_count")}
    return result


def identifiers(promql):
    """Metric and recording-rule names in a PromQL expression (strings, label matchers and
    ranges removed first, so label names and values never count)."""
    text = re.sub(r'"(\\.|[^"\\])*"|\'(\\.|[^\'\\])*\'|`[^`]*`', '""', promql)
    text = re.sub(r"\{[^{}]*\}", "{}", text)
    text = re.sub(r"\[[^\[\]]*\]", "[]", text)
    return re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", text)


def check(allowed_recorded):
    contract = names()
    bad = 0
    for line in sys.stdin:
        line = line.rstrip("\n")
        if not line:
            continue
        where, _, promql = line.partition("\t")
        for ident in identifiers(promql):
            unknown = (ident.startswith(("aws_apigateway_", "aws_lambda_")) and ident not in contract) or (
                ":" in ident and ident not in allowed_recorded
            )
            if unknown:
                print(f"{where}\t{ident}")
                bad += 1
    return 1 if bad else 0


def main(argv):
    if len(argv) >= 2 and argv[1] == "names":
        for n in sorted(names()):
            print(n)
        return 0
    if len(argv) >= 2 and argv[1] == "check":
        allowed, rest = set(), argv[2:]
        while rest:
            if rest[0] == "--allow" and len(rest) > 1:
                allowed.add(rest[1])
                rest = rest[2:]
            else:
                print(f"unexpected argument {rest[0]}", file=sys.stderr)
                return 2
        return check(allowed)
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
