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
  # bench/gateway.sh: the load generator, its static-file peer, the profile
  wrk busybox strace linux-perf
  # the local backend: OCI runtimes and host tools
  runc crun bubblewrap iproute2 nftables
  # mkfs.ext4: /workspace and the home are size-limited ext4 volumes
  e2fsprogs
  # gVisor: the strongest local runtime (stockade run --runtime gvisor)
  runsc
)
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
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing packages: ${missing[*]}; run as root" >&2
  exit 1
fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
