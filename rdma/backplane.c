/*
 * The backplane: the one connection to the partner, run by its own thread.
 *
 * Any thread submits change records (twl_rdma_backplane_submit); the backplane thread copies
 * them into a registered staging area, places them in the partner's inflight ring with
 * one-sided writes, and completes each once the partner has consumed it, i.e. applied it to
 * its copy (the partner releases a record only after applying it, and its consumed position
 * comes back as a write with immediate). Records the partner sends are applied here, in ring
 * order, through the caller's apply callback.
 *
 * Every connection starts with a HELLO record each way, its MAC last (twl_rdma_hello_mac: the
 * pair's shared secret over both sides' nonces of this connection); a peer that sends none
 * within HELLO_WAIT_MS is dropped. No change moves before both sides authenticated and
 * accepted the other's (a mismatch is logged by each side from its own point of view, and
 * the connection is retried after a pause, so fixing the config and restarting one node
 * heals the pair). When a connection drops, the records not yet acknowledged are kept, and
 * sent again in order over the next connection (reconnecting with backoff); new submissions
 * queue behind them. Applying a record twice in ring order leaves the same copy, so a record
 * the partner had applied before the loss does no harm. A record still unacknowledged
 * timeout_ms after it was submitted fails with -ENOTCONN, and once no connection came back
 * within timeout_ms of the loss everything queued fails and submissions fail at once with
 * -ENOTCONN until the partner is back: the caller's policy decides (DESIGN.md section 5).
 *
 * The durability point: with a volatile ring the partner acknowledges a record once it is
 * applied to its copy; with a durable ring (ack = "received") once it is persisted in the ring,
 * before applying it. Then the ring's header (rdma.h) says which records may not be applied
 * yet, and they are applied again from the ring after a crash or a failed apply, before the
 * ring is reused: applying a record twice in ring order gives the same copy.
 */
#include "rdma.h"

#include "proto.h"
#include "twl_common.h"

#include <errno.h>
#include <inttypes.h>
#include <openssl/crypto.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

#define PART "backplane"

#define REC_HELLO       0x2u /* record flag: the connection's handshake */
#define CONNECT_TRY_MS  1000 /* one connect or accept attempt; the loop retries */
#define BACKOFF_MIN_MS  100  /* after a failed attempt (not a mere time-out), doubling */
#define BACKOFF_MAX_MS  5000
#define REFUSED_PAUSE_S 5     /* after a refused handshake */
#define HELLO_WAIT_MS   10000 /* a peer that sends no handshake by then is dropped */
#define EVENTS          64
#define SPIN_NS         50000ull /* busy polling before sleeping on the channel */
#define SETTLE_RETRY_MS 5000     /* a durable ring whose records cannot be applied: retry */
#define APPLY_Q                                                                                    \
    256                /* records acknowledged, waiting for the applier (more than the             \
                          receive credit the partner gets, so it never fills) */
#define APPLY_BATCH 32 /* records applied between two ring header updates */
/* The durable ring header's seq between connections, and until the partner's hello is
 * accepted: no record has it, so nothing in the ring is replayed */
#define DRING_UNARMED UINT64_MAX

struct submission {
    struct submission *next;
    twl_rdma_done_fn done;
    void *cookie;
    uint64_t submit_ns;
    uint32_t len;          /* bytes[]: the header, and the data unless it is sent in place */
    const uint8_t *direct; /* data inside the registered region, sent from there */
    uint32_t direct_len;
    uint8_t bytes[];
};

/* A record of the partner, persisted and acknowledged, for the applier thread. */
struct apply_item {
    const void *data;
    uint32_t len;
    bool hello; /* nothing to apply; its ring space is released in order all the same */
    uint64_t seq, end_pos;
};

/* A record sent and not yet consumed by the partner. */
struct inflight {
    uint64_t seq;
    twl_rdma_done_fn done;
    void *cookie;
    uint64_t submit_ns;
    uint64_t stage_end; /* staging position after this record: free once it is placed */
    uint32_t len;
    struct submission *sub; /* kept until acknowledged, to be sent again after a loss */
};

struct twl_rdma_backplane {
    struct twl_rdma_bp_opts o;
    char *secret; /* o.secret points here */
    pthread_t thread;
    int wake_fd;
    atomic_bool stop;
    atomic_bool connected; /* handshake done both ways */
    atomic_bool accepting; /* submissions are queued: connected, or reconnecting within
                              timeout_ms of a loss */
    uint64_t lost_ns;      /* backplane thread: when the last connection was lost */

    pthread_mutex_t lock; /* submissions */
    struct submission *head, *tail;

    /* owned by the backplane thread */
    struct twl_rdma_conn *conn;
    struct twl_rdma_buf *stage_mr;
    struct twl_rdma_buf *region_mr; /* the caller's region, this connection */
    uint8_t *stage;
    uint64_t stage_head, stage_tail; /* positions: records live in [tail, head) */
    struct inflight *ring;           /* cap entries, [ring_tail, ring_head) by sequence */
    uint64_t ring_head, ring_tail, cap;
    bool hello_sent, hello_ok;
    uint32_t hello_len; /* this connection's handshake, at the start of the staging area */
    /* the durable ring: its header's current state, the ring after the header */
    struct twl_rdma_dring_state dstate;
    uint8_t *dring;
    /* ... and its applier thread, which applies what this thread persisted and acknowledged,
     * in ring order, and says how far it got so that the ring space can be released */
    pthread_t applier;
    bool applier_started;
    pthread_mutex_t apply_lock;
    pthread_cond_t apply_cond;         /* work queued, work done, stop */
    struct apply_item aq[APPLY_Q];     /* [aq_tail, aq_head), under apply_lock */
    uint64_t aq_head, aq_tail;         /* under apply_lock */
    uint64_t applied_seq, applied_pos; /* under apply_lock: applied, in the header */
    uint64_t released_seq;             /* backplane thread: given back to the partner */
    int apply_err;                     /* under apply_lock */
    bool applier_stop;                 /* under apply_lock */

    struct twl_rdma_bp_stats st; /* under lock */
    struct twl_rdma_meter meter; /* under lock */
    bool busy_after_done;        /* under lock: records were left after the last completion */
    bool send_blocked;           /* backplane thread: records wait for ring space */
};

static void wake(struct twl_rdma_backplane *bp)
{
    uint64_t one = 1;
    if (write(bp->wake_fd, &one, sizeof(one)) < 0)
        TWL_WARN(PART, "wake: %s", strerror(errno));
}

static void take_wake(struct twl_rdma_backplane *bp)
{
    uint64_t v;
    if (read(bp->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        TWL_WARN(PART, "wake read: %s", strerror(errno));
}

int twl_rdma_backplane_submit(struct twl_rdma_backplane *bp, const void *hdr, uint32_t hdr_len,
                              const void *data, uint32_t data_len, twl_rdma_done_fn done,
                              void *cookie)
{
    if (!atomic_load(&bp->accepting))
        return -ENOTCONN;
    uint64_t len = (uint64_t)hdr_len + data_len;
    /* a record must fit the partner's ring with its header and alignment */
    if (twl_rdma_rec_len((uint32_t)len) > bp->o.ring_size / 2 || len > UINT32_MAX)
        return -EMSGSIZE;
    const uint8_t *d = data;
    const uint8_t *region = bp->o.region;
    bool direct = data_len && region && d >= region && d + data_len <= region + bp->o.region_len;
    uint32_t copied = direct ? hdr_len : (uint32_t)len;
    struct submission *s = malloc(sizeof(*s) + copied);
    if (s == NULL)
        return -ENOMEM;
    s->next = NULL;
    s->done = done;
    s->cookie = cookie;
    s->submit_ns = twl_now_ns();
    s->len = copied;
    s->direct = direct ? d : NULL;
    s->direct_len = direct ? data_len : 0;
    memcpy(s->bytes, hdr, hdr_len);
    if (data_len && !direct)
        memcpy(s->bytes + hdr_len, data, data_len);
    pthread_mutex_lock(&bp->lock);
    /* Only a submission into an empty queue wakes the thread: one that finds others queued is
     * sent with them (the thread takes its wake-up before it looks at the queue, and stops
     * sending only with records in flight, whose completions bring it back). */
    bool first = bp->head == NULL;
    if (bp->tail)
        bp->tail->next = s;
    else
        bp->head = s;
    bp->tail = s;
    bp->st.submitted++;
    bp->st.queued_bytes += twl_rdma_rec_len((uint32_t)len);
    pthread_mutex_unlock(&bp->lock);
    if (first)
        wake(bp);
    return 0;
}

void twl_rdma_backplane_stats(struct twl_rdma_backplane *bp, struct twl_rdma_bp_stats *st)
{
    pthread_mutex_lock(&bp->lock);
    *st = bp->st;
    st->connected = atomic_load(&bp->connected);
    st->ring_size = bp->o.ring_size;
    twl_rdma_meter_rate(&bp->meter, twl_now_ns(), &st->rate_bytes_s, &st->rate_records_s);
    twl_rdma_meter_capacity(&bp->meter, &st->capacity_bytes_s, &st->capacity_records_s);
    pthread_mutex_unlock(&bp->lock);
}

/* Takes n off a byte count, never below zero. */
static void count_sub(uint64_t *count, uint64_t n)
{
    *count -= n < *count ? n : *count;
}

/* Counts a completion of a record of bytes (placed in the partner's ring, or still queued);
 * successful ones feed the completion-rate meter. The interval since the previous completion
 * was backlogged when records were left in flight or queued at its start: the link and the
 * partner were busy all along, so the rate is what they can take. */
static void count_done(struct twl_rdma_backplane *bp, int err, uint64_t bytes, bool placed)
{
    pthread_mutex_lock(&bp->lock);
    uint64_t rec = twl_rdma_rec_len((uint32_t)bytes);
    count_sub(placed ? &bp->st.ring_bytes : &bp->st.queued_bytes, rec);
    if (err == 0) {
        bp->st.acked++;
        bp->st.acked_bytes += bytes;
        twl_rdma_meter_add(&bp->meter, twl_now_ns(), bytes, 1, bp->busy_after_done);
        bp->busy_after_done = bp->head != NULL || bp->ring_head != bp->ring_tail;
    } else {
        bp->st.failed++;
    }
    pthread_mutex_unlock(&bp->lock);
}

/* Fails everything queued or in flight (the connection is gone). */
static void fail_all(struct twl_rdma_backplane *bp, int err)
{
    for (; bp->ring_tail < bp->ring_head; bp->ring_tail++) {
        struct inflight *f = &bp->ring[bp->ring_tail % bp->cap];
        count_done(bp, err, f->len, true);
        f->done(f->cookie, err);
        free(f->sub);
    }
    pthread_mutex_lock(&bp->lock);
    struct submission *s = bp->head;
    bp->head = bp->tail = NULL;
    pthread_mutex_unlock(&bp->lock);
    while (s) {
        struct submission *next = s->next;
        count_done(bp, err, s->len + s->direct_len, false);
        s->done(s->cookie, err);
        free(s);
        s = next;
    }
}

/* The records in flight go back to the head of the queue, in order, to be sent again. */
static uint64_t requeue_inflight(struct twl_rdma_backplane *bp)
{
    uint64_t n = bp->ring_head - bp->ring_tail, bytes = 0;
    struct submission *first = NULL, *last = NULL;
    for (; bp->ring_tail < bp->ring_head; bp->ring_tail++) {
        struct submission *sub = bp->ring[bp->ring_tail % bp->cap].sub;
        bytes += twl_rdma_rec_len(sub->len + sub->direct_len);
        sub->next = NULL;
        if (last)
            last->next = sub;
        else
            first = sub;
        last = sub;
    }
    if (first) {
        pthread_mutex_lock(&bp->lock);
        count_sub(&bp->st.ring_bytes, bytes);
        bp->st.queued_bytes += bytes;
        last->next = bp->head;
        bp->head = first;
        if (bp->tail == NULL)
            bp->tail = last;
        pthread_mutex_unlock(&bp->lock);
    }
    return n;
}

/* Fails what waited longer than timeout_ms; once the partner stayed away that long, all of it,
 * and stops queueing. Returns true while records wait for a new connection. */
static bool expire_waiting(struct twl_rdma_backplane *bp, uint64_t now)
{
    uint64_t limit = (uint64_t)bp->o.timeout_ms * 1000000ull;
    bool give_up = now - bp->lost_ns >= limit;
    if (give_up && atomic_exchange(&bp->accepting, false))
        TWL_WARN(PART,
                 "no partner connection for %u ms: writes are not replicated until it is "
                 "back",
                 bp->o.timeout_ms);
    pthread_mutex_lock(&bp->lock);
    struct submission *keep = NULL, *keep_tail = NULL, *gone = NULL, *s = bp->head;
    while (s) {
        struct submission *next = s->next;
        s->next = NULL;
        if (give_up || now - s->submit_ns >= limit) {
            s->next = gone;
            gone = s;
        } else {
            if (keep_tail)
                keep_tail->next = s;
            else
                keep = s;
            keep_tail = s;
        }
        s = next;
    }
    bp->head = keep;
    bp->tail = keep_tail;
    pthread_mutex_unlock(&bp->lock);
    while (gone) {
        struct submission *next = gone->next;
        count_done(bp, -ENOTCONN, gone->len + gone->direct_len, false);
        gone->done(gone->cookie, -ENOTCONN);
        free(gone);
        gone = next;
    }
    return keep != NULL;
}

/* Ends the connection. Unless the backplane stops or the partner is refused, what is in flight
 * waits for the next connection (expire_waiting bounds how long). */
static void close_conn(struct twl_rdma_backplane *bp, const char *why, bool retry)
{
    if (bp->conn == NULL)
        return;
    twl_rdma_conn_close(bp->conn);
    bp->conn = NULL;
    bp->stage_mr = NULL;
    bp->region_mr = NULL;
    bool was = atomic_exchange(&bp->connected, false);
    if (!retry || !atomic_load(&bp->accepting)) {
        atomic_store(&bp->accepting, false);
        if (was)
            TWL_WARN(PART,
                     "partner connection lost (%s): writes are not replicated until it is "
                     "back",
                     why);
        fail_all(bp, -ENOTCONN);
        return;
    }
    uint64_t held = requeue_inflight(bp);
    if (was) {
        bp->lost_ns = twl_now_ns();
        TWL_WARN(PART,
                 "partner connection lost (%s): %" PRIu64 " records in flight kept for a new "
                 "connection, for up to %u ms",
                 why, held, bp->o.timeout_ms);
    }
}

/* Records wait for the partner's ring (or its receive credit, the send queue, staging): counted
 * once per wait, for the throttle's figures. Returns 0. */
static int blocked(struct twl_rdma_backplane *bp)
{
    if (!bp->send_blocked) {
        bp->send_blocked = true;
        pthread_mutex_lock(&bp->lock);
        bp->st.ring_full++;
        pthread_mutex_unlock(&bp->lock);
    }
    return 0;
}

/* Places queued submissions while the staging area, the in-flight table and the partner's
 * ring take them. */
static int send_queued(struct twl_rdma_backplane *bp)
{
    for (;;) {
        pthread_mutex_lock(&bp->lock);
        struct submission *s = bp->head;
        pthread_mutex_unlock(&bp->lock);
        if (s == NULL) {
            bp->send_blocked = false;
            return 0;
        }
        if (bp->ring_head - bp->ring_tail == bp->cap)
            return blocked(bp);
        /* staging is a ring too; a record never straddles its end */
        uint64_t size = bp->o.ring_size;
        uint64_t start = bp->stage_head;
        if ((start % size) + s->len > size)
            start += size - start % size;
        if (start + s->len - bp->stage_tail > size)
            return blocked(bp); /* wait for placements to free staging */
        uint8_t *dst = bp->stage + start % size;
        memcpy(dst, s->bytes, s->len);
        struct twl_rdma_seg segs[2] = {
            {.buf = bp->stage_mr, .data = dst, .len = s->len},
            {.buf = bp->region_mr, .data = s->direct, .len = s->direct_len},
        };
        int64_t seq = twl_rdma_sendv(bp->conn, segs, s->direct ? 2 : 1, 0);
        if (seq == -EAGAIN)
            return blocked(bp);
        if (seq < 0)
            return (int)seq;
        bp->send_blocked = false;
        uint64_t rec = twl_rdma_rec_len(s->len + s->direct_len);
        pthread_mutex_lock(&bp->lock);
        count_sub(&bp->st.queued_bytes, rec);
        bp->st.ring_bytes += rec;
        bp->head = s->next;
        if (bp->head == NULL)
            bp->tail = NULL;
        pthread_mutex_unlock(&bp->lock);
        struct inflight *f = &bp->ring[bp->ring_head++ % bp->cap];
        f->seq = (uint64_t)seq;
        f->done = s->done;
        f->cookie = s->cookie;
        f->submit_ns = s->submit_ns;
        f->stage_end = start + s->len;
        f->len = s->len + s->direct_len;
        f->sub = s;
        bp->stage_head = start + s->len;
    }
}

/* Records [0, consumed) are applied on the partner: complete them. The HELLO is record 0 of
 * every connection and has no entry. */
static void complete_consumed(struct twl_rdma_backplane *bp, uint64_t consumed)
{
    while (bp->ring_tail < bp->ring_head) {
        struct inflight *f = &bp->ring[bp->ring_tail % bp->cap];
        if (f->seq >= consumed)
            break;
        bp->ring_tail++;
        /* consumed implies placed, whichever completion was seen first */
        if (f->stage_end > bp->stage_tail)
            bp->stage_tail = f->stage_end;
        count_done(bp, 0, f->len, true);
        f->done(f->cookie, 0);
        free(f->sub);
    }
}

/* The oldest record waiting too long fails the connection: the partner is not applying. */
static bool overdue(struct twl_rdma_backplane *bp, uint64_t now)
{
    if (bp->ring_tail == bp->ring_head)
        return false;
    struct inflight *f = &bp->ring[bp->ring_tail % bp->cap];
    return now - f->submit_ns > (uint64_t)bp->o.timeout_ms * 1000000ull;
}

/* ---- the durable ring ---- */

static void dring_set(struct twl_rdma_backplane *bp, uint64_t pos, uint64_t seq)
{
    bp->dstate.epoch++;
    bp->dstate.pos = pos;
    bp->dstate.seq = seq;
    uint8_t *hdr = bp->o.durable_ring;
    twl_rdma_dring_write(hdr, &bp->dstate);
    bp->o.persist(bp->o.ctx, hdr + twl_rdma_dring_slot(&bp->dstate), 64);
}

static int replay_one(void *ctx, const struct twl_rdma_rec_hdr *h, const void *payload)
{
    struct twl_rdma_backplane *bp = ctx;
    if (h->flags & REC_HELLO)
        return 0;
    int rc = bp->o.apply(bp->o.ctx, payload, h->len);
    if (rc == 0) {
        pthread_mutex_lock(&bp->lock);
        bp->st.applied++;
        bp->st.applied_bytes += h->len;
        bp->st.replayed++;
        pthread_mutex_unlock(&bp->lock);
    }
    return rc < 0 ? rc : 0;
}

/*
 * Applies the records the ring header says may not be applied yet, then empties the ring for
 * the next connection: header first (so a crash while zeroing finds nothing to replay), then
 * zeros (so no record of this connection can pass for one of the next), then the header of the
 * empty ring, unarmed (DRING_UNARMED) until the next partner's hello is accepted. On an apply error
 * the ring is left as it is and the error returned.
 */
static int dring_settle(struct twl_rdma_backplane *bp)
{
    uint8_t *hdr = bp->o.durable_ring;
    struct twl_rdma_dring_state st;
    uint64_t rs = bp->o.ring_size;
    if (twl_rdma_dring_read(hdr, &st) == 0 &&
        TWL_RDMA_DRING_HDR_LEN + st.ring_size <= bp->o.durable_len) {
        bp->dstate.epoch = st.epoch;
        uint64_t pos = st.pos, seq = st.seq;
        int64_t n = twl_rdma_ring_replay(bp->dring, st.ring_size, &pos, &seq, replay_one, bp);
        if (n < 0) {
            TWL_ERROR(PART,
                      "durable ring: change %" PRIu64 " (ring position %" PRIu64
                      ") acknowledged to the partner cannot be applied here: %s; kept in the "
                      "ring until it can be",
                      seq, pos, strerror((int)-n));
            return (int)n;
        }
        if (n > 0)
            TWL_INFO(PART, "durable ring: applied %" PRId64 " acknowledged changes left in it", n);
        rs = st.ring_size > rs ? st.ring_size : rs;
        dring_set(bp, pos, seq);
    }
    memset(bp->dring, 0, rs);
    bp->o.persist(bp->o.ctx, bp->dring, rs);
    bp->dstate.ring_size = bp->o.ring_size;
    dring_set(bp, 0, DRING_UNARMED);
    return 0;
}

/* Persists the records just received (one persist per contiguous run) and acknowledges them,
 * before they are applied. */
static int dring_ack(struct twl_rdma_backplane *bp, const struct twl_rdma_event *ev, int n)
{
    const uint8_t *run = NULL, *run_end = NULL;
    for (int i = 0; i < n; i++) {
        if (ev[i].type != TWL_RDMA_EV_REC)
            continue;
        const uint8_t *rec = (const uint8_t *)ev[i].data - TWL_RDMA_REC_HDR_LEN;
        if (run && rec != run_end) {
            bp->o.persist(bp->o.ctx, run, (size_t)(run_end - run));
            run = NULL;
        }
        if (run == NULL)
            run = rec;
        /* the next record starts at the next 64-byte boundary */
        run_end = rec + twl_rdma_rec_len(ev[i].len);
    }
    if (run == NULL)
        return 0;
    bp->o.persist(bp->o.ctx, run, (size_t)(run_end - run));
    return twl_rdma_rx_ack(bp->conn);
}

static void count_applied(struct twl_rdma_backplane *bp, uint32_t len)
{
    pthread_mutex_lock(&bp->lock);
    bp->st.applied++;
    bp->st.applied_bytes += len;
    pthread_mutex_unlock(&bp->lock);
}

static void *applier_main(void *arg)
{
    struct twl_rdma_backplane *bp = arg;
    struct apply_item batch[APPLY_BATCH];
    pthread_mutex_lock(&bp->apply_lock);
    for (;;) {
        while (!bp->applier_stop && (bp->aq_tail == bp->aq_head || bp->apply_err))
            pthread_cond_wait(&bp->apply_cond, &bp->apply_lock);
        if (bp->applier_stop)
            break;
        uint64_t k = bp->aq_head - bp->aq_tail;
        if (k > APPLY_BATCH)
            k = APPLY_BATCH;
        for (uint64_t i = 0; i < k; i++)
            batch[i] = bp->aq[(bp->aq_tail + i) % APPLY_Q];
        pthread_mutex_unlock(&bp->apply_lock);
        int rc = 0;
        for (uint64_t i = 0; i < k && rc == 0; i++) {
            if (batch[i].hello)
                continue;
            rc = bp->o.apply(bp->o.ctx, batch[i].data, batch[i].len);
            if (rc == 0)
                count_applied(bp, batch[i].len);
        }
        /* the header moves on before the space is released: replay never needs it again */
        if (rc == 0)
            dring_set(bp, batch[k - 1].end_pos, batch[k - 1].seq + 1);
        pthread_mutex_lock(&bp->apply_lock);
        if (rc) {
            bp->apply_err = rc;
        } else {
            bp->aq_tail += k;
            bp->applied_seq = batch[k - 1].seq + 1;
            bp->applied_pos = batch[k - 1].end_pos;
        }
        pthread_cond_broadcast(&bp->apply_cond);
        wake(bp);
    }
    pthread_mutex_unlock(&bp->apply_lock);
    return NULL;
}

/* Hands a persisted, acknowledged record to the applier. */
static int apply_later(struct twl_rdma_backplane *bp, const struct twl_rdma_event *ev, bool hello)
{
    pthread_mutex_lock(&bp->apply_lock);
    int rc = -EOVERFLOW;
    if (bp->aq_head - bp->aq_tail < APPLY_Q) {
        bp->aq[bp->aq_head++ % APPLY_Q] = (struct apply_item){.data = ev->data,
                                                              .len = ev->len,
                                                              .hello = hello,
                                                              .seq = ev->seq,
                                                              .end_pos = ev->end_pos};
        pthread_cond_broadcast(&bp->apply_cond);
        rc = 0;
    }
    pthread_mutex_unlock(&bp->apply_lock);
    if (rc)
        TWL_ERROR(PART, "more records unapplied than the partner may send; dropping the "
                        "connection");
    return rc;
}

/* What the applier has done: gives that ring space back. Returns its error, if any, and
 * whether it still has work. */
static int release_applied(struct twl_rdma_backplane *bp, bool *pending)
{
    pthread_mutex_lock(&bp->apply_lock);
    int err = bp->apply_err;
    uint64_t seq = bp->applied_seq, pos = bp->applied_pos;
    *pending = bp->aq_head != bp->aq_tail;
    pthread_mutex_unlock(&bp->apply_lock);
    if (seq > bp->released_seq) {
        twl_rdma_rx_release_upto(bp->conn, seq, pos);
        bp->released_seq = seq;
    }
    return err;
}

/* After a connection: waits until the applier applied every record it was given (or failed),
 * then forgets the connection's positions. */
static void applier_drain(struct twl_rdma_backplane *bp)
{
    pthread_mutex_lock(&bp->apply_lock);
    while (bp->aq_tail != bp->aq_head && !bp->apply_err)
        pthread_cond_wait(&bp->apply_cond, &bp->apply_lock);
    bp->aq_head = bp->aq_tail = 0;
    bp->applied_seq = bp->applied_pos = 0;
    bp->apply_err = 0;
    pthread_mutex_unlock(&bp->apply_lock);
    bp->released_seq = 0;
}

/* Appends the MAC to the hello of hello_len bytes at the start of the staging area. Returns the
 * signed length, or a negative errno. */
static int sign_hello(struct twl_rdma_backplane *bp, int hello_len)
{
    uint8_t mine[TWL_RDMA_NONCE_LEN], theirs[TWL_RDMA_NONCE_LEN];
    twl_rdma_conn_nonces(bp->conn, mine, theirs);
    int rc = twl_rdma_hello_mac(bp->o.secret, bp->o.connect, mine, theirs, bp->stage,
                                (size_t)hello_len, bp->stage + hello_len);
    return rc ? rc : hello_len + (int)TWL_RDMA_MAC_LEN;
}

/* The partner's hello (len bytes, its MAC last) is authenticated with the shared secret and
 * answers this connection's nonce. Returns 0 or -EPROTO (logged). */
static int check_hello_mac(struct twl_rdma_backplane *bp, const uint8_t *hello, uint32_t len)
{
    uint8_t mine[TWL_RDMA_NONCE_LEN], theirs[TWL_RDMA_NONCE_LEN], mac[TWL_RDMA_MAC_LEN];
    char peer[64];
    twl_rdma_conn_peer_name(bp->conn, peer, sizeof(peer));
    if (len < TWL_RDMA_MAC_LEN) {
        TWL_ERROR(PART, "handshake from %s refused: %u bytes, too short to be authenticated", peer,
                  len);
        return -EPROTO;
    }
    twl_rdma_conn_nonces(bp->conn, mine, theirs);
    int rc = twl_rdma_hello_mac(bp->o.secret, !bp->o.connect, theirs, mine, hello,
                                len - TWL_RDMA_MAC_LEN, mac);
    if (rc) {
        TWL_ERROR(PART, "handshake from %s refused: cannot compute its MAC: %s", peer,
                  strerror(-rc));
        return -EPROTO;
    }
    if (CRYPTO_memcmp(mac, hello + len - TWL_RDMA_MAC_LEN, TWL_RDMA_MAC_LEN) != 0) {
        TWL_ERROR(PART,
                  "handshake from %s refused: not authenticated with this node's pair.secret "
                  "(the two nodes' secrets differ, or only one of them has one)",
                  peer);
        return -EPROTO;
    }
    return 0;
}

/* Authenticates and checks the partner's hello. With a durable ring it then arms the ring's
 * header for this connection: until then nothing in the ring may be replayed, so records a
 * refused peer placed there are never applied. 0 or -EPROTO (logged). */
static int accept_hello(struct twl_rdma_backplane *bp, const struct twl_rdma_event *ev)
{
    int rc = check_hello_mac(bp, ev->data, ev->len);
    if (rc)
        return rc;
    rc = bp->o.check_hello(bp->o.ctx, ev->data, ev->len - TWL_RDMA_MAC_LEN);
    if (rc)
        return rc;
    if (bp->dring)
        dring_set(bp, 0, 0);
    bp->hello_ok = true;
    atomic_store(&bp->connected, true);
    atomic_store(&bp->accepting, true);
    TWL_INFO(PART, "partner accepted: replicating");
    return 0;
}

/* With a durable ring, records are persisted and acknowledged before they are handled: the
 * hello among the first ones is accepted (and the header armed) before that, so that no
 * record is acknowledged that a crash right after would not replay. */
static int accept_hello_first(struct twl_rdma_backplane *bp, const struct twl_rdma_event *ev, int n)
{
    for (int i = 0; i < n; i++)
        if (ev[i].type == TWL_RDMA_EV_REC)
            return ev[i].flags & REC_HELLO ? accept_hello(bp, &ev[i]) : 0;
    return 0;
}

static int handle_record(struct twl_rdma_backplane *bp, const struct twl_rdma_event *ev)
{
    if (ev->flags & REC_HELLO) {
        int rc = bp->hello_ok ? 0 : accept_hello(bp, ev);
        if (rc)
            return rc;
        return bp->dring ? apply_later(bp, ev, true) : 0;
    }
    if (!bp->hello_ok) {
        TWL_ERROR(PART, "partner sent a change before its handshake; dropping the connection");
        return -EPROTO;
    }
    if (bp->dring)
        return apply_later(bp, ev, false);
    int rc = bp->o.apply(bp->o.ctx, ev->data, ev->len);
    if (rc == 0)
        count_applied(bp, ev->len);
    return rc;
}

/* Sleeps up to ms, or until a wake-up (stop, or a submission). */
static void pause_ms(struct twl_rdma_backplane *bp, int ms)
{
    struct pollfd pfd = {.fd = bp->wake_fd, .events = POLLIN};
    if (poll(&pfd, 1, ms) > 0)
        take_wake(bp);
}

/* The partner's handshake was refused: drop the connection, and wait before the next one. */
static void refused(struct twl_rdma_backplane *bp)
{
    close_conn(bp, "handshake refused", false);
    pause_ms(bp, REFUSED_PAUSE_S * 1000);
}

/* One connected session until it ends or the backplane stops. */
static void run_connection(struct twl_rdma_backplane *bp)
{
    struct twl_rdma_event ev[EVENTS];
    bp->stage_head = bp->stage_tail = 0;
    bp->hello_ok = false;
    bp->stage_mr = twl_rdma_buf_reg(bp->conn, bp->stage, bp->o.ring_size);
    if (bp->stage_mr == NULL) {
        close_conn(bp, "cannot register the staging area", true);
        return;
    }
    bp->region_mr = NULL;
    if (bp->o.region) {
        bp->region_mr = twl_rdma_buf_reg(bp->conn, bp->o.region, bp->o.region_len);
        if (bp->region_mr == NULL) {
            close_conn(bp, "cannot register the data region", true);
            return;
        }
    }
    int hello_len = bp->o.make_hello(bp->o.ctx, bp->stage, bp->o.ring_size - TWL_RDMA_MAC_LEN);
    if (hello_len > 0)
        hello_len = sign_hello(bp, hello_len);
    if (hello_len <= 0) {
        close_conn(bp, "no handshake to send", true);
        return;
    }
    bp->hello_len = (uint32_t)hello_len;
    uint64_t hello_deadline = twl_now_ns() + HELLO_WAIT_MS * 1000000ull;
    int64_t seq = twl_rdma_send(bp->conn, bp->stage_mr, bp->stage, bp->hello_len, REC_HELLO);
    if (seq != 0) {
        close_conn(bp, "handshake not sent", true);
        return;
    }
    bp->stage_tail = 0;
    bp->stage_head = bp->hello_len;
    bool recent_rx = false;
    while (!atomic_load(&bp->stop)) {
        /* With records in flight (or just applied, when more may follow) the next completion
         * is a round trip away: look for it without sleeping for a moment, since a wake-up
         * through the completion channel costs more than the round trip itself. */
        bool busy = bp->ring_head != bp->ring_tail || recent_rx;
        int n = 0;
        uint64_t spin_until = busy ? twl_now_ns() + SPIN_NS : 0;
        do {
            n = twl_rdma_poll(bp->conn, ev, EVENTS, 0);
        } while (n == 0 && busy && twl_now_ns() < spin_until);
        if (n == 0)
            n = twl_rdma_poll(bp->conn, ev, EVENTS, busy ? 10 : 100);
        take_wake(bp);
        if (n < 0) {
            close_conn(bp, strerror(-n), true);
            return;
        }
        bool received = false;
        recent_rx = false;
        if (bp->dring && !bp->hello_ok && accept_hello_first(bp, ev, n)) {
            refused(bp);
            return;
        }
        if (bp->dring) {
            int rc = dring_ack(bp, ev, n);
            if (rc) {
                close_conn(bp, strerror(-rc), true);
                return;
            }
        }
        for (int i = 0; i < n; i++) {
            switch (ev[i].type) {
            case TWL_RDMA_EV_REC: {
                int rc = handle_record(bp, &ev[i]);
                if (rc == -EPROTO) {
                    refused(bp);
                    return;
                }
                if (rc) {
                    close_conn(bp, "apply failed", true);
                    return;
                }
                received = true;
                break;
            }
            case TWL_RDMA_EV_TX_DONE:
                /* placed in the partner's ring: its staging bytes may be reused */
                if (ev[i].seq == 0 && bp->stage_tail < bp->hello_len)
                    bp->stage_tail = bp->hello_len;
                for (uint64_t k = bp->ring_tail; k < bp->ring_head; k++) {
                    struct inflight *f = &bp->ring[k % bp->cap];
                    if (f->seq == ev[i].seq && f->stage_end > bp->stage_tail)
                        bp->stage_tail = f->stage_end;
                }
                break;
            case TWL_RDMA_EV_CONSUMED:
                complete_consumed(bp, ev[i].acked);
                break;
            case TWL_RDMA_EV_PEER_DEAD:
                close_conn(bp, "partner dead", true);
                return;
            case TWL_RDMA_EV_DISCONNECTED:
                close_conn(bp, "partner disconnected", true);
                return;
            }
        }
        if (bp->dring) {
            bool pending;
            if (release_applied(bp, &pending)) {
                close_conn(bp, "apply failed", true);
                return;
            }
            recent_rx = pending || received;
        } else if (received) {
            twl_rdma_rx_release(bp->conn); /* applied: the partner may complete and reuse them */
            recent_rx = true;
        }
        complete_consumed(bp, twl_rdma_peer_acked(bp->conn));
        if (bp->hello_ok) {
            int rc = send_queued(bp);
            if (rc) {
                close_conn(bp, strerror(-rc), true);
                return;
            }
        }
        if (!bp->hello_ok && twl_now_ns() > hello_deadline) {
            char peer[64];
            TWL_ERROR(PART, "%s sent no handshake within %d ms; dropping the connection",
                      twl_rdma_conn_peer_name(bp->conn, peer, sizeof(peer)), HELLO_WAIT_MS);
            close_conn(bp, "no handshake", true);
            return;
        }
        if (overdue(bp, twl_now_ns())) {
            TWL_ERROR(PART, "partner has not applied a record for %u ms", bp->o.timeout_ms);
            close_conn(bp, "replica timeout", true);
            return;
        }
    }
    close_conn(bp, "stopping", false);
}

static void *backplane_main(void *arg)
{
    struct twl_rdma_backplane *bp = arg;
    unsigned failures = 0;
    int backoff_ms = BACKOFF_MIN_MS;
    while (!atomic_load(&bp->stop)) {
        /* records kept from a lost connection wait only so long */
        bool waiting = expire_waiting(bp, twl_now_ns());
        struct twl_rdma_opts co = {
            .addr = bp->o.connect ? bp->o.peer_host : bp->o.local_host,
            .port = bp->o.connect ? bp->o.peer_port : bp->o.local_port,
            .listen = !bp->o.connect,
            .ring_size = bp->o.ring_size,
            .connect_timeout_ms = CONNECT_TRY_MS,
            .heartbeat_ms = bp->o.heartbeat_ms,
            .dead_ms = bp->o.dead_ms,
            .quiet_timeouts = true,
            .wake_fd = bp->wake_fd,
            .ring_mem = bp->dring,
            .payload_crc = bp->o.payload_crc || bp->dring,
        };
        int rc = twl_rdma_conn_open(&bp->conn, &co);
        if (rc) {
            if (rc != -ETIMEDOUT && failures++ % 30 == 0)
                TWL_WARN(PART, "no partner connection yet (%s %s:%s: %s); retrying",
                         bp->o.connect ? "connect to" : "listen on", co.addr ? co.addr : "*",
                         co.port, strerror(-rc));
            /* no peer within the attempt is the normal wait; errors back off exponentially */
            if (rc != -ETIMEDOUT) {
                pause_ms(bp, waiting && backoff_ms > 250 ? 250 : backoff_ms);
                backoff_ms = backoff_ms * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff_ms * 2;
            }
            continue;
        }
        failures = 0;
        backoff_ms = BACKOFF_MIN_MS;
        run_connection(bp);
        /* what the connection left acknowledged and not applied, before the ring is reused */
        if (bp->dring)
            applier_drain(bp);
        while (bp->dring && dring_settle(bp) != 0 && !atomic_load(&bp->stop))
            pause_ms(bp, SETTLE_RETRY_MS);
    }
    return NULL;
}

static void stop_applier(struct twl_rdma_backplane *bp)
{
    if (!bp->applier_started)
        return;
    pthread_mutex_lock(&bp->apply_lock);
    bp->applier_stop = true;
    pthread_cond_broadcast(&bp->apply_cond);
    pthread_mutex_unlock(&bp->apply_lock);
    pthread_join(bp->applier, NULL);
    bp->applier_started = false;
}

int twl_rdma_backplane_start(const struct twl_rdma_bp_opts *o, struct twl_rdma_backplane **out)
{
    *out = NULL;
    if (!o->apply || !o->check_hello || !o->make_hello || !o->timeout_ms || o->ring_size < 4096 ||
        (o->ring_size & (o->ring_size - 1)))
        return -EINVAL;
    if (o->durable_ring &&
        (!o->persist || o->durable_len < TWL_RDMA_DRING_HDR_LEN + (size_t)o->ring_size))
        return -EINVAL;
    struct twl_rdma_backplane *bp = calloc(1, sizeof(*bp));
    if (bp == NULL)
        return -ENOMEM;
    bp->o = *o;
    bp->secret = strdup(o->secret ? o->secret : "");
    bp->o.secret = bp->secret;
    bp->cap = 4096;
    bp->ring = calloc(bp->cap, sizeof(*bp->ring));
    bp->stage = aligned_alloc(4096, o->ring_size);
    bp->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    int rc = -ENOMEM;
    if (bp->ring == NULL || bp->stage == NULL || bp->secret == NULL)
        goto err_mem;
    if (bp->wake_fd < 0) {
        rc = -errno;
        goto err_mem;
    }
    pthread_mutex_init(&bp->lock, NULL);
    twl_rdma_meter_init(&bp->meter, (o->meter_window_ms ? o->meter_window_ms : 1000) * 1000000ull);
    pthread_mutex_init(&bp->apply_lock, NULL);
    pthread_cond_init(&bp->apply_cond, NULL);
    if (o->durable_ring) {
        bp->dring = (uint8_t *)o->durable_ring + TWL_RDMA_DRING_HDR_LEN;
        rc = dring_settle(bp);
        if (rc)
            goto err_thread;
        rc = -pthread_create(&bp->applier, NULL, applier_main, bp);
        if (rc)
            goto err_thread;
        bp->applier_started = true;
    }
    rc = -pthread_create(&bp->thread, NULL, backplane_main, bp);
    if (rc)
        goto err_applier;
    *out = bp;
    return 0;

err_applier:
    stop_applier(bp);
err_thread:
    pthread_cond_destroy(&bp->apply_cond);
    pthread_mutex_destroy(&bp->apply_lock);
    pthread_mutex_destroy(&bp->lock);
    close(bp->wake_fd);
err_mem:
    free(bp->secret);
    free(bp->stage);
    free(bp->ring);
    free(bp);
    TWL_ERROR(PART, "cannot start the backplane: %s", strerror(-rc));
    return rc;
}

void twl_rdma_backplane_stop(struct twl_rdma_backplane *bp)
{
    if (bp == NULL)
        return;
    atomic_store(&bp->stop, true);
    wake(bp);
    pthread_join(bp->thread, NULL);
    stop_applier(bp);
    fail_all(bp, -ENOTCONN);
    pthread_cond_destroy(&bp->apply_cond);
    pthread_mutex_destroy(&bp->apply_lock);
    pthread_mutex_destroy(&bp->lock);
    close(bp->wake_fd);
    if (bp->secret)
        explicit_bzero(bp->secret, strlen(bp->secret));
    free(bp->secret);
    free(bp->stage);
    free(bp->ring);
    free(bp);
}
