/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Credential sources behind one interface, read only inside the egress
 * proxy and only when a request needs the credential: nothing is cached,
 * so a rotated secret takes effect on the next request and nothing but the
 * request in flight holds it. Values are checked (one header line) and
 * wiped by the caller after use.
 */
#include "proxy.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static int cred_env(const struct stk_cred_ref *c, char **ret, const char **why)
{
    const char *v = getenv(c->ref);
    if (!v) {
        *why = "the proxy's environment has no such variable";
        return -ENOENT;
    }
    *ret = stk_xstrdup(v);
    return 0;
}

static int cred_file(const struct stk_cred_ref *c, char **ret, const char **why)
{
    int fd = open(c->ref, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
    struct stat st;
    if (fd < 0) {
        *why = "the credential file cannot be opened";
        return -errno;
    }
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || st.st_size > STK_CREDENTIAL_MAX) {
        close(fd);
        *why = "the credential file is not a regular file of at most 8 KiB";
        return -EINVAL;
    }
    char *buf = stk_xmalloc(STK_CREDENTIAL_MAX + 1);
    ssize_t n = read(fd, buf, STK_CREDENTIAL_MAX + 1);
    close(fd);
    if (n < 0 || n > STK_CREDENTIAL_MAX) {
        explicit_bzero(buf, STK_CREDENTIAL_MAX + 1);
        free(buf);
        *why = "the credential file cannot be read whole";
        return -EIO;
    }
    while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
        n--;
    buf[n] = '\0';
    *ret = buf;
    return 0;
}

/* set before the proxy's thread starts */
static stk_credential_kube_fn kube_reader;

void stk_credential_set_kube(stk_credential_kube_fn fn)
{
    kube_reader = fn;
}

/* ref: NAMESPACE/NAME (the renderer writes the namespace in) */
static int cred_kube(const struct stk_cred_ref *c, char **ret, const char **why)
{
    stk_credential_kube_fn fn = kube_reader;
    if (!fn) {
        *why = "kubernetesSecret credentials are read by the proxy on the kubernetes backend; "
               "the local proxy has no cluster";
        return -ENOTSUP;
    }
    const char *slash = strchr(c->ref, '/');
    if (!slash || slash == c->ref || !slash[1] || !c->key || !c->key[0]) {
        *why = "a kubernetesSecret reference needs NAMESPACE/NAME and a key";
        return -EINVAL;
    }
    char ns[64];
    size_t n = (size_t)(slash - c->ref);
    if (n >= sizeof(ns)) {
        *why = "the Secret's namespace is longer than a DNS label";
        return -EINVAL;
    }
    memcpy(ns, c->ref, n);
    ns[n] = '\0';
    return fn(ns, slash + 1, c->key, ret, why);
}

static const struct {
    int (*read)(const struct stk_cred_ref *c, char **ret, const char **why);
} sources[_STK_CRED_N] = {
    [STK_CRED_ENV] = {cred_env},
    [STK_CRED_FILE] = {cred_file},
    [STK_CRED_KUBERNETES_SECRET] = {cred_kube},
};

int stk_credential_read(const struct stk_cred_ref *c, char **ret_value, const char **ret_why)
{
    if ((unsigned)c->source >= _STK_CRED_N) {
        *ret_why = "unknown credential source";
        return -EINVAL;
    }
    char *v = NULL;
    int r = sources[c->source].read(c, &v, ret_why);
    if (r < 0)
        return r;
    size_t n = strlen(v);
    bool ok = n > 0 && n <= STK_CREDENTIAL_MAX;
    for (size_t i = 0; ok && i < n; i++)
        ok = (unsigned char)v[i] >= 0x20 && v[i] != 0x7f;
    if (!ok) {
        explicit_bzero(v, n);
        free(v);
        *ret_why = "the credential is empty, too long or holds a control character";
        return -EINVAL;
    }
    *ret_value = v;
    return 0;
}

void stk_credential_free(char *value)
{
    if (!value)
        return;
    explicit_bzero(value, strlen(value));
    free(value);
}
