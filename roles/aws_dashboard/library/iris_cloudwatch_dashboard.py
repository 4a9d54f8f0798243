#!/usr/bin/python
"""A CloudWatch dashboard, put only when its body differs (no collection has a module for it)."""

from __future__ import annotations

DOCUMENTATION = r"""
module: iris_cloudwatch_dashboard
short_description: Keep a CloudWatch dashboard, idempotently
description:
  - Reads the dashboard (GetDashboard) and puts it (PutDashboard) only when the body differs as
    JSON; deletes it for state=absent; state=get only reads it.
options:
  name:
    description: Dashboard name.
    type: str
    required: true
  body:
    description: Dashboard body (JSON text).
    type: str
    default: ""
  state:
    description: present, absent or get.
    type: str
    default: present
    choices: [present, absent, get]
  marker:
    description: Text whose presence in the existing body the module reports as C(marked).
    type: str
    default: ""
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
"""

RETURN = r"""
exists:
  description: Whether the dashboard existed before the call.
  returned: always
  type: bool
marked:
  description: Whether the existing body holds C(marker) (whose dashboard it is).
  returned: always
  type: bool
"""

import contextlib
import json

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.botocore import is_boto3_error_code
from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "body": {"type": "str", "default": ""},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent", "get"]},
            "marker": {"type": "str", "default": ""},
        },
        supports_check_mode=True,
    )
    name, state = module.params["name"], module.params["state"]
    client = module.client("cloudwatch")
    try:
        try:
            current = client.get_dashboard(DashboardName=name).get("DashboardBody", "")
        except is_boto3_error_code("ResourceNotFound"):
            current = None
        changed = False
        if state == "present":
            wanted = json.loads(module.params["body"])
            changed = current is None or json.loads(current) != wanted
            if changed and not module.check_mode:
                client.put_dashboard(DashboardName=name, DashboardBody=json.dumps(wanted))
        elif state == "absent" and current is not None:
            changed = True
            if not module.check_mode:
                client.delete_dashboards(DashboardNames=[name])
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"cannot keep dashboard {name}")
    except ValueError as error:
        module.fail_json(msg=f"dashboard {name}: the body is not JSON ({error})")
    # Not the body itself: output is masked for the credentials' values, which may be short.
    marked = current is not None and module.params["marker"] in current
    module.exit_json(changed=changed, exists=current is not None, marked=marked)


if __name__ == "__main__":
    main()
