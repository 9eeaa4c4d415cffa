# rwkv-tools: `make demo` sets up and runs the main job on a bundled model; `make test` runs the suite.
SWIFT ?= swift
APT_PACKAGES = libzip-dev libopenblas-dev pkg-config
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)
RELEASE = .build/release

.PHONY: setup build test demo bench venv clean

# Installs the Debian packages the system-library targets need, only when missing.
setup:
	@if ! pkg-config --exists libzip openblas 2>/dev/null; then \
		echo "installing $(APT_PACKAGES)"; \
		$(SUDO) apt-get update -qq && $(SUDO) DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(APT_PACKAGES); \
	fi

build: setup
	$(SWIFT) build -c release

test: setup
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build
	$(SWIFT) build --product rwkv-convert
	scripts/check-bad-files.sh .build/debug/rwkv-convert

demo: build
	$(RELEASE)/rwkv-convert inspect fixtures/models/rwkv7-tiny-bf16.pth

bench: build
	bench/run.sh

# Python is for fixtures and interop checks only (never needed by build, test or demo).
venv:
	scripts/venv.sh

clean:
	rm -rf .build
