# appinfra developer entry points. Every target installs what it needs on first use:
# a project virtualenv (.venv, via uv and uv.lock) and the Go build of the local
# control plane (bin/controlplane, bin/kubectl).
SHELL := /bin/bash
PY_SOURCES := $(shell find operator -name '*.py' 2>/dev/null)
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv controlplane helm luahealth envoy-ratelimit cluster run test test-unit test-e2e \
	test-envoy-ratelimit lint format crds bench kind-up clean rbac-ablation

help:
	@echo "make run        the operator against the current kube context (or a local control plane)"
	@echo "make test       lint + every test (unit and e2e against real servers)"
	@echo "make test-unit  unit tests only (no servers)"
	@echo "make test-e2e   e2e tests only"
	@echo "make lint       ruff + mypy"
	@echo "make cluster    run the local control plane in the foreground"
	@echo "make crds       regenerate crds/ (and the chart's copy) from the API models"
	@echo "make helm       build bin/helm from its Go module (used by the chart tests)"
	@echo "make bench      benchmarks (not part of make test; about 10 minutes, plus the first build)"
	@echo "make test-envoy-ratelimit  the EnvoyRateLimit config in the real envoyproxy/ratelimit (not part of make test)"
	@echo "make rbac-ablation  remove each chart RBAC permission in turn; show what breaks (not in make test)"
	@echo "make kind-up    a kind cluster with the chart and the examples (needs Docker)"

# The venv is rebuilt when the dependency lock changes.
$(STAMP): pyproject.toml uv.lock hack/venv.sh
	hack/venv.sh
	@touch $@

venv: $(STAMP)

# hack/build-controlplane.sh skips the Go build when sources and go.sum are unchanged.
controlplane:
	hack/build-controlplane.sh

# hack/build-helm.sh skips the build when bin/helm is at the pinned version.
helm:
	hack/build-helm.sh

## bin/luahealth: Argo CD's Lua VM (gopher-lua at Argo CD's pin) for the health-check tests.
## A few seconds to build; skipped when tests/luahealth is unchanged (content hash).
luahealth:
	hack/build-gotool.sh luahealth

## bin/ratelimit: envoyproxy/ratelimit from its Go module (tests/envoyratelimit). About a
## minute cold (downloads and compiles its dependencies); skipped when unchanged.
envoy-ratelimit:
	hack/build-gotool.sh envoyratelimit

cluster: controlplane
	hack/cluster.sh

run: venv controlplane
	hack/run.sh

crds: venv
	$(VENV)/bin/python -m appinfra.api.crds crds/
	cp crds/*.yaml charts/appinfra/crds/
	$(VENV)/bin/python -m appinfra.api.reference docs/api.md

lint: venv
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy

format: venv
	$(VENV)/bin/ruff check --fix operator tests bench
	$(VENV)/bin/ruff format operator tests bench

test-unit: venv helm luahealth
	hack/pytest.sh tests/unit $(PYTEST_ARGS)

test-e2e: venv controlplane helm
	hack/pytest.sh tests/e2e $(PYTEST_ARGS)

# One pytest run for everything, so the summary line counts every test.
test: lint controlplane helm luahealth
	hack/pytest.sh tests $(PYTEST_ARGS)

## The EnvoyRateLimit ConfigMap loaded by the real envoyproxy/ratelimit with a real Redis
## (Debian's redis-server, installed here if missing: needs root). Outside `make test`,
## which skips these tests, saying so, when bin/ratelimit or redis-server is missing.
test-envoy-ratelimit: venv envoy-ratelimit
	@command -v redis-server >/dev/null || apt-get install -y redis-server
	APPINFRA_REQUIRE_ENVOY_RATELIMIT=1 hack/pytest.sh tests/consumers $(PYTEST_ARGS)

bench: venv controlplane
	$(VENV)/bin/python bench/run.py

## Least privilege, proven: one chart permission removed at a time, the scenario that breaks
## printed for each (tests/support/rbac_ablation.py). Not part of `make test`; see README.
rbac-ablation: venv controlplane helm
	hack/rbac-ablation.sh $(ABLATION_ARGS)

kind-up: venv
	hack/kind-up.sh

clean:
	rm -rf $(VENV) bin .pytest_cache .mypy_cache .ruff_cache .tmp
