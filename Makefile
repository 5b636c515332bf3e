# hookline: `make run` starts a local pipeline, `make test` runs every test against a real broker.
#
# Build outputs and tools live outside the clone, in $(HOOKLINE_CACHE), so a fresh clone reuses them.
SHELL := /bin/bash
HOOKLINE_CACHE ?= $(HOME)/.cache/hookline
export HOOKLINE_CACHE
export CARGO_TARGET_DIR ?= $(HOOKLINE_CACHE)/target
CARGO ?= cargo

.PHONY: run test tools build lint rules schemas-check unit e2e chaos bench bench-ingress bench-processor bench-pipeline bench-tracing fuzz fuzz-seeds fuzz-smoke deploy-check k8s-rules image clean-run help

help:
	@echo "make run    start Apache Kafka + processor + ingress locally (Ctrl-C stops them)"
	@echo "make test   lint, alert-rule tests, schema compatibility, unit tests and end-to-end tests against Apache Kafka"
	@echo "make chaos  fault scenarios (kill -9, broker kills in a 3-node cluster, network cuts, rebalances...) and their table"
	@echo "make bench  the ingress and the processor against minimal baselines (bench-ingress, bench-processor),"
	@echo "           the per-event cost of VRL transforms (bench-pipeline) and of tracing (bench-tracing)"
	@echo "make fuzz   every fuzz target for FUZZ_SECONDS (default 600) each; FUZZ_TARGETS=\"verify keys\" picks some"
	@echo "make image  build the Dockerfile with buildah (no Docker engine) and run each binary inside the image"
	@echo "make tools  install Apache Kafka (pinned in scripts/kafka/pom.xml) into $(HOOKLINE_CACHE)"

# Apache Kafka, from Maven Central (and Java/Maven from Debian when missing), unless KAFKA_BROKERS names the
# cluster to use. The test harness installs it through scripts/ensure-kafka.sh too when a test needs a cluster
# of its own (those that kill brokers); installing it here keeps that download out of a test's time.
tools:
	@if [ -z "$$KAFKA_BROKERS" ]; then scripts/ensure-kafka.sh >/dev/null; fi

build:
	$(CARGO) build --workspace --bins

run: tools build
	@HOOKLINE_BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/run-local.sh

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets --locked -- -D warnings
	$(CARGO) fmt --manifest-path fuzz/Cargo.toml -- --check
	$(CARGO) clippy --manifest-path fuzz/Cargo.toml --all-targets --locked -- -D warnings

# Alert rules: syntax, then their unit tests (Debian's prometheus package gives promtool).
rules:
	promtool check config deploy/prometheus/prometheus.yml
	promtool test rules deploy/prometheus/tests/*.test.yml

# Every schema compiles, every example matches its schema, and a new version accepts the previous one's examples.
schemas-check:
	$(CARGO) run --locked -q -p hookline-schemas --bin schemas-check -- schemas

unit:
	$(CARGO) test --workspace --locked --exclude hookline-e2e

e2e: tools
	$(CARGO) build --locked --workspace --bins --features hookline-processor/fault-injection
	$(CARGO) test --locked -p hookline-e2e -- --test-threads=2

test: lint rules schemas-check unit fuzz-smoke e2e deploy-check

# The Dockerfile (hadolint), the compose file, the Kubernetes manifests and the configs each runs with (--check
# of the binaries e2e built). No image is built: see scripts/deploy-check.sh.
deploy-check:
	HOOKLINE_BIN_DIR=$(CARGO_TARGET_DIR)/debug scripts/deploy-check.sh

# The OCI image from the Dockerfile, with buildah (IMAGE=..., default localhost/hookline:dev), then each
# binary run inside it. Needs root, buildah, runc and debootstrap.
image:
	scripts/image.sh

# Rewrites deploy/kubernetes/prometheus-rule.yaml from deploy/prometheus/rules (its one source).
k8s-rules:
	python3 scripts/k8s-prometheus-rule.py > deploy/kubernetes/prometheus-rule.yaml

# Fuzzing (fuzz/: cargo-fuzz and libFuzzer, on a nightly toolchain; see scripts/fuzz.sh). `make test` runs
# each target for FUZZ_SMOKE_SECONDS from the committed seeds; `make fuzz` for FUZZ_SECONDS.
FUZZ_SECONDS ?= 600
FUZZ_SMOKE_SECONDS ?= 20
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) scripts/fuzz.sh $(FUZZ_TARGETS)

fuzz-smoke:
	FUZZ_SECONDS=$(FUZZ_SMOKE_SECONDS) scripts/fuzz.sh

# Rewrites the seed corpus (fuzz/seeds) from the providers' samples, checking that each verifies and publishes.
fuzz-seeds:
	cd fuzz && $(CARGO) run --locked -q --example seeds

# Every fault scenario at full size (about 28 minutes), then the table. `make chaos SCENARIOS="a b"` runs some.
chaos: tools
	$(CARGO) build --locked --workspace --bins --features hookline-processor/fault-injection
	$(CARGO) run --locked -q -p hookline-e2e --bin hookline-chaos --features hookline-processor/fault-injection -- $(SCENARIOS)

bench: tools
	scripts/bench.sh
	scripts/bench-processor.sh
	$(MAKE) bench-pipeline
	scripts/bench-tracing.sh

bench-ingress: tools
	scripts/bench.sh

bench-processor: tools
	scripts/bench-processor.sh

# What exporting traces at 100% sampling costs the ingress per webhook, against the same ingress untraced.
bench-tracing: tools
	scripts/bench-tracing.sh

# What a VRL transform or condition costs per event, against the same pipeline without it (no broker).
bench-pipeline:
	cargo build --release --locked -p hookline-bench --bin bench-pipeline
	$(CARGO_TARGET_DIR)/release/bench-pipeline --root .

clean-run:
	rm -rf .hookline-run
