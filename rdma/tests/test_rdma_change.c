/* Unit tests of change records: round trips of each kind and every refusal. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "twl_common.h"

#define BUF_LEN (TWL_RDMA_CHANGE_MAX_HDR_LEN + 65536)

static uint8_t buf[BUF_LEN];
static uint8_t payload[65536];
static struct twl_rdma_change in, out;

static void fill_payload(void)
{
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 31 + 7);
}

static struct twl_rdma_change data_change(void)
{
    struct twl_rdma_change c = {.seq = 0x1122334455667788ull,
                                .generation = 0xa1a2a3a4a5a6a7a8ull,
                                .kind = TWL_RDMA_CHANGE_DATA,
                                .lun = 7,
                                .lba = 0x0000000100000000ull,
                                .blocks = 8,
                                .block_size = 512,
                                .fua = true,
                                .data_len = 8 * 512};
    return c;
}

static struct twl_rdma_change unmap_change(uint32_t n)
{
    struct twl_rdma_change c = {
        .seq = 42, .generation = 3, .kind = TWL_RDMA_CHANGE_UNMAP, .lun = 1, .block_size = 4096};
    c.extent_count = n; /* may be more than fit, to test the refusal */
    for (uint32_t i = 0; i < n && i < TWL_RDMA_CHANGE_MAX_EXTENTS; i++)
        c.extents[i] = (struct twl_rdma_extent){.lba = 1000ull * i + 5, .blocks = i + 1};
    return c;
}

/* Encodes c (with the payload as data) and returns the record length. */
static size_t encode(const struct twl_rdma_change *c)
{
    assert_int_equal(twl_rdma_change_encode(c, payload, buf, sizeof(buf)), 0);
    return twl_rdma_change_header_len(c) + c->data_len;
}

/* After a field was changed by hand: a valid header CRC again, so the semantic checks run. */
static void recrc(void)
{
    size_t hl = twl_get_be16(buf + 6);
    uint32_t crc = twl_crc32c_update(0, buf, 60);
    crc = twl_crc32c_update(crc, buf + 64, hl - 64);
    twl_put_be32(buf + 60, crc);
}

static void assert_same(const struct twl_rdma_change *a, const struct twl_rdma_change *b)
{
    assert_int_equal(a->seq, b->seq);
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->kind, b->kind);
    assert_int_equal(a->lun, b->lun);
    assert_int_equal(a->lba, b->lba);
    assert_int_equal(a->blocks, b->blocks);
    assert_int_equal(a->block_size, b->block_size);
    assert_int_equal(a->fua, b->fua);
    assert_int_equal(a->data_len, b->data_len);
    assert_int_equal(a->extent_count, b->extent_count);
    for (uint32_t i = 0; i < a->extent_count; i++) {
        assert_int_equal(a->extents[i].lba, b->extents[i].lba);
        assert_int_equal(a->extents[i].blocks, b->extents[i].blocks);
    }
}

static void expect_refusal(size_t len, int rc, const char *why)
{
    const uint8_t *data = payload;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), rc);
    assert_null(data);
    if (strstr(twl_rdma_change_strerror(&out), why) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", twl_rdma_change_strerror(&out), why);
}

static void test_data_roundtrip(void **state)
{
    (void)state;
    in = data_change();
    assert_int_equal(twl_rdma_change_header_len(&in), 64);
    size_t len = encode(&in);
    assert_int_equal(len, 64 + 4096);
    /* big-endian fields where the format says */
    assert_memory_equal(buf, "TWLC", 4);
    assert_int_equal(twl_get_be64(buf + 8), in.seq);
    assert_int_equal(twl_get_be64(buf + 24), in.lba);
    assert_int_equal(buf[50], TWL_RDMA_CHANGE_DATA);
    assert_int_equal(buf[51], 1);
    const uint8_t *data = NULL;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    assert_same(&in, &out);
    assert_ptr_equal(data, buf + 64);
    assert_memory_equal(data, payload, 4096);
    assert_string_equal(twl_rdma_change_strerror(&out), "");
}

/* data NULL: the caller places the data after the header itself. */
static void test_data_placed_by_caller(void **state)
{
    (void)state;
    in = data_change();
    in.fua = false;
    uint8_t hdr[64];
    assert_int_equal(twl_rdma_change_encode(&in, NULL, hdr, sizeof(hdr)), 0);
    memcpy(buf, hdr, 64);
    memcpy(buf + 64, payload, in.data_len);
    const uint8_t *data = NULL;
    assert_int_equal(twl_rdma_change_decode(buf, 64 + in.data_len, &out, &data), 0);
    assert_same(&in, &out);
    assert_memory_equal(data, payload, in.data_len);
}

static void test_same_roundtrip(void **state)
{
    (void)state;
    in = data_change();
    in.kind = TWL_RDMA_CHANGE_SAME;
    in.blocks = 0xffffffffu; /* one block repeated over a huge range */
    in.block_size = 4096;
    in.data_len = 4096;
    size_t len = encode(&in);
    const uint8_t *data = NULL;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    assert_same(&in, &out);
    assert_memory_equal(data, payload, 4096);

    /* no data: zeros */
    in.data_len = 0;
    len = encode(&in);
    assert_int_equal(len, 64);
    data = payload;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    assert_same(&in, &out);
    assert_null(data);
}

static void test_unmap_roundtrip(void **state)
{
    (void)state;
    for (uint32_t n = 1; n <= TWL_RDMA_CHANGE_MAX_EXTENTS; n += 85) {
        in = unmap_change(n);
        size_t len = encode(&in);
        assert_int_equal(len, 64 + 16 * n);
        const uint8_t *data = payload;
        assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
        assert_same(&in, &out);
        assert_null(data);
    }
    in = unmap_change(TWL_RDMA_CHANGE_MAX_EXTENTS);
    size_t len = encode(&in);
    assert_int_equal(len, TWL_RDMA_CHANGE_MAX_HDR_LEN);
    const uint8_t *data;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    assert_same(&in, &out);
    /* an extent reaching the very last LBA */
    in = unmap_change(1);
    in.extents[0] = (struct twl_rdma_extent){.lba = UINT64_MAX - 10, .blocks = 10};
    len = encode(&in);
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    assert_same(&in, &out);
}

/* Any single flipped bit of a header (extents included) is caught as damage. */
static void test_flipped_bits(void **state)
{
    (void)state;
    in = unmap_change(3);
    size_t len = encode(&in);
    const uint8_t *data;
    for (size_t i = 0; i < len; i++) {
        for (int b = 0; b < 8; b++) {
            buf[i] ^= (uint8_t)(1u << b);
            int rc = twl_rdma_change_decode(buf, len, &out, &data);
            if (rc != -EBADMSG)
                fail_msg("bit %d of byte %zu: %d (%s)", b, i, rc, out.err);
            buf[i] ^= (uint8_t)(1u << b);
        }
    }
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    /* the data is the ring record's payload CRC's business, not the header's */
    in = data_change();
    len = encode(&in);
    buf[64 + 100] ^= 1;
    assert_int_equal(twl_rdma_change_decode(buf, len, &out, &data), 0);
    /* a never-written (zeroed) slot */
    memset(buf, 0, 256);
    expect_refusal(256, -EBADMSG, "not a change record");
}

static void test_truncated(void **state)
{
    (void)state;
    in = unmap_change(2);
    size_t len = encode(&in);
    const uint8_t *data;
    for (size_t l = 0; l < len; l++)
        assert_int_equal(twl_rdma_change_decode(buf, l, &out, &data), -EBADMSG);
    expect_refusal(10, -EBADMSG, "truncated");
    expect_refusal(70, -EBADMSG, "header length 96");
    assert_int_equal(twl_rdma_change_decode(NULL, 64, &out, &data), -EBADMSG);

    in = data_change();
    len = encode(&in);
    expect_refusal(len - 1, -EBADMSG, "record of 4159 bytes");
    expect_refusal(len + 64, -EBADMSG, "make 4160"); /* padded */
    expect_refusal(64, -EBADMSG, "record of 64 bytes");
}

/* Intact headers (valid CRC) that say something a partner must refuse. */
static void test_refusals(void **state)
{
    (void)state;
    in = data_change();
    size_t len = encode(&in);

    buf[5] = 3; /* version */
    recrc();
    expect_refusal(len, -EPROTO, "version 3; this build reads 2");
    encode(&in);

    for (int k = 0; k < 256; k++) {
        if (k >= TWL_RDMA_CHANGE_DATA && k <= TWL_RDMA_CHANGE_UNMAP)
            continue;
        buf[50] = (uint8_t)k;
        recrc();
        expect_refusal(len, -EPROTO, "unknown change kind");
    }
    encode(&in);

    buf[51] = 0x3;
    recrc();
    expect_refusal(len, -EPROTO, "unknown flags 0x03");
    encode(&in);

    buf[55] = 1;
    recrc();
    expect_refusal(len, -EPROTO, "reserved header bytes");
    encode(&in);

    twl_put_be32(buf + 44, 4095); /* data length */
    recrc();
    expect_refusal(len, -EPROTO, "DATA of 8 blocks of 512 bytes carries 4095 bytes");
    encode(&in);

    twl_put_be32(buf + 36, 0); /* blocks */
    twl_put_be32(buf + 44, 0);
    recrc();
    expect_refusal(64, -EPROTO, "DATA of 0 blocks");
    encode(&in);

    twl_put_be32(buf + 40, 1000); /* block size */
    recrc();
    expect_refusal(len, -EPROTO, "block size 1000");
    twl_put_be32(buf + 40, 256);
    recrc();
    expect_refusal(len, -EPROTO, "block size 256");
    twl_put_be32(buf + 40, 131072);
    recrc();
    expect_refusal(len, -EPROTO, "block size 131072");
    encode(&in);

    twl_put_be64(buf + 24, UINT64_MAX - 4); /* lba: the range would wrap */
    recrc();
    expect_refusal(len, -EPROTO, "ends past 2^64");
    encode(&in);

    /* SAME: one block or nothing */
    in.kind = TWL_RDMA_CHANGE_SAME;
    in.data_len = 512;
    len = encode(&in);
    twl_put_be32(buf + 44, 1024);
    recrc();
    expect_refusal(64 + 1024, -EPROTO, "SAME carries 1024 bytes");

    /* extents on a kind without them */
    in = data_change();
    len = encode(&in);
    memmove(buf + 64 + 16, buf + 64, in.data_len);
    memset(buf + 64, 0, 16);
    twl_put_be64(buf + 64, 5);
    twl_put_be32(buf + 64 + 8, 1);
    twl_put_be16(buf + 6, 80);
    twl_put_be16(buf + 48, 1);
    recrc();
    expect_refusal(len + 16, -EPROTO, "DATA with 1 extents; only UNMAP has extents");
}

static void test_unmap_refusals(void **state)
{
    (void)state;
    in = unmap_change(2);
    size_t len = encode(&in);

    twl_put_be16(buf + 48, 3); /* extent count disagrees with the header length */
    recrc();
    expect_refusal(len, -EPROTO, "header length 96 with 3 extents");
    encode(&in);

    twl_put_be16(buf + 48, 0);
    twl_put_be16(buf + 6, 64);
    recrc();
    expect_refusal(64, -EPROTO, "UNMAP with 0 extents");
    encode(&in);

    twl_put_be32(buf + 64 + 16 + 8, 0); /* second extent: 0 blocks */
    recrc();
    expect_refusal(len, -EPROTO, "UNMAP extent 1 has 0 blocks");
    encode(&in);

    twl_put_be64(buf + 64, UINT64_MAX); /* first extent wraps */
    recrc();
    expect_refusal(len, -EPROTO, "UNMAP extent 0 (lba 18446744073709551615, 1 blocks)");
    encode(&in);

    buf[64 + 12] = 1; /* reserved bytes of an extent */
    recrc();
    expect_refusal(len, -EPROTO, "reserved bytes of extent 0");
    encode(&in);

    twl_put_be64(buf + 24, 5); /* lba on an UNMAP */
    recrc();
    expect_refusal(len, -EPROTO, "UNMAP with lba 5 and 0 blocks");
    encode(&in);

    twl_put_be32(buf + 44, 512); /* data on an UNMAP */
    recrc();
    expect_refusal(len + 512, -EPROTO, "UNMAP carries 512 bytes");

    /* too many extents, in an otherwise intact record */
    in = unmap_change(TWL_RDMA_CHANGE_MAX_EXTENTS);
    len = encode(&in);
    memcpy(buf + len, buf + len - 16, 16);
    twl_put_be16(buf + 6, (uint16_t)(len + 16));
    twl_put_be16(buf + 48, TWL_RDMA_CHANGE_MAX_EXTENTS + 1);
    recrc();
    expect_refusal(len + 16, -EPROTO, "257 extents; at most 256");
}

/* The receiver's range check against its LUN's size: every block, no wrap. */
static void test_within_lun(void **state)
{
    (void)state;
    struct twl_rdma_change c = {.kind = TWL_RDMA_CHANGE_DATA, .lba = 90, .blocks = 10};
    assert_true(twl_rdma_change_within(&c, 100));
    c.blocks = 11;
    assert_false(twl_rdma_change_within(&c, 100));
    c.lba = 100;
    c.blocks = 0;
    assert_false(twl_rdma_change_within(&c, 100));
    c.lba = UINT64_MAX - 2;
    c.blocks = 8; /* lba + blocks wraps: still past the end */
    assert_false(twl_rdma_change_within(&c, 100));
    c.kind = TWL_RDMA_CHANGE_SAME;
    c.lba = 0;
    c.blocks = 100;
    assert_true(twl_rdma_change_within(&c, 100));
    c.kind = TWL_RDMA_CHANGE_UNMAP;
    c.extent_count = 2;
    c.extents[0] = (struct twl_rdma_extent){.lba = 0, .blocks = 50};
    c.extents[1] = (struct twl_rdma_extent){.lba = 50, .blocks = 50};
    assert_true(twl_rdma_change_within(&c, 100));
    c.extents[1].blocks = 51;
    assert_false(twl_rdma_change_within(&c, 100));
    c.extents[1] = (struct twl_rdma_extent){.lba = UINT64_MAX, .blocks = 2};
    assert_false(twl_rdma_change_within(&c, 100));
}

static void expect_encode_refusal(const struct twl_rdma_change *c, const char *why)
{
    char err[TWL_RDMA_CHANGE_ERR_LEN];
    assert_int_equal(twl_rdma_change_encode(c, payload, buf, sizeof(buf)), -EINVAL);
    assert_int_equal(twl_rdma_change_check(c, err, sizeof(err)), -EINVAL);
    if (strstr(err, why) == NULL)
        fail_msg("reason \"%s\" lacks \"%s\"", err, why);
}

/* encode refuses what decode would, by the same rules; and a buffer too small. */
static void test_encode_refusals(void **state)
{
    (void)state;
    char err[TWL_RDMA_CHANGE_ERR_LEN];
    in = data_change();
    assert_int_equal(twl_rdma_change_check(&in, err, sizeof(err)), 0);
    assert_int_equal(twl_rdma_change_check(&in, NULL, 0), 0);
    assert_int_equal(twl_rdma_change_encode(&in, payload, buf, 64 + 4095), -ENOSPC);
    assert_int_equal(twl_rdma_change_encode(&in, NULL, buf, 63), -ENOSPC);
    assert_int_equal(twl_rdma_change_encode(&in, NULL, buf, 64), 0);

    struct twl_rdma_change c = data_change();
    c.kind = (enum twl_rdma_change_kind)0;
    expect_encode_refusal(&c, "unknown change kind 0");
    c = data_change();
    c.data_len = 512;
    expect_encode_refusal(&c, "DATA of 8 blocks of 512 bytes carries 512 bytes");
    c = data_change();
    c.blocks = 0x00200000; /* 1 GiB: more data than a record can carry */
    expect_encode_refusal(&c, "expected 1073741824");
    c = data_change();
    c.block_size = 0;
    expect_encode_refusal(&c, "block size 0");
    c = data_change();
    c.kind = TWL_RDMA_CHANGE_SAME;
    c.data_len = 100;
    expect_encode_refusal(&c, "SAME carries 100 bytes");
    c = data_change();
    c.extent_count = 1;
    expect_encode_refusal(&c, "DATA with 1 extents");

    c = unmap_change(TWL_RDMA_CHANGE_MAX_EXTENTS + 1);
    expect_encode_refusal(&c, "UNMAP with 257 extents; expected 1..256");
    c = unmap_change(0);
    expect_encode_refusal(&c, "UNMAP with 0 extents");
    c = unmap_change(2);
    c.lba = 9;
    c.blocks = 1;
    expect_encode_refusal(&c, "expected 0 (the extents say which)");
    c = unmap_change(2);
    c.extents[1].blocks = 0;
    expect_encode_refusal(&c, "extent 1 has 0 blocks");
    c = unmap_change(2);
    c.data_len = 4096;
    expect_encode_refusal(&c, "UNMAP carries 4096 bytes");
}

int main(void)
{
    fill_payload();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_data_roundtrip),  cmocka_unit_test(test_data_placed_by_caller),
        cmocka_unit_test(test_same_roundtrip),  cmocka_unit_test(test_unmap_roundtrip),
        cmocka_unit_test(test_flipped_bits),    cmocka_unit_test(test_truncated),
        cmocka_unit_test(test_refusals),        cmocka_unit_test(test_unmap_refusals),
        cmocka_unit_test(test_encode_refusals), cmocka_unit_test(test_within_lun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
