/* SPDX-License-Identifier: Apache-2.0 */
/* render/oci.c: golden config.json files and the properties they must keep.
 * STK_UPDATE_GOLDEN=1 rewrites the golden files from the current output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>

#include <cmocka.h>
#include <errno.h>
#include <jansson.h>
#include <string.h>

#include "render/render.h"

#define GOLDEN_DIR STK_SOURCE_ROOT "/tests/data/golden/"

static const char agent_yaml[] = "apiVersion: stockade.dev/v1alpha1\n"
                                 "kind: Sandbox\n"
                                 "metadata:\n"
                                 "  name: agent-tools\n"
                                 "spec:\n"
                                 "  rootfs: host\n"
                                 "  command: [\"/bin/sh\", \"-c\"]\n"
                                 "  args: [\"echo hello; id\"]\n"
                                 "  env:\n"
                                 "    - name: LANG\n"
                                 "      value: C.UTF-8\n"
                                 "  resources:\n"
                                 "    cpu: 500m\n"
                                 "    memory: 256Mi\n"
                                 "    pids: 64\n"
                                 "    wallClock: 5m\n"
                                 "    cpuTime: 2m\n";

static const char debugger_yaml[] = "apiVersion: stockade.dev/v1alpha1\n"
                                    "kind: Sandbox\n"
                                    "metadata:\n"
                                    "  name: debugger\n"
                                    "spec:\n"
                                    "  rootfs: /srv/rootfs\n"
                                    "  command: [\"/usr/bin/gdb\"]\n"
                                    "  security:\n"
                                    "    policy: privileged\n"
                                    "    capabilities:\n"
                                    "      add: [SYS_PTRACE]\n"
                                    "  driverConfig:\n"
                                    "    local:\n"
                                    "      tmpSize: 16Mi\n"
                                    "      shmSize: 8Mi\n";

static const char *const host_dirs[] = {"/usr", "/bin", "/sbin", "/lib", "/lib64"};

struct fixture {
    struct stk_docset *ds;
    struct stk_boundary *b;
};

static void load(const char *yaml, struct fixture *f)
{
    struct stk_diags d = {0};
    assert_int_equal(stk_docset_parse("test.yaml", yaml, strlen(yaml), &d, &f->ds), 0);
    assert_int_equal(stk_resolve(f->ds->docs[0].sandbox, "test.yaml", NULL, NULL, &d, &f->b), 0);
    stk_diags_free(&d);
}

static void release(struct fixture *f)
{
    stk_boundary_free(f->b);
    stk_docset_free(f->ds);
}

static char *render(const struct stk_boundary *b)
{
    static const char *const extra[] = {"EXTRA=1"};
    struct stk_oci_options o = {
        .root_path = "/var/lib/stockade/sandboxes/ID/bundle/rootfs",
        .workspace = "/var/lib/stockade/sandboxes/ID/workspace",
        .etc_dir = "/var/lib/stockade/sandboxes/ID/etc",
        .host_dirs = host_dirs,
        .n_host_dirs = STK_ARRAY_SIZE(host_dirs),
        .cgroups_path = "/stockade/ID",
        .extra_env = extra,
        .n_extra_env = 1,
    };
    char *text = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_oci_render(b, &o, &text, &err), 0);
    assert_null(err);
    return text;
}

static void check_golden(const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), GOLDEN_DIR "%s", name);
    if (getenv("STK_UPDATE_GOLDEN")) {
        FILE *f = fopen(path, "w");
        assert_non_null(f);
        fputs(text, f);
        fclose(f);
    }
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    static char want[1 << 17];
    size_t n = fread(want, 1, sizeof(want) - 1, f);
    fclose(f);
    want[n] = '\0';
    assert_string_equal(text, want);
}

static bool has_string(json_t *arr, const char *s)
{
    size_t i;
    json_t *v;
    json_array_foreach(arr, i,
                       v) if (json_is_string(v) && !strcmp(json_string_value(v), s)) return true;
    return false;
}

/* Every syscall name refused with EPERM by some rule without arguments. */
static bool denied(json_t *cfg, const char *name)
{
    json_t *rules =
        json_object_get(json_object_get(json_object_get(cfg, "linux"), "seccomp"), "syscalls");
    size_t i;
    json_t *r;
    json_array_foreach(rules, i, r)
    {
        if (json_object_get(r, "args"))
            continue;
        if (strcmp(json_string_value(json_object_get(r, "action")), "SCMP_ACT_ERRNO"))
            continue;
        if (has_string(json_object_get(r, "names"), name))
            return true;
    }
    return false;
}

static void test_agent_golden(void **state)
{
    (void)state;
    struct fixture f = {0};
    load(agent_yaml, &f);
    char *text = render(f.b);
    check_golden("oci-agent.json", text);
    free(text);
    release(&f);
}

static void test_debugger_golden(void **state)
{
    (void)state;
    struct fixture f = {0};
    load(debugger_yaml, &f);
    char *text = render(f.b);
    check_golden("oci-debugger.json", text);
    free(text);
    release(&f);
}

static void test_agent_properties(void **state)
{
    (void)state;
    struct fixture f = {0};
    load(agent_yaml, &f);
    char *text = render(f.b);
    json_t *c = json_loads(text, 0, NULL);
    assert_non_null(c);
    json_t *proc = json_object_get(c, "process");
    assert_true(json_is_true(json_object_get(proc, "noNewPrivileges")));
    assert_int_equal(json_integer_value(json_object_get(json_object_get(proc, "user"), "uid")),
                     STK_OCI_UID);
    json_t *caps = json_object_get(proc, "capabilities");
    assert_int_equal(json_array_size(json_object_get(caps, "bounding")), 0);
    assert_int_equal(json_array_size(json_object_get(caps, "effective")), 0);
    assert_true(json_is_true(json_object_get(json_object_get(c, "root"), "readonly")));
    assert_string_equal(json_string_value(json_object_get(c, "hostname")), "agent-tools");

    json_t *lx = json_object_get(c, "linux");
    static const char *const want_ns[] = {"pid", "ipc", "uts", "mount", "cgroup", "network"};
    json_t *ns = json_object_get(lx, "namespaces");
    assert_int_equal(json_array_size(ns), STK_ARRAY_SIZE(want_ns));
    for (size_t i = 0; i < STK_ARRAY_SIZE(want_ns); i++) {
        json_t *e = json_array_get(ns, i);
        assert_string_equal(json_string_value(json_object_get(e, "type")), want_ns[i]);
        assert_null(json_object_get(e, "path")); /* a new, empty namespace */
    }
    json_t *mem = json_object_get(json_object_get(lx, "resources"), "memory");
    assert_int_equal(json_integer_value(json_object_get(mem, "limit")), 256 << 20);
    assert_int_equal(json_integer_value(json_object_get(mem, "swap")), 256 << 20);
    json_t *cpu = json_object_get(json_object_get(lx, "resources"), "cpu");
    assert_int_equal(json_integer_value(json_object_get(cpu, "quota")), 50000);
    json_t *sc = json_object_get(lx, "seccomp");
    json_t *arch = json_object_get(sc, "architectures");
    assert_int_equal(json_array_size(arch), 1);
    assert_string_equal(json_string_value(json_array_get(arch, 0)), "SCMP_ARCH_X86_64");
    static const char *const must[] = {
        "mount",           "umount2",
        "unshare",         "setns",
        "ptrace",          "bpf",
        "keyctl",          "add_key",
        "request_key",     "perf_event_open",
        "userfaultfd",     "kexec_load",
        "init_module",     "finit_module",
        "delete_module",   "open_by_handle_at",
        "swapon",          "swapoff",
        "reboot",          "pidfd_getfd",
        "process_madvise", "kcmp",
    };
    for (size_t i = 0; i < STK_ARRAY_SIZE(must); i++)
        assert_true(denied(c, must[i]));
    /* socket(AF_VSOCK) and socket(AF_ALG): EAFNOSUPPORT, on the low 32 bits */
    int families = 0;
    size_t k;
    json_t *rule;
    json_array_foreach(json_object_get(sc, "syscalls"), k, rule)
    {
        if (!has_string(json_object_get(rule, "names"), "socket"))
            continue;
        json_t *arg = json_array_get(json_object_get(rule, "args"), 0);
        assert_int_equal(json_integer_value(json_object_get(rule, "errnoRet")), EAFNOSUPPORT);
        assert_string_equal(json_string_value(json_object_get(arg, "op")), "SCMP_CMP_MASKED_EQ");
        assert_int_equal(json_integer_value(json_object_get(arg, "value")), 0xffffffff);
        json_int_t fam = json_integer_value(json_object_get(arg, "valueTwo"));
        families |= fam == 40 ? 1 : fam == 38 ? 2 : 4;
    }
    assert_int_equal(families, 3);
    assert_true(has_string(json_object_get(lx, "maskedPaths"), "/proc/kcore"));
    assert_true(has_string(json_object_get(lx, "readonlyPaths"), "/proc/sys"));

    /* host dirs and /etc are read-only; /workspace is the only rw bind */
    int cgroup_mounts = 0;
    size_t i;
    json_t *m;
    json_array_foreach(json_object_get(c, "mounts"), i, m)
    {
        const char *dst = json_string_value(json_object_get(m, "destination"));
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *opts = json_object_get(m, "options");
        if (!strcmp(type, "bind"))
            assert_true(has_string(opts, !strcmp(dst, "/workspace") ? "rw" : "ro"));
        assert_false(stk_startswith(dst, "/root") || stk_startswith(dst, "/home") ||
                     stk_startswith(dst, "/var") || stk_startswith(dst, "/run"));
        if (!strcmp(dst, "/tmp"))
            assert_true(has_string(opts, "size=65536k"));
        /* /sys/fs/cgroup: mounted, then remounted read-only */
        if (!strcmp(dst, "/sys/fs/cgroup"))
            assert_true(has_string(opts, "ro"));
        cgroup_mounts += !strcmp(dst, "/sys/fs/cgroup");
    }
    assert_int_equal(cgroup_mounts, 2);
    json_decref(c);
    free(text);
    release(&f);
}

static void test_ptrace_granted(void **state)
{
    (void)state;
    struct fixture f = {0};
    load(debugger_yaml, &f);
    char *text = render(f.b);
    json_t *c = json_loads(text, 0, NULL);
    assert_false(denied(c, "ptrace"));
    assert_false(denied(c, "pidfd_getfd"));
    assert_true(denied(c, "mount"));
    json_t *caps = json_object_get(json_object_get(c, "process"), "capabilities");
    assert_true(has_string(json_object_get(caps, "bounding"), "CAP_SYS_PTRACE"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(c, "root"), "path")),
                        "/var/lib/stockade/sandboxes/ID/bundle/rootfs");
    json_decref(c);
    free(text);
    release(&f);
}

static void test_no_command(void **state)
{
    (void)state;
    static const char yaml[] = "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
                               "metadata:\n  name: x\nspec: {}\n";
    struct fixture f = {0};
    load(yaml, &f);
    struct stk_oci_options o = {
        .root_path = "/r", .workspace = "/w", .etc_dir = "/e", .cgroups_path = "/c"};
    char *text = NULL;
    struct stk_error *err = NULL;
    assert_true(stk_oci_render(f.b, &o, &text, &err) < 0);
    assert_non_null(err);
    assert_non_null(strstr(err->msg, "no command"));
    stk_error_free(err);
    release(&f);
}

/* spec.image: the image's Entrypoint/Cmd unless the spec says (command
 * replaces both, args only the Cmd), its Env before the spec's, its
 * WorkingDir unless the spec sets one, its (resolved) user, its root with
 * no host directory and no generated /etc. */
static json_t *render_image(const char *spec)
{
    static const char *const ep[] = {"/entry"}, *const cmd[] = {"default-arg"};
    static const char *const env[] = {"PATH=/opt/bin", "FROM_IMAGE=1", "SHARED=image"};
    const struct stk_oci_image img = {.digest = "sha256:00",
                                      .entrypoint = ep,
                                      .n_entrypoint = 1,
                                      .cmd = cmd,
                                      .n_cmd = 1,
                                      .env = env,
                                      .n_env = 3,
                                      .workdir = "/app",
                                      .uid = 1000,
                                      .gid = 1001};
    char yaml[512];
    snprintf(yaml, sizeof(yaml),
             "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\nmetadata:\n  name: x\n"
             "spec:\n  image: localhost:5000/app:1\n%s",
             spec);
    struct fixture f = {0};
    load(yaml, &f);
    struct stk_oci_options o = {.root_path = "/store/roots/00",
                                .workspace = "/w",
                                .host_dirs = host_dirs,
                                .n_host_dirs = STK_ARRAY_SIZE(host_dirs),
                                .cgroups_path = "/c",
                                .image = &img};
    char *text = NULL;
    struct stk_error *err = NULL;
    assert_int_equal(stk_oci_render(f.b, &o, &text, &err), 0);
    json_t *cfg = json_loads(text, 0, NULL);
    free(text);
    release(&f);
    return cfg;
}

static const char *argv_joined(json_t *cfg, char *buf, size_t n)
{
    json_t *a = json_object_get(json_object_get(cfg, "process"), "args");
    buf[0] = '\0';
    for (size_t i = 0; i < json_array_size(a); i++)
        snprintf(buf + strlen(buf), n - strlen(buf), "%s%s", i ? " " : "",
                 json_string_value(json_array_get(a, i)));
    return buf;
}

static void test_image(void **state)
{
    (void)state;
    char buf[256];
    json_t *cfg = render_image("");
    assert_string_equal(argv_joined(cfg, buf, sizeof(buf)), "/entry default-arg");
    json_t *p = json_object_get(cfg, "process");
    assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "user"), "uid")), 1000);
    assert_int_equal(json_integer_value(json_object_get(json_object_get(p, "user"), "gid")), 1001);
    assert_string_equal(json_string_value(json_object_get(p, "cwd")), "/app");
    json_t *env = json_object_get(p, "env");
    assert_string_equal(json_string_value(json_array_get(env, 0)), "PATH=/opt/bin");
    assert_true(has_string(env, "FROM_IMAGE=1"));
    /* no default PATH beside the image's */
    assert_false(
        has_string(env, "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"));
    assert_string_equal(json_string_value(json_object_get(json_object_get(cfg, "root"), "path")),
                        "/store/roots/00");
    json_t *m;
    size_t i;
    json_array_foreach(json_object_get(cfg, "mounts"), i, m)
    {
        const char *dst = json_string_value(json_object_get(m, "destination"));
        assert_true(strcmp(dst, "/usr") && strcmp(dst, "/etc") && strcmp(dst, "/lib"));
    }
    json_decref(cfg);

    cfg = render_image("  args: [a, b]\n  workingDir: /w2\n  env: [{name: SHARED, value: spec}]\n");
    assert_string_equal(argv_joined(cfg, buf, sizeof(buf)), "/entry a b");
    p = json_object_get(cfg, "process");
    assert_string_equal(json_string_value(json_object_get(p, "cwd")), "/w2");
    /* the spec's variable comes after the image's: it wins */
    env = json_object_get(p, "env");
    size_t img_at = SIZE_MAX, spec_at = SIZE_MAX;
    for (i = 0; i < json_array_size(env); i++) {
        if (!strcmp(json_string_value(json_array_get(env, i)), "SHARED=image"))
            img_at = i;
        if (!strcmp(json_string_value(json_array_get(env, i)), "SHARED=spec"))
            spec_at = i;
    }
    assert_true(img_at < spec_at && spec_at != SIZE_MAX);
    json_decref(cfg);

    cfg = render_image("  command: [/bin/sh, -c]\n  args: [x]\n");
    assert_string_equal(argv_joined(cfg, buf, sizeof(buf)), "/bin/sh -c x");
    json_decref(cfg);
}

/* spec.storage.home: the home volume bound read-write at /home/sandbox,
 * which is $HOME; without a home volume from the driver, neither. */
static void test_home(void **state)
{
    (void)state;
    static const char yaml[] = "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
                               "metadata:\n  name: x\nspec:\n  command: [\"true\"]\n"
                               "  storage:\n    home: {persist: true}\n";
    struct fixture f = {0};
    load(yaml, &f);
    for (int with = 0; with < 2; with++) {
        struct stk_oci_options o = {.root_path = "/r",
                                    .workspace = "/w",
                                    .etc_dir = "/e",
                                    .cgroups_path = "/c",
                                    .home = with ? "/state/sandboxes/ID/home" : NULL};
        char *text = NULL;
        assert_int_equal(stk_oci_render(f.b, &o, &text, NULL), 0);
        json_t *c = json_loads(text, 0, NULL);
        assert_non_null(c);
        json_t *m, *home = NULL;
        size_t i;
        json_array_foreach(json_object_get(c, "mounts"), i,
                           m) if (!strcmp(json_string_value(json_object_get(m, "destination")),
                                          "/home/sandbox")) home = m;
        bool env_home = false;
        json_array_foreach(json_object_get(json_object_get(c, "process"), "env"), i, m) env_home |=
            !strcmp(json_string_value(m), "HOME=/home/sandbox");
        assert_int_equal(env_home, with);
        if (with) {
            assert_non_null(home);
            assert_string_equal(json_string_value(json_object_get(home, "source")),
                                "/state/sandboxes/ID/home");
            json_t *opts = json_object_get(home, "options");
            assert_string_equal(json_string_value(json_array_get(opts, 3)), "rw");
        } else {
            assert_null(home);
        }
        json_decref(c);
        free(text);
    }
    release(&f);
}

/* A long-lived sandbox: stockade-init from the read-only init directory;
 * under gVisor also its socket directory, read-write and nested in it (after
 * it), and `--listen` with the socket's path. */
static void test_init_socket_dir(void **state)
{
    (void)state;
    static const char yaml[] = "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
                               "metadata:\n  name: x\nspec: {}\n";
    struct fixture f = {0};
    load(yaml, &f);
    for (int with = 0; with < 2; with++) {
        struct stk_oci_options o = {.root_path = "/r",
                                    .workspace = "/w",
                                    .etc_dir = "/e",
                                    .cgroups_path = "/c",
                                    .init_dir = "/state/libexec-1",
                                    .init_sock_dir = with ? "/run/init/ID.d" : NULL};
        char *text = NULL;
        assert_int_equal(stk_oci_render(f.b, &o, &text, NULL), 0);
        json_t *c = json_loads(text, 0, NULL);
        assert_non_null(c);
        json_t *m, *args = json_object_get(json_object_get(c, "process"), "args");
        size_t i, init_at = 0, sock_at = 0;
        json_t *sock = NULL;
        json_array_foreach(json_object_get(c, "mounts"), i, m)
        {
            const char *dst = json_string_value(json_object_get(m, "destination"));
            if (!strcmp(dst, STK_OCI_INIT_DIR))
                init_at = i + 1;
            if (!strcmp(dst, STK_OCI_INIT_SOCK_DIR))
                sock = m, sock_at = i + 1;
        }
        assert_true(init_at > 0);
        assert_string_equal(json_string_value(json_array_get(args, 0)), STK_OCI_INIT_PATH);
        if (with) {
            assert_non_null(sock);
            assert_true(sock_at > init_at);
            assert_string_equal(json_string_value(json_object_get(sock, "source")),
                                "/run/init/ID.d");
            json_t *opts = json_object_get(sock, "options");
            assert_string_equal(json_string_value(json_array_get(opts, 3)), "rw");
            assert_int_equal(json_array_size(args), 3);
            assert_string_equal(json_string_value(json_array_get(args, 1)), "--listen");
            assert_string_equal(json_string_value(json_array_get(args, 2)), STK_OCI_INIT_SOCK);
        } else {
            assert_null(sock);
            assert_int_equal(json_array_size(args), 1);
        }
        json_decref(c);
        free(text);
    }
    release(&f);
}

/* A user namespace of the sandbox's own: joined by path, mapped to its
 * range, the host's sysfs bound recursively and read-only, /sys/fs/cgroup
 * the sandbox's own cgroup directories over the skeleton (no cgroup
 * filesystem, no remount of the host's), debug and network sysfs masked.
 * A range that cannot hold the sandbox user is refused. */
static void test_userns(void **state)
{
    (void)state;
    static const char yaml[] = "apiVersion: stockade.dev/v1alpha1\nkind: Sandbox\n"
                               "metadata:\n  name: x\nspec:\n  command: [\"true\"]\n";
    struct fixture f = {0};
    load(yaml, &f);
    static const struct stk_oci_bind cg[] = {
        {"/sys/fs/cgroup/memory/stockade/ID", "/sys/fs/cgroup/memory"},
        {"/sys/fs/cgroup/pids/stockade/ID", "/sys/fs/cgroup/pids"},
    };
    struct stk_oci_options o = {.root_path = "/r",
                                .workspace = "/w",
                                .etc_dir = "/e",
                                .cgroups_path = "/c",
                                .id_base = 1073807360,
                                .id_size = 65536,
                                .userns_path = "/run/stockade-ids/ns-1",
                                .cgroup_binds = cg,
                                .n_cgroup_binds = 2,
                                .cgroup_skeleton = "/s/cgroup-v1"};
    char *text = NULL;
    assert_int_equal(stk_oci_render(f.b, &o, &text, NULL), 0);
    json_t *c = json_loads(text, 0, NULL);
    assert_non_null(c);
    json_t *l = json_object_get(c, "linux");
    json_t *ns = json_array_get(json_object_get(l, "namespaces"), 0);
    assert_string_equal(json_string_value(json_object_get(ns, "type")), "user");
    assert_string_equal(json_string_value(json_object_get(ns, "path")), "/run/stockade-ids/ns-1");
    for (int g = 0; g < 2; g++) {
        json_t *m = json_array_get(json_object_get(l, g ? "gidMappings" : "uidMappings"), 0);
        assert_int_equal(json_integer_value(json_object_get(m, "containerID")), 0);
        assert_int_equal(json_integer_value(json_object_get(m, "hostID")), 1073807360);
        assert_int_equal(json_integer_value(json_object_get(m, "size")), 65536);
    }
    assert_true(has_string(json_object_get(l, "maskedPaths"), "/sys/class/net"));
    assert_true(has_string(json_object_get(l, "maskedPaths"), "/sys/kernel/debug"));
    size_t i, cg_mounts = 0;
    json_t *m;
    json_array_foreach(json_object_get(c, "mounts"), i, m)
    {
        const char *dst = json_string_value(json_object_get(m, "destination"));
        const char *type = json_string_value(json_object_get(m, "type"));
        json_t *opts = json_object_get(m, "options");
        assert_string_not_equal(type, "sysfs");
        assert_string_not_equal(type, "cgroup");
        if (!strcmp(dst, "/sys")) {
            assert_true(has_string(opts, "rbind") && has_string(opts, "ro"));
        } else if (!strncmp(dst, "/sys/fs/cgroup", 14)) {
            assert_true(has_string(opts, "ro"));
            assert_false(has_string(opts, "remount"));
            cg_mounts++;
        }
    }
    assert_int_equal(cg_mounts, 3); /* the skeleton and two controllers */
    /* the rlimits, named unless the runtime process carries them (runc) */
    json_t *rl = json_object_get(json_object_get(c, "process"), "rlimits");
    assert_int_equal(json_array_size(rl), STK_OCI_RLIMITS);
    for (size_t k = 0; k < STK_OCI_RLIMITS; k++)
        assert_string_equal(json_string_value(json_object_get(json_array_get(rl, k), "type")),
                            stk_oci_rlimits[k].type);
    json_decref(c);
    free(text);
    o.rlimits_inherited = true;
    assert_int_equal(stk_oci_render(f.b, &o, &text, NULL), 0);
    c = json_loads(text, 0, NULL);
    assert_non_null(c);
    assert_null(json_object_get(json_object_get(c, "process"), "rlimits"));
    assert_true(json_is_true(json_object_get(json_object_get(c, "process"), "noNewPrivileges")));
    json_decref(c);
    free(text);
    o.rlimits_inherited = false;

    o.id_size = 1000; /* no room for uid 65534 */
    struct stk_error *err = NULL;
    assert_int_equal(stk_oci_render(f.b, &o, &text, &err), -EINVAL);
    stk_error_free(err);
    o.id_size = 65536;
    o.id_base = UINT32_MAX - 100;
    err = NULL;
    assert_int_equal(stk_oci_render(f.b, &o, &text, &err), -EINVAL);
    stk_error_free(err);
    release(&f);
}

static void test_etc_has_no_host_content(void **state)
{
    (void)state;
    struct fixture f = {0};
    load(agent_yaml, &f);
    struct stk_oci_file files[STK_OCI_ETC_FILES];
    stk_oci_etc_render(f.b, files);
    bool passwd = false;
    for (size_t i = 0; i < STK_OCI_ETC_FILES; i++) {
        assert_null(strstr(files[i].content, "shadow:x"));
        if (!strcmp(files[i].name, "passwd")) {
            passwd = true;
            assert_non_null(strstr(files[i].content, "sandbox:x:65534:65534:"));
        }
        assert_string_not_equal(files[i].name, "shadow");
    }
    assert_true(passwd);
    stk_oci_etc_free(files);
    release(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_agent_golden),
        cmocka_unit_test(test_userns),
        cmocka_unit_test(test_debugger_golden),
        cmocka_unit_test(test_agent_properties),
        cmocka_unit_test(test_ptrace_granted),
        cmocka_unit_test(test_no_command),
        cmocka_unit_test(test_etc_has_no_host_content),
        cmocka_unit_test(test_home),
        cmocka_unit_test(test_init_socket_dir),
        cmocka_unit_test(test_image),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
