# appinfra developer entry points. Every target installs what it needs on first use:
# a project virtualenv (.venv, via uv and uv.lock) and the Go build of the local
# control plane (bin/controlplane, bin/kubectl).
SHELL := /bin/bash
PY_SOURCES := $(shell find operator -name '*.py' 2>/dev/null)
VENV := .venv
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: help venv controlplane helm luahealth envoy-ratelimit promtool prometheus-crds cluster run test test-unit test-e2e \
	test-envoy-ratelimit lint format crds bench bench-scale bench-peers kind-up clean rbac-ablation postgres

# `make help` prints the `## ` text on each target's line, in file order.
help: ## this list (the default target)
	@awk -F ':.*## ' '/^[a-zA-Z0-9_-]+:.*## / {printf "make %-22s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The venv is rebuilt when the dependency lock changes.
$(STAMP): pyproject.toml uv.lock hack/venv.sh
	hack/venv.sh
	@touch $@

venv: $(STAMP) ## the project virtualenv (.venv) from uv.lock

# hack/build-controlplane.sh skips the Go build when sources and go.sum are unchanged.
controlplane: ## build bin/controlplane and bin/kubectl (skipped when unchanged)
	hack/build-controlplane.sh

# hack/build-helm.sh skips the build when bin/helm is at the pinned version.
helm: ## build bin/helm from its Go module (used by the chart tests)
	hack/build-helm.sh

# bin/luahealth: Argo CD's Lua VM (gopher-lua at Argo CD's pin) for the health-check tests.
# A few seconds to build; skipped when tests/luahealth is unchanged (content hash).
luahealth: ## build bin/luahealth, Argo CD's Lua VM for the health-check tests
	hack/build-gotool.sh luahealth

# bin/ratelimit: envoyproxy/ratelimit from its Go module (tests/envoyratelimit). About a
# minute cold (downloads and compiles its dependencies); skipped when unchanged.
envoy-ratelimit: ## build bin/ratelimit, the real envoyproxy/ratelimit (about a minute cold)
	hack/build-gotool.sh envoyratelimit

# bin/promtool: Prometheus' promtool from its Go module (tests/promtool), for `promtool
# check rules` / `promtool test rules` on generated and chart alerting rules. A few minutes
# cold (a large module), then skipped while tests/promtool is unchanged.
promtool: ## build bin/promtool from the Prometheus Go module (a few minutes cold)
	hack/build-gotool.sh promtool

prometheus-crds: ## fetch the Prometheus Operator CRDs (Go module) into bin/prometheus-crds
	hack/prometheus-crds.sh

cluster: controlplane ## run the local control plane in the foreground
	hack/cluster.sh

run: venv controlplane prometheus-crds ## the operator against the current kube context (or a local control plane)
	hack/run.sh

crds: venv ## regenerate crds/ (and the chart's copy) and docs/api.md from the API models
	$(VENV)/bin/python -m appinfra.api.crds crds/
	cp crds/*.yaml charts/appinfra/crds/
	$(VENV)/bin/python -m appinfra.api.reference docs/api.md

lint: venv ## ruff + mypy
	$(VENV)/bin/ruff check operator tests bench
	$(VENV)/bin/ruff format --check operator tests bench
	$(VENV)/bin/mypy

format: venv ## ruff fix and format, in place
	$(VENV)/bin/ruff check --fix operator tests bench
	$(VENV)/bin/ruff format operator tests bench

test-unit: venv helm luahealth promtool ## unit tests only (no servers)
	hack/pytest.sh tests/unit $(PYTEST_ARGS)

# PostgreSQL for the SecretBinding dynamic tests (OpenBao's database engine): Debian's
# package, installed here when missing (needs root, as on CI); the tests start it.
postgres: ## install Debian's postgresql if missing (the dynamic-credentials e2e tests run a real PostgreSQL)
	@ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || command -v initdb >/dev/null || \
		{ apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y postgresql; }

test-e2e: venv controlplane helm promtool prometheus-crds postgres ## e2e tests only
	hack/pytest.sh tests/e2e $(PYTEST_ARGS)

# One pytest run for everything, so the summary line counts every test.
test: lint controlplane helm luahealth promtool prometheus-crds postgres ## lint + every test (unit and e2e against real servers)
	hack/pytest.sh tests $(PYTEST_ARGS)

# The EnvoyRateLimit ConfigMap loaded by the real envoyproxy/ratelimit with a real Redis
# (Debian's redis-server, installed here if missing: needs root). Outside `make test`,
# which skips these tests, saying so, when bin/ratelimit or redis-server is missing.
test-envoy-ratelimit: venv envoy-ratelimit ## the EnvoyRateLimit config in the real envoyproxy/ratelimit (not in make test)
	@command -v redis-server >/dev/null || apt-get install -y redis-server
	APPINFRA_REQUIRE_ENVOY_RATELIMIT=1 hack/pytest.sh tests/consumers $(PYTEST_ARGS)

bench: venv controlplane ## benchmarks (not in make test; about 10 minutes, plus the first build)
	$(VENV)/bin/python bench/run.py

# How cost grows with the work: 1,000 / 5,000 / 10,000 ServiceProfiles, each on a fresh
# control plane (bench/scale.py): start-up, converge time, peak RSS and RSS per profile.
bench-scale: venv controlplane ## operator cost at 1,000 / 5,000 / 10,000 ServiceProfiles (not in make test; ~13 min)
	$(VENV)/bin/python bench/scale.py $(SCALE_ARGS)

# External Secrets Operator v0.16.2 from its Go module (bench/eso; bench/build-eso.sh: about
# 320 MB of module downloads and a long first compile, then skipped while unchanged), then
# appinfra and ESO in turn on the same 1,000 bindings, control plane and OpenBao (bench/peers.py).
bench-peers: venv controlplane ## appinfra vs External Secrets Operator, side by side (not in make test; ~17 min + the first ESO build)
	bench/build-eso.sh
	$(VENV)/bin/python bench/peers.py $(PEERS_ARGS)

# Least privilege, proven: one chart permission removed at a time, the scenario that breaks
# printed for each (tests/support/rbac_ablation.py). Not part of `make test`; see README.
rbac-ablation: venv controlplane helm ## remove each chart RBAC permission in turn; show what breaks (not in make test)
	hack/rbac-ablation.sh $(ABLATION_ARGS)

kind-up: venv ## a kind cluster with the chart and the examples (needs Docker)
	hack/kind-up.sh

clean: ## remove .venv, bin/ and the tool caches
	rm -rf $(VENV) bin .pytest_cache .mypy_cache .ruff_cache .tmp
