/* Shared state of one LU: block range locks, unit attentions per I_T nexus, admission against
 * reservations, PR/RESERVE(6)/MODE SELECT through lu_execute with real CDBs, and what persists
 * across lu_destroy/lu_init (saved mode parameters, APTPL reservations). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "lu.h"
#include "scsi.h"
#include "twl_common.h"

#define KEY_A 0xaaaa000000000001ull
#define KEY_B 0xbbbb000000000002ull

static const uint8_t ISID_A[6] = {0x40, 0, 0, 0, 0, 1};
static const uint8_t ISID_B[6] = {0x40, 0, 0, 0, 0, 2};
#define NAME_A "iqn.2026-01.test:a"
#define NAME_B "iqn.2026-01.test:b"

static const uint8_t TUR[6] = {0x00, 0, 0, 0, 0, 0};
static const uint8_t INQUIRY[6] = {0x12, 0, 0, 0, 96, 0};
static const uint8_t REQUEST_SENSE[6] = {0x03, 0, 0, 0, 18, 0};
static const uint8_t READ_10[10] = {0x28, 0, 0, 0, 0, 8, 0, 0, 1, 0};
static const uint8_t WRITE_10[10] = {0x2a, 0, 0, 0, 0, 8, 0, 0, 1, 0};
static const uint8_t RESERVE_6[6] = {0x16, 0, 0, 0, 0, 0};
static const uint8_t RELEASE_6[6] = {0x17, 0, 0, 0, 0, 0};

struct fixture {
    char dir[64];
    char base[128];
    struct scsi_lun info;
    struct lu lu;
    struct scsi_plan plan;
    uint8_t buf[512];
};

static struct fixture *f;

static void info_defaults(struct scsi_lun *info)
{
    memset(info, 0, sizeof(*info));
    info->id = 0;
    info->block_count = 1000000;
    info->block_size = 512;
    info->thin = true;
    info->write_cache = true;
    info->max_transfer_blocks = 2048;
}

static int setup(void **state)
{
    f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/var/tmp/twl-lu-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->base, sizeof(f->base), "%s/iqn.2026-01.test:disk.lun0", f->dir);
    info_defaults(&f->info);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    lu_destroy(&f->lu);
    char path[160];
    snprintf(path, sizeof(path), "%s.pr", f->base);
    unlink(path);
    snprintf(path, sizeof(path), "%s.mode", f->base);
    unlink(path);
    assert_int_equal(rmdir(f->dir), 0); /* nothing else was left behind */
    free(f);
    f = NULL;
    return 0;
}

/* ---- range locks ---- */

struct waiter {
    struct lu_range r; /* first: the callback gets &r */
    int id;
};

static int granted_order[16];
static size_t granted_count;

static void on_granted(struct lu_range *r)
{
    struct waiter *w = (struct waiter *)r;
    assert_true(r->held); /* granted before the owner hears of it */
    assert_true(granted_count < sizeof(granted_order) / sizeof(granted_order[0]));
    granted_order[granted_count++] = w->id;
}

static bool lock(struct waiter *w, int id, uint64_t lba, uint64_t blocks)
{
    memset(w, 0, sizeof(*w));
    w->id = id;
    w->r.granted = on_granted;
    return lu_range_lock(&f->lu, &w->r, lba, blocks);
}

static void reset_granted(void)
{
    granted_count = 0;
    memset(granted_order, 0, sizeof(granted_order));
}

static void range_disjoint_granted_at_once(void **state)
{
    (void)state;
    reset_granted();
    struct waiter a, b, c, d;
    assert_true(lock(&a, 1, 0, 10));
    assert_true(lock(&b, 2, 10, 10)); /* adjacent: [10, 20) does not touch [0, 10) */
    assert_true(lock(&c, 3, 100, 1));
    assert_true(lock(&d, 4, 20, 80)); /* fills the gap exactly */
    assert_true(a.r.held && b.r.held && c.r.held && d.r.held);
    assert_int_equal(granted_count, 0);

    lu_range_unlock(&f->lu, &b.r);
    lu_range_unlock(&f->lu, &a.r);
    lu_range_unlock(&f->lu, &d.r);
    lu_range_unlock(&f->lu, &c.r);
    assert_false(a.r.held || b.r.held || c.r.held || d.r.held);
    assert_int_equal(granted_count, 0);
}

static void range_zero_blocks_is_one_block(void **state)
{
    (void)state;
    reset_granted();
    struct waiter a, b, c;
    assert_true(lock(&a, 1, 7, 0));
    assert_false(lock(&b, 2, 7, 1));
    assert_true(lock(&c, 3, 8, 1));
    lu_range_unlock(&f->lu, &a.r);
    assert_int_equal(granted_count, 1);
    assert_int_equal(granted_order[0], 2);
    lu_range_unlock(&f->lu, &b.r);
    lu_range_unlock(&f->lu, &c.r);
}

static void range_overlapping_granted_in_order(void **state)
{
    (void)state;
    reset_granted();
    struct waiter a, b, c;
    assert_true(lock(&a, 1, 0, 10));
    assert_false(lock(&b, 2, 0, 10));
    assert_false(lock(&c, 3, 9, 1)); /* overlaps both */
    assert_false(b.r.held);
    assert_false(c.r.held);

    lu_range_unlock(&f->lu, &a.r);
    assert_int_equal(granted_count, 1); /* B only: C overlaps B, which now holds */
    assert_int_equal(granted_order[0], 2);
    assert_true(b.r.held);
    assert_false(c.r.held);

    lu_range_unlock(&f->lu, &b.r);
    assert_int_equal(granted_count, 2);
    assert_int_equal(granted_order[1], 3);
    assert_true(c.r.held);
    lu_range_unlock(&f->lu, &c.r);
    assert_int_equal(granted_count, 2);
}

static void range_waiter_behind_waiter_keeps_its_turn(void **state)
{
    (void)state;
    reset_granted();
    struct waiter a, b, c, d;
    assert_true(lock(&a, 1, 0, 10));
    assert_false(lock(&b, 2, 5, 10)); /* [5, 15) waits for A */
    /* [12, 17) is free as far as holders go, but overlaps the waiting B: it queues behind B
     * so that writes to the same blocks keep their arrival order */
    assert_false(lock(&c, 3, 12, 5));
    /* [30, 31) overlaps nobody, holder or waiter: no reason to wait */
    assert_true(lock(&d, 4, 30, 1));
    lu_range_unlock(&f->lu, &d.r);
    assert_int_equal(granted_count, 0);

    lu_range_unlock(&f->lu, &a.r);
    assert_int_equal(granted_count, 1);
    assert_int_equal(granted_order[0], 2);
    assert_false(c.r.held);

    lu_range_unlock(&f->lu, &b.r);
    assert_int_equal(granted_count, 2);
    assert_int_equal(granted_order[1], 3);
    assert_true(c.r.held);
    lu_range_unlock(&f->lu, &c.r);
}

static void range_one_unlock_grants_every_fitting_waiter(void **state)
{
    (void)state;
    reset_granted();
    struct waiter a, b, c, d;
    assert_true(lock(&a, 1, 0, 100));
    assert_false(lock(&b, 2, 0, 10));
    assert_false(lock(&c, 3, 50, 10));
    assert_false(lock(&d, 4, 5, 50)); /* overlaps B and C: stays */

    lu_range_unlock(&f->lu, &a.r);
    assert_int_equal(granted_count, 2);
    /* B and C are disjoint; both are granted by the one unlock, the order of their
     * callbacks is not promised */
    assert_true((granted_order[0] == 2 && granted_order[1] == 3) ||
                (granted_order[0] == 3 && granted_order[1] == 2));
    assert_true(b.r.held && c.r.held);
    assert_false(d.r.held);

    lu_range_unlock(&f->lu, &c.r);
    assert_int_equal(granted_count, 2); /* D still overlaps B */
    lu_range_unlock(&f->lu, &b.r);
    assert_int_equal(granted_count, 3);
    assert_int_equal(granted_order[2], 4);
    lu_range_unlock(&f->lu, &d.r);
}

/* ---- unit attentions ---- */

static struct lu_nexus *nexus_a(void)
{
    return lu_nexus_get(&f->lu, NAME_A, ISID_A, 1);
}

static struct lu_nexus *nexus_b(void)
{
    return lu_nexus_get(&f->lu, NAME_B, ISID_B, 1);
}

/* Admits cdb from n; returns true when it may go on, with the UA REQUEST SENSE took. */
static bool admit(struct lu_nexus *n, const uint8_t *cdb, uint16_t *ua)
{
    uint16_t dummy;
    memset(&f->plan, 0xa5, sizeof(f->plan));
    return lu_admit(&f->lu, n, cdb, &f->plan, ua ? ua : &dummy);
}

static void assert_unit_attention(struct lu_nexus *n, uint16_t asc)
{
    assert_false(admit(n, TUR, NULL));
    assert_int_equal(f->plan.action, SCSI_ACTION_COMPLETE);
    assert_int_equal(f->plan.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(f->plan.sense_len, SCSI_SENSE_FIXED_LEN);
    assert_int_equal(f->plan.sense[2], SCSI_SENSE_UNIT_ATTENTION);
    assert_int_equal(f->plan.sense[12], asc >> 8);
    assert_int_equal(f->plan.sense[13], asc & 0xff);
}

static void assert_admitted(struct lu_nexus *n, const uint8_t *cdb)
{
    uint16_t ua = 0xffff;
    assert_true(admit(n, cdb, &ua));
    assert_int_equal(ua, 0);
}

static void assert_conflict(struct lu_nexus *n, const uint8_t *cdb)
{
    assert_false(admit(n, cdb, NULL));
    assert_int_equal(f->plan.action, SCSI_ACTION_COMPLETE);
    assert_int_equal(f->plan.status, SCSI_STATUS_RESERVATION_CONFLICT);
    assert_int_equal(f->plan.sense_len, 0);
}

/* The first command of each nexus takes its POWER ON unit attention. */
static void clear_power_on(struct lu_nexus *n)
{
    assert_unit_attention(n, SCSI_ASC_POWER_ON_RESET);
    assert_admitted(n, TUR);
}

static void nexus_get_returns_the_same_record(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    assert_non_null(a);
    assert_ptr_equal(nexus_a(), a);
    assert_string_equal(a->initiator, NAME_A);
    assert_int_equal(atomic_load(&a->ua_count), 1);

    /* another ISID, or the same initiator port through the other target port, is another
     * I_T nexus */
    struct lu_nexus *other_isid = lu_nexus_get(&f->lu, NAME_A, ISID_B, 1);
    struct lu_nexus *other_port = lu_nexus_get(&f->lu, NAME_A, ISID_A, 2);
    assert_non_null(other_isid);
    assert_non_null(other_port);
    assert_ptr_not_equal(other_isid, a);
    assert_ptr_not_equal(other_port, a);
    assert_ptr_not_equal(other_port, other_isid);
    assert_ptr_equal(nexus_a(), a);
}

/* A record lives while a connection holds it: the last put frees it, so initiators that come
 * back with new ISIDs do not make the LU grow, and a nexus formed again starts afresh. */
static void nexus_goes_with_its_last_user(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    clear_power_on(a);
    assert_ptr_equal(nexus_a(), a); /* a reinstated session's connection takes it too */
    lu_ua_all(&f->lu, SCSI_ASC_MODE_PARAMS_CHANGED, NULL);
    lu_nexus_put(&f->lu, a); /* the old connection is freed: the record stays for the new */
    assert_unit_attention(a, SCSI_ASC_MODE_PARAMS_CHANGED);
    lu_nexus_put(&f->lu, a);
    unsigned records = 0;
    for (struct lu_nexus *n = f->lu.nexuses; n; n = n->next)
        records++;
    assert_int_equal(records, 0);
    a = nexus_a(); /* the nexus forms again: a new record, POWER ON again */
    assert_int_equal(a->users, 1);
    assert_unit_attention(a, SCSI_ASC_POWER_ON_RESET);
    for (int i = 0; i < 1000; i++) {
        uint8_t isid[6] = {0x80, 0, 0, 0, (uint8_t)(i >> 8), (uint8_t)i};
        lu_nexus_put(&f->lu, lu_nexus_get(&f->lu, NAME_B, isid, 1));
    }
    assert_ptr_equal(f->lu.nexuses, a);
    assert_null(a->next);
}

static void first_command_sees_power_on(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    assert_unit_attention(a, SCSI_ASC_POWER_ON_RESET);
    assert_int_equal(f->plan.sense[0], 0x70);
    assert_int_equal(f->plan.sense[7], 10);
    /* reported once */
    assert_admitted(a, TUR);
    assert_admitted(a, WRITE_10);
    assert_int_equal(atomic_load(&a->ua_count), 0);
}

static void inquiry_passes_request_sense_takes(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    assert_admitted(a, INQUIRY);
    assert_int_equal(atomic_load(&a->ua_count), 1); /* still pending */
    const uint8_t report_luns[12] = {0xa0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0};
    assert_admitted(a, report_luns);
    assert_int_equal(atomic_load(&a->ua_count), 1);

    uint16_t ua = 0;
    assert_true(admit(a, REQUEST_SENSE, &ua));
    assert_int_equal(ua, SCSI_ASC_POWER_ON_RESET);
    assert_int_equal(atomic_load(&a->ua_count), 0);

    /* nothing pending any more */
    assert_true(admit(a, REQUEST_SENSE, &ua));
    assert_int_equal(ua, 0);
    assert_admitted(a, TUR);
}

static void unit_attentions_queue_in_order(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    lu_ua_all(&f->lu, SCSI_ASC_CAPACITY_CHANGED, NULL);
    lu_ua_all(&f->lu, SCSI_ASC_CAPACITY_CHANGED, NULL); /* the same condition once */
    lu_ua_all(&f->lu, SCSI_ASC_ALUA_STATE_CHANGED, NULL);
    assert_int_equal(atomic_load(&a->ua_count), 3);
    assert_unit_attention(a, SCSI_ASC_POWER_ON_RESET);
    assert_unit_attention(a, SCSI_ASC_CAPACITY_CHANGED);
    assert_unit_attention(a, SCSI_ASC_ALUA_STATE_CHANGED);
    assert_admitted(a, TUR);
}

static void unit_attention_queue_is_bounded(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    /* POWER ON plus 9 more: the queue keeps the first LU_UA_MAX */
    for (uint16_t i = 0; i < 9; i++)
        lu_ua_all(&f->lu, (uint16_t)(0x3f00 | i), NULL);
    assert_int_equal(atomic_load(&a->ua_count), LU_UA_MAX);
    assert_unit_attention(a, SCSI_ASC_POWER_ON_RESET);
    for (uint16_t i = 0; i < LU_UA_MAX - 1; i++)
        assert_unit_attention(a, (uint16_t)(0x3f00 | i));
    assert_admitted(a, TUR);
}

static void lu_reset_reaches_every_nexus(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);

    lu_reset(&f->lu);
    assert_unit_attention(a, SCSI_ASC_POWER_ON_RESET);
    assert_unit_attention(b, SCSI_ASC_POWER_ON_RESET);
    assert_admitted(a, TUR);
    assert_admitted(b, TUR);
}

static void ua_all_except_the_sender(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);

    lu_ua_all(&f->lu, SCSI_ASC_CAPACITY_CHANGED, a);
    assert_admitted(a, TUR);
    assert_unit_attention(b, SCSI_ASC_CAPACITY_CHANGED);
    assert_admitted(b, TUR);

    /* a nexus seen for the first time later has only its own POWER ON */
    struct lu_nexus *c = lu_nexus_get(&f->lu, "iqn.2026-01.test:c", ISID_A, 2);
    assert_int_equal(atomic_load(&c->ua_count), 1);
}

/* ---- reservations through lu_execute ---- */

static void prout(struct lu_nexus *n, uint8_t sa, uint8_t type, uint64_t rk, uint64_t sark,
                  uint8_t flags)
{
    uint8_t cdb[10] = {0x5f, sa, type, 0, 0, 0, 0, 0, 24, 0};
    uint8_t p[24] = {0};
    twl_put_be64(p, rk);
    twl_put_be64(p + 8, sark);
    p[20] = flags;
    lu_execute(&f->lu, n, cdb, p, sizeof(p), f->buf, sizeof(f->buf), &f->plan, NULL);
}

static void assert_lu_good(void)
{
    assert_int_equal(f->plan.action, SCSI_ACTION_COMPLETE);
    assert_int_equal(f->plan.status, SCSI_STATUS_GOOD);
    assert_int_equal(f->plan.sense_len, 0);
}

static void read_keys(struct lu_nexus *n)
{
    const uint8_t cdb[10] = {0x5e, 0x00, 0, 0, 0, 0, 0, 0x01, 0x00, 0};
    memset(f->buf, 0xee, sizeof(f->buf));
    lu_execute(&f->lu, n, cdb, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();
}

static void persistent_reservation_write_exclusive(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);

    prout(a, 0x00, 0, 0, KEY_A, 0); /* REGISTER */
    assert_lu_good();
    assert_false(atomic_load(&f->lu.reserved)); /* a registration alone reserves nothing */
    assert_admitted(b, WRITE_10);

    prout(a, 0x01, 0x01, KEY_A, 0, 0); /* RESERVE, Write Exclusive */
    assert_lu_good();
    assert_true(atomic_load(&f->lu.reserved));

    assert_conflict(b, WRITE_10);
    const uint8_t ws[16] = {0x93, 0x08, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0};
    assert_conflict(b, ws);
    assert_admitted(b, READ_10);
    assert_admitted(b, INQUIRY);
    assert_admitted(a, WRITE_10);

    read_keys(b);
    assert_int_equal(f->plan.data_len, 16);
    assert_int_equal(twl_get_be32(f->buf + 4), 8);
    assert_int_equal(twl_get_be64(f->buf + 8), KEY_A);

    prout(a, 0x02, 0x01, KEY_A, 0, 0); /* RELEASE */
    assert_lu_good();
    assert_false(atomic_load(&f->lu.reserved));
    assert_admitted(b, WRITE_10);
}

static void unit_attention_before_reservation_conflict(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    prout(a, 0x00, 0, 0, KEY_A, 0);
    prout(a, 0x01, 0x01, KEY_A, 0, 0);
    assert_lu_good();
    /* B's POWER ON comes first (SAM-5), the conflict with the next command */
    assert_false(admit(b, WRITE_10, NULL));
    assert_int_equal(f->plan.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(f->plan.sense[2], SCSI_SENSE_UNIT_ATTENTION);
    assert_conflict(b, WRITE_10);
}

static void preempt_tells_the_preempted(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);
    prout(a, 0x00, 0, 0, KEY_A, 0);
    prout(a, 0x01, 0x01, KEY_A, 0, 0);
    prout(b, 0x00, 0, 0, KEY_B, 0);
    assert_lu_good();

    prout(b, 0x04, 0x01, KEY_B, KEY_A, 0); /* PREEMPT A's key, take the reservation */
    assert_lu_good();
    assert_unit_attention(a, SCSI_ASC_REGISTRATIONS_PREEMPTED);
    assert_conflict(a, WRITE_10); /* B holds it now */
    assert_admitted(b, WRITE_10);
}

static void reserve6_and_release6(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);

    lu_execute(&f->lu, a, RESERVE_6, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();
    assert_true(atomic_load(&f->lu.reserved));
    assert_admitted(a, WRITE_10);
    assert_conflict(b, READ_10); /* RESERVE(6) is exclusive access */
    assert_conflict(b, WRITE_10);
    assert_admitted(b, INQUIRY);

    /* RELEASE(6) from a non-holder is GOOD and releases nothing */
    lu_execute(&f->lu, b, RELEASE_6, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();
    assert_conflict(b, READ_10);

    lu_execute(&f->lu, a, RELEASE_6, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();
    assert_false(atomic_load(&f->lu.reserved));
    assert_admitted(b, READ_10);
}

static void nexus_lost_releases_reserve6(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);
    lu_execute(&f->lu, a, RESERVE_6, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();

    lu_nexus_lost(&f->lu, b); /* not the holder: nothing changes */
    assert_conflict(b, READ_10);

    lu_nexus_lost(&f->lu, a);
    assert_false(atomic_load(&f->lu.reserved));
    assert_admitted(b, READ_10);
    assert_admitted(b, WRITE_10);
}

static void lu_reset_releases_reserve6_keeps_persistent(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);
    lu_execute(&f->lu, a, RESERVE_6, NULL, 0, f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_lu_good();
    lu_reset(&f->lu);
    assert_unit_attention(b, SCSI_ASC_POWER_ON_RESET);
    assert_admitted(b, WRITE_10);

    prout(a, 0x00, 0, 0, KEY_A, 0);
    prout(a, 0x01, 0x01, KEY_A, 0, 0);
    assert_lu_good();
    lu_reset(&f->lu);
    assert_unit_attention(b, SCSI_ASC_POWER_ON_RESET);
    assert_conflict(b, WRITE_10);
}

/* ---- MODE SELECT ---- */

/* MODE SELECT(10) of the caching page with WCE as given; sp saves. */
static void mode_select_wce(struct lu_nexus *n, bool wce, bool sp)
{
    uint8_t cdb[10] = {0x55, (uint8_t)(0x10 | (sp ? 0x01 : 0x00)), 0, 0, 0, 0, 0, 0, 28, 0};
    uint8_t p[28] = {0};
    p[8] = 0x08;
    p[9] = 0x12;
    p[10] = wce ? 0x04 : 0x00;
    lu_execute(&f->lu, n, cdb, p, sizeof(p), f->buf, sizeof(f->buf), &f->plan, NULL);
}

static void mode_select_changes_write_cache(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    struct lu_nexus *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);

    mode_select_wce(a, false, false);
    assert_lu_good();
    assert_false(f->info.write_cache);
    assert_true(f->info.saved_write_cache); /* SP 0: not saved */
    assert_admitted(a, TUR);                /* the sender knows already */
    assert_unit_attention(b, SCSI_ASC_MODE_PARAMS_CHANGED);
    assert_admitted(b, TUR);

    /* the same value again changes nothing and tells nobody */
    mode_select_wce(a, false, false);
    assert_lu_good();
    assert_admitted(b, TUR);

    /* a change of another bit is refused and changes nothing */
    uint8_t cdb[10] = {0x55, 0x10, 0, 0, 0, 0, 0, 0, 28, 0};
    uint8_t p[28] = {0};
    p[8] = 0x08;
    p[9] = 0x12;
    p[10] = 0x04 | 0x01; /* WCE on, RCD */
    lu_execute(&f->lu, a, cdb, p, sizeof(p), f->buf, sizeof(f->buf), &f->plan, NULL);
    assert_int_equal(f->plan.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(f->plan.sense[2], SCSI_SENSE_ILLEGAL_REQUEST);
    assert_int_equal(f->plan.sense[12], 0x26);
    assert_int_equal(twl_get_be16(f->plan.sense + 16), 10);
    assert_false(f->info.write_cache);
    assert_admitted(b, TUR);

    char path[160];
    snprintf(path, sizeof(path), "%s.mode", f->base);
    assert_int_not_equal(access(path, F_OK), 0); /* nothing was saved */
}

static void mode_select_saved_survives_lu_init(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    clear_power_on(a);

    mode_select_wce(a, false, true);
    assert_lu_good();
    assert_false(f->info.write_cache);
    assert_false(f->info.saved_write_cache);

    char path[160], text[32] = {0};
    snprintf(path, sizeof(path), "%s.mode", f->base);
    FILE *fp = fopen(path, "r");
    assert_non_null(fp);
    assert_non_null(fgets(text, sizeof(text), fp));
    fclose(fp);
    assert_string_equal(text, "wce=0\n");

    /* a restart: the configured default (on) gives way to the saved value */
    lu_destroy(&f->lu);
    info_defaults(&f->info);
    assert_true(f->info.write_cache);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);
    assert_false(f->info.write_cache);
    assert_false(f->info.saved_write_cache);

    /* turned on without saving: the next start is off again */
    a = nexus_a();
    clear_power_on(a);
    mode_select_wce(a, true, false);
    assert_lu_good();
    assert_true(f->info.write_cache);
    assert_false(f->info.saved_write_cache);
    lu_destroy(&f->lu);
    info_defaults(&f->info);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);
    assert_false(f->info.write_cache);
}

/* ---- APTPL ---- */

static void aptpl_registration_survives_lu_init(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    clear_power_on(a);
    prout(a, 0x00, 0, 0, KEY_A, 0x01); /* REGISTER with APTPL */
    assert_lu_good();

    lu_destroy(&f->lu);
    info_defaults(&f->info);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);

    struct lu_nexus *b = nexus_b();
    read_keys(b);
    assert_int_equal(f->plan.data_len, 16);
    assert_int_equal(twl_get_be32(f->buf), 1); /* PRgeneration: one REGISTER */
    assert_int_equal(twl_get_be32(f->buf + 4), 8);
    assert_int_equal(twl_get_be64(f->buf + 8), KEY_A);
}

static void aptpl_reservation_survives_lu_init(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    prout(a, 0x00, 0, 0, KEY_A, 0x01);
    prout(a, 0x01, 0x01, KEY_A, 0, 0);
    assert_lu_good();

    lu_destroy(&f->lu);
    info_defaults(&f->info);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);
    assert_true(atomic_load(&f->lu.reserved));
    struct lu_nexus *b = nexus_b();
    clear_power_on(b);
    assert_conflict(b, WRITE_10);
    assert_admitted(b, READ_10);
}

/* The same LU on the partner node: its own state files, in a directory of its own. */
struct partner_lu {
    char dir[64], base[128];
    struct scsi_lun info;
    struct lu lu;
};

static void partner_open(struct partner_lu *p)
{
    snprintf(p->dir, sizeof(p->dir), "/var/tmp/twl-lu-partner-XXXXXX");
    assert_non_null(mkdtemp(p->dir));
    snprintf(p->base, sizeof(p->base), "%s/iqn.2026-01.test:disk.lun0", p->dir);
    info_defaults(&p->info);
    assert_int_equal(lu_init(&p->lu, &p->info, p->base), 0);
}

/* The partner gets the owner's metadata as one image: after applying it, its reservations
 * (registrations, reservation, generation) and mode parameters are the owner's, and a
 * damaged image changes nothing. */
static void metadata_image_makes_the_partner_equal(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    clear_power_on(a);
    prout(a, 0x00, 0, 0, KEY_A, 0x01); /* REGISTER with APTPL */
    prout(a, 0x01, 0x05, KEY_A, 0, 0); /* RESERVE Write Exclusive - Registrants Only */
    assert_lu_good();
    f->info.write_cache = false;

    static uint8_t image[LU_META_MAX];
    size_t len = lu_meta_encode(&f->lu, image, sizeof(image));
    assert_true(len > 16 && len <= sizeof(image));
    assert_int_equal(lu_meta_encode(&f->lu, image, 8), len); /* too small: the size, no bytes */

    struct partner_lu p;
    partner_open(&p);

    uint8_t bad[LU_META_MAX];
    memcpy(bad, image, len);
    bad[len / 2] ^= 0x01;
    assert_int_equal(lu_meta_apply(&p.lu, bad, len), -EINVAL);
    assert_false(atomic_load(&p.lu.reserved));
    assert_int_equal(lu_meta_apply(&p.lu, image, len), 0);
    assert_true(atomic_load(&p.lu.reserved));
    assert_false(p.info.write_cache);

    /* both encode the same image now */
    static uint8_t again[LU_META_MAX];
    assert_int_equal(lu_meta_encode(&p.lu, again, sizeof(again)), len);
    assert_memory_equal(again, image, len);
    /* and APTPL made the partner save it, as the owner did */
    char path[160];
    snprintf(path, sizeof(path), "%s.pr", p.base);
    assert_int_equal(access(path, F_OK), 0);
    lu_destroy(&p.lu);
    unlink(path);
    snprintf(path, sizeof(path), "%s.mode", p.base);
    unlink(path);
    assert_int_equal(rmdir(p.dir), 0);
}

/* Whether the partner's LU admits cdb from n, once the nexus's first unit attention (power
 * on) is taken. */
static bool partner_admits(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb)
{
    struct scsi_plan plan;
    uint16_t ua = 0;
    if (!lu_admit(lu, n, TUR, &plan, &ua))
        assert_int_equal(plan.sense[2] & 0x0f, SCSI_SENSE_UNIT_ATTENTION);
    memset(&plan, 0, sizeof(plan));
    bool ok = lu_admit(lu, n, cdb, &plan, &ua);
    if (!ok)
        assert_int_equal(plan.status, SCSI_STATUS_RESERVATION_CONFLICT);
    return ok;
}

/* A takeover moves initiators to the partner's target port (relative port 2): there, the image
 * the owner replicated gives a registration made with ALL_TG_PT through port 1 to the same
 * initiator port through port 2; one made without it stays with port 1's nexus, as SPC-4 has
 * it; the Write Exclusive - Registrants Only reservation fences the others. */
static void registrations_hold_through_the_partner_port(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a(), *b = nexus_b();
    clear_power_on(a);
    clear_power_on(b);
    prout(a, 0x00, 0, 0, KEY_A, 0x04); /* REGISTER, ALL_TG_PT */
    assert_lu_good();
    prout(b, 0x00, 0, 0, KEY_B, 0x00); /* REGISTER through port 1 only */
    assert_lu_good();
    prout(a, 0x01, 0x05, KEY_A, 0, 0); /* RESERVE Write Exclusive - Registrants Only */
    assert_lu_good();
    static uint8_t image[LU_META_MAX];
    size_t len = lu_meta_encode(&f->lu, image, sizeof(image));

    struct partner_lu p;
    partner_open(&p);
    assert_int_equal(lu_meta_apply(&p.lu, image, len), 0);

    struct lu_nexus *a2 = lu_nexus_get(&p.lu, NAME_A, ISID_A, 2);
    struct lu_nexus *b2 = lu_nexus_get(&p.lu, NAME_B, ISID_B, 2);
    struct lu_nexus *b1 = lu_nexus_get(&p.lu, NAME_B, ISID_B, 1);
    assert_true(partner_admits(&p.lu, a2, WRITE_10));
    assert_false(partner_admits(&p.lu, b2, WRITE_10));
    assert_true(partner_admits(&p.lu, b2, READ_10));
    assert_true(partner_admits(&p.lu, b1, WRITE_10));

    lu_nexus_put(&p.lu, a2);
    lu_nexus_put(&p.lu, b2);
    lu_nexus_put(&p.lu, b1);
    lu_destroy(&p.lu);
    char cmd[96];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", p.dir);
    assert_int_equal(system(cmd), 0);
}

static void without_aptpl_nothing_survives(void **state)
{
    (void)state;
    struct lu_nexus *a = nexus_a();
    prout(a, 0x00, 0, 0, KEY_A, 0x00);
    prout(a, 0x01, 0x01, KEY_A, 0, 0);
    assert_lu_good();

    lu_destroy(&f->lu);
    info_defaults(&f->info);
    assert_int_equal(lu_init(&f->lu, &f->info, f->base), 0);
    assert_false(atomic_load(&f->lu.reserved));
    read_keys(nexus_a());
    assert_int_equal(f->plan.data_len, 8);
    assert_int_equal(twl_get_be32(f->buf + 4), 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(range_disjoint_granted_at_once),
        T(nexus_goes_with_its_last_user),
        T(range_zero_blocks_is_one_block),
        T(range_overlapping_granted_in_order),
        T(range_waiter_behind_waiter_keeps_its_turn),
        T(range_one_unlock_grants_every_fitting_waiter),
        T(nexus_get_returns_the_same_record),
        T(first_command_sees_power_on),
        T(inquiry_passes_request_sense_takes),
        T(unit_attentions_queue_in_order),
        T(unit_attention_queue_is_bounded),
        T(lu_reset_reaches_every_nexus),
        T(ua_all_except_the_sender),
        T(persistent_reservation_write_exclusive),
        T(unit_attention_before_reservation_conflict),
        T(preempt_tells_the_preempted),
        T(reserve6_and_release6),
        T(nexus_lost_releases_reserve6),
        T(lu_reset_releases_reserve6_keeps_persistent),
        T(mode_select_changes_write_cache),
        T(mode_select_saved_survives_lu_init),
        T(aptpl_registration_survives_lu_init),
        T(aptpl_reservation_survives_lu_init),
        T(metadata_image_makes_the_partner_equal),
        T(registrations_hold_through_the_partner_port),
        T(without_aptpl_nothing_survives),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
