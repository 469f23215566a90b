/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a helper program to its end: stdin from /dev/null, stdout (and
 * optionally stderr) to /dev/null or a file, no signal blocked in the child
 * whatever the caller blocks, and a wait that survives EINTR.
 */
#include "base.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

int stk_spawn_wait(const struct stk_spawn *sp, int *ret_status)
{
    posix_spawn_file_actions_t fa;
    posix_spawnattr_t at;
    sigset_t none;
    sigemptyset(&none);
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 0, "/dev/null", O_RDONLY, 0);
    if (sp->out)
        posix_spawn_file_actions_addopen(&fa, 1, sp->out, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    else
        posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
    if (sp->err_to_out)
        posix_spawn_file_actions_adddup2(&fa, 1, 2);
    posix_spawnattr_init(&at);
    posix_spawnattr_setsigmask(&at, &none);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETSIGMASK);
    /* posix_spawn's prototype predates const; it writes neither array */
    union {
        const char *const *c;
        char *const *m;
    } av = {.c = sp->argv}, ev = {.c = sp->envp};
    extern char **environ;
    pid_t pid;
    int e = sp->search ? posix_spawnp(&pid, sp->path, &fa, &at, av.m, ev.m ? ev.m : environ)
                       : posix_spawn(&pid, sp->path, &fa, &at, av.m, ev.m ? ev.m : environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&at);
    if (e != 0)
        return -e;
    int status = 0;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return -errno;
    *ret_status = status;
    return 0;
}

void stk_set_nice(int nice)
{
    DIR *d = opendir("/proc/self/task");
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (e->d_name[0] != '.')
            (void)setpriority(PRIO_PROCESS, (id_t)strtol(e->d_name, NULL, 10), nice);
    if (d)
        closedir(d);
    (void)setpriority(PRIO_PROCESS, 0, nice);
    if (getsid(0) != getpid())
        return;
    int fd = open("/proc/self/autogroup", O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return; /* a kernel without autogroups */
    char buf[16];
    int n = snprintf(buf, sizeof(buf), "%d", nice);
    (void)!write(fd, buf, (size_t)n);
    close(fd);
}
