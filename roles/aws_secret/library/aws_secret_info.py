"""Whether a Secrets Manager secret exists, its ARN and tags: never its value.

The collections offer the secret's value (a lookup) or a module that changes it; a plan and the
ownership check need only to know that it is there and whose it is.
"""

from __future__ import annotations

DOCUMENTATION = r"""
module: aws_secret_info
short_description: Describe a Secrets Manager secret without reading its value
options:
  name:
    description: Name (or ARN) of the secret.
    required: true
    type: str
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
  - amazon.aws.boto3
"""

RETURN = r"""
exists:
  description: The secret exists and is not scheduled for deletion.
  type: bool
scheduled_for_deletion:
  description: The secret exists but is scheduled for deletion.
  type: bool
arn:
  description: The secret's ARN, when it exists.
  type: str
tags:
  description: The secret's tags as a dict.
  type: dict
"""

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule
from ansible_collections.amazon.aws.plugins.module_utils.tagging import (
    boto3_tag_list_to_ansible_dict,
)
from botocore.exceptions import BotoCoreError, ClientError


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={"name": {"type": "str", "required": True}}, supports_check_mode=True
    )
    client = module.client("secretsmanager")
    try:
        found = client.describe_secret(SecretId=module.params["name"])
    except client.exceptions.ResourceNotFoundException:
        module.exit_json(changed=False, exists=False, scheduled_for_deletion=False, arn="", tags={})
    except (BotoCoreError, ClientError) as exc:
        module.fail_json_aws(exc, msg=f"cannot describe the secret {module.params['name']}")
    module.exit_json(
        changed=False,
        exists="DeletedDate" not in found,
        scheduled_for_deletion="DeletedDate" in found,
        arn=found["ARN"],
        tags=boto3_tag_list_to_ansible_dict(found.get("Tags", [])),
    )


if __name__ == "__main__":
    main()
