#!/usr/bin/env bash
# build.sh [OUT]: the release build of mailgate, a static binary, into OUT
# (default bin/mailgate in the repository). A relative OUT is taken from the
# directory build.sh is run from, as any command's file argument is; the
# build itself runs from the repository root, wherever it is called from.
# The Dockerfile runs exactly this script, and CI runs it too (scripts/test.sh),
# so the image's build steps are exercised even where Docker cannot run.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
out=${1:-$root/bin/mailgate}
case $out in
  /*) ;;
  *) out=$PWD/$out ;;
esac
cd "$root"
version=${MAILGATE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/mailgate
echo "built $out ($version)" >&2
