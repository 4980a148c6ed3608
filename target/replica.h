/*
 * The pair: replication of this node's LUNs to the partner and application of the partner's
 * changes here, over the RDMA backplane (rdma/). Started by tgt_server_create when the config
 * has a pair section; it installs itself as the server's replicator.
 */
#ifndef TGT_REPLICA_H
#define TGT_REPLICA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "throttle.h"

struct tgt_server;
struct replica;

/* Starts the backplane (connecting or listening, for ever) and sets the replicator. Returns 0
 * or -errno, logged. */
int replica_start(struct tgt_server *srv, struct replica **out);
/* Stops the backplane; writes waiting for a replica complete as the policy says. */
void replica_stop(struct replica *r);

/* One LUN's copy here, as an admin sees it. */
struct replica_lun_status {
    uint32_t id;
    bool primary;         /* this node serves (writes) the LUN */
    const char *sync;     /* "in-sync", "resyncing", "resync-pending", "sync-target",
                             "degraded" (written here without the partner), "partner-away",
                             "split-brain", "unrelated" */
    uint64_t dirty_bytes; /* regions marked in this copy's log, in bytes */
    uint64_t resync_done_bytes, resync_rate_bytes_s; /* of the current or last resync pass */
    uint64_t generation;                             /* this copy's current generation */
};

struct replica_status {
    char partner[64];
    bool connected, degraded;
    uint64_t replicated_records, replicated_bytes, unreplicated_changes;
    double rate_bytes_s, capacity_bytes_s;
    uint64_t ring_bytes, ring_size, ring_full; /* the partner's inflight ring (+ queued) */
    struct throttle_stats throttle;
    char refusal[256]; /* why the last handshake was refused; "" if it was not */
    size_t lun_count;
    struct replica_lun_status luns[256];
};

void replica_status(struct replica *r, struct replica_status *st);

/* Makes this node serve LUN id (all LUNs when id < 0) while the partner is unreachable: an
 * unplanned failover decided by the admin or a cluster manager. Refused (-EBUSY, msg says why)
 * while the partner is connected. */
int replica_promote(struct replica *r, long id, char *msg, size_t msg_len);
/* Planned moves while the partner is connected (DESIGN.md section 7). The node that serves a LUN
 * hands it over: new commands see ALUA transitioning there, its writes in flight end, a
 * handover record follows them to the partner, which serves the LUN from then on, and the old
 * port turns standby; both ports queue the unit attention "asymmetric access state changed".
 * Refused while the copies differ (degraded, resyncing), unless force: then the LUN stays
 * transitioning while the resync converges them (up to a minute).
 * takeover: this node asks the partner for LUN id (all it serves when id < 0) and waits.
 * giveback: this node hands LUN id to the partner; id < 0: the LUNs here the partner owns by
 * the config, or every LUN served here with all.
 * 0 when every LUN moved; else the first failure (-ENOTCONN, -EBUSY refused, -ETIMEDOUT,
 * -EPERM not served by the node asked, -ENOENT no such LUN, -EALREADY nothing to move); msg
 * has a line per LUN. */
int replica_takeover(struct replica *r, long id, bool force, char *msg, size_t msg_len);
int replica_giveback(struct replica *r, long id, bool all, bool force, char *msg, size_t msg_len);
/* Explicit ALUA (SET TARGET PORT GROUPS): the move of LUN id here (to_here: a takeover) or to
 * the partner (a giveback), without force, queued for the pair's handover thread, which calls
 * done(cookie, 0 or -errno) when it is over (-ECANCELED when the pair stops first). -ENOMEM
 * when it cannot be queued. */
typedef void (*replica_move_done_fn)(void *cookie, int rc);
int replica_move_async(struct replica *r, uint32_t id, bool to_here, replica_move_done_fn done,
                       void *cookie);
/* Whether this node serves LUN id (writes it; its port is active for it). */
bool replica_serves(struct replica *r, uint32_t id);
/* A command that changes a LU's reservations or mode parameters (PERSISTENT RESERVE OUT, MODE
 * SELECT) that came in on this node while the partner serves the LU: the partner carries it
 * out, as from this node's port, so that one node decides every change; its image comes back
 * before the answer. done is called once, on a pair thread: with the partner's status and
 * sense, or with err set (-ETIMEDOUT no answer in 10 s, -EPERM the partner does not serve the
 * LUN either, -ECANCELED the pair stopped). 0, or -errno when it could not be sent (done is
 * not called then). */
struct replica_lu_outcome {
    int err;
    uint8_t status;
    uint8_t sense_len;
    uint8_t sense[32];
};
typedef void (*replica_forward_done_fn)(void *cookie, const struct replica_lu_outcome *o);
int replica_forward_lu(struct replica *r, uint32_t lun, const char *initiator,
                       const uint8_t isid[6], uint16_t rel_port, const uint8_t *cdb,
                       const uint8_t *param, uint32_t param_len, replica_forward_done_fn done,
                       void *cookie);
/* Resolves a split brain: the writes the named node's copies took apart are dropped (this
 * node's, or the partner's at the next handshake), and the other copy becomes the sync
 * source. -EINVAL when node is neither; -EALREADY when there is no split brain to resolve. */
int replica_resolve_discard(struct replica *r, const char *node, char *msg, size_t msg_len);

enum replica_resync_cmd {
    REPLICA_RESYNC_START = 0, /* copy now what differs (it starts by itself, too) */
    REPLICA_RESYNC_PAUSE,     /* stop copying (copies in flight finish) until resumed */
    REPLICA_RESYNC_RESUME,
};
/* Starts, pauses or resumes the resync of LUN id (all when id < 0) on the node that copies it
 * (the one that serves it). -ENOENT: no such LUN; -EPERM: the partner copies it. A pause lasts
 * until resumed or the daemon restarts. */
int replica_resync_control(struct replica *r, long id, enum replica_resync_cmd cmd, char *msg,
                           size_t msg_len);

#endif
