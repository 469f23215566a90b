/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Test driver for src/driver/local/net.c and nflog.c: what the local
 * driver will call, as subcommands, so pytest can prove enforcement with
 * real packets (tests/e2e/test_egress_local.py). Not installed.
 *
 *   stk-net-helper [OPTIONS] up ID SPEC [ENV]      prints netns path, v4, v6,
 *                                                  veth, NFLOG group
 *   stk-net-helper [OPTIONS] down ID
 *   stk-net-helper [OPTIONS] gc [LIVE-ID...]       prints objects removed
 *   stk-net-helper [OPTIONS] log MS ID SPEC [ENV]  prints "ready", then one
 *                                                  JSON event per line until
 *                                                  MS ms pass without any
 *   stk-net-helper render ID SPEC [ENV]            prints the nft script
 *   stk-net-helper nft-bench PRESENT RUNS SPEC [ENV]
 *       in a private network namespace of its own: the shared objects and
 *       PRESENT sandboxes' rules, then RUNS times one more sandbox's rules
 *       added and removed through libnftables (the whole transaction, as
 *       before nftnl.c) and through nftnl.c; prints one line per way:
 *       "<way> <present> <add ms> <remove ms> <add CPU ms> <remove CPU ms>",
 *       medians (bench/nft.sh)
 *
 * OPTIONS: --host-netns PATH (act as if that namespace were the host:
 * tests never touch the real host's links or rules), --run-dir DIR,
 * --log-group BASE, --service tcp:PORT (offered on the bridge), --rate N
 * (log: events per sandbox per second).
 */
#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <string.h>

#include "driver/local/net.h"
#include "driver/local/nftnl.h"

#include <nftables/libnftables.h>
#include <time.h>

struct loaded {
    struct stk_docset *sb, *env;
    struct stk_boundary *b;
};

static int load(const char *spec, const char *env, struct loaded *l)
{
    struct stk_diags d = {0};
    *l = (struct loaded){0};
    if (stk_docset_load(spec, &d, &l->sb) < 0 || (env && stk_docset_load(env, &d, &l->env) < 0) ||
        stk_resolve(l->sb->docs[0].sandbox, spec, l->env ? l->env->docs[0].env : NULL, env, &d,
                    &l->b) < 0) {
        fprintf(stderr, "stk-net-helper: %s does not resolve\n", spec);
        stk_diags_free(&d);
        return -EINVAL;
    }
    stk_diags_free(&d);
    return 0;
}

static void loaded_free(struct loaded *l)
{
    stk_boundary_free(l->b);
    stk_docset_free(l->sb);
    stk_docset_free(l->env);
}

static int fail(struct stk_error *e)
{
    fprintf(stderr, "stk-net-helper: %s\n", e ? e->msg : "failed");
    stk_error_free(e);
    return 1;
}

/* ---- nft-bench ------------------------------------------------------------ */

struct sb_texts {
    char *full, *base, *own, *rm;
};

static int sb_render(const struct stk_boundary *b, unsigned k, struct sb_texts *t,
                     struct stk_error **err)
{
    char id[32], veth[16], a4[32], a6[48];
    snprintf(id, sizeof(id), "b-%u", k);
    snprintf(veth, sizeof(veth), "stk-b-%u", k);
    snprintf(a4, sizeof(a4), "10.83.%u.%u", k >> 8, k & 255);
    snprintf(a6, sizeof(a6), "fd88::%x", k);
    struct stk_nft_facts f = {.id = id,
                              .namespace = b->namespace,
                              .bridge = "stk0",
                              .veth = veth,
                              .log_group = (uint16_t)(8801 + k)};
    (void)stk_addr_parse(a4, &f.addr4);
    (void)stk_addr_parse(a6, &f.addr6);
    (void)stk_addr_parse("10.83.0.1", &f.bridge4);
    (void)stk_addr_parse("fd88::1", &f.bridge6);
    (void)stk_addr_parse("10.83.0.1", &f.resolver);
    (void)stk_cidr_parse("10.83.0.0/16", &f.pool4, NULL);
    (void)stk_cidr_parse("fd88::/64", &f.pool6, NULL);
    *t = (struct sb_texts){0};
    if (stk_nft_render(b, &f, &t->full, err) < 0 || stk_nft_render_base(&f, &t->base, err) < 0 ||
        stk_nft_render_own(b, &f, &t->own, err) < 0 || stk_nft_render_remove(&f, &t->rm, err) < 0)
        return -EINVAL;
    return 0;
}

static void sb_texts_free(struct sb_texts *t)
{
    free(t->full);
    free(t->base);
    free(t->own);
    free(t->rm);
}

static int lib_apply(const char *text)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int r = nft_run_cmd_from_buffer(ctx, text);
    if (r)
        fprintf(stderr, "stk-net-helper: nft: %s\n", nft_ctx_get_error_buffer(ctx));
    nft_ctx_free(ctx);
    return r ? -EIO : 0;
}

static int nl_apply(const char *text)
{
    struct stk_error *err = NULL;
    int r = stk_nftnl_apply(text, &err);
    if (r < 0)
        fail(err);
    return r;
}

static double now_ms(clockid_t clock)
{
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int dbl_cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, size_t n)
{
    qsort(v, n, sizeof(*v), dbl_cmp);
    return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static int nft_bench(const struct stk_boundary *b, unsigned present, unsigned runs)
{
    struct stk_error *err = NULL;
    if (unshare(CLONE_NEWNET) < 0) {
        perror("unshare");
        return 1;
    }
    struct sb_texts t;
    if (sb_render(b, 2, &t, &err) < 0)
        return fail(err);
    int r = lib_apply(t.base);
    sb_texts_free(&t);
    for (unsigned k = 0; r == 0 && k < present; k++) {
        if (sb_render(b, 3 + k, &t, &err) < 0)
            return fail(err);
        r = nl_apply(t.own);
        sb_texts_free(&t);
    }
    if (r < 0 || sb_render(b, 3 + present, &t, &err) < 0)
        return 1;
    /* [way][add, remove][wall, cpu] */
    double *m[2][2][2];
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 4; k++)
            m[w][k / 2][k % 2] = stk_xcalloc(runs, sizeof(double));
    for (unsigned i = 0; r == 0 && i < runs; i++)
        for (int j = 0; r == 0 && j < 2; j++) {
            int w = (int)(i + (unsigned)j) % 2; /* alternate which goes first */
            double t0 = now_ms(CLOCK_MONOTONIC), c0 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
            r = w == 0 ? lib_apply(t.full) : nl_apply(t.own);
            double t1 = now_ms(CLOCK_MONOTONIC), c1 = now_ms(CLOCK_PROCESS_CPUTIME_ID);
            if (r == 0)
                r = w == 0 ? lib_apply(t.rm) : nl_apply(t.rm);
            m[w][0][0][i] = t1 - t0;
            m[w][0][1][i] = c1 - c0;
            m[w][1][0][i] = now_ms(CLOCK_MONOTONIC) - t1;
            m[w][1][1][i] = now_ms(CLOCK_PROCESS_CPUTIME_ID) - c1;
        }
    static const char *const ways[] = {"libnftables", "nftnl"};
    for (int w = 0; r == 0 && w < 2; w++)
        printf("%s %u %.3f %.3f %.3f %.3f\n", ways[w], present, median(m[w][0][0], runs),
               median(m[w][1][0], runs), median(m[w][0][1], runs), median(m[w][1][1], runs));
    for (int w = 0; w < 2; w++)
        for (int k = 0; k < 4; k++)
            free(m[w][k / 2][k % 2]);
    sb_texts_free(&t);
    return r == 0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    struct stk_net_config cfg;
    stk_net_config_default(&cfg);
    int rate = -1;
    struct stk_nft_service services[4];
    size_t n_services = 0;
    int i = 1;
    for (; i + 1 < argc && stk_startswith(argv[i], "--"); i += 2) {
        if (!strcmp(argv[i], "--host-netns")) {
            int fd = open(argv[i + 1], O_RDONLY | O_CLOEXEC);
            if (fd < 0 || setns(fd, CLONE_NEWNET) < 0) {
                perror(argv[i + 1]);
                return 1;
            }
            close(fd);
        } else if (!strcmp(argv[i], "--run-dir")) {
            cfg.run_dir = argv[i + 1];
        } else if (!strcmp(argv[i], "--rate")) {
            rate = atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--log-group")) {
            cfg.log_group_base = (uint16_t)atoi(argv[i + 1]);
        } else if (!strcmp(argv[i], "--service")) {
            /* PROTO:PORT offered on the bridge address, e.g. tcp:9999 */
            if (n_services == STK_ARRAY_SIZE(services))
                return 2;
            services[n_services].protocol =
                stk_startswith(argv[i + 1], "udp:") ? STK_PROTO_UDP : STK_PROTO_TCP;
            services[n_services++].port = (uint16_t)atoi(strchr(argv[i + 1], ':') + 1);
            cfg.services = services;
            cfg.n_services = n_services;
        } else {
            fprintf(stderr, "stk-net-helper: unknown option %s\n", argv[i]);
            return 2;
        }
    }
    if (i >= argc) {
        fprintf(stderr, "usage: stk-net-helper [OPTIONS] up|down|gc|log|render ...\n");
        return 2;
    }
    const char *cmd = argv[i++];
    struct stk_error *err = NULL;
    _cleanup_(loaded_free) struct loaded l = {0};

    if (!strcmp(cmd, "up") || !strcmp(cmd, "render")) {
        if (argc - i < 2)
            return 2;
        if (load(argv[i + 1], argc - i > 2 ? argv[i + 2] : NULL, &l) < 0)
            return 1;
        if (stk_net_config_apply_env(&cfg, l.env ? l.env->docs[0].env : NULL, &err) < 0)
            return fail(err);
        if (!strcmp(cmd, "render")) {
            /* the facts an up would use, with the first free address */
            struct stk_nft_facts f = {.id = argv[i],
                                      .namespace = l.b->namespace,
                                      .bridge = cfg.bridge,
                                      .veth = "stk-render",
                                      .resolver = cfg.resolver,
                                      .log_group = cfg.log_group_base,
                                      .nat = cfg.nat,
                                      .pool4 = cfg.pool4,
                                      .pool6 = cfg.pool6};
            (void)stk_addr_parse("10.83.0.2", &f.addr4);
            char *text = NULL;
            if (stk_nft_render(l.b, &f, &text, &err) < 0)
                return fail(err);
            fputs(text, stdout);
            free(text);
            return 0;
        }
        struct stk_net *n = NULL;
        if (stk_net_up(&cfg, l.b, argv[i], NULL, &n, &err) < 0)
            return fail(err);
        struct stk_cidr a4, a6;
        char b4[STK_CIDR_STRLEN] = "-", b6[STK_CIDR_STRLEN] = "-";
        stk_net_addresses(n, &a4, &a6);
        if (a4.family)
            stk_cidr_format(&a4, b4);
        if (a6.family)
            stk_cidr_format(&a6, b6);
        printf("%s %s %s %s %u\n", stk_net_netns_path(n), b4, b6, stk_net_veth(n),
               stk_net_log_group(n));
        stk_net_free(n);
        return 0;
    }
    if (!strcmp(cmd, "nft-bench")) {
        if (argc - i < 3)
            return 2;
        if (load(argv[i + 2], argc - i > 3 ? argv[i + 3] : NULL, &l) < 0)
            return 1;
        return nft_bench(l.b, (unsigned)atoi(argv[i]), (unsigned)atoi(argv[i + 1]));
    }
    if (!strcmp(cmd, "down")) {
        if (argc - i < 1)
            return 2;
        struct stk_net *n = NULL;
        if (stk_net_open(&cfg, argv[i], &n, &err) < 0 || stk_net_down(n, &err) < 0)
            return fail(err);
        return 0;
    }
    if (!strcmp(cmd, "gc")) {
        int r = stk_net_gc(&cfg, (const char *const *)(argv + i), (size_t)(argc - i), &err);
        if (r < 0)
            return fail(err);
        printf("%d\n", r);
        return 0;
    }
    if (!strcmp(cmd, "log")) {
        if (argc - i < 3)
            return 2;
        int ms = atoi(argv[i]);
        if (load(argv[i + 2], argc - i > 3 ? argv[i + 3] : NULL, &l) < 0)
            return 1;
        struct stk_net *net = NULL;
        if (stk_net_open(&cfg, argv[i + 1], &net, &err) < 0)
            return fail(err);
        uint16_t group = stk_net_log_group(net);
        stk_net_free(net);
        struct stk_egress_log *lg = NULL;
        if (stk_egress_log_open(group, &lg, &err) < 0)
            return fail(err);
        stk_egress_log_watch(lg, argv[i + 1], l.b);
        if (rate >= 0)
            stk_egress_log_set_rate(lg, (unsigned)rate);
        printf("ready\n");
        fflush(stdout);
        struct stk_egress_event ev[64];
        int n;
        while ((n = stk_egress_log_read(lg, ms, ev, STK_ARRAY_SIZE(ev), &err)) > 0)
            for (int k = 0; k < n; k++) {
                struct stk_buf out = {0};
                stk_egress_event_json(&ev[k], &out);
                printf("%s\n", stk_buf_str(&out));
                stk_buf_free(&out);
                fflush(stdout);
            }
        if (n < 0)
            return fail(err);
        size_t m = stk_egress_log_flush(lg, ev, STK_ARRAY_SIZE(ev));
        for (size_t k = 0; k < m; k++) {
            struct stk_buf out = {0};
            stk_egress_event_json(&ev[k], &out);
            printf("%s\n", stk_buf_str(&out));
            stk_buf_free(&out);
        }
        stk_egress_log_close(lg);
        return 0;
    }
    fprintf(stderr, "stk-net-helper: unknown command %s\n", cmd);
    return 2;
}
