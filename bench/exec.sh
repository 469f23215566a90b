#!/usr/bin/env bash
# One exec of /bin/true, every way in one run: `stockade exec ID -- /bin/true`
# (CLI) on a crun and a runc sandbox beside `crun exec`, `runc exec` and
# `podman exec` (Debian's podman, runc, a container of its own), and the same
# exec through `stockade serve` (HTTP upgrade, docs/api.md "Exec") from a
# resident client (bench/exec_client.py) interleaved with the CLI exec. As
# root. Writes bench/exec.md (medians, ratios, targets); a "## Findings"
# section already at the bottom of bench/exec.md is kept.
#
#   bench/exec.sh [RUNS]     (default 30 runs per command, 3 warmups)
#
# Targets (issue #14): `stockade exec` <= 2 ms median; exec through the
# gateway <= 2 ms median. podman is installed with apt-get when it is
# missing (never required: the row is skipped when that fails; CI does not
# run benchmarks). Nothing is sent anywhere but 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
. "$root/bench/lib.sh"
runs=${1:-30}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
policy=$root/examples/gateway/access-policy.yaml
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
for c in hyperfine curl python3 crun runc; do
  command -v $c >/dev/null || { echo "$c missing: scripts/install-deps.sh" >&2; exit 1; }
done
# the demo tokens of examples/gateway/access-policy.yaml (docs/gateway.md)
tok_controller=demo-controller-token-0000000000
tok_alice=demo-alice-token-00000000000000
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY STOCKADE_SERVER STOCKADE_TOKEN
export NO_PROXY='*' no_proxy='*'

work=$(mktemp -d /tmp/stockade-execbench.XXXXXX)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
srv_pid="" pod="" cg=""
pflags=(--root "$work/podman/root" --runroot "$work/podman/run" --tmpdir "$work/podman/tmp" --cgroup-manager cgroupfs
        --events-backend none --runtime runc)
cleanup() {
  set +e
  if [ -n "$srv_pid" ]; then
    kill -TERM "$srv_pid" 2>/dev/null
    for i in $(seq 100); do kill -0 "$srv_pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$srv_pid" 2>/dev/null; wait "$srv_pid" 2>/dev/null
  fi
  [ -n "$cg" ] && rmdir "$cg" 2>/dev/null
  [ -n "$pod" ] && podman "${pflags[@]}" rm -f -t 0 "$pod" >/dev/null 2>&1
  local ids id
  ids=$("$bin" ls -o json 2>/dev/null | python3 -c 'import json,sys
for s in json.load(sys.stdin): print(s["id"])' 2>/dev/null)
  for id in $ids; do "$bin" rm -f "$id" >/dev/null 2>&1; done
  "$bin" gc >/dev/null 2>&1
  # whatever podman's private storage left mounted (nothing of anyone else's)
  findmnt -rn -o TARGET | grep "^$work/" | sort -r | while read -r m; do umount -l "$m"; done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
die() { echo "exec.sh: $*" >&2; exit 1; }

# --- the gateway (local backend, this state directory) and the sandboxes ----
# the example policy, with runtime crun allowed to the controller (the
# default runtime is the strongest available, gVisor where installed)
sed 's/^\(        onBehalfOf: true\)$/\1\n        runtimes: [crun]/' "$policy" >"$work/policy.yaml"
grep -q 'runtimes: \[crun\]' "$work/policy.yaml" || die "could not allow crun in the policy"
policy=$work/policy.yaml
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" serve --listen "127.0.0.1:$port" --policy "$policy" >"$work/serve.log" 2>&1 &
srv_pid=$!
for i in $(seq 200); do
  [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] && break
  kill -0 "$srv_pid" 2>/dev/null || { cat "$work/serve.log" >&2; die "serve exited"; }
  sleep 0.05
done
# crun sandbox: created through the API for alice, so her token may exec in it
spec='{"apiVersion":"stockade.dev/v1alpha1","kind":"Sandbox","metadata":{"name":"bench-exec","namespace":"acme-bench-exec"},"spec":{"runtime":"crun","rootfs":"host","command":["/bin/sleep","600"]}}'
body=$(python3 -c 'import json,sys; print(json.dumps({"spec": sys.argv[1], "owner": "alice", "tenant": "acme"}))' "$spec")
out=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $tok_controller" \
  -H 'Content-Type: application/json' --data "$body" "http://127.0.0.1:$port/v1/sandboxes")
[ "${out##*$'\n'}" = 201 ] || die "create through the API: ${out}"
cid=$(printf '%s' "${out%$'\n'*}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
cat >"$work/runc.yaml" <<EOF
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: bench-exec-runc
spec:
  runtime: runc
  rootfs: host
  command: ["/bin/sleep", "600"]
EOF
rid=$("$bin" create -f "$work/runc.yaml")

bench_crun_exec "$cid" || exit 1
bench_runc_exec "$rid" || exit 1
"$bin" exec "$cid" -- /bin/true
"$bin" exec "$rid" -- /bin/true

# --- podman: a container of its own (private storage, no network) -----------
pod_note=""
if ! command -v podman >/dev/null; then
  echo "exec.sh: installing Debian's podman for the peer row" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends podman >&2 ||
    pod_note="podman skipped: not installed, and apt-get install podman failed"
fi
if [ -z "$pod_note" ]; then
  proot=$work/podman-rootfs
  mkdir -p "$proot/bin" "$proot/proc" "$proot/sys" "$proot/dev" "$proot/etc" "$proot/tmp"
  for b in /bin/true /bin/sleep; do
    cp "$b" "$proot/bin/"
    for lib in $(ldd "$b" | grep -o '/[^ ]*'); do mkdir -p "$proot$(dirname "$lib")"; cp -L "$lib" "$proot$lib"; done
  done
  # runc, and rlimits within this machine's hard limits (MACHINE.md)
  if pod=$(podman "${pflags[@]}" run -d --network none --ulimit nofile=1024:1024 \
             --ulimit nproc=1024:1024 --rootfs "$proot" /bin/sleep 600 2>"$work/podman.err") &&
     podman "${pflags[@]}" exec "$pod" /bin/true 2>>"$work/podman.err"; then
    :
  else
    pod_note="podman skipped: $(head -c 300 "$work/podman.err" | tr '\n' ' ')"
  fi
fi
[ -n "$pod_note" ] && echo "exec.sh: $pod_note" >&2

# --- 1. CLI and bare runtimes (hyperfine) -------------------------------------
args=(-n "stockade exec (crun sandbox)" "$bin exec $cid -- /bin/true"
      -n "crun exec" "$crun_exec"
      -n "stockade exec (runc sandbox)" "$bin exec $rid -- /bin/true"
      -n "runc exec" "$runc_exec")
[ -n "$runc_note" ] && args+=(-n "nsenter --mount true (wrapper floor)" "nsenter --mount=$work/runc-mntns true")
[ -z "$pod_note" ] && args+=(-n "podman exec (runc)" "podman ${pflags[*]} exec $pod /bin/true")
args+=(-n "stockade version (client floor)" "$bin version")
shellmode=(-N)
[ -n "$crun_note" ] && shellmode=()
hyperfine "${shellmode[@]}" --warmup 3 --runs "$runs" --export-json "$work/cli.json" "${args[@]}" 2>&1 |
  tee "$work/hyperfine.log"
bench_runc_exec_done

# --- 2. the gateway, interleaved with the CLI ---------------------------------
# The server's CPU per exec, its relay and worker children included (the
# relay does not wait for its worker): a cpuacct cgroup of our own holding
# serve, joined after the sandbox exists so that nothing of the sandbox is in it.
gw_cpu=""
if [ -d /sys/fs/cgroup/cpuacct ] && mkdir "/sys/fs/cgroup/cpuacct/stockade-execbench-$$" 2>/dev/null; then
  cg=/sys/fs/cgroup/cpuacct/stockade-execbench-$$
  echo "$srv_pid" >"$cg/cgroup.procs"
  cpu0=$(cat "$cg/cpuacct.usage")
fi
python3 "$root/bench/exec_client.py" 127.0.0.1 "$port" "$tok_alice" "$cid" "$runs" 3 "$bin" \
  >"$work/gw.json" || die "the gateway client failed"
# ns of CPU per gateway exec (the /healthz requests of the loop: ~20 µs each)
[ -n "$cg" ] && gw_cpu=$(( ($(cat "$cg/cpuacct.usage") - cpu0) / (runs + 3) ))
n_audit=$("$bin" audit "$cid" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')

python3 - "$work" "$root/bench/exec.md" "$runs" "$crun_note" "$pod_note" "$n_audit" "$bin" "$gw_cpu" "$runc_note" <<'PY'
import json, os, platform, re, statistics as st, subprocess, sys, time
sys.path.insert(0, "bench")
from machine import cpu_model, ver, write_report
work, out, runs, crun_note, pod_note, n_audit, binp, gw_cpu, runc_note = sys.argv[1:]
runs = int(runs)
rows, cpu_ms = {}, {}
for r in json.load(open(f"{work}/cli.json"))["results"]:
    t = [x * 1000 for x in r["times"]]
    rows[r["command"]] = t
    cpu_ms[r["command"]] = (r["user"] + r["system"]) * 1000
gw = json.load(open(f"{work}/gw.json"))
names = {"gateway_exit": "exec through the gateway (upgrade → EXIT)",
         "gateway_101": "… of which: request → 101 Switching Protocols",
         "cli": "stockade exec (crun sandbox), interleaved with the gateway's",
         "healthz_new_connection": "GET /healthz, new connection (floor)",
         "healthz_keepalive": "GET /healthz, kept-alive connection (floor)"}
grows = {names[k]: gw[k] for k in names}
cpu = cpu_model()
load = open("/proc/loadavg").read().split()[:3]
vers = [ver([binp, "version"]), ver(["crun", "--version"]), ver(["runc", "--version"])]
if not pod_note: vers.append(ver(["podman", "--version"]))
vers.append(ver(["hyperfine", "--version"]))
def fmt(x): return f"{x:.1f}" if x >= 10 else f"{x:.2f}"
def line(name, t, peer=None, peer_t=None, cpu=None):
    m = st.median(t)
    ratio = f"{m / st.median(peer_t):.2f}× {peer} ({m - st.median(peer_t):+.1f} ms)" if peer else ""
    c = "" if cpu is None else fmt(cpu)
    return (f"| {name} | {fmt(m)} | {fmt(st.mean(t))} ± {fmt(st.pstdev(t))} "
            f"| {fmt(min(t))}–{fmt(max(t))} | {c} | {ratio} |")
peers = {"stockade exec (crun sandbox)": "crun exec", "stockade exec (runc sandbox)": "runc exec"}
L = ["# exec: benchmark", "",
     f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/exec.sh {runs}`: "
     f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}, load average {' '.join(load)} at the end; "
     f"{'; '.join(vers)}. {runs} runs per row after 3 warmups; medians in ms. Sandboxes: "
     "`command: [/bin/sleep, 600]`, `rootfs: host`, default network; the crun sandbox was created "
     "through the API for alice (examples/gateway/access-policy.yaml), the runc one with the CLI; "
     "one private state directory, one `stockade serve` (local backend) on 127.0.0.1.", "",
     "CLI and bare runtimes (hyperfine" + ("" if crun_note else ", `-N`") + "):", "",
     "| measurement | median (ms) | mean ± σ (ms) | min–max (ms) | CPU (ms) | vs peer |",
     "|---|---:|---:|---:|---:|---:|"]
pod = "podman exec (runc)"
for k, t in rows.items():
    p = peers.get(k)
    L.append(line(k, t, p, rows.get(p), cpu_ms[k]) if p in rows else line(k, t, cpu=cpu_ms[k]))
if pod in rows:
    m = st.median(rows["stockade exec (crun sandbox)"])
    L += ["", f"Against podman exec ({fmt(st.median(rows[pod]))} ms): stockade exec "
          f"{m / st.median(rows[pod]):.2f}× (crun sandbox), "
          f"{st.median(rows['stockade exec (runc sandbox)']) / st.median(rows[pod]):.2f}× (runc sandbox)."]
L += ["", "Through the gateway, from one resident client (bench/exec_client.py), each gateway exec "
      "followed by a CLI exec and the two /healthz floors, so all rows saw the same moments:", "",
      "| measurement | median (ms) | mean ± σ (ms) | min–max (ms) | CPU (ms) | vs peer |",
      "|---|---:|---:|---:|---:|---:|"]
cli = names["cli"]
for k, t in grows.items():
    L.append(line(k, t, "the CLI exec", grows[cli], int(gw_cpu) / 1e6 if gw_cpu else None)
             if k == names["gateway_exit"] else line(k, t))
g = st.median(grows[names["gateway_exit"]])
c = st.median(rows["stockade exec (crun sandbox)"])
def met(ok): return "**met**" if ok else "**missed**"
L += ["", "Targets:", "",
      f"* `stockade exec ID -- /bin/true` ≤ 2 ms median: {fmt(c)} ms (crun sandbox) — {met(c <= 2)}.",
      f"* exec through the gateway ≤ 2 ms median: {fmt(g)} ms — {met(g <= 2)}.",
      "", "Notes:", "",
      "* CPU: hyperfine's user + system time, mean per run (the command and the children it waits "
      "for; what stockade-init and the runtime's process do inside the sandbox is not in it); for the "
      "gateway, the CPU of `stockade serve` with its relay and worker processes per exec (a cpuacct "
      "cgroup of the bench's own). On a loaded machine CPU time compares where wall-clock medians "
      "mostly measure waiting for a CPU.",
      f"* crun exec: {crun_note or 'ran as is (no private mount namespace needed for exec here)'}.",
      f"* runc exec: {runc_note or 'ran as is'}.",
      "* podman: " + (pod_note or "Debian's podman with `--runtime runc` (crun refuses hybrid cgroups), "
                      "private `--root`/`--runroot`, `--cgroup-manager cgroupfs`, `--network none`, "
                      "`--ulimit nofile=1024:1024 --ulimit nproc=1024:1024`, a rootfs of /bin/true and "
                      "/bin/sleep with their libraries; the exec is `podman exec CONTAINER /bin/true`."),
      "* gateway: `POST /v1/sandboxes/{id}:exec` with `Upgrade: stockade-exec.v1`, alice's demo token, "
      "body `{\"argv\":[\"/bin/true\"]}`, STDIN_EOF after the 101, until EXIT (checked: code 0, no output, "
      "no ERROR). The upgrade takes the connection over and the server closes it after EXIT, so each exec "
      "opens a loopback connection; the /healthz rows show what a new connection costs against a kept one.",
      "* the interleaved CLI row is timed by the Python client around `subprocess.run` (a fork and exec of "
      "the CLI more than hyperfine's `-N`).",
      f"* the crun sandbox's audit trail holds {n_audit} records at the end: a CLI exec writes one "
      "(`exec`), a gateway exec two (the `authz` decision, committed before the exec starts, and the "
      "worker's `exec`)."]
write_report(out, L)
PY
