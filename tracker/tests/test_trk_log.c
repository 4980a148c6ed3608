/*
 * The LUN copy's log: activity log, dirty bitmap, generations, recovery. The crash tests run a
 * random workload against a log on memory that records every persist, take the media as a
 * crash would leave it at every persist point (only what was persisted: a machine crash; every
 * store: a process crash), recover each, and check that every region whose copies could differ
 * at that moment is dirty after recovery.
 */
#include "tracker.h"
#include "twl_common.h"

#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#define RS      4096u /* region size */
#define REGIONS 200u
#define LUN     ((uint64_t)REGIONS * RS - 512) /* the last region is short */

/* ---- memory media that records persists ---- */

struct snap {
    uint8_t *durable; /* what was persisted before this persist point */
    uint8_t *live;    /* every store so far */
    uint8_t risk[REGIONS];
};

struct fake {
    uint8_t *live, *durable;
    size_t len;
    unsigned persists;
    bool recording;
    struct snap *snaps;
    unsigned nsnaps, cap;
    /* the driver's view: regions whose copies could differ now */
    unsigned outstanding[REGIONS];
    bool unreplicated[REGIONS];
};

static void fake_persist(void *ctx, const void *addr, size_t len)
{
    struct fake *f = ctx;
    size_t off = (size_t)((const uint8_t *)addr - f->live);
    assert_true(off + len <= f->len);
    f->persists++;
    if (f->recording) {
        if (f->nsnaps == f->cap) {
            f->cap = f->cap ? 2 * f->cap : 64;
            f->snaps = realloc(f->snaps, f->cap * sizeof(*f->snaps));
            assert_non_null(f->snaps);
        }
        struct snap *s = &f->snaps[f->nsnaps++];
        s->durable = malloc(f->len);
        s->live = malloc(f->len);
        assert_non_null(s->durable);
        assert_non_null(s->live);
        memcpy(s->durable, f->durable, f->len);
        memcpy(s->live, f->live, f->len);
        for (unsigned r = 0; r < REGIONS; r++)
            s->risk[r] = f->outstanding[r] > 0 || f->unreplicated[r];
    }
    memcpy(f->durable + off, f->live + off, len);
}

static struct fake *fake_new(uint32_t al_slots)
{
    struct fake *f = calloc(1, sizeof(*f));
    f->len = trk_log_size(LUN, RS, al_slots);
    f->live = calloc(1, f->len);
    f->durable = calloc(1, f->len);
    return f;
}

static void fake_free(struct fake *f)
{
    for (unsigned i = 0; i < f->nsnaps; i++) {
        free(f->snaps[i].durable);
        free(f->snaps[i].live);
    }
    free(f->snaps);
    free(f->live);
    free(f->durable);
    free(f);
}

static struct trk_log_media media_of(struct fake *f)
{
    return (struct trk_log_media){
        .base = f->live, .len = f->len, .persist = fake_persist, .ctx = f};
}

static void no_persist(void *ctx, const void *addr, size_t len)
{
    (void)ctx;
    (void)addr;
    (void)len;
}

/* An image as a crash left it, opened without recording. */
static struct trk_log_media media_plain(uint8_t *img, size_t len)
{
    return (struct trk_log_media){.base = img, .len = len, .persist = no_persist};
}

/* Recovers a copy of img and checks that every region at risk is dirty. */
static void check_recovers(const uint8_t *img, size_t len, uint32_t al_slots,
                           const uint8_t risk[REGIONS])
{
    uint8_t *copy = malloc(len);
    memcpy(copy, img, len);
    struct trk_log_media m = media_plain(copy, len);
    struct trk_log *log;
    struct trk_log_recovery rec;
    int rc = trk_log_open_media(&m, LUN, RS, al_slots, &log, &rec);
    assert_int_equal(rc, 0);
    uint64_t dirty = 0;
    for (uint64_t r = trk_log_next_dirty(log, 0); r < REGIONS; r = trk_log_next_dirty(log, r + 1))
        dirty++;
    assert_int_equal(dirty, trk_log_dirty_count(log));
    for (unsigned r = 0; r < REGIONS; r++) {
        if (!risk[r])
            continue;
        if (trk_log_next_dirty(log, r) != r)
            fail_msg("region %u could differ but the recovered log says it is clean", r);
    }
    trk_log_close(log);
    free(copy);
}

/* ---- a random workload with writes in flight, failed replicas, marks and resync clears ---- */

struct write {
    uint64_t off, len;
};

static void risk_add(struct fake *f, const struct write *w, int delta)
{
    for (uint64_t r = w->off / RS; r <= (w->off + w->len - 1) / RS; r++)
        f->outstanding[r] = (unsigned)((int)f->outstanding[r] + delta);
}

static void run_workload(struct fake *f, struct trk_log *log, unsigned seed, unsigned ops)
{
    srand(seed);
    struct write inflight[8];
    unsigned n = 0;
    for (unsigned op = 0; op < ops; op++) {
        int what = rand() % 10;
        if (what < 4 && n < 8) {
            /* a write of 512 B .. 5 regions, often near the last ones (hot regions) */
            struct write w;
            uint64_t region = rand() % 3 ? (uint64_t)(rand() % 12) : (uint64_t)(rand() % REGIONS);
            w.off = region * RS + (uint64_t)(rand() % 8) * 512;
            w.len = 512 + (uint64_t)(rand() % (5 * RS / 512)) * 512;
            if (w.off >= LUN)
                w.off = LUN - 512;
            if (w.len > LUN - w.off)
                w.len = LUN - w.off;
            assert_int_equal(trk_log_write_begin(log, w.off, w.len), 0);
            risk_add(f, &w, 1); /* issued only now */
            inflight[n++] = w;
        } else if (what < 8 && n > 0) {
            unsigned k = (unsigned)rand() % n;
            struct write w = inflight[k];
            inflight[k] = inflight[--n];
            bool replicated = rand() % 5 != 0;
            if (!replicated) {
                /* the copies differ from the local write on, until a resync */
                for (uint64_t r = w.off / RS; r <= (w.off + w.len - 1) / RS; r++)
                    f->unreplicated[r] = true;
            }
            risk_add(f, &w, -1); /* done on both copies, or marked unreplicated above */
            assert_int_equal(trk_log_write_end(log, w.off, w.len, replicated), 0);
        } else if (what == 8 && rand() % 4 == 0) {
            trk_log_flush_cold(log);
        } else if (what == 8) {
            /* degraded: marked before the write is issued */
            uint64_t r = (uint64_t)(rand() % REGIONS);
            assert_int_equal(trk_log_mark(log, r * RS, 1), 0);
            f->unreplicated[r] = true;
        } else {
            /* a resync made one dirty region with nothing in flight equal */
            uint64_t r = trk_log_next_dirty(log, (uint64_t)(rand() % REGIONS));
            if (r < REGIONS && f->outstanding[r] == 0) {
                f->unreplicated[r] = false;
                assert_int_equal(trk_log_clear(log, r, 1), 0);
            }
        }
    }
}

static void crash_at_every_persist(uint32_t al_slots, unsigned seed)
{
    struct fake *f = fake_new(al_slots);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, al_slots, &log, NULL), 0);
    f->recording = true;
    run_workload(f, log, seed, 600);
    f->recording = false;
    assert_true(f->nsnaps > 20);
    for (unsigned i = 0; i < f->nsnaps; i++) {
        check_recovers(f->snaps[i].durable, f->len, al_slots, f->snaps[i].risk);
        check_recovers(f->snaps[i].live, f->len, al_slots, f->snaps[i].risk);
    }
    /* and after the last operation */
    uint8_t risk[REGIONS];
    for (unsigned r = 0; r < REGIONS; r++)
        risk[r] = f->outstanding[r] > 0 || f->unreplicated[r];
    check_recovers(f->durable, f->len, al_slots, risk);
    trk_log_close(log);
    fake_free(f);
}

static void test_crash_consistency_roomy_activity_log(void **state)
{
    (void)state;
    for (unsigned seed = 1; seed <= 4; seed++)
        crash_at_every_persist(64, seed);
}

/* Eight slots for up to eight writes of up to five regions: slots are evicted all the time and
 * begin falls back to the bitmap when every slot has a write in flight. */
static void test_crash_consistency_tiny_activity_log(void **state)
{
    (void)state;
    for (unsigned seed = 11; seed <= 14; seed++)
        crash_at_every_persist(8, seed);
}

/* The check itself can fail: a log that forgets an in-flight region is caught. */
static void test_crash_check_catches_a_lost_region(void **state)
{
    (void)state;
    struct fake *f = fake_new(16);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 16, &log, NULL), 0);
    assert_int_equal(trk_log_write_begin(log, 5 * RS, 100), 0);
    uint8_t risk[REGIONS] = {0};
    risk[5] = 1;
    check_recovers(f->durable, f->len, 16, risk); /* the slot is there: fine */
    /* a region the log never saw reads clean, so check_recovers would fail on it */
    uint8_t *copy = malloc(f->len);
    memcpy(copy, f->durable, f->len);
    struct trk_log_media m2 = media_plain(copy, f->len);
    struct trk_log *rec_log;
    assert_int_equal(trk_log_open_media(&m2, LUN, RS, 16, &rec_log, NULL), 0);
    assert_int_not_equal(trk_log_next_dirty(rec_log, 6), 6);
    trk_log_close(rec_log);
    free(copy);
    trk_log_close(log);
    fake_free(f);
}

/* ---- cost: one persist per region while it stays hot ---- */

static void test_hot_region_costs_one_persist(void **state)
{
    (void)state;
    struct fake *f = fake_new(64);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 64, &log, NULL), 0);
    unsigned before = f->persists;
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(trk_log_write_begin(log, 7 * RS + (uint64_t)(i % 8) * 512, 512), 0);
        assert_int_equal(trk_log_write_end(log, 7 * RS + (uint64_t)(i % 8) * 512, 512, true), 0);
    }
    assert_int_equal(f->persists - before, 1);
    assert_int_equal(trk_log_dirty_count(log), 0);
    /* a failed replica costs one bitmap persist, and only the first time */
    assert_int_equal(trk_log_write_begin(log, 7 * RS, 512), 0);
    assert_int_equal(trk_log_write_end(log, 7 * RS, 512, false), 0);
    assert_int_equal(trk_log_write_begin(log, 7 * RS, 512), 0);
    assert_int_equal(trk_log_write_end(log, 7 * RS, 512, false), 0);
    assert_int_equal(f->persists - before, 2);
    assert_int_equal(trk_log_dirty_count(log), 1);
    trk_log_close(log);
    fake_free(f);
}

/* Around a durability barrier: a region written between the mark and the clear stays; the
 * regions the log holds can be marked dirty at once (the partner lost its page cache). */
static void test_cold_barrier_and_mark_active(void **state)
{
    (void)state;
    struct fake *f = fake_new(64);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 64, &log, NULL), 0);
    for (uint64_t r = 3; r <= 4; r++) {
        assert_int_equal(trk_log_write_begin(log, r * RS, 512), 0);
        assert_int_equal(trk_log_write_end(log, r * RS, 512, true), 0);
    }
    assert_int_equal(trk_log_cold_mark(log), 0); /* both written since the last call */
    assert_int_equal(trk_log_cold_mark(log), 2);
    /* region 4 is written while the barrier runs: it must stay */
    assert_int_equal(trk_log_write_begin(log, 4 * RS, 512), 0);
    assert_int_equal(trk_log_write_end(log, 4 * RS, 512, true), 0);
    assert_int_equal(trk_log_cold_clear(log), 1);
    assert_int_equal(trk_log_cold_clear(log), 0); /* nothing noted any more */
    /* the partner came back from a crash: what the log still holds is dirty, in one persist */
    unsigned before = f->persists;
    assert_int_equal(trk_log_mark_active(log), 1);
    assert_int_equal(f->persists - before, 1);
    assert_int_equal(trk_log_dirty_count(log), 1);
    assert_int_equal(trk_log_next_dirty(log, 0), 4);
    assert_int_equal(trk_log_mark_active(log), 0); /* already dirty */
    trk_log_close(log);
    fake_free(f);
}

/* Cold regions leave the activity log in one persist; a region written since stays. */
static void test_flush_cold_batches(void **state)
{
    (void)state;
    struct fake *f = fake_new(64);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 64, &log, NULL), 0);
    for (uint64_t r = 0; r < 10; r++) {
        assert_int_equal(trk_log_write_begin(log, r * RS, 512), 0);
        if (r != 3)
            assert_int_equal(trk_log_write_end(log, r * RS, 512, true), 0);
    }
    assert_int_equal(trk_log_flush_cold(log), 0); /* all of them were begun lately */
    unsigned before = f->persists;
    assert_int_equal(trk_log_flush_cold(log), 9); /* region 3 still has a write in flight */
    assert_int_equal(f->persists - before, 1);
    assert_int_equal(trk_log_flush_cold(log), 0);
    /* written again: back in the activity log, with one persist */
    before = f->persists;
    assert_int_equal(trk_log_write_begin(log, 5 * RS, 512), 0);
    assert_int_equal(f->persists - before, 1);
    trk_log_close(log); /* a crash */
    struct trk_log_media md = media_plain(f->durable, f->len);
    struct trk_log_recovery rec;
    assert_int_equal(trk_log_open_media(&md, LUN, RS, 64, &log, &rec), 0);
    assert_int_equal(rec.al_regions, 2);
    assert_int_equal(trk_log_next_dirty(log, 0), 3);
    assert_int_equal(trk_log_next_dirty(log, 4), 5);
    assert_int_equal(trk_log_next_dirty(log, 6), REGIONS);
    trk_log_close(log);
    fake_free(f);
}

/* ---- recovery, format ---- */

static void test_recovery_folds_activity_into_bitmap(void **state)
{
    (void)state;
    struct fake *f = fake_new(32);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    struct trk_log_recovery rec;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, &rec), 0);
    assert_true(rec.created);
    struct trk_gens g0;
    trk_log_gens(log, &g0);
    assert_int_not_equal(g0.current, 0);
    assert_int_equal(g0.bitmap, 0);
    assert_int_equal(trk_log_write_begin(log, 3 * RS, 2 * RS), 0); /* regions 3, 4 */
    assert_int_equal(trk_log_write_begin(log, 50 * RS, 1), 0);
    assert_int_equal(trk_log_write_end(log, 50 * RS, 1, true), 0); /* cold but still logged */
    assert_int_equal(trk_log_mark(log, 100 * RS, RS), 0);
    trk_log_close(log); /* a crash: nothing more is written */

    m = media_plain(f->durable, f->len);
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, &rec), 0);
    assert_false(rec.created);
    assert_int_equal(rec.al_regions, 3);
    assert_int_equal(rec.dirty_regions, 4);
    assert_int_equal(trk_log_next_dirty(log, 0), 3);
    assert_int_equal(trk_log_next_dirty(log, 4), 4);
    assert_int_equal(trk_log_next_dirty(log, 5), 50);
    assert_int_equal(trk_log_next_dirty(log, 51), 100);
    assert_int_equal(trk_log_next_dirty(log, 101), REGIONS);
    struct trk_gens g1;
    trk_log_gens(log, &g1);
    assert_memory_equal(&g0, &g1, sizeof(g0));
    /* the resync copies them: clean, and a clean reopen finds nothing */
    assert_int_equal(trk_log_clear(log, 0, REGIONS), 0);
    assert_int_equal(trk_log_dirty_count(log), 0);
    trk_log_close(log);
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, &rec), 0);
    assert_int_equal(rec.al_regions, 0);
    assert_int_equal(rec.dirty_regions, 0);
    trk_log_close(log);
    fake_free(f);
}

static void test_refuses_other_geometry_and_garbage(void **state)
{
    (void)state;
    struct fake *f = fake_new(32);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, NULL), 0);
    trk_log_close(log);
    assert_int_equal(trk_log_open_media(&m, LUN - 4096, RS, 32, &log, NULL), -EINVAL);
    assert_int_equal(trk_log_open_media(&m, LUN / 2, 2 * RS, 32, &log, NULL), -EINVAL);
    assert_int_equal(trk_log_open_media(&m, LUN, 3000, 32, &log, NULL), -EINVAL);
    /* both superblock slots damaged while the log holds data: not silently recreated */
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, NULL), 0);
    assert_int_equal(trk_log_mark(log, 9 * RS, 1), 0);
    trk_log_close(log);
    f->live[100] ^= 1;
    f->live[512 + 100] ^= 1;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 32, &log, NULL), -EBADMSG);
    fake_free(f);
}

/* A torn superblock write leaves the previous one in force. */
static void test_torn_superblock_keeps_previous(void **state)
{
    (void)state;
    struct fake *f = fake_new(8);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, NULL), 0);
    struct trk_gens before, after;
    trk_log_gens(log, &before);
    assert_int_equal(trk_log_diverge(log), 0); /* writes the other slot */
    trk_log_close(log);
    /* tear the newer slot: whichever slot has the larger epoch is at 0 or 512 */
    memcpy(f->durable, f->live, f->len);
    f->durable[0 + 200] ^= 0xff; /* slot 0 */
    m = media_plain(f->durable, f->len);
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, NULL), 0);
    trk_log_gens(log, &after);
    trk_log_close(log);
    /* slot 0 held epoch 2 (the diverge), slot 1 epoch 1 (the creation) */
    assert_int_equal(after.current, before.current);
    assert_int_equal(after.bitmap, 0);
    fake_free(f);
}

/* ---- generations ---- */

static void test_generations_decide_direction(void **state)
{
    (void)state;
    struct fake *fa = fake_new(8), *fb = fake_new(8);
    struct trk_log_media ma = media_of(fa), mb = media_of(fb);
    struct trk_log *a, *b;
    assert_int_equal(trk_log_open_media(&ma, LUN, RS, 8, &a, NULL), 0);
    assert_int_equal(trk_log_open_media(&mb, LUN, RS, 8, &b, NULL), 0);
    struct trk_gens ga, gb;
    bool full;
    /* a new pair: a (the owner) makes the first full copy, then starts a random generation
     * that b takes */
    trk_log_gens(a, &ga);
    trk_log_gens(b, &gb);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_NEW_PAIR);
    assert_true(full);
    assert_int_equal(ga.current, TRK_GEN_NEW);
    assert_int_equal(trk_log_resynced(a, &ga), 0);
    trk_log_gens(a, &ga);
    assert_true(ga.current >= TRK_GEN_FIRST);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_SYNC_SOURCE);
    assert_true(full);
    assert_int_equal(trk_log_resynced(b, &ga), 0);
    trk_log_gens(b, &gb);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_IN_SYNC);

    /* b goes away; a takes writes alone */
    assert_int_equal(trk_log_diverge(a), 0);
    assert_int_equal(trk_log_mark(a, 0, RS), 0);
    trk_log_gens(a, &ga);
    assert_int_equal(ga.bitmap, gb.current);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_SYNC_SOURCE);
    assert_int_equal(trk_gens_compare(&gb, &ga, &full), TRK_SYNC_TARGET);
    /* diverging again while apart changes nothing */
    assert_int_equal(trk_log_diverge(a), 0);
    struct trk_gens again;
    trk_log_gens(a, &again);
    assert_memory_equal(&again, &ga, sizeof(ga));

    /* resync: a refuses to call itself done while dirty */
    assert_int_equal(trk_log_resynced(a, &ga), -EBUSY);
    assert_int_equal(trk_log_clear(a, 0, 1), 0);
    assert_int_equal(trk_log_resynced(b, &ga), 0);
    assert_int_equal(trk_log_resynced(a, &ga), 0);
    trk_log_gens(a, &ga);
    trk_log_gens(b, &gb);
    assert_int_equal(ga.bitmap, 0);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_IN_SYNC);

    /* both written apart: split brain, both ways */
    assert_int_equal(trk_log_diverge(a), 0);
    assert_int_equal(trk_log_diverge(b), 0);
    trk_log_gens(a, &ga);
    trk_log_gens(b, &gb);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_SPLIT_BRAIN);
    assert_int_equal(trk_gens_compare(&gb, &ga, &full), TRK_SPLIT_BRAIN);
    assert_string_equal(trk_sync_decision_name(TRK_SPLIT_BRAIN), "split brain");

    /* the admin discards b: b becomes the target of a partial resync (both bitmaps), and
     * takes a's generation once it is done */
    assert_int_equal(trk_log_mark(b, RS, RS), 0);
    assert_int_equal(trk_log_discard(b), 0);
    struct trk_gens discarded;
    trk_log_gens(b, &discarded);
    assert_int_equal(discarded.current, TRK_GEN_DISCARDED);
    assert_int_equal(discarded.bitmap, gb.bitmap);
    assert_int_equal(trk_log_dirty_count(b), 1);
    assert_int_equal(trk_gens_compare(&ga, &discarded, &full), TRK_SYNC_SOURCE);
    assert_false(full);
    assert_int_equal(trk_gens_compare(&discarded, &ga, &full), TRK_SYNC_TARGET);
    assert_false(full);
    /* discarding both sides leaves no source */
    assert_int_equal(trk_gens_compare(&discarded, &discarded, &full), TRK_UNRELATED);
    /* a copy that never met a is copied whole */
    struct trk_gens stranger = {.current = TRK_GEN_FIRST + 12345};
    assert_int_equal(trk_gens_compare(&ga, &stranger, &full), TRK_UNRELATED);
    struct trk_gens unknown = {.current = TRK_GEN_NEW};
    assert_int_equal(trk_gens_compare(&ga, &unknown, &full), TRK_SYNC_SOURCE);
    assert_true(full);
    /* a copy recreated empty is copied whole too: its zeros are no generation of a's */
    struct trk_gens recreated = {.current = TRK_GEN_BLANK};
    assert_int_equal(trk_gens_compare(&ga, &recreated, &full), TRK_SYNC_SOURCE);
    assert_true(full);

    /* two copies created empty need no first copy; one that took writes alone from blank
     * sends only what it wrote; a blank copy and one of unknown content: the owner's, whole */
    trk_log_set_blank(a);
    trk_log_set_blank(b);
    trk_log_gens(a, &ga);
    trk_log_gens(b, &gb);
    assert_int_equal(ga.current, TRK_GEN_BLANK);
    assert_int_equal(ga.bitmap, 0);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_NEW_PAIR);
    assert_false(full);
    assert_int_equal(trk_gens_compare(&ga, &unknown, &full), TRK_NEW_PAIR);
    assert_true(full);
    assert_int_equal(trk_log_diverge(a), 0);
    trk_log_gens(a, &ga);
    assert_true(ga.current >= TRK_GEN_FIRST);
    assert_int_equal(ga.bitmap, TRK_GEN_BLANK);
    assert_int_equal(trk_gens_compare(&ga, &gb, &full), TRK_SYNC_SOURCE);
    assert_false(full);
    assert_int_equal(trk_gens_compare(&gb, &ga, &full), TRK_SYNC_TARGET);
    assert_false(full);

    /* generations survive a reopen */
    trk_log_close(a);
    assert_int_equal(trk_log_open_media(&ma, LUN, RS, 8, &a, NULL), 0);
    struct trk_gens reopened;
    trk_log_gens(a, &reopened);
    assert_memory_equal(&reopened, &ga, sizeof(ga));
    trk_log_close(a);
    trk_log_close(b);
    fake_free(fa);
    fake_free(fb);
}

static void test_resync_position_survives(void **state)
{
    (void)state;
    struct fake *f = fake_new(8);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    struct trk_log_recovery rec;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(trk_log_set_resync_pos(log, 123), 0);
    trk_log_close(log);
    m = media_plain(f->durable, f->len);
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(rec.resync_pos, 123);
    trk_log_close(log);
    fake_free(f);
}

/* Bits past the last region (damage: the log never sets them) are not regions: they do not
 * count, and a full resync leaves nothing dirty. */
static void test_bits_past_the_end_are_not_regions(void **state)
{
    (void)state;
    struct fake *f = fake_new(8);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    struct trk_log_recovery rec;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(trk_log_mark(log, 199 * RS, 1), 0);
    trk_log_close(log);
    /* regions 192..255 share the last word; 200.. do not exist */
    f->live[8192 + 3 * 8 + 1] = 0xff;
    f->live[8192 + 3 * 8 + 7] = 0x80;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(rec.dirty_regions, 1);
    assert_int_equal(trk_log_dirty_count(log), 1);
    assert_int_equal(trk_log_next_dirty(log, 0), 199);
    assert_int_equal(trk_log_next_dirty(log, 200), REGIONS);
    assert_int_equal(trk_log_clear(log, 0, REGIONS), 0);
    assert_int_equal(trk_log_dirty_count(log), 0);
    struct trk_gens peer = {.current = TRK_GEN_FIRST + 5};
    assert_int_equal(trk_log_resynced(log, &peer), 0);
    trk_log_close(log);
    fake_free(f);
}

/* The superblock write after epoch 2^64 - 1 wraps to 0 and is still the one in force. */
static void test_superblock_epoch_wraps(void **state)
{
    (void)state;
    struct fake *f = fake_new(8);
    struct trk_log_media m = media_of(f);
    struct trk_log *log;
    struct trk_log_recovery rec;
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    trk_log_close(log);
    /* the creation wrote epoch 1 into slot 1: make it 2^64 - 2, and slot 0 empty */
    memset(f->live, 0, 512);
    uint8_t *slot = f->live + 512;
    twl_put_be64(slot + 8, UINT64_MAX - 1);
    twl_put_be32(slot + 508, twl_crc32c(slot, 508));
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(trk_log_set_resync_pos(log, 1), 0); /* epoch 2^64 - 1, slot 1 */
    assert_int_equal(trk_log_set_resync_pos(log, 2), 0); /* epoch 0, slot 0 */
    trk_log_close(log);
    assert_int_equal(trk_log_open_media(&m, LUN, RS, 8, &log, &rec), 0);
    assert_int_equal(rec.resync_pos, 2);
    trk_log_close(log);
    fake_free(f);
}

/* ---- on a file ---- */

static void test_file_log_roundtrip(void **state)
{
    (void)state;
    char path[] = "/tmp/test_trk_log.XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    close(fd);
    unlink(path);
    struct trk_log *log;
    struct trk_log_recovery rec;
    uint64_t lun = 1ull << 30;
    assert_int_equal(trk_log_open(path, lun, 65536, 256, &log, &rec), 0);
    assert_true(rec.created);
    assert_int_equal(trk_log_regions(log), 16384);
    assert_int_equal(trk_log_region_size(log), 65536);
    assert_int_equal(trk_log_write_begin(log, lun - 4096, 4096), 0);
    assert_int_equal(trk_log_write_begin(log, lun - 4096, 8192), -EINVAL);
    trk_log_close(log);
    assert_int_equal(trk_log_open(path, lun, 65536, 256, &log, &rec), 0);
    assert_false(rec.created);
    assert_int_equal(rec.al_regions, 1);
    assert_int_equal(trk_log_next_dirty(log, 0), 16383);
    trk_log_close(log);
    /* the copy never met its partner: the log knows nothing worth keeping, and another
     * geometry makes it anew */
    assert_int_equal(trk_log_open(path, lun, 4096, 256, &log, &rec), 0);
    assert_true(rec.created);
    assert_int_equal(trk_log_dirty_count(log), 0);
    /* one that took writes its partner lacks is refused */
    assert_int_equal(trk_log_diverge(log), 0);
    trk_log_close(log);
    assert_int_equal(trk_log_open(path, lun, 65536, 256, &log, &rec), -EINVAL);
    assert_int_equal(trk_log_open(path, lun, 4096, 256, &log, &rec), 0);
    assert_false(rec.created);
    trk_log_close(log);
    unlink(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crash_consistency_roomy_activity_log),
        cmocka_unit_test(test_crash_consistency_tiny_activity_log),
        cmocka_unit_test(test_crash_check_catches_a_lost_region),
        cmocka_unit_test(test_hot_region_costs_one_persist),
        cmocka_unit_test(test_cold_barrier_and_mark_active),
        cmocka_unit_test(test_flush_cold_batches),
        cmocka_unit_test(test_recovery_folds_activity_into_bitmap),
        cmocka_unit_test(test_refuses_other_geometry_and_garbage),
        cmocka_unit_test(test_torn_superblock_keeps_previous),
        cmocka_unit_test(test_generations_decide_direction),
        cmocka_unit_test(test_resync_position_survives),
        cmocka_unit_test(test_bits_past_the_end_are_not_regions),
        cmocka_unit_test(test_superblock_epoch_wraps),
        cmocka_unit_test(test_file_log_roundtrip),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
