/*
 * Handover records and forwarded commands (handover.h): encoding round trips, every malformed
 * shape is refused, and the in-sync rule a takeover or giveback is judged by.
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

static void forwarded_command_round_trips(void **state)
{
    (void)state;
    struct forward_cmd f = {.lun = 4, .token = 77, .rel_port = 2, .param_len = 24};
    memcpy(f.isid, "\x40\x01\x02\x03\x04\x05", 6);
    f.cdb[0] = 0x5f;
    f.cdb[8] = 24;
    strcpy(f.initiator, "iqn.2026-11.io.twinlun:host-x");
    uint8_t rec[FORWARD_HDR_LEN + FORWARD_NAME_MAX + 24];
    int len = forward_encode(&f, rec);
    assert_int_equal(len, FORWARD_HDR_LEN + strlen(f.initiator));
    for (int i = 0; i < 24; i++)
        rec[len + i] = (uint8_t)i; /* the parameter list follows the header */
    struct forward_cmd got;
    assert_int_equal(forward_decode(rec, (uint32_t)len + 24, &got), 0);
    assert_int_equal(got.lun, 4);
    assert_true(got.token == 77);
    assert_int_equal(got.rel_port, 2);
    assert_memory_equal(got.isid, f.isid, 6);
    assert_memory_equal(got.cdb, f.cdb, 16);
    assert_string_equal(got.initiator, f.initiator);
    assert_int_equal(got.param_len, 24);
    assert_ptr_equal(got.param, rec + len);

    /* lengths that disagree, an empty or embedded-NUL name, another magic */
    assert_int_equal(forward_decode(rec, (uint32_t)len + 23, &got), -EBADMSG);
    assert_int_equal(forward_decode(rec, (uint32_t)len + 25, &got), -EBADMSG);
    uint8_t bad[sizeof(rec)];
    memcpy(bad, rec, sizeof(rec));
    twl_put_be16(bad + 44, 0);
    assert_int_equal(forward_decode(bad, FORWARD_HDR_LEN + 24, &got), -EBADMSG);
    memcpy(bad, rec, sizeof(rec));
    bad[FORWARD_HDR_LEN + 3] = '\0';
    assert_int_equal(forward_decode(bad, (uint32_t)len + 24, &got), -EBADMSG);
    memcpy(bad, rec, sizeof(rec));
    bad[3] = 'Q';
    assert_int_equal(forward_decode(bad, (uint32_t)len + 24, &got), -EBADMSG);

    f.initiator[0] = '\0';
    assert_int_equal(forward_encode(&f, rec), -EINVAL);
    strcpy(f.initiator, "x");
    f.param_len = FORWARD_PARAM_MAX + 1;
    assert_int_equal(forward_encode(&f, rec), -EINVAL);
}

static void answer_round_trips(void **state)
{
    (void)state;
    struct forward_answer a = {.lun = 4, .token = 77, .status = 0x02, .sense_len = 18};
    a.sense[0] = 0x70;
    a.sense[2] = 0x05;
    a.sense[12] = 0x26;
    uint8_t rec[ANSWER_MAX_LEN];
    uint32_t len = answer_encode(&a, rec);
    assert_int_equal(len, ANSWER_HDR_LEN + 18);
    struct forward_answer got;
    assert_int_equal(answer_decode(rec, len, &got), 0);
    assert_int_equal(got.status, 0x02);
    assert_int_equal(got.sense_len, 18);
    assert_memory_equal(got.sense, a.sense, 18);
    assert_int_equal(got.err, 0);

    struct forward_answer e = {.lun = 4, .token = 78, .err = -EPERM};
    len = answer_encode(&e, rec);
    assert_int_equal(answer_decode(rec, len, &got), 0);
    assert_int_equal(got.err, -EPERM);
    assert_int_equal(answer_decode(rec, len - 1, &got), -EBADMSG);
    twl_put_be32(rec + 16, 5); /* a positive error is not one */
    assert_int_equal(answer_decode(rec, len, &got), -EBADMSG);
    twl_put_be32(rec + 16, 0);
    rec[21] = FORWARD_SENSE_MAX + 1;
    assert_int_equal(answer_decode(rec, ANSWER_HDR_LEN + FORWARD_SENSE_MAX + 1, &got), -EBADMSG);
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
        cmocka_unit_test(forwarded_command_round_trips),
        cmocka_unit_test(answer_round_trips),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
