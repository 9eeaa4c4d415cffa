# rwkv-tools: `make demo` sets up and runs the main job on a bundled model; `make test` runs the suite.
SWIFT ?= swift
APT_PACKAGES = libzip-dev libopenblas-dev pkg-config time
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE = .build/release

.PHONY: setup build test test-asan example fuzz demo bench venv interop clean

# Installs the Debian packages the system-library targets need, only when missing.
setup:
	@if ! pkg-config --exists libzip openblas 2>/dev/null || [ ! -x /usr/bin/time ]; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

build: setup
	$(SWIFT) build -c release

# `swift build --build-tests` builds every target, the programs included (one `--product` per
# call: several build only the last). Optimised (TEST_FLAGS), since no target may set its own flags
# (Package.swift): unoptimised, the k-quant search and C kernels make the suite ~10x slower
# (measured: the tests run in 15 s optimised, 147 s not; the build takes about 2 minutes longer).
TEST_FLAGS = -Xswiftc -O -Xcc -O3
test: setup
	$(SWIFT) build --build-tests $(TEST_FLAGS)
	$(SWIFT) test --skip-build
	scripts/check-bad-files.sh .build/debug
	scripts/check-cross-cpu.sh .build/debug

# The library as another package uses it: Examples/ depends on rwkv-tools by path, opens the bundled
# RWKV-7, converts it to q8_0 GGUF and runs 8 tokens through both files; their next-token choices
# must agree.
example: setup
	cd Examples && $(SWIFT) build
	@dir=$$(mktemp -d) && trap 'rm -rf "$$dir"' EXIT && \
	Examples/.build/debug/rwkv-example fixtures/models/rwkv7-tiny-bf16.pth "$$dir/tiny-q8_0.gguf" | tee "$$dir/log" && \
	[ "$$(grep -c 'most likely next token' "$$dir/log")" = 2 ] && \
	[ "$$(awk '/most likely next token/ { print $$NF }' "$$dir/log" | sort -u | wc -l)" = 1 ] && echo "example: both files agree"

# The test suite under AddressSanitizer (C kernels included), in its own scratch path. Leak
# checking is off here (XCTest's runner itself leaks a few objects); the fuzzers check leaks.
test-asan: setup
	$(SWIFT) build --build-tests --scratch-path .build/asan -Xswiftc -sanitize=address -Xcc -fsanitize=address
	ASAN_OPTIONS=detect_leaks=0 $(SWIFT) test --skip-build --scratch-path .build/asan

# libFuzzer on the pickle interpreter, zip, safetensors, GGUF and architecture detection
# (scripts/fuzz.sh; FUZZ_SECONDS per target).
FUZZ_SECONDS ?= 60
fuzz: setup
	scripts/fuzz.sh $(FUZZ_SECONDS)

# The main job on a bundled model: an official-layout RWKV-7 .pth to q8_0 GGUF for llama.cpp, then
# the Swift forward pass on that GGUF against logits from the official rwkv package. The q8_0
# tolerance (0.3) is about twice the measured drift of this tiny random model (docs/formats.md).
DEMO_OUT = .build/demo
demo: build
	@mkdir -p $(DEMO_OUT)
	$(RELEASE)/rwkv-convert pth-to-native fixtures/models/rwkv7-tiny-bf16.pth $(DEMO_OUT)/rwkv7-tiny-q8_0.gguf --type q8_0
	$(RELEASE)/rwkv-verify $(DEMO_OUT)/rwkv7-tiny-q8_0.gguf --fixture fixtures/expected/rwkv7-tiny-bf16.logits.safetensors --tolerance 0.3

bench: build
	bench/run.sh

# Python is for fixtures and interop checks only (never needed by build, test or demo).
venv:
	scripts/venv.sh

# The promises about other people's tools, checked with those tools (README, "What is checked"),
# in a venv built from PyPI and cached outside the clone, with llama.cpp built once into it
# (scripts/interop-env.sh): scripts/interop-all.sh lists the checks. .ci/run runs it after the tests.
# GOLDFINCH=PATH adds the GoldFinch repository check (needs a checkout).
interop: setup
	GOLDFINCH="$(GOLDFINCH)" scripts/interop-all.sh

clean:
	rm -rf .build
