/* SPDX-License-Identifier: Apache-2.0 */
/* Image references as podman takes them (docs/images.md). */
#include "image.h"

#include <errno.h>
#include <string.h>

static bool ref_char(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           strchr("._-:/@", c);
}

static bool hex64(const char *s)
{
    if (strlen(s) != 64)
        return false;
    for (; *s; s++)
        if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f')))
            return false;
    return true;
}

static int file_ref(const char *s, enum stk_image_transport t, const char *prefix,
                    struct stk_image_ref *ret, struct stk_error **err)
{
    const char *path = s + strlen(prefix);
    if (!path[0])
        return stk_error_make(err, EINVAL, "image %s: a path must follow %s", s, prefix);
    ret->transport = t;
    if (stk_path_fmt(ret->name, sizeof(ret->name), "%s", s) < 0 ||
        stk_path_fmt(ret->source, sizeof(ret->source), "%s", s) < 0)
        return stk_error_make(err, ENAMETOOLONG, "image reference too long");
    return 0;
}

int stk_image_ref_parse(const char *s, struct stk_image_ref *ret, struct stk_error **err)
{
    struct stk_image_ref r = {0};
    size_t n = strlen(s);
    if (n == 0 || n > STK_IMAGE_REF_MAX)
        return stk_error_make(err, EINVAL, "image reference: empty or longer than %d bytes",
                              STK_IMAGE_REF_MAX);
    int e;
    if (stk_startswith(s, "oci:"))
        e = file_ref(s, STK_IMG_OCI, "oci:", &r, err);
    else if (stk_startswith(s, "oci-archive:"))
        e = file_ref(s, STK_IMG_OCI_ARCHIVE, "oci-archive:", &r, err);
    else if (stk_startswith(s, "docker-archive:"))
        e = file_ref(s, STK_IMG_DOCKER_ARCHIVE, "docker-archive:", &r, err);
    else {
        const char *p = stk_startswith(s, "docker://") ? s + 9 : s;
        for (const char *c = p; *c; c++)
            if (!ref_char(*c))
                return stk_error_make(err, EINVAL,
                                      "image %s: '%c' is not allowed in a "
                                      "reference",
                                      s, *c);
        char buf[STK_IMAGE_REF_MAX + 1];
        snprintf(buf, sizeof(buf), "%s", p);
        char *at = strchr(buf, '@');
        if (at) {
            *at++ = '\0';
            if (!stk_startswith(at, "sha256:") || !hex64(at + 7))
                return stk_error_make(
                    err, EINVAL, "image %s: a digest is sha256: and 64 lowercase hex digits", s);
            snprintf(r.digest, sizeof(r.digest), "%s", at);
        }
        if (!buf[0] || buf[0] == '/' || buf[0] == '-' || strstr(buf, "//") ||
            buf[strlen(buf) - 1] == '/')
            return stk_error_make(err, EINVAL, "image %s: not a repository name", s);
        /* the first component is a host when it has a '.' or ':' or is
         * localhost (Distribution's rule); otherwise Docker Hub */
        char *slash = strchr(buf, '/');
        const char *repo = buf;
        if (slash && (memchr(buf, '.', (size_t)(slash - buf)) ||
                      memchr(buf, ':', (size_t)(slash - buf)) || !strncmp(buf, "localhost/", 10))) {
            *slash = '\0';
            snprintf(r.host, sizeof(r.host), "%s", buf);
            repo = slash + 1;
        } else {
            snprintf(r.host, sizeof(r.host), "docker.io");
        }
        char *last = strrchr(repo, '/');
        char *colon = strchr(last ? last : repo, ':');
        const char *tag = NULL;
        if (colon) {
            *colon = '\0';
            tag = colon + 1;
            if (!tag[0] || strlen(tag) > 128 ||
                strspn(tag, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") !=
                    strlen(tag))
                return stk_error_make(err, EINVAL, "image %s: a malformed tag", s);
        }
        if (!repo[0] || strchr(repo, ':'))
            return stk_error_make(err, EINVAL, "image %s: not a repository name", s);
        for (const char *c = repo; *c; c++)
            if (*c >= 'A' && *c <= 'Z')
                return stk_error_make(err, EINVAL, "image %s: repository names are lowercase", s);
        bool library = !strcmp(r.host, "docker.io") && !strchr(repo, '/');
        char name[sizeof(r.name)];
        int k = snprintf(name, sizeof(name), "%s/%s%s%s%s%s%s", r.host, library ? "library/" : "",
                         repo, tag || !at ? ":" : "", tag ? tag : (at ? "" : "latest"),
                         at ? "@" : "", at ? r.digest : "");
        if (k < 0 || (size_t)k >= sizeof(name))
            return stk_error_make(err, ENAMETOOLONG, "image reference too long");
        r.transport = STK_IMG_REGISTRY;
        snprintf(r.name, sizeof(r.name), "%s", name);
        /* skopeo takes either a tag or a digest, not both: the digest wins */
        if (at)
            snprintf(r.source, sizeof(r.source), "docker://%s/%s%s@%s", r.host,
                     library ? "library/" : "", repo, r.digest);
        else if (stk_path_fmt(r.source, sizeof(r.source), "docker://%s", name) < 0)
            return stk_error_make(err, ENAMETOOLONG, "image reference too long");
        e = 0;
    }
    if (e < 0)
        return e;
    *ret = r;
    return 0;
}
