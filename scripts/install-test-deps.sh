#!/usr/bin/env bash
# install-test-deps.sh: install what the integration tests (internal/testenv)
# need on Debian 12, as root. Idempotent: a second run only checks.
#
#   - Debian packages: dovecot-core dovecot-imapd dovecot-lmtpd dovecot-pop3d
#     dovecot-managesieved dovecot-sieve postfix openssl jq curl python3 gcc
#     libc6-dev ca-certificates, php-cli + php-net-sieve (PHP Net_Sieve,
#     Roundcube's ManageSieve client, for client-compatibility tests), and
#     gnuplot-nox (the benchmark report's charts, bench/internal/report), haproxy
#     and redis-server (the scale-out tests, internal/clustertest, and
#     bench/cluster.sh), thunderbird, xvfb and libnss3-tools (certutil) for the
#     end-to-end test with a real Thunderbird (testenv.NewThunderbird), and
#     postgresql (the app-password store's tests, testenv.StartPostgres),
#     chromium (the app-password page driven in a real browser,
#     testenv.NewBrowser). Postfix
#     is preseeded to "No
#     configuration" and a temporary policy-rc.d keeps the distro services from
#     starting (the tests run their own instances on free loopback ports).
#   - the system user vmail (the mail uid of the test Dovecot).
#   - Ory Hydra v2.3.0, built once from the Go module proxy into
#     ${MAILGATE_HYDRA_BIN:-${MAILGATE_TEST_CACHE:-$HOME/.cache/mailgate-test}/hydra}
#     (~3-4 min and ~1 GB of Go caches the first time). MAILGATE_REBUILD_HYDRA=1
#     rebuilds it.
#   - Go >= 1.26 must be usable (scripts/ensure-go.sh installs it if missing).
#   - only when deb13 is asked for (MAILGATE_BACKENDS or MAILGATE_BACKEND
#     contains deb13, or MAILGATE_BUILD_DEB13=1): a Debian 13 (trixie) root with
#     Dovecot 2.4 and Postfix 3.10 (dovecot-core -imapd -lmtpd -pop3d
#     -managesieved -sieve, postfix postfix-pcre, user vmail), made by
#     mmdebstrap into ${MAILGATE_DEB13_ROOT:-$CACHE/debian13/root}, from the
#     Debian mirror apt is configured with (MAILGATE_DEBIAN_MIRROR and
#     MAILGATE_DEBIAN_SECURITY_MIRROR override it). The first build takes about
#     2 min and ~180 MB; later runs only check the stamp file next to the root
#     and the installed versions. MAILGATE_REBUILD_DEB13=1 rebuilds it.
#
# internal/testenv looks for Hydra and the Debian 13 root at the same paths
# (testenv.HydraBinary, testenv.Deb13Root).
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

want_deb13=0
backends=${MAILGATE_BACKENDS:-}
case " ${backends//,/ } ${MAILGATE_BACKEND:-} " in *" deb13 "*) want_deb13=1 ;; esac
[ "${MAILGATE_BUILD_DEB13:-0}" = 1 ] && want_deb13=1

# ---------------------------------------------------------------- packages
pkgs=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-pop3d dovecot-managesieved dovecot-sieve
      postfix openssl jq curl python3 gcc libc6-dev ca-certificates php-cli php-net-sieve gnuplot-nox
      haproxy redis-server thunderbird xvfb libnss3-tools chromium postgresql)
[ "$want_deb13" = 0 ] || pkgs+=(mmdebstrap)
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

# ---------------------------------------------------------------- Debian 13 root
DEB13_ROOT=${MAILGATE_DEB13_ROOT:-$CACHE/debian13/root}
DEB13_STAMP=$(dirname "$DEB13_ROOT")/stamp   # testenv checks the same file
DEB13_PKGS=(dovecot-core dovecot-imapd dovecot-lmtpd dovecot-pop3d dovecot-managesieved dovecot-sieve postfix postfix-pcre)
# Changing anything here changes the stamp's first line and rebuilds the root.
DEB13_RECIPE="mailgate-deb13 v1: trixie trixie-updates trixie-security, variant essential, ${DEB13_PKGS[*]}, user vmail"

# apt_repo SUITE_REGEX: the first archive URI apt's sources use for a suite
# matching the regex (so no mirror host is written down here).
apt_repo() {
  apt-get indextargets --no-release-info --format '$(REPO_URI) $(RELEASE)' 'Created-By: Packages' 2>/dev/null |
    awk -v re="$1" '$2 ~ re { print $1; exit }'
}
deb13_versions() {
  chroot "$DEB13_ROOT" dpkg-query -W -f '${Package} ${Version}\n' "${DEB13_PKGS[@]}" 2>/dev/null
}
deb13_ok() {
  [ -f "$DEB13_STAMP" ] && [ -d "$DEB13_ROOT" ] || return 1
  [ "$(head -1 "$DEB13_STAMP")" = "$DEB13_RECIPE" ] || return 1
  [ "$(tail -n +2 "$DEB13_STAMP")" = "$(deb13_versions)" ] || return 1
  case $(chroot "$DEB13_ROOT" /usr/sbin/dovecot --version 2>/dev/null) in 2.4.*) ;; *) return 1 ;; esac
  case $(chroot "$DEB13_ROOT" /usr/sbin/postconf -dh mail_version 2>/dev/null) in 3.10.*) ;; *) return 1 ;; esac
  chroot "$DEB13_ROOT" id vmail >/dev/null 2>&1
}
build_deb13() {
  local t0=$SECONDS new mirror security opts=()
  mirror=${MAILGATE_DEBIAN_MIRROR:-$(apt_repo '^[a-z]+$')}
  security=${MAILGATE_DEBIAN_SECURITY_MIRROR:-$(apt_repo '-security$')}
  [ -n "$mirror" ] || die "no Debian mirror in apt's sources (set MAILGATE_DEBIAN_MIRROR)"
  command -v mmdebstrap >/dev/null || die "mmdebstrap is missing"
  local sources=("deb $mirror trixie main" "deb $mirror trixie-updates main")
  [ -z "$security" ] || sources+=("deb $security trixie-security main")
  # A snapshot mirror's Release files are past their Valid-Until.
  eval "$(apt-config shell cvu Acquire::Check-Valid-Until)"
  [ "${cvu:-}" != false ] || opts+=(--aptopt='Acquire::Check-Valid-Until "false"')
  mkdir -p "$(dirname "$DEB13_ROOT")"
  new=$DEB13_ROOT.new
  rm -rf "$new" "$DEB13_STAMP"
  log "building the Debian 13 root (Dovecot 2.4, Postfix 3.10) into $DEB13_ROOT from $mirror (first time only, ~2 min)"
  if ! mmdebstrap --mode=root --variant=essential --format=directory "${opts[@]}" \
      --include="$(IFS=,; echo "${DEB13_PKGS[*]}")" \
      --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/locale/*' \
      --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
      --essential-hook='echo "postfix postfix/main_mailer_type select No configuration" | chroot "$1" debconf-set-selections' \
      --customize-hook='chroot "$1" useradd --system --user-group --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin vmail' \
      trixie "$new" "${sources[@]}" >"$new.log" 2>&1; then
    tail -30 "$new.log" >&2
    die "mmdebstrap failed (full log: $new.log)"
  fi
  rm -rf "$DEB13_ROOT"
  mv "$new" "$DEB13_ROOT"
  mv -f "$new.log" "$(dirname "$DEB13_ROOT")/build.log"
  { echo "$DEB13_RECIPE"; deb13_versions; } >"$DEB13_STAMP.tmp"
  mv "$DEB13_STAMP.tmp" "$DEB13_STAMP"
  deb13_ok || die "the new Debian 13 root fails its own check"
  log "built the Debian 13 root in $((SECONDS - t0)) s, $(du -sh "$DEB13_ROOT" | cut -f1): $(tail -n +2 "$DEB13_STAMP" | tr '\n' ' ')"
}
if [ "$want_deb13" = 1 ]; then
  if [ "${MAILGATE_REBUILD_DEB13:-0}" = 1 ] || ! deb13_ok; then
    build_deb13
  fi
fi
flock -u 9
deb13_note=""
[ "$want_deb13" = 0 ] || deb13_note=", Debian 13 root ($DEB13_ROOT: Dovecot $(chroot "$DEB13_ROOT" /usr/sbin/dovecot --version | cut -d' ' -f1), Postfix $(chroot "$DEB13_ROOT" /usr/sbin/postconf -dh mail_version))"
log "ok: packages, vmail, Hydra ($HYDRA_BIN)$deb13_note, $gov"
