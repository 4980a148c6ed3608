/*
 * COMPARE AND WRITE atomicity through the whole target: a real server with two network
 * threads and its worker threads, several initiators (libiscsi, one session each, so their
 * commands run on different threads at once) incrementing one counter block with COMPARE AND
 * WRITE. Without the LU's range locks two increments can both compare equal and one is lost;
 * with them the final counter equals the number of increments that reported GOOD.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "iscsi_session.h"
#include "lu.h"
#include "target.h"
#include "twl_common.h"

#define BLOCK            512
#define COUNTER_LBA      100
#define CLIENTS          4
#define INCREMENTS       150
#define NEIGHBOUR_LBA    101 /* written plainly all along: must not disturb the counter */
#define NEIGHBOUR_ROUNDS 300

struct fixture {
    char dir[64];
    struct tgt_config cfg;
    struct tgt_server *srv;
    pthread_t runner;
    char url[256];
};

struct client {
    struct fixture *f;
    int index;
    int good;        /* increments that completed GOOD */
    int miscompares; /* lost races, retried */
    int errors;
};

static void *run_server(void *arg)
{
    tgt_server_run(arg);
    return NULL;
}

static struct iscsi_context *connect_client(struct fixture *f, const char *name, int *lun)
{
    return test_session_open(f->url, name, lun);
}

static void counter_block(uint8_t *b, uint64_t value)
{
    memset(b, (int)(value & 0xff), BLOCK);
    twl_put_be64(b, value);
}

static int read_counter(struct iscsi_context *iscsi, int lun, uint8_t *out)
{
    struct scsi_task *t = iscsi_read16_sync(iscsi, lun, COUNTER_LBA, BLOCK, BLOCK, 0, 0, 0, 0, 0);
    if (t == NULL || t->status != SCSI_STATUS_GOOD || t->datain.size != BLOCK) {
        if (t)
            scsi_free_scsi_task(t);
        return -EIO;
    }
    memcpy(out, t->datain.data, BLOCK);
    scsi_free_scsi_task(t);
    return 0;
}

static void *increment(void *arg)
{
    struct client *cl = arg;
    char name[128];
    snprintf(name, sizeof(name), "iqn.2026-11.io.twinlun:caw-client-%d", cl->index);
    int lun;
    struct iscsi_context *iscsi = connect_client(cl->f, name, &lun);
    if (iscsi == NULL) {
        cl->errors++;
        return NULL;
    }
    uint8_t buf[2 * BLOCK];
    while (cl->good < INCREMENTS && cl->errors == 0) {
        if (read_counter(iscsi, lun, buf) != 0) {
            cl->errors++;
            break;
        }
        uint64_t seen = twl_get_be64(buf);
        counter_block(buf + BLOCK, seen + 1);
        struct scsi_task *t = iscsi_compareandwrite_sync(iscsi, lun, COUNTER_LBA, buf, sizeof(buf),
                                                         BLOCK, 0, 0, 0, 0, 0);
        if (t == NULL) {
            cl->errors++;
            break;
        }
        if (t->status == SCSI_STATUS_GOOD)
            cl->good++;
        else if (t->status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_MISCOMPARE)
            cl->miscompares++;
        else
            cl->errors++;
        scsi_free_scsi_task(t);
    }
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    return NULL;
}

static void *write_neighbour(void *arg)
{
    struct client *cl = arg;
    int lun;
    struct iscsi_context *iscsi =
        connect_client(cl->f, "iqn.2026-11.io.twinlun:plain-writer", &lun);
    if (iscsi == NULL) {
        cl->errors++;
        return NULL;
    }
    uint8_t buf[BLOCK];
    for (int i = 0; i < NEIGHBOUR_ROUNDS; i++) {
        memset(buf, 0x40 + (i % 26), sizeof(buf));
        struct scsi_task *t =
            iscsi_write16_sync(iscsi, lun, NEIGHBOUR_LBA, buf, sizeof(buf), BLOCK, 0, 0, 0, 0, 0);
        if (t == NULL || t->status != SCSI_STATUS_GOOD)
            cl->errors++;
        else
            cl->good++;
        if (t)
            scsi_free_scsi_task(t);
    }
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
    return NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/twl-caw.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512];
    assert_int_equal(tgt_config_load_default(f->dir, &f->cfg, err, sizeof(err)), 0);
    f->cfg.listen_port = 0;
    f->cfg.metrics_enabled = false; /* the default's 9470 would clash between tests */
    f->cfg.threads = 2;
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_create(&f->runner, NULL, run_server, f->srv);
    snprintf(f->url, sizeof(f->url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:default/0",
             tgt_server_port(f->srv));
    *state = f;
    return 0;
}

/* Stops the server and starts a new one on the same configuration and state directory, as a
 * daemon restart (or a power cycle after the stores were synced) would. */
static void restart(struct fixture *f)
{
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    f->cfg.listen_port = 0;
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_create(&f->runner, NULL, run_server, f->srv);
    snprintf(f->url, sizeof(f->url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:default/0",
             tgt_server_port(f->srv));
}

/* After a refused start, a server again for teardown to stop. */
static void restart_after_failure(struct fixture *f)
{
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_create(&f->runner, NULL, run_server, f->srv);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    tgt_config_free(&f->cfg);
    char cmd[160];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void compare_and_write_increments_are_never_lost(void **state)
{
    struct fixture *f = *state;
    int lun;
    struct iscsi_context *iscsi = connect_client(f, "iqn.2026-11.io.twinlun:caw-setup", &lun);
    assert_non_null(iscsi);
    uint8_t start[BLOCK];
    counter_block(start, 0);
    struct scsi_task *t =
        iscsi_write16_sync(iscsi, lun, COUNTER_LBA, start, BLOCK, BLOCK, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);

    struct client clients[CLIENTS + 1];
    pthread_t tids[CLIENTS + 1];
    memset(clients, 0, sizeof(clients));
    for (int i = 0; i <= CLIENTS; i++) {
        clients[i].f = f;
        clients[i].index = i;
        pthread_create(&tids[i], NULL, i < CLIENTS ? increment : write_neighbour, &clients[i]);
    }
    int total = 0;
    int races = 0;
    for (int i = 0; i <= CLIENTS; i++) {
        pthread_join(tids[i], NULL);
        assert_int_equal(clients[i].errors, 0);
        if (i < CLIENTS) {
            assert_int_equal(clients[i].good, INCREMENTS);
            total += clients[i].good;
            races += clients[i].miscompares;
        }
    }
    assert_int_equal(clients[CLIENTS].good, NEIGHBOUR_ROUNDS);

    uint8_t end[BLOCK], want[BLOCK];
    assert_int_equal(read_counter(iscsi, lun, end), 0);
    counter_block(want, (uint64_t)total);
    /* every GOOD increment is in the block, and the block is one whole image */
    assert_memory_equal(end, want, BLOCK);
    print_message("%d increments by %d initiators, %d lost compares retried\n", total, CLIENTS,
                  races);
    iscsi_logout_sync(iscsi);
    iscsi_destroy_context(iscsi);
}

static struct scsi_task *tur(struct iscsi_context *iscsi, int lun)
{
    struct scsi_task *t = iscsi_testunitready_sync(iscsi, lun);
    assert_non_null(t);
    return t;
}

/* What the takeover issue relies on: flipping the port group's state is seen by every nexus
 * (a unit attention first), gates medium access with the SPC-4 sense, and shows in REPORT
 * TARGET PORT GROUPS. */
static void alua_state_change_reaches_every_nexus(void **state)
{
    struct fixture *f = *state;
    int lun;
    struct iscsi_context *a = connect_client(f, "iqn.2026-11.io.twinlun:alua-a", &lun);
    struct iscsi_context *b = connect_client(f, "iqn.2026-11.io.twinlun:alua-b", &lun);
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(tgt_server_set_alua_state(f->srv, 2 /* standby */), 0);
    assert_int_equal(tgt_server_set_alua_state(f->srv, 9), -EINVAL);

    struct iscsi_context *both[] = {a, b};
    for (int i = 0; i < 2; i++) {
        struct scsi_task *t = tur(both[i], lun);
        assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
        assert_int_equal(t->sense.key, SCSI_SENSE_UNIT_ATTENTION);
        assert_int_equal(t->sense.ascq, 0x2a06); /* ASYMMETRIC ACCESS STATE CHANGED */
        scsi_free_scsi_task(t);
        /* while the change settles, the refusal says transitioning (held and retried) */
        t = iscsi_read16_sync(both[i], lun, 0, BLOCK, BLOCK, 0, 0, 0, 0, 0);
        assert_non_null(t);
        assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
        assert_int_equal(t->sense.key, SCSI_SENSE_NOT_READY);
        assert_int_equal(t->sense.ascq, 0x040a); /* ASYMMETRIC ACCESS STATE TRANSITION */
        scsi_free_scsi_task(t);
    }
    /* REPORT TARGET PORT GROUPS: MAINTENANCE IN, service action 0x0a */
    struct scsi_task *t = calloc(1, sizeof(*t));
    assert_non_null(t);
    t->cdb[0] = 0xa3;
    t->cdb[1] = 0x0a;
    twl_put_be32(t->cdb + 6, 1024);
    t->cdb_size = 12;
    t->xfer_dir = SCSI_XFER_READ;
    t->expxferlen = 1024;
    assert_non_null(iscsi_scsi_command_sync(a, lun, t, NULL));
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    assert_true(t->datain.size >= 16);
    assert_int_equal(t->datain.data[4] & 0x0f, 2); /* group 1: standby */
    assert_int_equal(twl_get_be16(t->datain.data + 6), 1);
    scsi_free_scsi_task(t);
    /* once it has settled: standby */
    usleep(LU_ALUA_SETTLE_NS / 1000 + 100000);
    for (int i = 0; i < 2; i++) {
        t = iscsi_read16_sync(both[i], lun, 0, BLOCK, BLOCK, 0, 0, 0, 0, 0);
        assert_non_null(t);
        assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
        assert_int_equal(t->sense.key, SCSI_SENSE_NOT_READY);
        assert_int_equal(t->sense.ascq, 0x040b); /* TARGET PORT IN STANDBY STATE */
        scsi_free_scsi_task(t);
    }

    assert_int_equal(tgt_server_set_alua_state(f->srv, 0), 0);
    t = tur(a, lun);
    assert_int_equal(t->sense.ascq, 0x2a06);
    scsi_free_scsi_task(t);
    t = tur(a, lun);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    for (int i = 0; i < 2; i++) {
        iscsi_logout_sync(both[i]);
        iscsi_destroy_context(both[i]);
    }
}

static struct scsi_task *prout(struct iscsi_context *iscsi, int lun, int sa, int type, uint64_t key,
                               uint64_t sa_key, bool aptpl)
{
    struct scsi_persistent_reserve_out_basic p = {
        .reservation_key = key, .service_action_reservation_key = sa_key, .aptpl = aptpl};
    struct scsi_task *t = iscsi_persistent_reserve_out_sync(iscsi, lun, sa, 0, type, &p);
    assert_non_null(t);
    return t;
}

static void expect_status(struct scsi_task *t, int status)
{
    assert_int_equal(t->status, status);
    scsi_free_scsi_task(t);
}

/* Windows failover clustering's pattern: register with APTPL, reserve Write Exclusive -
 * Registrants Only; after a restart the registration, the reservation and its effect on an
 * unregistered initiator are all still there. Without APTPL nothing survives. */
static void aptpl_reservations_survive_a_restart(void **state)
{
    struct fixture *f = *state;
    int lun;
    struct iscsi_context *a = connect_client(f, "iqn.2026-11.io.twinlun:node-a", &lun);
    assert_non_null(a);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xabc, true),
                  SCSI_STATUS_GOOD);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_RESERVE,
                        SCSI_PERSISTENT_RESERVE_TYPE_WRITE_EXCLUSIVE_REGISTRANTS_ONLY, 0xabc, 0,
                        false),
                  SCSI_STATUS_GOOD);
    iscsi_logout_sync(a);
    iscsi_destroy_context(a);

    restart(f);

    struct iscsi_context *b = connect_client(f, "iqn.2026-11.io.twinlun:node-b", &lun);
    assert_non_null(b);
    struct scsi_task *t =
        iscsi_persistent_reserve_in_sync(b, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 1024);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    struct scsi_persistent_reserve_in_read_keys *rk = scsi_datain_unmarshall(t);
    assert_non_null(rk);
    assert_int_equal(rk->num_keys, 1);
    assert_int_equal(rk->keys[0], 0xabc);
    scsi_free_scsi_task(t);
    uint8_t block[BLOCK] = {0};
    /* b is not registered: its writes conflict, its reads do not */
    expect_status(iscsi_write16_sync(b, lun, 0, block, BLOCK, BLOCK, 0, 0, 0, 0, 0),
                  SCSI_STATUS_RESERVATION_CONFLICT);
    expect_status(iscsi_read16_sync(b, lun, 0, BLOCK, BLOCK, 0, 0, 0, 0, 0), SCSI_STATUS_GOOD);

    /* a comes back on a new I_T nexus (libiscsi picks a new ISID), which the old
     * registration does not cover: it must register before it may clear */
    a = connect_client(f, "iqn.2026-11.io.twinlun:node-a", &lun);
    assert_non_null(a);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_CLEAR, 0, 0xabc, 0, false),
                  SCSI_STATUS_RESERVATION_CONFLICT);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xabc, false),
                  SCSI_STATUS_GOOD);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_CLEAR, 0, 0xabc, 0, false),
                  SCSI_STATUS_GOOD);
    expect_status(prout(a, lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, 0xdef, false),
                  SCSI_STATUS_GOOD);
    iscsi_logout_sync(a);
    iscsi_destroy_context(a);
    iscsi_logout_sync(b);
    iscsi_destroy_context(b);

    restart(f);
    b = connect_client(f, "iqn.2026-11.io.twinlun:node-b", &lun);
    assert_non_null(b);
    t = iscsi_persistent_reserve_in_sync(b, lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 1024);
    assert_non_null(t);
    rk = scsi_datain_unmarshall(t);
    assert_non_null(rk);
    assert_int_equal(rk->num_keys, 0);
    scsi_free_scsi_task(t);
    expect_status(iscsi_write16_sync(b, lun, 0, block, BLOCK, BLOCK, 0, 0, 0, 0, 0),
                  SCSI_STATUS_GOOD);
    iscsi_logout_sync(b);
    iscsi_destroy_context(b);
}

/* A damaged reservation file stops the start with the file named, rather than silently
 * dropping reservations a cluster relies on. */
static void corrupt_reservation_file_refuses_to_start(void **state)
{
    struct fixture *f = *state;
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    f->srv = NULL;
    char path[256];
    snprintf(path, sizeof(path), "%s/iqn.2026-11.io.twinlun:default.lun0.pr", f->dir);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs("not a reservation image", fp);
    fclose(fp);
    f->cfg.listen_port = 0;
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), -EINVAL);
    assert_null(f->srv);
    unlink(path);
    restart_after_failure(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(alua_state_change_reaches_every_nexus, setup, teardown),
        cmocka_unit_test_setup_teardown(aptpl_reservations_survive_a_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(corrupt_reservation_file_refuses_to_start, setup, teardown),
        cmocka_unit_test_setup_teardown(compare_and_write_increments_are_never_lost, setup,
                                        teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
