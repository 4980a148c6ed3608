/* Unit tests of the hello: round trips, damage, refusals, and each mismatch's sentence. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "proto.h"
#include "twl_common.h"

static uint8_t buf[TWL_RDMA_HELLO_MAX_LEN + 64];
static struct twl_rdma_hello a, b, out;
static char err[256];

#define GIB (1024ull * 1024 * 1024)

static void add_lun(struct twl_rdma_hello *h, uint32_t id, uint64_t size, uint32_t bs,
                    const char *owner)
{
    struct twl_rdma_hello_lun *l = &h->luns[h->lun_count++];
    l->id = id;
    l->size = size;
    l->block_size = bs;
    snprintf(l->owner, sizeof(l->owner), "%s", owner);
    for (int g = 0; g < 4; g++) /* every byte of the entry matters to the round trip */
        l->gens[g] = 0x0102030405060708ull * (id + 1) + (uint64_t)g;
    l->dirty_regions = 0x1122334455667788ull + id;
    l->flags = id % 2 ? TWL_RDMA_HELLO_PRIMARY : TWL_RDMA_HELLO_PEER_DISCARDED;
}

/* Node "alpha" and its partner "beta", agreeing on everything. */
static void make(struct twl_rdma_hello *h, const char *node, const char *partner)
{
    twl_rdma_hello_init(h);
    snprintf(h->node, sizeof(h->node), "%s", node);
    snprintf(h->partner, sizeof(h->partner), "%s", partner);
    snprintf(h->iqn, sizeof(h->iqn), "iqn.2024-01.org.example:twin");
    h->generation = strcmp(node, "alpha") == 0 ? 0x1111 : 0x2222;
    add_lun(h, 0, 1 * GIB, 512, "alpha");
    add_lun(h, 1, 2 * GIB, 4096, "beta");
    add_lun(h, 5, 64 * 1024 * 1024, 512, "alpha");
}

static void setup_pair(void)
{
    make(&a, "alpha", "beta");
    make(&b, "beta", "alpha");
}

static void recrc(size_t len)
{
    uint32_t crc = twl_crc32c_update(0, buf, 12);
    crc = twl_crc32c_update(crc, buf + 16, len - 16);
    twl_put_be32(buf + 12, crc);
}

static void assert_has(const char *s, const char *want)
{
    if (strstr(s, want) == NULL)
        fail_msg("\"%s\" lacks \"%s\"", s, want);
}

/* (mine, theirs) must be refused with a sentence holding each of the wanted pieces. */
static void expect_mismatch(const struct twl_rdma_hello *mine, const struct twl_rdma_hello *theirs,
                            const char *w1, const char *w2, const char *w3)
{
    err[0] = '\0';
    assert_int_equal(twl_rdma_hello_check(mine, theirs, err, sizeof(err)), -EPROTO);
    assert_has(err, w1);
    if (w2)
        assert_has(err, w2);
    if (w3)
        assert_has(err, w3);
    /* one sentence: no full stop inside, nothing on a second line */
    assert_null(strchr(err, '\n'));
    assert_null(strstr(err, ". "));
}

static void test_roundtrip(void **state)
{
    (void)state;
    setup_pair();
    int len = twl_rdma_hello_encode(&a, buf, sizeof(buf));
    assert_int_equal(len, 384 + 3 * 128);
    assert_int_equal((size_t)len, twl_rdma_hello_len(&a));
    assert_memory_equal(buf, "TWLH", 4);
    assert_int_equal(twl_get_be16(buf + 4), TWL_RDMA_PROTO_VERSION);
    assert_int_equal(twl_get_be32(buf + 8), len);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), 0);
    assert_memory_equal(&a, &out, sizeof(a)); /* both zero-padded, so byte-equal */

    /* no LUNs, and the most LUNs with the longest names */
    make(&a, "alpha", "beta");
    a.lun_count = 0;
    memset(a.luns, 0, sizeof(a.luns)); /* decode leaves unused entries zero */
    len = twl_rdma_hello_encode(&a, buf, sizeof(buf));
    assert_int_equal(len, 384);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), 0);
    assert_memory_equal(&a, &out, sizeof(a));
    memset(a.node, 'n', TWL_RDMA_NAME_MAX - 1);
    memset(a.iqn, 'i', TWL_RDMA_IQN_MAX - 1);
    for (uint32_t i = 0; i < TWL_RDMA_HELLO_MAX_LUNS; i++)
        add_lun(&a, 255 - i, (i + 1) * 4096ull, 4096, "");
    memset(a.luns[7].owner, 'o', TWL_RDMA_NAME_MAX - 1);
    len = twl_rdma_hello_encode(&a, buf, sizeof(buf));
    assert_int_equal(len, TWL_RDMA_HELLO_MAX_LEN);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), 0);
    assert_memory_equal(&a, &out, sizeof(a));
}

static void test_damage(void **state)
{
    (void)state;
    setup_pair();
    int len = twl_rdma_hello_encode(&a, buf, sizeof(buf));
    for (int i = 0; i < len; i++) {
        for (int bit = 0; bit < 8; bit++) {
            buf[i] ^= (uint8_t)(1u << bit);
            int rc = twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err));
            if (rc != -EBADMSG)
                fail_msg("bit %d of byte %d: %d (%s)", bit, i, rc, err);
            buf[i] ^= (uint8_t)(1u << bit);
        }
    }
    for (int l = 0; l < len; l++)
        assert_int_equal(twl_rdma_hello_decode(buf, (size_t)l, &out, err, sizeof(err)), -EBADMSG);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len + 1, &out, err, sizeof(err)), -EBADMSG);
    assert_has(err, "says 768 bytes but 769 arrived");
    assert_int_equal(twl_rdma_hello_decode(NULL, 100, &out, NULL, 0), -EBADMSG);
    memcpy(buf, "HTTP", 4);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), -EBADMSG);
    assert_has(err, "not a twinlun node");
}

/* Another protocol version: refused by decode, with the version kept for the sentence. */
static void test_version(void **state)
{
    (void)state;
    setup_pair();
    int len = twl_rdma_hello_encode(&b, buf, sizeof(buf));
    twl_put_be16(buf + 4, 1);
    recrc((size_t)len);
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), -EPROTO);
    assert_int_equal(out.version, 1);
    assert_has(err, "partner runs protocol 1, this node 2");
    /* a later version may lay out everything after byte 16 differently: only the prefix */
    twl_put_be32(buf + 8, 16);
    recrc(16);
    assert_int_equal(twl_rdma_hello_decode(buf, 16, &out, err, sizeof(err)), -EPROTO);
    assert_has(err, "partner runs protocol 1, this node 2");
    expect_mismatch(&a, &out, "partner runs protocol 1, this node 2", NULL, NULL);
    /* encode writes the version it is given */
    b.version = 3;
    len = twl_rdma_hello_encode(&b, buf, sizeof(buf));
    assert_int_equal(twl_rdma_hello_decode(buf, (size_t)len, &out, err, sizeof(err)), -EPROTO);
    assert_int_equal(out.version, 3);
    expect_mismatch(&a, &b, "partner runs protocol 3, this node 2", NULL, NULL);
    expect_mismatch(&b, &a, "partner runs protocol 2, this node 3", NULL, NULL);
}

static void expect_decode_refusal(size_t len, const char *why)
{
    recrc(len);
    assert_int_equal(twl_rdma_hello_decode(buf, len, &out, err, sizeof(err)), -EPROTO);
    assert_has(err, why);
}

/* Intact messages (CRC right) with values a node must not accept. */
static void test_decode_refusals(void **state)
{
    (void)state;
    setup_pair();
    size_t len = (size_t)twl_rdma_hello_encode(&a, buf, sizeof(buf));
    const size_t lun1 = 384 + 128;

    twl_put_be16(buf + 24, 2); /* LUN count disagrees with the length */
    expect_decode_refusal(len, "768 bytes for 2 LUNs; expected 640");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be16(buf + 24, 300);
    expect_decode_refusal(len, "lists 300 LUNs; at most 256");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    buf[7] = 1;
    expect_decode_refusal(len, "reserved bytes");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    memset(buf + 32, 'x', 64); /* node name without a NUL */
    expect_decode_refusal(len, "malformed name");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    buf[96 + 20] = 'z'; /* junk after the partner name's NUL */
    expect_decode_refusal(len, "malformed name");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    memset(buf + 32, 0, 64); /* empty node name */
    expect_decode_refusal(len, "node name is empty");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    memset(buf + 160, 0, 224); /* empty target name */
    expect_decode_refusal(len, "target name is empty");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    buf[32 + 4] = '\n'; /* "alph\n": would end the logged sentence early */
    expect_decode_refusal(len, "node name holds control characters");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    buf[160 + 3] = 0x1b; /* an escape sequence in the target name */
    expect_decode_refusal(len, "partner or target name holds control characters");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    buf[lun1 + 16 + 2] = 0x7f;
    expect_decode_refusal(len, "LUN 1 owner name holds control characters");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    memset(buf + lun1 + 16, 'o', 64); /* owner without a NUL */
    expect_decode_refusal(len, "malformed owner for LUN 1");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be32(buf + lun1 + 120, 4); /* a flag this build does not know */
    expect_decode_refusal(len, "unknown flags 0x4 for LUN 1");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be32(buf + lun1 + 124, 1);
    expect_decode_refusal(len, "unknown flags 0x1 for LUN 1");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be32(buf + lun1, 0); /* LUN 1 becomes a second LUN 0 */
    expect_decode_refusal(len, "lists LUN 0 twice");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be32(buf + lun1 + 4, 3000);
    expect_decode_refusal(len, "LUN 1 block size 3000");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be64(buf + lun1 + 8, 2 * GIB + 512);
    expect_decode_refusal(len, "LUN 1 size 2147484160 is not a non-zero multiple of its block size "
                               "4096");
    twl_rdma_hello_encode(&a, buf, sizeof(buf));
    twl_put_be64(buf + lun1 + 8, 0);
    expect_decode_refusal(len, "LUN 1 size 0");
}

static void test_encode_refusals(void **state)
{
    (void)state;
    setup_pair();
    assert_int_equal(twl_rdma_hello_encode(&a, buf, twl_rdma_hello_len(&a) - 1), -ENOSPC);
    a.node[0] = '\0';
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
    setup_pair();
    memset(a.partner, 'p', sizeof(a.partner)); /* no room for the NUL */
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
    setup_pair();
    a.lun_count = TWL_RDMA_HELLO_MAX_LUNS + 1;
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
    setup_pair();
    a.luns[2].id = 1;
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
    setup_pair();
    a.luns[0].block_size = 0;
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
    setup_pair();
    snprintf(a.partner, sizeof(a.partner), "be\tta");
    assert_int_equal(twl_rdma_hello_encode(&a, buf, sizeof(buf)), -EINVAL);
}

static void test_agree(void **state)
{
    (void)state;
    setup_pair();
    strcpy(err, "stale");
    assert_int_equal(twl_rdma_hello_check(&a, &b, err, sizeof(err)), 0);
    assert_string_equal(err, "");
    assert_int_equal(twl_rdma_hello_check(&b, &a, NULL, 0), 0);
    /* LUN tables in another order, generations differ (resync's business), IQN case */
    struct twl_rdma_hello_lun t = b.luns[0];
    b.luns[0] = b.luns[2];
    b.luns[2] = t;
    snprintf(b.iqn, sizeof(b.iqn), "IQN.2024-01.org.EXAMPLE:twin");
    assert_int_equal(twl_rdma_hello_check(&a, &b, err, sizeof(err)), 0);
    assert_int_equal(twl_rdma_hello_check(&b, &a, err, sizeof(err)), 0);
    /* both sides with no LUNs at all */
    a.lun_count = b.lun_count = 0;
    assert_int_equal(twl_rdma_hello_check(&a, &b, err, sizeof(err)), 0);
}

static void test_names(void **state)
{
    (void)state;
    /* connected to itself: the same hello on both ends */
    setup_pair();
    expect_mismatch(&a, &a, "also named \"alpha\"", "connected to itself", "same node name");
    /* both configs name their node alpha */
    make(&b, "alpha", "beta");
    expect_mismatch(&a, &b, "also named \"alpha\"", NULL, NULL);

    /* the partner is not the node this config names */
    setup_pair();
    snprintf(b.node, sizeof(b.node), "gamma");
    expect_mismatch(&a, &b, "connected to node \"gamma\"",
                    "this node's config names its partner \"beta\"", NULL);
    /* and the view from gamma, whose config names alpha as its partner all right */
    snprintf(b.partner, sizeof(b.partner), "alpha");
    expect_mismatch(&b, &a, "partner \"alpha\" expects a partner named \"beta\", not \"gamma\"",
                    "alpha", NULL);

    /* different targets, named from this node's view on each side */
    setup_pair();
    snprintf(b.iqn, sizeof(b.iqn), "iqn.2024-01.org.example:other");
    expect_mismatch(&a, &b, "partner \"beta\" presents target \"iqn.2024-01.org.example:other\"",
                    "this node \"iqn.2024-01.org.example:twin\"", "same target name");
    expect_mismatch(&b, &a, "partner \"alpha\" presents target \"iqn.2024-01.org.example:twin\"",
                    "this node \"iqn.2024-01.org.example:other\"", NULL);
}

static void test_luns(void **state)
{
    (void)state;
    /* a LUN on one side only: each node says it from its own side */
    setup_pair();
    b.lun_count = 2; /* beta lacks LUN 5 */
    expect_mismatch(&a, &b, "LUN 5 is configured on this node but not on partner \"beta\"", NULL,
                    NULL);
    expect_mismatch(&b, &a, "LUN 5 is configured on partner \"alpha\" but not on this node", NULL,
                    NULL);

    /* sizes differ: the LUN and both values */
    setup_pair();
    b.luns[1].size = 3 * GIB;
    expect_mismatch(&a, &b,
                    "LUN 1 is 2147483648 bytes on this node but 3221225472 bytes on partner "
                    "\"beta\"",
                    NULL, NULL);
    expect_mismatch(&b, &a,
                    "LUN 1 is 3221225472 bytes on this node but 2147483648 bytes on partner "
                    "\"alpha\"",
                    NULL, NULL);

    /* block sizes differ */
    setup_pair();
    b.luns[0].block_size = 4096;
    expect_mismatch(&a, &b,
                    "LUN 0 has 512-byte blocks on this node but 4096-byte blocks on partner", NULL,
                    NULL);
}

static void set_owner(struct twl_rdma_hello *h, uint32_t idx, const char *owner)
{
    snprintf(h->luns[idx].owner, sizeof(h->luns[idx].owner), "%s", owner);
}

static void test_owners(void **state)
{
    (void)state;
    /* both claim LUN 1 */
    setup_pair();
    set_owner(&a, 1, "alpha");
    expect_mismatch(&a, &b, "both nodes own LUN 1", "\"alpha\"", "\"beta\"");
    expect_mismatch(&b, &a, "both nodes own LUN 1", NULL, NULL);

    /* each gives it to the other: no node owns it */
    setup_pair();
    set_owner(&a, 0, "beta");
    set_owner(&b, 0, "alpha");
    expect_mismatch(&a, &b, "no node owns LUN 0", NULL, NULL);
    expect_mismatch(&b, &a, "no node owns LUN 0", NULL, NULL);

    /* neither config names an owner */
    setup_pair();
    set_owner(&a, 0, "");
    set_owner(&b, 0, "");
    expect_mismatch(&a, &b, "no node owns LUN 0", "name \"alpha\" or \"beta\"", NULL);

    /* one config names no owner, the other does */
    setup_pair();
    set_owner(&b, 0, "");
    expect_mismatch(&a, &b, "this node's config gives LUN 0 to \"alpha\"",
                    "partner \"beta\"'s gives it to no node", NULL);
    expect_mismatch(&b, &a, "this node's config gives LUN 0 to no node",
                    "partner \"alpha\"'s gives it to \"alpha\"", NULL);

    /* both name the same third node */
    setup_pair();
    set_owner(&a, 1, "gamma");
    set_owner(&b, 1, "gamma");
    expect_mismatch(&a, &b, "LUN 1 is owned by \"gamma\", which is neither node", NULL, NULL);

    /* they name different third nodes */
    set_owner(&b, 1, "delta");
    expect_mismatch(&a, &b, "gives LUN 1 to \"gamma\" but partner \"beta\"'s gives it to \"delta\"",
                    NULL, NULL);
}

/* The sentence is cut to the buffer, never written past it. */
static void test_small_err(void **state)
{
    (void)state;
    setup_pair();
    b.luns[1].size = 3 * GIB;
    char small[16];
    memset(small, 'x', sizeof(small));
    assert_int_equal(twl_rdma_hello_check(&a, &b, small, 8), -EPROTO);
    assert_int_equal(strlen(small), 7);
    assert_int_equal(small[8], 'x');
    assert_int_equal(twl_rdma_hello_check(&a, &b, NULL, 0), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roundtrip),       cmocka_unit_test(test_damage),
        cmocka_unit_test(test_version),         cmocka_unit_test(test_decode_refusals),
        cmocka_unit_test(test_encode_refusals), cmocka_unit_test(test_agree),
        cmocka_unit_test(test_names),           cmocka_unit_test(test_luns),
        cmocka_unit_test(test_owners),          cmocka_unit_test(test_small_err),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
