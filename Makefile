# Two commands on a fresh Debian 12 machine (as root):
#   make sandbox   installs everything, then brings up a local sandbox host and deploys to it
#   make test      installs everything, then runs the whole test suite
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
APT_PACKAGES := python3-venv systemd-container mmdebstrap apt-cacher-ng pebble zstd curl \
	openssl iproute2 openssh-client rsync redis-server

.PHONY: install apt venv test lint sandbox sandbox-down bench

install: apt venv

apt:
	@missing=$$(for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f '$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml service/pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e ./service -e '.[dev]'
	touch $@

# Python: ruff and mypy (its files and settings are [tool.mypy] in pyproject.toml); YAML:
# yamllint (.yamllint) and ansible-lint on the production profile (.ansible-lint).
lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/yamllint .
	cd $(CURDIR) && $(VENV)/bin/ansible-lint --profile production roles playbooks

# Five pytest runs side by side. The single-host stories are two runs sharing one sandbox: the
# first brings it up and converges its hosts, then hands them to the second
# (tests/hosts/conftest.py), and each works on hosts of its own; most of their time is spent
# waiting on hosts, not computing. The fleet stories join that sandbox with hosts of their
# own; the AWS plays against moto are CPU-bound (about 7 minutes of one core through Mitogen,
# measured alone); then everything else. Only the last one's output streams; the others are
# shown after it, and any run failing fails. Each names its slowest tests, so where the
# 30-minute budget goes stays visible.
AWS_TESTS := tests/cli/test_aws.py tests/cli/test_aws_fleet.py tests/cli/test_aws_monitoring.py
HOSTS_GUEST_TESTS := tests/hosts/test_capacity.py tests/hosts/test_irisctl.py \
	tests/hosts/test_provisioning.py

test: install lint
	@hosts_log=$$(mktemp); guest_log=$$(mktemp); fleet_log=$$(mktemp); aws_log=$$(mktemp); \
	share=$$(mktemp -d); \
	IRIS_HOSTS_SHARE=$$share $(VENV)/bin/pytest --durations=20 tests/hosts \
	  $(addprefix --ignore=,$(HOSTS_GUEST_TESTS)) >$$hosts_log 2>&1 & hosts_pid=$$!; \
	IRIS_HOSTS_SHARE=$$share IRIS_HOSTS_JOIN=1 $(VENV)/bin/pytest --durations=20 \
	  $(HOSTS_GUEST_TESTS) >$$guest_log 2>&1 & guest_pid=$$!; \
	IRIS_FLEET_JOIN_SANDBOX=1 $(VENV)/bin/pytest --durations=10 tests/fleet >$$fleet_log 2>&1 & fleet_pid=$$!; \
	$(VENV)/bin/pytest --durations=10 $(AWS_TESTS) >$$aws_log 2>&1 & aws_pid=$$!; \
	$(VENV)/bin/pytest --durations=10 --ignore=tests/hosts --ignore=tests/fleet \
	  $(addprefix --ignore=,$(AWS_TESTS)); local_rc=$$?; \
	wait $$hosts_pid; hosts_rc=$$?; wait $$guest_pid; guest_rc=$$?; \
	wait $$fleet_pid; fleet_rc=$$?; wait $$aws_pid; aws_rc=$$?; \
	echo "=== $(AWS_TESTS) ==="; cat $$aws_log; \
	echo "=== tests/hosts (owner) ==="; cat $$hosts_log; \
	echo "=== $(HOSTS_GUEST_TESTS) ==="; cat $$guest_log; \
	echo "=== tests/fleet ==="; cat $$fleet_log; \
	rm -rf $$hosts_log $$guest_log $$fleet_log $$aws_log $$share; \
	echo "tests/hosts exit $$hosts_rc and $$guest_rc, tests/fleet exit $$fleet_rc," \
	  "AWS plays exit $$aws_rc, the rest exit $$local_rc"; \
	[ $$local_rc -eq 0 ] && [ $$hosts_rc -eq 0 ] && [ $$guest_rc -eq 0 ] && [ $$fleet_rc -eq 0 ] \
	  && [ $$aws_rc -eq 0 ]

sandbox: install
	$(VENV)/bin/irisctl sandbox up
	$(VENV)/bin/irisctl provision
	$(VENV)/bin/irisctl deploy
	$(VENV)/bin/irisctl status
	$(VENV)/bin/irisctl health

sandbox-down:
	$(VENV)/bin/irisctl sandbox down

bench: install
	command -v wrk >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -q wrk
	$(VENV)/bin/python bench/service_serving.py
	$(VENV)/bin/python bench/capacity_bench.py
	$(VENV)/bin/python bench/deploy_bench.py
	$(VENV)/bin/python bench/deploy_failures.py
	$(VENV)/bin/python bench/cache_backup_bench.py
	$(VENV)/bin/python bench/aws_bench.py
