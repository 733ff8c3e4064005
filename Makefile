# sealgate — the two commands a newcomer needs are `make run` and `make test`.
CARGO  ?= cargo
STATE  ?= state
LISTEN ?= 127.0.0.1:8080

.PHONY: run test bench bench-sustained lint fmt fmt-check build release clean

## Build and start the whole system in simulator mode on loopback.
run: release
	./target/release/sealgate sim --listen $(LISTEN) --state $(STATE)

## One compilation serves lint, bins and tests. The workspace's own crates are compiled
## by clippy-driver (rustc plus clippy's lints, `-D warnings`) while they are built for
## real, so `cargo clippy` never needs its own check-only build of every dependency, and
## the test profile is `dev` (Cargo.toml), so bins and tests share one set of artifacts.
CLIPPY_DRIVER ?= $(shell rustup which clippy-driver 2>/dev/null || command -v clippy-driver)
LINTED        := RUSTC_WORKSPACE_WRAPPER=$(CLIPPY_DRIVER) CLIPPY_ARGS=-Dwarnings__CLIPPY_HACKERY__

## Build and run every test, including end-to-end tests that start the real binaries.
test: build cfn-lint moto mcp-sdk awscli
	$(LINTED) $(CARGO) test --workspace --no-fail-fast

## Tokens/s and latency at 1, 16, 64 connections against `sealgate sim`, plus the raw
## single-core ES256 sign rate.
bench: release
	./target/release/sealgate-bench

## Five minutes at 32 connections against `sealgate sim` as `make run` starts it (with
## its witness), per 20 s window, alternating with Debian's wrk (installed if missing).
## Figures: the table, and target/bench-sustained.json.
SUSTAIN ?= 300
bench-sustained: release
	@command -v wrk >/dev/null || apt-get install -y wrk >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y wrk) >/dev/null 2>&1 || echo "wrk could not be installed: every window will be sealgate-bench's own"
	./target/release/sealgate-bench --sustain $(SUSTAIN) --connections 32 --witnesses 1

## Formatting, and clippy on every target (the linted build below), as CI runs them.
lint: fmt-check build

fmt-check:
	$(CARGO) fmt --all -- --check

fmt:
	$(CARGO) fmt --all

## Every target of the workspace (libs, bins, tests, the bench driver), linted as it
## compiles. Each package with a binary has integration tests, so this one command also
## builds the plain binaries the end-to-end tests start (see host/tests/cli.rs); a
## separate `cargo build --bins` would resolve features without dev-dependencies and
## compile the AWS SDK a second time. The enclave's pure-Rust signer is compiled into
## its unit tests, so no feature-flagged build is needed either.
build:
	@test -n "$(CLIPPY_DRIVER)" || { echo "clippy-driver not found: rustup component add clippy" >&2; exit 1; }
	$(LINTED) $(CARGO) test --workspace --all-targets --no-run

release:
	$(CARGO) build --release --workspace --bins

clean:
	$(CARGO) clean
	rm -rf $(STATE)

## Deployment (deploy/): the enclave image as an EIF, and the CloudFormation lint.
.PHONY: eif cfn-lint
PYTHON            ?= python3
CFN_LINT_VERSION  ?= 1.58.0
CFN_LINT_STAMP    := .venv/.cfn-lint-$(CFN_LINT_VERSION)

## Build the enclave image and its EIF with nitro-cli and print PCR0/1/2; without
## docker and nitro-cli (i.e. off a Nitro Enclaves host) explain what it would do.
eif:
	bash deploy/enclave/build-eif.sh

## Validate every CloudFormation template (cfn-lint from PyPI, in .venv, installed once).
cfn-lint: $(CFN_LINT_STAMP)
	.venv/bin/cfn-lint deploy/cloudformation/*.yaml

# One rule creates the venv, so `make -j` never races two `python -m venv` runs.
.venv/bin/pip:
	$(PYTHON) -m venv .venv

$(CFN_LINT_STAMP): .venv/bin/pip
	.venv/bin/pip install -q --disable-pip-version-check 'cfn-lint==$(CFN_LINT_VERSION)'
	touch $@

## The local AWS emulator the end-to-end tests run against (moto in server mode, in .venv,
## installed once). The test harness starts and stops it; docs/local-aws.md runs the host
## against it by hand, and lists what it does not check.
.PHONY: moto
MOTO_VERSION      ?= 5.2.5
MOTO_STAMP        := .venv/.moto-$(MOTO_VERSION)

moto: $(MOTO_STAMP)

$(MOTO_STAMP): .venv/bin/pip
	.venv/bin/pip install -q --disable-pip-version-check 'moto[server]==$(MOTO_VERSION)'
	touch $@

## The official Python MCP SDK, the client tests/tests/mcp.rs drives `sealgate mcp` with
## (tests/python/mcp_driver.py). Its own venv: moto pins boto3 and botocore in .venv, and
## the SDK's dependencies must not move them.
.PHONY: mcp-sdk
MCP_SDK_VERSION   ?= 1.30.0
MCP_SDK_STAMP     := .venv-mcp/.mcp-$(MCP_SDK_VERSION)

mcp-sdk: $(MCP_SDK_STAMP)

.venv-mcp/bin/pip:
	$(PYTHON) -m venv .venv-mcp

$(MCP_SDK_STAMP): .venv-mcp/bin/pip
	.venv-mcp/bin/pip install -q --disable-pip-version-check 'mcp==$(MCP_SDK_VERSION)'
	touch $@

## The AWS CLI (v1, from PyPI) that tests/tests/agent_awscli.rs runs with
## `credential_process` and under `sealgate exec`; its own venv, because it pins another
## botocore than moto does.
.PHONY: awscli
AWSCLI_VERSION    ?= 1.46.3
AWSCLI_STAMP      := .venv-awscli/.awscli-$(AWSCLI_VERSION)

awscli: $(AWSCLI_STAMP)

.venv-awscli/bin/pip:
	$(PYTHON) -m venv .venv-awscli

$(AWSCLI_STAMP): .venv-awscli/bin/pip
	.venv-awscli/bin/pip install -q --disable-pip-version-check 'awscli==$(AWSCLI_VERSION)'
	touch $@
