#!/usr/bin/python
"""An ElastiCache (Valkey or Redis OSS) replication group with TLS, AUTH and at-rest encryption.

C(community.aws.elasticache) creates single cache clusters (CreateCacheCluster), which take
neither at-rest encryption nor a replication group's endpoint; no collection module creates a
replication group. The AUTH token is read here from Secrets Manager, so it never passes
through a play's variables.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: iris_cache_replication_group
short_description: Keep an encrypted ElastiCache replication group, idempotently
options:
  name:
    description: ReplicationGroupId.
    type: str
    required: true
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
  deployment:
    description: The iris:deployment tag an existing group must carry to be managed.
    type: str
    required: true
  description:
    description: ReplicationGroupDescription.
    type: str
    default: IRIS shared cache tier
  engine:
    description: valkey or redis.
    type: str
    default: valkey
  engine_version:
    description: EngineVersion; empty takes the service's default.
    type: str
    default: ""
  node_type:
    description: CacheNodeType.
    type: str
    default: cache.t4g.micro
  port:
    description: Port.
    type: int
    default: 6379
  replicas:
    description: Read replicas besides the primary (0 or more; automatic failover when 1 or more).
    type: int
    default: 0
  subnet_group:
    description: CacheSubnetGroupName.
    type: str
    default: ""
  security_group_ids:
    description: SecurityGroupIds.
    type: list
    elements: str
    default: []
  auth_token_secret_id:
    description: Secrets Manager secret whose value is the AUTH token (read here, never returned).
    type: str
    default: ""
  snapshot_retention_days:
    description: SnapshotRetentionLimit (0 is no automatic snapshots).
    type: int
    default: 0
  tags:
    description: Tags on a new group.
    type: dict
    default: {}
  wait_seconds:
    description: How long to wait for the group to become available (or be gone); 0 is not at all.
    type: int
    default: 1800
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
"""

RETURN = r"""
exists:
  description: The group exists (after the change; in check mode, before it).
  type: bool
group:
  description: >-
    id, arn, status, engine, endpoint (primary address), port, transit_encryption,
    at_rest_encryption, auth_token and, when not created yet, request (the CreateReplicationGroup
    arguments without the token).
  type: dict
"""

import contextlib
import time
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    ansible_dict_to_boto3_tag_list,
    boto3_tag_list_to_ansible_dict,
)

# Set at creation and never changed in place here: a difference is reported, not applied.
FIXED = ("engine", "transit_encryption", "at_rest_encryption", "auth_token")


def describe(client: Any, name: str) -> dict[str, Any] | None:
    try:
        found = client.describe_replication_groups(ReplicationGroupId=name)
    except client.exceptions.ReplicationGroupNotFoundFault:
        return None
    groups = found.get("ReplicationGroups", [])
    return groups[0] if groups else None


def summary(group: dict[str, Any]) -> dict[str, Any]:
    node_group = (group.get("NodeGroups") or [{}])[0]
    endpoint = node_group.get("PrimaryEndpoint") or group.get("ConfigurationEndpoint") or {}
    return {
        "id": group["ReplicationGroupId"],
        "arn": group.get("ARN", ""),
        "status": group.get("Status", ""),
        "engine": group.get("Engine", ""),
        "endpoint": endpoint.get("Address", ""),
        "port": endpoint.get("Port", 0),
        "transit_encryption": bool(group.get("TransitEncryptionEnabled")),
        "at_rest_encryption": bool(group.get("AtRestEncryptionEnabled")),
        "auth_token": bool(group.get("AuthTokenEnabled")),
    }


def request(params: dict[str, Any]) -> dict[str, Any]:
    """CreateReplicationGroup's arguments, without the AUTH token."""
    args: dict[str, Any] = {
        "ReplicationGroupId": params["name"],
        "ReplicationGroupDescription": params["description"],
        "Engine": params["engine"],
        "CacheNodeType": params["node_type"],
        "Port": params["port"],
        "NumCacheClusters": 1 + params["replicas"],
        "AutomaticFailoverEnabled": params["replicas"] > 0,
        "MultiAZEnabled": params["replicas"] > 0,
        "TransitEncryptionEnabled": True,
        "AtRestEncryptionEnabled": True,
        "SecurityGroupIds": params["security_group_ids"],
        "SnapshotRetentionLimit": params["snapshot_retention_days"],
        "Tags": ansible_dict_to_boto3_tag_list(params["tags"]),
    }
    if params["engine_version"]:
        args["EngineVersion"] = params["engine_version"]
    if params["subnet_group"]:
        args["CacheSubnetGroupName"] = params["subnet_group"]
    return args


def wait(module: AnsibleAWSModule, client: Any, name: str, gone: bool) -> dict[str, Any] | None:
    deadline = time.monotonic() + module.params["wait_seconds"]
    while True:
        group = describe(client, name)
        if (group is None) if gone else (group or {}).get("Status") == "available":
            return group
        if time.monotonic() >= deadline:
            state = "removed" if gone else "available"
            module.fail_json(msg=f"replication group {name} is not {state} after the wait")
        time.sleep(10)


def owned(module: AnsibleAWSModule, client: Any, group: dict[str, Any]) -> None:
    tags = boto3_tag_list_to_ansible_dict(
        client.list_tags_for_resource(ResourceName=group["ARN"]).get("TagList", [])
    )
    if tags.get("iris:deployment") != module.params["deployment"]:
        module.fail_json(
            msg=f"replication group {group['ReplicationGroupId']} exists but is not deployment"
            f" {module.params['deployment']}'s (no iris:deployment={module.params['deployment']}"
            " tag): choose another aws_cache_store_name"
        )


def present(module: AnsibleAWSModule, client: Any, group: dict[str, Any] | None) -> None:
    params = module.params
    wanted = {
        "engine": params["engine"],
        "transit_encryption": True,
        "at_rest_encryption": True,
        "auth_token": bool(params["auth_token_secret_id"]),
    }
    if group is not None:
        found = summary(group)
        drift = sorted(k for k in FIXED if found[k] != wanted[k])
        module.exit_json(changed=False, exists=True, group={**found, "drift": drift})
    args = request(params)
    if module.check_mode:
        module.exit_json(changed=True, exists=False, group={"id": params["name"], "request": args})
    if params["auth_token_secret_id"]:
        secrets = module.client("secretsmanager")
        value = secrets.get_secret_value(SecretId=params["auth_token_secret_id"])
        args["AuthToken"] = value["SecretString"]
    client.create_replication_group(**args)
    created = wait(module, client, params["name"], gone=False) if params["wait_seconds"] else None
    group = created or describe(client, params["name"]) or {"ReplicationGroupId": params["name"]}
    module.exit_json(changed=True, exists=True, group={**summary(group), "drift": []})


def absent(module: AnsibleAWSModule, client: Any, group: dict[str, Any] | None) -> None:
    if group is None:
        module.exit_json(changed=False, exists=False, group={})
    if not module.check_mode:
        if group.get("Status") != "deleting":
            client.delete_replication_group(ReplicationGroupId=group["ReplicationGroupId"])
        if module.params["wait_seconds"]:
            wait(module, client, group["ReplicationGroupId"], gone=True)
    module.exit_json(changed=True, exists=module.check_mode, group=summary(group))


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "deployment": {"type": "str", "required": True},
            "description": {"type": "str", "default": "IRIS shared cache tier"},
            "engine": {"type": "str", "default": "valkey"},
            "engine_version": {"type": "str", "default": ""},
            "node_type": {"type": "str", "default": "cache.t4g.micro"},
            "port": {"type": "int", "default": 6379},
            "replicas": {"type": "int", "default": 0},
            "subnet_group": {"type": "str", "default": ""},
            "security_group_ids": {"type": "list", "elements": "str", "default": []},
            "auth_token_secret_id": {"type": "str", "default": ""},
            "snapshot_retention_days": {"type": "int", "default": 0},
            "tags": {"type": "dict", "default": {}},
            "wait_seconds": {"type": "int", "default": 1800},
        },
        supports_check_mode=True,
    )
    client = module.client("elasticache")
    name = module.params["name"]
    try:
        group = describe(client, name)
        if group is not None:
            owned(module, client, group)
        if module.params["state"] == "present":
            present(module, client, group)
        else:
            absent(module, client, group)
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"replication group {name}")


if __name__ == "__main__":
    main()
