/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade port-forward ID [LOCAL:]PORT...: listens on the host (loopback
 * unless --address says otherwise) and relays each accepted connection to
 * a declared port of the sandbox (spec.ports), through the engine: the
 * session connects from the host to the sandbox's address on the bridge,
 * where the sandbox's ingress chain admits the declared ports only. One
 * thread, one poll loop, bounded buffers and a bounded number of
 * connections.
 */
#include "cli.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define PF_MAX_FORWARDS 16    /* mappings on one command line */
#define PF_MAX_CONNS    64    /* relayed connections at once */
#define PF_BUF          65536 /* per direction */

struct pf_map {
    uint16_t local, remote;
    int lfd;
};

struct pf_half {
    char buf[PF_BUF];
    size_t len;
    bool eof; /* the reading side ended: shut the writing side down once drained */
};

struct pf_conn {
    int fd[2];            /* 0 client, 1 sandbox */
    struct pf_half to[2]; /* to[i]: bytes waiting to be written to fd[i] */
    bool shut[2];         /* fd[i]'s write side shut down */
};

static volatile sig_atomic_t pf_stop;

static void pf_on_signal(int sig)
{
    (void)sig;
    pf_stop = 1;
}

static int parse_port(const char *s, bool zero_ok, uint16_t *ret)
{
    char *end = NULL;
    errno = 0;
    unsigned long v = strtoul(s, &end, 10);
    if (errno || !end || *end || end == s || v > 65535 || (v == 0 && !zero_ok) || s[0] == '-')
        return -1;
    *ret = (uint16_t)v;
    return 0;
}

/* "PORT" (the same port locally) or "LOCAL:PORT" (LOCAL 0: any free one). */
static int parse_map(const char *arg, struct pf_map *ret)
{
    char buf[16];
    if (strlen(arg) >= sizeof(buf))
        return -1;
    strcpy(buf, arg);
    char *colon = strchr(buf, ':');
    *ret = (struct pf_map){.lfd = -1};
    if (!colon)
        return parse_port(buf, false, &ret->remote) < 0 ? -1 : (ret->local = ret->remote, 0);
    *colon = '\0';
    if (parse_port(buf, true, &ret->local) < 0 || parse_port(colon + 1, false, &ret->remote) < 0)
        return -1;
    return 0;
}

static int pf_listen(const char *address, struct pf_map *m)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;
    struct sockaddr_in *in = (struct sockaddr_in *)&ss;
    struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;
    if (inet_pton(AF_INET, address, &in->sin_addr) == 1) {
        in->sin_family = AF_INET;
        in->sin_port = htons(m->local);
        len = sizeof(*in);
    } else if (inet_pton(AF_INET6, address, &in6->sin6_addr) == 1) {
        in6->sin6_family = AF_INET6;
        in6->sin6_port = htons(m->local);
        len = sizeof(*in6);
    } else {
        return -EINVAL;
    }
    int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int one = 1;
    if (fd < 0)
        return -errno;
    (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
    if (bind(fd, (struct sockaddr *)&ss, len) < 0 || listen(fd, 32) < 0) {
        int e = errno;
        close(fd);
        return -e;
    }
    if (getsockname(fd, (struct sockaddr *)&ss, &len) == 0)
        m->local = ntohs(ss.ss_family == AF_INET ? in->sin_port : in6->sin6_port);
    m->lfd = fd;
    return 0;
}

static void pf_conn_close(struct pf_conn *c)
{
    for (int i = 0; i < 2; i++)
        if (c->fd[i] >= 0)
            close(c->fd[i]);
    free(c);
}

/* Moves bytes one step; false once both directions are done (or failed). */
static bool pf_conn_step(struct pf_conn *c, const struct pollfd *p)
{
    for (int i = 0; i < 2; i++) {
        int o = 1 - i;
        struct pf_half *h = &c->to[o]; /* what fd[i] sent, for fd[o] */
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) && !h->eof && h->len == 0) {
            ssize_t n = read(c->fd[i], h->buf, sizeof(h->buf));
            if (n > 0)
                h->len = (size_t)n;
            else if (n == 0 || (errno != EINTR && errno != EAGAIN))
                h->eof = true;
        }
    }
    for (int o = 0; o < 2; o++) {
        struct pf_half *h = &c->to[o];
        if (h->len) {
            ssize_t w = send(c->fd[o], h->buf, h->len, MSG_NOSIGNAL | MSG_DONTWAIT);
            if (w < 0 && errno != EAGAIN && errno != EINTR)
                return false;
            if (w > 0) {
                memmove(h->buf, h->buf + w, h->len - (size_t)w);
                h->len -= (size_t)w;
            }
        }
        if (h->eof && h->len == 0 && !c->shut[o]) {
            (void)shutdown(c->fd[o], SHUT_WR);
            c->shut[o] = true;
        }
    }
    return !(c->shut[0] && c->shut[1]);
}

static void pf_events(const struct pf_conn *c, struct pollfd *p)
{
    for (int i = 0; i < 2; i++) {
        p[i] = (struct pollfd){.fd = c->fd[i]};
        if (!c->to[1 - i].eof && c->to[1 - i].len == 0)
            p[i].events |= POLLIN;
        if (c->to[i].len)
            p[i].events |= POLLOUT;
    }
}

static void pf_accept(struct cli_engine *e, const char *id, const struct pf_map *m,
                      struct pf_conn **conns, size_t *n)
{
    int cfd = accept4(m->lfd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    if (cfd < 0)
        return;
    if (*n == PF_MAX_CONNS) {
        fprintf(stderr, "stockade port-forward: %d connections are open: refusing one more\n",
                PF_MAX_CONNS);
        close(cfd);
        return;
    }
    int sfd = -1;
    if (cli_engine_ops_of(e)->connect(e, id, m->remote, &sfd) != 0) {
        close(cfd);
        return;
    }
    int fl = fcntl(sfd, F_GETFL);
    if (fl >= 0)
        (void)fcntl(sfd, F_SETFL, fl | O_NONBLOCK);
    struct pf_conn *c = stk_xcalloc(1, sizeof(*c));
    c->fd[0] = cfd;
    c->fd[1] = sfd;
    conns[(*n)++] = c;
    fprintf(stderr, "Handling connection for %u\n", m->local);
}

static int pf_loop(struct cli_engine *e, const char *id, struct pf_map *maps, size_t n_maps)
{
    struct pf_conn *conns[PF_MAX_CONNS];
    size_t n = 0;
    struct pollfd p[PF_MAX_FORWARDS + 2 * PF_MAX_CONNS];
    while (!pf_stop) {
        size_t k = 0;
        for (size_t i = 0; i < n_maps; i++)
            p[k++] = (struct pollfd){.fd = maps[i].lfd, .events = POLLIN};
        for (size_t i = 0; i < n; i++, k += 2)
            pf_events(conns[i], &p[k]);
        if (poll(p, k, 500) < 0 && errno != EINTR)
            break;
        size_t polled = n; /* accepted ones are appended after these */
        for (size_t i = 0; i < n_maps; i++)
            if (p[i].revents & POLLIN)
                pf_accept(e, id, &maps[i], conns, &n);
        bool done[PF_MAX_CONNS] = {0};
        for (size_t i = 0; i < polled; i++)
            done[i] = !pf_conn_step(conns[i], &p[n_maps + 2 * i]);
        size_t j = 0;
        for (size_t i = 0; i < n; i++) {
            if (done[i])
                pf_conn_close(conns[i]);
            else
                conns[j++] = conns[i];
        }
        n = j;
    }
    for (size_t i = 0; i < n; i++)
        pf_conn_close(conns[i]);
    return 0;
}

int cmd_port_forward(int argc, char **argv)
{
    static const struct option opts[] = {
        {"address", required_argument, NULL, 'a'},
        {NULL, 0, NULL, 0},
    };
    const char *address = "127.0.0.1";
    int c;
    while ((c = getopt_long(argc, argv, "+a:", opts, NULL)) != -1) {
        if (c != 'a')
            return cli_usage("port-forward", stderr, EXIT_USAGE);
        address = optarg;
    }
    if (optind + 2 > argc)
        return cli_usage_error("port-forward", "needs a sandbox ID and at least one [LOCAL:]PORT");
    const char *id = argv[optind++];
    struct pf_map maps[PF_MAX_FORWARDS];
    size_t n_maps = 0;
    for (; optind < argc; optind++) {
        if (n_maps == PF_MAX_FORWARDS)
            return cli_usage_error("port-forward", "at most %d ports", PF_MAX_FORWARDS);
        if (parse_map(argv[optind], &maps[n_maps]) < 0)
            return cli_usage_error("port-forward",
                                   "'%s' is not [LOCAL:]PORT (ports 1 to 65535; LOCAL 0: any free "
                                   "one)",
                                   argv[optind]);
        n_maps++;
    }
    struct in6_addr a6;
    struct in_addr a4;
    if (inet_pton(AF_INET, address, &a4) != 1 && inet_pton(AF_INET6, address, &a6) != 1)
        return cli_usage_error("port-forward", "--address needs a numeric address, not '%s'",
                               address);
    bool loopback = (inet_pton(AF_INET, address, &a4) == 1 && (ntohl(a4.s_addr) >> 24) == 127) ||
                    (inet_pton(AF_INET6, address, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6));
    if (!loopback)
        fprintf(stderr,
                "stockade port-forward: warning: %s is not a loopback address: whoever reaches "
                "it reaches the sandbox's port, unauthenticated\n",
                address);
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("port-forward");
    if (!cli_engine_ops_of(e)->connect) {
        fprintf(stderr, "stockade port-forward: not available with --server: reach the port "
                        "through the gateway's /v1/sandboxes/{id}/ports/{port}/ route\n");
        return EXIT_SETUP;
    }
    /* refused ports, a sandbox that is not ready, a backend without a
     * way in: said before anything listens */
    for (size_t i = 0; i < n_maps; i++) {
        int r = cli_engine_ops_of(e)->connect(e, id, maps[i].remote, NULL);
        if (r != 0)
            return r;
    }
    int r = 0;
    for (size_t i = 0; i < n_maps && r == 0; i++) {
        int lr = pf_listen(address, &maps[i]);
        if (lr < 0) {
            fprintf(stderr, "stockade port-forward: cannot listen on %s:%u: %s\n", address,
                    maps[i].local, strerror(-lr));
            r = EXIT_SETUP;
        } else {
            printf("Forwarding from %s:%u -> %u\n", address, maps[i].local, maps[i].remote);
        }
    }
    fflush(stdout);
    if (r == 0) {
        struct sigaction sa = {.sa_handler = pf_on_signal};
        sigaction(SIGINT, &sa, NULL);
        sigaction(SIGTERM, &sa, NULL);
        signal(SIGPIPE, SIG_IGN);
        r = pf_loop(e, id, maps, n_maps);
    }
    for (size_t i = 0; i < n_maps; i++)
        if (maps[i].lfd >= 0)
            close(maps[i].lfd);
    return r;
}
