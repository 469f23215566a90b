#!/usr/bin/env bash
# Images on the local backend, side by side in one run (hyperfine, medians):
#   * `stockade run --image X -- /bin/true` (warm store) against
#     `stockade run -- /bin/true` on rootfs host, both crun, --no-network;
#   * the first pull of X from a registry on loopback: `stockade image pull`
#     (skopeo copy + digest checks + unpack) against a bare `skopeo copy`.
# X is a busybox image the script builds from this host's /bin/busybox
# (tests/e2e/imagebuild.py) and pushes to Debian's docker-registry on
# 127.0.0.1 with TLS (a self-signed CA handed over with --cert-dir).
# The peer is podman (`podman run --rm X /bin/true`, `podman pull`), installed
# here on demand (`apt-get install podman`; nothing else needs it) and run
# with a storage root of its own under the script's temporary directory and
# the flags this machine needs (MACHINE.md: runc, cgroupfs, rlimits within
# the hard limits). As root. Writes bench/images.md.
#
#   bench/images.sh [RUNS]     (default 20 runs per command, 2 warmups)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-20}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
for t in hyperfine skopeo docker-registry openssl; do
  command -v $t >/dev/null || { echo "$t missing: scripts/install-deps.sh" >&2; exit 1; }
done
if ! command -v podman >/dev/null; then
  echo "installing podman for the peer rows (apt-get install podman)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y podman >/dev/null
fi
work=$(mktemp -d /tmp/stockade-images.XXXXXX)
chmod 755 "$work" # podman's layers are read by the image's user
# podman: its own storage and run root, events to a file, runc, cgroupfs,
# rlimits within this machine's hard limits (MACHINE.md)
pod=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp"
     --runtime runc --cgroup-manager cgroupfs --events-backend file)
podrun=(--rm --network none --ulimit nofile=1024:1024 --ulimit nproc=1024:1024)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
reg_pid=""
cleanup() {
  set +e
  [ -n "$reg_pid" ] && kill "$reg_pid" && wait "$reg_pid" 2>/dev/null
  "$bin" image prune >/dev/null 2>&1
  podman "${pod[@]}" rmi -a -f >/dev/null 2>&1
  "$bin" gc >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

python3 -c "import sys; sys.path.insert(0, 'tests/e2e'); import imagebuild as ib
ib.write_layout('$work/layout', [ib.busybox_layer()], ib.APP_CONFIG)"
mkdir -p "$work/certs"
openssl req -x509 -newkey rsa:2048 -nodes -days 1 -keyout "$work/key.pem" -out "$work/certs/ca.crt" \
  -subj /CN=localhost -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
  -addext "basicConstraints=critical,CA:TRUE" 2>/dev/null
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat >"$work/registry.yml" <<YML
version: 0.1
log: {level: error}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port, tls: {certificate: $work/certs/ca.crt, key: $work/key.pem}}
YML
docker-registry serve "$work/registry.yml" >/dev/null 2>&1 &
reg_pid=$!
for _ in $(seq 100); do (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null && break; sleep 0.05; done
echo '{"default":[{"type":"insecureAcceptAnything"}]}' >"$work/policy.json"
ref=localhost:$port/busybox:1
skopeo --policy "$work/policy.json" copy --quiet --dest-cert-dir "$work/certs" \
  "oci:$work/layout:latest" "docker://$ref"

"$bin" image pull --cert-dir "$work/certs" "$ref" >/dev/null
podman "${pod[@]}" pull -q --cert-dir "$work/certs" "$ref" >/dev/null
# runtime detection (smoke runs) once, outside the measurement
"$bin" run --no-network --runtime crun -- /bin/true
podman "${pod[@]}" run "${podrun[@]}" "$ref" /bin/true

hyperfine -N --runs "$runs" --warmup 2 --export-json "$work/run.json" \
  -n "stockade run --image (warm)" "$bin run --no-network --runtime crun --image $ref -- /bin/true" \
  -n "stockade run (rootfs host)" "$bin run --no-network --runtime crun -- /bin/true" \
  -n "podman run --rm (runc, --network none)" "podman ${pod[*]} run ${podrun[*]} $ref /bin/true"
hyperfine -N --runs "$runs" --warmup 1 --export-json "$work/pull.json" \
  --prepare "$bin image prune" \
  -n "stockade image pull (first)" "$bin image pull --cert-dir $work/certs $ref" \
  --prepare "rm -rf $work/skopeo-out" \
  -n "skopeo copy (bare)" \
  "skopeo --policy $work/policy.json copy --quiet --src-cert-dir $work/certs docker://$ref oci:$work/skopeo-out:latest" \
  --prepare "podman ${pod[*]} rmi -a -f" \
  -n "podman pull (first)" "podman ${pod[*]} pull -q --cert-dir $work/certs $ref"

python3 - "$work" "$runs" <<'PY' >bench/images.md
import json, statistics, sys, datetime
work, runs = sys.argv[1], sys.argv[2]
def rows(f):
    return [(r["command"], statistics.median(r["times"]) * 1000, r["mean"] * 1000, r["stddev"] * 1000,
             (r["user"] + r["system"]) * 1000)
            for r in json.load(open(f"{work}/{f}"))["results"]]
run, pull = rows("run.json"), rows("pull.json")
print("# Images on the local backend: measured\n")
print(f"`bench/images.sh {runs}` on {datetime.date.today()}, {runs} runs each, hyperfine medians.")
print("The image is busybox (this host's binary and its libraries, ~12 MiB unpacked) from")
print("Debian's docker-registry on 127.0.0.1 with TLS. The peer is Debian's podman 4.3.1")
print("(runc, cgroupfs, `--network none`, its own storage root; the flags MACHINE.md lists).\n")
print("CPU is user + system time of stockade and the processes it waited for (mean),")
print("less sensitive than wall time to other load on the machine.\n")
print("| command | median (ms) | mean ± σ (ms) | CPU (ms) | vs peer (median) |")
print("|---|---:|---:|---:|---:|")
# each stockade row against every peer row of its table
for rs in (run, pull):
    for i, (c, med, mean, sd, cpu) in enumerate(rs):
        vs = "; ".join(f"{med / b:.2f}× {p.split(' (')[0]}" for p, b, *_ in rs[1:]) if i == 0 else ""
        print(f"| {c} | {med:.1f} | {mean:.1f} ± {sd:.1f} | {cpu:.1f} | {vs} |")
print(f"\nLoad average while measuring: {open('/proc/loadavg').read().split()[0]} (2 cores).")
PY
cat bench/images.md
