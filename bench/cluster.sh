#!/usr/bin/env bash
# cluster.sh: mailgate scaled out behind HAProxy, measured on this machine.
# Builds mailgate (scripts/build.sh, or takes BENCH_MAILGATE) and
# bench/cmd/mgcluster, runs it, and writes bench/results/<date>-cluster.md:
#
#   - sustained cached-token logins per second through HAProxy (TCP mode,
#     send-proxy-v2, /readyz health checks) with one and with three replicas
#     sharing a Redis, with the CPU each component spends per login and the
#     machine's busy cores (what limits the figure);
#   - idle sessions in IMAP IDLE held through HAProxy with one and three
#     replicas: memory and descriptors per session, in mailgate and HAProxy;
#   - the latency a login gains from Redis (cluster.redis set or not, one
#     replica, one client), with Redis's commands per login.
#
# As root on Debian 12 (Dovecot, like internal/testenv). Everything runs on
# loopback addresses; clients come from addresses of their own in 127/8.
#
#   bench/cluster.sh                 # full: 3 x 30 s login runs per replica count, 4,000 idle sessions, 20 s latency run (~13 min)
#   BENCH_QUICK=1 bench/cluster.sh   # 2 x 10 s, 1,000 sessions, 6 s (~4 min)
#
# The login runs alternate between the replica counts (all clusters are up at
# once; only one is loaded at a time), so that a change in the machine's
# load falls on every count alike; the report also says how many cores other
# processes used during each run.
#
# Knobs (environment; quick defaults in brackets):
#   BENCH_REPLICAS         replica counts [1,3]
#   BENCH_LOGIN_SECONDS    length of each login run [30; 10]
#   BENCH_REPS             login runs per replica count [3; 2]
#   BENCH_CONCURRENCY      login clients [16]
#   BENCH_SESSIONS         idle sessions per replica count [4000; 1000]
#   BENCH_REDIS_SECONDS    length of the Redis latency run [20; 6]
#   BENCH_OUT              result directory [bench/results]
#   BENCH_SKIP_INSTALL     1 = do not run scripts/install-test-deps.sh [0]
#   BENCH_MAILGATE         a mailgate binary to measure instead of the work tree
set -euo pipefail
cd "$(dirname "$0")/.."
log() { printf '[cluster] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (Dovecot needs it; apt-get too)"

if [ "${BENCH_QUICK:-0}" = 1 ]; then
  login_s=${BENCH_LOGIN_SECONDS:-10}; reps=${BENCH_REPS:-2}; sessions=${BENCH_SESSIONS:-1000}; redis_s=${BENCH_REDIS_SECONDS:-6}
else
  login_s=${BENCH_LOGIN_SECONDS:-30}; reps=${BENCH_REPS:-3}; sessions=${BENCH_SESSIONS:-4000}; redis_s=${BENCH_REDIS_SECONDS:-20}
fi
replicas=${BENCH_REPLICAS:-1,3}
conc=${BENCH_CONCURRENCY:-16}
out=${BENCH_OUT:-bench/results}
name=$(date -u +%Y-%m-%d-%H%M)-cluster

if [ "${BENCH_SKIP_INSTALL:-0}" != 1 ]; then
  log "installing test dependencies (Dovecot, Hydra, HAProxy, Redis, Go)"
  scripts/install-test-deps.sh
fi
if [ -x scripts/ensure-go.sh ]; then
  gobin=$(scripts/ensure-go.sh) && export PATH="$gobin:$PATH"
fi
command -v haproxy >/dev/null || [ -x /usr/sbin/haproxy ] || die "haproxy missing"
command -v redis-server >/dev/null || die "redis-server missing"

work=$(mktemp -d /tmp/mailgate-cluster-bench-XXXXXX)
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
else
  scripts/build.sh "$work/mailgate"
fi
go build -o "$work/mgcluster" ./bench/cmd/mgcluster

# Every session holds two descriptors in HAProxy and two in mailgate.
ulimit -n "$(ulimit -Hn)"
log "open files limit: $(ulimit -n)"

mkdir -p "$out"
started=$(date +%s)
started_at=$(date -u '+%Y-%m-%d %H:%M UTC')
loadavg=$(cut -d' ' -f1-3 /proc/loadavg)
log "mgcluster: replicas=$replicas logins=${reps}x${login_s}s concurrency=$conc sessions=$sessions redis=${redis_s}s"
status=0
"$work/mgcluster" -mailgate "$work/mailgate" -replicas "$replicas" -logins "${login_s}s" -reps "$reps" -concurrency "$conc" \
  -sessions "$sessions" -redis-logins "${redis_s}s" -out "$work/report.md" &
driver_pid=$!
wait "$driver_pid" || status=$?
driver_pid=
{
  echo "# mailgate scale-out: $started_at"
  echo
  echo "\`bench/cluster.sh\` (replicas $replicas, ${reps} x ${login_s} s login runs with $conc clients, $sessions idle sessions, ${redis_s} s latency run) on $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(free -g | awk '/^Mem:/{print $2}') GiB; load average before the run $loadavg (1, 5, 15 min); wall time $(( $(date +%s) - started )) s; driver exit status $status."
  echo
  [ -f "$work/report.md" ] && cat "$work/report.md"
} > "$out/$name.md"
log "results: $out/$name.md"
exit "$status"
