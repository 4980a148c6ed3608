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
 * completes the write GOOD and the pair runs degraded (the failure issue adds the dirty
 * region log that makes the later resync cheap); "strict" fails the write.
 */
#include "replica.h"

#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bufpool.h"
#include "media.h"
#include "proto.h"
#include "rdma.h"
#include "server_internal.h"
#include "tracker.h"

#define RPART "pair"

#define META_MAGIC 0x54574c58u /* "TWLX" */

struct replica {
    struct tgt_server *srv;
    const struct tgt_config *cfg;
    struct tgt_target *target;
    struct twl_rdma_backplane *bp;
    struct trk_pmem *ring_map; /* ack received: the durable ring */
    struct twl_rdma_hello mine;
    uint8_t *hello;
    uint32_t hello_len;
    char port_local[8], port_peer[8];
    pthread_mutex_t order; /* change seq and ring order agree: numbered and queued together */
    uint64_t seq;          /* under order; the first change is 1 */
    atomic_bool degraded;
    atomic_uint_fast64_t unreplicated; /* changes completed without their replica */
    unsigned apply_delay_ms;           /* fault injection for tests (FAULT_APPLY_DELAY_ENV) */
};

/* Tests make this node slow to apply what it received, so that with ack = "received" a crash
 * finds records acknowledged and not applied. */
#define FAULT_APPLY_DELAY_ENV "TWINLUN_FAULT_APPLY_DELAY_MS"

struct pending {
    struct replica *r;
    tgt_write_done_fn done;
    void *cookie;
};

static void enter_degraded(struct replica *r, int err)
{
    atomic_fetch_add(&r->unreplicated, 1);
    if (!atomic_exchange(&r->degraded, true))
        TWL_WARN(RPART,
                 "degraded: a write completed without its replica on %s (%s); the copies differ "
                 "until a resync",
                 r->cfg->pair.partner, strerror(-err));
}

static void replica_done(void *cookie, int err)
{
    struct pending *p = cookie;
    struct replica *r = p->r;
    if (err == 0) {
        if (atomic_exchange(&r->degraded, false))
            TWL_INFO(RPART, "replicating to %s again", r->cfg->pair.partner);
    } else if (r->cfg->pair.policy == TGT_PAIR_AVAILABLE) {
        enter_degraded(r, err);
        err = 0;
    }
    p->done(p->cookie, err ? -EIO : 0);
    free(p);
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
    if (rc == -ENOTCONN && r->cfg->pair.policy == TGT_PAIR_AVAILABLE) {
        enter_degraded(r, rc);
        done(cookie, 0);
        return 0;
    }
    return rc;
}

/* ---- partner side ---- */

static struct tgt_lun *find_lun(struct replica *r, uint32_t id)
{
    return target_find_lun(r->target, id);
}

static int apply(void *ctx, const void *rec, uint32_t len)
{
    struct replica *r = ctx;
    static struct twl_rdma_change ch; /* the backplane thread only */
    const uint8_t *data;
    if (len >= 8 && twl_get_be32(rec) == META_MAGIC) {
        uint32_t id = twl_get_be32((const uint8_t *)rec + 4);
        struct tgt_lun *lun = find_lun(r, id);
        int rc = lun ? lu_meta_apply(&lun->lu, (const uint8_t *)rec + 8, len - 8) : -ENOENT;
        if (rc)
            TWL_ERROR(RPART, "metadata of LUN %u from %s not applied: %s", id, r->cfg->pair.partner,
                      strerror(-rc));
        return rc;
    }
    if (r->apply_delay_ms)
        usleep(r->apply_delay_ms * 1000u);
    int rc = twl_rdma_change_decode(rec, len, &ch, &data);
    if (rc) {
        TWL_ERROR(RPART, "change record from %s refused: %s", r->cfg->pair.partner,
                  twl_rdma_change_strerror(&ch));
        return rc;
    }
    struct tgt_lun *lun = find_lun(r, ch.lun);
    if (lun == NULL || lun->info.block_size != ch.block_size) {
        TWL_ERROR(RPART, "change seq %" PRIu64 " for LUN %u: no such LUN here", ch.seq, ch.lun);
        return -ENOENT;
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
    r->hello_len = (uint32_t)twl_rdma_hello_len(&r->mine);
    r->hello = malloc(r->hello_len);
    int rc = r->hello ? twl_rdma_hello_encode(&r->mine, r->hello, r->hello_len) : -ENOMEM;
    if (rc < 0) {
        TWL_ERROR(RPART, "cannot describe this node to its partner: %s", strerror(-rc));
        goto err;
    }
    const char *delay = getenv(FAULT_APPLY_DELAY_ENV);
    if (delay && atoi(delay) > 0) {
        r->apply_delay_ms = (unsigned)atoi(delay);
        TWL_WARN(RPART, "fault injection: every change from the partner is applied %u ms late",
                 r->apply_delay_ms);
    }
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
        .hello = r->hello,
        .hello_len = r->hello_len,
        .check_hello = check_hello,
        .apply = apply,
        .ctx = r,
        .region = bufpool_base(srv->pool),
        .region_len = bufpool_size(srv->pool),
        .durable_ring = r->ring_map ? trk_pmem_addr(r->ring_map) : NULL,
        .durable_len = r->ring_map ? trk_pmem_len(r->ring_map) : 0,
        .persist = persist,
        .payload_crc = cfg->pair.data_crc,
    };
    rc = twl_rdma_backplane_start(&o, &r->bp);
    if (rc)
        goto err;
    struct tgt_replicator rep = {.ctx = r, .replicate = replicate};
    tgt_server_set_replicator(srv, &rep);
    TWL_INFO(RPART, "%s pairs with %s over %s:%u / %s:%u, policy %s, ack %s", cfg->node_name,
             cfg->pair.partner, cfg->pair.listen_host, cfg->pair.listen_port,
             cfg->pair.partner_host, cfg->pair.partner_port,
             cfg->pair.policy == TGT_PAIR_STRICT ? "strict" : "available",
             cfg->pair.ack == TGT_PAIR_ACK_RECEIVED ? "received" : "applied");
    *out = r;
    return 0;
err:
    trk_pmem_close(r->ring_map);
    free(r->hello);
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
    twl_rdma_backplane_stop(r->bp);
    trk_pmem_close(r->ring_map);
    pthread_mutex_destroy(&r->order);
    free(r->hello);
    free(r);
}
