# homecloud — build, test, make a cluster's images.
GO       ?= go
BIN      := bin
GOFLAGS  ?= -trimpath
ARM64ENV := CGO_ENABLED=0 GOOS=linux GOARCH=arm64

# What `make images` builds: a 4-node PINE A64-LTS cluster.
BOARD ?= pine64
NODES ?= 4
BUILDER_ARGS ?=

.PHONY: all build payload images base-image test test-short vet clean

all: build

# The builder embeds the node service for linux/arm64, so it needs no Go
# toolchain when it runs.
payload:
	$(ARM64ENV) $(GO) build $(GOFLAGS) -o builder/payload/homecloud-firstboot ./cmd/homecloud-firstboot

build: payload
	$(GO) build $(GOFLAGS) -o $(BIN)/homecloud-builder ./cmd/homecloud-builder
	$(GO) build $(GOFLAGS) -o $(BIN)/homecloud-firstboot ./cmd/homecloud-firstboot

# Images for a cluster: `make images BUILDER_ARGS="--base-image X --ssh-key K"`.
# The builder downloads the board's Armbian image only once its digest is
# pinned in boards/; until then it asks for --base-image.
images: build
	$(BIN)/homecloud-builder --board $(BOARD) --nodes $(NODES) $(BUILDER_ARGS)

# A Debian-built Armbian-layout base, cached in ~/.cache/homecloud/base.
base-image:
	scripts/make-base-image

vet:
	$(GO) vet ./...

# The whole suite, as CI runs it. Root is needed for network namespaces,
# loop devices and keepalived; tests that lack a tool say which. One
# package at a time (-p 1): internal/qemu and internal/vmcluster each boot
# VMs under TCG, and together (five VMs on two cores) a guest once left
# SSH unanswered for ten minutes.
test: payload vet
	$(GO) test -p 1 -count=1 -timeout 40m ./...

test-short: payload
	$(GO) test -short ./...

clean:
	rm -rf $(BIN) builder/payload/homecloud-firstboot
