/* SPDX-License-Identifier: Apache-2.0 */
/*
 * libnftables, behind the private module stockade-nft.so (docs/architecture.md,
 * "Modules loaded on demand"). libnftables brings libnftnl, libxtables and
 * libgmp: mapping and relocating them cost every CLI start about 1.8 ms of
 * CPU here, yet only the shared nft objects (base_ensure()), network gc and
 * doctor's listing use the library; a sandbox's own rules go as an nf_tables
 * batch built by nftnl.c (libmnl, in the core). So `exec`, `ls`, `get` and an
 * idle monitor never map it.
 */
#include "driver/local/internal.h"

#include <errno.h>
#include <nftables/libnftables.h>
#include <string.h>

int stk_nftlib_run(const char *text, bool json, char **ret_out, struct stk_error **err)
{
    struct nft_ctx *ctx = nft_ctx_new(NFT_CTX_DEFAULT);
    if (!ctx)
        return stk_error_make(err, ENOMEM, "nft_ctx_new failed");
    if (json)
        nft_ctx_output_set_flags(ctx, NFT_CTX_OUTPUT_JSON);
    nft_ctx_buffer_output(ctx);
    nft_ctx_buffer_error(ctx);
    int ret = 0;
    if (nft_run_cmd_from_buffer(ctx, text) != 0) {
        const char *e = nft_ctx_get_error_buffer(ctx);
        ret = stk_error_make(err, EIO, "%s", e && *e ? e : "(no message)");
    } else if (ret_out) {
        *ret_out = stk_xstrdup(nft_ctx_get_output_buffer(ctx));
    }
    nft_ctx_free(ctx);
    return ret;
}
