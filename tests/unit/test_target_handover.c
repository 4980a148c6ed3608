/*
 * Handover records (handover.h): encoding round trips, every malformed shape is refused, and the
 * in-sync rule a takeover or giveback is judged by.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "handover.h"
#include "twl_common.h"

static void give_round_trips(void **state)
{
    (void)state;
    struct handover_record h = {.lun = 7, .kind = HANDOVER_GIVE, .token = 0x0102030405060708ull};
    uint8_t buf[HANDOVER_MAX_LEN];
    uint32_t len = handover_encode(&h, buf);
    assert_int_equal(len, HANDOVER_HDR_LEN);
    const uint8_t want[HANDOVER_HDR_LEN] = {
        'T', 'W', 'L', 'H', 0, 0, 0, 7, 0, 0, 0, 2, /* magic, LUN 7, give */
        0,   0,   0,   0,                           /* flags */
        1,   2,   3,   4,   5, 6, 7, 8,             /* token */
        0,   0,   0,   0,                           /* no reason */
    };
    assert_memory_equal(buf, want, sizeof(want));
    struct handover_record got;
    assert_int_equal(handover_decode(buf, len, &got), 0);
    assert_int_equal(got.lun, 7);
    assert_int_equal(got.kind, HANDOVER_GIVE);
    assert_int_equal(got.flags, 0);
    assert_true(got.token == h.token);
    assert_string_equal(got.reason, "");
}

static void refusal_carries_its_reason(void **state)
{
    (void)state;
    struct handover_record h = {.lun = 1, .kind = HANDOVER_REFUSED, .token = 9};
    strcpy(h.reason, "LUN 1: resyncing: 3.0 MiB left to copy");
    uint8_t buf[HANDOVER_MAX_LEN];
    uint32_t len = handover_encode(&h, buf);
    assert_int_equal(len, HANDOVER_HDR_LEN + strlen(h.reason));
    struct handover_record got;
    assert_int_equal(handover_decode(buf, len, &got), 0);
    assert_int_equal(got.kind, HANDOVER_REFUSED);
    assert_string_equal(got.reason, h.reason);
}

static void long_reason_is_cut(void **state)
{
    (void)state;
    struct handover_record h = {.kind = HANDOVER_REFUSED};
    memset(h.reason, 'x', HANDOVER_REASON_MAX);
    h.reason[HANDOVER_REASON_MAX] = '\0';
    uint8_t buf[HANDOVER_MAX_LEN];
    assert_int_equal(handover_encode(&h, buf), HANDOVER_MAX_LEN);
    struct handover_record got;
    assert_int_equal(handover_decode(buf, HANDOVER_MAX_LEN, &got), 0);
    assert_int_equal(strlen(got.reason), HANDOVER_REASON_MAX);
}

static void malformed_records_are_refused(void **state)
{
    (void)state;
    struct handover_record h = {.lun = 3, .kind = HANDOVER_ASK, .flags = HANDOVER_FORCE};
    strcpy(h.reason, "ab");
    uint8_t good[HANDOVER_MAX_LEN], buf[HANDOVER_MAX_LEN];
    uint32_t len = handover_encode(&h, good);
    struct handover_record got;
    assert_int_equal(handover_decode(good, len, &got), 0);
    assert_int_equal(got.flags, HANDOVER_FORCE);

    assert_int_equal(handover_decode(good, HANDOVER_HDR_LEN - 1, &got), -EBADMSG); /* short */
    assert_int_equal(handover_decode(good, len - 1, &got), -EBADMSG);              /* reason cut */
    memcpy(buf, good, len);
    buf[0] = 'X'; /* not one */
    assert_int_equal(handover_decode(buf, len, &got), -EBADMSG);
    const uint32_t bad_kinds[] = {0, 4, 0xffffffffu};
    for (size_t i = 0; i < sizeof(bad_kinds) / sizeof(bad_kinds[0]); i++) {
        memcpy(buf, good, len);
        twl_put_be32(buf + 8, bad_kinds[i]);
        assert_int_equal(handover_decode(buf, len, &got), -EBADMSG);
    }
    memcpy(buf, good, len);
    twl_put_be32(buf + 12, 2); /* unknown flag */
    assert_int_equal(handover_decode(buf, len, &got), -EBADMSG);
    memcpy(buf, good, len);
    twl_put_be32(buf + 24, HANDOVER_REASON_MAX + 1); /* over the maximum */
    assert_int_equal(handover_decode(buf, len, &got), -EBADMSG);
    memcpy(buf, good, len);
    buf[HANDOVER_HDR_LEN + 1] = '\0'; /* a NUL inside the reason */
    assert_int_equal(handover_decode(buf, len, &got), -EBADMSG);
}

static const struct handover_copies in_sync = {
    .connected = true, .paired = true, .peer_listed = true};

static void in_sync_copies_may_move(void **state)
{
    (void)state;
    char why[160] = "";
    assert_int_equal(handover_blocker(&in_sync, why, sizeof(why)), 0);
}

static void away_partner_cannot_take_it(void **state)
{
    (void)state;
    struct handover_copies s = in_sync;
    s.connected = false;
    s.dirty_bytes = 1 << 20; /* the missing partner is said first */
    char why[160];
    assert_int_equal(handover_blocker(&s, why, sizeof(why)), -ENOTCONN);
    assert_string_equal(why, "the partner is not connected");
}

/* Each way the copies may differ refuses, with its own reason. */
static void differing_copies_refuse_with_reason(void **state)
{
    (void)state;
    struct {
        struct handover_copies s;
        const char *want;
    } cases[] = {
        {{.connected = true, .peer_listed = true}, "the last handshake did not pair it"},
        {{.connected = true,
          .paired = true,
          .peer_listed = true,
          .resyncing = true,
          .dirty_bytes = 3 << 20},
         "resyncing: 3.0 MiB of the partner's copy left to copy"},
        {{.connected = true, .paired = true, .peer_listed = true, .dirty_bytes = 1 << 19},
         "resync pending: 0.5 MiB of the partner's copy differ"},
        {{.connected = true,
          .paired = true,
          .peer_listed = true,
          .resync_paused = true,
          .dirty_bytes = 1 << 20},
         "resync paused: 1.0 MiB"},
        {{.connected = true, .paired = true, .peer_listed = true, .degraded = true}, "degraded"},
        {{.connected = true, .paired = true, .peer_listed = true, .need_gens = true},
         "resyncing: the partner's copy has not been confirmed equal yet"},
        {{.connected = true, .paired = true}, "the partner has not listed"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char why[160] = "";
        assert_int_equal(handover_blocker(&cases[i].s, why, sizeof(why)), -EAGAIN);
        if (strstr(why, cases[i].want) == NULL)
            fail_msg("case %zu: '%s' lacks '%s'", i, why, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(give_round_trips),
        cmocka_unit_test(refusal_carries_its_reason),
        cmocka_unit_test(long_reason_is_cut),
        cmocka_unit_test(malformed_records_are_refused),
        cmocka_unit_test(in_sync_copies_may_move),
        cmocka_unit_test(away_partner_cannot_take_it),
        cmocka_unit_test(differing_copies_refuse_with_reason),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
