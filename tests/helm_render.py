"""Helm's own engine for tests/helm.rs, through helm-python-sdk (Helm v4's Go SDK as a library;
there is no helm binary in CI).

    helm_render.py lint CHART [--values FILE] [--kube-version V]
        prints {"total_charts_linted", "messages": [{"severity", "path", "error"}], "errors",
        "fail_messages"} (severity 1 info, 2 warning, 3 error); exit 0, the caller judges.
        Helm lints in its engine's lint mode, where a template's `fail` is logged, not an
        error: "fail_messages" are those log lines, taken from the engine's stderr (Helm's Go
        logger writes there directly; helm_python.enable_logging does not receive it).
    helm_render.py render CHART [--values FILE] [--name NAME] [--namespace NS]
        prints {"manifests": {template path: rendered text}, "values": the values the render
        used (the chart's coalesced with the file's)}; NOTES.txt is among the manifests.
    helm_render.py package CHART DESTINATION
        prints {"archive": the .tgz path}, as `helm package` writes it; lint and render take
        such an archive as CHART too.

Values files are parsed by Helm itself (values_from_yaml), as `helm -f FILE` would, and
coalesced with the chart's values.yaml by the render. Failures go to stderr with the exit
code saying what failed: 3 the values (values.schema.json), 4 a template (`fail` included),
5 loading the chart, 1 anything else.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile

import helm_python as helm

EXIT_VALUES = 3
EXIT_RENDER = 4
EXIT_LOAD = 5


def values_of(path: str | None) -> dict | None:
    if path is None:
        return None
    with open(path, encoding="utf-8") as f:
        return helm.values_from_yaml(f.read())


def with_engine_log(call):
    """Runs call() with file descriptor 2 captured; returns its result and what was written
    there (then passed on to the real stderr)."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as log:
        os.dup2(log.fileno(), 2)
        try:
            result = call()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        log.seek(0)
        text = log.read().decode("utf-8", errors="replace")
    sys.stderr.write(text)
    return result, text


def fail_messages(log: str) -> list[str]:
    """The messages of `fail` calls the engine logged in lint mode (slog's quoted text)."""
    messages = []
    for quoted in re.findall(r'funcMap fail message="((?:[^"\\]|\\.)*)"', log):
        try:
            messages.append(json.loads(f'"{quoted}"'))
        except json.JSONDecodeError:  # Go's \x.. escapes: keep the quoted text
            messages.append(quoted)
    return messages


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    lint = sub.add_parser("lint")
    lint.add_argument("chart")
    lint.add_argument("--values")
    lint.add_argument("--kube-version")
    render = sub.add_parser("render")
    render.add_argument("chart")
    render.add_argument("--values")
    render.add_argument("--name", default="apigateway-exporter")
    render.add_argument("--namespace", default="monitoring")
    pack = sub.add_parser("package")
    pack.add_argument("chart")
    pack.add_argument("destination")
    args = parser.parse_args()

    try:
        values = values_of(getattr(args, "values", None))
        if args.command == "package":
            archive = helm.package(args.chart, destination=args.destination)
            json.dump({"archive": archive}, sys.stdout)
        elif args.command == "lint":
            report, log = with_engine_log(
                lambda: helm.lint(args.chart, values, kube_version=args.kube_version)
            )
            report["fail_messages"] = fail_messages(log)
            json.dump(report, sys.stdout)
        else:
            with helm.Chart.load(args.chart) as chart:
                manifests = chart.render(
                    values=values, name=args.name, namespace=args.namespace, is_install=True
                )
                merged = chart.merge_values(values)
            json.dump({"manifests": manifests, "values": merged}, sys.stdout)
    except helm.HelmValuesError as e:
        print(f"values rejected: {e}", file=sys.stderr)
        return EXIT_VALUES
    except helm.HelmRenderError as e:
        print(f"render failed: {e}", file=sys.stderr)
        return EXIT_RENDER
    except helm.HelmChartLoadError as e:
        print(f"chart not loaded: {e}", file=sys.stderr)
        return EXIT_LOAD
    except helm.HelmError as e:
        print(f"helm failed ({type(e).__name__}): {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
