/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Running a helper program to its end: stdin from /dev/null, stdout (and
 * optionally stderr) to /dev/null or a file, no signal blocked in the child
 * whatever the caller blocks, and a wait that survives EINTR.
 */
#include "base.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>

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
