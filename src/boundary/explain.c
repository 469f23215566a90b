/* SPDX-License-Identifier: Apache-2.0 */
/*
 * explain: the boundary told plainly. Each statement carries the origins of
 * the values it rests on, so a reader can see whether a line comes from the
 * Sandbox, the operator's EnvironmentConfig or a hard default. The same
 * contract renders as text and as JSON.
 */
#include "internal.h"

#include <jansson.h>
#include <string.h>

const char *const stk_backend_names[_STK_BACKEND_N] = {"local", "kubernetes", "sim"};

#define MAX_ORIGINS 4

struct statement {
    const char *text;
    struct stk_origin origins[MAX_ORIGINS];
    size_t n_origins;
};

enum section_id {
    SEC_FILESYSTEM,
    SEC_KUBERNETES,
    SEC_NETWORK,
    SEC_PRIVILEGES,
    SEC_RESOURCES,
    SEC_CREDENTIALS,
    SEC_PERSISTENCE,
    SEC_RETENTION,
    SEC_CAVEATS,
    _SEC_N
};

static const struct {
    const char *id;
    const char *title;
} sections[_SEC_N] = {
    [SEC_FILESYSTEM] = {"filesystem", "What it can read and write"},
    [SEC_KUBERNETES] = {"kubernetes", "Kubernetes API"},
    [SEC_NETWORK] = {"network", "Network"},
    [SEC_PRIVILEGES] = {"privileges", "Privileges"},
    [SEC_RESOURCES] = {"resources", "Quotas"},
    [SEC_CREDENTIALS] = {"credentials", "Credentials"},
    [SEC_PERSISTENCE] = {"persistence", "What persists"},
    [SEC_RETENTION] = {"retention", "What the operator keeps"},
    [SEC_CAVEATS] = {"caveats", "Not enforced on this backend"},
};

struct stk_contract {
    struct stk_arena *arena;
    const struct stk_boundary *b;
    const struct stk_backend_facts *facts;
    struct statement *items[_SEC_N];
    size_t n[_SEC_N];
    size_t cap[_SEC_N];
};

/* Adds a statement; the variadic list is origins (pointers), NULL-terminated. */
STK_PRINTF(3, 0)
static struct statement *vsay(struct stk_contract *c, enum section_id s, const char *fmt,
                              va_list ap)
{
    if (c->n[s] == c->cap[s]) {
        size_t cap = c->cap[s] ? c->cap[s] * 2 : 8;
        struct statement *items = stk_arena_array(c->arena, cap, sizeof(*items));
        if (c->n[s])
            memcpy(items, c->items[s], c->n[s] * sizeof(*items));
        c->items[s] = items;
        c->cap[s] = cap;
    }
    struct statement *st = &c->items[s][c->n[s]++];
    _cleanup_free_ char *text = stk_xvasprintf(fmt, ap);
    st->text = stk_arena_strdup(c->arena, text);
    return st;
}

STK_PRINTF(3, 4)
static struct statement *say(struct stk_contract *c, enum section_id s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    struct statement *st = vsay(c, s, fmt, ap);
    va_end(ap);
    return st;
}

static struct statement *from(struct statement *st, const struct stk_origin *o)
{
    if (st->n_origins < MAX_ORIGINS)
        st->origins[st->n_origins++] = *o;
    return st;
}

static const char *bytes(struct stk_contract *c, int64_t v)
{
    char buf[32];
    stk_bytes_format(v, buf, sizeof(buf));
    return stk_arena_strdup(c->arena, buf);
}

static const char *duration(struct stk_contract *c, int64_t ms)
{
    char buf[64];
    stk_duration_format(ms, buf, sizeof(buf));
    return stk_arena_strdup(c->arena, buf);
}

/* ---- sections -------------------------------------------------------------- */

static void explain_filesystem(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    enum stk_backend be = c->facts->backend;

    if (be == STK_BACKEND_SIM) {
        say(c, SEC_FILESYSTEM,
            "Nothing is read or written: the simulator models the sandbox "
            "and executes nothing.");
        return;
    }
    if (be == STK_BACKEND_KUBERNETES) {
        if (b->image && c->facts->image_digest)
            say(c, SEC_FILESYSTEM,
                "Reads its image %s, pinned to %s (the Pod names that digest, so the node runs "
                "exactly what was verified); the root filesystem is read-only.",
                b->image, c->facts->image_digest);
        else if (b->image)
            say(c, SEC_FILESYSTEM,
                "Reads its image %s, not pinned to a digest (not pulled into this state "
                "directory: the node resolves the tag); the root filesystem is read-only.",
                b->image);
        else
            say(c, SEC_FILESYSTEM, "No image is set: spec.image is required to run on Kubernetes.");
    } else if (b->image) {
        if (c->facts->image_digest)
            say(c, SEC_FILESYSTEM,
                "Reads image %s (%s) from the local store, its root read-only and shared with "
                "every sandbox of that image.",
                b->image, c->facts->image_digest);
        else
            say(c, SEC_FILESYSTEM,
                "Reads image %s, which is not in the local store yet (stockade image pull %s).",
                b->image, b->image);
        if (c->facts->image_user)
            say(c, SEC_PRIVILEGES, "Image user: %s.", c->facts->image_user);
    } else if (!strcmp(b->rootfs, "host")) {
        from(say(c, SEC_FILESYSTEM,
                 "Reads the host's /usr, /bin, /lib*, /sbin and a minimal /etc, read-only; never "
                 "the host's /root, /home, /var, /run or any socket."),
             &b->rootfs_origin);
    } else {
        from(say(c, SEC_FILESYSTEM, "Reads its root filesystem %s, read-only.", b->rootfs),
             &b->rootfs_origin);
    }
    from(say(c, SEC_FILESYSTEM,
             "Writes /workspace (up to %s, emptied on stop) and /tmp (%s, in memory); "
             "nothing else is writable.",
             bytes(c, b->limits.storage), bytes(c, b->tmp_size)),
         &b->storage_origin);
    if (b->home)
        from(say(c, SEC_FILESYSTEM, "Writes its home directory, a %s volume%s.",
                 bytes(c, b->home_size),
                 b->home_persist ? " kept across stop and start" : " emptied on stop"),
             &b->home_origin);
    else
        from(say(c, SEC_FILESYSTEM, "Has no home volume."), &b->home_origin);
    if (b->model == STK_MODEL_INJECTION) {
        bool ptrace = false;
        for (size_t i = 0; i < b->n_caps; i++)
            ptrace |= !strcmp(b->caps[i], "SYS_PTRACE");
        from(say(c, SEC_FILESYSTEM,
                 "Shares the PID namespace of %s %s's pods: it sees every process there, and "
                 "their files through /proc/<pid>/root%s.",
                 stk_workload_kind_names[b->target->kind.v], b->target->name.v,
                 ptrace ? "; with SYS_PTRACE it can attach a debugger to them" : ""),
             &b->model_origin);
    }
}

static void explain_kubernetes(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    const char *role = stk_role_names[b->kube_role];

    if (c->facts->backend == STK_BACKEND_LOCAL) {
        from(say(c, SEC_KUBERNETES,
                 "No Kubernetes API: the local backend has none, and no "
                 "token exists%s.",
                 b->kube_access ? " (kubernetesAccess applies on Kubernetes only)" : ""),
             &b->kube_access_origin);
        return;
    }
    if (!b->kube_access) {
        struct statement *st = from(say(c, SEC_KUBERNETES,
                                        "Cannot call the Kubernetes API: no service-account "
                                        "token is mounted%s.",
                                        b->vcluster ? ", not even for its vcluster" : ""),
                                    &b->kube_access_origin);
        if (b->vcluster)
            from(st, &b->vcluster_origin);
        return;
    }
    if (b->vcluster) {
        from(from(from(say(c, SEC_KUBERNETES,
                           "Can call a virtual Kubernetes API (vcluster) as %s there, through an "
                           "expiring token. The host cluster's API stays out of reach, and "
                           "workloads it starts still run as pods under this sandbox's "
                           "namespace policy.",
                           role),
                       &b->vcluster_origin),
                  &b->kube_access_origin),
             &b->kube_role_origin);
        return;
    }
    from(from(say(c, SEC_KUBERNETES,
                  "Can call the Kubernetes API as %s in namespace %s, through an expiring "
                  "projected token. stockade's %s role omits networkpolicies and every RBAC "
                  "escalation verb.",
                  role, b->namespace, role),
              &b->kube_access_origin),
         &b->kube_role_origin);
}

/* What the local enforcer adds to any egress model (stk_egress_local(),
 * src/render/nft.c), so that explain and `netpol trace --backend local`
 * say the same. */
static void local_network_caveats(struct stk_contract *c)
{
    if (c->facts->backend != STK_BACKEND_LOCAL)
        return;
    say(c, SEC_NETWORK,
        "On this host the host itself is not a destination: its own, broadcast and multicast "
        "addresses are dropped whatever the rules allow, except the services stockade offers "
        "on the bridge address and the cluster resolver.");
    say(c, SEC_NETWORK,
        "On this host nothing leaves the machine unless the operator sets data.local.nat or "
        "data.local.routed; `stockade netpol trace --backend local` shows what that drops.");
}

/* spec.network.allowHosts: what the egress proxy lets through (src/proxy). */
static void explain_allow_hosts(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    if (!b->n_allow_hosts)
        return;
    struct stk_buf t = {0};
    for (size_t i = 0; i < b->n_allow_hosts; i++)
        stk_buf_printf(&t, "%s%s%s:%u", i ? ", " : "", b->allow_hosts[i].wildcard ? "*." : "",
                       b->allow_hosts[i].name, b->allow_hosts[i].port);
    if (c->facts->backend == STK_BACKEND_LOCAL && c->facts->runtime_is_gvisor)
        /* gVisor's loopback is its own: the proxy is on the host side */
        from(say(c, SEC_NETWORK,
                 "Host names through the egress proxy, on the host side of the sandbox's "
                 "network (gVisor's loopback is its own): at the bridge address, the sandbox's "
                 "gateway, on a port of the sandbox's own (%d + its address index; HTTP_PROXY "
                 "and HTTPS_PROXY name it), which nftables open to this sandbox's address alone "
                 "and the proxy checks again: %s. The proxy resolves each name itself and "
                 "refuses loopback, link-local, multicast, blacklisted, pod, service, sandbox "
                 "and host addresses; a CONNECT tunnel must carry TLS whose server name is the "
                 "CONNECT name. Every decision is audited.",
                 STK_PROXY_HOST_PORT_BASE, stk_buf_str(&t)),
             &b->allow_hosts_origin);
    else if (c->facts->backend == STK_BACKEND_LOCAL)
        from(say(c, SEC_NETWORK,
                 "Host names through the egress proxy on the sandbox's own loopback "
                 "(HTTP_PROXY and HTTPS_PROXY are set to http://127.0.0.1:%d): %s. The proxy "
                 "resolves each name itself and refuses loopback, link-local, multicast, "
                 "blacklisted, pod, service, sandbox and host addresses; a CONNECT tunnel "
                 "must carry TLS whose server name is the CONNECT name. Every decision is "
                 "audited.",
                 STK_PROXY_PORT, stk_buf_str(&t)),
             &b->allow_hosts_origin);
    else if (c->facts->backend == STK_BACKEND_KUBERNETES && b->model != STK_MODEL_INJECTION)
        from(say(c, SEC_NETWORK,
                 "Host names through the egress proxy, a Pod of its own in the sandbox's "
                 "namespace (Deployment and Service stockade-proxy; HTTP_PROXY and HTTPS_PROXY "
                 "point at the Service): %s. The proxy resolves each name itself and refuses "
                 "loopback, link-local, multicast and blacklisted addresses; a CONNECT tunnel "
                 "must carry TLS whose server name is the CONNECT name. It knows the sandbox "
                 "by NetworkPolicy: its ingress admits only the sandbox's Pod, so where the "
                 "CNI does not enforce NetworkPolicy any Pod that reaches the Service can use "
                 "it. Every decision is audited: the sandbox's monitor reads it back from "
                 "the proxy's Pod log.",
                 stk_buf_str(&t)),
             &b->allow_hosts_origin);
    else
        from(say(c, SEC_NETWORK,
                 "spec.network.allowHosts (%s) is not served on this backend: no egress "
                 "proxy runs here, so those names stay unreachable.",
                 stk_buf_str(&t)),
             &b->allow_hosts_origin);
    stk_buf_free(&t);
}

/* Ingress (docs/egress.md, "Ingress"): the declared ports, the namespace's
 * own sandboxes, nothing else. */
static void explain_ingress(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    if (b->n_ports == 0) {
        from(say(c, SEC_NETWORK,
                 "Ingress: no port is declared, so nothing but other sandboxes gets in (%s).",
                 STK_INGRESS_DENY),
             &b->ports_origin);
    } else {
        struct stk_buf t = {0};
        for (size_t i = 0; i < b->n_ports; i++)
            stk_buf_printf(&t, "%s%u (%s)", i ? ", " : "", b->ports[i].port, b->ports[i].name);
        const char *who = c->facts->backend == STK_BACKEND_LOCAL
                              ? "from this host only: `stockade port-forward` and the gateway's "
                                "/v1/sandboxes/{id}/ports/{port}/ route"
                          : c->facts->backend == STK_BACKEND_KUBERNETES
                              ? "through the sandbox's Service, from any pod the cluster lets "
                                "reach it, and `stockade port-forward` (pods/portforward)"
                              : "as modelled";
        from(say(c, SEC_NETWORK, "Ingress: TCP %s admitted, %s (%s).", stk_buf_str(&t), who,
                 STK_INGRESS_DECLARED),
             &b->ports_origin);
        stk_buf_free(&t);
    }
    /* an image's ExposedPorts never widen ingress: only spec.ports does */
    if (c->facts->image_ports)
        say(c, SEC_NETWORK,
            "The image declares ports %s (not exposed): only spec.ports admits a port; declare "
            "one there to reach it.",
            c->facts->image_ports);
    say(c, SEC_NETWORK,
        "Ingress from other sandboxes: as their own egress rules allow (%s); every other "
        "inbound connection is denied (%s).",
        STK_INGRESS_SANDBOX, STK_INGRESS_DENY);
}

static void explain_network(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    const struct stk_egress *eg = &b->egress;

    if (b->model == STK_MODEL_INJECTION) {
        from(say(c, SEC_NETWORK,
                 "Uses the network of %s %s's pods: the workload's own "
                 "policies govern its traffic; stockade adds none.",
                 stk_workload_kind_names[b->target->kind.v], b->target->name.v),
             &b->model_origin);
        return;
    }
    if (eg->n == 0) {
        from(say(c, SEC_NETWORK,
                 "Egress is unrestricted: the operator excluded every "
                 "generated policy."),
             &eg->exclude_origin);
        explain_ingress(c);
        local_network_caveats(c);
        return;
    }
    /* Any policy selecting the pod isolates it; deny-egress only makes that
     * explicit, so the statement holds whichever policies remain. */
    bool dns = false, external = false;
    for (size_t i = 0; i < eg->n; i++) {
        dns |= eg->policies[i].id == STK_NETPOL_DNS;
        external |= eg->policies[i].id == STK_NETPOL_EXTERNAL;
    }
    say(c, SEC_NETWORK,
        "Egress is denied unless allowed below (Kubernetes NetworkPolicy "
        "semantics: allows add up).");

    for (size_t i = 0; i < eg->n; i++) {
        const struct stk_epolicy *p = &eg->policies[i];
        for (size_t j = 0; j < p->n_rules; j++) {
            const struct stk_erule *r = &p->rules[j];
            struct stk_buf t = {0};
            stk_erule_describe(b, r, &t);
            struct statement *st = from(
                say(c, SEC_NETWORK, "Allowed: %s (%s).", stk_buf_str(&t), stk_netpol_names[p->id]),
                r->peer == STK_PEER_SAME_NAMESPACE ? &b->namespace_origin : &r->origin);
            stk_buf_free(&t);
            if (r->peer == STK_PEER_IPBLOCK)
                from(st, p->id == STK_NETPOL_EXTERNAL ? &b->external_egress_origin
                                                      : &b->blacklist_origin);
        }
    }
    if (b->external_egress && !external && !eg->excluded[STK_NETPOL_EXTERNAL])
        from(say(c, SEC_NETWORK,
                 "externalEgress is on, but the operator lists no "
                 "externalEgressCIDRs: no internet destination is allowed%s.",
                 dns ? " (DNS only)" : ""),
             &b->external_egress_origin);
    if (!b->external_egress)
        from(say(c, SEC_NETWORK, "No internet access and no DNS."), &b->external_egress_origin);
    explain_allow_hosts(c);
    for (int id = 0; id < _STK_NETPOL_N; id++)
        if (eg->excluded[id])
            from(say(c, SEC_NETWORK, "The operator excluded the generated policy %s.",
                     stk_netpol_names[id]),
                 &eg->exclude_origin);
    if (b->n_blacklist) {
        struct stk_buf t = {0};
        char cb[STK_CIDR_STRLEN];
        for (size_t i = 0; i < b->n_blacklist; i++)
            stk_buf_printf(&t, "%s%s", i ? ", " : "", stk_cidr_format(&b->blacklist[i], cb));
        from(say(c, SEC_NETWORK, "Never reachable through external or allowlist rules: %s.",
                 stk_buf_str(&t)),
             &b->blacklist_origin);
        stk_buf_free(&t);
    } else {
        from(say(c, SEC_NETWORK,
                 "The operator's blacklistIPs is empty: cloud metadata "
                 "endpoints are not excepted from external rules."),
             &b->blacklist_origin);
    }
    explain_ingress(c);
    local_network_caveats(c);
}

static void explain_privileges(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    static const char *const policy_text[_STK_POLICY_N] = {
        [STK_POLICY_RESTRICTED] = "Runs at policy restricted: as a non-root user, with every "
                                  "capability dropped, no privilege escalation, the default "
                                  "seccomp profile and a read-only root filesystem.",
        [STK_POLICY_BASELINE] = "Runs at policy baseline: no host namespaces, no privileged "
                                "containers, no host paths; non-root is not enforced and a "
                                "documented set of capabilities may be added.",
        [STK_POLICY_PRIVILEGED] = "Runs at policy privileged: privileged containers are "
                                  "allowed, so the host kernel's own checks are the only "
                                  "boundary left.",
    };
    from(say(c, SEC_PRIVILEGES, "%s", policy_text[b->policy]), &b->policy_origin);

    if (b->n_caps == 0) {
        from(say(c, SEC_PRIVILEGES, "Adds no Linux capabilities."), &b->caps_origin);
    } else {
        struct stk_buf t = {0};
        for (size_t i = 0; i < b->n_caps; i++)
            stk_buf_printf(&t, "%s%s", i ? ", " : "", b->caps[i]);
        from(say(c, SEC_PRIVILEGES, "Adds the capabilities %s.", stk_buf_str(&t)), &b->caps_origin);
        stk_buf_free(&t);
    }
    from(say(c, SEC_PRIVILEGES,
             b->docker ? "Docker: a privileged Docker daemon runs beside it; the "
                         "sandbox drives it through a shared socket."
                       : "Docker: none."),
         &b->docker_origin);
    from(say(c, SEC_PRIVILEGES,
             b->registry ? "Registry: it can push images to its registry." : "Registry: none."),
         &b->registry_origin);

    const struct stk_backend_facts *f = c->facts;
    switch (f->backend) {
    case STK_BACKEND_LOCAL:
        if (f->runtime)
            from(say(c, SEC_PRIVILEGES, "Runtime: %s%s%s%s: %s.",
                     f->runtime_is_gvisor ? "gVisor, " : "", f->runtime,
                     f->runtime_note ? ", " : "", f->runtime_note ? f->runtime_note : "",
                     f->runtime_is_gvisor ? "a user-space kernel between the workload and the "
                                            "host kernel"
                                          : "the workload talks to the host kernel directly"),
                 &b->runtime_origin);
        else
            from(say(c, SEC_PRIVILEGES,
                     "Runtime: none of the requested runtimes works on this "
                     "host%s%s.",
                     f->runtime_note ? ": " : "", f->runtime_note ? f->runtime_note : ""),
                 &b->runtime_origin);
        break;
    case STK_BACKEND_KUBERNETES:
        if (b->runtime == STK_RUNTIME_GVISOR)
            from(say(c, SEC_PRIVILEGES,
                     "Runtime: gVisor (RuntimeClass gvisor), a user-space "
                     "kernel between the workload and the node's kernel."),
                 &b->runtime_origin);
        else
            from(say(c, SEC_PRIVILEGES,
                     "Runtime: %s; the workload talks to the node's kernel "
                     "directly.",
                     b->runtime == STK_RUNTIME_DEFAULT ? "the cluster's default RuntimeClass"
                                                       : stk_runtime_names[b->runtime]),
                 &b->runtime_origin);
        if (f->warm_pools)
            say(c, SEC_PRIVILEGES, "Warm pools (pool create, create --pool): %s.", f->warm_pools);
        break;
    case STK_BACKEND_SIM:
        from(say(c, SEC_PRIVILEGES, "Runtime: none; the simulator executes nothing."),
             &b->runtime_origin);
        break;
    case _STK_BACKEND_N:
        break;
    }
}

static void explain_resources(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    char cpu[32];
    int64_t whole = b->limits.cpu_milli / 1000, frac = b->limits.cpu_milli % 1000;
    if (frac == 0)
        snprintf(cpu, sizeof(cpu), "%lld", (long long)whole);
    else if (frac % 100 == 0)
        snprintf(cpu, sizeof(cpu), "%lld.%lld", (long long)whole, (long long)(frac / 100));
    else if (frac % 10 == 0)
        snprintf(cpu, sizeof(cpu), "%lld.%02lld", (long long)whole, (long long)(frac / 10));
    else
        snprintf(cpu, sizeof(cpu), "%lld.%03lld", (long long)whole, (long long)frac);
    from(say(c, SEC_RESOURCES, "CPU: at most %s core%s.", cpu,
             b->limits.cpu_milli == 1000 ? "" : "s"),
         &b->cpu_origin);
    from(say(c, SEC_RESOURCES, "Memory: %s, swap included; beyond it: memory_exceeded.",
             bytes(c, b->limits.memory)),
         &b->memory_origin);
    from(say(c, SEC_RESOURCES, "Processes: at most %lld; beyond it: pids_exceeded.",
             (long long)b->limits.pids),
         &b->pids_origin);
    if (b->limits.wall_clock_ms)
        from(say(c, SEC_RESOURCES, "Deadline: %s after start; then wall_clock_exceeded.",
                 duration(c, b->limits.wall_clock_ms)),
             &b->wall_clock_origin);
    else
        from(say(c, SEC_RESOURCES, "Deadline: none; it runs until it exits or is stopped."),
             &b->wall_clock_origin);
    if (b->limits.cpu_time_ms)
        from(say(c, SEC_RESOURCES, "CPU time: %s in all; then cpu_exceeded.",
                 duration(c, b->limits.cpu_time_ms)),
             &b->cpu_time_origin);
    else
        from(say(c, SEC_RESOURCES, "CPU time: no budget beyond the CPU limit."),
             &b->cpu_time_origin);
    if (c->facts->backend != STK_BACKEND_LOCAL) {
        from(say(c, SEC_RESOURCES, "Ephemeral storage: %s.", bytes(c, b->limits.storage)),
             &b->storage_origin);
        return;
    }
    /* local: each volume is an ext4 image on a loop device (volume.c) */
    from(say(c, SEC_RESOURCES,
             "Storage: /workspace is a %s filesystem of its own (an ext4 image on a loop "
             "device, its blocks taken from the host when the sandbox starts); a write past it "
             "fails with ENOSPC, and nothing the sandbox writes reaches the host's filesystem "
             "or its reserved blocks. /tmp and /dev/shm are in memory, charged to the memory "
             "limit.",
             bytes(c, b->limits.storage)),
         &b->storage_origin);
    if (b->home)
        from(say(c, SEC_RESOURCES,
                 "Storage: the home volume at %s is a %s filesystem of its own, limited the "
                 "same way.",
                 STK_HOME_PATH, bytes(c, b->home_size)),
             &b->home_origin);
}

static void explain_credentials(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    if (b->n_bindings == 0) {
        say(c, SEC_CREDENTIALS,
            "No credentials are brokered, and no secret is placed in the "
            "sandbox.");
        return;
    }
    for (size_t i = 0; i < b->n_bindings; i++) {
        const struct stk_binding *bd = &b->bindings[i];
        struct stk_origin o = {.source = STK_SRC_SPEC,
                               .file = b->spec_file,
                               .pos = bd->meta.pos,
                               .path = "spec.bindings"};
        if (c->facts->backend == STK_BACKEND_LOCAL)
            from(say(c, SEC_CREDENTIALS,
                     "Can call %s (%s) at http://%s" STK_BINDING_DOMAIN_TEXT
                     "/ through the egress proxy, which adds the credential from %s %s; the "
                     "secret never enters the sandbox.",
                     bd->name.v, bd->url.v, bd->name.v,
                     stk_cred_source_names[bd->credential.source.v], bd->credential.ref.v),
                 &o);
        else if (c->facts->backend == STK_BACKEND_KUBERNETES && b->model != STK_MODEL_INJECTION)
            from(say(c, SEC_CREDENTIALS,
                     "Can call %s (%s) at http://%s" STK_BINDING_DOMAIN_TEXT
                     "/ through the egress proxy's Pod, which reads the credential from %s %s "
                     "(key %s) at each call: mounted into the proxy's Pod alone when the "
                     "Secret is in the sandbox's namespace, else through the API with a service "
                     "account of its own that may get exactly that Secret. The sandbox's Pod "
                     "references no Secret, and the secret never enters it.",
                     bd->name.v, bd->url.v, bd->name.v,
                     stk_cred_source_names[bd->credential.source.v], bd->credential.ref.v,
                     bd->credential.key.v ? bd->credential.key.v : "-"),
                 &o);
        else
            from(say(c, SEC_CREDENTIALS,
                     "Binding %s (%s) is not served on this backend: no egress proxy runs "
                     "here, so calls to it fail; the secret (%s %s) never enters the sandbox.",
                     bd->name.v, bd->url.v, stk_cred_source_names[bd->credential.source.v],
                     bd->credential.ref.v),
                 &o);
    }
}

static void explain_persistence(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    if (c->facts->backend == STK_BACKEND_SIM) {
        say(c, SEC_PERSISTENCE, "Nothing: the simulator stores no data, only modelled state.");
        return;
    }
    if (b->home && b->home_persist)
        from(say(c, SEC_PERSISTENCE,
                 "After stop: the home volume (%s) is kept; processes, "
                 "memory, /tmp and /workspace are gone.",
                 bytes(c, b->home_size)),
             &b->home_origin);
    else
        from(say(c, SEC_PERSISTENCE,
                 "After stop: nothing is kept; processes, memory, /tmp, "
                 "/workspace%s are gone.",
                 b->home ? " and the home volume" : ""),
             &b->home_origin);
    if (b->deleted_home_days && b->home && b->home_persist)
        from(say(c, SEC_PERSISTENCE,
                 "After delete: everything is removed; the operator keeps "
                 "the home volume %lld more days before removing it.",
                 (long long)b->deleted_home_days),
             &b->retention_origin);
    else
        say(c, SEC_PERSISTENCE, "After delete: everything is removed%s.",
            b->home ? ", the home volume included" : "");
    if (c->facts->backend == STK_BACKEND_LOCAL)
        say(c, SEC_PERSISTENCE,
            "Logs: the last 8 to 16 MiB of the workload's output (two rotated files), kept "
            "across stop and start, removed with the sandbox.");
    say(c, SEC_PERSISTENCE, "The audit trail of the sandbox outlives it.");
}

static void explain_retention(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    if (!b->home)
        ; /* nothing to back up */
    else if (b->home_backup && b->home_backup_days)
        from(say(c, SEC_RETENTION,
                 "The operator backs up home volumes and keeps backups %lld "
                 "days.",
                 (long long)b->home_backup_days),
             &b->retention_origin);
    else if (b->home_backup)
        from(say(c, SEC_RETENTION, "The operator backs up home volumes."), &b->retention_origin);
    else
        from(say(c, SEC_RETENTION,
                 "The operator states no backup of home volumes: assume "
                 "there is none."),
             &b->retention_origin);
    if (b->audit_days)
        from(say(c, SEC_RETENTION, "Audit records are kept %lld days.", (long long)b->audit_days),
             &b->retention_origin);
    else
        from(say(c, SEC_RETENTION, "The operator states no audit retention period."),
             &b->retention_origin);
}

static void explain_caveats(struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    const struct stk_backend_facts *f = c->facts;

    switch (f->backend) {
    case STK_BACKEND_KUBERNETES:
        if (b->model == STK_MODEL_STANDALONE)
            say(c, SEC_CAVEATS, "NetworkPolicies hold only if the cluster's CNI enforces them.");
        if (b->model == STK_MODEL_STANDALONE && (b->n_allow_hosts || b->n_bindings))
            say(c, SEC_CAVEATS,
                "The egress proxy identifies the sandbox by NetworkPolicy alone (its ingress "
                "admits only the sandbox's Pod): on a CNI that does not enforce NetworkPolicy, "
                "any Pod that reaches its Service can use its allowHosts and bindings. Its "
                "decisions are audit records as the proxy writes them to its Pod's log, "
                "checked and rate-limited by the monitor: a proxy the workload took over "
                "could write false ones.");
        say(c, SEC_CAVEATS,
            "A PodSpec has no pids field: the node's pod pids limit applies, and "
            "pids_exceeded cannot be reported.");
        if (b->limits.cpu_time_ms)
            from(say(c, SEC_CAVEATS,
                     "Kubernetes has no CPU-time budget: cpuTime is not "
                     "enforced there."),
                 &b->cpu_time_origin);
        if (b->runtime != STK_RUNTIME_GVISOR)
            from(say(c, SEC_CAVEATS,
                     "No gVisor: a kernel exploit in the workload reaches the "
                     "node's kernel."),
                 &b->runtime_origin);
        say(c, SEC_CAVEATS,
            "Ephemeral storage is enforced by kubelet eviction, not at the "
            "moment of the write.");
        if (b->vcluster)
            from(say(c, SEC_CAVEATS,
                     "The vcluster itself is operator-installed; stockade "
                     "renders only its namespace and disables the host token."),
                 &b->vcluster_origin);
        if (b->model == STK_MODEL_INJECTION)
            from(say(c, SEC_CAVEATS,
                     "Injection: no home storage, no Docker sidecar and no NetworkPolicies; "
                     "the workload's pods restart when the sandbox is injected and ejected, "
                     "and each replica runs its own instance."),
                 &b->model_origin);
        break;
    case STK_BACKEND_LOCAL:
        if (!f->runtime_is_gvisor)
            from(say(c, SEC_CAVEATS,
                     "Not running under gVisor: a kernel exploit in the workload "
                     "reaches the host's kernel."),
                 &b->runtime_origin);
        if (b->model == STK_MODEL_INJECTION)
            from(say(c, SEC_CAVEATS,
                     "Injection needs a Kubernetes workload; the local backend "
                     "cannot run it."),
                 &b->model_origin);
        if (b->docker || b->registry || b->vcluster)
            say(c, SEC_CAVEATS, "Docker, registry and vcluster exist on Kubernetes only.");
        say(c, SEC_CAVEATS,
            "`stockade run --workspace DIR` makes /workspace that host directory: "
            "resources.storage does not limit it.");
        break;
    case STK_BACKEND_SIM:
        say(c, SEC_CAVEATS,
            "The simulator enforces nothing and executes nothing: every "
            "result is modelled from the boundary, never computed.");
        break;
    case _STK_BACKEND_N:
        break;
    }
    for (const char *const *cv = f->caveats; cv && *cv; cv++)
        say(c, SEC_CAVEATS, "%s", *cv);
}

int stk_explain(const struct stk_boundary *b, const struct stk_backend_facts *facts,
                struct stk_contract **ret)
{
    struct stk_contract *c = stk_xcalloc(1, sizeof(*c));
    c->arena = stk_arena_new();
    c->b = b;
    c->facts = facts;

    explain_filesystem(c);
    explain_kubernetes(c);
    explain_network(c);
    explain_privileges(c);
    explain_resources(c);
    explain_credentials(c);
    explain_persistence(c);
    explain_retention(c);
    explain_caveats(c);
    *ret = c;
    return 0;
}

void stk_contract_free(struct stk_contract *c)
{
    if (!c)
        return;
    stk_arena_free(c->arena);
    free(c);
}

/* ---- output ---------------------------------------------------------------------- */

static void origin_text(const struct stk_contract *c, const struct stk_origin *o,
                        struct stk_buf *out)
{
    const struct stk_setting *s = NULL;
    /* For a resolved value, show the spec path and value; else where it came from. */
    for (size_t i = 0; o->path && i < c->b->n_settings && !s; i++)
        if (!strcmp(c->b->settings[i].path, o->path) ||
            (o->source == STK_SRC_ENVIRONMENT && c->b->settings[i].origin.path &&
             !strcmp(c->b->settings[i].origin.path, o->path) &&
             c->b->settings[i].origin.pos.line == o->pos.line))
            s = &c->b->settings[i];
    char where[512];
    stk_origin_format(o, where, sizeof(where));
    if (s && o->source == STK_SRC_ENVIRONMENT && o->path && strcmp(o->path, s->path) &&
        strlen(s->value) <= 40)
        stk_buf_printf(out, "%s = %s [%s, %s]", s->path, s->value, where, o->path);
    else if (s && strlen(s->value) <= 40)
        stk_buf_printf(out, "%s = %s [%s]", s->path, s->value, where);
    else if (s)
        stk_buf_printf(out, "%s [%s]", s->path, where);
    else if (o->path)
        stk_buf_printf(out, "%s [%s]", o->path, where);
    else
        stk_buf_printf(out, "[%s]", where);
}

void stk_contract_text(const struct stk_contract *c, struct stk_buf *out)
{
    const struct stk_boundary *b = c->b;
    stk_buf_printf(out, "Sandbox %s in namespace %s, on the %s backend\n", b->name, b->namespace,
                   stk_backend_names[c->facts->backend]);
    if (b->env_file)
        stk_buf_printf(out, "Environment: %s (%s)\n", b->env_name, b->env_file);
    else
        stk_buf_puts(out, "Environment: none (stockade's hard defaults)\n");
    for (int s = 0; s < _SEC_N; s++) {
        if (c->n[s] == 0)
            continue;
        stk_buf_printf(out, "\n%s\n", sections[s].title);
        for (size_t i = 0; i < c->n[s]; i++) {
            const struct statement *st = &c->items[s][i];
            stk_buf_printf(out, "  - %s\n", st->text);
            for (size_t j = 0; j < st->n_origins; j++) {
                stk_buf_puts(out, "      from ");
                origin_text(c, &st->origins[j], out);
                stk_buf_putc(out, '\n');
            }
        }
    }
}

static json_t *origin_json(const struct stk_origin *o)
{
    json_t *j = json_object();
    json_object_set_new(j, "source", json_string(stk_source_names[o->source]));
    if (o->path)
        json_object_set_new(j, "path", json_string(o->path));
    if (o->file) {
        json_object_set_new(j, "file", json_string(o->file));
        json_object_set_new(j, "line", json_integer(o->pos.line));
        json_object_set_new(j, "column", json_integer(o->pos.col));
    }
    return j;
}

void *stk_contract_json(const struct stk_contract *c)
{
    const struct stk_boundary *b = c->b;
    json_t *root = json_object();
    json_object_set_new(root, "sandbox", json_string(b->name));
    json_object_set_new(root, "namespace", json_string(b->namespace));
    json_object_set_new(root, "backend", json_string(stk_backend_names[c->facts->backend]));
    json_object_set_new(root, "environment", b->env_name ? json_string(b->env_name) : json_null());
    if (c->facts->backend == STK_BACKEND_LOCAL)
        json_object_set_new(root, "runtime",
                            c->facts->runtime ? json_string(c->facts->runtime) : json_null());
    json_t *secs = json_array();
    for (int s = 0; s < _SEC_N; s++) {
        json_t *sec = json_object();
        json_t *items = json_array();
        json_object_set_new(sec, "id", json_string(sections[s].id));
        json_object_set_new(sec, "title", json_string(sections[s].title));
        for (size_t i = 0; i < c->n[s]; i++) {
            const struct statement *st = &c->items[s][i];
            json_t *item = json_object();
            json_t *origins = json_array();
            json_object_set_new(item, "text", json_string(st->text));
            for (size_t j = 0; j < st->n_origins; j++)
                json_array_append_new(origins, origin_json(&st->origins[j]));
            json_object_set_new(item, "from", origins);
            json_array_append_new(items, item);
        }
        json_object_set_new(sec, "statements", items);
        json_array_append_new(secs, sec);
    }
    json_object_set_new(root, "sections", secs);
    json_t *settings = json_array();
    for (size_t i = 0; i < b->n_settings; i++) {
        const struct stk_setting *s = &b->settings[i];
        json_t *j = origin_json(&s->origin);
        json_object_set_new(j, "path", json_string(s->path));
        json_object_set_new(j, "value", json_string(s->value));
        if (s->origin.path && strcmp(s->origin.path, s->path))
            json_object_set_new(j, "sourcePath", json_string(s->origin.path));
        json_array_append_new(settings, j);
    }
    json_object_set_new(root, "settings", settings);
    return root;
}
