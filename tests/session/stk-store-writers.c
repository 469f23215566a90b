/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Bench-only (bench/store_lock.sh): N processes append K audit records each
 * to one state directory's store at once, as concurrent creates and
 * monitors write, and report how many writers failed, the wall time per
 * commit and the longest single wait of any append.
 *
 *   stk-store-writers STATE_DIR N K
 *
 * Prints one line: "writers N appends K failed F wall_ms W per_commit_ms C
 * worst_wait_ms X", then each failure's message on stderr.
 */
#include "session/audit.h"
#include "session/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc != 4)
        return 125;
    int n = atoi(argv[2]), k = atoi(argv[3]);
    if (n < 1 || n > 1024 || k < 1 || k > 10000)
        return 125;
    struct stk_store *st = NULL;
    struct stk_error *err = NULL;
    if (stk_store_open(argv[1], &st, &err) < 0) {
        fprintf(stderr, "%s\n", err->msg);
        return 1;
    }
    stk_store_close(st);
    int worst[2];
    if (pipe(worst) < 0)
        return 1;
    int64_t t0 = stk_clock_ms(CLOCK_MONOTONIC);
    for (int i = 0; i < n; i++) {
        pid_t p = fork();
        if (p < 0)
            return 1;
        if (p > 0)
            continue;
        close(worst[0]);
        if (stk_store_open(argv[1], &st, &err) < 0)
            _exit(2);
        int32_t w = 0;
        int rc = 0;
        for (int j = 0; j < k && !rc; j++) {
            int64_t a = stk_clock_ms(CLOCK_MONOTONIC);
            if (stk_audit_append(st, "bench", "exec", "stk-store-writers", NULL, &err) < 0) {
                fprintf(stderr, "%s\n", err->msg);
                rc = 3;
            }
            int64_t d = stk_clock_ms(CLOCK_MONOTONIC) - a;
            if (d > w)
                w = (int32_t)d;
        }
        (void)!write(worst[1], &w, sizeof(w));
        stk_store_close(st);
        _exit(rc);
    }
    close(worst[1]);
    int failed = 0, status;
    while (wait(&status) > 0)
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    int64_t wall = stk_clock_ms(CLOCK_MONOTONIC) - t0;
    int32_t w, max = 0;
    while (read(worst[0], &w, sizeof(w)) == (ssize_t)sizeof(w))
        if (w > max)
            max = w;
    printf("writers %d appends %d failed %d wall_ms %lld per_commit_ms %.1f worst_wait_ms %d\n", n,
           k, failed, (long long)wall, (double)wall / ((double)n * k), (int)max);
    return 0;
}
