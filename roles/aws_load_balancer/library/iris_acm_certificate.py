#!/usr/bin/python
"""An ACM certificate requested with DNS validation, found again by its deployment tag.

C(community.aws.acm_certificate) only imports certificates; none of the collections requests
one from ACM.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: iris_acm_certificate
short_description: Request (or remove) an ACM certificate validated through DNS
options:
  domain_name:
    description: The certificate's name (the public name of the deployment).
    type: str
    required: true
  deployment:
    description: The iris:deployment tag that marks the certificate as this deployment's.
    type: str
    required: true
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
  tags:
    description: Tags on a new certificate.
    type: dict
    default: {}
  record_wait_seconds:
    description: How long to wait for ACM to publish the validation record of a new certificate.
    type: int
    default: 60
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
"""

RETURN = r"""
exists:
  description: The certificate exists (after the change; in check mode, before it).
  type: bool
certificate:
  description: arn, domain, status (PENDING_VALIDATION, ISSUED, ...) and validation_records
    (name, type, value of each CNAME that proves the name).
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
)

# Statuses of a certificate that is gone for good: a new one is requested instead.
DEAD = ("EXPIRED", "VALIDATION_TIMED_OUT", "REVOKED", "FAILED", "INACTIVE")


def ours(client: Any, domain: str, deployment: str) -> list[dict[str, Any]]:
    """The deployment's live certificates for ``domain``, newest first."""
    found = []
    for page in client.get_paginator("list_certificates").paginate():
        for item in page["CertificateSummaryList"]:
            if item.get("DomainName") != domain:
                continue
            arn = item["CertificateArn"]
            tags = client.list_tags_for_certificate(CertificateArn=arn).get("Tags", [])
            if {"Key": "iris:deployment", "Value": deployment} not in tags:
                continue
            described = client.describe_certificate(CertificateArn=arn)["Certificate"]
            if described.get("Status") not in DEAD:
                found.append(described)
    return sorted(found, key=lambda c: str(c.get("CreatedAt", "")), reverse=True)


def summary(certificate: dict[str, Any]) -> dict[str, Any]:
    records = [
        {"name": r["Name"], "type": r["Type"], "value": r["Value"]}
        for option in certificate.get("DomainValidationOptions", [])
        if (r := option.get("ResourceRecord"))
    ]
    return {
        "arn": certificate["CertificateArn"],
        "domain": certificate.get("DomainName", ""),
        "status": certificate.get("Status", ""),
        "in_use_by": certificate.get("InUseBy", []),
        "validation_records": records,
    }


def with_record(module: AnsibleAWSModule, client: Any, arn: str) -> dict[str, Any]:
    """A new certificate's validation record appears a few seconds after the request."""
    deadline = time.monotonic() + module.params["record_wait_seconds"]
    while True:
        certificate = client.describe_certificate(CertificateArn=arn)["Certificate"]
        if summary(certificate)["validation_records"] or time.monotonic() >= deadline:
            return certificate
        time.sleep(2)


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "domain_name": {"type": "str", "required": True},
            "deployment": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "tags": {"type": "dict", "default": {}},
            "record_wait_seconds": {"type": "int", "default": 60},
        },
        supports_check_mode=True,
    )
    client = module.client("acm")
    domain, deployment = module.params["domain_name"], module.params["deployment"]
    try:
        found = ours(client, domain, deployment)
        if module.params["state"] == "absent":
            if found and not module.check_mode:
                for certificate in found:
                    client.delete_certificate(CertificateArn=certificate["CertificateArn"])
            module.exit_json(
                changed=bool(found),
                exists=bool(found) and module.check_mode,
                certificate=summary(found[0]) if found else {},
            )
        if found:
            module.exit_json(changed=False, exists=True, certificate=summary(found[0]))
        if module.check_mode:
            module.exit_json(changed=True, exists=False, certificate={"domain": domain})
        arn = client.request_certificate(
            DomainName=domain,
            ValidationMethod="DNS",
            Tags=ansible_dict_to_boto3_tag_list(module.params["tags"]),
        )["CertificateArn"]
        module.exit_json(
            changed=True, exists=True, certificate=summary(with_record(module, client, arn))
        )
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"certificate for {domain}")


if __name__ == "__main__":
    main()
