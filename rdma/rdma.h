/*
 * twinlun rdma: the replication backplane (seed).
 *
 * All public names are prefixed twl_rdma_ (librdmacm already owns rdma_).
 *
 * A connection is one RC queue pair set up with rdma_cm between two nodes. Each side registers
 * an inflight ring that its peer writes into with one-sided RDMA WRITEs, and a small control
 * block the peer writes heartbeats and consumed positions into. The sender places a record
 * (64-byte header + payload, 64-byte aligned, never straddling the ring's end) at its tail
 * with one RDMA WRITE_WITH_IMM gathering header and payload, whose immediate is the record's
 * ring offset / 64: the immediate's completion at the receiver comes only after every byte of
 * the write is placed. The receiver verifies the header and payload CRC32C, hands the record
 * to the caller, and publishes how far it has acknowledged and consumed with a one-sided write
 * into the sender's control block; the sender never overruns the ring or the receiver's posted
 * receives.
 *
 * A dead peer is reported within a bounded time by either the transport (retry_count <= 6:
 * IBV_WC_RETRY_EXC_ERR after a few hundred ms on rxe) or the heartbeat timeout.
 *
 * Errors are negative errno values; each is logged once, with context, where it happens.
 * Not thread-safe: one thread drives a connection.
 */
#ifndef TWL_RDMA_H
#define TWL_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* ---- ring placement and wire formats (pure functions, unit-tested) ---- */

#define TWL_RDMA_REC_ALIGN   64u
#define TWL_RDMA_REC_HDR_LEN 64u
#define TWL_RDMA_INFO_LEN    56u /* all of rdma_cm's 56-byte connect private data */
#define TWL_RDMA_NONCE_LEN   16u /* per connection and side, fresh from getrandom */
#define TWL_RDMA_MAC_LEN     32u /* HMAC-SHA256 */

#define TWL_RDMA_REC_END 0x1u /* record flag: last record of a stream (application-defined) */
/* Record flag set by the connection, never seen by the application: payload_crc is valid.
 * A receiver that asked for payload CRCs (twl_rdma_opts.payload_crc) refuses records without
 * it; RoCE's ICRC already protects each packet on the wire, so a volatile ring may go without
 * (the CRC is what tells a torn record from an intact one after a crash in a durable ring). */
#define TWL_RDMA_REC_CRC 0x80000000u

/* Bytes a record with payload_len bytes occupies in the ring (header + payload, aligned). */
uint64_t twl_rdma_rec_len(uint32_t payload_len);

/*
 * Ring position (monotonic byte count; offset = pos % ring_size) where a record of rec_len bytes
 * starts when the previous record ended at pos: pos itself, or the next multiple of ring_size
 * when it would straddle the end (the bytes skipped count as used). ring_size is a power of two
 * >= rec_len.
 */
uint64_t twl_rdma_ring_place(uint64_t ring_size, uint64_t pos, uint64_t rec_len);

/* True when a record starting at start with rec_len bytes fits given the peer consumed up to
 * consumed (all positions monotonic). */
bool twl_rdma_ring_fits(uint64_t ring_size, uint64_t consumed, uint64_t start, uint64_t rec_len);

/* Record header as written into the ring (big-endian on the wire, with its own CRC). */
struct twl_rdma_rec_hdr {
    uint32_t flags;
    uint64_t seq;         /* 0, 1, 2, ... per direction */
    uint32_t len;         /* payload bytes */
    uint32_t payload_crc; /* twl_crc32c of the payload, when flags has TWL_RDMA_REC_CRC */
};
void twl_rdma_rec_hdr_encode(uint8_t out[TWL_RDMA_REC_HDR_LEN], const struct twl_rdma_rec_hdr *h);
/* -EBADMSG on a wrong magic or header CRC. */
int twl_rdma_rec_hdr_decode(const uint8_t in[TWL_RDMA_REC_HDR_LEN], struct twl_rdma_rec_hdr *h);

/*
 * The durable ring (ack = "received"): the ring lives in persistent memory, after a header of
 * TWL_RDMA_DRING_HDR_LEN bytes that says where replay starts after a crash. The header holds
 * two 64-byte slots (at 0 and 64), each:
 *    0 magic "TWLD"     4 version (1)     8 ring_size
 *   16 epoch: the valid slot with the larger epoch is the current one; a write goes to slot
 *      epoch % 2, so a torn write leaves the other slot (the previous state) valid
 *   24 pos: ring position of the first record not known to be applied
 *   32 seq: that record's sequence number
 *   40..59 zero     60 CRC32C of bytes [0, 60)
 * All big-endian. Records are as in the volatile ring (header with magic and CRC, payload CRC).
 * Every record from (pos, seq) on is intact in the ring until it has been applied and a newer
 * header says so; the ring is zeroed between connections, so a record that decodes with the
 * expected sequence number at the expected place is one this connection wrote. Between
 * connections, and until the partner's handshake has been authenticated and accepted, seq is
 * 2^64 - 1, which no record carries: nothing is replayed, so records a refused peer wrote into
 * the ring are never applied.
 */
#define TWL_RDMA_DRING_HDR_LEN 4096u
struct twl_rdma_dring_state {
    uint64_t ring_size, epoch, pos, seq;
};
/* Writes slot s->epoch % 2 of the header (the caller persists the 64 bytes at the slot). */
void twl_rdma_dring_write(uint8_t *hdr, const struct twl_rdma_dring_state *s);
/* The current state; -ENOENT when neither slot is valid (a new or foreign file). */
int twl_rdma_dring_read(const uint8_t *hdr, struct twl_rdma_dring_state *s);
/* Offset of the slot a state is written to. */
size_t twl_rdma_dring_slot(const struct twl_rdma_dring_state *s);

/*
 * Walks the intact records of a ring image in sequence from (*pos, *seq), calling fn for each
 * (payload CRC checked), and stops at the first record that is missing, torn or out of
 * sequence. On return *pos and *seq are where it stopped. Returns the number of records
 * delivered, or fn's negative error (then *pos and *seq name the record fn refused).
 */
typedef int (*twl_rdma_replay_fn)(void *ctx, const struct twl_rdma_rec_hdr *h, const void *payload);
int64_t twl_rdma_ring_replay(const uint8_t *ring, uint64_t ring_size, uint64_t *pos, uint64_t *seq,
                             twl_rdma_replay_fn fn, void *ctx);

/* What each side tells the other in the rdma_cm connect/accept private data. */
#define TWL_RDMA_INFO_PAYLOAD_CRC 0x1u /* info flag: records into my ring must carry a CRC */
struct twl_rdma_info {
    uint64_t ring_addr;
    uint32_t ring_rkey;
    uint32_t ring_size; /* power of two */
    uint64_t ctrl_addr;
    uint32_t ctrl_rkey;
    uint32_t recv_depth; /* receives kept posted: the peer's credit for records in flight */
    uint32_t flags;      /* TWL_RDMA_INFO_* */
    /* this side's challenge: the peer's first record (its handshake) must carry a MAC over it,
     * keyed with the pair's shared secret (twl_rdma_hello_mac) */
    uint8_t nonce[TWL_RDMA_NONCE_LEN];
};
void twl_rdma_info_encode(uint8_t out[TWL_RDMA_INFO_LEN], const struct twl_rdma_info *info);
/* -EPROTO when len is short, the magic or the version is wrong, or ring_size is not a power of
 * two. */
int twl_rdma_info_decode(const uint8_t *in, size_t len, struct twl_rdma_info *info);

/*
 * The handshake's authentication. Each side's first record (its hello) ends with
 *   HMAC-SHA256(key = the shared secret, "twinlun backplane hello 1" || role ||
 *               sender's nonce || receiver's nonce || hello)
 * where role is 'C' when the sender connected and 'L' when it listened, and the nonces are the
 * ones both sides sent in the rdma_cm private data of this very connection. The receiver's
 * nonce is fresh, so a recorded hello cannot be replayed, and the role and the order of the
 * nonces keep a node's own hello from being reflected back at it. Without a secret the key is
 * empty: a node with a secret then refuses one without. What follows the handshake is not
 * authenticated record by record (RoCE's ICRC and the optional payload CRC guard against
 * corruption, not against an attacker on the wire).
 */
int twl_rdma_hello_mac(const char *secret, bool sender_connected,
                       const uint8_t sender_nonce[TWL_RDMA_NONCE_LEN],
                       const uint8_t receiver_nonce[TWL_RDMA_NONCE_LEN], const void *hello,
                       size_t len, uint8_t mac[TWL_RDMA_MAC_LEN]);

/* ---- connection ---- */

struct twl_rdma_conn;
struct twl_rdma_buf;

struct twl_rdma_opts {
    const char *addr;       /* listen: local address to bind; connect: the peer's address */
    const char *port;       /* rdma_cm port space TCP; e.g. "7471" */
    bool listen;            /* true: wait for one peer to connect; false: connect */
    uint32_t ring_size;     /* local ring the peer writes into, power of two (default 4 MiB) */
    int connect_timeout_ms; /* keep retrying / waiting this long (default 30000) */
    int heartbeat_ms;       /* heartbeat period (default 200) */
    int dead_ms;            /* no heartbeat for this long = dead peer (default 2000) */
    uint8_t retry_count;    /* transport retries, <= 6 or rxe never gives up (default 6) */
    bool quiet_timeouts;    /* no peer within connect_timeout_ms is logged at debug level
                               (a caller that keeps retrying says so itself) */
    int wake_fd;            /* > 0: twl_rdma_poll also returns (with 0 events) when this fd is
                               readable, so another thread can hand the caller work */
    void *ring_mem;         /* the local ring's memory (ring_size bytes, page-aligned), the
                               caller's and used as it is; NULL: allocated zeroed here */
    bool payload_crc;       /* records the peer writes into the local ring must carry a CRC32C
                               of their payload, checked on arrival (TWL_RDMA_REC_CRC) */
};

/* Sets up one connection (listen and accept one peer, or connect with retries). */
int twl_rdma_conn_open(struct twl_rdma_conn **out, const struct twl_rdma_opts *opts);
/* Disconnects (when still connected) and releases everything. NULL is fine. */
void twl_rdma_conn_close(struct twl_rdma_conn *c);
/* This connection's nonces: the one this side sent and the peer's. */
void twl_rdma_conn_nonces(const struct twl_rdma_conn *c, uint8_t mine[TWL_RDMA_NONCE_LEN],
                          uint8_t theirs[TWL_RDMA_NONCE_LEN]);
/* The peer's address as "host:port" (for messages); "?" when unknown. */
const char *twl_rdma_conn_peer_name(const struct twl_rdma_conn *c, char *buf, size_t len);

/* Registers caller memory to send from; valid until conn_close. Returns a handle or NULL. */
struct twl_rdma_buf *twl_rdma_buf_reg(struct twl_rdma_conn *c, void *addr, size_t len);

/* A piece of a record's payload, inside a registered buffer. */
#define TWL_RDMA_MAX_SEGS 2u
struct twl_rdma_seg {
    struct twl_rdma_buf *buf;
    const void *data;
    uint32_t len;
};
/* twl_rdma_send with the payload gathered from up to TWL_RDMA_MAX_SEGS pieces (no copy). */
int64_t twl_rdma_sendv(struct twl_rdma_conn *c, const struct twl_rdma_seg *segs, int nseg,
                       uint32_t flags);

/*
 * Sends one record (payload inside a registered buffer, unchanged until its TX_DONE event).
 * Returns the record's sequence number (>= 0); -EAGAIN when the peer's ring or receive credit
 * or the send queue is full (poll, then retry); -ENOTCONN once the peer is dead or gone.
 */
int64_t twl_rdma_send(struct twl_rdma_conn *c, struct twl_rdma_buf *buf, const void *payload,
                      uint32_t len, uint32_t flags);

enum twl_rdma_ev_type {
    TWL_RDMA_EV_REC = 1,      /* a record arrived: data/len/seq/flags; valid until rx_release */
    TWL_RDMA_EV_TX_DONE,      /* the record seq was placed in the peer's ring */
    TWL_RDMA_EV_PEER_DEAD,    /* transport error or heartbeat timeout; the connection is over */
    TWL_RDMA_EV_DISCONNECTED, /* the peer disconnected (rdma_cm) */
    TWL_RDMA_EV_CONSUMED,     /* the peer consumed (released) records [0, seq) and
                                 acknowledged [0, acked) */
};

enum twl_rdma_dead_reason {
    TWL_RDMA_DEAD_WC_ERROR = 1, /* a work completion failed: wc_status */
    TWL_RDMA_DEAD_HEARTBEAT,    /* no heartbeat for dead_ms */
};

struct twl_rdma_event {
    enum twl_rdma_ev_type type;
    uint64_t seq;
    uint32_t flags;
    uint32_t len;
    const void *data;
    enum twl_rdma_dead_reason reason;
    int wc_status;      /* enum ibv_wc_status for TWL_RDMA_DEAD_WC_ERROR */
    uint64_t silent_ms; /* time since the peer's last heartbeat arrived */
    uint64_t end_pos;   /* TWL_RDMA_EV_REC: the ring position just after the record */
    uint64_t acked;     /* TWL_RDMA_EV_CONSUMED */
};

/*
 * Runs the connection for up to timeout_ms (heartbeats, completions, consumed-position
 * publication) and returns the number of events stored (0 on timeout), or a negative errno.
 */
int twl_rdma_poll(struct twl_rdma_conn *c, struct twl_rdma_event *ev, int max, int timeout_ms);

/* The caller is done with every record delivered so far: their ring space goes back to the
 * peer (published on the next poll); releasing acknowledges them too. */
void twl_rdma_rx_release(struct twl_rdma_conn *c);
/* The same for the records before seq only; end_pos is the end_pos of record seq - 1. */
void twl_rdma_rx_release_upto(struct twl_rdma_conn *c, uint64_t seq, uint64_t end_pos);

/* Every record delivered so far is safe here (e.g. persisted in the ring) though not yet
 * released: tells the peer at once. Returns 0 or a negative errno. */
int twl_rdma_rx_ack(struct twl_rdma_conn *c);

/* Records [0, n) the peer has consumed (released after handling them). */
uint64_t twl_rdma_peer_consumed(const struct twl_rdma_conn *c);
/* Records [0, n) the peer has acknowledged (at or before releasing them). */
uint64_t twl_rdma_peer_acked(const struct twl_rdma_conn *c);

/* True when every record sent has completed and the peer has consumed it. */
bool twl_rdma_tx_idle(const struct twl_rdma_conn *c);

struct twl_rdma_stats {
    uint64_t tx_records, tx_bytes, tx_completions;
    uint64_t rx_records, rx_bytes, rx_completions;
    uint64_t heartbeats_sent, heartbeats_seen;
};
void twl_rdma_get_stats(const struct twl_rdma_conn *c, struct twl_rdma_stats *st);

/* ---- the backplane: the connection to the partner, run by its own thread ---- */

struct twl_rdma_backplane;

/* Completion of a submitted record, on the backplane thread: 0 once the partner acknowledged
 * it (applied it, or persisted it in a durable ring);
 * -ENOTCONN when the connection dropped first; the record may or may not have been applied. */
typedef void (*twl_rdma_done_fn)(void *cookie, int err);

struct twl_rdma_bp_opts {
    bool connect;           /* this node connects to the partner; else it listens */
    const char *local_host; /* where this node listens */
    const char *local_port;
    const char *peer_host; /* where the partner listens */
    const char *peer_port;
    uint32_t ring_size; /* this node's inflight ring, and the staging area, power of two */
    int heartbeat_ms;
    int dead_ms;
    uint32_t timeout_ms; /* a record not applied by then drops the connection */
    /* The pair's shared secret (twl_rdma_hello_mac): a peer whose handshake is not
     * authenticated with it is refused. NULL or "": none (any peer that speaks the protocol
     * may pair). The backplane keeps its own copy. */
    const char *secret;
    /* Called on the backplane thread. make_hello: writes the handshake sent first on every
     * connection into buf (cap bytes) and returns its length, or -errno (the connection is
     * dropped and tried again later). check_hello: 0 to accept the partner's handshake, or
     * -EPROTO (after logging why). apply: a change record from the partner, 0 once it is on
     * this node's copy; anything else drops the connection. */
    int (*make_hello)(void *ctx, void *buf, uint32_t cap);
    int (*check_hello)(void *ctx, const void *theirs, uint32_t len);
    int (*apply)(void *ctx, const void *rec, uint32_t len);
    void *ctx;
    /* Memory the caller's data lives in, registered on every connection: data submitted from
     * inside it is sent from there (no copy); other data is copied. NULL/0: none. */
    void *region;
    size_t region_len;
    /* ack = "received": this node's inflight ring lives in this persistent memory
     * (TWL_RDMA_DRING_HDR_LEN + ring_size bytes at least, page-aligned, laid out as described
     * at TWL_RDMA_DRING_HDR_LEN). Each record is persisted there with persist() and
     * acknowledged before it is applied. Records acknowledged and not applied (a crash, an
     * apply that failed) are applied by twl_rdma_backplane_start before it returns, and after
     * every connection before the next one. NULL: a volatile ring; a record is acknowledged
     * once applied. */
    void *durable_ring;
    size_t durable_len;
    void (*persist)(void *ctx, const void *addr, size_t len);
    /* The partner's records carry a CRC32C of their data, checked here before they are
     * applied (always so with a durable ring, where it tells torn records after a crash). */
    bool payload_crc;
    uint32_t meter_window_ms; /* the completion-rate meter's averaging window; 0 = 1000 */
};

struct twl_rdma_bp_stats {
    bool connected;
    uint64_t submitted, acked, failed, acked_bytes;
    uint64_t applied, applied_bytes; /* records of the partner applied here */
    uint64_t replayed;               /* of those, applied from the durable ring afterwards */
    /* the completion-rate meter (EWMA over completions, meter_window_ms): throughput now, and
     * the capacity seen while records were queued (what the throttle should admit) */
    double rate_bytes_s, rate_records_s;
    double capacity_bytes_s, capacity_records_s;
    /* the partner's inflight ring: bytes of the records placed in it and not yet consumed, its
     * size, and the bytes submitted and waiting to be placed */
    uint64_t ring_bytes, ring_size, queued_bytes;
    /* times records had to wait for ring space (or receive credit, or the send queue) */
    uint64_t ring_full;
};

/* Starts the backplane thread, which connects (or listens) and reconnects for ever. With a
 * durable ring, first applies what an earlier run left in it: an error there (logged) fails
 * the start and leaves the ring as it was. */
int twl_rdma_backplane_start(const struct twl_rdma_bp_opts *o, struct twl_rdma_backplane **out);
/* Any thread. Queues one record: hdr (copied) then data (sent from where it is when it lies in
 * the registered region, which the caller keeps unchanged until done; copied otherwise).
 * Returns 0 (done will be called)
 * or -ENOTCONN (no partner connection: done will not be called), -EMSGSIZE, -ENOMEM. */
int twl_rdma_backplane_submit(struct twl_rdma_backplane *bp, const void *hdr, uint32_t hdr_len,
                              const void *data, uint32_t data_len, twl_rdma_done_fn done,
                              void *cookie);
void twl_rdma_backplane_stats(struct twl_rdma_backplane *bp, struct twl_rdma_bp_stats *st);
/* Stops the thread; records still queued or in flight complete with -ENOTCONN. */
void twl_rdma_backplane_stop(struct twl_rdma_backplane *bp);

#endif
