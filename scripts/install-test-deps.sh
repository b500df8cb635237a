#!/usr/bin/env bash
# install-test-deps.sh: install what the integration tests (internal/testenv)
# need on Debian 12, as root. Idempotent: a second run only checks.
#
#   - Debian packages: dovecot-core dovecot-imapd dovecot-lmtpd postfix openssl
#     jq curl gcc libc6-dev ca-certificates. Postfix is preseeded to "No
#     configuration" and a temporary policy-rc.d keeps the distro services from
#     starting (the tests run their own instances on free loopback ports).
#   - the system user vmail (the mail uid of the test Dovecot).
#   - Ory Hydra v2.3.0, built once from the Go module proxy into
#     ${MAILGATE_HYDRA_BIN:-${MAILGATE_TEST_CACHE:-$HOME/.cache/mailgate-test}/hydra}
#     (~3-4 min and ~1 GB of Go caches the first time). MAILGATE_REBUILD_HYDRA=1
#     rebuilds it.
#   - Go >= 1.26 must be usable (scripts/ensure-go.sh installs it if missing).
#
# internal/testenv looks for Hydra at the same path (testenv.HydraBinary).
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[install-test-deps] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }

HYDRA_VERSION=v2.3.0
CACHE=${MAILGATE_TEST_CACHE:-${HOME:-/root}/.cache/mailgate-test}
HYDRA_BIN=${MAILGATE_HYDRA_BIN:-$CACHE/hydra}

[ "$(id -u)" = 0 ] || die "run as root (apt-get, useradd; the Dovecot/Postfix tests need root as well)"

# ---------------------------------------------------------------- Go >= 1.26
if [ -x scripts/ensure-go.sh ]; then
  gobin=$(scripts/ensure-go.sh) || die "no usable Go >= 1.26 (scripts/ensure-go.sh failed)"
  export PATH="$gobin:$PATH"
fi
command -v go >/dev/null 2>&1 || die "Go >= 1.26 is required but 'go' is not in PATH"
gov=$(go env GOVERSION 2>/dev/null || true)        # e.g. go1.26.8
v=${gov#go}; major=${v%%.*}; rest=${v#*.}; minor=${rest%%.*}
if ! [[ $major =~ ^[0-9]+$ && $minor =~ ^[0-9]+$ ]] || { [ "$major" -eq 1 ] && [ "$minor" -lt 26 ]; } || [ "$major" -lt 1 ]; then
  die "Go >= 1.26 is required, found '${gov:-unknown}' at $(command -v go)"
fi

# ---------------------------------------------------------------- packages
pkgs=(dovecot-core dovecot-imapd dovecot-lmtpd postfix openssl jq curl gcc libc6-dev ca-certificates)
need=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  log "installing: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
  own_policy=0
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
    own_policy=1
    trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  fi
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ "$own_policy" = 1 ]; then rm -f /usr/sbin/policy-rc.d; trap - EXIT; fi
fi
for u in dovecot dovenull postfix; do id "$u" >/dev/null 2>&1 || die "system user $u missing after install"; done
getent group postdrop >/dev/null || die "group postdrop missing after install"

# ---------------------------------------------------------------- vmail
if ! id vmail >/dev/null 2>&1; then
  log "creating system user vmail"
  useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail
fi

# Every Dovecot IMAP process in IDLE takes an inotify instance of the vmail
# uid; the default of 128 runs out when many sessions are open at once.
cur=$(cat /proc/sys/fs/inotify/max_user_instances 2>/dev/null || echo 0)
if [ "$cur" -lt 8192 ]; then
  sysctl -q -w fs.inotify.max_user_instances=8192 2>/dev/null || log "note: could not raise fs.inotify.max_user_instances ($cur)"
fi

# ---------------------------------------------------------------- Hydra
build_hydra() {
  local src=$CACHE/hydra-src t0=$SECONDS
  mkdir -p "$src" "$(dirname "$HYDRA_BIN")"
  log "building Ory Hydra $HYDRA_VERSION into $HYDRA_BIN (first time only, ~3-4 min; log: $src/build.log)"
  if ! (
    cd "$src" &&
    export GOWORK=off GOTOOLCHAIN=local GOFLAGS=-mod=mod &&
    { [ -f go.mod ] || go mod init idp.local/hydra; } &&
    go get -tool "github.com/ory/hydra/v2@$HYDRA_VERSION" &&
    # Go ignores a dependency's replace directives: copy Hydra's own pop replace.
    rep=$(go mod edit -json "$(go list -m -f '{{.Dir}}' github.com/ory/hydra/v2)/go.mod" |
          jq -er '.Replace[] | select(.Old.Path=="github.com/gobuffalo/pop/v6") | "\(.New.Path)@\(.New.Version)"') &&
    go mod edit -replace "github.com/gobuffalo/pop/v6=$rep" &&
    # sqlite (cgo) is needed for dsn: memory.
    CGO_ENABLED=1 go build -tags sqlite,sqlite_omit_load_extension -o "$HYDRA_BIN.tmp" github.com/ory/hydra/v2 &&
    mv -f "$HYDRA_BIN.tmp" "$HYDRA_BIN"
  ) >"$src/build.log" 2>&1; then
    tail -30 "$src/build.log" >&2
    die "Hydra build failed (full log: $src/build.log)"
  fi
  log "built Hydra in $((SECONDS - t0)) s"
}
mkdir -p "$CACHE"
exec 9>"$CACHE/.install.lock"
flock 9   # another test run may be building the same binary
if [ "${MAILGATE_REBUILD_HYDRA:-0}" = 1 ] || [ ! -x "$HYDRA_BIN" ]; then
  build_hydra
fi
flock -u 9
log "ok: packages, vmail, Hydra ($HYDRA_BIN), $gov"
