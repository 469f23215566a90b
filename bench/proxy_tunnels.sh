#!/usr/bin/env bash
# Idle CONNECT tunnels through the egress proxy, beside squid and tinyproxy
# holding the same kind of tunnel (issue #15: "10,000 concurrent idle CONNECT
# tunnels held with bounded memory"). A tunnel is CONNECT up.bench:443, the
# 200, a TLS ClientHello naming up.bench, then silence (bench/tunnels.py).
# The upstream is an asyncio listener that reads and never answers, in a
# network namespace of this script's own; names resolve from a hosts file,
# so nothing is sent anywhere else. As root. Writes bench/proxy_tunnels.md.
#
#   bench/proxy_tunnels.sh [PEER_TUNNELS]    (default 9000)
#
# A peer holds two descriptors per tunnel, within the hard RLIMIT_NOFILE
# this script inherits (20,000 on our machines, whose root cannot raise it):
# hence 9,000 by default rather than the issue's 10,000.
#
# stockade's proxy is one per sandbox and holds at most STK_PROXY_MAX_CONNS
# (256) connections: the script asks one sandbox for 300 and reports what it
# held, what it refused, and the proxy owner's (the monitor's) proportional
# set size before and after, per tunnel. The peers serve every client from
# one process, so they are asked for PEER_TUNNELS each.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$(dirname "$0")/.."
root=$PWD
peer_n=${1:-9000}
sb_n=300
bin=${STOCKADE_BIN:-$root/build/src/stockade}
[ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
tp=${TINYPROXY:-$(command -v tinyproxy || true)}
sq=${SQUID:-$(command -v squid || true)}
unset http_proxy https_proxy all_proxy HTTP_PROXY HTTPS_PROXY ALL_PROXY

tag=stkpt$$
H=$tag-h S=$tag-s
work=$(mktemp -d /tmp/stockade-tunnels.XXXXXX)
chmod 755 "$work"
export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run STOCKADE_PROXY_HOSTS=$work/hosts
sid="" up_pid="" tp_pid="" sq_pid=""
cleanup() {
  set +e
  exec 7>&- 2>/dev/null
  [ -n "$tp_pid" ] && kill "$tp_pid" 2>/dev/null
  [ -n "$sq_pid" ] && kill "$sq_pid" 2>/dev/null && wait "$sq_pid" 2>/dev/null
  [ -n "$sid" ] && nsenter --net=/run/netns/$H "$bin" rm -f "$sid" >/dev/null 2>&1
  [ -n "$up_pid" ] && kill "$up_pid" 2>/dev/null
  local ino; ino=$(stat -L -c %i /run/netns/$H 2>/dev/null)
  ip netns del $S 2>/dev/null
  ip netns del $H 2>/dev/null
  if [ -n "$ino" ] && [ -d /run/stockade-net/$ino-stk0/leases ] &&
     [ -z "$(ls -A /run/stockade-net/$ino-stk0/leases)" ]; then
    rm -rf "/run/stockade-net/$ino-stk0"
  fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

pss_kib() { awk '/^Pss:/ { s += $2 } END { print s + 0 }' /proc/"$1"/smaps_rollup; }
rss_kib() { awk '/^VmRSS:/ { print $2 }' /proc/"$1"/status; }

cat > "$work/upstream.py" <<'PY'
import asyncio, resource
hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
class P(asyncio.Protocol):
    def data_received(self, d): pass
async def main():
    s = await asyncio.get_running_loop().create_server(P, "198.18.9.2", 443, backlog=1024)
    print("listening", flush=True)
    await s.serve_forever()
asyncio.run(main())
PY
bench_upstream $H $S "$work/upstream.py"
up_pid=$upstream_pid
printf '127.0.0.1 localhost\n198.18.9.2 up.bench\n' > "$work/etc-hosts"

# hold(what, url, n, pid-to-measure, client-path, command...): runs the
# client, prints a table row once it holds its tunnels
hold() {
  local what=$1 url=$2 n=$3 pid=$4 client=$5; shift 5
  local before after held
  sleep 3
  before=$(pss_kib "$pid")
  rm -f "$work/fifo" "$work/client.out"; mkfifo "$work/fifo"
  "$@" python3 "$client" "$url" "$n" < "$work/fifo" > "$work/client.out" 2>&1 &
  local cpid=$!
  exec 7>"$work/fifo"
  for _ in $(seq 1800); do grep -q '^held' "$work/client.out" && break; sleep 0.1; done
  sleep 1
  after=$(pss_kib "$pid")
  held=$(awk '/^held/ { print $2, $4 }' "$work/client.out")
  grep -v '^held' "$work/client.out" >&2 || true
  exec 7>&-
  wait "$cpid" || true
  set -- $held
  local h=${1:-0} r=${2:-$n}
  local per="n/a"
  [ "$h" -gt 0 ] && per=$(awk -v a="$after" -v b="$before" -v h="$h" 'BEGIN { printf "%.1f", (a - b) / h }')
  echo "| $what | $n | $h | $r | $before | $after | $per | $(rss_kib "$pid") |"
}

rows=()
# stockade: one long-lived sandbox (the default runtime), its proxy in its monitor
cat > "$work/sb.yaml" <<YAML
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata:
  name: tunnels
spec:
  rootfs: host
  command: ["/bin/sleep", "3600"]
  resources: {cpu: "1", memory: 512Mi, pids: 256, storage: 64Mi}
  network:
    allowHosts: ["up.bench:443"]
YAML
sid=$(nsenter --net=/run/netns/$H "$bin" create -f "$work/sb.yaml")
rt=$(nsenter --net=/run/netns/$H "$bin" get "$sid" -o jsonpath='{.runtime}')
url=$(nsenter --net=/run/netns/$H "$bin" exec "$sid" -- /usr/bin/printenv HTTP_PROXY)
mon=""
for p in $(pgrep -x stockade-mon); do
  ls -l /proc/"$p"/fd 2>/dev/null | grep -q "$sid" && { mon=$p; break; }
done
[ -n "$mon" ] || { echo "the monitor of $sid was not found" >&2; exit 1; }
nsenter --net=/run/netns/$H "$bin" exec -i "$sid" -- /bin/sh -c 'cat > /tmp/tunnels.py' < bench/tunnels.py
rows+=("$(hold "stockade ($rt sandbox; the monitor, proxy included)" "$url" "$sb_n" "$mon" /tmp/tunnels.py \
  nsenter --net=/run/netns/$H "$bin" exec -i "$sid" -- env -u PYTHONSTARTUP)")

if [ -n "$sq" ]; then
  mkdir -p "$work/squid"
  cat > "$work/squid/squid.conf" <<CONF
http_port 127.0.0.1:3129
pid_filename $work/squid/squid.pid
cache_effective_user proxy
cache deny all
cache_mem 8 MB
max_filedescriptors $(ulimit -Hn)
access_log none
cache_log $work/squid/cache.log
coredump_dir $work/squid
hosts_file $work/etc-hosts
dns_nameservers 127.0.0.1
acl allowed dstdomain up.bench
acl tls port 443
acl CONNECT method CONNECT
http_access deny !tls
http_access allow CONNECT allowed
http_access deny all
read_timeout 15 minutes
shutdown_lifetime 1 seconds
CONF
  chown -R proxy "$work/squid" 2>/dev/null || true
  ip netns exec $H sh -c "ulimit -n $(ulimit -Hn); exec '$sq' -N -f '$work/squid/squid.conf'" > "$work/squid/out.log" 2>&1 &
  sq_pid=$!
  for _ in $(seq 50); do ip netns exec $H bash -c '</dev/tcp/127.0.0.1/3129' 2>/dev/null && break; sleep 0.2; done
  sqp=$(pgrep -P "$sq_pid" -x squid || echo "$sq_pid")
  rows+=("$(hold "squid (one process)" http://127.0.0.1:3129 "$peer_n" "$sqp" "$root/bench/tunnels.py" \
    ip netns exec $H)")
fi
if [ -n "$tp" ]; then
  printf '^up\\.bench$\n' > "$work/filter"
  cat > "$work/tinyproxy.conf" <<CONF
User root
Group root
Port 8888
Listen 127.0.0.1
Timeout 900
MaxClients $((peer_n + 100))
LogLevel Critical
Filter "$work/filter"
FilterURLs Off
FilterDefaultDeny Yes
ConnectPort 443
CONF
  ip netns exec $H unshare -m sh -c \
    "ulimit -n $(ulimit -Hn); mount --bind '$work/etc-hosts' /etc/hosts && exec '$tp' -d -c '$work/tinyproxy.conf'" \
    > "$work/tinyproxy.log" 2>&1 &
  tp_pid=$!
  for _ in $(seq 50); do ip netns exec $H bash -c '</dev/tcp/127.0.0.1/8888' 2>/dev/null && break; sleep 0.2; done
  rows+=("$(hold "tinyproxy (a thread per client)" http://127.0.0.1:8888 "$peer_n" "$tp_pid" "$root/bench/tunnels.py" \
    ip netns exec $H)")
fi

{
  echo "# Idle CONNECT tunnels"
  echo
  echo "\`bench/proxy_tunnels.sh $peer_n\`, $(date -u +%Y-%m-%d), load average $(cut -d' ' -f1 /proc/loadavg)."
  echo "PSS and RSS in KiB of the process that holds the tunnels; per tunnel = (PSS after − before) / held."
  echo
  echo "| proxy | asked | held | refused | PSS before | PSS after | KiB per tunnel | RSS after |"
  echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  printf '%s\n' "${rows[@]}"
} | tee "$root/bench/proxy_tunnels.md"
