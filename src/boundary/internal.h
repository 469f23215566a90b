/* SPDX-License-Identifier: Apache-2.0 */
/* Internal to src/boundary. */
#ifndef STK_BOUNDARY_INTERNAL_H
#define STK_BOUNDARY_INTERNAL_H

#include "boundary.h"

/* Builds b->egress from the resolved boundary fields (namespace,
 * external_egress, blacklist) and the inputs' network sections. */
void stk_egress_build(struct stk_boundary *b, const struct stk_network *spec_net,
                      const char *spec_file, const struct stk_env_network *env_net,
                      const char *env_file);

/* The except list a broad rule for `cidr` gets: entries of `from` (n) that
 * lie inside cidr and share its family, in input order, without duplicates. */
size_t stk_except_for(const struct stk_cidr *cidr, const struct stk_cidr *from, size_t n,
                      struct stk_cidr *out);

#endif
