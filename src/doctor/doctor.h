/* SPDX-License-Identifier: Apache-2.0 */
/*
 * doctor — the operator checks of an EnvironmentConfig, automated: does the
 * environment block the metadata endpoints, keep other sandboxes' pods and
 * services out of broad egress, and choose defaults that match a strict trust
 * model? Each check passes, warns or fails with one line of why and one of
 * what to change. Pure: reads the parsed document, touches nothing.
 */
#ifndef STK_DOCTOR_H
#define STK_DOCTOR_H

#include "spec/spec.h"

/* Annotation on the EnvironmentConfig naming what replaces the NetworkPolicies
 * that data.network.excludePolicies leaves out. */
#define STK_DOCTOR_REPLACEMENT_ANNOTATION "stockade.dev/network-policy-replacement"

enum stk_check_status { STK_CHECK_PASS, STK_CHECK_WARN, STK_CHECK_FAIL, _STK_CHECK_N };
extern const char *const stk_check_status_names[_STK_CHECK_N];

struct stk_check {
    const char *id;    /* stable: "metadata-blacklist" */
    const char *title; /* what is checked, in a few words */
    enum stk_check_status status;
    const char *why;  /* one line */
    const char *fix;  /* one line; NULL when nothing to change */
    const char *path; /* the field responsible, e.g. "data.network.blacklistIPs" */
    struct stk_pos pos;
};

struct stk_doctor_report {
    struct stk_arena *arena;
    const char *file;
    struct stk_check *checks;
    size_t n;
    size_t n_status[_STK_CHECK_N];
};

int stk_doctor(const struct stk_envconfig *env, const char *file, struct stk_doctor_report **ret);
/* An empty report, for checks made elsewhere (a live cluster's). */
struct stk_doctor_report *stk_doctor_report_new(const char *file);
/* Appends a check; every string is copied into the report. fix may be NULL. */
void stk_doctor_add(struct stk_doctor_report *r, const char *id, const char *title,
                    enum stk_check_status status, const char *why, const char *fix,
                    const char *path);
void stk_doctor_report_free(struct stk_doctor_report *r);
static inline void stk_doctor_report_freep(struct stk_doctor_report **r)
{
    stk_doctor_report_free(*r);
}
#define _cleanup_doctor_report_ _cleanup_(stk_doctor_report_freep)

void stk_doctor_text(const struct stk_doctor_report *r, struct stk_buf *out);
/* A jansson json_t* (void* keeps jansson out of this header). */
void *stk_doctor_json(const struct stk_doctor_report *r);

#endif
