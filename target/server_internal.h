/*
 * Internals of the target server shared by server.c (threads, sockets, sessions) and iscsi.c
 * (full feature phase: commands, data transfer, task management).
 */
#ifndef TGT_SERVER_INTERNAL_H
#define TGT_SERVER_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/uio.h>

#include "backing.h"
#include "config.h"
#include "iostat.h"
#include "login.h"
#include "lu.h"
#include "pdu.h"
#include "scsi.h"
#include "session.h"
#include "target.h"

#define PART "iscsi"

#define RBUF_CAP         (64 * 1024)
#define TASK_HASH_SIZE   256
#define MAX_R2T_TRACKED  16
#define MAX_IO_BYTES     (8u * 1024 * 1024) /* largest transfer of one command */
#define EMULATED_BUF     8192
#define MAX_REPORT_BYTES 65536 /* largest Data-In of a report built outside scsi.c */

struct tgt_lun {
    struct scsi_lun info;
    struct backing store;
    const struct tgt_lun_config *cfg;
    struct lu lu;
    bool lu_ready;
    struct iostat stats; /* commands, bytes, latency (admin and metrics read them) */
    /* commands changing the medium that passed the ALUA gate at execution and have not
     * answered yet: a handover waits for none (iscsi.c task_enter_change) */
    atomic_uint changes_active;
};

struct tgt_target {
    const struct tgt_target_config *cfg;
    struct tgt_lun *luns;
    size_t lun_count;
    uint32_t *lun_ids;
};

enum poll_kind { POLL_LISTEN, POLL_WAKE, POLL_RING, POLL_CONN };

struct poll_src {
    enum poll_kind kind;
};

struct conn;
struct tgt_task;

/* Work handed from another thread to a network thread (a replica or worker completion, a
 * granted range lock); fn runs there. */
struct remote_done {
    struct remote_done *next;
    void (*fn)(struct remote_done *d);
};

/* Work for the worker threads (blocking multi-step commands); run() runs there. */
struct tgt_job {
    struct tgt_job *next;
    void (*run)(struct tgt_job *job);
};

#define WORKER_THREADS 2

struct net_thread {
    struct tgt_server *srv;
    unsigned index;
    pthread_t tid;
    int epoll_fd;
    struct poll_src wake_src;
    int wake_fd;
    struct poll_src ring_src;
    struct backing_ring ring;
    pthread_mutex_t handoff_lock;
    struct remote_done *done_head; /* under handoff_lock */
    struct remote_done *done_tail;
    int *handoff;
    size_t handoff_count;
    size_t handoff_cap;
    atomic_uint conn_count;
    struct conn *conns; /* all connections of this thread */
    struct conn *dirty; /* connections with output to flush this turn */
    uint8_t *discard;   /* scratch for data we drop */
    bool stopping;
    bool reap_needed; /* a closed connection may be ready to free */
    uint64_t loop_ns; /* clock read once per event-loop turn */
    uint64_t stop_deadline_ns;
    uint64_t last_timer_ns;
};

struct tgt_server {
    const struct tgt_config *cfg;
    struct tgt_target *targets;
    size_t target_count;
    int listen_fd;
    uint16_t port;
    struct poll_src listen_src;
    struct net_thread *threads;
    unsigned thread_count;
    atomic_bool stop_requested;
    struct tgt_replicator replicator;
    struct replica *pair;    /* the partner, when the config has a pair section */
    struct admin *admin;     /* the admin socket (admin.h) */
    struct metrics *metrics; /* the Prometheus endpoint (metrics.h), when configured */
    struct bufpool *pool;    /* command buffers (registered for the backplane with a pair) */
    pthread_mutex_t sessions_lock;
    struct conn *sessions; /* full-feature connections, by (initiator, ISID, target) */
    uint16_t next_tsih;
    /* ALUA: one target port group per node, with one target port each. groups[0] is this
     * node's; with a pair groups[1] is the partner's. Ids (group, relative port, and the iSCSI
     * portal group tag, all equal) are 1 for the node whose name sorts first, 2 for the other,
     * so that both nodes present the same two groups. */
    struct scsi_port_group groups[2];
    size_t group_count;
    atomic_int alua_state;
    /* worker threads */
    pthread_t workers[WORKER_THREADS];
    unsigned worker_count;
    pthread_mutex_t job_lock;
    pthread_cond_t job_cond;
    struct tgt_job *job_head; /* under job_lock */
    struct tgt_job *job_tail;
    bool jobs_stop;
};

struct tgt_task;
struct tmf_wait;

enum rx_state { RX_BHS, RX_AHS, RX_DATA, RX_TRAILER };
enum conn_phase { PHASE_LOGIN, PHASE_FULL, PHASE_CLOSING };

struct tx_item {
    struct tx_item *next;
    struct iovec iov[4];
    int iovcnt;
    uint8_t hdr[ISCSI_BHS_LEN + ISCSI_DIGEST_LEN];
    uint8_t trailer[3 + ISCSI_DIGEST_LEN];
    uint8_t *owned;        /* freed once sent */
    struct tgt_task *task; /* reference released once sent */
};

struct conn {
    struct poll_src src;
    struct net_thread *thr;
    struct conn *next; /* in thr->conns */
    struct conn *dirty_next;
    bool in_dirty;
    int fd;
    char peer[80];
    enum conn_phase phase;
    bool close_after_tx;
    bool registered;     /* in srv->sessions */
    atomic_bool evicted; /* reinstated by a newer login (set by another thread) */
    atomic_int inbound;  /* messages from other threads not yet handled: no freeing before */
    bool async_logout_sent;

    /* login and session */
    struct login_ctx login;
    struct login_params params;
    bool discovery;
    char initiator[TGT_NAME_MAX];
    uint8_t isid[6];
    uint16_t tsih;
    struct tgt_target *target;
    struct cmdsn_window win;
    uint64_t write_mean; /* mean bytes of this session's admitted changes (CmdSN window) */
    uint32_t stat_sn;
    struct lu_nexus **nexus; /* per LUN of the target (by index), looked up on first use */
    struct conn *sess_next;

    /* receive */
    enum rx_state rx_state;
    uint8_t rbuf[RBUF_CAP];
    uint32_t rstart;
    uint32_t rend;
    uint32_t readahead; /* how much one recv into rbuf may take */
    uint8_t hdr[ISCSI_BHS_LEN + 1020 + ISCSI_DIGEST_LEN];
    uint32_t rx_got;
    uint32_t rx_need;
    uint8_t *data_dst;    /* NULL: discard */
    bool data_claimed;    /* the header's handler placed (or dropped) the data segment */
    bool rx_rejected;     /* the header was answered with a Reject; only bookkeeping left */
    bool data_digest_bad; /* the received data segment failed its CRC32C */
    uint32_t data_len;
    uint8_t trailer[3 + ISCSI_DIGEST_LEN];
    uint32_t trailer_len;
    uint8_t *pdu_data; /* data of non-SCSI PDUs */
    uint32_t pdu_data_cap;
    struct tgt_task *rx_task; /* task receiving this PDU's data */
    uint64_t last_rx_ns;
    uint64_t connected_ns;

    /* transmit */
    struct tx_item *tx_head;
    struct tx_item *tx_tail;
    bool tx_blocked;

    /* tasks */
    struct tgt_task *tasks[TASK_HASH_SIZE];
    uint32_t task_count;
    uint32_t next_ttt;

    /* target-initiated ping */
    uint32_t ping_ttt;
    uint64_t ping_sent_ns;
};

/* server.c */
void conn_mark_dirty(struct conn *c);
void conn_close(struct conn *c, const char *why);
void conn_queue_tx(struct conn *c, struct tx_item *it);
int conn_register_session(struct conn *c);
/* A listening TCP socket (non-blocking) on host:port ("" = every address; port 0 = any free
 * one, *bound says which), on the first of the host's addresses that binds. 0, or -errno with
 * why (not logged). */
int server_listen(const char *host, uint16_t port, int backlog, int *fd, uint16_t *bound, char *why,
                  size_t why_len);
/* This node's ALUA state for lun: the LU's own, or the port group's when it follows it (or
 * lun is NULL). */
enum scsi_alua_state server_alua_state(const struct tgt_server *srv, const struct tgt_lun *lun);
/* Full-feature sessions now (the admin socket and the metrics count them). */
unsigned server_session_count(struct tgt_server *srv);
struct tgt_lun *target_find_lun(struct tgt_target *t, uint32_t id);

/* iscsi.c: the full feature phase */
void iscsi_on_header(struct conn *c); /* BHS (+AHS) read and checked; set data_dst */
void iscsi_on_pdu(struct conn *c);    /* whole PDU read */
void iscsi_send_pdu(struct conn *c, uint8_t *hdr, uint8_t *data, uint32_t len, uint8_t *owned,
                    struct tgt_task *task);
void iscsi_send_reject(struct conn *c, const uint8_t *bhs, uint8_t reason);
void iscsi_send_async_logout(struct conn *c, uint16_t seconds);
void iscsi_send_ping(struct conn *c);
void iscsi_conn_release_tasks(struct conn *c);
/* On c's thread: aborts c's tasks for lun because another nexus's task management said so. */
void iscsi_abort_for_other_nexus(struct conn *c, uint32_t lun);
void iscsi_task_put(struct tgt_task *t);
/* Queues d for thr and wakes it; safe from any thread. d stays owned by the caller (it lives
 * in the task). */
void thread_post_done(struct net_thread *thr, struct remote_done *d);
/* Runs job->run() on a worker thread. */
void server_job_submit(struct tgt_server *srv, struct tgt_job *job);

#define ALL_LUNS UINT32_MAX

/* Task management reaching other I_T nexuses (SAM-5 7.x: LOGICAL UNIT RESET, CLEAR TASK SET,
 * target resets, PREEMPT AND ABORT): every other full-feature session of from's target (only
 * those whose nexus matches sel, when not NULL) has its tasks for lun (ALL_LUNS: every LUN)
 * aborted, on its own thread, with TASK ABORTED status (TAS 1). */
void server_abort_elsewhere(struct conn *from, uint32_t lun, const struct pr_ua *sel);
/* The same for a command that came in on the partner's port (except: NULL, or a connection
 * left alone). */
void server_abort_nexuses(struct tgt_server *srv, const struct tgt_target *target,
                          const struct conn *except, uint32_t lun, const struct pr_ua *sel);

#endif
