/* SPDX-License-Identifier: Apache-2.0 */
/* stockade render / stockade eject: print what a backend would apply. */
#include "cli.h"
#include "image/image.h"
#include "render/render.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <string.h>

enum render_format { FMT_YAML, FMT_JSON, _FMT_N };
static const char *const format_names[_FMT_N] = {"yaml", "json"};

static int parse_format(const char *command, const char *arg, enum render_format *ret)
{
    int i = stk_enum_lookup(format_names, _FMT_N, arg);
    if (i < 0)
        return cli_usage_error(command, "--output must be yaml or json, not '%s'", arg);
    *ret = (enum render_format)i;
    return 0;
}

/* Prints objects (stolen): a YAML stream, or a JSON v1 List (one object
 * alone when single is set). */
static int print_objects(json_t *objects, enum render_format fmt, bool single)
{
    _cleanup_error_ struct stk_error *err = NULL;
    switch (fmt) {
    case FMT_YAML: {
        _cleanup_buf_ struct stk_buf out = {0};
        int r = stk_yaml_dump(objects, &out, &err);
        json_decref(objects);
        if (r < 0) {
            fprintf(stderr, "stockade: %s\n", err->msg);
            return EXIT_INVALID;
        }
        fputs(stk_buf_str(&out), stdout);
        return 0;
    }
    case FMT_JSON:
        if (single)
            cli_print_json(json_incref(json_array_get(objects, 0)));
        else
            cli_print_json(
                json_pack("{s:s, s:s, s:O}", "apiVersion", "v1", "kind", "List", "items", objects));
        json_decref(objects);
        return 0;
    case _FMT_N:
        break;
    }
    json_decref(objects);
    return EXIT_INVALID;
}

/* What eject needs to tell whether it gave back the original bytes: their
 * SHA-256 and whether they were JSON (else YAML). */
struct source {
    char sha256[65];
    bool json;
};

static void sha256_hex(const void *data, size_t n, char out[65])
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    out[0] = '\0';
    if (EVP_Digest(data, n, md, &len, EVP_sha256(), NULL) != 1 || len != 32)
        return;
    for (unsigned i = 0; i < len; i++)
        snprintf(out + 2 * i, 3, "%02x", md[i]);
}

/* Reads a workload file (YAML or JSON, exactly one object). */
static int load_workload(const char *path, json_t **ret, struct source *src)
{
    _cleanup_fclose_ FILE *f = strcmp(path, "-") ? fopen(path, "re") : NULL;
    FILE *in = strcmp(path, "-") ? f : stdin;
    _cleanup_error_ struct stk_error *err = NULL;
    _cleanup_free_ char *data = stk_xmalloc(STK_LIMIT_FILE_BYTES + 1);
    json_t *docs = NULL;

    if (!in) {
        fprintf(stderr, "stockade: %s: %s\n", path, strerror(errno));
        return EXIT_INVALID;
    }
    size_t n = fread(data, 1, STK_LIMIT_FILE_BYTES + 1, in);
    if (ferror(in)) {
        fprintf(stderr, "stockade: %s: read error\n", path);
        return EXIT_INVALID;
    }
    if (n > STK_LIMIT_FILE_BYTES) {
        fprintf(stderr, "stockade: %s: larger than %d bytes\n", path, STK_LIMIT_FILE_BYTES);
        return EXIT_INVALID;
    }
    if (src) {
        sha256_hex(data, n, src->sha256);
        size_t k = 0;
        while (k < n && strchr(" \t\r\n", data[k]))
            k++;
        src->json = k < n && data[k] == '{';
    }
    if (stk_yaml_load(data, n, &docs, &err) < 0) {
        fprintf(stderr, "stockade: %s:%s\n", path, err->msg);
        return EXIT_INVALID;
    }
    if (json_array_size(docs) != 1 || !json_is_object(json_array_get(docs, 0))) {
        fprintf(stderr, "stockade: %s: expected exactly one workload object, found %zu documents\n",
                path, json_array_size(docs));
        json_decref(docs);
        return EXIT_INVALID;
    }
    *ret = json_incref(json_array_get(docs, 0));
    json_decref(docs);
    return 0;
}

/* The injected record gets the original's SHA-256 and format, so eject can
 * say whether its output is the original byte for byte. */
static void record_source(json_t *injected, const struct source *src)
{
    json_t *ann = json_object_get(json_object_get(injected, "metadata"), "annotations");
    const char *text = json_string_value(json_object_get(ann, STK_K8S_INJECTED_ANNOTATION));
    json_t *rec = text ? json_loads(text, 0, NULL) : NULL;
    if (!json_is_object(rec) || !src->sha256[0]) {
        json_decref(rec);
        return;
    }
    json_object_set_new(
        rec, "source",
        json_pack("{s:s,s:s}", "sha256", src->sha256, "format", src->json ? "json" : "yaml"));
    char *t = json_dumps(rec, JSON_COMPACT);
    json_object_set_new(ann, STK_K8S_INJECTED_ANNOTATION, json_string(t));
    free(t);
    json_decref(rec);
}

static int render_kubernetes(const char *file, const char *env_file, const char *workload_file,
                             bool cluster_objects, enum stk_k8s_admission admission,
                             const char *gateway_image, const char *const *secret_ns,
                             size_t n_secret_ns, const struct stk_k8s_options *opt,
                             enum render_format fmt)
{
    _cleanup_error_ struct stk_error *err = NULL;
    json_t *out = cluster_objects ? stk_k8s_cluster_objects(admission) : json_array();
    if (cluster_objects && gateway_image) {
        json_t *gw = stk_k8s_gateway_objects(gateway_image, secret_ns, n_secret_ns);
        json_array_extend(out, gw);
        json_decref(gw);
    }

    if (file) {
        _cleanup_cli_sandbox_ struct cli_sandbox s = {0};
        int status = cli_sandbox_load(file, env_file, &s);
        if (status != 0) {
            json_decref(out);
            return status;
        }
        json_t *objs = NULL;
        int r;
        if (workload_file) {
            json_t *w = NULL;
            struct source src;
            if ((status = load_workload(workload_file, &w, &src)) != 0) {
                json_decref(out);
                return status;
            }
            json_t *injected = NULL;
            r = stk_k8s_inject(s.b, w, &injected, &err);
            json_decref(w);
            if (r >= 0)
                record_source(injected, &src);
            if (r >= 0)
                objs = json_pack("[o]", injected);
        } else {
            /* the image pinned as create would pin it: to the digest of
             * what `image pull` verified into this state directory */
            struct stk_k8s_options o = *opt;
            char pinned[STK_IMAGE_REF_MAX + 112], digest[72];
            if (cli_image_pin(s.b->image, pinned, sizeof(pinned), digest) && pinned[0])
                o.image = pinned;
            r = stk_k8s_render(s.b, &o, &objs, &err);
        }
        if (r < 0) {
            fprintf(stderr, "stockade: %s: %s\n", file, err->msg);
            json_decref(out);
            return EXIT_INVALID;
        }
        json_array_extend(out, objs);
        json_decref(objs);
    }
    return print_objects(out, fmt, workload_file && !cluster_objects);
}

int cmd_render(int argc, char **argv)
{
    static const struct option opts[] = {
        {"env", required_argument, NULL, 'e'},
        {"target", required_argument, NULL, 't'},
        {"output", required_argument, NULL, 'o'},
        {"cluster-objects", no_argument, NULL, 'c'},
        {"workload", required_argument, NULL, 'w'},
        {"job", no_argument, NULL, 'j'},
        {"admission", required_argument, NULL, 'a'},
        {"gateway-image", required_argument, NULL, 'g'},
        {"no-gateway", no_argument, NULL, 'G'},
        {"secret-namespace", required_argument, NULL, 'S'},
        {NULL, 0, NULL, 0},
    };
    const char *env_file = NULL, *target = NULL, *workload = NULL;
    const char *gateway_image = STK_K8S_GATEWAY_IMAGE;
    bool gateway_set = false;
    enum stk_k8s_admission admission = STK_K8S_ADMISSION_VAP;
    bool admission_set = false;
    enum render_format fmt = FMT_YAML;
    struct stk_k8s_options kopt = {0};
    bool cluster_objects = false;
    const char *secret_ns[STK_K8S_SECRET_NAMESPACES_MAX];
    size_t n_secret_ns = 0;
    int c, r;

    optind = 1;
    while ((c = cli_getopt(argc, argv, "e:t:o:w:", opts)) != -1) {
        switch (c) {
        case 'e':
            env_file = optarg;
            break;
        case 't':
            target = optarg;
            break;
        case 'o':
            if ((r = parse_format("render", optarg, &fmt)) != 0)
                return r;
            break;
        case 'c':
            cluster_objects = true;
            break;
        case 'w':
            workload = optarg;
            break;
        case 'j':
            kopt.job = true;
            break;
        case 'g':
            gateway_image = optarg;
            gateway_set = true;
            break;
        case 'G':
            gateway_image = NULL;
            gateway_set = true;
            break;
        case 'S':
            if (!stk_dns_label_valid(optarg))
                return cli_usage_error("render", "--secret-namespace '%s' is not a DNS label",
                                       optarg);
            for (size_t i = 0; i < n_secret_ns; i++)
                if (!strcmp(secret_ns[i], optarg))
                    return cli_usage_error("render", "--secret-namespace '%s' given twice", optarg);
            if (n_secret_ns == STK_K8S_SECRET_NAMESPACES_MAX)
                return cli_usage_error("render", "at most %d --secret-namespace",
                                       STK_K8S_SECRET_NAMESPACES_MAX);
            secret_ns[n_secret_ns++] = optarg;
            break;
        case 'a': {
            int i = stk_enum_lookup(stk_k8s_admission_names, _STK_K8S_ADMISSION_N, optarg);
            if (i < 0)
                return cli_usage_error("render", "--admission must be vap or kyverno, not '%s'",
                                       optarg);
            admission = (enum stk_k8s_admission)i;
            admission_set = true;
            break;
        }
        default:
            return cli_usage("render", stderr, EXIT_USAGE);
        }
    }
    if (!target)
        return cli_usage_error("render", "--target is required (kubernetes)");
    if (strcmp(target, "kubernetes"))
        return cli_usage_error("render", "unknown --target '%s' (kubernetes)", target);
    if (argc - optind > 1)
        return cli_usage_error("render", "takes one FILE");
    const char *file = optind < argc ? argv[optind] : NULL;
    if (!file && !cluster_objects)
        return cli_usage_error("render", "needs a FILE (or --cluster-objects)");
    if (!file && (workload || env_file || kopt.job))
        return cli_usage_error("render", "--env, --workload and --job need a FILE");
    if (workload && kopt.job)
        return cli_usage_error("render", "--job and --workload exclude each other");
    if (admission_set && !cluster_objects)
        return cli_usage_error("render", "--admission applies to --cluster-objects");
    if (gateway_set && !cluster_objects)
        return cli_usage_error("render",
                               "--gateway-image and --no-gateway apply to --cluster-objects");
    if (n_secret_ns && (!cluster_objects || !gateway_image))
        return cli_usage_error("render", "--secret-namespace applies to --cluster-objects with "
                                         "the gateway");
    return render_kubernetes(file, env_file, workload, cluster_objects, admission, gateway_image,
                             secret_ns, n_secret_ns, &kopt, fmt);
}

int cmd_eject(int argc, char **argv)
{
    static const struct option opts[] = {
        {"workload", required_argument, NULL, 'w'},
        {"output", required_argument, NULL, 'o'},
        {NULL, 0, NULL, 0},
    };
    const char *workload = NULL;
    enum render_format fmt = FMT_YAML;
    bool fmt_set = false;
    _cleanup_error_ struct stk_error *err = NULL;
    int c, r;

    optind = 1;
    while ((c = cli_getopt(argc, argv, "w:o:", opts)) != -1) {
        switch (c) {
        case 'w':
            workload = optarg;
            break;
        case 'o':
            if ((r = parse_format("eject", optarg, &fmt)) != 0)
                return r;
            fmt_set = true;
            break;
        default:
            return cli_usage("eject", stderr, EXIT_USAGE);
        }
    }
    if (!workload)
        return cli_usage_error("eject", "--workload FILE is required");
    if (optind < argc)
        return cli_usage_error("eject", "takes no positional arguments");
    json_t *w = NULL, *out = NULL;
    if ((r = load_workload(workload, &w, NULL)) != 0)
        return r;
    /* the original's SHA-256 and format, when render recorded them */
    const char *text = json_string_value(
        json_object_get(json_object_get(json_object_get(w, "metadata"), "annotations"),
                        STK_K8S_INJECTED_ANNOTATION));
    json_t *rec = text ? json_loads(text, 0, NULL) : NULL;
    const char *sha = json_string_value(json_object_get(json_object_get(rec, "source"), "sha256"));
    const char *format =
        json_string_value(json_object_get(json_object_get(rec, "source"), "format"));
    if (!fmt_set && stk_streq(format, "json"))
        fmt = FMT_JSON; /* the original's format unless -o says otherwise */
    r = stk_k8s_eject(w, &out, &err);
    json_decref(w);
    if (r < 0) {
        json_decref(rec);
        fprintf(stderr, "stockade: %s: %s\n", workload, err->msg);
        return EXIT_INVALID;
    }
    _cleanup_buf_ struct stk_buf b = {0};
    if (fmt == FMT_JSON) {
        char *t = json_dumps(out, JSON_INDENT(2) | JSON_ENSURE_ASCII);
        stk_buf_printf(&b, "%s\n", t);
        free(t);
    } else {
        json_t *docs = json_pack("[O]", out);
        r = stk_yaml_dump(docs, &b, &err);
        json_decref(docs);
    }
    json_decref(out);
    if (r < 0) {
        json_decref(rec);
        fprintf(stderr, "stockade: %s\n", err->msg);
        return EXIT_INVALID;
    }
    fputs(stk_buf_str(&b), stdout);
    char got[65];
    sha256_hex(stk_buf_str(&b), strlen(stk_buf_str(&b)), got);
    if (!sha)
        fprintf(stderr, "stockade eject: the original workload field for field, in its key "
                        "order; whether byte for byte is unknown (injected before render "
                        "recorded the original's SHA-256)\n");
    else if (strcmp(sha, got) != 0)
        fprintf(stderr,
                "stockade eject: the original workload field for field, in its key "
                "order, but not byte for byte: comments, quoting, flow style and "
                "indentation are stockade's %s (an original that was stockade's own "
                "output comes back exactly)\n",
                fmt == FMT_JSON ? "JSON" : "YAML");
    json_decref(rec);
    return 0;
}
