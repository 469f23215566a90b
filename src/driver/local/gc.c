/* SPDX-License-Identifier: Apache-2.0 */
/*
 * gc: what a crashed run left behind, found only where stockade puts
 * things: <state>/sandboxes/<id>, <run>/<runtime>/<id> and the cgroups
 * <hierarchy>/stockade/<id>. A sandbox whose lock a live run holds is left
 * alone, and so are its cgroups and runtime state. Of the cgroups no record
 * here names, only those marked with this state directory are removed:
 * another store's are never touched.
 */
#include "internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>

#define GC_MAX_IDS      4096
#define GC_IDLE_SECONDS 60

struct idlist {
    char (*ids)[64];
    size_t n;
};

static void idlist_add(const char *id, void *ud)
{
    struct idlist *l = ud;
    if (l->n >= GC_MAX_IDS || strlen(id) >= 64)
        return;
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->ids[i], id))
            return;
    snprintf(l->ids[l->n++], 64, "%s", id);
}

/* The sandbox id an entry of a runtime's --root belongs to: runc and crun
 * keep a directory named after it; runsc keeps "<id>_sandbox:<id>.state"
 * and ".lock" files, and (since 2024) "runsc-<id>.sock". stockade's ids never contain '_'. */
static bool entry_id(const char *name, char id[64])
{
    /* runsc-<id>.sock, runsc's control socket */
    size_t len = strlen(name);
    if (!strncmp(name, "runsc-", 6) && len > 11 && !strcmp(name + len - 5, ".sock")) {
        if (len - 11 >= 64)
            return false;
        memcpy(id, name + 6, len - 11);
        id[len - 11] = '\0';
        return true;
    }
    size_t n = strcspn(name, "_");
    if (name[0] == '.' || n == 0 || n >= 64)
        return false;
    memcpy(id, name, n);
    id[n] = '\0';
    return true;
}

static void dir_ids(const char *path, struct idlist *l)
{
    DIR *d = opendir(path);
    if (!d)
        return;
    struct dirent *e;
    char id[64];
    while ((e = readdir(d)))
        if (entry_id(e->d_name, id))
            idlist_add(id, l);
    closedir(d);
}

/* True when a live run holds the sandbox's lock. */
static bool in_use(const struct stk_local_paths *p, const char *id)
{
    char path[700];
    /* a path that does not fit names no lock: in use, to be safe */
    if (stk_path_fmt(path, sizeof(path), "%s/sandboxes/%s/lock", p->state_dir, id) < 0)
        return true;
    _cleanup_close_ int fd = open(path, O_RDWR | O_CLOEXEC | O_NOFOLLOW);
    if (fd < 0)
        return false;
    return flock(fd, LOCK_EX | LOCK_NB) < 0 && errno == EWOULDBLOCK;
}

int stk_local_gc(const struct stk_local_paths *p, const char *const *keep, size_t n_keep,
                 struct stk_gc_stats *ret, struct stk_error **err)
{
    struct stk_gc_stats st = {0};
    struct idlist l = {.ids = stk_xcalloc(GC_MAX_IDS, 64)};
    char path[700];

    if (stk_path_make(path, sizeof(path), err, "%s/sandboxes", p->state_dir) < 0) {
        free(l.ids);
        return -ENAMETOOLONG;
    }
    dir_ids(path, &l);
    for (int rt = 0; rt < _STK_OCI_N; rt++)
        if (stk_path_fmt(path, sizeof(path), "%s/%s", p->run_dir, rt_table[rt].name) >= 0)
            dir_ids(path, &l);
    /* ids our state or run directory knows are ours; the rest of
     * <hierarchy>/stockade/ may belong to runs under another state
     * directory, whose locks we cannot see */
    size_t owned = l.n;
    cg_foreach_id(idlist_add, &l);
    /* the ids of live runs: their networks stay */
    const char **live = stk_xcalloc(owned + 1, sizeof(*live));
    size_t n_live = 0;

    for (size_t i = 0; i < l.n; i++) {
        const char *id = l.ids[i];
        if (i >= owned) {
            /* no record of it here: only an empty cgroup that this store
             * marked as its own and that has been there a while is
             * removed, and nothing in it is killed */
            int r = cg_remove_idle(id, GC_IDLE_SECONDS, p->state_dir);
            if (r > 0)
                st.cgroups += (size_t)r;
            continue;
        }
        bool kept = false;
        for (size_t k = 0; k < n_keep && !kept; k++)
            kept = !strcmp(keep[k], id);
        if (kept || in_use(p, id)) {
            live[n_live++] = id;
            continue;
        }
        /* runtime state first: it may still hold processes */
        for (int rt = 0; rt < _STK_OCI_N; rt++) {
            struct stat sb;
            char bin[256];
            if (stk_path_fmt(path, sizeof(path), "%s/%s", p->run_dir, rt_table[rt].name) < 0 ||
                !runtime_entries(path, id, false))
                continue;
            if (rt_find(rt_table[rt].name, bin, sizeof(bin), &sb)) {
                const char *args[] = {"delete", "--force", id, NULL};
                (void)rt_exec(p, (enum stk_oci_runtime)rt, bin, args, RT_IO_LOG(RT_NULL), NULL);
            }
            (void)runtime_entries(path, id, true);
            st.runtime_states++;
        }
        int r = cg_remove(id);
        if (r > 0)
            st.cgroups += (size_t)r;
        struct stat sb;
        /* removed only by a path built whole */
        if (stk_path_fmt(path, sizeof(path), "%s/sandboxes/%s", p->state_dir, id) >= 0 &&
            stat(path, &sb) == 0 && stk_local_volumes_release(path, true) == 0 &&
            idmap_release(path) >= 0 && rm_rf(path) == 0)
            st.sandboxes++;
    }
    /* networks last: their sandboxes' processes are gone by now */
    struct stk_net_config net;
    stk_net_config_default(&net);
    net.run_dir = p->run_dir;
    int r = stk_net_gc(&net, live, n_live, err);
    free(live);
    free(l.ids);
    if (r < 0)
        return r;
    st.network = (size_t)r;
    *ret = st;
    return 0;
}
