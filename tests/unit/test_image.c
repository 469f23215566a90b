/* SPDX-License-Identifier: Apache-2.0 */
/* src/image: references, the tar reader over memory, and unpacking hostile
 * layers beneath a directory (root only: ownership is kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"

/* ---- references ---------------------------------------------------------------- */

static void test_refs(void **state)
{
    (void)state;
    static const struct {
        const char *in, *name, *source, *host;
        enum stk_image_transport t;
    } ok[] = {
        {"busybox", "docker.io/library/busybox:latest", "docker://docker.io/library/busybox:latest",
         "docker.io", STK_IMG_REGISTRY},
        {"localhost:5000/python:3.12", "localhost:5000/python:3.12",
         "docker://localhost:5000/python:3.12", "localhost:5000", STK_IMG_REGISTRY},
        {"docker://registry.example.com/team/tool", "registry.example.com/team/tool:latest",
         "docker://registry.example.com/team/tool:latest", "registry.example.com",
         STK_IMG_REGISTRY},
        {"oci:/srv/img:v1", "oci:/srv/img:v1", "oci:/srv/img:v1", "", STK_IMG_OCI},
        {"oci-archive:/a.tar", "oci-archive:/a.tar", "oci-archive:/a.tar", "", STK_IMG_OCI_ARCHIVE},
        {"docker-archive:/b.tar", "docker-archive:/b.tar", "docker-archive:/b.tar", "",
         STK_IMG_DOCKER_ARCHIVE},
    };
    for (size_t i = 0; i < sizeof(ok) / sizeof(ok[0]); i++) {
        struct stk_image_ref r;
        struct stk_error *err = NULL;
        assert_int_equal(stk_image_ref_parse(ok[i].in, &r, &err), 0);
        assert_string_equal(r.name, ok[i].name);
        assert_string_equal(r.source, ok[i].source);
        assert_string_equal(r.host, ok[i].host);
        assert_int_equal(r.transport, ok[i].t);
    }
    const char *digest = "localhost:5000/a@sha256:"
                         "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    struct stk_image_ref r;
    struct stk_error *err = NULL;
    assert_int_equal(stk_image_ref_parse(digest, &r, &err), 0);
    assert_string_equal(r.source,
                        "docker://localhost:5000/a@sha256:"
                        "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    assert_true(stk_startswith(r.digest, "sha256:0123"));
    static const char *const bad[] = {
        "",   "Busybox", "a b",   "x@sha256:zz",   "-x",       "/abs", "a//b",
        "a:", "oci:",    "x:y:z", "a@sha256:ABCD", "docker://"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err = NULL;
        assert_true(stk_image_ref_parse(bad[i], &r, &err) < 0);
        assert_non_null(err);
        stk_error_free(err);
    }
}

/* ---- a tar writer for the tests -------------------------------------------------- */

struct tarb {
    unsigned char *p;
    size_t n;
};

static void put(struct tarb *t, const void *d, size_t n)
{
    t->p = realloc(t->p, t->n + n);
    memcpy(t->p + t->n, d, n);
    t->n += n;
}

static void header(struct tarb *t, const char *name, char type, const char *link, size_t size,
                   bool break_sum)
{
    unsigned char h[512] = {0};
    snprintf((char *)h, 100, "%s", name);
    snprintf((char *)h + 100, 8, "%07o", 0644);
    snprintf((char *)h + 108, 8, "%07o", 0);
    snprintf((char *)h + 116, 8, "%07o", 0);
    snprintf((char *)h + 124, 12, "%011o", (unsigned)(size & 0xffffffu));
    snprintf((char *)h + 136, 12, "%011o", 0);
    h[156] = (unsigned char)type;
    if (link)
        snprintf((char *)h + 157, 100, "%s", link);
    memcpy(h + 257, "ustar", 6);
    memcpy(h + 263, "00", 2);
    memset(h + 148, ' ', 8);
    unsigned sum = 0;
    for (size_t i = 0; i < 512; i++)
        sum += h[i];
    snprintf((char *)h + 148, 8, "%06o", sum + (break_sum ? 1 : 0));
    put(t, h, 512);
}

static void file(struct tarb *t, const char *name, const char *data)
{
    size_t n = strlen(data);
    header(t, name, '0', NULL, n, false);
    put(t, data, n);
    static const unsigned char zero[512];
    put(t, zero, (512 - n % 512) % 512);
}

static void end(struct tarb *t)
{
    static const unsigned char zero[1024];
    put(t, zero, sizeof(zero));
}

struct mem {
    const unsigned char *p;
    size_t n;
};

static ssize_t mem_read(void *ctx, void *buf, size_t n)
{
    struct mem *m = ctx;
    if (n > m->n)
        n = m->n;
    memcpy(buf, m->p, n);
    m->p += n;
    m->n -= n;
    return (ssize_t)n;
}

static int read_all(const struct tarb *t, const struct stk_tar_limits *lim, char *names, size_t cap,
                    struct stk_error **err)
{
    struct mem m = {t->p, t->n};
    struct stk_tar_reader *r = stk_tar_reader_new(mem_read, &m, lim);
    struct stk_tar_entry e;
    int k;
    names[0] = '\0';
    while ((k = stk_tar_next(r, &e, err)) > 0) {
        char buf[64] = "";
        ssize_t got = stk_tar_data(r, buf, sizeof(buf) - 1, err);
        if (got < 0) {
            k = (int)got;
            break;
        }
        size_t len = strlen(names);
        snprintf(names + len, cap - len, "%s%s=%s", len ? "," : "", e.path,
                 e.type == STK_TAR_SYMLINK ? e.link : buf);
    }
    stk_tar_reader_free(r);
    return k;
}

/* What a cluster runs: a reference pinned to the digest the store verified
 * (by name, without the tag), a digest reference as it is, nothing for an
 * image this store does not hold or a transport a cluster cannot pull. */
static void test_pin(void **state)
{
    (void)state;
    char store[] = "/tmp/stk-pin-XXXXXX";
    assert_non_null(mkdtemp(store));
    char dir[64], rec[200];
    snprintf(dir, sizeof(dir), "%s/images", store);
    assert_int_equal(mkdir(dir, 0700), 0);
    const char *hex = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    snprintf(rec, sizeof(rec), "%s/%s.json", dir, hex);
    FILE *f = fopen(rec, "w");
    assert_non_null(f);
    fprintf(f,
            "{\"digest\":\"sha256:%s\",\"names\":[\"localhost:5000/team/py:3.12\"],"
            "\"config\":{\"ExposedPorts\":{\"8080/tcp\":{},\"53/udp\":{},\"x;rm\":{}}},"
            "\"layers\":[],\"size\":1,\"pulled\":1}",
            hex);
    fclose(f);
    char image[700], digest[72];
    struct stk_error *err = NULL;
    assert_int_equal(
        stk_image_pin(store, "localhost:5000/team/py:3.12", image, sizeof(image), digest, &err), 1);
    assert_string_equal(image, "localhost:5000/team/py@sha256:0123456789abcdef0123456789abcdef"
                               "0123456789abcdef0123456789abcdef");
    assert_string_equal(digest + 7, hex);
    /* the image's declared ports come with it, sorted, junk dropped */
    struct stk_image *img = NULL;
    assert_int_equal(stk_image_find(store, "localhost:5000/team/py:3.12", &img, &err), 0);
    assert_int_equal(img->n_exposed, 2);
    assert_string_equal(img->exposed[0], "53/udp");
    assert_string_equal(img->exposed[1], "8080/tcp");
    stk_image_free(img);
    /* a digest reference is pinned already */
    assert_int_equal(
        stk_image_pin(store,
                      "other.example/x@sha256:"
                      "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
                      image, sizeof(image), digest, &err),
        1);
    assert_string_equal(image, "");
    assert_string_equal(digest + 7, hex);
    /* not pulled here, another tag, not a registry: nothing */
    assert_int_equal(
        stk_image_pin(store, "localhost:5000/team/py:3.13", image, sizeof(image), digest, &err), 0);
    assert_string_equal(digest, "");
    assert_int_equal(stk_image_pin(store, "oci:/srv/img:v1", image, sizeof(image), digest, &err),
                     0);
    assert_true(stk_image_pin(store, "Bad Ref", image, sizeof(image), digest, &err) < 0);
    stk_error_free(err);
    unlink(rec);
    rmdir(dir);
    assert_int_equal(rmdir(store), 0);
}

static void test_tar_reader(void **state)
{
    (void)state;
    char names[512];
    struct stk_error *err = NULL;
    struct tarb t = {0};
    file(&t, "a/b", "hello");
    header(&t, "s", '2', "/etc", 0, false);
    /* a pax header renaming the next entry */
    const char *pax = "23 path=long/name/here\n";
    header(&t, "PaxHeader", 'x', NULL, strlen(pax), false);
    put(&t, pax, strlen(pax));
    static const unsigned char zero[512];
    put(&t, zero, 512 - strlen(pax));
    file(&t, "short", "x");
    end(&t);
    assert_int_equal(read_all(&t, NULL, names, sizeof(names), &err), 0);
    assert_string_equal(names, "a/b=hello,s=/etc,long/name/here=x");
    free(t.p);

    /* a broken checksum */
    t = (struct tarb){0};
    header(&t, "f", '0', NULL, 0, true);
    end(&t);
    assert_int_equal(read_all(&t, NULL, names, sizeof(names), &err), -EBADMSG);
    assert_non_null(strstr(err->msg, "checksum"));
    stk_error_free(err);
    err = NULL;
    free(t.p);

    /* over the byte limit: refused at the header */
    t = (struct tarb){0};
    header(&t, "big", '0', NULL, 4096, false);
    struct stk_tar_limits lim = {10, 1024, 100};
    assert_int_equal(read_all(&t, &lim, names, sizeof(names), &err), -EFBIG);
    stk_error_free(err);
    err = NULL;
    free(t.p);

    /* a truncated entry */
    t = (struct tarb){0};
    header(&t, "f", '0', NULL, 1000, false);
    put(&t, "abc", 3);
    assert_true(read_all(&t, NULL, names, sizeof(names), &err) < 0);
    stk_error_free(err);
    free(t.p);
}

/* ---- unpack ------------------------------------------------------------------------ */

struct scratch {
    char dir[64], root[80], layer[80];
    int root_fd;
};

static void scratch_make(struct scratch *s)
{
    snprintf(s->dir, sizeof(s->dir), "/tmp/stk-image-XXXXXX");
    assert_non_null(mkdtemp(s->dir));
    snprintf(s->root, sizeof(s->root), "%s/root", s->dir);
    snprintf(s->layer, sizeof(s->layer), "%s/layer.tar", s->dir);
    assert_int_equal(mkdir(s->root, 0755), 0);
    s->root_fd = open(s->root, O_RDONLY | O_DIRECTORY);
    assert_true(s->root_fd >= 0);
}

static void scratch_remove(struct scratch *s)
{
    close(s->root_fd);
    int fd = open("/tmp", O_RDONLY | O_DIRECTORY);
    assert_int_equal(stk_image_rmtree_at(fd, s->dir + 5), 0);
    close(fd);
}

static int unpack(struct scratch *s, struct tarb *t, struct stk_error **err)
{
    end(t);
    FILE *f = fopen(s->layer, "w");
    fwrite(t->p, 1, t->n, f);
    fclose(f);
    free(t->p);
    *t = (struct tarb){0};
    struct stk_tar_counts c = {0};
    return stk_layer_unpack(s->root_fd, s->layer, NULL, &c, err);
}

static void test_unpack_refuses(void **state)
{
    (void)state;
    if (geteuid() != 0)
        skip();
    struct scratch s;
    scratch_make(&s);
    struct stk_error *err = NULL;
    struct tarb t = {0};
    struct stat st;
    char path[160];

    file(&t, "../escape", "x");
    assert_int_equal(unpack(&s, &t, &err), -EPERM);
    assert_non_null(strstr(err->msg, "\"..\""));
    stk_error_free(err);
    err = NULL;
    snprintf(path, sizeof(path), "%s/escape", s.dir);
    assert_int_not_equal(stat(path, &st), 0);

    /* a symlink to outside, then a file through it */
    header(&t, "out", '2', s.dir, 0, false);
    file(&t, "out/through", "x");
    assert_int_equal(unpack(&s, &t, &err), -ELOOP);
    stk_error_free(err);
    err = NULL;
    snprintf(path, sizeof(path), "%s/through", s.dir);
    assert_int_not_equal(stat(path, &st), 0);

    header(&t, "dev", '3', NULL, 0, false);
    assert_int_equal(unpack(&s, &t, &err), -EPERM);
    assert_non_null(strstr(err->msg, "device node"));
    stk_error_free(err);
    err = NULL;

    header(&t, "/abs", '0', NULL, 0, false);
    assert_int_equal(unpack(&s, &t, &err), -EPERM);
    stk_error_free(err);
    err = NULL;

    /* whiteouts hide what earlier layers left, not the layer's own */
    file(&t, "w/a", "1");
    file(&t, "w/b", "2");
    assert_int_equal(unpack(&s, &t, &err), 0);
    file(&t, "w/.wh.a", "");
    file(&t, "w/c", "3");
    assert_int_equal(unpack(&s, &t, &err), 0);
    snprintf(path, sizeof(path), "%s/w/a", s.root);
    assert_int_not_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/w/b", s.root);
    assert_int_equal(stat(path, &st), 0);
    file(&t, "w/d", "4");
    file(&t, "w/.wh..wh..opq", "");
    assert_int_equal(unpack(&s, &t, &err), 0);
    snprintf(path, sizeof(path), "%s/w/b", s.root);
    assert_int_not_equal(stat(path, &st), 0);
    snprintf(path, sizeof(path), "%s/w/d", s.root);
    assert_int_equal(stat(path, &st), 0);
    scratch_remove(&s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refs),
        cmocka_unit_test(test_pin),
        cmocka_unit_test(test_tar_reader),
        cmocka_unit_test(test_unpack_refuses),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
