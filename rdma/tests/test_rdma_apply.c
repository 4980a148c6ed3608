/* Unit tests of the apply order on the partner. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

static struct twl_rdma_applier *a;

static int setup(void **state)
{
    (void)state;
    a = malloc(sizeof(*a));
    if (a == NULL)
        return -1;
    twl_rdma_applier_init(a, 0);
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    free(a);
    return 0;
}

static void add(uint64_t seq, uint32_t lun, uint64_t lba, uint32_t blocks)
{
    assert_int_equal(twl_rdma_applier_add(a, seq, lun, lba, blocks, 0), 0);
}

static uint64_t next(void)
{
    uint64_t seq = 0;
    assert_int_equal(twl_rdma_applier_next(a, &seq), 0);
    return seq;
}

static void none_ready(void)
{
    uint64_t seq = 12345;
    assert_int_equal(twl_rdma_applier_next(a, &seq), -EAGAIN);
    assert_int_equal(seq, 12345);
}

static void done(uint64_t seq)
{
    assert_int_equal(twl_rdma_applier_done(a, seq), 0);
}

static void test_empty(void **state)
{
    (void)state;
    none_ready();
    assert_int_equal(twl_rdma_applier_durable(a), 0);
    assert_int_equal(twl_rdma_applier_count(a), 0);
    twl_rdma_applier_init(a, 41);
    assert_int_equal(twl_rdma_applier_durable(a), 41);
    assert_int_equal(twl_rdma_applier_add(a, 41, 0, 0, 1, 0), -EINVAL); /* already durable */
    add(42, 0, 0, 1);
    assert_int_equal(next(), 42);
    done(42);
    assert_int_equal(twl_rdma_applier_durable(a), 42);
}

/* Records that overlap nothing may all run at once, in any order of completion. */
static void test_disjoint_all_runnable(void **state)
{
    (void)state;
    for (uint64_t s = 1; s <= 100; s++)
        add(s, 0, s * 8, 8); /* [8s, 8s + 8): adjacent, not overlapping */
    for (uint64_t s = 1; s <= 100; s++)
        assert_int_equal(next(), s);
    none_ready();
    for (uint64_t s = 100; s >= 1; s--)
        done(s);
    assert_int_equal(twl_rdma_applier_durable(a), 100);
    assert_int_equal(twl_rdma_applier_count(a), 0);
}

static void test_overlap_waits(void **state)
{
    (void)state;
    add(1, 0, 0, 8);
    add(2, 0, 4, 8);   /* overlaps 1 */
    add(3, 0, 100, 8); /* overlaps nothing */
    assert_int_equal(next(), 1);
    assert_int_equal(next(), 3);
    none_ready();
    done(3);
    none_ready();
    done(1);
    assert_int_equal(next(), 2);
    done(2);
    assert_int_equal(twl_rdma_applier_durable(a), 3);
}

/* A record waits for an earlier overlapping one even when that one has not started: it is
 * ring order that counts, not what happens to be running. */
static void test_waits_for_pending(void **state)
{
    (void)state;
    add(1, 0, 0, 8);
    add(2, 0, 0, 16); /* waits for 1 */
    add(3, 0, 8, 8);  /* overlaps 2 only: must wait for 2 although 2 is not running */
    add(4, 0, 8, 8);  /* and 4 for 3 (and 2) */
    assert_int_equal(next(), 1);
    none_ready();
    done(1);
    assert_int_equal(next(), 2);
    none_ready();
    done(2);
    assert_int_equal(next(), 3);
    none_ready();
    done(3);
    assert_int_equal(next(), 4);
    done(4);
    assert_int_equal(twl_rdma_applier_durable(a), 4);
}

/* durable stays at the lowest record not applied, however many later ones are. */
static void test_durable_gap(void **state)
{
    (void)state;
    for (uint64_t s = 1; s <= 5; s++)
        add(s * 10, 0, s * 100, 1); /* seqs 10, 20, ... 50: gaps in the numbering are fine */
    for (int i = 0; i < 5; i++)
        next();
    done(20);
    done(50);
    done(40);
    assert_int_equal(twl_rdma_applier_durable(a), 0);
    done(10);
    assert_int_equal(twl_rdma_applier_durable(a), 20);
    assert_int_equal(twl_rdma_applier_count(a), 3);
    done(30);
    assert_int_equal(twl_rdma_applier_durable(a), 50);
    assert_int_equal(twl_rdma_applier_count(a), 0);
}

static void test_different_luns(void **state)
{
    (void)state;
    /* the same blocks on 1000 LUNs: all at once */
    for (uint32_t l = 0; l < 1000; l++)
        add(l + 1, l, 0, 1024);
    for (uint64_t s = 1; s <= 1000; s++)
        assert_int_equal(next(), s);
    none_ready();
    /* a whole-LUN barrier on LUN 7 holds nothing on other LUNs */
    assert_int_equal(twl_rdma_applier_add(a, 1001, 7, 0, 0, TWL_RDMA_APPLY_BARRIER), 0);
    add(1002, 8, 0, 1024); /* waits for 9 (same LUN, same blocks), not for the barrier */
    none_ready();
    done(9);
    assert_int_equal(next(), 1002);
    none_ready();
    done(8);
    assert_int_equal(next(), 1001);
    none_ready();
}

static void test_barrier(void **state)
{
    (void)state;
    add(1, 0, 0, 8);
    add(2, 1, 100, 8);
    assert_int_equal(twl_rdma_applier_add(a, 3, 0, 12345, 1, TWL_RDMA_APPLY_BARRIER), 0);
    add(4, 0, 500, 8); /* overlaps nothing but the barrier */
    add(5, 1, 0, 8);   /* another LUN */
    add(6, 0, 0, 0);   /* no blocks: still held by its LUN's barrier */
    assert_int_equal(next(), 1);
    assert_int_equal(next(), 2);
    assert_int_equal(next(), 5);
    none_ready();
    done(1);
    assert_int_equal(next(), 3);
    none_ready();
    done(3);
    assert_int_equal(next(), 4);
    assert_int_equal(next(), 6);
    done(2);
    done(4);
    done(5);
    done(6);
    assert_int_equal(twl_rdma_applier_durable(a), 6);

    /* across every LUN */
    add(7, 0, 0, 8);
    add(8, 3, 0, 8);
    assert_int_equal(twl_rdma_applier_add(a, 9, 99, 0, 0, TWL_RDMA_APPLY_BARRIER_ALL), 0);
    add(10, 4, 0, 8);
    add(11, 5, 0, 0);
    assert_int_equal(next(), 7);
    assert_int_equal(next(), 8);
    none_ready();
    done(8);
    none_ready();
    done(7);
    assert_int_equal(next(), 9);
    none_ready();
    done(9);
    assert_int_equal(next(), 10);
    assert_int_equal(next(), 11);
}

/* A record with no blocks orders against barriers only. */
static void test_zero_blocks(void **state)
{
    (void)state;
    add(1, 0, 0, 8);
    add(2, 0, 0, 0);
    add(3, 0, 4, 0); /* inside 1's range, yet empty */
    add(4, 0, 8, 0);
    assert_int_equal(next(), 1);
    assert_int_equal(next(), 2);
    assert_int_equal(next(), 3);
    assert_int_equal(next(), 4);
}

/* An UNMAP with several extents: one record, several ranges, added before it may start. */
static void test_multi_extent(void **state)
{
    (void)state;
    add(1, 0, 100, 1);
    assert_int_equal(twl_rdma_applier_add(a, 2, 0, 0, 4, TWL_RDMA_APPLY_MORE), 0);
    assert_int_equal(next(), 1);
    none_ready(); /* 2 is still being assembled */
    /* nothing else may come in between */
    assert_int_equal(twl_rdma_applier_add(a, 3, 0, 50, 1, 0), -EINVAL);
    assert_int_equal(twl_rdma_applier_add(a, 2, 0, 100, 4, TWL_RDMA_APPLY_MORE), 0);
    assert_int_equal(twl_rdma_applier_add(a, 2, 0, 200, 4, 0), 0);
    assert_int_equal(twl_rdma_applier_add(a, 2, 0, 300, 4, 0), -EINVAL); /* closed */
    add(3, 0, 50, 10);  /* between the extents: runs */
    add(4, 0, 202, 1);  /* in the third extent: waits for 2 */
    add(5, 0, 1000, 1); /* elsewhere: runs */
    assert_int_equal(next(), 3);
    assert_int_equal(next(), 5);
    none_ready();
    done(1); /* 2's second extent was waiting for it */
    assert_int_equal(next(), 2);
    none_ready();
    done(2);
    assert_int_equal(next(), 4);
    done(3);
    done(4);
    done(5);
    assert_int_equal(twl_rdma_applier_durable(a), 5);
    assert_int_equal(twl_rdma_applier_count(a), 0);

    /* an earlier record that overlaps several extents counts once */
    add(6, 0, 0, 1000);
    assert_int_equal(twl_rdma_applier_add(a, 7, 0, 0, 1, TWL_RDMA_APPLY_MORE), 0);
    assert_int_equal(twl_rdma_applier_add(a, 7, 0, 10, 1, TWL_RDMA_APPLY_MORE), 0);
    assert_int_equal(twl_rdma_applier_add(a, 7, 0, 20, 1, 0), 0);
    assert_int_equal(next(), 6);
    none_ready();
    done(6);
    assert_int_equal(next(), 7);

    /* an earlier record done while a later one is being assembled */
    add(8, 0, 5000, 10);
    assert_int_equal(next(), 8);
    assert_int_equal(twl_rdma_applier_add(a, 9, 0, 5000, 1, TWL_RDMA_APPLY_MORE), 0);
    done(8);
    assert_int_equal(twl_rdma_applier_add(a, 9, 0, 5005, 1, 0), 0);
    done(7);
    assert_int_equal(next(), 9);
}

static void test_errors(void **state)
{
    (void)state;
    add(5, 0, 0, 8);
    assert_int_equal(twl_rdma_applier_add(a, 5, 0, 8, 8, 0), -EINVAL); /* seq again */
    assert_int_equal(twl_rdma_applier_add(a, 4, 0, 8, 8, 0), -EINVAL); /* backwards */
    assert_int_equal(twl_rdma_applier_add(a, 6, 0, 0, 8, 0x80), -EINVAL);
    assert_int_equal(twl_rdma_applier_add(a, 6, 0, UINT64_MAX - 3, 8, 0), -EINVAL);
    assert_int_equal(twl_rdma_applier_add(a, 6, 0, UINT64_MAX - 8, 8, 0), 0);
    assert_int_equal(twl_rdma_applier_done(a, 5), -EINVAL); /* not started */
    assert_int_equal(twl_rdma_applier_done(a, 7), -ENOENT);
    assert_int_equal(twl_rdma_applier_done(a, 1), -ENOENT);
    assert_int_equal(next(), 5);
    done(5);
    assert_int_equal(twl_rdma_applier_done(a, 5), -ENOENT); /* retired */
    assert_int_equal(next(), 6);
    done(6);
    assert_int_equal(twl_rdma_applier_done(a, 6), -ENOENT);
    assert_int_equal(twl_rdma_applier_durable(a), 6);
}

/* The fixed window fills, refuses, and wraps around many times. */
static void test_wrap(void **state)
{
    (void)state;
    uint64_t seq = 0, applied = 0;
    for (uint32_t i = 0; i < TWL_RDMA_APPLIER_RECORDS; i++) {
        seq++;
        add(seq, 0, seq % 64, 1); /* every 64th overlaps */
    }
    assert_int_equal(twl_rdma_applier_add(a, seq + 1, 0, 0, 1, 0), -ENOSPC);
    assert_int_equal(twl_rdma_applier_count(a), TWL_RDMA_APPLIER_RECORDS);
    /* apply some of the runnable ones, then add as room comes: the window slides round */
    for (int round = 0; round < 400; round++) {
        uint64_t s;
        for (int k = 0; k < 100 && twl_rdma_applier_next(a, &s) == 0; k++) {
            done(s);
            applied++;
        }
        while (twl_rdma_applier_add(a, seq + 1, 0, (seq + 1) % 64, 1, 0) == 0)
            seq++;
        assert_int_equal(twl_rdma_applier_count(a), TWL_RDMA_APPLIER_RECORDS);
    }
    assert_true(seq > 30 * TWL_RDMA_APPLIER_RECORDS);
    assert_int_equal(twl_rdma_applier_durable(a), applied);
    assert_int_equal(seq - applied, TWL_RDMA_APPLIER_RECORDS);

    /* ranges fill before records when records have many */
    twl_rdma_applier_init(a, 0);
    seq = 0;
    int rc;
    uint32_t added = 0;
    for (;;) {
        ++seq;
        rc = 0;
        for (int r = 0; r < 5 && rc == 0; r++)
            rc = twl_rdma_applier_add(a, seq, 0, seq * 100 + r * 10, 1,
                                      r < 4 ? TWL_RDMA_APPLY_MORE : 0);
        if (rc)
            break;
        added++;
    }
    assert_int_equal(rc, -ENOSPC);
    assert_int_equal(added, TWL_RDMA_APPLIER_RANGES / 5);
    /* the open record waits for room, then takes its other parts */
    for (uint64_t s = 1; s <= 9; s++) {
        assert_int_equal(next(), s);
        done(s);
    }
    for (int r = 1; r < 5; r++)
        assert_int_equal(
            twl_rdma_applier_add(a, seq, 0, seq * 100 + r * 10, 1, r < 4 ? TWL_RDMA_APPLY_MORE : 0),
            0);
    uint64_t s, last = 0;
    while (twl_rdma_applier_next(a, &s) == 0) {
        done(s);
        last = s;
    }
    assert_int_equal(last, seq);
    assert_int_equal(twl_rdma_applier_durable(a), seq);
}

/* Random records against a brute-force reference: next() returns a record exactly when one
 * may start, the oldest such, never one that overlaps an earlier unapplied one; durable is
 * the applied prefix. Ranges cluster around a few region boundaries of the overlap index,
 * some span many regions, and some records have several ranges, on several LUNs. */
#define MODEL_N      30000
#define MODEL_WINDOW 64
#define REGION       (1ull << TWL_RDMA_APPLIER_REGION_SHIFT)
struct model_rec {
    uint32_t flags;
    int nranges;
    uint32_t luns[3];
    uint64_t lbas[3], blocks[3];
    int state; /* 0 pending, 1 running, 2 done */
};
static struct model_rec model[MODEL_N + 1];

static bool model_conflict(const struct model_rec *x, const struct model_rec *y)
{
    if ((x->flags | y->flags) & TWL_RDMA_APPLY_BARRIER_ALL)
        return true;
    for (int i = 0; i < x->nranges; i++) {
        for (int j = 0; j < y->nranges; j++) {
            if (x->luns[i] != y->luns[j])
                continue;
            if ((x->flags | y->flags) & TWL_RDMA_APPLY_BARRIER)
                return true;
            if (x->blocks[i] && y->blocks[j] && x->lbas[i] < y->lbas[j] + y->blocks[j] &&
                y->lbas[j] < x->lbas[i] + x->blocks[i])
                return true;
        }
    }
    return false;
}

static int model_next(int first, int added)
{
    for (int s = first; s <= added; s++) {
        if (model[s].state != 0)
            continue;
        bool ok = true;
        for (int e = first; e < s && ok; e++)
            if (model[e].state != 2 && model_conflict(&model[e], &model[s]))
                ok = false;
        if (ok)
            return s;
    }
    return 0;
}

static void model_add(int seq, unsigned *seed)
{
    struct model_rec *m = &model[seq];
    int kind = rand_r(seed) % 50;
    m->flags = kind == 0 ? TWL_RDMA_APPLY_BARRIER : (kind == 1 ? TWL_RDMA_APPLY_BARRIER_ALL : 0);
    m->nranges = m->flags ? 1 : 1 + (kind < 10 ? rand_r(seed) % 3 : 0);
    for (int i = 0; i < m->nranges; i++) {
        m->luns[i] = (uint32_t)(i == 0 || rand_r(seed) % 4 ? rand_r(seed) % 3 : 0);
        uint64_t region = (uint64_t)(rand_r(seed) % 3);
        uint64_t off = rand_r(seed) % 2 ? (uint64_t)(rand_r(seed) % REGION)
                                        : REGION - 1 - (uint64_t)(rand_r(seed) % 8);
        m->lbas[i] = region * REGION + off;
        int size = rand_r(seed) % 20;
        m->blocks[i] = size == 0   ? 0
                       : size == 1 ? (uint64_t)(rand_r(seed) % (6 * REGION))
                                   : (uint64_t)(rand_r(seed) % 12);
        uint32_t f = m->flags | (i + 1 < m->nranges ? TWL_RDMA_APPLY_MORE : 0);
        assert_int_equal(twl_rdma_applier_add(a, (uint64_t)seq, m->luns[i], m->lbas[i],
                                              (uint32_t)m->blocks[i], f),
                         0);
    }
}

static void test_against_model(void **state)
{
    (void)state;
    unsigned seed = 12345;
    int added = 0, first = 1, running[MODEL_N], nrun = 0, started_together = 0;
    while (twl_rdma_applier_durable(a) < MODEL_N) {
        int action = rand_r(&seed) % 3;
        if (action == 0 && added < MODEL_N && twl_rdma_applier_count(a) < MODEL_WINDOW) {
            model_add(++added, &seed);
        } else if (action == 1 || (nrun == 0 && added == MODEL_N)) {
            uint64_t s;
            int want = model_next(first, added);
            int rc = twl_rdma_applier_next(a, &s);
            if (want == 0) {
                assert_int_equal(rc, -EAGAIN);
                if (nrun == 0 && added == MODEL_N)
                    fail_msg("nothing runs and nothing may start, durable %llu",
                             (unsigned long long)twl_rdma_applier_durable(a));
            } else {
                assert_int_equal(rc, 0);
                assert_int_equal(s, want);
                model[want].state = 1;
                running[nrun++] = want;
                started_together += nrun > 1;
            }
        } else if (nrun > 0) {
            int i = rand_r(&seed) % nrun;
            int s = running[i];
            running[i] = running[--nrun];
            done((uint64_t)s);
            model[s].state = 2;
            while (first <= added && model[first].state == 2)
                first++;
            assert_int_equal(twl_rdma_applier_durable(a), first - 1);
        }
    }
    assert_int_equal(twl_rdma_applier_count(a), 0);
    /* the run did exercise concurrency, not only one record at a time */
    assert_true(started_together > MODEL_N / 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_empty, setup, teardown),
        cmocka_unit_test_setup_teardown(test_disjoint_all_runnable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_overlap_waits, setup, teardown),
        cmocka_unit_test_setup_teardown(test_waits_for_pending, setup, teardown),
        cmocka_unit_test_setup_teardown(test_durable_gap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_different_luns, setup, teardown),
        cmocka_unit_test_setup_teardown(test_barrier, setup, teardown),
        cmocka_unit_test_setup_teardown(test_zero_blocks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_multi_extent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_against_model, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
