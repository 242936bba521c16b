# machinetop — see README.md. `make up` sets everything up and opens the
# dashboard over a real machine; `make test` runs every test.

GO      ?= go
BIN     := $(CURDIR)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
HOSTOS  ?= $(shell uname -s)
# The Virtualization framework starts VMs only for a binary signed with
# this entitlement (an ad-hoc signature will do).
ENTITLEMENTS := vm/vz/entitlements.plist
# Guest architectures: each gets its guest binary, and its QEMU emulator
# where QEMU runs machines (the host's under KVM when it can; the other
# under TCG emulation, e.g. arm64 machines on an x86 host).
GUEST_ARCHS := amd64 arm64
IMAGE   := debian:bookworm
MACHINE := debian-bookworm
# The version both binaries report (`machinetop version`, the agent's ping):
# `git describe` of the latest v* tag, else the Go pseudo-version of HEAD
# (v0.0.0-YYYYMMDDHHMMSS-<12 hex>, what `go install MODULE@COMMIT` reports),
# else "devel"; and the commit, with "-dirty" for uncommitted changes.
VERSION ?= $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null || \
	TZ=UTC git show -s --date=format-local:%Y%m%d%H%M%S --format=v0.0.0-%cd-%H HEAD 2>/dev/null | cut -c1-34)
ifeq ($(VERSION),)
VERSION := devel
endif
COMMIT  ?= $(shell c=$$(git rev-parse HEAD 2>/dev/null) && { git diff --quiet HEAD 2>/dev/null || c=$$c-dirty; echo $$c; })
VPKG    := github.com/machinetop/machinetop/internal/version
LDFLAGS := -X $(VPKG).version=$(VERSION) -X $(VPKG).commit=$(COMMIT)
export PATH := $(BIN):$(PATH):/usr/sbin:/sbin

.PHONY: all build deps image-deps test-deps image machine up test bench fault fuzz clean

all: build

# Host prerequisites, installed with the host's package manager (apt-get,
# dnf, pacman, zypper, apk) only when missing; scripts/deps.sh says what
# each group holds. macOS needs none.
deps:
	@scripts/deps.sh run
image-deps:
	@scripts/deps.sh run image
test-deps:
	@scripts/deps.sh run image test

# machinetop for the host, signed on macOS with the virtualization
# entitlement, and the static guest binary for each guest architecture
# (bin/machinetop-guest-linux-<arch>, where the kit looks for it).
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/machinetop .
ifeq ($(HOSTOS),Darwin)
	codesign --entitlements $(ENTITLEMENTS) --force -s - $(BIN)/machinetop
endif
	for a in $(GUEST_ARCHS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags '-s $(LDFLAGS)' \
	    -o $(BIN)/machinetop-guest-linux-$$a ./guest/cmd/machinetop-guest || exit 1; \
	done

# A Debian bookworm image with systemd, made offline with debootstrap on
# Linux; on macOS, Docker Hub's debian:bookworm (no systemd: the agent is
# its PID 1).
ifeq ($(HOSTOS),Darwin)
image: build
	@$(BIN)/machinetop image ls --format '{{.Repository}}:{{.Tag}}' | grep -qx '$(IMAGE)' || \
	  $(BIN)/machinetop image pull $(IMAGE)
else
image: image-deps build
	@if ! $(BIN)/machinetop image ls --format '{{.Repository}}:{{.Tag}}' | grep -qx '$(IMAGE)'; then \
	  tmp=$$(mktemp -d); \
	  echo "image: making $(IMAGE) from Debian's packages with debootstrap (about a minute)"; \
	  $(SUDO) tests/mkimage.sh debian $$tmp/rootfs.tar --ssh >/dev/null && \
	  echo "image: importing it as $(IMAGE)" && \
	  $(BIN)/machinetop image import $$tmp/rootfs.tar $(IMAGE); \
	  s=$$?; $(SUDO) rm -rf $$tmp; exit $$s; \
	fi
endif

machine: image
	@$(BIN)/machinetop machine ls --format '{{.Name}}' | grep -qx '$(MACHINE)' || \
	  { echo "machine: creating $(MACHINE) (its first boot unpacks the image)"; \
	    $(BIN)/machinetop machine create $(IMAGE) -n $(MACHINE) --set-default >/dev/null; }
	@echo "machine: starting $(MACHINE)"
	@$(BIN)/machinetop machine start $(MACHINE) >/dev/null

up: deps machine
	@$(BIN)/machinetop

# Unit tests next to the code and the end-to-end tests in tests/, which
# boot machines under QEMU (Linux only: on macOS the unit tests run, the
# vz backend included). `make test MACHINETOP_E2E_ARM64_DEBIAN=1` also
# boots an arm64 Debian machine with systemd, emulated on an x86 host
# (tests/arm64_test.go: far longer than the rest of the suite).
TEST_TIMEOUT := $(if $(filter 1,$(MACHINETOP_E2E_ARM64_DEBIAN)),180m,60m)
ifeq ($(HOSTOS),Darwin)
test: build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list ./... | grep -v '/tests$$')
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
else
test: test-deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh
endif

bench: test-deps build
	tests/bench.sh
	tests/bench-shares.sh
	tests/bench-memory.sh

# The fault matrix (tests/fault.sh): FAULT_N runs of each fault (default
# 20); `make test` runs it once.
fault: test-deps build
	tests/fault.sh

# Every Go fuzz target for FUZZTIME each (scripts/fuzz.sh); `make test`
# fuzzes each briefly after the tests.
FUZZTIME ?= 3s
fuzz:
	FUZZTIME=$(FUZZTIME) scripts/fuzz.sh

clean:
	rm -rf $(BIN)
