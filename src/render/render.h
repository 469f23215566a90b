/* SPDX-License-Identifier: Apache-2.0 */
/*
 * render — pure functions boundary -> objects a backend applies. Nothing here
 * touches the kernel, the filesystem or the network: the same boundary and
 * options always give the same bytes (golden-tested).
 */
#ifndef STK_RENDER_H
#define STK_RENDER_H

#include "boundary/boundary.h"

/* ==== OCI runtime bundle (runtime-spec 1.0.x config.json) ================ */

/* The sandbox user. 65534 is "nobody"/"nogroup" on Debian: it owns nothing
 * on the host, so a file the sandbox could reach by accident is never its. */
#define STK_OCI_UID 65534
#define STK_OCI_GID 65534

/* Hard limits on what a rendered bundle may hold. */
#define STK_OCI_MAX_HOST_DIRS 16
#define STK_OCI_MAX_ENV       256
#define STK_OCI_MAX_ARGV      4096

/* What the driver decides and the boundary does not say: host paths. */
struct stk_oci_options {
    const char *root_path; /* config root.path (the bundle's empty "rootfs" or the spec's DIR) */
    const char *workspace; /* host directory bound read-write at /workspace */
    const char *etc_dir;   /* rootfs host: the generated /etc, bound read-only */
    /* rootfs host: host directories bound read-only at the same path; the
     * driver lists those that exist (/usr, /bin, /sbin, /lib, /lib64, ...). */
    const char *const *host_dirs;
    size_t n_host_dirs;
    const char *cgroups_path; /* linux.cgroupsPath, owned by the driver */
    /* extra environment ("K=V"), after the boundary's; may be NULL */
    const char *const *extra_env;
    size_t n_extra_env;
};

/* Renders config.json text (2-space indented, fixed key order, trailing
 * newline). The caller frees *ret. */
int stk_oci_render(const struct stk_boundary *b, const struct stk_oci_options *o, char **ret,
                   struct stk_error **err);

/* The minimal /etc of a `rootfs: host` sandbox: the sandbox user, hosts,
 * nsswitch; nothing from the host's /etc and no secrets. The same for every
 * sandbox, so the driver may share one copy. */
struct stk_oci_file {
    const char *name; /* relative to etc_dir */
    char *content;
};
#define STK_OCI_ETC_FILES 5
void stk_oci_etc_render(const struct stk_boundary *b, struct stk_oci_file ret[STK_OCI_ETC_FILES]);
void stk_oci_etc_free(struct stk_oci_file files[STK_OCI_ETC_FILES]);

/* The syscalls the default seccomp profile refuses with EPERM (for docs and
 * tests). NULL-terminated. */
extern const char *const stk_oci_denied_syscalls[];

#endif
