#!/usr/bin/env bash
# ensure-go.sh: make a Go >= 1.26 toolchain available, then print its bin dir.
# Usage: GOBIN_DIR=$(scripts/ensure-go.sh) && export PATH="$GOBIN_DIR:$PATH"
#
# Order: a go >= 1.26 already on PATH or in /usr/local/go; else a toolchain
# this script installed before; else (Debian 12, as root) Debian's Go 1.19
# fetches the official golang.org/toolchain module from the Go module proxy
# (GOPROXY, as configured) and it is unpacked into /usr/local/lib/mailgate-go.
set -euo pipefail
want=go1.26.8
dest=/usr/local/lib/mailgate-go/$want
log() { echo "[ensure-go] $*" >&2; }

usable() { # dir-with-go
  [ -x "$1/go" ] || return 1
  local v; v=$("$1/go" env GOVERSION 2>/dev/null) || return 1
  v=${v#go}; local major=${v%%.*} rest=${v#*.}; local minor=${rest%%.*}
  [ "$major" -gt 1 ] || { [ "$major" -eq 1 ] && [ "$minor" -ge 26 ]; }
}

for d in "$(dirname "$(command -v go 2>/dev/null || echo /nonexistent/go)")" /usr/local/go/bin "$dest/bin"; do
  if usable "$d"; then echo "$d"; exit 0; fi
done

[ "$(id -u)" = 0 ] || { log "Go >= 1.26 not found; run as root to install it, or install Go $want yourself"; exit 1; }
log "Go >= 1.26 not found: bootstrapping $want through Debian's Go and the Go module proxy"
boot=/usr/lib/go-1.19/bin/go
if [ ! -x "$boot" ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq golang-1.19-go ca-certificates unzip >/dev/null
fi
arch=$(dpkg --print-architecture)
mod="golang.org/toolchain@v0.0.1-$want.linux-$arch"
tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
zip=$(cd "$tmp" && GOFLAGS=-mod=mod GOPATH="$tmp/gopath" "$boot" mod download -json "$mod" | sed -n 's/.*"Zip": "\(.*\)".*/\1/p')
[ -f "$zip" ] || { log "could not download $mod"; exit 1; }
command -v unzip >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq unzip >/dev/null
mkdir -p "$tmp/x" && unzip -q "$zip" -d "$tmp/x"
src="$tmp/x/$mod"
rm -rf "$dest" && mkdir -p "$(dirname "$dest")" && mv "$src" "$dest"
# module zips carry no file modes
chmod +x "$dest"/bin/* "$dest"/pkg/tool/*/* 2>/dev/null || true
chmod -R u+w "$tmp" 2>/dev/null || true
usable "$dest/bin" || { log "installed toolchain does not run"; exit 1; }
log "installed $want in $dest"
echo "$dest/bin"
