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
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/machinetop .
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s $(LDFLAGS)' -o $(BIN)/machinetop-guest ./guest/cmd/machinetop-guest

# A Debian bookworm image with systemd, made offline with debootstrap.
image: deps build
	@if ! $(BIN)/machinetop image ls --format '{{.Repository}}:{{.Tag}}' | grep -qx '$(IMAGE)'; then \
	  tmp=$$(mktemp -d); \
	  echo "image: making $(IMAGE) from Debian's packages with debootstrap (about a minute)"; \
	  $(SUDO) tests/mkimage.sh debian $$tmp/rootfs.tar --ssh && \
	  echo "image: importing it as $(IMAGE)" && \
	  $(BIN)/machinetop image import $$tmp/rootfs.tar $(IMAGE); \
	  s=$$?; $(SUDO) rm -rf $$tmp; exit $$s; \
	fi

machine: image
	@$(BIN)/machinetop machine ls --format '{{.Name}}' | grep -qx '$(MACHINE)' || \
	  { echo "machine: creating $(MACHINE) (its first boot unpacks the image)"; \
	    $(BIN)/machinetop machine create $(IMAGE) -n $(MACHINE) --set-default; }
	@echo "machine: starting $(MACHINE)"
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
