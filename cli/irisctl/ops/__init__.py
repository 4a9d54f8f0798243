"""What each irisctl command does, over :mod:`irisctl.runner`; commands only parse and render.

One module per concern; each function runs one or two playbooks and returns plain data (the
``--json`` shape):

- :mod:`~irisctl.ops.target`: where a command acts, and the reports read-only plays return;
- :mod:`~irisctl.ops.releases`: the release to ship, built from source or prebuilt;
- :mod:`~irisctl.ops.lock`: the deploy lock (taken by deploys, removed by ``irisctl unlock``);
- :mod:`~irisctl.ops.deploy`: deploy, provision, rollback and restart, each health-checked;
- :mod:`~irisctl.ops.reports`: status, releases and health of each host;
- :mod:`~irisctl.ops.logs` and :mod:`~irisctl.ops.follow`: the logs, read once or followed;
- :mod:`~irisctl.ops.cache`: the analysis cache, through ``iris-service-admin``.
"""
