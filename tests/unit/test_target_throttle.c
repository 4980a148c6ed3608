/* Write admission on a fake clock: the rate bands, the bucket, the ring guard, FIFO order, the
 * resync share, the CmdSN window budget and the window arithmetic. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#include "throttle.h"

#define MS    1000000ull
#define MIB   (1024ull * 1024)
#define RING  (16 * MIB) /* target 4 MiB, guard 8 MiB */
#define RATE  (20e6)     /* the link's completion rate in the samples */
#define BURST (1 * MIB)

struct probe {
    struct throttle_waiter w;
    int order; /* grant order, 0 = not granted */
};

static int grants;
static struct throttle *current; /* granted writes complete at once: the samples stand for the
                                    ring */

static void on_granted(struct throttle_waiter *w)
{
    struct probe *p = (struct probe *)w;
    assert_int_equal(p->order, 0);
    p->order = ++grants;
    throttle_release(current, w->bytes);
}

/* throttle_admit; an immediate admission completes at once too. */
static bool admit(struct throttle *t, struct probe *p, uint64_t now)
{
    if (!throttle_admit(t, &p->w, now))
        return false;
    p->order = ++grants;
    throttle_release(t, p->w.bytes);
    return true;
}

static struct throttle *make(bool enabled, uint32_t resync_share)
{
    struct throttle_opts o = {.enabled = enabled,
                              .burst_bytes = BURST,
                              .min_rate = 1000000,
                              .resync_share = resync_share,
                              .queue_ms = 100,
                              .ring_bytes = RING};
    struct throttle *t = throttle_create(&o, 1);
    assert_non_null(t);
    grants = 0;
    current = t;
    return t;
}

static struct throttle_sample sample(uint64_t ring_bytes)
{
    return (struct throttle_sample){.connected = true,
                                    .rate_bytes_s = RATE,
                                    .capacity_bytes_s = RATE,
                                    .ring_bytes = ring_bytes};
}

static void probe_init(struct probe *p, uint64_t bytes, enum throttle_class cls, const void *owner)
{
    *p = (struct probe){.w = {.granted = on_granted, .bytes = bytes, .cls = cls, .owner = owner}};
}

static void bad_options_are_refused(void **state)
{
    (void)state;
    struct throttle_opts o = {.enabled = true, .burst_bytes = 0, .min_rate = 1, .ring_bytes = 1};
    assert_null(throttle_create(&o, 0));
    o.burst_bytes = 1;
    o.resync_share = 101;
    assert_null(throttle_create(&o, 0));
}

static void disabled_or_alone_admits_everything(void **state)
{
    (void)state;
    struct throttle *t = make(false, 50);
    struct throttle_sample s = sample(RING);
    throttle_tick(t, 1, &s);
    struct probe p;
    for (int i = 0; i < 100; i++) {
        probe_init(&p, MIB, THROTTLE_CLIENT, t);
        assert_true(admit(t, &p, 2));
    }
    throttle_destroy(t);

    t = make(true, 50);
    s.connected = false; /* nothing is replicated without a partner */
    throttle_tick(t, 1, &s);
    for (int i = 0; i < 100; i++) {
        probe_init(&p, MIB, THROTTLE_CLIENT, t);
        assert_true(admit(t, &p, 2));
    }
    throttle_destroy(t);
}

static void quiet_ring_never_holds_a_burst(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(0);
    throttle_tick(t, 1, &s);
    /* up to a quarter of the target (1 MiB) in the ring: no rate, whatever the bucket holds */
    struct probe p[4];
    for (int i = 0; i < 4; i++) {
        probe_init(&p[i], 256 * 1024 - 1, THROTTLE_CLIENT, t);
        assert_true(admit(t, &p[i], 1));
    }
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_true(st.rate_bytes_s == 0);
    assert_int_equal(st.admitted[THROTTLE_CLIENT], 4);
    assert_int_equal(st.waited[THROTTLE_CLIENT], 0);
    throttle_destroy(t);
}

/* Admits 64 KiB writes as fast as they are granted over one fake second in the band where the
 * rate is the completion rate; returns the bytes granted. */
static uint64_t run_one_second(struct throttle *t, uint64_t ring_bytes)
{
    enum { N = 1024 };
    struct probe *p = calloc(N, sizeof(*p));
    assert_non_null(p);
    struct throttle_sample s = sample(ring_bytes);
    uint64_t now = 1, bytes = 0;
    throttle_tick(t, now, &s);
    int next = 0;
    for (; now < 1000 * MS; now += MS) {
        /* keep 32 writes outstanding at the throttle, like an initiator at QD32 */
        while (next < N && next - grants < 32) {
            probe_init(&p[next], 64 * 1024, THROTTLE_CLIENT, t);
            admit(t, &p[next], now);
            next++;
        }
        throttle_tick(t, now, &s);
    }
    for (int i = 0; i < next; i++)
        if (p[i].order)
            bytes += p[i].w.bytes;
    throttle_destroy(t); /* grants the rest */
    free(p);
    return bytes;
}

static void saturated_link_paces_at_the_completion_rate(void **state)
{
    (void)state;
    /* 3 MiB in the ring: between half the target and the target, rate = 20 MB/s; one second
     * grants the rate plus the bucket's burst, within two writes */
    uint64_t got = run_one_second(make(true, 50), 3 * MIB);
    assert_true(got >= (uint64_t)(RATE + BURST) - 128 * 1024);
    assert_true(got <= (uint64_t)(RATE + BURST) + 128 * 1024);
    /* filling ring (5 MiB, above the target): 0.9 of the rate */
    got = run_one_second(make(true, 50), 5 * MIB);
    assert_true(got >= (uint64_t)(0.9 * RATE + BURST) - 128 * 1024);
    assert_true(got <= (uint64_t)(0.9 * RATE + BURST) + 128 * 1024);
    /* some backlog (1.5 MiB): probing at 1.25 of the rate */
    got = run_one_second(make(true, 50), 1536 * 1024);
    assert_true(got >= (uint64_t)(1.25 * RATE + BURST) - 128 * 1024);
    assert_true(got <= (uint64_t)(1.25 * RATE + BURST) + 128 * 1024);
}

static void rate_never_below_min_rate(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(5 * MIB);
    s.rate_bytes_s = 1000; /* a stalled link */
    s.capacity_bytes_s = 0;
    throttle_tick(t, 1, &s);
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_true(st.rate_bytes_s == 1000000);
    throttle_destroy(t);
}

static void admitted_bytes_count_until_released(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(0); /* the backplane has not seen them yet */
    throttle_tick(t, 1, &s);
    /* a burst goes at once while little is on its way, but what was admitted and is not done
     * counts: at the guard (8 MiB) the rest waits, whatever the backplane says */
    struct probe p[12];
    int at_once = 0;
    for (int i = 0; i < 12; i++) {
        probe_init(&p[i], MIB, THROTTLE_CLIENT, t);
        at_once += throttle_admit(t, &p[i].w, 1);
    }
    assert_in_range(at_once, 2, 8);
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_int_equal(st.inflight_bytes, (uint64_t)at_once * MIB);
    assert_int_equal(st.queued[THROTTLE_CLIENT], 12 - at_once);
    /* done: the rest go */
    for (int i = 0; i < at_once; i++)
        throttle_release(t, MIB);
    for (uint64_t now = MS; grants < 12 - at_once && now < 2000 * MS; now += MS)
        throttle_tick(t, now, &s);
    assert_int_equal(grants, 12 - at_once);
    throttle_destroy(t);
}

static void ring_guard_holds_everything(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(8 * MIB); /* half the ring */
    throttle_tick(t, 1, &s);
    struct probe p;
    probe_init(&p, 4096, THROTTLE_CLIENT, t);
    assert_false(admit(t, &p, 1));
    /* a full bucket does not help while the ring is at the guard */
    throttle_tick(t, 500 * MS, &s);
    assert_int_equal(p.order, 0);
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_int_equal(st.queued[THROTTLE_CLIENT], 1);
    assert_true(st.throttling);
    /* the partner consumed: granted at the next tick */
    s.ring_bytes = 3 * MIB;
    throttle_tick(t, 501 * MS, &s);
    assert_int_equal(p.order, 1);
    throttle_destroy(t);
}

static void waiting_writes_go_in_fifo_order(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(3 * MIB);
    throttle_tick(t, 1, &s);
    struct probe p[8];
    int admitted = 0;
    for (int i = 0; i < 8; i++) {
        probe_init(&p[i], 512 * 1024, THROTTLE_CLIENT, t);
        if (admit(t, &p[i], 1))
            admitted++;
    }
    assert_int_equal(admitted, 2); /* the 1 MiB burst */
    /* a small write behind them waits too: no overtaking */
    struct probe small;
    probe_init(&small, 512, THROTTLE_CLIENT, t);
    assert_false(admit(t, &small, 1));
    for (uint64_t now = 1; grants < 9; now += MS)
        throttle_tick(t, now, &s);
    for (int i = 0; i < 8; i++)
        assert_int_equal(p[i].order, i + 1);
    assert_int_equal(small.order, 9);
    throttle_destroy(t);
}

static void large_write_goes_when_bucket_is_full(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(3 * MIB);
    throttle_tick(t, 1, &s);
    struct probe p;
    probe_init(&p, 4 * MIB, THROTTLE_CLIENT, t); /* larger than the bucket */
    assert_true(admit(t, &p, 1));
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_true(st.tokens < 0); /* the debt paces what follows */
    probe_init(&p, 4096, THROTTLE_CLIENT, t);
    assert_false(admit(t, &p, 2));
    /* the debt (3 MiB) takes 3 MiB / 20 MB/s = 157 ms to pay */
    throttle_tick(t, 150 * MS, &s);
    assert_int_equal(p.order, 0);
    throttle_tick(t, 160 * MS, &s);
    assert_int_equal(p.order, 2); /* the second grant, after the large write */
    throttle_destroy(t);
}

static uint64_t share_of_resync(uint32_t share)
{
    struct throttle *t = make(true, share);
    struct throttle_sample s = sample(3 * MIB);
    throttle_tick(t, 1, &s);
    enum { N = 2000 };
    struct probe *c = calloc(N, sizeof(*c)), *r = calloc(N, sizeof(*r));
    assert_non_null(c);
    assert_non_null(r);
    /* drain the bucket first so every grant below is paced */
    struct probe first;
    probe_init(&first, BURST, THROTTLE_CLIENT, t);
    assert_true(admit(t, &first, 1));
    for (int i = 0; i < N; i++) {
        probe_init(&c[i], 64 * 1024, THROTTLE_CLIENT, t);
        assert_false(admit(t, &c[i], 1));
        probe_init(&r[i], 64 * 1024, THROTTLE_RESYNC, NULL);
        assert_false(admit(t, &r[i], 1));
    }
    for (uint64_t now = MS; now <= 1000 * MS; now += MS)
        throttle_tick(t, now, &s);
    uint64_t cb = 0, rb = 0;
    for (int i = 0; i < N; i++) {
        cb += c[i].order ? c[i].w.bytes : 0;
        rb += r[i].order ? r[i].w.bytes : 0;
    }
    throttle_destroy(t);
    free(c);
    free(r);
    /* one second at 20 MB/s in all, both queues always full */
    assert_true(cb + rb >= (uint64_t)RATE - 128 * 1024 && cb + rb <= (uint64_t)RATE + 128 * 1024);
    return rb * 100 / (cb + rb);
}

static void resync_gets_its_share(void **state)
{
    (void)state;
    assert_in_range(share_of_resync(50), 49, 51);
    assert_in_range(share_of_resync(20), 19, 21);
    assert_in_range(share_of_resync(80), 79, 81);
}

static void resync_alone_takes_everything(void **state)
{
    (void)state;
    struct throttle *t = make(true, 10);
    struct throttle_sample s = sample(3 * MIB);
    throttle_tick(t, 1, &s);
    enum { N = 1000 };
    struct probe *r = calloc(N, sizeof(*r));
    assert_non_null(r);
    uint64_t rb = 0;
    for (int i = 0; i < N; i++) {
        probe_init(&r[i], 64 * 1024, THROTTLE_RESYNC, NULL);
        admit(t, &r[i], 1);
    }
    for (uint64_t now = MS; now <= 500 * MS; now += MS)
        throttle_tick(t, now, &s);
    for (int i = 0; i < N; i++)
        rb += r[i].order ? r[i].w.bytes : 0;
    /* half a second of the whole rate, plus the burst */
    assert_true(rb >= (uint64_t)(RATE / 2 + BURST) - 128 * 1024);
    throttle_destroy(t);
    free(r);
}

static void window_budget_shared_among_waiting_sessions(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(8 * MIB); /* guard: everything waits */
    throttle_tick(t, 1, &s);
    assert_int_equal(throttle_window_budget(t), 0);
    int a, b; /* two sessions */
    struct probe p[3];
    probe_init(&p[0], 4096, THROTTLE_CLIENT, &a);
    probe_init(&p[1], 4096, THROTTLE_CLIENT, &b);
    probe_init(&p[2], 4096, THROTTLE_CLIENT, &a);
    for (int i = 0; i < 3; i++)
        assert_false(admit(t, &p[i], 2));
    throttle_tick(t, 3, &s);
    /* 100 ms of the rate (at the guard: 0.9 x 20 MB/s) shared by two sessions */
    assert_int_equal(throttle_window_budget(t), 900000);
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_int_equal(st.sessions_waiting, 2);
    /* drained: the windows stay shrunk while pacing goes on, or the initiators would send
     * their whole queues again at once */
    s.ring_bytes = 0;
    throttle_tick(t, 4, &s);
    assert_int_equal(grants, 3);
    assert_int_equal(throttle_window_budget(t), 900000);
    /* a second without a wait: pacing stops, the windows reopen */
    throttle_tick(t, 1100 * MS, &s);
    assert_int_equal(throttle_window_budget(t), 0);
    throttle_destroy(t);
}

static void window_slots_arithmetic(void **state)
{
    (void)state;
    assert_int_equal(throttle_window_slots(32, 0, 4096), 32);        /* nothing waits */
    assert_int_equal(throttle_window_slots(32, 1000000, 4096), 32);  /* 245 slots, capped */
    assert_int_equal(throttle_window_slots(32, 1000000, 65536), 16); /* ceil(15.26) */
    assert_int_equal(throttle_window_slots(32, 1000000, 1048576), THROTTLE_MIN_WINDOW);
    assert_int_equal(throttle_window_slots(32, 1, 0), 32);     /* no write seen yet */
    assert_int_equal(throttle_window_slots(2, 1, 1048576), 2); /* tiny windows stay */
    assert_int_equal(throttle_window_slots(128, 524288, 65536), 8);
}

static void waits_are_reported_and_episodes_end(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(3 * MIB);
    throttle_tick(t, 1, &s);
    struct probe p[3];
    probe_init(&p[0], BURST, THROTTLE_CLIENT, t);
    assert_true(admit(t, &p[0], 1)); /* empties the bucket */
    probe_init(&p[1], 200000, THROTTLE_CLIENT, t);
    assert_false(admit(t, &p[1], 1));
    /* 200 KB at 20 MB/s: 10 ms */
    for (uint64_t now = MS; p[1].order == 0; now += MS)
        throttle_tick(t, now, &s);
    struct throttle_stats st;
    throttle_get_stats(t, &st);
    assert_int_equal(st.admitted[THROTTLE_CLIENT], 2);
    assert_int_equal(st.waited[THROTTLE_CLIENT], 1);
    assert_in_range(st.wait_max_us, 9000, 12000);
    assert_int_equal(st.wait_p50_us, 0);
    assert_true(st.throttling);
    assert_int_equal(st.episodes, 1);
    /* a second without waiting ends the episode */
    throttle_tick(t, 1200 * MS, &s);
    throttle_get_stats(t, &st);
    assert_false(st.throttling);
    throttle_destroy(t);
}

static _Atomic uint64_t fake_ring; /* what the throttle's thread samples */

static void fake_sample(void *ctx, struct throttle_sample *s)
{
    (void)ctx;
    *s = sample(atomic_load(&fake_ring));
}

/* Stands for the resync collecting its copies in flight: the ring empties. */
static void empty_ring(void *ctx)
{
    (*(int *)ctx)++;
    atomic_store(&fake_ring, 0);
}

static void blocking_wait_runs_before_sleep(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    atomic_store(&fake_ring, 0);
    struct throttle_sample s = sample(0);
    throttle_tick(t, 1, &s);
    assert_int_equal(throttle_start(t, fake_sample, NULL), 0);
    int slept = 0;
    /* admitted at once: nothing to give up first */
    throttle_wait(t, THROTTLE_RESYNC, MIB, empty_ring, &slept);
    assert_int_equal(slept, 0);
    throttle_release(t, MIB);
    /* at the guard the wait must give up what it holds first, or it would sleep for ever */
    atomic_store(&fake_ring, 8 * MIB);
    s = sample(8 * MIB);
    throttle_tick(t, 2, &s);
    throttle_wait(t, THROTTLE_RESYNC, MIB, empty_ring, &slept);
    assert_int_equal(slept, 1);
    throttle_release(t, MIB);
    throttle_destroy(t);
}

static void destroy_grants_what_still_waits(void **state)
{
    (void)state;
    struct throttle *t = make(true, 50);
    struct throttle_sample s = sample(8 * MIB);
    throttle_tick(t, 1, &s);
    struct probe p;
    probe_init(&p, 4096, THROTTLE_CLIENT, t);
    assert_false(admit(t, &p, 1));
    throttle_destroy(t);
    assert_int_equal(p.order, 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(bad_options_are_refused),
        cmocka_unit_test(disabled_or_alone_admits_everything),
        cmocka_unit_test(quiet_ring_never_holds_a_burst),
        cmocka_unit_test(saturated_link_paces_at_the_completion_rate),
        cmocka_unit_test(rate_never_below_min_rate),
        cmocka_unit_test(admitted_bytes_count_until_released),
        cmocka_unit_test(ring_guard_holds_everything),
        cmocka_unit_test(waiting_writes_go_in_fifo_order),
        cmocka_unit_test(large_write_goes_when_bucket_is_full),
        cmocka_unit_test(resync_gets_its_share),
        cmocka_unit_test(resync_alone_takes_everything),
        cmocka_unit_test(window_budget_shared_among_waiting_sessions),
        cmocka_unit_test(window_slots_arithmetic),
        cmocka_unit_test(waits_are_reported_and_episodes_end),
        cmocka_unit_test(blocking_wait_runs_before_sleep),
        cmocka_unit_test(destroy_grants_what_still_waits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
