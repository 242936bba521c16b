# machinetop — see README.md. `make up` sets everything up and opens the
# dashboard over a real machine; `make test` runs every test.

GO      ?= go
BIN     := $(CURDIR)/bin
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
ARCH    := $(shell $(GO) env GOARCH)
QEMUPKG := $(if $(filter arm64,$(ARCH)),qemu-system-arm,qemu-system-x86)
QEMUBIN := $(if $(filter arm64,$(ARCH)),qemu-system-aarch64,qemu-system-x86_64)
IMAGE   := debian:bookworm
MACHINE := debian-bookworm
export PATH := $(BIN):$(PATH):/usr/sbin:/sbin

.PHONY: all build deps image machine up test bench clean

all: build

# Host prerequisites, installed only when missing (Debian/Ubuntu).
deps:
	@missing=""; \
	command -v $(QEMUBIN) >/dev/null || missing="$$missing $(QEMUPKG)"; \
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

build:
	$(GO) build -o $(BIN)/machinetop .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags=-s -o $(BIN)/machinetop-guest ./guest/cmd/machinetop-guest

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
test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 -timeout 60m ./...

bench: deps build
	tests/bench.sh

clean:
	rm -rf $(BIN)
