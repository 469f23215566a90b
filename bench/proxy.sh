#!/usr/bin/env bash
# The egress proxy: a small GET through the proxy (from inside a long-lived
# sandbox, the way a workload sees it) against the same GET sent directly
# from the namespace the proxy connects out of, side by side in one run.
# Latency p50/p99 with one connection (wrk --latency -c1), throughput with
# 2 threads and 32 connections. The upstream is a small asyncio responder in a network
# namespace of this script's own; names resolve from a hosts file (the
# proxy's test mode), so nothing is sent anywhere else. As root. Writes
# bench/proxy.md.
#
#   bench/proxy.sh [SECONDS]     (default 5 s per measurement)
#
# Targets (issue #15): <= 100 us added p50; >= 20,000 requests/s with
# keep-alive on 2 cores. Peers, with the same allowlist (up.bench:80 only),
# measured from the namespace they serve in: tinyproxy (Debian's
# tinyproxy-bin, the binary without its service) in a private mount
# namespace whose /etc/hosts names the upstream, and squid (Debian's, a
# private instance with its own configuration, memory only, names from a
# hosts file). squid is no dependency of stockade: when it is missing, this
# script installs it with apt-get (STOCKADE_BENCH_NO_INSTALL=1: skip it
# instead). On a machine whose apt starts services, that also starts
# Debian's squid service (on the host's 3128); the instance measured here
# is this script's own, in its own namespace.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
root=$PWD
secs=${1:-5}
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
tp=${TINYPROXY:-$(command -v tinyproxy || true)}
sq=${SQUID:-$(command -v squid || true)}
if [ -z "$sq" ] && [ -z "${STOCKADE_BENCH_NO_INSTALL:-}" ] && command -v apt-get >/dev/null; then
  echo "installing squid (the peer; STOCKADE_BENCH_NO_INSTALL=1 skips it)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends squid >&2 || true
  sq=$(command -v squid || true)
fi
for c in wrk ip nsenter unshare; do
  command -v $c >/dev/null || { echo "$c missing: scripts/install-deps.sh" >&2; exit 1; }
done
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY

tag=stkpb$$
H=$tag-h S=$tag-s
work=$(mktemp -d /tmp/stockade-proxybench.XXXXXX)
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run STOCKADE_PROXY_HOSTS=$work/hosts
sid=""
httpd_pid=""
tp_pid=""
sq_pid=""
cleanup() {
  [ -n "$tp_pid" ] && kill "$tp_pid" 2>/dev/null || true
  [ -n "$sq_pid" ] && kill "$sq_pid" 2>/dev/null && wait "$sq_pid" 2>/dev/null || true
  [ -n "$sid" ] && nsenter --net=/run/netns/$H "$bin" rm -f "$sid" >/dev/null 2>&1 || true
  [ -n "${sidg:-}" ] && nsenter --net=/run/netns/$H "$bin" rm -f "$sidg" >/dev/null 2>&1 || true
  [ -n "$httpd_pid" ] && kill "$httpd_pid" 2>/dev/null || true
  local ino; ino=$(stat -L -c %i /run/netns/$H 2>/dev/null || true)
  ip netns del $S 2>/dev/null || true
  ip netns del $H 2>/dev/null || true
  # the network's host directory of this script's namespace, when empty
  if [ -n "$ino" ] && [ -d /run/stockade-net/$ino-stk0/leases ] &&
     [ -z "$(ls -A /run/stockade-net/$ino-stk0/leases)" ]; then
    rm -rf "/run/stockade-net/$ino-stk0"
  fi
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/ws"
# the upstream: a fixed 128-byte answer per request head, keep-alive, on
# asyncio (busybox httpd forks per request and would be what is measured)
cat > "$work/upstream.py" <<'PY'
import asyncio
BODY = b"x" * 128
RESP = b"HTTP/1.1 200 OK\r\nContent-Length: 128\r\nContent-Type: text/plain\r\n\r\n" + BODY
class P(asyncio.Protocol):
    def connection_made(self, t): self.t, self.buf = t, b""
    def data_received(self, d):
        self.buf += d
        while b"\r\n\r\n" in self.buf:
            head, self.buf = self.buf.split(b"\r\n\r\n", 1)
            close = b"connection: close" in head.lower()
            self.t.write(RESP)
            if close:
                self.t.close(); return
async def main():
    s = await asyncio.get_running_loop().create_server(P, "198.18.9.2", 80, backlog=512)
    print("listening", flush=True)
    await s.serve_forever()
asyncio.run(main())
PY
bench_upstream $H $S "$work/upstream.py"
httpd_pid=$upstream_pid
cat > "$work/ws/proxy.lua" <<'LUA'
wrk.path = "http://up.bench/small"
wrk.headers["Host"] = "up.bench"
LUA
cat > "$work/sb.yaml" <<YAML
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: proxybench
spec:
  rootfs: host
  # its proxy on the sandbox's loopback (crun; gVisor's is below)
  runtime: crun
  command: ["/bin/sleep", "3600"]
  resources: {cpu: "2", memory: 512Mi, pids: 256, storage: 64Mi}
  network:
    allowHosts: ["up.bench:80"]
YAML
sleep 0.3
sid=$(nsenter --net=/run/netns/$H "$bin" create -f "$work/sb.yaml")
nsenter --net=/run/netns/$H "$bin" exec -i "$sid" -- /bin/sh -c 'cat > /tmp/proxy.lua' < "$work/ws/proxy.lua"
# the same sandbox under gVisor, whose proxy is on the host side (the
# bridge address, the sandbox's own port), when runsc works here
sed -e 's/^  runtime: crun/  runtime: gvisor/' -e 's/proxybench/proxybench-g/' \
  "$work/sb.yaml" > "$work/sbg.yaml"
if sidg=$(nsenter --net=/run/netns/$H "$bin" create -f "$work/sbg.yaml" 2>"$work/gvisor.err"); then
  nsenter --net=/run/netns/$H "$bin" exec -i "$sidg" -- /bin/sh -c 'cat > /tmp/proxy.lua' < "$work/ws/proxy.lua"
  gurl=$(nsenter --net=/run/netns/$H "$bin" exec "$sidg" -- /usr/bin/printenv HTTP_PROXY)
else
  echo "no gVisor rows: $(cat "$work/gvisor.err")" >&2
  sidg=""
fi

# the peer: tinyproxy on 127.0.0.1:8888 of the proxy's namespace
if [ -n "$tp" ]; then
  printf '127.0.0.1 localhost\n198.18.9.2 up.bench\n' > "$work/etc-hosts"
  printf '^up\\.bench$\n' > "$work/filter"
  cat > "$work/tinyproxy.conf" <<CONF
User root
Group root
Port 8888
Listen 127.0.0.1
Timeout 60
MaxClients 256
LogLevel Critical
DisableViaHeader Yes
Filter "$work/filter"
FilterURLs Off
FilterDefaultDeny Yes
ConnectPort 443
CONF
  nsenter --net=/run/netns/$H unshare -m sh -c \
    "mount --bind '$work/etc-hosts' /etc/hosts && exec '$tp' -d -c '$work/tinyproxy.conf'" \
    > "$work/tinyproxy.log" 2>&1 &
  tp_pid=$!
  sleep 0.5
fi
# the peer: squid on 127.0.0.1:3129 of the proxy's namespace, no cache
if [ -n "$sq" ]; then
  printf '127.0.0.1 localhost\n198.18.9.2 up.bench\n' > "$work/etc-hosts"
  mkdir -p "$work/squid"
  cat > "$work/squid/squid.conf" <<CONF
http_port 127.0.0.1:3129
pid_filename $work/squid/squid.pid
cache_effective_user proxy
cache deny all
cache_mem 8 MB
access_log none
cache_log $work/squid/cache.log
coredump_dir $work/squid
hosts_file $work/etc-hosts
dns_nameservers 127.0.0.1
via off
forwarded_for delete
acl allowed dstdomain up.bench
acl web port 80
http_access deny !web
http_access allow allowed
http_access deny all
shutdown_lifetime 1 seconds
CONF
  chown -R proxy "$work/squid" 2>/dev/null || true
  chmod 755 "$work"
  ip netns exec $H "$sq" -N -f "$work/squid/squid.conf" > "$work/squid/out.log" 2>&1 &
  sq_pid=$!
  for i in $(seq 50); do ip netns exec $H bash -c '</dev/tcp/127.0.0.1/3129' 2>/dev/null && break; sleep 0.2; done
fi
peer() { ip netns exec $H wrk "$@" -s "$work/ws/proxy.lua" http://127.0.0.1:8888/; }
squid_peer() { ip netns exec $H wrk "$@" -s "$work/ws/proxy.lua" http://127.0.0.1:3129/; }
direct() { ip netns exec $H wrk "$@" http://198.18.9.2/small; }
proxied() { nsenter --net=/run/netns/$H "$bin" exec "$sid" -- /usr/bin/wrk "$@" -s /tmp/proxy.lua http://127.0.0.1:3128/; }
# the same, from the sandbox's network namespace but beside the peers' wrk
# (the host's cgroup, no seccomp): what the proxy costs, apart from where
# the client runs
sb_pid=$(cat /sys/fs/cgroup/*/stockade/"$sid"/cgroup.procs /sys/fs/cgroup/stockade/"$sid"/cgroup.procs 2>/dev/null | head -1 || true)
[ -n "$sb_pid" ] || { echo "no process of $sid found" >&2; exit 1; }
proxied_g() { nsenter --net=/run/netns/$H "$bin" exec "$sidg" -- /usr/bin/wrk "$@" -s /tmp/proxy.lua "$gurl/"; }
proxied_ns() { nsenter --net=/proc/$sb_pid/ns/net wrk "$@" -s "$work/ws/proxy.lua" http://127.0.0.1:3128/; }

# wrk --latency prints "50%  123.00us"; normalise to microseconds
pct() { awk -v p="$1" '$1 == p { v=$2; u=v; gsub(/[0-9.]/,"",u); gsub(/[a-z]/,"",v);
  if (u=="ms") v*=1000; else if (u=="s") v*=1000000; printf "%.0f", v }'; }
rps() { awk '/^Requests\/sec/ { printf "%.0f", $2 }'; }
errs() { awk '/Socket errors|Non-2xx/ { $1=$1; print }' | tr '\n' ';'; }

echo "warming up" >&2
direct -t1 -c1 -d1s >/dev/null; proxied -t1 -c1 -d1s >/dev/null
echo "latency, one connection" >&2
d_lat=$(direct -t1 -c1 -d${secs}s --latency -H "Connection: close")
p_lat=$(proxied -t1 -c1 -d${secs}s --latency -H "Connection: close")
d_ka_lat=$(direct -t1 -c1 -d${secs}s --latency)
p_ka_lat=$(proxied -t1 -c1 -d${secs}s --latency)
n_ka_lat=$(proxied_ns -t1 -c1 -d${secs}s --latency)
g_lat="" g_ka_lat="" g_rps="" g_ka_rps=""
if [ -n "$sidg" ]; then
  proxied_g -t1 -c1 -d1s >/dev/null
  g_lat=$(proxied_g -t1 -c1 -d${secs}s --latency -H "Connection: close")
  g_ka_lat=$(proxied_g -t1 -c1 -d${secs}s --latency)
fi
t_lat="" t_ka_lat="" t_rps="" t_ka_rps="" s_lat="" s_ka_lat="" s_rps="" s_ka_rps=""
if [ -n "$tp_pid" ]; then
  peer -t1 -c1 -d1s >/dev/null
  t_lat=$(peer -t1 -c1 -d${secs}s --latency -H "Connection: close")
  t_ka_lat=$(peer -t1 -c1 -d${secs}s --latency)
fi
if [ -n "$sq_pid" ]; then
  squid_peer -t1 -c1 -d1s >/dev/null
  s_lat=$(squid_peer -t1 -c1 -d${secs}s --latency -H "Connection: close")
  s_ka_lat=$(squid_peer -t1 -c1 -d${secs}s --latency)
fi
echo "throughput, 2 threads, 32 connections" >&2
d_rps=$(direct -t2 -c32 -d${secs}s -H "Connection: close")
d_ka_rps=$(direct -t2 -c32 -d${secs}s)
p_rps=$(proxied -t2 -c32 -d${secs}s -H "Connection: close")
p_ka_rps=$(proxied -t2 -c32 -d${secs}s)
n_ka_rps=$(proxied_ns -t2 -c32 -d${secs}s)
if [ -n "$sidg" ]; then
  g_rps=$(proxied_g -t2 -c32 -d${secs}s -H "Connection: close")
  g_ka_rps=$(proxied_g -t2 -c32 -d${secs}s)
fi
if [ -n "$tp_pid" ]; then
  t_rps=$(peer -t2 -c32 -d${secs}s -H "Connection: close")
  t_ka_rps=$(peer -t2 -c32 -d${secs}s)
fi
if [ -n "$sq_pid" ]; then
  s_rps=$(squid_peer -t2 -c32 -d${secs}s -H "Connection: close")
  s_ka_rps=$(squid_peer -t2 -c32 -d${secs}s)
fi

# what a proxy costs a sandbox: its monitor's memory and threads beside a
# monitor of a sandbox without allowHosts
sed -e '/network:/d' -e '/allowHosts/d' -e 's/proxybench/noproxy/' "$work/sb.yaml" > "$work/sb0.yaml"
sid0=$(nsenter --net=/run/netns/$H "$bin" create -f "$work/sb0.yaml")
monitor_of() { for p in /proc/[0-9]*; do
  if tr '\0' ' ' < $p/cmdline 2>/dev/null | grep -q "__monitor create $1 *\$"; then echo ${p#/proc/}; fi; done; }
mstat() { awk '/^VmRSS|^Threads/ { printf "%s %s ", $1, $2 }' /proc/$1/status; }
m1=$(monitor_of "$sid"); m0=$(monitor_of "$sid0")
cost1=$(mstat "$m1"); cost0=$(mstat "$m0")
nsenter --net=/run/netns/$H "$bin" rm -f "$sid0" >/dev/null

row() { printf '| %s | %s | %s | %s | %s |\n' "$1" "$(echo "$2" | pct 50%)" "$(echo "$2" | pct 99%)" "$(echo "$3" | rps)" "$(echo "$3" | errs)"; }
{
  echo "# The egress proxy: through the proxy vs direct"
  echo
  echo "\`bench/proxy.sh $secs\`, $(date -u +%Y-%m-%d), $(nproc) cores, wrk; a 128-byte GET from a Python asyncio responder in"
  echo "a network namespace of the script's own. \"Direct\" runs in the namespace the proxy"
  echo "connects out of; \"through the proxy\" runs inside a long-lived sandbox"
  echo "(crun/runc) against its proxy on 127.0.0.1:3128; the gVisor rows inside the same sandbox"
  echo "under gVisor against its proxy on the host side (wrk runs under gVisor's network stack"
  echo "and crosses the veth and the bridge). p50/p99 with one connection"
  echo "(\`-t1 -c1 --latency\`), requests/s with \`-t2 -c32\`. Load average when it ended:"
  echo "$(cut -d' ' -f1-3 /proc/loadavg) (the machine is shared: compare rows of one run only)."
  echo
  echo "| path | p50 (µs) | p99 (µs) | requests/s | wrk errors |"
  echo "|---|---:|---:|---:|---|"
  row "direct, a connection per request" "$d_lat" "$d_rps"
  row "direct, keep-alive" "$d_ka_lat" "$d_ka_rps"
  row "through the proxy, a connection per request" "$p_lat" "$p_rps"
  row "through the proxy, keep-alive" "$p_ka_lat" "$p_ka_rps"
  row "through the proxy, keep-alive, wrk beside the peers' (the sandbox's network namespace only)" "$n_ka_lat" "$n_ka_rps"
  if [ -n "$sidg" ]; then
    row "gVisor sandbox, through its host-side proxy ($gurl), a connection per request" "$g_lat" "$g_rps"
    row "gVisor sandbox, through its host-side proxy, keep-alive" "$g_ka_lat" "$g_ka_rps"
  fi
  if [ -n "$tp_pid" ]; then
    row "peer: tinyproxy, a connection per request" "$t_lat" "$t_rps"
    row "peer: tinyproxy, keep-alive" "$t_ka_lat" "$t_ka_rps"
  fi
  if [ -n "$sq_pid" ]; then
    row "peer: squid, a connection per request" "$s_lat" "$s_rps"
    row "peer: squid, keep-alive" "$s_ka_lat" "$s_ka_rps"
  fi
  echo
  echo "Per-sandbox cost (after the runs above): the monitor of the sandbox with a proxy"
  echo "\`$cost1\` (kB), a monitor without one \`$cost0\`."
  echo
  dp=$(echo "$d_lat" | pct 50%); pp=$(echo "$p_lat" | pct 50%)
  dk=$(echo "$d_ka_lat" | pct 50%); pk=$(echo "$p_ka_lat" | pct 50%)
  echo "Added p50 (target ≤ 100 µs): $((pk - dk)) µs with keep-alive (proxy keep-alive vs direct"
  echo "keep-alive), $((pp - dp)) µs with a connection per request."
  nk=$(echo "$n_ka_lat" | pct 50%)
  echo "With wrk beside the peers' (same host cgroup, no seccomp): $((nk - dk)) µs added p50 with keep-alive."
  if [ -n "$sidg" ]; then
    gk=$(echo "$g_ka_lat" | pct 50%)
    echo "gVisor: $((gk - dk)) µs added p50 with keep-alive ($gk µs vs $pk µs from the crun/runc sandbox)."
  fi
  echo "Keep-alive requests/s through the proxy: $(echo "$p_ka_rps" | rps) from inside the sandbox,"
  echo "$(echo "$n_ka_rps" | rps) beside the peers (target ≥ 20,000)."
  echo
  echo "The peers run in the namespace the proxy connects out of (wrk beside them), with"
  echo "the same allowlist.$([ -n "$sq_pid" ] || echo " squid was not measured (not installed).")"
} > "$root/bench/proxy.md"
cat "$root/bench/proxy.md"
