/*
 * Everything that decodes bytes the partner sent (or left in the durable ring): change records,
 * ring record headers, the connect info, the durable ring header, a ring image replayed after
 * a crash, and the applier driven with the sequence numbers a partner chooses.
 *
 * The first byte picks the decoder (low 3 bits) and whether the harness repairs the CRCs first
 * (bit 7): without the repair the fuzzer rarely gets past the integrity checks, with it the
 * semantic checks behind them are reached. Beyond "no crash", each mode checks:
 * - what decodes re-encodes to the same bytes, which decode to the same fields;
 * - lengths and pointers reported stay inside the input;
 * - a refusal comes with its reason (change records);
 * - replay stays inside the ring, delivers records in sequence, and delivers every record of
 *   an intact image;
 * - the applier starts only records that conflict with no earlier unfinished one, always the
 *   oldest that may start, and its durable point and window agree with a plain model.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"
#include "rdma.h"
#include "twl_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define MODE_CHANGE  0
#define MODE_REC_HDR 1
#define MODE_INFO    2
#define MODE_DRING   3
#define MODE_REPLAY  4
#define MODE_BUILD   5 /* a ring image written as the sender does, then damaged */
#define MODE_APPLIER 6
#define FIX_CRC      0x80u

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_record: %s:%d: %s\n", __FILE__, __LINE__, #cond);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* Reads the input as a stream of numbers; zeros once it runs out. */
struct in {
    const uint8_t *p;
    size_t n;
};

static uint64_t take(struct in *in, int bytes)
{
    uint64_t v = 0;
    for (int i = 0; i < bytes; i++) {
        v <<= 8;
        if (in->n > 0) {
            v |= *in->p++;
            in->n--;
        }
    }
    return v;
}

/* A copy of exactly n bytes on the heap, so ASan sees a read past the end. */
static uint8_t *dup_exact(const uint8_t *p, size_t n)
{
    uint8_t *c = malloc(n ? n : 1);
    CHECK(c != NULL);
    if (n)
        memcpy(c, p, n);
    return c;
}

/* ---- change records ---- */

static struct twl_rdma_change ch, ch2;

static bool change_fields_equal(const struct twl_rdma_change *a, const struct twl_rdma_change *b)
{
    if (a->seq != b->seq || a->generation != b->generation || a->kind != b->kind ||
        a->lun != b->lun || a->lba != b->lba || a->blocks != b->blocks ||
        a->block_size != b->block_size || a->fua != b->fua || a->data_len != b->data_len ||
        a->extent_count != b->extent_count)
        return false;
    for (uint32_t i = 0; i < a->extent_count; i++)
        if (a->extents[i].lba != b->extents[i].lba || a->extents[i].blocks != b->extents[i].blocks)
            return false;
    return true;
}

static void fuzz_change(const uint8_t *p, size_t n, bool fix)
{
    uint8_t *rec = dup_exact(p, n);
    if (fix && n >= TWL_RDMA_CHANGE_FIXED_LEN) {
        size_t hl = twl_get_be16(rec + 6);
        if (hl >= TWL_RDMA_CHANGE_FIXED_LEN && hl <= n) {
            uint32_t crc = twl_crc32c_update(0, rec, 60);
            twl_put_be32(rec + 60, twl_crc32c_update(crc, rec + 64, hl - 64));
        }
    }
    const uint8_t *d = (const uint8_t *)1;
    int rc = twl_rdma_change_decode(rec, n, &ch, &d);
    if (rc != 0) {
        CHECK(rc == -EBADMSG || rc == -EPROTO);
        CHECK(ch.err[0] != '\0');
        CHECK(strlen(twl_rdma_change_strerror(&ch)) < sizeof(ch.err));
        CHECK(d == NULL);
        free(rec);
        return;
    }
    CHECK(ch.err[0] == '\0');
    char err[TWL_RDMA_CHANGE_ERR_LEN];
    CHECK(twl_rdma_change_check(&ch, err, sizeof(err)) == 0);
    size_t hl = twl_rdma_change_header_len(&ch);
    CHECK(hl <= n && ch.data_len == n - hl);
    CHECK(ch.extent_count <= TWL_RDMA_CHANGE_MAX_EXTENTS);
    if (ch.data_len > 0)
        CHECK(d == rec + hl);
    else
        CHECK(d == NULL);

    /* re-encoded, it is the same bytes (reserved bytes are refused, so nothing is lost) */
    uint8_t *again = malloc(n);
    CHECK(again != NULL);
    CHECK(twl_rdma_change_encode(&ch, d, again, n) == 0);
    CHECK(memcmp(again, rec, n) == 0);
    CHECK(twl_rdma_change_encode(&ch, d, again, n - 1) == -ENOSPC);
    const uint8_t *d2;
    CHECK(twl_rdma_change_decode(again, n, &ch2, &d2) == 0);
    CHECK(change_fields_equal(&ch, &ch2));
    free(again);
    free(rec);
}

/* ---- record header, connect info, durable ring header ---- */

static void fuzz_rec_hdr(const uint8_t *p, size_t n, bool fix)
{
    if (n < TWL_RDMA_REC_HDR_LEN)
        return;
    uint8_t *in = dup_exact(p, TWL_RDMA_REC_HDR_LEN);
    if (fix)
        twl_put_be32(in + 60, twl_crc32c(in, 60));
    struct twl_rdma_rec_hdr h, h2;
    int rc = twl_rdma_rec_hdr_decode(in, &h);
    if (rc != 0) {
        CHECK(rc == -EBADMSG);
        free(in);
        return;
    }
    uint8_t out[TWL_RDMA_REC_HDR_LEN];
    twl_rdma_rec_hdr_encode(out, &h);
    /* the fields are bytes 0..23; 24..59 are reserved (zero on the wire) */
    CHECK(memcmp(out, in, 24) == 0);
    CHECK(twl_rdma_rec_hdr_decode(out, &h2) == 0);
    CHECK(h.flags == h2.flags && h.seq == h2.seq && h.len == h2.len &&
          h.payload_crc == h2.payload_crc);
    free(in);
}

static void fuzz_info(const uint8_t *p, size_t n)
{
    uint8_t *in = dup_exact(p, n);
    struct twl_rdma_info info, info2;
    int rc = twl_rdma_info_decode(in, n, &info);
    if (rc != 0) {
        CHECK(rc == -EPROTO);
        free(in);
        return;
    }
    CHECK(n >= TWL_RDMA_INFO_LEN);
    CHECK(info.ring_size >= 2 * TWL_RDMA_REC_ALIGN && (info.ring_size & (info.ring_size - 1)) == 0);
    CHECK(info.recv_depth != 0);
    uint8_t out[TWL_RDMA_INFO_LEN];
    twl_rdma_info_encode(out, &info);
    CHECK(memcmp(out, in, TWL_RDMA_INFO_LEN) == 0);
    CHECK(twl_rdma_info_decode(out, sizeof(out), &info2) == 0);
    CHECK(info.ring_addr == info2.ring_addr && info.ring_rkey == info2.ring_rkey &&
          info.ring_size == info2.ring_size && info.ctrl_addr == info2.ctrl_addr &&
          info.ctrl_rkey == info2.ctrl_rkey && info.recv_depth == info2.recv_depth &&
          info.flags == info2.flags);
    free(in);
}

static void fuzz_dring(const uint8_t *p, size_t n, bool fix)
{
    if (n < 128)
        return;
    uint8_t *hdr = dup_exact(p, 128);
    if (fix) {
        twl_put_be32(hdr + 60, twl_crc32c(hdr, 60));
        twl_put_be32(hdr + 64 + 60, twl_crc32c(hdr + 64, 60));
    }
    struct twl_rdma_dring_state st, st2;
    int rc = twl_rdma_dring_read(hdr, &st);
    if (rc != 0) {
        CHECK(rc == -ENOENT);
        free(hdr);
        return;
    }
    CHECK(st.ring_size >= 2 * TWL_RDMA_REC_ALIGN && (st.ring_size & (st.ring_size - 1)) == 0);
    /* the state is one of the slots, re-encoded to the same bytes (40..59 are reserved,
     * read without a look) */
    uint8_t out[128];
    memset(out, 0, sizeof(out));
    twl_rdma_dring_write(out, &st);
    const uint8_t *slot = out + twl_rdma_dring_slot(&st);
    CHECK(memcmp(slot, hdr, 40) == 0 || memcmp(slot, hdr + 64, 40) == 0);
    CHECK(twl_rdma_dring_read(out, &st2) == 0 && memcmp(&st, &st2, sizeof(st)) == 0);
    /* the next state, written as the backplane does (epoch + 1, the other slot), is the one in
     * force afterwards, whatever the current one held */
    st2 = st;
    st2.epoch++;
    st2.pos += 64;
    st2.seq++;
    twl_rdma_dring_write(hdr, &st2);
    struct twl_rdma_dring_state st3;
    CHECK(twl_rdma_dring_read(hdr, &st3) == 0);
    CHECK(st3.epoch == st2.epoch && st3.pos == st2.pos && st3.seq == st2.seq);
    free(hdr);
}

/* ---- ring replay ---- */

struct replay_ctx {
    const uint8_t *ring;
    uint64_t rs;
    uint64_t next_seq;
    int64_t delivered;
    int64_t fail_at; /* the delivery that fails, or -1 */
};

static int replay_cb(void *ctx, const struct twl_rdma_rec_hdr *h, const void *payload)
{
    struct replay_ctx *c = ctx;
    const uint8_t *pl = payload;
    CHECK(h->seq == c->next_seq);
    CHECK((h->flags & TWL_RDMA_REC_CRC) == 0);
    /* header and payload inside the ring, header just before the payload */
    CHECK(pl >= c->ring + TWL_RDMA_REC_HDR_LEN && pl <= c->ring + c->rs);
    CHECK((uint64_t)(pl - c->ring) + h->len <= c->rs);
    CHECK(((uint64_t)(pl - c->ring) - TWL_RDMA_REC_HDR_LEN) % TWL_RDMA_REC_ALIGN == 0);
    CHECK(twl_crc32c(pl, h->len) == h->payload_crc);
    if (c->delivered == c->fail_at)
        return -EIO;
    c->delivered++;
    c->next_seq++;
    return 0;
}

/* Replays ring from (pos, seq) and checks what it says; returns the records delivered. */
static int64_t replay_checked(const uint8_t *ring, uint64_t rs, uint64_t pos, uint64_t seq,
                              int64_t fail_at)
{
    struct replay_ctx c = {.ring = ring, .rs = rs, .next_seq = seq, .fail_at = fail_at};
    uint64_t p = pos, s = seq;
    int64_t n = twl_rdma_ring_replay(ring, rs, &p, &s, replay_cb, &c);
    if (n < 0) {
        CHECK(n == -EIO && c.delivered == fail_at);
        CHECK(s == seq + (uint64_t)fail_at);
    } else {
        CHECK(n == c.delivered);
        CHECK(s == seq + (uint64_t)n);
        /* a record is at least one header: the position moved at least that far, and no
         * further than the records plus one skipped tail per lap could take it */
        CHECK(n == 0 || p - pos >= (uint64_t)n * TWL_RDMA_REC_HDR_LEN);
        if (n == 0)
            CHECK(p == pos);
    }
    return n;
}

static void fuzz_replay(const uint8_t *p, size_t n)
{
    struct in in = {p, n};
    uint64_t pos = take(&in, 8), seq = take(&in, 8);
    int64_t fail_at = (int64_t)take(&in, 1) - 1;
    if (in.n < 2 * TWL_RDMA_REC_ALIGN)
        return;
    uint64_t rs = 2 * TWL_RDMA_REC_ALIGN;
    while (rs * 2 <= in.n)
        rs *= 2;
    uint8_t *ring = dup_exact(in.p, rs);
    /* positions the sender could have had: aligned, far from wrapping 2^64 */
    pos = (pos >> 8) & ~(uint64_t)(TWL_RDMA_REC_ALIGN - 1);
    replay_checked(ring, rs, pos, seq, fail_at);
    free(ring);
}

/* Writes records as the sender does (placement, header, payload CRC), damages a few bytes, and
 * replays: an undamaged image whose records all fit in one ring delivers every one. */
static void fuzz_build(const uint8_t *p, size_t n)
{
    struct in in = {p, n};
    uint64_t rs = 128u << (take(&in, 1) % 8); /* 128 .. 16 KiB */
    uint64_t pos = (take(&in, 4) & ~(uint64_t)(TWL_RDMA_REC_ALIGN - 1));
    uint64_t seq = take(&in, 2);
    int64_t fail_at = (int64_t)take(&in, 1) - 1;
    uint32_t count = (uint32_t)take(&in, 1) % 64;
    uint8_t *ring = calloc(1, rs);
    CHECK(ring != NULL);
    uint64_t at = pos, s = seq;
    uint32_t written = 0;
    for (; written < count; written++) {
        uint32_t len = (uint32_t)take(&in, 2) % (uint32_t)(rs - TWL_RDMA_REC_HDR_LEN + 1);
        uint8_t fill = (uint8_t)take(&in, 1);
        uint64_t rl = twl_rdma_rec_len(len);
        uint64_t start = twl_rdma_ring_place(rs, at, rl);
        if (start + rl - pos > rs)
            break; /* it would overwrite the first record: the sender waits for space */
        uint8_t *r = ring + (start & (rs - 1));
        memset(r + TWL_RDMA_REC_HDR_LEN, fill, len);
        struct twl_rdma_rec_hdr h = {.flags = TWL_RDMA_REC_CRC | (uint32_t)(fill & 1),
                                     .seq = s,
                                     .len = len,
                                     .payload_crc = twl_crc32c(r + TWL_RDMA_REC_HDR_LEN, len)};
        twl_rdma_rec_hdr_encode(r, &h);
        at = start + rl;
        s++;
    }
    uint32_t damage = (uint32_t)take(&in, 1) % 4;
    for (uint32_t i = 0; i < damage; i++) {
        uint64_t off = take(&in, 2) % rs;
        ring[off] ^= (uint8_t)(take(&in, 1) | 1);
    }
    int64_t got = replay_checked(ring, rs, pos, seq, fail_at);
    if (damage == 0 && (fail_at < 0 || fail_at >= written))
        CHECK(got == written);
    else if (damage == 0)
        CHECK(got == -EIO);
    free(ring);
}

/* ---- the applier, against a plain model ---- */

#define MODEL_MAX 8192u

struct mrange {
    uint32_t lun;
    uint64_t lba, end;
    uint32_t flags;
};
struct mrec {
    uint64_t seq;
    uint32_t first, count; /* its ranges in model.ranges */
    int state;             /* 0 open, 1 pending, 2 running, 3 done */
};
static struct {
    struct mrec recs[MODEL_MAX];
    struct mrange ranges[4 * MODEL_MAX];
    uint32_t nrecs, nranges, tail; /* tail: the oldest not retired */
    uint64_t durable, last_seq;
} model;
static struct twl_rdma_applier applier;

static bool mranges_conflict(const struct mrange *x, const struct mrange *y)
{
    uint32_t f = x->flags | y->flags;
    if (f & TWL_RDMA_APPLY_BARRIER_ALL)
        return true;
    if (x->lun != y->lun)
        return false;
    if (f & TWL_RDMA_APPLY_BARRIER)
        return true;
    return x->lba < x->end && y->lba < y->end && x->lba < y->end && y->lba < x->end;
}

static bool mrecs_conflict(const struct mrec *x, const struct mrec *y)
{
    for (uint32_t i = 0; i < x->count; i++)
        for (uint32_t j = 0; j < y->count; j++)
            if (mranges_conflict(&model.ranges[x->first + i], &model.ranges[y->first + j]))
                return true;
    return false;
}

/* The oldest pending record no unfinished earlier one holds back, or -1. */
static int64_t model_ready(void)
{
    for (uint32_t i = model.tail; i < model.nrecs; i++) {
        if (model.recs[i].state != 1)
            continue;
        bool held = false;
        for (uint32_t j = model.tail; j < i && !held; j++)
            held = model.recs[j].state != 3 && mrecs_conflict(&model.recs[j], &model.recs[i]);
        if (!held)
            return i;
    }
    return -1;
}

static uint32_t model_window_ranges(void)
{
    return model.nranges -
           (model.tail < model.nrecs ? model.recs[model.tail].first : model.nranges);
}

/* What add should answer, and the model after it. */
static int model_add(uint64_t seq, uint32_t lun, uint64_t lba, uint32_t blocks, uint32_t flags)
{
    if (flags & ~(TWL_RDMA_APPLY_BARRIER | TWL_RDMA_APPLY_BARRIER_ALL | TWL_RDMA_APPLY_MORE))
        return -EINVAL;
    struct mrange rg = {.lun = lun, .lba = lba, .flags = flags & 3u};
    if (flags & TWL_RDMA_APPLY_BARRIER_ALL)
        rg = (struct mrange){.lun = 0, .lba = 0, .end = UINT64_MAX, .flags = rg.flags};
    else if (flags & TWL_RDMA_APPLY_BARRIER)
        rg.lba = 0, rg.end = UINT64_MAX;
    else if (lba > UINT64_MAX - blocks)
        return -EINVAL;
    else
        rg.end = lba + blocks;
    struct mrec *r;
    bool open = model.nrecs > model.tail && model.recs[model.nrecs - 1].state == 0;
    if (open) {
        r = &model.recs[model.nrecs - 1];
        if (seq != r->seq)
            return -EINVAL;
        if (model_window_ranges() >= TWL_RDMA_APPLIER_RANGES)
            return -ENOSPC;
    } else {
        if (seq <= model.last_seq)
            return -EINVAL;
        if (model.nrecs - model.tail >= TWL_RDMA_APPLIER_RECORDS ||
            model_window_ranges() >= TWL_RDMA_APPLIER_RANGES)
            return -ENOSPC;
        if (model.nrecs == MODEL_MAX || model.nranges == 4 * MODEL_MAX)
            return 1; /* the model is full: the harness stops adding */
        r = &model.recs[model.nrecs++];
        *r = (struct mrec){.seq = seq, .first = model.nranges, .state = 0};
        model.last_seq = seq;
    }
    if (model.nranges == 4 * MODEL_MAX)
        return 1;
    model.ranges[model.nranges++] = rg;
    r->count++;
    if (!(flags & TWL_RDMA_APPLY_MORE))
        r->state = 1;
    return 0;
}

static int64_t model_find(uint64_t seq)
{
    for (uint32_t i = model.tail; i < model.nrecs; i++)
        if (model.recs[i].seq == seq)
            return i;
    return -1;
}

static void fuzz_applier(const uint8_t *p, size_t n)
{
    struct in in = {p, n};
    uint64_t start = take(&in, 1) == 0xff ? UINT64_MAX - 300 : take(&in, 2);
    twl_rdma_applier_init(&applier, start);
    model.nrecs = model.nranges = model.tail = 0;
    model.durable = model.last_seq = start;
    static uint64_t running[TWL_RDMA_APPLIER_RECORDS];
    uint32_t nrunning = 0;
    while (in.n > 0) {
        uint8_t op = (uint8_t)take(&in, 1);
        switch (op % 4) {
        case 0:   /* add one range */
        case 1: { /* add a burst of narrow, disjoint single-range records */
            bool burst = op % 4 == 1;
            uint32_t reps = burst ? (uint32_t)take(&in, 1) * 4 : 1;
            uint8_t d = (uint8_t)take(&in, 1);
            uint32_t lun = (uint32_t)take(&in, 1) % 4;
            uint64_t lba = take(&in, 2) * 16;
            if (d & 0x40)
                lba = UINT64_MAX - (lba & 0xff);
            uint32_t blocks = (uint32_t)take(&in, 1);
            uint32_t flags = burst ? 0 : (uint32_t)(op >> 2) & 0xf;
            for (uint32_t k = 0; k < reps; k++) {
                uint64_t seq = model.last_seq + (burst ? 1 : (d & 3));
                if ((d & 0xb0) == 0xb0)
                    seq = take(&in, 8);
                uint64_t l = burst ? lba + 4096ull * k : lba;
                int want = model_add(seq, lun, l, blocks, flags);
                if (want == 1)
                    return;
                int got = twl_rdma_applier_add(&applier, seq, lun, l, blocks, flags);
                CHECK(got == want);
                if (got != 0)
                    break;
            }
            break;
        }
        case 2: { /* start what may start */
            uint64_t seq;
            int64_t want = model_ready();
            int rc = twl_rdma_applier_next(&applier, &seq);
            if (want < 0) {
                CHECK(rc == -EAGAIN);
                break;
            }
            CHECK(rc == 0 && seq == model.recs[want].seq);
            model.recs[want].state = 2;
            running[nrunning++] = seq;
            break;
        }
        case 3: { /* one is applied (or a seq that is not running) */
            uint8_t pick = (uint8_t)take(&in, 1);
            uint64_t seq;
            if (nrunning > 0 && pick < 0xf0) {
                seq = running[pick % nrunning];
            } else {
                seq = model.durable + (pick & 0xf) - 4;
            }
            int64_t i = model_find(seq);
            int want = i < 0 ? -ENOENT : model.recs[i].state != 2 ? -EINVAL : 0;
            CHECK(twl_rdma_applier_done(&applier, seq) == want);
            if (want != 0)
                break;
            for (uint32_t k = 0; k < nrunning; k++)
                if (running[k] == seq) {
                    running[k] = running[--nrunning];
                    break;
                }
            model.recs[i].state = 3;
            while (model.tail < model.nrecs && model.recs[model.tail].state == 3)
                model.durable = model.recs[model.tail++].seq;
            break;
        }
        }
        CHECK(twl_rdma_applier_durable(&applier) == model.durable);
        CHECK(twl_rdma_applier_count(&applier) == model.nrecs - model.tail);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size == 0)
        return 0;
    uint8_t sel = data[0];
    bool fix = (sel & FIX_CRC) != 0;
    const uint8_t *p = data + 1;
    size_t n = size - 1;
    switch (sel & 7u) {
    case MODE_CHANGE:
        fuzz_change(p, n, fix);
        break;
    case MODE_REC_HDR:
        fuzz_rec_hdr(p, n, fix);
        break;
    case MODE_INFO:
        fuzz_info(p, n);
        break;
    case MODE_DRING:
        fuzz_dring(p, n, fix);
        break;
    case MODE_REPLAY:
        fuzz_replay(p, n);
        break;
    case MODE_BUILD:
        fuzz_build(p, n);
        break;
    case MODE_APPLIER:
        fuzz_applier(p, n);
        break;
    default:
        break;
    }
    return 0;
}
