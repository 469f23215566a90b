/* SPDX-License-Identifier: Apache-2.0 */
/*
 * stockade cp SRC DST: one regular file into or out of a ready sandbox
 * (ID:/path on one side), through the engine: the session (the sandbox's
 * own supervisor moves the bytes) or the gateway's files API.
 */
#include "cli.h"
#include "session/session.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ID:/path: a name before the colon without a slash (a local path with a
 * colon is written ./a:b). */
static bool sandbox_ref(const char *arg, char *id, size_t n, const char **ret_path)
{
    const char *colon = strchr(arg, ':');
    if (!colon || colon == arg || memchr(arg, '/', (size_t)(colon - arg)) ||
        (size_t)(colon - arg) >= n)
        return false;
    memcpy(id, arg, (size_t)(colon - arg));
    id[colon - arg] = '\0';
    *ret_path = colon + 1;
    return true;
}

/* The whole source, at most STK_FILE_MAX bytes. */
static int read_source(const char *src, struct stk_buf *ret, unsigned *ret_mode)
{
    bool std = !strcmp(src, "-");
    _cleanup_close_ int fd = std ? dup(STDIN_FILENO) : open(src, O_RDONLY | O_CLOEXEC | O_NOCTTY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        fprintf(stderr, "stockade cp: %s: %s\n", src, strerror(errno));
        return EXIT_INVALID;
    }
    if (!std && !S_ISREG(st.st_mode)) {
        fprintf(stderr, "stockade cp: %s: %s\n", src,
                S_ISDIR(st.st_mode) ? "is a directory (cp copies one regular file)"
                                    : "is not a regular file");
        return EXIT_INVALID;
    }
    *ret_mode = std ? 0644 : (unsigned)(st.st_mode & 0777);
    char buf[65536];
    for (;;) {
        ssize_t n = read(fd, buf, sizeof(buf));
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            fprintf(stderr, "stockade cp: %s: %s\n", src, strerror(errno));
            return EXIT_INVALID;
        }
        if (n == 0)
            return 0;
        if (ret->len + (size_t)n > STK_FILE_MAX) {
            fprintf(stderr, "stockade cp: %s: larger than the limit of 16 MiB per file\n", src);
            return EXIT_INVALID;
        }
        stk_buf_append(ret, buf, (size_t)n);
    }
}

static int copy_in(struct cli_engine *e, const char *src, const char *id, const char *path,
                   int mode_flag)
{
    _cleanup_buf_ struct stk_buf data = {0};
    unsigned mode;
    int r = read_source(src, &data, &mode);
    if (r != 0)
        return r;
    if (mode_flag >= 0)
        mode = (unsigned)mode_flag;
    _cleanup_free_ char *full = NULL;
    size_t plen = strlen(path);
    if (plen > 0 && path[plen - 1] == '/') {
        /* into a directory: the source's name, as cp does */
        if (!strcmp(src, "-"))
            return cli_usage_error("cp", "%s:%s names a directory; from stdin give a file name", id,
                                   path);
        _cleanup_free_ char *copy = stk_xstrdup(src);
        full = stk_xasprintf("%s%s", path, basename(copy));
        path = full;
    }
    return cli_engine_ops_of(e)->file_write(e, id, path, mode, data.data, data.len);
}

static int copy_out(struct cli_engine *e, const char *id, const char *path, const char *dst)
{
    if (!strcmp(dst, "-")) {
        fflush(stdout);
        return cli_engine_ops_of(e)->file_read(e, id, path, STDOUT_FILENO);
    }
    _cleanup_free_ char *full = NULL;
    struct stat st;
    if (stat(dst, &st) == 0 && S_ISDIR(st.st_mode)) {
        const char *base = strrchr(path, '/');
        base = base ? base + 1 : path;
        if (!*base)
            return cli_usage_error("cp", "%s:%s names a directory; cp copies one regular file", id,
                                   path);
        full = stk_xasprintf("%s/%s", dst, base);
        dst = full;
    }
    /* into a new file beside the destination, renamed over it once whole:
     * a failed copy leaves the destination as it was */
    _cleanup_free_ char *tmp = stk_xasprintf("%s.stockade-cp-XXXXXX", dst);
    _cleanup_close_ int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        fprintf(stderr, "stockade cp: %s: %s\n", dst, strerror(errno));
        return EXIT_INVALID;
    }
    mode_t mask = umask(0);
    umask(mask);
    int r = cli_engine_ops_of(e)->file_read(e, id, path, fd);
    if (r == 0 && (fchmod(fd, 0666 & ~mask) < 0 || rename(tmp, dst) < 0)) {
        fprintf(stderr, "stockade cp: %s: %s\n", dst, strerror(errno));
        r = EXIT_INVALID;
    }
    if (r != 0)
        (void)unlink(tmp);
    return r;
}

int cmd_cp(int argc, char **argv)
{
    static const struct option opts[] = {
        {"mode", required_argument, NULL, 'm'},
        {NULL, 0, NULL, 0},
    };
    int c, mode = -1;
    while ((c = getopt_long(argc, argv, "+m:", opts, NULL)) != -1) {
        switch (c) {
        case 'm': {
            char *end;
            long m = strtol(optarg, &end, 8);
            if (!*optarg || *end || m < 0 || m > 0777)
                return cli_usage_error("cp",
                                       "--mode takes octal permission bits (0 to 0777), "
                                       "not '%s'",
                                       optarg);
            mode = (int)m;
            break;
        }
        default:
            return cli_usage("cp", stderr, EXIT_USAGE);
        }
    }
    if (argc - optind != 2)
        return cli_usage_error("cp", "needs SRC and DST, one of them ID:/PATH");
    const char *src = argv[optind], *dst = argv[optind + 1];
    char src_id[128], dst_id[128];
    const char *src_path = NULL, *dst_path = NULL;
    bool from = sandbox_ref(src, src_id, sizeof(src_id), &src_path);
    bool to = sandbox_ref(dst, dst_id, sizeof(dst_id), &dst_path);
    if (from == to)
        return cli_usage_error("cp", from ? "copies between a sandbox and this host, not between "
                                            "two sandboxes"
                                          : "one of SRC and DST is ID:/PATH (a path inside a "
                                            "sandbox)");
    const char *path = from ? src_path : dst_path;
    if (path[0] != '/')
        return cli_usage_error("cp", "the path inside the sandbox is absolute, not '%s'", path);
    if (from && mode >= 0)
        return cli_usage_error("cp", "--mode applies to a copy into a sandbox");
    _cleanup_engine_ struct cli_engine *e = cli_engine_open("cp");
    return from ? copy_out(e, src_id, src_path, dst) : copy_in(e, src, dst_id, dst_path, mode);
}
