#!/bin/sh
# What a sandbox's own host id range costs: `stockade run -- /bin/true` and
# `create` + `rm` of a long-lived sandbox, each with the sandbox's network,
# under one runtime, for two stockade binaries (say: one built before runc
# sandboxes had ranges and one after), interleaved run by run so that a
# change in the machine's load hits both. Medians in milliseconds.
#
#   bench/idmap.sh OLD_BINARY NEW_BINARY [RUNTIME] [RUNS]
#
# As root. Each binary gets its own state and run directories under a
# temporary directory, removed at the end.
set -eu
old=$1 new=$2 rt=${3:-runc} runs=${4:-7}
tmp=$(mktemp -d /tmp/stk-bench-idmap.XXXXXX)
trap 'for b in old new; do STOCKADE_STATE_DIR=$tmp/$b/state STOCKADE_RUN_DIR=$tmp/$b/run \
      "$(eval echo \$$b)" gc >/dev/null 2>&1 || true; done; rm -rf "$tmp"' EXIT
cat > "$tmp/s.yaml" <<YAML
apiVersion: stockade.dev/v1alpha1
kind: Sandbox
metadata: {name: bench}
spec:
  runtime: $rt
  command: ["sleep", "600"]
YAML
ms() { date +%s%N | cut -c1-13; }
one() { # binary label
    export STOCKADE_STATE_DIR=$tmp/$2/state STOCKADE_RUN_DIR=$tmp/$2/run
    t0=$(ms); "$1" run --runtime "$rt" -- /bin/true; t1=$(ms)
    id=$("$1" create -f "$tmp/s.yaml"); t2=$(ms)
    "$1" rm -f "$id" >/dev/null; t3=$(ms)
    echo "$2 $((t1 - t0)) $((t2 - t1)) $((t3 - t2))" >> "$tmp/times"
}
# warm: runtime detection (the smoke runs) is cached per state directory
one "$old" old; one "$new" new; : > "$tmp/times"
i=0
while [ $i -lt "$runs" ]; do one "$old" old; one "$new" new; i=$((i + 1)); done
median() { sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
printf '%-5s %10s %10s %10s   (%s, %s runs, ms, medians)\n' binary run create rm "$rt" "$runs"
for b in old new; do
    printf '%-5s %10s %10s %10s\n' $b \
        "$(awk -v b=$b '$1==b {print $2}' "$tmp/times" | median)" \
        "$(awk -v b=$b '$1==b {print $3}' "$tmp/times" | median)" \
        "$(awk -v b=$b '$1==b {print $4}' "$tmp/times" | median)"
done
