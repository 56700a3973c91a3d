# secondfactor: the commands a developer and CI run.
#   make run       the server on the embedded store, loopback only
#   make test      every test, with -race (installs redis-server, oathtool, protoc when missing),
#                  after the linters (lint, lint-proto)
#   make lint      golangci-lint (.golangci.yml): vet, staticcheck, gocyclo, depguard, ...
#   make lint-proto  buf lint, and buf breaking against the last commit (HEAD)
#   make generate  regenerate api/ from proto/
#   make bench     the benchmarks
#   make fuzz      every fuzz target for FUZZ_TIME each: executions (50000x, the default) or a duration (30s)
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/.bin

.PHONY: run test deps generate check-generated bench build fuzz lint lint-proto

run:
	$(GO) run ./cmd/secondfactord

build:
	CGO_ENABLED=0 $(GO) build -o $(BIN)/ ./cmd/...

deps:
	@./scripts/install-deps.sh

generate:
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-grpc google.golang.org/grpc/cmd/protoc-gen-go-grpc
	protoc -I proto \
		--plugin=protoc-gen-go=$(BIN)/protoc-gen-go --go_out=. --go_opt=module=github.com/secondfactor/secondfactor \
		--plugin=protoc-gen-go-grpc=$(BIN)/protoc-gen-go-grpc --go-grpc_out=. --go-grpc_opt=module=github.com/secondfactor/secondfactor \
		proto/secondfactor/v1/*.proto

# Fails when the committed api/ differs from what proto/ generates.
check-generated: generate
	@git diff --exit-code --stat -- api/ || { echo "api/ is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- api/)" || { echo "api/ has untracked generated files: run 'make generate' and commit"; exit 1; }

# Linters and buf are tool dependencies of tools/go.mod, built on first use.
TOOL := $(GO) tool -modfile=tools/go.mod

lint:
	$(TOOL) golangci-lint run ./...

lint-proto:
	$(TOOL) buf lint
	@if git rev-parse -q --verify HEAD:buf.yaml >/dev/null 2>&1; then \
		echo "$(TOOL) buf breaking --against '.git#ref=HEAD'"; \
		$(TOOL) buf breaking --against '.git#ref=HEAD'; \
	else echo "lint-proto: no committed buf.yaml at HEAD, breaking check skipped"; fi

test: deps check-generated lint-proto lint
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...
	$(MAKE) --no-print-directory fuzz

# Every func FuzzX in a _test.go file, found rather than listed, so that a new
# parser's fuzz target runs without anyone remembering to add it here.
FUZZ_TIME ?= 50000x
fuzz:
	@grep -rHo --include='*_test.go' '^func Fuzz[A-Za-z0-9_]*' cmd internal | sed 's/:func / /' | \
	while read -r file fn; do \
		echo "fuzz $$fn in ./$$(dirname $$file) for $(FUZZ_TIME)"; \
		$(GO) test -run '^$$' -fuzz "^$$fn\$$" -fuzztime $(FUZZ_TIME) -fuzzminimizetime 1s ./$$(dirname $$file)/ >/tmp/fuzz.$$$$.log 2>&1 \
			|| { cat /tmp/fuzz.$$$$.log; rm -f /tmp/fuzz.$$$$.log; exit 1; }; \
		tail -n 1 /tmp/fuzz.$$$$.log; rm -f /tmp/fuzz.$$$$.log; \
	done

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
