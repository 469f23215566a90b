/* SPDX-License-Identifier: Apache-2.0 */
/* Writing a whole buffer to a descriptor; taking an flock with a bound. */
#include "base.h"

#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <time.h>
#include <unistd.h>

int stk_write_all(int fd, const void *data, size_t n)
{
    const char *p = data;
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
            /* a non-blocking descriptor: wait until it takes more */
            struct pollfd pf = {.fd = fd, .events = POLLOUT};
            (void)poll(&pf, 1, -1);
            continue;
        }
        if (w < 0)
            return -errno;
        if (w == 0)
            return -EIO;
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

/* The pid /proc/locks names for the FLOCK on fd's file, or 0. */
static int flock_holder(int fd)
{
    struct stat st;
    if (fstat(fd, &st) < 0)
        return 0;
    FILE *f = fopen("/proc/locks", "re");
    if (!f)
        return 0;
    char line[256];
    int pid = 0;
    unsigned maj, min;
    unsigned long long ino;
    char kind[16];
    while (!pid && fgets(line, sizeof(line), f)) {
        /* "1: FLOCK  ADVISORY  WRITE 1234 00:1a:5678 0 EOF"; blocked
         * waiters are "1: -> FLOCK ..." and are not holders */
        int p;
        if (sscanf(line, "%*d: %15s %*s %*s %d %x:%x:%llu", kind, &p, &maj, &min, &ino) == 5 &&
            !strcmp(kind, "FLOCK") && ino == (unsigned long long)st.st_ino &&
            makedev(maj, min) == st.st_dev)
            pid = p;
    }
    fclose(f);
    return pid;
}

int stk_flock_wait(int fd, int op, int timeout_ms, int *ret_holder)
{
    int64_t deadline = stk_clock_ms(CLOCK_MONOTONIC) + timeout_ms;
    long sleep_us = 200;
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        int64_t left = deadline - stk_clock_ms(CLOCK_MONOTONIC);
        if (left <= 0) {
            if (ret_holder)
                *ret_holder = flock_holder(fd);
            return -ETIMEDOUT;
        }
        /* short at first (a lock held for a few ms), growing to 20 ms so a
         * crowd of waiters does not spin */
        long us = sleep_us < left * 1000 ? sleep_us : (long)left * 1000;
        (void)nanosleep(
            &(struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000}, NULL);
        if (sleep_us < 20000)
            sleep_us *= 2;
    }
}
