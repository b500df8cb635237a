#!/usr/bin/env bash
# test.sh: run the whole test suite, as CI does (as root on Debian 12).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -run TestFoo -v # extra arguments go to `go test`
#   scripts/test.sh ./auth/ -v      # arguments starting with ./ replace ./...
#
# Steps: install the test dependencies (scripts/install-test-deps.sh), check
# gofmt and go vet, build the release binary (scripts/build.sh), then
# `MAILGATE_INTEGRATION=1 go test -count=1 ./...`: with MAILGATE_INTEGRATION=1
# an integration test whose daemon is missing fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[test.sh] %s\n' "$*" >&2; }

if [ -x scripts/ensure-go.sh ]; then
  gobin=$(scripts/ensure-go.sh)
  export PATH="$gobin:$PATH"
fi
export GOTOOLCHAIN=${GOTOOLCHAIN:-local}
export GOFLAGS=${GOFLAGS:--buildvcs=false}

t0=$SECONDS
scripts/install-test-deps.sh
log "dependencies ready ($((SECONDS - t0)) s)"

unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  log "gofmt needed on:"; printf '  %s\n' $unformatted >&2
  exit 1
fi
go vet ./...

if [ -x scripts/build.sh ]; then
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  scripts/build.sh "$tmp/mailgate"
fi

pkgs=()
args=()
for a in "$@"; do
  case $a in
    ./*) pkgs+=("$a") ;;
    *) args+=("$a") ;;
  esac
done
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
log "go test -count=1 ${args[*]+${args[*]} }${pkgs[*]}"
MAILGATE_INTEGRATION=1 go test -count=1 ${args[@]+"${args[@]}"} "${pkgs[@]}"
log "done in $((SECONDS - t0)) s"
