/* SPDX-License-Identifier: Apache-2.0 */
/*
 * `stockade doctor` on this host: what the local backend needs, checked
 * without changing anything (runtime detection's smoke runs are cached in
 * the state directory, as `run` does them).
 */
#include "driver/local/internal.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>
#include <unistd.h>

static struct stk_host_check *next(struct stk_host_check *ret, size_t max, size_t *n)
{
    if (*n >= max)
        return NULL;
    struct stk_host_check *c = &ret[(*n)++];
    memset(c, 0, sizeof(*c));
    return c;
}

static void runtimes(const struct stk_local_paths *p, struct stk_host_check *ret, size_t max,
                     size_t *n)
{
    struct stk_runtime_status st[_STK_OCI_N];
    struct stk_error *err = NULL;
    struct stk_host_check *c;
    if (stk_runtimes_detect(p, st, &err) < 0) {
        if ((c = next(ret, max, n))) {
            *c = (struct stk_host_check){
                .id = "runtimes", .title = "an OCI runtime works", .status = STK_HOST_FAIL};
            snprintf(c->why, sizeof(c->why), "%s", err->msg);
            c->fix = "install runc, crun or runsc (scripts/install-deps.sh)";
        }
        stk_error_free(err);
        return;
    }
    int working = 0;
    for (int i = 0; i < _STK_OCI_N; i++) {
        working += st[i].works;
        if (!(c = next(ret, max, n)))
            return;
        snprintf(c->id_buf, sizeof(c->id_buf), "runtime-%s", stk_oci_runtime_names[i]);
        snprintf(c->title_buf, sizeof(c->title_buf), "%s works", stk_oci_runtime_names[i]);
        c->id = c->id_buf;
        c->title = c->title_buf;
        c->status = st[i].works ? STK_HOST_PASS : STK_HOST_WARN;
        if (st[i].works)
            snprintf(c->why, sizeof(c->why), "%s %s%s%s", st[i].path, st[i].version,
                     st[i].note[0] ? "; " : "", st[i].note);
        else if (st[i].installed)
            snprintf(c->why, sizeof(c->why), "%s fails its smoke run: %s", st[i].path, st[i].note);
        else
            snprintf(c->why, sizeof(c->why), "not installed");
        if (!st[i].works)
            c->fix = i == STK_OCI_RUNSC ? "runsc (gVisor) gives the strongest boundary: install "
                                          "it (bookworm-backports has a current one)"
                                        : "optional while another runtime works";
    }
    if ((c = next(ret, max, n))) {
        *c = (struct stk_host_check){.id = "runtimes",
                                     .title = "an OCI runtime works",
                                     .status = working ? STK_HOST_PASS : STK_HOST_FAIL};
        snprintf(c->why, sizeof(c->why), "%d of %d runtimes work", working, _STK_OCI_N);
        c->fix = working ? NULL : "install runc, crun or runsc (scripts/install-deps.sh)";
    }
}

static bool is_fs(const char *path, long magic)
{
    struct statfs s;
    return statfs(path, &s) == 0 && (long)s.f_type == magic;
}

static void cgroups(struct stk_host_check *ret, size_t max, size_t *n)
{
    bool v2 = is_fs(CG_ROOT, 0x63677270 /* CGROUP2_SUPER_MAGIC */);
    struct stk_host_check *c = next(ret, max, n);
    if (!c)
        return;
    *c = (struct stk_host_check){.id = "cgroups",
                                 .title = "cgroups: memory, pids and cpu controllers",
                                 .status = STK_HOST_PASS};
    char missing[128] = "";
    static const char *const ctl[] = {"memory", "pids", "cpu"};
    if (v2) {
        char have[512] = "";
        FILE *f = fopen(CG_ROOT "/cgroup.subtree_control", "re");
        if (f) {
            if (!fgets(have, sizeof(have), f))
                have[0] = '\0';
            fclose(f);
        }
        for (size_t i = 0; i < 3; i++) {
            /* a word of the list */
            const char *h = have;
            size_t l = strlen(ctl[i]);
            bool found = false;
            while ((h = strstr(h, ctl[i]))) {
                found |= (h == have || h[-1] == ' ') && (!h[l] || h[l] == ' ' || h[l] == '\n');
                h += l;
            }
            if (!found)
                snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s",
                         ctl[i]);
        }
    } else {
        for (size_t i = 0; i < 3; i++) {
            char path[128];
            snprintf(path, sizeof(path), "%s/%s", CG_ROOT, ctl[i]);
            if (access(path, W_OK) != 0)
                snprintf(missing + strlen(missing), sizeof(missing) - strlen(missing), " %s",
                         ctl[i]);
        }
    }
    const char *mode = v2 ? "cgroup v2" : cg_is_hybrid() ? "cgroup v1 (hybrid)" : "cgroup v1";
    if (missing[0]) {
        c->status = STK_HOST_FAIL;
        snprintf(c->why, sizeof(c->why), "%s; not available or not writable:%s", mode, missing);
        c->fix = "run as root on a host with these controllers enabled; quotas are not "
                 "enforced otherwise, so run refuses";
    } else {
        snprintf(c->why, sizeof(c->why), "%s; memory, pids and cpu are writable", mode);
    }
}

static void nftables(struct stk_host_check *ret, size_t max, size_t *n)
{
    struct stk_host_check *c = next(ret, max, n);
    if (!c)
        return;
    *c = (struct stk_host_check){
        .id = "nftables", .title = "nftables answers (the egress rules)", .status = STK_HOST_PASS};
    struct stk_error *e = NULL;
    __typeof__(&stk_nftlib_run) run = STK_MODULE_SYM("nft", stk_nftlib_run, &e);
    /* read-only: the ruleset is listed, never changed */
    if (!run) {
        c->status = STK_HOST_FAIL;
        snprintf(c->why, sizeof(c->why), "libnftables could not be loaded: %s", e->msg);
        c->fix = "install stockade's modules with it (meson install) and libnftables1";
    } else if (run("list tables", false, NULL, &e) < 0) {
        c->status = STK_HOST_FAIL;
        snprintf(c->why, sizeof(c->why), "listing tables failed: %s", e->msg);
        c->fix = "run as root (CAP_NET_ADMIN) on a kernel with nf_tables; without it a "
                 "sandbox gets no network (--no-network) or none at all";
    } else {
        snprintf(c->why, sizeof(c->why), "libnftables lists the ruleset");
    }
    stk_error_free(e);
}

/* The default address pool is this network's alone (a run with an
 * EnvironmentConfig's data.local.addressPool checks that one). */
static void address_pool(struct stk_host_check *ret, size_t max, size_t *n)
{
    struct stk_host_check *c = next(ret, max, n);
    if (!c)
        return;
    *c = (struct stk_host_check){
        .id = "address-pool", .title = "the default address pool is free", .status = STK_HOST_PASS};
    struct stk_net_config cfg;
    stk_net_config_default(&cfg);
    struct stk_error *e = NULL;
    if (stk_net_pool_check(&cfg, &e) < 0) {
        c->status = STK_HOST_FAIL;
        snprintf(c->why, sizeof(c->why), "%s", e->msg);
        c->fix = "set data.local.addressPool in the EnvironmentConfig to a range nothing else "
                 "uses, or remove the other device if it is unused";
    } else {
        snprintf(c->why, sizeof(c->why), "no other device is routed for %s or %s", STK_NET_POOL4,
                 STK_NET_POOL6);
    }
    stk_error_free(e);
}

int stk_local_host_checks(const struct stk_local_paths *p, struct stk_host_check *ret, size_t max,
                          size_t *ret_n)
{
    size_t n = 0;
    struct stk_host_check *c = next(ret, max, &n);
    if (c) {
        *c = (struct stk_host_check){
            .id = "root", .title = "running as root", .status = STK_HOST_PASS};
        snprintf(c->why, sizeof(c->why), "uid %u", (unsigned)geteuid());
        if (geteuid() != 0) {
            c->status = STK_HOST_FAIL;
            c->fix = "the local backend needs root (namespaces, cgroups, nftables)";
        }
    }
    runtimes(p, ret, max, &n);
    cgroups(ret, max, &n);
    nftables(ret, max, &n);
    address_pool(ret, max, &n);
    *ret_n = n;
    return 0;
}
