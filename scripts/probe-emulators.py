"""Probes the emulators' behaviour that the exporter's tests rely on.

Run with the moto venv's Python (it has boto3) while `scripts/emulators.sh start` is up:
    ~/.cache/apigateway-exporter-tools/moto-venv/bin/python scripts/probe-emulators.py
Prints facts as it goes; the findings are written up in scripts/EMULATOR-FINDINGS.md.
"""

import datetime as dt
import json
import os
import uuid

import boto3
import botocore.exceptions

LS = os.environ.get("APIGW_TEST_LOCALSTACK", "http://127.0.0.1:4566")
MOTO = os.environ.get("APIGW_TEST_MOTO", "http://127.0.0.1:5055")
KW = dict(region_name="us-east-1", aws_access_key_id="test", aws_secret_access_key="test")
UTC = dt.timezone.utc


def client(name, url):
    return boto3.client(name, endpoint_url=url, **KW)


def show(label, value):
    print(f"{label}: {json.dumps(value, default=str, ensure_ascii=False)}")


def err(e):
    r = e.response
    return {
        "code": r.get("Error", {}).get("Code"),
        "message": r.get("Error", {}).get("Message"),
        "http": r.get("ResponseMetadata", {}).get("HTTPStatusCode"),
    }


def q(qid, api, stage, stat, metric="Count", period=60):
    return {
        "Id": qid,
        "MetricStat": {
            "Metric": {
                "Namespace": "AWS/ApiGateway",
                "MetricName": metric,
                "Dimensions": [{"Name": "ApiName", "Value": api}, {"Name": "Stage", "Value": stage}],
            },
            "Period": period,
            "Stat": stat,
        },
        "ReturnData": True,
    }


def results(resp):
    return {
        r["Id"]: {
            "Timestamps": [t.strftime("%m-%d %H:%M:%S") for t in r["Timestamps"]],
            "Values": r["Values"],
            "StatusCode": r["StatusCode"],
        }
        for r in resp["MetricDataResults"]
    }


def cloudwatch():
    print("== a. LocalStack CloudWatch ==")
    cw = client("cloudwatch", LS)
    print("protocol:", cw.meta.service_model.protocol)
    api = f"probe-{uuid.uuid4().hex[:8]}"
    now = dt.datetime.now(UTC).replace(second=0, microsecond=0)
    m = lambda k: now - dt.timedelta(minutes=k)  # noqa: E731
    dims = lambda s: [{"Name": "ApiName", "Value": api}, {"Name": "Stage", "Value": s}]  # noqa: E731
    print("now (minute):", now.isoformat(), "api:", api)
    cw.put_metric_data(
        Namespace="AWS/ApiGateway",
        MetricData=[
            # t-8m + 17 s (not aligned) and t-8m + 40 s: same minute, two values
            {"MetricName": "Count", "Dimensions": dims("prod"), "Timestamp": m(8) + dt.timedelta(seconds=17), "Value": 3},
            {"MetricName": "Count", "Dimensions": dims("prod"), "Timestamp": m(8) + dt.timedelta(seconds=40), "Value": 4},
            {"MetricName": "Count", "Dimensions": dims("prod"), "Timestamp": m(7), "Value": 5},
            # Values + Counts: 10x1, 1x2, 2x3 -> Sum 18, SampleCount 13, Max 3
            {"MetricName": "Count", "Dimensions": dims("prod"), "Timestamp": m(6), "Values": [1, 2, 3], "Counts": [10, 1, 2]},
            {"MetricName": "Count", "Dimensions": dims("beta"), "Timestamp": m(6), "Value": 100},
        ],
    )
    start, end = m(10), now
    stats = ["Sum", "SampleCount", "Maximum", "Average"]
    qs = [q(f"q{i}", api, "prod", s) for i, s in enumerate(stats)]
    r = cw.get_metric_data(MetricDataQueries=qs, StartTime=start, EndTime=end)
    show("prod Sum/SampleCount/Max/Avg (default ScanBy)", results(r))
    r = cw.get_metric_data(MetricDataQueries=qs[:1], StartTime=start, EndTime=end, ScanBy="TimestampAscending")
    show("prod Sum ScanBy=TimestampAscending", results(r))

    try:
        r = cw.get_metric_data(MetricDataQueries=[q("p", api, "prod", "p99")], StartTime=start, EndTime=end)
        show("p99 alone", results(r))
    except botocore.exceptions.ClientError as e:
        show("p99 alone -> error", err(e))
    try:
        r = cw.get_metric_data(MetricDataQueries=[qs[0], q("p", api, "prod", "p99")], StartTime=start, EndTime=end)
        show("Sum + p99 in one call", results(r))
    except botocore.exceptions.ClientError as e:
        show("Sum + p99 in one call -> error", err(e))

    # A second value into an already-read minute (t-7m): does the next read include it?
    cw.put_metric_data(
        Namespace="AWS/ApiGateway",
        MetricData=[{"MetricName": "Count", "Dimensions": dims("prod"), "Timestamp": m(7) + dt.timedelta(seconds=30), "Value": 2}],
    )
    r = cw.get_metric_data(MetricDataQueries=qs[:2], StartTime=start, EndTime=end)
    show("after 2nd put into t-7m (Sum, SampleCount)", results(r))

    # Two dimension sets in one call + a set that matches nothing
    r = cw.get_metric_data(
        MetricDataQueries=[q("prod", api, "prod", "Sum"), q("beta", api, "beta", "Sum"), q("none", api, "nosuch", "Sum")],
        StartTime=start,
        EndTime=end,
    )
    show("prod / beta / no-match in one call", results(r))
    show("Messages", r.get("Messages"))

    # Partial dimension set (ApiName only): CloudWatch treats dimension sets as exact
    partial = q("apionly", api, "prod", "Sum")
    partial["MetricStat"]["Metric"]["Dimensions"] = [{"Name": "ApiName", "Value": api}]
    r = cw.get_metric_data(MetricDataQueries=[partial], StartTime=start, EndTime=end)
    show("ApiName only (no Stage) Sum", results(r))

    # StartTime/EndTime not aligned to the period
    r = cw.get_metric_data(
        MetricDataQueries=qs[:1],
        StartTime=m(8) + dt.timedelta(seconds=13),
        EndTime=now - dt.timedelta(seconds=7),
    )
    show("unaligned Start=t-8m+13s End=t-7s", results(r))
    # Window that starts mid-minute after both t-8m points
    r = cw.get_metric_data(MetricDataQueries=qs[:1], StartTime=m(8) + dt.timedelta(seconds=45), EndTime=now)
    show("Start=t-8m+45s", results(r))

    # Period 300
    r = cw.get_metric_data(MetricDataQueries=[q("p300", api, "prod", "Sum", period=300)], StartTime=m(10), EndTime=now)
    show("Period=300 Sum, Start=t-10m", results(r))
    r = cw.get_metric_data(MetricDataQueries=[q("p300", api, "prod", "Sum", period=300)], StartTime=m(9), EndTime=now)
    show("Period=300 Sum, Start=t-9m", results(r))

    # Query count limit
    for n in (500, 501):
        try:
            r = cw.get_metric_data(
                MetricDataQueries=[q(f"q{i}", api, "prod", "Sum") for i in range(n)], StartTime=start, EndTime=end
            )
            print(f"{n} queries: ok, {len(r['MetricDataResults'])} results, NextToken={r.get('NextToken')!r}")
        except botocore.exceptions.ClientError as e:
            show(f"{n} queries -> error", err(e))

    # MaxDatapoints / pagination
    r = cw.get_metric_data(MetricDataQueries=qs[:1], StartTime=start, EndTime=end, MaxDatapoints=1)
    show("MaxDatapoints=1", {"results": results(r), "NextToken": r.get("NextToken")})

    # Future (+10 min) and old (-15 days) datapoints
    for label, ts in (("future +10m", now + dt.timedelta(minutes=10)), ("old -15d", now - dt.timedelta(days=15))):
        try:
            cw.put_metric_data(
                Namespace="AWS/ApiGateway",
                MetricData=[{"MetricName": "Count", "Dimensions": dims("edge"), "Timestamp": ts, "Value": 1}],
            )
            r = cw.get_metric_data(
                MetricDataQueries=[q("e", api, "edge", "Sum")],
                StartTime=ts - dt.timedelta(minutes=5),
                EndTime=ts + dt.timedelta(minutes=5),
            )
            show(f"put {label}: accepted; read back", results(r))
        except botocore.exceptions.ClientError as e:
            show(f"put {label} -> error", err(e))

    # Other sanity: list_metrics sees our dimensions
    lm = cw.list_metrics(Namespace="AWS/ApiGateway", Dimensions=[{"Name": "ApiName", "Value": api}])
    show("list_metrics dims", sorted({tuple((d["Name"], d["Value"]) for d in x["Dimensions"]) for x in lm["Metrics"]}))


def rest_apis():
    print("== b. LocalStack API Gateway (REST) + STS ==")
    ag = client("apigateway", LS)
    tag = uuid.uuid4().hex[:6]
    a = ag.create_rest_api(name=f"café-api-{tag}", tags={"team": "probe"})
    b1 = ag.create_rest_api(name=f"dup-{tag}")
    b2 = ag.create_rest_api(name=f"dup-{tag}")
    show("create_rest_api ids", {"café": a["id"], "dup1": b1["id"], "dup2": b2["id"], "café name back": a["name"]})
    root = ag.get_resources(restApiId=a["id"])["items"][0]["id"]
    ag.put_method(restApiId=a["id"], resourceId=root, httpMethod="GET", authorizationType="NONE")
    ag.put_integration(restApiId=a["id"], resourceId=root, httpMethod="GET", type="MOCK")
    d = ag.create_deployment(restApiId=a["id"], stageName="prod")
    show("create_deployment(stageName=prod)", {"id": d["id"]})
    try:
        s = ag.update_stage(
            restApiId=a["id"],
            stageName="prod",
            patchOperations=[{"op": "replace", "path": "/*/*/metrics/enabled", "value": "true"}],
        )
        show("update_stage metrics/enabled -> methodSettings", s.get("methodSettings"))
    except botocore.exceptions.ClientError as e:
        show("update_stage -> error", err(e))
    ag.create_stage(restApiId=a["id"], stageName="dev", deploymentId=d["id"])
    st = ag.get_stages(restApiId=a["id"])
    show(
        "get_stages",
        [{k: x.get(k) for k in ("stageName", "deploymentId", "methodSettings", "tags")} for x in st["item"]],
    )
    page = ag.get_rest_apis(limit=1)
    seen = [i["name"] for i in page.get("items", [])]
    pos = page.get("position")
    pages = 1
    while pos and pages < 100:
        page = ag.get_rest_apis(limit=1, position=pos)
        seen += [i["name"] for i in page.get("items", [])]
        pos = page.get("position")
        pages += 1
    total = len(ag.get_rest_apis(limit=500)["items"])
    show("get_rest_apis(limit=1) paging", {"pages": pages, "names_seen": len(seen), "distinct": len(set(seen)), "total(limit=500)": total})
    show("get_rest_api tags", ag.get_rest_api(restApiId=a["id"]).get("tags"))
    acct = ag.get_account()
    acct.pop("ResponseMetadata", None)
    show("get_account", acct)
    sts = client("sts", LS)
    show("sts get_caller_identity", {k: v for k, v in sts.get_caller_identity().items() if k != "ResponseMetadata"})


def http_apis():
    print("== c. moto apigatewayv2 ==")
    v2 = client("apigatewayv2", MOTO)
    tag = uuid.uuid4().hex[:6]
    h = v2.create_api(Name=f"http-{tag}", ProtocolType="HTTP", Tags={"team": "probe"})
    w = v2.create_api(
        Name=f"ws-{tag}", ProtocolType="WEBSOCKET", RouteSelectionExpression="$request.body.action"
    )
    show("create_api", {"http": [h["ApiId"], h["ProtocolType"], h.get("Tags")], "ws": [w["ApiId"], w["ProtocolType"]]})
    v2.create_stage(ApiId=h["ApiId"], StageName="$default", AutoDeploy=True)
    v2.create_stage(ApiId=h["ApiId"], StageName="prod", DefaultRouteSettings={"DetailedMetricsEnabled": True}, Tags={"env": "prod"})
    v2.create_stage(ApiId=w["ApiId"], StageName="prod", DefaultRouteSettings={"DetailedMetricsEnabled": True})
    st = v2.get_stages(ApiId=h["ApiId"])
    show(
        "get_stages(http)",
        {"items": [{k: x.get(k) for k in ("StageName", "DefaultRouteSettings", "Tags", "AutoDeploy")} for x in st["Items"]], "NextToken": st.get("NextToken")},
    )
    try:
        st1 = v2.get_stages(ApiId=h["ApiId"], MaxResults="1")
        show("get_stages(MaxResults=1)", {"n": len(st1["Items"]), "NextToken": st1.get("NextToken")})
    except botocore.exceptions.ClientError as e:
        show("get_stages(MaxResults=1) -> error", err(e))
    p = v2.get_apis(MaxResults="1")
    seen = [i["Name"] for i in p["Items"]]
    tok, pages = p.get("NextToken"), 1
    while tok and pages < 100:
        p = v2.get_apis(MaxResults="1", NextToken=tok)
        seen += [i["Name"] for i in p["Items"]]
        tok, pages = p.get("NextToken"), pages + 1
    total = len(v2.get_apis()["Items"])
    show("get_apis(MaxResults=1) paging", {"pages": pages, "names_seen": len(seen), "total(no limit)": total})
    show("get_tags(http)", v2.get_tags(ResourceArn=f"arn:aws:apigateway:us-east-1::/apis/{h['ApiId']}").get("Tags"))
    v2.tag_resource(ResourceArn=f"arn:aws:apigateway:us-east-1::/apis/{w['ApiId']}", Tags={"x": "y"})
    show("get_api(ws).Tags after tag_resource", v2.get_api(ApiId=w["ApiId"]).get("Tags"))
    show("get_api(http) keys", sorted(k for k in v2.get_api(ApiId=h["ApiId"]) if k != "ResponseMetadata"))


if __name__ == "__main__":
    import sys

    parts = sys.argv[1:] or ["a", "b", "c"]
    if "a" in parts:
        cloudwatch()
    if "b" in parts:
        rest_apis()
    if "c" in parts:
        http_apis()
