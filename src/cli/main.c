/* SPDX-License-Identifier: Apache-2.0 */
#include "cli.h"

#include <stdlib.h>
#include <string.h>

static int cmd_help(int argc, char **argv);
static int cmd_version(int argc, char **argv);

const struct cli_command cli_commands[] = {
    {"run", cmd_run, "run a command in a local sandbox",
     "stockade run [-f FILE] [--env ENV] [--policy P] [--memory Q] [--pids N] [--cpu Q]\n"
     "              [--wall-clock D] [--cpu-time D] [--runtime R] [--rootfs host|DIR]\n"
     "              [--workspace DIR] [--state-dir DIR] [-e K=V]... [-o text|json] [--dry-run]\n"
     "              [--no-network]\n"
     "              [--] CMD [ARGS...]\n"
     "\n"
     "Runs CMD in a sandbox on this host with an OCI runtime (runsc, crun or runc) and\n"
     "waits for it. Flags override FILE's values and are validated like them. Without\n"
     "-f, a default Sandbox is used (strict defaults, rootfs: host). The workload's\n"
     "stdout and stderr are streamed; Ctrl-C or SIGTERM tears the sandbox down.\n"
     "\n"
     "  -f, --file FILE       a Sandbox document\n"
     "      --env ENV         the operator's EnvironmentConfig\n"
     "      --policy P        restricted, baseline or privileged\n"
     "      --memory Q        memory limit (512Mi); no swap beyond it\n"
     "      --pids N          process limit\n"
     "      --cpu Q           CPU quota (500m, 2)\n"
     "      --wall-clock D    deadline (90s, 10m): then wall_clock_exceeded\n"
     "      --cpu-time D      CPU-time budget: then cpu_exceeded\n"
     "      --runtime R       default, gvisor, crun or runc\n"
     "      --rootfs R        host (read-only host /usr, /bin, /lib*) or a directory\n"
     "      --image REF       run a pulled image's root and config (stockade image pull)\n"
     "      --workspace DIR   bind DIR read-write at /workspace (default: a fresh one)\n"
     "      --state-dir DIR   state directory (default $STOCKADE_STATE_DIR or\n"
     "                        /var/lib/stockade)\n"
     "  -e NAME=VALUE         set an environment variable (repeatable)\n"
     "  -o, --output FMT      text (default) or json: one result object on the last line\n"
     "      --no-network      loopback only: no veth, no egress at all (stricter than any\n"
     "                        egress rule)\n"
     "      --dry-run         print the sandbox's contract (explain, flags included)\n"
     "                        and the runtime it would use; run nothing\n"
     "\n"
     "Exit status: the workload's (128+N when killed by signal N), 1 invalid input,\n"
     "2 usage error, 125 the sandbox could not be run.\n"},
    {"create", cmd_create, "create a long-lived sandbox and start its workload",
     "stockade create -f FILE [--env ENV] [--pool NAME] [-o text|json]\n"
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
    {"exec", cmd_exec, "run a command in a ready sandbox",
     "stockade exec ID [-i] [-t] [-e K=V]... [-w DIR] -- CMD [ARGS...]\n"
     "\n"
     "Runs CMD inside sandbox ID, as the sandbox user, with the sandbox's limits. The\n"
     "exit status is CMD's (128+N when a signal N ended it); 125 when stockade could\n"
     "not run it. The audit trail records CMD and the caller.\n"
     "\n"
     "  -i, --interactive   send stdin to CMD (otherwise CMD's stdin is closed)\n"
     "  -t, --tty           give CMD a terminal (stdout and stderr merged)\n"
     "  -e NAME=VALUE       add an environment variable (repeatable)\n"
     "  -w, --workdir DIR   working directory inside the sandbox\n"
     "\n"
     "On the sim backend nothing is executed: exec is audited and fails (125) with\n"
     "\"simulated: nothing was executed\".\n"},
    {"logs", cmd_logs, "print a sandbox's output",
     "stockade logs ID [-f] [--since D|TIME]\n"
     "\n"
     "Prints what the workload wrote, stdout to stdout and stderr to stderr. Each\n"
     "sandbox keeps the last 8 to 16 MiB of output (two rotated files).\n"
     "\n"
     "  -f, --follow        keep printing until the sandbox ends\n"
     "      --since X       only output since a duration ago (10m) or an RFC 3339 UTC\n"
     "                      time (2026-11-23T10:00:00Z)\n"},
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
     "stockade ls [-a] [-o table|json|yaml]\n"
     "\n"
     "  -a, --all           include deleted sandboxes\n"
     "  -o, --output FMT    table (default), json or yaml\n"},
    {"get", cmd_get, "show one sandbox",
     "stockade get ID [-o table|json|yaml]\n"
     "\n"
     "ID is a sandbox id or a name. json and yaml include the last result.\n"},
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
     "stockade verify ID|FILE [--to IP:PORT]... [--timeout-ms N] [--env ENV] [-o text|json]\n"
     "\n"
     "Runs stockade-probe inside sandbox ID and checks every claim `explain` makes:\n"
     "non-root, no capabilities, no_new_privs, seccomp, read-only root, writable\n"
     "/workspace and /tmp, no service-account token, no runtime sockets, the memory\n"
     "and pids limits in effect, and, for each --to, reachability against the egress\n"
     "model (`netpol trace`). Prints claim / expected / observed / verdict. With FILE,\n"
     "a sandbox is created from it with no workload, verified and removed.\n"
     "See docs/verify.md.\n"
     "\n"
     "  -t, --to IP:PORT      a destination to try (repeatable; numeric, [v6]:port)\n"
     "      --timeout-ms N    per connection attempt (default 1500)\n"
     "  -e, --env ENV         FILE's EnvironmentConfig\n"
     "  -o, --output FMT      text (default) or json\n"
     "\n"
     "Exit status: 0 every claim holds, 1 a claim failed, 2 usage, 125 no verdict.\n"},
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
     "                [--state-dir DIR] [--request-timeout S]\n"
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
     "\n"
     "A bad policy is reported with file:line:col and serve does not start.\n"
     "\n"
     "Exit status: 0 stopped by SIGINT/SIGTERM, 1 could not start, 2 usage error.\n"},
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
     "unreadable store, 2 usage error.\n"},
    {"validate", cmd_validate, "check Sandbox and EnvironmentConfig files",
     "stockade validate [--env ENV] [-o text|json] FILE...\n"
     "\n"
     "Parses every document in each FILE, resolves each Sandbox against ENV (or the\n"
     "hard defaults) and reports every problem with file:line:column and field path.\n"
     "\n"
     "  -e, --env ENV       resolve Sandboxes against this EnvironmentConfig\n"
     "  -o, --output FMT    text (default) or json\n"
     "\n"
     "Exit status: 0 valid, 1 invalid, 2 usage error.\n"},
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
     "stockade assess [--env ENV] [-o text|json] [--fail-above LEVEL] FILE\n"
     "\n"
     "Lists findings (privilege, API access, egress, storage, credentials), each with a\n"
     "severity and a reason, and the overall level: hardened, trusted-automation or\n"
     "operator-exception.\n"
     "\n"
     "  -e, --env ENV           the operator's EnvironmentConfig\n"
     "  -o, --output FMT        text (default) or json\n"
     "      --fail-above LEVEL  exit 3 when the level is above LEVEL\n"},
    {"netpol", cmd_netpol, "trace egress decisions without running anything",
     "stockade netpol trace [--env ENV] [--backend local] (--to DEST | --namespace NS |\n"
     "                      --matrix) [-o text|json] FILE\n"
     "\n"
     "Evaluates the sandbox's egress model (Kubernetes NetworkPolicy semantics: default\n"
     "deny once any policy selects it, allows add up) for a destination and prints the\n"
     "verdict and the policy and rule that decided it. Nothing is sent anywhere.\n"
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
    {"doctor", cmd_doctor, "check an EnvironmentConfig and a live cluster",
     "stockade doctor [--env ENV] [--kubeconfig FILE] [--context NAME] [-o text|json]\n"
     "\n"
     "Checks the operator's EnvironmentConfig: metadata endpoints in blacklistIPs (IPv4\n"
     "and IPv6), podCIDRs and serviceCIDR, the externalEgress default, excludePolicies\n"
     "with a stated replacement, token and role defaults, the privilege default. Each\n"
     "check passes, warns or fails with why and what to change.\n"
     "\n"
     "With --kubeconfig or --context it checks that cluster too: the API server answers,\n"
     "the identity may do what the kubernetes driver does, Pod Security admission\n"
     "rejects a privileged Pod under enforce=restricted, the gvisor RuntimeClass and the\n"
     "admission guard are installed, NetworkPolicies are accepted.\n"
     "\n"
     "  -e, --env ENV       the EnvironmentConfig to check\n"
     "  --kubeconfig FILE   a cluster to check ($KUBECONFIG when only --context is given)\n"
     "  --context NAME      the kubeconfig context (default: its current-context)\n"
     "  -o, --output FMT    text (default) or json\n"
     "\n"
     "Exit status: 0 no failed check, 1 a check failed or ENV is invalid, 2 usage error.\n"},
    {"reference", cmd_reference, "print the spec reference (docs/spec.md)",
     "stockade reference\n"
     "\n"
     "Prints the Markdown reference of every field, generated from the field table.\n"},
    {"version", cmd_version, "print the version", "stockade version\n"},
    /* stockade's own processes (no summary: not listed) */
    {"__monitor", cmd_internal_monitor, NULL, "stockade __monitor MODE ID (internal)\n"},
    {"__pool-refill", cmd_internal_refill, NULL, "stockade __pool-refill POOL (internal)\n"},
    {"__gateway-worker", cmd_internal_gateway_worker, NULL,
     "stockade __gateway-worker (internal: started by serve)\n"},
    {"help", cmd_help, "show help for a command", "stockade help [COMMAND]\n"},
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
    if (c)
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
    fprintf(stderr, "\nTry 'stockade %s --help'.\n", command);
    return EXIT_USAGE;
}

static void main_usage(FILE *to)
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
    fprintf(to, "\nClient options (before COMMAND): the commands create, exec, logs, stop,\n"
                "start, rm, ls, get, pool and audit ID then talk to `stockade serve`\n"
                "(docs/gateway.md) instead of this host's state:\n"
                "  --server URL        http(s)://HOST:PORT or unix:PATH ($STOCKADE_SERVER)\n"
                "  --token TOKEN       a bearer token ($STOCKADE_TOKEN)\n"
                "  --token-file FILE   its first line is the token ($STOCKADE_TOKEN_FILE)\n"
                "  --cacert FILE       CA certificates to verify the server with\n"
                "  --cert FILE --key FILE  a client certificate (mTLS)\n"
                "\nRun 'stockade COMMAND --help' for a command's options.\n");
}

/* The commands that work as clients of `stockade serve`. */
static const char *const remote_commands[] = {"create", "exec", "logs", "stop",  "start", "rm",
                                              "ls",     "get",  "pool", "audit", "help"};

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
            fprintf(stderr, "stockade: unknown option '%s'\n", arg);
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
        main_usage(stdout);
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
    static const char *const names[] = {"create", "exec", "logs",  "stop",   "start", "rm", "ls",
                                        "get",    "pool", "audit", "verify", "serve", "gc"};
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
        main_usage(stderr);
        return EXIT_USAGE;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        main_usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--version"))
        return cmd_version(1, argv);
    const struct cli_command *c = command_find(argv[1]);
    if (!c) {
        fprintf(stderr, "stockade: unknown command '%s'\n", argv[1]);
        main_usage(stderr);
        return EXIT_USAGE;
    }
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
