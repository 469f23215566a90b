/* TEMPORARY: replaced by the init branch's header at merge */
#ifndef STK_INIT_CLIENT_H
#define STK_INIT_CLIENT_H
#include "base/base.h"
#include <stdbool.h>
#include <stddef.h>
struct stk_init_conn;
int stk_init_connect(const char *path, int timeout_ms, struct stk_init_conn **ret, struct stk_error **err);
void stk_init_close(struct stk_init_conn *c);
enum stk_init_state { STK_INIT_IDLE, STK_INIT_RUNNING, STK_INIT_EXITED };
struct stk_init_info { unsigned version; enum stk_init_state state; int pid; int exit_code; int signal; };
int stk_init_hello(struct stk_init_conn *c, struct stk_init_info *ret, struct stk_error **err);
struct stk_init_proc {
    const char *const *argv; size_t argc;
    const char *const *env; size_t n_env;
    const char *cwd;
    bool tty; unsigned short rows, cols;
};
int stk_init_start(struct stk_init_conn *c, const struct stk_init_proc *p, struct stk_error **err);
typedef int (*stk_init_output_fn)(void *ud, int stream, const void *data, size_t n);
int stk_init_attach(struct stk_init_conn *c, stk_init_output_fn cb, void *ud, int *ret_exit_code, int *ret_signal, struct stk_error **err);
int stk_init_exec(struct stk_init_conn *c, const struct stk_init_proc *p, int in_fd, int out_fd, int err_fd, int *ret_exit_code, struct stk_error **err);
int stk_init_signal(struct stk_init_conn *c, int sig, struct stk_error **err);
int stk_init_shutdown(struct stk_init_conn *c, int grace_ms, struct stk_error **err);
#endif
