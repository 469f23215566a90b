/* SPDX-License-Identifier: Apache-2.0 */
/*
 * spec.image on the local backend: the image's shared, read-only root from
 * the store (src/image/) and its config as render/oci.c takes it.
 */
#include "internal.h"
#include "image/image.h"

#include <errno.h>
#include <string.h>

void local_image_free(struct local_image *li)
{
    stk_image_free(li->img);
    li->img = NULL;
}

int local_image_open(const char *state_dir, const struct stk_boundary *b, struct local_image *ret,
                     struct stk_error **err)
{
    *ret = (struct local_image){0};
    if (!b->image)
        return 0;
    if (!stk_streq(b->rootfs, "host"))
        return stk_error_make(err, EINVAL,
                              "spec.image and spec.rootfs %s: a sandbox runs one root; give one "
                              "of them",
                              b->rootfs);
    int r = stk_image_store_dir(state_dir, ret->store, sizeof(ret->store), err);
    struct stk_image *img = NULL;
    if (r < 0 || (r = stk_image_find(ret->store, b->image, &img, err)) < 0)
        return r;
    uint32_t uid, gid;
    if ((r = stk_image_user(img, &uid, &gid, err)) < 0) {
        stk_image_free(img);
        return r;
    }
    /* root in the image is never root on the host's kernel here (no user
     * namespace per sandbox yet): it gets the sandbox user, and explain
     * says so (stk_local_image_user_note) */
    ret->wanted_uid = uid;
    if (uid == 0 || gid == 0) {
        uid = STK_OCI_UID;
        gid = STK_OCI_GID;
        ret->root_refused = true;
    }
    ret->img = img;
    ret->oci = (struct stk_oci_image){
        .digest = img->digest,
        .entrypoint = (const char *const *)img->entrypoint,
        .n_entrypoint = img->n_entrypoint,
        .cmd = (const char *const *)img->cmd,
        .n_cmd = img->n_cmd,
        .env = (const char *const *)img->env,
        .n_env = img->n_env,
        .workdir = img->workdir,
        .uid = uid,
        .gid = gid,
    };
    return 0;
}

/* <state>/sandboxes/<id>/image names the image a long-lived sandbox runs:
 * `image rm` reads it for every sandbox the session store lists (the
 * directory, and so the mark, goes with rm). */
void local_image_mark(const struct stk_local_paths *p, const struct stk_driver_sandbox *sb)
{
    struct local_image li;
    char path[700];
    if (!sb->b->image || local_image_open(p->state_dir, sb->b, &li, NULL) < 0)
        return;
    if (stk_path_fmt(path, sizeof(path), "%s/sandboxes/%s/" STK_LOCAL_IMAGE_MARK, p->state_dir,
                     sb->id) >= 0)
        (void)file_write(path, li.img->digest, strlen(li.img->digest));
    stk_image_touch(li.store, li.img->digest);
    local_image_free(&li);
}

void local_image_facts(const char *state_dir, const struct stk_boundary *b,
                       struct stk_driver_facts *ret)
{
    struct local_image li;
    if (!b->image || local_image_open(state_dir, b, &li, NULL) < 0)
        return;
    fmt_into(ret->image_digest, sizeof(ret->image_digest), "%s", li.img->digest);
    ret->facts.image_digest = ret->image_digest;
    if (li.root_refused)
        fmt_into(ret->image_user, sizeof(ret->image_user),
                 "the image runs as root (User %s); here it runs as the sandbox user %d: root "
                 "in a sandbox is root on the host's kernel without a user namespace",
                 li.img->user[0] ? li.img->user : "unset", STK_OCI_UID);
    else
        fmt_into(ret->image_user, sizeof(ret->image_user), "runs as the image's user %s (uid %u)",
                 li.img->user, li.oci.uid);
    ret->facts.image_user = ret->image_user;
    if (stk_image_ports_text(li.store, b->image, ret->image_ports, sizeof(ret->image_ports)))
        ret->facts.image_ports = ret->image_ports;
    local_image_free(&li);
}
