#!/usr/bin/env bash
# Installs everything stockade needs to build, test and run, from Debian 12
# packages. Idempotent; skips apt-get entirely when all are present.
set -euo pipefail

packages=(
  # build
  build-essential meson ninja-build pkg-config clang clang-format libclang-rt-14-dev
  # libraries (DESIGN.md §5)
  libyaml-dev libjansson-dev libcmocka-dev libsqlite3-dev libssl-dev
  libcurl4-openssl-dev libevent-dev libseccomp-dev libnftables-dev libmnl-dev
  # pods/exec and pods/attach: WebSocket framing (the Kubernetes client)
  libwebsockets-dev
  # tests and benchmarks
  python3 python3-pytest python3-yaml hyperfine curl openssl
  # bench/gateway.sh: the load generator, its static-file peer, the profile;
  # bench/proxy.sh: tinyproxy-bin, the egress proxy's peer (the binary, no service)
  wrk busybox strace linux-perf tinyproxy-bin
  # the local backend: OCI runtimes and host tools
  runc crun bubblewrap iproute2 nftables
  # mkfs.ext4: /workspace and the home are size-limited ext4 volumes
  e2fsprogs
  # images (docs/images.md): gzip layers (zlib), pulls (skopeo), and the
  # registry the tests and bench/images.sh run on loopback
  zlib1g-dev skopeo docker-registry
)
# gVisor, the strongest local runtime, comes from bookworm-backports: Debian
# 12's own runsc (2022) answers statx with EINVAL (`ls /` fails under it) and
# cannot join a prepared network namespace.
RUNSC_MIN=0.0~20240729
BACKPORTS=/etc/apt/sources.list.d/stockade-bookworm-backports.sources

runsc_ok() {
  local v
  v=$(dpkg-query -W -f='${Version}' runsc 2>/dev/null) || return 1
  dpkg --compare-versions "$v" ge "$RUNSC_MIN"
}

install_runsc() {
  runsc_ok && return 0
  # an apt source for bookworm-backports, unless one is configured already
  if ! grep -rqsE '^[^#]*(bookworm-backports)' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat >"$BACKPORTS" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  fi
  apt-get update -q
  apt-get install -y -q --no-install-recommends -t bookworm-backports runsc
  runsc_ok || { echo "install-deps: runsc from bookworm-backports is older than $RUNSC_MIN" >&2; exit 1; }
}
# The Kubernetes schema checks (tests/k8s-schema) run on node and npm. Keep a
# node that is already installed (it may not be Debian's) instead of adding
# Debian's beside it.
if ! command -v node >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ] && runsc_ok; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  runsc_ok || missing+=("runsc>=$RUNSC_MIN (bookworm-backports)")
  echo "install-deps: missing packages: ${missing[*]}; run as root" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
install_runsc
