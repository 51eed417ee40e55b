# maasemu: a MAAS deployment-path emulator and test harness.
#
#   make deps    install the Debian packages maasemu needs (idempotent; run as root)
#   make build   build bin/maasemu and bin/maasemu-agent
#   make test    run every test (VM tests run where libvirt works, else skip with a reason)
#   make bench   run the benchmarks and the side-by-side comparisons
#   make demo    deploy a small tgz test image on a BIOS VM (sim where libvirt cannot run)
#   make lint    gofmt, go vet, staticcheck

SHELL := /bin/bash
GO ?= go
BIN := $(CURDIR)/bin
# Generated images, kernels and other large artifacts live here, never in git.
export MAASEMU_CACHE ?= $(HOME)/.cache/maasemu
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X main.version=$(VERSION)

# Each area adds its Debian packages, benchmarks and checks in mk/<area>.mk.
DEPS_PKGS :=
BENCH_TARGETS :=
include $(wildcard mk/*.mk)

.PHONY: all deps build test bench demo lint services clean
all: build

deps:
	@missing=$$(for p in $(sort $(DEPS_PKGS)); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q '^install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		$(if $(filter 0,$(shell id -u)),,sudo) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(if $(filter 0,$(shell id -u)),,sudo -E) apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all $(words $(sort $(DEPS_PKGS))) packages present"; fi

# The agent carries no version stamp: it goes into the cached ephemeral, which would be
# rebuilt for every commit otherwise.
build:
	@mkdir -p $(BIN)
	CGO_ENABLED=0 $(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/maasemu
	CGO_ENABLED=0 $(GO) build -trimpath -o $(BIN)/ ./cmd/maasemu-agent

# Start libvirtd and virtlogd when they are installed and not running (no systemd here).
# First give /dev/kvm to group kvm, mode 0660, as Debian's udev rule does where no udev ran:
# otherwise QEMU's user cannot open it while libvirtd's root probe could, and libvirt 9.0
# re-probes QEMU on every call (about 55 s per define).
services:
	@if command -v libvirtd >/dev/null; then \
		if [ -c /dev/kvm ] && getent group kvm >/dev/null; then \
			$(if $(filter 0,$(shell id -u)),,sudo) chgrp kvm /dev/kvm && \
			$(if $(filter 0,$(shell id -u)),,sudo) chmod 0660 /dev/kvm; \
		fi; \
		pgrep -x virtlogd >/dev/null || $(if $(filter 0,$(shell id -u)),,sudo) virtlogd -d; \
		pgrep -x libvirtd >/dev/null || $(if $(filter 0,$(shell id -u)),,sudo) libvirtd -d; \
		for i in $$(seq 50); do [ -S /var/run/libvirt/libvirt-sock ] && break; sleep 0.1; done; \
	fi

test: build services
	$(GO) test -count=1 -timeout 40m ./...

bench: build services $(BENCH_TARGETS)

demo: build services
	$(BIN)/maasemu demo

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool staticcheck ./...

clean:
	rm -rf $(BIN)
