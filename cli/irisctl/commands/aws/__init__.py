"""irisctl aws: the deployment's AWS resources, one subcommand per module: plan, up, status,
down."""

from __future__ import annotations

import click

from irisctl.commands.aws import down, plan, status, up
from irisctl.errors import EXIT_CODES_HELP


@click.group("aws", epilog=EXIT_CODES_HELP)
def command() -> None:
    """The deployment on AWS, from an empty account to a verified HTTPS endpoint and back.

    Instance (Amazon Linux 2023, IMDSv2 only), Elastic IP, security group, IAM role and
    instance profile, the OpenAI key in Secrets Manager, the cache backup bucket, and the A
    record when a Route 53 zone is configured. Settings: group_vars/all/aws.yml of the
    inventory; credentials: the standard AWS chain (AWS_PROFILE, environment, SSO...).

    \b
    Examples:
      irisctl -i inventory/production aws plan
      OPENAI_API_KEY=... irisctl -i inventory/production aws up
      irisctl -i inventory/production aws status --json
      irisctl -i inventory/production aws down --yes
    """


for module in (plan, up, status, down):
    command.add_command(module.command)
