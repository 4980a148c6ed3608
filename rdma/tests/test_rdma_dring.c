/* Unit tests of the durable ring: header slots, and replay of a ring image after a crash. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "rdma.h"
#include "twl_common.h"

#define RS 4096u

/* A ring image written as the sender does: records placed at the tail, wrapping. */
struct image {
    uint8_t ring[RS];
    uint64_t pos, seq;
    uint64_t starts[64]; /* where record k starts */
};

static void put(struct image *im, uint32_t len, uint8_t fill)
{
    uint64_t rl = twl_rdma_rec_len(len);
    uint64_t start = twl_rdma_ring_place(RS, im->pos, rl);
    uint8_t *p = im->ring + (start & (RS - 1));
    memset(p + TWL_RDMA_REC_HDR_LEN, fill, len);
    struct twl_rdma_rec_hdr h = {.flags = TWL_RDMA_REC_CRC,
                                 .seq = im->seq,
                                 .len = len,
                                 .payload_crc = twl_crc32c(p + 64, len)};
    twl_rdma_rec_hdr_encode(p, &h);
    im->starts[im->seq % 64] = start;
    im->pos = start + rl;
    im->seq++;
}

struct seen {
    uint64_t seqs[64];
    uint8_t fills[64];
    uint32_t lens[64];
    int n;
    int fail_at; /* seq whose apply fails, or -1 */
};

static int collect(void *ctx, const struct twl_rdma_rec_hdr *h, const void *payload)
{
    struct seen *s = ctx;
    if ((int64_t)h->seq == s->fail_at)
        return -EIO;
    const uint8_t *p = payload;
    for (uint32_t i = 1; i < h->len; i++)
        assert_int_equal(p[i], p[0]);
    s->seqs[s->n] = h->seq;
    s->fills[s->n] = h->len ? p[0] : 0;
    s->lens[s->n] = h->len;
    s->n++;
    return 0;
}

static void test_header_slots(void **state)
{
    (void)state;
    uint8_t hdr[TWL_RDMA_DRING_HDR_LEN] = {0};
    struct twl_rdma_dring_state st;
    assert_int_equal(twl_rdma_dring_read(hdr, &st), -ENOENT);

    struct twl_rdma_dring_state a = {.ring_size = RS, .epoch = 4, .pos = 640, .seq = 9};
    twl_rdma_dring_write(hdr, &a);
    assert_int_equal(twl_rdma_dring_slot(&a), 0);
    assert_int_equal(twl_rdma_dring_read(hdr, &st), 0);
    assert_memory_equal(&st, &a, sizeof(st));

    struct twl_rdma_dring_state b = {.ring_size = RS, .epoch = 5, .pos = 1280, .seq = 12};
    twl_rdma_dring_write(hdr, &b);
    assert_int_equal(twl_rdma_dring_slot(&b), 64);
    assert_int_equal(twl_rdma_dring_read(hdr, &st), 0);
    assert_memory_equal(&st, &b, sizeof(st)); /* the newer epoch wins */

    /* a torn write of epoch 6 (slot 0) leaves epoch 5 current */
    struct twl_rdma_dring_state c = {.ring_size = RS, .epoch = 6, .pos = 1920, .seq = 15};
    twl_rdma_dring_write(hdr, &c);
    hdr[30] ^= 0x40;
    assert_int_equal(twl_rdma_dring_read(hdr, &st), 0);
    assert_memory_equal(&st, &b, sizeof(st));

    /* a ring size that is not a power of two is not a valid header */
    memset(hdr, 0, sizeof(hdr));
    struct twl_rdma_dring_state bad = {.ring_size = 3000, .epoch = 1};
    twl_rdma_dring_write(hdr, &bad);
    assert_int_equal(twl_rdma_dring_read(hdr, &st), -ENOENT);

    /* the write after epoch 2^64 - 1 wraps to 0 (slot 0) and is the current one */
    memset(hdr, 0, sizeof(hdr));
    struct twl_rdma_dring_state last = {.ring_size = RS, .epoch = UINT64_MAX, .pos = 64, .seq = 1};
    twl_rdma_dring_write(hdr, &last);
    struct twl_rdma_dring_state wrapped = {.ring_size = RS, .epoch = 0, .pos = 128, .seq = 2};
    twl_rdma_dring_write(hdr, &wrapped);
    assert_int_equal(twl_rdma_dring_read(hdr, &st), 0);
    assert_memory_equal(&st, &wrapped, sizeof(st));
}

/* From where the header says replay starts, through the wrap, in order, with payloads. */
static void test_replay_from_header_position(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    uint32_t lens[] = {1000, 1500, 0, 1200, 900};
    for (int i = 0; i < 5; i++)
        put(im, lens[i], (uint8_t)(0x10 + i));
    /* 0: [0, 1088)  1: [1088, 2688)  2: [2688, 2752)  3: [2752, 4032)  4: wraps to 4096 */
    assert_int_equal(im->starts[4], RS);
    /* the header names where record 0 ended: record 0 itself is gone (record 4 is there) */
    struct seen s = {.fail_at = -1};
    uint64_t pos = 1088, seq = 1;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(s.seqs[i], 1 + i);
        assert_int_equal(s.fills[i], lens[1 + i] ? 0x11 + i : 0);
        assert_int_equal(s.lens[i], lens[1 + i]);
    }
    assert_int_equal(seq, 5);
    assert_int_equal(pos, im->pos);
    /* from the start nothing is replayed: record 0's place holds record 4 */
    s.n = 0;
    pos = 0;
    seq = 0;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 0);
    free(im);
}

/* An unarmed header (seq 2^64 - 1: between connections, and before the partner's hello was
 * accepted) replays nothing, whatever intact records a peer placed in the ring. */
static void test_replay_unarmed_header(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    for (int i = 0; i < 3; i++)
        put(im, 500, (uint8_t)(0x20 + i));
    struct seen s = {.fail_at = -1};
    uint64_t pos = 0, seq = UINT64_MAX;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 0);
    assert_int_equal(s.n, 0);
    assert_int_equal(pos, 0);
    /* armed, the same image replays all three */
    seq = 0;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 3);
    free(im);
}

/* A record whose header wrapped to the ring's start is found there. */
static void test_replay_finds_wrapped_record(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    put(im, 3000, 0x21); /* [0, 3072) */
    put(im, 1500, 0x22); /* does not fit in [3072, 4096): placed at 4096 */
    assert_int_equal(im->starts[1], RS);
    struct seen s = {.fail_at = -1};
    uint64_t pos = 3072, seq = 1;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 1);
    assert_int_equal(s.fills[0], 0x22);
    assert_int_equal(pos, RS + twl_rdma_rec_len(1500));
    free(im);
}

/* A torn payload ends the replay there: later records are not applied either. */
static void test_replay_stops_at_torn_record(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    for (int i = 0; i < 5; i++)
        put(im, 300, (uint8_t)(0x30 + i));
    im->ring[(im->starts[2] & (RS - 1)) + 64 + 17] ^= 1;
    struct seen s = {.fail_at = -1};
    uint64_t pos = 0, seq = 0;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 2);
    assert_int_equal(seq, 2);
    assert_int_equal(pos, im->starts[2]);
    free(im);
}

/* A record without a payload CRC cannot be told from a torn one: replay stops before it. */
static void test_replay_needs_payload_crc(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    for (int i = 0; i < 3; i++)
        put(im, 300, (uint8_t)(0x40 + i));
    uint8_t *h1 = im->ring + (im->starts[1] & (RS - 1));
    struct twl_rdma_rec_hdr h;
    assert_int_equal(twl_rdma_rec_hdr_decode(h1, &h), 0);
    h.flags &= ~TWL_RDMA_REC_CRC;
    twl_rdma_rec_hdr_encode(h1, &h);
    struct seen s = {.fail_at = -1};
    uint64_t pos = 0, seq = 0;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 1);
    assert_int_equal(seq, 1);
    free(im);
}

/* What follows the last record written is an older lap's record: wrong sequence, not taken. */
static void test_replay_ignores_older_lap(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    for (int i = 0; i < 12; i++)
        put(im, 400, (uint8_t)(0x40 + i)); /* 464-byte records: the ring holds 8 */
    struct seen s = {.fail_at = -1};
    uint64_t seq = 9, pos = im->starts[9];
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), 3);
    assert_int_equal(s.seqs[2], 11);
    assert_int_equal(seq, 12); /* the record after 11 in the ring is from the lap before */
    free(im);
}

static void test_replay_apply_error(void **state)
{
    (void)state;
    struct image *im = calloc(1, sizeof(*im));
    for (int i = 0; i < 4; i++)
        put(im, 200, (uint8_t)(0x50 + i));
    struct seen s = {.fail_at = 2};
    uint64_t pos = 0, seq = 0;
    assert_int_equal(twl_rdma_ring_replay(im->ring, RS, &pos, &seq, collect, &s), -EIO);
    assert_int_equal(s.n, 2);
    assert_int_equal(seq, 2);
    assert_int_equal(pos, im->starts[2]);
    free(im);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_header_slots),
        cmocka_unit_test(test_replay_from_header_position),
        cmocka_unit_test(test_replay_unarmed_header),
        cmocka_unit_test(test_replay_finds_wrapped_record),
        cmocka_unit_test(test_replay_stops_at_torn_record),
        cmocka_unit_test(test_replay_needs_payload_crc),
        cmocka_unit_test(test_replay_ignores_older_lap),
        cmocka_unit_test(test_replay_apply_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
