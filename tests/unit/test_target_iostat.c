/* Per-LUN I/O figures: counts, buckets, quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "iostat.h"

static void records_by_kind(void **state)
{
    (void)state;
    static struct iostat s;
    memset(&s, 0, sizeof(s));
    iostat_record(&s, IOSTAT_WRITE, 4096, 30000, false, 1);
    iostat_record(&s, IOSTAT_WRITE, 8192, 70000, false, 1);
    iostat_record(&s, IOSTAT_READ, 512, 1000, false, 1);
    iostat_record(&s, IOSTAT_OTHER, 0, 10, true, 1);
    struct iostat_snapshot snap;
    iostat_snapshot(&s, 1, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].commands, 2);
    assert_int_equal(snap.op[IOSTAT_WRITE].bytes, 12288);
    assert_int_equal(snap.op[IOSTAT_WRITE].latency_ns_sum, 100000);
    assert_int_equal(snap.op[IOSTAT_READ].commands, 1);
    assert_int_equal(snap.op[IOSTAT_READ].bytes, 512);
    assert_int_equal(snap.op[IOSTAT_OTHER].commands, 1);
    assert_int_equal(snap.errors, 1);
}

static void buckets_take_their_upper_bound(void **state)
{
    (void)state;
    static struct iostat s;
    memset(&s, 0, sizeof(s));
    iostat_record(&s, IOSTAT_READ, 0, 50000, false, 1);      /* 50 us: the first bucket */
    iostat_record(&s, IOSTAT_READ, 0, 50001, false, 1);      /* 50.001 us truncates to 50 */
    iostat_record(&s, IOSTAT_READ, 0, 51000, false, 1);      /* 51 us: the second */
    iostat_record(&s, IOSTAT_READ, 0, 6000000000, false, 1); /* 6 s: +Inf */
    struct iostat_snapshot snap;
    iostat_snapshot(&s, 1, &snap);
    const struct iostat_counts *c = &snap.op[IOSTAT_READ];
    assert_int_equal(c->buckets[0], 2);
    assert_int_equal(c->buckets[1], 1);
    assert_int_equal(c->buckets[IOSTAT_BUCKETS - 1], 1);
    uint64_t sum = 0;
    for (int b = 0; b < IOSTAT_BUCKETS; b++)
        sum += c->buckets[b];
    assert_int_equal(sum, c->commands);
}

static void quantiles_interpolate_inside_a_bucket(void **state)
{
    (void)state;
    struct iostat_counts c;
    memset(&c, 0, sizeof(c));
    assert_true(iostat_quantile_us(&c, 0.5) == 0);
    c.buckets[4] = 100; /* (500, 1000] us */
    c.commands = 100;
    double p50 = iostat_quantile_us(&c, 0.5);
    assert_true(p50 > 740 && p50 < 760);
    assert_true(iostat_quantile_us(&c, 0.99) <= 1000);
    c.buckets[0] = 100; /* half now at or below 50 us */
    c.commands = 200;
    assert_true(iostat_quantile_us(&c, 0.25) <= 50);
    assert_true(iostat_quantile_us(&c, 0.75) > 500);
}

static void rate_is_the_last_whole_second(void **state)
{
    (void)state;
    static struct iostat s;
    memset(&s, 0, sizeof(s));
    const uint64_t sec = 1000000000ull;
    struct iostat_snapshot snap;
    iostat_record(&s, IOSTAT_WRITE, 1000, 0, false, 10 * sec);
    iostat_record(&s, IOSTAT_WRITE, 500, 0, false, 10 * sec + sec / 2);
    iostat_snapshot(&s, 10 * sec + sec / 2, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 0); /* second 10 is not over */
    iostat_snapshot(&s, 11 * sec, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 1500);
    iostat_record(&s, IOSTAT_WRITE, 700, 0, false, 11 * sec + 1);
    iostat_record(&s, IOSTAT_READ, 300, 0, false, 11 * sec + 2);
    iostat_snapshot(&s, 11 * sec + 5, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 1500);
    iostat_snapshot(&s, 12 * sec, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 700);
    assert_int_equal(snap.op[IOSTAT_READ].rate_bytes_s, 300);
    iostat_snapshot(&s, 13 * sec, &snap); /* idle since: nothing */
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 0);
    iostat_record(&s, IOSTAT_WRITE, 100, 0, false, 20 * sec); /* after a gap, not carried */
    iostat_snapshot(&s, 20 * sec + 1, &snap);
    assert_int_equal(snap.op[IOSTAT_WRITE].rate_bytes_s, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(records_by_kind),
        cmocka_unit_test(buckets_take_their_upper_bound),
        cmocka_unit_test(quantiles_interpolate_inside_a_bucket),
        cmocka_unit_test(rate_is_the_last_whole_second),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
