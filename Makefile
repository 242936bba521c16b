# machinetop — see README.md. `make up` sets everything up and opens the
# dashboard over a real machine; `make test` runs every test.

GO      ?= go
BIN     := $(CURDIR)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# Guest architectures: each gets its guest binary, and its QEMU emulator
# where QEMU runs machines (the host's under KVM when it can; the other
# under TCG emulation, e.g. arm64 machines on an x86 host).
GUEST_ARCHS := amd64 arm64
IMAGE   := debian:bookworm
MACHINE := debian-bookworm
export PATH := $(BIN):$(PATH):/usr/sbin:/sbin

.PHONY: all build deps image machine up test bench clean

all: build

# Host prerequisites, installed only when missing (Debian/Ubuntu).
deps:
	@missing=""; \
	command -v qemu-system-x86_64 >/dev/null || missing="$$missing qemu-system-x86"; \
	command -v qemu-system-aarch64 >/dev/null || missing="$$missing qemu-system-arm"; \
	command -v mkfs.ext4 >/dev/null || missing="$$missing e2fsprogs"; \
	command -v debootstrap >/dev/null || missing="$$missing debootstrap"; \
	command -v busybox >/dev/null || missing="$$missing busybox-static"; \
	command -v setcap >/dev/null || missing="$$missing libcap2-bin"; \
	command -v tmux >/dev/null || missing="$$missing tmux"; \
	command -v ssh >/dev/null || missing="$$missing openssh-client"; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  $(SUDO) apt-get update -q && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -q $$missing; \
	fi

# machinetop, and the static guest binary for each guest architecture
# (bin/machinetop-guest-linux-<arch>, where the kit looks for it).
build:
	$(GO) build -o $(BIN)/machinetop .
	for a in $(GUEST_ARCHS); do \
	  CGO_ENABLED=0 GOOS=linux GOARCH=$$a $(GO) build -trimpath -ldflags=-s \
	    -o $(BIN)/machinetop-guest-linux-$$a ./guest/cmd/machinetop-guest || exit 1; \
	done

# A Debian bookworm image with systemd, made offline with debootstrap.
image: deps build
	@if ! $(BIN)/machinetop image ls | awk 'NR > 1 { print $$1 ":" $$2 }' | grep -qx '$(IMAGE)'; then \
	  tmp=$$(mktemp -d); \
	  $(SUDO) tests/mkimage.sh debian $$tmp/rootfs.tar --ssh && \
	  $(BIN)/machinetop image import $$tmp/rootfs.tar $(IMAGE); \
	  s=$$?; $(SUDO) rm -rf $$tmp; exit $$s; \
	fi

machine: image
	@$(BIN)/machinetop machine ls -q | grep -qx '$(MACHINE)' || \
	  $(BIN)/machinetop machine create $(IMAGE) -n $(MACHINE) --set-default
	$(BIN)/machinetop machine start $(MACHINE)

up: machine
	$(BIN)/machinetop

# Unit tests next to the code and the end-to-end tests in tests/.
# `make test MACHINETOP_E2E_ARM64_DEBIAN=1` also boots an arm64 Debian
# machine with systemd, emulated on an x86 host (tests/arm64_test.go: far
# longer than the rest of the suite).
TEST_TIMEOUT := $(if $(filter 1,$(MACHINETOP_E2E_ARM64_DEBIAN)),180m,60m)
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout $(TEST_TIMEOUT) ./...

bench: deps build
	tests/bench.sh

clean:
	rm -rf $(BIN)
