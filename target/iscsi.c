/*
 * The full feature phase (RFC 7143 sections 3-4, 11): SCSI commands with immediate,
 * unsolicited and solicited (R2T) Data-Out, Data-In with status in the last PDU, SCSI Response
 * with sense, NOP both ways, Task Management, Text (SendTargets), Logout, Reject and Async.
 *
 * A task's write data lands straight in its buffer from the socket (see rx_take in server.c);
 * a read's buffer goes to the socket through iovecs: no copies of data on the target.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "bufpool.h"
#include "media.h"
#include "replica.h"
#include "server_internal.h"
#include "throttle.h"

enum task_state {
    TASK_RECEIVING, /* waiting for Data-Out */
    TASK_EXECUTING, /* local I/O (and replica) in flight */
    TASK_DONE,      /* response queued */
};

struct r2t_seq {
    uint32_t ttt;
    uint32_t offset;
    uint32_t len;
};

struct tmf_wait {
    uint32_t itt;
    uint32_t remaining;
    struct conn *conn;
};

struct tgt_task {
    struct conn *conn;
    struct tgt_task *hnext;
    int refs;
    enum task_state state;
    uint32_t itt;
    uint32_t cmdsn;
    uint32_t edtl;
    bool immediate;
    bool counts_slot;
    uint8_t flags;
    uint32_t lun_id;
    struct tgt_lun *lun;
    uint8_t cdb[16];
    struct scsi_plan plan;
    uint8_t *buf;
    uint32_t buf_len;
    uint32_t xfer;        /* bytes the command moves on the medium (or emulated data) */
    uint32_t want;        /* write bytes expected from the initiator: min(edtl, xfer) */
    uint32_t io_bytes;    /* bytes the backing store moves */
    uint32_t next_offset; /* write data received in order so far */
    uint32_t unsol_end;   /* end of immediate + unsolicited data */
    uint32_t unsol_datasn;
    uint32_t r2t_next; /* offset the next R2T asks for */
    uint32_t r2tsn;
    struct r2t_seq r2t[MAX_R2T_TRACKED];
    uint32_t r2t_count;  /* outstanding R2T sequences, oldest first */
    uint32_t r2t_datasn; /* DataSN expected in the oldest sequence */
    uint32_t datain_count;
    bool failed; /* data phase failed: respond with fail_* after data ends */
    uint8_t fail_key;
    uint16_t fail_asc;
    bool aborted;
    bool aborted_by_other; /* task management of another I_T nexus: answer TASK ABORTED */
    bool change_entered;   /* counted in the LUN's changes_active (task_enter_change) */
    struct tmf_wait *tmf;
    int pending; /* local write + replica */
    int first_error;
    struct backing_io io;
    struct remote_done replica; /* carries the replica's completion to this thread */
    int replica_err;
    struct lu_nexus *nexus;  /* the I_T nexus as the LU knows it */
    struct lu_range range;   /* blocks this command changes, while it runs */
    struct remote_done wake; /* admitted / range granted / worker done, back on this thread */
    struct throttle_waiter admission; /* waiting for the throttle's tokens */
    struct tgt_job job;               /* multi-step command on a worker thread */
    struct tgt_extent *extents;       /* UNMAP's, for the replica */
    size_t extent_count;
    bool tracked;          /* the change is in the LUN's log (replicator track) until untracked */
    bool replicated;       /* the partner has the change */
    uint8_t *meta;         /* the LU's metadata image, for the replica */
    struct copy_job *copy; /* EXTENDED COPY */
    uint64_t start_ns;     /* the command's header arrived (its thread's loop clock) */
};

/* One destination LU of an EXTENDED COPY and the span of it the copy writes. */
struct copy_range {
    struct lu_range range;
    struct tgt_task *task;
    struct tgt_lun *lun;
};

/* An EXTENDED COPY in progress: what it copies and the ranges it holds. */
struct copy_job {
    struct xcopy_lu *lus; /* every LU of the target, by index */
    struct xcopy_segment segs[XCOPY_MAX_SEGMENT_DESCRIPTORS];
    int count;
    struct xcopy_list list;
    struct xcopy_progress done;
    struct copy_range ranges[XCOPY_MAX_SEGMENT_DESCRIPTORS]; /* by ascending LU index */
    int range_count;
    int ranges_held;
    bool in_history; /* noted by lu_xcopy_begin, to be finished once */
    /* a replica being waited for on the worker */
    pthread_mutex_t wait_lock;
    pthread_cond_t wait_cond;
    bool replica_back;
    int replica_err;
    bool unreplicated; /* a chunk's replica failed */
};

#define TASK_OF(ptr, member)                                                                       \
    ((struct tgt_task *)((uint8_t *)(ptr)-offsetof(struct tgt_task, member)))

/* ---------------- PDU output ---------------- */

static void fill_sn(struct conn *c, uint8_t *hdr, bool advance_statsn)
{
    twl_put_be32(hdr + 24, advance_statsn ? c->stat_sn++ : c->stat_sn);
    twl_put_be32(hdr + 28, c->win.exp_cmdsn);
    twl_put_be32(hdr + 32, c->win.max_cmdsn);
}

void iscsi_send_pdu(struct conn *c, uint8_t *hdr, uint8_t *data, uint32_t len, uint8_t *owned,
                    struct tgt_task *task)
{
    struct tx_item *it = malloc(sizeof(*it));
    if (it == NULL) {
        free(owned);
        conn_close(c, "out of memory");
        return;
    }
    memset(it, 0, offsetof(struct tx_item, hdr));
    memcpy(it->hdr, hdr, ISCSI_BHS_LEN);
    pdu_set_data_len(it->hdr, len);
    bool full = c->phase == PHASE_FULL;
    uint32_t hlen = ISCSI_BHS_LEN;
    if (full && c->params.header_digest) {
        pdu_digest_put(it->hdr + ISCSI_BHS_LEN, twl_crc32c(it->hdr, ISCSI_BHS_LEN));
        hlen += ISCSI_DIGEST_LEN;
    }
    it->iov[it->iovcnt++] = (struct iovec){it->hdr, hlen};
    if (len) {
        it->iov[it->iovcnt++] = (struct iovec){data, len};
        uint32_t pad = pdu_pad(len);
        uint32_t tl = pad;
        memset(it->trailer, 0, sizeof(it->trailer));
        if (full && c->params.data_digest) {
            pdu_digest_put(it->trailer + pad, pdu_data_digest(data, len));
            tl += ISCSI_DIGEST_LEN;
        }
        if (tl)
            it->iov[it->iovcnt++] = (struct iovec){it->trailer, tl};
    }
    it->owned = owned;
    it->task = task;
    if (task)
        task->refs++;
    conn_queue_tx(c, it);
}

void iscsi_send_reject(struct conn *c, const uint8_t *bhs, uint8_t reason)
{
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    uint8_t *copy = malloc(ISCSI_BHS_LEN);
    if (copy == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    memcpy(copy, bhs, ISCSI_BHS_LEN);
    hdr[0] = ISCSI_OP_REJECT;
    hdr[1] = ISCSI_FLAG_FINAL;
    hdr[2] = reason;
    twl_put_be32(hdr + 16, ISCSI_RSVD_TAG);
    fill_sn(c, hdr, true);
    iscsi_send_pdu(c, hdr, copy, ISCSI_BHS_LEN, copy, NULL);
}

void iscsi_send_async_logout(struct conn *c, uint16_t seconds)
{
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_ASYNC;
    hdr[1] = ISCSI_FLAG_FINAL;
    twl_put_be32(hdr + 16, ISCSI_RSVD_TAG);
    fill_sn(c, hdr, true);
    hdr[36] = 1;                     /* AsyncEvent: target requests logout */
    twl_put_be16(hdr + 42, seconds); /* Parameter3: time to logout */
    iscsi_send_pdu(c, hdr, NULL, 0, NULL, NULL);
}

void iscsi_send_ping(struct conn *c)
{
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_NOP_IN;
    hdr[1] = ISCSI_FLAG_FINAL;
    twl_put_be32(hdr + 16, ISCSI_RSVD_TAG);
    if (++c->next_ttt == ISCSI_RSVD_TAG)
        c->next_ttt = 1;
    c->ping_ttt = c->next_ttt;
    c->ping_sent_ns = c->thr->loop_ns;
    twl_put_be32(hdr + 20, c->ping_ttt);
    fill_sn(c, hdr, false);
    iscsi_send_pdu(c, hdr, NULL, 0, NULL, NULL);
}

/* ---------------- tasks ---------------- */

static struct tgt_task *task_find(struct conn *c, uint32_t itt)
{
    for (struct tgt_task *t = c->tasks[itt % TASK_HASH_SIZE]; t; t = t->hnext)
        if (t->itt == itt)
            return t;
    return NULL;
}

static void task_unhash(struct tgt_task *t)
{
    struct conn *c = t->conn;
    for (struct tgt_task **pp = &c->tasks[t->itt % TASK_HASH_SIZE]; *pp; pp = &(*pp)->hnext) {
        if (*pp == t) {
            *pp = t->hnext;
            return;
        }
    }
}

static void tmf_task_gone(struct tmf_wait *w);

static void task_leave_change(struct tgt_task *t)
{
    if (t->change_entered) {
        t->change_entered = false;
        atomic_fetch_sub(&t->lun->changes_active, 1);
    }
}

void iscsi_task_put(struct tgt_task *t)
{
    if (--t->refs > 0)
        return;
    struct conn *c = t->conn;
    task_unhash(t);
    task_leave_change(t);
    if (t->admission.bytes)
        throttle_release(c->thr->srv->replicator.throttle, t->admission.bytes);
    if (t->counts_slot) {
        /* while writes wait for the throttle, the window holds back what its budget exceeds */
        const struct throttle *thr = c->thr->srv->replicator.throttle;
        uint64_t budget = thr ? throttle_window_budget(thr) : 0;
        uint32_t slots = throttle_window_slots(c->win.size, budget, c->write_mean);
        cmdsn_set_withheld(&c->win, c->win.size - slots);
        cmdsn_complete(&c->win);
    }
    if (t->tmf)
        tmf_task_gone(t->tmf);
    if (--c->task_count == 0 && c->fd < 0)
        c->thr->reap_needed = true; /* the closed connection can go now */
    bufpool_free(c->thr->srv->pool, t->buf);
    free(t->extents);
    free(t->meta);
    if (t->copy) {
        pthread_mutex_destroy(&t->copy->wait_lock);
        pthread_cond_destroy(&t->copy->wait_cond);
        free(t->copy->lus);
        free(t->copy);
    }
    free(t);
}

/* The task will send nothing more: drop the table's reference. */
static void task_finish(struct tgt_task *t)
{
    t->state = TASK_DONE;
    iscsi_task_put(t);
}

/* Gives the task a buffer of len bytes; false (connection closed) when out of memory. */
static bool task_alloc_buf(struct tgt_task *t, uint32_t len)
{
    t->buf = bufpool_alloc(t->conn->thr->srv->pool, len);
    if (t->buf == NULL) {
        conn_close(t->conn, "out of memory");
        return false;
    }
    t->buf_len = len;
    return true;
}

/* ---------------- responses ---------------- */

static void set_residual(uint8_t *hdr, uint32_t edtl, uint32_t moved, uint8_t over, uint8_t under)
{
    if (edtl > moved) {
        hdr[1] |= under;
        twl_put_be32(hdr + 44, edtl - moved);
    } else if (edtl < moved) {
        hdr[1] |= over;
        twl_put_be32(hdr + 44, moved - edtl);
    }
}

/* The LUN's figures (iostat.h) take the command as its status goes out. */
static void task_account(struct tgt_task *t, uint8_t status, uint32_t data_in)
{
    if (t->lun == NULL)
        return;
    enum iostat_op op = IOSTAT_OTHER;
    uint64_t bytes = 0;
    switch (t->plan.action) {
    case SCSI_ACTION_READ:
        op = IOSTAT_READ;
        bytes = data_in;
        break;
    case SCSI_ACTION_WRITE:
    case SCSI_ACTION_COMPARE_AND_WRITE:
    case SCSI_ACTION_ORWRITE:
    case SCSI_ACTION_WRITE_SAME:
        op = IOSTAT_WRITE;
        bytes = t->next_offset;
        break;
    default:
        break;
    }
    uint64_t now = twl_now_ns();
    iostat_record(&t->lun->stats, op, bytes, now > t->start_ns ? now - t->start_ns : 0,
                  status != SCSI_STATUS_GOOD, now);
}

static void send_scsi_response(struct tgt_task *t, uint32_t moved)
{
    struct conn *c = t->conn;
    if (t->aborted_by_other) {
        /* TAS 1 (control mode page): the initiator hears at once instead of timing out */
        t->plan.status = SCSI_STATUS_TASK_ABORTED;
        t->plan.sense_len = 0;
        moved = 0;
    }
    task_account(t, t->plan.status, 0);
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_SCSI_RSP;
    hdr[1] = ISCSI_FLAG_FINAL;
    hdr[2] = 0; /* command completed at target */
    hdr[3] = t->plan.status;
    twl_put_be32(hdr + 16, t->itt);
    twl_put_be32(hdr + 36, t->datain_count + t->r2tsn);
    if (t->plan.status == SCSI_STATUS_GOOD || t->plan.sense_len == 0)
        set_residual(hdr, t->edtl, moved, ISCSI_RSP_OVERFLOW, ISCSI_RSP_UNDERFLOW);
    uint8_t *sense = NULL;
    uint32_t len = 0;
    if (t->plan.sense_len) {
        len = 2u + t->plan.sense_len;
        sense = malloc(len);
        if (sense == NULL) {
            conn_close(c, "out of memory");
            return;
        }
        twl_put_be16(sense, t->plan.sense_len);
        memcpy(sense + 2, t->plan.sense, t->plan.sense_len);
    }
    fill_sn(c, hdr, true);
    iscsi_send_pdu(c, hdr, sense, len, sense, NULL);
}

/* Sends len bytes of t->buf as Data-In, the status riding on the last PDU when it is GOOD. */
static void send_data_in(struct tgt_task *t, uint32_t avail)
{
    struct conn *c = t->conn;
    uint32_t len = avail < t->edtl ? avail : t->edtl;
    if (len == 0 || t->plan.status != SCSI_STATUS_GOOD || t->aborted_by_other) {
        send_scsi_response(t, avail);
        return;
    }
    task_account(t, t->plan.status, len);
    uint32_t seg_max = c->params.max_xmit_dsl;
    uint32_t burst = c->params.max_burst;
    for (uint32_t off = 0; off < len;) {
        uint32_t burst_end = (off / burst + 1) * burst;
        uint32_t seg = len - off;
        if (seg > seg_max)
            seg = seg_max;
        if (off + seg > burst_end)
            seg = burst_end - off;
        bool last = off + seg == len;
        uint8_t hdr[ISCSI_BHS_LEN] = {0};
        hdr[0] = ISCSI_OP_DATA_IN;
        if (last || off + seg == burst_end)
            hdr[1] |= ISCSI_FLAG_FINAL;
        pdu_set_lun(hdr, t->lun_id);
        twl_put_be32(hdr + 16, t->itt);
        twl_put_be32(hdr + 20, ISCSI_RSVD_TAG);
        if (last) {
            hdr[1] |= ISCSI_DATAIN_STATUS;
            hdr[3] = t->plan.status;
            set_residual(hdr, t->edtl, avail, ISCSI_DATAIN_OVERFLOW, ISCSI_DATAIN_UNDERFLOW);
            fill_sn(c, hdr, true);
        } else {
            twl_put_be32(hdr + 28, c->win.exp_cmdsn);
            twl_put_be32(hdr + 32, c->win.max_cmdsn);
        }
        twl_put_be32(hdr + 36, t->datain_count++);
        twl_put_be32(hdr + 40, off);
        iscsi_send_pdu(c, hdr, t->buf + off, seg, NULL, t);
        off += seg;
    }
}

static void complete_with_check(struct tgt_task *t, uint8_t key, uint16_t asc)
{
    scsi_plan_check_condition(&t->plan, key, asc);
    send_scsi_response(t, t->xfer);
    task_finish(t);
}

/* ---------------- media I/O ---------------- */

/* ---- the change in the LUN's log (DESIGN.md sections 4 and 5) ---- */

static const struct tgt_replicator *task_replicator(struct tgt_task *t)
{
    return &t->conn->thr->srv->replicator;
}

/* Before the command changes anything here or on the partner: its blocks (UNMAP's extents,
 * else the plan's range) go into the LUN's log. */
static int task_track(struct tgt_task *t)
{
    const struct tgt_replicator *rep = task_replicator(t);
    if (rep->track == NULL)
        return 0;
    if (t->extents == NULL) {
        int rc = t->plan.blocks ? rep->track(rep->ctx, t->lun_id, t->plan.lba, t->plan.blocks) : 0;
        t->tracked = rc == 0 && t->plan.blocks;
        return rc;
    }
    for (size_t i = 0; i < t->extent_count; i++) {
        int rc = t->extents[i].blocks
                     ? rep->track(rep->ctx, t->lun_id, t->extents[i].lba, t->extents[i].blocks)
                     : 0;
        if (rc) {
            while (i--)
                if (t->extents[i].blocks)
                    rep->untrack(rep->ctx, t->lun_id, t->extents[i].lba, t->extents[i].blocks,
                                 true);
            return rc;
        }
    }
    t->tracked = true;
    return 0;
}

/* The change is over: the log keeps its blocks marked unless the copies are known equal. */
static void task_untrack(struct tgt_task *t, bool changed)
{
    if (!t->tracked)
        return;
    t->tracked = false;
    const struct tgt_replicator *rep = task_replicator(t);
    bool same = t->replicated || !changed;
    if (t->extents == NULL) {
        rep->untrack(rep->ctx, t->lun_id, t->plan.lba, t->plan.blocks, same);
        return;
    }
    for (size_t i = 0; i < t->extent_count; i++)
        if (t->extents[i].blocks)
            rep->untrack(rep->ctx, t->lun_id, t->extents[i].lba, t->extents[i].blocks, same);
}

/* The status table: the replica's outcome as the command sees it. */
static int replica_outcome(const struct tgt_replicator *rep, int err, bool *replicated)
{
    if (err == 0)
        *replicated = true;
    return err && rep->replica_failure_ok ? 0 : err;
}

static void task_io_finished(struct tgt_task *t)
{
    struct conn *c = t->conn;
    /* a medium error may still have changed blocks: only a replicated write is known equal */
    task_untrack(t, true);
    if (t->range.held)
        lu_range_unlock(&t->lun->lu, &t->range);
    if (t->aborted || c->fd < 0) {
        task_finish(t);
        return;
    }
    if (t->first_error) {
        bool wr = t->plan.action == SCSI_ACTION_WRITE;
        TWL_ERROR(PART, "%s: LUN %u %s LBA %llu+%u failed: %s", c->peer, t->lun_id,
                  wr                                   ? "write"
                  : t->plan.action == SCSI_ACTION_READ ? "read"
                                                       : "sync",
                  (unsigned long long)t->plan.lba, t->plan.blocks, strerror(-t->first_error));
        uint16_t asc = wr ? SCSI_ASC_WRITE_ERROR : SCSI_ASC_READ_ERROR;
        uint8_t key = SCSI_SENSE_MEDIUM_ERROR;
        if (t->first_error == -ENOSPC) {
            key = SCSI_SENSE_DATA_PROTECT;
            asc = SCSI_ASC_SPACE_ALLOC_FAILED;
        } else if (t->plan.action == SCSI_ACTION_SYNC) {
            key = SCSI_SENSE_HARDWARE_ERROR;
            asc = SCSI_ASC_INTERNAL_TARGET_FAILURE;
        }
        scsi_plan_check_condition_info(&t->plan, key, asc, t->plan.lba);
        send_scsi_response(t, t->xfer);
        task_finish(t);
        return;
    }
    t->plan.status = SCSI_STATUS_GOOD;
    t->plan.sense_len = 0;
    if (t->plan.action == SCSI_ACTION_READ)
        send_data_in(t, t->xfer);
    else
        send_scsi_response(t, t->xfer);
    task_finish(t);
}

static void task_respond(struct tgt_task *t);

/* A multi-step command's replica is done too: report the first failure, if any. */
static void task_replicated(struct tgt_task *t)
{
    if (t->first_error && !t->aborted && t->conn->fd >= 0) {
        TWL_ERROR(PART, "%s: LUN %u opcode 0x%02x LBA %llu+%u: replica failed: %s", t->conn->peer,
                  t->lun_id, t->cdb[0], (unsigned long long)t->plan.lba, t->plan.blocks,
                  strerror(-t->first_error));
        scsi_plan_check_condition_info(&t->plan, SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR,
                                       t->plan.lba);
    }
    task_respond(t);
}

static void task_part_done(struct tgt_task *t, int err)
{
    if (err && !t->first_error)
        t->first_error = err;
    if (--t->pending == 0) {
        bool plain = t->plan.action == SCSI_ACTION_WRITE || t->plan.action == SCSI_ACTION_READ ||
                     t->plan.action == SCSI_ACTION_SYNC;
        if (plain)
            task_io_finished(t);
        else
            task_replicated(t);
    }
    iscsi_task_put(t); /* the reference the sub-operation held */
}

static void backing_done(struct backing_io *io, int result)
{
    task_part_done(TASK_OF(io, io), result);
}

static void replica_done_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, replica);
    task_part_done(t, replica_outcome(task_replicator(t), t->replica_err, &t->replicated));
}

/* The replicator may finish on its own thread; the task's state belongs to its network
 * thread, so the completion travels there. */
static void replica_done(void *cookie, int err)
{
    struct tgt_task *t = cookie;
    struct net_thread *thr = t->conn->thr;
    if (pthread_equal(pthread_self(), thr->tid)) {
        task_part_done(t, replica_outcome(task_replicator(t), err, &t->replicated));
        return;
    }
    /* a task has one replica in flight at most, so its own message slot is free */
    t->replica.fn = replica_done_on_thread;
    t->replica_err = err;
    thread_post_done(thr, &t->replica);
}

static void task_start_io(struct tgt_task *t)
{
    struct conn *c = t->conn;
    struct tgt_lun *lun = t->lun;
    t->state = TASK_EXECUTING;
    t->io.store = &lun->store;
    t->io.buf = t->buf;
    t->io.len = t->io_bytes;
    t->io.offset = t->plan.lba * lun->info.block_size;
    t->io.fua = t->plan.fua;
    t->io.done_bytes = 0;
    t->io.complete = backing_done;
    switch (t->plan.action) {
    case SCSI_ACTION_READ:
        t->io.op = BACKING_READ;
        break;
    case SCSI_ACTION_WRITE:
        t->io.op = BACKING_WRITE;
        break;
    default:
        t->io.op = BACKING_FLUSH;
        break;
    }
    t->pending = 1;
    t->refs++;
    const struct tgt_replicator *rep = &c->thr->srv->replicator;
    if (t->plan.action == SCSI_ACTION_WRITE && rep->replicate) {
        struct tgt_write w = {.target_name = c->target->cfg->iqn,
                              .lun = t->lun_id,
                              .kind = TGT_WRITE_DATA,
                              .lba = t->plan.lba,
                              .blocks = t->plan.blocks,
                              .block_size = lun->info.block_size,
                              .data = t->buf,
                              .fua = t->plan.fua};
        t->pending++;
        t->refs++;
        int rc = rep->replicate(rep->ctx, &w, replica_done, t);
        if (rc) {
            t->pending--;
            t->refs--;
            t->first_error = rc;
        }
    }
    backing_ring_queue(&c->thr->ring, &t->io);
}

/* ---------------- commands beyond plain reads and writes ---------------- */

/* Sends the outcome of a command carried out off the plain I/O path and ends it. */
static void task_respond(struct tgt_task *t)
{
    /* a COMPARE AND WRITE that miscompared changed nothing; any other failure may have */
    bool miscompare = t->plan.status == SCSI_STATUS_CHECK_CONDITION && t->plan.sense_len > 2 &&
                      (t->plan.sense[2] & 0x0f) == SCSI_SENSE_MISCOMPARE;
    task_untrack(t, !miscompare);
    task_leave_change(t);
    if (t->range.held)
        lu_range_unlock(&t->lun->lu, &t->range);
    if (t->copy) {
        struct copy_job *cj = t->copy;
        for (int i = 0; i < cj->range_count; i++)
            if (cj->ranges[i].range.held)
                lu_range_unlock(&cj->ranges[i].lun->lu, &cj->ranges[i].range);
        if (cj->in_history) {
            lu_xcopy_finish(&t->lun->lu, t->nexus, &cj->list,
                            t->aborted || t->plan.status != SCSI_STATUS_GOOD, &cj->done);
            cj->in_history = false;
        }
    }
    if (t->aborted || t->conn->fd < 0) {
        task_finish(t);
        return;
    }
    if (t->plan.status == SCSI_STATUS_GOOD && t->plan.data_len) {
        t->xfer = t->plan.data_len;
        send_data_in(t, t->xfer);
    } else {
        send_scsi_response(t, t->xfer);
    }
    task_finish(t);
}

/* UNMAP's extents into t->extents, once (the log needs them before the change, the replica
 * after): their count, 0 when the list names none or does not parse, -ENOMEM. */
static int parse_unmap(struct tgt_task *t)
{
    if (t->extents)
        return (int)t->extent_count;
    struct scsi_extent ext[256];
    struct scsi_plan scratch = t->plan;
    int n = scsi_unmap_parse(&t->lun->info, t->buf, t->plan.data_out, ext, 256, &scratch);
    if (n <= 0)
        return 0;
    t->extents = calloc((size_t)n, sizeof(*t->extents));
    if (t->extents == NULL)
        return -ENOMEM;
    for (int i = 0; i < n; i++)
        t->extents[i] = (struct tgt_extent){ext[i].lba, ext[i].blocks};
    t->extent_count = (size_t)n;
    return n;
}

/* Describes what a multi-step command changed, for the replicator. Returns false when it
 * changed nothing (or the description cannot be built: the command then fails). */
static bool describe_change(struct tgt_task *t, struct tgt_write *w)
{
    struct tgt_lun *lun = t->lun;
    uint32_t bs = lun->info.block_size;
    *w = (struct tgt_write){.target_name = t->conn->target->cfg->iqn,
                            .lun = t->lun_id,
                            .kind = TGT_WRITE_DATA,
                            .lba = t->plan.lba,
                            .blocks = t->plan.blocks,
                            .block_size = bs,
                            .fua = t->plan.fua};
    switch (t->plan.action) {
    case SCSI_ACTION_COMPARE_AND_WRITE:
        w->data = t->buf + (size_t)t->plan.blocks * bs; /* the write half */
        return true;
    case SCSI_ACTION_ORWRITE:
        w->data = t->buf; /* media_execute left the OR-ed blocks there */
        return true;
    case SCSI_ACTION_WRITE_SAME:
        if (t->plan.unmap && !t->plan.anchor) {
            w->kind = TGT_WRITE_UNMAP;
            t->extents = malloc(sizeof(*t->extents));
            if (t->extents == NULL)
                return false;
            t->extents[0] = (struct tgt_extent){t->plan.lba, t->plan.blocks};
            t->extent_count = 1;
            w->extents = t->extents;
            w->extent_count = 1;
        } else {
            w->kind = TGT_WRITE_SAME;
            w->data = t->plan.ndob || t->plan.anchor ? NULL : t->buf;
        }
        return true;
    case SCSI_ACTION_UNMAP: {
        if (parse_unmap(t) <= 0)
            return false;
        w->kind = TGT_WRITE_UNMAP;
        w->extents = t->extents;
        w->extent_count = t->extent_count;
        return true;
    }
    default:
        return false;
    }
}

/* Offers what a command changed, after the local change, and answers once the replica is
 * done (task_replicated). */
static void task_replicate(struct tgt_task *t, const struct tgt_replicator *rep,
                           const struct tgt_write *w)
{
    t->pending = 1;
    t->refs++;
    int rc = rep->replicate(rep->ctx, w, replica_done, t);
    if (rc) {
        t->pending = 0;
        t->refs--;
        t->first_error = rc;
        task_replicated(t);
    }
}

/* Reservations or mode parameters changed: the partner gets the LU's whole metadata image
 * before the command completes, so both nodes answer PR IN alike. */
static void task_replicate_meta(struct tgt_task *t)
{
    const struct tgt_replicator *rep = &t->conn->thr->srv->replicator;
    t->meta = malloc(LU_META_MAX);
    size_t len = t->meta ? lu_meta_encode(&t->lun->lu, t->meta, LU_META_MAX) : 0;
    if (len == 0 || len > LU_META_MAX) {
        t->first_error = -ENOMEM;
        task_replicated(t);
        return;
    }
    struct tgt_write w = {.target_name = t->conn->target->cfg->iqn,
                          .lun = t->lun_id,
                          .kind = TGT_WRITE_META,
                          .block_size = t->lun->info.block_size,
                          .data = t->meta,
                          .data_len = (uint32_t)len};
    task_replicate(t, rep, &w);
}

static void job_done_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, wake);
    const struct tgt_replicator *rep = &t->conn->thr->srv->replicator;
    struct tgt_write w;
    if (t->plan.status != SCSI_STATUS_GOOD || rep->replicate == NULL || t->aborted ||
        t->conn->fd < 0 || !describe_change(t, &w)) {
        task_respond(t);
        return;
    }
    /* The range stays locked until the replica is done, so the partner sees overlapping
     * changes in the same order. */
    task_replicate(t, rep, &w);
}

/* ---- EXTENDED COPY ---- */

static struct lu_nexus *conn_nexus(struct conn *c, struct tgt_lun *lun);

static void copy_replica_done(void *cookie, int err)
{
    struct copy_job *cj = cookie;
    pthread_mutex_lock(&cj->wait_lock);
    cj->replica_err = err;
    cj->replica_back = true;
    pthread_cond_signal(&cj->wait_cond);
    pthread_mutex_unlock(&cj->wait_lock);
}

/* On the worker, after each chunk the copy wrote: the same blocks go to the replica before the
 * next chunk (the destination ranges stay locked throughout). */
static int copy_chunk_written(void *ctx, const struct xcopy_chunk *chunk)
{
    struct tgt_task *t = ctx;
    struct copy_job *cj = t->copy;
    const struct tgt_replicator *rep = &t->conn->thr->srv->replicator;
    if (rep->replicate == NULL)
        return 0;
    struct tgt_target *target = t->conn->target;
    struct tgt_write w = {.target_name = target->cfg->iqn,
                          .lun = target->luns[chunk->lu].info.id,
                          .kind = TGT_WRITE_DATA,
                          .lba = chunk->lba,
                          .blocks = chunk->blocks,
                          .block_size = chunk->block_size,
                          .data = chunk->data,
                          .fua = chunk->fua};
    cj->replica_back = false;
    int rc = rep->replicate(rep->ctx, &w, copy_replica_done, cj);
    if (rc)
        return rc;
    pthread_mutex_lock(&cj->wait_lock);
    while (!cj->replica_back)
        pthread_cond_wait(&cj->wait_cond, &cj->wait_lock);
    rc = cj->replica_err;
    pthread_mutex_unlock(&cj->wait_lock);
    /* the chunk is written here: without its replica the destinations stay marked, whatever
     * the policy answers */
    bool replicated = false;
    if (rc)
        cj->unreplicated = true;
    return replica_outcome(rep, rc, &replicated);
}

static void copy_done_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, wake);
    struct copy_job *cj = t->copy;
    if (t->plan.status != SCSI_STATUS_GOOD)
        TWL_WARN(PART,
                 "%s: LUN %u EXTENDED COPY list %u ended with sense %x/%02x%02x after %llu "
                 "bytes",
                 t->conn->peer, t->lun_id, cj->list.id, t->plan.sense[2] & 0x0f, t->plan.sense[12],
                 t->plan.sense[13], (unsigned long long)cj->done.bytes);
    task_respond(t);
}

static void copy_run(struct tgt_job *job)
{
    struct tgt_task *t = TASK_OF(job, job);
    struct copy_job *cj = t->copy;
    const struct tgt_replicator *rep = task_replicator(t);
    int tracked = 0;
    for (; rep->track && tracked < cj->range_count; tracked++) {
        struct copy_range *cr = &cj->ranges[tracked];
        if (rep->track(rep->ctx, cr->lun->info.id, cr->range.lba, cr->range.end - cr->range.lba))
            break;
    }
    if (tracked < cj->range_count && rep->track)
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_HARDWARE_ERROR,
                                  SCSI_ASC_INTERNAL_TARGET_FAILURE);
    else
        xcopy_execute(cj->lus, cj->segs, cj->count, copy_chunk_written, t, &t->plan, &cj->done);
    /* every chunk written was replicated, or the destinations stay marked */
    for (int i = 0; i < tracked; i++) {
        struct copy_range *cr = &cj->ranges[i];
        rep->untrack(rep->ctx, cr->lun->info.id, cr->range.lba, cr->range.end - cr->range.lba,
                     !cj->unreplicated);
    }
    t->wake.fn = copy_done_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

static void copy_lock_next(struct tgt_task *t);

static void copy_range_granted_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, wake);
    t->copy->ranges_held++;
    copy_lock_next(t);
}

static void copy_range_granted(struct lu_range *r)
{
    struct copy_range *cr =
        (struct copy_range *)((uint8_t *)r - offsetof(struct copy_range, range));
    cr->task->wake.fn = copy_range_granted_on_thread;
    thread_post_done(cr->task->conn->thr, &cr->task->wake);
}

/* Takes the destination ranges one by one in LU order (so two copies never wait on each
 * other in a cycle), then runs the copy on a worker. */
static void copy_lock_next(struct tgt_task *t)
{
    struct copy_job *cj = t->copy;
    while (cj->ranges_held < cj->range_count) {
        if (t->aborted || t->aborted_by_other || t->conn->fd < 0) {
            task_respond(t);
            return;
        }
        struct copy_range *cr = &cj->ranges[cj->ranges_held];
        cr->task = t;
        cr->range.granted = copy_range_granted;
        if (!lu_range_lock(&cr->lun->lu, &cr->range, cr->range.lba, cr->range.end - cr->range.lba))
            return; /* copy_range_granted goes on */
        cj->ranges_held++;
    }
    t->job.run = copy_run;
    server_job_submit(t->conn->thr->srv, &t->job);
}

/* Parses the list, checks every LU it reaches against the reservations, notes the copy in the
 * nexus's history and starts taking the destination ranges. */
static void copy_start(struct tgt_task *t)
{
    struct conn *c = t->conn;
    struct tgt_target *target = c->target;
    struct copy_job *cj = calloc(1, sizeof(*cj));
    struct xcopy_lu *lus = calloc(target->lun_count, sizeof(*lus));
    if (cj == NULL || lus == NULL) {
        free(cj);
        free(lus);
        complete_with_check(t, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
        return;
    }
    pthread_mutex_init(&cj->wait_lock, NULL);
    pthread_cond_init(&cj->wait_cond, NULL);
    cj->lus = lus;
    t->copy = cj;
    for (size_t i = 0; i < target->lun_count; i++)
        lus[i] = (struct xcopy_lu){.info = &target->luns[i].info, .store = &target->luns[i].store};
    cj->count = xcopy_parse(t->buf, t->plan.data_out, lus, target->lun_count, cj->segs,
                            XCOPY_MAX_SEGMENT_DESCRIPTORS, &cj->list, &t->plan);
    if (cj->count <= 0) {
        task_respond(t);
        return;
    }
    /* the LU the command came to was admitted as a whole; the others as READ or WRITE */
    static const uint8_t read10[10] = {0x28}, write10[10] = {0x2a};
    for (int i = 0; i < cj->count; i++) {
        size_t ends[2] = {cj->segs[i].src, cj->segs[i].dst};
        for (int k = 0; k < 2; k++) {
            struct tgt_lun *lun = &target->luns[ends[k]];
            if (lun == t->lun)
                continue;
            struct lu_nexus *n = conn_nexus(c, lun);
            if (n == NULL) {
                complete_with_check(t, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
                return;
            }
            if (lu_reservation_conflict(&lun->lu, n, k ? write10 : read10)) {
                t->plan.status = SCSI_STATUS_RESERVATION_CONFLICT;
                t->plan.sense_len = 0;
                t->plan.data_len = 0;
                task_respond(t);
                return;
            }
        }
    }
    if (lu_xcopy_begin(&t->lun->lu, t->nexus, &cj->list, &t->plan) != 0) {
        task_respond(t);
        return;
    }
    cj->in_history = true;
    /* one span per destination LU, in LU order */
    for (size_t l = 0; l < target->lun_count; l++) {
        uint64_t lo = UINT64_MAX, hi = 0;
        for (int i = 0; i < cj->count; i++) {
            if (cj->segs[i].dst != l || cj->segs[i].blocks == 0)
                continue;
            uint64_t end = cj->segs[i].dst_lba + cj->segs[i].blocks;
            lo = cj->segs[i].dst_lba < lo ? cj->segs[i].dst_lba : lo;
            hi = end > hi ? end : hi;
        }
        if (lo < hi) {
            struct copy_range *cr = &cj->ranges[cj->range_count++];
            cr->lun = &target->luns[l];
            cr->range.lba = lo;
            cr->range.end = hi;
        }
    }
    copy_lock_next(t);
}

/* UNMAP holds the whole LU while its parameter list is parsed: only the extents it names go
 * into the log. A list that does not parse is left for media_execute to refuse. */
static int track_unmap(struct tgt_task *t)
{
    int n = parse_unmap(t);
    if (n == 0)
        return 0;
    int rc = n < 0 ? n : task_track(t);
    if (rc)
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_HARDWARE_ERROR,
                                  SCSI_ASC_INTERNAL_TARGET_FAILURE);
    return rc;
}

/* On a worker thread: the blocking part of the command, then back to the task's thread. */
static void job_run(struct tgt_job *job)
{
    struct tgt_task *t = TASK_OF(job, job);
    if (t->plan.action == SCSI_ACTION_UNMAP && task_replicator(t)->track && track_unmap(t) != 0) {
        t->wake.fn = job_done_on_thread;
        thread_post_done(t->conn->thr, &t->wake);
        return;
    }
    media_execute(&t->lun->store, &t->lun->info, &t->plan, t->buf, t->buf, t->buf_len);
    t->wake.fn = job_done_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

static void task_submit_job(struct tgt_task *t)
{
    t->job.run = job_run;
    server_job_submit(t->conn->thr->srv, &t->job);
}

/* The command holds its blocks: carry it out. */
static void task_locked(struct tgt_task *t)
{
    if (t->aborted || t->aborted_by_other || t->conn->fd < 0) {
        task_respond(t);
        return;
    }
    if (t->plan.action != SCSI_ACTION_UNMAP && task_track(t) != 0) {
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_HARDWARE_ERROR,
                                  SCSI_ASC_INTERNAL_TARGET_FAILURE);
        task_respond(t); /* releases the range */
        return;
    }
    if (t->plan.action == SCSI_ACTION_WRITE)
        task_start_io(t);
    else
        task_submit_job(t);
}

static void range_granted_on_thread(struct remote_done *d)
{
    task_locked(TASK_OF(d, wake));
}

/* Runs on whichever thread released the range that blocked this one. */
static void range_granted(struct lu_range *r)
{
    struct tgt_task *t = TASK_OF(r, range);
    t->wake.fn = range_granted_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

/* A change admitted by the throttle takes its blocks (waiting for overlapping commands). */
static void task_lock_range(struct tgt_task *t)
{
    struct tgt_lun *lun = t->lun;
    /* UNMAP's extents are only known once parsed: it holds the whole LU meanwhile */
    bool all = t->plan.action == SCSI_ACTION_UNMAP;
    t->range.granted = range_granted;
    if (lu_range_lock(&lun->lu, &t->range, all ? 0 : t->plan.lba,
                      all ? lun->info.block_count : t->plan.blocks))
        task_locked(t);
}

static void admitted_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, wake);
    if (t->aborted || t->aborted_by_other || t->conn->fd < 0) {
        task_respond(t); /* nothing held, nothing tracked yet */
        return;
    }
    task_lock_range(t);
}

/* Runs on the throttle's thread once the change's tokens are there. */
static void admitted(struct throttle_waiter *w)
{
    struct tgt_task *t = TASK_OF(w, admission);
    t->wake.fn = admitted_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

/* Write admission: a change takes tokens for the bytes it sends to the partner (a WRITE's
 * data, the parameter data of the others) before it takes its blocks, so a change waiting
 * here holds nothing another command needs. True when it may go on now; false when it waits
 * (admitted() continues it). */
static bool task_admit(struct tgt_task *t)
{
    struct conn *c = t->conn;
    struct throttle *thr = c->thr->srv->replicator.throttle;
    uint64_t bytes = t->plan.action == SCSI_ACTION_WRITE ? t->io_bytes : t->plan.data_out;
    if (thr == NULL || bytes == 0)
        return true;
    c->write_mean = c->write_mean ? c->write_mean - c->write_mean / 8 + bytes / 8 : bytes;
    t->admission = (struct throttle_waiter){
        .granted = admitted, .bytes = bytes, .owner = c, .cls = THROTTLE_CLIENT};
    return throttle_admit(thr, &t->admission, twl_now_ns());
}

/* A change to the medium starts: the ALUA state is checked again, since the command may have
 * waited for its Data-Out while a handover began (which then waits for it to answer). Counted
 * first and checked after, so that a handover that sees no change in flight is not passed by
 * one that saw the LUN active. False (answered NOT READY) when the port no longer serves. */
static bool task_enter_change(struct tgt_task *t)
{
    struct tgt_lun *lun = t->lun;
    atomic_fetch_add(&lun->changes_active, 1);
    t->change_entered = true;
    uint16_t asc =
        scsi_alua_refusal(server_alua_state(t->conn->thr->srv, lun),
                          lu_nexus_alua_settling(t->nexus, t->conn->thr->loop_ns), t->cdb);
    if (asc == 0)
        return true;
    task_leave_change(t);
    scsi_plan_check_condition(&t->plan, SCSI_SENSE_NOT_READY, asc);
    task_respond(t);
    return false;
}

/* ---- reservations and mode parameters of a LU the partner serves ---- */

/* A pair thread (forward, SET TARGET PORT GROUPS) set the task's outcome: answer it. */
static void answered_on_thread(struct remote_done *d)
{
    struct tgt_task *t = TASK_OF(d, wake);
    task_respond(t);
    iscsi_task_put(t); /* the pair thread's reference */
}

/* On a pair thread: the partner's outcome becomes the command's. */
static void forwarded(void *cookie, const struct replica_lu_outcome *o)
{
    struct tgt_task *t = cookie;
    if (o->err) {
        TWL_WARN(PART, "%s: LUN %u opcode 0x%02x: the partner did not carry it out: %s",
                 t->conn->peer, t->lun_id, t->cdb[0], strerror(-o->err));
        /* retried by the initiator, maybe through the other port */
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_NOT_READY, SCSI_ASC_ALUA_TRANSITIONING);
    } else {
        t->plan.status = o->status;
        t->plan.sense_len =
            o->sense_len < sizeof(t->plan.sense) ? o->sense_len : sizeof(t->plan.sense);
        memcpy(t->plan.sense, o->sense, t->plan.sense_len);
        t->plan.data_len = 0;
    }
    t->wake.fn = answered_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

/* On a node that stands by for the LU, a change of its reservations or mode parameters is made
 * by the node that serves it (replica_forward_lu): one node decides them all. True when the
 * command went (or was answered). */
static bool task_forward_lu(struct tgt_task *t)
{
    struct tgt_server *srv = t->conn->thr->srv;
    if (srv->pair == NULL || !scsi_changes_lu_metadata(t->cdb) ||
        replica_serves(srv->pair, t->lun->info.id))
        return false;
    t->refs++;
    int rc =
        replica_forward_lu(srv->pair, t->lun->info.id, t->conn->initiator, t->conn->isid,
                           srv->groups[0].rel_port, t->cdb, t->buf, t->plan.data_out, forwarded, t);
    if (rc) {
        t->refs--;
        TWL_WARN(PART, "%s: LUN %u opcode 0x%02x not forwarded to the serving node: %s",
                 t->conn->peer, t->lun_id, t->cdb[0], strerror(-rc));
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_NOT_READY, SCSI_ASC_ALUA_TRANSITIONING);
        task_respond(t);
    }
    return true;
}

/* ---- SET TARGET PORT GROUPS: an initiator moves the LU between the nodes ---- */

/* On the pair's handover thread. */
static void port_groups_set(void *cookie, int rc)
{
    struct tgt_task *t = cookie;
    if (rc)
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_SET_TPGS_FAILED);
    t->wake.fn = answered_on_thread;
    thread_post_done(t->conn->thr, &t->wake);
}

static void task_set_port_groups(struct tgt_task *t)
{
    struct tgt_server *srv = t->conn->thr->srv;
    uint16_t active;
    uint16_t asc =
        scsi_stpg_parse(t->buf, t->plan.data_out, srv->groups, srv->group_count, &active);
    if (asc) {
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_ILLEGAL_REQUEST, asc);
        task_respond(t);
        return;
    }
    uint32_t id = t->lun->info.id;
    bool here = srv->pair == NULL || replica_serves(srv->pair, id);
    bool want_here = active == srv->groups[0].id;
    if (active == 0 || here == want_here) {
        task_respond(t); /* the groups are as asked */
        return;
    }
    TWL_INFO(PART, "%s: SET TARGET PORT GROUPS: LUN %u to be served by group %u", t->conn->peer, id,
             active);
    t->refs++;
    int rc = replica_move_async(srv->pair, id, want_here, port_groups_set, t);
    if (rc) {
        t->refs--;
        TWL_ERROR(PART, "%s: SET TARGET PORT GROUPS for LUN %u: %s", t->conn->peer, id,
                  strerror(-rc));
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_SET_TPGS_FAILED);
        task_respond(t);
    }
}

/* All Data-Out of the command is in (or it needs none): carry it out. */
static void task_execute(struct tgt_task *t)
{
    struct tgt_lun *lun = t->lun;
    t->state = TASK_EXECUTING;
    if (t->aborted_by_other) {
        task_respond(t);
        return;
    }
    switch (t->plan.action) {
    case SCSI_ACTION_WRITE:
    case SCSI_ACTION_COMPARE_AND_WRITE:
    case SCSI_ACTION_ORWRITE:
    case SCSI_ACTION_WRITE_SAME:
    case SCSI_ACTION_UNMAP:
        if (task_enter_change(t) && task_admit(t))
            task_lock_range(t);
        return;
    case SCSI_ACTION_VERIFY:
    case SCSI_ACTION_GET_LBA_STATUS:
        task_submit_job(t);
        return;
    case SCSI_ACTION_LU: {
        if (task_forward_lu(t))
            return;
        struct lu_effects effects;
        lu_execute(&lun->lu, t->nexus, t->cdb, t->buf, t->plan.data_out, t->buf, t->buf_len,
                   &t->plan, &effects);
        for (unsigned i = 0; i < effects.count; i++)
            server_abort_elsewhere(t->conn, t->lun_id, &effects.sel[i]);
        if (effects.meta_changed && t->conn->thr->srv->replicator.replicate) {
            task_replicate_meta(t);
            return;
        }
        task_respond(t);
        return;
    }
    case SCSI_ACTION_EXTENDED_COPY:
        if (task_enter_change(t))
            copy_start(t);
        return;
    case SCSI_ACTION_SET_TPGS:
        task_set_port_groups(t);
        return;
    default:
        task_start_io(t);
        return;
    }
}

/* ---------------- write data ---------------- */

static void send_r2ts(struct tgt_task *t)
{
    struct conn *c = t->conn;
    uint32_t limit = c->params.max_outstanding_r2t;
    if (limit > MAX_R2T_TRACKED)
        limit = MAX_R2T_TRACKED;
    while (t->r2t_count < limit && t->r2t_next < t->want) {
        uint32_t len = t->want - t->r2t_next;
        if (len > c->params.max_burst)
            len = c->params.max_burst;
        if (++c->next_ttt == ISCSI_RSVD_TAG)
            c->next_ttt = 1;
        struct r2t_seq *s = &t->r2t[t->r2t_count++];
        s->ttt = c->next_ttt;
        s->offset = t->r2t_next;
        s->len = len;
        uint8_t hdr[ISCSI_BHS_LEN] = {0};
        hdr[0] = ISCSI_OP_R2T;
        hdr[1] = ISCSI_FLAG_FINAL;
        pdu_set_lun(hdr, t->lun_id);
        twl_put_be32(hdr + 16, t->itt);
        twl_put_be32(hdr + 20, s->ttt);
        fill_sn(c, hdr, false);
        twl_put_be32(hdr + 36, t->r2tsn++);
        twl_put_be32(hdr + 40, s->offset);
        twl_put_be32(hdr + 44, s->len);
        iscsi_send_pdu(c, hdr, NULL, 0, NULL, NULL);
        t->r2t_next += len;
    }
}

/* All write data is in: write it, or fail the command the data phase broke. */
static void task_data_complete(struct tgt_task *t)
{
    if (t->aborted_by_other) {
        send_scsi_response(t, 0);
        task_finish(t);
        return;
    }
    if (t->failed) {
        complete_with_check(t, t->fail_key, t->fail_asc);
        return;
    }
    if (t->plan.action != SCSI_ACTION_WRITE) {
        task_execute(t);
        return;
    }
    /* With EDTL below the CDB's length only the whole blocks that arrived are written; the
     * response reports the rest as residual overflow. */
    uint32_t bytes = t->want < t->xfer ? t->want : t->xfer;
    t->io_bytes = bytes / t->lun->info.block_size * t->lun->info.block_size;
    if (t->io_bytes == 0) {
        t->plan.status = SCSI_STATUS_GOOD;
        send_scsi_response(t, t->xfer);
        task_finish(t);
        return;
    }
    t->plan.blocks = t->io_bytes / t->lun->info.block_size;
    task_execute(t);
}

static void fail_data_phase(struct tgt_task *t, uint8_t key, uint16_t asc)
{
    if (!t->failed) {
        t->failed = true;
        t->fail_key = key;
        t->fail_asc = asc;
    }
}

/* ---------------- commands ---------------- */

static const struct scsi_target_view *target_view(struct conn *c, struct tgt_lun *lun,
                                                  const struct lu_nexus *nexus,
                                                  struct scsi_target_view *v, uint16_t pending_ua)
{
    struct tgt_server *srv = c->thr->srv;
    v->target_name = c->target->cfg->iqn;
    v->relative_port_id = srv->groups[0].rel_port;
    v->target_port_group = srv->groups[0].id;
    v->lun_ids = c->target->lun_ids;
    v->lun_count = c->target->lun_count;
    v->groups = srv->groups;
    v->group_count = srv->group_count;
    v->alua_state = server_alua_state(srv, lun);
    v->explicit_alua = srv->cfg->pair.enabled && srv->cfg->pair.explicit_alua;
    v->alua_settling = nexus && lu_nexus_alua_settling(nexus, c->thr->loop_ns);
    v->pending_ua = pending_ua;
    return v;
}

/* The LU's record of this connection's I_T nexus, looked up once per LUN. */
static struct lu_nexus *conn_nexus(struct conn *c, struct tgt_lun *lun)
{
    size_t i = (size_t)(lun - c->target->luns);
    if (c->nexus == NULL) {
        c->nexus = calloc(c->target->lun_count, sizeof(*c->nexus));
        if (c->nexus == NULL)
            return NULL;
    }
    if (c->nexus[i] == NULL)
        c->nexus[i] =
            lu_nexus_get(&lun->lu, c->initiator, c->isid, c->thr->srv->groups[0].rel_port);
    return c->nexus[i];
}

static bool check_ahs(const uint8_t *bhs, struct tgt_task *t)
{
    uint32_t total = pdu_ahs_len(bhs);
    const uint8_t *p = bhs + ISCSI_BHS_LEN;
    uint32_t off = 0;
    while (off < total) {
        if (total - off < 4)
            return false;
        uint32_t alen = twl_get_be16(p + off);
        uint8_t type = p[off + 2];
        uint32_t step = (alen + 3 + 3) & ~3u;
        if (alen == 0 || off + step > total)
            return false;
        if (type == 1 || type == 2) {
            /* extended CDB or bidirectional read length: not supported by this target */
            scsi_plan_check_condition(&t->plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                      SCSI_ASC_INVALID_FIELD_IN_CDB);
            t->failed = true;
        }
        off += step;
    }
    return true;
}

/* Header of a SCSI Command: create the task and point the receive path at its buffer. */
static void scsi_cmd_header(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    if (c->discovery) {
        TWL_WARN(PART, "%s: SCSI command in a discovery session", c->peer);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        return;
    }
    uint32_t itt = pdu_itt(bhs);
    if (itt == ISCSI_RSVD_TAG || task_find(c, itt)) {
        TWL_WARN(PART, "%s: SCSI command with ITT 0x%08x %s", c->peer, itt,
                 itt == ISCSI_RSVD_TAG ? "reserved" : "already in use");
        iscsi_send_reject(c, bhs,
                          itt == ISCSI_RSVD_TAG ? ISCSI_REJECT_INVALID_PDU_FIELD
                                                : ISCSI_REJECT_TASK_IN_PROGRESS);
        return;
    }
    bool immediate = pdu_immediate(bhs);
    uint32_t cmdsn = twl_get_be32(bhs + 24);
    enum cmdsn_verdict v = cmdsn_check(&c->win, cmdsn, immediate, !immediate);
    if (v != CMDSN_ACCEPT) {
        TWL_WARN(PART, "%s: dropping command ITT 0x%08x: CmdSN %u outside [%u, %u]", c->peer, itt,
                 cmdsn, c->win.exp_cmdsn, c->win.max_cmdsn);
        return;
    }
    struct tgt_task *t = calloc(1, sizeof(*t));
    if (t == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    t->conn = c;
    t->refs = 1;
    t->itt = itt;
    t->cmdsn = cmdsn;
    t->immediate = immediate;
    t->counts_slot = !immediate;
    t->flags = bhs[1];
    t->edtl = twl_get_be32(bhs + 20);
    t->lun_id = pdu_lun(bhs);
    t->lun = target_find_lun(c->target, t->lun_id);
    t->start_ns = c->thr->loop_ns;
    memcpy(t->cdb, bhs + 32, 16);
    t->hnext = c->tasks[itt % TASK_HASH_SIZE];
    c->tasks[itt % TASK_HASH_SIZE] = t;
    c->task_count++;
    c->rx_task = t;

    if (!check_ahs(bhs, t)) {
        TWL_WARN(PART, "%s: SCSI command ITT 0x%08x: AHS entries do not fit TotalAHSLength %u",
                 c->peer, itt, pdu_ahs_len(bhs));
        task_finish(t);
        c->rx_task = NULL;
        iscsi_send_reject(c, bhs, ISCSI_REJECT_INVALID_PDU_FIELD);
        return;
    }
    if (!t->failed) {
        uint16_t pending_ua = 0;
        bool admitted = true;
        if (t->lun) {
            t->nexus = conn_nexus(c, t->lun);
            if (t->nexus == NULL) {
                conn_close(c, "out of memory");
                return;
            }
            admitted = lu_admit(&t->lun->lu, t->nexus, t->cdb, &t->plan, &pending_ua);
        }
        struct scsi_target_view view;
        uint8_t scratch[EMULATED_BUF];
        if (admitted) {
            scsi_plan_command(t->lun ? &t->lun->info : NULL,
                              target_view(c, t->lun, t->nexus, &view, pending_ua), t->cdb, 16,
                              scratch, sizeof(scratch), &t->plan);
        }
        if (t->plan.action == SCSI_ACTION_COMPLETE && t->plan.data_len) {
            if (!task_alloc_buf(t, t->plan.data_len))
                return;
            memcpy(t->buf, scratch, t->plan.data_len);
            t->xfer = t->plan.data_len;
        }
    }
    bool wbit = (t->flags & ISCSI_CMD_WRITE) != 0;
    if (!t->failed && t->plan.status == SCSI_STATUS_GOOD && scsi_data_out_exact(t->cdb) &&
        (wbit ? t->edtl : 0) != t->plan.data_out) {
        /* Parameter lists and compare data must arrive whole: a differing expected length
         * means the initiator and the CDB disagree (SAM-5 5.4.3). */
        TWL_WARN(PART,
                 "%s: ITT 0x%08x opcode 0x%02x: expected data transfer length %u, CDB "
                 "needs %u",
                 c->peer, itt, t->cdb[0], wbit ? t->edtl : 0, t->plan.data_out);
        scsi_plan_check_condition(&t->plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_INVALID_FIELD_IN_CDB);
        t->failed = true;
    }
    if (!t->failed && t->plan.data_out && t->plan.action != SCSI_ACTION_WRITE) {
        t->xfer = t->plan.data_out;
        t->want = t->plan.data_out;
        /* GET LBA STATUS and PR IN answer into the same buffer */
        if (!task_alloc_buf(t, t->plan.data_out))
            return;
    } else if (!t->failed && t->plan.action == SCSI_ACTION_WRITE) {
        t->xfer = t->plan.blocks * t->lun->info.block_size;
        if (!wbit || t->edtl == 0) {
            /* No data comes: nothing is written and the whole transfer is reported as
             * residual overflow (RFC 7143 11.4.5.2), as other targets do. */
            t->want = 0;
        } else if (t->edtl > MAX_IO_BYTES + t->xfer) {
            scsi_plan_check_condition(&t->plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                      SCSI_ASC_INVALID_FIELD_IN_CDB);
            t->failed = true;
        } else {
            /* everything the initiator sends is taken in; only the CDB's blocks are written */
            t->want = t->edtl;
            if (!task_alloc_buf(t, t->edtl))
                return;
        }
    } else if (!t->failed && t->plan.action != SCSI_ACTION_COMPLETE) {
        t->xfer = t->plan.action == SCSI_ACTION_READ ? t->plan.blocks * t->lun->info.block_size : 0;
        t->io_bytes = t->xfer;
        uint32_t out = t->plan.alloc_len < MAX_REPORT_BYTES ? t->plan.alloc_len : MAX_REPORT_BYTES;
        if (t->xfer && !task_alloc_buf(t, t->xfer))
            return;
        if (!t->xfer && out && !task_alloc_buf(t, out))
            return;
    }
    if (wbit && t->edtl) {
        /* Unsolicited data (immediate, then Data-Out without R2T) ends at
         * min(FirstBurstLength, EDTL) (RFC 7143 13.14); with the F bit on the command there is
         * none beyond the immediate data. */
        uint32_t first = c->params.first_burst < t->edtl ? c->params.first_burst : t->edtl;
        bool final = (bhs[1] & ISCSI_FLAG_FINAL) != 0;
        uint32_t unsol = c->data_len;
        if (c->data_len && (!c->params.immediate_data || c->data_len > first)) {
            TWL_WARN(PART, "%s: ITT 0x%08x carries %u bytes of immediate data (allowed %u)",
                     c->peer, itt, c->data_len, c->params.immediate_data ? first : 0);
            fail_data_phase(t, SCSI_SENSE_ABORTED_COMMAND, SCSI_ASC_DATA_PHASE_ERROR);
            unsol = c->data_len < t->edtl ? c->data_len : t->edtl;
        } else if (!c->params.initial_r2t && !final) {
            unsol = first;
        }
        t->unsol_end = unsol;
        t->r2t_next = unsol;
    } else if (c->data_len) {
        TWL_WARN(PART, "%s: ITT 0x%08x carries data without the W bit", c->peer, itt);
        fail_data_phase(t, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    }
    if (c->data_len && t->buf && !t->failed && t->plan.data_out && c->data_len <= t->want) {
        c->data_dst = t->buf;
        c->data_claimed = true;
    } else if (c->data_len) {
        c->data_dst = NULL; /* discarded */
        c->data_claimed = true;
    }
}

/* The whole SCSI Command PDU (with any immediate data) is in. */
static void scsi_cmd_pdu(struct conn *c)
{
    struct tgt_task *t = c->rx_task;
    c->rx_task = NULL;
    if (t == NULL)
        return;
    if (t->plan.data_out == 0 || t->failed) {
        /* Anything the initiator still sends unsolicited for it is dropped on arrival. */
        if (t->failed && t->plan.status == SCSI_STATUS_GOOD)
            scsi_plan_check_condition(&t->plan, t->fail_key, t->fail_asc);
        if (t->plan.action == SCSI_ACTION_COMPLETE || t->failed) {
            if (t->plan.status == SCSI_STATUS_GOOD && t->plan.data_len)
                send_data_in(t, t->xfer);
            else
                send_scsi_response(t, t->xfer);
            task_finish(t);
            return;
        }
        task_execute(t);
        return;
    }
    t->next_offset = c->data_len;
    if (t->next_offset >= t->want) {
        task_data_complete(t);
        return;
    }
    t->state = TASK_RECEIVING;
    send_r2ts(t);
}

/* Header of a Data-Out: find the task, check the offset and DataSN, aim the data. */
static void data_out_header(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    uint32_t itt = pdu_itt(bhs);
    uint32_t ttt = twl_get_be32(bhs + 20);
    uint32_t datasn = twl_get_be32(bhs + 36);
    uint32_t offset = twl_get_be32(bhs + 40);
    uint32_t len = c->data_len;
    c->data_claimed = true;
    c->data_dst = NULL;
    struct tgt_task *t = task_find(c, itt);
    if (t == NULL || t->state != TASK_RECEIVING) {
        if (ttt == ISCSI_RSVD_TAG) {
            /* unsolicited data of a command already answered (it failed early): drop */
            TWL_DEBUG(PART, "%s: dropping unsolicited Data-Out for ITT 0x%08x", c->peer, itt);
            return;
        }
        TWL_WARN(PART, "%s: Data-Out for unknown ITT 0x%08x TTT 0x%08x", c->peer, itt, ttt);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_INVALID_PDU_FIELD);
        return;
    }
    c->rx_task = t;
    const char *problem = NULL;
    if (ttt == ISCSI_RSVD_TAG) {
        if (offset < t->next_offset || offset + len > t->unsol_end)
            problem = "unsolicited data outside the first burst";
        else if (datasn != t->unsol_datasn)
            problem = "DataSN out of order";
        else
            t->unsol_datasn++;
    } else {
        if (t->r2t_count == 0 || t->r2t[0].ttt != ttt)
            problem = "Target Transfer Tag of no outstanding R2T";
        else if (offset + len > t->r2t[0].offset + t->r2t[0].len)
            problem = "data beyond the R2T's desired length";
        else if ((bhs[1] & ISCSI_FLAG_FINAL) && offset + len < t->r2t[0].offset + t->r2t[0].len)
            problem = "sequence ends short of the R2T's desired length";
        else if (datasn != t->r2t_datasn)
            problem = "DataSN out of order";
        else
            t->r2t_datasn++;
    }
    if (problem == NULL && offset != t->next_offset)
        problem = "buffer offset out of order";
    if (problem == NULL && (uint64_t)offset + len > t->edtl)
        problem = "data beyond the expected data transfer length";
    if (problem) {
        TWL_WARN(PART, "%s: Data-Out ITT 0x%08x offset %u len %u DataSN %u: %s", c->peer, itt,
                 offset, len, datasn, problem);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_INVALID_PDU_FIELD);
        fail_data_phase(t, SCSI_SENSE_ABORTED_COMMAND, SCSI_ASC_DATA_PHASE_ERROR);
        /* the data still has to be consumed; keep counting so the command can end */
        t->next_offset = offset + len > t->next_offset ? offset + len : t->next_offset;
        /* a stray TTT says nothing about the DataSN of the sequence that is outstanding */
        if (ttt != ISCSI_RSVD_TAG && t->r2t_count && t->r2t[0].ttt == ttt)
            t->r2t_datasn = datasn + 1;
        return;
    }
    if (!t->failed && offset + len <= t->want)
        c->data_dst = t->buf + offset;
}

static void data_out_pdu(struct conn *c)
{
    struct tgt_task *t = c->rx_task;
    c->rx_task = NULL;
    if (t == NULL)
        return;
    const uint8_t *bhs = c->hdr;
    uint32_t ttt = twl_get_be32(bhs + 20);
    uint32_t offset = twl_get_be32(bhs + 40);
    uint32_t len = c->data_len;
    if (offset == t->next_offset)
        t->next_offset = offset + len;
    if (ttt != ISCSI_RSVD_TAG && t->r2t_count && t->r2t[0].ttt == ttt &&
        (t->next_offset >= t->r2t[0].offset + t->r2t[0].len || (bhs[1] & ISCSI_FLAG_FINAL))) {
        /* this R2T's sequence is over (complete, or ended early by a faulty initiator, which
         * data_out_header rejected); DataSN restarts for the next one */
        memmove(&t->r2t[0], &t->r2t[1], sizeof(t->r2t[0]) * (t->r2t_count - 1));
        t->r2t_count--;
        t->r2t_datasn = 0;
    }
    bool all_in = t->next_offset >= t->want;
    /* A failed data phase sends no further R2Ts, so once the initiator has ended its current
     * sequence and none is outstanding, nothing more will come: answer now (RFC 7143 11.17.1),
     * or the command would hang. */
    if (t->failed && (bhs[1] & ISCSI_FLAG_FINAL) && t->r2t_count == 0)
        all_in = true;
    if (all_in) {
        task_data_complete(t);
        return;
    }
    if (!t->failed)
        send_r2ts(t);
}

/* ---------------- other requests ---------------- */

static bool take_cmdsn(struct conn *c, const uint8_t *bhs)
{
    uint32_t cmdsn = twl_get_be32(bhs + 24);
    enum cmdsn_verdict v = cmdsn_check(&c->win, cmdsn, pdu_immediate(bhs), false);
    if (v != CMDSN_ACCEPT) {
        TWL_WARN(PART, "%s: dropping opcode 0x%02x: CmdSN %u outside [%u, %u]", c->peer,
                 pdu_opcode(bhs), cmdsn, c->win.exp_cmdsn, c->win.max_cmdsn);
        return false;
    }
    return true;
}

static void handle_nop_out(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    uint32_t itt = pdu_itt(bhs);
    uint32_t ttt = twl_get_be32(bhs + 20);
    if (ttt != ISCSI_RSVD_TAG) {
        if (ttt == c->ping_ttt)
            c->ping_ttt = 0; /* the answer to our ping */
        return;
    }
    if (itt == ISCSI_RSVD_TAG) {
        if (!pdu_immediate(bhs)) {
            iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
            return;
        }
        take_cmdsn(c, bhs);
        return; /* a ping that wants no answer */
    }
    if (!take_cmdsn(c, bhs))
        return;
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_NOP_IN;
    hdr[1] = ISCSI_FLAG_FINAL;
    memcpy(hdr + 8, bhs + 8, 8);
    twl_put_be32(hdr + 16, itt);
    twl_put_be32(hdr + 20, ISCSI_RSVD_TAG);
    fill_sn(c, hdr, true);
    uint8_t *echo = NULL;
    if (c->data_len) {
        echo = malloc(c->data_len);
        if (echo == NULL) {
            conn_close(c, "out of memory");
            return;
        }
        memcpy(echo, c->pdu_data, c->data_len);
    }
    iscsi_send_pdu(c, hdr, echo, c->data_len, echo, NULL);
}

static void format_portal(struct conn *c, char *out, size_t len)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[64] = "127.0.0.1";
    if (getsockname(c->fd, (struct sockaddr *)&ss, &sl) == 0)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), NULL, 0, NI_NUMERICHOST);
    if (strchr(host, ':'))
        snprintf(out, len, "[%s]:%u,%u", host, c->thr->srv->port, c->thr->srv->groups[0].id);
    else
        snprintf(out, len, "%s:%u,%u", host, c->thr->srv->port, c->thr->srv->groups[0].id);
}

static void handle_text(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    if (!take_cmdsn(c, bhs))
        return;
    if (bhs[1] & 0x40) {
        /* continued text is not needed by any key this target answers */
        iscsi_send_reject(c, bhs, ISCSI_REJECT_CMD_NOT_SUPPORTED);
        return;
    }
    struct pdu_kv kvs[32];
    char *text = malloc(c->data_len + 1);
    if (text == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    if (c->data_len)
        memcpy(text, c->pdu_data, c->data_len);
    text[c->data_len] = '\0';
    int n = c->data_len ? pdu_text_parse(text, c->data_len, kvs, 32) : 0;
    if (n < 0) {
        free(text);
        TWL_WARN(PART, "%s: malformed Text request", c->peer);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        return;
    }
    struct pdu_text out = {0};
    char portal[96];
    format_portal(c, portal, sizeof(portal));
    const struct tgt_server *srv = c->thr->srv;
    for (int i = 0; i < n; i++) {
        if (strcmp(kvs[i].key, "SendTargets") == 0) {
            const char *want = kvs[i].value;
            for (size_t j = 0; j < srv->target_count; j++) {
                const char *iqn = srv->targets[j].cfg->iqn;
                bool all = strcmp(want, "All") == 0 && c->discovery;
                bool own = want[0] == '\0' && !c->discovery && c->target == &srv->targets[j];
                /* a target whose allow-list refuses this initiator stays unseen */
                bool allowed =
                    login_target_allows(srv->targets[j].cfg, c->initiator, &c->login.peer);
                if (allowed && (all || own || strcmp(want, iqn) == 0)) {
                    pdu_text_add(&out, "TargetName", iqn);
                    pdu_text_add(&out, "TargetAddress", portal);
                }
            }
        } else {
            pdu_text_add(&out, kvs[i].key, "NotUnderstood");
        }
    }
    free(text);
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_TEXT_RSP;
    hdr[1] = ISCSI_FLAG_FINAL;
    memcpy(hdr + 8, bhs + 8, 8);
    twl_put_be32(hdr + 16, pdu_itt(bhs));
    twl_put_be32(hdr + 20, ISCSI_RSVD_TAG);
    fill_sn(c, hdr, true);
    iscsi_send_pdu(c, hdr, (uint8_t *)out.buf, (uint32_t)out.len, (uint8_t *)out.buf, NULL);
}

static void handle_logout(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    if (!take_cmdsn(c, bhs))
        return;
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_LOGOUT_RSP;
    hdr[1] = ISCSI_FLAG_FINAL;
    uint8_t reason = bhs[1] & 0x7f;
    /* 2 = remove the connection for recovery: this target has no connection recovery */
    hdr[2] = reason == 2 ? 2 : 0;
    twl_put_be32(hdr + 16, pdu_itt(bhs));
    fill_sn(c, hdr, true);
    twl_put_be16(hdr + 40, (uint16_t)c->params.time2wait);
    twl_put_be16(hdr + 42, (uint16_t)c->params.time2retain);
    iscsi_send_pdu(c, hdr, NULL, 0, NULL, NULL);
    if (reason != 2) {
        TWL_INFO(PART, "%s: logout (reason %u)", c->peer, reason);
        c->close_after_tx = true;
    }
}

/* ---------------- task management ---------------- */

static void send_tmf_response(struct conn *c, uint32_t itt, uint8_t response)
{
    uint8_t hdr[ISCSI_BHS_LEN] = {0};
    hdr[0] = ISCSI_OP_TMF_RSP;
    hdr[1] = ISCSI_FLAG_FINAL;
    hdr[2] = response;
    twl_put_be32(hdr + 16, itt);
    fill_sn(c, hdr, true);
    iscsi_send_pdu(c, hdr, NULL, 0, NULL, NULL);
}

static void tmf_task_gone(struct tmf_wait *w)
{
    if (--w->remaining > 0)
        return;
    if (w->conn->fd >= 0)
        send_tmf_response(w->conn, w->itt, ISCSI_TMF_RSP_COMPLETE);
    free(w);
}

/* Aborts t: no response will be sent for it. Tasks with I/O in flight end when it completes;
 * the TMF response waits for them (so the initiator may reuse the ITT and the blocks). */
static void abort_task(struct tgt_task *t, struct tmf_wait *w)
{
    if (t->aborted)
        return;
    t->aborted = true;
    if (w && t->state != TASK_DONE) {
        t->tmf = w;
        w->remaining++;
    }
    if (t->state == TASK_RECEIVING) {
        t->state = TASK_DONE;
        iscsi_task_put(t);
    }
}

void iscsi_abort_for_other_nexus(struct conn *c, uint32_t lun)
{
    unsigned n = 0;
    for (unsigned b = 0; b < TASK_HASH_SIZE; b++) {
        for (struct tgt_task *t = c->tasks[b]; t; t = t->hnext) {
            if (t->state == TASK_DONE || t->aborted || t->aborted_by_other ||
                (lun != ALL_LUNS && t->lun_id != lun))
                continue;
            /* Receiving tasks take their data and then answer; executing ones answer when
             * their I/O ends (what already reached the medium stays there). */
            t->aborted_by_other = true;
            n++;
        }
    }
    if (n)
        TWL_INFO(PART, "%s: %u task(s) on LUN %d aborted by another I_T nexus", c->peer, n,
                 lun == ALL_LUNS ? -1 : (int)lun);
}

static void handle_tmf(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    if (!take_cmdsn(c, bhs))
        return;
    uint8_t function = bhs[1] & 0x7f;
    uint32_t itt = pdu_itt(bhs);
    uint32_t rtt = twl_get_be32(bhs + 20);
    uint32_t ref_cmdsn = twl_get_be32(bhs + 32);
    uint32_t lun = pdu_lun(bhs);
    bool lun_exists = c->target && target_find_lun(c->target, lun) != NULL;
    if (c->discovery) {
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        return;
    }
    struct tmf_wait *w = calloc(1, sizeof(*w));
    if (w == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    w->itt = itt;
    w->conn = c;
    w->remaining = 1; /* released below, after every abort was issued */
    uint8_t response = ISCSI_TMF_RSP_COMPLETE;
    switch (function) {
    case ISCSI_TMF_ABORT_TASK: {
        struct tgt_task *t = task_find(c, rtt);
        if (t && t->lun_id == lun && !t->aborted) {
            abort_task(t, w);
        } else if (t == NULL && sn_lt(ref_cmdsn, c->win.exp_cmdsn)) {
            /* received and already completed */
            response = ISCSI_TMF_RSP_NO_TASK;
        }
        /* Not found and not yet received (RefCmdSN within the window): "function complete",
         * RFC 7143 11.5.1. */
        break;
    }
    case ISCSI_TMF_ABORT_TASK_SET:
    case ISCSI_TMF_CLEAR_TASK_SET:
    case ISCSI_TMF_LUN_RESET:
        if (!lun_exists) {
            response = ISCSI_TMF_RSP_NO_LUN;
            break;
        }
        /* fall through */
    case ISCSI_TMF_TARGET_WARM_RESET:
    case ISCSI_TMF_TARGET_COLD_RESET:
        for (unsigned b = 0; b < TASK_HASH_SIZE; b++) {
            for (struct tgt_task *t = c->tasks[b], *next; t; t = next) {
                next = t->hnext;
                bool whole_target = function == ISCSI_TMF_TARGET_WARM_RESET ||
                                    function == ISCSI_TMF_TARGET_COLD_RESET;
                if (whole_target || t->lun_id == lun)
                    abort_task(t, w);
            }
        }
        /* Resets reach every I_T nexus of the LU (SAM-5 6.3): each gets the reset unit
         * attention and a RESERVE(6) reservation ends. */
        if (function == ISCSI_TMF_LUN_RESET) {
            lu_reset(&target_find_lun(c->target, lun)->lu);
            server_abort_elsewhere(c, lun, NULL);
        } else if (function == ISCSI_TMF_CLEAR_TASK_SET) {
            server_abort_elsewhere(c, lun, NULL); /* the task set is shared by all nexuses */
        } else if (function != ISCSI_TMF_ABORT_TASK_SET) {
            for (size_t i = 0; i < c->target->lun_count; i++)
                lu_reset(&c->target->luns[i].lu);
            server_abort_elsewhere(c, ALL_LUNS, NULL);
        }
        TWL_INFO(PART, "%s: task management function %u on LUN %u", c->peer, function, lun);
        break;
    case ISCSI_TMF_CLEAR_ACA:
    case ISCSI_TMF_TASK_REASSIGN:
    default:
        response = function == ISCSI_TMF_TASK_REASSIGN || function == ISCSI_TMF_CLEAR_ACA
                       ? ISCSI_TMF_RSP_NOT_SUPPORTED
                       : ISCSI_TMF_RSP_REJECTED;
        break;
    }
    if (response != ISCSI_TMF_RSP_COMPLETE) {
        w->remaining--;
        if (w->remaining == 0)
            free(w);
        send_tmf_response(c, itt, response);
        return;
    }
    if (function == ISCSI_TMF_TARGET_COLD_RESET) {
        /* the response goes out, then the connection closes (RFC 7143 11.5.1) */
        tmf_task_gone(w);
        c->close_after_tx = true;
        return;
    }
    tmf_task_gone(w);
}

/* ---------------- dispatch ---------------- */

void iscsi_on_header(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    uint8_t op = pdu_opcode(bhs);
    if (!pdu_is_initiator_opcode(op)) {
        TWL_WARN(PART, "%s: unknown opcode 0x%02x", c->peer, op);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        c->rx_rejected = c->data_claimed = true; /* any data is dropped */
        return;
    }
    if (pdu_ahs_len(bhs) && op != ISCSI_OP_SCSI_CMD) {
        TWL_WARN(PART, "%s: AHS on opcode 0x%02x", c->peer, op);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_INVALID_PDU_FIELD);
        c->rx_rejected = c->data_claimed = true;
        return;
    }
    if (c->data_len > c->params.max_recv_dsl) {
        TWL_WARN(PART, "%s: opcode 0x%02x with %u data bytes, above MaxRecvDataSegmentLength %u",
                 c->peer, op, c->data_len, c->params.max_recv_dsl);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        c->rx_rejected = c->data_claimed = true;
        c->rx_task = NULL;
        if (op == ISCSI_OP_DATA_OUT) {
            struct tgt_task *t = task_find(c, pdu_itt(bhs));
            if (t && t->state == TASK_RECEIVING) {
                fail_data_phase(t, SCSI_SENSE_ABORTED_COMMAND, SCSI_ASC_DATA_PHASE_ERROR);
                /* Its data is dropped, but it may end the sequence: iscsi_on_pdu still counts
                 * it, or the command would wait forever for a Final that already came. */
                c->rx_task = t;
            }
        }
        return;
    }
    c->rx_task = NULL;
    if (op == ISCSI_OP_SCSI_CMD)
        scsi_cmd_header(c);
    else if (op == ISCSI_OP_DATA_OUT)
        data_out_header(c);
    if ((op == ISCSI_OP_SCSI_CMD || op == ISCSI_OP_DATA_OUT) && c->rx_task == NULL)
        c->data_claimed = true; /* nothing takes the data: discard */
}

void iscsi_on_pdu(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    uint8_t op = pdu_opcode(bhs);
    if (c->rx_rejected) {
        if (op == ISCSI_OP_DATA_OUT && c->rx_task)
            data_out_pdu(c); /* an oversized Data-Out: sequence bookkeeping only */
        return;
    }
    if (c->data_digest_bad) {
        TWL_WARN(PART, "%s: data digest error on opcode 0x%02x ITT 0x%08x", c->peer, op,
                 pdu_itt(bhs));
        iscsi_send_reject(c, bhs, ISCSI_REJECT_DATA_DIGEST);
        /* A command's data is lost: it still ends (with CHECK CONDITION) once its data phase
         * does. Anything else is just dropped. */
        if (c->rx_task == NULL || (op != ISCSI_OP_SCSI_CMD && op != ISCSI_OP_DATA_OUT))
            return;
        fail_data_phase(c->rx_task, SCSI_SENSE_ABORTED_COMMAND, SCSI_ASC_DIGEST_ERROR);
    }
    switch (op) {
    case ISCSI_OP_SCSI_CMD:
        scsi_cmd_pdu(c);
        break;
    case ISCSI_OP_DATA_OUT:
        data_out_pdu(c);
        break;
    case ISCSI_OP_NOP_OUT:
        handle_nop_out(c);
        break;
    case ISCSI_OP_TEXT_REQ:
        handle_text(c);
        break;
    case ISCSI_OP_LOGOUT_REQ:
        handle_logout(c);
        break;
    case ISCSI_OP_TMF_REQ:
        handle_tmf(c);
        break;
    case ISCSI_OP_LOGIN_REQ:
        TWL_WARN(PART, "%s: Login request in full feature phase", c->peer);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_PROTOCOL_ERROR);
        break;
    case ISCSI_OP_SNACK:
        /* error recovery level 0: no SNACK support (RFC 7143 11.16) */
        TWL_WARN(PART, "%s: SNACK type %u at ErrorRecoveryLevel 0", c->peer, bhs[1] & 0x0f);
        iscsi_send_reject(c, bhs, ISCSI_REJECT_CMD_NOT_SUPPORTED);
        break;
    default:
        break;
    }
}

/* The connection is gone: tasks without I/O in flight end now, the others when it completes.
 * With MaxConnections 1 this is the end of the I_T nexus too. */
void iscsi_conn_release_tasks(struct conn *c)
{
    for (size_t i = 0; c->nexus && i < c->target->lun_count; i++)
        if (c->nexus[i])
            lu_nexus_lost(&c->target->luns[i].lu, c->nexus[i]);
    for (unsigned b = 0; b < TASK_HASH_SIZE; b++) {
        for (struct tgt_task *t = c->tasks[b], *next; t; t = next) {
            next = t->hnext;
            if (t->tmf) {
                /* no TMF response can go out any more; just release the wait */
                struct tmf_wait *w = t->tmf;
                t->tmf = NULL;
                tmf_task_gone(w);
            }
            if (!t->aborted) {
                t->aborted = true;
                if (t->state == TASK_RECEIVING) {
                    t->state = TASK_DONE;
                    iscsi_task_put(t);
                }
            }
        }
    }
}
