#!/usr/bin/env python3
"""Reads Grafana dashboards and prints their PromQL, or facts about them, one per line.

    python3 tests/dashboard_queries.py queries [--demo] [--var NAME=VALUE]... [--rate-interval 5m] FILE...
    python3 tests/dashboard_queries.py facts FILE...

`queries` prints every query with the template variables substituted, ready to send to a
Prometheus: `<dashboard uid> TAB <panel|variable|annotation> TAB <id> TAB <refId> TAB <expr>`.
Variables take, in order: --var; with --demo, the demo's values (`apigateway-exporter --demo`)
for the single-value variables; the variable's "All" value (`.*`) or textbox default.
Grafana's interval variables become --rate-interval (default 5m), 1m for $__interval and 1h
for $__range. A variable query `label_values(SELECTOR, LABEL)` is printed as
`group by (LABEL) (SELECTOR)`, which returns the variable's values.

`facts` prints what tests/dashboards.rs lints, tab-separated, tabs and newlines in values
replaced by spaces:
    dashboard   FILE UID TITLE ID(null|...) SCHEMA_VERSION
    input       UID NAME TYPE PLUGIN_ID
    require     UID TYPE ID
    variable    UID NAME TYPE DATASOURCE_UID MULTI INCLUDE_ALL QUERY
    panel       UID ID TYPE DATASOURCE_UID UNIT TITLE DESCRIPTION
    target      UID PANEL_ID REF_ID DATASOURCE_UID EXPR
    annotation  UID NAME DATASOURCE_UID EXPR
    undefined   UID WHERE NAME        (a $variable that the dashboard does not define)

Python 3 standard library only; exits 2 on unreadable input.
"""

import json
import re
import sys

# Values of the built-in demo (src/demo.rs): an API and stage that have data.
DEMO = {
    "account_id": "000000000000",
    "region": "demo-region-1",
    "api_name": "payments",
    "stage": "prod",
}

BUILTIN = {"__rate_interval", "__interval", "__range", "__interval_ms", "__range_s", "__range_ms"}
VAR_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(\w+)|\[\[(\w+)\]\]")


def clean(value):
    return re.sub(r"[\t\r\n]+", " ", str(value)).strip()


def ds_uid(ds):
    if isinstance(ds, dict):
        return ds.get("uid") or "-"
    return ds or "-"


def walk_panels(panels):
    for p in panels or []:
        yield p
        yield from walk_panels(p.get("panels"))


def variable_query(v):
    q = v.get("query")
    if isinstance(q, dict):
        q = q.get("query", "")
    return q or ""


def label_values_to_promql(query):
    m = re.fullmatch(r"\s*label_values\((.*),\s*(\w+)\s*\)\s*", query, re.S)
    if not m:
        return None
    return f"group by ({m.group(2)}) ({m.group(1).strip()})"


def refs(text):
    for m in VAR_REF.finditer(text):
        yield m.group(1) or m.group(2) or m.group(3)


def substitute(text, values, rate_interval):
    builtins = {
        "__rate_interval": rate_interval,
        "__interval": "1m",
        "__interval_ms": "60000",
        "__range": "1h",
        "__range_s": "3600",
        "__range_ms": "3600000",
    }

    def repl(m):
        name = m.group(1) or m.group(2) or m.group(3)
        if name in builtins:
            return builtins[name]
        if name in values:
            return values[name]
        return m.group(0)

    return VAR_REF.sub(repl, text)


def load(path):
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        print(f"{path}: {e}", file=sys.stderr)
        sys.exit(2)


def variable_values(dash, overrides, demo):
    values = {}
    for v in dash.get("templating", {}).get("list", []):
        name = v.get("name")
        if v.get("type") == "textbox":
            values[name] = variable_query(v)
        elif v.get("multi") or v.get("includeAll"):
            values[name] = v.get("allValue") or ".*"
        elif demo and name in DEMO:
            values[name] = DEMO[name]
        else:
            values[name] = ".*"
    values.update(overrides)
    return values


def queries(files, overrides, demo, rate_interval):
    for path in files:
        dash = load(path)
        uid = dash.get("uid", path)
        values = variable_values(dash, overrides, demo)
        for v in dash.get("templating", {}).get("list", []):
            if v.get("type") != "query":
                continue
            promql = label_values_to_promql(variable_query(v))
            if promql:
                print(f"{uid}\tvariable\t{v['name']}\t-\t{clean(substitute(promql, values, rate_interval))}")
        for p in walk_panels(dash.get("panels")):
            for t in p.get("targets", []):
                if t.get("hide") or not t.get("expr"):
                    continue
                expr = clean(substitute(t["expr"], values, rate_interval))
                print(f"{uid}\tpanel\t{p.get('id')}\t{t.get('refId', '-')}\t{expr}")
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("expr"):
                expr = clean(substitute(a["expr"], values, rate_interval))
                print(f"{uid}\tannotation\t{clean(a.get('name'))}\t-\t{expr}")


def facts(files):
    for path in files:
        dash = load(path)
        uid = dash.get("uid", "-")
        schema = dash.get("schemaVersion", "-")
        dash_id = "null" if dash.get("id") is None else dash.get("id")
        print(f"dashboard\t{path}\t{uid}\t{clean(dash.get('title', ''))}\t{dash_id}\t{schema}")
        for i in dash.get("__inputs", []):
            print(f"input\t{uid}\t{i.get('name')}\t{i.get('type')}\t{i.get('pluginId')}")
        for r in dash.get("__requires", []):
            print(f"require\t{uid}\t{r.get('type')}\t{r.get('id')}")
        defined = set(BUILTIN)
        variables = dash.get("templating", {}).get("list", [])
        for v in variables:
            defined.add(v.get("name"))
            print(
                f"variable\t{uid}\t{v.get('name')}\t{v.get('type')}\t{ds_uid(v.get('datasource'))}"
                f"\t{str(bool(v.get('multi'))).lower()}\t{str(bool(v.get('includeAll'))).lower()}"
                f"\t{clean(variable_query(v))}"
            )

        def check(where, text):
            for name in refs(text):
                if name not in defined and name != "DS_PROMETHEUS":
                    print(f"undefined\t{uid}\t{where}\t{name}")

        for v in variables:
            check(f"variable {v.get('name')}", variable_query(v))
        for p in walk_panels(dash.get("panels")):
            unit = p.get("fieldConfig", {}).get("defaults", {}).get("unit", "")
            print(
                f"panel\t{uid}\t{p.get('id')}\t{p.get('type')}\t{ds_uid(p.get('datasource'))}"
                f"\t{clean(unit) or '-'}\t{clean(p.get('title', '')) or '-'}"
                f"\t{clean(p.get('description', '')) or '-'}"
            )
            for t in p.get("targets", []):
                expr = t.get("expr", "")
                print(
                    f"target\t{uid}\t{p.get('id')}\t{t.get('refId', '-')}"
                    f"\t{ds_uid(t.get('datasource'))}\t{clean(expr) or '-'}"
                )
                check(f"panel {p.get('id')} {t.get('refId')}", expr)
            for link in _links(p):
                check(f"panel {p.get('id')} link", link)
        for a in dash.get("annotations", {}).get("list", []):
            if a.get("builtIn"):
                continue
            print(f"annotation\t{uid}\t{clean(a.get('name'))}\t{ds_uid(a.get('datasource'))}\t{clean(a.get('expr', '')) or '-'}")
            check(f"annotation {a.get('name')}", a.get("expr", ""))


def _links(panel):
    """URLs of data links, minus Grafana's own ${__...} variables."""
    for o in panel.get("fieldConfig", {}).get("overrides", []):
        for prop in o.get("properties", []):
            if prop.get("id") == "links":
                for link in prop.get("value", []):
                    yield re.sub(r"\$\{__[\w.]+\}", "", link.get("url", ""))


def main(argv):
    if len(argv) < 3 or argv[1] not in ("queries", "facts"):
        print(__doc__, file=sys.stderr)
        return 2
    mode, rest = argv[1], argv[2:]
    overrides, files, demo, rate_interval = {}, [], False, "5m"
    i = 0
    while i < len(rest):
        a = rest[i]
        if a == "--var":
            name, _, value = rest[i + 1].partition("=")
            overrides[name] = value
            i += 2
        elif a == "--demo":
            demo = True
            i += 1
        elif a == "--rate-interval":
            rate_interval = rest[i + 1]
            i += 2
        else:
            files.append(a)
            i += 1
    if mode == "queries":
        queries(files, overrides, demo, rate_interval)
    else:
        facts(files)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
