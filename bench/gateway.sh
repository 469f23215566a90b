#!/usr/bin/env bash
# The gateway under load: wrk against an authorized `GET /v1/sandboxes/{id}`
# (alice's demo token, her own sandbox), the same GET refused (bob: 404
# hidden; no token: 401), /healthz (the HTTP layer alone), sim creates
# (bench/gateway-create.lua, the controller on behalf of alice), and the same
# GET against a static file served by busybox httpd (peer), side by side in
# one run. `stockade serve` runs on the sim backend, and on the local backend
# too when a real sandbox can be created (an authorized GET reads the store,
# never the sandbox). As root. Writes bench/gateway.md (table, target,
# profile); a "## Findings" section already at the bottom of bench/gateway.md
# is kept when the file is regenerated.
#
#   bench/gateway.sh [SECONDS]     (default 10 s per measurement)
#
# Target (issue): >= 10,000 authorized GETs/s on the 2-core machine.
# Nothing is sent anywhere but 127.0.0.1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-10}
threads=2 conns=32
bin=${STOCKADE_BIN:-$root/build/src/stockade}
policy=$root/examples/gateway/access-policy.yaml
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
for c in wrk curl python3; do
  command -v $c >/dev/null || { echo "$c missing: scripts/install-deps.sh" >&2; exit 1; }
done
# the demo tokens of examples/gateway/access-policy.yaml (docs/gateway.md)
tok_controller=demo-controller-token-0000000000
tok_alice=demo-alice-token-00000000000000
tok_bob=demo-bob-token-0000000000000000
tok_stranger=not-in-the-policy-token-00000000   # no hash of the policy matches

# curl and libcurl honour proxies: nothing may leave 127.0.0.1
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY STOCKADE_SERVER STOCKADE_TOKEN
export NO_PROXY='*' no_proxy='*'

work=$(mktemp -d /tmp/stockade-gwbench.XXXXXX)
declare -A srv_pid=() srv_port=() srv_backend=()
peer_pid=""
cleanup() {
  set +e
  if [ -n "$peer_pid" ]; then kill "$peer_pid" 2>/dev/null; wait "$peer_pid" 2>/dev/null; fi
  local name pid ids id i
  for name in "${!srv_pid[@]}"; do
    pid=${srv_pid[$name]}
    kill -TERM "$pid" 2>/dev/null
    for i in $(seq 200); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  # every sandbox of each private state directory
  for name in "${!srv_backend[@]}"; do
    ids=$(on "$name" "$bin" ls -o json 2>/dev/null | python3 -c 'import json,sys
for s in json.load(sys.stdin): print(s["id"])' 2>/dev/null)
    for id in $ids; do on "$name" "$bin" rm -f "$id" >/dev/null 2>&1; done
    on "$name" "$bin" gc >/dev/null 2>&1
  done
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() { echo "gateway.sh: $*" >&2; exit 1; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}
on() { # NAME CMD...: CMD with server NAME's backend and private state
  local name=$1; shift
  env STOCKADE_BACKEND="${srv_backend[$name]}" STOCKADE_STATE_DIR="$work/$name/state" \
    STOCKADE_RUN_DIR="$work/$name/run" "$@"
}
start_serve() { # NAME BACKEND
  local name=$1 port i
  srv_backend[$name]=$2
  mkdir -p "$work/$name"
  port=$(free_port)
  # a simple command, so that $! is serve itself (env execs it), not a subshell
  env STOCKADE_BACKEND="$2" STOCKADE_STATE_DIR="$work/$name/state" STOCKADE_RUN_DIR="$work/$name/run" \
    "$bin" serve --listen "127.0.0.1:$port" --policy "$policy" >"$work/$name/serve.log" 2>&1 &
  srv_pid[$name]=$!
  srv_port[$name]=$port
  for i in $(seq 200); do
    [ "$(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$port/healthz")" = 200 ] && return 0
    kill -0 "${srv_pid[$name]}" 2>/dev/null || { cat "$work/$name/serve.log" >&2; die "serve ($2) exited"; }
    sleep 0.05
  done
  die "serve ($2) did not answer /healthz"
}
status_of() { # TOKEN|"" URL -> HTTP status
  local h=()
  [ -n "$1" ] && h=(-H "Authorization: Bearer $1")
  curl -s -o /dev/null -w '%{http_code}' "${h[@]}" "$2"
}
create_for_alice() { # NAME SANDBOX-NAME COMMAND-JSON -> id (fails on anything but 201)
  local spec body out code
  spec=$(printf '{"apiVersion":"stockade.dev/v1alpha1","kind":"Sandbox","metadata":{"name":"%s","namespace":"acme-bench-get"},"spec":{"rootfs":"host","command":%s}}' "$2" "$3")
  body=$(python3 -c 'import json,sys; print(json.dumps({"spec": sys.argv[1], "owner": "alice", "tenant": "acme"}))' "$spec")
  out=$(curl -s -w '\n%{http_code}' -H "Authorization: Bearer $tok_controller" \
    -H 'Content-Type: application/json' --data "$body" "http://127.0.0.1:${srv_port[$1]}/v1/sandboxes")
  code=${out##*$'\n'}
  [ "$code" = 201 ] || { echo "create on ${srv_backend[$1]}: $code ${out%$'\n'*}" >&2; return 1; }
  printf '%s' "${out%$'\n'*}" | python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["owner"]=="alice", r; print(r["id"])'
}
count_sandboxes() { # NAME -> number of records the controller lists (acme-* namespaces)
  curl -s -H "Authorization: Bearer $tok_controller" "http://127.0.0.1:${srv_port[$1]}/v1/sandboxes" |
    python3 -c 'import json,sys; print(len(json.load(sys.stdin)["items"]))'
}

# done() of a plain wrk run: one JSON line with the numbers (latency in µs)
cat >"$work/report.lua" <<'EOF'
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'GWBENCH {"requests":%d,"duration_us":%d,"rps":%.2f,"p50_us":%d,"p99_us":%d,'
      .. '"mean_us":%.1f,"max_us":%d,"errors":{"connect":%d,"read":%d,"write":%d,'
      .. '"status":%d,"timeout":%d}}\n',
    summary.requests, summary.duration, summary.requests / (summary.duration / 1e6),
    latency:percentile(50), latency:percentile(99), latency.mean, latency.max,
    e.connect, e.read, e.write, e.status, e.timeout))
end
EOF
results=$work/results.jsonl
: >"$results"
cpu_ticks() { # PID -> CPU time of the process, its threads and the children it reaped (clock ticks)
  awk '{ print $14 + $15 + $16 + $17 }' "/proc/$1/stat"
}
run_wrk() { # KEY LABEL EXPECT-STATUS URL [wrk args...]: one measurement ($srv: the server's PID)
  local key=$1 label=$2 expect=$3 url=$4 t0 t1; shift 4
  echo "== $label ($url, ${secs}s)" >&2
  t0=$(cpu_ticks "$srv")
  wrk -t$threads -c$conns -d"${secs}s" --latency "$@" "$url" | tee "$work/$key.txt" >&2
  t1=$(cpu_ticks "$srv")
  python3 - "$key" "$label" "$expect" "$work/$key.txt" "$((t1 - t0))" "$(getconf CLK_TCK)" >>"$results" <<'PY'
import json, sys
key, label, expect, f, ticks, hz = sys.argv[1:]
line = [l for l in open(f) if l.startswith("GWBENCH")][-1]
r = json.loads(line.split(" ", 1)[1])
r.update(key=key, label=label, expect=int(expect),
         server_cpu=int(ticks) / int(hz) / (r["duration_us"] / 1e6))
print(json.dumps(r))
PY
}
result() { # KEY FIELD
  python3 -c 'import json,sys
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["key"] == sys.argv[2]:
        v = r
        for k in sys.argv[3].split("."): v = v[k]
        print(v)' "$results" "$1" "$2"
}

# --- servers and the sandbox ------------------------------------------------
start_serve sim sim
sim_url=http://127.0.0.1:${srv_port[sim]}
sim_id=$(create_for_alice sim bench-get '["/bin/true"]') || die "could not create the sim sandbox"

local_note=""
start_serve local local
local_url=http://127.0.0.1:${srv_port[local]}
if local_id=$(create_for_alice local bench-get '["/bin/sleep","600"]' 2>"$work/local-create.err"); then
  :
else
  local_id=""
  local_note="local backend skipped: no real sandbox could be created ($(head -c 300 "$work/local-create.err" | tr '\n' ' '))"
  echo "$local_note" >&2
fi

# --- the GETs: each answer checked with curl before the load ---------------
get_path=/v1/sandboxes/$sim_id
[ "$(status_of "$tok_alice" "$sim_url$get_path")" = 200 ] ||
  die "alice's GET $get_path is not 200: an unauthorized run is not throughput"
[ "$(status_of "$tok_bob" "$sim_url$get_path")" = 404 ] || die "bob's GET is not 404"
[ "$(status_of "" "$sim_url$get_path")" = 401 ] || die "the GET without a token is not 401"
[ "$(status_of "$tok_stranger" "$sim_url$get_path")" = 401 ] || die "the GET with an unknown token is not 401"
[ "$(status_of "" "$sim_url/healthz")" = 200 ] || die "/healthz is not 200"

srv=${srv_pid[sim]}
run_wrk healthz "GET /healthz (no authn, no store: the HTTP layer)" 200 "$sim_url/healthz" \
  -s "$work/report.lua"
run_wrk get_alice "GET /v1/sandboxes/{id}, alice, her sandbox (200), sim" 200 "$sim_url$get_path" \
  -s "$work/report.lua" -H "Authorization: Bearer $tok_alice"
if [ -n "$local_id" ]; then
  [ "$(status_of "$tok_alice" "$local_url/v1/sandboxes/$local_id")" = 200 ] ||
    die "alice's GET on the local backend is not 200"
  srv=${srv_pid[local]}
  run_wrk get_alice_local "GET /v1/sandboxes/{id}, alice, her sandbox (200), local" 200 \
    "$local_url/v1/sandboxes/$local_id" -s "$work/report.lua" -H "Authorization: Bearer $tok_alice"
fi
srv=${srv_pid[sim]}
run_wrk get_bob "GET /v1/sandboxes/{id}, bob, alice's sandbox (404 hidden), sim" 404 "$sim_url$get_path" \
  -s "$work/report.lua" -H "Authorization: Bearer $tok_bob"
run_wrk get_none "GET /v1/sandboxes/{id}, no token (401), sim" 401 "$sim_url$get_path" \
  -s "$work/report.lua"
run_wrk get_stranger "GET /v1/sandboxes/{id}, unknown token (401 invalid credentials), sim" 401 \
  "$sim_url$get_path" -s "$work/report.lua" -H "Authorization: Bearer $tok_stranger"
# an authorized run with a non-2xx answer is not throughput
for k in healthz get_alice ${local_id:+get_alice_local}; do
  [ "$(result $k errors.status)" = 0 ] || die "$k: $(result $k errors.status) non-2xx answers under load"
done
# the refused runs: every answer must be refused (wrk counts non-2xx)
for k in get_bob get_none get_stranger; do
  [ "$(result $k errors.status)" = "$(result $k requests)" ] || die "$k: not every answer was refused"
done

# --- the peer: the same record as a static file ------------------------------
peer_note=""
if command -v busybox >/dev/null && busybox --list 2>/dev/null | grep -x httpd >/dev/null; then
  mkdir -p "$work/www/v1/sandboxes"
  curl -s -H "Authorization: Bearer $tok_alice" "$sim_url$get_path" >"$work/www/v1/sandboxes/$sim_id"
  peer_port=$(free_port)
  busybox httpd -f -p "127.0.0.1:$peer_port" -h "$work/www" &
  peer_pid=$!
  for i in $(seq 100); do
    [ "$(status_of "" "http://127.0.0.1:$peer_port$get_path")" = 200 ] && break; sleep 0.05
  done
  [ "$(status_of "" "http://127.0.0.1:$peer_port$get_path")" = 200 ] || die "busybox httpd does not serve the file"
  srv=$peer_pid
  run_wrk peer "peer: busybox httpd, the same record as a static file" 200 \
    "http://127.0.0.1:$peer_port$get_path" -s "$work/report.lua"
  [ "$(result peer errors.status)" = 0 ] || die "peer: non-2xx answers"
  kill "$peer_pid"; wait "$peer_pid" 2>/dev/null || true; peer_pid=""
  peer_ver=$(busybox 2>&1 | sed -n '1s/^\(BusyBox v[^ ]*\).*/\1/p')
else
  peer_note="peer skipped: busybox (with httpd) is not installed"
  peer_ver=""
  echo "$peer_note" >&2
fi

# --- sim creates -------------------------------------------------------------
before=$(count_sandboxes sim)
echo "== POST /v1/sandboxes (sim creates, ${secs}s)" >&2
GWBENCH_RUN=$$ wrk -t$threads -c$conns -d"${secs}s" --latency --timeout 30s \
  -s "$root/bench/gateway-create.lua" "$sim_url/v1/sandboxes" | tee "$work/create.txt" >&2
# creates still in flight when wrk stopped finish in their workers: wait until the count settles
after=$(count_sandboxes sim); stable=0
for i in $(seq 120); do
  sleep 0.5
  n=$(count_sandboxes sim)
  if [ "$n" = "$after" ]; then stable=$((stable + 1)); [ $stable -ge 4 ] && break; else stable=0; after=$n; fi
done
python3 - "$work/create.txt" "$before" "$after" "$conns" >>"$results" <<'PY' || die "sim creates failed the checks"
import json, sys
f, before, after, conns = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
r = json.loads([l for l in open(f) if l.startswith("GWBENCH-CREATE")][-1].split(" ", 1)[1])
ok = r["statuses"].get("201", 0)
grown = after - before
r.update(key="create", label="POST /v1/sandboxes, controller for alice (201), sim", expect=201,
         before=before, after=after, grown=grown)
problems = []
if r["errors"]["status"] != 0 or set(r["statuses"]) - {"201"}:
    problems.append(f"answers other than 201: {r['statuses']}, wrk non-2xx {r['errors']['status']}")
if ok == 0:
    problems.append("no create succeeded")
if not ok <= grown <= ok + conns:
    problems.append(f"the store grew by {grown} sandboxes for {ok} 201 answers")
if problems:
    sys.exit("sim creates: " + "; ".join(problems))
print(json.dumps(r))
PY

# --- where the time goes: strace -c and perf on the server, alice's GET ------
prof_secs=5
profile_note=""
spid=${srv_pid[sim]}
audit_before=$(on sim "$bin" audit "$sim_id" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
if command -v strace >/dev/null; then
  strace -c -w -f -o "$work/strace.txt" -p "$spid" & st=$!
  sleep 0.5
  wrk -t$threads -c$conns -d${prof_secs}s -s "$work/report.lua" -H "Authorization: Bearer $tok_alice" \
    "$sim_url$get_path" >"$work/strace-wrk.txt"
  kill -INT $st; wait $st 2>/dev/null || true
else
  profile_note="$profile_note strace not installed;"
fi
audit_after=$(on sim "$bin" audit "$sim_id" -o json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))')
if command -v perf >/dev/null; then
  wrk -t$threads -c$conns -d$((prof_secs + 2))s -s "$work/report.lua" -H "Authorization: Bearer $tok_alice" \
    "$sim_url$get_path" >"$work/perf-wrk.txt" &
  wk=$!
  sleep 1
  perf record -q -F 999 -g -p "$spid" -o "$work/perf.data" -- sleep $prof_secs >/dev/null 2>&1 || true
  wait $wk
  perf report -i "$work/perf.data" --stdio --no-children --sort dso,symbol -g none \
    --percent-limit 1.5 2>/dev/null | sed 's/[ -]*$//' | grep -E '^ +[0-9.]+%' | head -25 >"$work/perf.txt" || true
else
  profile_note="$profile_note perf not installed;"
fi

# --- bench/gateway.md ----------------------------------------------------------
python3 - "$work" "$root/bench/gateway.md" "$secs" "$threads" "$conns" "$local_note" "$peer_note" \
  "$peer_ver" "$audit_before" "$audit_after" "$prof_secs" "$profile_note" "$bin" <<'PY'
import json, os, platform, re, subprocess, sys, time
sys.path.insert(0, "bench")
from machine import cpu_model, ver, write_report
(work, out, secs, threads, conns, local_note, peer_note, peer_ver, audit_before, audit_after,
 prof_secs, profile_note, binp) = sys.argv[1:]
res = {}
for l in open(f"{work}/results.jsonl"):
    r = json.loads(l); res[r["key"]] = r
cpu = cpu_model()
import sqlite3
versions = "; ".join(v for v in (ver([binp, "version"]), ver(["wrk", "-v"]).split(" [")[0],
                                 f"SQLite {sqlite3.sqlite_version}", peer_ver) if v)
def ms(us): return f"{us / 1000:.2f}" if us < 10000 else f"{us / 1000:.1f}"
lines = ["# The gateway under load: benchmark", "",
         f"Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} by `bench/gateway.sh {secs}`: "
         f"{os.cpu_count()} CPUs ({cpu}), kernel {platform.release()}; {versions}. "
         f"`wrk -t{threads} -c{conns} -d{secs}s --latency` per row, one after the other, wrk on the "
         "same 2 cores as the server; plain HTTP on 127.0.0.1 (no TLS); `stockade serve` with "
         "`examples/gateway/access-policy.yaml` and its demo tokens, a private state directory per backend.",
         "", "| measurement | requests/s | p50 (ms) | p99 (ms) | server CPU | answers |", "|---|---:|---:|---:|---:|---|"]
order = ["get_alice", "get_alice_local", "get_bob", "get_stranger", "get_none", "healthz", "peer", "create"]
for k in order:
    if k not in res: continue
    r = res[k]
    if k == "create":
        ans = ", ".join(f"{n}× {s}" for s, n in sorted(r["statuses"].items())) + \
              f"; store grew by {r['grown']}"
    else:
        n = r["requests"]
        ans = f"{n}× {r['expect']}" if (r["errors"]["status"] == 0) == (r["expect"] < 300) else \
              f"{n} requests, {r['errors']['status']} non-2xx"
    other = sum(v for kk, v in r["errors"].items() if kk != "status")
    if other: ans += f", {other} socket errors"
    cpu = f"{r['server_cpu']:.0%}" if "server_cpu" in r else ""
    lines.append(f"| {r['label']} | {r['rps']:,.0f} | {ms(r['p50_us'])} | {ms(r['p99_us'])} | {cpu} | {ans} |")
g = res["get_alice"]["rps"]
met = g >= 10000
lines += ["", f"Target: ≥ 10,000 authorized GETs/s on the 2-core machine: {g:,.0f}/s (sim backend)"
          + (f", {res['get_alice_local']['rps']:,.0f}/s (local backend)" if "get_alice_local" in res else "")
          + f" — **{'met' if met else 'missed'}**"
          + ("" if met else f" ({g / 10000:.1%} of the target)") + ".", "", "Notes:", "",
          "* server CPU: user + system time of the server process (its threads, and the children it reaped: "
          "busybox's per-connection forks) over the run's wall time; 100 % is one core of the two.",
          "* Every answer was checked before the load (curl: 200 alice, 404 bob, 401 no token) and counted "
          "during it (wrk's non-2xx count: 0 for the 200 rows, all requests for the refused rows).",
          "* creates: `bench/gateway-create.lua`, the controller's token, `owner: alice`, `tenant: acme`, a "
          "Sandbox (rootfs host, `/bin/true`) in `acme-bench-<pid>`, a new name per request; its `response` "
          "hook counts statuses. Afterwards the controller's list was polled until it settled (creates in "
          "flight when wrk stopped finish in their workers) and compared with the 201 count "
          f"(before {res['create']['before']}, after {res['create']['after']}).",
          "* the local row: the same GET on `serve` with the local backend and one real sandbox "
          "(`/bin/sleep 600`); an authorized GET reads the store, not the sandbox."
          if "get_alice_local" in res else f"* {local_note}",
          "* peer: the record alice's GET returns, saved as a static file and served by `busybox httpd -f` "
          "(no keep-alive: a connection per request, a fork per connection)." if "peer" in res else f"* {peer_note}"]
# profile
prof = ["", "## Profile (alice's authorized GET, sim backend)", ""]
try:
    sw = json.loads([l for l in open(f"{work}/strace-wrk.txt") if l.startswith("GWBENCH")][-1].split(" ", 1)[1])
    n = sw["requests"]
    rows = []
    for l in open(f"{work}/strace.txt"):
        m = re.match(r"\s*([\d.]+)\s+([\d.]+)\s+(\d+)\s+(\d+)\s+(?:(\d+)\s+)?(\w+)\s*$", l)
        if m and m.group(6) != "total": rows.append((float(m.group(1)), float(m.group(2)), int(m.group(4)), m.group(6)))
    rows.sort(reverse=True)
    added = int(audit_after) - int(audit_before)
    prof += [f"`strace -c -w -f -p <serve>` (wall-clock time in each syscall) during a {prof_secs} s run ({n} requests answered under strace, "
             f"{sw['rps']:,.0f}/s; the sandbox's audit trail grew by {added} records, "
             f"{added / max(n, 1):.2f} per request). Top syscalls by time, and calls per request:", "",
             "| syscall | % time | seconds | calls | per request |", "|---|---:|---:|---:|---:|"]
    for pct, s, calls, name in rows[:10]:
        prof.append(f"| {name} | {pct:.1f} | {s:.3f} | {calls} | {calls / max(n, 1):.2f} |")
except Exception as e:
    prof.append(f"(strace: {e})")
try:
    perf = open(f"{work}/perf.txt").read().rstrip()
    if perf:
        prof += ["", f"`perf record -F 999 -g -p <serve>` for {prof_secs} s under the same load, "
                 "`perf report --no-children --sort dso,symbol` (≥ 1.5 %):", "", "```", perf, "```"]
except OSError:
    pass
if profile_note.strip(): prof += ["", profile_note.strip()]
lines += prof
write_report(out, lines)
PY
