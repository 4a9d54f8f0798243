"""`irisctl aws up` keeps the deployment's alarms, their SNS topic and its dashboard: checked
with boto3 against moto in server mode, and against what the service and the host really emit.

One deployment's story, in order (later tests build on earlier ones): up, status with the
dashboard's URL, an inventory override that changes the alarms and nothing else. A second up
that changes nothing and down --all removing the alarms, topic and dashboard are test_aws.py's
story (every up keeps them). Bad input gets its own deployment names and creates nothing.
"""

from __future__ import annotations

import inspect
import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cli_helpers import aws_env, run, stdout_json
from iris_service import emf
from iris_service import errors as service_errors
from irisctl.paths import project_root
from irisctl.sandbox.aws_standin import (
    MOTO_KEYS,
    deployment_inventory,
    moto_client,
)

REGION = "us-east-2"
DEPLOYMENT = "iris-mon"
EMAIL = "ops@iris-mon.example"
ALARMS = {
    "system-status",
    "instance-status",
    "unhealthy",
    "latency-p99",
    "daily-cost",
    "disk-used",
    "certificate-expiry",
    "failure-rate",
}
# How each alarm treats missing data (roles/aws_alarms/defaults/main.yml says why).
MISSING_DATA = {
    "system-status": "missing",
    "instance-status": "missing",
    "unhealthy": "breaching",
    "latency-p99": "notBreaching",
    "daily-cost": "notBreaching",
    "disk-used": "notBreaching",
    "certificate-expiry": "notBreaching",
    "failure-rate": "notBreaching",
}


@pytest.fixture(scope="module")
def moto_with_iam(tmp_path_factory: pytest.TempPathFactory, moto_starter: Any) -> Iterator[str]:
    """A moto that checks IAM after its first three calls (which make the operator's user)."""
    yield from moto_starter(tmp_path_factory, INITIAL_NO_AUTH_ACTION_COUNT=str(len(OPERATOR_SETUP)))


# The three unchecked calls moto_with_iam allows: the user, its policy, its access key.
OPERATOR_SETUP = ("create_user", "put_user_policy", "create_access_key")


@pytest.fixture(scope="module")
def ssh_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    key = tmp_path_factory.mktemp("ssh") / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return key.with_suffix(".pub")


def write_inventory(path: Path, ssh_key: Path, name: str = DEPLOYMENT, **overrides: Any) -> Path:
    settings = {
        "aws_deployment_secret_name": f"{name}/openai-api-key",
        "aws_network_ssh_cidr": "198.51.100.7/32",
        "iris_domain": f"api.{name}.invalid",
        "aws_instance_ssh_public_key_file": str(ssh_key),
        "aws_alarms_email": EMAIL,
        **overrides,
    }
    return deployment_inventory(path, name, **settings)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, ssh_key: Path) -> Path:
    return write_inventory(tmp_path_factory.mktemp("inventory"), ssh_key)


def irisctl(
    inventory: Path, moto_url: str, *args: str, keys: tuple[str, str] | None = None
) -> tuple[int, dict[str, Any], str]:
    """(exit code, JSON on stdout, stderr) of irisctl as the operator runs it, moto as AWS."""
    env = aws_env(moto_url, OPENAI_API_KEY="sk-monitoring-test-0123456789")
    if keys is not None:
        env.update(AWS_ACCESS_KEY_ID=keys[0], AWS_SECRET_ACCESS_KEY=keys[1])
    done = run(inventory, env, *args)
    return done.returncode, stdout_json(done), done.stderr


def client(moto_url: str, service: str, keys: tuple[str, str] = MOTO_KEYS) -> Any:
    return moto_client(service, moto_url, keys)


def alarms(moto_url: str, name: str = DEPLOYMENT) -> dict[str, dict[str, Any]]:
    found = client(moto_url, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{name}-")
    return {a["AlarmName"].removeprefix(f"{name}-"): a for a in found["MetricAlarms"]}


def topic_arn(name: str = DEPLOYMENT) -> str:
    return f"arn:aws:sns:{REGION}:123456789012:{name}-alarms"


def by_kind(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in data["resources"]}


# --- what the service and the host emit: the contract the alarms and the dashboard must meet ---


def service_metrics() -> set[tuple[str, str, frozenset[str]]]:
    """(namespace, metric, dimension names) of every event the service emits."""
    emitted = set()
    for event, names in emf.EVENTS.items():
        error_type = "InternalError" if event == "analysis_failed" else None
        values = dict.fromkeys(names, 1.0)
        document = emf.build_event(
            event, values, environment="prod", endpoint="analyze", error_type=error_type
        )
        for directive in document["_aws"]["CloudWatchMetrics"]:
            for dimensions in directive["Dimensions"]:
                for metric in directive["Metrics"]:
                    emitted.add((directive["Namespace"], metric["Name"], frozenset(dimensions)))
    return emitted


def host_metrics() -> set[tuple[str, str, frozenset[str]]]:
    """The host's metrics: the names in the script's UNITS, its namespace, [Environment]."""
    roles = project_root() / "roles"
    namespace = yaml.safe_load((roles / "host_metrics/defaults/main.yml").read_text())[
        "host_metrics_namespace"
    ]
    script = (roles / "host_metrics/templates/iris-host-metrics.py.j2").read_text()
    units = re.search(r"^UNITS = (\{.*\})$", script, re.MULTILINE)
    assert units, "UNITS not found in the host metrics script"
    return {(namespace, name, frozenset({"Environment"})) for name in json.loads(units[1])}


def error_types() -> set[str]:
    return {
        cls.error_type
        for _, cls in inspect.getmembers(service_errors, inspect.isclass)
        if issubclass(cls, service_errors.IrisError)
    }


def dashboard_metrics(body: dict[str, Any]) -> set[tuple[str, str, frozenset[str]]]:
    """Every metric the dashboard's graphs name, SEARCH expressions included."""
    named = set()
    for widget in body["widgets"]:
        for row in widget.get("properties", {}).get("metrics", []):
            fields = [f for f in row if not isinstance(f, dict)]
            if fields:
                named.add((fields[0], fields[1], frozenset(fields[2::2])))
            for options in (f for f in row if isinstance(f, dict) and "expression" in f):
                search = re.match(
                    r"SEARCH\('\{([^,}]+),([^}]*)\} MetricName=\"(\w+)\"", options["expression"]
                )
                if search:
                    dims = frozenset(search[2].split(","))
                    named.add((search[1], search[3], dims))
    return named


# --- one deployment's story --------------------------------------------------------------------


def test_up_creates_the_topic_the_alarms_and_the_dashboard(moto_url: str, inventory: Path) -> None:
    code, data, stderr = irisctl(inventory, moto_url, "aws", "up", "--resources-only", "--json")
    assert code == 0, stderr
    found = by_kind(data)
    assert {found[k]["action"] for k in ("sns-topic", "alarms", "dashboard")} == {"create"}

    sns = client(moto_url, "sns")
    subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic_arn())["Subscriptions"]
    assert [(s["Protocol"], s["Endpoint"]) for s in subscriptions] == [("email", EMAIL)]
    tags = sns.list_tags_for_resource(ResourceArn=topic_arn())["Tags"]
    assert {"Key": "iris:deployment", "Value": DEPLOYMENT} in tags

    made = alarms(moto_url)
    assert set(made) == ALARMS
    for suffix, alarm in made.items():
        assert alarm["TreatMissingData"] == MISSING_DATA[suffix], suffix
        assert topic_arn() in alarm["AlarmActions"], suffix
        assert alarm["OKActions"] == [topic_arn()], suffix


def test_a_failed_system_status_check_recovers_the_same_instance(moto_url: str) -> None:
    instance = client(moto_url, "ec2").describe_instances(
        Filters=[{"Name": "tag:iris:deployment", "Values": [DEPLOYMENT]}]
    )["Reservations"][0]["Instances"][0]["InstanceId"]
    system, own = alarms(moto_url)["system-status"], alarms(moto_url)["instance-status"]
    assert system["AlarmActions"] == [f"arn:aws:automate:{REGION}:ec2:recover", topic_arn()]
    assert own["AlarmActions"] == [topic_arn()]  # an OS fault is not AWS's host: notify only
    for alarm, metric in (
        (system, "StatusCheckFailed_System"),
        (own, "StatusCheckFailed_Instance"),
    ):
        assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/EC2", metric)
        assert alarm["Dimensions"] == [{"Name": "InstanceId", "Value": instance}]
        assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
        assert alarm["Threshold"] == 1 and alarm["Period"] == 60
        assert alarm["EvaluationPeriods"] == 2


def test_the_alarms_watch_metrics_the_service_and_the_host_really_emit(moto_url: str) -> None:
    emitted = service_metrics() | host_metrics()
    made = alarms(moto_url)
    for suffix, alarm in made.items():
        if alarm.get("MetricName") and alarm["Namespace"] != "AWS/EC2":
            dims = frozenset(d["Name"] for d in alarm["Dimensions"])
            assert (alarm["Namespace"], alarm["MetricName"], dims) in emitted, suffix
            assert {d["Value"] for d in alarm["Dimensions"] if d["Name"] == "Environment"} == {
                "prod"
            }
    queries = made["failure-rate"]["Metrics"]
    stats = [q["MetricStat"]["Metric"] for q in queries if "MetricStat" in q]
    for metric in stats:
        dims = frozenset(d["Name"] for d in metric["Dimensions"])
        assert (metric["Namespace"], metric["MetricName"], dims) in emitted
    failure_types = {d["Value"] for m in stats for d in m["Dimensions"] if d["Name"] == "ErrorType"}
    assert failure_types and failure_types <= error_types()
    # a client's mistake is not a failed analysis
    assert not failure_types & {"BadRequest", "Unauthorized", "PayloadTooLarge", "TooManyRequests"}
    assert [q["Id"] for q in queries if q.get("ReturnData")] == ["rate"]
    p99 = made["latency-p99"]
    assert (p99["ExtendedStatistic"], p99["Threshold"]) == ("p99", 30000)
    assert (made["daily-cost"]["Statistic"], made["daily-cost"]["Period"]) == ("Sum", 86400)
    assert made["disk-used"]["Threshold"] == 80
    assert made["certificate-expiry"]["Threshold"] == 14


def test_the_dashboard_graphs_what_the_service_and_the_host_really_emit(moto_url: str) -> None:
    body = json.loads(
        client(moto_url, "cloudwatch").get_dashboard(DashboardName=DEPLOYMENT)["DashboardBody"]
    )
    named = dashboard_metrics(body)
    emitted = service_metrics() | host_metrics()
    assert named and named <= emitted, named - emitted
    titles = {w["properties"].get("title") for w in body["widgets"]}
    for title in (
        "Requests",
        "Cache hit rate (%)",
        "Latency (ms)",
        "Model calls per day",
        "Tokens per day",
        "Estimated cost per day (USD)",
        "Failures by type",
        "Disk used (%)",
        "Certificate days left and health",
    ):
        assert title in titles
    graphed = {name for _, name, _ in named}
    assert {"DiskUsedPercent", "CertificateDaysLeft", "FailureCount", "EstimatedCostUsd"} <= graphed


def test_status_prints_the_dashboard_url(moto_url: str, inventory: Path) -> None:
    code, data, stderr = irisctl(inventory, moto_url, "aws", "status", "--json")
    assert code == 0, stderr
    assert data["dashboard_url"] == (
        f"https://{REGION}.console.aws.amazon.com/cloudwatch/home?region={REGION}"
        f"#dashboards/dashboard/{DEPLOYMENT}"
    )
    assert by_kind(data)["alarms"]["count"] in (8, "8")


def test_an_inventory_threshold_overrides_the_default(
    moto_url: str, inventory: Path, ssh_key: Path
) -> None:
    write_inventory(inventory, ssh_key, aws_alarms_daily_cost_usd=7.5)
    try:
        code, data, stderr = irisctl(inventory, moto_url, "aws", "up", "--resources-only", "--json")
    finally:
        write_inventory(inventory, ssh_key)
    assert code == 0, stderr
    # only what the threshold is in changed: every other resource is kept as it was (the second
    # up of an unchanged inventory, which changes nothing at all, is test_aws.py's)
    changed = {r["kind"] for r in data["resources"] if r["changed"]}
    assert changed == {"alarms", "dashboard"}
    assert alarms(moto_url)["daily-cost"]["Threshold"] == 7.5


# --- bad input: one clear line, a non-zero exit, nothing created ---------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "message"),
    [
        ("aws_alarms_email", "ops at example", "aws_alarms_email must be one e-mail address"),
        ("aws_alarms_latency_p99_ms", "fast", "aws_alarms_latency_p99_ms"),
        ("aws_alarms_disk_used_percent", 0, "aws_alarms_disk_used_percent must be a positive"),
    ],
)
def test_bad_alarm_settings_are_one_clear_line_before_anything_is_created(
    moto_url: str, ssh_key: Path, tmp_path: Path, setting: str, value: Any, message: str
) -> None:
    name = f"iris-bad-{setting.removeprefix('aws_alarms_').replace('_', '-')}"[:28]
    inventory = write_inventory(tmp_path, ssh_key, name, **{setting: value})
    code, _, stderr = irisctl(inventory, moto_url, "aws", "up", "--resources-only")
    assert code != 0, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and message in errors[0], stderr
    secrets = client(moto_url, "secretsmanager").list_secrets()["SecretList"]
    assert not [s for s in secrets if s["Name"].startswith(name)]
    assert alarms(moto_url, name) == {}


def _policy(*statements: dict[str, Any]) -> str:
    return json.dumps({"Version": "2012-10-17", "Statement": list(statements)})


ALLOW_ALL = {"Effect": "Allow", "Action": "*", "Resource": "*"}
DENY_SNS = {"Effect": "Deny", "Action": "sns:*", "Resource": "*"}


def test_a_missing_sns_permission_is_one_line_and_a_rerun_with_it_converges(
    moto_with_iam: str, ssh_key: Path, tmp_path: Path
) -> None:
    iam = client(moto_with_iam, "iam")
    iam.create_user(UserName="operator")
    iam.put_user_policy(
        UserName="operator", PolicyName="no-sns", PolicyDocument=_policy(ALLOW_ALL, DENY_SNS)
    )
    key = iam.create_access_key(UserName="operator")["AccessKey"]
    keys = (key["AccessKeyId"], key["SecretAccessKey"])
    name = "iris-no-sns"
    inventory = write_inventory(tmp_path, ssh_key, name)
    code, _, stderr = irisctl(inventory, moto_with_iam, "aws", "up", "--resources-only", keys=keys)
    assert code == 1, stderr
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("error:")]
    assert f"SNS topic {name}-alarms" in line and "the credentials need sns:" in line, line
    watch = client(moto_with_iam, "cloudwatch", keys)
    assert watch.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"] == []
    # granted the permission, the same up finishes what the refusal left
    client(moto_with_iam, "iam", keys).put_user_policy(
        UserName="operator", PolicyName="no-sns", PolicyDocument=_policy(ALLOW_ALL)
    )
    code, data, stderr = irisctl(
        inventory, moto_with_iam, "aws", "up", "--resources-only", "--json", keys=keys
    )
    assert code == 0, stderr
    found = by_kind(data)
    assert found["secret"]["action"] == "none" and found["instance"]["action"] == "none"
    assert found["sns-topic"]["action"] == "create" and found["alarms"]["action"] == "create"
    made = watch.describe_alarms(AlarmNamePrefix=f"{name}-")["MetricAlarms"]
    assert len(made) == len(ALARMS)
