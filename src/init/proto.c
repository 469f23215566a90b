/* SPDX-License-Identifier: Apache-2.0 */
/* The init wire format; see proto.h and docs/init-protocol.md. Libc only. */
#include "init/proto.h"

#include <errno.h>
#include <signal.h>
#include <string.h>

/* Which payload lengths each frame type allows; a table so that the header
 * decoder rejects a bad length before anyone reads the payload. */
struct frame_rule {
    uint8_t type;
    uint32_t min, max;
    bool has_stream;
    const char *name;
};

static const struct frame_rule frame_rules[] = {
    {STK_INITP_HELLO, 0, 0, false, "hello"},
    {STK_INITP_START, 11, STK_INITP_MAX_PAYLOAD, false, "start"},
    {STK_INITP_ATTACH, 0, 0, false, "attach"},
    {STK_INITP_EXEC, 11, STK_INITP_MAX_PAYLOAD, false, "exec"},
    {STK_INITP_SIGNAL, 4, 4, false, "signal"},
    {STK_INITP_SHUTDOWN, 4, 4, false, "shutdown"},
    {STK_INITP_FILE_READ, 1, STK_INITP_PATH_MAX, false, "file-read"},
    {STK_INITP_FILE_WRITE, STK_INITP_FILE_WRITE_FIXED + 1,
     STK_INITP_FILE_WRITE_FIXED + STK_INITP_PATH_MAX, false, "file-write"},
    {STK_INITP_STDIN, 0, STK_INITP_MAX_PAYLOAD, false, "stdin"},
    {STK_INITP_STDIN_EOF, 0, 0, false, "stdin-eof"},
    {STK_INITP_RESIZE, STK_INITP_RESIZE_LEN, STK_INITP_RESIZE_LEN, false, "resize"},
    {STK_INITP_KILL, 4, 4, false, "kill"},
    {STK_INITP_DATA, 0, STK_INITP_MAX_PAYLOAD, false, "data"},
    {STK_INITP_DATA_END, 0, 0, false, "data-end"},
    {STK_INITP_OK, 0, STK_INITP_HELLO_LEN, false, "ok"},
    {STK_INITP_OUTPUT, 0, STK_INITP_MAX_PAYLOAD, true, "output"},
    {STK_INITP_EXIT, STK_INITP_EXIT_LEN, STK_INITP_EXIT_LEN, false, "exit"},
    {STK_INITP_ERROR, STK_INITP_ERROR_MIN, STK_INITP_MAX_PAYLOAD, false, "error"},
};

static const struct frame_rule *rule_for(uint8_t type)
{
    for (size_t i = 0; i < sizeof(frame_rules) / sizeof(frame_rules[0]); i++)
        if (frame_rules[i].type == type)
            return &frame_rules[i];
    return NULL;
}

const char *stk_initp_type_name(uint8_t type)
{
    const struct frame_rule *r = rule_for(type);
    return r ? r->name : "unknown";
}

static uint32_t get_u32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

static uint16_t get_u16(const uint8_t *p)
{
    return (uint16_t)(p[0] << 8 | p[1]);
}

static void put_u32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put_u16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

int stk_initp_hdr_decode(const uint8_t buf[STK_INITP_HDR], struct stk_initp_hdr *ret)
{
    const struct frame_rule *r = rule_for(buf[0]);
    if (!r)
        return -EBADMSG;
    uint8_t stream = buf[1];
    if (r->has_stream ? (stream != 1 && stream != 2) : stream != 0)
        return -EBADMSG;
    uint32_t len = get_u32(buf + 2);
    if (len < r->min || len > r->max)
        return -EMSGSIZE;
    ret->type = buf[0];
    ret->stream = stream;
    ret->len = len;
    return 0;
}

void stk_initp_hdr_encode(uint8_t buf[STK_INITP_HDR], uint8_t type, uint8_t stream, uint32_t len)
{
    buf[0] = type;
    buf[1] = stream;
    put_u32(buf + 2, len);
}

/* ---- START / EXEC ------------------------------------------------------
 * u8 flags (bit 0 tty, bit 1 cwd present), u16 rows, u16 cols, u16 argc,
 * u16 n_env, u16 reserved (0); then cwd (if present), argv and env, each a
 * NUL-terminated string, and nothing after the last one. */

#define PROC_FIXED     11
#define PROC_FLAG_TTY  0x01
#define PROC_FLAG_CWD  0x02
#define PROC_FLAG_MASK 0x03

/* Takes the next NUL-terminated string of at most STK_INITP_MAX_STR bytes. */
static const char *take_string(const uint8_t *p, size_t n, size_t *off)
{
    size_t rest = n - *off;
    size_t lim = rest < STK_INITP_MAX_STR + 1 ? rest : STK_INITP_MAX_STR + 1;
    const uint8_t *nul = memchr(p + *off, '\0', lim);
    if (!nul)
        return NULL;
    const char *s = (const char *)(p + *off);
    *off = (size_t)(nul - p) + 1;
    return s;
}

static int fail(const char **ret_why, const char *why)
{
    if (ret_why)
        *ret_why = why;
    return -EINVAL;
}

int stk_initp_proc_decode(const uint8_t *p, size_t n, struct stk_initp_proc *ret,
                          const char **ret_why)
{
    if (n < PROC_FIXED)
        return fail(ret_why, "process description too short");
    uint8_t flags = p[0];
    if (flags & ~PROC_FLAG_MASK)
        return fail(ret_why, "unknown process flags");
    size_t argc = get_u16(p + 5), n_env = get_u16(p + 7);
    if (get_u16(p + 9) != 0)
        return fail(ret_why, "reserved field not zero");
    if (argc == 0)
        return fail(ret_why, "empty argv");
    if (argc > STK_INITP_MAX_ARGS)
        return fail(ret_why, "too many argv entries (limit 256)");
    if (n_env > STK_INITP_MAX_ENV)
        return fail(ret_why, "too many env entries (limit 256)");
    ret->tty = flags & PROC_FLAG_TTY;
    ret->rows = get_u16(p + 1);
    ret->cols = get_u16(p + 3);
    if (ret->rows > STK_INITP_WINSIZE_MAX || ret->cols > STK_INITP_WINSIZE_MAX)
        return fail(ret_why, "rows and columns are at most 4096 (0: unknown)");
    ret->cwd = NULL;
    size_t off = PROC_FIXED;
    if (flags & PROC_FLAG_CWD) {
        ret->cwd = take_string(p, n, &off);
        if (!ret->cwd || ret->cwd[0] != '/')
            return fail(ret_why, "cwd must be an absolute path of at most 4096 bytes");
    }
    for (size_t i = 0; i < argc; i++) {
        ret->argv[i] = take_string(p, n, &off);
        if (!ret->argv[i])
            return fail(ret_why, "argv entry missing or longer than 4096 bytes");
    }
    if (ret->argv[0][0] == '\0')
        return fail(ret_why, "empty program name");
    for (size_t i = 0; i < n_env; i++) {
        ret->env[i] = take_string(p, n, &off);
        if (!ret->env[i])
            return fail(ret_why, "env entry missing or longer than 4096 bytes");
        const char *eq = strchr(ret->env[i], '=');
        if (!eq || eq == ret->env[i])
            return fail(ret_why, "env entry is not K=V");
    }
    if (off != n)
        return fail(ret_why, "trailing bytes after the process description");
    ret->argv[argc] = NULL;
    ret->env[n_env] = NULL;
    ret->argc = argc;
    ret->n_env = n_env;
    return 0;
}

static int put_string(uint8_t *buf, size_t cap, size_t *off, const char *s)
{
    size_t len = strlen(s);
    if (len > STK_INITP_MAX_STR)
        return -EINVAL;
    if (cap - *off < len + 1)
        return -E2BIG;
    memcpy(buf + *off, s, len + 1);
    *off += len + 1;
    return 0;
}

ssize_t stk_initp_proc_encode(uint8_t *buf, size_t cap, const struct stk_initp_proc *p,
                              const char **ret_why)
{
    if (cap > STK_INITP_MAX_PAYLOAD)
        cap = STK_INITP_MAX_PAYLOAD;
    if (p->argc == 0 || p->argc > STK_INITP_MAX_ARGS)
        return fail(ret_why, "argv must have 1 to 256 entries");
    if (p->n_env > STK_INITP_MAX_ENV)
        return fail(ret_why, "at most 256 env entries");
    if (p->rows > STK_INITP_WINSIZE_MAX || p->cols > STK_INITP_WINSIZE_MAX)
        return fail(ret_why, "rows and columns are at most 4096 (0: unknown)");
    if (cap < PROC_FIXED)
        return -E2BIG;
    buf[0] = (uint8_t)((p->tty ? PROC_FLAG_TTY : 0) | (p->cwd ? PROC_FLAG_CWD : 0));
    put_u16(buf + 1, p->rows);
    put_u16(buf + 3, p->cols);
    put_u16(buf + 5, (uint16_t)p->argc);
    put_u16(buf + 7, (uint16_t)p->n_env);
    put_u16(buf + 9, 0);
    size_t off = PROC_FIXED;
    int r = 0;
    if (p->cwd)
        r = put_string(buf, cap, &off, p->cwd);
    for (size_t i = 0; r == 0 && i < p->argc; i++)
        r = put_string(buf, cap, &off, p->argv[i]);
    for (size_t i = 0; r == 0 && i < p->n_env; i++)
        r = put_string(buf, cap, &off, p->env[i]);
    if (r == -EINVAL)
        return fail(ret_why, "a string is longer than 4096 bytes");
    if (r < 0) {
        if (ret_why)
            *ret_why = "process description larger than 64 KiB";
        return r;
    }
    return (ssize_t)off;
}

/* ---- small fixed payloads ---------------------------------------------- */

void stk_initp_hello_encode(uint8_t buf[STK_INITP_HELLO_LEN], const struct stk_initp_hello *h)
{
    put_u32(buf, h->version);
    buf[4] = h->state;
    put_u32(buf + 5, (uint32_t)h->pid);
    put_u32(buf + 9, (uint32_t)h->exit_code);
    put_u32(buf + 13, (uint32_t)h->signal);
}

int stk_initp_hello_decode(const uint8_t *p, size_t n, struct stk_initp_hello *ret)
{
    if (n != STK_INITP_HELLO_LEN || p[4] > STK_INITP_STATE_EXITED)
        return -EBADMSG;
    ret->version = get_u32(p);
    ret->state = p[4];
    ret->pid = (int32_t)get_u32(p + 5);
    ret->exit_code = (int32_t)get_u32(p + 9);
    ret->signal = (int32_t)get_u32(p + 13);
    return 0;
}

void stk_initp_exit_encode(uint8_t buf[STK_INITP_EXIT_LEN], int32_t code, int32_t signal)
{
    put_u32(buf, (uint32_t)code);
    put_u32(buf + 4, (uint32_t)signal);
}

int stk_initp_exit_decode(const uint8_t *p, size_t n, int32_t *ret_code, int32_t *ret_signal)
{
    if (n != STK_INITP_EXIT_LEN)
        return -EBADMSG;
    int32_t code = (int32_t)get_u32(p), sig = (int32_t)get_u32(p + 4);
    if (code < 0 || code > 255 || sig < 0 || sig > 64)
        return -EBADMSG;
    *ret_code = code;
    *ret_signal = sig;
    return 0;
}

void stk_initp_resize_encode(uint8_t buf[STK_INITP_RESIZE_LEN], uint16_t rows, uint16_t cols)
{
    put_u16(buf, rows);
    put_u16(buf + 2, cols);
}

int stk_initp_resize_decode(const uint8_t *p, size_t n, uint16_t *ret_rows, uint16_t *ret_cols)
{
    if (n != STK_INITP_RESIZE_LEN)
        return -EBADMSG;
    uint16_t rows = get_u16(p), cols = get_u16(p + 2);
    if (rows < 1 || rows > STK_INITP_WINSIZE_MAX || cols < 1 || cols > STK_INITP_WINSIZE_MAX)
        return -ERANGE;
    *ret_rows = rows;
    *ret_cols = cols;
    return 0;
}

bool stk_initp_kill_signal_ok(uint32_t sig)
{
    /* what a terminal or a job-control shell sends; not the faults
     * (SEGV, BUS, ...) a process should only get from the kernel */
    static const uint32_t ok[] = {SIGHUP,  SIGINT,  SIGQUIT, SIGKILL, SIGUSR1, SIGUSR2,
                                  SIGTERM, SIGCONT, SIGSTOP, SIGTSTP, SIGWINCH};
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++)
        if (ok[i] == sig)
            return true;
    return false;
}

int stk_initp_kill_decode(const uint8_t *p, size_t n, uint32_t *ret_sig)
{
    uint32_t sig;
    if (stk_initp_u32_decode(p, n, &sig) < 0)
        return -EBADMSG;
    if (!stk_initp_kill_signal_ok(sig))
        return -EINVAL;
    *ret_sig = sig;
    return 0;
}

void stk_initp_u32_encode(uint8_t buf[4], uint32_t v)
{
    put_u32(buf, v);
}

int stk_initp_u32_decode(const uint8_t *p, size_t n, uint32_t *ret)
{
    if (n != 4)
        return -EBADMSG;
    *ret = get_u32(p);
    return 0;
}

size_t stk_initp_error_encode(uint8_t *buf, size_t cap, uint32_t code, uint8_t kind,
                              const char *msg)
{
    if (cap < STK_INITP_ERROR_MIN)
        return 0;
    put_u32(buf, code);
    buf[4] = kind;
    size_t len = strlen(msg);
    if (len > cap - STK_INITP_ERROR_MIN)
        len = cap - STK_INITP_ERROR_MIN;
    memcpy(buf + STK_INITP_ERROR_MIN, msg, len);
    return STK_INITP_ERROR_MIN + len;
}

int stk_initp_error_decode(const uint8_t *p, size_t n, uint32_t *ret_code, uint8_t *ret_kind,
                           char *msg, size_t msgsz)
{
    if (n < STK_INITP_ERROR_MIN || p[4] > STK_INITP_ERR_SPAWN || msgsz == 0)
        return -EBADMSG;
    *ret_code = get_u32(p);
    *ret_kind = p[4];
    size_t len = n - STK_INITP_ERROR_MIN;
    if (len > msgsz - 1)
        len = msgsz - 1;
    memcpy(msg, p + STK_INITP_ERROR_MIN, len);
    msg[len] = '\0';
    /* A NUL inside the message would silently cut it; show it instead. */
    for (size_t i = 0; i < len; i++)
        if (msg[i] == '\0')
            msg[i] = '?';
    return 0;
}

/* ---- FILE_READ / FILE_WRITE ------------------------------------------------ */

static void put_u64(uint8_t *p, uint64_t v)
{
    put_u32(p, (uint32_t)(v >> 32));
    put_u32(p + 4, (uint32_t)v);
}

static uint64_t get_u64(const uint8_t *p)
{
    return (uint64_t)get_u32(p) << 32 | get_u32(p + 4);
}

/* The path rules both ends apply: absolute, no NUL, no `..` component, and
 * a write names a file (no trailing slash, not the root). */
static const char *path_problem(const char *path, size_t len, bool write)
{
    if (len == 0 || path[0] != '/')
        return "the path must be absolute";
    if (len > STK_INITP_PATH_MAX)
        return "the path is longer than 4096 bytes";
    if (memchr(path, '\0', len))
        return "the path contains a NUL byte";
    for (size_t i = 0; i < len;) {
        size_t j = i;
        while (j < len && path[j] != '/')
            j++;
        if (j - i == 2 && path[i] == '.' && path[i + 1] == '.')
            return "the path has a '..' component";
        i = j + 1;
    }
    if (write && path[len - 1] == '/')
        return "the path names a directory, not a file";
    return NULL;
}

int stk_initp_file_decode(uint8_t type, const uint8_t *p, size_t n, struct stk_initp_file *ret,
                          const char **ret_why)
{
    size_t off = 0;
    ret->mode = 0;
    ret->size = 0;
    if (type == STK_INITP_FILE_WRITE) {
        if (n < STK_INITP_FILE_WRITE_FIXED)
            return fail(ret_why, "file request too short");
        ret->mode = get_u32(p);
        ret->size = get_u64(p + 4);
        if (ret->mode & ~0777u)
            return fail(ret_why, "the mode has bits other than 0777");
        if (ret->size > STK_INITP_FILE_MAX) {
            if (ret_why)
                *ret_why = "the file is larger than the limit of 16 MiB";
            return -EFBIG;
        }
        off = STK_INITP_FILE_WRITE_FIXED;
    } else if (type != STK_INITP_FILE_READ) {
        return fail(ret_why, "not a file request");
    }
    const char *why = path_problem((const char *)p + off, n - off, type == STK_INITP_FILE_WRITE);
    if (why)
        return fail(ret_why, why);
    memcpy(ret->path, p + off, n - off);
    ret->path[n - off] = '\0';
    return 0;
}

ssize_t stk_initp_file_encode(uint8_t type, uint8_t *buf, size_t cap,
                              const struct stk_initp_file *f, const char **ret_why)
{
    size_t len = strnlen(f->path, sizeof(f->path));
    const char *why = path_problem(f->path, len, type == STK_INITP_FILE_WRITE);
    if (why)
        return fail(ret_why, why);
    size_t off = 0;
    if (type == STK_INITP_FILE_WRITE) {
        if (f->mode & ~0777u)
            return fail(ret_why, "the mode has bits other than 0777");
        if (f->size > STK_INITP_FILE_MAX) {
            if (ret_why)
                *ret_why = "the file is larger than the limit of 16 MiB";
            return -EFBIG;
        }
        if (cap < STK_INITP_FILE_WRITE_FIXED)
            return -E2BIG;
        put_u32(buf, f->mode);
        put_u64(buf + 4, f->size);
        off = STK_INITP_FILE_WRITE_FIXED;
    } else if (type != STK_INITP_FILE_READ) {
        return fail(ret_why, "not a file request");
    }
    if (cap - off < len)
        return -E2BIG;
    memcpy(buf + off, f->path, len);
    return (ssize_t)(off + len);
}

void stk_initp_file_info_encode(uint8_t buf[STK_INITP_FILE_INFO_LEN], uint64_t size, uint32_t mode)
{
    put_u64(buf, size);
    put_u32(buf + 8, mode);
}

int stk_initp_file_info_decode(const uint8_t *p, size_t n, uint64_t *ret_size, uint32_t *ret_mode)
{
    if (n != STK_INITP_FILE_INFO_LEN)
        return -EBADMSG;
    uint64_t size = get_u64(p);
    if (size > STK_INITP_FILE_MAX)
        return -EBADMSG;
    *ret_size = size;
    *ret_mode = get_u32(p + 8);
    return 0;
}
