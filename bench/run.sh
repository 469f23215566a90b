#!/usr/bin/env bash
# stockade run -- /bin/true against the bare runtimes on the same bundle and
# bwrap with comparable isolation (and podman, when installed), side by side
# in one hyperfine run.
# As root. Writes bench/results.md (medians and ratios).
#
#   bench/run.sh [RUNS]     (default 30 runs per command, 3 warmups)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
runs=${1:-30}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }

work=$(mktemp -d /tmp/stockade-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT
# traversable: a bundle with a user namespace is opened as its mapped root
chmod 755 "$work"
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run

# Runtime detection (smoke runs) happens once, outside the measurement.
"$bin" run -- /bin/true
works() { python3 -c "import json,sys; sys.exit(0 if json.load(open('$work/state/runtimes.json'))['$1']['works'] else 1)"; }

# The bundle stockade renders, captured from a live run and made standalone:
# the same config.json (namespaces, seccomp, mounts, limits) for each bare
# runtime, with its own workspace, /etc and cgroup path.
capture_bundle() { # runtime-flag dest
  # without its network: the bare runtimes below cannot join a namespace
  # that is gone once the capture run ends
  "$bin" run --no-network --runtime "$1" -- /bin/sleep 60 &
  local pid=$! cfg=""
  for _ in $(seq 600); do
    cfg=$(ls "$work"/state/sandboxes/*/bundle/config.json 2>/dev/null | head -n1 || true)
    [ -n "$cfg" ] && [ -e "$(dirname "$cfg")/../pid" ] && break
    sleep 0.05
  done
  [ -n "$cfg" ] || { echo "bench: the capture run of $1 did not start" >&2; exit 1; }
  local sb; sb=$(dirname "$(dirname "$cfg")")
  cp "$cfg" "$work/captured.json"; cfg=$work/captured.json
  mkdir -p "$2/rootfs" "$2/ws"
  # crun sees the state directory at /run/stockade-view (its private mount
  # namespace, src/driver/local/idmap.c); the same files are under $work/state
  cp -r "$(python3 -c 'import json,sys; print([m["source"] for m in json.load(open(sys.argv[1]))["mounts"] if m["destination"] == "/etc"][0])' "$cfg" | sed "s|^/run/stockade-view/|$work/state/|")" "$2/etc"
  chown 65534:65534 "$2/ws"
  python3 - "$cfg" "$2" "$sb" <<'PY'
import json, sys
cfg, dest, sb = sys.argv[1:]
c = json.load(open(cfg))
c["root"]["path"] = dest + "/rootfs"
c["process"]["args"] = ["/bin/true"]
for m in c["mounts"]:
    if m["destination"] == "/workspace": m["source"] = dest + "/ws"
    if m["destination"] == "/etc": m["source"] = dest + "/etc"
# the capture run's own objects are gone once it ends: its cgroup views
# (the bare run gets the runtime's own cgroup) and its kept user namespace
# (the bare run makes one with the same mappings)
c["mounts"] = [m for m in c["mounts"] if not (m["destination"].startswith("/sys/fs/cgroup")
               and m["source"].startswith(("/run/stockade-view/", "/sys/fs/cgroup/")))]
for ns in c["linux"]["namespaces"]:
    if ns["type"] == "user": ns.pop("path", None)
# with a user namespace the runtime works in the root as the mapped root
import os
um, gm = c["linux"].get("uidMappings"), c["linux"].get("gidMappings")
if um and gm:
    os.chown(dest + "/rootfs", um[0]["hostID"], gm[0]["hostID"])
    os.chown(dest + "/ws", um[0]["hostID"] + 65534, gm[0]["hostID"] + 65534)
c["linux"]["cgroupsPath"] = "/stockade-bench/" + dest.rsplit("/", 1)[1]
json.dump(c, open(dest + "/config.json", "w"), indent=2)
PY
  # the capture is taken: the run ends (the signal goes to its workload)
  kill "$pid"; wait "$pid" || true
}

cmds=() names=()
add() { names+=("$1"); cmds+=("$2"); }
for rt in runc crun runsc; do
  works "$rt" || { echo "bench: skipping $rt (does not work here)"; continue; }
  flag=$rt; [ "$rt" = runsc ] && flag=gvisor
  capture_bundle "$flag" "$work/$rt"
  add "stockade run ($rt)" "$bin run --runtime $flag -- /bin/true"
  # the network (netns, veth, nftables transaction) is stockade's own work
  # too; the bare runs below have none
  add "stockade run --no-network ($rt)" "$bin run --no-network --runtime $flag -- /bin/true"
  case $rt in
    runc) add "runc run (bare)" "runc --root $work/run/bare-runc run --bundle $work/runc bench-runc" ;;
    # crun needs the same private mount namespace stockade gives it on a
    # hybrid host; unshare + sh add about a millisecond to the bare figure.
    crun)
      if [ -d /sys/fs/cgroup/unified ] && [ "$(stat -fc %T /sys/fs/cgroup)" != cgroup2fs ]; then
        add "crun run (bare)" "unshare -m --propagation private sh -c 'umount -l /sys/fs/cgroup/unified; exec crun --root $work/run/bare-crun run --bundle $work/crun bench-crun'"
      else
        add "crun run (bare)" "crun --root $work/run/bare-crun run --bundle $work/crun bench-crun"
      fi ;;
    runsc) add "runsc run (bare)" "runsc --root $work/run/bare-runsc --network=none --oci-seccomp run --bundle $work/runsc bench-runsc" ;;
  esac
done
if command -v bwrap >/dev/null; then
  # Same namespaces (user, pid, net, ipc, uts, cgroup, mount), read-only host
  # /usr, no capabilities, uid 65534; no seccomp filter and no cgroup limits.
  add "bwrap (no seccomp, no cgroup)" "bwrap --unshare-all --die-with-parent --new-session --uid 65534 --gid 65534 --cap-drop ALL --ro-bind /usr /usr --symlink usr/bin /bin --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev --tmpfs /tmp /bin/true"
fi

# Debian's podman, if installed (never required): the same /bin/true in a
# minimal root, with its default network; runc because crun refuses hybrid
# cgroup hosts, and rlimits this machine's hard limits allow (MACHINE.md).
if command -v podman >/dev/null && works runc; then
  proot=$work/podman-root
  mkdir -p "$proot/bin" "$proot/proc" "$proot/sys" "$proot/dev" "$proot/etc"
  cp /bin/true "$proot/bin/true"
  for lib in $(ldd /bin/true | grep -o '/[^ ]*'); do
    mkdir -p "$proot$(dirname "$lib")"; cp -L "$lib" "$proot$lib"
  done
  pflags="--runtime runc --ulimit nofile=1024:1024 --ulimit nproc=1024:1024"
  if podman run --rm $pflags --rootfs "$proot" /bin/true >/dev/null 2>&1; then
    add "podman run --rm (runc, default network)" "podman run --rm $pflags --rootfs $proot /bin/true"
  else
    echo "bench: skipping podman (podman run fails here)"
  fi
fi

args=()
for i in "${!cmds[@]}"; do
  # one run first, so a failing command fails here with its own message
  sh -c "${cmds[$i]}" >/dev/null || { echo "bench: ${names[$i]} fails: ${cmds[$i]}" >&2; exit 1; }
  args+=(-n "${names[$i]}" "${cmds[$i]}")
done
hyperfine -N --warmup 3 --runs "$runs" --export-json "$work/hyperfine.json" "${args[@]}" || \
  hyperfine --warmup 3 --runs "$runs" --export-json "$work/hyperfine.json" "${args[@]}"

python3 - "$work/hyperfine.json" "$root/bench/results.md" "$runs" <<'PY'
import json, os, platform, subprocess, sys, time
data, out, runs = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path.insert(0, os.path.dirname(os.path.abspath(out)))
from machine import ver, write_report
res = {r["command"]: r for r in json.load(open(data))["results"]}
med = {k: r["median"] * 1000 for k, r in res.items()}
lines = ["# stockade run -- /bin/true: benchmark", "",
         f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} on {platform.node()} "
         f"(kernel {platform.release()}), hyperfine, {runs} runs after 3 warmups, by `bench/run.sh`.", "",
         "| command | median (ms) | mean ± σ (ms) | vs bare runtime |", "|---|---:|---:|---:|"]
for name, r in res.items():
    ratio = ""
    if name.startswith("stockade run"):
        rt = name[name.index("(") + 1:-1]
        bare = med.get(f"{rt} run (bare)")
        if bare:
            ratio = f"{med[name] / bare:.2f}× ({med[name] - bare:+.1f} ms)"
    lines.append(f"| {name} | {med[name]:.1f} | {r['mean']*1000:.1f} ± {r['stddev']*1000:.1f} | {ratio} |")
pod = [k for k in med if k.startswith("podman run")]
if pod:
    lines += ["", "Against podman (" + pod[0] + f", {med[pod[0]]:.1f} ms): " + "; ".join(
        f"{k} {med[k] / med[pod[0]]:.2f}×" for k in med
        if k.startswith("stockade run (") and "--no-network" not in k)]
lines += ["", "Versions: " + "; ".join(ver(c) for c in (["runc", "--version"], ["crun", "--version"],
          ["runsc", "--version"], ["bwrap", "--version"], ["podman", "--version"]))]
# the sections below the table (other benches' results, the profile) are kept
write_report(out, lines, keep="\n## ", default="")
PY
