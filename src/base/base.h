/* SPDX-License-Identifier: Apache-2.0 */
/*
 * base — small helpers every other module uses: scope cleanup, the error
 * convention, an arena allocator, a growable buffer, enum tables and IP/CIDR
 * arithmetic. Nothing here knows about sandboxes.
 */
#ifndef STK_BASE_H
#define STK_BASE_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#define STK_VERSION_STRING STK_VERSION

#define STK_ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))
/* the text of a macro's value */
#define STK_STR_(x)      #x
#define STK_STR(x)       STK_STR_(x)
#define STK_PRINTF(f, a) __attribute__((format(printf, f, a)))
#define STK_UNUSED       __attribute__((unused))
#define STK_NORETURN     __attribute__((noreturn))

/* ---- scope cleanup (systemd style) ------------------------------------ */

#define _cleanup_(f) __attribute__((cleanup(f)))

static inline void stk_freep(void *p)
{
    free(*(void **)p);
}
static inline void stk_closep(int *fd)
{
    if (*fd >= 0)
        (void)close(*fd);
}
static inline void stk_fclosep(FILE **f)
{
    if (*f)
        (void)fclose(*f);
}
#define _cleanup_free_   _cleanup_(stk_freep)
#define _cleanup_close_  _cleanup_(stk_closep)
#define _cleanup_fclose_ _cleanup_(stk_fclosep)

/* Move ownership out of a cleanup variable. */
#define TAKE_PTR(p)                                                                                \
    ({                                                                                             \
        __typeof__(p) _tp = (p);                                                                   \
        (p) = NULL;                                                                                \
        _tp;                                                                                       \
    })
#define TAKE_FD(fd)                                                                                \
    ({                                                                                             \
        int _tf = (fd);                                                                            \
        (fd) = -1;                                                                                 \
        _tf;                                                                                       \
    })

/* ---- allocation ------------------------------------------------------- */

/* Allocation failure aborts: there is no sane recovery in a CLI or a
 * supervisor, and checking every small allocation hides the real errors. */
STK_NORETURN void stk_oom(void);
void *stk_xmalloc(size_t n);
void *stk_xcalloc(size_t n, size_t size);
void *stk_xrealloc(void *p, size_t n);
char *stk_xstrdup(const char *s);
char *stk_xstrndup(const char *s, size_t n);
STK_PRINTF(1, 2) char *stk_xasprintf(const char *fmt, ...);
STK_PRINTF(1, 0) char *stk_xvasprintf(const char *fmt, va_list ap);

/* ---- errors ------------------------------------------------------------ */

/*
 * Functions return int: >= 0 success, negative failure. Where a message
 * matters, the last parameter is `struct stk_error **err`; stk_error_make()
 * fills it and returns the negative value, so `return stk_error_make(...)`
 * is the idiom. Library code never prints and never exits.
 */
struct stk_error {
    int code; /* positive errno value, or 0 for "not an OS error" */
    char *msg;
};

STK_PRINTF(3, 4) int stk_error_make(struct stk_error **err, int code, const char *fmt, ...);
/* Like stk_error_make, with ": strerror(code)" appended. */
STK_PRINTF(3, 4) int stk_error_errno(struct stk_error **err, int code, const char *fmt, ...);
/* Prefix an existing error with context ("context: old message"). Returns
 * the error's negative value so it can end a failing path. */
STK_PRINTF(2, 3) int stk_error_wrap(struct stk_error **err, const char *fmt, ...);
void stk_error_free(struct stk_error *err);

/* ---- modules loaded on demand (base/module.c) ------------------------- */

/* The address of symbol in the private module stockade-<module>.so, loaded
 * on first use; NULL with *err set when the module is missing or is not
 * this build's. */
void *stk_module_sym(const char *module, const char *symbol, struct stk_error **err);
/* The same, typed as a pointer to the declared function or object fn. */
#define STK_MODULE_SYM(module, fn, err) ((__typeof__(&(fn)))stk_module_sym(module, #fn, err))

/* Milliseconds on a clock: CLOCK_MONOTONIC for deadlines, CLOCK_REALTIME
 * for records. */
int64_t stk_clock_ms(int clock);

/* Dies by SIGKILL when $STOCKADE_FAULT names this point: how the crash
 * recovery tests stop stockade mid-create, mid-delete (docs/sessions.md). */
void stk_fault_point(const char *point);
static inline void stk_error_freep(struct stk_error **e)
{
    stk_error_free(*e);
    *e = NULL;
}
#define _cleanup_error_ _cleanup_(stk_error_freep)

/* ---- arena ------------------------------------------------------------- */

/* A bump allocator: everything parsed from one input lives and dies together. */
struct stk_arena;
struct stk_arena *stk_arena_new(void);
void stk_arena_free(struct stk_arena *a);
static inline void stk_arena_freep(struct stk_arena **a)
{
    stk_arena_free(*a);
}
#define _cleanup_arena_ _cleanup_(stk_arena_freep)
void *stk_arena_alloc(struct stk_arena *a, size_t n); /* zeroed, 16-byte aligned */
void *stk_arena_array(struct stk_arena *a, size_t n, size_t size);
char *stk_arena_strdup(struct stk_arena *a, const char *s);
char *stk_arena_strndup(struct stk_arena *a, const char *s, size_t n);
STK_PRINTF(2, 3) char *stk_arena_printf(struct stk_arena *a, const char *fmt, ...);
size_t stk_arena_used(const struct stk_arena *a);

/* ---- growable byte buffer ---------------------------------------------- */

struct stk_buf {
    char *data; /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
};
void stk_buf_append(struct stk_buf *b, const void *data, size_t n);
void stk_buf_puts(struct stk_buf *b, const char *s);
void stk_buf_putc(struct stk_buf *b, char c);
STK_PRINTF(2, 3) void stk_buf_printf(struct stk_buf *b, const char *fmt, ...);
STK_PRINTF(2, 0) void stk_buf_vprintf(struct stk_buf *b, const char *fmt, va_list ap);
const char *stk_buf_str(struct stk_buf *b); /* "" when empty */
char *stk_buf_steal(struct stk_buf *b);     /* caller frees; buffer is reset */
void stk_buf_free(struct stk_buf *b);
#define _cleanup_buf_ _cleanup_(stk_buf_free)

/* ---- enum <-> string tables -------------------------------------------- */

/* Tables are `const char *const names[]` indexed by the enum value. */
int stk_enum_lookup(const char *const *names, size_t n, const char *s);
/* "a|b|c", for messages and docs; static storage per table is not kept, so
 * the result is written into buf. */
const char *stk_enum_join(const char *const *names, size_t n, const char *sep, char *buf,
                          size_t bufsz);

/* ---- paths ------------------------------------------------------------- */

/* snprintf for paths: a path that does not fit is -ENAMETOOLONG and leaves
 * buf empty, never cut. Returns the length otherwise. */
STK_PRINTF(3, 4) int stk_path_fmt(char *buf, size_t n, const char *fmt, ...);
STK_PRINTF(3, 0) int stk_path_vfmt(char *buf, size_t n, const char *fmt, va_list ap);
/* Same, with the message set in *err (the path's start, its length). */
STK_PRINTF(4, 5)
int stk_path_make(char *buf, size_t n, struct stk_error **err, const char *fmt, ...);

/* ---- descriptors ------------------------------------------------------- */

/* Writes all n bytes (EINTR retried; a non-blocking fd waited for with
 * poll). 0, or -errno (-EIO when the descriptor takes nothing). */
int stk_write_all(int fd, const void *data, size_t n);

/* Takes an flock (op: LOCK_EX or LOCK_SH) on fd, waiting at most timeout_ms.
 * 0; -ETIMEDOUT when someone held it all that time (*ret_holder, when not
 * NULL, names the holder's pid as /proc/locks shows it, or 0); -errno on
 * other failures. A blocking flock (the kernel wakes the waiters when the
 * holder lets go: nobody starves, as pollers did), interrupted at the
 * deadline by a timer of the calling thread with the real-time signal
 * SIGRTMIN + STK_FLOCK_WAKE_SIGNAL (io.c): it never hangs behind a stopped
 * process, and no other thread sees the signal. Safe in any thread. */
#define STK_FLOCK_WAKE_SIGNAL 4
int stk_flock_wait(int fd, int op, int timeout_ms, int *ret_holder);
/* "process 1234 (stockade-mon, stopped)": what a lock's holder is, for a
 * message (pid 0: /proc/locks named none). */
void stk_pid_describe(int pid, char *buf, size_t n);
/* How long a setup waits for a host-wide lock (the network's, the id
 * ranges') before it gives up with the holder's pid: a holder keeps one for
 * milliseconds to a few hundred under load, so this is far past a queue of
 * 50 concurrent creates. A teardown waits longer (what it gives up on stays
 * on the host until gc): only a holder that is stuck makes it fail. */
#define STK_HOST_LOCK_WAIT_MS     60000
#define STK_HOST_LOCK_TEARDOWN_MS 600000

/* ---- helper programs ---------------------------------------------------- */

struct stk_spawn {
    const char *path; /* the program; looked up in $PATH when search */
    bool search;
    const char *const *argv; /* NULL-terminated */
    const char *const *envp; /* NULL: the caller's environment */
    const char *out;         /* stdout to this file (created 0600, truncated); NULL: /dev/null */
    bool err_to_out;         /* stderr as stdout; otherwise the caller's stderr */
};
/* Runs a helper to its end with stdin from /dev/null and no signal blocked
 * in the child. 0 with its wait status in *ret_status, or -errno when it
 * could not be started or waited for. */
int stk_spawn_wait(const struct stk_spawn *sp, int *ret_status);

/* ---- priority ------------------------------------------------------------ */

/* Sets the nice value of every thread of this process (Linux keeps it per
 * thread) and, when this process leads a session, of its autogroup: with
 * autogroups on, the scheduler weighs sessions against each other first,
 * so a nice value alone does not make a session leader background work. */
void stk_set_nice(int nice);

/* ---- small string helpers ---------------------------------------------- */

bool stk_streq(const char *a, const char *b); /* NULL-safe */
bool stk_startswith(const char *s, const char *prefix);
/* Levenshtein distance bounded by max (returns max+1 when larger). */
unsigned stk_edit_distance(const char *a, const char *b, unsigned max);

/* ---- IP addresses and CIDRs -------------------------------------------- */

enum stk_family {
    STK_FAMILY_NONE = 0,
    STK_FAMILY_V4 = 4,
    STK_FAMILY_V6 = 6,
};

struct stk_cidr {
    uint8_t family; /* enum stk_family */
    uint8_t prefix; /* 0..32 or 0..128 */
    uint8_t addr[16];
};

#define STK_CIDR_STRLEN 50 /* INET6_ADDRSTRLEN + "/128" */

/* Parses "a.b.c.d/n" or "x::y/n". Host bits set is an error (the caller
 * learns the normalised form in *ret_why). On failure returns -EINVAL and
 * points *ret_why at a static description. */
int stk_cidr_parse(const char *s, struct stk_cidr *ret, const char **ret_why);
/* Parses a bare address (no prefix) into a full-length CIDR. */
int stk_addr_parse(const char *s, struct stk_cidr *ret);
const char *stk_cidr_format(const struct stk_cidr *c, char buf[STK_CIDR_STRLEN]);
/* Same family and inner lies entirely inside outer. */
bool stk_cidr_contains(const struct stk_cidr *outer, const struct stk_cidr *inner);
bool stk_cidr_equal(const struct stk_cidr *a, const struct stk_cidr *b);
/* Clears host bits (for "did you mean" messages). */
void stk_cidr_normalise(struct stk_cidr *c);

#endif
