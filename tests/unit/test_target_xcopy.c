/* EXTENDED COPY (LID1) and RECEIVE COPY RESULTS against real sparse files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backing.h"
#include "scsi.h"
#include "twl_common.h"
#include "xcopy.h"

#define TARGET_NAME "iqn.2024-01.test.twinlun:xcopy"

/* LU 0 and 1: 512-byte blocks; LU 2: 4 KiB blocks, large enough for an over-long segment. */
#define LU_COUNT   3
#define LU0_BLOCKS 16384u
#define LU1_BLOCKS 8192u
#define LU2_BLOCKS 16384u

struct fixture {
    char dir[64];
    char path[LU_COUNT][128];
    struct backing store[LU_COUNT];
    struct scsi_lun info[LU_COUNT];
    struct xcopy_lu lus[LU_COUNT];
};

static int setup(void **state)
{
    static const uint32_t bs[LU_COUNT] = {512, 512, 4096};
    static const uint32_t blocks[LU_COUNT] = {LU0_BLOCKS, LU1_BLOCKS, LU2_BLOCKS};
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_target_xcopy.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    for (uint32_t i = 0; i < LU_COUNT; i++) {
        struct tgt_lun_config cfg = {0};
        cfg.id = i;
        snprintf(f->path[i], sizeof(f->path[i]), "%s/lun%u.img", f->dir, i);
        snprintf(cfg.path, sizeof(cfg.path), "%s", f->path[i]);
        cfg.size_bytes = (uint64_t)blocks[i] * bs[i];
        cfg.block_size = bs[i];
        cfg.create = true;
        cfg.thin = true;
        assert_int_equal(backing_open(&cfg, &f->store[i]), 0);
        struct scsi_lun *l = &f->info[i];
        l->id = i;
        l->block_count = blocks[i];
        l->block_size = bs[i];
        l->thin = true;
        l->write_cache = true;
        scsi_lun_derive_ids(l, TARGET_NAME);
        f->lus[i] = (struct xcopy_lu){.info = l, .store = &f->store[i]};
    }
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    for (int i = 0; i < LU_COUNT; i++) {
        backing_close(&f->store[i]);
        unlink(f->path[i]);
    }
    rmdir(f->dir);
    free(f);
    return 0;
}

/* ---------------- parameter list builder ---------------- */

struct plist {
    uint8_t b[2048];
    size_t off;
    size_t targets, segments;
};

static void pl_init(struct plist *p, uint8_t list_id, uint8_t usage)
{
    memset(p, 0, sizeof(*p));
    p->b[0] = list_id;
    p->b[1] = (uint8_t)(usage << 3);
    p->off = XCOPY_HEADER_LEN;
}

/* An identification descriptor naming l as VPD 83h does; returns it for tweaks. */
static uint8_t *pl_target(struct plist *p, const struct scsi_lun *l)
{
    uint8_t *d = p->b + p->off;
    d[0] = 0xe4;
    d[4] = 0x01; /* binary */
    d[5] = 0x03; /* LU, NAA */
    d[7] = 16;
    memcpy(d + 8, l->naa, 16);
    twl_put_be24(d + 29, l->block_size);
    p->off += 32;
    p->targets++;
    return d;
}

static uint8_t *pl_segment(struct plist *p, uint16_t src, uint16_t dst, uint16_t blocks,
                           uint64_t src_lba, uint64_t dst_lba)
{
    uint8_t *d = p->b + p->off;
    d[0] = 0x02;
    twl_put_be16(d + 2, 0x18);
    twl_put_be16(d + 4, src);
    twl_put_be16(d + 6, dst);
    twl_put_be16(d + 10, blocks);
    twl_put_be64(d + 12, src_lba);
    twl_put_be64(d + 20, dst_lba);
    p->off += 28;
    p->segments++;
    return d;
}

/* Fills the list lengths; returns the parameter list length. */
static size_t pl_finish(struct plist *p)
{
    twl_put_be16(p->b + 2, (uint16_t)(p->targets * 32));
    twl_put_be32(p->b + 8, (uint32_t)(p->segments * 28));
    return p->off;
}

/* ---------------- helpers ---------------- */

static void fresh_plan(struct scsi_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->status = SCSI_STATUS_GOOD;
}

static void assert_good(const struct scsi_plan *plan)
{
    assert_int_equal(plan->status, SCSI_STATUS_GOOD);
    assert_int_equal(plan->sense_len, 0);
}

static void assert_sense(const struct scsi_plan *plan, uint8_t key, uint16_t asc)
{
    assert_int_equal(plan->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(plan->sense_len, SCSI_SENSE_FIXED_LEN);
    assert_int_equal(plan->sense[0] & 0x7f, 0x70);
    assert_int_equal(plan->sense[2] & 0x0f, key);
    assert_int_equal(plan->sense[12], asc >> 8);
    assert_int_equal(plan->sense[13], asc & 0xff);
}

/* ILLEGAL REQUEST with a parameter-list field pointer (sks = byte 15 as expected). */
static void assert_param_field(const struct scsi_plan *plan, uint16_t asc, uint8_t sks,
                               uint16_t field)
{
    assert_sense(plan, SCSI_SENSE_ILLEGAL_REQUEST, asc);
    assert_int_equal(plan->sense[15], sks);
    assert_int_equal(twl_get_be16(plan->sense + 16), field);
}

/* COPY ABORTED for segment seg, pointing at field of its descriptor (-1: no pointer). */
static void assert_copy_aborted(const struct scsi_plan *plan, uint16_t asc, uint16_t seg, int field)
{
    assert_sense(plan, XCOPY_SENSE_COPY_ABORTED, asc);
    assert_int_equal(twl_get_be16(plan->sense + 10), seg);
    if (field >= 0) {
        assert_int_equal(plan->sense[15], 0xa0); /* SKSV, SD */
        assert_int_equal(twl_get_be16(plan->sense + 16), field);
    } else {
        assert_int_equal(plan->sense[15], 0);
    }
}

/* Parses p expecting a refusal; returns the plan. */
static struct scsi_plan refuse(struct fixture *f, const uint8_t *param, size_t len)
{
    struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    struct xcopy_list list;
    struct scsi_plan plan;
    fresh_plan(&plan);
    assert_int_equal(xcopy_parse(param, len, f->lus, LU_COUNT, segs, XCOPY_MAX_SEGMENT_DESCRIPTORS,
                                 &list, &plan),
                     -1);
    return plan;
}

/* A hash, so that no two blocks (of any LU tag) carry the same bytes: a copy from the wrong
 * offset cannot pass for the right one. */
static uint8_t stamp_byte(uint32_t tag, uint64_t lba, size_t i)
{
    uint32_t x = (uint32_t)lba * 0x9e3779b1u ^ tag * 0x85ebca6bu ^ (uint32_t)i * 0xc2b2ae35u;
    x ^= x >> 15;
    x *= 0x2c1b3c6du;
    x ^= x >> 12;
    return (uint8_t)x;
}

/* Writes a pattern that differs per LU tag, block and byte. */
static void stamp(struct backing *b, uint32_t bs, uint64_t lba, uint32_t blocks, uint32_t tag)
{
    uint8_t *buf = malloc((size_t)blocks * bs);
    assert_non_null(buf);
    for (uint32_t k = 0; k < blocks; k++)
        for (size_t i = 0; i < bs; i++)
            buf[(size_t)k * bs + i] = stamp_byte(tag, lba + k, i);
    assert_int_equal(backing_write_at(b, buf, (size_t)blocks * bs, lba * bs, false), 0);
    free(buf);
}

/* Checks that [lba, lba + blocks) holds the pattern stamped at src_lba with tag. */
static void assert_stamped(struct backing *b, uint32_t bs, uint64_t lba, uint32_t blocks,
                           uint64_t src_lba, uint32_t tag)
{
    uint8_t *buf = malloc((size_t)blocks * bs);
    assert_non_null(buf);
    assert_int_equal(backing_read_at(b, buf, (size_t)blocks * bs, lba * bs), 0);
    for (uint32_t k = 0; k < blocks; k++)
        for (size_t i = 0; i < bs; i++)
            if (buf[(size_t)k * bs + i] != stamp_byte(tag, src_lba + k, i))
                fail_msg("block %llu byte %zu differs", (unsigned long long)(lba + k), i);
    free(buf);
}

static void assert_zero(struct backing *b, uint32_t bs, uint64_t lba, uint32_t blocks)
{
    uint8_t *buf = malloc((size_t)blocks * bs);
    assert_non_null(buf);
    assert_int_equal(backing_read_at(b, buf, (size_t)blocks * bs, lba * bs), 0);
    for (size_t i = 0; i < (size_t)blocks * bs; i++)
        if (buf[i] != 0)
            fail_msg("byte %zu from LBA %llu is not zero", i, (unsigned long long)lba);
    free(buf);
}

/* Parses and carries out p; expects success. */
static void run_copy(struct fixture *f, struct plist *p, size_t len, int expect_segments,
                     struct xcopy_progress *done)
{
    struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    struct xcopy_list list;
    struct scsi_plan plan;
    fresh_plan(&plan);
    int n =
        xcopy_parse(p->b, len, f->lus, LU_COUNT, segs, XCOPY_MAX_SEGMENT_DESCRIPTORS, &list, &plan);
    assert_int_equal(n, expect_segments);
    assert_good(&plan);
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, done);
    assert_good(&plan);
}

/* ---------------- copies ---------------- */

/* What the libiscsi ExtendedCopy.Simple test does: 2048 blocks from LBA 0 to the end. */
static void copy_within_lu(void **state)
{
    struct fixture *f = *state;
    stamp(&f->store[0], 512, 0, 2048, 1);
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_NO_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    struct xcopy_progress done;
    run_copy(f, &p, pl_finish(&p), 1, &done);
    assert_int_equal(done.segments, 1);
    assert_int_equal(done.bytes, 2048u * 512);
    assert_stamped(&f->store[0], 512, LU0_BLOCKS - 2048, 2048, 0, 1);
    assert_stamped(&f->store[0], 512, 0, 2048, 0, 1);               /* source intact */
    assert_zero(&f->store[0], 512, LU0_BLOCKS - 2049, 1);           /* nothing before */
    assert_zero(&f->store[0], 512, 2048, LU0_BLOCKS - 2048 - 2048); /* nor between */
}

static void copy_between_lus(void **state)
{
    struct fixture *f = *state;
    stamp(&f->store[0], 512, 100, 300, 1);
    stamp(&f->store[1], 512, 10, 20, 2);
    struct plist p;
    pl_init(&p, 7, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[1]); /* descriptor 0: LU 1 */
    pl_target(&p, &f->info[0]); /* descriptor 1: LU 0 */
    pl_segment(&p, 1, 0, 300, 100, 5000);
    pl_segment(&p, 0, 1, 20, 10, 9000);
    struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    struct xcopy_list list;
    struct scsi_plan plan;
    fresh_plan(&plan);
    int n = xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, XCOPY_MAX_SEGMENT_DESCRIPTORS,
                        &list, &plan);
    assert_int_equal(n, 2);
    assert_int_equal(list.id, 7);
    assert_int_equal(list.usage, XCOPY_LIST_HOLD);
    /* indexes into lus, not into the descriptor list */
    assert_int_equal(segs[0].src, 0);
    assert_int_equal(segs[0].dst, 1);
    assert_int_equal(segs[0].src_lba, 100);
    assert_int_equal(segs[0].dst_lba, 5000);
    assert_int_equal(segs[0].blocks, 300);
    assert_int_equal(segs[1].src, 1);
    assert_int_equal(segs[1].dst, 0);
    struct xcopy_progress done;
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, &done);
    assert_good(&plan);
    assert_int_equal(done.segments, 2);
    assert_int_equal(done.bytes, 320u * 512);
    assert_stamped(&f->store[1], 512, 5000, 300, 100, 1);
    assert_stamped(&f->store[0], 512, 9000, 20, 10, 2);
    assert_zero(&f->store[1], 512, 4999, 1);
    assert_zero(&f->store[1], 512, 5300, 1);
}

struct chunk_log {
    int calls;
    int fail_at; /* call number that fails, 0 never */
    struct xcopy_chunk c[16];
};

static int log_chunk(void *ctx, const struct xcopy_chunk *c)
{
    struct chunk_log *log = ctx;
    if (log->calls < 16)
        log->c[log->calls] = *c;
    log->calls++;
    return log->calls == log->fail_at ? -EIO : 0;
}

/* A segment larger than a step goes in 1 MiB pieces, each reported for the replica. */
static void copy_in_steps(void **state)
{
    struct fixture *f = *state;
    stamp(&f->store[0], 512, 0, 6145, 3);
    f->info[1].write_cache = false; /* every write FUA */
    struct plist p;
    pl_init(&p, 0, XCOPY_LIST_NONE);
    pl_target(&p, &f->info[0]);
    pl_target(&p, &f->info[1]);
    pl_segment(&p, 0, 1, 6145, 0, 1000);
    struct xcopy_segment segs[4];
    struct xcopy_list list;
    struct scsi_plan plan;
    fresh_plan(&plan);
    int n = xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, 4, &list, &plan);
    assert_int_equal(n, 1);
    assert_int_equal(list.usage, XCOPY_LIST_NONE);
    struct chunk_log log = {0};
    struct xcopy_progress done;
    xcopy_execute(f->lus, segs, n, log_chunk, &log, &plan, &done);
    assert_good(&plan);
    assert_int_equal(log.calls, 4);
    for (int i = 0; i < 4; i++) {
        assert_int_equal(log.c[i].seg, 0);
        assert_int_equal(log.c[i].lu, 1);
        assert_int_equal(log.c[i].lba, 1000 + 2048u * i);
        assert_int_equal(log.c[i].blocks, i < 3 ? 2048 : 1);
        assert_int_equal(log.c[i].block_size, 512);
        assert_true(log.c[i].fua);
        assert_non_null(log.c[i].data);
    }
    assert_int_equal(done.bytes, 6145u * 512);
    assert_stamped(&f->store[1], 512, 1000, 6145, 0, 3);
    assert_zero(&f->store[1], 512, 7145, 1);

    /* the same by hand, one step at a time */
    uint8_t *buf = aligned_alloc(4096, XCOPY_STEP_BYTES);
    assert_non_null(buf);
    struct xcopy_cursor cur = {0};
    struct xcopy_chunk c;
    int steps = 0;
    while (xcopy_step(f->lus, segs, n, &cur, buf, &c, &plan) == 1)
        steps++;
    assert_int_equal(steps, 4);
    assert_int_equal(cur.done.segments, 1);
    assert_int_equal(cur.done.bytes, 6145u * 512);
    assert_int_equal(xcopy_step(f->lus, segs, n, &cur, buf, &c, &plan), 0);
    assert_good(&plan);
    free(buf);
}

/* Overlapping ranges on one LU come out as if the source had been read first, both ways. */
static void copy_overlapping(void **state)
{
    struct fixture *f = *state;
    stamp(&f->store[0], 512, 0, 5120, 4);
    struct plist p;
    pl_init(&p, 0, XCOPY_LIST_NONE);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 4096, 0, 1024); /* up by 512 KiB, 2 MiB long: 3 steps */
    struct xcopy_progress done;
    run_copy(f, &p, pl_finish(&p), 1, &done);
    assert_stamped(&f->store[0], 512, 0, 1024, 0, 4);
    assert_stamped(&f->store[0], 512, 1024, 4096, 0, 4);

    stamp(&f->store[0], 512, 0, 5120, 5);
    pl_init(&p, 0, XCOPY_LIST_NONE);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 4096, 1024, 0); /* down */
    run_copy(f, &p, pl_finish(&p), 1, &done);
    assert_stamped(&f->store[0], 512, 0, 4096, 1024, 5);
    assert_stamped(&f->store[0], 512, 4096, 1024, 4096, 5);
}

static void empty_lists(void **state)
{
    struct fixture *f = *state;
    struct xcopy_segment segs[2];
    struct xcopy_list list = {.id = 9, .usage = XCOPY_LIST_HOLD};
    struct scsi_plan plan;
    fresh_plan(&plan);
    /* PARAMETER LIST LENGTH 0: nothing to do, GOOD (libiscsi ExtendedCopy.Param) */
    assert_int_equal(xcopy_parse(NULL, 0, f->lus, LU_COUNT, segs, 2, &list, &plan), 0);
    assert_good(&plan);
    assert_int_equal(list.usage, XCOPY_LIST_NONE);
    struct xcopy_progress done = {.segments = 3};
    xcopy_execute(f->lus, segs, 0, NULL, NULL, &plan, &done);
    assert_good(&plan);
    assert_int_equal(done.segments, 0);
    assert_int_equal(done.bytes, 0);

    /* a header without descriptors is a list with nothing to copy */
    struct plist p;
    pl_init(&p, 4, XCOPY_LIST_HOLD);
    assert_int_equal(xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, 2, &list, &plan), 0);
    assert_good(&plan);
    assert_int_equal(list.id, 4);
    assert_int_equal(list.usage, XCOPY_LIST_HOLD);

    /* descriptors that no segment uses need not name one of our LUs */
    pl_init(&p, 4, XCOPY_LIST_HOLD);
    uint8_t *d = pl_target(&p, &f->info[0]);
    d[8] ^= 0xff;
    assert_int_equal(xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, 2, &list, &plan), 0);
    assert_good(&plan);
}

/* ---------------- refusals ---------------- */

static void truncated_lists(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    size_t len = pl_finish(&p);
    assert_int_equal(len, 16 + 32 + 28);

    struct scsi_plan plan = refuse(f, p.b, 10); /* not even a header */
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
    plan = refuse(f, p.b, 16 + 32 - 1); /* cuts the target descriptor */
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
    plan = refuse(f, p.b, len - 1); /* cuts the segment descriptor */
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);

    /* lists longer than MAXIMUM DESCRIPTOR LIST LENGTH, even when all bytes are there */
    pl_init(&p, 3, XCOPY_LIST_HOLD);
    for (int i = 0; i < XCOPY_MAX_TARGET_DESCRIPTORS + 1; i++)
        pl_target(&p, &f->info[0]);
    for (int i = 0; i < XCOPY_MAX_SEGMENT_DESCRIPTORS + 1; i++)
        pl_segment(&p, 0, 0, 1, 0, 1);
    len = pl_finish(&p);
    assert_true(len - XCOPY_HEADER_LEN > XCOPY_MAX_DESC_LIST_LEN);
    plan = refuse(f, p.b, len);
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
    /* a header claiming lists far beyond what was sent */
    pl_init(&p, 0, XCOPY_LIST_NONE);
    twl_put_be32(p.b + 8, 0xffffffffu);
    plan = refuse(f, p.b, 16);
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
}

/* libiscsi ExtendedCopy.DescrType */
static void unsupported_descriptor_types(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    uint8_t *d = pl_target(&p, &f->info[0]);
    d[0] = 0xe0; /* Fibre Channel N_Port_Name */
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    struct scsi_plan plan = refuse(f, p.b, pl_finish(&p));
    assert_param_field(&plan, XCOPY_ASC_UNSUPPORTED_TARGET, 0x80, 16);

    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    d = p.b + p.off;
    d[0] = 0x03; /* stream to stream, 20 bytes */
    twl_put_be16(d + 2, 0x10);
    p.off += 20;
    twl_put_be16(p.b + 2, 32);
    twl_put_be32(p.b + 8, 20);
    plan = refuse(f, p.b, p.off);
    assert_param_field(&plan, XCOPY_ASC_UNSUPPORTED_SEGMENT, 0x80, 48);
}

/* libiscsi ExtendedCopy.DescrLimits */
static void too_many_descriptors(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    for (int i = 0; i < XCOPY_MAX_TARGET_DESCRIPTORS + 1; i++)
        pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    struct scsi_plan plan = refuse(f, p.b, pl_finish(&p));
    assert_param_field(&plan, XCOPY_ASC_TOO_MANY_TARGETS, 0x80,
                       16 + 32 * XCOPY_MAX_TARGET_DESCRIPTORS);

    pl_init(&p, 2, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    for (int i = 0; i < XCOPY_MAX_SEGMENT_DESCRIPTORS + 1; i++)
        pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_param_field(&plan, XCOPY_ASC_TOO_MANY_SEGMENTS, 0x80,
                       16 + 32 + 28 * XCOPY_MAX_SEGMENT_DESCRIPTORS);

    /* a smaller segment array lowers the limit */
    pl_init(&p, 2, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    for (int i = 0; i < 3; i++)
        pl_segment(&p, 0, 0, 1, 0, 1);
    struct xcopy_segment segs[2];
    struct xcopy_list list;
    fresh_plan(&plan);
    assert_int_equal(xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, 2, &list, &plan), -1);
    assert_param_field(&plan, XCOPY_ASC_TOO_MANY_SEGMENTS, 0x80, 16 + 32 + 2 * 28);

    /* exactly the maximum of both is fine */
    pl_init(&p, 2, XCOPY_LIST_HOLD);
    for (int i = 0; i < XCOPY_MAX_TARGET_DESCRIPTORS; i++)
        pl_target(&p, &f->info[i % 2]);
    for (int i = 0; i < XCOPY_MAX_SEGMENT_DESCRIPTORS; i++)
        pl_segment(&p, 0, 1, 1, (uint64_t)i, (uint64_t)i);
    size_t len = pl_finish(&p);
    assert_int_equal(len, XCOPY_MAX_PARAM_LEN);
    struct xcopy_segment all[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    fresh_plan(&plan);
    assert_int_equal(
        xcopy_parse(p.b, len, f->lus, LU_COUNT, all, XCOPY_MAX_SEGMENT_DESCRIPTORS, &list, &plan),
        XCOPY_MAX_SEGMENT_DESCRIPTORS);
    assert_good(&plan);
}

/* libiscsi ExtendedCopy.ValidTgtDescr and the other checks of a target descriptor */
static void target_descriptor_fields(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    struct scsi_plan plan;

    /* LU ID TYPE 10b: E4h has no LU IDENTIFIER, so it is ignored (libiscsi 1.19 wants GOOD) */
    struct xcopy_progress done;
    stamp(&f->store[0], 512, 0, 2048, 9);
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    uint8_t *d = pl_target(&p, &f->info[0]);
    d[1] = 0x80;
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    run_copy(f, &p, pl_finish(&p), 1, &done);
    assert_stamped(&f->store[0], 512, LU0_BLOCKS - 2048, 2048, 0, 9);

    /* NUL */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    d = pl_target(&p, &f->info[0]);
    d[1] = 0x20;
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_TARGET_NOT_REACHABLE, 0, 4);

    /* a designator no LU of the target has */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    d = pl_target(&p, &f->info[1]);
    d[23] ^= 0x01;
    pl_segment(&p, 0, 1, 8, 0, 0);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_TARGET_NOT_REACHABLE, 0, 6);

    /* the right bytes in another designator form (EUI-64 type) do not name the LU */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    d = pl_target(&p, &f->info[0]);
    d[5] = 0x02;
    pl_segment(&p, 0, 0, 8, 0, 8);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_TARGET_NOT_REACHABLE, 0, 4);

    /* a designator longer than the descriptor holds */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    d = pl_target(&p, &f->info[0]);
    d[7] = 21;
    pl_segment(&p, 0, 0, 8, 0, 8);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 16 + 7);

    /* our LU claimed to be another device type */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    d = pl_target(&p, &f->info[0]);
    d[1] = 0x01;
    pl_segment(&p, 0, 0, 8, 0, 8);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_INCORRECT_TARGET_TYPE, 0, 4);

    /* a wrong DISK BLOCK LENGTH; 0 leaves it to us */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    d = pl_target(&p, &f->info[0]);
    twl_put_be24(d + 29, 4096);
    pl_segment(&p, 0, 0, 8, 0, 8);
    size_t len = pl_finish(&p);
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 16 + 29);
    twl_put_be24(d + 29, 0);
    run_copy(f, &p, len, 1, &done);

    /* the target list length cuts a descriptor */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    p.b[p.off] = 0xe4;
    p.off += 8;
    twl_put_be16(p.b + 2, 40);
    plan = refuse(f, p.b, p.off);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 2);
}

/* libiscsi ExtendedCopy.ValidSegDescr and the other checks of a segment descriptor */
static void segment_descriptor_fields(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    struct scsi_plan plan;

    /* a DESTINATION CSCD DESCRIPTOR ID past the target list */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 1, 2048, 0, LU0_BLOCKS - 2048);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_TARGET_NOT_REACHABLE, 0, 6);

    /* beyond the end of the destination, in the second segment */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 1);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_copy_aborted(&plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, 1, 20);

    /* beyond the end of the source, and an LBA that would wrap */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    uint8_t *d = pl_segment(&p, 0, 0, 2, LU0_BLOCKS - 1, 0);
    size_t len = pl_finish(&p);
    plan = refuse(f, p.b, len);
    assert_copy_aborted(&plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, 0, 12);
    twl_put_be64(d + 12, UINT64_MAX);
    plan = refuse(f, p.b, len);
    assert_copy_aborted(&plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, 0, 12);
    twl_put_be64(d + 12, 0);
    twl_put_be64(d + 20, UINT64_MAX - 1);
    plan = refuse(f, p.b, len);
    assert_copy_aborted(&plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, 0, 20);

    /* up to the last block, and 0 blocks at the end, are fine */
    twl_put_be64(d + 20, LU0_BLOCKS - 2);
    struct xcopy_progress done;
    run_copy(f, &p, len, 1, &done);
    twl_put_be16(d + 10, 0);
    twl_put_be64(d + 12, LU0_BLOCKS);
    twl_put_be64(d + 20, LU0_BLOCKS);
    run_copy(f, &p, len, 1, &done);
    assert_int_equal(done.segments, 1);
    assert_int_equal(done.bytes, 0);

    /* a wrong DESCRIPTOR LENGTH */
    twl_put_be16(d + 2, 0x14);
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 48 + 2);

    /* the segment list length cuts a descriptor */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 1, 0, 1);
    len = pl_finish(&p);
    twl_put_be32(p.b + 8, 20);
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 8);
    twl_put_be32(p.b + 8, 30);
    plan = refuse(f, p.b, len + 2);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 8);

    /* LUs of different block sizes */
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_target(&p, &f->info[2]);
    pl_segment(&p, 0, 1, 8, 0, 0);
    plan = refuse(f, p.b, pl_finish(&p));
    assert_param_field(&plan, XCOPY_ASC_INVALID_COPY_OPERATION, 0x80, 80 + 6);

    /* a segment longer than MAXIMUM SEGMENT LENGTH (4 KiB blocks) */
    uint32_t max_blocks = XCOPY_MAX_SEGMENT_BYTES / 4096;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[2]);
    d = pl_segment(&p, 0, 0, (uint16_t)(max_blocks + 1), 0, max_blocks - 1);
    len = pl_finish(&p);
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 48 + 10);
    twl_put_be16(d + 10, (uint16_t)max_blocks);
    twl_put_be64(d + 20, LU2_BLOCKS - max_blocks);
    stamp(&f->store[2], 4096, 0, 16, 6);
    run_copy(f, &p, len, 1, &done);
    assert_int_equal(done.bytes, XCOPY_MAX_SEGMENT_BYTES);
    assert_stamped(&f->store[2], 4096, LU2_BLOCKS - max_blocks, 16, 0, 6);

    /* a read-only destination; a read-only source is fine */
    f->info[1].read_only = true;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_target(&p, &f->info[1]);
    d = pl_segment(&p, 0, 1, 8, 0, 0);
    len = pl_finish(&p);
    plan = refuse(f, p.b, len);
    assert_sense(&plan, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
    twl_put_be16(d + 4, 1);
    twl_put_be16(d + 6, 0);
    run_copy(f, &p, len, 1, &done);
}

static void header_fields(void **state)
{
    struct fixture *f = *state;
    struct plist p;
    struct scsi_plan plan;

    /* LIST ID USAGE 01b is reserved */
    pl_init(&p, 1, 1);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 1, 0, 1);
    size_t len = pl_finish(&p);
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x8c, 1);

    /* 11b takes no list identifier */
    p.b[1] = 3 << 3;
    plan = refuse(f, p.b, len);
    assert_param_field(&plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0x80, 0);
    p.b[0] = 0;
    struct xcopy_progress done;
    run_copy(f, &p, len, 1, &done);

    /* STR and PRIORITY are hints */
    p.b[1] = 0x20 | (XCOPY_LIST_NO_HOLD << 3) | 0x07;
    p.b[0] = 9;
    run_copy(f, &p, len, 1, &done);

    /* inline data: no segment type that uses it is supported */
    twl_put_be32(p.b + 12, 4);
    plan = refuse(f, p.b, len + 4);
    assert_param_field(&plan, XCOPY_ASC_INLINE_DATA_EXCEEDED, 0x80, 12);
}

/* ---------------- failures while copying ---------------- */

/* Swaps a store's descriptor for one opened with flags; returns the old one. */
static int reopen_store(struct fixture *f, int lu, int flags)
{
    int old = f->store[lu].fd;
    f->store[lu].fd = open(f->path[lu], flags);
    assert_true(f->store[lu].fd >= 0);
    return old;
}

static void restore_store(struct fixture *f, int lu, int old)
{
    close(f->store[lu].fd);
    f->store[lu].fd = old;
}

static void io_errors_abort_the_copy(void **state)
{
    struct fixture *f = *state;
    stamp(&f->store[0], 512, 0, 64, 7);
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_target(&p, &f->info[1]);
    pl_segment(&p, 0, 0, 16, 0, 100);
    pl_segment(&p, 0, 1, 16, 16, 200);
    struct xcopy_segment segs[4];
    struct xcopy_list list;
    struct scsi_plan plan;
    fresh_plan(&plan);
    int n = xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, 4, &list, &plan);
    assert_int_equal(n, 2);

    /* the destination of segment 1 refuses writes */
    int old = reopen_store(f, 1, O_RDONLY);
    struct xcopy_progress done;
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, &done);
    restore_store(f, 1, old);
    assert_copy_aborted(&plan, SCSI_ASC_WRITE_ERROR, 1, -1);
    assert_int_equal(done.segments, 1);
    assert_int_equal(done.bytes, 16u * 512);
    assert_stamped(&f->store[0], 512, 100, 16, 0, 7);

    /* the source of segment 0 refuses reads */
    old = reopen_store(f, 0, O_WRONLY);
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, &done);
    restore_store(f, 0, old);
    assert_copy_aborted(&plan, SCSI_ASC_READ_ERROR, 0, -1);
    assert_int_equal(done.segments, 0);
    assert_int_equal(done.bytes, 0);

    /* the replica of the second chunk fails */
    struct chunk_log log = {.fail_at = 2};
    xcopy_execute(f->lus, segs, n, log_chunk, &log, &plan, &done);
    assert_copy_aborted(&plan, SCSI_ASC_WRITE_ERROR, 1, -1);
    assert_int_equal(log.calls, 2);
    assert_int_equal(log.c[1].lu, 1);
    assert_int_equal(log.c[1].lba, 200);

    /* and everything works again */
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, &done);
    assert_good(&plan);
    assert_int_equal(done.segments, 2);
    assert_stamped(&f->store[1], 512, 200, 16, 16, 7);
}

/* ---------------- RECEIVE COPY RESULTS ---------------- */

static void rcr_cdb(uint8_t *cdb, uint8_t sa, uint8_t list_id, uint32_t alloc)
{
    memset(cdb, 0, 16);
    cdb[0] = XCOPY_RCR_OPCODE;
    cdb[1] = sa;
    cdb[2] = list_id;
    twl_put_be32(cdb + 10, alloc);
}

static void operating_parameters_layout(void **state)
{
    (void)state;
    static const uint8_t expect[XCOPY_OP_PARAMS_LEN] = {
        0,    0,    0,    42,   /* AVAILABLE DATA */
        0x01, 0,    0,    0,    /* SNLID */
        0,    8,                /* MAXIMUM TARGET DESCRIPTOR COUNT */
        0,    16,               /* MAXIMUM SEGMENT DESCRIPTOR COUNT */
        0,    0,    0x02, 0xc0, /* MAXIMUM DESCRIPTOR LIST LENGTH: 704 */
        0x02, 0,    0,    0,    /* MAXIMUM SEGMENT LENGTH: 32 MiB */
        0,    0,    0,    0,    /* MAXIMUM INLINE DATA LENGTH */
        0,    0,    0,    0,    /* HELD DATA LIMIT */
        0,    0,    0,    0,    /* MAXIMUM STREAM DEVICE TRANSFER SIZE */
        0,    0,    0,    8,    /* reserved, TOTAL CONCURRENT COPIES */
        8,    9,    0,    0,    /* MAXIMUM CONCURRENT COPIES, granularities (log2) */
        0,    0,    0,    2,    /* IMPLEMENTED DESCRIPTOR LIST LENGTH */
        0x02, 0xe4,             /* block to block, identification descriptor */
    };
    uint8_t cdb[16], buf[256];
    struct scsi_plan plan;
    fresh_plan(&plan);
    rcr_cdb(cdb, XCOPY_RCR_OP_PARAMS, 0, 1024);
    memset(buf, 0xaa, sizeof(buf));
    xcopy_receive_results(cdb, NULL, buf, sizeof(buf), &plan);
    assert_good(&plan);
    assert_int_equal(plan.data_len, XCOPY_OP_PARAMS_LEN);
    assert_memory_equal(buf, expect, sizeof(expect));
    assert_int_equal(buf[XCOPY_OP_PARAMS_LEN], 0xaa);

    /* clipped to the allocation length and to the buffer; the header still tells all */
    rcr_cdb(cdb, XCOPY_RCR_OP_PARAMS, 0, 10);
    memset(buf, 0xaa, sizeof(buf));
    xcopy_receive_results(cdb, NULL, buf, sizeof(buf), &plan);
    assert_int_equal(plan.data_len, 10);
    assert_memory_equal(buf, expect, 10);
    assert_int_equal(buf[10], 0xaa);
    rcr_cdb(cdb, XCOPY_RCR_OP_PARAMS, 0, 1024);
    xcopy_receive_results(cdb, NULL, buf, 20, &plan);
    assert_int_equal(plan.data_len, 20);
    rcr_cdb(cdb, XCOPY_RCR_OP_PARAMS, 0, 0);
    xcopy_receive_results(cdb, NULL, buf, sizeof(buf), &plan);
    assert_good(&plan);
    assert_int_equal(plan.data_len, 0);

    /* RECEIVE DATA and FAILED SEGMENT DETAILS hold nothing here */
    rcr_cdb(cdb, 0x01, 0, 1024);
    xcopy_receive_results(cdb, NULL, buf, sizeof(buf), &plan);
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(plan.sense[15], 0xcc);
    assert_int_equal(twl_get_be16(plan.sense + 16), 1);
}

/* Asks COPY STATUS of id; returns the plan, the response in out. */
static struct scsi_plan copy_status_of(struct xcopy_history *h, uint8_t id, uint8_t *out,
                                       uint32_t alloc)
{
    uint8_t cdb[16];
    struct scsi_plan plan;
    fresh_plan(&plan);
    rcr_cdb(cdb, XCOPY_RCR_COPY_STATUS, id, alloc);
    xcopy_receive_results(cdb, h, out, 64, &plan);
    return plan;
}

static void assert_no_such_copy(const struct scsi_plan *plan)
{
    assert_sense(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    assert_int_equal(plan->sense[15], 0xc0);
    assert_int_equal(twl_get_be16(plan->sense + 16), 2);
}

/* libiscsi ReceiveCopyResults.CopyStatus, end to end */
static void copy_status_after_copy(void **state)
{
    struct fixture *f = *state;
    struct xcopy_history h;
    xcopy_history_init(&h);
    uint8_t out[64];
    struct scsi_plan plan = copy_status_of(&h, 1, out, 1024);
    assert_no_such_copy(&plan);
    plan = copy_status_of(NULL, 1, out, 1024);
    assert_no_such_copy(&plan);

    stamp(&f->store[0], 512, 0, 2048, 8);
    struct plist p;
    pl_init(&p, 1, XCOPY_LIST_HOLD);
    pl_target(&p, &f->info[0]);
    pl_segment(&p, 0, 0, 2048, 0, LU0_BLOCKS - 2048);
    struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    struct xcopy_list list;
    fresh_plan(&plan);
    int n = xcopy_parse(p.b, pl_finish(&p), f->lus, LU_COUNT, segs, XCOPY_MAX_SEGMENT_DESCRIPTORS,
                        &list, &plan);
    assert_int_equal(n, 1);
    assert_int_equal(xcopy_history_begin(&h, &list, &plan), 0);

    /* while it runs */
    plan = copy_status_of(&h, 1, out, 1024);
    assert_good(&plan);
    assert_int_equal(plan.data_len, XCOPY_COPY_STATUS_LEN);
    assert_int_equal(out[4], 0x00);

    struct xcopy_progress done;
    xcopy_execute(f->lus, segs, n, NULL, NULL, &plan, &done);
    assert_good(&plan);
    xcopy_history_finish(&h, &list, plan.status != SCSI_STATUS_GOOD, &done);
    assert_stamped(&f->store[0], 512, LU0_BLOCKS - 2048, 2048, 0, 8);

    /* a partial read leaves it there */
    plan = copy_status_of(&h, 1, out, 4);
    assert_good(&plan);
    assert_int_equal(plan.data_len, 4);
    assert_int_equal(twl_get_be32(out), 8);

    static const uint8_t expect[XCOPY_COPY_STATUS_LEN] = {
        0,    0,    0,    8,   /* AVAILABLE DATA */
        0x01,                  /* completed without errors */
        0,    1,               /* SEGMENTS PROCESSED */
        0x00,                  /* TRANSFER COUNT UNITS: bytes */
        0x00, 0x10, 0x00, 0x00 /* 1 MiB */
    };
    plan = copy_status_of(&h, 1, out, 1024);
    assert_good(&plan);
    assert_int_equal(plan.data_len, XCOPY_COPY_STATUS_LEN);
    assert_memory_equal(out, expect, sizeof(expect));
    /* reported once, then forgotten */
    plan = copy_status_of(&h, 1, out, 1024);
    assert_no_such_copy(&plan);
}

static void copy_status_bookkeeping(void **state)
{
    (void)state;
    struct xcopy_history h;
    xcopy_history_init(&h);
    uint8_t out[64];
    struct scsi_plan plan;
    fresh_plan(&plan);
    struct xcopy_list held = {.id = 5, .usage = XCOPY_LIST_HOLD};
    struct xcopy_list loose = {.id = 6, .usage = XCOPY_LIST_NO_HOLD};
    struct xcopy_list none = {.id = 0, .usage = XCOPY_LIST_NONE};

    /* the same list identifier twice while the first runs */
    assert_int_equal(xcopy_history_begin(&h, &held, &plan), 0);
    assert_int_equal(xcopy_history_begin(&h, &held, &plan), -1);
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, XCOPY_ASC_OPERATION_IN_PROGRESS);

    /* a failed copy, with a count too large for bytes */
    struct xcopy_progress big = {.segments = 3, .bytes = 5ull << 30};
    xcopy_history_finish(&h, &held, true, &big);
    plan = copy_status_of(&h, 5, out, 1024);
    assert_good(&plan);
    assert_int_equal(out[4], 0x02);
    assert_int_equal(twl_get_be16(out + 5), 3);
    assert_int_equal(out[7], 0x01); /* KiB */
    assert_int_equal(twl_get_be32(out + 8), 5u << 20);

    /* 10b: reported while it runs, forgotten when it ends */
    fresh_plan(&plan);
    assert_int_equal(xcopy_history_begin(&h, &loose, &plan), 0);
    plan = copy_status_of(&h, 6, out, 1024);
    assert_good(&plan);
    assert_int_equal(out[4], 0x00);
    struct xcopy_progress small = {.segments = 1, .bytes = 512};
    xcopy_history_finish(&h, &loose, false, &small);
    plan = copy_status_of(&h, 6, out, 1024);
    assert_no_such_copy(&plan);

    /* 11b: no identifier, nothing to remember */
    fresh_plan(&plan);
    assert_int_equal(xcopy_history_begin(&h, &none, &plan), 0);
    xcopy_history_finish(&h, &none, false, &small);
    plan = copy_status_of(&h, 0, out, 1024);
    assert_no_such_copy(&plan);

    /* recording without begin works; a full history drops the oldest finished copy */
    for (uint8_t id = 10; id < 10 + XCOPY_HISTORY_LEN + 1; id++) {
        struct xcopy_list l = {.id = id, .usage = XCOPY_LIST_HOLD};
        xcopy_history_finish(&h, &l, false, &small);
    }
    plan = copy_status_of(&h, 10, out, 1024);
    assert_no_such_copy(&plan);
    for (uint8_t id = 11; id < 10 + XCOPY_HISTORY_LEN + 1; id++) {
        plan = copy_status_of(&h, id, out, 1024);
        assert_good(&plan);
        assert_int_equal(out[4], 0x01);
    }

    /* running copies are never dropped: the next one is refused */
    xcopy_history_init(&h);
    for (uint8_t id = 20; id < 20 + XCOPY_HISTORY_LEN; id++) {
        struct xcopy_list l = {.id = id, .usage = XCOPY_LIST_NO_HOLD};
        fresh_plan(&plan);
        assert_int_equal(xcopy_history_begin(&h, &l, &plan), 0);
    }
    fresh_plan(&plan);
    assert_int_equal(xcopy_history_begin(&h, &held, &plan), -1);
    assert_sense(&plan, SCSI_SENSE_ILLEGAL_REQUEST, XCOPY_ASC_INSUFFICIENT_RESOURCES);
    fresh_plan(&plan);
    assert_int_equal(xcopy_history_begin(&h, &none, &plan), 0);
}

/* ---------------- VPD page ---------------- */

static void third_party_copy_vpd(void **state)
{
    (void)state;
    uint8_t d[XCOPY_VPD_LEN + 8];
    memset(d, 0xaa, sizeof(d));
    d[0] = 0;
    d[1] = XCOPY_VPD_PAGE;
    size_t len = xcopy_vpd_page(d);
    assert_int_equal(len, XCOPY_VPD_LEN);
    assert_int_equal(d[1], 0x8f);
    assert_int_equal(twl_get_be16(d + 2), len - 4);
    assert_int_equal(d[len], 0xaa);

    /* descriptors: type, length (a multiple of 4), body; they fill the page exactly */
    static const uint16_t types[] = {0x0001, 0x0004, 0x0008, 0x000c, 0x8001};
    size_t off = 4;
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
        assert_true(off + 4 <= len);
        assert_int_equal(twl_get_be16(d + off), types[i]);
        uint16_t dl = twl_get_be16(d + off + 2);
        assert_int_equal(dl % 4, 0);
        const uint8_t *b = d + off + 4;
        switch (types[i]) {
        case 0x0001: { /* EXTENDED COPY(LID1); RECEIVE COPY RESULTS 00h and 03h */
            static const uint8_t cmds[] = {7, 0x83, 1, 0x00, 0x84, 2, 0x00, 0x03};
            assert_memory_equal(b, cmds, sizeof(cmds));
            break;
        }
        case 0x0004:
            assert_int_equal(dl, 28);
            assert_int_equal(twl_get_be16(b + 4), XCOPY_MAX_TARGET_DESCRIPTORS);
            assert_int_equal(twl_get_be16(b + 6), XCOPY_MAX_SEGMENT_DESCRIPTORS);
            assert_int_equal(twl_get_be32(b + 8), XCOPY_MAX_DESC_LIST_LEN);
            assert_int_equal(twl_get_be32(b + 12), 0);
            break;
        case 0x0008:
            assert_int_equal(b[0], 2);
            assert_int_equal(b[1], 0x02);
            assert_int_equal(b[2], 0xe4);
            break;
        case 0x000c:
            assert_int_equal(twl_get_be16(b), 0);
            break;
        case 0x8001:
            assert_int_equal(dl, 32);
            assert_int_equal(twl_get_be32(b + 8), XCOPY_MAX_SEGMENT_BYTES);
            assert_int_equal(b[12], 9);
            break;
        }
        off += 4 + dl;
    }
    assert_int_equal(off, len);
}

int main(void)
{
    twl_log_set_level(TWL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(copy_within_lu, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_between_lus, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_in_steps, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_overlapping, setup, teardown),
        cmocka_unit_test_setup_teardown(empty_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(truncated_lists, setup, teardown),
        cmocka_unit_test_setup_teardown(unsupported_descriptor_types, setup, teardown),
        cmocka_unit_test_setup_teardown(too_many_descriptors, setup, teardown),
        cmocka_unit_test_setup_teardown(target_descriptor_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(segment_descriptor_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(header_fields, setup, teardown),
        cmocka_unit_test_setup_teardown(io_errors_abort_the_copy, setup, teardown),
        cmocka_unit_test_setup_teardown(copy_status_after_copy, setup, teardown),
        cmocka_unit_test(operating_parameters_layout),
        cmocka_unit_test(copy_status_bookkeeping),
        cmocka_unit_test(third_party_copy_vpd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
