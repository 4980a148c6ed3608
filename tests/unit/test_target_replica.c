/*
 * The pair's write policy when the partner is not there (DESIGN.md section 5), through a real
 * server configured as one half of a pair whose partner never answers (on a host without an
 * RDMA device the backplane cannot even start a connection, which is the same to a write):
 * "available" completes writes GOOD (the pair runs degraded), "strict" fails them, and reads
 * are served either way. Also ALUA across the pair as one node presents it (a target port
 * group per node, the serving one active, the other standby), and takeover and giveback
 * refused while the partner is away.
 */
#include <errno.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "admin.h"
#include "iscsi_session.h"
#include "target.h"
#include "twl_common.h"

struct fixture {
    char dir[64];
    struct tgt_config cfg;
    struct tgt_server *srv;
    pthread_t runner;
    struct iscsi_context *iscsi;
    int lun;
};

/* more keys for the next fixture's pair section */
static const char *extra_pair_keys = "";

static void *run_server(void *arg)
{
    tgt_server_run(arg);
    return NULL;
}

/* Node `node` of the pair (a or b; LUN 0 is a's) whose partner never answers; alone_after_ms
 * as in pair.alone_after_ms. */
static struct fixture *start_node(const char *node, const char *policy, unsigned alone_after_ms)
{
    struct fixture *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/twl-replica.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char text[1024], err[512];
    snprintf(text, sizeof(text),
             "node = { name = \"%s\"; state_dir = \"%s\"; };\n"
             "iscsi = { listen = \"127.0.0.1:3260\"; threads = 1; };\n"
             "pair = { partner = \"%s\"; listen = \"127.0.0.1:7491\"; partner_address = "
             "\"127.0.0.1:7492\"; policy = \"%s\"; alone_after_ms = %u; %s };\n"
             "targets = ( { iqn = \"iqn.2026-11.io.twinlun:pair\"; luns = ( { id = 0; path = "
             "\"lun0.img\"; size = \"16M\"; create = true; owner = \"a\"; } ); } );\n",
             node, f->dir, strcmp(node, "a") == 0 ? "b" : "a", policy, alone_after_ms,
             extra_pair_keys);
    assert_int_equal(tgt_config_load_string(text, "test", &f->cfg, err, sizeof(err)), 0);
    f->cfg.listen_port = 0;
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_create(&f->runner, NULL, run_server, f->srv);
    char url[256];
    snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:pair/0",
             tgt_server_port(f->srv));
    if (alone_after_ms == 0 && strcmp(node, "a") == 0) {
        f->iscsi = test_session_open(url, "iqn.2026-11.io.twinlun:replica-test", &f->lun);
    } else {
        /* a login without libiscsi's TEST UNIT READY, which a held or standby LUN refuses */
        f->iscsi = iscsi_create_context("iqn.2026-11.io.twinlun:replica-test");
        assert_non_null(f->iscsi);
        struct iscsi_url *u = iscsi_parse_full_url(f->iscsi, url);
        assert_non_null(u);
        iscsi_set_session_type(f->iscsi, ISCSI_SESSION_NORMAL);
        iscsi_set_targetname(f->iscsi, u->target);
        assert_int_equal(iscsi_connect_sync(f->iscsi, u->portal), 0);
        assert_int_equal(iscsi_login_sync(f->iscsi), 0);
        f->lun = u->lun;
        iscsi_destroy_url(u);
    }
    assert_non_null(f->iscsi);
    return f;
}

static struct fixture *start_held(const char *policy, unsigned alone_after_ms)
{
    return start_node("a", policy, alone_after_ms);
}

static struct fixture *start(const char *policy)
{
    return start_held(policy, 0);
}

static void stop(struct fixture *f)
{
    iscsi_logout_sync(f->iscsi);
    iscsi_destroy_context(f->iscsi);
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    tgt_config_free(&f->cfg);
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
}

static int write_status(struct fixture *f, uint8_t fill, int *sense_key)
{
    uint8_t block[4096];
    memset(block, fill, sizeof(block));
    struct scsi_task *t =
        iscsi_write16_sync(f->iscsi, f->lun, 8, block, sizeof(block), 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    int status = t->status;
    *sense_key = t->sense.key;
    scsi_free_scsi_task(t);
    return status;
}

static void read_back(struct fixture *f, uint8_t fill)
{
    struct scsi_task *t = iscsi_read16_sync(f->iscsi, f->lun, 8, 4096, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    for (size_t i = 0; i < 4096; i++)
        assert_int_equal(t->datain.data[i], fill);
    scsi_free_scsi_task(t);
}

static void available_completes_writes_without_the_partner(void **state)
{
    (void)state;
    struct fixture *f = start("available");
    int key;
    assert_int_equal(write_status(f, 0x5a, &key), SCSI_STATUS_GOOD);
    read_back(f, 0x5a);
    stop(f);
}

static void strict_fails_writes_without_the_partner(void **state)
{
    (void)state;
    struct fixture *f = start("strict");
    int key;
    assert_int_equal(write_status(f, 0xa5, &key), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_MEDIUM_ERROR);
    /* reads never need the partner */
    struct scsi_task *t = iscsi_read16_sync(f->iscsi, f->lun, 8, 4096, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    stop(f);
}

/* A starting owner holds its LUN until it has compared copies with the partner: initiators
 * are told to retry (ALUA transitioning); without a partner, it serves alone later. */
static void owner_holds_its_lun_until_served_alone(void **state)
{
    (void)state;
    struct fixture *f = start_held("available", 1500);
    struct scsi_task *t = iscsi_read16_sync(f->iscsi, f->lun, 8, 4096, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    if (t->status == SCSI_STATUS_CHECK_CONDITION && t->sense.key == SCSI_SENSE_UNIT_ATTENTION) {
        scsi_free_scsi_task(t); /* the new nexus's power-on attention comes first */
        t = iscsi_read16_sync(f->iscsi, f->lun, 8, 4096, 512, 0, 0, 0, 0, 0);
        assert_non_null(t);
    }
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(t->sense.key, SCSI_SENSE_NOT_READY);
    assert_int_equal(t->sense.ascq, 0x040a); /* asymmetric access state transition */
    scsi_free_scsi_task(t);
    int key, status = SCSI_STATUS_CHECK_CONDITION;
    for (int i = 0; i < 100 && status != SCSI_STATUS_GOOD; i++) {
        usleep(100000);
        status = write_status(f, 0x3c, &key);
        /* while held, only retryable refusals (and the attention of the state's change) */
        if (status != SCSI_STATUS_GOOD && key != SCSI_SENSE_UNIT_ATTENTION)
            assert_int_equal(key, SCSI_SENSE_NOT_READY);
    }
    assert_int_equal(status, SCSI_STATUS_GOOD);
    read_back(f, 0x3c);
    stop(f);
}

/* REPORT TARGET PORT GROUPS (with a UNIT ATTENTION retried): each group's id, state byte
 * and relative port, in the order reported. */
static void report_groups(struct fixture *f, uint16_t id[2], uint8_t state[2], uint16_t port[2])
{
    struct scsi_task *t = NULL;
    for (int i = 0; i < 3; i++) {
        unsigned char cdb[12] = {0xa3, 0x0a, 0, 0, 0, 0, 0, 0, 0x01, 0, 0, 0};
        t = scsi_create_task(sizeof(cdb), cdb, SCSI_XFER_READ, 256);
        assert_non_null(t);
        assert_non_null(iscsi_scsi_command_sync(f->iscsi, f->lun, t, NULL));
        if (t->status == SCSI_STATUS_GOOD)
            break;
        assert_int_equal(t->sense.key, SCSI_SENSE_UNIT_ATTENTION);
        scsi_free_scsi_task(t);
        t = NULL;
    }
    assert_non_null(t);
    assert_int_equal(t->datain.size, 4 + 2 * 12);
    const uint8_t *d = t->datain.data;
    assert_int_equal(twl_get_be32(d), 2 * 12);
    for (int g = 0; g < 2; g++) {
        const uint8_t *p = d + 4 + 12 * g;
        state[g] = p[0];
        id[g] = twl_get_be16(p + 2);
        assert_int_equal(p[7], 1); /* one port per group */
        port[g] = twl_get_be16(p + 10);
    }
    scsi_free_scsi_task(t);
}

/* Node a (name sorts first) is group 1 with relative port 1 and serves its LUN; node b's
 * group 2 stands by. */
static void owner_reports_both_groups(void **state)
{
    (void)state;
    struct fixture *f = start("available");
    uint16_t id[2], port[2];
    uint8_t st[2];
    report_groups(f, id, st, port);
    assert_int_equal(id[0], 1);
    assert_int_equal(port[0], 1);
    assert_int_equal(st[0], 0x00); /* active/optimized, not preferred */
    assert_int_equal(id[1], 2);
    assert_int_equal(port[1], 2);
    assert_int_equal(st[1], 0x02); /* standby */
    stop(f);
}

/* Node b presents the same two groups, its own (2) standby for a's LUN: media access is
 * refused with the standby sense, and a takeover needs the partner. */
static void standby_node_reports_partner_active(void **state)
{
    (void)state;
    struct fixture *f = start_node("b", "available", 0);
    uint16_t id[2], port[2];
    uint8_t st[2];
    report_groups(f, id, st, port);
    assert_int_equal(id[0], 2); /* this port's group first */
    assert_int_equal(st[0], 0x02);
    assert_int_equal(id[1], 1);
    assert_int_equal(port[1], 1);
    assert_int_equal(st[1], 0x00);
    int key;
    assert_int_equal(write_status(f, 0x11, &key), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_NOT_READY);

    char out[2048];
    assert_int_equal(admin_handle(f->srv, "takeover", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "LUN 0: not taken over: a is not connected"));
    assert_non_null(strstr(out, "promote"));
    assert_int_equal(admin_handle(f->srv, "giveback 0", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "LUN 0: not handed over: b does not serve it"));
    stop(f);
}

/* The owner refuses to hand its LUN to an absent partner and goes on serving it. */
static void moves_refused_while_partner_away(void **state)
{
    (void)state;
    struct fixture *f = start("available");
    char out[2048];
    assert_int_equal(admin_handle(f->srv, "giveback all", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "LUN 0: not handed over to b: the partner is not connected"));
    /* without a LUN, giveback hands over the partner's own LUNs: there are none here */
    assert_int_equal(admin_handle(f->srv, "giveback", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "no LUN to move"));
    assert_int_equal(admin_handle(f->srv, "takeover 0", out, sizeof(out)), 0);
    assert_non_null(strstr(out, "served here already"));
    assert_int_equal(admin_handle(f->srv, "takeover 9", out, sizeof(out)), 1);
    assert_non_null(strstr(out, "no LUN 9 here"));
    assert_int_equal(admin_handle(f->srv, "giveback 0 1", out, sizeof(out)), 2);
    assert_int_equal(admin_handle(f->srv, "takeover x --force", out, sizeof(out)), 2);
    /* still served: the refused giveback left nothing transitioning */
    int key;
    assert_int_equal(write_status(f, 0x77, &key), SCSI_STATUS_GOOD);
    read_back(f, 0x77);
    stop(f);
}

/* SET TARGET PORT GROUPS asking group `active` to be active/optimized: the status, and the
 * sense key and ASC/ASCQ when not GOOD. */
static int set_groups(struct fixture *f, uint16_t active, int *key, int *ascq)
{
    unsigned char cdb[12] = {0xa4, 0x0a, 0, 0, 0, 0, 0, 0, 0, 8, 0, 0};
    unsigned char list[8] = {
        0, 0, 0, 0, 0x00, 0, (unsigned char)(active >> 8), (unsigned char)active};
    struct scsi_task *t = NULL;
    for (int i = 0; i < 3 && (t == NULL || t->sense.key == SCSI_SENSE_UNIT_ATTENTION); i++) {
        if (t)
            scsi_free_scsi_task(t);
        t = scsi_create_task(sizeof(cdb), cdb, SCSI_XFER_WRITE, sizeof(list));
        assert_non_null(t);
        struct iscsi_data d = {.size = sizeof(list), .data = list};
        assert_non_null(iscsi_scsi_command_sync(f->iscsi, f->lun, t, &d));
    }
    int status = t->status;
    *key = t->sense.key;
    *ascq = t->sense.ascq;
    scsi_free_scsi_task(t);
    return status;
}

/* Explicit ALUA: asking for the state the groups are in is done at once; asking for a move
 * needs the partner, and fails as SPC-4 says when it cannot happen. */
static void explicit_alua_needs_the_partner(void **state)
{
    (void)state;
    extra_pair_keys = "explicit_alua = true;";
    struct fixture *f = start("available");
    int key, ascq;
    assert_int_equal(set_groups(f, 1, &key, &ascq), SCSI_STATUS_GOOD);
    assert_int_equal(set_groups(f, 2, &key, &ascq), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_HARDWARE_ERROR);
    assert_int_equal(ascq, 0x670a); /* SET TARGET PORT GROUPS command failed */
    assert_int_equal(set_groups(f, 3, &key, &ascq), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_ILLEGAL_REQUEST);
    assert_int_equal(ascq, 0x2600);
    assert_int_equal(write_status(f, 0x42, &key), SCSI_STATUS_GOOD); /* still served here */
    stop(f);

    f = start_node("b", "available", 0);
    assert_int_equal(set_groups(f, 1, &key, &ascq), SCSI_STATUS_GOOD); /* a serves: as asked */
    assert_int_equal(set_groups(f, 2, &key, &ascq), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_HARDWARE_ERROR);
    stop(f);

    /* by default initiators cannot move LUs: the command does not exist */
    extra_pair_keys = "";
    f = start("available");
    assert_int_equal(set_groups(f, 2, &key, &ascq), SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(key, SCSI_SENSE_ILLEGAL_REQUEST);
    assert_int_equal(ascq, 0x2000);
    stop(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(owner_holds_its_lun_until_served_alone),
        cmocka_unit_test(available_completes_writes_without_the_partner),
        cmocka_unit_test(strict_fails_writes_without_the_partner),
        cmocka_unit_test(owner_reports_both_groups),
        cmocka_unit_test(standby_node_reports_partner_active),
        cmocka_unit_test(moves_refused_while_partner_away),
        cmocka_unit_test(explicit_alua_needs_the_partner),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
