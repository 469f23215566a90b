/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The CLI as a client of `stockade serve` (docs/api.md): `--server URL` or
 * $STOCKADE_SERVER selects it, with a bearer token or a client certificate.
 * This file is the transport only (libcurl); the commands build the
 * requests and print the answers with the printers embedded mode uses, so
 * both modes print the same thing from the same record JSON.
 *
 * The token is sent in a header and never printed: libcurl's verbose mode
 * stays off and error messages name the server, never the credentials.
 */
#include "cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <unistd.h>

#define REMOTE_MAX_ANSWER   (64 * 1024 * 1024)
#define REMOTE_CONNECT_S    10
#define REMOTE_MAX_TOKEN    4096
#define REMOTE_UNIX_PREFIX  "unix:"
#define REMOTE_UNIX_BASEURL "http://localhost"

struct cli_remote_opts cli_remote = {0};

bool cli_remote_active(void)
{
    return cli_remote.server != NULL;
}

void cli_remote_from_env(void)
{
    if (!cli_remote.server && getenv("STOCKADE_SERVER") && *getenv("STOCKADE_SERVER"))
        cli_remote.server = getenv("STOCKADE_SERVER");
    if (!cli_remote.token && getenv("STOCKADE_TOKEN") && *getenv("STOCKADE_TOKEN"))
        cli_remote.token = getenv("STOCKADE_TOKEN");
    if (!cli_remote.token_file && getenv("STOCKADE_TOKEN_FILE") && *getenv("STOCKADE_TOKEN_FILE"))
        cli_remote.token_file = getenv("STOCKADE_TOKEN_FILE");
}

/* The token: --token / $STOCKADE_TOKEN, else the first line of the token
 * file. NULL without one (a client certificate may be the credential). */
static int token_get(const char *cmd, char **ret)
{
    *ret = NULL;
    if (cli_remote.token) {
        *ret = stk_xstrdup(cli_remote.token);
        return 0;
    }
    if (!cli_remote.token_file)
        return 0;
    _cleanup_fclose_ FILE *f = fopen(cli_remote.token_file, "re");
    if (!f) {
        fprintf(stderr, "stockade %s: cannot read the token file %s: %s\n", cmd,
                cli_remote.token_file, strerror(errno));
        return EXIT_USAGE;
    }
    char *line = stk_xcalloc(1, REMOTE_MAX_TOKEN + 2);
    if (!fgets(line, REMOTE_MAX_TOKEN + 2, f) || strlen(line) > REMOTE_MAX_TOKEN) {
        fprintf(stderr, "stockade %s: the token file %s is empty or too long\n", cmd,
                cli_remote.token_file);
        free(line);
        return EXIT_USAGE;
    }
    line[strcspn(line, "\r\n")] = '\0';
    *ret = line;
    return 0;
}

struct sink {
    CURL *curl;
    struct stk_buf body; /* the answer, or an error answer of a stream */
    int fd;              /* a stream's 2xx body goes here; -1: buffer it */
    bool failed;
};

static size_t on_data(char *p, size_t size, size_t n, void *ud)
{
    struct sink *s = ud;
    size_t len = size * n;
    long status = 0;
    curl_easy_getinfo(s->curl, CURLINFO_RESPONSE_CODE, &status);
    if (s->fd >= 0 && status >= 200 && status < 300) {
        for (size_t off = 0; off < len;) {
            ssize_t w = write(s->fd, p + off, len - off);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                s->failed = true;
                return 0;
            }
            off += (size_t)w;
        }
        return len;
    }
    if (s->body.len + len > REMOTE_MAX_ANSWER)
        return 0;
    stk_buf_append(&s->body, p, len);
    return len;
}

/* "stockade CMD: MESSAGE" from the server's JSON error (and its
 * diagnostics), else the status line. */
static void print_error(const char *cmd, long status, json_t *j)
{
    json_t *e = json_object_get(j, "error");
    const char *msg = json_string_value(json_object_get(e, "message"));
    if (msg && *msg)
        fprintf(stderr, "stockade %s: %s\n", cmd, msg);
    else
        fprintf(stderr, "stockade %s: the server answered HTTP %ld\n", cmd, status);
    size_t i;
    json_t *d;
    json_array_foreach(json_object_get(e, "diagnostics"), i, d)
    {
        if (json_is_string(d))
            fprintf(stderr, "%s\n", json_string_value(d));
    }
}

int cli_remote_call(const char *cmd, const char *method, const char *path, json_t *body, int fd,
                    json_t **ret)
{
    if (ret)
        *ret = NULL;
    _cleanup_free_ char *token = NULL;
    int r = token_get(cmd, &token);
    if (r != 0)
        return r;
    static bool inited;
    if (!inited) {
        curl_global_init(CURL_GLOBAL_DEFAULT);
        inited = true;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        fprintf(stderr, "stockade %s: cannot set up an HTTP client\n", cmd);
        return EXIT_SETUP;
    }
    const char *base = cli_remote.server;
    bool unix_socket = !strncmp(base, REMOTE_UNIX_PREFIX, strlen(REMOTE_UNIX_PREFIX));
    if (unix_socket) {
        curl_easy_setopt(c, CURLOPT_UNIX_SOCKET_PATH, base + strlen(REMOTE_UNIX_PREFIX));
        base = REMOTE_UNIX_BASEURL;
    }
    size_t blen = strlen(base);
    while (blen > 0 && base[blen - 1] == '/')
        blen--;
    _cleanup_free_ char *url = stk_xasprintf("%.*s%s", (int)blen, base, path);
    _cleanup_free_ char *auth = token ? stk_xasprintf("Authorization: Bearer %s", token) : NULL;
    _cleanup_free_ char *payload = body ? json_dumps(body, JSON_COMPACT) : NULL;
    struct curl_slist *headers = NULL;
    if (auth)
        headers = curl_slist_append(headers, auth);
    if (payload)
        headers = curl_slist_append(headers, "Content-Type: application/json");
    headers = curl_slist_append(headers, "Accept: application/json");
    headers = curl_slist_append(headers, "Expect:");
    struct sink s = {.curl = c, .fd = fd};

    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, (long)REMOTE_CONNECT_S);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    if (payload) {
        curl_easy_setopt(c, CURLOPT_POSTFIELDS, payload);
        curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE, (long)strlen(payload));
    }
    if (cli_remote.cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, cli_remote.cacert);
    if (cli_remote.cert) {
        curl_easy_setopt(c, CURLOPT_SSLCERT, cli_remote.cert);
        curl_easy_setopt(c, CURLOPT_SSLKEY, cli_remote.key);
    }
    char curl_err[CURL_ERROR_SIZE] = "";
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, curl_err);

    CURLcode cr = curl_easy_perform(c);
    long status = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    if (token)
        explicit_bzero(token, strlen(token));
    if (auth)
        explicit_bzero(auth, strlen(auth));
    curl_easy_cleanup(c);

    int status_out = 0;
    if (cr != CURLE_OK && !(s.failed || (fd >= 0 && status >= 200 && status < 300))) {
        fprintf(stderr, "stockade %s: %s: %s\n", cmd, cli_remote.server,
                curl_err[0] ? curl_err : curl_easy_strerror(cr));
        status_out = EXIT_SETUP;
    } else if (cr != CURLE_OK) {
        /* a stream ended early, or stdout went away */
        status_out = s.failed ? EXIT_INVALID : EXIT_SETUP;
        if (!s.failed)
            fprintf(stderr, "stockade %s: the stream ended early: %s\n", cmd,
                    curl_err[0] ? curl_err : curl_easy_strerror(cr));
    } else {
        json_t *j = s.body.len ? json_loadb(s.body.data, s.body.len, 0, NULL) : NULL;
        if (status < 200 || status >= 300) {
            print_error(cmd, status, j);
            json_decref(j);
            status_out = EXIT_INVALID;
        } else if (ret) {
            if (!j) {
                fprintf(stderr, "stockade %s: the server's answer is not JSON\n", cmd);
                status_out = EXIT_INVALID;
            }
            *ret = j;
        } else {
            json_decref(j);
        }
    }
    stk_buf_free(&s.body);
    return status_out;
}

char *cli_remote_escape(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *r = stk_xstrdup(e ? e : "");
    curl_free(e);
    return r;
}

int cli_remote_exec(const char *id, struct json_t *body, int in_fd, int *ret_code)
{
    (void)id;
    (void)body;
    (void)in_fd;
    (void)ret_code;
    fprintf(stderr, "stockade exec: not supported over --server yet\n");
    return EXIT_SETUP;
}
