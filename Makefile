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
# `make build` needs ansible-core alone: a virtualenv of its own with the pinned version,
# from wheels kept in .cache/wheels (which `make clean` keeps), so it builds offline too.
ANSIBLE_CORE := $(shell sed -n 's/^ansible-core==//p' requirements.txt)
BUILD_VENV := $(BUILD)/build-venv
WHEELS := $(CURDIR)/.cache/wheels
# What the tarball must not hold (galaxy.yml's build_ignore); build-check looks for them.
NOT_PACKAGED := tests molecule benchmarks images scripts docs/benchmarks.png .config .ci \
	Makefile containers.conf requirements.in requirements.txt

# Debian packages the targets need. python3-venv: `venv` and ansible-test's own virtualenvs;
# netavark: static addresses and interface names on podman networks; debian-archive-keyring:
# debootstrap of bookworm from Ubuntu too; shellcheck: the ansible-test sanity test of that name;
# openssh-client: the Molecule scenario `lockout` reaches its gateway over SSH; ipset: the
# iptables backend keeps the addresses a hairpin forward matches in an ipset; nfct: its
# per-rule timeouts are conntrack timeout objects made with nfct;
# chromium, fonts-dejavu-core: the docs site test renders pages in headless Chromium.
APT_PACKAGES := podman runc netavark debootstrap debian-archive-keyring nftables iptables \
	ipset nfct conntrack iproute2 procps python3-venv git shellcheck ca-certificates \
	openssh-client chromium fonts-dejavu-core

export PATH := $(VENV)/bin:$(PATH)
export ANSIBLE_COLLECTIONS_PATH := $(BUILD)/collections
export CONTAINERS_CONF := $(CURDIR)/containers.conf
export DEBIAN_FRONTEND := noninteractive
export ANSIBLE_FORCE_COLOR := false
export PY_COLORS := 0
# Tool virtualenvs of their own, so their pins do not meet the test toolchain's:
# requirements-docs.txt (antsibull-docs, Sphinx) and requirements-builder.txt (ansible-builder).
DOCS_VENV := $(BUILD)/venvs/docs
BUILDER_VENV := $(BUILD)/venvs/builder
DOCS := $(BUILD)/docs
# The docs tools find ansible.posix (a dependency of the collection) among the collections of
# the venv's `ansible` package.
BUNDLED_COLLECTIONS = $(shell $(VENV)/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')

# Debian release of the test containers (Molecule, lab): bookworm (Debian 12) or trixie
# (Debian 13), e.g. `make molecule IPMASQ_RELEASE=trixie SCENARIO=default`.
IPMASQ_RELEASE ?= bookworm
export IPMASQ_RELEASE
RELEASES := bookworm trixie
# Always the checkout's recipe (a stale value in the environment would point at an old tag);
# `make IPMASQ_IMAGE=...` still overrides it.
export IPMASQ_IMAGE := $(shell scripts/build-image.sh --release $(IPMASQ_RELEASE) --print-ref)
# The node image plus docker.io, ufw and firewalld, for the scenarios whose gateways share
# their host with another firewall manager (molecule/neighbours).
export IPMASQ_MANAGERS_IMAGE := $(shell scripts/build-managers-image.sh --print-ref)

# Scenarios that `make test` runs on every release in RELEASES; the others run on IPMASQ_RELEASE.
RELEASE_SCENARIOS := default iptables

# ansible-core lines tested besides the venv's (2.19, with the host's Python 3.11). Each runs
# sanity and unit tests with Python 3.13 in a container of the trixie image
# (tests/matrix/core-line.sh), from requirements-core-<line>.txt.
CORE_LINES := 2.18 2.20 2.21 2.22

# Molecule scenarios: every molecule/*/molecule.yml, or only `make molecule SCENARIO=name` (or
# names). Only a SCENARIO given on the make command line counts: one left in the environment
# is ignored, so it cannot narrow `make test` to one scenario unnoticed.
ALL_SCENARIOS := $(sort $(patsubst molecule/%/molecule.yml,%,$(wildcard molecule/*/molecule.yml)))
SCENARIOS := $(if $(filter command line,$(origin SCENARIO)),$(SCENARIO),$(ALL_SCENARIOS))

# Set to skip the integration tests on a machine that cannot run them (not root, a tool
# missing); without it they fail. `make test` refuses it: every layer must run there.
ALLOW_SKIP_VAR := IPMASQ_ALLOW_SKIP

# copy_tree DEST: the tracked and the untracked-but-not-ignored files, copied to DEST afresh.
define copy_tree
	rm -rf $(1)
	mkdir -p $(1)
	git ls-files -z --cached --others --exclude-standard \
		| while IFS= read -r -d '' f; do [ -e "$$f" ] && printf '%s\0' "$$f"; done \
		| tar --null --no-recursion -T - -cf - | tar -xf - -C $(1)
endef

.PHONY: help deps venv build-venv collection-link image images managers-image lint sanity core-lines \
	$(addprefix core-,$(CORE_LINES)) unit integration molecule molecule-releases molecule-all build \
	build-check release-check docs docs-check test preflight prerequisites lab lab-down lab-test bench \
	clean clean-all

help:
	@echo "make lab          build the NAT gateway lab in containers and prove NAT with traffic (lab-down removes it)"
	@echo "make test         everything CI runs: deps venv images lint sanity core-lines build-check release-check unit docs-check integration molecule molecule-releases lab-test"
	@echo "make molecule     all Molecule scenarios, or one: make molecule SCENARIO=default [IPMASQ_RELEASE=trixie]"
	@echo "make molecule-releases   $(RELEASE_SCENARIOS) on the releases other than $(IPMASQ_RELEASE) ($(RELEASES))"
	@echo "make lab-test     make lab, failing when a check fails, then lab-down"
	@echo "make deps|venv|image|images|collection-link   apt packages | .venv | test image (of IPMASQ_RELEASE) | all releases' | collection symlink"
	@echo "make managers-image  the test image with docker.io, ufw and firewalld (molecule/neighbours)"
	@echo "make lint|sanity|unit|integration       single test layers"
	@echo "make core-lines | core-2.NN   sanity and unit tests under ansible-core $(CORE_LINES)"
	@echo "make build        collection tarball in .build/dist, with ansible-core alone (build-check also installs it; release-check rehearses a release)"
	@echo "make docs | docs-check   HTML docs site in .build/docs/html | check it in headless Chromium"
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

$(DOCS_VENV)/.stamp: requirements-docs.txt
$(BUILDER_VENV)/.stamp: requirements-builder.txt
$(DOCS_VENV)/.stamp $(BUILDER_VENV)/.stamp:
	rm -rf $(dir $@)
	python3 -m venv $(dir $@)
	$(dir $@)bin/pip install --quiet --disable-pip-version-check -r $<
	@touch $@

collection-link:
	@mkdir -p $(dir $(COLLECTION_LINK))
	@ln -sfn ../../../.. $(COLLECTION_LINK)

image: deps
	scripts/build-image.sh --release $(IPMASQ_RELEASE)

# Side by side: debootstrap mostly waits for the mirror and for dpkg.
images: deps
	@pids=(); for release in $(RELEASES); do scripts/build-image.sh --release "$$release" & pids+=($$!); done; \
	status=0; for pid in "$${pids[@]}"; do wait "$$pid" || status=1; done; exit "$$status"

managers-image: image
	scripts/build-managers-image.sh

# ANSIBLE_HOME: ansible-lint puts its own cache collections dir (default ~/.ansible/collections)
# first on the collection path, where a stale installed copy of this collection would shadow
# the checkout.
# Then: the docs of the module, the roles and docs/docsite (antsibull-docs), and the execution
# environment of meta/execution-environment.yml, through the link at the root that makes its
# paths start at the collection root: ansible-builder writes the build context, and its
# introspect step, run on the installed tarball, finds the controller-side dependencies.
lint: venv collection-link build $(DOCS_VENV)/.stamp $(BUILDER_VENV)/.stamp
	yamllint --strict .
	ANSIBLE_HOME=$(BUILD)/ansible-lint ansible-lint
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections:$(BUNDLED_COLLECTIONS) PATH=$(DOCS_VENV)/bin:$$PATH \
		antsibull-docs lint-collection-docs --plugin-docs .
	$(BUILDER_VENV)/bin/ansible-builder create --file execution-environment.yml --context $(BUILD)/ee
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	ANSIBLE_COLLECTIONS_PATH="$$tmp" ansible-galaxy collection install --offline --no-deps -p "$$tmp" $(TARBALL) >/dev/null; \
	$(BUILDER_VENV)/bin/ansible-builder introspect --sanitize "$$tmp" | tee "$$tmp/deps.yml"; \
	grep -q '^python: \[\]$$' "$$tmp/deps.yml"; \
	grep -q "^- 'openssh-clients \[platform:rpm\]  # from collection ipmasq.gateway'$$" "$$tmp/deps.yml"

# ansible-test wants the collection at ansible_collections/<ns>/<name> and lists files itself:
# ANSIBLE_TEST_CONTENT_ROOT keeps it from taking the enclosing checkout (where .build is
# ignored) as the source tree. Its test virtualenvs are bootstrapped from get-pip.py on a host
# CI cannot reach; scripts/ansible-test-get-pip.py stands in, with pip from PyPI.
sanity: deps venv
	rm -rf $(BUILD)/sanity
	$(call copy_tree,$(SANITY_ROOT))
	@pip_version=$$(python -c "import types; from ansible_test._internal.python_requirements import get_venv_packages; \
		print(get_venv_packages(types.SimpleNamespace(version='3.11'))['pip'])"); \
	cache=$$HOME/.ansible/test/cache; mkdir -p "$$cache"; \
	[ -f "$$cache/pip-$$pip_version-py3-none-any.whl" ] || \
		pip download --quiet --disable-pip-version-check --no-deps --only-binary :all: "pip==$$pip_version" -d "$$cache"; \
	cp scripts/ansible-test-get-pip.py "$$cache/get_pip_$${pip_version//./_}.py"
	cd $(SANITY_ROOT) && ANSIBLE_TEST_CONTENT_ROOT=$(SANITY_ROOT) ansible-test sanity --python 3.11 --color no

build-venv: $(BUILD_VENV)/.stamp
$(BUILD_VENV)/.stamp: requirements.txt
	@[ -x $(BUILD_VENV)/bin/python ] || python3 -m venv $(BUILD_VENV)
	@pip="$(BUILD_VENV)/bin/pip --quiet --disable-pip-version-check"; \
	$$pip install --no-index --find-links $(WHEELS) "ansible-core==$(ANSIBLE_CORE)" 2>/dev/null || { \
		echo "build-venv: fetching ansible-core $(ANSIBLE_CORE) into $(WHEELS)"; \
		$$pip download -d $(WHEELS) "ansible-core==$(ANSIBLE_CORE)" && \
		$$pip install --no-index --find-links $(WHEELS) "ansible-core==$(ANSIBLE_CORE)"; }
	@touch $@

# Two lines at a time: each is mostly one process (pylint), and 2 CPUs are what CI has.
core-lines:
	$(MAKE) --no-print-directory -j2 --output-sync=target $(addprefix core-,$(CORE_LINES))

# pip (on the host, from the venv) downloads the wheels; the container has no network.
$(addprefix core-,$(CORE_LINES)): core-%: deps venv
	scripts/build-image.sh --release trixie
	$(call copy_tree,$(BUILD)/core/$*/src/ansible_collections/ipmasq/gateway)
	PIP=$(VENV)/bin/pip tests/matrix/core-line.sh $* $(BUILD)/core/$*/src/ansible_collections/ipmasq/gateway

build: build-venv
	$(BUILD_VENV)/bin/ansible-galaxy collection build --force --output-path $(BUILD)/dist

# Install the tarball the way users do, with ansible-core alone. --offline --no-deps: Galaxy
# is unreachable (and the collection depends on no other). The tarball must hold none of
# NOT_PACKAGED.
build-check: build
	@tmp=$$(mktemp -d); trap 'rm -rf "$$tmp"' EXIT; \
	export ANSIBLE_COLLECTIONS_PATH="$$tmp" PATH="$(BUILD_VENV)/bin:$$PATH"; \
	listing=$$(tar -tzf $(TARBALL)); \
	for entry in $(NOT_PACKAGED); do \
		if grep -qE "^(\./)?$$entry(/|$$)" <<<"$$listing"; then \
			echo "build-check: $$entry is in the tarball (galaxy.yml build_ignore)"; exit 1; fi; \
	done; \
	echo "build-check: $$(wc -l <<<"$$listing") entries, $$(du -k $(TARBALL) | cut -f1) KiB, none of: $(NOT_PACKAGED)"; \
	ansible-galaxy collection install --offline --no-deps -p "$$tmp" $(TARBALL); \
	test -f "$$tmp/ansible_collections/ipmasq/gateway/MANIFEST.json"; \
	test -f "$$tmp/ansible_collections/ipmasq/gateway/playbooks/remove.yml"; \
	ansible-galaxy collection list ipmasq.gateway; \
	ansible-doc --list ipmasq.gateway; \
	ansible-doc --list --type role ipmasq.gateway; \
	ansible-doc ipmasq.gateway.nat_rules >/dev/null; \
	ansible-doc ipmasq.gateway.nat_kernel >/dev/null; \
	ansible-doc --type filter ipmasq.gateway.role_config >/dev/null

# The site: this checkout's README.md and docs/benchmarks.md, and the collection's pages
# (module, roles, docs/docsite guides, changelog) that antsibull-docs writes from the
# installed-as-current collection. Sphinx turns every warning into an error.
docs: venv collection-link $(DOCS_VENV)/.stamp
	rm -rf $(DOCS)
	mkdir -p $(DOCS)/src/gateway
	chmod 0755 $(DOCS)/src/gateway  # antsibull-docs writes only into a folder that only it may write
	cp docs/site/index.rst $(DOCS)/src/
	cp README.md $(DOCS)/src/readme.md
	cp docs/benchmarks.md docs/benchmarks.png $(DOCS)/src/
	ANSIBLE_COLLECTIONS_PATH=$(BUILD)/collections:$(BUNDLED_COLLECTIONS) PATH=$(DOCS_VENV)/bin:$$PATH \
		antsibull-docs collection --use-current --squash-hierarchy --fail-on-error \
		--dest-dir $(DOCS)/src/gateway ipmasq.gateway
	$(DOCS_VENV)/bin/sphinx-build -W --keep-going -q -b html -c docs/site $(DOCS)/src $(DOCS)/html
	@echo "docs: $(DOCS)/html/index.html"

# Headless Chromium renders the index and the nat_rules page (tests/docs).
docs-check: deps venv docs
	pytest tests/docs

# The release steps of the README on a copy of the checkout (tests/release).
release-check: venv collection-link
	pytest tests/release

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
		echo "=== molecule test -s $$scenario ($(IPMASQ_RELEASE))"; \
		log=$(BUILD)/verify/$(IPMASQ_RELEASE)-$$scenario.log; rm -f "$$log"; \
		IPMASQ_VERIFY_LOG="$$log" molecule test -s "$$scenario"; \
		python scripts/check-verify-log.py "$$scenario" "$$log"; \
	done

# A sub-make per release: IPMASQ_IMAGE follows IPMASQ_RELEASE there.
molecule-releases:
	@for release in $(filter-out $(IPMASQ_RELEASE),$(RELEASES)); do \
		$(MAKE) --no-print-directory molecule IPMASQ_RELEASE="$$release" SCENARIO="$(RELEASE_SCENARIOS)"; \
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

test: preflight deps prerequisites venv images lint sanity core-lines build-check release-check \
	unit docs-check
	$(MAKE) --no-print-directory -j2 --output-sync=target integration molecule-all

# The integration tests (network namespaces) and the Molecule scenarios (containers) share
# nothing and spend much of their time waiting on timers and boots: `make test` runs them side
# by side. The scenarios themselves run one after another (the releases reuse their names), and
# the lab after them.
molecule-all:
	$(MAKE) --no-print-directory molecule
	$(MAKE) --no-print-directory molecule-releases
	$(MAKE) --no-print-directory lab-test

lab: venv collection-link image
	bash scripts/lab.sh up

lab-down:
	bash scripts/lab.sh down

# The README's first command as a user runs it, then the lab removed again (a running lab too):
# fails when any of the lab's checks fails.
lab-test: venv collection-link image
	@rc=0; bash scripts/lab.sh up || rc=$$?; bash scripts/lab.sh down; exit $$rc

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
