/*
 * The server: network threads (one epoll loop and one io_uring each), the portal, the receive
 * and transmit machinery of connections, login, and the session registry. The full feature
 * phase is in iscsi.c.
 *
 * A connection lives on one thread for its whole life, so nothing on the I/O path takes a lock;
 * only login (session registry) and the hand-off of accepted sockets do.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "admin.h"
#include "bufpool.h"
#include "metrics.h"
#include "replica.h"
#include "server_internal.h"

#define RING_DEPTH      512
#define DIRECT_RECV_MIN 2048
#define BIG_SEGMENT     16384
#define SMALL_READAHEAD 1024
#define DRAIN_SECONDS   3

struct tgt_lun *target_find_lun(struct tgt_target *t, uint32_t id)
{
    for (size_t i = 0; i < t->lun_count; i++)
        if (t->luns[i].info.id == id)
            return &t->luns[i];
    return NULL;
}

/* ---------------- transmit ---------------- */

void conn_mark_dirty(struct conn *c)
{
    if (c->in_dirty)
        return;
    c->in_dirty = true;
    c->dirty_next = c->thr->dirty;
    c->thr->dirty = c;
}

void conn_queue_tx(struct conn *c, struct tx_item *it)
{
    it->next = NULL;
    if (c->phase == PHASE_CLOSING && !c->close_after_tx) {
        /* the connection is going away; drop what nobody will read */
        if (it->task)
            iscsi_task_put(it->task);
        free(it->owned);
        free(it);
        return;
    }
    if (c->tx_tail)
        c->tx_tail->next = it;
    else
        c->tx_head = it;
    c->tx_tail = it;
    conn_mark_dirty(c);
}

static void tx_item_free(struct tx_item *it)
{
    if (it->task)
        iscsi_task_put(it->task);
    free(it->owned);
    free(it);
}

static void set_epollout(struct conn *c, bool on)
{
    struct epoll_event ev = {.events = EPOLLIN | (on ? EPOLLOUT : 0), .data.ptr = &c->src};
    epoll_ctl(c->thr->epoll_fd, EPOLL_CTL_MOD, c->fd, &ev);
}

/* Writes as much queued output as the socket takes, gathering several PDUs per sendmsg. */
static void conn_flush(struct conn *c)
{
    while (c->tx_head) {
        struct iovec iov[64];
        int n = 0;
        for (struct tx_item *it = c->tx_head; it && n + 4 <= 64; it = it->next)
            for (int i = 0; i < it->iovcnt; i++)
                iov[n++] = it->iov[i];
        struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};
        ssize_t w = sendmsg(c->fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->tx_blocked) {
                    c->tx_blocked = true;
                    set_epollout(c, true);
                }
                return;
            }
            if (errno == EINTR)
                continue;
            conn_close(c, strerror(errno));
            return;
        }
        size_t left = (size_t)w;
        while (left > 0 && c->tx_head) {
            struct tx_item *it = c->tx_head;
            while (it->iovcnt > 0 && left > 0) {
                if (left >= it->iov[0].iov_len) {
                    left -= it->iov[0].iov_len;
                    memmove(&it->iov[0], &it->iov[1],
                            sizeof(it->iov[0]) * (size_t)(it->iovcnt - 1));
                    it->iovcnt--;
                } else {
                    it->iov[0].iov_base = (uint8_t *)it->iov[0].iov_base + left;
                    it->iov[0].iov_len -= left;
                    left = 0;
                }
            }
            if (it->iovcnt == 0) {
                c->tx_head = it->next;
                if (c->tx_head == NULL)
                    c->tx_tail = NULL;
                tx_item_free(it);
            }
        }
    }
    if (c->tx_blocked) {
        c->tx_blocked = false;
        set_epollout(c, false);
    }
    if (c->close_after_tx)
        conn_close(c, "logged out");
}

/* ---------------- connections ---------------- */

static void session_unregister(struct conn *c)
{
    struct tgt_server *srv = c->thr->srv;
    pthread_mutex_lock(&srv->sessions_lock);
    if (c->registered) {
        for (struct conn **pp = &srv->sessions; *pp; pp = &(*pp)->sess_next) {
            if (*pp == c) {
                *pp = c->sess_next;
                break;
            }
        }
        c->registered = false;
    }
    pthread_mutex_unlock(&srv->sessions_lock);
}

static void conn_free(struct conn *c)
{
    struct net_thread *thr = c->thr;
    for (struct conn **pp = &thr->conns; *pp; pp = &(*pp)->next) {
        if (*pp == c) {
            *pp = c->next;
            break;
        }
    }
    login_free(&c->login);
    free(c->pdu_data);
    for (size_t i = 0; c->nexus && i < c->target->lun_count; i++)
        if (c->nexus[i])
            lu_nexus_put(&c->target->luns[i].lu, c->nexus[i]);
    free(c->nexus);
    free(c);
    atomic_fetch_sub(&thr->conn_count, 1);
}

/* Closes the socket now; the memory goes when the last task with I/O in flight is done. */
void conn_close(struct conn *c, const char *why)
{
    if (c->fd < 0)
        return;
    if (c->phase == PHASE_FULL || c->phase == PHASE_LOGIN)
        TWL_INFO(PART, "%s: connection closed (%s)", c->peer, why);
    session_unregister(c);
    c->phase = PHASE_CLOSING;
    c->close_after_tx = false;
    epoll_ctl(c->thr->epoll_fd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->fd = -1;
    c->thr->reap_needed = true;
    while (c->tx_head) {
        struct tx_item *it = c->tx_head;
        c->tx_head = it->next;
        tx_item_free(it);
    }
    c->tx_tail = NULL;
    iscsi_conn_release_tasks(c);
}

/* Frees closed connections whose last task is gone. Runs only after a close or the last
 * task of a closed connection ended, not on every loop turn. */
static void reap_closed(struct net_thread *thr)
{
    if (!thr->reap_needed)
        return;
    thr->reap_needed = false;
    for (struct conn *c = thr->conns, *next; c; c = next) {
        next = c->next;
        if (c->fd >= 0)
            continue;
        if (c->task_count == 0 && !c->in_dirty && atomic_load(&c->inbound) == 0)
            conn_free(c);
        else if (c->in_dirty)
            thr->reap_needed = true; /* flushed (as a no-op) next turn */
    }
}

static void conn_adopt(struct net_thread *thr, int fd)
{
    struct conn *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        TWL_ERROR(PART, "out of memory for a new connection");
        close(fd);
        return;
    }
    c->src.kind = POLL_CONN;
    c->thr = thr;
    c->fd = fd;
    c->phase = PHASE_LOGIN;
    c->rx_state = RX_BHS;
    c->rx_need = ISCSI_BHS_LEN;
    c->readahead = RBUF_CAP;
    /* the thread's one clock, so intervals against it never run backwards */
    c->last_rx_ns = thr->loop_ns;
    c->connected_ns = c->last_rx_ns;
    c->next_ttt = 1;
    struct sockaddr_storage ss;
    socklen_t sl = sizeof(ss);
    char host[64] = "?", serv[16] = "?";
    bool known = getpeername(fd, (struct sockaddr *)&ss, &sl) == 0;
    if (known)
        getnameinfo((struct sockaddr *)&ss, sl, host, sizeof(host), serv, sizeof(serv),
                    NI_NUMERICHOST | NI_NUMERICSERV);
    snprintf(c->peer, sizeof(c->peer), "%s:%s", host, serv);
    login_init(&c->login, thr->srv->cfg, thr->srv->groups[0].id);
    if (known)
        login_set_peer(&c->login, (struct sockaddr *)&ss, sl);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &c->src};
    if (epoll_ctl(thr->epoll_fd, EPOLL_CTL_ADD, fd, &ev) < 0) {
        TWL_ERROR(PART, "%s: epoll_ctl: %s", c->peer, strerror(errno));
        close(fd);
        free(c);
        atomic_fetch_sub(&thr->conn_count, 1);
        return;
    }
    c->next = thr->conns;
    thr->conns = c;
    TWL_DEBUG(PART, "%s: connected (thread %u)", c->peer, thr->index);
}

/* ---------------- task management across sessions ---------------- */

struct abort_msg {
    struct remote_done d;
    struct conn *conn;
    uint32_t lun;
};

static void abort_msg_on_thread(struct remote_done *d)
{
    struct abort_msg *m = (struct abort_msg *)((uint8_t *)d - offsetof(struct abort_msg, d));
    struct conn *c = m->conn;
    if (c->fd >= 0)
        iscsi_abort_for_other_nexus(c, m->lun);
    atomic_fetch_sub(&c->inbound, 1);
    c->thr->reap_needed = true;
    free(m);
}

void server_abort_nexuses(struct tgt_server *srv, const struct tgt_target *target,
                          const struct conn *except, uint32_t lun, const struct pr_ua *sel)
{
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct conn *o = srv->sessions; o; o = o->sess_next) {
        if (o == except || o->target != target)
            continue;
        if (sel) {
            struct pr_nexus n = {.initiator_name = o->initiator,
                                 .rel_port = srv->groups[0].rel_port};
            memcpy(n.isid, o->isid, 6);
            if (!pr_ua_matches(sel, &n))
                continue;
        }
        struct abort_msg *m = malloc(sizeof(*m));
        if (m == NULL) {
            TWL_ERROR(PART, "out of memory: tasks of %s on LUN %u not aborted", o->peer, lun);
            continue;
        }
        m->d.fn = abort_msg_on_thread;
        m->conn = o;
        m->lun = lun;
        /* o stays registered, so not freed, until we let go of the lock; inbound keeps it
         * until the message is handled */
        atomic_fetch_add(&o->inbound, 1);
        thread_post_done(o->thr, &m->d);
    }
    pthread_mutex_unlock(&srv->sessions_lock);
}

void server_abort_elsewhere(struct conn *from, uint32_t lun, const struct pr_ua *sel)
{
    server_abort_nexuses(from->thr->srv, from->target, from, lun, sel);
}

/* ---------------- login ---------------- */

/* Registers a full-feature session; a session with the same initiator, ISID and target is
 * reinstated (RFC 7143 6.3.5): its connection is shut down. */
int conn_register_session(struct conn *c)
{
    struct tgt_server *srv = c->thr->srv;
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct conn **pp = &srv->sessions; *pp;) {
        struct conn *o = *pp;
        if (o->target == c->target && memcmp(o->isid, c->isid, 6) == 0 &&
            strcmp(o->initiator, c->initiator) == 0) {
            *pp = o->sess_next;
            o->registered = false;
            atomic_store(&o->evicted, true);
            /* the owning thread sees the shutdown as EOF and cleans up there */
            shutdown(o->fd, SHUT_RDWR);
            TWL_INFO(PART, "%s: session reinstatement for %s replaces TSIH %u", c->peer,
                     c->initiator, o->tsih);
            continue;
        }
        pp = &o->sess_next;
    }
    for (int tries = 0; c->tsih == 0; tries++) {
        if (tries == 65535) {
            pthread_mutex_unlock(&srv->sessions_lock);
            return -EBUSY; /* every TSIH is held by a live session */
        }
        /* TSIH 0 is reserved; after a wrap, skip values a live session still holds */
        if (++srv->next_tsih == 0)
            srv->next_tsih = 1;
        bool taken = false;
        for (struct conn *o = srv->sessions; o && !taken; o = o->sess_next)
            taken = o->tsih == srv->next_tsih;
        if (!taken)
            c->tsih = srv->next_tsih;
    }
    c->sess_next = srv->sessions;
    srv->sessions = c;
    c->registered = true;
    pthread_mutex_unlock(&srv->sessions_lock);
    return 0;
}

unsigned server_session_count(struct tgt_server *srv)
{
    unsigned n = 0;
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct conn *o = srv->sessions; o; o = o->sess_next)
        n++;
    pthread_mutex_unlock(&srv->sessions_lock);
    return n;
}

static bool session_exists(struct tgt_server *srv, uint16_t tsih, const uint8_t *isid,
                           const char *initiator)
{
    bool found = false;
    pthread_mutex_lock(&srv->sessions_lock);
    for (struct conn *o = srv->sessions; o; o = o->sess_next)
        if (o->tsih == tsih && memcmp(o->isid, isid, 6) == 0 &&
            strcmp(o->initiator, initiator) == 0)
            found = true;
    pthread_mutex_unlock(&srv->sessions_lock);
    return found;
}

static void send_login_response(struct conn *c, const uint8_t *req, struct login_response *rsp)
{
    uint8_t *hdr = calloc(1, ISCSI_BHS_LEN);
    if (hdr == NULL) {
        conn_close(c, "out of memory");
        return;
    }
    hdr[0] = ISCSI_OP_LOGIN_RSP;
    hdr[1] = (uint8_t)((rsp->transit ? 0x80 : 0) | (rsp->csg << 2) | (rsp->transit ? rsp->nsg : 0));
    hdr[2] = 0; /* VersionMax */
    hdr[3] = 0; /* VersionActive */
    memcpy(hdr + 8, req + 8, 6);
    twl_put_be16(hdr + 14, rsp->complete ? c->tsih : twl_get_be16(req + 14));
    memcpy(hdr + 16, req + 16, 4);
    twl_put_be32(hdr + 24, c->stat_sn++);
    twl_put_be32(hdr + 28, c->win.exp_cmdsn);
    twl_put_be32(hdr + 32, c->win.max_cmdsn);
    hdr[36] = (uint8_t)(rsp->status >> 8);
    hdr[37] = (uint8_t)rsp->status;
    uint8_t *text = (uint8_t *)rsp->text.buf;
    uint32_t len = (uint32_t)rsp->text.len;
    rsp->text.buf = NULL;
    rsp->text.len = 0;
    iscsi_send_pdu(c, hdr, text, len, text, NULL);
    free(hdr);
}

static void handle_login(struct conn *c)
{
    const uint8_t *bhs = c->hdr;
    if (pdu_opcode(bhs) != ISCSI_OP_LOGIN_REQ) {
        TWL_WARN(PART, "%s: opcode 0x%02x before login completed", c->peer, pdu_opcode(bhs));
        conn_close(c, "protocol error during login");
        return;
    }
    if (!c->login.first_seen) {
        uint32_t cmdsn = twl_get_be32(bhs + 24);
        cmdsn_init(&c->win, cmdsn, c->thr->srv->cfg->iscsi.cmd_window);
        c->stat_sn = twl_get_be32(bhs + 28);
        if (c->stat_sn == 0)
            c->stat_sn = 1;
    }
    struct login_response rsp;
    login_process(&c->login, bhs, c->pdu_data, c->data_len, &rsp);
    struct login_ctx *lc = &c->login;
    if (rsp.status == 0 && lc->tsih != 0 && lc->first_seen && c->tsih == 0) {
        /* Only one connection per session: a non-zero TSIH can only mean the initiator
         * reconnects an existing session (connection reinstatement). */
        if (!session_exists(c->thr->srv, lc->tsih, lc->isid, lc->initiator_name)) {
            pdu_text_free(&rsp.text);
            rsp.status = LOGIN_STATUS_NO_SESSION;
            rsp.reason = "TSIH names no session";
            rsp.transit = false;
            rsp.complete = false;
        } else {
            c->tsih = lc->tsih;
        }
    }
    if (rsp.status != 0) {
        pdu_text_free(&rsp.text);
        TWL_WARN(PART, "%s: login refused for '%s' (status 0x%04x): %s", c->peer,
                 lc->initiator_name[0] ? lc->initiator_name : "?", rsp.status,
                 rsp.reason ? rsp.reason : "");
        send_login_response(c, bhs, &rsp);
        c->close_after_tx = true;
        return;
    }
    if (rsp.complete) {
        c->params = lc->params;
        c->discovery = lc->type == LOGIN_SESSION_DISCOVERY;
        snprintf(c->initiator, sizeof(c->initiator), "%s", lc->initiator_name);
        memcpy(c->isid, lc->isid, 6);
        if (!c->discovery) {
            for (size_t i = 0; i < c->thr->srv->target_count; i++)
                if (c->thr->srv->targets[i].cfg == lc->target)
                    c->target = &c->thr->srv->targets[i];
        }
        if (conn_register_session(c) != 0) {
            pdu_text_free(&rsp.text);
            rsp.status = LOGIN_STATUS_OUT_OF_RESOURCES;
            rsp.transit = rsp.complete = false;
            TWL_WARN(PART, "%s: login refused for '%s': no free TSIH", c->peer, c->initiator);
            send_login_response(c, bhs, &rsp);
            c->close_after_tx = true;
            return;
        }
    }
    send_login_response(c, bhs, &rsp);
    pdu_text_free(&rsp.text);
    if (rsp.complete) {
        /* digests apply from the first PDU after the final login response */
        c->phase = PHASE_FULL;
        TWL_INFO(PART, "%s: %s session for %s (ISID %02x%02x%02x%02x%02x%02x, TSIH %u)%s%s",
                 c->peer, c->discovery ? "discovery" : "normal", c->initiator, c->isid[0],
                 c->isid[1], c->isid[2], c->isid[3], c->isid[4], c->isid[5], c->tsih,
                 c->discovery ? "" : " to ", c->discovery ? "" : c->target->cfg->iqn);
    }
}

/* ---------------- receive ---------------- */

/* Copies up to want bytes of input into dst: buffered bytes first, then the socket. Pieces of
 * a few KiB or more go straight from the socket into dst so bulk data is copied once; small
 * reads go through rbuf, which gathers many small PDUs per recv. Returns bytes obtained, or -1
 * when the connection was closed. */
static ssize_t rx_take(struct conn *c, uint8_t *dst, uint32_t want, bool *would_block)
{
    uint32_t got = 0;
    while (got < want) {
        uint32_t avail = c->rend - c->rstart;
        if (avail) {
            uint32_t n = avail < want - got ? avail : want - got;
            if (dst)
                memcpy(dst + got, c->rbuf + c->rstart, n);
            c->rstart += n;
            got += n;
            continue;
        }
        ssize_t r;
        if (dst && want - got >= DIRECT_RECV_MIN) {
            r = recv(c->fd, dst + got, want - got, MSG_DONTWAIT);
            if (r > 0) {
                got += (uint32_t)r;
                continue;
            }
        } else {
            r = recv(c->fd, c->rbuf, c->readahead, MSG_DONTWAIT);
            if (r > 0) {
                c->rstart = 0;
                c->rend = (uint32_t)r;
                continue;
            }
        }
        if (r == 0) {
            conn_close(c, atomic_load(&c->evicted) ? "reinstated by a new session"
                                                   : "closed by initiator");
            return -1;
        }
        if (errno == EAGAIN || errno == EWOULDBLOCK) {
            *would_block = true;
            return got;
        }
        if (errno == EINTR)
            continue;
        conn_close(c, strerror(errno));
        return -1;
    }
    return got;
}

static bool header_digest_on(const struct conn *c)
{
    return c->phase == PHASE_FULL && c->params.header_digest;
}

static bool data_digest_on(const struct conn *c)
{
    return c->phase == PHASE_FULL && c->params.data_digest;
}

/* BHS and AHS are in; decide where the data segment goes. */
static void rx_header_done(struct conn *c)
{
    uint8_t *bhs = c->hdr;
    uint32_t ahs = pdu_ahs_len(bhs);
    if (header_digest_on(c)) {
        uint32_t crc = twl_crc32c(bhs, ISCSI_BHS_LEN + ahs);
        if (!pdu_digest_matches(bhs + ISCSI_BHS_LEN + ahs, crc)) {
            /* The header cannot be trusted, so neither can the framing: at error recovery
             * level 0 the connection is dropped (RFC 7143 7.8). */
            TWL_WARN(PART, "%s: header digest error (opcode 0x%02x, ITT 0x%08x)", c->peer,
                     pdu_opcode(bhs), pdu_itt(bhs));
            conn_close(c, "header digest error");
            return;
        }
    }
    c->data_len = pdu_data_len(bhs);
    /* After a PDU with a large data segment, the next header likely precedes another one:
     * read little beyond it, so that segment goes straight to its buffer, not through rbuf. */
    c->readahead = c->data_len >= BIG_SEGMENT ? SMALL_READAHEAD : RBUF_CAP;
    c->data_dst = NULL;
    c->rx_task = NULL;
    c->data_claimed = false;
    c->rx_rejected = false;
    c->data_digest_bad = false;
    if (c->phase == PHASE_LOGIN) {
        if (c->data_len > ISCSI_LOGIN_MAX_DSL) {
            TWL_WARN(PART, "%s: login PDU with %u data bytes (limit %u)", c->peer, c->data_len,
                     ISCSI_LOGIN_MAX_DSL);
            conn_close(c, "oversized login PDU");
            return;
        }
    } else {
        iscsi_on_header(c);
        if (c->fd < 0)
            return;
    }
    if (c->data_len && !c->data_claimed) {
        /* Non-SCSI data (login, text, ping) is kept in pdu_data; its size is within
         * MaxRecvDataSegmentLength (checked above for login, by iscsi_on_header otherwise). */
        if (c->pdu_data_cap < c->data_len) {
            uint8_t *nb = realloc(c->pdu_data, c->data_len);
            if (nb == NULL) {
                conn_close(c, "out of memory");
                return;
            }
            c->pdu_data = nb;
            c->pdu_data_cap = c->data_len;
        }
        c->data_dst = c->pdu_data;
    }
    c->trailer_len = pdu_pad(c->data_len) + (data_digest_on(c) && c->data_len ? 4 : 0);
    c->rx_got = 0;
    if (c->data_len) {
        c->rx_state = RX_DATA;
        c->rx_need = c->data_len;
    } else {
        c->rx_state = RX_TRAILER;
        c->rx_need = 0;
    }
}

static void rx_pdu_done(struct conn *c)
{
    c->last_rx_ns = c->thr->loop_ns;
    /* Checked here, once, for every kind of PDU; dropped data is not checked (nobody uses it). */
    if (data_digest_on(c) && c->data_len && c->data_dst)
        c->data_digest_bad = !pdu_digest_matches(c->trailer + pdu_pad(c->data_len),
                                                 pdu_data_digest(c->data_dst, c->data_len));
    if (c->phase == PHASE_LOGIN)
        handle_login(c);
    else
        iscsi_on_pdu(c);
}

/* Reads and dispatches PDUs until the socket is empty (bounded per call for fairness). */
static void conn_on_readable(struct conn *c)
{
    for (int budget = 256; budget > 0 && c->fd >= 0 && c->phase != PHASE_CLOSING;) {
        bool wb = false;
        ssize_t n;
        switch (c->rx_state) {
        case RX_BHS:
            n = rx_take(c, c->hdr + c->rx_got, ISCSI_BHS_LEN - c->rx_got, &wb);
            if (n < 0)
                return;
            c->rx_got += (uint32_t)n;
            if (c->rx_got < ISCSI_BHS_LEN)
                return;
            c->rx_got = 0;
            c->rx_need = pdu_ahs_len(c->hdr) + (header_digest_on(c) ? ISCSI_DIGEST_LEN : 0);
            if (c->rx_need) {
                c->rx_state = RX_AHS;
                break;
            }
            rx_header_done(c);
            break;
        case RX_AHS:
            n = rx_take(c, c->hdr + ISCSI_BHS_LEN + c->rx_got, c->rx_need - c->rx_got, &wb);
            if (n < 0)
                return;
            c->rx_got += (uint32_t)n;
            if (c->rx_got < c->rx_need)
                return;
            rx_header_done(c);
            break;
        case RX_DATA:
            if (c->data_dst) {
                n = rx_take(c, c->data_dst + c->rx_got, c->rx_need - c->rx_got, &wb);
            } else {
                uint32_t chunk = c->rx_need - c->rx_got;
                if (chunk > RBUF_CAP)
                    chunk = RBUF_CAP;
                n = rx_take(c, c->thr->discard, chunk, &wb);
            }
            if (n < 0)
                return;
            c->rx_got += (uint32_t)n;
            if (c->rx_got < c->rx_need) {
                if (wb)
                    return;
                break;
            }
            c->rx_state = RX_TRAILER;
            c->rx_got = 0;
            c->rx_need = c->trailer_len;
            break;
        case RX_TRAILER:
            if (c->rx_need) {
                n = rx_take(c, c->trailer + c->rx_got, c->rx_need - c->rx_got, &wb);
                if (n < 0)
                    return;
                c->rx_got += (uint32_t)n;
                if (c->rx_got < c->rx_need)
                    return;
            }
            c->rx_state = RX_BHS;
            c->rx_got = 0;
            c->rx_need = ISCSI_BHS_LEN;
            budget--;
            rx_pdu_done(c);
            break;
        }
        if (wb)
            return;
    }
}

/* ---------------- threads ---------------- */

void thread_post_done(struct net_thread *thr, struct remote_done *d)
{
    d->next = NULL;
    pthread_mutex_lock(&thr->handoff_lock);
    /* only the first of a batch wakes the thread: it reads its wake fd before it takes the
     * list, so whatever joins a list that is not empty is taken with it */
    bool first = thr->done_tail == NULL;
    if (thr->done_tail)
        thr->done_tail->next = d;
    else
        thr->done_head = d;
    thr->done_tail = d;
    pthread_mutex_unlock(&thr->handoff_lock);
    uint64_t one = 1;
    if (first && write(thr->wake_fd, &one, sizeof(one)) < 0)
        TWL_WARN(PART, "thread %u: wake write: %s", thr->index, strerror(errno));
}

static void thread_take_handoffs(struct net_thread *thr)
{
    uint64_t v;
    if (read(thr->wake_fd, &v, sizeof(v)) < 0 && errno != EAGAIN)
        TWL_WARN(PART, "thread %u: wake read: %s", thr->index, strerror(errno));
    pthread_mutex_lock(&thr->handoff_lock);
    struct remote_done *done = thr->done_head;
    thr->done_head = thr->done_tail = NULL;
    pthread_mutex_unlock(&thr->handoff_lock);
    while (done) {
        struct remote_done *next = done->next;
        done->fn(done);
        done = next;
    }
    pthread_mutex_lock(&thr->handoff_lock);
    size_t n = thr->handoff_count;
    int fds[64];
    if (n > 64)
        n = 64;
    if (n > 0) {
        memcpy(fds, thr->handoff, n * sizeof(int));
        memmove(thr->handoff, thr->handoff + n, (thr->handoff_count - n) * sizeof(int));
        thr->handoff_count -= n;
    }
    bool more = thr->handoff_count > 0;
    pthread_mutex_unlock(&thr->handoff_lock);
    for (size_t i = 0; i < n; i++)
        conn_adopt(thr, fds[i]);
    if (more) {
        uint64_t one = 1;
        if (write(thr->wake_fd, &one, sizeof(one)) < 0)
            TWL_WARN(PART, "thread %u: wake write: %s", thr->index, strerror(errno));
    }
}

static void handoff(struct net_thread *thr, int fd)
{
    pthread_mutex_lock(&thr->handoff_lock);
    if (thr->handoff_count == thr->handoff_cap) {
        size_t cap = thr->handoff_cap ? thr->handoff_cap * 2 : 16;
        int *nb = realloc(thr->handoff, cap * sizeof(int));
        if (nb == NULL) {
            pthread_mutex_unlock(&thr->handoff_lock);
            close(fd);
            return;
        }
        thr->handoff = nb;
        thr->handoff_cap = cap;
    }
    thr->handoff[thr->handoff_count++] = fd;
    pthread_mutex_unlock(&thr->handoff_lock);
    atomic_fetch_add(&thr->conn_count, 1);
    uint64_t one = 1;
    if (write(thr->wake_fd, &one, sizeof(one)) < 0)
        TWL_WARN(PART, "thread %u: wake write: %s", thr->index, strerror(errno));
}

static void accept_connections(struct tgt_server *srv)
{
    for (int i = 0; i < 64; i++) {
        int fd = accept4(srv->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                TWL_WARN(PART, "accept: %s", strerror(errno));
            return;
        }
        if (atomic_load(&srv->stop_requested)) {
            close(fd);
            continue;
        }
        /* the least loaded thread takes it, so two initiators run on two cores */
        struct net_thread *best = &srv->threads[0];
        for (unsigned t = 1; t < srv->thread_count; t++)
            if (atomic_load(&srv->threads[t].conn_count) < atomic_load(&best->conn_count))
                best = &srv->threads[t];
        handoff(best, fd);
    }
}

static void thread_timers(struct net_thread *thr, uint64_t now)
{
    const struct tgt_config *cfg = thr->srv->cfg;
    for (struct conn *c = thr->conns; c; c = c->next) {
        if (c->fd < 0)
            continue;
        if (thr->stopping) {
            if (c->phase == PHASE_FULL && !c->async_logout_sent && !c->discovery) {
                c->async_logout_sent = true;
                iscsi_send_async_logout(c, DRAIN_SECONDS - 1);
            } else if (c->phase != PHASE_FULL || c->discovery) {
                conn_close(c, "target shutting down");
            }
            continue;
        }
        if (c->phase == PHASE_LOGIN &&
            now - c->connected_ns > (uint64_t)cfg->login_timeout_s * 1000000000ull) {
            TWL_WARN(PART, "%s: login not completed within %u s", c->peer, cfg->login_timeout_s);
            conn_close(c, "login timeout");
            continue;
        }
        if (c->phase != PHASE_FULL || cfg->nop_interval_s == 0)
            continue;
        if (c->ping_ttt) {
            if (now - c->ping_sent_ns > (uint64_t)cfg->nop_timeout_s * 1000000000ull) {
                TWL_WARN(PART, "%s: no answer to NOP-In within %u s", c->peer, cfg->nop_timeout_s);
                conn_close(c, "ping timeout");
            }
        } else if (now - c->last_rx_ns > (uint64_t)cfg->nop_interval_s * 1000000000ull) {
            iscsi_send_ping(c);
        }
    }
}

static bool thread_drained(struct net_thread *thr)
{
    /* every connection closed and freed, so no task (nor replica) is still pending */
    return thr->conns == NULL && thr->ring.inflight == 0;
}

static void *thread_main(void *arg)
{
    struct net_thread *thr = arg;
    struct tgt_server *srv = thr->srv;
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, NULL); /* signals go to the main thread */
    struct epoll_event evs[64];
    for (;;) {
        int n = epoll_wait(thr->epoll_fd, evs, 64, 200);
        if (n < 0 && errno != EINTR) {
            TWL_ERROR(PART, "thread %u: epoll_wait: %s", thr->index, strerror(errno));
            break;
        }
        thr->loop_ns = twl_now_ns();
        for (int i = 0; i < n; i++) {
            struct poll_src *src = evs[i].data.ptr;
            switch (src->kind) {
            case POLL_LISTEN:
                accept_connections(srv);
                break;
            case POLL_WAKE:
                thread_take_handoffs(thr);
                break;
            case POLL_RING:
                backing_ring_reap(&thr->ring);
                break;
            case POLL_CONN: {
                struct conn *c = (struct conn *)src;
                if (c->fd < 0)
                    break;
                if (evs[i].events & (EPOLLIN | EPOLLHUP | EPOLLERR))
                    conn_on_readable(c);
                if (c->fd >= 0 && (evs[i].events & EPOLLOUT))
                    conn_mark_dirty(c);
                break;
            }
            }
        }
        backing_ring_submit(&thr->ring);
        while (thr->dirty) {
            struct conn *c = thr->dirty;
            thr->dirty = c->dirty_next;
            c->in_dirty = false;
            if (c->fd >= 0)
                conn_flush(c);
        }
        uint64_t now = thr->loop_ns;
        if (atomic_load(&srv->stop_requested) && !thr->stopping) {
            thr->stopping = true;
            thr->stop_deadline_ns = now + DRAIN_SECONDS * 1000000000ull;
            if (thr->index == 0)
                epoll_ctl(thr->epoll_fd, EPOLL_CTL_DEL, srv->listen_fd, NULL);
            thr->last_timer_ns = 0;
        }
        /* pings and login timeouts once a second; twice as often while draining */
        uint64_t period = thr->stopping ? 500000000ull : 1000000000ull;
        if (now - thr->last_timer_ns >= period) {
            thread_timers(thr, now);
            thr->last_timer_ns = now;
        }
        if (thr->stopping && now > thr->stop_deadline_ns) {
            for (struct conn *c = thr->conns; c; c = c->next)
                if (c->fd >= 0)
                    conn_close(c, "drain deadline");
        }
        reap_closed(thr);
        if (thr->stopping && thread_drained(thr))
            break;
    }
    return NULL;
}

/* ---------------- server ---------------- */

int server_listen(const char *host, uint16_t port, int backlog, int *fd_out, uint16_t *bound,
                  char *why, size_t why_len)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC,
                             .ai_socktype = SOCK_STREAM,
                             .ai_flags = AI_PASSIVE | AI_NUMERICSERV};
    struct addrinfo *res = NULL;
    char serv[8];
    snprintf(serv, sizeof(serv), "%u", port);
    int rc = getaddrinfo(host && host[0] ? host : NULL, serv, &hints, &res);
    if (rc != 0) {
        snprintf(why, why_len, "%s", gai_strerror(rc));
        return -EINVAL;
    }
    rc = -EADDRNOTAVAIL;
    for (struct addrinfo *a = res; a; a = a->ai_next) {
        int fd = socket(a->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (fd < 0) {
            rc = -errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
        if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, backlog) < 0) {
            rc = -errno;
            close(fd);
            continue;
        }
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);
        getsockname(fd, (struct sockaddr *)&ss, &sl);
        *bound = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
        *fd_out = fd;
        rc = 0;
        break;
    }
    freeaddrinfo(res);
    if (rc)
        snprintf(why, why_len, "%s", strerror(-rc));
    return rc;
}

enum scsi_alua_state server_alua_state(const struct tgt_server *srv, const struct tgt_lun *lun)
{
    int lu_state = lun ? atomic_load(&lun->lu.alua_state) : -1;
    return (enum scsi_alua_state)(lu_state >= 0 ? lu_state : atomic_load(&srv->alua_state));
}

static int bind_portal(struct tgt_server *srv)
{
    const struct tgt_config *cfg = srv->cfg;
    char why[128];
    int rc = server_listen(cfg->listen_host, cfg->listen_port, 128, &srv->listen_fd, &srv->port,
                           why, sizeof(why));
    if (rc)
        TWL_ERROR(PART, "cannot listen on %s:%u: %s", cfg->listen_host, cfg->listen_port, why);
    return rc;
}

static int open_targets(struct tgt_server *srv)
{
    const struct tgt_config *cfg = srv->cfg;
    srv->targets = calloc(cfg->target_count, sizeof(*srv->targets));
    if (srv->targets == NULL)
        return -ENOMEM;
    srv->target_count = cfg->target_count;
    for (size_t i = 0; i < cfg->target_count; i++) {
        struct tgt_target *t = &srv->targets[i];
        const struct tgt_target_config *tc = &cfg->targets[i];
        t->cfg = tc;
        t->luns = calloc(tc->lun_count, sizeof(*t->luns));
        t->lun_ids = calloc(tc->lun_count, sizeof(*t->lun_ids));
        if (t->luns == NULL || t->lun_ids == NULL)
            return -ENOMEM;
        for (size_t j = 0; j < tc->lun_count; j++) {
            struct tgt_lun *l = &t->luns[j];
            l->cfg = &tc->luns[j];
            l->store.fd = -1;
            int rc = backing_open(l->cfg, &l->store);
            if (rc)
                return rc;
            t->lun_count = j + 1;
            t->lun_ids[j] = l->cfg->id;
            l->info.id = l->cfg->id;
            l->info.block_size = l->cfg->block_size;
            l->info.block_count = l->store.size / l->cfg->block_size;
            l->info.thin = l->store.thin;
            l->info.write_cache = true;
            l->info.read_only = l->cfg->read_only;
            l->info.lbppbe = l->cfg->block_size < 4096 ? 3 : 0; /* 4 KiB pages underneath */
            l->info.max_transfer_blocks = MAX_IO_BYTES / l->cfg->block_size;
            snprintf(l->info.serial, sizeof(l->info.serial), "%s", l->cfg->serial);
            scsi_lun_derive_ids(&l->info, tc->iqn);
            char base[PATH_MAX + TGT_NAME_MAX + 16];
            snprintf(base, sizeof(base), "%s/%s.lun%u", cfg->state_dir, tc->iqn, l->info.id);
            rc = lu_init(&l->lu, &l->info, base);
            if (rc)
                return rc;
            l->lu_ready = true;
            if (cfg->pair.enabled && strcmp(l->cfg->owner, cfg->node_name) != 0) {
                atomic_store(&l->lu.alua_state, SCSI_ALUA_STANDBY);
                TWL_INFO(PART, "target %s LUN %u: owned by %s, standby here", tc->iqn, l->info.id,
                         l->cfg->owner);
            }
            TWL_INFO(PART, "target %s LUN %u: %s, %llu blocks of %u bytes%s%s", tc->iqn, l->info.id,
                     l->store.path, (unsigned long long)l->info.block_count, l->info.block_size,
                     l->store.thin ? ", thin" : "", l->store.direct ? ", O_DIRECT" : "");
        }
    }
    return 0;
}

static void close_targets(struct tgt_server *srv)
{
    for (size_t i = 0; i < srv->target_count; i++) {
        struct tgt_target *t = &srv->targets[i];
        for (size_t j = 0; j < t->lun_count; j++) {
            backing_sync(&t->luns[j].store);
            backing_close(&t->luns[j].store);
            if (t->luns[j].lu_ready)
                lu_destroy(&t->luns[j].lu);
        }
        free(t->luns);
        free(t->lun_ids);
    }
    free(srv->targets);
    srv->targets = NULL;
}

static int thread_setup(struct tgt_server *srv, struct net_thread *thr, unsigned index)
{
    thr->srv = srv;
    thr->index = index;
    thr->epoll_fd = -1;
    thr->wake_fd = -1;
    pthread_mutex_init(&thr->handoff_lock, NULL);
    thr->discard = malloc(RBUF_CAP);
    if (thr->discard == NULL)
        return -ENOMEM;
    int rc = backing_ring_init(&thr->ring, RING_DEPTH);
    if (rc)
        return rc;
    thr->epoll_fd = epoll_create1(EPOLL_CLOEXEC);
    thr->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (thr->epoll_fd < 0 || thr->wake_fd < 0)
        return -errno;
    thr->wake_src.kind = POLL_WAKE;
    thr->ring_src.kind = POLL_RING;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &thr->wake_src};
    if (epoll_ctl(thr->epoll_fd, EPOLL_CTL_ADD, thr->wake_fd, &ev) < 0)
        return -errno;
    ev.data.ptr = &thr->ring_src;
    if (epoll_ctl(thr->epoll_fd, EPOLL_CTL_ADD, thr->ring.event_fd, &ev) < 0)
        return -errno;
    return 0;
}

/* ---------------- worker threads ---------------- */

void server_job_submit(struct tgt_server *srv, struct tgt_job *job)
{
    job->next = NULL;
    pthread_mutex_lock(&srv->job_lock);
    if (srv->job_tail)
        srv->job_tail->next = job;
    else
        srv->job_head = job;
    srv->job_tail = job;
    pthread_cond_signal(&srv->job_cond);
    pthread_mutex_unlock(&srv->job_lock);
}

static void *worker_main(void *arg)
{
    struct tgt_server *srv = arg;
    pthread_mutex_lock(&srv->job_lock);
    for (;;) {
        while (srv->job_head == NULL && !srv->jobs_stop)
            pthread_cond_wait(&srv->job_cond, &srv->job_lock);
        struct tgt_job *job = srv->job_head;
        if (job == NULL)
            break; /* stopping, and nothing left */
        srv->job_head = job->next;
        if (srv->job_head == NULL)
            srv->job_tail = NULL;
        pthread_mutex_unlock(&srv->job_lock);
        job->run(job);
        pthread_mutex_lock(&srv->job_lock);
    }
    pthread_mutex_unlock(&srv->job_lock);
    return NULL;
}

static int workers_start(struct tgt_server *srv)
{
    for (; srv->worker_count < WORKER_THREADS; srv->worker_count++) {
        int rc = pthread_create(&srv->workers[srv->worker_count], NULL, worker_main, srv);
        if (rc) {
            TWL_ERROR(PART, "worker thread: pthread_create: %s", strerror(rc));
            return -rc;
        }
    }
    return 0;
}

static void workers_stop(struct tgt_server *srv)
{
    pthread_mutex_lock(&srv->job_lock);
    srv->jobs_stop = true;
    pthread_cond_broadcast(&srv->job_cond);
    pthread_mutex_unlock(&srv->job_lock);
    for (unsigned i = 0; i < srv->worker_count; i++)
        pthread_join(srv->workers[i], NULL);
    srv->worker_count = 0;
}

int tgt_server_create(const struct tgt_config *cfg, struct tgt_server **out)
{
    struct tgt_server *srv = calloc(1, sizeof(*srv));
    if (srv == NULL)
        return -ENOMEM;
    srv->cfg = cfg;
    srv->listen_fd = -1;
    srv->listen_src.kind = POLL_LISTEN;
    pthread_mutex_init(&srv->sessions_lock, NULL);
    pthread_mutex_init(&srv->job_lock, NULL);
    pthread_cond_init(&srv->job_cond, NULL);
    uint16_t mine = cfg->pair.enabled && strcmp(cfg->node_name, cfg->pair.partner) > 0 ? 2 : 1;
    srv->groups[0] = (struct scsi_port_group){.id = mine, .rel_port = mine};
    srv->group_count = 1;
    if (cfg->pair.enabled)
        srv->groups[srv->group_count++] =
            (struct scsi_port_group){.id = (uint16_t)(3 - mine), .rel_port = (uint16_t)(3 - mine)};
    atomic_store(&srv->alua_state, SCSI_ALUA_ACTIVE_OPTIMIZED);
    int rc = open_targets(srv);
    if (rc)
        goto fail;
    rc = workers_start(srv);
    if (rc)
        goto fail;
    /* with a pair, command buffers come from one region the backplane registers */
    rc = bufpool_create(cfg->pair.enabled ? cfg->pair.pool_bytes : 0, &srv->pool);
    if (rc)
        goto fail;
    if (cfg->pair.enabled) {
        rc = replica_start(srv, &srv->pair);
        if (rc)
            goto fail;
    }
    rc = bind_portal(srv);
    if (rc)
        goto fail;
    /* I/O is served without these; a failure is logged. The admin thread reads srv->metrics:
     * it starts last. */
    metrics_start(srv, &srv->metrics);
    admin_start(srv, &srv->admin);
    srv->thread_count = cfg->threads ? cfg->threads : 1;
    srv->threads = calloc(srv->thread_count, sizeof(*srv->threads));
    if (srv->threads == NULL) {
        rc = -ENOMEM;
        goto fail;
    }
    for (unsigned i = 0; i < srv->thread_count; i++) {
        rc = thread_setup(srv, &srv->threads[i], i);
        if (rc) {
            TWL_ERROR(PART, "network thread %u setup: %s", i, strerror(-rc));
            goto fail;
        }
    }
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &srv->listen_src};
    if (epoll_ctl(srv->threads[0].epoll_fd, EPOLL_CTL_ADD, srv->listen_fd, &ev) < 0) {
        rc = -errno;
        goto fail;
    }
    *out = srv;
    return 0;
fail:
    tgt_server_destroy(srv);
    return rc;
}

void tgt_server_set_replicator(struct tgt_server *srv, const struct tgt_replicator *rep)
{
    srv->replicator = *rep;
}

int tgt_server_run(struct tgt_server *srv)
{
    TWL_INFO(PART, "listening on %s:%u with %u network threads", srv->cfg->listen_host, srv->port,
             srv->thread_count);
    unsigned started = 0;
    int rc = 0;
    for (; started < srv->thread_count; started++) {
        rc = pthread_create(&srv->threads[started].tid, NULL, thread_main, &srv->threads[started]);
        if (rc) {
            TWL_ERROR(PART, "pthread_create: %s", strerror(rc));
            tgt_server_stop(srv);
            rc = -rc;
            break;
        }
    }
    for (unsigned i = 0; i < started; i++)
        pthread_join(srv->threads[i].tid, NULL);
    TWL_INFO(PART, "all connections drained");
    return rc;
}

void tgt_server_stop(struct tgt_server *srv)
{
    atomic_store(&srv->stop_requested, true);
    uint64_t one = 1;
    for (unsigned i = 0; i < srv->thread_count; i++)
        if (srv->threads[i].wake_fd >= 0 && write(srv->threads[i].wake_fd, &one, sizeof(one)) < 0)
            continue; /* the thread also polls the flag every 200 ms */
}

int tgt_server_set_alua_state(struct tgt_server *srv, int state)
{
    if (state != SCSI_ALUA_ACTIVE_OPTIMIZED && state != SCSI_ALUA_ACTIVE_NON_OPTIMIZED &&
        state != SCSI_ALUA_STANDBY && state != SCSI_ALUA_UNAVAILABLE &&
        state != SCSI_ALUA_TRANSITIONING)
        return -EINVAL;
    int old = atomic_exchange(&srv->alua_state, state);
    if (old == state)
        return 0;
    for (size_t i = 0; i < srv->target_count; i++)
        for (size_t j = 0; j < srv->targets[i].lun_count; j++)
            lu_alua_changed(&srv->targets[i].luns[j].lu);
    TWL_INFO(PART, "target port group %u: asymmetric access state %d -> %d", srv->groups[0].id, old,
             state);
    return 0;
}

uint16_t tgt_server_port(const struct tgt_server *srv)
{
    return srv->port;
}

void tgt_server_destroy(struct tgt_server *srv)
{
    if (srv == NULL)
        return;
    for (unsigned i = 0; i < srv->thread_count && srv->threads; i++) {
        struct net_thread *thr = &srv->threads[i];
        while (thr->conns) {
            struct conn *c = thr->conns;
            if (c->fd >= 0)
                conn_close(c, "server destroyed");
            conn_free(c);
        }
        for (size_t j = 0; j < thr->handoff_count; j++)
            close(thr->handoff[j]);
        free(thr->handoff);
        if (thr->epoll_fd >= 0)
            close(thr->epoll_fd);
        if (thr->wake_fd >= 0)
            close(thr->wake_fd);
        if (thr->discard)
            backing_ring_exit(&thr->ring);
        free(thr->discard);
        pthread_mutex_destroy(&thr->handoff_lock);
    }
    free(srv->threads);
    if (srv->listen_fd >= 0)
        close(srv->listen_fd);
    metrics_stop(srv->metrics);
    admin_stop(srv->admin);
    replica_stop(srv->pair);
    workers_stop(srv);
    close_targets(srv);
    bufpool_destroy(srv->pool);
    pthread_mutex_destroy(&srv->sessions_lock);
    pthread_mutex_destroy(&srv->job_lock);
    pthread_cond_destroy(&srv->job_cond);
    free(srv);
}
