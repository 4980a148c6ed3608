/*
 * The replication seam of the write path (DESIGN.md section 4): a real server and a real
 * initiator (libiscsi), with a stand-in replicator that completes from its own thread after a
 * delay. A WRITE must not complete before the replica does, must carry the exact blocks, and
 * must fail when the replica fails; reads are never replicated.
 */
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <iscsi/iscsi.h>
#include <iscsi/scsi-lowlevel.h>

#include "iscsi_session.h"
#include "target.h"
#include "twl_common.h"

#define REPLICA_DELAY_MS 150

struct replica_log {
    pthread_mutex_t lock;
    int calls;
    enum tgt_write_kind kind;
    uint64_t lba;
    uint32_t blocks;
    bool data_null;
    size_t extent_count;
    struct tgt_extent extents[4];
    uint8_t data[8192];
    int fail_with; /* error the replica reports */
    _Atomic uint64_t done_ns;
};

struct pending {
    tgt_write_done_fn done;
    void *cookie;
    int err;
    struct replica_log *log;
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void *finish_later(void *arg)
{
    struct pending *p = arg;
    usleep(REPLICA_DELAY_MS * 1000);
    atomic_store(&p->log->done_ns, now_ns());
    p->done(p->cookie, p->err);
    free(p);
    return NULL;
}

static int replicate(void *ctx, const struct tgt_write *w, tgt_write_done_fn done, void *cookie)
{
    struct replica_log *log = ctx;
    pthread_mutex_lock(&log->lock);
    log->calls++;
    log->kind = w->kind;
    log->lba = w->lba;
    log->blocks = w->blocks;
    log->data_null = w->data == NULL;
    size_t bytes = w->kind == TGT_WRITE_SAME ? w->block_size : (size_t)w->blocks * w->block_size;
    if (w->data)
        memcpy(log->data, w->data, bytes < sizeof(log->data) ? bytes : sizeof(log->data));
    log->extent_count = w->extent_count;
    for (size_t i = 0; i < w->extent_count && i < 4; i++)
        log->extents[i] = w->extents[i];
    pthread_mutex_unlock(&log->lock);
    struct pending *p = malloc(sizeof(*p));
    p->done = done;
    p->cookie = cookie;
    p->err = log->fail_with;
    p->log = log;
    pthread_t tid;
    pthread_create(&tid, NULL, finish_later, p);
    pthread_detach(tid);
    return 0;
}

struct fixture {
    char dir[64];
    struct tgt_config cfg;
    struct tgt_server *srv;
    pthread_t runner;
    struct replica_log log;
    struct iscsi_context *iscsi;
    int lun;
};

static void *run_server(void *arg)
{
    tgt_server_run(arg);
    return NULL;
}

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/twl-seam.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    char err[512];
    assert_int_equal(tgt_config_load_default(f->dir, &f->cfg, err, sizeof(err)), 0);
    f->cfg.listen_port = 0;
    f->cfg.metrics_enabled = false; /* the default's 9470 would clash between tests */
    f->cfg.threads = 2;
    assert_int_equal(tgt_server_create(&f->cfg, &f->srv), 0);
    pthread_mutex_init(&f->log.lock, NULL);
    struct tgt_replicator rep = {.ctx = &f->log, .replicate = replicate};
    tgt_server_set_replicator(f->srv, &rep);
    pthread_create(&f->runner, NULL, run_server, f->srv);

    char url[256];
    snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:default/0",
             tgt_server_port(f->srv));
    f->iscsi = test_session_open(url, "iqn.2026-11.io.twinlun:seam-test", &f->lun);
    assert_non_null(f->iscsi);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    iscsi_logout_sync(f->iscsi);
    iscsi_destroy_context(f->iscsi);
    tgt_server_stop(f->srv);
    pthread_join(f->runner, NULL);
    tgt_server_destroy(f->srv);
    tgt_config_free(&f->cfg);
    char path[128];
    snprintf(path, sizeof(path), "%s/lun0.img", f->dir);
    unlink(path);
    rmdir(f->dir);
    pthread_mutex_destroy(&f->log.lock);
    free(f);
    return 0;
}

static void write_completes_after_replica(void **state)
{
    struct fixture *f = *state;
    uint8_t buf[4096];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 31 + 7);
    uint64_t start = now_ns();
    struct scsi_task *t =
        iscsi_write10_sync(f->iscsi, f->lun, 1000, buf, sizeof(buf), 512, 0, 0, 0, 0, 0);
    uint64_t end = now_ns();
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    uint64_t done = atomic_load(&f->log.done_ns);
    assert_int_not_equal(done, 0);
    /* the response came after the replica reported done, i.e. at least the delay later */
    assert_true(done <= end);
    assert_true(end - start >= REPLICA_DELAY_MS * 1000000ull);
    assert_int_equal(f->log.calls, 1);
    assert_int_equal(f->log.lba, 1000);
    assert_int_equal(f->log.blocks, 8);
    assert_memory_equal(f->log.data, buf, sizeof(buf));

    /* the local copy has the same bytes */
    t = iscsi_read10_sync(f->iscsi, f->lun, 1000, sizeof(buf), 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    assert_int_equal(t->datain.size, sizeof(buf));
    assert_memory_equal(t->datain.data, buf, sizeof(buf));
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 1); /* reads are not replicated */
}

static void failed_replica_fails_the_write(void **state)
{
    struct fixture *f = *state;
    f->log.fail_with = -EIO;
    uint8_t buf[512] = {1, 2, 3};
    struct scsi_task *t =
        iscsi_write10_sync(f->iscsi, f->lun, 7, buf, sizeof(buf), 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(t->sense.key, SCSI_SENSE_MEDIUM_ERROR);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 1);
}

/* Changes made by multi-step commands reach the replicator too, described by kind. */
static void multi_step_changes_are_replicated(void **state)
{
    struct fixture *f = *state;
    uint8_t blocks[1024];
    memset(blocks, 'A', 512);
    struct scsi_task *t = iscsi_write10_sync(f->iscsi, f->lun, 40, blocks, 512, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);

    /* COMPARE AND WRITE: the write half, as data */
    memset(blocks + 512, 'B', 512);
    t = iscsi_compareandwrite_sync(f->iscsi, f->lun, 40, blocks, 1024, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 2);
    assert_int_equal(f->log.kind, TGT_WRITE_DATA);
    assert_int_equal(f->log.lba, 40);
    assert_int_equal(f->log.blocks, 1);
    assert_memory_equal(f->log.data, blocks + 512, 512);

    /* a miscompare changes nothing and replicates nothing */
    t = iscsi_compareandwrite_sync(f->iscsi, f->lun, 40, blocks, 1024, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(t->sense.key, SCSI_SENSE_MISCOMPARE);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 2);

    /* WRITE SAME: one block and the count */
    memset(blocks, 'C', 512);
    t = iscsi_writesame16_sync(f->iscsi, f->lun, 64, blocks, 512, 16, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 3);
    assert_int_equal(f->log.kind, TGT_WRITE_SAME);
    assert_int_equal(f->log.lba, 64);
    assert_int_equal(f->log.blocks, 16);
    assert_false(f->log.data_null);
    assert_memory_equal(f->log.data, blocks, 512);

    /* UNMAP: the extents */
    struct unmap_list list[2] = {{.lba = 64, .num = 8}, {.lba = 200, .num = 24}};
    t = iscsi_unmap_sync(f->iscsi, f->lun, 0, 0, list, 2);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, 4);
    assert_int_equal(f->log.kind, TGT_WRITE_UNMAP);
    assert_int_equal(f->log.extent_count, 2);
    assert_int_equal(f->log.extents[0].lba, 64);
    assert_int_equal(f->log.extents[0].blocks, 8);
    assert_int_equal(f->log.extents[1].lba, 200);
    assert_int_equal(f->log.extents[1].blocks, 24);

    /* a failed replica fails the command */
    f->log.fail_with = -EIO;
    t = iscsi_writesame16_sync(f->iscsi, f->lun, 64, blocks, 512, 4, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(t->sense.key, SCSI_SENSE_MEDIUM_ERROR);
    scsi_free_scsi_task(t);
}

/* EXTENDED COPY hands every chunk it writes to the replicator before going on: a copy of
 * 5000 blocks (three chunks of at most 1 MiB) arrives as DATA writes covering exactly the
 * destination, the last one with the copied bytes. */
static void extended_copy_is_replicated_chunk_by_chunk(void **state)
{
    struct fixture *f = *state;
    enum { BLOCKS = 5000, SRC = 0, DST = 100000 };
    uint8_t *data = malloc(BLOCKS * 512);
    assert_non_null(data);
    for (size_t i = 0; i < BLOCKS * 512; i++)
        data[i] = (uint8_t)(i / 512 * 7 + i % 13);
    struct scsi_task *t =
        iscsi_write16_sync(f->iscsi, f->lun, SRC, data, BLOCKS * 512, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    int before = f->log.calls;

    /* the LU's NAA designator, for the identification target descriptor */
    t = iscsi_inquiry_sync(f->iscsi, f->lun, 1, 0x83, 255);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    assert_true(t->datain.size >= 24);
    uint8_t naa[20];
    memcpy(naa, t->datain.data + 4, 20); /* first designation descriptor: NAA, 16 bytes */
    scsi_free_scsi_task(t);

    uint8_t list[16 + 32 + 28] = {0};
    twl_put_be16(list + 2, 32); /* target descriptor list length */
    twl_put_be32(list + 8, 28); /* segment descriptor list length */
    list[1] = 3 << 3;           /* LIST ID USAGE 11b: no list identifier */
    uint8_t *td = list + 16;
    td[0] = 0xe4; /* identification descriptor */
    memcpy(td + 4, naa, 20);
    twl_put_be24(td + 29, 512); /* disk block length */
    uint8_t *sd = list + 48;
    sd[0] = 0x02; /* block to block */
    twl_put_be16(sd + 2, 0x18);
    twl_put_be16(sd + 10, BLOCKS); /* both ends are target descriptor 0 */
    twl_put_be64(sd + 12, SRC);
    twl_put_be64(sd + 20, DST);
    struct iscsi_data param = {.size = sizeof(list), .data = list};
    t = iscsi_extended_copy_sync(f->iscsi, f->lun, &param);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);

    assert_int_equal(f->log.calls - before, 3);
    assert_int_equal(f->log.kind, TGT_WRITE_DATA);
    assert_int_equal(f->log.lba + f->log.blocks, DST + BLOCKS);
    assert_memory_equal(f->log.data, data + (f->log.lba - DST) * 512,
                        f->log.blocks * 512 < sizeof(f->log.data) ? f->log.blocks * 512
                                                                  : sizeof(f->log.data));
    t = iscsi_read16_sync(f->iscsi, f->lun, DST, BLOCKS * 512, 512, 0, 0, 0, 0, 0);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    assert_memory_equal(t->datain.data, data, BLOCKS * 512);
    scsi_free_scsi_task(t);
    free(data);
}

struct async_result {
    bool done;
    int status;
};

static void async_done(struct iscsi_context *iscsi, int status, void *command_data, void *priv)
{
    (void)iscsi;
    (void)status;
    struct async_result *r = priv;
    struct scsi_task *t = command_data;
    r->done = true;
    r->status = t->status;
    scsi_free_scsi_task(t);
}

static void serve_until(struct iscsi_context *iscsi, struct async_result *r)
{
    for (int i = 0; i < 500 && !r->done; i++) {
        struct pollfd pfd = {.fd = iscsi_get_fd(iscsi), .events = iscsi_which_events(iscsi)};
        if (poll(&pfd, 1, 10) > 0)
            assert_int_equal(iscsi_service(iscsi, pfd.revents), 0);
    }
    assert_true(r->done);
}

static struct iscsi_context *second_session(struct fixture *f)
{
    char url[256];
    snprintf(url, sizeof(url), "iscsi://127.0.0.1:%u/iqn.2026-11.io.twinlun:default/0",
             tgt_server_port(f->srv));
    struct iscsi_context *b =
        test_session_open(url, "iqn.2026-11.io.twinlun:other-node", &(int){0});
    assert_non_null(b);
    return b;
}

/* Task management from another I_T nexus reaches this session's tasks (SAM-5: the LU's task
 * set is shared): a write still waiting for its replica when the other node resets the LU, or
 * preempts-and-aborts this node's registration, ends with TASK ABORTED (TAS 1), not silence. */
static void other_nexus_task_management_aborts_with_task_aborted(void **state)
{
    struct fixture *f = *state;
    struct iscsi_context *b = second_session(f);
    uint8_t block[512] = {7};

    struct async_result r = {0};
    assert_non_null(
        iscsi_write10_task(f->iscsi, f->lun, 9, block, 512, 512, 0, 0, 0, 0, 0, async_done, &r));
    /* send it; the replica holds it for REPLICA_DELAY_MS */
    for (int i = 0; i < 5; i++)
        iscsi_service(f->iscsi, POLLOUT);
    usleep(20000);
    assert_int_equal(iscsi_task_mgmt_lun_reset_sync(b, f->lun), 0);
    serve_until(f->iscsi, &r);
    assert_int_equal(r.status, SCSI_STATUS_TASK_ABORTED);

    /* PREEMPT AND ABORT: b preempts a's key; a's pending write is aborted too */
    struct scsi_persistent_reserve_out_basic pa = {.service_action_reservation_key = 0xa};
    struct scsi_persistent_reserve_out_basic pb = {.service_action_reservation_key = 0xb};
    struct scsi_task *t;
    /* clear the reset's unit attentions first */
    for (int i = 0; i < 2; i++) {
        t = iscsi_testunitready_sync(i ? b : f->iscsi, f->lun);
        scsi_free_scsi_task(t);
    }
    t = iscsi_persistent_reserve_out_sync(f->iscsi, f->lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0,
                                          &pa);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    t = iscsi_persistent_reserve_out_sync(b, f->lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, &pb);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    memset(&r, 0, sizeof(r));
    assert_non_null(
        iscsi_write10_task(f->iscsi, f->lun, 9, block, 512, 512, 0, 0, 0, 0, 0, async_done, &r));
    for (int i = 0; i < 5; i++)
        iscsi_service(f->iscsi, POLLOUT);
    usleep(20000);
    struct scsi_persistent_reserve_out_basic preempt = {.reservation_key = 0xb,
                                                        .service_action_reservation_key = 0xa};
    t = iscsi_persistent_reserve_out_sync(b, f->lun, SCSI_PERSISTENT_RESERVE_PREEMPT_AND_ABORT, 0,
                                          SCSI_PERSISTENT_RESERVE_TYPE_EXCLUSIVE_ACCESS, &preempt);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    serve_until(f->iscsi, &r);
    assert_int_equal(r.status, SCSI_STATUS_TASK_ABORTED);
    /* and a learns why: its registration was preempted */
    t = iscsi_testunitready_sync(f->iscsi, f->lun);
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(t->sense.key, SCSI_SENSE_UNIT_ATTENTION);
    assert_int_equal(t->sense.ascq, 0x2a05); /* REGISTRATIONS PREEMPTED */
    scsi_free_scsi_task(t);
    t = iscsi_persistent_reserve_out_sync(b, f->lun, SCSI_PERSISTENT_RESERVE_CLEAR, 0, 0, &pb);
    scsi_free_scsi_task(t);
    iscsi_logout_sync(b);
    iscsi_destroy_context(b);
}

/* A reservation change reaches the partner (as the LU's metadata image) before the command
 * completes; reading reservations does not. */
static void reservation_changes_are_replicated(void **state)
{
    struct fixture *f = *state;
    struct scsi_persistent_reserve_out_basic p = {.service_action_reservation_key = 0x77};
    int before = f->log.calls;
    struct scsi_task *t = iscsi_persistent_reserve_out_sync(
        f->iscsi, f->lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0, &p);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, before + 1);
    assert_int_equal(f->log.kind, TGT_WRITE_META);
    assert_false(f->log.data_null);
    t = iscsi_persistent_reserve_in_sync(f->iscsi, f->lun, SCSI_PERSISTENT_RESERVE_READ_KEYS, 512);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_GOOD);
    scsi_free_scsi_task(t);
    assert_int_equal(f->log.calls, before + 1);
    /* a failed replica fails the change */
    f->log.fail_with = -EIO;
    p.reservation_key = 0x77;
    p.service_action_reservation_key = 0;
    t = iscsi_persistent_reserve_out_sync(f->iscsi, f->lun, SCSI_PERSISTENT_RESERVE_REGISTER, 0, 0,
                                          &p);
    assert_non_null(t);
    assert_int_equal(t->status, SCSI_STATUS_CHECK_CONDITION);
    scsi_free_scsi_task(t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(write_completes_after_replica, setup, teardown),
        cmocka_unit_test_setup_teardown(failed_replica_fails_the_write, setup, teardown),
        cmocka_unit_test_setup_teardown(multi_step_changes_are_replicated, setup, teardown),
        cmocka_unit_test_setup_teardown(extended_copy_is_replicated_chunk_by_chunk, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(other_nexus_task_management_aborts_with_task_aborted, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(reservation_changes_are_replicated, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
