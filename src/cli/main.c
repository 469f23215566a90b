/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

const struct cli_command cli_commands[] = {
    {"run", cmd_run, "run a command in a local sandbox",
     "stockade run [-i] [-t] [-d] [--rm] [-f FILE] [--env ENV] [--policy P] [--memory Q]\n"
     "              [--pids N] [--cpu Q] [--wall-clock D] [--cpu-time D] [--runtime R]\n"
     "              [--rootfs host|DIR | --image REF] [--workspace DIR | -v DIR:/workspace]\n"
     "              [-w DIR]\n"
     "              [--state-dir DIR] [-e K=V]... [-o text|json] [--dry-run] [--no-network]\n"
     "              [--] CMD [ARGS...]\n"
     "\n"
     "Runs CMD in a sandbox on this host with an OCI runtime (runsc, crun or runc) and\n"
     "waits for it. Flags override FILE's values and are validated like them. Without\n"
     "-f, a default Sandbox is used (strict defaults, rootfs: host). The workload's\n"
     "stdout and stderr are streamed; Ctrl-C or SIGTERM tears the sandbox down. The\n"
     "sandbox is always removed when CMD ends (--rm is accepted and changes nothing);\n"
     "its record and audit trail stay (`stockade ls -a`, `stockade audit ID`).\n"
     "\n"
     "  -i, --interactive     send stdin to CMD \\  both make the sandbox a long-lived\n"
     "  -t, --tty             give CMD a terminal /  one, removed at the end\n"
     "  -d, --detach          start CMD in a long-lived sandbox, print its id and return;\n"
     "                        `stockade logs|exec|stop|rm ID` from then on\n"
     "      --rm              (the default) remove the sandbox when CMD ends\n"
     "  -f, --file FILE       a Sandbox document\n"
     "      --env ENV         the operator's EnvironmentConfig\n"
     "      --policy P        restricted, baseline or privileged\n"
     "      --memory Q        memory limit (512Mi); no swap beyond it\n"
     "      --pids N          process limit\n"
     "      --cpu Q           CPU quota (500m, 2)\n"
     "      --wall-clock D    deadline (90s, 10m): then wall_clock_exceeded\n"
     "      --cpu-time D      CPU-time budget: then cpu_exceeded\n"
     "      --runtime R       default, gvisor (or runsc), crun or runc\n"
     "      --rootfs R        host (read-only host /usr, /bin, /lib*) or a directory\n"
     "      --image REF       run a pulled image's root and config (stockade image pull)\n"
     "      --workspace DIR   bind DIR read-write at /workspace (default: a fresh one)\n"
     "  -v, --volume DIR:/workspace  the same; any other path, and :ro, are refused:\n"
     "                        the boundary lets one host directory in, at /workspace\n"
     "  -w, --workdir DIR     CMD's working directory (spec.workingDir)\n"
     "      --state-dir DIR   state directory (default $STOCKADE_STATE_DIR or\n"
     "                        /var/lib/stockade)\n"
     "  -e NAME=VALUE         set an environment variable (repeatable)\n"
     "  -o, --output FMT      text (default) or json: stdout is exactly one JSON object,\n"
     "                        the result with CMD's stdout and stderr inside (1 MiB each\n"
     "                        kept; stdoutTruncated/stderrTruncated say when cut)\n"
     "      --no-network      loopback only: no veth, no egress at all (stricter than any\n"
     "                        egress rule)\n"
     "      --dry-run         print the sandbox's contract (explain, flags included)\n"
     "                        and the runtime it would use; run nothing\n"
     "\n"
     "Exit status: CMD's (128+N when killed by signal N), 126 CMD not executable,\n"
     "127 CMD not found, 125 stockade's own error (invalid input included).\n"},
    {"create", cmd_create, "create a long-lived sandbox and start its workload",
     "stockade create -f FILE [--env ENV] [--pool NAME | --workload KIND/NAME]\n"
     "                [--wait running|accepted] [-o text|json]\n"
     "\n"
     "Creates a sandbox from FILE on this host and returns once it is ready (its\n"
     "workload started), printing its id. The sandbox keeps running: exec into it,\n"
     "follow its logs, stop, start and rm it. Its state lives in the state directory\n"
     "($STOCKADE_STATE_DIR, default /var/lib/stockade); see docs/sessions.md.\n"
     "\n"
     "  -f, --file FILE     a Sandbox document (spec.command is the workload)\n"
     "  -e, --env ENV       the operator's EnvironmentConfig\n"
     "  -p, --pool NAME     claim a ready member of warm pool NAME (its template must\n"
     "                      give the same sandbox); an empty pool means a cold create,\n"
     "                      and the output says so\n"
     "  -w, --workload KIND/NAME  kubernetes: inject the sandbox into a live\n"
     "                      deployment/NAME, statefulset/NAME or daemonset/NAME (in\n"
     "                      spec.deployment.target.namespace, else the context's\n"
     "                      namespace) by server-side apply; every replica runs one\n"
     "                      instance (ls lists them, exec --replica POD picks one);\n"
     "                      rm (or stop) ejects exactly what was added\n"
     "      --wait WHEN     running (default): return once the workload runs;\n"
     "                      accepted: kubernetes: once every object is applied and\n"
     "                      accepted by the API server (as `kubectl apply` returns); the\n"
     "                      Pod may still be starting, and `ready` means accepted. A\n"
     "                      workload that then fails to start ends the sandbox (get).\n"
     "                      Other backends return once it runs either way\n"
     "  -o, --output FMT    text (the id) or json ({id, warm, note})\n"
     "      --owner USER    with --server: create it for USER (the policy's onBehalfOf)\n"
     "      --tenant T      with --server: the tenant (default: the spec's namespace)\n"
     "\n"
     "Backend: local by default; `stockade --backend sim create ...` (or\n"
     "STOCKADE_BACKEND=sim, or --backend right after any sandbox command) models the\n"
     "sandbox from its spec's driverConfig.sim hints and executes nothing; see\n"
     "docs/sim.md. `--backend kubernetes` (with --kubeconfig FILE and --context NAME,\n"
     "or $STOCKADE_KUBECONFIG / $STOCKADE_CONTEXT) runs it on a cluster when that\n"
     "driver is built in. A state directory holds one backend's sandboxes; unless\n"
     "local, a backend's default is /var/lib/stockade/<backend>.\n"},
    {"port-forward", cmd_port_forward, "forward a local port to a declared port of a sandbox",
     "stockade port-forward [--address ADDR] ID [LOCAL:]PORT...\n"
     "\n"
     "Listens on ADDR (default 127.0.0.1) at LOCAL (default PORT; 0: any free port,\n"
     "printed) and relays each connection to PORT of sandbox ID, which must be one of\n"
     "its spec.ports: the sandbox's ingress admits nothing else. Each connection is an\n"
     "audit record (port_connect). Runs until SIGINT or SIGTERM. Local backend only:\n"
     "a sandbox without a network namespace of its own on this host (sim, kubernetes)\n"
     "is refused. With --server each connection goes through the gateway's port\n"
     "route (GET /v1/sandboxes/ID/ports/PORT/ upgraded to stockade-tcp.v1, over TLS\n"
     "with --cacert/--cert/--key as every request), authorized as exec.\n"
     "\n"
     "  -a, --address ADDR  the numeric address to listen on (default 127.0.0.1)\n"
     "\n"
     "Exit status: 0 stopped by a signal, 1 refused (port not declared, sandbox not\n"
     "ready), 2 usage error, 125 could not listen.\n"},
    {"exec", cmd_exec, "run a command in a ready sandbox",
     "stockade exec ID [-i] [-t] [-e K=V]... [-w DIR] [--replica POD] -- CMD [ARGS...]\n"
     "\n"
     "Runs CMD inside sandbox ID, as the sandbox user, with the sandbox's limits. The\n"
     "exit status is CMD's (128+N when a signal N ended it); 126 CMD not executable,\n"
     "127 CMD not found, 125 when stockade could not run it. The audit trail records\n"
     "CMD and the caller.\n"
     "\n"
     "  -i, --interactive   send stdin to CMD (otherwise CMD's stdin is closed)\n"
     "  -t, --tty           give CMD a terminal (stdout and stderr merged); TERM is the\n"
     "                      caller's (xterm without one) unless -e TERM=... is given\n"
     "  -e NAME=VALUE       add an environment variable (repeatable)\n"
     "  -w, --workdir DIR   working directory inside the sandbox\n"
     "      --replica POD   a sandbox injected into a workload (create --workload):\n"
     "                      the replica to run in (`stockade ls` lists them); needed\n"
     "                      when more than one runs\n"
     "\n"
     "On the sim backend nothing is executed: exec is audited and fails (125) with\n"
     "\"simulated: nothing was executed\".\n"},
    {"cp", cmd_cp, "copy a file into or out of a ready sandbox",
     "stockade cp [--mode MODE] SRC DST\n"
     "\n"
     "One of SRC and DST is ID:/PATH, a path inside the sandbox (a local path with\n"
     "a colon is written ./a:b); the other is a local file, or - for stdin/stdout.\n"
     "  stockade cp ./main.py ID:/workspace/main.py     into the sandbox\n"
     "  stockade cp ID:/workspace/out.csv .              out of it\n"
     "\n"
     "One regular file per copy, at most 16 MiB. The sandbox's stockade-init\n"
     "moves the bytes inside the sandbox (never the host's view of its files) and\n"
     "follows no symbolic link there; a path the boundary does not make writable\n"
     "(the root filesystem is read-only: /workspace, /tmp, /dev/shm and the home\n"
     "are writable) is refused. A copy in writes a new file renamed over PATH at\n"
     "the end, so a failed copy changes nothing; PATH ending in / takes the\n"
     "source's name. Every copy is an audit record (direction, path, size).\n"
     "  -m, --mode MODE   permission bits of the file written (octal; default: the\n"
     "                    source's, 0644 from stdin)\n"
     "On the sim backend there is no filesystem: cp fails with \"simulated\".\n"},
    {"logs", cmd_logs, "print a sandbox's output",
     "stockade logs ID [-f] [-n N] [-t] [--since D|TIME] [--until D|TIME]\n"
     "\n"
     "Prints what the workload wrote, stdout to stdout and stderr to stderr. Each\n"
     "sandbox keeps the last 8 to 16 MiB of output (two rotated files).\n"
     "\n"
     "  -f, --follow        keep printing until the sandbox ends\n"
     "  -n, --tail N        only the last N lines (stdout and stderr together; all: every\n"
     "                      line)\n"
     "  -t, --timestamps    begin each line with the time it was recorded (RFC 3339)\n"
     "      --since X       only output since a duration ago (10m) or an RFC 3339 UTC\n"
     "                      time (2026-11-23T10:00:00Z)\n"
     "      --until X       only output up to a duration ago or an RFC 3339 UTC time\n"},
    {"stop", cmd_stop, "stop sandboxes (what persists is what explain says)",
     "stockade stop ID...\n"
     "\n"
     "Ends the workload (SIGTERM, SIGKILL after 5 s) and releases the sandbox's\n"
     "container, network and cgroup. /workspace and /tmp are emptied; the record,\n"
     "logs and audit trail stay. `stockade start` brings it back.\n"},
    {"start", cmd_start, "start stopped sandboxes again",
     "stockade start ID...\n"
     "\n"
     "Sets a stopped sandbox up again from its stored spec and starts its workload.\n"},
    {"rm", cmd_rm, "remove sandboxes",
     "stockade rm [-f] ID...\n"
     "\n"
     "Removes a stopped or ended sandbox: its directory and logs. The record stays\n"
     "(phase deleted, `ls -a` shows it) and so does its audit trail.\n"
     "\n"
     "  -f, --force   also a running sandbox: stop it first\n"},
    {"ls", cmd_ls, "list sandboxes",
     "stockade ls [-a] [-q] [-l SELECTOR]... [--no-headers]\n"
     "            [-o table|wide|name|json|yaml|jsonpath=TEMPLATE]\n"
     "\n"
     "  -a, --all              include deleted sandboxes\n"
     "  -q, --quiet            only the ids, one a line\n"
     "  -l, --selector SEL     only sandboxes whose labels match: k=v, k==v, k!=v, k, !k,\n"
     "                         comma-separated (all must hold); repeatable\n"
     "      --no-headers       the table without its header line\n"
     "  -o, --output FMT       table (default); wide (also exit code, owner, tenant,\n"
     "                         labels); name (sandbox/ID); json; yaml; jsonpath=TEMPLATE,\n"
     "                         kubectl's simple paths over {\"items\": [...]}:\n"
     "                         -o jsonpath='{.items[*].id}'\n"},
    {"get", cmd_get, "show one sandbox",
     "stockade get ID [--no-headers] [-o table|wide|name|json|yaml|jsonpath=TEMPLATE]\n"
     "\n"
     "ID is a sandbox id or a name. json and yaml include the last result.\n"
     "\n"
     "  -o, --output FMT    as for ls; jsonpath applies to the record itself:\n"
     "                      -o jsonpath='{.phase}', -o jsonpath='{.labels.team}'\n"
     "      --no-headers    the table without its header line\n"},
    {"pool", cmd_pool, "manage warm pools of ready sandboxes",
     "stockade pool create NAME --size N -f TEMPLATE [--env ENV] [--tenant T]\n"
     "       stockade pool ls [-o table|json|yaml]\n"
     "       stockade pool rm NAME\n"
     "\n"
     "A pool keeps N sandboxes of TEMPLATE fully prepared (network, cgroup,\n"
     "supervisor) with no workload. `stockade create --pool NAME -f SPEC` claims one:\n"
     "it gets SPEC's name, labels and owner and runs SPEC's command. A claimed member\n"
     "never returns to the pool; the pool refills in the background. --tenant (with\n"
     "--server): the tenant the pool is asked for (default: the template's namespace).\n"},
    {"verify", cmd_verify, "prove a sandbox's contract from inside it",
     "stockade verify ID|FILE [--to IP:PORT]... [--timeout-ms N] [--env ENV] [--replica POD]\n"
     "                [-o text|json]\n"
     "\n"
     "Runs stockade-probe inside sandbox ID and checks every claim `explain` makes:\n"
     "non-root, no capabilities, no_new_privs, seccomp, read-only root, writable\n"
     "/workspace and /tmp, no service-account token, no runtime sockets, the memory\n"
     "and pids limits in effect, and, for each --to, reachability against the egress\n"
     "model (`netpol trace`). Prints claim / expected / observed / verdict. With FILE,\n"
     "a sandbox is created from it with no workload, verified and removed. On the\n"
     "kubernetes backend every object render prints is also read back and judged\n"
     "against what was applied, and the probe runs inside the Pod.\n"
     "See docs/verify.md.\n"
     "\n"
     "  -t, --to IP:PORT      a destination to try (repeatable; numeric, [v6]:port)\n"
     "      --timeout-ms N    per connection attempt (default 1500)\n"
     "  -e, --env ENV         FILE's EnvironmentConfig\n"
     "      --replica POD     a sandbox injected into a workload: the replica to probe\n"
     "  -o, --output FMT      text (default) or json\n"
     "\n"
     "Exit status: 0 every claim holds, 1 a claim failed, 125 usage or no verdict.\n"},
    {"gc", cmd_gc, "remove what crashed local runs left behind",
     "stockade gc [--state-dir DIR]\n"
     "\n"
     "Removes sandbox directories, runtime state and cgroups of local runs that are no\n"
     "longer running, found only under stockade's own paths.\n"},
    {"image", cmd_image, "pull, list, inspect and remove local images (docs/images.md)",
     "stockade image [OPTIONS] pull|ls|inspect|rm|prune [REF...]\n"
     "\n"
     "  pull REF          copy REF into the store (skopeo), check every blob's sha256,\n"
     "                    unpack its layers once into a read-only root; prints the digest\n"
     "  ls                the images, their digests, sizes and names\n"
     "  inspect REF       one image's record and config (JSON)\n"
     "  rm REF...         remove images no sandbox uses\n"
     "  prune             remove every image no sandbox uses\n"
     "\n"
     "REF: registry/repo[:tag], registry/repo@sha256:..., oci:DIR[:tag], oci-archive:FILE,\n"
     "docker-archive:FILE; a stored image also by digest or its first 12+ hex digits.\n"
     "\n"
     "      --state-dir DIR   the store is DIR/images\n"
     "      --cert-dir DIR    CA certificates (*.crt) for the registry's TLS\n"
     "      --authfile FILE   registry credentials (containers-auth.json)\n"
     "      --tls-verify=false  plain HTTP or unverified TLS: localhost/127.0.0.1 only\n"
     "      --max-store SIZE  the store's limit (default 20Gi): least recently used\n"
     "                        images not in use are evicted after a pull\n"
     "  -o, --output FMT      text (default) or json\n"
     "  -q, --quiet           ls: digests only\n"},
    {"serve", cmd_serve, "serve the HTTP/JSON API (docs/api.md)",
     "stockade serve --policy FILE [--listen ADDR] [--tls-cert F --tls-key F [--client-ca F]]\n"
     "                [--state-dir DIR] [--request-timeout S] [--access-log FILE|-|off]\n"
     "\n"
     "Serves the sandbox API over HTTP/1.1 (docs/api.md, docs/openapi.yaml). Every\n"
     "request is authenticated and authorized by the AccessPolicy in FILE, and every\n"
     "decision is an audit record. There is no unauthenticated mode.\n"
     "\n"
     "  --listen ADDR      HOST:PORT, numeric (default 127.0.0.1:8443), or unix:PATH;\n"
     "                     plain HTTP is refused on a non-loopback address\n"
     "  --tls-cert F       the server certificate chain (PEM)\n"
     "  --tls-key F        its private key (PEM)\n"
     "  --client-ca F      verify client certificates against these CAs (mTLS)\n"
     "  --policy FILE      the AccessPolicy (required)\n"
     "  --state-dir DIR    state directory (default $STOCKADE_STATE_DIR or\n"
     "                     /var/lib/stockade)\n"
     "  --request-timeout S  a request must arrive within S seconds (default 30)\n"
     "  --access-log FILE  one JSON line per request (method, path, status, identity,\n"
     "                     duration; never a token) appended to FILE; - (the default)\n"
     "                     is stderr, off is none\n"
     "\n"
     "A bad policy is reported with file:line:col and serve does not start.\n"
     "\n"
     "Exit status: 0 stopped by SIGINT/SIGTERM, 1 could not start, 125 usage error.\n"},
    {"audit", cmd_audit, "show, verify and export the audit trail",
     "stockade audit [--state-dir DIR] [-o text|json] ID\n"
     "       stockade audit verify [--state-dir DIR] [ID]\n"
     "       stockade audit export [--state-dir DIR] [--sandbox ID]\n"
     "\n"
     "Every lifecycle change of a sandbox (created, started, exec, killed, stopped,\n"
     "claimed, deleted, ...) is an audit record chained by SHA-256 to the previous\n"
     "record globally and to the previous record of the same sandbox (docs/audit.md).\n"
     "\n"
     "  ID                  the sandbox's records, oldest first (ID: a sandbox id or name)\n"
     "  verify [ID]         check every hash, both chains and the head anchor; with ID,\n"
     "                      that sandbox's chain only; names the first broken record\n"
     "  export              every record as JSON Lines, hashes included, for offline\n"
     "                      verification and for shipping off this host\n"
     "      --sandbox ID    export one sandbox's records\n"
     "  -o, --output FMT    text (default) or json, for ID\n"
     "      --state-dir DIR state directory (default $STOCKADE_STATE_DIR or\n"
     "                      /var/lib/stockade)\n"
     "\n"
     "Nothing is created: without a state database, verify and export report that there\n"
     "is no trail and exit 0 (1 when audit.head remains without its database).\n"
     "\n"
     "Exit status: 0 success (verify: intact), 1 broken trail, unknown sandbox or\n"
     "unreadable store, 125 usage error.\n"},
    {"validate", cmd_validate, "check Sandbox and EnvironmentConfig files",
     "stockade validate [--env ENV] [-o text|json] FILE...\n"
     "\n"
     "Parses every document in each FILE, resolves each Sandbox against ENV (or the\n"
     "hard defaults) and reports every problem with file:line:column and field path.\n"
     "\n"
     "  -e, --env ENV       resolve Sandboxes against this EnvironmentConfig\n"
     "  -o, --output FMT    text (default) or json\n"
     "\n"
     "Exit status: 0 valid, 1 invalid, 125 usage error.\n"},
    {"explain", cmd_explain, "say what a sandbox can read, write and reach",
     "stockade explain [--env ENV] [--backend local|kubernetes|sim] [-o text|json] FILE\n"
     "\n"
     "Prints the sandbox's contract in plain words: what it can read and write, its\n"
     "Kubernetes API access, its network, privileges, quotas, credentials, what\n"
     "persists and what the operator keeps, and what the backend does not enforce.\n"
     "Every statement shows where its values came from (spec, environment, default).\n"
     "\n"
     "  -e, --env ENV       the operator's EnvironmentConfig\n"
     "  -b, --backend B     local (default), kubernetes or sim\n"
     "  -o, --output FMT    text (default) or json\n"},
    {"assess", cmd_assess, "judge a sandbox's trust level",
     "stockade assess [--env ENV] [-o text|json] [--fail-above LEVEL] FILE...\n"
     "\n"
     "Lists findings (privilege, API access, egress, storage, credentials), each with a\n"
     "severity and a reason, and the overall level: hardened, trusted-automation or\n"
     "operator-exception. With several FILEs, each under its name (json: an array of\n"
     "{file, ...}); the exit status is the worst.\n"
     "\n"
     "  -e, --env ENV           the operator's EnvironmentConfig\n"
     "  -o, --output FMT        text (default) or json\n"
     "      --fail-above LEVEL  exit 3 when a level is above LEVEL\n"
     "\n"
     "Exit status: 0, 1 a FILE is invalid, 3 above LEVEL, 125 usage error.\n"},
    {"netpol", cmd_netpol, "trace egress decisions without running anything",
     "stockade netpol trace [--env ENV] [--backend local] (--to DEST | --namespace NS |\n"
     "                      --matrix) [-o text|json] FILE\n"
     "       stockade netpol trace [--env ENV] --ingress PORT[/PROTO] [--from-namespace NS]\n"
     "                      [-o text|json] FILE\n"
     "\n"
     "Evaluates the sandbox's egress model (Kubernetes NetworkPolicy semantics: default\n"
     "deny once any policy selects it, allows add up) for a destination and prints the\n"
     "verdict and the policy and rule that decided it. Nothing is sent anywhere.\n"
     "With --ingress, an inbound connection to the sandbox instead: allowed on a port of\n"
     "spec.ports (allow-declared-ingress) or from another sandbox, whose own egress rules\n"
     "decide (allow-sandbox-ingress), denied otherwise (deny-ingress).\n"
     "\n"
     "  -e, --env ENV        the operator's EnvironmentConfig\n"
     "  -b, --backend local  also what the local backend enforces beyond the model: the\n"
     "                       host's own addresses, and traffic leaving the host without\n"
     "                       data.local.nat or routed, are dropped\n"
     "  -t, --to DEST        ADDR[:PORT[/PROTO]], [IPV6]:PORT/PROTO or :PORT/PROTO;\n"
     "                       repeat for several (PROTO tcp, udp or sctp; tcp by default)\n"
     "  -n, --namespace NS   the destination is a pod in namespace NS\n"
     "  -l, --labels K=V,..  that pod's labels (for podSelector rules)\n"
     "  -m, --matrix         a table of verdicts for the given destinations, or for one\n"
     "                       of each class (same namespace, DNS, metadata, private, public)\n"
     "  -i, --ingress P      an inbound connection to port P[/PROTO]; repeat for several\n"
     "  -F, --from-namespace NS  from a sandbox of namespace NS (default: from what is\n"
     "                       not a sandbox: the host, a Service's clients)\n"
     "  -o, --output FMT     text (default) or json\n"},
    {"render", cmd_render, "print the objects a backend would apply",
     "stockade render [--env ENV] --target kubernetes [-o yaml|json] [--job]\n"
     "                [--cluster-objects [--admission vap|kyverno]] [--workload WORKLOAD]\n"
     "                [FILE]\n"
     "\n"
     "Prints the Kubernetes objects of the sandbox in FILE as one deterministic stream\n"
     "(same input, byte-identical output): Namespace, ServiceAccount, RoleBinding,\n"
     "NetworkPolicies, ResourceQuota, LimitRange, PVC, and a Pod (or a Job when the\n"
     "sandbox has a wallClock deadline or --job is given). See docs/kubernetes.md.\n"
     "\n"
     "  -e, --env ENV            the operator's EnvironmentConfig\n"
     "  -t, --target T           kubernetes\n"
     "  -o, --output FMT         yaml (default; a multi-document stream) or json (a v1 List)\n"
     "      --job                render a Job even without a wallClock deadline\n"
     "      --cluster-objects    also print the cluster-scoped objects (ClusterRoles,\n"
     "                           RuntimeClass, admission policies); FILE is then optional\n"
     "      --admission ENGINE   vap (default: ValidatingAdmissionPolicy) or kyverno\n"
     "      --gateway-image IMG  the in-cluster gateway's image; --no-gateway: none\n"
     "      --secret-namespace NS  let the gateway get Secrets in NS (a binding's\n"
     "                           Secret there); repeat for several, at most 16\n"
     "  -w, --workload WORKLOAD  injection: print WORKLOAD (a Deployment, StatefulSet or\n"
     "                           DaemonSet, YAML or JSON) with the sandbox injected\n"},
    {"eject", cmd_eject, "remove an injected sandbox from a workload",
     "stockade eject --workload WORKLOAD [-o yaml|json]\n"
     "\n"
     "Prints WORKLOAD with the sandbox that 'stockade render --workload' injected\n"
     "removed, restored exactly from the stockade.dev/injected annotation.\n"
     "\n"
     "  -w, --workload WORKLOAD  the injected Deployment, StatefulSet or DaemonSet\n"
     "  -o, --output FMT         yaml (default) or json\n"},
    {"doctor", cmd_doctor, "check this host, an EnvironmentConfig or a live cluster",
     "stockade doctor [--env ENV] [--kubeconfig FILE] [--context NAME] [-o text|json]\n"
     "\n"
     "Without --env it checks this host for the local backend: root, each OCI runtime\n"
     "(runsc, crun, runc: installed and passing a smoke run), the memory, pids and cpu\n"
     "cgroup controllers, and nftables. Nothing is changed.\n"
     "\n"
     "With --env it checks the operator's EnvironmentConfig instead: metadata endpoints\n"
     "in blacklistIPs (IPv4 and IPv6), podCIDRs and serviceCIDR, the externalEgress\n"
     "default, excludePolicies with a stated replacement, token and role defaults, the\n"
     "privilege default. Each check passes, warns or fails with why and what to change.\n"
     "\n"
     "With --kubeconfig or --context (or $STOCKADE_KUBECONFIG) it checks that cluster\n"
     "too: the API server answers, the identity may do what the kubernetes driver does,\n"
     "Pod Security admission rejects a privileged Pod under enforce=restricted, the\n"
     "gvisor RuntimeClass and the admission guard are installed, NetworkPolicies are\n"
     "accepted.\n"
     "\n"
     "  -e, --env ENV       the EnvironmentConfig to check\n"
     "  --kubeconfig FILE   a cluster to check ($KUBECONFIG when only --context is given)\n"
     "  --context NAME      the kubeconfig context (default: its current-context)\n"
     "  -o, --output FMT    text (default) or json\n"
     "\n"
     "Exit status: 0 no failed check, 1 a check failed or ENV is invalid, 125 usage error.\n"},
    {"reference", cmd_reference, "print the spec reference (docs/spec.md)",
     "stockade reference\n"
     "\n"
     "Prints the Markdown reference of every field, generated from the field table.\n"},
    {"completion", cmd_completion, "print a shell completion script",
     "stockade completion bash|zsh|fish\n"
     "\n"
     "Prints the completion script for the shell, generated from the same table as\n"
     "--help (commands, their options, sandbox ids from `stockade ls -q`). meson install\n"
     "installs all three. To try one in the current shell:\n"
     "\n"
     "  source <(stockade completion bash)\n"
     "  source <(stockade completion zsh)\n"
     "  stockade completion fish | source\n"},
    {"version", cmd_version, "print the version", "stockade version\n"},
    /* stockade's own processes (no summary: not listed) */
    {"__monitor", cmd_internal_monitor, NULL, "stockade __monitor MODE ID (internal)\n"},
    {"__pool-refill", cmd_internal_refill, NULL, "stockade __pool-refill POOL (internal)\n"},
    {"__gateway-worker", cmd_internal_gateway_worker, NULL,
     "stockade __gateway-worker (internal: started by serve)\n"},
    {"__proxy", cmd_internal_proxy, NULL,
     "stockade __proxy --config FILE (internal: the egress proxy's Pod on Kubernetes)\n"},
    {"__man", cmd_internal_man, NULL, "stockade __man (internal: the man page, built by meson)\n"},
    {"help", cmd_help, "show help for a command",
     "stockade help [COMMAND | exit-status]\n"
     "\n"
     "exit-status: the exit status table, the same for every command (docs/cli.md).\n"},
    {NULL, NULL, NULL, NULL},
};

static const struct cli_command *command_find(const char *name)
{
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (!strcmp(c->name, name))
            return c;
    return NULL;
}

int cli_usage(const char *command, FILE *to, int status)
{
    const struct cli_command *c = command_find(command);
    if (to != stdout)
        fprintf(to, "see 'stockade %s --help'\n", command);
    else if (c)
        fprintf(to, "Usage: %s", c->usage);
    return status;
}

int cli_usage_error(const char *command, const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "stockade %s: ", command);
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\nsee 'stockade %s --help'\n", command);
    return EXIT_USAGE;
}

const char cli_exit_status_text[] =
    "  0    success\n"
    "  1    a negative answer: invalid input (validate, explain, ...), a refusal, no such\n"
    "       sandbox, a failed check (doctor, verify, audit verify)\n"
    "  3    assess --fail-above: the level is above the given one\n"
    "  125  stockade's own error: a usage error (unknown command or option), or it could\n"
    "       not do what was asked (set the sandbox up, reach the server); run and exec:\n"
    "       any error of stockade's, invalid input included\n"
    "  126  run, exec: the command is not executable\n"
    "  127  run, exec: the command was not found\n"
    "  N    run, exec: the command's own exit status (128+S when signal S ended it)\n";

void cli_main_usage(FILE *to)
{
    fprintf(
        to,
        "Usage: stockade [--version] [--help] [--backend B] [--kubeconfig FILE] [--context NAME] "
        "[CLIENT OPTIONS] "
        "COMMAND [ARGS]\n\n"
        "stockade runs untrusted code in sandboxes whose boundary is explicit,\n"
        "enforced, audited and provable.\n\nCommands:\n");
    for (const struct cli_command *c = cli_commands; c->name; c++)
        if (c->summary)
            fprintf(to, "  %-10s  %s\n", c->name, c->summary);
    fprintf(to, "\nClient options (before COMMAND): the commands create, exec, cp, logs, stop,\n"
                "start, rm, ls, get, pool and audit ID then talk to `stockade serve`\n"
                "(docs/gateway.md) instead of this host's state:\n"
                "  --server URL        http(s)://HOST:PORT or unix:PATH ($STOCKADE_SERVER)\n"
                "  --token TOKEN       a bearer token ($STOCKADE_TOKEN)\n"
                "  --token-file FILE   its first line is the token ($STOCKADE_TOKEN_FILE)\n"
                "  --cacert FILE       CA certificates to verify the server with\n"
                "  --cert FILE --key FILE  a client certificate (mTLS)\n"
                "\nExit status: 125 stockade's own error, 126 not executable, 127 not found,\n"
                "otherwise the command's ('stockade help exit-status').\n"
                "\nRun 'stockade COMMAND --help' for a command's options.\n");
}

/* The global options, for suggestions. */
static const char *const global_flags[] = {"--backend", "--kubeconfig", "--context", "--server",
                                           "--token",   "--token-file", "--cacert",  "--cert",
                                           "--key",     "--help",       "--version"};

static const char *global_flag_at(const void *ctx, size_t i)
{
    (void)ctx;
    return i < STK_ARRAY_SIZE(global_flags) ? global_flags[i] : NULL;
}

static const char *command_at(const void *ctx, size_t i)
{
    (void)ctx;
    for (size_t k = 0; cli_commands[k].name; k++) {
        if (!cli_commands[k].summary)
            continue; /* stockade's own are never suggested */
        if (i-- == 0)
            return cli_commands[k].name;
    }
    return NULL;
}

/* "stockade: unknown command 'lss'; did you mean 'ls'?" and where to look. */
static void unknown_word(const char *what, const char *word, size_t len,
                         const char *(*name_at)(const void *, size_t))
{
    const char *best = cli_closest(word, len, name_at, NULL);
    if (best)
        fprintf(stderr, "stockade: unknown %s '%.*s'; did you mean '%s'?\n", what, (int)len, word,
                best);
    else
        fprintf(stderr, "stockade: unknown %s '%.*s'\n", what, (int)len, word);
    fprintf(stderr, "see 'stockade --help'\n");
}

/* The commands that work as clients of `stockade serve`. */
static const char *const remote_commands[] = {"create", "exec",  "cp",  "port-forward", "logs",
                                              "stop",   "start", "rm",  "ls",           "get",
                                              "pool",   "audit", "help"};

static bool remote_capable(const char *name)
{
    return stk_enum_lookup(remote_commands, STK_ARRAY_SIZE(remote_commands), name) >= 0;
}

/* The client options before the command; returns the index of the command
 * or -EXIT_USAGE. */
static int parse_client_opts(int argc, char **argv)
{
    static const struct {
        const char *flag;
        const char **dst;
    } flags[] = {
        {"--server", &cli_remote.server},
        {"--token", &cli_remote.token},
        {"--token-file", &cli_remote.token_file},
        {"--cacert", &cli_remote.cacert},
        {"--cert", &cli_remote.cert},
        {"--key", &cli_remote.key},
    };
    int i = 1;
    while (i < argc && !strncmp(argv[i], "--", 2) && strcmp(argv[i], "--help") &&
           strcmp(argv[i], "--version")) {
        const char *arg = argv[i], *eq = strchr(arg, '=');
        size_t n = eq ? (size_t)(eq - arg) : strlen(arg);
        size_t k = 0;
        while (k < STK_ARRAY_SIZE(flags) &&
               (strlen(flags[k].flag) != n || strncmp(flags[k].flag, arg, n)))
            k++;
        if (k == STK_ARRAY_SIZE(flags)) {
            unknown_word("option", arg, n, global_flag_at);
            return -EXIT_USAGE;
        }
        if (eq) {
            *flags[k].dst = eq + 1;
            i++;
        } else if (i + 1 < argc) {
            *flags[k].dst = argv[i + 1];
            i += 2;
        } else {
            fprintf(stderr, "stockade: %s needs a value\n", arg);
            return -EXIT_USAGE;
        }
    }
    cli_remote_from_env();
    if (!cli_remote.cert != !cli_remote.key) {
        fprintf(stderr, "stockade: --cert and --key go together\n");
        return -EXIT_USAGE;
    }
    if (!cli_remote.server && (cli_remote.cacert || cli_remote.cert)) {
        fprintf(stderr, "stockade: --cacert, --cert and --key need --server URL\n");
        return -EXIT_USAGE;
    }
    return i;
}

static int cmd_version(int argc, char **argv)
{
    (void)argv;
    if (argc > 1)
        return cli_usage_error("version", "takes no arguments");
    printf("stockade %s\n", STK_VERSION);
    return 0;
}

static int cmd_help(int argc, char **argv)
{
    if (argc < 2) {
        cli_main_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "exit-status")) {
        printf("Exit status of every stockade command:\n%s", cli_exit_status_text);
        return 0;
    }
    if (!command_find(argv[1]))
        return cli_usage_error("help", "unknown command '%s'", argv[1]);
    return cli_usage(argv[1], stdout, 0);
}

/* The commands whose sandboxes live in the state directory: they take the
 * embedded backend (local or sim). */
static bool session_command(const char *name)
{
    static const char *const names[] = {"create", "exec", "cp",   "logs",  "stop",   "start", "rm",
                                        "ls",     "get",  "pool", "audit", "verify", "serve", "gc"};
    return stk_enum_lookup(names, STK_ARRAY_SIZE(names), name) >= 0;
}

/* `--backend B`, `--kubeconfig FILE`, `--context NAME` (or `--flag=V`) from
 * argv[i] on: each sets its variable ($STOCKADE_BACKEND, $STOCKADE_KUBECONFIG,
 * $STOCKADE_CONTEXT, which the processes stockade starts for itself
 * inherit). Returns how many arguments they took. */
static int take_backend(int argc, char **argv, int i)
{
    static const struct {
        const char *flag, *var;
    } flags[] = {{"--backend", "STOCKADE_BACKEND"},
                 {"--kubeconfig", "STOCKADE_KUBECONFIG"},
                 {"--context", "STOCKADE_CONTEXT"}};
    int n = 0;
    for (bool more = true; more && i + n < argc;) {
        more = false;
        const char *a = argv[i + n];
        for (size_t k = 0; k < STK_ARRAY_SIZE(flags); k++) {
            size_t len = strlen(flags[k].flag);
            if (!strcmp(a, flags[k].flag) && i + n + 1 < argc) {
                setenv(flags[k].var, argv[i + n + 1], 1);
                n += 2;
                more = true;
                break;
            }
            if (!strncmp(a, flags[k].flag, len) && a[len] == '=') {
                setenv(flags[k].var, a + len + 1, 1);
                n += 1;
                more = true;
                break;
            }
        }
    }
    return n;
}

int main(int argc, char **argv)
{
    int global = take_backend(argc, argv, 1);
    if (global) {
        /* stockade --backend B COMMAND ...: as if COMMAND came first */
        argv[global] = argv[0];
        argv += global;
        argc -= global;
    }
    int first = parse_client_opts(argc, argv);
    if (first < 0)
        return -first;
    argc -= first - 1;
    argv += first - 1;
    if (argc < 2) {
        fprintf(stderr, "stockade: needs a command\nsee 'stockade --help'\n");
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        cli_main_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, argv);
    const struct cli_command *c = command_find(argv[1]);
    if (!c) {
        unknown_word("command", argv[1], strlen(argv[1]), command_at);
        return EXIT_USAGE;
    }
    cli_command_name = c->name;
    for (int i = 2; i < argc && strcmp(argv[i], "--"); i++)
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h"))
            return cli_usage(c->name, stdout, 0);
    /* stockade COMMAND --backend B ...: right after a session command */
    int taken = session_command(c->name) ? take_backend(argc, argv, 2) : 0;
    if (taken) {
        argv[1 + taken] = argv[1];
        argv += taken;
        argc -= taken;
    }
    if (cli_remote_active() && !remote_capable(c->name)) {
        fprintf(stderr,
                "stockade %s: works on this host only, not with --server / STOCKADE_SERVER\n",
                c->name);
        return EXIT_USAGE;
    }
    return c->fn(argc - 1, argv + 1);
}
