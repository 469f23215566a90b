/* SPDX-License-Identifier: Apache-2.0 */
/*
 * proto — the wire format between stockade-init (PID 1 of a local sandbox)
 * and the host. Libc only: the same proto.c is compiled into the static init
 * binary and into libstockade. docs/init-protocol.md is the reference.
 *
 * A frame is a 6-byte header (u8 type, u8 stream, u32 big-endian payload
 * length) followed by at most STK_INITP_MAX_PAYLOAD bytes. Every decoder
 * checks lengths before reading and returns a negative errno on bad input.
 */
#ifndef STK_INIT_PROTO_H
#define STK_INIT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define STK_INITP_VERSION     1
#define STK_INITP_HDR         6
#define STK_INITP_MAX_PAYLOAD 65536
#define STK_INITP_MAX_FRAME   (STK_INITP_HDR + STK_INITP_MAX_PAYLOAD)
#define STK_INITP_MAX_ARGS    256
#define STK_INITP_MAX_ENV     256
#define STK_INITP_MAX_STR     4096
/* FILE_READ / FILE_WRITE: the largest file one request moves (the hard
 * limit of `stockade cp` and the gateway's files API), and the longest path. */
#define STK_INITP_FILE_MAX (16 * 1024 * 1024)
#define STK_INITP_PATH_MAX 4096

enum stk_initp_type {
    /* requests, client -> init */
    STK_INITP_HELLO = 1,
    STK_INITP_START = 2,
    STK_INITP_ATTACH = 3,
    STK_INITP_EXEC = 4,
    STK_INITP_SIGNAL = 5,
    STK_INITP_SHUTDOWN = 6,
    STK_INITP_FILE_READ = 7,
    STK_INITP_FILE_WRITE = 8,
    /* inside an EXEC, client -> init */
    STK_INITP_STDIN = 16,
    STK_INITP_STDIN_EOF = 17,
    STK_INITP_RESIZE = 18,
    STK_INITP_KILL = 19,
    /* a file's content, both ways (FILE_READ: init -> client; FILE_WRITE:
     * client -> init), then DATA_END */
    STK_INITP_DATA = 20,
    STK_INITP_DATA_END = 21,
    /* init -> client */
    STK_INITP_OK = 32,
    STK_INITP_OUTPUT = 33,
    STK_INITP_EXIT = 34,
    STK_INITP_ERROR = 35,
};

enum stk_initp_state {
    STK_INITP_STATE_IDLE = 0,
    STK_INITP_STATE_RUNNING = 1,
    STK_INITP_STATE_EXITED = 2,
};

/* ERROR frames say whether the request was refused or the program could not
 * be started (execve failed: the client reports it like a shell does). */
enum stk_initp_error_kind {
    STK_INITP_ERR_REQUEST = 0,
    STK_INITP_ERR_SPAWN = 1,
};

struct stk_initp_hdr {
    uint8_t type;
    uint8_t stream; /* OUTPUT: 1 stdout, 2 stderr; 0 otherwise */
    uint32_t len;
};

/* Checks type, stream and the length the type allows. -EBADMSG: unknown
 * type or stream; -EMSGSIZE: length out of range for the type. */
int stk_initp_hdr_decode(const uint8_t buf[STK_INITP_HDR], struct stk_initp_hdr *ret);
void stk_initp_hdr_encode(uint8_t buf[STK_INITP_HDR], uint8_t type, uint8_t stream, uint32_t len);

/* START and EXEC payload. Decoded strings point into the payload buffer. */
struct stk_initp_proc {
    bool tty;
    uint16_t rows, cols;
    const char *cwd; /* NULL: init's own */
    size_t argc, n_env;
    const char *argv[STK_INITP_MAX_ARGS + 1]; /* NULL-terminated */
    const char *env[STK_INITP_MAX_ENV + 1];   /* "K=V", NULL-terminated */
};

/* Returns 0, or -EINVAL with *ret_why set to a static reason. */
int stk_initp_proc_decode(const uint8_t *p, size_t n, struct stk_initp_proc *ret,
                          const char **ret_why);
/* Writes the payload into buf (cap bytes); returns its length, or -E2BIG /
 * -EINVAL with *ret_why set. */
ssize_t stk_initp_proc_encode(uint8_t *buf, size_t cap, const struct stk_initp_proc *p,
                              const char **ret_why);

struct stk_initp_hello {
    uint32_t version;
    uint8_t state; /* enum stk_initp_state */
    int32_t pid;
    int32_t exit_code; /* valid when exited */
    int32_t signal;    /* valid when exited; 0 if it exited normally */
};
#define STK_INITP_HELLO_LEN 17
void stk_initp_hello_encode(uint8_t buf[STK_INITP_HELLO_LEN], const struct stk_initp_hello *h);
int stk_initp_hello_decode(const uint8_t *p, size_t n, struct stk_initp_hello *ret);

/* EXIT payload: exit code, or the signal that ended the process. */
#define STK_INITP_EXIT_LEN 8
void stk_initp_exit_encode(uint8_t buf[STK_INITP_EXIT_LEN], int32_t code, int32_t signal);
int stk_initp_exit_decode(const uint8_t *p, size_t n, int32_t *ret_code, int32_t *ret_signal);

/* RESIZE payload: u16 rows, u16 cols, each 1..STK_INITP_WINSIZE_MAX
 * (-ERANGE otherwise). */
#define STK_INITP_RESIZE_LEN  4
#define STK_INITP_WINSIZE_MAX 4096
void stk_initp_resize_encode(uint8_t buf[STK_INITP_RESIZE_LEN], uint16_t rows, uint16_t cols);
int stk_initp_resize_decode(const uint8_t *p, size_t n, uint16_t *ret_rows, uint16_t *ret_cols);

/* KILL payload: a u32 signal from the set a client may send an exec'd
 * process group (HUP INT QUIT KILL USR1 USR2 TERM CONT STOP TSTP WINCH);
 * -EINVAL for any other. */
bool stk_initp_kill_signal_ok(uint32_t sig);
int stk_initp_kill_decode(const uint8_t *p, size_t n, uint32_t *ret_sig);

/* SIGNAL, KILL, SHUTDOWN (grace ms) and OK-to-EXEC (pid) carry one u32. */
void stk_initp_u32_encode(uint8_t buf[4], uint32_t v);
int stk_initp_u32_decode(const uint8_t *p, size_t n, uint32_t *ret);

/* ERROR payload: u32 errno, u8 kind, message bytes (no NUL on the wire). */
#define STK_INITP_ERROR_MIN 5
size_t stk_initp_error_encode(uint8_t *buf, size_t cap, uint32_t code, uint8_t kind,
                              const char *msg);
/* Copies the message NUL-terminated into msg (msgsz bytes, truncating). */
int stk_initp_error_decode(const uint8_t *p, size_t n, uint32_t *ret_code, uint8_t *ret_kind,
                           char *msg, size_t msgsz);

/* FILE_READ payload: the path (no NUL on the wire). FILE_WRITE payload:
 * u32 mode (permission bits, at most 0777), u64 size, the path. A path is
 * absolute, at most STK_INITP_PATH_MAX bytes, without NUL, without a `..`
 * component and, for a write, not ending in `/`. */
struct stk_initp_file {
    uint32_t mode;                     /* FILE_WRITE */
    uint64_t size;                     /* FILE_WRITE: bytes that will follow */
    char path[STK_INITP_PATH_MAX + 1]; /* NUL-terminated copy */
};
#define STK_INITP_FILE_WRITE_FIXED 12
/* Returns 0, or -EINVAL / -EFBIG with *ret_why set to a static reason. */
int stk_initp_file_decode(uint8_t type, const uint8_t *p, size_t n, struct stk_initp_file *ret,
                          const char **ret_why);
/* Writes the payload of a FILE_READ or FILE_WRITE; returns its length, or
 * -EINVAL / -EFBIG / -E2BIG with *ret_why set. */
ssize_t stk_initp_file_encode(uint8_t type, uint8_t *buf, size_t cap,
                              const struct stk_initp_file *f, const char **ret_why);
/* OK to FILE_READ: u64 size, u32 mode of the file opened. */
#define STK_INITP_FILE_INFO_LEN 12
void stk_initp_file_info_encode(uint8_t buf[STK_INITP_FILE_INFO_LEN], uint64_t size, uint32_t mode);
int stk_initp_file_info_decode(const uint8_t *p, size_t n, uint64_t *ret_size, uint32_t *ret_mode);

const char *stk_initp_type_name(uint8_t type);

#endif
