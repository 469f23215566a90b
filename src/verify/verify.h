/* SPDX-License-Identifier: Apache-2.0 */
/*
 * verify — proving the contract from inside a live sandbox.
 *
 * The boundary says what a sandbox can read, write and reach (explain.c);
 * the local backend enforces it (render/oci.c, render/nft.c). verify checks
 * the two agree where it matters, from the inside:
 *
 *   plan   boundary + the backend's facts -> claims + the probe's argv
 *   exec   the caller runs /.stockade/stockade-probe ARGV in the sandbox
 *          and keeps its stdout (a JSON report, src/verify/probe.c)
 *   judge  plan + report -> one row per claim: pass, FAIL or skip
 *
 * Nothing passes by default: a claim the probe could not observe is a FAIL,
 * unless the contract itself says the backend does not enforce it there
 * (then it is a skip, with the reason). A malformed report is an error,
 * never a pass. Expected network verdicts come from stk_egress_decide(), the
 * evaluator `stockade netpol trace` uses.
 */
#ifndef STK_VERIFY_H
#define STK_VERIFY_H

#include "boundary/boundary.h"

#define STK_VERIFY_PROBE_PATH         "/.stockade/stockade-probe"
#define STK_VERIFY_MAX_TARGETS        64 /* --connect destinations (the probe's limit too) */
#define STK_VERIFY_MAX_PATHS          32 /* extra writable / read-only paths, each */
#define STK_VERIFY_MAX_REPORT         (256 * 1024) /* bytes of probe output judged */
#define STK_VERIFY_DEFAULT_TIMEOUT_MS 1500
#define STK_VERIFY_MAX_TIMEOUT_MS     10000
#define STK_VERIFY_KUBE_UID           65532 /* runAsUser/runAsGroup of a restricted Pod */

/* A numeric TCP destination: "IPv4:PORT" or "[IPv6]:PORT". */
struct stk_verify_target {
    char host[46]; /* INET6_ADDRSTRLEN, the address as given (normalised) */
    uint16_t port;
    int family; /* STK_FAMILY_V4 or STK_FAMILY_V6 */
};

/* Names are refused: NetworkPolicy and the probe are IP-only. */
int stk_verify_parse_target(const char *s, struct stk_verify_target *ret, struct stk_error **err);

/* What the caller knows about the sandbox as it runs. */
struct stk_verify_opts {
    const char *runtime; /* "runsc", "crun" or "runc" (the local backend's runtime) */
    bool network;        /* it has a network (veth + egress rules); false: loopback only */
    const struct stk_verify_target *to;
    size_t n_to;    /* at most STK_VERIFY_MAX_TARGETS */
    int timeout_ms; /* per connect; 0 = STK_VERIFY_DEFAULT_TIMEOUT_MS */
    /* /workspace is a host directory the caller bound (run --workspace):
     * not a volume of the limit's size, so its size is not claimed */
    bool host_workspace;
    /* the sandbox's own host id range as the driver holds it (a user
     * namespace: ids 0..id_size-1 inside are id_base.. on the host); id_size
     * 0: none is held, and the claim fails unless the runtime is gVisor */
    uint32_t id_base, id_size;
    /* the sandbox is a Pod on a cluster (the kubernetes backend): the
     * claims are what its rendered securityContext, volumes and limits
     * say, and what a cluster does not enforce (pids, NetworkPolicy where
     * the CNI ignores it, storage as a filesystem size) is a skip */
    bool kubernetes;
    /* extra paths beyond /workspace and /tmp (absolute), at most STK_VERIFY_MAX_PATHS each */
    const char *const *writable;
    size_t n_writable;
    const char *const *readonly;
    size_t n_readonly;
};

enum stk_verify_verdict { STK_VERIFY_PASS, STK_VERIFY_FAIL, STK_VERIFY_SKIP, _STK_VERIFY_N };
extern const char *const stk_verify_verdict_names[_STK_VERIFY_N]; /* "pass", "FAIL", "skip" */

/* One claim of the contract, as planned. */
struct stk_verify_claim {
    const char *id;       /* stable: "uid", "caps", "reach", ... */
    const char *text;     /* "runs as non-root (uid 65534)" */
    const char *expected; /* "uid 65534, gid 65534, no group 0" */
    const char *skip;     /* non-NULL: not enforced on this backend, and why */
};

struct stk_verify_plan;
int stk_verify_plan_make(const struct stk_boundary *b, const struct stk_verify_opts *o,
                         struct stk_verify_plan **ret, struct stk_error **err);
/* NULL-terminated; argv[0] is STK_VERIFY_PROBE_PATH. Owned by the plan. */
const char *const *stk_verify_plan_argv(const struct stk_verify_plan *p);
size_t stk_verify_plan_claims(const struct stk_verify_plan *p, const struct stk_verify_claim **ret);
void stk_verify_plan_free(struct stk_verify_plan *p);
static inline void stk_verify_plan_freep(struct stk_verify_plan **p)
{
    stk_verify_plan_free(*p);
}
#define _cleanup_verify_plan_ _cleanup_(stk_verify_plan_freep)

/* One judged claim. */
struct stk_verify_row {
    const char *id;
    const char *claim;
    const char *expected;
    const char *observed;
    enum stk_verify_verdict verdict;
    const char *reason; /* why it failed or was skipped; NULL on a plain pass */
};

struct stk_verify_report;
/* Judges the probe's stdout (probe_json, n bytes, not NUL-terminated).
 * Errors: an oversized, unparsable or incomplete report (-EBADMSG, -E2BIG). */
int stk_verify_judge(const struct stk_verify_plan *p, const char *probe_json, size_t n,
                     struct stk_verify_report **ret, struct stk_error **err);
bool stk_verify_report_ok(const struct stk_verify_report *r); /* no FAIL row */
/* Appends a row judged elsewhere (the driver's look at the cluster's
 * objects); the strings are copied. -E2BIG past STK_VERIFY_MAX_EXTRA_ROWS. */
#define STK_VERIFY_MAX_EXTRA_ROWS 64
int stk_verify_report_add(struct stk_verify_report *r, const struct stk_verify_row *row,
                          struct stk_error **err);
/* The same from JSON text: an array of {"id", "claim", "expected",
 * "observed", "verdict": "pass"|"fail"|"skip", "reason": string|null}. */
int stk_verify_report_add_json(struct stk_verify_report *r, const char *rows_json,
                               struct stk_error **err);
/* The image the sandbox runs and its digest, printed above the rows. */
void stk_verify_report_set_image(struct stk_verify_report *r, const char *image,
                                 const char *digest);
size_t stk_verify_report_rows(const struct stk_verify_report *r, const struct stk_verify_row **ret);
void stk_verify_report_print_text(const struct stk_verify_report *r, FILE *f);
void stk_verify_report_print_json(const struct stk_verify_report *r, FILE *f);
void stk_verify_report_free(struct stk_verify_report *r);
static inline void stk_verify_report_freep(struct stk_verify_report **r)
{
    stk_verify_report_free(*r);
}
#define _cleanup_verify_report_ _cleanup_(stk_verify_report_freep)

#endif
