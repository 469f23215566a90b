/* SPDX-License-Identifier: Apache-2.0 */
/* stockade netpol trace: egress decisions without running anything. */
#include "cli.h"
#include "driver/driver.h"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <jansson.h>
#include <string.h>
#include <strings.h>

#define MAX_DESTS 64

struct dest_arg {
    const char *text; /* as given, for output */
    struct stk_dest d;
    char host[254]; /* a host name: decided by allowHosts (the egress proxy) */
};

/* NAME[:PORT] (443 when omitted), lowercased into ret; false when arg is
 * not a host name. */
static bool parse_host(const char *arg, char ret[254], uint16_t *ret_port)
{
    char buf[270];
    if (strlen(arg) >= sizeof(buf))
        return false;
    strcpy(buf, arg);
    for (char *q = buf; *q; q++)
        if (*q >= 'A' && *q <= 'Z')
            *q = (char)(*q - 'A' + 'a');
    char *colon = strchr(buf, ':');
    long port = 443;
    if (colon) {
        char *end = NULL;
        *colon = '\0';
        port = strtol(colon + 1, &end, 10);
        if (!colon[1] || *end || port < 1 || port > 65535)
            return false;
    }
    size_t n = strlen(buf);
    if (n == 0 || n > 253 || !stk_dns_subdomain_valid(buf) || strspn(buf, "0123456789.") == n)
        return false;
    memcpy(ret, buf, n + 1);
    *ret_port = (uint16_t)port;
    return true;
}

/* A host name's verdict: the allowHosts rule, through the egress proxy. */
static void host_verdict(const struct stk_boundary *b, const struct dest_arg *a, bool *ret_allowed,
                         long *ret_rule, struct stk_buf *dt, struct stk_buf *rt)
{
    long i = stk_egress_host_rule(b, a->host, a->d.port);
    stk_buf_printf(dt, "%s:%u/TCP", a->host, a->d.port);
    *ret_allowed = i >= 0;
    *ret_rule = i;
    if (i >= 0) {
        const struct stk_allow_host *h = &b->allow_hosts[i];
        stk_buf_printf(rt,
                       "spec.network.allowHosts[%ld] %s%s:%u, through the egress proxy (which "
                       "refuses the name if it resolves to a loopback, link-local, blacklisted, "
                       "pod, service, sandbox or host address)",
                       i, h->wildcard ? "*." : "", h->name, h->port);
    } else {
        stk_buf_printf(rt, "no spec.network.allowHosts entry names it (host names are reached "
                           "only through the egress proxy)");
    }
}

/* ADDR, ADDR:PORT, ADDR:PORT/PROTO, [V6]:PORT/PROTO, or :PORT/PROTO for a
 * pod named only by --namespace. */
static int parse_to(const char *arg, struct stk_dest *d, const char **ret_why)
{
    char buf[128];
    if (strlen(arg) >= sizeof(buf)) {
        *ret_why = "destination too long";
        return -1;
    }
    strcpy(buf, arg);
    d->protocol = STK_PROTO_TCP;
    char *proto = strchr(buf, '/');
    if (proto) {
        *proto++ = '\0';
        int p = -1;
        for (int i = 0; i < _STK_PROTO_N; i++)
            if (!strcasecmp(proto, stk_protocol_names[i]))
                p = i;
        if (p < 0) {
            *ret_why = "protocol must be tcp, udp or sctp";
            return -1;
        }
        d->protocol = (enum stk_protocol)p;
    }
    char *addr = buf, *port = NULL;
    if (buf[0] == '[') {
        char *close = strchr(buf, ']');
        if (!close) {
            *ret_why = "missing ']' after an IPv6 address";
            return -1;
        }
        *close = '\0';
        addr = buf + 1;
        if (close[1] == ':')
            port = close + 2;
        else if (close[1]) {
            *ret_why = "expected ':PORT' after ']'";
            return -1;
        }
    } else if (strchr(buf, ':') == strrchr(buf, ':') && strchr(buf, ':')) {
        port = strchr(buf, ':');
        *port++ = '\0';
    }
    if (port) {
        char *end = NULL;
        long v = strtol(port, &end, 10);
        if (!*port || *end || v < 1 || v > 65535) {
            *ret_why = "port must be 1-65535";
            return -1;
        }
        d->port = (uint16_t)v;
    }
    if (*addr) {
        if (stk_addr_parse(addr, &d->addr) < 0) {
            *ret_why = "not an IP address (NetworkPolicy is IP-only; host names belong to the "
                       "egress proxy)";
            return -1;
        }
        d->has_addr = true;
    }
    return 0;
}

static void reason_text(const struct stk_boundary *b, const struct stk_verdict *v,
                        struct stk_buf *out)
{
    char cb[STK_CIDR_STRLEN];
    if (!v->isolated) {
        stk_buf_puts(out, "no policy selects the sandbox: egress is unrestricted");
        return;
    }
    if (v->allowed) {
        const struct stk_epolicy *p = NULL;
        for (size_t i = 0; i < b->egress.n && !p; i++)
            if (b->egress.policies[i].id == v->policy)
                p = &b->egress.policies[i];
        stk_buf_printf(out, "%s rule %zu", stk_netpol_names[v->policy], v->rule);
        if (p) {
            stk_buf_puts(out, ": ");
            stk_erule_describe(b, &p->rules[v->rule], out);
        }
        return;
    }
    if (v->excepted)
        stk_buf_printf(out, "%s is excepted from %s rule %zu; no other rule allows it",
                       stk_cidr_format(&v->except_cidr, cb), stk_netpol_names[v->except_policy],
                       v->except_rule);
    else
        stk_buf_printf(out, "no rule allows it (%s)",
                       b->egress.excluded[STK_NETPOL_DENY] ? "the sandbox is isolated"
                                                           : "deny-egress");
}

static void dest_text(const struct stk_dest *d, struct stk_buf *out)
{
    char cb[STK_CIDR_STRLEN];
    if (d->has_addr) {
        stk_cidr_format(&d->addr, cb);
        *strchr(cb, '/') = '\0';
        stk_buf_printf(out, d->addr.family == STK_FAMILY_V6 && d->port ? "[%s]" : "%s", cb);
    }
    if (d->namespace)
        stk_buf_printf(out, "%spod in %s", d->has_addr ? " " : "", d->namespace);
    if (d->port)
        stk_buf_printf(out, ":%u", d->port);
    stk_buf_printf(out, "/%s", stk_protocol_names[d->protocol]);
}

/* ---- --backend local: what the local driver adds ---------------------------- */

#define MAX_HOST_ADDRS 256

struct local_facts {
    struct stk_local_facts f;
    struct stk_cidr addrs[MAX_HOST_ADDRS];
};

/* This host's addresses (of the network namespace trace runs in: the one
 * the bridge lives in), the pool and the operator's nat/routed switches
 * from the EnvironmentConfig. */
static int local_facts_load(const struct cli_sandbox *s, struct local_facts *ret)
{
    struct stk_net_config c;
    stk_net_config_default(&c);
    _cleanup_error_ struct stk_error *err = NULL;
    const struct stk_envconfig *env = s->env_ds ? s->env_ds->docs[0].env : NULL;
    if (stk_net_config_apply_env(&c, env, &err) < 0) {
        fprintf(stderr, "stockade netpol: %s\n", err->msg);
        return EXIT_INVALID;
    }
    *ret = (struct local_facts){
        .f = {.pool4 = c.pool4, .pool6 = c.pool6, .nat = c.nat, .routed = c.routed}};
    struct ifaddrs *ifs = NULL;
    if (getifaddrs(&ifs) == 0) {
        for (struct ifaddrs *i = ifs; i && ret->f.n_host_addrs < MAX_HOST_ADDRS; i = i->ifa_next) {
            char text[64];
            struct stk_cidr a;
            if (!i->ifa_addr ||
                (i->ifa_addr->sa_family != AF_INET && i->ifa_addr->sa_family != AF_INET6))
                continue;
            const void *raw =
                i->ifa_addr->sa_family == AF_INET
                    ? (const void *)&((const struct sockaddr_in *)i->ifa_addr)->sin_addr
                    : (const void *)&((const struct sockaddr_in6 *)i->ifa_addr)->sin6_addr;
            if (inet_ntop(i->ifa_addr->sa_family, raw, text, sizeof(text)) &&
                stk_addr_parse(text, &a) == 0)
                ret->addrs[ret->f.n_host_addrs++] = a;
        }
        freeifaddrs(ifs);
    }
    /* the bridge's addresses, whether or not the bridge is up right now */
    for (int fam = 0; fam < 2; fam++) {
        const struct stk_cidr *pool = fam ? &c.pool6 : &c.pool4;
        if (!pool->family || ret->f.n_host_addrs == MAX_HOST_ADDRS)
            continue;
        struct stk_cidr gw = *pool;
        gw.addr[pool->family == STK_FAMILY_V4 ? 3 : 15] |= 1;
        gw.prefix = pool->family == STK_FAMILY_V4 ? 32 : 128;
        ret->addrs[ret->f.n_host_addrs++] = gw;
    }
    ret->f.host_addrs = ret->addrs;
    return 0;
}

/* The destinations a matrix shows when none are given: every class the
 * egress model distinguishes. */
static size_t default_matrix(const struct stk_boundary *b, struct dest_arg *out)
{
    static const char *const addrs[] = {
        "169.254.169.254:80", "[fd00:ec2::254]:80", "169.254.42.42:80", "[fd00:42::42]:80",
        "10.0.0.10:443",      "192.168.1.10:443",   "203.0.113.10:443", "[2001:db8::10]:443",
    };
    size_t n = 0;
    const char *why;
    out[n].d = (struct stk_dest){.namespace = b->namespace, .port = 8080};
    out[n++].text = "";
    out[n].d = (struct stk_dest){.namespace = "kube-system", .port = 53, .protocol = STK_PROTO_UDP};
    out[n++].text = "";
    out[n].d = (struct stk_dest){.namespace = "other", .port = 80};
    out[n++].text = "";
    for (size_t i = 0; i < STK_ARRAY_SIZE(addrs); i++) {
        out[n].d = (struct stk_dest){0};
        if (parse_to(addrs[i], &out[n].d, &why) == 0)
            out[n++].text = addrs[i];
    }
    return n;
}

static int netpol_trace(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},       {"to", required_argument, NULL, 't'},
        {"namespace", required_argument, NULL, 'n'}, {"labels", required_argument, NULL, 'l'},
        {"matrix", no_argument, NULL, 'm'},          {"output", required_argument, NULL, 'o'},
        {"backend", required_argument, NULL, 'b'},   {NULL, 0, NULL, 0},
    };
    enum stk_backend backend = _STK_BACKEND_N; /* the model alone */
    enum cli_output out = CLI_OUT_TEXT;
    const char *env_file = NULL, *namespace = NULL;
    char *labels_arg = NULL;
    bool matrix = false;
    struct dest_arg dests[MAX_DESTS];
    size_t n = 0;
    struct stk_kv labels[32];
    size_t n_labels = 0;
    const char *why = NULL;
    int c;

    while ((c = getopt_long(argc, argv, "e:t:n:l:mo:b:", opts, NULL)) != -1) {
        switch (c) {
        case 'b':
            if (cli_parse_backend("netpol", optarg, &backend) != 0)
                return EXIT_USAGE;
            break;
        case 'e':
            env_file = optarg;
            break;
        case 't':
            if (n == MAX_DESTS)
                return cli_usage_error("netpol", "at most %d --to destinations", MAX_DESTS);
            dests[n].d = (struct stk_dest){0};
            dests[n].host[0] = '\0';
            if (parse_host(optarg, dests[n].host, &dests[n].d.port))
                dests[n].d.protocol = STK_PROTO_TCP;
            else if (parse_to(optarg, &dests[n].d, &why) < 0)
                return cli_usage_error("netpol", "--to %s: %s", optarg, why);
            dests[n++].text = optarg;
            break;
        case 'n':
            if (!stk_dns_label_valid(optarg))
                return cli_usage_error("netpol", "--namespace must be a DNS-1123 label");
            namespace = optarg;
            break;
        case 'l':
            labels_arg = optarg;
            break;
        case 'm':
            matrix = true;
            break;
        case 'o':
            if (cli_parse_output("netpol", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        default:
            return cli_usage("netpol", stderr, EXIT_USAGE);
        }
    }
    if (optind != argc - 1)
        return cli_usage_error("netpol", "trace needs exactly one FILE");
    for (char *save = NULL, *kv = labels_arg ? strtok_r(labels_arg, ",", &save) : NULL; kv;
         kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq || n_labels == STK_ARRAY_SIZE(labels))
            return cli_usage_error("netpol", "--labels takes up to 32 KEY=VALUE pairs");
        *eq = '\0';
        labels[n_labels++] = (struct stk_kv){.key = kv, .value = eq + 1};
    }
    if (n == 0 && !matrix && namespace) {
        dests[0].d = (struct stk_dest){0};
        dests[n++].text = "";
    }
    if (n == 0 && !matrix)
        return cli_usage_error("netpol", "trace needs --to, --namespace or --matrix");

    _cleanup_cli_sandbox_ struct cli_sandbox s = {0};
    int r = cli_sandbox_load(argv[optind], env_file, &s);
    if (r != 0)
        return r;
    if (matrix && n == 0)
        n = default_matrix(s.b, dests);
    /* the local backend enforces more than the model: say where */
    static struct local_facts lf;
    if (backend == STK_BACKEND_LOCAL && (r = local_facts_load(&s, &lf)) != 0)
        return r;
    for (size_t i = 0; i < n; i++)
        if (dests[i].text[0] || !dests[i].d.namespace) {
            if (namespace)
                dests[i].d.namespace = namespace;
            dests[i].d.labels = labels;
            dests[i].d.n_labels = n_labels;
        }

    json_t *results = json_array();
    if (out == CLI_OUT_TEXT && n > 1)
        printf("%-36s %-7s %s\n", "DESTINATION", "VERDICT", "DECIDED BY");
    for (size_t i = 0; i < n; i++) {
        struct stk_verdict v;
        if (dests[i].host[0]) {
            _cleanup_buf_ struct stk_buf dt = {0}, rt = {0};
            bool allowed;
            long rule;
            host_verdict(s.b, &dests[i], &allowed, &rule, &dt, &rt);
            if (out == CLI_OUT_JSON) {
                json_t *j = json_pack("{s:s,s:s,s:s}", "destination", stk_buf_str(&dt), "verdict",
                                      allowed ? "allow" : "deny", "via", "egress-proxy");
                if (allowed)
                    json_object_set_new(j, "allowHosts", json_integer(rule));
                json_object_set_new(j, "reason", json_string(stk_buf_str(&rt)));
                json_array_append_new(results, j);
            } else if (n > 1) {
                printf("%-36s %-7s %s\n", stk_buf_str(&dt), allowed ? "allow" : "deny",
                       stk_buf_str(&rt));
            } else {
                printf("%s %s: %s\n", allowed ? "allow" : "deny", stk_buf_str(&dt),
                       stk_buf_str(&rt));
            }
            continue;
        }
        if (stk_egress_decide(s.b, &dests[i].d, &v) < 0) {
            json_decref(results);
            fprintf(stderr,
                    "%s: deployment.model is injection: the workload's own "
                    "NetworkPolicies govern its traffic; stockade adds none to trace\n",
                    argv[optind]);
            return EXIT_INVALID;
        }
        _cleanup_buf_ struct stk_buf dt = {0}, rt = {0};
        dest_text(&dests[i].d, &dt);
        reason_text(s.b, &v, &rt);
        enum stk_local_path lp = backend == STK_BACKEND_LOCAL
                                     ? stk_egress_local(&lf.f, &dests[i].d, &v)
                                     : STK_LOCAL_AS_MODELLED;
        bool model_allowed = v.allowed;
        if (lp != STK_LOCAL_AS_MODELLED) {
            v.allowed = lp == STK_LOCAL_LOOPBACK;
            stk_buf_printf(&rt, "; locally %s", stk_local_path_reasons[lp]);
        }
        if (out == CLI_OUT_JSON) {
            json_t *j = json_object();
            json_object_set_new(j, "destination", json_string(stk_buf_str(&dt)));
            json_object_set_new(j, "verdict", json_string(v.allowed ? "allow" : "deny"));
            if (v.isolated && v.allowed) {
                json_object_set_new(j, "policy", json_string(stk_netpol_names[v.policy]));
                json_object_set_new(j, "rule", json_integer((json_int_t)v.rule));
            } else if (v.excepted) {
                json_object_set_new(j, "exceptedBy",
                                    json_string(stk_netpol_names[v.except_policy]));
                json_object_set_new(j, "rule", json_integer((json_int_t)v.except_rule));
            }
            json_object_set_new(j, "reason", json_string(stk_buf_str(&rt)));
            if (lp != STK_LOCAL_AS_MODELLED) {
                static const char *const local_names[_STK_LOCAL_PATH_N] = {
                    [STK_LOCAL_LOOPBACK] = "loopback",
                    [STK_LOCAL_HOST_DROPPED] = "host",
                    [STK_LOCAL_OFFHOST_DROPPED] = "offHost",
                };
                json_object_set_new(j, "model", json_string(model_allowed ? "allow" : "deny"));
                json_object_set_new(j, "local", json_string(local_names[lp]));
            }
            json_array_append_new(results, j);
        } else if (n > 1) {
            printf("%-36s %-7s %s\n", stk_buf_str(&dt), v.allowed ? "allow" : "deny",
                   stk_buf_str(&rt));
        } else {
            printf("%s %s: %s\n", v.allowed ? "allow" : "deny", stk_buf_str(&dt), stk_buf_str(&rt));
        }
    }
    if (out == CLI_OUT_JSON)
        cli_print_json(n == 1 && !matrix ? json_incref(json_array_get(results, 0))
                                         : json_incref(results));
    json_decref(results);
    return 0;
}

int cmd_netpol(int argc, char **argv)
{
    if (argc < 2 || strcmp(argv[1], "trace"))
        return cli_usage_error("netpol", "the only subcommand is 'trace'");
    return netpol_trace(argc - 1, argv + 1);
}
