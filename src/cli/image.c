/* SPDX-License-Identifier: Apache-2.0 */
/* stockade image pull|ls|inspect|rm|prune (docs/images.md). */
#include "cli.h"
#include "driver/driver.h"
#include "image/image.h"
#include "session/session.h"
#include "session/store.h"
#include "spec/spec.h"

#include <errno.h>
#include <jansson.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* The digests long-lived sandboxes run: every sandbox the session store
 * still has, read from the mark its driver left in its directory. */
struct users {
    char **digests;
    size_t n;
};

static bool in_use(void *ctx, const char *digest)
{
    const struct users *u = ctx;
    for (size_t i = 0; i < u->n; i++)
        if (!strcmp(u->digests[i], digest))
            return true;
    return false;
}

static int users_load(const struct stk_local_paths *paths, struct users *ret)
{
    *ret = (struct users){0};
    char db[4200];
    snprintf(db, sizeof(db), "%s/%s", paths->state_dir, STK_STORE_DB_FILE);
    if (access(db, F_OK) != 0)
        return 0;
    _cleanup_error_ struct stk_error *err = NULL;
    struct stk_session *s = NULL;
    struct stk_sb_rec *recs = NULL;
    size_t n = 0;
    if (stk_session_open(paths, NULL, &s, &err) < 0 ||
        stk_store_sb_list_brief(stk_session_store(s), false, &recs, &n, &err) < 0) {
        fprintf(stderr, "stockade image: the session store: %s\n", err->msg);
        stk_session_close(s);
        return EXIT_INVALID;
    }
    ret->digests = stk_xcalloc(n + 1, sizeof(char *));
    for (size_t i = 0; i < n; i++) {
        char path[4400], buf[80];
        snprintf(path, sizeof(path), "%s/sandboxes/%s/" STK_LOCAL_IMAGE_MARK, paths->state_dir,
                 recs[i].id);
        FILE *f = fopen(path, "re");
        if (!f)
            continue;
        size_t k = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        buf[k] = '\0';
        if (k == 71)
            ret->digests[ret->n++] = stk_xstrdup(buf);
    }
    stk_sb_recs_free(recs, n);
    stk_session_close(s);
    return 0;
}

static void users_free(struct users *u)
{
    for (size_t i = 0; i < u->n; i++)
        free(u->digests[i]);
    free(u->digests);
}

static json_t *strv(char **v, size_t n)
{
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++)
        json_array_append_new(a, json_string(v[i]));
    return a;
}

static json_t *image_json(const struct stk_image *img)
{
    return json_pack(
        "{s:s,s:o,s:s,s:I,s:I,s:I,s:{s:o,s:o,s:o,s:s,s:s}}", "digest", img->digest, "names",
        strv(img->names, img->n_names), "root", img->root, "size", (json_int_t)img->size, "layers",
        (json_int_t)img->n_layers, "pulled", (json_int_t)img->pulled, "config", "Entrypoint",
        strv(img->entrypoint, img->n_entrypoint), "Cmd", strv(img->cmd, img->n_cmd), "Env",
        strv(img->env, img->n_env), "WorkingDir", img->workdir, "User", img->user);
}

int cmd_image(int argc, char **argv)
{
    enum { OPT_STATE_DIR = 256, OPT_CERT_DIR, OPT_AUTHFILE, OPT_TLS_VERIFY, OPT_MAX_STORE };
    static const struct option opts[] = {
        {"state-dir", required_argument, NULL, OPT_STATE_DIR},
        {"cert-dir", required_argument, NULL, OPT_CERT_DIR},
        {"authfile", required_argument, NULL, OPT_AUTHFILE},
        {"tls-verify", required_argument, NULL, OPT_TLS_VERIFY},
        {"max-store", required_argument, NULL, OPT_MAX_STORE},
        {"output", required_argument, NULL, 'o'},
        {"quiet", no_argument, NULL, 'q'},
        {NULL, 0, NULL, 0},
    };
    const char *state_dir = NULL;
    struct stk_image_pull_opts po = {0};
    enum cli_output out = CLI_OUT_TEXT;
    bool quiet = false;
    int c;
    while ((c = cli_getopt(argc, argv, "o:q", opts)) != -1) {
        const char *why;
        switch (c) {
        case OPT_STATE_DIR:
            state_dir = optarg;
            break;
        case OPT_CERT_DIR:
            po.cert_dir = optarg;
            break;
        case OPT_AUTHFILE:
            po.auth_file = optarg;
            break;
        case OPT_TLS_VERIFY:
            if (strcmp(optarg, "true") && strcmp(optarg, "false"))
                return cli_usage_error("image", "--tls-verify takes true or false");
            po.tls_verify_off = !strcmp(optarg, "false");
            break;
        case OPT_MAX_STORE:
            if (stk_quantity_parse(optarg, STK_QTY_BYTES, &po.max_store, &why) < 0)
                return cli_usage_error("image", "--max-store %s: %s", optarg, why);
            break;
        case 'o':
            if (cli_parse_output("image", optarg, &out) != 0)
                return EXIT_USAGE;
            break;
        case 'q':
            quiet = true;
            break;
        default:
            return cli_usage("image", stderr, EXIT_USAGE);
        }
    }
    if (optind >= argc)
        return cli_usage_error("image", "give a subcommand: pull, ls, inspect, rm or prune");
    const char *sub = argv[optind++];
    int nargs = argc - optind;
    struct stk_local_paths paths;
    cli_local_paths(state_dir, &paths);
    char store[4200];
    _cleanup_error_ struct stk_error *err = NULL;
    if (stk_image_store_dir(paths.state_dir, store, sizeof(store), &err) < 0) {
        fprintf(stderr, "stockade image: %s\n", err->msg);
        return EXIT_INVALID;
    }
    struct users users = {0};
    int status = 0;
    if (!strcmp(sub, "pull")) {
        if (nargs != 1)
            return cli_usage_error("image", "pull takes one reference");
        if ((status = users_load(&paths, &users)) != 0)
            return status;
        po.in_use = in_use;
        po.in_use_ctx = &users;
        struct stk_image *img = NULL;
        if (stk_image_pull(store, argv[optind], &po, &img, &err) < 0) {
            fprintf(stderr, "stockade image pull: %s\n", err->msg);
            status = EXIT_INVALID;
        } else if (out == CLI_OUT_JSON) {
            cli_print_json(image_json(img));
        } else {
            printf("%s\n", img->digest);
        }
        stk_image_free(img);
    } else if (!strcmp(sub, "ls")) {
        if (nargs != 0)
            return cli_usage_error("image", "ls takes no arguments");
        struct stk_image **v = NULL;
        size_t n = 0;
        if (stk_image_list(store, &v, &n, &err) < 0) {
            fprintf(stderr, "stockade image ls: %s\n", err->msg);
            return EXIT_INVALID;
        }
        if (out == CLI_OUT_JSON) {
            json_t *a = json_array();
            for (size_t i = 0; i < n; i++)
                json_array_append_new(a, image_json(v[i]));
            cli_print_json(a);
        } else if (quiet) {
            for (size_t i = 0; i < n; i++)
                printf("%s\n", v[i]->digest);
        } else {
            printf("%-19s  %9s  %s\n", "DIGEST", "SIZE", "NAMES");
            for (size_t i = 0; i < n; i++) {
                printf("%.19s  %7.1fMi  ", v[i]->digest, (double)v[i]->size / (1 << 20));
                for (size_t k = 0; k < v[i]->n_names; k++)
                    printf("%s%s", k ? "," : "", v[i]->names[k]);
                if (!v[i]->n_names)
                    printf("<none>");
                printf("\n");
            }
        }
        stk_image_list_free(v, n);
    } else if (!strcmp(sub, "inspect")) {
        if (nargs != 1)
            return cli_usage_error("image", "inspect takes one reference");
        struct stk_image *img = NULL;
        if (stk_image_find(store, argv[optind], &img, &err) < 0) {
            fprintf(stderr, "stockade image inspect: %s\n", err->msg);
            return EXIT_INVALID;
        }
        cli_print_json(image_json(img));
        stk_image_free(img);
    } else if (!strcmp(sub, "rm") || !strcmp(sub, "prune")) {
        bool rm = !strcmp(sub, "rm");
        if (rm ? nargs < 1 : nargs != 0)
            return cli_usage_error("image", rm ? "rm takes references"
                                               : "prune takes no "
                                                 "arguments");
        if ((status = users_load(&paths, &users)) != 0)
            return status;
        if (rm) {
            for (int i = optind; i < argc; i++) {
                struct stk_error *e = NULL;
                if (stk_image_remove(store, argv[i], in_use, &users, &e) < 0) {
                    fprintf(stderr, "stockade image rm: %s\n", e->msg);
                    stk_error_free(e);
                    status = EXIT_INVALID;
                } else {
                    printf("%s\n", argv[i]);
                }
            }
        } else {
            size_t removed = 0;
            if (stk_image_prune(store, in_use, &users, &removed, &err) < 0) {
                fprintf(stderr, "stockade image prune: %s\n", err->msg);
                status = EXIT_INVALID;
            } else {
                printf("removed %zu image%s\n", removed, removed == 1 ? "" : "s");
            }
        }
    } else {
        return cli_usage_error("image", "unknown subcommand %s (pull, ls, inspect, rm, prune)",
                               sub);
    }
    users_free(&users);
    return status;
}
