"""`irisctl aws` against moto in server mode: every AWS call goes over HTTP to a real moto
process through the standard AWS_ENDPOINT_URL, and every resource is checked with boto3.

One deployment's story, in order (later tests build on earlier ones): an empty-account plan,
up, a second up and plan that change nothing, status, down (keeps the address, secret and
bucket), down of nothing, down --all. Bad input gets its own deployment names.
"""

from __future__ import annotations

import json
import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from aws_cli_helpers import IRISCTL, aws_env, run, stdout_json
from irisctl.paths import project_root
from irisctl.sandbox.aws_standin import deployment_inventory, moto_client

REGION = "us-east-2"
DEPLOYMENT = "iris-test"
SECRET_NAME = "iris-test/openai-api-key"
SECRET_VALUE = "sk-test-value-never-shown-0123456789"
SSH_CIDR = "198.51.100.7/32"


def write_inventory(path: Path, ssh_key: Path, **overrides: Any) -> Path:
    """An inventory like inventory/production: the aws_ec2 plugin and the deployment's vars."""
    settings = {
        "aws_deployment_secret_name": SECRET_NAME,
        "aws_network_ssh_cidr": SSH_CIDR,
        "iris_domain": "api.iris-test.invalid",
        "aws_instance_ssh_public_key_file": str(ssh_key),
        **overrides,
    }
    return deployment_inventory(path, settings.pop("aws_deployment_name", DEPLOYMENT), **settings)


@pytest.fixture(scope="module")
def inventory(tmp_path_factory: pytest.TempPathFactory, ssh_key: Path) -> Path:
    return write_inventory(tmp_path_factory.mktemp("inventory"), ssh_key)


def irisctl(inventory: Path, env: dict[str, str], *args: str) -> tuple[int, dict[str, Any], str]:
    """Returns (exit code, JSON on stdout, stderr)."""
    done = run(inventory, env, *args)
    return done.returncode, stdout_json(done), done.stderr


def client(moto_url: str, service: str) -> Any:
    return moto_client(service, moto_url)


def unsafe(value: Any) -> Any:
    """ansible-inventory --list marks values that came from AWS as unsafe (not templated)."""
    return value["__ansible_unsafe"] if isinstance(value, dict) else value


def by_kind(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["kind"]: r for r in data["resources"]}


def instances(moto_url: str, deployment: str = DEPLOYMENT) -> list[dict[str, Any]]:
    found = client(moto_url, "ec2").describe_instances(
        Filters=[
            {"Name": "tag:iris:deployment", "Values": [deployment]},
            {"Name": "instance-state-name", "Values": ["pending", "running"]},
        ]
    )
    return [i for r in found["Reservations"] for i in r["Instances"]]


def test_plan_from_an_empty_account_lists_every_resource_and_creates_nothing(
    moto_url: str, inventory: Path
) -> None:
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    code, data, stderr = irisctl(inventory, env, "aws", "plan", "--json")
    assert code == 0, stderr
    actions = {kind: r["action"] for kind, r in by_kind(data).items()}
    assert actions == {
        "secret": "create",
        "bucket": "create",
        "iam-role": "create",
        "security-group": "create",
        "instance": "create",
        "elastic-ip": "create",
        "dns-record": "none",
        "sns-topic": "create",
        "alarms": "create",
        "dashboard": "create",
    }
    assert data["changed"] == 9
    assert instances(moto_url) == []
    assert client(moto_url, "s3").list_buckets()["Buckets"] == []
    assert client(moto_url, "secretsmanager").list_secrets()["SecretList"] == []


def test_up_without_the_key_for_a_new_secret_says_so_and_creates_nothing(
    moto_url: str, inventory: Path
) -> None:
    code, data, stderr = irisctl(inventory, aws_env(moto_url), "aws", "up", "--resources-only")
    assert code == 3, stderr
    assert [ln for ln in stderr.splitlines() if ln.startswith("error:")] == [
        "error: secret iris-test/openai-api-key does not exist yet and OPENAI_API_KEY is not set:"
        " set it, or run `irisctl aws up` in a terminal to be asked for it"
    ]
    assert instances(moto_url) == []


def test_up_creates_every_resource_as_specified(moto_url: str, inventory: Path) -> None:
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    code, data, stderr = irisctl(inventory, env, "aws", "up", "--resources-only", "--json")
    assert code == 0, stderr
    assert SECRET_VALUE not in json.dumps(data) + stderr
    assert data["changed"] == 9
    found = by_kind(data)
    ec2, iam = client(moto_url, "ec2"), client(moto_url, "iam")

    # the instance: AL2023 AMI from the public parameter, t3.micro, IMDSv2 only, gp3 30 GB
    (instance,) = instances(moto_url)
    ami = client(moto_url, "ssm").get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
    )["Parameter"]["Value"]
    assert instance["ImageId"] == ami
    assert instance["InstanceType"] == "t3.micro"
    assert instance["MetadataOptions"]["HttpTokens"] == "required"
    assert instance["IamInstanceProfile"]["Arn"].endswith(f"instance-profile/{DEPLOYMENT}-instance")
    (volume_id,) = [m["Ebs"]["VolumeId"] for m in instance["BlockDeviceMappings"]]
    (volume,) = ec2.describe_volumes(VolumeIds=[volume_id])["Volumes"]
    assert (volume["VolumeType"], volume["Size"], volume["Encrypted"]) == ("gp3", 30, True)
    tags = {t["Key"]: t["Value"] for t in instance["Tags"]}
    assert tags["iris:deployment"] == DEPLOYMENT and tags["Name"] == f"{DEPLOYMENT}-1"
    assert found["instance"]["id"] == instance["InstanceId"]

    # the Elastic IP, tagged, on the instance
    (address,) = ec2.describe_addresses(
        Filters=[{"Name": "tag:iris:deployment", "Values": [DEPLOYMENT]}]
    )["Addresses"]
    assert address["InstanceId"] == instance["InstanceId"]
    assert found["elastic-ip"]["name"] == address["PublicIp"]

    # the security group: 80/443 from anywhere, 22 from the operator only
    (group,) = ec2.describe_security_groups(GroupIds=[found["security-group"]["id"]])[
        "SecurityGroups"
    ]
    rules = {
        (p["FromPort"], r["CidrIp"]) for p in group["IpPermissions"] for r in p.get("IpRanges", [])
    }
    assert rules == {(80, "0.0.0.0/0"), (443, "0.0.0.0/0"), (22, SSH_CIDR)}
    assert [sg["GroupId"] for sg in instance["SecurityGroups"]] == [group["GroupId"]]

    # the role: the two managed policies, and its own policy names one secret and one bucket
    role = f"{DEPLOYMENT}-instance"
    attached = {
        p["PolicyName"] for p in iam.list_attached_role_policies(RoleName=role)["AttachedPolicies"]
    }
    assert attached == {"AmazonSSMManagedInstanceCore", "CloudWatchAgentServerPolicy"}
    (inline,) = iam.list_role_policies(RoleName=role)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role, PolicyName=inline)["PolicyDocument"]
    statements = document["Statement"]
    resources = {
        r
        for s in statements
        for r in ([s["Resource"]] if isinstance(s["Resource"], str) else s["Resource"])
    }
    assert resources == {
        f"arn:aws:secretsmanager:{REGION}:123456789012:secret:{SECRET_NAME}-??????",
        f"arn:aws:s3:::{DEPLOYMENT}-cache-backups",
        f"arn:aws:s3:::{DEPLOYMENT}-cache-backups/*",
    }
    actions = {
        a
        for s in statements
        for a in ([s["Action"]] if isinstance(s["Action"], str) else s["Action"])
    }
    assert not any("*" in a for a in actions), actions
    assert "secretsmanager:GetSecretValue" in actions and "s3:PutObject" in actions

    # the secret holds the value from the environment
    secrets = client(moto_url, "secretsmanager")
    assert secrets.get_secret_value(SecretId=SECRET_NAME)["SecretString"] == SECRET_VALUE

    # the bucket: versioned, encrypted, private
    s3, bucket = client(moto_url, "s3"), f"{DEPLOYMENT}-cache-backups"
    assert s3.get_bucket_versioning(Bucket=bucket)["Status"] == "Enabled"
    rules = s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"]
    assert rules[0]["ApplyServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"]
    assert all(block.values()) and len(block) == 4
    bucket_tags = {t["Key"]: t["Value"] for t in s3.get_bucket_tagging(Bucket=bucket)["TagSet"]}
    assert bucket_tags["iris:deployment"] == DEPLOYMENT

    # no name: the exact record to set at the registrar
    assert data["dns"]["record"] == f"api.iris-test.invalid. 300 IN A {address['PublicIp']}"
    assert data["dns"]["points_at_elastic_ip"] is False


def test_a_second_up_changes_nothing_and_says_so(moto_url: str, inventory: Path) -> None:
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    done = run(inventory, env, "aws", "up", "--resources-only")
    assert done.returncode == 0, done.stderr
    assert "no change: everything was up to date" in done.stdout


def test_status_lists_what_exists_and_whether_the_name_resolves(
    moto_url: str, inventory: Path
) -> None:
    code, data, stderr = irisctl(inventory, aws_env(moto_url), "aws", "status", "--json")
    assert code == 0, stderr
    exists = {kind: r["exists"] for kind, r in by_kind(data).items()}
    assert exists == {
        "secret": True,
        "bucket": True,
        "iam-role": True,
        "security-group": True,
        "instance": True,
        "elastic-ip": True,
        "dns-record": False,
        "sns-topic": True,
        "alarms": True,
        "dashboard": True,
    }
    assert data["dns"]["resolves_to"] == [] and data["dns"]["points_at_elastic_ip"] is False


def test_the_inventory_finds_the_instance_by_its_tags(moto_url: str, inventory: Path) -> None:
    done = subprocess.run(
        [str(Path(sys.executable).parent / "ansible-inventory"), "-i", str(inventory), "--list"],
        env=aws_env(moto_url),
        capture_output=True,
        text=True,
        timeout=120,
        cwd=project_root(),
    )
    assert done.returncode == 0, done.stderr
    listed = json.loads(done.stdout)
    (instance,) = instances(moto_url)
    assert listed["iris"]["hosts"] == [f"{DEPLOYMENT}-1"]
    host = listed["_meta"]["hostvars"][f"{DEPLOYMENT}-1"]
    address = client(moto_url, "ec2").describe_addresses()["Addresses"][0]["PublicIp"]
    assert unsafe(host["ansible_host"]) == address == instance["PublicIpAddress"]
    assert unsafe(host["ansible_connection"]) == "ssh"  # SSH is open to the operator's address


def test_down_without_yes_and_without_a_terminal_removes_nothing(
    moto_url: str, inventory: Path
) -> None:
    code, _, stderr = irisctl(inventory, aws_env(moto_url), "aws", "down", "--skip-backup")
    assert code == 3, stderr
    assert "pass --yes to confirm" in stderr
    assert len(instances(moto_url)) == 1


def test_down_removes_the_instance_and_group_and_keeps_address_secret_bucket(
    moto_url: str, inventory: Path
) -> None:
    ec2 = client(moto_url, "ec2")
    before = ec2.describe_addresses()["Addresses"][0]["PublicIp"]
    code, data, stderr = irisctl(
        inventory, aws_env(moto_url), "aws", "down", "--yes", "--skip-backup", "--json"
    )
    assert code == 0, stderr
    assert {r["kind"] for r in data["removed"]} == {"instance", "security-group"}
    assert instances(moto_url) == []
    groups = ec2.describe_security_groups(
        Filters=[{"Name": "group-name", "Values": [f"{DEPLOYMENT}-web"]}]
    )["SecurityGroups"]
    assert groups == []
    (address,) = ec2.describe_addresses()["Addresses"]
    assert address["PublicIp"] == before and not address.get("InstanceId")
    assert client(moto_url, "secretsmanager").describe_secret(SecretId=SECRET_NAME)["Name"]
    assert client(moto_url, "s3").head_bucket(Bucket=f"{DEPLOYMENT}-cache-backups")


def test_up_again_reuses_the_kept_elastic_ip(moto_url: str, inventory: Path) -> None:
    ec2 = client(moto_url, "ec2")
    kept = ec2.describe_addresses()["Addresses"][0]["PublicIp"]
    code, data, stderr = irisctl(
        inventory, aws_env(moto_url), "aws", "up", "--resources-only", "--json"
    )
    assert code == 0, stderr
    (address,) = ec2.describe_addresses()["Addresses"]
    (instance,) = instances(moto_url)
    assert address["PublicIp"] == kept and address["InstanceId"] == instance["InstanceId"]
    assert {r["kind"] for r in data["resources"] if r["changed"]} == {
        "security-group",
        "instance",
        "elastic-ip",
        "alarms",  # the status check alarms follow the new instance
    }


def test_down_all_removes_everything_and_then_has_nothing_to_do(
    moto_url: str, inventory: Path
) -> None:
    env = aws_env(moto_url)
    cloudwatch = client(moto_url, "cloudwatch")
    assert cloudwatch.describe_alarms(AlarmNamePrefix=f"{DEPLOYMENT}-")["MetricAlarms"]
    assert cloudwatch.list_dashboards()["DashboardEntries"]
    assert client(moto_url, "sns").list_topics()["Topics"]
    done = run(inventory, env, "aws", "down", "--all", "--yes", "--skip-backup")
    assert done.returncode == 0, done.stderr
    assert "removed 9 resource(s)" in done.stdout
    assert instances(moto_url) == []
    assert client(moto_url, "ec2").describe_addresses()["Addresses"] == []
    assert client(moto_url, "s3").list_buckets()["Buckets"] == []
    assert client(moto_url, "secretsmanager").list_secrets()["SecretList"] == []
    roles = client(moto_url, "iam").list_roles()["Roles"]
    assert f"{DEPLOYMENT}-instance" not in {r["RoleName"] for r in roles}
    # the monitoring every up keeps (test_aws_monitoring.py): alarms, their topic, the dashboard
    assert cloudwatch.describe_alarms(AlarmNamePrefix=f"{DEPLOYMENT}-")["MetricAlarms"] == []
    assert cloudwatch.list_dashboards()["DashboardEntries"] == []
    assert client(moto_url, "sns").list_topics()["Topics"] == []
    code, data, stderr = irisctl(inventory, env, "aws", "down", "--all", "--yes", "--json")
    assert code == 0, stderr
    assert data["nothing_to_remove"] is True


# --- bad input: one clear line, a non-zero exit, nothing half-made that a re-run cannot finish --


def test_missing_credentials_are_one_clear_line(
    moto_url: str, inventory: Path, tmp_path: Path
) -> None:
    env = aws_env(moto_url)
    del env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
    env.update(
        AWS_SHARED_CREDENTIALS_FILE=str(tmp_path / "none"), AWS_CONFIG_FILE=str(tmp_path / "none")
    )
    code, _, stderr = irisctl(inventory, env, "aws", "status")
    assert code == 1, stderr
    (line,) = [ln for ln in stderr.splitlines() if "no usable AWS credentials" in ln]
    assert "AWS_PROFILE" in line


def test_a_region_without_the_ami_parameter_is_refused(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    inventory = write_inventory(tmp_path, ssh_key, aws_deployment_region="mx-central-1")
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    code, _, stderr = irisctl(inventory, env, "aws", "up", "--resources-only")
    assert code == 1, stderr
    assert "region mx-central-1 has no public parameter" in stderr
    assert client(moto_url, "secretsmanager").list_secrets()["SecretList"] == []


def test_a_name_held_by_something_else_is_refused_and_a_rerun_finishes_the_half_made_up(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    name = "iris-clash"
    inventory = write_inventory(
        tmp_path,
        ssh_key,
        aws_deployment_name=name,
        aws_deployment_secret_name=f"{name}/openai-api-key",
        aws_deployment_backup_bucket=f"{name}-cache-backups",
    )
    ec2 = client(moto_url, "ec2")
    vpc = ec2.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    squatter = ec2.create_security_group(
        GroupName=f"{name}-web", Description="someone else's", VpcId=vpc["VpcId"]
    )["GroupId"]
    # at a terminal, without OPENAI_API_KEY: the key for the new secret is asked, never echoed
    env = aws_env(moto_url)
    code, output = at_a_terminal(inventory, env, SECRET_VALUE, "aws", "up", "--resources-only")
    assert code == 1, output
    assert "OpenAI API key (not set in OPENAI_API_KEY):" in output
    assert SECRET_VALUE not in output
    assert f"security group {name}-web ({squatter}) exists but is not deployment {name}'s" in output
    assert instances(moto_url, name) == []
    value = client(moto_url, "secretsmanager").get_secret_value(SecretId=f"{name}/openai-api-key")
    assert value["SecretString"] == SECRET_VALUE
    # the secret and the bucket were made before the refusal: a re-run finishes the job
    ec2.delete_security_group(GroupId=squatter)
    code, data, stderr = irisctl(inventory, env, "aws", "up", "--resources-only", "--json")
    assert code == 0, stderr
    changed = {r["kind"] for r in data["resources"] if r["changed"]}
    assert {"security-group", "instance", "elastic-ip"} <= changed
    assert "secret" not in changed and "bucket" not in changed
    assert len(instances(moto_url, name)) == 1


def at_a_terminal(inventory: Path, env: dict[str, str], answer: str, *args: str) -> tuple[int, str]:
    """irisctl on a pseudo-terminal of its own (getpass reads /dev/tty); ``answer`` is typed
    at its prompt. Returns the exit code and everything the terminal showed."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: its controlling terminal is the pty
        os.execve(IRISCTL, [IRISCTL, "-i", str(inventory), *args], env)
    shown, answered = b"", False
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        ready, _, _ = select.select([fd], [], [], 1.0)
        if not ready:
            continue
        try:
            chunk = os.read(fd, 4096)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        shown += chunk
        if not answered and b"OpenAI API key" in shown:
            os.write(fd, answer.encode() + b"\n")
            answered = True
    os.close(fd)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), shown.decode(errors="replace")


def test_a_bad_ssh_address_is_refused_before_anything_changes(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    inventory = write_inventory(
        tmp_path, ssh_key, aws_deployment_name="iris-badcidr", aws_network_ssh_cidr="my laptop"
    )
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    code, _, stderr = irisctl(inventory, env, "aws", "plan")
    assert code == 1, stderr
    assert "aws_network_ssh_cidr must be one IPv4 network" in stderr


def test_a_missing_ssh_public_key_is_refused_before_anything_changes(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    inventory = write_inventory(
        tmp_path,
        ssh_key,
        aws_deployment_name="iris-nokey",
        aws_instance_ssh_public_key_file=str(tmp_path / "missing.pub"),
    )
    env = aws_env(moto_url, OPENAI_API_KEY=SECRET_VALUE)
    code, _, stderr = irisctl(inventory, env, "aws", "up", "--resources-only")
    assert code == 1, stderr
    assert f"aws_instance_ssh_public_key_file {tmp_path / 'missing.pub'} does not exist" in stderr
    names = {s["Name"] for s in client(moto_url, "secretsmanager").list_secrets()["SecretList"]}
    assert "iris-nokey/openai-api-key" not in names


def test_a_route53_zone_keeps_the_record_on_the_elastic_ip(
    moto_url: str, ssh_key: Path, tmp_path: Path
) -> None:
    name, zone = "iris-dns", "iris-dns.example."
    route53 = client(moto_url, "route53")
    zone_id = route53.create_hosted_zone(Name=zone, CallerReference=name)["HostedZone"]["Id"]
    inventory = write_inventory(
        tmp_path,
        ssh_key,
        aws_deployment_name=name,
        aws_deployment_secret_name=f"{name}/openai-api-key",
        aws_dns_zone=zone,
        iris_domain=f"api.{zone.rstrip('.')}",
    )
    # the operator's own key, made by hand before: adopted and tagged, its value untouched
    secrets = client(moto_url, "secretsmanager")
    secrets.create_secret(Name=f"{name}/openai-api-key", SecretString="sk-made-by-hand")
    env = aws_env(moto_url)
    code, data, stderr = irisctl(inventory, env, "aws", "up", "--resources-only", "--json")
    assert code == 0, stderr
    assert by_kind(data)["secret"]["action"] == "update"
    described = secrets.describe_secret(SecretId=f"{name}/openai-api-key")
    assert {"Key": "iris:deployment", "Value": name} in described["Tags"]
    value = secrets.get_secret_value(SecretId=f"{name}/openai-api-key")["SecretString"]
    assert value == "sk-made-by-hand"
    address = by_kind(data)["elastic-ip"]["name"]
    assert by_kind(data)["dns-record"]["action"] == "create"
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    (record,) = [r for r in records if r["Type"] == "A"]
    assert record["Name"] == f"api.{zone}"
    assert [r["Value"] for r in record["ResourceRecords"]] == [address]
    assert data["dns"]["managed_by_route53"] is True
    down = run(inventory, env, "aws", "down", "--all", "--yes", "--skip-backup")
    assert down.returncode == 0, down.stderr
    records = route53.list_resource_record_sets(HostedZoneId=zone_id)["ResourceRecordSets"]
    assert [r for r in records if r["Type"] == "A"] == []


def test_the_production_inventory_names_one_deployment() -> None:
    """The plugin's filter and region are the deployment's settings: one deployment, not two."""
    production = project_root() / "inventory" / "production"
    plugin = yaml.safe_load((production / "aws_ec2.yml").read_text())
    settings = yaml.safe_load((production / "group_vars" / "all" / "aws.yml").read_text())
    assert plugin["filters"]["tag:iris:deployment"] == settings["aws_deployment_name"]
    assert plugin["regions"] == [settings["aws_deployment_region"]]
