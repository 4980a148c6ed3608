/* Unit tests of twl_rdma's pure parts: ring placement, record header and connection info. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <string.h>

#include "rdma.h"

static void test_rec_len(void **state)
{
    (void)state;
    assert_int_equal(twl_rdma_rec_len(0), 64);
    assert_int_equal(twl_rdma_rec_len(1), 128);
    assert_int_equal(twl_rdma_rec_len(64), 128);
    assert_int_equal(twl_rdma_rec_len(65), 192);
    assert_int_equal(twl_rdma_rec_len(65536), 65536 + 64);
}

static void test_place(void **state)
{
    (void)state;
    const uint64_t rs = 4096;
    /* fits where it is */
    assert_int_equal(twl_rdma_ring_place(rs, 0, 1024), 0);
    assert_int_equal(twl_rdma_ring_place(rs, 3072, 1024), 3072); /* ends exactly at the end */
    /* would straddle the end: goes to the next lap */
    assert_int_equal(twl_rdma_ring_place(rs, 3136, 1024), 4096);
    assert_int_equal(twl_rdma_ring_place(rs, 4096 * 5 + 4032, 128), 4096 * 6);
    /* later laps behave the same */
    assert_int_equal(twl_rdma_ring_place(rs, 4096 * 7 + 64, 4032), 4096 * 7 + 64);
}

static void test_fits(void **state)
{
    (void)state;
    const uint64_t rs = 4096;
    assert_true(twl_rdma_ring_fits(rs, 0, 0, 4096));
    assert_false(twl_rdma_ring_fits(rs, 0, 64, 4096));
    assert_true(twl_rdma_ring_fits(rs, 1024, 4096, 1024));
    assert_false(twl_rdma_ring_fits(rs, 1024, 4096, 1088));
    /* a start behind consumed is a bug in the caller: never fits */
    assert_false(twl_rdma_ring_fits(rs, 2048, 1024, 64));
}

/* Sender and receiver walk the same positions through many laps with mixed sizes. */
static void test_sender_receiver_agree(void **state)
{
    (void)state;
    const uint64_t rs = 1u << 16;
    uint64_t tx = 0, rx = 0, consumed = 0;
    for (uint32_t i = 0; i < 10000; i++) {
        uint32_t len = (i * 7919u) % 20000u;
        uint64_t rl = twl_rdma_rec_len(len);
        uint64_t start = twl_rdma_ring_place(rs, tx, rl);
        assert_true(twl_rdma_ring_fits(rs, consumed, start, rl));
        uint64_t off = start & (rs - 1);
        assert_true(off + rl <= rs);
        assert_int_equal(off % TWL_RDMA_REC_ALIGN, 0);
        /* receiver: from the immediate (off/64) and the header length */
        uint32_t imm = (uint32_t)(off / TWL_RDMA_REC_ALIGN);
        uint64_t rstart = twl_rdma_ring_place(rs, rx, rl);
        assert_int_equal(rstart & (rs - 1), (uint64_t)imm * TWL_RDMA_REC_ALIGN);
        tx = start + rl;
        rx = rstart + rl;
        consumed = rx;
    }
    assert_int_equal(tx, rx);
}

static void test_hdr_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[TWL_RDMA_REC_HDR_LEN];
    struct twl_rdma_rec_hdr h = {.flags = TWL_RDMA_REC_END,
                                 .seq = 0x0102030405060708ull,
                                 .len = 65536,
                                 .payload_crc = 0xdeadbeef};
    struct twl_rdma_rec_hdr d;
    twl_rdma_rec_hdr_encode(buf, &h);
    /* big-endian on the wire */
    assert_int_equal(buf[8], 0x01);
    assert_int_equal(buf[15], 0x08);
    assert_int_equal(twl_rdma_rec_hdr_decode(buf, &d), 0);
    assert_int_equal(d.flags, h.flags);
    assert_int_equal(d.seq, h.seq);
    assert_int_equal(d.len, h.len);
    assert_int_equal(d.payload_crc, h.payload_crc);
    /* any flipped bit is caught */
    for (size_t i = 0; i < sizeof(buf); i++) {
        buf[i] ^= 0x10;
        assert_int_equal(twl_rdma_rec_hdr_decode(buf, &d), -EBADMSG);
        buf[i] ^= 0x10;
    }
    /* a zeroed slot (never written) is not a record */
    memset(buf, 0, sizeof(buf));
    assert_int_equal(twl_rdma_rec_hdr_decode(buf, &d), -EBADMSG);
}

static void test_info_roundtrip(void **state)
{
    (void)state;
    uint8_t buf[56] = {0}; /* rdma_cm pads private data */
    struct twl_rdma_info in = {.ring_addr = 0x7f0011223344ull,
                               .ring_rkey = 0x1234,
                               .ring_size = 4u << 20,
                               .ctrl_addr = 0x7f00aabbccddull,
                               .ctrl_rkey = 0x5678,
                               .recv_depth = 128,
                               .flags = TWL_RDMA_INFO_PAYLOAD_CRC},
                         out;
    for (unsigned i = 0; i < TWL_RDMA_NONCE_LEN; i++)
        in.nonce[i] = (uint8_t)(0xa0 + i);
    twl_rdma_info_encode(buf, &in);
    assert_int_equal(twl_rdma_info_decode(buf, sizeof(buf), &out), 0);
    assert_int_equal(out.ring_addr, in.ring_addr);
    assert_int_equal(out.ring_rkey, in.ring_rkey);
    assert_int_equal(out.ring_size, in.ring_size);
    assert_int_equal(out.ctrl_addr, in.ctrl_addr);
    assert_int_equal(out.ctrl_rkey, in.ctrl_rkey);
    assert_int_equal(out.recv_depth, in.recv_depth);
    assert_int_equal(out.flags, TWL_RDMA_INFO_PAYLOAD_CRC);
    assert_memory_equal(out.nonce, in.nonce, TWL_RDMA_NONCE_LEN);
    assert_int_equal(buf[55], 0xaf); /* the nonce fills the private data to its last byte */
    in.flags = 0;
    twl_rdma_info_encode(buf, &in);
    assert_int_equal(twl_rdma_info_decode(buf, sizeof(buf), &out), 0);
    assert_int_equal(out.flags, 0);
    assert_int_equal(twl_rdma_info_decode(buf, TWL_RDMA_INFO_LEN - 1, &out), -EPROTO);
    assert_int_equal(twl_rdma_info_decode(NULL, 56, &out), -EPROTO);
    buf[0] ^= 1;
    assert_int_equal(twl_rdma_info_decode(buf, sizeof(buf), &out), -EPROTO);
    buf[0] ^= 1;
    in.ring_size = 3u << 20; /* not a power of two */
    twl_rdma_info_encode(buf, &in);
    assert_int_equal(twl_rdma_info_decode(buf, sizeof(buf), &out), -EPROTO);
    in.ring_size = 4u << 20;
    in.recv_depth = 0;
    twl_rdma_info_encode(buf, &in);
    assert_int_equal(twl_rdma_info_decode(buf, sizeof(buf), &out), -EPROTO);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rec_len),       cmocka_unit_test(test_place),
        cmocka_unit_test(test_fits),          cmocka_unit_test(test_sender_receiver_agree),
        cmocka_unit_test(test_hdr_roundtrip), cmocka_unit_test(test_info_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
