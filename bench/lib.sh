# Sourced by bench scripts that run one long-lived sandbox: after
# `bench_setup NAME`, $root is the checkout, $bin the stockade binary (built,
# or $STOCKADE_BIN), $work a private directory holding the state and run
# directories; the sandbox whose id the script puts in $id is removed, and
# $work with it, when the script ends.
bench_setup() {
  cd "$(dirname "${BASH_SOURCE[1]}")/.."
  root=$PWD
  bin=${STOCKADE_BIN:-$root/build/src/stockade}
  [ -x "$bin" ] || { echo "build first: ninja -C build" >&2; exit 1; }
  command -v hyperfine >/dev/null || { echo "hyperfine missing: scripts/install-deps.sh" >&2; exit 1; }
  work=$(mktemp -d "/tmp/stockade-$1.XXXXXX")
  export STOCKADE_STATE_DIR=$work/state STOCKADE_RUN_DIR=$work/run
  id=""
  trap bench_cleanup EXIT
  trap 'exit 130' INT TERM
}

bench_cleanup() {
  set +e
  [ -n "$id" ] && "$bin" rm -f "$id" >/dev/null 2>&1
  rm -rf "$work"
}

# `crun exec` of /bin/true in sandbox $1 as a command line for hyperfine, in
# $crun_exec; $crun_note is empty when it ran as is, else how it was run: in
# a private mount namespace without /sys/fs/cgroup/unified, the way stockade
# runs crun on a hybrid-cgroup host (rt_needs_private_mntns). Fails when
# crun exec fails both ways. Needs $STOCKADE_RUN_DIR.
bench_crun_exec() {
  crun_exec="crun --root $STOCKADE_RUN_DIR/crun exec $1 /bin/true"
  crun_note=""
  if ! $crun_exec >/dev/null 2>&1; then
    crun_exec="unshare -m sh -c 'mount --make-rprivate /; umount -l /sys/fs/cgroup/unified; exec $crun_exec'"
    crun_note="crun exec failed as is; it was run in a private mount namespace without /sys/fs/cgroup/unified (unshare -m + sh), like stockade runs crun"
    eval "$crun_exec" >/dev/null || { echo "crun exec fails even in a private mount namespace" >&2; return 1; }
  fi
}

# `runc exec` of /bin/true in sandbox $1 as a command line for hyperfine, in
# $runc_exec, with $runc_note saying how it was run. runc sees the state
# directory at /run/stockade-view, a bind in the private mount namespace
# stockade runs it in (config.json names paths under it, and runc exec
# changes into the rootfs path first), so runc exec in the host's namespace
# fails; it runs in a mount namespace of the same shape, made once and kept by
# the file $work/runc-mntns (unmounted by bench_runc_exec_done), entered with
# nsenter: one exec more than the bare command. Needs $STOCKADE_RUN_DIR,
# $STOCKADE_STATE_DIR and $work.
bench_runc_exec() {
  runc_exec="runc --root $STOCKADE_RUN_DIR/runc exec $1 /bin/true"
  runc_note=""
  $runc_exec >/dev/null 2>&1 && return 0
  local ns=$work/runc-mntns
  touch "$ns"
  mount --bind "$ns" "$ns" && mount --make-private "$ns" || return 1
  unshare --mount="$ns" sh -c "mount --make-rprivate / && mount --bind '$STOCKADE_STATE_DIR' /run/stockade-view" || {
    bench_runc_exec_done; return 1; }
  runc_exec="nsenter --mount=$ns $runc_exec"
  runc_note="runc exec failed as is (it changes into config.json's rootfs path, under /run/stockade-view, which exists only in stockade's private mount namespace for runc); it was run in a kept mount namespace holding that bind (nsenter + runc)"
  $runc_exec >/dev/null || { echo "runc exec fails even with the state directory at /run/stockade-view" >&2; return 1; }
}
bench_runc_exec_done() {
  [ -e "$work/runc-mntns" ] && umount "$work/runc-mntns" 2>/dev/null
  return 0
}

# The upstream of the proxy benches: network namespaces $1 (where the proxy
# and its peers run) and $2 joined by a veth (198.18.9.1 and .2), the Python
# program $3 run in $2 until it prints "listening" (output in $3.out, pid in
# $upstream_pid), and $STOCKADE_PROXY_HOSTS naming 198.18.9.2 up.bench.
bench_upstream() {
  local h=$1 s=$2 prog=$3
  ip netns add "$h"; ip netns add "$s"
  ip -n "$h" link set lo up; ip -n "$s" link set lo up
  ip -n "$h" link add up0 type veth peer name eth0 netns "$s"
  ip -n "$h" addr add 198.18.9.1/30 dev up0; ip -n "$h" link set up0 up
  ip -n "$s" addr add 198.18.9.2/30 dev eth0; ip -n "$s" link set eth0 up
  ip netns exec "$s" /usr/bin/python3 "$prog" > "$prog.out" &
  upstream_pid=$!
  for _ in $(seq 50); do grep -q listening "$prog.out" 2>/dev/null && break; sleep 0.1; done
  echo "198.18.9.2 up.bench" > "$STOCKADE_PROXY_HOSTS"
}
