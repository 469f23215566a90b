/* SPDX-License-Identifier: Apache-2.0 */
/*
 * init client — the host side of the stockade-init protocol
 * (docs/init-protocol.md). One connection per call that streams (attach,
 * exec); hello, start, signal and shutdown may share one.
 */
#ifndef STK_INIT_CLIENT_H
#define STK_INIT_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "base/base.h"

struct stk_init_conn;

/* Connects to the init socket at path; retries until timeout_ms (init may
 * still be starting). */
int stk_init_connect(const char *path, int timeout_ms, struct stk_init_conn **ret,
                     struct stk_error **err);
void stk_init_close(struct stk_init_conn *c);
static inline void stk_init_closep(struct stk_init_conn **c)
{
    stk_init_close(*c);
}
#define _cleanup_init_conn_ _cleanup_(stk_init_closep)

enum stk_init_state {
    STK_INIT_IDLE,
    STK_INIT_RUNNING,
    STK_INIT_EXITED,
};

struct stk_init_info {
    unsigned version;
    enum stk_init_state state;
    int pid;       /* the workload's, 0 while idle */
    int exit_code; /* exited: exit code, or 128+signal */
    int signal;    /* exited: the signal that ended it, or 0 */
};

int stk_init_hello(struct stk_init_conn *c, struct stk_init_info *ret, struct stk_error **err);

struct stk_init_proc {
    const char *const *argv;
    size_t argc;
    const char *const *env; /* extra "K=V" */
    size_t n_env;
    const char *cwd; /* NULL: init's own */
    bool tty;
    unsigned short rows, cols;
    /* a sandbox injected into a workload: the replica (Pod) to run in;
     * NULL: its only one. Not sent to init: the driver picks the Pod. */
    const char *replica;
    /* exec: a stream of RESIZE and KILL frames (the init protocol's
     * header and payloads) to forward while the process runs, read until
     * its end; others are refused. 0: none (stdin is never a control
     * stream). How the gateway's worker passes its client's frames on. */
    int ctl_fd;
};

/* Starts the main workload (once). A program that cannot be executed is an
 * error here ("init: exec: /bin/nosuch: No such file or directory"). */
int stk_init_start(struct stk_init_conn *c, const struct stk_init_proc *p, struct stk_error **err);

/* Streams the workload's output; cb gets stream 1 (stdout) or 2 (stderr).
 * Returns 0 when the workload exited (*ret_exit_code = code, or 128+signal;
 * *ret_signal = signal or 0), negative on error. cb returning negative stops
 * the attach (returns that value). */
typedef int (*stk_init_output_fn)(void *ud, int stream, const void *data, size_t n);
int stk_init_attach(struct stk_init_conn *c, stk_init_output_fn cb, void *ud, int *ret_exit_code,
                    int *ret_signal, struct stk_error **err);

/* Runs p in the sandbox. in_fd: data for stdin until EOF (-1: stdin closed at
 * once). out_fd, err_fd: where output goes (tty: all to out_fd). If p->tty
 * and in_fd is a terminal, it is put in raw mode (restored on return) and
 * SIGWINCH is forwarded as a resize. SIGINT/SIGTERM received while waiting
 * are forwarded to the process. Returns 0 with *ret_exit_code (0..255,
 * 128+N on signal N).
 *
 * A program that cannot be executed is reported like a shell does: the
 * message ("init: exec: /bin/nosuch: No such file or directory") goes to
 * err_fd and *ret_exit_code is 127 (not found) or 126 (found, not
 * executable). Protocol and connection failures are errors. */
int stk_init_exec(struct stk_init_conn *c, const struct stk_init_proc *p, int in_fd, int out_fd,
                  int err_fd, int *ret_exit_code, struct stk_error **err);

/* Sends sig to the main workload. */
int stk_init_signal(struct stk_init_conn *c, int sig, struct stk_error **err);

/* SIGTERM to everything, SIGKILL after grace_ms (capped at 60 s by init),
 * then init exits. Returns once init confirmed. */
int stk_init_shutdown(struct stk_init_conn *c, int grace_ms, struct stk_error **err);

/* Reads the regular file at path (absolute) inside the sandbox, without
 * following symbolic links; cb gets its content in order (cb returning
 * negative stops the read and returns that value). *ret_size: the size
 * init announced (at most STK_INITP_FILE_MAX, 16 MiB), *ret_mode its
 * permission bits; both may be NULL. */
#define STK_INIT_FILE_MAX (16 * 1024 * 1024) /* = STK_INITP_FILE_MAX */
typedef int (*stk_init_data_fn)(void *ud, const void *data, size_t n);
int stk_init_file_read(struct stk_init_conn *c, const char *path, stk_init_data_fn cb, void *ud,
                       uint64_t *ret_size, unsigned *ret_mode, struct stk_error **err);

/* Writes size bytes read from in_fd to path (absolute) inside the sandbox,
 * mode as its permission bits: a new file beside it renamed over it at the
 * end, so a failed transfer changes nothing. in_fd must yield exactly size
 * bytes (-EIO otherwise). */
int stk_init_file_write(struct stk_init_conn *c, const char *path, unsigned mode, uint64_t size,
                        int in_fd, struct stk_error **err);

#endif
