"""`irisctl aws` with the fleet switch on (aws_deployment_fleet): app instances behind an
Application Load Balancer and an ElastiCache cache tier, against moto in server mode and
checked with boto3.

One deployment's story, in order (later tests build on earlier ones): up, status, down --all.
moto 5.2.5 lacks three things real AWS does, which the moto started here adds (``MOTO_PATCHES``):
DeleteCacheSubnetGroup, a replication group that is gone once deleted (moto keeps it
"deleting" for ever), and the two load balancer attributes every real ALB reports
(idle_timeout.timeout_seconds, routing.http.drop_invalid_header_fields.enabled), without which
amazon.aws.elb_application_lb fails on a KeyError. ACM issues a requested certificate at once
(MOTO_ACM_VALIDATION_WAIT=0): the DNS validation itself is not exercised.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cli_helpers import aws_env, run, stdout_json
from irisctl import render
from irisctl.paths import project_root
from irisctl.sandbox.aws_standin import deployment_inventory, moto_client, moto_environment

REGION = "us-east-2"
DEPLOYMENT = "iris-fleet"
DOMAIN = "api.iris-fleet.example"
SSH_CIDR = "198.51.100.7/32"
OPENAI_KEY = "sk-fleet-value-never-shown-0123456789"
APP_COUNT = 2

MOTO_PATCHES = """
import sys
from moto.core.responses import EmptyResult
from moto.elasticache.exceptions import CacheSubnetGroupNotFound
from moto.elasticache.models import ElastiCacheBackend
from moto.elasticache.responses import ElastiCacheResponse
from moto.elbv2.models import FakeLoadBalancer
from moto.server import main


def delete_subnet_group(self, cache_subnet_group_name):
    if self.cache_subnet_groups.pop(cache_subnet_group_name, None) is None:
        raise CacheSubnetGroupNotFound(cache_subnet_group_name)


def delete_subnet_group_response(self):
    self.elasticache_backend.delete_cache_subnet_group(self._get_param("CacheSubnetGroupName"))
    return EmptyResult()


marked_deleting = ElastiCacheBackend.delete_replication_group


def delete_replication_group(self, replication_group_id, retain_primary_cluster):
    group = marked_deleting(self, replication_group_id, retain_primary_cluster)
    del self.replication_groups[replication_group_id]
    return group


load_balancer_init = FakeLoadBalancer.__init__


def load_balancer_with_defaults(self, *args, **kwargs):
    load_balancer_init(self, *args, **kwargs)
    self.attrs.setdefault("idle_timeout.timeout_seconds", "60")
    self.attrs.setdefault("routing.http.drop_invalid_header_fields.enabled", "false")


ElastiCacheBackend.delete_cache_subnet_group = delete_subnet_group
ElastiCacheResponse.delete_cache_subnet_group = delete_subnet_group_response
ElastiCacheBackend.delete_replication_group = delete_replication_group
FakeLoadBalancer.__init__ = load_balancer_with_defaults
main(sys.argv[1:])
"""


@pytest.fixture(scope="module")
def moto_url(
    tmp_path_factory: pytest.TempPathFactory, moto_starter: Callable[..., Iterator[str]]
) -> Iterator[str]:
    yield from moto_starter(tmp_path_factory, ("-c", MOTO_PATCHES), MOTO_ACM_VALIDATION_WAIT="0")


def write_inventory(path: Path, ssh_key: Path, name: str = DEPLOYMENT, **overrides: Any) -> Path:
    settings = {
        "aws_deployment_secret_name": f"{name}/openai-api-key",
        "aws_network_ssh_cidr": SSH_CIDR,
        "iris_domain": DOMAIN,
        "aws_instance_ssh_public_key_file": str(ssh_key),
        "aws_deployment_fleet": True,
        "aws_deployment_app_count": APP_COUNT,
        **overrides,
    }
    return deployment_inventory(path, name, **settings)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, ssh_key: Path) -> Path:
    return write_inventory(tmp_path_factory.mktemp("inventory"), ssh_key)


def irisctl(
    inventory: Path, moto_url: str, *args: str
) -> tuple[int, dict[str, Any], subprocess.CompletedProcess[str]]:
    """irisctl as the operator runs it, without a terminal: (exit code, JSON, the process)."""
    done = run(inventory, aws_env(moto_url, OPENAI_API_KEY=OPENAI_KEY), *args)
    return done.returncode, stdout_json(done) if "--json" in args else {}, done


def client(moto_url: str, service: str) -> Any:
    return moto_client(service, moto_url)


def tags(items: list[dict[str, str]]) -> dict[str, str]:
    return {t["Key"]: t["Value"] for t in items}


def owned(found: dict[str, str]) -> bool:
    return found.get("iris:deployment") == DEPLOYMENT and found.get("iris:managed-by") == "irisctl"


def instances(moto_url: str) -> list[dict[str, Any]]:
    found = client(moto_url, "ec2").describe_instances(
        Filters=[
            {"Name": "tag:iris:deployment", "Values": [DEPLOYMENT]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in found["Reservations"] for i in r["Instances"]]


def group(moto_url: str, name: str) -> dict[str, Any]:
    (found,) = client(moto_url, "ec2").describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [name]}]
    )["SecurityGroups"]
    return dict(found)


def ingress(found: dict[str, Any]) -> set[tuple[int, str]]:
    """(port, source) of every rule: a CIDR or a security group id."""
    return {
        (p["FromPort"], source)
        for p in found["IpPermissions"]
        for source in [r["CidrIp"] for r in p.get("IpRanges", [])]
        + [r["CidrIpv6"] for r in p.get("Ipv6Ranges", [])]
        + [g["GroupId"] for g in p.get("UserIdGroupPairs", [])]
    }


def test_up_with_the_switch_on_makes_the_fleet_as_specified(moto_url: str, inventory: Path) -> None:
    code, data, done = irisctl(inventory, moto_url, "aws", "up", "--resources-only", "--json")
    assert code == 0, done.stderr
    ec2, elb = client(moto_url, "ec2"), client(moto_url, "elbv2")
    secret = client(moto_url, "secretsmanager").get_secret_value(
        SecretId=f"{DEPLOYMENT}/cache-store-password"
    )["SecretString"]
    assert secret not in done.stdout + done.stderr and OPENAI_KEY not in done.stdout + done.stderr
    assert len(secret) == 64 and secret.isalnum()

    # the app instances, none with an Elastic IP: the load balancer is their address
    running = instances(moto_url)
    names = sorted(tags(i["Tags"])["Name"] for i in running)
    assert names == [f"{DEPLOYMENT}-{n}" for n in range(1, APP_COUNT + 1)]
    assert ec2.describe_addresses()["Addresses"] == []

    # the load balancer's group is open to the web; the instances' group only to it (and SSH)
    balancer_group, web_group = (
        group(moto_url, f"{DEPLOYMENT}-alb"),
        group(moto_url, f"{DEPLOYMENT}-web"),
    )
    assert ingress(balancer_group) == {
        (80, "0.0.0.0/0"),
        (443, "0.0.0.0/0"),
        (80, "::/0"),
        (443, "::/0"),
    }
    assert ingress(web_group) == {
        (80, balancer_group["GroupId"]),
        (443, balancer_group["GroupId"]),
        (22, SSH_CIDR),
    }
    assert owned(tags(balancer_group["Tags"])) and owned(tags(web_group["Tags"]))

    # the load balancer: internet-facing, in at least two zones, its own group
    (balancer,) = elb.describe_load_balancers(Names=[f"{DEPLOYMENT}-alb"])["LoadBalancers"]
    assert balancer["Scheme"] == "internet-facing" and balancer["Type"] == "application"
    assert len({zone["ZoneName"] for zone in balancer["AvailabilityZones"]}) >= 2
    assert balancer["SecurityGroups"] == [balancer_group["GroupId"]]
    arn = balancer["LoadBalancerArn"]
    assert owned(tags(elb.describe_tags(ResourceArns=[arn])["TagDescriptions"][0]["Tags"]))
    attributes = {
        a["Key"]: a["Value"]
        for a in elb.describe_load_balancer_attributes(LoadBalancerArn=arn)["Attributes"]
    }
    assert attributes["idle_timeout.timeout_seconds"] == "130"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"

    # the certificate: requested for the public name with DNS validation, the deployment's
    acm = client(moto_url, "acm")
    (summary,) = acm.list_certificates()["CertificateSummaryList"]
    certificate = acm.describe_certificate(CertificateArn=summary["CertificateArn"])["Certificate"]
    assert certificate["DomainName"] == DOMAIN and certificate["Type"] == "AMAZON_ISSUED"
    assert [o["ValidationMethod"] for o in certificate["DomainValidationOptions"]] == ["DNS"]
    assert owned(
        tags(acm.list_tags_for_certificate(CertificateArn=certificate["CertificateArn"])["Tags"])
    )

    # HTTPS with the certificate, forwarding to the target group; HTTP redirected to HTTPS
    listeners = {
        listener["Port"]: listener
        for listener in elb.describe_listeners(LoadBalancerArn=arn)["Listeners"]
    }
    assert sorted(listeners) == [80, 443]
    https = listeners[443]
    assert https["Protocol"] == "HTTPS"
    assert [c["CertificateArn"] for c in https["Certificates"]] == [certificate["CertificateArn"]]
    assert https["SslPolicy"].startswith("ELBSecurityPolicy-TLS13")
    (target_group,) = elb.describe_target_groups(Names=[f"{DEPLOYMENT}-web"])["TargetGroups"]
    (forward,) = https["DefaultActions"]
    assert forward["Type"] == "forward"
    assert forward["TargetGroupArn"] == target_group["TargetGroupArn"]
    (redirect,) = listeners[80]["DefaultActions"]
    assert redirect["Type"] == "redirect"
    assert redirect["RedirectConfig"]["Protocol"] == "HTTPS"
    assert redirect["RedirectConfig"]["Port"] == "443"
    assert redirect["RedirectConfig"]["StatusCode"] == "HTTP_301"

    # the target group: HTTPS to the instances, health-checked, draining before removal
    assert (target_group["Protocol"], target_group["Port"]) == ("HTTPS", 443)
    assert target_group["HealthCheckProtocol"] == "HTTPS"
    assert target_group["HealthCheckPath"] == "/api/iris/health"
    assert target_group["Matcher"]["HttpCode"] == "200"
    group_attributes = {
        a["Key"]: a["Value"]
        for a in elb.describe_target_group_attributes(
            TargetGroupArn=target_group["TargetGroupArn"]
        )["Attributes"]
    }
    assert group_attributes["deregistration_delay.timeout_seconds"] == "130"
    registered = elb.describe_target_health(TargetGroupArn=target_group["TargetGroupArn"])
    targets = {
        (d["Target"]["Id"], d["Target"]["Port"]) for d in registered["TargetHealthDescriptions"]
    }
    assert targets == {(i["InstanceId"], 443) for i in running}

    # the cache: Valkey, TLS, AUTH token, encrypted at rest, reachable only from the instances
    cache = client(moto_url, "elasticache")
    (replication,) = cache.describe_replication_groups(ReplicationGroupId=f"{DEPLOYMENT}-cache")[
        "ReplicationGroups"
    ]
    assert replication["TransitEncryptionEnabled"] is True
    assert replication["AtRestEncryptionEnabled"] is True
    assert replication["AuthTokenEnabled"] is True
    assert replication["Engine"] == "valkey"
    assert owned(tags(cache.list_tags_for_resource(ResourceName=replication["ARN"])["TagList"]))
    cache_group = group(moto_url, f"{DEPLOYMENT}-cache")
    assert ingress(cache_group) == {(6379, web_group["GroupId"])}
    (subnets,) = cache.describe_cache_subnet_groups(CacheSubnetGroupName=f"{DEPLOYMENT}-cache")[
        "CacheSubnetGroups"
    ]
    assert len(subnets["Subnets"]) >= 2

    # the outputs: the cache's URL for the hosts (in SSM, no password), the record for DNS
    endpoint = replication["NodeGroups"][0]["PrimaryEndpoint"]
    url = f"rediss://{endpoint['Address']}:{endpoint['Port']}/0"
    parameter = client(moto_url, "ssm").get_parameter(Name=f"/{DEPLOYMENT}/cache-url")
    assert parameter["Parameter"]["Value"] == url
    assert data["endpoints"] == {
        "load_balancer": balancer["DNSName"],
        "record": f"{DOMAIN}. 300 IN CNAME {balancer['DNSName']}.",
        "https": True,
        "certificate_status": "ISSUED",
        "certificate_validation_records": [
            {
                "name": o["ResourceRecord"]["Name"],
                "type": "CNAME",
                "value": o["ResourceRecord"]["Value"],
            }
            for o in certificate["DomainValidationOptions"]
        ],
        "cache_endpoint": endpoint["Address"],
        "cache_url": url,
        "cache_password_secret": f"{DEPLOYMENT}/cache-store-password",
    }
    assert data["dns"] is None

    # the instances may read the cache's AUTH token (and nothing wider)
    iam = client(moto_url, "iam")
    document = iam.get_role_policy(
        RoleName=f"{DEPLOYMENT}-instance", PolicyName="iris-secret-and-backups"
    )["PolicyDocument"]
    readable = {
        s["Resource"]
        for s in document["Statement"]
        if s["Action"] == "secretsmanager:GetSecretValue"
    }
    assert (
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{DEPLOYMENT}/cache-store-password-??????"
        in readable
    )

    # every instance has status-check alarms of its own (and recovery), named by its number
    found = client(moto_url, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{DEPLOYMENT}-")
    watched = {
        a["AlarmName"]: a["Dimensions"]
        for a in found["MetricAlarms"]
        if a.get("Namespace") == "AWS/EC2"
    }
    by_name = {tags(i["Tags"])["Name"]: i["InstanceId"] for i in running}
    assert watched == {
        f"{name}-{check}": [{"Name": "InstanceId", "Value": instance}]
        for name, instance in by_name.items()
        for check in ("system-status", "instance-status")
    }
    # and the load balancer's count of unhealthy targets, on its own target group
    (targets_alarm,) = [
        a for a in found["MetricAlarms"] if a.get("Namespace") == "AWS/ApplicationELB"
    ]
    assert targets_alarm["AlarmName"] == f"{DEPLOYMENT}-unhealthy-targets"
    assert targets_alarm["MetricName"] == "UnHealthyHostCount"
    assert {d["Name"]: d["Value"] for d in targets_alarm["Dimensions"]} == {
        "TargetGroup": target_group["TargetGroupArn"].split(":")[-1],
        "LoadBalancer": arn.split(":loadbalancer/")[-1],
    }


def test_status_lists_the_fleet_and_where_its_name_must_point(
    moto_url: str, inventory: Path
) -> None:
    code, data, done = irisctl(inventory, moto_url, "aws", "status", "--json")
    assert code == 0, done.stderr
    exists: dict[str, list[bool]] = {}
    for item in data["resources"]:
        exists.setdefault(item["kind"], []).append(item["exists"])
    assert exists == {
        "secret": [True],
        "bucket": [True],
        "iam-role": [True],
        "lb-security-group": [True],
        "security-group": [True],
        "instance": [True] * APP_COUNT,
        "elastic-ip": [False],
        "certificate": [True],
        "target-group": [True],
        "load-balancer": [True],
        "cache-secret": [True],
        "cache-security-group": [True],
        "cache-subnet-group": [True],
        "cache-store": [True],
        "cache-url-parameter": [True],
        "sns-topic": [True],
        "alarms": [True],
        "dashboard": [True],
    }
    endpoints = data["endpoints"]
    (balancer,) = client(moto_url, "elbv2").describe_load_balancers()["LoadBalancers"]
    assert endpoints["record"] == f"{DOMAIN}. 300 IN CNAME {balancer['DNSName']}."
    assert endpoints["cache_url"].startswith("rediss://master.")


def test_down_all_removes_the_whole_fleet(moto_url: str, inventory: Path) -> None:
    code, data, done = irisctl(
        inventory, moto_url, "aws", "down", "--all", "--yes", "--skip-backup", "--json"
    )
    assert code == 0, done.stderr
    removed = sorted(r["kind"] for r in data["removed"])
    assert removed == sorted(
        ["secret", "bucket", "iam-role", "lb-security-group", "security-group"]
        + ["instance"] * APP_COUNT
        + ["certificate", "target-group", "load-balancer", "cache-secret"]
        + ["cache-security-group", "cache-subnet-group", "cache-store", "cache-url-parameter"]
        + ["sns-topic", "alarms", "dashboard"]
    )
    assert instances(moto_url) == []
    alarms = client(moto_url, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{DEPLOYMENT}-")
    assert alarms["MetricAlarms"] == [] and alarms["CompositeAlarms"] == []
    assert client(moto_url, "elbv2").describe_load_balancers()["LoadBalancers"] == []
    assert client(moto_url, "elbv2").describe_target_groups()["TargetGroups"] == []
    assert client(moto_url, "acm").list_certificates()["CertificateSummaryList"] == []
    cache = client(moto_url, "elasticache")
    assert cache.describe_replication_groups()["ReplicationGroups"] == []
    assert cache.describe_cache_subnet_groups()["CacheSubnetGroups"] == []
    assert client(moto_url, "secretsmanager").list_secrets()["SecretList"] == []
    assert (
        client(moto_url, "ssm").describe_parameters(
            ParameterFilters=[
                {"Key": "Name", "Option": "BeginsWith", "Values": [f"/{DEPLOYMENT}/"]}
            ]
        )["Parameters"]
        == []
    )
    groups = client(moto_url, "ec2").describe_security_groups()["SecurityGroups"]
    assert [g["GroupName"] for g in groups] == ["default"]


def test_a_bad_cache_engine_is_refused_before_anything_changes(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    name = "iris-badengine"
    inventory = write_inventory(tmp_path, ssh_key, name, aws_cache_store_engine="memcached")
    code, _, done = irisctl(inventory, moto_url, "aws", "up", "--resources-only")
    assert code == 1, done.stderr
    (line,) = [ln for ln in done.stderr.splitlines() if ln.startswith("error:")]
    assert line.endswith("aws_cache_store_engine must be valkey or redis, not 'memcached'")
    names = {s["Name"] for s in client(moto_url, "secretsmanager").list_secrets()["SecretList"]}
    assert f"{name}/openai-api-key" not in names


# --- what moto cannot show: the arguments the roles' own modules send --------------------------


def _role_module(role: str, name: str) -> Any:
    path = project_root() / "roles" / role / "library" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _cache_params(**overrides: Any) -> dict[str, Any]:
    return {
        "name": "iris-prod-cache",
        "description": "IRIS iris-prod shared cache tier",
        "engine": "valkey",
        "engine_version": "",
        "node_type": "cache.t4g.micro",
        "port": 6379,
        "replicas": 0,
        "subnet_group": "iris-prod-cache",
        "security_group_ids": ["sg-0123"],
        "snapshot_retention_days": 1,
        "tags": {"iris:deployment": "iris-prod"},
        **overrides,
    }


def test_the_cache_is_always_requested_encrypted_both_ways_and_without_the_token() -> None:
    module = _role_module("aws_cache_store", "iris_cache_replication_group")
    request = module.request(_cache_params())
    assert request["TransitEncryptionEnabled"] is True
    assert request["AtRestEncryptionEnabled"] is True
    assert "AuthToken" not in request  # read from Secrets Manager only at the create call
    assert request["NumCacheClusters"] == 1 and request["AutomaticFailoverEnabled"] is False
    assert request["CacheSubnetGroupName"] == "iris-prod-cache"
    assert request["SecurityGroupIds"] == ["sg-0123"]
    assert "EngineVersion" not in request  # empty: ElastiCache's default for the engine
    replicated = module.request(_cache_params(replicas=1, engine_version="8.0"))
    assert replicated["NumCacheClusters"] == 2
    assert replicated["AutomaticFailoverEnabled"] is True and replicated["MultiAZEnabled"] is True
    assert replicated["EngineVersion"] == "8.0"


def test_a_cache_made_without_encryption_is_reported_as_drift() -> None:
    module = _role_module("aws_cache_store", "iris_cache_replication_group")
    found = module.summary(
        {
            "ReplicationGroupId": "iris-prod-cache",
            "Engine": "redis",
            "TransitEncryptionEnabled": False,
            "AtRestEncryptionEnabled": True,
            "AuthTokenEnabled": False,
            "NodeGroups": [{"PrimaryEndpoint": {"Address": "master.example", "Port": 6379}}],
        }
    )
    assert found["endpoint"] == "master.example" and found["port"] == 6379
    wanted = {"engine": "valkey", "transit_encryption": True, "at_rest_encryption": True}
    drift = sorted(k for k in module.FIXED if found[k] != {**wanted, "auth_token": True}[k])
    assert drift == ["auth_token", "engine", "transit_encryption"]


def test_a_pending_certificate_lists_its_validation_record() -> None:
    module = _role_module("aws_load_balancer", "iris_acm_certificate")
    pending = module.summary(
        {
            "CertificateArn": "arn:aws:acm:us-east-2:1:certificate/x",
            "DomainName": DOMAIN,
            "Status": "PENDING_VALIDATION",
            "DomainValidationOptions": [
                {"ResourceRecord": {"Name": f"_a.{DOMAIN}.", "Type": "CNAME", "Value": "_b.acm."}}
            ],
        }
    )
    assert pending["status"] == "PENDING_VALIDATION"
    assert pending["validation_records"] == [
        {"name": f"_a.{DOMAIN}.", "type": "CNAME", "value": "_b.acm."}
    ]


def test_status_says_where_the_name_must_point_and_how_to_validate_the_certificate(
    capsys: pytest.CaptureFixture[str],
) -> None:
    render.aws_endpoints(
        {
            "record": f"{DOMAIN}. 300 IN CNAME lb.example.",
            "https": False,
            "certificate_status": "PENDING_VALIDATION",
            "certificate_validation_records": [
                {"name": f"_a.{DOMAIN}.", "type": "CNAME", "value": "_b.acm."}
            ],
            "cache_url": "rediss://master.example:6379/0",
            "cache_password_secret": "iris-prod/cache-store-password",
        }
    )
    shown = capsys.readouterr().out.splitlines()
    assert shown == [
        f"point the public name at the load balancer: {DOMAIN}. 300 IN CNAME lb.example.",
        "HTTPS waits for the certificate (PENDING_VALIDATION); ACM validates it through:",
        f"  _a.{DOMAIN}. 300 IN CNAME _b.acm.",
        "IRIS_CACHE_URL: rediss://master.example:6379/0 (AUTH token in the secret"
        " iris-prod/cache-store-password)",
    ]


def test_the_production_hosts_read_the_cache_url_only_with_the_fleet_on(
    moto_url: str, tmp_path: Path
) -> None:
    """inventory/production's group_vars hand the service role what `aws up` keeps."""
    production = project_root() / "inventory" / "production" / "group_vars" / "all" / "aws.yml"
    (tmp_path / "group_vars" / "all").mkdir(parents=True)
    (tmp_path / "group_vars" / "all" / "aws.yml").write_text(production.read_text())
    (tmp_path / "hosts.ini").write_text(
        f"[iris]\nh1 ansible_connection=local ansible_python_interpreter={sys.executable}\n"
    )
    settings = yaml.safe_load(production.read_text())
    url = "rediss://master.iris-prod-cache.example:6379/0"
    client(moto_url, "ssm").put_parameter(
        Name=settings["aws_cache_store_url_parameter"], Value=url, Type="String"
    )
    env = moto_environment(dict(os.environ), moto_url)

    def shown(*extra: str) -> str:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "ansible"), "-i", str(tmp_path / "hosts.ini")]
            + ["all", "-m", "ansible.builtin.debug", *extra]
            + ["-a", "msg={{ service_cache_url }}|{{ service_cache_password_secret_id }}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            cwd=project_root(),  # its ansible.cfg: the output's shape
        )
        assert done.returncode == 0, done.stdout + done.stderr
        (line,) = [ln for ln in done.stdout.splitlines() if "msg:" in ln]
        return line.split("msg:", 1)[1].strip().strip("'")

    assert settings["aws_deployment_fleet"] is False
    assert shown() == "|"
    secret = settings["aws_deployment_cache_secret_name"]
    assert shown("-e", "aws_deployment_fleet=true") == f"{url}|{secret}"
