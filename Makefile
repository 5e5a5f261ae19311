# Switchyard: an AI model gateway as an Envoy proxy-wasm filter.
# `make run` and `make test` install what they need (wasm target, .venv with the pinned Envoy wheel).

SHELL       := /bin/bash
TARGET      := wasm32-wasip1
WASM_OUT    := target/$(TARGET)/release/switchyard.wasm
WASM        := dist/switchyard.wasm
CLI         := dist/switchyard
# The fleet-wide rate-limit service (service/, native): gRPC (envoy.service.ratelimit.v3) with state in Redis.
LIMITS      := dist/switchyard-limits
GATEWAY     := envoy/gateway.yaml
ISTIO_GATEWAY := envoy/istio/gateway.yaml
ISTIO_YAML  := envoy/istio/switchyard.yaml
RUN_YAML    := dist/envoy-run.yaml
LOG         ?= warn
# Test-only variant with the `fault-injection` feature (own target dir, so neither build undoes the other).
FAULT_DIR   := $(or $(CARGO_TARGET_DIR),target)/fault
FAULT_WASM  := dist/switchyard-fault.wasm
VENV        := .venv
PY          := $(VENV)/bin/python
ENVOY       := $(VENV)/bin/envoy
REQS        := tests/requirements.txt
ENVOY_YAML  := envoy/envoy.yaml
DEMO_KEY    := sk-switchyard-demo
PYTEST_ARGS ?=

.DEFAULT_GOAL := help
.PHONY: help setup build build-fault render run run-fleet test unit e2e lint fmt clean redis-server bench-native bench bench-tools bench-ab bench-vm fuzz fuzz-ci fuzz-tools

help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z-]+:.*## / {printf "  make %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

$(VENV)/.installed: $(REQS)
	@command -v python3 >/dev/null || { echo "python3 is required"; exit 1; }
	python3 -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r $(REQS)
	@touch $@

.wasm-target:
	@rustup target list --installed 2>/dev/null | grep -qx $(TARGET) || rustup target add $(TARGET)

setup: .wasm-target $(VENV)/.installed ## Install the wasm target and the pinned Envoy/test tools into .venv

build: .wasm-target ## Build dist/switchyard.wasm (release, wasm32-wasip1), the CLI dist/switchyard and dist/switchyard-limits
	cargo build --release --target $(TARGET) -p switchyard
	cargo build --release -p switchyard-cli -p switchyard-limits
	@mkdir -p dist
	@cp $(WASM_OUT) $(WASM)
	@cp $(or $(CARGO_TARGET_DIR),target)/release/switchyard $(CLI)
	@cp $(or $(CARGO_TARGET_DIR),target)/release/switchyard-limits $(LIMITS)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes), $(CLI) and $(LIMITS)"

redis-server: # Debian's redis-server, for the service's tests (never needed by `make run`)
	@command -v redis-server >/dev/null || { apt-get update -qq && apt-get install -y -qq redis-server; }

render: build ## Re-render envoy/envoy.yaml, envoy/fleet/envoy.yaml, envoy/istio/switchyard.yaml and envoy/identity/{envoy,istio}.yaml from their gateway files
	$(CLI) render $(GATEWAY) -o $(ENVOY_YAML)
	$(CLI) render envoy/fleet/gateway.yaml -o envoy/fleet/envoy.yaml
	$(CLI) render --istio $(ISTIO_GATEWAY) -o $(ISTIO_YAML)
	$(CLI) render envoy/identity/gateway.yaml -o envoy/identity/envoy.yaml
	$(CLI) render --istio envoy/identity/gateway.yaml -o envoy/identity/istio.yaml

build-fault: .wasm-target ## Build dist/switchyard-fault.wasm: test-only, aborts the VM on request (feature fault-injection)
	cargo build --release --target $(TARGET) --features fault-injection --target-dir $(FAULT_DIR)
	@mkdir -p dist
	@cp $(FAULT_DIR)/$(TARGET)/release/switchyard.wasm $(FAULT_WASM)

run: setup build ## Serve envoy/gateway.yaml on 127.0.0.1 (mock model 'echo' needs no keys; LOG=info for Envoy's log)
	@$(CLI) check $(GATEWAY)
	@$(CLI) render $(GATEWAY) -o $(RUN_YAML)
	@echo "  key       $(DEMO_KEY)"
	@echo ""
	@echo "  curl http://127.0.0.1:10000/v1/chat/completions -H 'authorization: Bearer $(DEMO_KEY)' \\"
	@echo "    -H 'content-type: application/json' -d '{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"
	@echo ""
	exec $(ENVOY) -c $(RUN_YAML) --concurrency 2 --log-level $(LOG)

run-fleet: setup redis-server build ## The fleet demo: Redis, switchyard-limits and two Envoys (ports 10000, 10001) sharing limits
	envoy/fleet/run.sh

unit: redis-server ## Unit tests (native): the core, the CLI, and switchyard-limits against a real redis-server
	cargo test --quiet --workspace

e2e: setup redis-server build build-fault ## End-to-end tests: real Envoy + built .wasm + mock providers + official SDKs
	$(PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

lint: .wasm-target ## rustfmt check and clippy (native and wasm32), warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --quiet -- -D warnings
	cargo clippy --release --target $(TARGET) -p switchyard --quiet -- -D warnings
	@# The native crates of the CLI and the service (YAML reader, gRPC, HTTP, Redis) must never reach the .wasm.
	@! cargo tree -p switchyard --target $(TARGET) -e normal --prefix none \
	  | grep -E '^(yaml-rust2|tokio|tonic|tonic-prost|prost|prost-types|protox|hyper|axum|redis|clap|switchyard-cli|switchyard-limits) ' \
	  || { echo "a native-only crate reaches the wasm build"; exit 1; }

test: lint unit e2e fuzz-ci ## Everything: lint, unit tests, end-to-end tests, a short fuzz run
	@$(ENVOY) --mode validate -c $(ENVOY_YAML) >/tmp/switchyard-validate.log 2>&1 \
	  && echo "$(ENVOY_YAML) validates" || { cat /tmp/switchyard-validate.log; exit 1; }

# Fuzzing (fuzz/, its own crate and workspace, native only): cargo-fuzz (libFuzzer) on the stable
# toolchain with RUSTC_BOOTSTRAP=1. Corpora are seeded from tests/fixtures at run time (fuzz/seed.sh).
CARGO_FUZZ_VERSION := 0.13.2
FUZZ_SECONDS    ?= 60
FUZZ_CI_SECONDS ?= 10
FUZZ_TARGETS    ?=

fuzz-tools: # libFuzzer is C++ (built by libfuzzer-sys): a C++ compiler from Debian if there is none
	@command -v c++ >/dev/null || { apt-get update -qq && apt-get install -y -qq g++; }
	@cargo fuzz --version >/dev/null 2>&1 || cargo install cargo-fuzz --locked --version $(CARGO_FUZZ_VERSION)

fuzz: fuzz-tools ## Run every fuzz target FUZZ_SECONDS (default 60) each, or only FUZZ_TARGETS; a crash fails
	fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

fuzz-ci: fuzz-tools ## The short fuzz run of `make test`: FUZZ_CI_SECONDS (default 10) per target
	fuzz/run.sh $(FUZZ_CI_SECONDS) $(FUZZ_TARGETS)

BENCH_TOOLS := bench/.tools
LITELLM_VERSION := 1.105.0
PORTKEY_VERSION := 1.15.2

bench-tools: setup ## Install the benchmark's tools: wrk and nginx (Debian), LiteLLM (own venv), Portkey (npm), matplotlib
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk nginx-light; }
	@test -x $(BENCH_TOOLS)/litellm-venv/bin/litellm || { python3 -m venv $(BENCH_TOOLS)/litellm-venv && \
	  $(BENCH_TOOLS)/litellm-venv/bin/pip install -q --disable-pip-version-check 'litellm[proxy]==$(LITELLM_VERSION)'; }
	@test -d $(BENCH_TOOLS)/portkey/node_modules/@portkey-ai/gateway || { mkdir -p $(BENCH_TOOLS)/portkey && cd $(BENCH_TOOLS)/portkey && \
	  npm init -y >/dev/null && npm install --silent --no-audit --no-fund @portkey-ai/gateway@$(PORTKEY_VERSION); }
	@$(VENV)/bin/pip install -q --disable-pip-version-check -r bench/requirements.txt

bench: bench-tools build bench-native ## Side-by-side benchmark: direct, plain Envoy, Switchyard, LiteLLM, Portkey -> bench/results.md
	cargo build --release --quiet --target $(TARGET) --manifest-path bench/floor/Cargo.toml --target-dir target/floor
	BENCH_TOOLS=$(BENCH_TOOLS) $(PY) bench/run.py

bench-ab: setup build ## Interleaved A/B of two builds in Envoy: make bench-ab A=old.wasm [B=dist/switchyard.wasm]
	@test -n "$(A)" || { echo "usage: make bench-ab A=path/to/old.wasm [B=path/to/new.wasm]"; exit 2; }
	@command -v wrk >/dev/null && command -v nginx >/dev/null || { apt-get update -qq && apt-get install -y -qq wrk nginx-light; }
	$(PY) bench/ab.py $(A) $(or $(B),$(WASM))

$(VENV)/.bench-installed: bench/requirements.txt $(VENV)/.installed
	$(VENV)/bin/pip install --quiet --disable-pip-version-check -r bench/requirements.txt
	@touch $@

bench-vm: setup build $(VENV)/.bench-installed ## Wasm instructions and host calls per request, deterministic: make bench-vm A=old.wasm [B=dist/switchyard.wasm] [N=200]
	@test -n "$(A)" || { echo "usage: make bench-vm A=path/to/old.wasm [B=path/to/new.wasm] [N=200] [VM_ARGS='--trace']"; exit 2; }
	$(PY) bench/vmcount.py $(A) $(or $(B),$(WASM)) -n $(or $(N),200) $(VM_ARGS)

bench-native: ## Micro-benchmark of the hot paths, natively (no Envoy): ns per operation
	cargo bench --bench hot_paths --quiet

clean: ## Remove build outputs and .venv
	cargo clean
	rm -rf dist $(VENV)
