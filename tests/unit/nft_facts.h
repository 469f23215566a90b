/* SPDX-License-Identifier: Apache-2.0 */
/* The network facts of the golden sandbox (s-jeff-1 on stk0, 10.88.0.5 and
 * fd88::5, one service port), shared by test_nft.c and test_nftnl.c.
 * Include after <cmocka.h> and "render/render.h". */
#ifndef STK_TEST_NFT_FACTS_H
#define STK_TEST_NFT_FACTS_H

static const struct stk_nft_service test_nft_services[] = {{STK_PROTO_TCP, 8080}};

/* resolver: the bridge address answers DNS; proxy_port: 0 for none. */
static inline struct stk_nft_facts test_nft_facts(const char *ns, bool resolver,
                                                  uint16_t proxy_port)
{
    struct stk_nft_facts f = {.id = "s-jeff-1",
                              .namespace = ns,
                              .bridge = "stk0",
                              .veth = "stk-s-jeff-1",
                              .services = test_nft_services,
                              .n_services = 1,
                              .log_group = 7,
                              .proxy_port = proxy_port};
    assert_int_equal(stk_addr_parse("10.88.0.5", &f.addr4), 0);
    assert_int_equal(stk_addr_parse("fd88::5", &f.addr6), 0);
    assert_int_equal(stk_addr_parse("10.88.0.1", &f.bridge4), 0);
    assert_int_equal(stk_addr_parse("fd88::1", &f.bridge6), 0);
    assert_int_equal(stk_cidr_parse("10.88.0.0/16", &f.pool4, NULL), 0);
    assert_int_equal(stk_cidr_parse("fd88::/64", &f.pool6, NULL), 0);
    if (resolver)
        assert_int_equal(stk_addr_parse("10.88.0.1", &f.resolver), 0);
    return f;
}

#endif
