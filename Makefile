# Entry points. The scripts install what they need into the git-ignored .local/ folder.
SHELL := /bin/bash
.DEFAULT_GOAL := help
.PHONY: help run test test-fast dev dev-app fmt lint ci bench fuzz load schemathesis clean-local

# Extra arguments for cargo test, e.g. make test TEST_ARGS='-p retarget-shared'
TEST_ARGS ?=

help:
	@echo "make run          end-to-end demo against a fresh local stack (exit 0 = every step passed)"
	@echo "make test         every test: the fast tier, then the integration tier against a private DynamoDB Local + moto (TEST_ARGS=... for one cargo test)"
	@echo "make test-fast    the fast tier only: unit and handler tests, no emulators"
	@echo "make dev          local stack in the foreground on 127.0.0.1:\$${API_PORT:-3000}, with Twilio/FCM/APNs stand-ins (Ctrl-C stops it)"
	@echo "make dev-app      (while make dev runs) create an app wired to its stand-ins; prints its JSON (APP_NAME=...)"
	@echo "make fmt          cargo fmt --all"
	@echo "make lint         rustfmt check + clippy -D warnings"
	@echo "make ci           what CI runs (.ci/run)"
	@echo "make bench        benchmarks (BENCH_ARGS=--quick for the one-minute run; docs/benchmarks.md)"
	@echo "make fuzz         every fuzz target (FUZZ_ARGS='--seconds 600'; docs/reliability.md)"
	@echo "make load         wrk against the local API, 60 s per route (LOAD_ARGS='--seconds 10')"
	@echo "make schemathesis schemathesis against docs/openapi.yaml (SCHEMATHESIS_ARGS='--max-examples 100')"
	@echo "make clean-local  stop local services and delete .local/"

run:
	bash scripts/run.sh

test:
	bash scripts/test.sh $(TEST_ARGS)

test-fast:
	TEST_TIER=fast bash scripts/test.sh

dev:
	bash scripts/dev.sh

# @: stdout is only the app's JSON, so APP=$$(make dev-app) keeps it.
dev-app:
	@bash scripts/dev-app.sh

fmt:
	cargo fmt --all

lint:
	cargo fmt --all --check
	cargo clippy --workspace --all-targets -- -D warnings

ci:
	bash .ci/run

bench: ; bash scripts/bench.sh $(BENCH_ARGS)
fuzz: ; bash scripts/fuzz.sh $(FUZZ_ARGS)
load: ; bash scripts/load.sh $(LOAD_ARGS)
schemathesis: ; bash scripts/schemathesis.sh $(SCHEMATHESIS_ARGS)

# Stop the services of every SERVICES_DIR under .local before deleting it (java would linger).
clean-local:
	@for d in .local/*/; do \
	  if [ -e "$$d/dynamodb.pid" ] || [ -e "$$d/moto.pid" ]; then SERVICES_DIR="$$d" bash scripts/services.sh stop; fi; \
	done
	rm -rf .local
