/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The content-addressed image store (docs/images.md):
 *
 *   <state>/images/lock                 flock: exclusive for pull, rm, prune
 *   <state>/images/blobs/sha256/<hex>   manifests, configs, layers, checked
 *   <state>/images/roots/<hex>/         the unpacked root of manifest <hex>
 *   <state>/images/images/<hex>.json    names, config, layers, size
 *   <state>/images/holds/<hex>          shared flock of each running `run`;
 *                                       its mtime is the last use
 *   <state>/images/tmp/pull-XXXXXX/     a pull in progress (removed whole)
 *
 * skopeo copies the image into a private OCI layout in tmp/; every blob is
 * then hashed with OpenSSL and compared with its digest before it is used,
 * the layers are unpacked into tmp/, and only a complete root is renamed
 * into roots/.
 */
#include "image.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MANIFEST_MAX (4u << 20)
#define CONFIG_MAX   (8u << 20)
#define NAMES_MAX    64

static int mkdirs(const char *store, struct stk_error **err)
{
    /* the state directory itself, as the local driver makes it */
    char parent[1200];
    if (stk_path_make(parent, sizeof(parent), err, "%s", store) < 0)
        return -ENAMETOOLONG;
    char *slash = strrchr(parent, '/');
    if (slash && slash != parent) {
        *slash = '\0';
        if (mkdir(parent, 0700) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", parent);
    }
    static const char *const sub[] = {"",        "/blobs", "/blobs/sha256", "/roots",
                                      "/images", "/holds", "/tmp"};
    for (size_t i = 0; i < STK_ARRAY_SIZE(sub); i++) {
        char p[1200];
        if (stk_path_make(p, sizeof(p), err, "%s%s", store, sub[i]) < 0)
            return -ENAMETOOLONG;
        if (mkdir(p, 0700) < 0 && errno != EEXIST)
            return stk_error_errno(err, errno, "creating %s", p);
    }
    return 0;
}

int stk_image_store_dir(const char *state_dir, char *buf, size_t n, struct stk_error **err)
{
    return stk_path_make(buf, n, err, "%s/images", state_dir);
}

static int store_lock(const char *store, int op, struct stk_error **err)
{
    char p[1200];
    int r = mkdirs(store, err); /* a fresh state directory has an empty store */
    if (r < 0)
        return r;
    if (stk_path_make(p, sizeof(p), err, "%s/lock", store) < 0)
        return -ENAMETOOLONG;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0)
        return stk_error_errno(err, errno, "opening %s", p);
    while (flock(fd, op) < 0)
        if (errno != EINTR) {
            int e = errno;
            close(fd);
            return stk_error_errno(err, e, "locking %s", p);
        }
    return fd;
}

static char *read_small(int dir_fd, const char *name, size_t max, size_t *ret_n)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode) || (uint64_t)st.st_size > max) {
        close(fd);
        errno = EFBIG;
        return NULL;
    }
    char *buf = stk_xmalloc((size_t)st.st_size + 1);
    size_t got = 0;
    while (got < (size_t)st.st_size) {
        ssize_t k = read(fd, buf + got, (size_t)st.st_size - got);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    buf[got] = '\0';
    if (ret_n)
        *ret_n = got;
    return buf;
}

/* sha256 of a file, as 64 hex digits. */
static int file_sha256(int dir_fd, const char *name, char hex[65], off_t *ret_size)
{
    int fd = openat(dir_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return -errno;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) != 1) {
        EVP_MD_CTX_free(ctx);
        close(fd);
        return -ENOMEM;
    }
    char buf[65536];
    ssize_t k;
    off_t total = 0;
    while ((k = read(fd, buf, sizeof(buf))) > 0) {
        EVP_DigestUpdate(ctx, buf, (size_t)k);
        total += k;
    }
    int e = k < 0 ? -errno : 0;
    close(fd);
    unsigned char md[32];
    unsigned len = 0;
    EVP_DigestFinal_ex(ctx, md, &len);
    EVP_MD_CTX_free(ctx);
    if (e < 0)
        return e;
    for (size_t i = 0; i < 32; i++)
        snprintf(hex + 2 * i, 3, "%02x", md[i]);
    if (ret_size)
        *ret_size = total;
    return 0;
}

static bool digest_hex(const char *d, const char **ret_hex)
{
    if (!d || !stk_startswith(d, "sha256:") || strlen(d) != 71)
        return false;
    for (const char *p = d + 7; *p; p++)
        if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
            return false;
    *ret_hex = d + 7;
    return true;
}

/* A blob of the layout, checked against its digest. */
static int blob_check(int blobs_fd, const char *digest, off_t *ret_size, struct stk_error **err)
{
    const char *hex;
    if (!digest_hex(digest, &hex))
        return stk_error_make(err, EBADMSG, "image: %s is not a sha256 digest",
                              digest ? digest : "(none)");
    char got[65];
    int r = file_sha256(blobs_fd, hex, got, ret_size);
    if (r < 0)
        return stk_error_errno(err, -r, "image: blob %s", digest);
    if (strcmp(got, hex))
        return stk_error_make(err, EBADMSG,
                              "image: blob %s has digest sha256:%s: corrupted or "
                              "tampered with",
                              digest, got);
    return 0;
}

/* ---- skopeo ---------------------------------------------------------------------- */

static int skopeo_copy(const char *tmp, const struct stk_image_ref *ref,
                       const struct stk_image_pull_opts *o, struct stk_error **err)
{
    char policy[1200], dest[1300], log[1200], certs[1300], auth[1300];
    if (stk_path_make(policy, sizeof(policy), err, "%s/policy.json", tmp) < 0 ||
        stk_path_make(dest, sizeof(dest), err, "oci:%s/layout:img", tmp) < 0 ||
        stk_path_make(log, sizeof(log), err, "%s/skopeo.log", tmp) < 0)
        return -ENAMETOOLONG;
    /* Integrity is the digests stockade checks itself; signature policy is
     * not enforced (docs/images.md says so), so skopeo gets a policy that
     * accepts, instead of whatever /etc/containers/policy.json says. */
    FILE *f = fopen(policy, "we");
    if (!f)
        return stk_error_errno(err, errno, "writing %s", policy);
    fputs("{\"default\":[{\"type\":\"insecureAcceptAnything\"}]}\n", f);
    fclose(f);
    const char *argv[16];
    size_t n = 0;
    argv[n++] = "skopeo";
    argv[n++] = "--policy";
    argv[n++] = policy;
    argv[n++] = "copy";
    argv[n++] = "--quiet";
    if (ref->transport == STK_IMG_REGISTRY) {
        if (o->tls_verify_off) {
            argv[n++] = "--src-tls-verify=false";
        } else if (o->cert_dir) {
            snprintf(certs, sizeof(certs), "--src-cert-dir=%s", o->cert_dir);
            argv[n++] = certs;
        }
        if (o->auth_file) {
            snprintf(auth, sizeof(auth), "--src-authfile=%s", o->auth_file);
            argv[n++] = auth;
        }
    }
    argv[n++] = "--";
    argv[n++] = ref->source;
    argv[n++] = dest;
    argv[n] = NULL;

    struct stk_spawn sp = {
        .path = "skopeo", .search = true, .argv = argv, .out = log, .err_to_out = true};
    int status = 0, e = stk_spawn_wait(&sp, &status);
    if (e < 0)
        return stk_error_errno(err, -e, "running skopeo (Debian's skopeo package pulls images)");
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    /* skopeo's last line says why */
    char *text = read_small(AT_FDCWD, log, 1 << 20, NULL);
    char empty[1] = "";
    char *last = text ? text : empty;
    size_t len = strlen(last);
    while (len && (last[len - 1] == '\n' || last[len - 1] == ' '))
        last[--len] = '\0';
    char *nl = strrchr(last, '\n');
    int r = stk_error_make(err, EIO, "pulling %s: skopeo failed: %.400s", ref->name,
                           nl ? nl + 1 : last);
    free(text);
    return r;
}

/* ---- records --------------------------------------------------------------------- */

void stk_image_free(struct stk_image *img)
{
    if (!img)
        return;
    char **lists[] = {img->names, img->entrypoint, img->cmd, img->env, img->exposed};
    size_t counts[] = {img->n_names, img->n_entrypoint, img->n_cmd, img->n_env, img->n_exposed};
    for (size_t i = 0; i < STK_ARRAY_SIZE(lists); i++) {
        for (size_t j = 0; j < counts[i]; j++)
            free(lists[i][j]);
        free(lists[i]);
    }
    free(img->workdir);
    free(img->user);
    free(img);
}

void stk_image_list_free(struct stk_image **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        stk_image_free(v[i]);
    free(v);
}

static char **strings(json_t *a, size_t max, size_t *ret_n)
{
    size_t n = json_is_array(a) ? json_array_size(a) : 0;
    if (n > max)
        n = max;
    char **v = stk_xcalloc(n + 1, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(a, i));
        if (s)
            v[k++] = stk_xstrdup(s);
    }
    *ret_n = k;
    return v;
}

static int64_t hold_mtime(const char *store, const char *hex)
{
    char p[1200];
    struct stat st;
    if (stk_path_fmt(p, sizeof(p), "%s/holds/%s", store, hex) < 0 || stat(p, &st) < 0)
        return 0;
    return (int64_t)st.st_mtim.tv_sec * 1000 + st.st_mtim.tv_nsec / 1000000;
}

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static struct stk_image *record_load(const char *store, int images_fd, const char *file)
{
    _cleanup_free_ char *text = read_small(images_fd, file, MANIFEST_MAX, NULL);
    if (!text)
        return NULL;
    json_t *j = json_loads(text, 0, NULL);
    const char *digest = json_string_value(json_object_get(j, "digest")), *hex;
    if (!digest_hex(digest, &hex)) {
        json_decref(j);
        return NULL;
    }
    struct stk_image *img = stk_xcalloc(1, sizeof(*img));
    snprintf(img->digest, sizeof(img->digest), "%s", digest);
    if (stk_path_fmt(img->root, sizeof(img->root), "%s/roots/%s", store, hex) < 0) {
        json_decref(j);
        stk_image_free(img);
        return NULL;
    }
    img->names = strings(json_object_get(j, "names"), NAMES_MAX, &img->n_names);
    json_t *c = json_object_get(j, "config");
    img->entrypoint = strings(json_object_get(c, "Entrypoint"), 4096, &img->n_entrypoint);
    img->cmd = strings(json_object_get(c, "Cmd"), 4096, &img->n_cmd);
    img->env = strings(json_object_get(c, "Env"), 256, &img->n_env);
    /* ExposedPorts: {"8080/tcp": {}}; its keys, at most 64 of 16 bytes */
    json_t *ports = json_object_get(c, "ExposedPorts");
    const char *key;
    json_t *pv;
    if (json_is_object(ports)) {
        img->exposed = stk_xcalloc(json_object_size(ports) + 1, sizeof(char *));
        json_object_foreach(ports, key, pv)
        {
            if (img->n_exposed < 64 && strlen(key) <= 16 &&
                strspn(key, "0123456789/tcpudsc") == strlen(key))
                img->exposed[img->n_exposed++] = stk_xstrdup(key);
        }
        qsort(img->exposed, img->n_exposed, sizeof(char *), cmp_str);
    }
    const char *wd = json_string_value(json_object_get(c, "WorkingDir"));
    const char *user = json_string_value(json_object_get(c, "User"));
    img->workdir = stk_xstrdup(wd ? wd : "");
    img->user = stk_xstrdup(user ? user : "");
    img->size = json_integer_value(json_object_get(j, "size"));
    img->pulled = json_integer_value(json_object_get(j, "pulled"));
    img->n_layers = json_array_size(json_object_get(j, "layers"));
    img->used = hold_mtime(store, hex);
    json_decref(j);
    return img;
}

static int cmp_pulled(const void *a, const void *b)
{
    const struct stk_image *x = *(struct stk_image *const *)a, *y = *(struct stk_image *const *)b;
    return x->pulled < y->pulled ? 1 : x->pulled > y->pulled ? -1 : 0;
}

static int list_unlocked(const char *store, struct stk_image ***ret, size_t *ret_n,
                         struct stk_error **err)
{
    char p[1200];
    if (stk_path_make(p, sizeof(p), err, "%s/images", store) < 0)
        return -ENAMETOOLONG;
    DIR *d = opendir(p);
    if (!d) {
        if (errno != ENOENT)
            return stk_error_errno(err, errno, "reading %s", p);
        *ret = stk_xcalloc(1, sizeof(**ret));
        *ret_n = 0;
        return 0;
    }
    struct stk_image **v = NULL;
    size_t n = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (len != 69 || strcmp(de->d_name + 64, ".json"))
            continue;
        struct stk_image *img = record_load(store, dirfd(d), de->d_name);
        if (!img)
            continue;
        v = stk_xrealloc(v, (n + 1) * sizeof(*v));
        v[n++] = img;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), cmp_pulled);
    *ret = v ? v : stk_xcalloc(1, sizeof(*v));
    *ret_n = n;
    return 0;
}

int stk_image_list(const char *store, struct stk_image ***ret, size_t *ret_n,
                   struct stk_error **err)
{
    return list_unlocked(store, ret, ret_n, err);
}

static bool matches(const struct stk_image *img, const char *q, const char *canon)
{
    const char *hex = img->digest + 7;
    if (!strcmp(q, img->digest) ||
        (stk_startswith(q, "sha256:") && strlen(q) >= 19 && stk_startswith(hex, q + 7)))
        return true;
    size_t ql = strlen(q);
    if (ql >= 12 && ql <= 64 && stk_startswith(hex, q) && strspn(q, "0123456789abcdef") == ql)
        return true;
    for (size_t i = 0; i < img->n_names; i++)
        if (!strcmp(img->names[i], q) || (canon && !strcmp(img->names[i], canon)))
            return true;
    return false;
}

static int find_unlocked(const char *store, const char *q, struct stk_image **ret,
                         struct stk_error **err)
{
    struct stk_image_ref ref;
    const char *canon = NULL;
    struct stk_error *ignored = NULL;
    if (stk_image_ref_parse(q, &ref, &ignored) == 0) {
        canon = ref.name;
        /* a pinned digest names the image by content */
        if (ref.digest[0])
            q = ref.digest;
    }
    stk_error_free(ignored);
    struct stk_image **v;
    size_t n;
    int r = list_unlocked(store, &v, &n, err);
    if (r < 0)
        return r;
    struct stk_image *found = NULL;
    for (size_t i = 0; i < n && !found; i++)
        if (matches(v[i], q, canon)) {
            found = v[i];
            v[i] = NULL;
        }
    stk_image_list_free(v, n);
    if (!found)
        return stk_error_make(err, ENOENT, "image %s is not in the store (stockade image pull %s)",
                              q, q);
    *ret = found;
    return 0;
}

int stk_image_find(const char *store, const char *ref, struct stk_image **ret,
                   struct stk_error **err)
{
    return find_unlocked(store, ref, ret, err);
}

static int record_write(const char *store, const char *hex, json_t *j, struct stk_error **err)
{
    char p[1200], tmp[1300];
    if (stk_path_make(p, sizeof(p), err, "%s/images/%s.json", store, hex) < 0 ||
        stk_path_make(tmp, sizeof(tmp), err, "%s.new", p) < 0)
        return -ENAMETOOLONG;
    if (json_dump_file(j, tmp, JSON_INDENT(2) | JSON_PRESERVE_ORDER) < 0)
        return stk_error_make(err, EIO, "writing %s", tmp);
    if (rename(tmp, p) < 0) {
        int e = errno;
        unlink(tmp);
        return stk_error_errno(err, e, "writing %s", p);
    }
    return 0;
}

/* Adds name to the image's record and takes it from every other image. */
static int names_update(const char *store, const char *hex, const char *name,
                        struct stk_error **err)
{
    char p[1200];
    if (stk_path_make(p, sizeof(p), err, "%s/images", store) < 0)
        return -ENAMETOOLONG;
    DIR *d = opendir(p);
    if (!d)
        return stk_error_errno(err, errno, "reading %s", p);
    struct dirent *de;
    int r = 0;
    while (r == 0 && (de = readdir(d))) {
        if (strlen(de->d_name) != 69 || strcmp(de->d_name + 64, ".json"))
            continue;
        _cleanup_free_ char *text = read_small(dirfd(d), de->d_name, MANIFEST_MAX, NULL);
        json_t *j = text ? json_loads(text, 0, NULL) : NULL;
        json_t *names = json_object_get(j, "names");
        if (!json_is_array(names)) {
            json_decref(j);
            continue;
        }
        bool mine = !strncmp(de->d_name, hex, 64), changed = false, has = false;
        for (size_t i = json_array_size(names); i-- > 0;)
            if (!strcmp(json_string_value(json_array_get(names, i)) ?: "", name)) {
                if (mine)
                    has = true;
                else {
                    json_array_remove(names, i);
                    changed = true;
                }
            }
        if (mine && !has && json_array_size(names) < NAMES_MAX) {
            json_array_append_new(names, json_string(name));
            changed = true;
        }
        char h[65];
        snprintf(h, sizeof(h), "%.64s", de->d_name);
        if (changed)
            r = record_write(store, h, j, err);
        json_decref(j);
    }
    closedir(d);
    return r;
}

/* ---- removal and eviction ------------------------------------------------------- */

bool stk_image_held(const char *store, const char *digest)
{
    const char *hex;
    char p[1200];
    if (!digest_hex(digest, &hex) || stk_path_fmt(p, sizeof(p), "%s/holds/%s", store, hex) < 0)
        return false;
    int fd = open(p, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    bool held = flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return held;
}

int stk_image_hold(const struct stk_image *img, const char *store, struct stk_error **err)
{
    const char *hex;
    char p[1200];
    if (!digest_hex(img->digest, &hex) ||
        stk_path_make(p, sizeof(p), err, "%s/holds/%s", store, hex) < 0)
        return -EINVAL;
    int lock = store_lock(store, LOCK_SH, err);
    if (lock < 0)
        return lock;
    int fd = open(p, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    struct stat st;
    int r;
    if (fd < 0)
        r = stk_error_errno(err, errno, "opening %s", p);
    else if (stat(img->root, &st) < 0)
        r = stk_error_make(err, ENOENT, "image %s was removed", img->digest);
    else if (flock(fd, LOCK_SH) < 0)
        r = stk_error_errno(err, errno, "locking %s", p);
    else {
        (void)futimens(fd, NULL); /* the last use, for eviction */
        r = fd;
        fd = -1;
    }
    if (fd >= 0)
        close(fd);
    close(lock);
    return r;
}

void stk_image_touch(const char *store, const char *digest)
{
    const char *hex;
    char p[1200];
    if (digest_hex(digest, &hex) && stk_path_fmt(p, sizeof(p), "%s/holds/%s", store, hex) >= 0)
        (void)utimensat(AT_FDCWD, p, NULL, AT_SYMLINK_NOFOLLOW);
}

/* Deletes blobs no record names (the caller holds the lock). */
static void blobs_gc(const char *store)
{
    struct stk_image **v;
    size_t n;
    struct stk_error *e = NULL;
    if (list_unlocked(store, &v, &n, &e) < 0) {
        stk_error_free(e);
        return;
    }
    json_t *keep = json_object();
    char p[1200];
    for (size_t i = 0; i < n; i++) {
        if (stk_path_fmt(p, sizeof(p), "%s/images/%s.json", store, v[i]->digest + 7) < 0)
            continue;
        _cleanup_free_ char *text = read_small(AT_FDCWD, p, MANIFEST_MAX, NULL);
        json_t *j = text ? json_loads(text, 0, NULL) : NULL;
        json_object_set_new(keep, v[i]->digest + 7, json_true());
        const char *cfg = json_string_value(json_object_get(j, "configDigest"));
        if (cfg && strlen(cfg) == 71)
            json_object_set_new(keep, cfg + 7, json_true());
        json_t *l;
        size_t k;
        json_array_foreach(json_object_get(j, "layers"), k, l)
        {
            const char *d = json_string_value(l);
            if (d && strlen(d) == 71)
                json_object_set_new(keep, d + 7, json_true());
        }
        json_decref(j);
    }
    stk_image_list_free(v, n);
    if (stk_path_fmt(p, sizeof(p), "%s/blobs/sha256", store) >= 0) {
        DIR *d = opendir(p);
        struct dirent *de;
        while (d && (de = readdir(d)))
            if (de->d_name[0] != '.' && !json_object_get(keep, de->d_name))
                (void)unlinkat(dirfd(d), de->d_name, 0);
        if (d)
            closedir(d);
    }
    json_decref(keep);
}

static int remove_unlocked(const char *store, const char *hex, struct stk_error **err)
{
    char p[1200];
    if (stk_path_make(p, sizeof(p), err, "%s/images/%s.json", store, hex) < 0)
        return -ENAMETOOLONG;
    /* the record first: a half-removed root is then never used */
    if (unlink(p) < 0 && errno != ENOENT)
        return stk_error_errno(err, errno, "removing %s", p);
    if (stk_path_make(p, sizeof(p), err, "%s/roots", store) < 0)
        return -ENAMETOOLONG;
    int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = fd < 0 ? -errno : stk_image_rmtree_at(fd, hex);
    if (fd >= 0)
        close(fd);
    if (r < 0)
        return stk_error_errno(err, -r, "removing %s/%s", p, hex);
    if (stk_path_fmt(p, sizeof(p), "%s/holds/%s", store, hex) >= 0)
        (void)unlink(p);
    return 0;
}

static bool busy(const char *store, const struct stk_image *img, stk_image_in_use_fn in_use,
                 void *ctx)
{
    return stk_image_held(store, img->digest) || (in_use && in_use(ctx, img->digest));
}

int stk_image_remove(const char *store, const char *ref, stk_image_in_use_fn in_use, void *ctx,
                     struct stk_error **err)
{
    int lock = store_lock(store, LOCK_EX, err);
    if (lock < 0)
        return lock;
    struct stk_image *img = NULL;
    int r = find_unlocked(store, ref, &img, err);
    if (r == 0 && busy(store, img, in_use, ctx))
        r = stk_error_make(err, EBUSY,
                           "image %s (%.19s) is in use by a sandbox; remove the sandbox first", ref,
                           img->digest);
    if (r == 0 && (r = remove_unlocked(store, img->digest + 7, err)) == 0)
        blobs_gc(store);
    stk_image_free(img);
    close(lock);
    return r;
}

int stk_image_prune(const char *store, stk_image_in_use_fn in_use, void *ctx, size_t *ret_n,
                    struct stk_error **err)
{
    int lock = store_lock(store, LOCK_EX, err);
    if (lock < 0)
        return lock;
    struct stk_image **v;
    size_t n, removed = 0;
    int r = list_unlocked(store, &v, &n, err);
    for (size_t i = 0; r == 0 && i < n; i++)
        if (!busy(store, v[i], in_use, ctx) &&
            (r = remove_unlocked(store, v[i]->digest + 7, err)) == 0)
            removed++;
    if (r == 0) {
        stk_image_list_free(v, n);
        blobs_gc(store);
        /* and whatever a killed pull left in tmp/: a pull in progress
         * holds a lock on its directory */
        char p[1200];
        DIR *d = stk_path_fmt(p, sizeof(p), "%s/tmp", store) >= 0 ? opendir(p) : NULL;
        struct dirent *de;
        while (d && (de = readdir(d))) {
            if (!stk_startswith(de->d_name, "pull-"))
                continue;
            int fd = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (fd >= 0 && flock(fd, LOCK_EX | LOCK_NB) == 0)
                (void)stk_image_rmtree_at(dirfd(d), de->d_name);
            if (fd >= 0)
                close(fd);
        }
        if (d)
            closedir(d);
        *ret_n = removed;
    } else {
        stk_image_list_free(v, n);
    }
    close(lock);
    return r;
}

/* Least recently used first, never `keep`, never one in use. */
static int evict(const char *store, const char *keep, int64_t max,
                 const struct stk_image_pull_opts *o, struct stk_error **err)
{
    struct stk_image **v;
    size_t n;
    int r = list_unlocked(store, &v, &n, err);
    if (r < 0)
        return r;
    int64_t total = 0;
    for (size_t i = 0; i < n; i++)
        total += v[i]->size;
    while (total > max) {
        struct stk_image *lru = NULL;
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            if (!v[i] || !strcmp(v[i]->digest, keep) || busy(store, v[i], o->in_use, o->in_use_ctx))
                continue;
            int64_t u = v[i]->used ? v[i]->used : v[i]->pulled;
            int64_t lu = lru ? (lru->used ? lru->used : lru->pulled) : 0;
            if (!lru || u < lu) {
                lru = v[i];
                at = i;
            }
        }
        if (!lru)
            break;
        if ((r = remove_unlocked(store, lru->digest + 7, err)) < 0)
            break;
        total -= lru->size;
        stk_image_free(lru);
        v[at] = NULL;
    }
    stk_image_list_free(v, n);
    if (r == 0 && total > max)
        r = stk_error_make(err, EDQUOT,
                           "the image store holds %lld MiB, over its limit of %lld MiB, and "
                           "every other image is in use",
                           (long long)(total >> 20), (long long)(max >> 20));
    if (r == 0)
        blobs_gc(store);
    return r;
}

/* ---- pull ------------------------------------------------------------------------ */

static const char *const layer_types[] = {
    "application/vnd.oci.image.layer.v1.tar",
    "application/vnd.oci.image.layer.v1.tar+gzip",
    "application/vnd.docker.image.rootfs.diff.tar.gzip",
    "application/vnd.docker.image.rootfs.diff.tar",
};

static int64_t du(int dir_fd)
{
    int fd = openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    DIR *d = fd < 0 ? NULL : fdopendir(fd);
    if (!d) {
        if (fd >= 0)
            close(fd);
        return 0;
    }
    int64_t total = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
            continue;
        struct stat st;
        if (fstatat(dirfd(d), de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0)
            continue;
        total += (int64_t)st.st_blocks * 512;
        if (S_ISDIR(st.st_mode)) {
            int sub = openat(dirfd(d), de->d_name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
            if (sub >= 0) {
                total += du(sub);
                close(sub);
            }
        }
    }
    closedir(d);
    return total;
}

struct pull {
    const char *store;
    char tmp[1100];
    int tmp_fd, blobs_fd;
    json_t *manifest, *config, *record;
};

static int pull_layout(struct pull *p, const struct stk_image_ref *ref, char ret_hex[65],
                       struct stk_error **err)
{
    char path[1300];
    if (stk_path_make(path, sizeof(path), err, "%s/layout/blobs/sha256", p->tmp) < 0)
        return -ENAMETOOLONG;
    if ((p->blobs_fd = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0)
        return stk_error_errno(err, errno, "image: skopeo left no layout at %s", path);
    if (stk_path_make(path, sizeof(path), err, "%s/layout/index.json", p->tmp) < 0)
        return -ENAMETOOLONG;
    _cleanup_free_ char *index = read_small(AT_FDCWD, path, MANIFEST_MAX, NULL);
    json_t *ij = index ? json_loads(index, 0, NULL) : NULL;
    json_t *m0 = json_array_get(json_object_get(ij, "manifests"), 0);
    const char *mdigest = json_string_value(json_object_get(m0, "digest"));
    const char *hex;
    if (json_array_size(json_object_get(ij, "manifests")) != 1 || !digest_hex(mdigest, &hex)) {
        json_decref(ij);
        return stk_error_make(err, EBADMSG, "image: the layout's index.json names no manifest");
    }
    snprintf(ret_hex, 65, "%s", hex);
    json_decref(ij);
    char digest[72];
    snprintf(digest, sizeof(digest), "sha256:%s", ret_hex);
    int r;
    if ((r = blob_check(p->blobs_fd, digest, NULL, err)) < 0)
        return r;
    /* A pinned digest is checked by skopeo against what the registry
     * serves (containers/image verifies a by-digest manifest); the layout's
     * manifest may then differ from it (a manifest list resolved to this
     * platform, a Docker manifest converted to OCI), so the store records
     * the reference with its digest as a name of this image. */
    _cleanup_free_ char *mtext = read_small(p->blobs_fd, ret_hex, MANIFEST_MAX, NULL);
    p->manifest = mtext ? json_loads(mtext, 0, NULL) : NULL;
    const char *mt = json_string_value(json_object_get(p->manifest, "mediaType"));
    if (!json_is_object(p->manifest) ||
        (mt && strcmp(mt, "application/vnd.oci.image.manifest.v1+json")))
        return stk_error_make(err, EBADMSG, "image: manifest %s is not an OCI image manifest",
                              digest);
    const char *cdigest =
        json_string_value(json_object_get(json_object_get(p->manifest, "config"), "digest"));
    const char *chex;
    if (!digest_hex(cdigest, &chex) || (r = blob_check(p->blobs_fd, cdigest, NULL, err)) < 0)
        return r < 0 ? r : stk_error_make(err, EBADMSG, "image: the manifest names no config");
    _cleanup_free_ char *ctext = read_small(p->blobs_fd, chex, CONFIG_MAX, NULL);
    p->config = ctext ? json_loads(ctext, 0, NULL) : NULL;
    if (!json_is_object(p->config))
        return stk_error_make(err, EBADMSG, "image: config %s is not JSON", cdigest);
    const char *os = json_string_value(json_object_get(p->config, "os"));
    const char *arch = json_string_value(json_object_get(p->config, "architecture"));
    if ((os && strcmp(os, "linux")) || (arch && strcmp(arch, "amd64")))
        return stk_error_make(err, ENOEXEC, "image %s is for %s/%s; this host runs linux/amd64",
                              ref->name, os ? os : "?", arch ? arch : "?");
    json_t *layers = json_object_get(p->manifest, "layers");
    if (!json_is_array(layers) || json_array_size(layers) > STK_IMAGE_MAX_LAYERS)
        return stk_error_make(err, EBADMSG, "image: the manifest has no layers or more than %d",
                              STK_IMAGE_MAX_LAYERS);
    json_t *l;
    size_t i;
    json_array_foreach(layers, i, l)
    {
        const char *t = json_string_value(json_object_get(l, "mediaType"));
        const char *d = json_string_value(json_object_get(l, "digest"));
        bool known = false;
        for (size_t k = 0; t && k < STK_ARRAY_SIZE(layer_types); k++)
            known |= !strcmp(t, layer_types[k]);
        if (!known)
            return stk_error_make(err, ENOTSUP,
                                  "image: layer %zu has media type %s; stockade reads tar and "
                                  "tar+gzip layers",
                                  i, t ? t : "(none)");
        if ((r = blob_check(p->blobs_fd, d, NULL, err)) < 0)
            return r;
    }
    return 0;
}

static int pull_unpack(struct pull *p, const struct stk_image_pull_opts *o,
                       struct stk_tar_counts *c, struct stk_error **err)
{
    if (mkdirat(p->tmp_fd, "root", 0755) < 0)
        return stk_error_errno(err, errno, "creating %s/root", p->tmp);
    int root = openat(p->tmp_fd, "root", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (root < 0)
        return stk_error_errno(err, errno, "opening %s/root", p->tmp);
    /* never more content than the store may hold: a layer that inflates
     * past it (a gzip bomb) stops at the limit, not at a full disk */
    struct stk_tar_limits lim =
        o->limits ? *o->limits
                  : (struct stk_tar_limits){STK_TAR_MAX_FILES, STK_TAR_MAX_BYTES, STK_TAR_MAX_PATH};
    uint64_t store_max = (uint64_t)(o->max_store > 0 ? o->max_store : STK_IMAGE_STORE_DEFAULT);
    if (lim.max_bytes > store_max)
        lim.max_bytes = store_max;
    json_t *l;
    size_t i;
    int r = 0;
    json_array_foreach(json_object_get(p->manifest, "layers"), i, l)
    {
        char path[1300];
        const char *d = json_string_value(json_object_get(l, "digest"));
        if ((r = stk_path_make(path, sizeof(path), err, "%s/layout/blobs/sha256/%s", p->tmp,
                               d + 7)) < 0 ||
            (r = stk_layer_unpack(root, path, &lim, c, err)) < 0) {
            stk_error_wrap(err, "layer %zu (%.19s)", i, d);
            break;
        }
    }
    if (r == 0 && (r = stk_image_mountpoints(root)) < 0)
        r = stk_error_errno(err, -r, "image: making its mount points");
    close(root);
    return r;
}

/* Moves the checked blobs and the root into the store, writes the record. */
static int pull_commit(struct pull *p, const struct stk_image_ref *ref, const char *hex,
                       int64_t root_size, struct stk_error **err)
{
    char src[1300], dst[1300];
    json_t *layers = json_array();
    int64_t size = root_size;
    const char *cdigest =
        json_string_value(json_object_get(json_object_get(p->manifest, "config"), "digest"));
    const char *blobs[STK_IMAGE_MAX_LAYERS + 2];
    size_t nb = 0;
    json_t *l;
    size_t i;
    json_array_foreach(json_object_get(p->manifest, "layers"), i, l)
    {
        const char *d = json_string_value(json_object_get(l, "digest"));
        json_array_append_new(layers, json_string(d));
        blobs[nb++] = d + 7;
    }
    blobs[nb++] = cdigest + 7;
    blobs[nb++] = hex;
    for (size_t k = 0; k < nb; k++) {
        struct stat st;
        if (stk_path_make(src, sizeof(src), err, "%s/layout/blobs/sha256/%s", p->tmp, blobs[k]) <
                0 ||
            stk_path_make(dst, sizeof(dst), err, "%s/blobs/sha256/%s", p->store, blobs[k]) < 0) {
            json_decref(layers);
            return -ENAMETOOLONG;
        }
        if (stat(src, &st) == 0)
            size += (int64_t)st.st_blocks * 512;
        if (rename(src, dst) < 0 && errno != ENOENT) {
            int e = errno;
            json_decref(layers);
            return stk_error_errno(err, e, "moving blob %s into the store", blobs[k]);
        }
    }
    if (stk_path_make(src, sizeof(src), err, "%s/root", p->tmp) < 0 ||
        stk_path_make(dst, sizeof(dst), err, "%s/roots/%s", p->store, hex) < 0) {
        json_decref(layers);
        return -ENAMETOOLONG;
    }
    if (rename(src, dst) < 0) {
        int e = errno;
        json_decref(layers);
        return stk_error_errno(err, e, "moving the root into %s", dst);
    }
    json_t *cfg = json_object_get(p->config, "config");
    json_t *keep = json_object();
    static const char *const keys[] = {"Entrypoint", "Cmd",  "Env",
                                       "WorkingDir", "User", "ExposedPorts"};
    for (size_t k = 0; k < STK_ARRAY_SIZE(keys); k++) {
        json_t *v = json_object_get(cfg, keys[k]);
        if (v && !json_is_null(v))
            json_object_set(keep, keys[k], v);
    }
    json_t *rec = json_pack("{s:s,s:[],s:s,s:o,s:o,s:I,s:I}", "digest", "", "names", "configDigest",
                            cdigest, "config", keep, "layers", layers, "size", (json_int_t)size,
                            "pulled", (json_int_t)stk_clock_ms(CLOCK_REALTIME));
    char digest[72];
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    json_object_set_new(rec, "digest", json_string(digest));
    (void)ref;
    int r = record_write(p->store, hex, rec, err);
    json_decref(rec);
    char hold[1300];
    if (r == 0 && stk_path_make(hold, sizeof(hold), err, "%s/holds/%s", p->store, hex) == 0) {
        int fd = open(hold, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
        if (fd >= 0)
            close(fd);
    }
    if (r < 0) {
        int fd = open(p->store, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (fd >= 0) {
            char sub[100];
            snprintf(sub, sizeof(sub), "roots/%s", hex);
            int rfd = openat(fd, "roots", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (rfd >= 0) {
                (void)stk_image_rmtree_at(rfd, hex);
                close(rfd);
            }
            close(fd);
        }
    }
    return r;
}

int stk_image_pull(const char *store, const char *refstr, const struct stk_image_pull_opts *o,
                   struct stk_image **ret, struct stk_error **err)
{
    struct stk_image_pull_opts dflt = {0};
    if (!o)
        o = &dflt;
    struct stk_image_ref ref;
    int r = stk_image_ref_parse(refstr, &ref, err);
    if (r < 0)
        return r;
    if (o->tls_verify_off &&
        !(ref.transport == STK_IMG_REGISTRY &&
          (stk_startswith(ref.host, "localhost") || stk_startswith(ref.host, "127.0.0.1") ||
           stk_startswith(ref.host, "[::1]"))))
        return stk_error_make(err, EPERM,
                              "--tls-verify=false is for a registry on this host's loopback "
                              "(localhost, 127.0.0.1) only; give --cert-dir with the registry's "
                              "CA instead");
    if ((r = mkdirs(store, err)) < 0)
        return r;
    /* The transfer, the checks and the unpack happen in a private
     * directory without the store's lock (runs and other pulls go on);
     * the lock is taken for the commit only. The pull's directory is
     * flocked so that prune leaves it alone. */
    int lock = -1;
    struct pull p = {.store = store, .tmp_fd = -1, .blobs_fd = -1};
    char hex[65] = "", rec[1300];
    struct stat st;
    struct stk_tar_counts counts = {0};
    bool unpacked = false;
    if ((r = stk_path_make(p.tmp, sizeof(p.tmp), err, "%s/tmp/pull-XXXXXX", store)) < 0)
        return r;
    if (!mkdtemp(p.tmp))
        return stk_error_errno(err, errno, "creating %s", p.tmp);
    if ((p.tmp_fd = open(p.tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) < 0 ||
        flock(p.tmp_fd, LOCK_EX) < 0) {
        r = stk_error_errno(err, errno, "opening %s", p.tmp);
        goto out;
    }
    if ((r = skopeo_copy(p.tmp, &ref, o, err)) < 0 || (r = pull_layout(&p, &ref, hex, err)) < 0 ||
        (r = stk_path_make(rec, sizeof(rec), err, "%s/images/%s.json", store, hex)) < 0)
        goto out;
    if (stat(rec, &st) < 0) {
        if ((r = pull_unpack(&p, o, &counts, err)) < 0)
            goto out;
        unpacked = true;
    }
    if ((lock = store_lock(store, LOCK_EX, err)) < 0) {
        r = lock;
        goto out;
    }
    if (stat(rec, &st) < 0) {
        /* removed while this pull ran without the lock: unpack now */
        if (!unpacked && (r = pull_unpack(&p, o, &counts, err)) < 0)
            goto out;
        int root = openat(p.tmp_fd, "root", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        int64_t root_size = root >= 0 ? du(root) : 0;
        if (root >= 0)
            close(root);
        if ((r = pull_commit(&p, &ref, hex, root_size, err)) < 0)
            goto out;
    }
    if ((r = names_update(store, hex, ref.name, err)) < 0)
        goto out;
    char digest[72];
    snprintf(digest, sizeof(digest), "sha256:%s", hex);
    int64_t max = o->max_store > 0 ? o->max_store : STK_IMAGE_STORE_DEFAULT;
    if ((r = evict(store, digest, max, o, err)) < 0) {
        /* the new image alone does not fit: it goes again */
        (void)remove_unlocked(store, hex, NULL);
        goto out;
    }
out:
    if (r < 0 && lock >= 0)
        blobs_gc(store); /* what a failed commit moved */
    if (p.tmp_fd >= 0) {
        close(p.tmp_fd);
        char tmpdir[1200];
        if (stk_path_fmt(tmpdir, sizeof(tmpdir), "%s/tmp", store) >= 0) {
            int fd = open(tmpdir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
            if (fd >= 0) {
                (void)stk_image_rmtree_at(fd, strrchr(p.tmp, '/') + 1);
                close(fd);
            }
        }
    } else {
        (void)rmdir(p.tmp);
    }
    if (p.blobs_fd >= 0)
        close(p.blobs_fd);
    json_decref(p.manifest);
    json_decref(p.config);
    if (r == 0) {
        char found[72];
        snprintf(found, sizeof(found), "sha256:%s", hex);
        r = ret ? find_unlocked(store, found, ret, err) : 0;
    }
    if (lock >= 0)
        close(lock);
    return r;
}

int stk_image_pin(const char *store, const char *ref, char *ret_image, size_t n,
                  char ret_digest[72], struct stk_error **err)
{
    struct stk_image_ref r;
    int rc = stk_image_ref_parse(ref, &r, err);
    ret_image[0] = ret_digest[0] = '\0';
    if (rc < 0)
        return rc;
    if (r.transport != STK_IMG_REGISTRY)
        return 0;
    if (r.digest[0]) {
        snprintf(ret_digest, 72, "%s", r.digest);
        return 1;
    }
    struct stk_image *img = NULL;
    struct stk_error *ferr = NULL;
    rc = find_unlocked(store, ref, &img, &ferr);
    stk_error_free(ferr);
    if (rc < 0)
        return 0; /* not pulled here: the cluster resolves the tag */
    /* host/repo:tag → host/repo (a ':' after the last '/' starts the tag) */
    const char *slash = strrchr(r.name, '/');
    const char *colon = strrchr(slash ? slash : r.name, ':');
    size_t len = colon ? (size_t)(colon - r.name) : strlen(r.name);
    int w = snprintf(ret_image, n, "%.*s@%s", (int)len, r.name, img->digest);
    snprintf(ret_digest, 72, "%s", img->digest);
    stk_image_free(img);
    if (w < 0 || (size_t)w >= n) {
        ret_image[0] = ret_digest[0] = '\0';
        return stk_error_make(err, ENAMETOOLONG, "%s: the pinned reference is too long", ref);
    }
    return 1;
}

bool stk_image_ports_text(const char *store, const char *ref, char *buf, size_t n)
{
    struct stk_image *img = NULL;
    struct stk_error *err = NULL;
    int r = find_unlocked(store, ref, &img, &err);
    stk_error_free(err);
    if (r < 0)
        return false;
    size_t off = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < img->n_exposed && off + 20 < n; i++)
        off += (size_t)snprintf(buf + off, n - off, "%s%s", i ? ", " : "", img->exposed[i]);
    bool any = img->n_exposed > 0;
    stk_image_free(img);
    return any;
}
