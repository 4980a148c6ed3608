/*
 * The pair: this node's side of replication (DESIGN.md sections 4 and 5).
 *
 * Owner side: every change a command makes to a LUN this node owns (tgt_write: data, write
 * same, unmap) becomes one change record (rdma/proto.h) the backplane places in the partner's
 * inflight ring; the command completes when the partner has acknowledged it. Partner side:
 * change records arriving from the owner are applied to this node's copy in ring order. The
 * owner waits for the partner's acknowledgement, given at the durability point pair.ack:
 *   "applied"   written to this node's copy (FUA changes reach stable storage first); a
 *               record lost with this node's page cache is still on the owner's copy;
 *   "received"  persisted in this node's ring file (pair.ring_file, mapped through the
 *               tracker's persistent memory), applied right after; records acknowledged and
 *               not applied when this node stopped are applied at its next start, before it
 *               serves. On persistent memory this is the faster point; on a plain file the
 *               persist is an msync.
 *
 * Besides change records (rdma/proto.h) the ring carries metadata records, written here:
 *   0  magic "TWLX"
 *   4  LUN id
 *   8  the LU's metadata image (lu_meta_encode: mode parameters and reservations, with its
 *      own CRC32C), which replaces the partner's
 * They are sent after every change to reservations or mode parameters, before the command
 * that made it completes, in ring order with the data changes.
 *
 * Policy when the partner is away or a replica fails (DESIGN.md section 5): "available"
 * completes the write GOOD and the pair runs degraded, "strict" fails it (iscsi.c chooses the
 * status from the replica's outcome). Either way every LUN this node owns has a log
 * (tracker.h, <state_dir>/<iqn>.lun<N>.trk): each change is tracked from before it is issued
 * until its replica is done, and one whose replica failed leaves its regions dirty. Opening the
 * log after a crash turns what was in flight into dirty regions.
 *
 * Resync: while the partner is connected and an owned LUN has dirty regions, a thread copies
 * them, one region at a time, as ordinary change records through the same ring: it holds the
 * region's range lock while it reads the region and until the partner has applied it, so a new
 * write to the region comes before the copy (and the copy reads it) or after it (and follows
 * it in the ring); then the region is clean. Regions of zeros go as UNMAP.
 */
#include "replica.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bufpool.h"
#include "handover.h"
#include "media.h"
#include "proto.h"
#include "rdma.h"
#include "server_internal.h"
#include "throttle.h"
#include "tracker.h"

#define RPART "pair"

#define META_MAGIC    0x54574c58u  /* "TWLX" */
#define DIRTY_MAGIC   0x54574c44u  /* "TWLD" */
#define GENS_MAGIC    0x54574c47u  /* "TWLG" */
#define FLUSH_MAGIC   0x54574c46u  /* "TWLF" */
#define DIRTY_LAST    1u           /* the last dirty-list record of a LUN on this connection */
#define DIRTY_RUNS    1024u        /* runs per dirty-list record */
#define AL_SLOTS      4096u        /* regions tracked as hot at once, per LUN */
#define PROGRESS_S    5            /* resync progress in the log this often */
#define COLD_FLUSH_NS 500000000ull /* regions idle this long leave the activity log */

/* One LUN's copy on this node, with its log. */
struct lun_copy {
    struct tgt_lun *lun;
    struct trk_log *log;
    atomic_bool primary; /* this node writes the LUN (ALUA active here) and replicates */
    atomic_bool held;    /* primary, but transitioning until the copies were compared at start */
    atomic_bool peer_discarded; /* the admin discarded the partner's copy (told in the hello) */
    /* decided at each handshake (backplane thread); under replica.state_lock */
    int decision;      /* enum trk_sync_decision of the last handshake; -1 before one */
    bool paired;       /* the last handshake paired this LUN (false: refused, or none yet) */
    bool source;       /* this copy is the sync source on this connection */
    bool full;         /* the target's copy is unknown: every region is to be copied */
    bool need_gens;    /* the target takes this copy's generations after the resync */
    bool list_sent;    /* target: its dirty regions went to the source on this connection */
    bool peer_listed;  /* source: the target's dirty regions arrived on this connection */
    bool refusal_said; /* the refusal of this LUN was logged (once per episode) */
    bool meta_sent;    /* source: the LU's metadata image went to the partner on this connection */
    uint64_t peer_dirty;
    /* the partner asked to serve this LUN (takeover); under replica.handover_lock */
    bool ask_pending;
    uint32_t ask_flags;
    uint64_t ask_token;
    /* resync progress, for status */
    atomic_bool resyncing;
    atomic_bool resync_paused; /* by the admin: no copying until resumed (not persisted) */
    atomic_uint_fast64_t resync_done_bytes, resync_rate_bytes_s;
    uint64_t resynced_bytes;                 /* since the copies last differed */
    atomic_uint_fast64_t unreplicated_bytes; /* changes left without replica, same span */
};

struct replica {
    struct tgt_server *srv;
    const struct tgt_config *cfg;
    struct tgt_target *target;
    struct twl_rdma_backplane *bp;
    struct trk_pmem *ring_map; /* ack received: the durable ring */
    struct twl_rdma_hello mine;
    char port_local[8], port_peer[8];
    pthread_mutex_t order; /* change seq and ring order agree: numbered and queued together */
    uint64_t seq;          /* under order; the first change is 1 */
    atomic_bool degraded;
    atomic_uint_fast64_t unreplicated; /* changes completed without their replica */
    unsigned apply_delay_ms;           /* fault injection for tests (FAULT_APPLY_DELAY_ENV) */
    struct lun_copy *copies;           /* every LUN of the target, in its order */
    size_t copy_count;
    pthread_mutex_t state_lock; /* the copies' handshake fields */
    uint64_t handshakes;        /* under state_lock: accepted handshakes */
    char refusal[256];          /* under state_lock: why the last handshake was refused */
    uint64_t started_ns;        /* when this node started: held LUNs are served alone later */
    /* the resync thread */
    pthread_t resync;
    bool resync_started;
    pthread_mutex_t resync_lock;
    pthread_cond_t resync_cond; /* stop, or a wait of the resync thread ends */
    bool resync_stop;
    atomic_uint_fast64_t client_changes; /* tracked by commands: the resync yields to them */
    struct throttle *throttle;           /* write admission; paces the resync too when enabled */
    /* handovers (takeover, giveback): one at a time on this node (move_lock); the handover
     * thread answers the partner's asks */
    pthread_mutex_t move_lock;
    pthread_t handover;
    bool handover_started;
    pthread_mutex_t handover_lock;
    pthread_cond_t handover_cond; /* an ask came, a LUN was given here, an ask was refused */
    bool handover_stop;
    uint64_t ask_tokens;                          /* under handover_lock: the last ask's token */
    uint64_t refused_token;                       /* under handover_lock: the last refused ask */
    char refused_reason[HANDOVER_REASON_MAX + 1]; /* its reason */
    struct move_request *moves; /* under handover_lock: SET TARGET PORT GROUPS, in order */
    struct forward_run *fwd_in; /* under handover_lock: the partner's commands to run here */
    /* this node's commands forwarded to the partner, waiting for their answers */
    pthread_mutex_t fwd_lock;
    struct forward_wait *forwards; /* under fwd_lock */
    uint64_t fwd_tokens;           /* under fwd_lock */
};

/* A command forwarded to the partner (replica_forward_lu), until its answer. */
struct forward_wait {
    struct forward_wait *next;
    uint64_t token, sent_ns;
    uint32_t lun;
    replica_forward_done_fn done;
    void *cookie;
};

/* A command of the partner's to carry out here (the record, copied), for the handover thread. */
struct forward_run {
    struct forward_run *next;
    uint32_t len;
    uint8_t rec[];
};

#define FORWARD_WAIT_MS 10000u /* a forwarded command's answer comes within this */

/* A move an initiator asked for (replica_move_async), for the handover thread. */
struct move_request {
    struct move_request *next;
    uint32_t id;
    bool to_here;
    replica_move_done_fn done;
    void *cookie;
};

/* Tests make this node slow to apply what it received, so that with ack = "received" a crash
 * finds records acknowledged and not applied. */
#define FAULT_APPLY_DELAY_ENV "TWINLUN_FAULT_APPLY_DELAY_MS"

struct pending {
    struct replica *r;
    tgt_write_done_fn done;
    void *cookie;
};

static struct lun_copy *copy_find(struct replica *r, uint32_t id)
{
    for (size_t i = 0; i < r->copy_count; i++)
        if (r->copies[i].lun->info.id == id)
            return &r->copies[i];
    return NULL;
}

/* This node serves the LUN: it writes it, and its port is active for it. */
static bool serving(struct lun_copy *c)
{
    return atomic_load(&c->primary) && !atomic_load(&c->held);
}

/* The LUN's ALUA state here changes (-1: the port group's, active): every nexus hears of it. */
static void announce_alua(struct lun_copy *c, int state)
{
    atomic_store(&c->lun->lu.alua_state, state);
    lu_alua_changed(&c->lun->lu);
}

/* This node starts or stops writing a LUN: its ALUA state here follows (standby rejects media
 * access), and every nexus hears of the change. */
static void set_primary(struct replica *r, struct lun_copy *c, bool primary, const char *why)
{
    bool was_held = atomic_exchange(&c->held, false);
    if (atomic_exchange(&c->primary, primary) == primary && !was_held)
        return;
    announce_alua(c, primary ? -1 : SCSI_ALUA_STANDBY);
    TWL_WARN(RPART, "LUN %u: %s here (%s)", c->lun->info.id,
             primary ? "served (active)" : "standby", why);
    (void)r;
}

/* A replica failed or could not be sent: the copies differ from here until a resync. */
static void enter_degraded(struct replica *r, int err)
{
    atomic_fetch_add(&r->unreplicated, 1);
    if (atomic_exchange(&r->degraded, true))
        return;
    TWL_WARN(RPART,
             "degraded: a change has no replica on %s (%s); policy %s; the copies differ "
             "until a resync",
             r->cfg->pair.partner, strerror(-err),
             r->cfg->pair.policy == TGT_PAIR_STRICT ? "strict fails such writes"
                                                    : "available completes them");
    /* this copy now takes writes its partner lacks: a new generation for each LUN served */
    for (size_t i = 0; i < r->copy_count; i++)
        if (atomic_load(&r->copies[i].primary))
            trk_log_diverge(r->copies[i].log);
}

static void replica_done(void *cookie, int err)
{
    struct pending *p = cookie;
    struct replica *r = p->r;
    if (err == 0) {
        if (atomic_exchange(&r->degraded, false))
            TWL_INFO(RPART, "replicating to %s again", r->cfg->pair.partner);
    } else {
        enter_degraded(r, err);
    }
    p->done(p->cookie, err ? -EIO : 0);
    free(p);
}

/* ---- the LUNs' logs ---- */

static int track(void *ctx, uint32_t lun, uint64_t lba, uint64_t blocks)
{
    struct replica *r = ctx;
    struct lun_copy *o = copy_find(r, lun);
    if (o == NULL)
        return 0;
    atomic_fetch_add(&r->client_changes, 1);
    uint32_t bs = o->lun->info.block_size;
    int rc = trk_log_write_begin(o->log, lba * bs, blocks * bs);
    if (rc)
        TWL_ERROR(RPART, "LUN %u LBA %" PRIu64 "+%" PRIu64 ": cannot track the change: %s", lun,
                  lba, blocks, strerror(-rc));
    return rc;
}

static void untrack(void *ctx, uint32_t lun, uint64_t lba, uint64_t blocks, bool same)
{
    struct replica *r = ctx;
    struct lun_copy *o = copy_find(r, lun);
    if (o == NULL)
        return;
    uint32_t bs = o->lun->info.block_size;
    int rc = trk_log_write_end(o->log, lba * bs, blocks * bs, same);
    if (rc)
        TWL_ERROR(RPART, "LUN %u LBA %" PRIu64 "+%" PRIu64 ": cannot untrack the change: %s", lun,
                  lba, blocks, strerror(-rc));
    if (!same) {
        atomic_fetch_add(&o->unreplicated_bytes, blocks * bs);
        TWL_DEBUG(RPART, "LUN %u LBA %" PRIu64 "+%" PRIu64 ": marked dirty (no replica)", lun, lba,
                  blocks);
        /* a region may have turned dirty: the resync thread looks */
        pthread_mutex_lock(&r->resync_lock);
        pthread_cond_broadcast(&r->resync_cond);
        pthread_mutex_unlock(&r->resync_lock);
    }
}

/* Every LUN has a log on both nodes: the owner's tracks what it writes; the partner's keeps its
 * copy's generations, and tracks writes if this node is made to serve the LUN. */
static int open_logs(struct replica *r)
{
    r->copies = calloc(r->target->lun_count, sizeof(*r->copies));
    if (r->copies == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < r->target->lun_count; i++) {
        struct tgt_lun *l = &r->target->luns[i];
        char path[PATH_MAX + TGT_NAME_MAX + 32];
        snprintf(path, sizeof(path), "%s/%s.lun%u.trk", r->cfg->state_dir, r->target->cfg->iqn,
                 l->info.id);
        struct trk_log_recovery rec;
        struct lun_copy *o = &r->copies[r->copy_count];
        int rc = trk_log_open(path, l->info.block_count * l->info.block_size,
                              (uint32_t)r->cfg->pair.region_bytes, AL_SLOTS, &o->log, &rec);
        if (rc) {
            TWL_ERROR(RPART, "LUN %u: the log %s cannot be used: %s", l->info.id, path,
                      strerror(-rc));
            return rc;
        }
        if (l->store.created) {
            /* a copy that reads as zeros: two such need no first copy */
            if (!rec.created)
                TWL_WARN(RPART,
                         "LUN %u: %s was created empty but its log %s is older: the "
                         "copy starts over as blank",
                         l->info.id, l->store.path, path);
            trk_log_set_blank(o->log);
        }
        o->lun = l;
        o->decision = -1;
        bool owner = strcmp(l->cfg->owner, r->cfg->node_name) == 0;
        atomic_init(&o->primary, owner);
        if (owner && r->cfg->pair.alone_after_ms) {
            /* the partner's copy may be newer (promoted while this node was down) */
            atomic_init(&o->held, true);
            atomic_store(&l->lu.alua_state, SCSI_ALUA_TRANSITIONING);
            TWL_INFO(RPART,
                     "LUN %u: held (ALUA transitioning) until %s's copy is compared, at "
                     "most %u ms",
                     l->info.id, r->cfg->pair.partner, r->cfg->pair.alone_after_ms);
        }
        r->copy_count++;
        uint64_t rs = r->cfg->pair.region_bytes;
        if (rec.created)
            TWL_INFO(RPART, "LUN %u: new log %s (regions of %" PRIu64 " KiB)", l->info.id, path,
                     rs >> 10);
        else
            TWL_INFO(RPART,
                     "LUN %u: log %s: %" PRIu64 " regions were in flight at the last stop, %" PRIu64
                     " dirty (%" PRIu64 " MiB) to resync",
                     l->info.id, path, rec.al_regions, rec.dirty_regions,
                     rec.dirty_regions * rs >> 20);
    }
    return 0;
}

static void close_logs(struct replica *r)
{
    for (size_t i = 0; i < r->copy_count; i++)
        trk_log_close(r->copies[i].log);
    free(r->copies);
    r->copies = NULL;
    r->copy_count = 0;
}

/* Describes w as a change record (all but its seq). Returns false for metadata. */
static bool describe(const struct tgt_write *w, struct twl_rdma_change *ch, const void **data)
{
    memset(ch, 0, offsetof(struct twl_rdma_change, extents));
    ch->lun = w->lun;
    ch->block_size = w->block_size;
    ch->fua = w->fua;
    *data = NULL;
    switch (w->kind) {
    case TGT_WRITE_DATA:
        ch->kind = TWL_RDMA_CHANGE_DATA;
        ch->lba = w->lba;
        ch->blocks = w->blocks;
        ch->data_len = w->blocks * w->block_size;
        *data = w->data;
        return true;
    case TGT_WRITE_SAME:
        ch->kind = TWL_RDMA_CHANGE_SAME;
        ch->lba = w->lba;
        ch->blocks = w->blocks;
        ch->data_len = w->data ? w->block_size : 0;
        *data = w->data;
        return true;
    case TGT_WRITE_UNMAP:
        ch->kind = TWL_RDMA_CHANGE_UNMAP;
        ch->extent_count = (uint32_t)w->extent_count;
        for (size_t i = 0; i < w->extent_count && i < TWL_RDMA_CHANGE_MAX_EXTENTS; i++) {
            ch->extents[i].lba = w->extents[i].lba;
            ch->extents[i].blocks = w->extents[i].blocks;
        }
        return true;
    case TGT_WRITE_META:
        *data = w->data;
        return false;
    }
    return false;
}

static int replicate(void *ctx, const struct tgt_write *w, tgt_write_done_fn done, void *cookie)
{
    struct replica *r = ctx;
    static _Thread_local struct twl_rdma_change ch;
    static _Thread_local uint8_t hdr[TWL_RDMA_CHANGE_MAX_HDR_LEN];
    const void *data;
    bool change = describe(w, &ch, &data);
    uint32_t hdr_len, data_len;
    struct pending *p = malloc(sizeof(*p));
    if (p == NULL)
        return -ENOMEM;
    p->r = r;
    p->done = done;
    p->cookie = cookie;

    /* numbered and queued under one lock, so the partner sees seq in ring order */
    pthread_mutex_lock(&r->order);
    int rc = 0;
    if (change) {
        ch.seq = r->seq + 1;
        rc = twl_rdma_change_encode(&ch, NULL, hdr, sizeof(hdr));
        hdr_len = (uint32_t)twl_rdma_change_header_len(&ch);
        data_len = ch.data_len;
    } else {
        twl_put_be32(hdr, META_MAGIC);
        twl_put_be32(hdr + 4, w->lun);
        hdr_len = 8;
        data_len = w->data_len;
    }
    if (rc == 0)
        rc = twl_rdma_backplane_submit(r->bp, hdr, hdr_len, data, data_len, replica_done, p);
    if (rc == 0 && change)
        r->seq++;
    pthread_mutex_unlock(&r->order);

    if (rc == 0)
        return 0;
    free(p);
    if (rc == -EINVAL) {
        TWL_ERROR(RPART, "LUN %u LBA %" PRIu64 ": change not encodable: %s", w->lun, w->lba,
                  strerror(-rc));
        return rc;
    }
    if (rc == -ENOTCONN) {
        /* no partner: the command chooses its status from that, like from a failed replica */
        enter_degraded(r, rc);
        done(cookie, rc);
        return 0;
    }
    return rc;
}

/* ---- partner side ---- */

/* Makes the copies this node serves (primary) or applies (the others) stable. */
static int flush_copies(struct replica *r, bool primary)
{
    int rc = 0;
    for (size_t i = 0; i < r->copy_count && rc == 0; i++) {
        struct lun_copy *c = &r->copies[i];
        if (atomic_load(&c->primary) != primary)
            continue;
        rc = backing_sync(&c->lun->store);
        if (rc)
            TWL_ERROR(RPART, "LUN %u: cannot make %s stable: %s", c->lun->info.id,
                      c->lun->store.path, strerror(-rc));
    }
    return rc;
}

/* The target of a resync lists its dirty regions: the source copies them too. */
static int apply_dirty_list(struct replica *r, const uint8_t *rec, uint32_t len)
{
    uint32_t id = twl_get_be32(rec + 4), flags = twl_get_be32(rec + 8), n = twl_get_be32(rec + 12);
    struct lun_copy *c = copy_find(r, id);
    if (c == NULL || len != 16 + 16ull * n || n > DIRTY_RUNS) {
        TWL_ERROR(RPART, "dirty list of LUN %u from %s refused: %s", id, r->cfg->pair.partner,
                  c ? "malformed" : "no such LUN here");
        return -EBADMSG;
    }
    uint64_t rs = trk_log_region_size(c->log), regions = trk_log_regions(c->log);
    for (uint32_t i = 0; i < n; i++) {
        uint64_t first = twl_get_be64(rec + 16 + 16 * i), count = twl_get_be64(rec + 24 + 16 * i);
        if (first >= regions || count > regions - first) {
            TWL_ERROR(RPART,
                      "dirty list of LUN %u from %s: regions %" PRIu64 "+%" PRIu64
                      " beyond the LUN",
                      id, r->cfg->pair.partner, first, count);
            return -EBADMSG;
        }
        int rc = trk_log_mark(c->log, first * rs, count * rs);
        if (rc)
            return rc;
    }
    if (flags & DIRTY_LAST) {
        pthread_mutex_lock(&r->state_lock);
        c->peer_listed = true;
        pthread_mutex_unlock(&r->state_lock);
        pthread_mutex_lock(&r->resync_lock);
        pthread_cond_broadcast(&r->resync_cond);
        pthread_mutex_unlock(&r->resync_lock);
    }
    return 0;
}

/* The end of a resync: this copy equals the source's, and takes its generations. */
static int apply_gens(struct replica *r, const uint8_t *rec, uint32_t len)
{
    uint32_t id = twl_get_be32(rec + 4);
    struct lun_copy *c = copy_find(r, id);
    if (c == NULL || len != 40) {
        TWL_ERROR(RPART, "generations of LUN %u from %s refused: %s", id, r->cfg->pair.partner,
                  c ? "malformed" : "no such LUN here");
        return -EBADMSG;
    }
    struct trk_gens g = {.current = twl_get_be64(rec + 8),
                         .bitmap = twl_get_be64(rec + 16),
                         .history = {twl_get_be64(rec + 24), twl_get_be64(rec + 32)}};
    int rc = trk_log_clear(c->log, 0, trk_log_regions(c->log));
    if (rc == 0)
        rc = trk_log_resynced(c->log, &g);
    if (rc == 0) {
        pthread_mutex_lock(&r->state_lock);
        c->need_gens = false;
        pthread_mutex_unlock(&r->state_lock);
    }
    if (rc)
        TWL_ERROR(RPART, "LUN %u: cannot record the end of the resync: %s", id, strerror(-rc));
    else
        TWL_INFO(RPART, "LUN %u: this copy equals %s's (generation %016" PRIx64 ")", id,
                 r->cfg->pair.partner, g.current);
    return rc;
}

static int apply_handover(struct replica *r, const uint8_t *rec, uint32_t len);
static int queue_forwarded(struct replica *r, const uint8_t *rec, uint32_t len);
static int apply_answer(struct replica *r, const uint8_t *rec, uint32_t len);
static void forward_expire(struct replica *r, bool every);

static int apply(void *ctx, const void *rec, uint32_t len)
{
    struct replica *r = ctx;
    static struct twl_rdma_change ch; /* the backplane thread only */
    const uint8_t *data;
    if (len >= 4 && twl_get_be32(rec) == HANDOVER_MAGIC)
        return apply_handover(r, rec, len);
    if (len >= 4 && twl_get_be32(rec) == FORWARD_MAGIC)
        return queue_forwarded(r, rec, len);
    if (len >= 4 && twl_get_be32(rec) == ANSWER_MAGIC)
        return apply_answer(r, rec, len);
    if (len >= 8 && twl_get_be32(rec) == META_MAGIC) {
        uint32_t id = twl_get_be32((const uint8_t *)rec + 4);
        struct lun_copy *c = copy_find(r, id);
        int rc = c ? lu_meta_apply(&c->lun->lu, (const uint8_t *)rec + 8, len - 8) : -ENOENT;
        if (rc)
            TWL_ERROR(RPART, "metadata of LUN %u from %s not applied: %s", id, r->cfg->pair.partner,
                      strerror(-rc));
        return rc;
    }
    if (len >= 16 && twl_get_be32(rec) == DIRTY_MAGIC)
        return apply_dirty_list(r, rec, len);
    if (len >= 8 && twl_get_be32(rec) == GENS_MAGIC)
        return apply_gens(r, rec, len);
    if (len == 4 && twl_get_be32(rec) == FLUSH_MAGIC)
        return flush_copies(r, false);
    if (r->apply_delay_ms)
        usleep(r->apply_delay_ms * 1000u);
    int rc = twl_rdma_change_decode(rec, len, &ch, &data);
    if (rc) {
        TWL_ERROR(RPART, "change record from %s refused: %s", r->cfg->pair.partner,
                  twl_rdma_change_strerror(&ch));
        return rc;
    }
    struct lun_copy *c = copy_find(r, ch.lun); /* every LUN of the target has its copy */
    struct tgt_lun *lun = c ? c->lun : NULL;
    if (lun == NULL || lun->info.block_size != ch.block_size) {
        TWL_ERROR(RPART, "change seq %" PRIu64 " for LUN %u: no such LUN here", ch.seq, ch.lun);
        return -ENOENT;
    }
    if (atomic_load(&c->primary)) {
        /* both nodes writing one LUN would make the copies differ unseen */
        TWL_ERROR(RPART, "change seq %" PRIu64 " for LUN %u refused: this node serves it", ch.seq,
                  ch.lun);
        return -EPERM;
    }
    if (!twl_rdma_change_within(&ch, lun->info.block_count)) {
        /* a file-backed copy would grow, or a block device's write fail, on such a change */
        TWL_ERROR(RPART,
                  "change seq %" PRIu64 " for LUN %u refused: LBA %" PRIu64 "+%u reaches past its "
                  "%" PRIu64 " blocks",
                  ch.seq, ch.lun, ch.lba, ch.blocks, lun->info.block_count);
        return -ERANGE;
    }
    uint32_t bs = ch.block_size;
    switch (ch.kind) {
    case TWL_RDMA_CHANGE_DATA:
        rc = backing_write_at(&lun->store, data, ch.data_len, ch.lba * bs, ch.fua);
        break;
    case TWL_RDMA_CHANGE_SAME: {
        /* the same code the owner ran, so both copies get the same bytes */
        struct scsi_plan plan = {.action = SCSI_ACTION_WRITE_SAME,
                                 .lba = ch.lba,
                                 .blocks = ch.blocks,
                                 .fua = ch.fua,
                                 .ndob = data == NULL,
                                 .data_out = ch.data_len};
        media_execute(&lun->store, &lun->info, &plan, (uint8_t *)data, NULL, 0);
        rc = plan.status == SCSI_STATUS_GOOD ? 0 : -EIO;
        break;
    }
    case TWL_RDMA_CHANGE_UNMAP:
        rc = 0;
        for (uint32_t i = 0; i < ch.extent_count && rc == 0; i++)
            rc = backing_deallocate(&lun->store, ch.extents[i].lba * bs,
                                    (uint64_t)ch.extents[i].blocks * bs);
        break;
    }
    if (rc)
        TWL_ERROR(RPART, "change seq %" PRIu64 " LUN %u LBA %" PRIu64 "+%u: applying failed: %s",
                  ch.seq, ch.lun, ch.lba, ch.blocks, strerror(-rc));
    return rc;
}

/* This node's handshake: its LUNs as configured, with each copy's generations and role now. */
static int make_hello(void *ctx, void *buf, uint32_t cap)
{
    struct replica *r = ctx;
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        struct twl_rdma_hello_lun *hl = &r->mine.luns[i];
        struct trk_gens g;
        trk_log_gens(c->log, &g);
        hl->gens[0] = g.current;
        hl->gens[1] = g.bitmap;
        hl->gens[2] = g.history[0];
        hl->gens[3] = g.history[1];
        hl->dirty_regions = trk_log_dirty_count(c->log);
        hl->flags = (atomic_load(&c->primary) ? TWL_RDMA_HELLO_PRIMARY : 0) |
                    (atomic_load(&c->peer_discarded) ? TWL_RDMA_HELLO_PEER_DISCARDED : 0);
    }
    int len = twl_rdma_hello_encode(&r->mine, buf, cap);
    if (len < 0)
        TWL_ERROR(RPART, "cannot describe this node to its partner: %s", strerror(-len));
    return len;
}

/* What one LUN's two copies decide at a handshake (both nodes reach the same answer). */
struct lun_verdict {
    enum trk_sync_decision d;
    bool full, source;
};

static struct lun_verdict judge_lun(struct replica *r, struct lun_copy *c,
                                    const struct twl_rdma_hello_lun *tl)
{
    struct trk_gens mine, peer = {.current = tl->gens[0],
                                  .bitmap = tl->gens[1],
                                  .history = {tl->gens[2], tl->gens[3]}};
    if (tl->flags & TWL_RDMA_HELLO_PEER_DISCARDED) {
        trk_log_gens(c->log, &mine);
        if (mine.current != TRK_GEN_DISCARDED)
            TWL_WARN(RPART,
                     "LUN %u: %s's admin discarded this copy's writes: it becomes the sync "
                     "target",
                     c->lun->info.id, r->cfg->pair.partner);
        trk_log_discard(c->log);
        set_primary(r, c, false, "its copy was discarded");
    }
    trk_log_gens(c->log, &mine);
    if (atomic_load(&c->peer_discarded)) {
        if (peer.bitmap == 0)
            peer.bitmap = peer.current;
        peer.current = TRK_GEN_DISCARDED;
    }
    struct lun_verdict v = {.d = trk_gens_compare(&mine, &peer, &v.full)};
    bool owner_here = strcmp(c->lun->cfg->owner, r->cfg->node_name) == 0;
    bool mine_primary = atomic_load(&c->primary);
    bool peer_primary = tl->flags & TWL_RDMA_HELLO_PRIMARY;
    switch (v.d) {
    case TRK_IN_SYNC:
        v.source = mine_primary != peer_primary ? mine_primary : owner_here;
        break;
    case TRK_NEW_PAIR:
        v.source = owner_here;
        break;
    case TRK_SYNC_SOURCE:
        v.source = true;
        break;
    default:
        v.source = false;
        break;
    }
    return v;
}

static int check_hello(void *ctx, const void *theirs, uint32_t len)
{
    struct replica *r = ctx;
    static struct twl_rdma_hello h; /* the backplane thread only */
    char err[256];
    int rc = twl_rdma_hello_decode(theirs, len, &h, err, sizeof(err));
    if (rc == 0)
        rc = twl_rdma_hello_check(&r->mine, &h, err, sizeof(err));
    if (rc) {
        TWL_ERROR(RPART, "partner refused: %s", err);
        return -EPROTO;
    }
    struct lun_verdict v[TWL_RDMA_HELLO_MAX_LUNS];
    pthread_mutex_lock(&r->state_lock);
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        const struct twl_rdma_hello_lun *tl = twl_rdma_hello_find_lun(&h, c->lun->info.id);
        v[i] = judge_lun(r, c, tl);
        c->decision = (int)v[i].d;
        if (v[i].d != TRK_SPLIT_BRAIN && v[i].d != TRK_UNRELATED)
            continue;
        rc = -EPROTO;
        c->paired = false;
        snprintf(r->refusal, sizeof(r->refusal),
                 "LUN %u: %s: both copies took writes apart (%" PRIu64 " dirty regions here, "
                 "%" PRIu64 " on %s); no automatic resync: run 'twinlunctl resolve --discard "
                 "NODE' on either node, naming the node whose writes are dropped",
                 c->lun->info.id, trk_sync_decision_name(v[i].d), trk_log_dirty_count(c->log),
                 tl->dirty_regions, h.node);
        if (!c->refusal_said)
            TWL_ERROR(RPART, "not pairing with %s: %s", h.node, r->refusal);
        c->refusal_said = true;
    }
    if (rc) {
        pthread_mutex_unlock(&r->state_lock);
        return rc;
    }
    r->refusal[0] = '\0';
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        const struct twl_rdma_hello_lun *tl = twl_rdma_hello_find_lun(&h, c->lun->info.id);
        c->paired = true;
        c->source = v[i].source;
        c->full = v[i].source && v[i].full;
        c->need_gens = v[i].d != TRK_IN_SYNC || tl->dirty_regions > 0;
        c->list_sent = c->peer_listed = false;
        c->refusal_said = false;
        c->meta_sent = false;
        c->peer_dirty = tl->dirty_regions;
        if (v[i].source) {
            atomic_store(&c->peer_discarded, false); /* the partner has heard it */
            /* what the partner applied since its last flush may be gone with its page cache */
            uint64_t active = trk_log_mark_active(c->log);
            if (active)
                TWL_INFO(RPART,
                         "LUN %u: %" PRIu64 " regions written since %s last made its "
                         "copy stable are resynced",
                         c->lun->info.id, active, h.node);
        }
        set_primary(r, c, v[i].source,
                    v[i].source ? "the newer or the owner's copy is here"
                                : "the partner's copy is newer or the owner's");
        if (v[i].d != TRK_IN_SYNC || c->peer_dirty || trk_log_dirty_count(c->log))
            TWL_INFO(RPART,
                     "LUN %u: %s; this copy is the sync %s%s (%" PRIu64 " dirty regions here, "
                     "%" PRIu64 " on %s)",
                     c->lun->info.id, trk_sync_decision_name(v[i].d),
                     v[i].source ? "source" : "target", v[i].full ? ", every region copied" : "",
                     trk_log_dirty_count(c->log), tl->dirty_regions, h.node);
    }
    r->handshakes++;
    pthread_mutex_unlock(&r->state_lock);
    pthread_mutex_lock(&r->resync_lock);
    pthread_cond_broadcast(&r->resync_cond);
    pthread_mutex_unlock(&r->resync_lock);
    TWL_INFO(RPART, "paired with %s: %u LUNs agree", h.node, h.lun_count);
    return 0;
}

static void persist(void *ctx, const void *addr, size_t len)
{
    struct replica *r = ctx;
    trk_pmem_persist(r->ring_map, addr, len);
}

/* Maps the ring file, never smaller than it is: an earlier run with a larger ring may have
 * left acknowledged records in it. */
static int map_ring_file(struct replica *r)
{
    const char *path = r->cfg->pair.ring_file;
    size_t len = TWL_RDMA_DRING_HDR_LEN + r->cfg->pair.ring_bytes;
    struct stat st;
    if (stat(path, &st) == 0 && (size_t)st.st_size > len)
        len = (size_t)st.st_size;
    int rc = trk_pmem_open(path, len, &r->ring_map);
    if (rc == 0)
        TWL_INFO(RPART, "ack received: the inflight ring is %s (%s)", path,
                 trk_pmem_is_pmem(r->ring_map) ? "persistent memory"
                                               : "a plain file, persisted by msync");
    return rc;
}

/* ---- resync ---- */

#define RUN_REGIONS_MAX 1024u      /* regions one deallocation may cover (and one range lock) */
#define RESYNC_DEPTH    8u         /* copies in flight at once: the link's round trip hidden */
#define COPY_BYTES      (1u << 20) /* dirty data regions in a row go as one record up to this */

/* Bytes of data one resync copy carries: whole regions, at least one. */
static uint64_t copy_bytes(uint64_t region_size)
{
    return region_size > COPY_BYTES ? region_size : COPY_BYTES;
}

/* The resync thread waiting for a range lock and then for a replica. */
struct resync_wait {
    struct lu_range range;
    struct replica *r;
    bool granted, done;
    int err;
    /* a resync slot: the regions it copies, under its range lock until the partner has them */
    uint64_t region, count, span, len;
    uint8_t *buf;
    uint64_t charged; /* bytes the throttle admitted for it, released when it is done */
};

static void resync_signal(struct replica *r, bool *flag)
{
    pthread_mutex_lock(&r->resync_lock);
    *flag = true;
    pthread_cond_broadcast(&r->resync_cond);
    pthread_mutex_unlock(&r->resync_lock);
}

static void resync_granted(struct lu_range *range)
{
    struct resync_wait *w =
        (struct resync_wait *)((uint8_t *)range - offsetof(struct resync_wait, range));
    resync_signal(w->r, &w->granted);
}

static void resync_replicated(void *cookie, int err)
{
    struct resync_wait *w = cookie;
    w->err = err;
    resync_signal(w->r, &w->done);
}

static void resync_wait_for(struct replica *r, bool *flag)
{
    pthread_mutex_lock(&r->resync_lock);
    while (!*flag)
        pthread_cond_wait(&r->resync_cond, &r->resync_lock);
    pthread_mutex_unlock(&r->resync_lock);
}

static bool resync_stopping(struct replica *r)
{
    pthread_mutex_lock(&r->resync_lock);
    bool stop = r->resync_stop;
    pthread_mutex_unlock(&r->resync_lock);
    return stop;
}

static bool partner_connected(struct replica *r)
{
    struct twl_rdma_bp_stats st;
    twl_rdma_backplane_stats(r->bp, &st);
    return st.connected;
}

static bool all_zero(const uint8_t *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

/* The CLOCK_REALTIME deadline ns from now, for pthread_cond_timedwait. */
static struct timespec realtime_after(uint64_t ns)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t nsec = (uint64_t)ts.tv_nsec + ns % 1000000000ull;
    ts.tv_sec += (time_t)(ns / 1000000000ull + nsec / 1000000000ull);
    ts.tv_nsec = (long)(nsec % 1000000000ull);
    return ts;
}

/* With resync_lock held: waits up to ns for resync_cond (a stop, a region turned dirty). */
static void resync_sleep_locked(struct replica *r, uint64_t ns)
{
    if (r->resync_stop)
        return;
    struct timespec ts = realtime_after(ns);
    pthread_cond_timedwait(&r->resync_cond, &r->resync_lock, &ts);
}

/* Client writes came while a region was copied in spent ns, and the throttle is disabled: the
 * resync pauses so that they get what throttle.resync_share leaves of the backplane's time.
 * (With the throttle, its bucket splits the rate instead.) */
static uint64_t resync_yield(struct replica *r, uint64_t spent)
{
    uint32_t share = 100 - r->cfg->throttle.resync_share;
    uint64_t t0 = twl_now_ns();
    pthread_mutex_lock(&r->resync_lock);
    resync_sleep_locked(r, spent * share / (100 - share));
    pthread_mutex_unlock(&r->resync_lock);
    return twl_now_ns() - t0;
}

/* Sends a record of the pair's own (dirty list, generations) and waits until it is applied. */
static int send_meta_wait(struct replica *r, const uint8_t *hdr, uint32_t hdr_len, const void *data,
                          uint32_t data_len)
{
    struct resync_wait w = {.r = r};
    pthread_mutex_lock(&r->order);
    int rc = twl_rdma_backplane_submit(r->bp, hdr, hdr_len, data, data_len, resync_replicated, &w);
    pthread_mutex_unlock(&r->order);
    if (rc)
        return rc;
    resync_wait_for(r, &w.done);
    return w.err;
}

/* The LU's metadata image (reservations, mode parameters) to the partner, applied there before
 * this returns: a partner that was away while they changed has them again. */
static int send_lu_meta(struct replica *r, struct lun_copy *c)
{
    uint8_t *image = malloc(LU_META_MAX);
    if (image == NULL)
        return -ENOMEM;
    size_t len = lu_meta_encode(&c->lun->lu, image, LU_META_MAX);
    uint8_t hdr[8];
    twl_put_be32(hdr, META_MAGIC);
    twl_put_be32(hdr + 4, c->lun->info.id);
    int rc = len && len <= LU_META_MAX ? send_meta_wait(r, hdr, sizeof(hdr), image, (uint32_t)len)
                                       : -ENOMEM;
    free(image);
    if (rc)
        TWL_ERROR(RPART, "LUN %u: reservations and mode parameters not sent to %s: %s",
                  c->lun->info.id, r->cfg->pair.partner, strerror(-rc));
    return rc;
}

/* The sync target tells the source which regions it holds dirty (written here apart, to be
 * overwritten), as runs, ending with DIRTY_LAST. Record: 0 "TWLD", 4 LUN id, 8 flags, 12 run
 * count n, 16 n runs of (first region, region count), all big-endian. */
static int send_dirty_list(struct replica *r, struct lun_copy *c)
{
    uint8_t hdr[16];
    uint8_t *runs = malloc(16 * DIRTY_RUNS);
    if (runs == NULL)
        return -ENOMEM;
    uint64_t regions = trk_log_regions(c->log), total = 0;
    uint32_t n = 0;
    int rc = 0;
    for (uint64_t first = trk_log_next_dirty(c->log, 0); rc == 0;) {
        bool last = first >= regions;
        if (!last) {
            uint64_t end = first + 1;
            while (end < regions && trk_log_next_dirty(c->log, end) == end)
                end++;
            twl_put_be64(runs + 16 * n, first);
            twl_put_be64(runs + 16 * n + 8, end - first);
            n++;
            total += end - first;
            first = trk_log_next_dirty(c->log, end);
        }
        if (!last && n < DIRTY_RUNS)
            continue;
        twl_put_be32(hdr, DIRTY_MAGIC);
        twl_put_be32(hdr + 4, c->lun->info.id);
        twl_put_be32(hdr + 8, last ? DIRTY_LAST : 0);
        twl_put_be32(hdr + 12, n);
        rc = send_meta_wait(r, hdr, sizeof(hdr), runs, 16 * n);
        n = 0;
        if (last)
            break;
    }
    free(runs);
    if (rc == 0 && total)
        TWL_INFO(RPART, "LUN %u: %" PRIu64 " dirty regions listed to %s, to be overwritten",
                 c->lun->info.id, total, r->cfg->pair.partner);
    return rc;
}

/* The end of a resync: the target takes this copy's generations. Record: 0 "TWLG", 4 LUN id,
 * 8 current, 16 bitmap, 24 history[0], 32 history[1], big-endian. */
static int send_gens(struct replica *r, struct lun_copy *c)
{
    struct trk_gens g;
    trk_log_gens(c->log, &g);
    uint8_t rec[40];
    twl_put_be32(rec, GENS_MAGIC);
    twl_put_be32(rec + 4, c->lun->info.id);
    twl_put_be64(rec + 8, g.current);
    twl_put_be64(rec + 16, g.bitmap);
    twl_put_be64(rec + 24, g.history[0]);
    twl_put_be64(rec + 32, g.history[1]);
    return send_meta_wait(r, rec, sizeof(rec), NULL, 0);
}

/* The copies in flight of one LUN's resync, oldest first from head. */
struct resync_pipe {
    struct resync_wait slots[RESYNC_DEPTH];
    uint8_t *bufs[RESYNC_DEPTH];
    unsigned head, inflight;
    uint64_t bytes, copied;
    int rc; /* the first failed copy's */
};

static int resync_complete(struct replica *r, struct lun_copy *o, struct resync_wait *w,
                           uint64_t *bytes);

static void pipe_collect(struct replica *r, struct lun_copy *o, struct resync_pipe *p)
{
    struct resync_wait *w = &p->slots[p->head];
    int rc = resync_complete(r, o, w, &p->bytes);
    if (rc == 0)
        p->copied += w->count;
    else if (p->rc == 0)
        p->rc = rc;
    p->head = (p->head + 1) % RESYNC_DEPTH;
    p->inflight--;
}

static void pipe_drain(struct replica *r, struct lun_copy *o, struct resync_pipe *p)
{
    while (p->inflight)
        pipe_collect(r, o, p);
}

struct pipe_ref {
    struct replica *r;
    struct lun_copy *o;
    struct resync_pipe *p;
};

/* Before the resync sleeps for tokens: its copies in flight hold range locks that admitted
 * client writes may wait for, and bytes the throttle's guard counts. */
static void pipe_drain_before_sleep(void *ctx)
{
    struct pipe_ref *ref = ctx;
    pipe_drain(ref->r, ref->o, ref->p);
}

/* Locks [off, off + len) of the LUN for slot w (waiting for the writes in it). A lock that
 * must wait may wait behind a client write that itself waits for a region a copy in flight
 * holds: those copies are collected (their locks released) before waiting. */
static void resync_lock(struct replica *r, struct lun_copy *o, struct resync_wait *w, uint64_t off,
                        uint64_t len, struct resync_pipe *p)
{
    uint32_t bs = o->lun->info.block_size;
    uint8_t *buf = w->buf;
    *w = (struct resync_wait){.r = r, .range.granted = resync_granted, .buf = buf};
    if (lu_range_lock(&o->lun->lu, &w->range, off / bs, len / bs))
        w->granted = true;
    else
        pipe_drain(r, o, p);
    resync_wait_for(r, &w->granted);
}

/* Under the lock: how many bytes from off (at most len, whole regions) are a hole or zeros.
 * buf holds the first region's bytes when *read_first says so. */
static uint64_t zero_prefix(struct lun_copy *o, uint8_t *buf, uint64_t off, uint64_t len,
                            bool *read_first)
{
    uint64_t rs = trk_log_region_size(o->log), ext_len = 0;
    bool mapped = true;
    *read_first = false;
    if (backing_extent(&o->lun->store, off, len, &ext_len, &mapped) == 0 && !mapped &&
        ext_len >= (len < rs ? len : rs))
        return ext_len >= len ? len : ext_len / rs * rs;
    uint64_t zero = 0;
    while (zero < len) {
        uint64_t n = len - zero < rs ? len - zero : rs;
        if (backing_read_at(&o->lun->store, buf, n, off + zero) != 0)
            break;
        *read_first = zero == 0;
        if (!all_zero(buf, n))
            break;
        zero += n;
    }
    return zero;
}

/* Starts copying dirty regions from `region` (a run of `count`) to the partner under a range
 * lock held by slot w until resync_complete. A run the store never allocated, or that reads as
 * zeros, goes as one deallocation (cheap on both sides) under a lock of the whole run;
 * otherwise the first region goes as data under a lock of it alone. w->count gets the regions
 * sent, w->span those locked (the caller goes on after them; dirty ones among them that were
 * not sent wait for the next pass). 0, or -errno with nothing held. */
static int resync_issue(struct replica *r, struct lun_copy *o, struct resync_wait *w,
                        uint64_t region, uint64_t count, struct resync_pipe *p)
{
    struct tgt_lun *lun = o->lun;
    uint32_t bs = lun->info.block_size;
    uint64_t rs = trk_log_region_size(o->log);
    uint64_t lun_bytes = lun->info.block_count * bs;
    uint64_t off = region * rs;
    uint64_t run = lun_bytes - off < count * rs ? lun_bytes - off : count * rs;
    uint64_t first = run < rs ? run : rs;
    bool read_first;
    resync_lock(r, o, w, off, first, p);
    uint64_t zero = zero_prefix(o, w->buf, off, first, &read_first);
    uint64_t span = first, len = first;
    if (zero == first && run > first) {
        /* a zero run may follow: lock all of it and look again (the lock came and went) */
        lu_range_unlock(&lun->lu, &w->range);
        resync_lock(r, o, w, off, run, p);
        span = run;
        zero = zero_prefix(o, w->buf, off, run, &read_first);
        len = zero ? zero : first;
    } else if (zero == 0 && run > first && copy_bytes(rs) > first) {
        /* data: dirty regions that follow go in the same record, up to copy_bytes */
        lu_range_unlock(&lun->lu, &w->range);
        span = len = run < copy_bytes(rs) ? run : copy_bytes(rs);
        resync_lock(r, o, w, off, len, p);
        read_first = false;
    }
    bool mapped = zero == 0;
    if (mapped && !read_first) {
        int rc = backing_read_at(&lun->store, w->buf, len, off);
        if (rc) {
            TWL_ERROR(RPART, "resync LUN %u region %" PRIu64 ": reading it failed: %s",
                      lun->info.id, region, strerror(-rc));
            lu_range_unlock(&lun->lu, &w->range);
            return rc;
        }
    }
    struct tgt_extent ext = {.lba = off / bs, .blocks = len / bs};
    struct tgt_write tw = {.target_name = r->target->cfg->iqn,
                           .lun = lun->info.id,
                           .kind = TGT_WRITE_DATA,
                           .lba = off / bs,
                           .blocks = (uint32_t)(len / bs),
                           .block_size = bs,
                           .data = w->buf,
                           .fua = true}; /* durable there before it is clean here */
    if (!mapped) {
        tw.kind = TGT_WRITE_UNMAP; /* keeps the partner's copy thin */
        tw.data = NULL;
        tw.extents = &ext;
        tw.extent_count = 1;
    }
    w->region = region;
    w->count = (len + rs - 1) / rs;
    w->span = (span + rs - 1) / rs;
    w->len = len;
    w->charged = mapped ? len : 0; /* what crosses the link: a deallocation is a header */
    int rc = replicate(r, &tw, resync_replicated, w);
    if (rc)
        lu_range_unlock(&lun->lu, &w->range);
    return rc;
}

/* Waits for slot w's copy; once the partner has it, its regions are clean. The lock goes. */
static int resync_complete(struct replica *r, struct lun_copy *o, struct resync_wait *w,
                           uint64_t *bytes)
{
    resync_wait_for(r, &w->done);
    if (w->charged) {
        throttle_release(r->throttle, w->charged);
        w->charged = 0;
    }
    int rc = w->err;
    if (rc == 0) {
        rc = trk_log_clear(o->log, w->region, w->count);
        *bytes += w->len;
    }
    lu_range_unlock(&o->lun->lu, &w->range);
    return rc;
}

/* Copies every dirty region of one LUN while the partner stays; true when it is clean. Up to
 * RESYNC_DEPTH copies are in flight, each under its own range lock. */
static bool resync_lun(struct replica *r, struct lun_copy *o)
{
    uint64_t regions = trk_log_regions(o->log), rs = trk_log_region_size(o->log);
    uint64_t dirty = trk_log_dirty_count(o->log);
    static struct resync_pipe pipe; /* the resync thread's */
    struct resync_pipe *p = &pipe;
    memset(p, 0, sizeof(*p));
    for (unsigned i = 0; i < RESYNC_DEPTH; i++) {
        p->bufs[i] = bufpool_alloc(r->srv->pool, copy_bytes(rs));
        if (p->bufs[i] == NULL) {
            while (i--)
                bufpool_free(r->srv->pool, p->bufs[i]);
            return false;
        }
    }
    uint32_t id = o->lun->info.id;
    TWL_INFO(RPART, "resync LUN %u to %s: %" PRIu64 " dirty regions (%" PRIu64 " MiB)", id,
             r->cfg->pair.partner, dirty, dirty * rs >> 20);
    atomic_store(&o->resync_done_bytes, 0);
    atomic_store(&o->resync_rate_bytes_s, 0);
    atomic_store(&o->resyncing, true);
    uint64_t t0 = twl_now_ns(), last = t0, paused = 0;
    uint64_t clients = atomic_load(&r->client_changes), t_busy = t0;
    bool yield_pending = false; /* client writes came: drain, then pause */
    int rc = 0;
    for (uint64_t region = trk_log_next_dirty(o->log, 0); region < regions && rc == 0;) {
        if (resync_stopping(r) || !partner_connected(r)) {
            rc = -ENOTCONN;
            break;
        }
        if (atomic_load(&o->resync_paused)) {
            rc = -ECANCELED;
            break;
        }
        if (p->inflight == RESYNC_DEPTH) {
            pipe_collect(r, o, p);
            continue;
        }
        if (yield_pending) {
            /* nothing in flight, so no range lock held while client writes get their share */
            pipe_drain(r, o, p);
            paused += resync_yield(r, twl_now_ns() - t_busy);
            yield_pending = false;
            clients = atomic_load(&r->client_changes);
            t_busy = twl_now_ns();
            continue;
        }
        uint64_t run = 1;
        while (run < RUN_REGIONS_MAX && region + run < regions &&
               trk_log_next_dirty(o->log, region + run) == region + run)
            run++;
        /* With the throttle, tokens first, for the most a copy sends; what it did not send
         * goes back at once, the rest when the partner has it (resync_complete). */
        uint64_t charge = r->cfg->throttle.enabled ? copy_bytes(rs) : 0;
        if (charge) {
            struct pipe_ref ref = {r, o, p};
            throttle_wait(r->throttle, THROTTLE_RESYNC, charge, pipe_drain_before_sleep, &ref);
        }
        unsigned slot = (p->head + p->inflight) % RESYNC_DEPTH;
        struct resync_wait *w = &p->slots[slot];
        w->buf = p->bufs[slot];
        rc = resync_issue(r, o, w, region, run, p);
        if (!charge)
            w->charged = 0;
        else
            throttle_release(r->throttle, rc ? charge : charge - w->charged);
        if (rc)
            break;
        p->inflight++;
        region = trk_log_next_dirty(o->log, region + w->span);
        if (!charge)
            yield_pending = atomic_load(&r->client_changes) != clients;
        uint64_t now = twl_now_ns();
        double secs = (double)(now - t0) / 1e9;
        double rate = secs > 0 ? (double)p->bytes / secs : 0.0;
        atomic_store(&o->resync_done_bytes, p->bytes);
        atomic_store(&o->resync_rate_bytes_s, (uint64_t)rate);
        if (now - last >= PROGRESS_S * 1000000000ull) {
            uint64_t left = trk_log_dirty_count(o->log);
            TWL_INFO(RPART,
                     "resync LUN %u: %" PRIu64 " MiB done, %" PRIu64 " MiB left, %.1f MB/s, "
                     "ETA %.0f s",
                     id, p->bytes >> 20, left * rs >> 20, rate / 1e6,
                     rate > 0 ? (double)(left * rs) / rate : 0.0);
            last = now;
        }
    }
    pipe_drain(r, o, p);
    if (rc == 0)
        rc = p->rc;
    uint64_t bytes = p->bytes, copied = p->copied;
    for (unsigned i = 0; i < RESYNC_DEPTH; i++)
        bufpool_free(r->srv->pool, p->bufs[i]);
    atomic_store(&o->resyncing, false);
    o->resynced_bytes += bytes;
    double secs = (double)(twl_now_ns() - t0) / 1e9;
    if (rc == -ECANCELED) {
        TWL_INFO(RPART,
                 "resync LUN %u paused by the admin after %" PRIu64 " regions, %" PRIu64
                 " bytes; %" PRIu64 " regions left until 'twinlunctl resync resume'",
                 id, copied, bytes, trk_log_dirty_count(o->log));
        return false;
    }
    if (rc) {
        TWL_WARN(RPART,
                 "resync LUN %u interrupted (%s) after %" PRIu64 " regions, %" PRIu64
                 " bytes; %" PRIu64 " regions left, resumed when the partner is back",
                 id, strerror(-rc), copied, bytes, trk_log_dirty_count(o->log));
        return false;
    }
    if (trk_log_dirty_count(o->log) != 0)
        return false; /* new failures while copying: another pass */
    struct trk_gens g;
    trk_log_gens(o->log, &g);
    trk_log_resynced(o->log, &g);
    rc = send_gens(r, o);
    if (rc) {
        TWL_WARN(RPART,
                 "resync LUN %u: %s did not take the new generation (%s); again at the "
                 "next connection",
                 id, r->cfg->pair.partner, strerror(-rc));
        return false;
    }
    pthread_mutex_lock(&r->state_lock);
    o->need_gens = false;
    pthread_mutex_unlock(&r->state_lock);
    TWL_INFO(RPART,
             "resync LUN %u done: %" PRIu64 " bytes resynced in this run, %" PRIu64
             " since the copies last differed, in %.1f s (%.1f MB/s; %.1f s of it paused for "
             "client writes); %" PRIu64 " bytes were written without replica meanwhile",
             id, bytes, o->resynced_bytes, secs, secs > 0 ? (double)bytes / secs / 1e6 : 0.0,
             (double)paused / 1e9, (uint64_t)atomic_exchange(&o->unreplicated_bytes, 0));
    o->resynced_bytes = 0;
    return true;
}

/* What the resync thread does for one LUN on the current connection. */
static void resync_step(struct replica *r, struct lun_copy *c)
{
    pthread_mutex_lock(&r->state_lock);
    bool paired = c->paired, source = c->source, full = c->full, need_gens = c->need_gens;
    bool list_sent = c->list_sent, peer_listed = c->peer_listed;
    uint64_t handshakes = r->handshakes;
    pthread_mutex_unlock(&r->state_lock);
    if (!paired)
        return;
    if (!source) {
        if (list_sent || send_dirty_list(r, c) != 0)
            return;
        pthread_mutex_lock(&r->state_lock);
        if (r->handshakes == handshakes)
            c->list_sent = true;
        pthread_mutex_unlock(&r->state_lock);
        return;
    }
    pthread_mutex_lock(&r->state_lock);
    bool meta_sent = c->meta_sent;
    pthread_mutex_unlock(&r->state_lock);
    if (!meta_sent && atomic_load(&c->primary) && send_lu_meta(r, c) == 0) {
        pthread_mutex_lock(&r->state_lock);
        if (r->handshakes == handshakes)
            c->meta_sent = true;
        pthread_mutex_unlock(&r->state_lock);
    }
    if (full) {
        uint64_t bytes = c->lun->info.block_count * c->lun->info.block_size;
        if (trk_log_mark(c->log, 0, bytes) != 0)
            return;
        TWL_INFO(RPART,
                 "LUN %u: %s's copy is unknown to this one: every region is copied "
                 "(never written ones as deallocation)",
                 c->lun->info.id, r->cfg->pair.partner);
        pthread_mutex_lock(&r->state_lock);
        c->full = false;
        pthread_mutex_unlock(&r->state_lock);
    }
    if (peer_listed && (need_gens || trk_log_dirty_count(c->log)) &&
        !atomic_load(&c->resync_paused))
        resync_lun(r, c);
}

/* Everything written so far is stable on both copies (this node's stores synced, then the
 * partner's, in ring order after every change it acknowledged): only then may regions leave
 * the activity log, since a copy that loses its page cache (power) loses what was not stable.
 * False without a partner: the regions stay, and are resynced when it is back. */
static bool durable_barrier(struct replica *r)
{
    if (flush_copies(r, true) != 0 || !partner_connected(r))
        return false;
    uint8_t rec[4];
    twl_put_be32(rec, FLUSH_MAGIC);
    return send_meta_wait(r, rec, sizeof(rec), NULL, 0) == 0;
}

static void *resync_main(void *arg)
{
    struct replica *r = arg;
    uint64_t last_flush = twl_now_ns();
    for (;;) {
        pthread_mutex_lock(&r->resync_lock);
        /* woken by untrack (a region may have turned dirty) or every 200 ms (reconnects) */
        resync_sleep_locked(r, 200000000ull);
        bool stop = r->resync_stop;
        pthread_mutex_unlock(&r->resync_lock);
        if (stop)
            break;
        /* regions no longer written leave the activity log, so that a crash resyncs only
         * what was written in the last moments */
        uint64_t now = twl_now_ns();
        if (now - last_flush >= COLD_FLUSH_NS) {
            uint32_t cold = 0;
            for (size_t i = 0; i < r->copy_count; i++)
                cold += trk_log_cold_mark(r->copies[i].log);
            if (cold && durable_barrier(r))
                for (size_t i = 0; i < r->copy_count; i++)
                    trk_log_cold_clear(r->copies[i].log);
            last_flush = now;
        }
        if (now - r->started_ns >= r->cfg->pair.alone_after_ms * 1000000ull)
            for (size_t i = 0; i < r->copy_count; i++)
                if (atomic_load(&r->copies[i].held)) {
                    pthread_mutex_lock(&r->state_lock);
                    if (atomic_load(&r->copies[i].held))
                        set_primary(r, &r->copies[i], true,
                                    "the partner was not reached in pair.alone_after_ms: "
                                    "served alone");
                    pthread_mutex_unlock(&r->state_lock);
                }
        forward_expire(r, false);
        if (!partner_connected(r))
            continue;
        for (size_t i = 0; i < r->copy_count; i++)
            resync_step(r, &r->copies[i]);
    }
    return NULL;
}

/* ---- admin ---- */

static const char *sync_state(struct replica *r, struct lun_copy *c, bool connected)
{
    bool primary = atomic_load(&c->primary);
    uint64_t dirty = trk_log_dirty_count(c->log);
    if (c->decision == TRK_SPLIT_BRAIN && !c->paired)
        return "split-brain";
    if (atomic_load(&c->held))
        return "held";
    if (c->decision == TRK_UNRELATED && !c->paired)
        return "unrelated";
    if (!connected)
        return primary ? (atomic_load(&r->degraded) || dirty ? "degraded" : "partner-away")
                       : "partner-away";
    if (atomic_load(&c->resyncing))
        return "resyncing";
    if (c->source && (dirty || c->need_gens || c->full))
        return atomic_load(&c->resync_paused) ? "resync-paused" : "resync-pending";
    if (!c->source && (dirty || c->need_gens))
        return "sync-target";
    return "in-sync";
}

void replica_status(struct replica *r, struct replica_status *st)
{
    memset(st, 0, sizeof(*st));
    struct twl_rdma_bp_stats bs;
    twl_rdma_backplane_stats(r->bp, &bs);
    snprintf(st->partner, sizeof(st->partner), "%s", r->cfg->pair.partner);
    st->connected = bs.connected;
    st->degraded = atomic_load(&r->degraded);
    st->replicated_records = bs.acked;
    st->replicated_bytes = bs.acked_bytes;
    st->unreplicated_changes = atomic_load(&r->unreplicated);
    st->rate_bytes_s = bs.rate_bytes_s;
    st->capacity_bytes_s = bs.capacity_bytes_s;
    st->ring_bytes = bs.ring_bytes + bs.queued_bytes;
    st->ring_size = bs.ring_size;
    st->ring_full = bs.ring_full;
    throttle_get_stats(r->throttle, &st->throttle);
    pthread_mutex_lock(&r->state_lock);
    snprintf(st->refusal, sizeof(st->refusal), "%s", r->refusal);
    for (size_t i = 0; i < r->copy_count && i < 256; i++) {
        struct lun_copy *c = &r->copies[i];
        struct replica_lun_status *l = &st->luns[st->lun_count++];
        struct trk_gens g;
        trk_log_gens(c->log, &g);
        l->id = c->lun->info.id;
        l->primary = atomic_load(&c->primary);
        l->sync = sync_state(r, c, bs.connected);
        l->dirty_bytes = trk_log_dirty_count(c->log) * trk_log_region_size(c->log);
        l->resync_done_bytes = atomic_load(&c->resync_done_bytes);
        l->resync_rate_bytes_s = atomic_load(&c->resync_rate_bytes_s);
        l->generation = g.current;
    }
    pthread_mutex_unlock(&r->state_lock);
}

int replica_promote(struct replica *r, long id, char *msg, size_t msg_len)
{
    if (partner_connected(r)) {
        snprintf(msg, msg_len,
                 "%s is connected and serves its LUNs; a planned move is a "
                 "takeover, not a promotion",
                 r->cfg->pair.partner);
        return -EBUSY;
    }
    size_t n = 0;
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        if (id >= 0 && c->lun->info.id != (uint32_t)id)
            continue;
        n++;
        if (serving(c))
            continue;
        /* its writes have no replica from now on: a new generation first */
        if (!atomic_load(&c->primary))
            trk_log_diverge(c->log);
        set_primary(r, c, true, "promoted by the admin while the partner is unreachable");
    }
    if (n == 0) {
        snprintf(msg, msg_len, "no LUN %ld here", id);
        return -ENOENT;
    }
    snprintf(msg, msg_len, "serving %zu LUN%s here; %s's copies are behind until a resync", n,
             n == 1 ? "" : "s", r->cfg->pair.partner);
    return 0;
}

int replica_resolve_discard(struct replica *r, const char *node, char *msg, size_t msg_len)
{
    bool mine = strcmp(node, r->cfg->node_name) == 0;
    if (!mine && strcmp(node, r->cfg->pair.partner) != 0) {
        snprintf(msg, msg_len, "'%s' is neither this node ('%s') nor its partner ('%s')", node,
                 r->cfg->node_name, r->cfg->pair.partner);
        return -EINVAL;
    }
    size_t n = 0;
    pthread_mutex_lock(&r->state_lock);
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        if (c->paired || (c->decision != TRK_SPLIT_BRAIN && c->decision != TRK_UNRELATED))
            continue;
        n++;
        if (mine) {
            trk_log_discard(c->log);
            set_primary(r, c, false, "its writes were discarded by the admin");
        } else {
            atomic_store(&c->peer_discarded, true);
        }
        TWL_WARN(RPART,
                 "LUN %u: the admin discards %s's writes since the split; %s's copy "
                 "becomes the sync source at the next handshake",
                 c->lun->info.id, node, mine ? r->cfg->pair.partner : r->cfg->node_name);
    }
    pthread_mutex_unlock(&r->state_lock);
    if (n == 0) {
        snprintf(msg, msg_len, "no LUN is in split brain with %s", r->cfg->pair.partner);
        return -EALREADY;
    }
    snprintf(msg, msg_len,
             "%zu LUN%s: %s's writes discarded; the copies converge once the "
             "nodes pair",
             n, n == 1 ? "" : "s", node);
    return 0;
}

int replica_resync_control(struct replica *r, long id, enum replica_resync_cmd cmd, char *msg,
                           size_t msg_len)
{
    static const char *const verbs[] = {"started", "paused", "resumed"};
    size_t n = 0, elsewhere = 0;
    pthread_mutex_lock(&r->state_lock);
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        if (id >= 0 && c->lun->info.id != (uint32_t)id)
            continue;
        n++;
        /* the sync source copies; the target's word changes nothing there */
        if (!atomic_load(&c->primary)) {
            elsewhere++;
            continue;
        }
        atomic_store(&c->resync_paused, cmd == REPLICA_RESYNC_PAUSE);
    }
    pthread_mutex_unlock(&r->state_lock);
    if (n == 0) {
        snprintf(msg, msg_len, "no LUN %ld here", id);
        return -ENOENT;
    }
    if (elsewhere == n) {
        snprintf(msg, msg_len, "%s copies %s here (it serves %s); ask %s", r->cfg->pair.partner,
                 id >= 0 ? "this LUN" : "every LUN", id >= 0 ? "it" : "them", r->cfg->pair.partner);
        return -EPERM;
    }
    if (cmd != REPLICA_RESYNC_PAUSE) {
        pthread_mutex_lock(&r->resync_lock);
        pthread_cond_broadcast(&r->resync_cond);
        pthread_mutex_unlock(&r->resync_lock);
    }
    snprintf(msg, msg_len, "resync %s for %zu LUN%s%s", verbs[cmd], n - elsewhere,
             n - elsewhere == 1 ? "" : "s", elsewhere ? " (the partner copies the others)" : "");
    return 0;
}

/* ---- handover: takeover and giveback (handover.h) ---- */

#define DRAIN_MS      10000u /* writes in flight on a LUN being handed over end within this */
#define CONVERGE_MS   60000u /* a forced handover waits this long for the copies to converge */
#define ASK_WAIT_MS   15000u /* an ask is answered within this (plus CONVERGE_MS if forced) */
#define HANDOVER_POLL 1000u  /* us between looks at a drain or a convergence */
#define WHY_LEN       512u   /* a handover's outcome, per LUN (a refusal sent is cut shorter) */

static void handover_copies_of(struct replica *r, struct lun_copy *c, struct handover_copies *s)
{
    pthread_mutex_lock(&r->state_lock);
    *s = (struct handover_copies){.connected = partner_connected(r),
                                  .paired = c->paired,
                                  .degraded = atomic_load(&r->degraded),
                                  .resyncing = atomic_load(&c->resyncing),
                                  .resync_paused = atomic_load(&c->resync_paused),
                                  .peer_listed = c->peer_listed,
                                  .need_gens = c->need_gens || c->full,
                                  .dirty_bytes =
                                      trk_log_dirty_count(c->log) * trk_log_region_size(c->log)};
    pthread_mutex_unlock(&r->state_lock);
}

static int send_handover(struct replica *r, const struct handover_record *h)
{
    uint8_t rec[HANDOVER_MAX_LEN];
    uint32_t len = handover_encode(h, rec);
    return send_meta_wait(r, rec, len, NULL, 0);
}

/* Waits up to ms for the LUN's changes in flight to end (new ones are refused meanwhile). */
static bool drained(struct lun_copy *c, unsigned ms)
{
    uint64_t end = twl_now_ns() + ms * 1000000ull;
    while (atomic_load(&c->lun->changes_active) != 0) {
        if (twl_now_ns() >= end)
            return false;
        usleep(HANDOVER_POLL);
    }
    return true;
}

/* This node hands LUN c over to the partner (under move_lock): new commands see ALUA
 * transitioning here, the changes in flight end, the give record follows them through the
 * ring, and this node's port turns standby. Refused (why says it) when the copies differ,
 * unless forced: then the LUN stays transitioning while the resync converges them. */
static int hand_over(struct replica *r, struct lun_copy *c, bool force, uint64_t token, char *why,
                     size_t why_len)
{
    uint32_t id = c->lun->info.id;
    const char *partner = r->cfg->pair.partner;
    char gap[160];
    if (!serving(c)) {
        snprintf(why, why_len, "LUN %u: not handed over: %s does not serve it", id,
                 r->cfg->node_name);
        return -EPERM;
    }
    struct handover_copies s;
    handover_copies_of(r, c, &s);
    int rc = handover_blocker(&s, gap, sizeof(gap));
    if (rc == -ENOTCONN || (rc && !force)) {
        snprintf(why, why_len, "LUN %u: not handed over to %s: %s%s", id, partner, gap,
                 rc == -ENOTCONN ? " (while it is away, 'twinlunctl promote' on it moves the LUN)"
                                 : "; its copy would lack writes. Wait for in-sync, or add "
                                   "--force to hold I/O while the copies converge");
        return rc == -ENOTCONN ? -ENOTCONN : -EBUSY;
    }
    uint64_t t0 = twl_now_ns();
    atomic_store(&c->lun->lu.alua_state, SCSI_ALUA_TRANSITIONING);
    TWL_INFO(RPART, "LUN %u: handing over to %s: transitioning here, draining writes%s", id,
             partner, rc ? " and waiting for the copies to converge (forced)" : "");
    if (!drained(c, DRAIN_MS)) {
        snprintf(why, why_len, "LUN %u: not handed over: writes in flight did not end in %u ms", id,
                 DRAIN_MS);
        rc = -ETIMEDOUT;
    } else if (rc) {
        uint64_t end = twl_now_ns() + CONVERGE_MS * 1000000ull;
        while ((rc = handover_blocker(&s, gap, sizeof(gap))) == -EAGAIN && twl_now_ns() < end) {
            usleep(10 * HANDOVER_POLL);
            handover_copies_of(r, c, &s);
        }
        if (rc)
            snprintf(why, why_len,
                     "LUN %u: not handed over: the copies did not converge in %u ms (%s)", id,
                     CONVERGE_MS, gap);
    }
    if (rc) {
        announce_alua(c, -1);
        return rc;
    }
    uint64_t drain_ns = twl_now_ns() - t0;
    /* the partner's reservations and mode parameters are this node's when it takes over */
    if (rc == 0 && (rc = send_lu_meta(r, c)) != 0) {
        snprintf(why, why_len, "LUN %u: not handed over: its metadata did not reach %s: %s", id,
                 partner, strerror(-rc));
        announce_alua(c, -1);
        return rc;
    }
    /* not primary before the give: the partner's first writes after it are applied here */
    pthread_mutex_lock(&r->state_lock);
    atomic_store(&c->primary, false);
    c->source = false;
    c->list_sent = true;
    pthread_mutex_unlock(&r->state_lock);
    struct handover_record h = {.lun = id, .kind = HANDOVER_GIVE, .token = token};
    rc = send_handover(r, &h);
    announce_alua(c, SCSI_ALUA_STANDBY);
    if (rc) {
        snprintf(why, why_len,
                 "LUN %u: %s did not confirm the handover (%s): this node no longer serves it; the "
                 "next handshake decides which node does",
                 id, partner, strerror(-rc));
        return rc;
    }
    snprintf(why, why_len, "LUN %u: handed over to %s in %.3f s (drained in %.3f s)", id, partner,
             (twl_now_ns() - t0) / 1e9, drain_ns / 1e9);
    return 0;
}

/* The partner's handover record, on the backplane thread: asks go to the handover thread. */
static int apply_handover(struct replica *r, const uint8_t *rec, uint32_t len)
{
    struct handover_record h;
    if (handover_decode(rec, len, &h) != 0) {
        TWL_ERROR(RPART, "handover record from %s refused: malformed", r->cfg->pair.partner);
        return -EBADMSG;
    }
    struct lun_copy *c = copy_find(r, h.lun);
    if (c == NULL && h.kind != HANDOVER_REFUSED) {
        TWL_ERROR(RPART, "handover of LUN %u from %s refused: no such LUN here", h.lun,
                  r->cfg->pair.partner);
        return -ENOENT;
    }
    pthread_mutex_lock(&r->handover_lock);
    switch (h.kind) {
    case HANDOVER_ASK:
        c->ask_pending = true;
        c->ask_flags = h.flags;
        c->ask_token = h.token;
        TWL_INFO(RPART, "LUN %u: %s asks to serve it%s", h.lun, r->cfg->pair.partner,
                 h.flags & HANDOVER_FORCE ? " (forced)" : "");
        break;
    case HANDOVER_GIVE: {
        char why[96];
        snprintf(why, sizeof(why), "handed over by %s", r->cfg->pair.partner);
        pthread_mutex_lock(&r->state_lock);
        /* the copies were equal when the give left; this one leads the pair from now on */
        c->source = true;
        c->peer_listed = true;
        c->list_sent = false;
        c->need_gens = false;
        c->full = false;
        set_primary(r, c, true, why);
        pthread_mutex_unlock(&r->state_lock);
        break;
    }
    case HANDOVER_REFUSED:
        r->refused_token = h.token;
        snprintf(r->refused_reason, sizeof(r->refused_reason), "%s", h.reason);
        break;
    }
    pthread_cond_broadcast(&r->handover_cond);
    pthread_mutex_unlock(&r->handover_lock);
    return 0;
}

/* Answers one ask of the partner: a give (hand_over) or a refusal with the reason. */
static void answer_ask(struct replica *r, struct lun_copy *c, uint32_t flags, uint64_t token)
{
    char why[WHY_LEN];
    pthread_mutex_lock(&r->move_lock);
    int rc = hand_over(r, c, flags & HANDOVER_FORCE, token, why, sizeof(why));
    pthread_mutex_unlock(&r->move_lock);
    if (rc == 0) {
        TWL_WARN(RPART, "%s (asked by %s)", why, r->cfg->pair.partner);
        return;
    }
    TWL_WARN(RPART, "%s's ask refused: %s", r->cfg->pair.partner, why);
    if (rc == -EPERM || rc == -ENOTCONN || rc == -EBUSY || rc == -ETIMEDOUT) {
        struct handover_record h = {
            .lun = c->lun->info.id, .kind = HANDOVER_REFUSED, .token = token};
        size_t n = strnlen(why, HANDOVER_REASON_MAX);
        memcpy(h.reason, why, n);
        h.reason[n] = '\0';
        int src = send_handover(r, &h);
        if (src)
            TWL_ERROR(RPART, "LUN %u: cannot tell %s its ask was refused: %s", c->lun->info.id,
                      r->cfg->pair.partner, strerror(-src));
    }
}

/* ---- forwarded metadata commands (handover.h) ---- */

/* The partner's forwarded command, on the backplane thread: the handover thread runs it. */
static int queue_forwarded(struct replica *r, const uint8_t *rec, uint32_t len)
{
    struct forward_cmd f;
    if (forward_decode(rec, len, &f) != 0) {
        TWL_ERROR(RPART, "forwarded command from %s refused: malformed", r->cfg->pair.partner);
        return -EBADMSG;
    }
    struct forward_run *run = malloc(sizeof(*run) + len);
    if (run == NULL)
        return -ENOMEM;
    run->next = NULL;
    run->len = len;
    memcpy(run->rec, rec, len);
    pthread_mutex_lock(&r->handover_lock);
    struct forward_run **tail = &r->fwd_in;
    while (*tail)
        tail = &(*tail)->next;
    *tail = run;
    pthread_cond_broadcast(&r->handover_cond);
    pthread_mutex_unlock(&r->handover_lock);
    return 0;
}

/* Carries out the partner's command on this node's LU, as if it came in on the partner's port,
 * sends the changed image, then the answer. */
static void run_forwarded(struct replica *r, const struct forward_run *run)
{
    struct forward_cmd f;
    forward_decode(run->rec, run->len, &f); /* checked when queued */
    struct forward_answer a = {.lun = f.lun, .token = f.token};
    struct lun_copy *c = copy_find(r, f.lun);
    pthread_mutex_lock(&r->move_lock); /* the LUN is not handed over meanwhile */
    if (c == NULL || !serving(c)) {
        a.err = c ? -EPERM : -ENOENT;
    } else {
        struct lu *lu = &c->lun->lu;
        struct lu_nexus *n = lu_nexus_get(lu, f.initiator, f.isid, f.rel_port);
        if (n == NULL) {
            a.err = -ENOMEM;
        } else {
            struct scsi_plan plan;
            struct lu_effects effects;
            uint8_t out[64];
            memset(&plan, 0, sizeof(plan));
            lu_execute(lu, n, f.cdb, f.param, f.param_len, out, sizeof(out), &plan, &effects);
            lu_nexus_put(lu, n);
            for (unsigned i = 0; i < effects.count; i++)
                server_abort_nexuses(r->srv, r->target, NULL, f.lun, &effects.sel[i]);
            if (effects.meta_changed)
                a.err = send_lu_meta(r, c);
            a.status = plan.status;
            a.sense_len = plan.sense_len < FORWARD_SENSE_MAX ? plan.sense_len : FORWARD_SENSE_MAX;
            memcpy(a.sense, plan.sense, a.sense_len);
            TWL_INFO(RPART,
                     "LUN %u: opcode 0x%02x of %s through %s's port %u carried out here: status "
                     "0x%02x",
                     f.lun, f.cdb[0], f.initiator, r->cfg->pair.partner, f.rel_port, a.status);
        }
    }
    pthread_mutex_unlock(&r->move_lock);
    uint8_t rec[ANSWER_MAX_LEN];
    uint32_t len = answer_encode(&a, rec);
    int rc = send_meta_wait(r, rec, len, NULL, 0);
    if (rc)
        TWL_ERROR(RPART, "LUN %u: the answer to %s's forwarded command was not sent: %s", f.lun,
                  r->cfg->pair.partner, strerror(-rc));
}

static struct forward_wait *forward_take(struct replica *r, uint64_t token)
{
    pthread_mutex_lock(&r->fwd_lock);
    struct forward_wait *w = NULL;
    for (struct forward_wait **pp = &r->forwards; *pp; pp = &(*pp)->next) {
        if ((*pp)->token == token) {
            w = *pp;
            *pp = w->next;
            break;
        }
    }
    pthread_mutex_unlock(&r->fwd_lock);
    return w;
}

static void forward_finish(struct forward_wait *w, const struct forward_answer *a)
{
    struct replica_lu_outcome o = {.err = a->err, .status = a->status, .sense_len = a->sense_len};
    memcpy(o.sense, a->sense, a->sense_len);
    w->done(w->cookie, &o);
    free(w);
}

/* The answer to one of this node's forwarded commands, on the backplane thread. */
static int apply_answer(struct replica *r, const uint8_t *rec, uint32_t len)
{
    struct forward_answer a;
    if (answer_decode(rec, len, &a) != 0) {
        TWL_ERROR(RPART, "answer from %s refused: malformed", r->cfg->pair.partner);
        return -EBADMSG;
    }
    struct forward_wait *w = forward_take(r, a.token);
    if (w == NULL) {
        TWL_WARN(RPART, "LUN %u: an answer from %s came after its command gave up", a.lun,
                 r->cfg->pair.partner);
        return 0;
    }
    forward_finish(w, &a);
    return 0;
}

/* A lost record shows as a missing answer: forward_expire ends its command. */
static void forward_sent(void *cookie, int err)
{
    (void)cookie;
    (void)err;
}

/* Ends the forwarded commands whose answers did not come in time (all when every is true). */
static void forward_expire(struct replica *r, bool every)
{
    uint64_t now = twl_now_ns();
    struct forward_wait *gone = NULL;
    pthread_mutex_lock(&r->fwd_lock);
    for (struct forward_wait **pp = &r->forwards; *pp;) {
        struct forward_wait *w = *pp;
        if (every || now - w->sent_ns > FORWARD_WAIT_MS * 1000000ull) {
            *pp = w->next;
            w->next = gone;
            gone = w;
        } else {
            pp = &w->next;
        }
    }
    pthread_mutex_unlock(&r->fwd_lock);
    while (gone) {
        struct forward_wait *next = gone->next;
        TWL_WARN(RPART, "LUN %u: %s did not answer a forwarded command within %u ms", gone->lun,
                 r->cfg->pair.partner, FORWARD_WAIT_MS);
        struct forward_answer a = {.lun = gone->lun, .err = every ? -ECANCELED : -ETIMEDOUT};
        forward_finish(gone, &a);
        gone = next;
    }
}

int replica_forward_lu(struct replica *r, uint32_t lun, const char *initiator,
                       const uint8_t isid[6], uint16_t rel_port, const uint8_t *cdb,
                       const uint8_t *param, uint32_t param_len, replica_forward_done_fn done,
                       void *cookie)
{
    struct forward_cmd f = {.lun = lun, .rel_port = rel_port, .param_len = param_len};
    memcpy(f.isid, isid, 6);
    memcpy(f.cdb, cdb, 16);
    snprintf(f.initiator, sizeof(f.initiator), "%s", initiator);
    uint8_t hdr[FORWARD_HDR_LEN + FORWARD_NAME_MAX];
    struct forward_wait *w = calloc(1, sizeof(*w));
    if (w == NULL)
        return -ENOMEM;
    pthread_mutex_lock(&r->fwd_lock);
    f.token = ++r->fwd_tokens;
    *w = (struct forward_wait){.next = r->forwards,
                               .token = f.token,
                               .sent_ns = twl_now_ns(),
                               .lun = lun,
                               .done = done,
                               .cookie = cookie};
    r->forwards = w;
    pthread_mutex_unlock(&r->fwd_lock);
    int len = forward_encode(&f, hdr);
    int rc = len < 0 ? len : 0;
    if (rc == 0) {
        pthread_mutex_lock(&r->order);
        rc = twl_rdma_backplane_submit(r->bp, hdr, (uint32_t)len, param, param_len, forward_sent,
                                       NULL);
        pthread_mutex_unlock(&r->order);
    }
    if (rc)
        free(forward_take(r, f.token)); /* not sent: the caller answers the command */
    return rc;
}

static int ask_for(struct replica *r, struct lun_copy *c, bool force, char *why, size_t why_len);

/* Moves one LUN here (to_here: asks the partner) or to the partner (hands it over); a LUN
 * already served here needs no takeover. */
static int move_one(struct replica *r, struct lun_copy *c, bool to_here, bool force, char *why,
                    size_t why_len)
{
    if (to_here && serving(c)) {
        snprintf(why, why_len, "LUN %u: served here already", c->lun->info.id);
        return 0;
    }
    if (to_here)
        return ask_for(r, c, force, why, why_len);
    pthread_mutex_lock(&r->move_lock);
    int rc = hand_over(r, c, force, 0, why, why_len);
    pthread_mutex_unlock(&r->move_lock);
    return rc;
}

/* An initiator's SET TARGET PORT GROUPS, on the handover thread. */
static void run_move(struct replica *r, struct move_request *m)
{
    struct lun_copy *c = copy_find(r, m->id);
    char why[WHY_LEN];
    int rc;
    if (c == NULL) {
        rc = -ENOENT;
        snprintf(why, sizeof(why), "no LUN %u here", m->id);
    } else {
        rc = move_one(r, c, m->to_here, false, why, sizeof(why));
    }
    TWL_WARN(RPART, "SET TARGET PORT GROUPS (%s): %s", m->to_here ? "takeover" : "giveback", why);
    m->done(m->cookie, rc);
    free(m);
}

static void *handover_main(void *arg)
{
    struct replica *r = arg;
    pthread_mutex_lock(&r->handover_lock);
    for (;;) {
        struct lun_copy *c = NULL;
        for (size_t i = 0; i < r->copy_count && c == NULL; i++)
            if (r->copies[i].ask_pending)
                c = &r->copies[i];
        if (r->handover_stop)
            break;
        struct move_request *m = r->moves;
        struct forward_run *run = r->fwd_in;
        if (c == NULL && m == NULL && run == NULL) {
            pthread_cond_wait(&r->handover_cond, &r->handover_lock);
            continue;
        }
        if (run) {
            r->fwd_in = run->next;
            pthread_mutex_unlock(&r->handover_lock);
            run_forwarded(r, run);
            free(run);
        } else if (c) {
            c->ask_pending = false;
            uint32_t flags = c->ask_flags;
            uint64_t token = c->ask_token;
            pthread_mutex_unlock(&r->handover_lock);
            answer_ask(r, c, flags, token);
        } else {
            r->moves = m->next;
            pthread_mutex_unlock(&r->handover_lock);
            run_move(r, m);
        }
        pthread_mutex_lock(&r->handover_lock);
    }
    /* moves asked for and not run: their commands end; the partner's commands are dropped (it
     * stops waiting for them) */
    struct move_request *left = r->moves;
    r->moves = NULL;
    while (r->fwd_in) {
        struct forward_run *next = r->fwd_in->next;
        free(r->fwd_in);
        r->fwd_in = next;
    }
    pthread_mutex_unlock(&r->handover_lock);
    while (left) {
        struct move_request *next = left->next;
        left->done(left->cookie, -ECANCELED);
        free(left);
        left = next;
    }
    return NULL;
}

int replica_move_async(struct replica *r, uint32_t id, bool to_here, replica_move_done_fn done,
                       void *cookie)
{
    struct move_request *m = calloc(1, sizeof(*m));
    if (m == NULL)
        return -ENOMEM;
    *m = (struct move_request){.id = id, .to_here = to_here, .done = done, .cookie = cookie};
    pthread_mutex_lock(&r->handover_lock);
    if (!r->handover_started || r->handover_stop) {
        pthread_mutex_unlock(&r->handover_lock);
        free(m);
        return -ECANCELED;
    }
    struct move_request **tail = &r->moves;
    while (*tail)
        tail = &(*tail)->next;
    *tail = m;
    pthread_cond_broadcast(&r->handover_cond);
    pthread_mutex_unlock(&r->handover_lock);
    return 0;
}

bool replica_serves(struct replica *r, uint32_t id)
{
    struct lun_copy *c = copy_find(r, id);
    return c && serving(c);
}

/* Asks the partner for LUN c and waits for its answer: 0 when the LUN is served here. */
static int ask_for(struct replica *r, struct lun_copy *c, bool force, char *why, size_t why_len)
{
    uint32_t id = c->lun->info.id;
    const char *partner = r->cfg->pair.partner;
    if (!partner_connected(r)) {
        snprintf(why, why_len,
                 "LUN %u: not taken over: %s is not connected (an unplanned move is 'twinlunctl "
                 "promote')",
                 id, partner);
        return -ENOTCONN;
    }
    pthread_mutex_lock(&r->handover_lock);
    struct handover_record h = {.lun = id,
                                .kind = HANDOVER_ASK,
                                .flags = force ? HANDOVER_FORCE : 0,
                                .token = ++r->ask_tokens};
    pthread_mutex_unlock(&r->handover_lock);
    uint64_t t0 = twl_now_ns();
    int rc = send_handover(r, &h);
    if (rc) {
        snprintf(why, why_len, "LUN %u: the ask did not reach %s: %s", id, partner, strerror(-rc));
        return rc;
    }
    uint64_t end = t0 + (ASK_WAIT_MS + (force ? CONVERGE_MS : 0)) * 1000000ull;
    pthread_mutex_lock(&r->handover_lock);
    while (!atomic_load(&c->primary) && r->refused_token != h.token && twl_now_ns() < end &&
           !r->handover_stop) {
        struct timespec ts = realtime_after(50000000ull);
        pthread_cond_timedwait(&r->handover_cond, &r->handover_lock, &ts);
    }
    if (atomic_load(&c->primary)) {
        rc = 0;
        snprintf(why, why_len, "LUN %u: taken over from %s in %.3f s", id, partner,
                 (twl_now_ns() - t0) / 1e9);
    } else if (r->refused_token == h.token) {
        rc = -EBUSY;
        snprintf(why, why_len, "%s refused: %s", partner, r->refused_reason);
    } else {
        rc = -ETIMEDOUT;
        snprintf(why, why_len, "LUN %u: %s did not answer in %.0f s; it may still hand it over", id,
                 partner, (twl_now_ns() - t0) / 1e9);
    }
    pthread_mutex_unlock(&r->handover_lock);
    return rc;
}

/* Runs move on each selected LUN, one at a time, gathering their messages; the first
 * failure's code is returned. */
static int move_luns(struct replica *r, long id, bool to_here, bool all, bool force, char *msg,
                     size_t msg_len)
{
    size_t off = 0, n = 0;
    int first = 0;
    msg[0] = '\0';
    for (size_t i = 0; i < r->copy_count; i++) {
        struct lun_copy *c = &r->copies[i];
        bool owner_here = strcmp(c->lun->cfg->owner, r->cfg->node_name) == 0;
        bool here = serving(c);
        if (id >= 0 ? c->lun->info.id != (uint32_t)id
                    : (to_here ? here : !here || (!all && owner_here)))
            continue;
        n++;
        char why[WHY_LEN];
        int rc = move_one(r, c, to_here, force, why, sizeof(why));
        TWL_WARN(RPART, "%s: %s", to_here ? "takeover" : "giveback", why);
        if (rc && first == 0)
            first = rc;
        if (off < msg_len)
            off += (size_t)snprintf(msg + off, msg_len - off, "%s%s", off ? "; " : "", why);
    }
    if (n == 0) {
        if (id >= 0)
            snprintf(msg, msg_len, "no LUN %ld here", id);
        else
            snprintf(msg, msg_len, "no LUN to move: %s",
                     to_here ? "this node serves every LUN already"
                     : all   ? "this node serves none"
                             : "this node serves none of the partner's LUNs");
        return id >= 0 ? -ENOENT : -EALREADY;
    }
    return first;
}

int replica_takeover(struct replica *r, long id, bool force, char *msg, size_t msg_len)
{
    return move_luns(r, id, true, false, force, msg, msg_len);
}

int replica_giveback(struct replica *r, long id, bool all, bool force, char *msg, size_t msg_len)
{
    return move_luns(r, id, false, all, force, msg, msg_len);
}

/* The throttle's view of the backplane, every few milliseconds. */
static void throttle_sample(void *ctx, struct throttle_sample *s)
{
    struct replica *r = ctx;
    struct twl_rdma_bp_stats bs;
    twl_rdma_backplane_stats(r->bp, &bs);
    *s = (struct throttle_sample){.connected = bs.connected,
                                  .rate_bytes_s = bs.rate_bytes_s,
                                  .capacity_bytes_s = bs.capacity_bytes_s,
                                  .ring_bytes = bs.ring_bytes + bs.queued_bytes};
}

int replica_start(struct tgt_server *srv, struct replica **out)
{
    const struct tgt_config *cfg = srv->cfg;
    *out = NULL;
    struct replica *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return -ENOMEM;
    r->srv = srv;
    r->cfg = cfg;
    pthread_mutex_init(&r->order, NULL);
    pthread_mutex_init(&r->state_lock, NULL);
    pthread_mutex_init(&r->resync_lock, NULL);
    pthread_cond_init(&r->resync_cond, NULL);
    pthread_mutex_init(&r->move_lock, NULL);
    pthread_mutex_init(&r->fwd_lock, NULL);
    pthread_mutex_init(&r->handover_lock, NULL);
    pthread_cond_init(&r->handover_cond, NULL);
    r->target = &srv->targets[0];
    twl_rdma_hello_init(&r->mine);
    snprintf(r->mine.node, sizeof(r->mine.node), "%s", cfg->node_name);
    snprintf(r->mine.partner, sizeof(r->mine.partner), "%s", cfg->pair.partner);
    snprintf(r->mine.iqn, sizeof(r->mine.iqn), "%s", r->target->cfg->iqn);
    r->mine.lun_count = (uint32_t)r->target->lun_count;
    for (size_t i = 0; i < r->target->lun_count; i++) {
        const struct tgt_lun *l = &r->target->luns[i];
        struct twl_rdma_hello_lun *hl = &r->mine.luns[i];
        hl->id = l->info.id;
        hl->block_size = l->info.block_size;
        hl->size = l->info.block_count * l->info.block_size;
        snprintf(hl->owner, sizeof(hl->owner), "%s", l->cfg->owner);
    }
    int rc = 0;
    const char *delay = getenv(FAULT_APPLY_DELAY_ENV);
    if (delay && atoi(delay) > 0) {
        r->apply_delay_ms = (unsigned)atoi(delay);
        TWL_WARN(RPART, "fault injection: every change from the partner is applied %u ms late",
                 r->apply_delay_ms);
    }
    r->started_ns = twl_now_ns();
    if ((rc = open_logs(r)))
        goto err;
    uint8_t *hello = malloc(TWL_RDMA_HELLO_MAX_LEN);
    rc = hello ? make_hello(r, hello, TWL_RDMA_HELLO_MAX_LEN) : -ENOMEM;
    free(hello);
    if (rc < 0)
        goto err;
    if (cfg->pair.ack == TGT_PAIR_ACK_RECEIVED && (rc = map_ring_file(r)))
        goto err;
    snprintf(r->port_local, sizeof(r->port_local), "%u", cfg->pair.listen_port);
    snprintf(r->port_peer, sizeof(r->port_peer), "%u", cfg->pair.partner_port);
    struct twl_rdma_bp_opts o = {
        /* one side connects, the other listens: the smaller name connects */
        .connect = strcmp(cfg->node_name, cfg->pair.partner) < 0,
        .local_host = cfg->pair.listen_host,
        .local_port = r->port_local,
        .peer_host = cfg->pair.partner_host,
        .peer_port = r->port_peer,
        .ring_size = (uint32_t)cfg->pair.ring_bytes,
        .heartbeat_ms = (int)cfg->pair.heartbeat_ms,
        .dead_ms = (int)cfg->pair.dead_ms,
        .timeout_ms = cfg->pair.replica_timeout_ms,
        .make_hello = make_hello,
        .check_hello = check_hello,
        .apply = apply,
        .ctx = r,
        .region = bufpool_base(srv->pool),
        .region_len = bufpool_size(srv->pool),
        .durable_ring = r->ring_map ? trk_pmem_addr(r->ring_map) : NULL,
        .durable_len = r->ring_map ? trk_pmem_len(r->ring_map) : 0,
        .persist = persist,
        .payload_crc = cfg->pair.data_crc,
        .meter_window_ms = cfg->throttle.ewma_ms,
        .secret = cfg->pair.secret,
    };
    if (!cfg->pair.secret[0])
        TWL_WARN(RPART,
                 "pair.secret is not set: any host that reaches %s:%u or answers at %s:%u "
                 "can pair with this node as '%s'",
                 cfg->pair.listen_host, cfg->pair.listen_port, cfg->pair.partner_host,
                 cfg->pair.partner_port, cfg->pair.partner);
    struct throttle_opts to = {.enabled = cfg->throttle.enabled,
                               .burst_bytes = cfg->throttle.burst_bytes,
                               .min_rate = cfg->throttle.min_rate,
                               .resync_share = cfg->throttle.resync_share,
                               .queue_ms = cfg->throttle.queue_ms,
                               .ring_bytes = cfg->pair.ring_bytes};
    r->throttle = throttle_create(&to, twl_now_ns());
    if (r->throttle == NULL) {
        rc = -ENOMEM;
        goto err;
    }
    rc = twl_rdma_backplane_start(&o, &r->bp);
    if (rc)
        goto err;
    if ((rc = throttle_start(r->throttle, throttle_sample, r))) {
        twl_rdma_backplane_stop(r->bp);
        goto err;
    }
    r->resync_started = pthread_create(&r->resync, NULL, resync_main, r) == 0;
    if (!r->resync_started) {
        rc = -EAGAIN;
        TWL_ERROR(RPART, "cannot start the resync thread");
        throttle_destroy(r->throttle);
        r->throttle = NULL;
        twl_rdma_backplane_stop(r->bp);
        goto err;
    }
    r->handover_started = pthread_create(&r->handover, NULL, handover_main, r) == 0;
    if (!r->handover_started)
        TWL_ERROR(RPART, "cannot start the handover thread: the partner's takeovers are not "
                         "answered");
    struct tgt_replicator rep = {.ctx = r,
                                 .replicate = replicate,
                                 .track = track,
                                 .untrack = untrack,
                                 .replica_failure_ok = cfg->pair.policy == TGT_PAIR_AVAILABLE,
                                 /* disabled, it only keeps figures: the I/O path skips it */
                                 .throttle = cfg->throttle.enabled ? r->throttle : NULL};
    tgt_server_set_replicator(srv, &rep);
    TWL_INFO(RPART, "%s pairs with %s over %s:%u / %s:%u, policy %s, ack %s", cfg->node_name,
             cfg->pair.partner, cfg->pair.listen_host, cfg->pair.listen_port,
             cfg->pair.partner_host, cfg->pair.partner_port,
             cfg->pair.policy == TGT_PAIR_STRICT ? "strict" : "available",
             cfg->pair.ack == TGT_PAIR_ACK_RECEIVED ? "received" : "applied");
    *out = r;
    return 0;
err:
    throttle_destroy(r->throttle);
    close_logs(r);
    trk_pmem_close(r->ring_map);
    pthread_cond_destroy(&r->handover_cond);
    pthread_mutex_destroy(&r->handover_lock);
    pthread_mutex_destroy(&r->fwd_lock);
    pthread_mutex_destroy(&r->move_lock);
    pthread_cond_destroy(&r->resync_cond);
    pthread_mutex_destroy(&r->resync_lock);
    pthread_mutex_destroy(&r->state_lock);
    pthread_mutex_destroy(&r->order);
    free(r);
    return rc;
}

void replica_stop(struct replica *r)
{
    if (r == NULL)
        return;
    struct twl_rdma_bp_stats st;
    twl_rdma_backplane_stats(r->bp, &st);
    TWL_INFO(RPART,
             "replicated %" PRIu64 " records (%" PRIu64 " bytes) to %s, %" PRIu64
             " failed, %" PRIu64 " completed without replica; applied %" PRIu64
             " of its records; last rate %.1f MB/s, capacity %.1f MB/s",
             st.acked, st.acked_bytes, r->cfg->pair.partner, st.failed,
             (uint64_t)atomic_load(&r->unreplicated), st.applied, st.rate_bytes_s / 1e6,
             st.capacity_bytes_s / 1e6);
    /* the handover and resync threads first: what they send completes through the backplane */
    pthread_mutex_lock(&r->handover_lock);
    r->handover_stop = true;
    pthread_cond_broadcast(&r->handover_cond);
    pthread_mutex_unlock(&r->handover_lock);
    if (r->handover_started)
        pthread_join(r->handover, NULL);
    pthread_mutex_lock(&r->resync_lock);
    r->resync_stop = true;
    pthread_cond_broadcast(&r->resync_cond);
    pthread_mutex_unlock(&r->resync_lock);
    if (r->resync_started)
        pthread_join(r->resync, NULL);
    struct throttle_stats ts;
    throttle_get_stats(r->throttle, &ts);
    TWL_INFO(RPART,
             "throttle: %" PRIu64 " of %" PRIu64 " client writes waited, in %" PRIu64
             " episodes; wait p99 %" PRIu64 " us, max %" PRIu64 " us; partner ring peak %" PRIu64
             " KiB of %" PRIu64 " KiB, full %" PRIu64 " times",
             ts.waited[THROTTLE_CLIENT], ts.admitted[THROTTLE_CLIENT], ts.episodes, ts.wait_p99_us,
             ts.wait_max_us, ts.ring_peak_bytes >> 10, ts.ring_limit_bytes >> 10, st.ring_full);
    throttle_destroy(r->throttle); /* anything still waiting goes on */
    twl_rdma_backplane_stop(r->bp);
    forward_expire(r, true); /* no answer comes any more */
    for (size_t i = 0; i < r->copy_count; i++)
        if (trk_log_dirty_count(r->copies[i].log))
            TWL_WARN(RPART, "LUN %u: %" PRIu64 " dirty regions left for a resync at the next start",
                     r->copies[i].lun->info.id, trk_log_dirty_count(r->copies[i].log));
    close_logs(r);
    trk_pmem_close(r->ring_map);
    pthread_cond_destroy(&r->handover_cond);
    pthread_mutex_destroy(&r->handover_lock);
    pthread_mutex_destroy(&r->fwd_lock);
    pthread_mutex_destroy(&r->move_lock);
    pthread_cond_destroy(&r->resync_cond);
    pthread_mutex_destroy(&r->resync_lock);
    pthread_mutex_destroy(&r->state_lock);
    pthread_mutex_destroy(&r->order);
    free(r);
}
