#!/usr/bin/env python3
"""Generates the Grafana dashboards of apigateway-exporter.

    python3 dashboards/build.py          # rewrite dashboards/*.json
    python3 dashboards/build.py --check  # exit 1 if a committed JSON file is out of date

The JSON files are what users import; this script is where they are edited, so that every
panel gets the same datasource, interval, unit and layout conventions. Python 3 standard
library only. tests/dashboards.rs runs `--check` and lints the output.

Conventions (see docs/dashboards-and-alerts.md):
- every query uses the `datasource` template variable; `__inputs` (DS_PROMETHEUS) only sets
  that variable's default when the dashboard is imported through the Grafana UI;
- every rate() uses `$__rate_interval`, and panels ask for at least a 1m step: the data
  changes once per exporter poll;
- per API/stage values are de-duplicated with `max by (identity labels)` before they are
  added up, so a series scraped from several exporter replicas (sidecar mode) counts once;
  access-log families are de-duplicated per `receiver` and the receivers added up, since
  replicas that receive access logs from Firehose each hold a share of the lines;
- averages are rate(_sum) / rate(_count), never an average of quantiles;
- dashboards use only the exporter's metrics, never the alert rules' recorded series, so
  they work without the rules loaded.
"""

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
GRAFANA_VERSION = "10.0.0"
SCHEMA_VERSION = 38
DS = {"type": "prometheus", "uid": "${datasource}"}
TAGS = ["aws", "api-gateway", "apigateway-exporter"]

# Identity of a stage-level series.
IDENTITY = "account_id, region, api_id, api_name, api_type, stage"
# Identity of a route-level series: REST/HTTP add method and resource, WebSocket adds route.
ROUTE_IDENTITY = IDENTITY + ", method, resource, route"


def dedup(expr, by=IDENTITY):
    """One value per series identity, however many exporter replicas export it."""
    return f"max by ({by}) ({expr})"


# Families counted from access log lines. With access_logs.mode firehose each receiving
# replica holds a share of the lines and labels its series with `receiver`; polled ones have
# no receiver label, so this is plain de-duplication for them.
RECEIVED = {
    "aws_apigateway_throttled_requests_total",
    "aws_apigateway_responses_total",
    "aws_apigateway_route_responses_total",
    "aws_apigateway_canary_responses_total",
    "aws_apigateway_canary_base_responses_total",
    "aws_apigateway_canary_latency_seconds_sum",
    "aws_apigateway_canary_latency_seconds_count",
}


def rate(metric, sel, by=IDENTITY):
    expr = f"rate({metric}{{{sel}}}[$__rate_interval])"
    if metric in RECEIVED:
        return f"sum without (receiver) ({dedup(expr, by + ', receiver')})"
    return dedup(expr, by)


# --------------------------------------------------------------------------------------
# Panels


class Layout:
    """Places panels left to right on Grafana's 24-column grid and numbers them."""

    def __init__(self):
        self.panels = []
        self.x = 0
        self.y = 0
        self.row_h = 0
        self.next_id = 1

    def _id(self):
        i = self.next_id
        self.next_id += 1
        return i

    def row(self, title):
        self._newline()
        self.panels.append(
            {
                "type": "row",
                "title": title,
                "id": self._id(),
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def _newline(self):
        if self.x:
            self.y += self.row_h
        self.x = 0
        self.row_h = 0

    def add(self, panel, w, h):
        if self.x + w > 24:
            self._newline()
        panel["id"] = self._id()
        panel["gridPos"] = {"h": h, "w": w, "x": self.x, "y": self.y}
        self.x += w
        self.row_h = max(self.row_h, h)
        self.panels.append(panel)


def target(expr, legend="", ref="A", instant=False, table=False):
    t = {
        "datasource": DS,
        "refId": ref,
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": not instant,
        "instant": instant,
    }
    if table:
        t["format"] = "table"
    return t


def targets(*specs, instant=False, table=False):
    """specs: (expr, legend) pairs, lettered A, B, ..."""
    return [
        target(expr, legend, chr(ord("A") + i), instant, table)
        for i, (expr, legend) in enumerate(specs)
    ]


def base(kind, title, description, unit, tgts):
    return {
        "type": kind,
        "title": title,
        "description": description,
        "datasource": DS,
        "interval": "1m",
        "targets": tgts,
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "options": {},
    }


def timeseries(title, description, unit, *specs, stack=False, overrides=(), minimum=0):
    p = base("timeseries", title, description, unit, targets(*specs))
    defaults = p["fieldConfig"]["defaults"]
    defaults["color"] = {"mode": "palette-classic"}
    if minimum is not None:
        defaults["min"] = minimum
    defaults["custom"] = {
        "drawStyle": "line",
        "lineWidth": 1,
        "fillOpacity": 10,
        "showPoints": "never",
        "spanNulls": False,
        "stacking": {"mode": "normal" if stack else "none", "group": "A"},
    }
    p["fieldConfig"]["overrides"] = list(overrides)
    p["options"] = {
        "legend": {
            "displayMode": "table",
            "placement": "bottom",
            "showLegend": True,
            "calcs": ["mean", "max", "lastNotNull"],
        },
        "tooltip": {"mode": "multi", "sort": "desc"},
    }
    return p


def stat(title, description, unit, *specs, thresholds=None, calcs="lastNotNull", mappings=None):
    p = base("stat", title, description, unit, targets(*specs))
    steps = [{"color": "green", "value": None}]
    for value, color in thresholds or []:
        steps.append({"color": color, "value": value})
    p["fieldConfig"]["defaults"]["thresholds"] = {"mode": "absolute", "steps": steps}
    p["fieldConfig"]["defaults"]["color"] = {"mode": "thresholds"}
    if mappings:
        p["fieldConfig"]["defaults"]["mappings"] = mappings
    p["options"] = {
        "reduceOptions": {"calcs": [calcs], "fields": "", "values": False},
        "colorMode": "value",
        "graphMode": "area",
        "justifyMode": "auto",
        "orientation": "auto",
        "textMode": "auto",
    }
    return p


def table(title, description, unit, *specs, columns, sort=None, overrides=(), links=None):
    """An instant table. columns: value column names, one per query, in query order."""
    p = base("table", title, description, unit, targets(*specs, instant=True, table=True))
    rename = {}
    if len(specs) == 1:
        rename["Value"] = columns[0]
    else:
        for i, name in enumerate(columns):
            rename[f"Value #{chr(ord('A') + i)}"] = name
    transformations = []
    if len(specs) > 1:
        transformations.append({"id": "merge", "options": {}})
    transformations.append(
        {
            "id": "organize",
            "options": {
                "excludeByName": {"Time": True, "job": True, "instance": True},
                "renameByName": rename,
            },
        }
    )
    p["transformations"] = transformations
    p["fieldConfig"]["overrides"] = list(overrides)
    if links:
        p["fieldConfig"]["overrides"].append(
            {
                "matcher": {"id": "byName", "options": "api_name"},
                "properties": [{"id": "links", "value": links}],
            }
        )
    p["options"] = {
        "showHeader": True,
        "cellHeight": "sm",
        "footer": {"show": False, "reducer": ["sum"], "countRows": False},
        "sortBy": [{"displayName": sort or columns[0], "desc": True}],
    }
    return p


def unit_override(column, unit):
    return {
        "matcher": {"id": "byName", "options": column},
        "properties": [{"id": "unit", "value": unit}],
    }


def dashed_line(series_name, color="red"):
    """Draws a reference series (a limit, a timeout) as a dashed line without fill."""
    return {
        "matcher": {"id": "byName", "options": series_name},
        "properties": [
            {"id": "color", "value": {"mode": "fixed", "fixedColor": color}},
            {"id": "custom.lineStyle", "value": {"dash": [10, 10], "fill": "dash"}},
            {"id": "custom.fillOpacity", "value": 0},
            {"id": "custom.stacking", "value": {"mode": "none", "group": "A"}},
        ],
    }


# --------------------------------------------------------------------------------------
# Template variables


def datasource_variable():
    return {
        "name": "datasource",
        "label": "Data source",
        "type": "datasource",
        "query": "prometheus",
        # Replaced by the data source picked for DS_PROMETHEUS on import; otherwise Grafana
        # falls back to the default Prometheus data source.
        "current": {"selected": False, "text": "${DS_PROMETHEUS}", "value": "${DS_PROMETHEUS}"},
        "hide": 0,
        "includeAll": False,
        "multi": False,
        "options": [],
        "refresh": 1,
        "regex": "",
        "skipUrlSync": False,
    }


def query_variable(name, label, query, multi=True):
    v = {
        "name": name,
        "label": label,
        "type": "query",
        "datasource": DS,
        "definition": query,
        "query": query,
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
        "skipUrlSync": False,
        "options": [],
        "multi": multi,
        "includeAll": multi,
    }
    if multi:
        # `.*` also matches series without the label (API-level series have no stage).
        v["allValue"] = ".*"
        v["current"] = {"selected": True, "text": ["All"], "value": ["$__all"]}
    else:
        v["current"] = {}
    return v


def textbox_variable(name, label, value, description):
    return {
        "name": name,
        "label": label,
        "description": description,
        "type": "textbox",
        "query": value,
        "current": {"selected": False, "text": value, "value": value},
        "options": [{"selected": True, "text": value, "value": value}],
        "hide": 0,
        "skipUrlSync": False,
    }


# --------------------------------------------------------------------------------------
# Dashboard envelope


def dashboard(uid, title, description, layout, variables, annotations=()):
    kinds = sorted({p["type"] for p in layout.panels if p["type"] != "row"})
    names = {"stat": "Stat", "table": "Table", "timeseries": "Time series"}
    requires = [
        {"type": "grafana", "id": "grafana", "name": "Grafana", "version": GRAFANA_VERSION},
        {"type": "datasource", "id": "prometheus", "name": "Prometheus", "version": "1.0.0"},
    ] + [{"type": "panel", "id": k, "name": names[k], "version": ""} for k in kinds]
    return {
        "__inputs": [
            {
                "name": "DS_PROMETHEUS",
                "label": "Prometheus",
                "description": "Prometheus that scrapes apigateway-exporter",
                "type": "datasource",
                "pluginId": "prometheus",
                "pluginName": "Prometheus",
            }
        ],
        "__elements": {},
        "__requires": requires,
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
            + list(annotations)
        },
        "description": description,
        "editable": True,
        "fiscalYearStartMonth": 0,
        "graphTooltip": 1,
        "id": None,
        "links": [
            {
                "title": "API Gateway dashboards",
                "type": "dashboards",
                "tags": ["apigateway-exporter"],
                "asDropdown": True,
                "includeVars": False,
                "keepTime": True,
                "icon": "external link",
                "targetBlank": False,
                "tooltip": "",
                "url": "",
            }
        ],
        "panels": layout.panels,
        "refresh": "1m",
        "schemaVersion": SCHEMA_VERSION,
        "tags": TAGS,
        "templating": {"list": variables},
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "title": title,
        "uid": uid,
        "version": 1,
        "weekStart": "",
    }


POLLED = (
    " Values are polled from CloudWatch by apigateway-exporter and lag real time by a few"
    " minutes."
)

API_LINK = [
    {
        "title": "Open the API dashboard",
        "url": "/d/apigateway-api?var-datasource=${datasource}"
        "&var-account_id=${__data.fields.account_id}&var-region=${__data.fields.region}"
        "&var-api_name=${__data.fields.api_name}&var-stage=${__data.fields.stage}"
        "&${__url_time_range}",
    }
]


# --------------------------------------------------------------------------------------
# apigateway-overview.json


def overview():
    f = (
        'account_id=~"$account_id", region=~"$region", api_type=~"$api_type", '
        'api_name=~"$api_name", stage=~"$stage"'
    )
    # Inventory series (api_info) carry no stage label.
    f_api = 'account_id=~"$account_id", region=~"$region", api_type=~"$api_type", api_name=~"$api_name"'
    by_api = "account_id, region, api_id, api_name, stage"
    legend = "{{api_name}} / {{stage}}"

    def total(metric):
        return f"sum({rate(metric, f)})"

    def per_api(metric):
        return f"sum by ({by_api}) ({rate(metric, f)})"

    L = Layout()
    L.row("Fleet")
    L.add(
        stat(
            "Requests/s",
            "Requests per second to every selected REST and HTTP API and stage (CloudWatch"
            " Count). WebSocket traffic is counted in messages, next door." + POLLED,
            "reqps",
            (total("aws_apigateway_requests_total"), "requests/s"),
        ),
        4,
        4,
    )
    L.add(
        stat(
            "5XX ratio",
            "Share of REST and HTTP requests answered 5XX (server-side errors, including"
            " integration timeouts, 504) over the selection. The alert"
            " ApiGateway5xxErrorRateHigh fires per stage above 5 % by default.",
            "percentunit",
            (
                f"{total('aws_apigateway_5xx_errors_total')} / {total('aws_apigateway_requests_total')}",
                "5XX ratio",
            ),
            thresholds=[(0.01, "orange"), (0.05, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "4XX ratio",
            "Share of REST and HTTP requests answered 4XX (client errors: bad requests,"
            " authorization, not found, and 429 throttling) over the selection.",
            "percentunit",
            (
                f"{total('aws_apigateway_4xx_errors_total')} / {total('aws_apigateway_requests_total')}",
                "4XX ratio",
            ),
            thresholds=[(0.05, "orange"), (0.2, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Throttled (429) requests/s",
            "Requests answered 429 Too Many Requests per second (throttling and usage-plan"
            " quotas). CloudWatch has no metric for them: they come from API Gateway access"
            " logs, so this stays empty unless the exporter's access-log source is set up.",
            "reqps",
            (total("aws_apigateway_throttled_requests_total"), "429/s"),
            thresholds=[(0.001, "orange")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "Worst p99 latency",
            "Highest p99 latency (request received to response sent, integration included)"
            " of any selected REST or HTTP stage, for the latest settled CloudWatch period.",
            "s",
            (f'max(aws_apigateway_latency_seconds{{{f}, quantile="0.99"}})', "p99"),
            thresholds=[(2.5, "orange"), (10, "red")],
        ),
        4,
        4,
    )
    L.add(
        stat(
            "WebSocket messages/s",
            "Messages per second to and from the selected WebSocket APIs (CloudWatch"
            " MessageCount).",
            "mps",
            (total("aws_apigateway_websocket_messages_total"), "messages/s"),
        ),
        4,
        4,
    )

    L.row("Traffic and errors")
    L.add(
        timeseries(
            "Requests/s by API",
            "Requests per second to each REST and HTTP API and stage." + POLLED,
            "reqps",
            (per_api("aws_apigateway_requests_total"), legend),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Throttled (429) requests/s by API",
            "Requests answered 429 per second, by API, stage and reason (throttled: rate or"
            " burst limit; quota_exceeded: usage plan quota). From API Gateway access logs.",
            "reqps",
            (
                f"sum by ({by_api}, reason) ("
                + rate("aws_apigateway_throttled_requests_total", f, IDENTITY + ", reason")
                + ")",
                legend + " {{reason}}",
            ),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "5XX ratio by API",
            "Share of requests answered 5XX, by API and stage: rate of 5XX errors over rate"
            " of requests.",
            "percentunit",
            (
                f"{per_api('aws_apigateway_5xx_errors_total')} / {per_api('aws_apigateway_requests_total')}",
                legend,
            ),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "4XX ratio by API",
            "Share of requests answered 4XX, by API and stage (429s included).",
            "percentunit",
            (
                f"{per_api('aws_apigateway_4xx_errors_total')} / {per_api('aws_apigateway_requests_total')}",
                legend,
            ),
        ),
        12,
        8,
    )

    L.row("Latency")
    L.add(
        timeseries(
            "p99 latency by API",
            "p99 of Latency (request received to response sent) of each REST and HTTP stage,"
            " for the latest settled CloudWatch period. Percentiles of different stages"
            " cannot be combined, so they are shown one by one.",
            "s",
            (
                f'max by ({by_api}) (aws_apigateway_latency_seconds{{{f}, quantile="0.99"}})',
                legend,
            ),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Average latency by API",
            "Mean Latency of each REST and HTTP stage: rate of the latency sum over rate of"
            " the latency count.",
            "s",
            (
                f"{per_api('aws_apigateway_latency_seconds_sum')} / {per_api('aws_apigateway_latency_seconds_count')}",
                legend,
            ),
        ),
        12,
        8,
    )

    L.row("Top APIs")
    # Timeout of each stage: the largest reported for the stage, else the largest reported
    # for the API without a stage label, else the 29 s AWS default (same rule as the alert).
    latency = f"max by ({IDENTITY}) (aws_apigateway_integration_latency_max_seconds{{{f}}})"
    timeout_sel = 'account_id=~"$account_id", region=~"$region", api_name=~"$api_name"'
    timeout = (
        f"({latency} * 0 + on (account_id, region, api_id, stage) group_left ()"
        f" max by (account_id, region, api_id, stage) (aws_apigateway_integration_timeout_seconds{{{timeout_sel}, stage!=\"\"}}))"
        f" or ({latency} * 0 + on (account_id, region, api_id) group_left ()"
        f" max by (account_id, region, api_id) (aws_apigateway_integration_timeout_seconds{{{timeout_sel}, stage=\"\"}}))"
        f" or ({latency} * 0 + 29)"
    )
    L.add(
        table(
            "APIs closest to their integration timeout",
            "The ten stages whose maximum integration latency (latest settled period) is the"
            " largest share of their integration timeout: the largest timeout the exporter"
            " reports for the stage (or for the API), 29 s when it reports none. Above 100 %"
            " requests are answered 504. ApiGatewayLatencyNearTimeout fires at 80 % and 93 %.",
            "percentunit",
            (f"topk(10, {latency} / ({timeout}))", ""),
            columns=["share of timeout"],
            links=API_LINK,
        ),
        8,
        9,
    )
    L.add(
        table(
            "Top APIs by 5XX errors",
            "The ten REST and HTTP stages answering the most 5XX errors per second right now.",
            "reqps",
            (f"topk(10, {per_api('aws_apigateway_5xx_errors_total')} > 0)", ""),
            columns=["5XX/s"],
            links=API_LINK,
        ),
        8,
        9,
    )
    L.add(
        table(
            "Top APIs by p99 latency",
            "The ten REST and HTTP stages with the highest p99 latency in the latest settled"
            " CloudWatch period.",
            "s",
            (
                f'topk(10, max by ({by_api}) (aws_apigateway_latency_seconds{{{f}, quantile="0.99"}}))',
                "",
            ),
            columns=["p99 latency"],
            links=API_LINK,
        ),
        8,
        9,
    )

    L.row("Inventory")
    L.add(
        table(
            "APIs",
            "Every API in the exporter's inventory, with its type and endpoint type.",
            "none",
            (f"max by (account_id, region, api_id, api_name, api_type, endpoint_type) (aws_apigateway_api_info{{{f_api}}})", ""),
            columns=["exported"],
            links=None,
        ),
        24,
        8,
    )

    variables = [
        datasource_variable(),
        query_variable("account_id", "Account", "label_values(aws_apigateway_api_info, account_id)"),
        query_variable(
            "region", "Region", 'label_values(aws_apigateway_api_info{account_id=~"$account_id"}, region)'
        ),
        query_variable(
            "api_type",
            "API type",
            'label_values(aws_apigateway_api_info{account_id=~"$account_id", region=~"$region"}, api_type)',
        ),
        query_variable(
            "api_name",
            "API",
            'label_values(aws_apigateway_api_info{account_id=~"$account_id", region=~"$region",'
            ' api_type=~"$api_type"}, api_name)',
        ),
        query_variable(
            "stage",
            "Stage",
            'label_values(aws_apigateway_stage_info{account_id=~"$account_id", region=~"$region",'
            ' api_type=~"$api_type", api_name=~"$api_name"}, stage)',
        ),
    ]
    return dashboard(
        "apigateway-overview",
        "Amazon API Gateway / Overview",
        "Every REST, HTTP and WebSocket API exported by apigateway-exporter: traffic, errors,"
        " throttling, latency and the APIs closest to their integration timeout.",
        L,
        variables,
    )


# --------------------------------------------------------------------------------------
# apigateway-api.json


def api():
    s = 'account_id="$account_id", region="$region", api_name="$api_name", stage="$stage"'
    # Timeouts and account limits may be reported without a stage label.
    s_api = 'account_id="$account_id", region="$region", api_name="$api_name"'
    s_account = 'account_id="$account_id", region="$region"'

    def total(metric, sel=s):
        return f"sum({rate(metric, sel)})"

    def avg(summary, sel=s):
        return f"{total(summary + '_sum', sel)} / {total(summary + '_count', sel)}"

    timeout = (
        f"max(aws_apigateway_integration_timeout_seconds{{{s}}})"
        f' or max(aws_apigateway_integration_timeout_seconds{{{s_api}, stage=""}})'
        " or vector(29)"
    )

    L = Layout()
    L.row("Traffic")
    L.add(
        timeseries(
            "Requests/s",
            "Requests per second to this REST or HTTP stage (CloudWatch Count). WebSocket"
            " traffic is in the WebSocket row." + POLLED,
            "reqps",
            (total("aws_apigateway_requests_total"), "requests/s"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Data processed",
            "Bytes per second processed by this HTTP API stage (CloudWatch DataProcessed;"
            " HTTP APIs only).",
            "Bps",
            (total("aws_apigateway_processed_bytes_total"), "bytes/s"),
        ),
        12,
        8,
    )

    L.row("Errors")
    L.add(
        timeseries(
            "Error classes",
            "Responses per second by class: 4XX (client errors, 429 included), 5XX (server"
            " errors, 504 integration timeouts included) and 429 by reason (from access logs,"
            " when the exporter reads them).",
            "reqps",
            (total("aws_apigateway_4xx_errors_total"), "4XX"),
            (total("aws_apigateway_5xx_errors_total"), "5XX"),
            (
                "sum by (reason) ("
                + rate("aws_apigateway_throttled_requests_total", s, IDENTITY + ", reason")
                + ")",
                "429 {{reason}}",
            ),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Error ratios",
            "Share of requests answered 4XX and 5XX. The alerts fire at 5 % by default"
            " (ApiGateway4xxErrorRateHigh, ApiGateway5xxErrorRateHigh).",
            "percentunit",
            (f"{total('aws_apigateway_4xx_errors_total')} / {total('aws_apigateway_requests_total')}", "4XX"),
            (f"{total('aws_apigateway_5xx_errors_total')} / {total('aws_apigateway_requests_total')}", "5XX"),
        ),
        12,
        8,
    )

    L.row("Causes (access logs)")
    cause_by = IDENTITY + ", status, response_type"
    L.add(
        timeseries(
            "Errors by cause",
            "Responses per second by HTTP status and API Gateway response type, counted from"
            " the stage's access logs (access_logs.mode filter_log_events): INTEGRATION_TIMEOUT"
            " (504), INTEGRATION_FAILURE (502), AUTHORIZER_FAILURE, THROTTLED and QUOTA_EXCEEDED"
            " (429), WAF_FILTERED, UNAUTHORIZED, ...; none when the integration itself answered"
            " the error." + POLLED,
            "reqps",
            (
                "sum by (status, response_type) ("
                + rate("aws_apigateway_responses_total", s, cause_by)
                + ")",
                "{{status}} {{response_type}}",
            ),
            stack=True,
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "5XX: CloudWatch and access logs",
            "5XX per second as CloudWatch counts them (5XXError, 5xx) beside the 5XX responses"
            " counted from access logs, by cause: the causes should account for the whole"
            " CloudWatch line (a gap means access logs are missing for part of the traffic).",
            "reqps",
            (total("aws_apigateway_5xx_errors_total"), "5XX (CloudWatch)"),
            (
                "sum by (status, response_type) ("
                + rate("aws_apigateway_responses_total", s + ', status=~"5.."', cause_by)
                + ")",
                "{{status}} {{response_type}} (access logs)",
            ),
        ),
        12,
        8,
    )
    L.add(
        table(
            "Errors by route and cause",
            "Responses per second by method and resource (REST, HTTP) or route (WebSocket),"
            " status and response type, from the access logs' $context.resourcePath,"
            " $context.httpMethod and $context.routeKey.",
            "reqps",
            (
                "sum by (method, resource, route, status, response_type) ("
                + rate("aws_apigateway_route_responses_total", s, ROUTE_IDENTITY + ", status, response_type")
                + ")",
                "",
            ),
            columns=["responses/s"],
        ),
        12,
        9,
    )
    L.add(
        table(
            "Integrations",
            "What each method or route calls (API Gateway discovery): the integration type,"
            " the backend (Lambda function name, HTTP host, AWS service), and whether it streams"
            " its response (transfer_mode STREAM: REST response streaming; such routes are not"
            " judged against the integration timeout), with the configured timeout.",
            "s",
            (
                "max by (method, resource, route, integration_type, backend_type, backend, transfer_mode)"
                f" (aws_apigateway_integration_info{{{s_api}}})",
                "",
            ),
            (
                f"max by (method, resource, route) (aws_apigateway_integration_timeout_seconds{{{s_api}}})",
                "",
            ),
            columns=["integrated", "integration timeout"],
            sort="integration timeout",
            overrides=[unit_override("integrated", "none")],
        ),
        12,
        9,
    )

    # Lambda functions behind this API's routes (backends.lambda), joined through the
    # integration's backend name.
    behind = (
        'label_join(aws_apigateway_integration_info{%s, backend_type="lambda"},'
        ' "function_name", "", "backend")' % s_api
    )

    def lambda_rate(metric):
        return rate(metric, s_account, "account_id, region, function_name")

    def per_function(metric):
        return (
            f"sum by (function_name) ({lambda_rate(metric)}"
            f" and on(account_id, region, function_name) {behind})"
        )

    def per_route(metric):
        return (
            f"max by ({'method, resource, route'}) ({behind}"
            f" * on(account_id, region, function_name) group_left() {lambda_rate(metric)})"
        )

    L.add(
        timeseries(
            "5XX beside the Lambda functions behind it",
            "The stage's 5XX per second (CloudWatch) beside the errors and throttles of the"
            " Lambda functions its routes call (backends.lambda): function errors usually come"
            " back as 502, throttled invocations as 500/502, and neither shows in Lambda's"
            " Errors alone.",
            "reqps",
            (total("aws_apigateway_5xx_errors_total"), "API 5XX"),
            (per_function("aws_lambda_errors_total"), "{{function_name}} errors"),
            (per_function("aws_lambda_throttles_total"), "{{function_name}} throttles"),
        ),
        12,
        8,
    )
    L.add(
        table(
            "Errors by route: API and Lambda",
            "Per method and resource or route: 5XX responses per second from the access logs,"
            " and the errors and throttles per second of the Lambda function the route calls"
            " (one function may serve several routes: its whole rate shows on each).",
            "reqps",
            (
                "sum by (method, resource, route) ("
                + rate("aws_apigateway_route_responses_total", s + ', status=~"5.."', ROUTE_IDENTITY + ", status, response_type")
                + ")",
                "",
            ),
            (per_route("aws_lambda_errors_total"), ""),
            (per_route("aws_lambda_throttles_total"), ""),
            columns=["API 5XX/s", "Lambda errors/s", "Lambda throttles/s"],
        ),
        12,
        8,
    )

    L.row("Canary against base")
    by_cause = IDENTITY + ", status, response_type"

    def canary(status_re=None, family="aws_apigateway_canary_responses_total"):
        sel = s if status_re is None else f'{s}, status=~"{status_re}"'
        return f"sum({rate(family, sel, by_cause)})"

    def base(status_re=None):
        return canary(status_re, "aws_apigateway_canary_base_responses_total")

    CANARY = (
        " The canary's series come from the stage's access log split by isCanaryRequest,"
        " and so does the base's (the stage's own requests without the canary's); without"
        " that field, from every event of the canary's own access log group (the stage's"
        " group with /Canary appended), and there is no base line. The stage's come from"
        " CloudWatch, which may include the canary's requests, so the stage's line lies"
        " between the base's and the canary's. Empty while the stage runs no canary."
    )
    L.add(
        timeseries(
            "Canary traffic share",
            "The share of the stage's requests the canary release serves: configured"
            " (canarySettings.percentTraffic) and measured (canary requests over the stage's)."
            + CANARY,
            "percentunit",
            (f"max(aws_apigateway_stage_canary_traffic_percent{{{s}}}) / 100", "configured"),
            (f"{canary()} / {total('aws_apigateway_requests_total')}", "measured"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Canary 5XX ratio",
            "Share of requests answered 5XX: the canary's beside its base's and the stage's."
            " ApiGatewayCanary5xxWorseThanBase fires when the canary's is 2 points above the"
            " base's (the stage's without a base line) with at least 0.5 canary requests/s."
            + CANARY,
            "percentunit",
            (f"({canary('5..')} or vector(0)) / {canary()}", "canary"),
            (f"({base('5..')} or vector(0)) / {base()}", "base"),
            (f"{total('aws_apigateway_5xx_errors_total')} / {total('aws_apigateway_requests_total')}", "stage"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Canary 4XX ratio",
            "Share of requests answered 4XX (429 included): the canary's beside its base's and"
            " the stage's." + CANARY,
            "percentunit",
            (f"({canary('4..')} or vector(0)) / {canary()}", "canary"),
            (f"({base('4..')} or vector(0)) / {base()}", "base"),
            (f"{total('aws_apigateway_4xx_errors_total')} / {total('aws_apigateway_requests_total')}", "stage"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Canary p99 latency",
            "p99 and average response latency: the canary's ($context.responseLatency, exact"
            " over each settled period's events) beside the stage's (CloudWatch Latency). The"
            " p99 lines need p99 in latency.statistics." + CANARY,
            "s",
            (f'max(aws_apigateway_canary_latency_seconds{{{s}, quantile="0.99"}})', "canary p99"),
            (f'max(aws_apigateway_latency_seconds{{{s}, quantile="0.99"}})', "stage p99"),
            (avg("aws_apigateway_canary_latency_seconds"), "canary average"),
            (avg("aws_apigateway_latency_seconds"), "stage average"),
        ),
        12,
        8,
    )

    L.row("Latency")
    L.add(
        timeseries(
            "Latency",
            "Latency (request received to response sent, integration included): the"
            " configured CloudWatch percentiles and the maximum of the latest settled period,"
            " the average (rate of sum over rate of count), and the integration timeout as a"
            " dashed line: the largest timeout reported for the stage or API, 29 s when none"
            " is reported.",
            "s",
            (f"max by (quantile) (aws_apigateway_latency_seconds{{{s}}})", "p{{quantile}}"),
            (f"max(aws_apigateway_latency_max_seconds{{{s}}})", "max"),
            (avg("aws_apigateway_latency_seconds"), "average"),
            (timeout, "integration timeout"),
            overrides=[dashed_line("integration timeout")],
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Integration latency",
            "Integration latency (request sent to the backend to its response): percentiles,"
            " maximum and average as for Latency, against the integration timeout (dashed)."
            " ApiGatewayLatencyNearTimeout fires when the maximum passes 80 % and 93 % of it.",
            "s",
            (f"max by (quantile) (aws_apigateway_integration_latency_seconds{{{s}}})", "p{{quantile}}"),
            (f"max(aws_apigateway_integration_latency_max_seconds{{{s}}})", "max"),
            (avg("aws_apigateway_integration_latency_seconds"), "average"),
            (timeout, "integration timeout"),
            overrides=[dashed_line("integration timeout")],
        ),
        12,
        9,
    )
    L.add(
        timeseries(
            "Gateway overhead",
            "Time API Gateway itself adds to each request: average latency minus average"
            " integration latency (authorizers, mapping templates, caching, network).",
            "s",
            (f"({avg('aws_apigateway_latency_seconds')}) - ({avg('aws_apigateway_integration_latency_seconds')})", "overhead"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Cache hit ratio",
            "Share of cacheable requests served from the stage's API cache: hits over hits"
            " plus misses (REST stages with a cache cluster only).",
            "percentunit",
            (
                f"{total('aws_apigateway_cache_hits_total')} / ({total('aws_apigateway_cache_hits_total')}"
                f" + {total('aws_apigateway_cache_misses_total')})",
                "hit ratio",
            ),
        ),
        12,
        8,
    )

    L.row("Throttling")
    traffic = (
        f"{rate('aws_apigateway_requests_total', s_account)}"
        f" or {rate('aws_apigateway_websocket_messages_total', s_account)}"
    )
    stage_traffic = (
        f"{rate('aws_apigateway_requests_total', s)}"
        f" or {rate('aws_apigateway_websocket_messages_total', s)}"
    )
    L.add(
        timeseries(
            "Throttle utilisation",
            "Request rate (WebSocket: message rate) as a share of the configured rate limits:"
            " the stage's limit, and the account's regional limit shared by all its APIs."
            " Throttling starts at 100 % (earlier for bursts). ApiGatewayNearThrottleLimit"
            " fires at 80 %.",
            "percentunit",
            (
                f"sum({stage_traffic}) / max(aws_apigateway_throttle_rate_limit{{{s}, scope=\"stage\"}} > 0)",
                "stage limit",
            ),
            (
                f"sum({traffic}) / max(aws_apigateway_throttle_rate_limit{{{s_account}, scope=\"account\"}} > 0)",
                "account limit (all APIs of the region)",
            ),
        ),
        12,
        8,
    )
    L.add(
        stat(
            "Rate limits",
            "Configured steady-state rate limits in requests per second: this stage's, and"
            " the account's in this region (shared by every API of the account there).",
            "reqps",
            (f'max(aws_apigateway_throttle_rate_limit{{{s}, scope="stage"}})', "stage"),
            (f'max(aws_apigateway_throttle_rate_limit{{{s_account}, scope="account"}})', "account"),
        ),
        6,
        8,
    )
    L.add(
        stat(
            "Burst limits",
            "Configured burst limits (token bucket size, in requests): this stage's and the"
            " account's in this region.",
            "short",
            (f'max(aws_apigateway_throttle_burst_limit{{{s}, scope="stage"}})', "stage"),
            (f'max(aws_apigateway_throttle_burst_limit{{{s_account}, scope="account"}})', "account"),
        ),
        6,
        8,
    )

    L.row("Routes (detailed metrics)")
    route_by = "method, resource, route"

    def route_total(metric):
        return f"sum by ({route_by}) ({rate(metric, s, ROUTE_IDENTITY)})"

    L.add(
        table(
            "Routes",
            "Per method and resource (REST, HTTP) or route (WebSocket), for stages with"
            " CloudWatch detailed metrics enabled (billed by AWS): requests (WebSocket:"
            " messages) per second, 4XX and 5XX per second, p99 and average latency, and the"
            " configured integration timeout. Only the timeouts show for stages without"
            " detailed metrics.",
            "reqps",
            (
                f"{route_total('aws_apigateway_route_requests_total')}"
                f" or {route_total('aws_apigateway_route_websocket_messages_total')}",
                "",
            ),
            (route_total("aws_apigateway_route_4xx_errors_total"), ""),
            (route_total("aws_apigateway_route_5xx_errors_total"), ""),
            (f'max by ({route_by}) (aws_apigateway_route_latency_seconds{{{s}, quantile="0.99"}})', ""),
            (
                f"{route_total('aws_apigateway_route_latency_seconds_sum')}"
                f" / {route_total('aws_apigateway_route_latency_seconds_count')}",
                "",
            ),
            (
                f"max by ({route_by}) (aws_apigateway_integration_timeout_seconds{{{s}}}"
                f' or aws_apigateway_integration_timeout_seconds{{{s_api}, stage=""}})',
                "",
            ),
            columns=["requests/s", "4XX/s", "5XX/s", "p99 latency", "average latency", "integration timeout"],
            overrides=[
                unit_override("p99 latency", "s"),
                unit_override("average latency", "s"),
                unit_override("integration timeout", "s"),
            ],
        ),
        24,
        9,
    )

    L.row("WebSocket")
    L.add(
        timeseries(
            "WebSocket connects and messages",
            "Connection requests ($connect route, CloudWatch ConnectCount) and messages to"
            " and from clients (MessageCount) per second, for WebSocket APIs.",
            "ops",
            (total("aws_apigateway_websocket_connects_total"), "connects/s"),
            (total("aws_apigateway_websocket_messages_total"), "messages/s"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "WebSocket errors",
            "WebSocket errors per second: client errors (4XX before the integration is"
            " invoked), integration errors (the integration answered an error) and execution"
            " errors (invoking the integration failed). ApiGatewayWebSocketErrorRateHigh fires"
            " when integration plus execution errors pass 5 % of messages.",
            "ops",
            (total("aws_apigateway_websocket_client_errors_total"), "client"),
            (total("aws_apigateway_websocket_integration_errors_total"), "integration"),
            (total("aws_apigateway_websocket_execution_errors_total"), "execution"),
        ),
        12,
        8,
    )

    L.row("Configuration")
    L.add(
        table(
            "Stage settings",
            "The stage as the exporter's inventory sees it: whether CloudWatch detailed"
            " metrics (per-route families) and the API cache are enabled.",
            "none",
            (
                f"max by (api_id, api_name, api_type, stage, detailed_metrics, cache_enabled) (aws_apigateway_stage_info{{{s}}})",
                "",
            ),
            columns=["exported"],
        ),
        24,
        5,
    )

    variables = [
        datasource_variable(),
        query_variable("account_id", "Account", "label_values(aws_apigateway_api_info, account_id)", multi=False),
        query_variable(
            "region",
            "Region",
            'label_values(aws_apigateway_api_info{account_id="$account_id"}, region)',
            multi=False,
        ),
        query_variable(
            "api_name",
            "API",
            'label_values(aws_apigateway_api_info{account_id="$account_id", region="$region"}, api_name)',
            multi=False,
        ),
        query_variable(
            "stage",
            "Stage",
            'label_values(aws_apigateway_stage_info{account_id="$account_id", region="$region",'
            ' api_name="$api_name"}, stage)',
            multi=False,
        ),
    ]
    alerts = {
        "name": "API Gateway alerts",
        "datasource": DS,
        "enable": True,
        "hide": False,
        "iconColor": "red",
        "expr": 'ALERTS{alertstate="firing", alertname=~"ApiGateway.*", api_name="$api_name", stage="$stage"}',
        "step": "60s",
        "titleFormat": "{{alertname}}",
        "textFormat": "{{severity}}",
        "tagKeys": "severity",
        "useValueForTime": False,
    }
    return dashboard(
        "apigateway-api",
        "Amazon API Gateway / API",
        "One API Gateway stage in detail: traffic, error classes, latency against the"
        " integration timeout, gateway overhead, cache, throttle utilisation, routes and"
        " WebSocket activity.",
        L,
        variables,
        annotations=[alerts],
    )


# --------------------------------------------------------------------------------------
# apigateway-exporter.json


def exporter():
    j = 'job=~"$job", instance=~"$instance"'

    def by_instance(metric, extra=""):
        return f"sum by (job, instance{extra}) (rate({metric}{{{j}}}[$__rate_interval]))"

    cost_per_day = (
        f"sum(rate(aws_apigateway_exporter_cloudwatch_metrics_requested_total{{{j}}}[$__rate_interval]))"
        " * 86400 / 1000 * $price_per_1000_metrics"
    )
    L = Layout()
    L.row("Health")
    L.add(
        stat(
            "Last cycle",
            "Whether the last poll cycle of each exporter succeeded completely"
            " (aws_apigateway_exporter_up). Failing for 15 minutes fires"
            " ApiGatewayExporterCycleFailing.",
            "none",
            (f"min by (instance) (aws_apigateway_exporter_up{{{j}}})", "{{instance}}"),
            mappings=[
                {
                    "type": "value",
                    "options": {
                        "0": {"text": "failing", "color": "red", "index": 0},
                        "1": {"text": "ok", "color": "green", "index": 1},
                    },
                }
            ],
            thresholds=[],
        ),
        6,
        5,
    )
    L.add(
        stat(
            "Data age",
            "Age of the newest CloudWatch period ingested, from its end. CloudWatch publishes"
            " with a delay of one to three minutes and the exporter polls once a minute by"
            " default, so a few minutes is normal; ApiGatewayExporterDataStale fires above 15.",
            "s",
            (f"max by (instance) (aws_apigateway_exporter_data_age_seconds{{{j}}})", "{{instance}}"),
            thresholds=[(600, "orange"), (900, "red")],
        ),
        6,
        5,
    )
    L.add(
        stat(
            "Estimated CloudWatch cost per day",
            "GetMetricData cost per day at the current pace: metrics requested (counted as AWS"
            " bills them) per second x 86400 / 1000 x the price per 1,000 metrics (the"
            " price_per_1000_metrics variable, USD 0.01 by default; check your region's"
            " CloudWatch pricing). Mean over the dashboard's time range.",
            "currencyUSD",
            (cost_per_day, "USD/day"),
            calcs="mean",
        ),
        6,
        5,
    )
    L.add(
        stat(
            "Series exported",
            "API Gateway series currently exported, over all selected exporters"
            " (aws_apigateway_exporter_series).",
            "short",
            (f"sum(aws_apigateway_exporter_series{{{j}}})", "series"),
        ),
        6,
        5,
    )

    L.row("Poll cycles")
    cycle = "aws_apigateway_exporter_cycle_duration_seconds"
    L.add(
        timeseries(
            "Cycle duration",
            "How long poll cycles take: p50 and p99 from the cycle duration histogram, and the"
            " average (rate of sum over rate of count). A cycle that takes longer than the"
            " poll interval delays the data.",
            "s",
            (f"histogram_quantile(0.5, sum by (job, instance, le) (rate({cycle}_bucket{{{j}}}[$__rate_interval])))", "p50 {{instance}}"),
            (f"histogram_quantile(0.99, sum by (job, instance, le) (rate({cycle}_bucket{{{j}}}[$__rate_interval])))", "p99 {{instance}}"),
            (f"{by_instance(cycle + '_sum')} / {by_instance(cycle + '_count')}", "average {{instance}}"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Data age over time",
            "Age of the newest CloudWatch period ingested, and time since the last completely"
            " successful cycle.",
            "s",
            (f"max by (instance) (aws_apigateway_exporter_data_age_seconds{{{j}}})", "data age {{instance}}"),
            (
                f"time() - max by (instance) (aws_apigateway_exporter_last_success_timestamp_seconds{{{j}}})",
                "since last success {{instance}}",
            ),
        ),
        12,
        8,
    )
    L.add(
        table(
            "Targets",
            "Each account and region the exporter polls, and whether its last cycle succeeded"
            " completely (1) or not (0); and REST APIs left out because another REST API in"
            " the region has the same CloudWatch name.",
            "none",
            (f"max by (job, instance, account_id, region) (aws_apigateway_exporter_target_up{{{j}}})", ""),
            (f"max by (job, instance, account_id, region) (aws_apigateway_exporter_rest_name_conflicts{{{j}}})", ""),
            columns=["up", "REST name conflicts"],
        ),
        24,
        6,
    )

    L.row("AWS calls and cost")
    L.add(
        timeseries(
            "CloudWatch calls/s",
            "CloudWatch API calls per second by operation and result (success, error,"
            " throttled).",
            "reqps",
            (
                f"sum by (operation, result) (rate(aws_apigateway_exporter_cloudwatch_requests_total{{{j}}}[$__rate_interval]))",
                "{{operation}} {{result}}",
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "GetMetricData calls per cycle",
            "GetMetricData calls per poll cycle: each call carries up to 500 queries.",
            "short",
            (
                "sum by (instance) (rate(aws_apigateway_exporter_cloudwatch_requests_total"
                f'{{{j}, operation="GetMetricData"}}[$__rate_interval]))'
                f" / sum by (instance) (rate({cycle}_count{{{j}}}[$__rate_interval]))",
                "{{instance}}",
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "CloudWatch cost per day over time",
            "GetMetricData cost per day at each moment's pace (see the stat above): metrics"
            " requested per second x 86400 / 1000 x price_per_1000_metrics.",
            "currencyUSD",
            (cost_per_day, "USD/day"),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Metrics requested/s",
            "Metrics requested from GetMetricData per second, counted the way AWS bills them"
            " (aws_apigateway_exporter_cloudwatch_metrics_requested_total).",
            "cps",
            (by_instance("aws_apigateway_exporter_cloudwatch_metrics_requested_total"), "{{instance}}"),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "Discovery and STS calls/s",
            "API Gateway discovery and STS calls per second by service, operation and result.",
            "reqps",
            (
                f"sum by (service, operation, result) (rate(aws_apigateway_exporter_aws_requests_total{{{j}}}[$__rate_interval]))",
                "{{service}} {{operation}} {{result}}",
            ),
        ),
        12,
        8,
    )

    L.row("Discovery")
    target_legend = "{{account_id}} {{region}} {{instance}}"
    L.add(
        timeseries(
            "Discovery duration",
            "How long the last completed discovery of each account and region took"
            " (aws_apigateway_exporter_discovery_duration_seconds). Its calls are paced by"
            " discovery.max_requests_per_second: a refresh with nothing changed makes one call"
            " per API, so at the default budget of 2 per second a large account takes minutes.",
            "s",
            (
                f"max by (instance, account_id, region) (aws_apigateway_exporter_discovery_duration_seconds{{{j}}})",
                target_legend,
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Since the last discovery",
            "Time since each account and region's last discovery completed (every listing"
            " read to its end). It grows past discovery.refresh_interval while a refresh is"
            " paced or paused by throttling, and keeps growing while discovery fails.",
            "s",
            (
                "time() - max by (instance, account_id, region)"
                f" (aws_apigateway_exporter_discovery_last_success_timestamp_seconds{{{j}}})",
                target_legend,
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Calls waiting for the budget",
            "Discovery calls waiting for their turn under discovery.max_requests_per_second"
            " (aws_apigateway_exporter_discovery_calls_waiting): a few while a discovery runs,"
            " more while a throttled answer pauses the budget.",
            "short",
            (
                f"max by (instance) (aws_apigateway_exporter_discovery_calls_waiting{{{j}}})",
                "{{instance}}",
            ),
        ),
        5,
        8,
    )
    L.add(
        stat(
            "APIs failing discovery",
            "APIs whose discovery reads failed in the last discovery"
            " (aws_apigateway_exporter_discovery_api_failures); each keeps its last known"
            " stages and integrations, and the exporter's log names it and the error.",
            "short",
            (
                f"count(aws_apigateway_exporter_discovery_api_failures{{{j}}}) or vector(0)",
                "APIs",
            ),
            thresholds=[(1, "orange")],
        ),
        3,
        8,
    )

    L.row("Metric stream")
    L.add(
        timeseries(
            "Firehose deliveries/s",
            "Deliveries to the metric stream endpoint (stream.enabled) per second by result:"
            " accepted, duplicate (a retry of a request already read), unauthorized (401: the"
            " delivery stream's access key does not match), invalid (400) and too_large (413)."
            " Anything but accepted and duplicate means Firehose is failing to deliver (its"
            " retries, then its S3 backup, get the data). Flat at 0 without a stream.",
            "reqps",
            (
                f"sum by (result) (rate(aws_apigateway_exporter_stream_requests_total{{{j}}}[$__rate_interval]))",
                "{{result}}",
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Stream records/s",
            "Metric stream records (one metric, one minute) per second by result: accepted;"
            " late (arrived more than poll.lookback after their minute, not counted);"
            " unchanged (duplicates, older aggregates); ignored (metrics the exporter does not"
            " read: narrow the stream's include filter); out_of_range; refused (past 50,000"
            " metrics held).",
            "cps",
            (
                f"sum by (result) (rate(aws_apigateway_exporter_stream_records_total{{{j}}}[$__rate_interval]))",
                "{{result}}",
            ),
        ),
        8,
        8,
    )
    L.add(
        timeseries(
            "Metric stream cost per day",
            "What the stream's updates cost per day at each moment's pace: records received"
            " per second x 86400 / 1000 x price_per_1000_updates (USD 0.003 by default;"
            " additional statistics bill more). Beside the GetMetricData cost above, the two"
            " make the CloudWatch bill for API Gateway metrics (plus Firehose).",
            "currencyUSD",
            (
                f"sum(rate(aws_apigateway_exporter_stream_records_total{{{j}}}[$__rate_interval]))"
                " * 86400 / 1000 * $price_per_1000_updates",
                "USD/day",
            ),
        ),
        8,
        8,
    )

    L.row("Errors and inventory")
    L.add(
        timeseries(
            "Errors by kind",
            "Failures per second by kind: CloudWatch calls that failed or were throttled,"
            " discovery/STS calls that failed, GetMetricData queries answered InternalError or"
            " Forbidden, and CloudWatch returning less than before for an already counted"
            " period (ignored by the exporter).",
            "cps",
            (
                "sum by (operation, result) (rate(aws_apigateway_exporter_cloudwatch_requests_total"
                f'{{{j}, result!="success"}}[$__rate_interval]))',
                "cloudwatch {{operation}} {{result}}",
            ),
            (
                "sum by (service, operation, result) (rate(aws_apigateway_exporter_aws_requests_total"
                f'{{{j}, result!="success"}}[$__rate_interval]))',
                "{{service}} {{operation}} {{result}}",
            ),
            (
                f"sum by (status) (rate(aws_apigateway_exporter_query_errors_total{{{j}}}[$__rate_interval]))",
                "query {{status}}",
            ),
            (
                f"sum(rate(aws_apigateway_exporter_period_value_decreases_total{{{j}}}[$__rate_interval]))",
                "period value decreases",
            ),
        ),
        12,
        8,
    )
    L.add(
        timeseries(
            "APIs in the inventory",
            "APIs the exporter has discovered, by type.",
            "short",
            (f"sum by (api_type) (aws_apigateway_exporter_apis{{{j}}})", "{{api_type}}"),
            stack=True,
        ),
        12,
        8,
    )

    L.row("Version")
    L.add(
        table(
            "Build",
            "Version and revision of each exporter; demo=true marks synthetic data from"
            " --demo.",
            "none",
            (f"max by (job, instance, version, revision, demo) (aws_apigateway_exporter_build_info{{{j}}})", ""),
            columns=["running"],
        ),
        24,
        5,
    )

    variables = [
        datasource_variable(),
        query_variable("job", "Job", "label_values(aws_apigateway_exporter_build_info, job)"),
        query_variable(
            "instance", "Instance", 'label_values(aws_apigateway_exporter_build_info{job=~"$job"}, instance)'
        ),
        textbox_variable(
            "price_per_1000_metrics",
            "USD per 1,000 metrics",
            "0.01",
            "CloudWatch GetMetricData price per 1,000 metrics requested in your region.",
        ),
        textbox_variable(
            "price_per_1000_updates",
            "USD per 1,000 stream updates",
            "0.003",
            "CloudWatch Metric Streams price per 1,000 metric updates in your region.",
        ),
    ]
    return dashboard(
        "apigateway-exporter",
        "Amazon API Gateway / Exporter",
        "apigateway-exporter itself: poll cycles, data freshness, CloudWatch calls and their"
        " estimated cost, errors by kind, and series exported.",
        L,
        variables,
    )


DASHBOARDS = {
    "apigateway-overview.json": overview,
    "apigateway-api.json": api,
    "apigateway-exporter.json": exporter,
}


def render(build):
    return json.dumps(build(), indent=2, ensure_ascii=False) + "\n"


def main(argv):
    check = "--check" in argv[1:]
    stale = []
    for name, build in DASHBOARDS.items():
        path = HERE / name
        text = render(build)
        if check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(
            "out of date: " + ", ".join(stale) + " (run: python3 dashboards/build.py)",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
