#!/usr/bin/env bash
# test.sh: run the whole test suite, as CI does (as root on Debian 12).
#
#   scripts/test.sh                 # everything
#   scripts/test.sh -run TestFoo -v # extra arguments go to `go test`
#   scripts/test.sh ./auth/ -v      # arguments starting with ./ replace ./...
#   MAILGATE_BACKENDS=deb12 scripts/test.sh   # only against Debian 12's daemons
#
# Steps: install the test dependencies (scripts/install-test-deps.sh), check
# gofmt and go vet, build the release binary (scripts/build.sh), then
# `MAILGATE_INTEGRATION=1 go test -count=1 ./...`: with MAILGATE_INTEGRATION=1
# an integration test whose daemon is missing fails instead of skipping.
#
# Backend generations (internal/testenv, MAILGATE_BACKEND): MAILGATE_BACKENDS
# lists them, default "deb12 deb13" (deb12: Dovecot 2.3 + Postfix 3.7 from the
# host's packages). The suite runs as above against the first,
# then the packages whose tests start Dovecot or Postfix run again against
# each further one (deb13: Dovecot 2.4 + Postfix 3.10 in a Debian 13 root that
# install-test-deps.sh builds once into the test cache).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[test.sh] %s\n' "$*" >&2; }

if [ -x scripts/ensure-go.sh ]; then
  gobin=$(scripts/ensure-go.sh)
  export PATH="$gobin:$PATH"
fi
# Both DMS generations by default: Debian 12's Dovecot 2.3 + Postfix 3.7 and
# Debian 13's Dovecot 2.4 + Postfix 3.10 (DMS's next image).
export MAILGATE_BACKENDS=${MAILGATE_BACKENDS:-deb12 deb13}
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
explicit=${#pkgs[@]}
[ ${#pkgs[@]} -gt 0 ] || pkgs=(./...)
backends_env=${MAILGATE_BACKENDS:-deb12}
read -r -a backends <<<"${backends_env//,/ }"
[ ${#backends[@]} -gt 0 ] || backends=(deb12)
first=1
failed=()
for backend in "${backends[@]}"; do
  run=("${pkgs[@]}")
  if [ "$first" = 0 ] && [ "$explicit" = 0 ]; then
    # Only the packages whose tests start Dovecot or Postfix.
    mapfile -t run < <(grep -rlE --include='*_test.go' \
        'testenv\.(StartDovecot|StartPostfix|NewDovecot|NewPostfix|SharedDovecot|SharedPostfix|Shared)\(' . |
      xargs -r -n1 dirname | sort -u | sed 's|$|/|')
  fi
  first=0
  [ ${#run[@]} -gt 0 ] || continue
  t1=$SECONDS
  log "MAILGATE_BACKEND=$backend go test -count=1 ${args[*]+${args[*]} }${run[*]}"
  if MAILGATE_BACKEND=$backend MAILGATE_INTEGRATION=1 go test -count=1 ${args[@]+"${args[@]}"} "${run[@]}"; then
    log "$backend: ok in $((SECONDS - t1)) s"
  else
    log "$backend: FAILED after $((SECONDS - t1)) s"
    failed+=("$backend")
  fi
done
if [ ${#failed[@]} -gt 0 ]; then
  log "failed against: ${failed[*]} ($((SECONDS - t0)) s)"
  exit 1
fi
log "done in $((SECONDS - t0)) s"
