#!/usr/bin/python
"""A CloudWatch alarm on a metric math expression, put only when it differs from what exists."""

from __future__ import annotations

DOCUMENTATION = r"""
module: iris_metric_math_alarm
short_description: Keep a CloudWatch metric math alarm, idempotently
description:
  - C(amazon.aws.cloudwatch_metric_alarm) leaves C(Metrics) out of its comparison, so it puts a
    metric math alarm again on every run; this module compares the whole alarm.
options:
  name:
    description: Alarm name.
    type: str
    required: true
  state:
    description: present or absent.
    type: str
    default: present
    choices: [present, absent]
  description:
    description: Alarm description.
    type: str
    default: ""
  metrics:
    description: MetricDataQuery structures as PutMetricAlarm takes them.
    type: list
    elements: dict
    default: []
  comparison:
    description: ComparisonOperator.
    type: str
    default: GreaterThanThreshold
  threshold:
    description: Threshold.
    type: float
    default: 0
  evaluation_periods:
    description: EvaluationPeriods.
    type: int
    default: 1
  treat_missing_data:
    description: TreatMissingData.
    type: str
    default: missing
  alarm_actions:
    description: ARNs notified on ALARM.
    type: list
    elements: str
    default: []
  ok_actions:
    description: ARNs notified on OK.
    type: list
    elements: str
    default: []
extends_documentation_fragment:
  - amazon.aws.common.modules
  - amazon.aws.region.modules
"""

RETURN = r"""
alarm_arn:
  description: The alarm's ARN.
  returned: when present
  type: str
"""

import contextlib
from typing import Any

with contextlib.suppress(ImportError):  # AnsibleAWSModule reports a missing botocore
    from botocore.exceptions import BotoCoreError, ClientError

from ansible_collections.amazon.aws.plugins.module_utils.modules import AnsibleAWSModule

COMPARED = (
    "AlarmDescription",
    "Metrics",
    "ComparisonOperator",
    "Threshold",
    "EvaluationPeriods",
    "TreatMissingData",
    "AlarmActions",
    "OKActions",
)


def _normal(value: Any) -> Any:
    """Numbers as floats, dicts without empty members: what AWS echoes back compares equal."""
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items() if v not in (None, [], {})}
    if isinstance(value, list):
        return [_normal(v) for v in value]
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return float(value)
    return value


def main() -> None:
    module = AnsibleAWSModule(
        argument_spec={
            "name": {"type": "str", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "description": {"type": "str", "default": ""},
            "metrics": {"type": "list", "elements": "dict", "default": []},
            "comparison": {"type": "str", "default": "GreaterThanThreshold"},
            "threshold": {"type": "float", "default": 0},
            "evaluation_periods": {"type": "int", "default": 1},
            "treat_missing_data": {"type": "str", "default": "missing"},
            "alarm_actions": {"type": "list", "elements": "str", "default": []},
            "ok_actions": {"type": "list", "elements": "str", "default": []},
        },
        supports_check_mode=True,
    )
    params = module.params
    client = module.client("cloudwatch")
    try:
        found = client.describe_alarms(AlarmNames=[params["name"]], AlarmTypes=["MetricAlarm"])
        current = (found.get("MetricAlarms") or [None])[0]
        if params["state"] == "absent":
            if current and not module.check_mode:
                client.delete_alarms(AlarmNames=[params["name"]])
            module.exit_json(changed=current is not None)
        wanted = {
            "AlarmName": params["name"],
            "AlarmDescription": params["description"],
            "Metrics": params["metrics"],
            "ComparisonOperator": params["comparison"],
            "Threshold": params["threshold"],
            "EvaluationPeriods": params["evaluation_periods"],
            "TreatMissingData": params["treat_missing_data"],
            "AlarmActions": params["alarm_actions"],
            "OKActions": params["ok_actions"],
            "ActionsEnabled": True,
        }
        same = current is not None and all(
            _normal(current.get(key)) == _normal(wanted[key]) for key in COMPARED
        )
        if not same and not module.check_mode:
            client.put_metric_alarm(**wanted)
            current = client.describe_alarms(AlarmNames=[params["name"]])["MetricAlarms"][0]
    except (BotoCoreError, ClientError) as error:
        module.fail_json_aws(error, msg=f"cannot keep alarm {params['name']}")
    module.exit_json(changed=not same, alarm_arn=(current or {}).get("AlarmArn", ""))


if __name__ == "__main__":
    main()
