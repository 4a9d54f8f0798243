"""Ansible's linear strategy, run through Mitogen (the ``mitogen`` package irisctl depends on).

Mitogen keeps one Python interpreter per host for the whole play and runs each module in it,
so a module's imports (boto3 and its service models for the AWS plays) are paid once per play
instead of once per task. Ansible finds strategies only as files on a plugin path, hence this
file; the strategy itself is the package's.
"""

from ansible_mitogen.plugins.strategy.mitogen_linear import StrategyModule

__all__ = ["StrategyModule"]
