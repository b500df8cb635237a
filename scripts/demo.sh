#!/usr/bin/env bash
# demo.sh: build and run "mailgate demo" (see README). Installs Go 1.26 first
# if this machine has none (Debian 12, as root). Extra arguments go to the demo.
set -euo pipefail
cd "$(dirname "$0")/.."
gobin=$(scripts/ensure-go.sh)
export PATH="$gobin:$PATH" GOTOOLCHAIN=local
go build -o bin/mailgate ./cmd/mailgate
exec bin/mailgate demo "$@"
