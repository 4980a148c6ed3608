/* Persistent reservations: every PR OUT service action for every type, the access matrix, PR IN
 * layouts, RESERVE(6)/RELEASE(6), the byte image and APTPL files. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pr.h"
#include "scsi.h"
#include "twl_common.h"

static const struct pr_nexus A = {"iqn.2026-01.test:a", {0x40, 0, 0, 0, 0, 1}, 1};
static const struct pr_nexus B = {"iqn.2026-01.test:b", {0x40, 0, 0, 0, 0, 2}, 1};
static const struct pr_nexus C = {"iqn.2026-01.test:c", {0x40, 0, 0, 0, 0, 3}, 1};
/* A's initiator with another ISID, and A's initiator port through the partner's target port */
static const struct pr_nexus A_OTHER_ISID = {"iqn.2026-01.test:a", {0x40, 0, 0, 0, 0, 9}, 1};
static const struct pr_nexus A_PORT2 = {"iqn.2026-01.test:a", {0x40, 0, 0, 0, 0, 1}, 2};

#define KEY_A 0xaaaa000000000001ull
#define KEY_B 0xbbbb000000000002ull
#define KEY_C 0xcccc000000000003ull

static const uint8_t ALL_TYPES[] = {
    PR_TYPE_WRITE_EXCLUSIVE,     PR_TYPE_EXCLUSIVE_ACCESS,   PR_TYPE_WRITE_EXCLUSIVE_RO,
    PR_TYPE_EXCLUSIVE_ACCESS_RO, PR_TYPE_WRITE_EXCLUSIVE_AR, PR_TYPE_EXCLUSIVE_ACCESS_AR,
};
#define NTYPES (sizeof(ALL_TYPES) / sizeof(ALL_TYPES[0]))

static bool is_ar(uint8_t type)
{
    return type == PR_TYPE_WRITE_EXCLUSIVE_AR || type == PR_TYPE_EXCLUSIVE_ACCESS_AR;
}

static bool is_ro(uint8_t type)
{
    return type == PR_TYPE_WRITE_EXCLUSIVE_RO || type == PR_TYPE_EXCLUSIVE_ACCESS_RO;
}

/* ---- command builders ---- */

static void prout_cdb(uint8_t cdb[10], uint8_t sa, uint8_t scope, uint8_t type, uint32_t len)
{
    memset(cdb, 0, 10);
    cdb[0] = PR_OPCODE_PR_OUT;
    cdb[1] = sa;
    cdb[2] = (uint8_t)(scope << 4 | type);
    twl_put_be32(&cdb[5], len);
}

static void basic_param(uint8_t p[24], uint64_t rk, uint64_t sark, uint8_t flags)
{
    memset(p, 0, 24);
    twl_put_be64(&p[0], rk);
    twl_put_be64(&p[8], sark);
    p[20] = flags;
}

/* PR OUT with the 24-byte basic parameter list; returns the status. */
static uint8_t prout(struct pr_state *s, const struct pr_nexus *n, uint8_t sa, uint8_t type,
                     uint64_t rk, uint64_t sark, uint8_t flags, struct pr_result *r)
{
    uint8_t cdb[10], p[24];
    prout_cdb(cdb, sa, 0, type, sizeof(p));
    basic_param(p, rk, sark, flags);
    pr_out(s, n, cdb, p, sizeof(p), r);
    return r->status;
}

static void reg(struct pr_state *s, const struct pr_nexus *n, uint64_t key)
{
    struct pr_result r;
    assert_int_equal(prout(s, n, PR_OUT_REGISTER_AND_IGNORE, 0, 0, key, 0, &r), SCSI_STATUS_GOOD);
}

static void reserve(struct pr_state *s, const struct pr_nexus *n, uint64_t key, uint8_t type)
{
    struct pr_result r;
    assert_int_equal(prout(s, n, PR_OUT_RESERVE, type, key, 0, 0, &r), SCSI_STATUS_GOOD);
}

/* iSCSI TransportIDs as an initiator would build them; returns the length. */
static size_t tpid_port(uint8_t *p, const char *name, const uint8_t isid[6])
{
    char text[300];
    int len = snprintf(text, sizeof(text), "%s,i,0x%02x%02x%02x%02x%02x%02x", name, isid[0],
                       isid[1], isid[2], isid[3], isid[4], isid[5]);
    size_t padded = ((size_t)len + 1 + 3) & ~(size_t)3;
    memset(p, 0, 4 + padded);
    p[0] = 0x45;
    twl_put_be16(&p[2], (uint16_t)padded);
    memcpy(&p[4], text, (size_t)len);
    return 4 + padded;
}

static size_t tpid_name(uint8_t *p, const char *name)
{
    size_t padded = (strlen(name) + 1 + 3) & ~(size_t)3;
    if (padded < 20)
        padded = 20;
    memset(p, 0, 4 + padded);
    p[0] = 0x05;
    twl_put_be16(&p[2], (uint16_t)padded);
    memcpy(&p[4], name, strlen(name));
    return 4 + padded;
}

static void prin_cdb(uint8_t cdb[10], uint8_t sa, uint16_t alloc)
{
    memset(cdb, 0, 10);
    cdb[0] = PR_OPCODE_PR_IN;
    cdb[1] = sa;
    twl_put_be16(&cdb[7], alloc);
}

struct rr {
    uint32_t generation;
    bool reserved;
    uint64_t key;
    uint8_t type;
};

static struct rr read_reservation(const struct pr_state *s)
{
    uint8_t cdb[10], buf[64];
    struct pr_result r;
    prin_cdb(cdb, PR_IN_READ_RESERVATION, sizeof(buf));
    pr_in(s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    struct rr out = {.generation = twl_get_be32(buf)};
    uint32_t len = twl_get_be32(&buf[4]);
    assert_true(len == 0 || len == 16);
    assert_int_equal(r.data_len, 8 + len);
    if (len == 16) {
        out.reserved = true;
        out.key = twl_get_be64(&buf[8]);
        assert_int_equal(buf[21] >> 4, 0);
        out.type = buf[21] & 0x0f;
    }
    return out;
}

/* The reservation keys, in READ KEYS order; returns how many. */
static unsigned read_keys(const struct pr_state *s, uint64_t *keys, unsigned max)
{
    uint8_t cdb[10], buf[8 + 8 * PR_MAX_REGISTRANTS];
    struct pr_result r;
    prin_cdb(cdb, PR_IN_READ_KEYS, sizeof(buf));
    pr_in(s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    unsigned n = twl_get_be32(&buf[4]) / 8;
    assert_int_equal(r.data_len, 8 + 8 * n);
    for (unsigned i = 0; i < n && i < max; i++)
        keys[i] = twl_get_be64(&buf[8 + 8 * i]);
    return n;
}

/* The unit attention the result gives nexus n, 0 for none (and at most one). */
static uint16_t ua_for(const struct pr_result *r, const struct pr_nexus *n)
{
    uint16_t found = 0;
    for (unsigned i = 0; i < r->ua_count; i++) {
        if (pr_ua_matches(&r->ua[i], n)) {
            assert_int_equal(found, 0);
            found = r->ua[i].asc_ascq;
        }
    }
    return found;
}

static void assert_check(const struct pr_result *r, uint16_t asc, int field, bool in_param)
{
    assert_int_equal(r->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(r->sense_key, SCSI_SENSE_ILLEGAL_REQUEST);
    assert_int_equal(r->asc_ascq, asc);
    assert_int_equal(r->sense_field, field);
    assert_int_equal(r->sense_in_param, in_param);
    assert_false(r->changed);
}

/* ---- REGISTER, REGISTER AND IGNORE EXISTING KEY ---- */

static void register_and_unregister(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);

    /* unregistered: the RESERVATION KEY must be 0 */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 5, KEY_A, 0, &r),
                     SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(s.count, 0);
    /* unregistered, SARK 0: GOOD, nothing happens, no generation */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, 0, 0, &r), SCSI_STATUS_GOOD);
    assert_false(r.changed);
    assert_int_equal(s.generation, 0);

    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0, &r), SCSI_STATUS_GOOD);
    assert_true(r.changed);
    assert_false(r.persist);
    assert_int_equal(s.generation, 1);
    uint64_t keys[4];
    assert_int_equal(read_keys(&s, keys, 4), 1);
    assert_true(keys[0] == KEY_A);

    /* registered: a wrong RESERVATION KEY conflicts (libiscsi reregister test) */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A + 1, 0, &r),
                     SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(s.generation, 1);
    /* the right key changes it */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, KEY_C, 0, &r), SCSI_STATUS_GOOD);
    assert_int_equal(s.generation, 2);
    /* REGISTER AND IGNORE EXISTING KEY ignores the RESERVATION KEY */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER_AND_IGNORE, 0, 12345, KEY_A, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_int_equal(s.generation, 3);
    assert_int_equal(read_keys(&s, keys, 4), 1);
    assert_true(keys[0] == KEY_A);
    /* the same initiator through another ISID or port is another I_T nexus */
    assert_int_equal(prout(&s, &A_OTHER_ISID, PR_OUT_REGISTER, 0, KEY_A, KEY_B, 0, &r),
                     SCSI_STATUS_RESERVATION_CONFLICT);
    reg(&s, &A_PORT2, KEY_B);
    assert_int_equal(s.count, 2);
    assert_int_equal(s.generation, 4);

    /* unregister */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
    assert_int_equal(s.generation, 5);
    assert_int_equal(read_keys(&s, keys, 4), 1);
    assert_true(keys[0] == KEY_B);
    assert_int_equal(prout(&s, &A_PORT2, PR_OUT_REGISTER_AND_IGNORE, 0, 0, 0, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_int_equal(s.count, 0);
    assert_int_equal(s.generation, 6);
}

/* REGISTER / REGISTER AND IGNORE under each type: new registrations and key changes leave the
 * reservation alone; the holder's new key is the reservation key. */
static void register_under_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        assert_int_equal(prout(&s, &B, PR_OUT_REGISTER, 0, 0, KEY_B, 0, &r), SCSI_STATUS_GOOD);
        assert_int_equal(r.ua_count, 0);
        assert_int_equal(s.generation, gen + 1);
        assert_int_equal(prout(&s, &C, PR_OUT_REGISTER_AND_IGNORE, 0, 0, KEY_C, 0, &r),
                         SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 2);
        assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, KEY_A + 7, 0, &r),
                         SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 3);
        assert_int_equal(r.ua_count, 0);
        struct rr rr = read_reservation(&s);
        assert_true(rr.reserved);
        assert_int_equal(rr.type, type);
        assert_true(rr.key == (is_ar(type) ? 0 : KEY_A + 7));
        assert_int_equal(s.count, 3);
    }
}

/* ---- RESERVE ---- */

static void reserve_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        uint8_t other =
            type == PR_TYPE_WRITE_EXCLUSIVE ? PR_TYPE_EXCLUSIVE_ACCESS : PR_TYPE_WRITE_EXCLUSIVE;
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        uint32_t gen = s.generation;

        /* unregistered, or a wrong key: conflict */
        assert_int_equal(prout(&s, &C, PR_OUT_RESERVE, type, 0, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(prout(&s, &A, PR_OUT_RESERVE, type, KEY_B, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_false(s.reserved);

        assert_int_equal(prout(&s, &A, PR_OUT_RESERVE, type, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_true(r.changed);
        assert_int_equal(r.ua_count, 0);
        /* RESERVE does not bump PRgeneration */
        assert_int_equal(s.generation, gen);
        struct rr rr = read_reservation(&s);
        assert_true(rr.reserved);
        assert_int_equal(rr.type, type);
        assert_true(rr.key == (is_ar(type) ? 0 : KEY_A));

        /* the holder again, same type: GOOD, nothing changes */
        assert_int_equal(prout(&s, &A, PR_OUT_RESERVE, type, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_false(r.changed);
        /* the holder, another type: conflict */
        assert_int_equal(prout(&s, &A, PR_OUT_RESERVE, other, KEY_A, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        /* another registrant: conflict, unless all registrants hold it */
        assert_int_equal(prout(&s, &B, PR_OUT_RESERVE, type, KEY_B, 0, 0, &r),
                         is_ar(type) ? SCSI_STATUS_GOOD : SCSI_STATUS_RESERVATION_CONFLICT);
        assert_false(r.changed);
        assert_int_equal(read_reservation(&s).type, type);
    }
}

/* ---- RELEASE ---- */

static void release_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        uint8_t other =
            type == PR_TYPE_WRITE_EXCLUSIVE ? PR_TYPE_EXCLUSIVE_ACCESS : PR_TYPE_WRITE_EXCLUSIVE;
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        /* unregistered: conflict */
        assert_int_equal(prout(&s, &C, PR_OUT_RELEASE, type, KEY_C, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        /* the holder with another type */
        prout(&s, &A, PR_OUT_RELEASE, other, KEY_A, 0, 0, &r);
        assert_check(&r, PR_ASC_INVALID_RELEASE, -1, false);
        assert_true(s.reserved);

        if (!is_ar(type)) {
            /* a registrant not holding it: GOOD, nothing happens */
            assert_int_equal(prout(&s, &B, PR_OUT_RELEASE, type, KEY_B, 0, 0, &r),
                             SCSI_STATUS_GOOD);
            assert_false(r.changed);
            assert_true(s.reserved);
        }

        assert_int_equal(prout(&s, &A, PR_OUT_RELEASE, type, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_true(r.changed);
        assert_false(read_reservation(&s).reserved);
        assert_int_equal(s.generation, gen);
        assert_int_equal(s.count, 2);
        /* RESERVATIONS RELEASED for the other registrants of RO and AR types only */
        assert_int_equal(ua_for(&r, &B),
                         (is_ro(type) || is_ar(type)) ? PR_ASC_RESERVATIONS_RELEASED : 0);
        assert_int_equal(ua_for(&r, &A), 0);
        assert_int_equal(ua_for(&r, &C), 0);

        /* releasing with no reservation: GOOD */
        assert_int_equal(prout(&s, &A, PR_OUT_RELEASE, type, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_false(r.changed);
    }
}

/* Unregistering the holder (libiscsi ProutReserve.Ownership*). */
static void unregister_holder_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reg(&s, &C, KEY_C);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 1);
        struct rr rr = read_reservation(&s);
        if (is_ar(type)) {
            /* the others still hold it */
            assert_true(rr.reserved);
            assert_int_equal(rr.type, type);
            assert_int_equal(r.ua_count, 0);
            assert_int_equal(prout(&s, &B, PR_OUT_REGISTER, 0, KEY_B, 0, 0, &r), SCSI_STATUS_GOOD);
            assert_true(read_reservation(&s).reserved);
            /* the last registrant takes it with it */
            assert_int_equal(prout(&s, &C, PR_OUT_REGISTER, 0, KEY_C, 0, 0, &r), SCSI_STATUS_GOOD);
            assert_false(read_reservation(&s).reserved);
            assert_int_equal(s.count, 0);
        } else {
            assert_false(rr.reserved);
            uint16_t ua = is_ro(type) ? PR_ASC_RESERVATIONS_RELEASED : 0;
            assert_int_equal(ua_for(&r, &B), ua);
            assert_int_equal(ua_for(&r, &C), ua);
            assert_int_equal(ua_for(&r, &A), 0);
        }
    }
}

/* A registrant that is not the holder unregistering: the holder index follows the compaction. */
static void unregister_before_holder_keeps_holder(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    reg(&s, &A, KEY_A);
    reg(&s, &B, KEY_B);
    reg(&s, &C, KEY_C);
    reserve(&s, &C, KEY_C, PR_TYPE_EXCLUSIVE_ACCESS);
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
    assert_int_equal(r.ua_count, 0);
    struct rr rr = read_reservation(&s);
    assert_true(rr.reserved);
    assert_true(rr.key == KEY_C);
    assert_false(pr_conflicts(&s, &C, (const uint8_t[16]){0x2a}));
    assert_true(pr_conflicts(&s, &B, (const uint8_t[16]){0x2a}));
}

/* ---- CLEAR ---- */

static void clear_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reg(&s, &C, KEY_C);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        assert_int_equal(prout(&s, &B, PR_OUT_CLEAR, 0, KEY_A, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(s.count, 3);
        assert_int_equal(prout(&s, &B, PR_OUT_CLEAR, 0, KEY_B, 0, 0, &r), SCSI_STATUS_GOOD);
        assert_true(r.changed);
        assert_int_equal(s.generation, gen + 1);
        assert_int_equal(s.count, 0);
        assert_false(read_reservation(&s).reserved);
        assert_int_equal(ua_for(&r, &A), PR_ASC_RESERVATIONS_PREEMPTED);
        assert_int_equal(ua_for(&r, &C), PR_ASC_RESERVATIONS_PREEMPTED);
        assert_int_equal(ua_for(&r, &B), 0);
        assert_int_equal(r.ua_count, 2);
        /* now nobody is registered */
        assert_int_equal(prout(&s, &B, PR_OUT_CLEAR, 0, KEY_B, 0, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
    }
}

/* ---- PREEMPT, PREEMPT AND ABORT ---- */

static void preempt_each_type(uint8_t sa)
{
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        uint8_t new_type = is_ar(type) ? PR_TYPE_EXCLUSIVE_ACCESS : PR_TYPE_WRITE_EXCLUSIVE_AR;
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reg(&s, &C, KEY_C);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        /* unregistered or wrong key */
        assert_int_equal(prout(&s, &A_OTHER_ISID, sa, type, 0, KEY_A, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(prout(&s, &B, sa, type, KEY_C, KEY_A, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        /* a key nobody holds */
        assert_int_equal(prout(&s, &B, sa, type, KEY_B, 0x1234, 0, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        assert_int_equal(s.generation, gen);

        if (is_ar(type)) {
            /* SARK 0 preempts the all-registrants reservation: everyone else goes */
            assert_int_equal(prout(&s, &B, sa, new_type, KEY_B, 0, 0, &r), SCSI_STATUS_GOOD);
            assert_int_equal(s.count, 1);
            struct rr rr = read_reservation(&s);
            assert_true(rr.reserved);
            assert_int_equal(rr.type, new_type);
            assert_true(rr.key == KEY_B);
            assert_int_equal(ua_for(&r, &A), PR_ASC_REGISTRATIONS_PREEMPTED);
            assert_int_equal(ua_for(&r, &C), PR_ASC_REGISTRATIONS_PREEMPTED);
            assert_int_equal(ua_for(&r, &B), 0);
        } else {
            /* SARK 0 is only for all-registrants reservations */
            prout(&s, &B, sa, type, KEY_B, 0, 0, &r);
            assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 8, true);
            /* the holder's key: B takes the reservation with the new type */
            assert_int_equal(prout(&s, &B, sa, new_type, KEY_B, KEY_A, 0, &r), SCSI_STATUS_GOOD);
            assert_int_equal(s.count, 2);
            struct rr rr = read_reservation(&s);
            assert_true(rr.reserved);
            assert_int_equal(rr.type, new_type);
            assert_true(rr.key == 0); /* the new type is all-registrants */
            assert_int_equal(ua_for(&r, &A), PR_ASC_REGISTRATIONS_PREEMPTED);
            /* C kept its registration, the type changed */
            assert_int_equal(ua_for(&r, &C), PR_ASC_RESERVATIONS_RELEASED);
            assert_int_equal(ua_for(&r, &B), 0);
        }
        assert_int_equal(s.generation, gen + 1);
        assert_true(r.changed);
        assert_int_equal(r.abort_preempted, sa == PR_OUT_PREEMPT_AND_ABORT);
        assert_true(pr_conflicts(&s, &A, (const uint8_t[16]){0x2a}));
    }
}

static void preempt(void **state)
{
    (void)state;
    preempt_each_type(PR_OUT_PREEMPT);
}

static void preempt_and_abort(void **state)
{
    (void)state;
    preempt_each_type(PR_OUT_PREEMPT_AND_ABORT);
}

/* A non-holder key only loses its registrations (libiscsi ProutPreempt.RemoveRegistration). */
static void preempt_removes_registrations(void **state)
{
    (void)state;
    for (unsigned t = 0; t <= NTYPES; t++) {
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reg(&s, &C, KEY_C);
        /* the last round runs without a reservation */
        if (t < NTYPES)
            reserve(&s, &C, KEY_C, ALL_TYPES[t]);
        uint32_t gen = s.generation;
        assert_int_equal(
            prout(&s, &B, PR_OUT_PREEMPT, PR_TYPE_EXCLUSIVE_ACCESS, KEY_B, KEY_A, 0, &r),
            SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 1);
        uint64_t keys[4];
        assert_int_equal(read_keys(&s, keys, 4), 2);
        assert_true(keys[0] == KEY_B && keys[1] == KEY_C);
        assert_int_equal(ua_for(&r, &A), PR_ASC_REGISTRATIONS_PREEMPTED);
        assert_int_equal(r.ua_count, 1);
        struct rr rr = read_reservation(&s);
        assert_int_equal(rr.reserved, t < NTYPES);
        if (t < NTYPES) {
            assert_int_equal(rr.type, ALL_TYPES[t]);
            assert_true(rr.key == (is_ar(ALL_TYPES[t]) ? 0 : KEY_C));
        }
    }
}

/* The holder preempting its own key changes the type and keeps its registration. */
static void preempt_self_changes_type(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    reg(&s, &A, KEY_A);
    reg(&s, &B, KEY_B);
    reserve(&s, &A, KEY_A, PR_TYPE_WRITE_EXCLUSIVE);
    assert_int_equal(prout(&s, &A, PR_OUT_PREEMPT, PR_TYPE_EXCLUSIVE_ACCESS, KEY_A, KEY_A, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_int_equal(s.count, 2);
    struct rr rr = read_reservation(&s);
    assert_int_equal(rr.type, PR_TYPE_EXCLUSIVE_ACCESS);
    assert_true(rr.key == KEY_A);
    assert_int_equal(ua_for(&r, &B), PR_ASC_RESERVATIONS_RELEASED);
    assert_int_equal(ua_for(&r, &A), 0);
}

/* ---- REGISTER AND MOVE ---- */

static void move_param(uint8_t *p, size_t *len, uint64_t rk, uint64_t sark, uint8_t flags,
                       uint16_t rtpi, const struct pr_nexus *dest)
{
    memset(p, 0, 24);
    twl_put_be64(&p[0], rk);
    twl_put_be64(&p[8], sark);
    p[17] = flags;
    twl_put_be16(&p[18], rtpi);
    size_t tl = tpid_port(&p[24], dest->initiator_name, dest->isid);
    twl_put_be32(&p[20], (uint32_t)tl);
    *len = 24 + tl;
}

static uint8_t move(struct pr_state *s, const struct pr_nexus *n, uint64_t rk, uint64_t sark,
                    uint8_t flags, uint16_t rtpi, const struct pr_nexus *dest, struct pr_result *r)
{
    uint8_t cdb[10], p[512];
    size_t len;
    move_param(p, &len, rk, sark, flags, rtpi, dest);
    /* SCOPE and TYPE of the CDB are ignored: the moved reservation keeps its own */
    prout_cdb(cdb, PR_OUT_REGISTER_AND_MOVE, 0, PR_TYPE_EXCLUSIVE_ACCESS_AR, (uint32_t)len);
    pr_out(s, n, cdb, p, len, r);
    return r->status;
}

static void register_and_move_each_type(void **state)
{
    (void)state;
    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        struct pr_state s;
        struct pr_result r;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reserve(&s, &A, KEY_A, type);
        uint32_t gen = s.generation;

        /* a registrant that does not hold it, and any all-registrants reservation: conflict */
        assert_int_equal(move(&s, &B, KEY_B, KEY_C, 0, 1, &C, &r),
                         SCSI_STATUS_RESERVATION_CONFLICT);
        if (is_ar(type)) {
            assert_int_equal(move(&s, &A, KEY_A, KEY_C, 0, 1, &C, &r),
                             SCSI_STATUS_RESERVATION_CONFLICT);
            assert_int_equal(s.generation, gen);
            continue;
        }
        /* the unregistered C becomes registered and holds it; A stays registered */
        assert_int_equal(move(&s, &A, KEY_A, KEY_C, 0, 1, &C, &r), SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 1);
        assert_int_equal(s.count, 3);
        struct rr rr = read_reservation(&s);
        assert_int_equal(rr.type, type);
        assert_true(rr.key == KEY_C);
        assert_int_equal(r.ua_count, 0);
        assert_false(pr_conflicts(&s, &C, (const uint8_t[16]){0x2a}));
        /* A is now a mere registrant */
        assert_int_equal(pr_conflicts(&s, &A, (const uint8_t[16]){0x2a}), !is_ro(type));

        /* to the registered B with UNREG: B's key is replaced, C is gone */
        assert_int_equal(move(&s, &C, KEY_C, KEY_B + 1, 0x02, 1, &B, &r), SCSI_STATUS_GOOD);
        assert_int_equal(s.generation, gen + 2);
        uint64_t keys[4];
        assert_int_equal(read_keys(&s, keys, 4), 2);
        assert_true(keys[0] == KEY_A && keys[1] == KEY_B + 1);
        rr = read_reservation(&s);
        assert_true(rr.key == KEY_B + 1);
        assert_int_equal(rr.type, type);
    }
}

static void register_and_move_refusals(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    reg(&s, &A, KEY_A);
    /* no reservation: the sender does not hold one */
    assert_int_equal(move(&s, &A, KEY_A, KEY_C, 0, 1, &C, &r), SCSI_STATUS_RESERVATION_CONFLICT);
    reserve(&s, &A, KEY_A, PR_TYPE_WRITE_EXCLUSIVE);
    struct pr_state before = s;
    /* wrong key; unregistered sender */
    assert_int_equal(move(&s, &A, KEY_B, KEY_C, 0, 1, &C, &r), SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(move(&s, &B, 0, KEY_C, 0, 1, &C, &r), SCSI_STATUS_RESERVATION_CONFLICT);
    /* SARK 0 */
    move(&s, &A, KEY_A, 0, 0, 1, &C, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 8, true);
    /* a relative target port that does not exist */
    move(&s, &A, KEY_A, KEY_C, 0, 3, &C, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 18, true);
    /* the sender's own initiator port, even through the other target port */
    move(&s, &A, KEY_A, KEY_C, 0, 2, &A, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 24, true);

    /* a name-only TransportID names no initiator port */
    uint8_t cdb[10], p[128];
    memset(p, 0, sizeof(p));
    twl_put_be64(&p[0], KEY_A);
    twl_put_be64(&p[8], KEY_C);
    twl_put_be16(&p[18], 1);
    size_t tl = tpid_name(&p[24], C.initiator_name);
    twl_put_be32(&p[20], (uint32_t)tl);
    prout_cdb(cdb, PR_OUT_REGISTER_AND_MOVE, 0, 0, (uint32_t)(24 + tl));
    pr_out(&s, &A, cdb, p, 24 + tl, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 24, true);
    /* TransportID length disagreeing with the parameter list length */
    twl_put_be32(&p[20], (uint32_t)tl + 4);
    pr_out(&s, &A, cdb, p, 24 + tl, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 20, true);

    assert_int_equal(s.generation, before.generation);
    assert_int_equal(s.count, before.count);
    assert_int_equal(s.holder, before.holder);
    /* through port 2 to the other port of B's initiator */
    struct pr_nexus b2 = B;
    b2.rel_port = 2;
    assert_int_equal(move(&s, &A, KEY_A, KEY_B, 0, 2, &B, &r), SCSI_STATUS_GOOD);
    assert_false(pr_conflicts(&s, &b2, (const uint8_t[16]){0x2a}));
    assert_true(pr_conflicts(&s, &B, (const uint8_t[16]){0x2a}));
}

/* ---- CDB and parameter list checks ---- */

static void bad_cdbs_and_parameter_lists(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], p[32];
    pr_state_init(&s);
    reg(&s, &A, KEY_A);

    /* PARAMETER LIST LENGTH not 24 */
    basic_param(p, 0, KEY_B, 0);
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, 23);
    pr_out(&s, &B, cdb, p, 23, &r);
    assert_check(&r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, false);
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, 25);
    pr_out(&s, &B, cdb, p, 25, &r);
    assert_check(&r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, false);
    /* fewer bytes received than announced */
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, 24);
    pr_out(&s, &B, cdb, p, 20, &r);
    assert_check(&r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, false);

    /* unknown service action */
    prout_cdb(cdb, 0x08, 0, 0, 24);
    pr_out(&s, &A, cdb, p, 24, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 1, false);
    /* unsupported scope and type */
    basic_param(p, KEY_A, 0, 0);
    prout_cdb(cdb, PR_OUT_RESERVE, 1, PR_TYPE_WRITE_EXCLUSIVE, 24);
    pr_out(&s, &A, cdb, p, 24, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 2, false);
    assert_int_equal(r.sense_bit, 7);
    for (uint8_t type = 0; type < 16; type++) {
        bool valid = memchr(ALL_TYPES, type, NTYPES) != NULL;
        prout_cdb(cdb, PR_OUT_RESERVE, 0, type, 24);
        pr_out(&s, &A, cdb, p, 24, &r);
        if (valid) {
            assert_int_equal(r.status, SCSI_STATUS_GOOD);
            prout_cdb(cdb, PR_OUT_RELEASE, 0, type, 24);
            pr_out(&s, &A, cdb, p, 24, &r);
            assert_int_equal(r.status, SCSI_STATUS_GOOD);
        } else {
            assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 2, false);
            assert_int_equal(r.sense_bit, 3);
        }
    }
    /* SPEC_I_PT anywhere but REGISTER / REGISTER AND IGNORE */
    const uint8_t not_register[] = {PR_OUT_RESERVE, PR_OUT_RELEASE, PR_OUT_CLEAR, PR_OUT_PREEMPT,
                                    PR_OUT_PREEMPT_AND_ABORT};
    for (unsigned i = 0; i < sizeof(not_register); i++) {
        basic_param(p, KEY_A, KEY_A, 0x08);
        twl_put_be32(&p[24], 0);
        prout_cdb(cdb, not_register[i], 0, PR_TYPE_WRITE_EXCLUSIVE, 28);
        pr_out(&s, &A, cdb, p, 28, &r);
        assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 20, true);
        assert_int_equal(r.sense_bit, 3);
    }
    assert_int_equal(s.count, 1);
    assert_false(s.reserved);
}

static void spec_i_pt_registers_transport_ids(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], p[512];
    pr_state_init(&s);

    /* A registers itself, B's port and every port of C's name */
    basic_param(p, 0, KEY_A, 0x08);
    size_t off = 28;
    off += tpid_port(&p[off], B.initiator_name, B.isid);
    off += tpid_name(&p[off], C.initiator_name);
    /* a duplicate, and the sender's own port, are harmless */
    off += tpid_port(&p[off], B.initiator_name, B.isid);
    off += tpid_port(&p[off], A.initiator_name, A.isid);
    twl_put_be32(&p[24], (uint32_t)(off - 28));
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, (uint32_t)off);
    pr_out(&s, &A, cdb, p, off, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(s.count, 3);
    assert_int_equal(s.generation, 1);
    assert_true(s.reg[2].isid_set == false);

    /* C through any ISID is registered with A's key */
    struct pr_nexus c_any = C;
    c_any.isid[5] = 0x77;
    assert_int_equal(prout(&s, &c_any, PR_OUT_RESERVE, PR_TYPE_EXCLUSIVE_ACCESS, KEY_A, 0, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_false(pr_conflicts(&s, &C, (const uint8_t[16]){0x28}));
    assert_true(pr_conflicts(&s, &A, (const uint8_t[16]){0x28}));
    prout(&s, &c_any, PR_OUT_RELEASE, PR_TYPE_EXCLUSIVE_ACCESS, KEY_A, 0, 0, &r);
    assert_false(s.reserved);

    /* a TransportID naming a registered I_T nexus: refused, nothing registered */
    struct pr_state before = s;
    basic_param(p, 0, KEY_B, 0x08);
    off = 28;
    off += tpid_port(&p[off], C.initiator_name, C.isid);
    twl_put_be32(&p[24], (uint32_t)(off - 28));
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, (uint32_t)off);
    pr_out(&s, &A_OTHER_ISID, cdb, p, off, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 28, true);
    assert_int_equal(s.count, before.count);

    /* not iSCSI (protocol 0, Fibre Channel) */
    p[28] = 0x00;
    pr_out(&s, &A_OTHER_ISID, cdb, p, off, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 28, true);
    /* a TransportID longer than the list */
    tpid_port(&p[28], "iqn.2026-01.test:d", C.isid);
    twl_put_be16(&p[30], 200);
    pr_out(&s, &A_OTHER_ISID, cdb, p, off, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 28, true);
    /* the TransportID length field disagreeing with the list */
    tpid_port(&p[28], "iqn.2026-01.test:d", C.isid);
    twl_put_be32(&p[24], (uint32_t)(off - 28 + 4));
    pr_out(&s, &A_OTHER_ISID, cdb, p, off, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 24, true);
    /* shorter than 28 bytes */
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, 24);
    pr_out(&s, &A_OTHER_ISID, cdb, p, 24, &r);
    assert_check(&r, SCSI_ASC_PARAM_LIST_LENGTH_ERROR, 5, false);
    /* a registered I_T nexus cannot use SPEC_I_PT */
    twl_put_be32(&p[24], 0);
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, 28);
    twl_put_be64(&p[0], KEY_A);
    pr_out(&s, &A, cdb, p, 28, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 20, true);
    assert_int_equal(s.count, before.count);
    assert_int_equal(s.generation, before.generation);
}

static void all_tg_pt_covers_every_port(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0x04, &r), SCSI_STATUS_GOOD);
    assert_int_equal(s.count, 1);
    /* through port 2 the same initiator port is registered */
    assert_int_equal(prout(&s, &A_PORT2, PR_OUT_RESERVE, PR_TYPE_EXCLUSIVE_ACCESS, KEY_A, 0, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_false(pr_conflicts(&s, &A, (const uint8_t[16]){0x2a}));
    assert_true(pr_conflicts(&s, &A_OTHER_ISID, (const uint8_t[16]){0x2a}));
    /* CLEAR from port 1 tells port 2, not port 1 */
    assert_int_equal(prout(&s, &A, PR_OUT_CLEAR, 0, KEY_A, 0, 0, &r), SCSI_STATUS_GOOD);
    assert_int_equal(ua_for(&r, &A), 0);
    assert_int_equal(ua_for(&r, &A_PORT2), PR_ASC_RESERVATIONS_PREEMPTED);

    /* ALL_TG_PT over a registration made through the other port is refused */
    reg(&s, &A_PORT2, KEY_B);
    prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0x04, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_PARAM, 20, true);
    assert_int_equal(r.sense_bit, 2);
}

static void insufficient_registration_resources(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    char name[64];
    for (unsigned i = 0; i < PR_MAX_REGISTRANTS; i++) {
        snprintf(name, sizeof(name), "iqn.2026-01.test:many%u", i);
        struct pr_nexus n = {name, {0x40, 0, 0, 0, 0, 1}, 1};
        reg(&s, &n, 100 + i);
    }
    assert_int_equal(s.count, PR_MAX_REGISTRANTS);
    prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0, &r);
    assert_check(&r, PR_ASC_INSUFFICIENT_REG_RESOURCES, -1, false);
    assert_int_equal(s.count, PR_MAX_REGISTRANTS);
    assert_int_equal(s.generation, PR_MAX_REGISTRANTS);
    /* re-registering an existing one still works */
    struct pr_nexus first = {"iqn.2026-01.test:many0", {0x40, 0, 0, 0, 0, 1}, 1};
    assert_int_equal(prout(&s, &first, PR_OUT_REGISTER, 0, 100, 5, 0, &r), SCSI_STATUS_GOOD);

    /* SPEC_I_PT: all or nothing */
    pr_state_init(&s);
    for (unsigned i = 0; i < PR_MAX_REGISTRANTS - 2; i++) {
        snprintf(name, sizeof(name), "iqn.2026-01.test:many%u", i);
        struct pr_nexus n = {name, {0x40, 0, 0, 0, 0, 1}, 1};
        reg(&s, &n, 100 + i);
    }
    uint8_t cdb[10], p[256];
    basic_param(p, 0, KEY_A, 0x08);
    size_t off = 28;
    off += tpid_port(&p[off], B.initiator_name, B.isid);
    off += tpid_port(&p[off], C.initiator_name, C.isid);
    twl_put_be32(&p[24], (uint32_t)(off - 28));
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, (uint32_t)off);
    pr_out(&s, &A, cdb, p, off, &r);
    assert_check(&r, PR_ASC_INSUFFICIENT_REG_RESOURCES, -1, false);
    assert_int_equal(s.count, PR_MAX_REGISTRANTS - 2);
}

/* ---- access control ---- */

enum role { HOLDER, REGISTRANT, OTHER };

/* Expected conflicts for READ (10) and WRITE (10) (libiscsi ProutReserve.Access*). */
static bool expect_conflict(uint8_t type, enum role role, bool write)
{
    if (role == HOLDER)
        return false;
    bool we = type == PR_TYPE_WRITE_EXCLUSIVE || type == PR_TYPE_WRITE_EXCLUSIVE_RO ||
              type == PR_TYPE_WRITE_EXCLUSIVE_AR;
    if (role == REGISTRANT && (is_ro(type) || is_ar(type)))
        return false;
    return write || !we;
}

static void access_matrix(void **state)
{
    (void)state;
    static const uint8_t read10[16] = {0x28, 0, 0, 0, 0, 1, 0, 0, 1, 0};
    static const uint8_t write10[16] = {0x2a, 0, 0, 0, 0, 1, 0, 0, 1, 0};
    static const uint8_t inquiry[16] = {0x12, 0, 0, 0, 36, 0};
    static const uint8_t tur[16] = {0x00};
    static const uint8_t report_luns[16] = {0xa0};
    static const uint8_t read_capacity16[16] = {0x9e, 0x10};
    static const uint8_t rtpg[16] = {0xa3, 0x0a};
    static const uint8_t mode_sense[16] = {0x1a, 0, 0x3f, 0, 0xff, 0};
    static const uint8_t sync_cache[16] = {0x35};
    static const uint8_t prin[16] = {0x5e, 0};
    static const uint8_t prout_register[16] = {0x5f, 0};
    static const uint8_t reserve6[16] = {0x16};

    for (unsigned t = 0; t < NTYPES; t++) {
        uint8_t type = ALL_TYPES[t];
        struct pr_state s;
        pr_state_init(&s);
        reg(&s, &A, KEY_A);
        reg(&s, &B, KEY_B);
        reserve(&s, &A, KEY_A, type);
        const struct pr_nexus *who[] = {&A, &B, &C};
        for (enum role role = HOLDER; role <= OTHER; role++) {
            const struct pr_nexus *n = who[role];
            assert_int_equal(pr_conflicts(&s, n, read10), expect_conflict(type, role, false));
            assert_int_equal(pr_conflicts(&s, n, write10), expect_conflict(type, role, true));
            assert_int_equal(pr_conflicts(&s, n, sync_cache), expect_conflict(type, role, true));
            assert_int_equal(pr_conflicts(&s, n, mode_sense), expect_conflict(type, role, false));
            assert_false(pr_conflicts(&s, n, inquiry));
            assert_false(pr_conflicts(&s, n, tur));
            assert_false(pr_conflicts(&s, n, report_luns));
            assert_false(pr_conflicts(&s, n, read_capacity16));
            assert_false(pr_conflicts(&s, n, rtpg));
            assert_false(pr_conflicts(&s, n, prin));
            assert_false(pr_conflicts(&s, n, prout_register));
            /* CRH = 0: SPC-2 reservations conflict while anyone is registered */
            assert_true(pr_conflicts(&s, n, reserve6));
        }
    }

    /* no reservation: nothing conflicts, except RESERVE(6) while registered */
    struct pr_state s;
    pr_state_init(&s);
    assert_false(pr_conflicts(&s, &C, write10));
    assert_false(pr_conflicts(&s, &C, reserve6));
    reg(&s, &A, KEY_A);
    assert_false(pr_conflicts(&s, &C, write10));
    assert_true(pr_conflicts(&s, &C, reserve6));
}

/* ---- RESERVE(6) / RELEASE(6) ---- */

static void reserve6_release6(void **state)
{
    (void)state;
    static const uint8_t reserve6[6] = {0x16};
    static const uint8_t release6[6] = {0x17};
    static const uint8_t mode_sense[16] = {0x1a, 0, 0x3f, 0, 0xff, 0};
    static const uint8_t read10[16] = {0x28};
    static const uint8_t tur[16] = {0x00};
    static const uint8_t inquiry[16] = {0x12};
    static const uint8_t report_luns[16] = {0xa0};
    static const uint8_t request_sense[16] = {0x03};
    static const uint8_t prin[16] = {0x5e};
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);

    pr_reserve6(&s, &A, reserve6, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_true(r.changed);
    assert_false(r.persist);
    /* again from the holder: GOOD */
    pr_reserve6(&s, &A, reserve6, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_false(r.changed);
    /* another initiator, or the same initiator through another ISID or port */
    const struct pr_nexus *others[] = {&B, &A_OTHER_ISID, &A_PORT2};
    for (unsigned i = 0; i < 3; i++) {
        pr_reserve6(&s, others[i], reserve6, &r);
        assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
        assert_true(pr_conflicts(&s, others[i], reserve6));
        assert_true(pr_conflicts(&s, others[i], mode_sense));
        assert_true(pr_conflicts(&s, others[i], read10));
        assert_true(pr_conflicts(&s, others[i], tur));
        assert_false(pr_conflicts(&s, others[i], inquiry));
        assert_false(pr_conflicts(&s, others[i], report_luns));
        assert_false(pr_conflicts(&s, others[i], request_sense));
        assert_false(pr_conflicts(&s, others[i], release6));
    }
    assert_false(pr_conflicts(&s, &A, mode_sense));
    assert_false(pr_conflicts(&s, &A, read10));
    /* PERSISTENT RESERVE IN/OUT conflict for everyone, the holder too */
    assert_true(pr_conflicts(&s, &A, prin));
    uint8_t cdb[10], buf[64];
    prin_cdb(cdb, PR_IN_READ_KEYS, sizeof(buf));
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0, &r),
                     SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(s.count, 0);

    /* RELEASE(6) from another nexus: GOOD, nothing happens */
    pr_release6(&s, &B, release6, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_false(r.changed);
    assert_true(s.r6_reserved);
    pr_release6(&s, &A, release6, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_true(r.changed);
    assert_false(s.r6_reserved);
    pr_reserve6(&s, &B, reserve6, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);

    /* nexus loss and resets release it */
    assert_false(pr_nexus_lost(&s, &A));
    assert_true(s.r6_reserved);
    assert_true(pr_nexus_lost(&s, &B));
    assert_false(s.r6_reserved);
    pr_reserve6(&s, &A, reserve6, &r);
    assert_true(pr_reset(&s));
    assert_false(s.r6_reserved);
    assert_false(pr_reset(&s));

    /* third-party and extent reservations */
    const uint8_t third_party[6] = {0x16, 0x10};
    const uint8_t extent[6] = {0x16, 0x01};
    pr_reserve6(&s, &A, third_party, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 1, false);
    assert_int_equal(r.sense_bit, 4);
    pr_reserve6(&s, &A, extent, &r);
    assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 1, false);
    assert_int_equal(r.sense_bit, 0);

    /* with a registration (CRH = 0): RESERVE(6) and RELEASE(6) conflict, the persistent
     * reservation is untouched */
    reg(&s, &A, KEY_A);
    reserve(&s, &A, KEY_A, PR_TYPE_WRITE_EXCLUSIVE);
    pr_reserve6(&s, &A, reserve6, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    pr_release6(&s, &A, release6, &r);
    assert_int_equal(r.status, SCSI_STATUS_RESERVATION_CONFLICT);
    assert_false(s.r6_reserved);
    /* persistent reservations survive nexus loss and resets */
    assert_false(pr_nexus_lost(&s, &A));
    assert_false(pr_reset(&s));
    assert_true(s.reserved);
}

/* ---- PERSISTENT RESERVE IN ---- */

static void read_full_status_layout(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], p[128];
    pr_state_init(&s);
    reg(&s, &A, 0x0a);
    /* B registers itself and every port of C's name */
    basic_param(p, 0, 0x0b, 0x08);
    size_t off = 28 + tpid_name(&p[28], C.initiator_name);
    twl_put_be32(&p[24], (uint32_t)(off - 28));
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, (uint32_t)off);
    pr_out(&s, &B, cdb, p, off, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    reserve(&s, &A, 0x0a, PR_TYPE_WRITE_EXCLUSIVE);

    uint8_t buf[512];
    memset(buf, 0xee, sizeof(buf));
    prin_cdb(cdb, PR_IN_READ_FULL_STATUS, sizeof(buf));
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    /* descriptors: A 24 + 40 ("iqn.2026-01.test:a,i,0x400000000001" + NUL = 36), B 24 + 40,
     * C 24 + 24 (name + NUL = 19, padded to 20) */
    assert_int_equal(r.data_len, 8 + 64 + 64 + 48);
    assert_int_equal(twl_get_be32(&buf[0]), 2);
    assert_int_equal(twl_get_be32(&buf[4]), 176);

    static const uint8_t a_head[28] = {
        0,    0, 0, 0,  0, 0, 0, 0x0a, /* key */
        0,    0, 0, 0,                 /* reserved */
        0x01,                          /* ALL_TG_PT 0, R_HOLDER 1 */
        0x01,                          /* scope 0, type WE */
        0,    0, 0, 0,  0, 1,          /* reserved, relative target port 1 */
        0,    0, 0, 40,                /* additional descriptor length */
        0x45, 0, 0, 36,                /* TransportID: format 01b, iSCSI; length 36 */
    };
    assert_memory_equal(&buf[8], a_head, sizeof(a_head));
    assert_memory_equal(&buf[36], "iqn.2026-01.test:a,i,0x400000000001\0", 36);

    static const uint8_t b_head[28] = {
        0, 0, 0, 0, 0, 0, 0, 0x0b, 0, 0,  0,    0, 0x00, 0x00,
        0, 0, 0, 0, 0, 1, 0, 0,    0, 40, 0x45, 0, 0,    36,
    };
    assert_memory_equal(&buf[72], b_head, sizeof(b_head));
    assert_memory_equal(&buf[100], "iqn.2026-01.test:b,i,0x400000000002\0", 36);

    static const uint8_t c_head[28] = {
        0, 0, 0, 0, 0, 0, 0, 0x0b, 0, 0,  0,    0, 0x00, 0x00,
        0, 0, 0, 0, 0, 1, 0, 0,    0, 24, 0x05, 0, 0,    20,
    };
    assert_memory_equal(&buf[136], c_head, sizeof(c_head));
    assert_memory_equal(&buf[164], "iqn.2026-01.test:c\0\0", 20);
    /* nothing past the response */
    assert_int_equal(buf[184], 0xee);

    /* all-registrants: every registrant is a holder */
    assert_int_equal(prout(&s, &A, PR_OUT_PREEMPT, PR_TYPE_EXCLUSIVE_ACCESS_AR, 0x0a, 0x0a, 0, &r),
                     SCSI_STATUS_GOOD);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(buf[8 + 12], 0x01);
    assert_int_equal(buf[8 + 13], PR_TYPE_EXCLUSIVE_ACCESS_AR);
    assert_int_equal(buf[72 + 12], 0x01);
    assert_int_equal(buf[136 + 12], 0x01);
    assert_int_equal(buf[136 + 13], PR_TYPE_EXCLUSIVE_ACCESS_AR);

    /* truncated: the lengths still describe everything */
    memset(buf, 0xee, sizeof(buf));
    prin_cdb(cdb, PR_IN_READ_FULL_STATUS, 100);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.data_len, 100);
    assert_int_equal(twl_get_be32(&buf[4]), 176);
    assert_int_equal(buf[100], 0xee);
    /* clipped by the caller's buffer too */
    prin_cdb(cdb, PR_IN_READ_FULL_STATUS, 4096);
    pr_in(&s, &A, cdb, buf, 50, &r);
    assert_int_equal(r.data_len, 50);
}

static void all_tg_pt_in_full_status(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], buf[128];
    pr_state_init(&s);
    assert_int_equal(prout(&s, &A_PORT2, PR_OUT_REGISTER, 0, 0, KEY_A, 0x04, &r), SCSI_STATUS_GOOD);
    prin_cdb(cdb, PR_IN_READ_FULL_STATUS, sizeof(buf));
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.data_len, 8 + 64);
    assert_int_equal(buf[8 + 12], 0x02);
    assert_int_equal(buf[8 + 13], 0x00);
}

static void read_keys_and_reservation_truncated(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], buf[64];
    pr_state_init(&s);
    reg(&s, &A, KEY_A);
    reg(&s, &B, KEY_B);

    /* libiscsi PrinReadKeys.Truncate: allocation length 8 */
    memset(buf, 0xee, sizeof(buf));
    prin_cdb(cdb, PR_IN_READ_KEYS, 8);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_len, 8);
    assert_int_equal(twl_get_be32(&buf[0]), 2);
    assert_int_equal(twl_get_be32(&buf[4]), 16);
    assert_int_equal(buf[8], 0xee);
    /* allocation length 0: nothing */
    prin_cdb(cdb, PR_IN_READ_KEYS, 0);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_len, 0);

    reserve(&s, &B, KEY_B, PR_TYPE_EXCLUSIVE_ACCESS_RO);
    memset(buf, 0xee, sizeof(buf));
    prin_cdb(cdb, PR_IN_READ_RESERVATION, 12);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(r.data_len, 12);
    assert_int_equal(twl_get_be32(&buf[4]), 16);
    prin_cdb(cdb, PR_IN_READ_RESERVATION, sizeof(buf));
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    static const uint8_t expect[24] = {
        0,    0,    0, 2, 0, 0,    0, 16, /* generation, additional length */
        0xbb, 0xbb, 0, 0, 0, 0,    0, 2,  /* key */
        0,    0,    0, 0, 0, 0x06, 0, 0,
    };
    assert_int_equal(r.data_len, 24);
    assert_memory_equal(buf, expect, sizeof(expect));
}

static void report_capabilities(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], buf[16];
    pr_state_init(&s);
    prin_cdb(cdb, PR_IN_REPORT_CAPABILITIES, sizeof(buf));
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    static const uint8_t expect[8] = {0, 8, 0x0d, 0xc0, 0xea, 0x01, 0, 0};
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    assert_int_equal(r.data_len, 8);
    assert_memory_equal(buf, expect, sizeof(expect));
    /* PTPL_A follows APTPL */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, 0, KEY_A, 0x01, &r), SCSI_STATUS_GOOD);
    pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
    assert_int_equal(buf[3], 0xc1);
}

static void prin_service_action_range(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    uint8_t cdb[10], buf[256];
    pr_state_init(&s);
    for (uint8_t sa = 0; sa < 0x20; sa++) {
        prin_cdb(cdb, sa, sizeof(buf));
        pr_in(&s, &A, cdb, buf, sizeof(buf), &r);
        if (sa < 4) {
            assert_int_equal(r.status, SCSI_STATUS_GOOD);
        } else {
            assert_check(&r, SCSI_ASC_INVALID_FIELD_IN_CDB, 1, false);
            assert_int_equal(r.data_len, 0);
        }
    }
}

/* ---- unit attention selectors, APTPL flags ---- */

static void ua_selector_matching(void **state)
{
    (void)state;
    struct pr_ua ua;
    memset(&ua, 0, sizeof(ua));
    snprintf(ua.initiator_name, sizeof(ua.initiator_name), "%s", "IQN.2026-01.TEST:A");
    memcpy(ua.isid, A.isid, 6);
    ua.isid_set = true;
    ua.rel_port = 1;
    assert_true(pr_ua_matches(&ua, &A)); /* names compare without case */
    assert_false(pr_ua_matches(&ua, &A_OTHER_ISID));
    assert_false(pr_ua_matches(&ua, &A_PORT2));
    assert_false(pr_ua_matches(&ua, &B));
    ua.all_ports = true;
    ua.isid_set = false;
    assert_true(pr_ua_matches(&ua, &A_OTHER_ISID));
    assert_true(pr_ua_matches(&ua, &A_PORT2));
    ua.except = true;
    memcpy(ua.except_isid, A.isid, 6);
    ua.except_port = 1;
    assert_false(pr_ua_matches(&ua, &A));
    assert_true(pr_ua_matches(&ua, &A_PORT2));
    assert_true(pr_ua_matches(&ua, &A_OTHER_ISID));
}

static void aptpl_persist_flags(void **state)
{
    (void)state;
    struct pr_state s;
    struct pr_result r;
    pr_state_init(&s);
    reg(&s, &A, KEY_A);
    assert_false(s.aptpl);
    assert_int_equal(prout(&s, &B, PR_OUT_REGISTER, 0, 0, KEY_B, 0x01, &r), SCSI_STATUS_GOOD);
    assert_true(s.aptpl);
    assert_true(r.persist);
    reserve(&s, &B, KEY_B, PR_TYPE_WRITE_EXCLUSIVE);
    assert_int_equal(prout(&s, &B, PR_OUT_RELEASE, PR_TYPE_WRITE_EXCLUSIVE, KEY_B, 0, 0, &r),
                     SCSI_STATUS_GOOD);
    assert_true(r.persist);
    /* turning APTPL off must rewrite the saved image once */
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, KEY_A, 0, &r), SCSI_STATUS_GOOD);
    assert_false(s.aptpl);
    assert_true(r.persist);
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, KEY_C, 0, &r), SCSI_STATUS_GOOD);
    assert_false(r.persist);
    assert_true(r.changed);
}

/* ---- serialisation and files ---- */

static void busy_state(struct pr_state *s)
{
    struct pr_result r;
    uint8_t cdb[10], p[128];
    pr_state_init(s);
    reg(s, &A, KEY_A);
    basic_param(p, 0, KEY_B, 0x08 | 0x04 | 0x01);
    size_t off = 28 + tpid_name(&p[28], C.initiator_name);
    twl_put_be32(&p[24], (uint32_t)(off - 28));
    prout_cdb(cdb, PR_OUT_REGISTER, 0, 0, (uint32_t)off);
    pr_out(s, &B, cdb, p, off, &r);
    assert_int_equal(r.status, SCSI_STATUS_GOOD);
    reserve(s, &B, KEY_B, PR_TYPE_EXCLUSIVE_ACCESS_RO);
    s->generation = 0x01020304;
}

static void assert_states_equal(const struct pr_state *a, const struct pr_state *b)
{
    assert_int_equal(a->generation, b->generation);
    assert_int_equal(a->aptpl, b->aptpl);
    assert_int_equal(a->count, b->count);
    for (unsigned i = 0; i < a->count; i++) {
        assert_true(a->reg[i].key == b->reg[i].key);
        assert_string_equal(a->reg[i].initiator_name, b->reg[i].initiator_name);
        assert_memory_equal(a->reg[i].isid, b->reg[i].isid, 6);
        assert_int_equal(a->reg[i].isid_set, b->reg[i].isid_set);
        assert_int_equal(a->reg[i].all_tg_pt, b->reg[i].all_tg_pt);
        assert_int_equal(a->reg[i].rel_port, b->reg[i].rel_port);
    }
    assert_int_equal(a->reserved, b->reserved);
    assert_int_equal(a->type, b->type);
    assert_int_equal(a->scope, b->scope);
    assert_int_equal(a->holder, b->holder);
    assert_int_equal(a->r6_reserved, b->r6_reserved);
    assert_string_equal(a->r6_name, b->r6_name);
    assert_memory_equal(a->r6_isid, b->r6_isid, 6);
    assert_int_equal(a->r6_port, b->r6_port);
}

static void encode_decode_round_trip(void **state)
{
    (void)state;
    struct pr_state s, t;
    busy_state(&s);
    static uint8_t img[PR_STATE_IMAGE_MAX], img2[PR_STATE_IMAGE_MAX];
    size_t len = pr_state_encode(&s, img, sizeof(img));
    assert_true(len > 0 && len <= sizeof(img));
    assert_memory_equal(img, "TWPR", 4);
    pr_state_init(&t);
    assert_int_equal(pr_state_decode(&t, img, len), 0);
    assert_states_equal(&s, &t);
    assert_int_equal(pr_state_encode(&t, img2, sizeof(img2)), len);
    assert_memory_equal(img, img2, len);

    /* RESERVE(6) state travels to the partner too */
    struct pr_state r6;
    struct pr_result r;
    pr_state_init(&r6);
    pr_reserve6(&r6, &B, (const uint8_t[6]){0x16}, &r);
    len = pr_state_encode(&r6, img, sizeof(img));
    assert_int_equal(pr_state_decode(&t, img, len), 0);
    assert_states_equal(&r6, &t);

    /* the largest state fits the documented bound */
    pr_state_init(&s);
    memset(s.r6_name, 'r', PR_NAME_MAX - 1);
    s.r6_reserved = true;
    s.count = PR_MAX_REGISTRANTS;
    for (unsigned i = 0; i < PR_MAX_REGISTRANTS; i++) {
        memset(s.reg[i].initiator_name, 'a' + (char)(i % 26), PR_NAME_MAX - 1);
        s.reg[i].key = i + 1;
    }
    len = pr_state_encode(&s, NULL, 0);
    assert_true(len <= PR_STATE_IMAGE_MAX);
    assert_int_equal(pr_state_encode(&s, img, sizeof(img)), len);
    assert_int_equal(pr_state_decode(&t, img, len), 0);
    assert_states_equal(&s, &t);
}

static void decode_refuses_damage(void **state)
{
    (void)state;
    struct pr_state s, t, saved;
    busy_state(&s);
    static uint8_t img[PR_STATE_IMAGE_MAX];
    size_t len = pr_state_encode(&s, img, sizeof(img));

    /* too small a buffer: the needed size comes back and nothing is written */
    uint8_t small[16];
    memset(small, 0x5a, sizeof(small));
    assert_int_equal(pr_state_encode(&s, small, sizeof(small)), len);
    for (unsigned i = 0; i < sizeof(small); i++)
        assert_int_equal(small[i], 0x5a);

    pr_state_init(&t);
    reg(&t, &C, KEY_C);
    saved = t;
    /* every single corrupted byte is caught, and t is left as it was */
    for (size_t i = 0; i < len; i++) {
        img[i] ^= 0x20;
        assert_int_equal(pr_state_decode(&t, img, len), -EINVAL);
        img[i] ^= 0x20;
    }
    /* short and long buffers */
    for (size_t cut = 0; cut < len; cut += 7)
        assert_int_equal(pr_state_decode(&t, img, cut), -EINVAL);
    assert_int_equal(pr_state_decode(&t, img, len - 1), -EINVAL);
    static uint8_t longer[PR_STATE_IMAGE_MAX + 1];
    memcpy(longer, img, len);
    assert_int_equal(pr_state_decode(&t, longer, len + 1), -EINVAL);
    assert_states_equal(&t, &saved);

    /* a well-formed image whose contents are wrong: holder out of range, CRC recomputed */
    twl_put_be16(&img[20], 9);
    twl_put_be32(&img[len - 4], twl_crc32c(img, len - 4));
    assert_int_equal(pr_state_decode(&t, img, len), -EINVAL);
    twl_put_be16(&img[20], s.holder);
    /* another version */
    twl_put_be16(&img[4], 2);
    twl_put_be32(&img[len - 4], twl_crc32c(img, len - 4));
    assert_int_equal(pr_state_decode(&t, img, len), -EINVAL);
    twl_put_be16(&img[4], 1);
    twl_put_be32(&img[len - 4], twl_crc32c(img, len - 4));
    assert_int_equal(pr_state_decode(&t, img, len), 0);
    assert_states_equal(&t, &s);
}

static void count_dir_entries(const char *dir, unsigned *n)
{
    DIR *d = opendir(dir);
    assert_non_null(d);
    struct dirent *e;
    *n = 0;
    while ((e = readdir(d)) != NULL)
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            (*n)++;
    closedir(d);
}

static void save_and_load(void **state)
{
    (void)state;
    char dir[] = "/tmp/test_target_pr.XXXXXX";
    assert_non_null(mkdtemp(dir));
    char path[256];
    snprintf(path, sizeof(path), "%s/lun0.pr", dir);

    struct pr_state s, t;
    pr_state_init(&t);
    assert_int_equal(pr_state_load(&t, path), -ENOENT);

    /* APTPL on: everything but the RESERVE(6) reservation survives */
    busy_state(&s);
    assert_true(s.aptpl);
    assert_int_equal(pr_state_save(&s, path), 0);
    unsigned entries;
    count_dir_entries(dir, &entries);
    assert_int_equal(entries, 1); /* no temporary file left behind */
    assert_int_equal(pr_state_load(&t, path), 0);
    assert_states_equal(&s, &t);

    /* overwrite; then APTPL off saves "nothing persists" */
    struct pr_result r;
    assert_int_equal(prout(&s, &A, PR_OUT_REGISTER, 0, KEY_A, KEY_A, 0, &r), SCSI_STATUS_GOOD);
    assert_false(s.aptpl);
    assert_int_equal(pr_state_save(&s, path), 0);
    assert_int_equal(pr_state_load(&t, path), 0);
    struct pr_state empty;
    pr_state_init(&empty);
    assert_states_equal(&t, &empty);

    /* a truncated file is refused and t is untouched */
    busy_state(&s);
    assert_int_equal(pr_state_save(&s, path), 0);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static uint8_t img[PR_STATE_IMAGE_MAX];
    size_t len = fread(img, 1, sizeof(img), f);
    fclose(f);
    assert_true(len > 10);
    assert_int_equal(truncate(path, (off_t)(len - 3)), 0);
    pr_state_init(&t);
    reg(&t, &C, KEY_C);
    struct pr_state before = t;
    assert_int_equal(pr_state_load(&t, path), -EINVAL);
    assert_states_equal(&t, &before);
    /* an empty file too */
    assert_int_equal(truncate(path, 0), 0);
    assert_int_equal(pr_state_load(&t, path), -EINVAL);

    /* a directory that does not exist */
    char missing[300];
    snprintf(missing, sizeof(missing), "%s/nope/lun0.pr", dir);
    assert_int_equal(pr_state_save(&s, missing), -ENOENT);

    assert_int_equal(unlink(path), 0);
    assert_int_equal(rmdir(dir), 0);
}

int main(void)
{
    twl_log_set_level(TWL_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(register_and_unregister),
        cmocka_unit_test(register_under_each_type),
        cmocka_unit_test(reserve_each_type),
        cmocka_unit_test(release_each_type),
        cmocka_unit_test(unregister_holder_each_type),
        cmocka_unit_test(unregister_before_holder_keeps_holder),
        cmocka_unit_test(clear_each_type),
        cmocka_unit_test(preempt),
        cmocka_unit_test(preempt_and_abort),
        cmocka_unit_test(preempt_removes_registrations),
        cmocka_unit_test(preempt_self_changes_type),
        cmocka_unit_test(register_and_move_each_type),
        cmocka_unit_test(register_and_move_refusals),
        cmocka_unit_test(bad_cdbs_and_parameter_lists),
        cmocka_unit_test(spec_i_pt_registers_transport_ids),
        cmocka_unit_test(all_tg_pt_covers_every_port),
        cmocka_unit_test(insufficient_registration_resources),
        cmocka_unit_test(access_matrix),
        cmocka_unit_test(reserve6_release6),
        cmocka_unit_test(read_full_status_layout),
        cmocka_unit_test(all_tg_pt_in_full_status),
        cmocka_unit_test(read_keys_and_reservation_truncated),
        cmocka_unit_test(report_capabilities),
        cmocka_unit_test(prin_service_action_range),
        cmocka_unit_test(ua_selector_matching),
        cmocka_unit_test(aptpl_persist_flags),
        cmocka_unit_test(encode_decode_round_trip),
        cmocka_unit_test(decode_refuses_damage),
        cmocka_unit_test(save_and_load),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
