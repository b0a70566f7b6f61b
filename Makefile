# Development tasks for the ipmasq.gateway collection. Run as root on Debian 12 (or Ubuntu):
# each target installs what it needs. `make test` is what CI runs; `make help` lists targets.

SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help
.DELETE_ON_ERROR:

VENV := $(CURDIR)/.venv
BUILD := $(CURDIR)/.build
COLLECTION_LINK := $(BUILD)/collections/ansible_collections/ipmasq/gateway
SANITY_ROOT := $(BUILD)/sanity/ansible_collections/ipmasq/gateway
VERSION := $(shell sed -n 's/^version: *//p' galaxy.yml)
TARBALL := $(BUILD)/dist/ipmasq-gateway-$(VERSION).tar.gz

# Debian packages the targets need. python3-venv: `venv` and ansible-test's own virtualenvs;
# netavark: static addresses and interface names on podman networks; debian-archive-keyring:
# debootstrap of bookworm from Ubuntu too; shellcheck: the ansible-test sanity test of that name;
# openssh-client: the Molecule scenario `lockout` reaches its gateway over SSH; ipset: the
# iptables backend keeps the addresses a hairpin forward matches in an ipset.
APT_PACKAGES := podman runc netavark debootstrap debian-archive-keyring nftables iptables \
	ipset conntrack iproute2 procps python3-venv git shellcheck ca-certificates \
	openssh-client

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)/collections
export CONTAINERS_CONF := $(CURDIR)/containers.conf
export DEBIAN_FRONTEND := noninteractive
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0
# Always the checkout's recipe (a stale value in the environment would point at an old tag);
# `make IPMASQ_IMAGE=...` still overrides it.
export IPMASQ_IMAGE := $(shell scripts/build-image.sh --print-ref)
# The node image plus docker.io, ufw and firewalld, for the scenarios whose gateways share
# their host with another firewall manager (molecule/neighbours).
export IPMASQ_MANAGERS_IMAGE := $(shell scripts/build-managers-image.sh --print-ref)

# Molecule scenarios: every molecule/*/molecule.yml, or only `make molecule SCENARIO=name`. Only a
# SCENARIO given on the make command line counts: one left in the environment is ignored, so it
# cannot narrow `make test` to one scenario unnoticed.
ALL_SCENARIOS := $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
SCENARIOS := $(if $(filter command line,$(origin SCENARIO)),$(SCENARIO),$(ALL_SCENARIOS))

# Set to skip the integration tests on a machine that cannot run them (not root, a tool
# missing); without it they fail. `make test` refuses it: every layer must run there.
ALLOW_SKIP_VAR := IPMASQ_ALLOW_SKIP

.PHONY: help deps venv collection-link image managers-image lint sanity unit integration molecule build build-check \
	test preflight prerequisites lab lab-down bench clean clean-all

help:
	@echo "make lab          build the NAT gateway lab in containers and prove NAT with traffic (lab-down removes it)"
	@echo "make test         everything CI runs: deps venv image lint sanity build-check unit integration molecule"
	@echo "make molecule     all Molecule scenarios, or one: make molecule SCENARIO=default"
	@echo "make deps|venv|image|collection-link   install apt packages | .venv | test image | collection symlink"
	@echo "make managers-image  the test image with docker.io, ufw and firewalld (molecule/neighbours)"
	@echo "make lint|sanity|unit|integration       single test layers"
	@echo "make build        collection tarball in .build/dist (build-check also installs it)"
	@echo "make bench [QUICK=1]   benchmarks"
	@echo "make clean | clean-all   remove build output | also .venv and test images"

deps:
	@missing=""; \
	for pkg in $(APT_PACKAGES); do \
		dpkg-query -W -f='$${Status}' "$$pkg" 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$pkg"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "deps: installing$$missing"; \
		apt-get update -qq; \
		apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Stamp tracks requirements.txt. An existing venv is synced in place rather than recreated,
# so commands running from it keep working; `make clean-all` gives a fresh one.
venv: $(VENV)/.stamp
$(VENV)/.stamp: requirements.txt
	@[ -x $(VENV)/bin/python ] || python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

collection-link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../../.. $(COLLECTION_LINK)

image: deps
	scripts/build-image.sh

managers-image: image
	scripts/build-managers-image.sh

# ANSIBLE_HOME: ansible-lint puts its own cache collections dir (default ~/.ansible/collections)
# first on the collection path, where a stale installed copy of this collection would shadow
# the checkout.
lint: venv collection-link
	yamllint --strict .
	ANSIBLE_HOME=$(BUILD)/ansible-lint ansible-lint

# ansible-test wants the collection at ansible_collections/<ns>/<name> and lists files itself:
# ANSIBLE_TEST_CONTENT_ROOT keeps it from taking the enclosing checkout (where .build is
# ignored) as the source tree. Its test virtualenvs are bootstrapped from get-pip.py on a host
# CI cannot reach; scripts/ansible-test-get-pip.py stands in, with pip from PyPI.
sanity: deps venv
	rm -rf $(BUILD)/sanity
	mkdir -p $(SANITY_ROOT)
	git ls-files -z --cached --others --exclude-standard \
		| while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done \
		| tar --null --no-recursion -T - -cf - | tar -xf - -C $(SANITY_ROOT)
	@pip_version=$$(python -c "import types; from ansible_test._internal.python_requirements import get_venv_packages; \
		print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])"); \
	cache=$$HOME/.ansible/test/cache; mkdir -p "$$cache"; \
	[ -f "$$cache/pip-$$pip_version-py3-none-any.whl" ] || \
		pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: "pip==$$pip_version" -d "$$cache"; \
	cp scripts/ansible-test-get-pip.py "$$cache/get_pip_$${pip_version//./_}.py"
	cd $(SANITY_ROOT) && ANSIBLE_TEST_CONTENT_ROOT=$(SANITY_ROOT) ansible-test sanity --python 3.11 --color no

build: venv
	ansible-galaxy collection build --force --output-path $(BUILD)/dist

# Install the tarball the way users do. --offline --no-deps: Galaxy (for ansible.posix) is unreachable.
build-check: build
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export ANSIBLE_COLLECTIONS_PATH="$$tmp"; \
	ansible-galaxy collection install --offline --no-deps -p "$$tmp" $(TARBALL); \
	test -f "$$tmp/ansible_collections/ipmasq/gateway/MANIFEST.json"; \
	ansible-galaxy collection list ipmasq.gateway; \
	ansible-doc --list ipmasq.gateway; \
	ansible-doc --list --type role ipmasq.gateway

# pytest.ini prints every skip (-rs); tests/conftest.py fails a run in which no test ran.
unit: venv collection-link
	PYTHONPATH=$(BUILD)/collections pytest tests/unit

integration: deps venv collection-link
	PYTHONPATH=$(BUILD)/collections pytest tests/integration

# Each scenario's testinfra runs append one line per verify step to IPMASQ_VERIFY_LOG
# (.config/molecule/testinfra/ipmasq_testbed.py); a scenario whose verify steps did not all
# run tests fails, as when molecule finds no tests at all and says "Skipping".
molecule: venv collection-link image $(if $(filter neighbours,$(SCENARIOS)),managers-image)
	@mkdir -p $(BUILD)/verify
	@for scenario in $(SCENARIOS); do \
		echo "=== molecule test -s $$scenario"; \
		log=$(BUILD)/verify/$$scenario.log; rm -f "$$log"; \
		IPMASQ_VERIFY_LOG="$$log" molecule test -s "$$scenario"; \
		python scripts/check-verify-log.py "$$scenario" "$$log"; \
	done

# `make test` fails at once, naming the reason, on a machine that cannot run every layer:
# preflight before anything is installed, prerequisites once `deps` has installed the tools.
preflight:
	@if [ "$$(id -u)" != 0 ]; then \
		echo "make test: must run as root (it installs apt packages, builds network namespaces" \
			"and runs privileged containers); running as $$(id -un)" >&2; exit 1; fi
	@if [ -n "$${$(ALLOW_SKIP_VAR):-}" ]; then \
		echo "make test: $(ALLOW_SKIP_VAR) is set, but make test runs every layer;" \
			"unset it (it is for 'make integration' on a machine that cannot run it)" >&2; exit 1; fi

prerequisites: deps
	@python3 tests/integration/prerequisites.py

test: preflight deps prerequisites venv image lint sanity build-check unit integration molecule

lab: venv collection-link image
	bash scripts/lab.sh up

lab-down:
	bash scripts/lab.sh down

bench: venv collection-link
	python benchmarks/run.py $(if $(QUICK),--quick)

clean:
	rm -rf $(BUILD) .pytest_cache .hypothesis tests/output
	find . -path ./.venv -prune -o -name __pycache__ -type d -prune -exec rm -rf {} +

clean-all: clean
	rm -rf $(VENV)
	@for ref in $$(podman images --filter reference=localhost/ipmasq-node --filter reference=localhost/ipmasq-managers --format '{{.Repository}}:{{.Tag}}'); do \
		podman rmi "$$ref" || echo "kept $$ref (in use)"; \
	done
