#!/usr/bin/env bash
# build.sh OUT: the release build of mailgate, a static binary.
# The Dockerfile runs exactly this script, and CI runs it too (scripts/test.sh),
# so the image's build steps are exercised even where Docker cannot run.
set -euo pipefail
out=${1:-bin/mailgate}
version=${MAILGATE_VERSION:-$(git describe --tags --always --dirty 2>/dev/null || echo dev)}
cd "$(dirname "$0")/.."
CGO_ENABLED=0 go build -trimpath -buildvcs=false \
  -ldflags "-s -w -X main.version=$version" -o "$out" ./cmd/mailgate
echo "built $out ($version)" >&2
