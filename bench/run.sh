#!/usr/bin/env bash
# bench/run.sh: mailgate side by side with a direct connection, the nginx mail
# proxy and Dovecot's own OAuth2 passdb, all on 127.0.0.1, in one run.
#
# As root on Debian 12, from anywhere:
#
#   bench/run.sh                 # full run (~21 min on a quiet 2-core machine)
#   BENCH_QUICK=1 bench/run.sh   # every row of the full table, 2 repetitions, shorter runs,
#                                # 10,000 idle sessions listed but not measured (~8 min)
#
# It installs what it needs (Dovecot, Postfix, Hydra and Go through
# scripts/install-test-deps.sh; nginx, libnginx-mod-mail and gnuplot-nox from
# Debian), builds mailgate with scripts/build.sh and the drivers
# bench/cmd/mgbench and bench/cmd/mgload, runs them, and writes
# bench/results/<date>.md (the table, then the load report), .json (every
# raw value) and .png (throughput and latency chart). Everything it starts
# is stopped when it ends, also on Ctrl-C.
#
# Environment (defaults in brackets; BENCH_QUICK=1 changes them as noted; the
# quick run prints every row of the full table, with fewer and shorter runs):
#   BENCH_REPS            repetitions of every measurement [5; quick 2]
#   BENCH_IDLE_REPS       repetitions of the idle-session measurement [1]
#   BENCH_LOGIN_SECONDS   length of one login run [5; quick 3]
#   BENCH_CONCURRENCY     login concurrencies [1,8,64]
#   BENCH_RESUME_CONCURRENCY  concurrencies (of BENCH_CONCURRENCY) also run by
#                         returning clients that resume their TLS session [1,8]
#   BENCH_SESSIONS        idle session counts (rows) [1000,10000]
#   BENCH_QUICK_SESSIONS  quick only: the counts of BENCH_SESSIONS measured; the
#                         rows of the others say "not measured (quick run)" [1000]
#   BENCH_SUITES          throughput,login,smtp,provider,idle [all]
#   BENCH_LOAD            1 = also run mgload (idle sessions + sustained logins) [1]
#   BENCH_LOAD_SESSIONS   mgload's idle session counts [BENCH_SESSIONS; quick 1000]
#   BENCH_LOAD_SECONDS    length of mgload's sustained login run [60; quick 20]
#   BENCH_OUT             result directory [bench/results]
#   BENCH_SKIP_INSTALL    1 = install nothing (everything already there) [0]
#   BENCH_MAILGATE        a mailgate binary to measure instead of building the
#                         work tree with scripts/build.sh [unset]
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[bench] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (Dovecot and Postfix need it; apt-get too)"

quick=${BENCH_QUICK:-0}
sessions=${BENCH_SESSIONS:-1000,10000}
if [ "$quick" = 1 ]; then
  reps=${BENCH_REPS:-2}; login_s=${BENCH_LOGIN_SECONDS:-3}; load_s=${BENCH_LOAD_SECONDS:-20}
  load_sessions=${BENCH_LOAD_SESSIONS:-1000}
  measured=${BENCH_QUICK_SESSIONS:-1000}
else
  measured=$sessions
  reps=${BENCH_REPS:-5}; login_s=${BENCH_LOGIN_SECONDS:-5}; load_s=${BENCH_LOAD_SECONDS:-60}
  load_sessions=${BENCH_LOAD_SESSIONS:-$sessions}
fi
idle_reps=${BENCH_IDLE_REPS:-1}
concs=${BENCH_CONCURRENCY:-1,8,64}
resume_concs=${BENCH_RESUME_CONCURRENCY-1,8}
suites=${BENCH_SUITES:-throughput,login,smtp,provider,idle}
out=${BENCH_OUT:-bench/results}
name=$(date -u +%Y-%m-%d-%H%M)

# ------------------------------------------------------------------ install
if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  log "installing test dependencies (Dovecot, Postfix, Hydra, Go)"
  scripts/install-test-deps.sh
  pkgs=(nginx libnginx-mod-mail gnuplot-nox)
  need=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || need+=("$p")
  done
  if [ ${#need[@]} -gt 0 ]; then
    log "installing: ${need[*]}"
    export DEBIAN_FRONTEND=noninteractive
    own_policy=0
    if [ ! -e /usr/sbin/policy-rc.d ]; then   # keep the distro's nginx service from starting
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
      chmod +x /usr/sbin/policy-rc.d
      own_policy=1
    fi
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    [ "$own_policy" = 1 ] && rm -f /usr/sbin/policy-rc.d
  fi
fi
if [ -x scripts/ensure-go.sh ]; then
  gobin=$(scripts/ensure-go.sh) && export PATH="$gobin:$PATH"
fi
command -v nginx >/dev/null || die "nginx missing"
[ -f /usr/lib/nginx/modules/ngx_mail_module.so ] || die "libnginx-mod-mail missing"
gnuplot=$(command -v gnuplot || true)
[ -n "$gnuplot" ] || log "gnuplot missing: no chart"

# ------------------------------------------------------------------ build
work=$(mktemp -d /tmp/mailgate-bench-XXXXXX)
driver_pid=
cleanup() {
  if [ -n "$driver_pid" ] && kill -0 "$driver_pid" 2>/dev/null; then
    kill -TERM "$driver_pid" 2>/dev/null || true
    wait "$driver_pid" 2>/dev/null || true
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
export GOFLAGS=${GOFLAGS:--buildvcs=false}
if [ -n "${BENCH_MAILGATE:-}" ]; then
  [ -x "$BENCH_MAILGATE" ] || die "BENCH_MAILGATE=$BENCH_MAILGATE is not an executable"
  cp "$BENCH_MAILGATE" "$work/mailgate"
  log "measuring $BENCH_MAILGATE ($("$work/mailgate" version 2>&1 | head -1)), not the work tree"
else
  scripts/build.sh "$work/mailgate"
fi
go build -o "$work/mgbench" ./bench/cmd/mgbench
go build -o "$work/mgload" ./bench/cmd/mgload

# A proxy holds two descriptors per session: take the whole hard limit.
ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n) (10,000 proxied sessions need ~20,200)"

# ------------------------------------------------------------------ run
mkdir -p "$out"
started=$(date +%s)
log "mgbench: reps=$reps login=${login_s}s concurrency=$concs resumed=$resume_concs sessions=$sessions (measured: $measured) suites=$suites"
"$work/mgbench" -mailgate "$work/mailgate" -out "$out" -name "$name" \
  -reps "$reps" -idle-reps "$idle_reps" -login-duration "${login_s}s" -concurrency "$concs" \
  -resume-concurrency "$resume_concs" -sessions "$sessions" -sessions-measured "$measured" \
  -suites "$suites" -gnuplot "${gnuplot:-}" &
driver_pid=$!
wait "$driver_pid"
driver_pid=

status=0
if [ "${BENCH_LOAD:-1}" = 1 ]; then
  log "mgload: sessions=$load_sessions logins=${load_s}s"
  "$work/mgload" -mailgate "$work/mailgate" -sessions "$load_sessions" -logins "${load_s}s" -out "$work/load.md" &
  driver_pid=$!
  wait "$driver_pid" || status=$?
  driver_pid=
  if [ -f "$work/load.md" ]; then
    { echo; cat "$work/load.md"; } >> "$out/$name.md"
  fi
fi
log "wall time (mgbench + mgload): $(( $(date +%s) - started ))s"
log "results: $out/$name.md $out/$name.json $( [ -f "$out/$name.png" ] && echo "$out/$name.png")"
exit "$status"
