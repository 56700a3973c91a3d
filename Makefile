# secondfactor: the commands a developer and CI run.
#   make run       the server on the embedded store, loopback only
#   make test      every test, with -race (installs redis-server, oathtool, protoc when missing)
#   make generate  regenerate api/ from proto/
#   make bench     the benchmarks
SHELL := /bin/bash
GO    ?= go
BIN   := $(CURDIR)/.bin

.PHONY: run test deps generate check-generated bench build

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

test: deps check-generated
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

bench:
	$(GO) test -run '^$$' -bench . -benchmem ./...
