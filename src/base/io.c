/* SPDX-License-Identifier: Apache-2.0 */
/* Writing a whole buffer to a descriptor; taking an flock fairly, with a bound. */
#include "base.h"

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/syscall.h>
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

/* ---- a fair, bounded flock ----------------------------------------------
 *
 * flock(2) without LOCK_NB queues the caller in the kernel and wakes it when
 * the holder lets go: every waiter tries at once, none misses the moment. A
 * poller (LOCK_NB and a sleep) only wins when it happens to try while the
 * lock is free, so with 50 writers queued behind fsyncs some pollers lost
 * every round for seconds. The kernel has no timed flock, so the blocking
 * call is bounded by a timer of the waiting thread (timer_create with
 * SIGEV_THREAD_ID) that sends it a real-time signal of its own, whose
 * handler does nothing: the flock returns EINTR. The signal is unblocked
 * only around the flock, the timer fires only in the waiting thread and only
 * after the deadline, and a signal left pending is taken before the mask is
 * restored, so nothing else in the process (the gateway's other threads, a
 * monitor's signalfd) ever sees it. A process where something else already
 * handles that signal falls back to polling. */

/* glibc 2.36 names the field only in the kernel's header */
#ifndef sigev_notify_thread_id
#define sigev_notify_thread_id _sigev_un._tid
#endif

/* After the deadline the timer repeats at this period: a signal that came
 * between the unblock and the flock (and so interrupted nothing) is
 * followed by another. */
#define WAKE_REPEAT_NS (10 * 1000 * 1000L)

static void lock_wake(int sig)
{
    (void)sig;
}

static int wake_sig;
static pthread_once_t wake_once = PTHREAD_ONCE_INIT;

static void wake_install(void)
{
    int sig = SIGRTMIN + STK_FLOCK_WAKE_SIGNAL;
    struct sigaction old;
    if (sig > SIGRTMAX || sigaction(sig, NULL, &old) < 0)
        return;
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != lock_wake))
        return; /* someone else's */
    /* no SA_RESTART: the blocked flock returns EINTR */
    struct sigaction sa = {.sa_handler = lock_wake};
    sigemptyset(&sa.sa_mask);
    if (sigaction(sig, &sa, NULL) == 0)
        wake_sig = sig;
}

static int flock_poll(int fd, int op, int64_t deadline)
{
    long sleep_us = 200;
    for (;;) {
        if (flock(fd, op | LOCK_NB) == 0)
            return 0;
        if (errno != EWOULDBLOCK && errno != EINTR)
            return -errno;
        int64_t left = deadline - stk_clock_ms(CLOCK_MONOTONIC);
        if (left <= 0)
            return -ETIMEDOUT;
        /* short at first (a lock held for a few ms), growing to 20 ms so a
         * crowd of waiters does not spin */
        long us = sleep_us < left * 1000 ? sleep_us : (long)left * 1000;
        (void)nanosleep(
            &(struct timespec){.tv_sec = us / 1000000, .tv_nsec = (us % 1000000) * 1000}, NULL);
        if (sleep_us < 20000)
            sleep_us *= 2;
    }
}

static int flock_blocking(int fd, int op, int64_t deadline, int sig)
{
    sigset_t set, old;
    sigemptyset(&set);
    sigaddset(&set, sig);
    if (pthread_sigmask(SIG_BLOCK, &set, &old) != 0)
        return flock_poll(fd, op, deadline);
    struct sigevent ev = {.sigev_notify = SIGEV_THREAD_ID, .sigev_signo = sig};
    ev.sigev_notify_thread_id = (pid_t)syscall(SYS_gettid);
    timer_t t;
    if (timer_create(CLOCK_MONOTONIC, &ev, &t) < 0) {
        (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
        return flock_poll(fd, op, deadline);
    }
    int r;
    for (;;) {
        int64_t left = deadline - stk_clock_ms(CLOCK_MONOTONIC);
        if (left <= 0) {
            r = flock(fd, op | LOCK_NB) == 0 ? 0 : -ETIMEDOUT;
            break;
        }
        struct itimerspec its = {
            .it_value = {.tv_sec = left / 1000, .tv_nsec = (left % 1000) * 1000000},
            .it_interval = {.tv_nsec = WAKE_REPEAT_NS}};
        if (timer_settime(t, 0, &its, NULL) < 0) {
            r = flock_poll(fd, op, deadline);
            break;
        }
        (void)pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        int fr = flock(fd, op);
        int e = errno;
        (void)pthread_sigmask(SIG_BLOCK, &set, NULL);
        if (fr == 0) {
            r = 0;
            break;
        }
        if (e != EINTR) {
            r = -e;
            break;
        }
        /* the timer, or another signal: the deadline says which */
    }
    (void)timer_delete(t);
    /* a signal the timer sent after the flock returned: taken here */
    while (sigtimedwait(&set, NULL, &(struct timespec){0, 0}) == sig)
        ;
    (void)pthread_sigmask(SIG_SETMASK, &old, NULL);
    return r;
}

int stk_flock_wait(int fd, int op, int timeout_ms, int *ret_holder)
{
    if (flock(fd, op | LOCK_NB) == 0)
        return 0;
    if (errno != EWOULDBLOCK && errno != EINTR)
        return -errno;
    int64_t deadline = stk_clock_ms(CLOCK_MONOTONIC) + (timeout_ms > 0 ? timeout_ms : 0);
    int r = -ETIMEDOUT;
    if (timeout_ms > 0) {
        (void)pthread_once(&wake_once, wake_install);
        r = wake_sig ? flock_blocking(fd, op, deadline, wake_sig) : flock_poll(fd, op, deadline);
    }
    if (r == -ETIMEDOUT && ret_holder)
        *ret_holder = flock_holder(fd);
    return r;
}

void stk_pid_describe(int pid, char *buf, size_t n)
{
    if (pid <= 0) {
        snprintf(buf, n, "a process /proc/locks does not name");
        return;
    }
    char path[64], stat[512];
    snprintf(path, sizeof(path), "/proc/%d/stat", pid);
    FILE *f = fopen(path, "re");
    size_t len = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
    if (f)
        fclose(f);
    stat[len] = '\0';
    /* "PID (COMM) S ...": the command name may hold ')' itself */
    char *open = strchr(stat, '('), *close_ = strrchr(stat, ')');
    if (!open || !close_ || close_ < open || close_[1] != ' ' || !close_[2]) {
        snprintf(buf, n, "process %d (gone since)", pid);
        return;
    }
    *close_ = '\0';
    char state = close_[2];
    const char *how = state == 'T'   ? ", stopped"
                      : state == 't' ? ", stopped by a tracer"
                      : state == 'D' ? ", in an uninterruptible wait"
                      : state == 'Z' ? ", a zombie"
                                     : "";
    snprintf(buf, n, "process %d (%.16s%s)", pid, open + 1, how);
}
