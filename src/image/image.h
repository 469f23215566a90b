/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Local images (docs/images.md): references, the content-addressed store
 * under the state directory, pulling through skopeo, and the layer reader
 * that unpacks a layer beneath a directory and nowhere else.
 *
 * Depends on base only; the local driver and the CLI use it.
 */
#ifndef STK_IMAGE_H
#define STK_IMAGE_H

#include "base/base.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* ---- references ------------------------------------------------------------ */

enum stk_image_transport {
    STK_IMG_REGISTRY,       /* [host[:port]/]repo[:tag][@sha256:...] */
    STK_IMG_OCI,            /* oci:DIR[:tag] */
    STK_IMG_OCI_ARCHIVE,    /* oci-archive:FILE */
    STK_IMG_DOCKER_ARCHIVE, /* docker-archive:FILE */
};

#define STK_IMAGE_REF_MAX 512

struct stk_image_ref {
    enum stk_image_transport transport;
    /* the canonical name the store records (registry: host/repo:tag or
     * host/repo@sha256:..., "docker.io/library/" added as podman does) */
    char name[STK_IMAGE_REF_MAX + 32];
    /* what skopeo copies from ("docker://...", "oci:DIR:tag", ...) */
    char source[STK_IMAGE_REF_MAX + 32];
    /* the registry host ("localhost:5000"), "" for the other transports */
    char host[256];
    /* "sha256:<hex>" when the reference pins a digest, "" otherwise */
    char digest[72];
};

/* Parses a reference; -EINVAL with a message naming what is wrong. */
int stk_image_ref_parse(const char *s, struct stk_image_ref *ret, struct stk_error **err);

/* ---- the layer reader (tar, plain or gzip) --------------------------------- */

/* Hard limits on what a layer (and an image's layers together) may hold. */
struct stk_tar_limits {
    uint64_t max_files; /* entries over all layers */
    uint64_t max_bytes; /* file content over all layers */
    size_t max_path;    /* bytes in one entry's name or link target */
};
#define STK_TAR_MAX_FILES UINT64_C(500000)
#define STK_TAR_MAX_BYTES (UINT64_C(16) << 30)
#define STK_TAR_MAX_PATH  4096
/* one pax extended header or GNU long name */
#define STK_TAR_MAX_META (1u << 20)

enum stk_tar_type {
    STK_TAR_FILE,
    STK_TAR_DIR,
    STK_TAR_SYMLINK,
    STK_TAR_HARDLINK,
    STK_TAR_FIFO,
    STK_TAR_CHAR,
    STK_TAR_BLOCK,
    STK_TAR_OTHER,
};

struct stk_tar_entry {
    enum stk_tar_type type;
    char *path; /* as in the archive (owned by the reader until the next call) */
    char *link; /* symlink or hard link target, "" otherwise */
    uint64_t size;
    uint32_t mode;
    uint32_t uid, gid;
    int64_t mtime;
};

/* Reads from a callback: returns bytes read, 0 at the end, negative errno. */
typedef ssize_t (*stk_tar_read_fn)(void *ctx, void *buf, size_t n);
struct stk_tar_reader;
struct stk_tar_reader *stk_tar_reader_new(stk_tar_read_fn fn, void *ctx,
                                          const struct stk_tar_limits *lim);
void stk_tar_reader_free(struct stk_tar_reader *r);
/* The next entry: 1 and *ret filled, 0 at the end of the archive, negative
 * with *err on a malformed or over-limit archive. The entry's content not
 * read with stk_tar_data() is skipped. */
int stk_tar_next(struct stk_tar_reader *r, struct stk_tar_entry *ret, struct stk_error **err);
/* Reads up to n bytes of the current entry's content: bytes read, 0 at its
 * end, negative with *err. */
ssize_t stk_tar_data(struct stk_tar_reader *r, void *buf, size_t n, struct stk_error **err);

/* Unpacks one layer file (tar, plain or gzip) into the directory root_fd:
 * refuses absolute paths, "..", anything reached through a symlink, hard
 * links out of the root, device nodes and over-limit content; applies the
 * layer's whiteouts (.wh.NAME, .wh..wh..opq) to what earlier layers left.
 * counts carries the totals across the image's layers. Does not clean up:
 * the caller removes the partial root on failure. */
struct stk_tar_counts {
    uint64_t files, bytes;
};
int stk_layer_unpack(int root_fd, const char *layer_path, const struct stk_tar_limits *lim,
                     struct stk_tar_counts *counts, struct stk_error **err);

/* Makes the mount points a sandbox needs in an unpacked root. */
int stk_image_mountpoints(int root_fd);

/* Removes a directory tree beneath dir_fd without following symlinks. */
int stk_image_rmtree_at(int dir_fd, const char *name);

/* ---- the store ------------------------------------------------------------- */

/* An image in the store. */
struct stk_image {
    char digest[72]; /* the manifest's "sha256:<hex>" */
    char root[1024]; /* the unpacked, shared root */
    char **names;    /* references that name it */
    size_t n_names;
    char **entrypoint, **cmd, **env; /* NULL-terminated (may be empty) */
    size_t n_entrypoint, n_cmd, n_env;
    char **exposed; /* ExposedPorts keys ("8080/tcp"), sorted; never exposed by stockade */
    size_t n_exposed;
    char *workdir;        /* "" when unset */
    char *user;           /* "" when unset */
    int64_t size;         /* bytes on disk (blobs and root) */
    int64_t pulled, used; /* ms since the epoch */
    size_t n_layers;
};
void stk_image_free(struct stk_image *img);
static inline void stk_image_freep(struct stk_image **p)
{
    stk_image_free(*p);
}
#define _cleanup_image_ _cleanup_(stk_image_freep)

/* Is the image (by manifest digest) used by a sandbox? Set by the caller,
 * which knows the sessions; NULL: only running `stockade run`s count. */
typedef bool (*stk_image_in_use_fn)(void *ctx, const char *digest);

struct stk_image_pull_opts {
    const char *cert_dir;                /* --cert-dir: CA certificates for the registry */
    const char *auth_file;               /* --authfile: registry credentials */
    bool tls_verify_off;                 /* --tls-verify=false: loopback registries only */
    int64_t max_store;                   /* bytes; <= 0: STK_IMAGE_STORE_DEFAULT */
    const struct stk_tar_limits *limits; /* NULL: the STK_TAR_MAX_* defaults */
    stk_image_in_use_fn in_use;
    void *in_use_ctx;
};
#define STK_IMAGE_STORE_DEFAULT (INT64_C(20) << 30)
#define STK_IMAGE_MAX_LAYERS    128

/* <state_dir>/images */
int stk_image_store_dir(const char *state_dir, char *buf, size_t n, struct stk_error **err);

/* Pulls ref into the store (skopeo copy into a private OCI layout, every blob
 * checked against its sha256, the layers unpacked into one root), then
 * evicts least recently used images not in use while the store is over its
 * size. Nothing of a failed pull stays. */
int stk_image_pull(const char *store, const char *ref, const struct stk_image_pull_opts *o,
                   struct stk_image **ret, struct stk_error **err);
/* Finds an image by reference, digest or digest prefix (>= 12 hex digits). */
int stk_image_find(const char *store, const char *ref, struct stk_image **ret,
                   struct stk_error **err);
/* Every image, most recently pulled first. */
int stk_image_list(const char *store, struct stk_image ***ret, size_t *ret_n,
                   struct stk_error **err);
void stk_image_list_free(struct stk_image **v, size_t n);
/* Removes an image (refused with -EBUSY when in use). */
int stk_image_remove(const char *store, const char *ref, stk_image_in_use_fn in_use, void *ctx,
                     struct stk_error **err);
/* Removes every image not in use; *ret_n the number removed. */
int stk_image_prune(const char *store, stk_image_in_use_fn in_use, void *ctx, size_t *ret_n,
                    struct stk_error **err);

/* A `stockade run` holds its image for as long as it runs (a shared lock
 * on the image's record): rm and eviction pass it over. Returns the fd. */
int stk_image_hold(const struct stk_image *img, const char *store, struct stk_error **err);
/* Is any `stockade run` holding the image? */
bool stk_image_held(const char *store, const char *digest);
/* Marks an image used now (for eviction order). */
void stk_image_touch(const char *store, const char *digest);

/* What a cluster should run for ref, pinned to a digest. A registry
 * reference that names a digest is pinned already (*ret_image ""); one
 * pulled into this store becomes NAME@DIGEST in *ret_image (the store's
 * canonical name without its tag), the digest stockade verified. Returns 1
 * with *ret_digest set, 0 when there is nothing to pin to (not pulled here,
 * or not a registry reference), negative on a malformed reference. */
int stk_image_pin(const char *store, const char *ref, char *ret_image, size_t n,
                  char ret_digest[72], struct stk_error **err);

/* The image's ExposedPorts as text ("53/udp, 8080/tcp") into buf; false
 * when it declares none (or ref is not in the store). */
bool stk_image_ports_text(const char *store, const char *ref, char *buf, size_t n);

/* ---- the image's user ------------------------------------------------------- */

/* Resolves the config's User ("", "name", "uid", "uid:gid", "name:group")
 * against the root's /etc/passwd and /etc/group. -ENOENT with *err when a
 * name is unknown. */
int stk_image_user(const struct stk_image *img, uint32_t *ret_uid, uint32_t *ret_gid,
                   struct stk_error **err);

#endif
