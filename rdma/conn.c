/* One rdma_cm connection to the partner: setup, records into the peer's ring, heartbeats. */
#include "rdma.h"

#include "twl_common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <infiniband/verbs.h>
#include <netdb.h>
#include <poll.h>
#include <rdma/rdma_cma.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define PART "rdma"

#define SQ_DATA  128u /* send WRs for records: 1 per record (header and payload, with imm) */
#define SQ_CTRL  16u  /* send WRs for control writes (heartbeat, consumed position) */
#define RQ_DEPTH 128u /* receives the peer may use for records, one per WRITE_WITH_IMM */
/* Receives posted: the records' plus one per control write that may be in flight (a control
 * write that publishes a new consumed position carries an immediate, so the record sender
 * learns of it from a completion instead of polling memory). */
#define RQ_POSTED (RQ_DEPTH + SQ_CTRL)
#define CQ_DEPTH  (SQ_DATA + SQ_CTRL + RQ_POSTED)
#define CTRL_IMM  0xffffffffu /* immediate of a control write; records carry offset / 64 */
#define HDR_SLOTS SQ_DATA
#define CQ_BATCH  16

#define DEFAULT_RING_SIZE  (4u << 20)
#define DEFAULT_CONNECT_MS 30000
#define DEFAULT_HB_MS      200
#define DEFAULT_DEAD_MS    2000
#define RESOLVE_MS         2000
#define RETRY_PAUSE_MS     250
#define ACK_TIMEOUT        14 /* 67 ms */

enum wr_kind { WR_HDR = 1, WR_CTRL, WR_RECV };
#define WR_ID(kind, v) (((uint64_t)(kind) << 56) | ((uint64_t)(v) & ((1ull << 56) - 1)))
#define WR_KIND(id)    ((enum wr_kind)((id) >> 56))
#define WR_VAL(id)     ((id) & ((1ull << 56) - 1))

/* Written by the peer into our memory (one-sided); fields are independent monotonic counters,
 * each a valid lower bound on its own, so a torn read of the block is harmless. */
struct ctrl_block {
    uint64_t hb;           /* the peer's heartbeat counter */
    uint64_t consumed_pos; /* how far the peer consumed the ring we write into */
    uint64_t consumed_seq; /* records the peer consumed (its receives are reposted) */
    uint64_t acked_seq;    /* records the peer acknowledged (>= consumed_seq) */
    uint64_t pad[4];
};

struct twl_rdma_buf {
    struct twl_rdma_buf *next;
    struct ibv_mr *mr;
};

struct twl_rdma_conn {
    struct twl_rdma_opts o;
    /* verbs and rdma_cm objects, created in this order and destroyed in reverse */
    struct rdma_event_channel *ech;
    struct rdma_cm_id *listen_id;
    struct rdma_cm_id *id;
    struct ibv_pd *pd;
    struct ibv_comp_channel *cch;
    struct ibv_cq *cq;
    uint8_t *ring;
    struct ibv_mr *ring_mr;
    struct ctrl_block *ctrl_rx;
    struct ibv_mr *ctrl_rx_mr;
    struct ctrl_block *ctrl_tx; /* SQ_CTRL slots, round robin */
    struct ibv_mr *ctrl_tx_mr;
    uint8_t *hdrs; /* HDR_SLOTS headers, round robin */
    struct ibv_mr *hdr_mr;
    bool qp_created;
    struct twl_rdma_buf *bufs;
    unsigned cq_events_unacked;

    struct twl_rdma_info peer;
    uint8_t nonce[TWL_RDMA_NONCE_LEN]; /* sent in this side's private data */
    bool established, dead, disconnected;

    /* sending */
    uint64_t tx_pos, tx_seq;
    unsigned sq_data_inflight;
    /* control writes */
    uint64_t hb_counter, ctrl_next;
    unsigned ctrl_inflight;
    uint64_t next_hb_ns;
    uint64_t hb_seen, hb_seen_ns;
    /* receiving: delivered, released by the caller, published to the peer */
    uint64_t rx_pos, rx_seq, rel_pos, rel_seq, pub_seq;
    uint64_t ack_seq, pub_ack; /* acknowledged (before or at release), published */

    struct twl_rdma_stats st;
};

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static uint64_t ms_to_ns(int ms)
{
    return (uint64_t)ms * 1000000ull;
}

static void sleep_ms(int ms)
{
    struct timespec ts = {.tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* ---- verbs objects of one connection ---- */

static int post_recvs(struct twl_rdma_conn *c, unsigned n)
{
    for (unsigned i = 0; i < n; i++) {
        struct ibv_recv_wr wr = {.wr_id = WR_ID(WR_RECV, 0), .sg_list = NULL, .num_sge = 0};
        struct ibv_recv_wr *bad;
        int rc = ibv_post_recv(c->id->qp, &wr, &bad);
        if (rc) {
            TWL_ERROR(PART, "ibv_post_recv: %s", strerror(rc));
            return -rc;
        }
    }
    return 0;
}

static void verbs_teardown(struct twl_rdma_conn *c)
{
    if (c->qp_created)
        rdma_destroy_qp(c->id);
    c->qp_created = false;
    while (c->bufs) {
        struct twl_rdma_buf *b = c->bufs;
        c->bufs = b->next;
        ibv_dereg_mr(b->mr);
        free(b);
    }
    if (c->hdr_mr)
        ibv_dereg_mr(c->hdr_mr);
    free(c->hdrs);
    if (c->ctrl_tx_mr)
        ibv_dereg_mr(c->ctrl_tx_mr);
    free(c->ctrl_tx);
    if (c->ctrl_rx_mr)
        ibv_dereg_mr(c->ctrl_rx_mr);
    free(c->ctrl_rx);
    if (c->ring_mr)
        ibv_dereg_mr(c->ring_mr);
    if (c->o.ring_mem == NULL)
        free(c->ring);
    if (c->cq) {
        if (c->cq_events_unacked)
            ibv_ack_cq_events(c->cq, c->cq_events_unacked);
        ibv_destroy_cq(c->cq);
    }
    if (c->cch)
        ibv_destroy_comp_channel(c->cch);
    if (c->pd)
        ibv_dealloc_pd(c->pd);
    c->hdr_mr = c->ctrl_tx_mr = c->ctrl_rx_mr = c->ring_mr = NULL;
    c->hdrs = c->ring = NULL;
    c->ctrl_tx = c->ctrl_rx = NULL;
    c->cq = NULL;
    c->cch = NULL;
    c->pd = NULL;
    c->cq_events_unacked = 0;
}

static void *alloc_zero(size_t len)
{
    void *p = aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
    if (p)
        memset(p, 0, len);
    return p;
}

/* Creates PD, completion channel, CQ, the registered ring/control/header memory and the QP on
 * c->id's device, and posts the receives. Unwinds itself on failure. */
static int verbs_setup(struct twl_rdma_conn *c)
{
    struct ibv_context *ctx = c->id->verbs;
    const char *what;
    int rc = -ENOMEM;

    what = "ibv_alloc_pd";
    c->pd = ibv_alloc_pd(ctx);
    if (!c->pd)
        goto err_errno;
    what = "ibv_create_comp_channel";
    c->cch = ibv_create_comp_channel(ctx);
    if (!c->cch)
        goto err_errno;
    rc = set_nonblock(c->cch->fd);
    if (rc) {
        what = "fcntl(comp channel)";
        goto err;
    }
    what = "ibv_create_cq";
    c->cq = ibv_create_cq(ctx, CQ_DEPTH, c, c->cch, 0);
    if (!c->cq)
        goto err_errno;
    what = "ibv_req_notify_cq";
    rc = ibv_req_notify_cq(c->cq, 0);
    if (rc) {
        rc = -rc;
        goto err;
    }

    what = "allocating the ring";
    c->ring = c->o.ring_mem ? c->o.ring_mem : alloc_zero(c->o.ring_size);
    c->ctrl_rx = alloc_zero(sizeof(*c->ctrl_rx));
    c->ctrl_tx = alloc_zero(SQ_CTRL * sizeof(*c->ctrl_tx));
    c->hdrs = alloc_zero(HDR_SLOTS * TWL_RDMA_REC_HDR_LEN);
    rc = -ENOMEM;
    if (!c->ring || !c->ctrl_rx || !c->ctrl_tx || !c->hdrs)
        goto err;
    what = "ibv_reg_mr(ring)";
    c->ring_mr = ibv_reg_mr(c->pd, c->ring, c->o.ring_size,
                            IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!c->ring_mr)
        goto err_errno;
    what = "ibv_reg_mr(ctrl_rx)";
    c->ctrl_rx_mr = ibv_reg_mr(c->pd, c->ctrl_rx, sizeof(*c->ctrl_rx),
                               IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
    if (!c->ctrl_rx_mr)
        goto err_errno;
    what = "ibv_reg_mr(ctrl_tx)";
    c->ctrl_tx_mr = ibv_reg_mr(c->pd, c->ctrl_tx, SQ_CTRL * sizeof(*c->ctrl_tx), 0);
    if (!c->ctrl_tx_mr)
        goto err_errno;
    what = "ibv_reg_mr(headers)";
    c->hdr_mr = ibv_reg_mr(c->pd, c->hdrs, HDR_SLOTS * TWL_RDMA_REC_HDR_LEN, 0);
    if (!c->hdr_mr)
        goto err_errno;

    struct ibv_qp_init_attr qa = {
        .send_cq = c->cq,
        .recv_cq = c->cq,
        .qp_type = IBV_QPT_RC,
        .cap = {.max_send_wr = SQ_DATA + SQ_CTRL,
                .max_recv_wr = RQ_POSTED,
                .max_send_sge = TWL_RDMA_MAX_SEGS + 1, /* record header + payload */
                .max_recv_sge = 1},
    };
    what = "rdma_create_qp";
    if (rdma_create_qp(c->id, c->pd, &qa))
        goto err_errno;
    c->qp_created = true;
    what = "posting receives";
    rc = post_recvs(c, RQ_POSTED);
    if (rc)
        goto err;
    return 0;

err_errno:
    rc = errno ? -errno : -ENOMEM;
err:
    TWL_ERROR(PART, "%s: %s", what, strerror(-rc));
    verbs_teardown(c);
    return rc;
}

/* This side's connection info, with a fresh nonce for the peer's handshake to answer. */
static int local_info(struct twl_rdma_conn *c, uint8_t out[TWL_RDMA_INFO_LEN])
{
    if (getrandom(c->nonce, sizeof(c->nonce), 0) != (ssize_t)sizeof(c->nonce)) {
        int rc = errno ? -errno : -EIO;
        TWL_ERROR(PART, "getrandom (the handshake's nonce): %s", strerror(-rc));
        return rc;
    }
    struct twl_rdma_info info = {
        .flags = c->o.payload_crc ? TWL_RDMA_INFO_PAYLOAD_CRC : 0,
        .ring_addr = (uintptr_t)c->ring,
        .ring_rkey = c->ring_mr->rkey,
        .ring_size = c->o.ring_size,
        .ctrl_addr = (uintptr_t)c->ctrl_rx,
        .ctrl_rkey = c->ctrl_rx_mr->rkey,
        .recv_depth = RQ_DEPTH,
    };
    memcpy(info.nonce, c->nonce, sizeof(info.nonce));
    twl_rdma_info_encode(out, &info);
    return 0;
}

/* The transport's retransmission timer (4.096 us x 2^ACK_TIMEOUT): a lost packet is sent
 * again after this, not after rdma_cm's default for RoCE of about a second; retry_count of
 * them without an answer still means a dead peer. Best effort: older kernels lack the option. */
static void set_ack_timeout(struct twl_rdma_conn *c)
{
    uint8_t t = ACK_TIMEOUT;
    if (rdma_set_option(c->id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t)))
        TWL_DEBUG(PART, "rdma_set_option(ACK_TIMEOUT): %s", strerror(errno));
}

static void conn_param(struct twl_rdma_conn *c, struct rdma_conn_param *p,
                       const uint8_t info[TWL_RDMA_INFO_LEN])
{
    memset(p, 0, sizeof(*p));
    p->private_data = info;
    p->private_data_len = TWL_RDMA_INFO_LEN;
    p->responder_resources = 1;
    p->initiator_depth = 1;
    /* <= 6: with 7 rxe retries forever and a dead peer is never reported (RXE.md). */
    p->retry_count = c->o.retry_count;
    /* Receives never run out (the sender keeps within recv_depth), so RNR waits are only ever
     * transient: 7 = retry without limit. A dead peer is caught by retry_count and heartbeats. */
    p->rnr_retry_count = 7;
}

/* ---- rdma_cm events ---- */

/* Waits for the next CM event until deadline; copies the private data when asked. Returns the
 * event type, or a negative errno (-ETIMEDOUT). */
static int wait_cm_event(struct twl_rdma_conn *c, uint64_t deadline_ns, struct rdma_cm_id **id,
                         struct twl_rdma_info *peer, int *peer_rc)
{
    for (;;) {
        struct rdma_cm_event *ev;
        if (rdma_get_cm_event(c->ech, &ev) == 0) {
            int type = ev->event;
            if (id)
                *id = ev->id;
            if (peer && peer_rc && ev->param.conn.private_data)
                *peer_rc = twl_rdma_info_decode(ev->param.conn.private_data,
                                                ev->param.conn.private_data_len, peer);
            rdma_ack_cm_event(ev);
            return type;
        }
        if (errno != EAGAIN && errno != EWOULDBLOCK) {
            int rc = -errno;
            TWL_ERROR(PART, "rdma_get_cm_event: %s", strerror(-rc));
            return rc;
        }
        uint64_t now = twl_now_ns();
        if (now >= deadline_ns)
            return -ETIMEDOUT;
        struct pollfd pfd = {.fd = c->ech->fd, .events = POLLIN};
        int ms = (int)((deadline_ns - now) / 1000000ull) + 1;
        if (poll(&pfd, 1, ms) < 0 && errno != EINTR)
            return -errno;
    }
}

static int resolve(const char *addr, const char *port, bool passive, struct addrinfo **res)
{
    struct addrinfo hints = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM};
    if (passive)
        hints.ai_flags = AI_PASSIVE;
    int rc = getaddrinfo(addr, port, &hints, res);
    if (rc) {
        TWL_ERROR(PART, "getaddrinfo(%s, %s): %s", addr ? addr : "*", port, gai_strerror(rc));
        return -EINVAL;
    }
    return 0;
}

/* One connect attempt. -EAGAIN: the peer is not there (yet); worth retrying. */
static int connect_once(struct twl_rdma_conn *c, uint64_t deadline_ns)
{
    struct addrinfo *ai = NULL;
    uint8_t info[TWL_RDMA_INFO_LEN];
    struct rdma_conn_param p;
    int rc, ev, peer_rc = -EPROTO;

    rc = resolve(c->o.addr, c->o.port, false, &ai);
    if (rc)
        return rc;
    if (rdma_create_id(c->ech, &c->id, c, RDMA_PS_TCP)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_create_id: %s", strerror(-rc));
        goto out_ai;
    }
    if (rdma_resolve_addr(c->id, NULL, ai->ai_addr, RESOLVE_MS)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_resolve_addr(%s): %s", c->o.addr, strerror(-rc));
        goto out_id;
    }
    ev = wait_cm_event(c, deadline_ns, NULL, NULL, NULL);
    if (ev != RDMA_CM_EVENT_ADDR_RESOLVED) {
        rc = ev < 0 ? ev : -EAGAIN;
        goto out_id;
    }
    set_ack_timeout(c);
    if (rdma_resolve_route(c->id, RESOLVE_MS)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_resolve_route(%s): %s", c->o.addr, strerror(-rc));
        goto out_id;
    }
    ev = wait_cm_event(c, deadline_ns, NULL, NULL, NULL);
    if (ev != RDMA_CM_EVENT_ROUTE_RESOLVED) {
        rc = ev < 0 ? ev : -EAGAIN;
        goto out_id;
    }
    rc = verbs_setup(c);
    if (rc)
        goto out_id;
    rc = local_info(c, info);
    if (rc)
        goto out_verbs;
    conn_param(c, &p, info);
    if (rdma_connect(c->id, &p)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_connect(%s): %s", c->o.addr, strerror(-rc));
        goto out_verbs;
    }
    ev = wait_cm_event(c, deadline_ns, NULL, &c->peer, &peer_rc);
    if (ev != RDMA_CM_EVENT_ESTABLISHED) {
        /* REJECTED (nobody listening yet), UNREACHABLE, CONNECT_ERROR: retry */
        TWL_DEBUG(PART, "connect to %s:%s: %s", c->o.addr, c->o.port,
                  ev < 0 ? strerror(-ev) : rdma_event_str((enum rdma_cm_event_type)ev));
        rc = ev < 0 ? ev : -EAGAIN;
        goto out_verbs;
    }
    if (peer_rc) {
        rc = peer_rc;
        TWL_ERROR(PART, "connect to %s:%s: bad peer info in the accept", c->o.addr, c->o.port);
        goto out_disconnect;
    }
    freeaddrinfo(ai);
    return 0;

out_disconnect:
    rdma_disconnect(c->id);
out_verbs:
    verbs_teardown(c);
out_id:
    rdma_destroy_id(c->id);
    c->id = NULL;
out_ai:
    freeaddrinfo(ai);
    return rc;
}

static int do_connect(struct twl_rdma_conn *c)
{
    uint64_t deadline = twl_now_ns() + ms_to_ns(c->o.connect_timeout_ms);
    for (;;) {
        int rc = connect_once(c, deadline);
        if (rc != -EAGAIN && rc != -ETIMEDOUT)
            return rc;
        if (twl_now_ns() + ms_to_ns(RETRY_PAUSE_MS) >= deadline) {
            twl_log(c->o.quiet_timeouts ? TWL_LOG_DEBUG : TWL_LOG_ERROR, PART,
                    "connect to %s:%s: no peer within %d ms", c->o.addr, c->o.port,
                    c->o.connect_timeout_ms);
            return -ETIMEDOUT;
        }
        sleep_ms(RETRY_PAUSE_MS);
    }
}

static int do_listen(struct twl_rdma_conn *c)
{
    uint64_t deadline = twl_now_ns() + ms_to_ns(c->o.connect_timeout_ms);
    struct addrinfo *ai = NULL;
    uint8_t info[TWL_RDMA_INFO_LEN];
    struct rdma_conn_param p;
    int rc, ev, peer_rc = -EPROTO;

    rc = resolve(c->o.addr, c->o.port, true, &ai);
    if (rc)
        return rc;
    if (rdma_create_id(c->ech, &c->listen_id, c, RDMA_PS_TCP)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_create_id: %s", strerror(-rc));
        goto out_ai;
    }
    if (rdma_bind_addr(c->listen_id, ai->ai_addr) || rdma_listen(c->listen_id, 1)) {
        rc = -errno;
        TWL_ERROR(PART, "listen on %s:%s: %s", c->o.addr ? c->o.addr : "*", c->o.port,
                  strerror(-rc));
        goto out_listen;
    }
    ev = wait_cm_event(c, deadline, &c->id, &c->peer, &peer_rc);
    if (ev != RDMA_CM_EVENT_CONNECT_REQUEST) {
        rc = ev < 0 ? ev : -EPROTO;
        twl_log(rc == -ETIMEDOUT && c->o.quiet_timeouts ? TWL_LOG_DEBUG : TWL_LOG_ERROR, PART,
                "waiting for the peer on %s:%s: %s", c->o.addr ? c->o.addr : "*", c->o.port,
                ev < 0 ? strerror(-ev) : rdma_event_str(ev));
        c->id = NULL;
        goto out_listen;
    }
    if (peer_rc) {
        rc = peer_rc;
        TWL_ERROR(PART, "connect request with bad peer info");
        rdma_reject(c->id, NULL, 0);
        goto out_id;
    }
    set_ack_timeout(c);
    rc = verbs_setup(c);
    if (rc) {
        rdma_reject(c->id, NULL, 0);
        goto out_id;
    }
    rc = local_info(c, info);
    if (rc) {
        rdma_reject(c->id, NULL, 0);
        goto out_verbs;
    }
    conn_param(c, &p, info);
    if (rdma_accept(c->id, &p)) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_accept: %s", strerror(-rc));
        goto out_verbs;
    }
    ev = wait_cm_event(c, deadline, NULL, NULL, NULL);
    if (ev != RDMA_CM_EVENT_ESTABLISHED) {
        rc = ev < 0 ? ev : -ECONNABORTED;
        TWL_ERROR(PART, "accept: %s", ev < 0 ? strerror(-ev) : rdma_event_str(ev));
        goto out_verbs;
    }
    /* One peer only: stop listening. */
    rdma_destroy_id(c->listen_id);
    c->listen_id = NULL;
    freeaddrinfo(ai);
    return 0;

out_verbs:
    verbs_teardown(c);
out_id:
    rdma_destroy_id(c->id);
    c->id = NULL;
out_listen:
    rdma_destroy_id(c->listen_id);
    c->listen_id = NULL;
out_ai:
    freeaddrinfo(ai);
    return rc;
}

int twl_rdma_conn_open(struct twl_rdma_conn **out, const struct twl_rdma_opts *opts)
{
    struct twl_rdma_conn *c;
    int rc;

    *out = NULL;
    if (!opts->port || (!opts->listen && !opts->addr))
        return -EINVAL;
    c = calloc(1, sizeof(*c));
    if (!c)
        return -ENOMEM;
    c->o = *opts;
    if (!c->o.ring_size)
        c->o.ring_size = DEFAULT_RING_SIZE;
    if (!c->o.connect_timeout_ms)
        c->o.connect_timeout_ms = DEFAULT_CONNECT_MS;
    if (!c->o.heartbeat_ms)
        c->o.heartbeat_ms = DEFAULT_HB_MS;
    if (!c->o.dead_ms)
        c->o.dead_ms = DEFAULT_DEAD_MS;
    if (!c->o.retry_count)
        c->o.retry_count = 6;
    if (c->o.retry_count > 6 || (c->o.ring_size & (c->o.ring_size - 1)) || c->o.ring_size < 4096) {
        TWL_ERROR(PART, "bad options: retry_count %u (max 6), ring_size %u (power of two)",
                  c->o.retry_count, c->o.ring_size);
        rc = -EINVAL;
        goto err_free;
    }

    c->ech = rdma_create_event_channel();
    if (!c->ech) {
        rc = -errno;
        TWL_ERROR(PART, "rdma_create_event_channel: %s (is an RDMA device up?)", strerror(-rc));
        goto err_free;
    }
    rc = set_nonblock(c->ech->fd);
    if (rc) {
        TWL_ERROR(PART, "fcntl(cm channel): %s", strerror(-rc));
        goto err_channel;
    }
    rc = c->o.listen ? do_listen(c) : do_connect(c);
    if (rc)
        goto err_channel;

    c->established = true;
    uint64_t now = twl_now_ns();
    c->hb_seen_ns = now;
    c->next_hb_ns = now;
    char peer[INET6_ADDRSTRLEN + 8];
    TWL_INFO(PART,
             "connected to %s (peer ring %u bytes, retry_count %u, heartbeat %d ms, dead "
             "after %d ms)",
             twl_rdma_conn_peer_name(c, peer, sizeof(peer)), c->peer.ring_size, c->o.retry_count,
             c->o.heartbeat_ms, c->o.dead_ms);
    *out = c;
    return 0;

err_channel:
    rdma_destroy_event_channel(c->ech);
err_free:
    free(c);
    return rc;
}

void twl_rdma_conn_close(struct twl_rdma_conn *c)
{
    if (!c)
        return;
    if (c->id && c->established && !c->disconnected && !c->dead)
        rdma_disconnect(c->id);
    verbs_teardown(c);
    if (c->id)
        rdma_destroy_id(c->id);
    if (c->listen_id)
        rdma_destroy_id(c->listen_id);
    rdma_destroy_event_channel(c->ech);
    free(c);
}

void twl_rdma_conn_nonces(const struct twl_rdma_conn *c, uint8_t mine[TWL_RDMA_NONCE_LEN],
                          uint8_t theirs[TWL_RDMA_NONCE_LEN])
{
    memcpy(mine, c->nonce, TWL_RDMA_NONCE_LEN);
    memcpy(theirs, c->peer.nonce, TWL_RDMA_NONCE_LEN);
}

const char *twl_rdma_conn_peer_name(const struct twl_rdma_conn *c, char *buf, size_t len)
{
    const struct sockaddr *sa = c->id ? rdma_get_peer_addr(c->id) : NULL;
    char host[INET6_ADDRSTRLEN];
    const void *addr = NULL;
    uint16_t port = 0;
    if (sa && sa->sa_family == AF_INET) {
        const struct sockaddr_in *in = (const struct sockaddr_in *)sa;
        addr = &in->sin_addr;
        port = ntohs(in->sin_port);
    } else if (sa && sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)sa;
        addr = &in6->sin6_addr;
        port = ntohs(in6->sin6_port);
    }
    if (addr && inet_ntop(sa->sa_family, addr, host, sizeof(host)))
        snprintf(buf, len, "%s:%u", host, port);
    else
        snprintf(buf, len, "?");
    return buf;
}

struct twl_rdma_buf *twl_rdma_buf_reg(struct twl_rdma_conn *c, void *addr, size_t len)
{
    struct twl_rdma_buf *b = calloc(1, sizeof(*b));
    if (!b)
        return NULL;
    b->mr = ibv_reg_mr(c->pd, addr, len, IBV_ACCESS_LOCAL_WRITE);
    if (!b->mr) {
        TWL_ERROR(PART, "ibv_reg_mr(%zu bytes): %s", len, strerror(errno));
        free(b);
        return NULL;
    }
    b->next = c->bufs;
    c->bufs = b;
    return b;
}

/* ---- data path ---- */

static uint64_t load_u64(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_ACQUIRE);
}

static bool seg_in_buf(const struct twl_rdma_seg *s)
{
    const uint8_t *p = s->data;
    return s->buf && p >= (const uint8_t *)s->buf->mr->addr &&
           p + s->len <= (const uint8_t *)s->buf->mr->addr + s->buf->mr->length;
}

int64_t twl_rdma_send(struct twl_rdma_conn *c, struct twl_rdma_buf *buf, const void *payload,
                      uint32_t len, uint32_t flags)
{
    struct twl_rdma_seg seg = {.buf = buf, .data = payload, .len = len};
    return twl_rdma_sendv(c, &seg, len ? 1 : 0, flags);
}

int64_t twl_rdma_sendv(struct twl_rdma_conn *c, const struct twl_rdma_seg *segs, int nseg,
                       uint32_t flags)
{
    const uint64_t rs = c->peer.ring_size;
    uint64_t len64 = 0;

    if (c->dead || c->disconnected)
        return -ENOTCONN;
    if (nseg < 0 || nseg > (int)TWL_RDMA_MAX_SEGS)
        return -EINVAL;
    for (int i = 0; i < nseg; i++) {
        if (segs[i].len && !seg_in_buf(&segs[i]))
            return -EINVAL;
        len64 += segs[i].len;
    }
    if (len64 > UINT32_MAX)
        return -EMSGSIZE;
    uint32_t len = (uint32_t)len64;
    uint64_t rec_len = twl_rdma_rec_len(len);
    if (rec_len > rs / 2)
        return -EMSGSIZE;

    uint64_t start = twl_rdma_ring_place(rs, c->tx_pos, rec_len);
    if (!twl_rdma_ring_fits(rs, load_u64(&c->ctrl_rx->consumed_pos), start, rec_len) ||
        c->tx_seq - load_u64(&c->ctrl_rx->consumed_seq) >= c->peer.recv_depth ||
        c->sq_data_inflight + 1 > SQ_DATA)
        return -EAGAIN;

    uint64_t seq = c->tx_seq;
    uint64_t off = start & (rs - 1);
    uint8_t *hdr = c->hdrs + (seq % HDR_SLOTS) * TWL_RDMA_REC_HDR_LEN;
    bool with_crc = c->peer.flags & TWL_RDMA_INFO_PAYLOAD_CRC;
    uint32_t crc = 0;
    struct ibv_sge sge[TWL_RDMA_MAX_SEGS + 1];
    int nsge = 1;
    for (int i = 0; i < nseg; i++) {
        if (!segs[i].len)
            continue;
        if (with_crc)
            crc = twl_crc32c_update(crc, segs[i].data, segs[i].len);
        sge[nsge++] = (struct ibv_sge){
            .addr = (uintptr_t)segs[i].data, .length = segs[i].len, .lkey = segs[i].buf->mr->lkey};
    }
    struct twl_rdma_rec_hdr h = {.flags = (flags & ~TWL_RDMA_REC_CRC) |
                                          (with_crc ? TWL_RDMA_REC_CRC : 0),
                                 .seq = seq,
                                 .len = len,
                                 .payload_crc = crc};
    twl_rdma_rec_hdr_encode(hdr, &h);
    sge[0] = (struct ibv_sge){
        .addr = (uintptr_t)hdr, .length = TWL_RDMA_REC_HDR_LEN, .lkey = c->hdr_mr->lkey};
    /* One write for the whole record, gathered: the receiver's completion for the immediate
     * comes only once every byte of it is placed, so it never sees a header without its
     * payload (and a payload torn by a crash fails the payload CRC). */
    struct ibv_send_wr wr = {
        .wr_id = WR_ID(WR_HDR, seq),
        .sg_list = sge,
        .num_sge = nsge,
        .opcode = IBV_WR_RDMA_WRITE_WITH_IMM,
        .send_flags = IBV_SEND_SIGNALED,
        .imm_data = htonl((uint32_t)(off / TWL_RDMA_REC_ALIGN)),
        .wr.rdma = {.remote_addr = c->peer.ring_addr + off, .rkey = c->peer.ring_rkey}};
    struct ibv_send_wr *bad;
    int rc = ibv_post_send(c->id->qp, &wr, &bad);
    if (rc) {
        TWL_ERROR(PART, "ibv_post_send(record %llu): %s", (unsigned long long)seq, strerror(rc));
        return -rc;
    }
    c->sq_data_inflight++;
    c->tx_pos = start + rec_len;
    c->tx_seq++;
    c->st.tx_records++;
    c->st.tx_bytes += len;
    return (int64_t)seq;
}

/* Heartbeat, consumed and acknowledged positions in one 32-byte write into the peer's control
 * block. */
static int post_ctrl(struct twl_rdma_conn *c)
{
    struct ctrl_block *slot = &c->ctrl_tx[c->ctrl_next % SQ_CTRL];
    slot->hb = ++c->hb_counter;
    slot->consumed_pos = c->rel_pos;
    slot->consumed_seq = c->rel_seq;
    slot->acked_seq = c->ack_seq;
    struct ibv_sge sge = {
        .addr = (uintptr_t)slot, .length = 4 * sizeof(uint64_t), .lkey = c->ctrl_tx_mr->lkey};
    /* A new consumed or acknowledged position is what the record sender waits for (its writes
     * complete on it): wake it with an immediate. Plain heartbeats need none. */
    bool news = c->rel_seq != c->pub_seq || c->ack_seq != c->pub_ack;
    struct ibv_send_wr wr = {
        .wr_id = WR_ID(WR_CTRL, c->ctrl_next),
        .sg_list = &sge,
        .num_sge = 1,
        .opcode = news ? IBV_WR_RDMA_WRITE_WITH_IMM : IBV_WR_RDMA_WRITE,
        .send_flags = IBV_SEND_SIGNALED,
        .imm_data = htonl(CTRL_IMM),
        .wr.rdma = {.remote_addr = c->peer.ctrl_addr, .rkey = c->peer.ctrl_rkey}};
    struct ibv_send_wr *bad;
    int rc = ibv_post_send(c->id->qp, &wr, &bad);
    if (rc) {
        TWL_ERROR(PART, "ibv_post_send(control): %s", strerror(rc));
        return -rc;
    }
    c->ctrl_next++;
    c->ctrl_inflight++;
    c->pub_seq = c->rel_seq;
    c->pub_ack = c->ack_seq;
    c->st.heartbeats_sent++;
    return 0;
}

static void dead_event(struct twl_rdma_conn *c, struct twl_rdma_event *ev,
                       enum twl_rdma_dead_reason reason, int wc_status)
{
    uint64_t silent = (twl_now_ns() - c->hb_seen_ns) / 1000000ull;
    c->dead = true;
    memset(ev, 0, sizeof(*ev));
    ev->type = TWL_RDMA_EV_PEER_DEAD;
    ev->reason = reason;
    ev->wc_status = wc_status;
    ev->silent_ms = silent;
    if (reason == TWL_RDMA_DEAD_WC_ERROR)
        TWL_ERROR(PART, "peer dead: work completion %s; last heartbeat %llu ms ago",
                  ibv_wc_status_str((enum ibv_wc_status)wc_status), (unsigned long long)silent);
    else
        TWL_ERROR(PART, "peer dead: no heartbeat for %llu ms", (unsigned long long)silent);
}

static int on_record(struct twl_rdma_conn *c, uint32_t imm, struct twl_rdma_event *ev)
{
    const uint64_t rs = c->o.ring_size;
    uint64_t off = (uint64_t)imm * TWL_RDMA_REC_ALIGN;
    struct twl_rdma_rec_hdr h;

    if (off + TWL_RDMA_REC_HDR_LEN > rs || twl_rdma_rec_hdr_decode(c->ring + off, &h) != 0) {
        TWL_ERROR(PART, "record at ring offset %llu: bad header", (unsigned long long)off);
        return -EBADMSG;
    }
    uint64_t rec_len = twl_rdma_rec_len(h.len);
    uint64_t start = twl_rdma_ring_place(rs, c->rx_pos, rec_len);
    if (rec_len > rs || (start & (rs - 1)) != off || h.seq != c->rx_seq) {
        TWL_ERROR(PART, "record seq %llu at offset %llu: expected seq %llu at offset %llu",
                  (unsigned long long)h.seq, (unsigned long long)off, (unsigned long long)c->rx_seq,
                  (unsigned long long)(start & (rs - 1)));
        return -EPROTO;
    }
    const uint8_t *data = c->ring + off + TWL_RDMA_REC_HDR_LEN;
    if (h.flags & TWL_RDMA_REC_CRC) {
        if (twl_crc32c(data, h.len) != h.payload_crc) {
            TWL_ERROR(PART, "record seq %llu: payload CRC mismatch", (unsigned long long)h.seq);
            return -EBADMSG;
        }
    } else if (c->o.payload_crc) {
        TWL_ERROR(PART, "record seq %llu: no payload CRC, and this side asked for one",
                  (unsigned long long)h.seq);
        return -EPROTO;
    }
    memset(ev, 0, sizeof(*ev));
    ev->type = TWL_RDMA_EV_REC;
    ev->seq = h.seq;
    ev->flags = h.flags & ~TWL_RDMA_REC_CRC;
    ev->len = h.len;
    ev->data = data;
    ev->end_pos = start + rec_len;
    c->rx_pos = start + rec_len;
    c->rx_seq++;
    c->st.rx_records++;
    c->st.rx_bytes += h.len;
    return 1;
}

/* Polls up to room completions; each gives at most one event. */
static int drain_cq(struct twl_rdma_conn *c, struct twl_rdma_event *ev, int room)
{
    struct ibv_wc wc[CQ_BATCH];
    int n = 0;

    while (room - n > 0) {
        int want = room - n < CQ_BATCH ? room - n : CQ_BATCH;
        int got = ibv_poll_cq(c->cq, want, wc);
        if (got < 0) {
            TWL_ERROR(PART, "ibv_poll_cq failed");
            return -EIO;
        }
        if (got == 0)
            break;
        for (int i = 0; i < got; i++) {
            enum wr_kind kind = WR_KIND(wc[i].wr_id);
            if (wc[i].status != IBV_WC_SUCCESS) {
                /* After the first error every outstanding WR flushes: report once. */
                if (!c->dead && !c->disconnected)
                    dead_event(c, &ev[n++], TWL_RDMA_DEAD_WC_ERROR, wc[i].status);
                continue;
            }
            switch (kind) {
            case WR_HDR:
                c->sq_data_inflight--;
                c->st.tx_completions++;
                memset(&ev[n], 0, sizeof(ev[n]));
                ev[n].type = TWL_RDMA_EV_TX_DONE;
                ev[n].seq = WR_VAL(wc[i].wr_id);
                n++;
                break;
            case WR_CTRL:
                c->ctrl_inflight--;
                break;
            case WR_RECV: {
                c->st.rx_completions++;
                if (wc[i].opcode != IBV_WC_RECV_RDMA_WITH_IMM) {
                    TWL_ERROR(PART, "unexpected receive completion opcode %d", wc[i].opcode);
                    return -EPROTO;
                }
                int rc = post_recvs(c, 1);
                if (rc)
                    return rc;
                if (ntohl(wc[i].imm_data) == CTRL_IMM) {
                    memset(&ev[n], 0, sizeof(ev[n]));
                    ev[n].type = TWL_RDMA_EV_CONSUMED;
                    ev[n].seq = load_u64(&c->ctrl_rx->consumed_seq);
                    ev[n].acked = load_u64(&c->ctrl_rx->acked_seq);
                    n++;
                    break;
                }
                rc = on_record(c, ntohl(wc[i].imm_data), &ev[n]);
                if (rc < 0)
                    return rc;
                n++;
                break;
            }
            default:
                TWL_ERROR(PART, "completion with unknown wr_id %llx",
                          (unsigned long long)wc[i].wr_id);
                return -EPROTO;
            }
        }
    }
    return n;
}

static int drain_cm(struct twl_rdma_conn *c, struct twl_rdma_event *ev, int room)
{
    int n = 0;
    while (room - n > 0) {
        struct rdma_cm_event *cm;
        if (rdma_get_cm_event(c->ech, &cm)) {
            if (errno == EAGAIN || errno == EWOULDBLOCK)
                break;
            int rc = -errno;
            TWL_ERROR(PART, "rdma_get_cm_event: %s", strerror(-rc));
            return rc;
        }
        enum rdma_cm_event_type type = cm->event;
        rdma_ack_cm_event(cm);
        if (type == RDMA_CM_EVENT_DISCONNECTED && !c->disconnected) {
            c->disconnected = true;
            if (!c->dead) {
                TWL_INFO(PART, "peer disconnected");
                memset(&ev[n], 0, sizeof(ev[n]));
                ev[n++].type = TWL_RDMA_EV_DISCONNECTED;
            }
        } else {
            TWL_DEBUG(PART, "cm event %s", rdma_event_str(type));
        }
    }
    return n;
}

/* Heartbeats out, consumed position out, heartbeat watch. At most one event. */
static int tick(struct twl_rdma_conn *c, struct twl_rdma_event *ev, int room, uint64_t now)
{
    if (c->dead || c->disconnected)
        return 0;
    uint64_t hb = load_u64(&c->ctrl_rx->hb);
    if (hb != c->hb_seen) {
        c->hb_seen = hb;
        c->hb_seen_ns = now;
        c->st.heartbeats_seen++;
    }
    if (now - c->hb_seen_ns > ms_to_ns(c->o.dead_ms)) {
        if (room < 1)
            return 0;
        dead_event(c, ev, TWL_RDMA_DEAD_HEARTBEAT, 0);
        return 1;
    }
    bool due = now >= c->next_hb_ns;
    bool news = c->rel_seq != c->pub_seq || c->ack_seq != c->pub_ack;
    if ((due || news) && c->ctrl_inflight < SQ_CTRL) {
        int rc = post_ctrl(c);
        if (rc)
            return rc;
        if (due)
            c->next_hb_ns = now + ms_to_ns(c->o.heartbeat_ms);
    }
    return 0;
}

int twl_rdma_poll(struct twl_rdma_conn *c, struct twl_rdma_event *ev, int max, int timeout_ms)
{
    uint64_t deadline = twl_now_ns() + ms_to_ns(timeout_ms > 0 ? timeout_ms : 0);
    int n = 0, rc;

    if (max <= 0)
        return -EINVAL;
    for (;;) {
        rc = drain_cq(c, ev + n, max - n);
        if (rc < 0)
            return rc;
        n += rc;
        rc = drain_cm(c, ev + n, max - n);
        if (rc < 0)
            return rc;
        n += rc;
        uint64_t now = twl_now_ns();
        rc = tick(c, ev + n, max - n, now);
        if (rc < 0)
            return rc;
        n += rc;
        if (n > 0)
            return n;
        if (now >= deadline)
            return 0;

        /* Arm the CQ, then look once more to close the race with a completion in between. */
        rc = ibv_req_notify_cq(c->cq, 0);
        if (rc) {
            TWL_ERROR(PART, "ibv_req_notify_cq: %s", strerror(rc));
            return -rc;
        }
        rc = drain_cq(c, ev, max);
        if (rc != 0)
            return rc;

        uint64_t wake = deadline;
        if (!c->dead && !c->disconnected) {
            if (c->next_hb_ns < wake)
                wake = c->next_hb_ns;
            uint64_t dead_at = c->hb_seen_ns + ms_to_ns(c->o.dead_ms) + 1000000ull;
            if (dead_at < wake)
                wake = dead_at;
        }
        int ms = wake > now ? (int)((wake - now + 999999ull) / 1000000ull) : 0;
        struct pollfd pfd[3] = {{.fd = c->cch->fd, .events = POLLIN},
                                {.fd = c->ech->fd, .events = POLLIN},
                                {.fd = c->o.wake_fd, .events = POLLIN}};
        if (poll(pfd, c->o.wake_fd > 0 ? 3 : 2, ms) < 0 && errno != EINTR) {
            rc = -errno;
            TWL_ERROR(PART, "poll: %s", strerror(-rc));
            return rc;
        }
        if (c->o.wake_fd > 0 && (pfd[2].revents & POLLIN))
            return 0; /* the caller has work of its own; it drains its fd */
        if (pfd[0].revents & POLLIN) {
            struct ibv_cq *cq;
            void *ctx;
            while (ibv_get_cq_event(c->cch, &cq, &ctx) == 0) {
                if (++c->cq_events_unacked >= 64) {
                    ibv_ack_cq_events(c->cq, c->cq_events_unacked);
                    c->cq_events_unacked = 0;
                }
            }
        }
    }
}

void twl_rdma_rx_release(struct twl_rdma_conn *c)
{
    twl_rdma_rx_release_upto(c, c->rx_seq, c->rx_pos);
}

void twl_rdma_rx_release_upto(struct twl_rdma_conn *c, uint64_t seq, uint64_t end_pos)
{
    if (seq <= c->rel_seq || seq > c->rx_seq)
        return;
    c->rel_pos = end_pos;
    c->rel_seq = seq;
    if (c->ack_seq < seq)
        c->ack_seq = seq;
}

int twl_rdma_rx_ack(struct twl_rdma_conn *c)
{
    if (c->ack_seq == c->rx_seq)
        return 0;
    c->ack_seq = c->rx_seq;
    /* the sender waits on this: publish now rather than at the next poll (a control slot is
     * free unless SQ_CTRL writes are in flight; then the next poll publishes it) */
    if (c->dead || c->disconnected || c->ctrl_inflight >= SQ_CTRL)
        return 0;
    return post_ctrl(c);
}

uint64_t twl_rdma_peer_consumed(const struct twl_rdma_conn *c)
{
    return load_u64(&c->ctrl_rx->consumed_seq);
}

uint64_t twl_rdma_peer_acked(const struct twl_rdma_conn *c)
{
    return load_u64(&c->ctrl_rx->acked_seq);
}

bool twl_rdma_tx_idle(const struct twl_rdma_conn *c)
{
    return c->sq_data_inflight == 0 && load_u64(&c->ctrl_rx->consumed_seq) == c->tx_seq;
}

void twl_rdma_get_stats(const struct twl_rdma_conn *c, struct twl_rdma_stats *st)
{
    *st = c->st;
}
