"""Inventories for a deployment on AWS where moto plays AWS: shaped like inventory/production.

``deployment_inventory`` is the aws_ec2 plugin config plus the deployment's settings.
``stand_in_inventory`` adds a host_vars file for the instance's name that points Ansible at a
sandbox host: host_vars outrank what the plugin composes, so everything else (finding the
instance by its tags, converging, deploying, health) runs its real path.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import yaml

from irisctl.paths import project_root
from irisctl.sandbox import stack
from irisctl.sandbox.hosts import BRIDGE_ADDRESS, Host, key_path


def deployment_inventory(path: Path, deployment: str, **settings: Any) -> Path:
    """The aws_ec2 plugin finding ``deployment``'s instances, and its group_vars/all/aws.yml."""
    production = project_root() / "inventory" / "production"
    values: dict[str, Any] = {
        "aws_deployment_name": deployment,
        "aws_deployment_region": stack.AWS_REGION,
        "aws_deployment_secret_name": f"{deployment}/openai-api-key",
        "aws_deployment_backup_bucket": f"{deployment}-cache-backups",
        "aws_network_ssh_cidr": f"{BRIDGE_ADDRESS}/32",
        "aws_dns_zone": "",
        "aws_instance_ssh_public_key_file": f"{key_path()}.pub",
        "iris_domain": f"{deployment}.invalid",
        **settings,
    }
    plugin = yaml.safe_load((production / "aws_ec2.yml").read_text())
    plugin["regions"] = [values["aws_deployment_region"]]
    plugin["filters"]["tag:iris:deployment"] = deployment
    (path / "group_vars" / "all").mkdir(parents=True, exist_ok=True)
    (path / "aws_ec2.yml").write_text(yaml.safe_dump(plugin))
    (path / "group_vars" / "all" / "aws.yml").write_text(yaml.safe_dump(values))
    return path


def stand_in_inventory(path: Path, deployment: str, host: Host) -> Path:
    """``deployment_inventory`` whose instance (``<deployment>-1``) is the sandbox ``host``."""
    deployment_inventory(path, deployment, iris_domain=host.fqdn)
    for vars_file in (project_root() / "inventory" / "sandbox" / "group_vars").glob("*.yml"):
        # group_vars/all is a directory here (aws.yml): the sandbox's all.yml goes inside it
        into = (
            path / "group_vars" / ("all/sandbox.yml" if vars_file.stem == "all" else vars_file.name)
        )
        shutil.copy(vars_file, into)
    stand_in = {
        # where the instance really is: the sandbox host
        "ansible_host": host.ip,
        "ansible_user": "ec2-user",
        "ansible_become": True,
        "ansible_python_interpreter": "/usr/bin/python3",
        "ansible_ssh_private_key_file": str(key_path()),
        "ansible_ssh_common_args": "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null"
        " -o LogLevel=ERROR",
        # the same for Mitogen (plugins/strategy), which sets ssh's host key option itself
        "ansible_host_key_checking": False,
        # as in inventory/production/group_vars/iris.yml: the deployment's secret and bucket
        "service_openai_secret_id": "{{ aws_deployment_secret_name }}",
        "cache_backup_bucket": "{{ aws_deployment_backup_bucket }}",
        # moto plays S3 and the instance metadata service (the instance role's credentials)
        "cache_backup_environment": stack.BACKUP_ENVIRONMENT,
    }
    (path / "host_vars").mkdir(exist_ok=True)
    (path / "host_vars" / f"{deployment}-1.yml").write_text(yaml.safe_dump(stand_in))
    return path


# moto accepts any credentials; boto3 needs some to sign with.
MOTO_KEYS = ("moto-key-id", "moto-secret-key")


def moto_client(
    service: Any, endpoint: str = stack.MOTO_URL, keys: tuple[str, str] = MOTO_KEYS
) -> Any:
    """A boto3 client of moto at ``endpoint`` in the sandbox's region (``keys``: whose)."""
    import boto3

    return boto3.client(
        service,
        region_name=stack.AWS_REGION,
        endpoint_url=endpoint,
        aws_access_key_id=keys[0],
        aws_secret_access_key=keys[1],
    )


def moto_environment(base: dict[str, str], endpoint: str = stack.MOTO_URL) -> dict[str, str]:
    """``base`` without the operator's AWS settings; every AWS call goes to moto at ``endpoint``."""
    env = {k: v for k, v in base.items() if not k.startswith("AWS_") and k != "OPENAI_API_KEY"}
    env.update(
        AWS_ENDPOINT_URL=endpoint,
        AWS_ACCESS_KEY_ID=MOTO_KEYS[0],
        AWS_SECRET_ACCESS_KEY=MOTO_KEYS[1],
        AWS_EC2_METADATA_DISABLED="true",
    )
    return env
