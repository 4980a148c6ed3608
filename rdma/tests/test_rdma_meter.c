/* Unit tests of the completion-rate meter, against synthetic time. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>
#include <errno.h>
#include <math.h>

#include "proto.h"

#define MS        1000000ull
#define US        1000ull
#define WINDOW    (100 * MS)
#define RATE      1e9 /* bytes per second in the steady tests */
#define REC_BYTES 65536.0

static void assert_near(double got, double want, double rel)
{
    if (fabs(got - want) > rel * fabs(want))
        fail_msg("%.6g is not within %.3g %% of %.6g", got, rel * 100, want);
}

/* A small deterministic generator, so the irregular tests are the same every run. */
static uint64_t rng = 0x9e3779b97f4a7c15ull;
static double uniform(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0; /* [0, 1) */
}

/* Feeds one record every gap_ns at bytes_per_s for dur_ns after *t; *t ends at the last. */
static void feed_regular(struct twl_rdma_meter *m, uint64_t *t, uint64_t dur_ns, uint64_t gap_ns,
                         double bytes_per_s, bool backlogged)
{
    for (uint64_t end = *t + dur_ns; *t + gap_ns <= end;) {
        *t += gap_ns;
        double b = bytes_per_s * (double)gap_ns / 1e9;
        twl_rdma_meter_add(m, *t, (uint64_t)llround(b), 1, backlogged);
    }
}

static void test_init_and_no_data(void **state)
{
    (void)state;
    struct twl_rdma_meter m;
    double b = -1, r = -1;
    assert_int_equal(twl_rdma_meter_init(&m, 0), -EINVAL);
    assert_int_equal(twl_rdma_meter_init(&m, WINDOW), 0);
    assert_int_equal(twl_rdma_meter_rate(&m, 5 * MS, &b, &r), -ENODATA);
    assert_true(b == 0 && r == 0);
    assert_int_equal(twl_rdma_meter_capacity(&m, &b, &r), -ENODATA);
    /* the first completion only starts the clock */
    twl_rdma_meter_add(&m, 10 * MS, 65536, 1, true);
    assert_int_equal(twl_rdma_meter_rate(&m, 10 * MS, &b, &r), -ENODATA);
    assert_int_equal(twl_rdma_meter_capacity(&m, NULL, NULL), -ENODATA);
    /* time passing with nothing completed is an observed rate of 0 */
    assert_int_equal(twl_rdma_meter_rate(&m, 11 * MS, &b, NULL), 0);
    assert_true(b == 0);
}

/* A steady rate: right within 1 % from early on (the weight normalisation), and after a few
 * windows. */
static void test_steady(void **state)
{
    (void)state;
    struct twl_rdma_meter m;
    twl_rdma_meter_init(&m, WINDOW);
    uint64_t t = 1000 * MS;
    twl_rdma_meter_add(&m, t, 0, 0, true);
    double b, r, cb, cr;
    feed_regular(&m, &t, WINDOW / 2, 65536 * US / 1000, RATE, true); /* 64 KiB per 65.5 us */
    assert_int_equal(twl_rdma_meter_rate(&m, t, &b, &r), 0);
    assert_near(b, RATE, 0.01);
    assert_near(r, RATE / REC_BYTES, 0.01);
    feed_regular(&m, &t, 5 * WINDOW, 65536 * US / 1000, RATE, true);
    assert_int_equal(twl_rdma_meter_rate(&m, t, &b, &r), 0);
    assert_near(b, RATE, 0.01);
    assert_near(r, RATE / REC_BYTES, 0.01);
    assert_int_equal(twl_rdma_meter_capacity(&m, &cb, &cr), 0);
    assert_near(cb, RATE, 0.01);
    assert_near(cr, RATE / REC_BYTES, 0.01);
}

/* A step from 1 GB/s to 200 MB/s: after k windows the estimate has moved 1 - e^-k of the way
 * (the window is the time constant); within 1 % of the new rate after eight. */
static void test_step(void **state)
{
    (void)state;
    struct twl_rdma_meter m;
    twl_rdma_meter_init(&m, WINDOW);
    uint64_t t = 0;
    twl_rdma_meter_add(&m, t, 0, 0, true);
    feed_regular(&m, &t, 10 * WINDOW, 100 * US, RATE, true);
    double b;
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE, 0.001);
    feed_regular(&m, &t, WINDOW, 100 * US, RATE / 5, true);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE / 5 + (RATE - RATE / 5) * exp(-1), 0.01);
    feed_regular(&m, &t, 4 * WINDOW, 100 * US, RATE / 5, true);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE / 5 + (RATE - RATE / 5) * exp(-5), 0.01);
    feed_regular(&m, &t, 3 * WINDOW, 100 * US, RATE / 5, true);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE / 5, 0.01);
    /* and back up */
    feed_regular(&m, &t, 5 * WINDOW, 100 * US, RATE, true);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE, 0.01);
    assert_true(b < RATE); /* approaches from below */
}

/* Idle: throughput decays by e per window toward zero; capacity stays. */
static void test_idle_decay(void **state)
{
    (void)state;
    struct twl_rdma_meter m;
    twl_rdma_meter_init(&m, WINDOW);
    uint64_t t = 0;
    twl_rdma_meter_add(&m, t, 0, 0, true);
    feed_regular(&m, &t, 10 * WINDOW, 100 * US, RATE, true);
    double b, r;
    twl_rdma_meter_rate(&m, t + WINDOW, &b, &r);
    assert_near(b, RATE * exp(-1), 0.01);
    assert_near(r, 1e4 * exp(-1), 0.01); /* one record per 100 us */
    twl_rdma_meter_rate(&m, t + 10 * WINDOW, &b, NULL);
    assert_true(b < RATE * 1e-4);
    twl_rdma_meter_rate(&m, t + 1000 * WINDOW, &b, NULL);
    assert_true(b >= 0 && b < 1);
    assert_int_equal(twl_rdma_meter_capacity(&m, &b, NULL), 0);
    assert_near(b, RATE, 0.01);
    /* the first completion after the pause spreads over the pause, as it should */
    t += 10 * WINDOW;
    twl_rdma_meter_add(&m, t, 65536, 1, false);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_true(b < RATE * 1e-3);
}

/* Irregular intervals carrying the same rate give the same estimate as regular ones. */
static void test_irregular(void **state)
{
    (void)state;
    struct twl_rdma_meter reg, irr;
    twl_rdma_meter_init(&reg, WINDOW);
    twl_rdma_meter_init(&irr, WINDOW);
    uint64_t t = 0;
    twl_rdma_meter_add(&reg, 0, 0, 0, true);
    twl_rdma_meter_add(&irr, 0, 0, 0, true);
    feed_regular(&reg, &t, 3 * WINDOW, 100 * US, RATE, true);
    /* gaps from 1 us to 2 ms, bytes in proportion (what a steady link delivers) */
    uint64_t u = 0;
    while (u < t) {
        uint64_t gap = 1 * US + (uint64_t)(uniform() * 2 * MS);
        if (u + gap > t)
            gap = t - u;
        u += gap;
        twl_rdma_meter_add(&irr, u, (uint64_t)llround(RATE * (double)gap / 1e9), 1, true);
    }
    double br, bi;
    twl_rdma_meter_rate(&reg, t, &br, NULL);
    twl_rdma_meter_rate(&irr, t, &bi, NULL);
    assert_near(bi, br, 1e-4);
    assert_near(bi, RATE, 1e-3);

    /* fixed-size records at random times (exponential gaps) with the same mean rate: the
     * estimate is unbiased, its noise about 1 / sqrt(2 * records per window) */
    struct twl_rdma_meter poi;
    twl_rdma_meter_init(&poi, 1000 * MS);
    t = 0;
    twl_rdma_meter_add(&poi, 0, 0, 0, true);
    double mean_gap = REC_BYTES / RATE * 1e9;
    while (t < 5000 * MS) {
        t += (uint64_t)llround(-log(1 - uniform()) * mean_gap);
        twl_rdma_meter_add(&poi, t, (uint64_t)REC_BYTES, 1, true);
    }
    twl_rdma_meter_rate(&poi, t, &bi, NULL);
    assert_near(bi, RATE, 0.03);
}

/* Feeds rate bytes_per_s from *t to end with random gaps up to max_gap_ns. */
static void feed_irregular(struct twl_rdma_meter *m, uint64_t *t, uint64_t end, uint64_t max_gap_ns,
                           double bytes_per_s)
{
    while (*t < end) {
        uint64_t gap = 1 + (uint64_t)(uniform() * (double)max_gap_ns);
        if (*t + gap > end)
            gap = end - *t;
        *t += gap;
        twl_rdma_meter_add(m, *t, (uint64_t)llround(bytes_per_s * (double)gap / 1e9), 1, true);
    }
}

/* Completions far apart (up to most of a window) across rate changes: each interval weighs
 * by its length, so the estimate is the same as with frequent regular completions, and a
 * step moves 1 - 1/e of the way per window whatever the spacing. */
static void test_irregular_step(void **state)
{
    (void)state;
    struct twl_rdma_meter reg, irr;
    twl_rdma_meter_init(&reg, WINDOW);
    twl_rdma_meter_init(&irr, WINDOW);
    uint64_t tr = 0, ti = 0;
    twl_rdma_meter_add(&reg, 0, 0, 0, true);
    twl_rdma_meter_add(&irr, 0, 0, 0, true);
    const double rates[] = {RATE, RATE / 5, RATE / 2, RATE * 2};
    for (int i = 0; i < 4; i++) {
        uint64_t end = (uint64_t)(i + 1) * 3 * WINDOW / 2;
        feed_regular(&reg, &tr, end - tr, 50 * US, rates[i], true);
        feed_irregular(&irr, &ti, end, 6 * WINDOW / 10, rates[i]);
        double br, bi;
        twl_rdma_meter_rate(&reg, end, &br, NULL);
        twl_rdma_meter_rate(&irr, end, &bi, NULL);
        assert_near(bi, br, 1e-4);
    }
    /* a step seen through completions a quarter window apart */
    struct twl_rdma_meter m;
    twl_rdma_meter_init(&m, WINDOW);
    uint64_t t = 0;
    twl_rdma_meter_add(&m, t, 0, 0, true);
    feed_regular(&m, &t, 20 * WINDOW, WINDOW / 4, RATE, true);
    feed_regular(&m, &t, WINDOW, WINDOW / 4, RATE / 5, true);
    double b;
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, RATE / 5 + (RATE - RATE / 5) * exp(-1), 0.001);
}

/* Completions polled together at one instant count as one batch. */
static void test_same_instant(void **state)
{
    (void)state;
    struct twl_rdma_meter one, four;
    twl_rdma_meter_init(&one, WINDOW);
    twl_rdma_meter_init(&four, WINDOW);
    twl_rdma_meter_add(&one, 0, 0, 0, true);
    twl_rdma_meter_add(&four, 0, 0, 0, true);
    for (uint64_t t = 400 * US; t <= 5 * WINDOW; t += 400 * US) {
        twl_rdma_meter_add(&one, t, 4 * 65536, 4, true);
        for (int i = 0; i < 4; i++)
            twl_rdma_meter_add(&four, t, 65536, 1, true);
    }
    double b1, b4, r1, r4;
    twl_rdma_meter_rate(&one, 5 * WINDOW, &b1, &r1);
    twl_rdma_meter_rate(&four, 5 * WINDOW, &b4, &r4);
    assert_near(b4, b1, 1e-9);
    assert_near(r4, r1, 1e-9);
    assert_near(b1, 4 * 65536 / 400e-6, 0.001);
    twl_rdma_meter_capacity(&one, &b1, NULL);
    twl_rdma_meter_capacity(&four, &b4, NULL);
    assert_near(b4, b1, 1e-9);
    /* a clock that steps back counts as the same instant, not as a huge interval */
    twl_rdma_meter_add(&four, 5 * WINDOW - 1 * MS, 65536, 1, true);
    twl_rdma_meter_rate(&four, 5 * WINDOW, &b4, NULL);
    assert_near(b4, b1, 0.01);
}

/* Capacity ignores what happens while the ring is not backlogged: idle time, and light load
 * that measures the initiators, not the link. */
static void test_backlogged_only(void **state)
{
    (void)state;
    struct twl_rdma_meter m;
    twl_rdma_meter_init(&m, WINDOW);
    uint64_t t = 0;
    double b, cb;
    twl_rdma_meter_add(&m, t, 0, 0, false);
    /* light load first: throughput known, capacity not */
    feed_regular(&m, &t, 5 * WINDOW, 1 * MS, 10e6, false);
    assert_int_equal(twl_rdma_meter_capacity(&m, &cb, NULL), -ENODATA);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, 10e6, 0.01);
    /* a burst the link could not keep up with: its first completion ends an interval that
     * began with an empty ring, so it is not a backlogged one */
    twl_rdma_meter_add(&m, t += 100 * US, 65536, 1, false);
    feed_regular(&m, &t, 2 * WINDOW, 100 * US, RATE, true);
    assert_int_equal(twl_rdma_meter_capacity(&m, &cb, NULL), 0);
    assert_near(cb, RATE, 0.01);
    /* idle for a long time, then light load again */
    t += 50 * WINDOW;
    feed_regular(&m, &t, 10 * WINDOW, 1 * MS, 10e6, false);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_near(b, 10e6, 0.01);
    twl_rdma_meter_capacity(&m, &cb, NULL);
    assert_near(cb, RATE, 0.01);
    /* the link got slower: the next backlogged period moves capacity there */
    twl_rdma_meter_add(&m, t += 100 * US, 65536, 1, false);
    feed_regular(&m, &t, 5 * WINDOW, 100 * US, RATE / 2, true);
    twl_rdma_meter_capacity(&m, &cb, NULL);
    assert_near(cb, RATE / 2, 0.01);
    /* with backlogged periods split by idle ones, capacity is what they carried */
    for (int i = 0; i < 20; i++) {
        t += 3 * WINDOW;
        twl_rdma_meter_add(&m, t, 65536, 1, false);
        feed_regular(&m, &t, WINDOW / 4, 100 * US, RATE / 2, true);
    }
    twl_rdma_meter_capacity(&m, &cb, NULL);
    assert_near(cb, RATE / 2, 0.01);
    twl_rdma_meter_rate(&m, t, &b, NULL);
    assert_true(b < RATE / 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_init_and_no_data),
        cmocka_unit_test(test_steady),
        cmocka_unit_test(test_step),
        cmocka_unit_test(test_idle_decay),
        cmocka_unit_test(test_irregular),
        cmocka_unit_test(test_irregular_step),
        cmocka_unit_test(test_same_instant),
        cmocka_unit_test(test_backlogged_only),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
