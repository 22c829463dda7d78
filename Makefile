# photostack — the two commands a newcomer runs (as root, on Debian 12 / Ubuntu):
#   make up     set everything up (OS packages, .venv) and bring the one-box stack up
#   make test   set up the same way, then run the whole test suite against the one-box
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Only what the one-box bootstrap needs; every service's packages are installed by its role.
OS_PACKAGES := openssh-server openssh-client python3-venv iproute2 curl
# Tests: a headless browser for the UI and dashboard tests; munin (its Perl alert templating);
# the servers of which the app tests start throwaway copies (the one-box roles install the
# same packages for themselves).
TEST_OS_PACKAGES := chromium munin postgresql pgbouncer redis-server memcached rabbitmq-server
# The lab (tests marked `lab`): the base image, the hosts, their network and the relays.
TEST_OS_PACKAGES += debootstrap systemd-container iptables socat haproxy

.PHONY: up test down status bench setup os-packages test-os-packages lock

up: setup
	$(BIN)/ops up

# The suite in groups (unit, one-box, drills, lab), one after another, each shuffled and timed against
# its budget: tests/run_groups.py.
test: setup test-os-packages
	$(BIN)/python -m tests.run_groups

down: setup
	$(BIN)/ops down

status: setup
	$(BIN)/ops status

bench: setup
	for script in bench/*.py; do $(BIN)/python $$script || exit 1; done

setup: os-packages $(VENV)/.installed

os-packages:
	@dpkg -s $(OS_PACKAGES) >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(OS_PACKAGES); }

test-os-packages:
	@dpkg -s $(TEST_OS_PACKAGES) >/dev/null 2>&1 || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q $(TEST_OS_PACKAGES); }

# Every dependency (hosts and dev) from the one lock file, each file checked against its hashes;
# then the project itself, which brings nothing else.
$(VENV)/.installed: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --require-hashes -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

# After changing a pin in pyproject.toml: re-resolve and re-hash every dependency (uv, in a venv of
# its own so it is not itself a dependency). --universal: one lock for every platform and Python.
UV_VERSION := 0.9.30
lock:
	$(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install -q uv==$(UV_VERSION)
	.venv-lock/bin/uv pip compile pyproject.toml --extra test --generate-hashes --universal \
		--python-version 3.11 --custom-compile-command "make lock" -o requirements.lock
