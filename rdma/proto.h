/*
 * twinlun rdma: the pure parts of the replication protocol (no verbs, no threads).
 *
 * - change records: what one ring record's payload says about one replicated change;
 * - hello: what both nodes send first on the control channel, and the check that refuses a
 *   partner whose configuration does not match, with one sentence an admin can act on;
 * - meter: completion rate (throughput) and link capacity estimates for the throttle;
 * - applier: the order in which the partner may apply the records it received.
 *
 * Everything here is plain data and arithmetic; callers bring the time, the memory and the
 * locking. Errors are negative errno values. Nothing here logs: the caller knows the context
 * (which peer, which record) and logs the reason once.
 */
#ifndef TWL_RDMA_PROTO_H
#define TWL_RDMA_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The replication protocol's version. Both nodes must run the same one: the hello refuses any
 * other (there is no negotiation), so each format below may change with it. */
#define TWL_RDMA_PROTO_VERSION 2u

/* ---- change records ---- */

#define TWL_RDMA_CHANGE_FIXED_LEN   64u  /* header bytes before the extents */
#define TWL_RDMA_CHANGE_EXTENT_LEN  16u  /* bytes per extent */
#define TWL_RDMA_CHANGE_MAX_EXTENTS 256u /* as many UNMAP block descriptors as the target takes */
#define TWL_RDMA_CHANGE_MAX_HDR_LEN                                                                \
    (TWL_RDMA_CHANGE_FIXED_LEN + TWL_RDMA_CHANGE_EXTENT_LEN * TWL_RDMA_CHANGE_MAX_EXTENTS)
#define TWL_RDMA_CHANGE_ERR_LEN 128u

/* 0 is not a kind, so a zeroed header never decodes as a change. */
enum twl_rdma_change_kind {
    TWL_RDMA_CHANGE_DATA = 1,  /* data: blocks * block_size bytes for [lba, lba + blocks) */
    TWL_RDMA_CHANGE_SAME = 2,  /* data: one block written to each of [lba, lba + blocks), or
                                  none: zeros (the blocks stay allocated) */
    TWL_RDMA_CHANGE_UNMAP = 3, /* the extents are deallocated (read back as zeros); no data;
                                  lba and blocks are 0 (the extents say everything) */
};

struct twl_rdma_extent {
    uint64_t lba;
    uint32_t blocks; /* >= 1 */
};

struct twl_rdma_change {
    uint64_t seq;        /* the change's replication sequence number (not the ring's) */
    uint64_t generation; /* the owner's data generation when the change was made */
    enum twl_rdma_change_kind kind;
    uint32_t lun;
    uint64_t lba;
    uint32_t blocks;
    uint32_t block_size; /* a power of two, 512 .. 65536 */
    bool fua;
    uint32_t data_len; /* DATA: blocks * block_size; SAME: block_size or 0; UNMAP: 0 */
    uint32_t extent_count;
    struct twl_rdma_extent extents[TWL_RDMA_CHANGE_MAX_EXTENTS]; /* UNMAP: 1 .. 256 */
    char err[TWL_RDMA_CHANGE_ERR_LEN]; /* decode: why it refused ("" after success) */
};

/* Bytes of c's header on the wire (the data follows it). */
size_t twl_rdma_change_header_len(const struct twl_rdma_change *c);

/*
 * Checks c against the rules decode enforces. Returns 0, or -EINVAL with the reason in err
 * (may be NULL). encode calls it, so a sender never writes what its partner would refuse.
 */
int twl_rdma_change_check(const struct twl_rdma_change *c, char *err, size_t errlen);

/*
 * Writes c's header into out, followed by c->data_len bytes of data when data is not NULL.
 * With data NULL the caller places the data at out + twl_rdma_change_header_len(c) itself
 * (out_len then needs to hold the header only). The record's payload is header + data.
 * Returns 0, -EINVAL when c breaks a rule (see twl_rdma_change_check), -ENOSPC when out_len
 * is too small.
 */
int twl_rdma_change_encode(const struct twl_rdma_change *c, const uint8_t *data, uint8_t *out,
                           size_t out_len);

/*
 * Decodes one record payload of len bytes (exactly header + data). On success returns 0,
 * fills out and points *data at the data inside rec (NULL when data_len is 0). Returns
 * -EBADMSG when the bytes are not an intact change header (too short, wrong magic, header
 * CRC, lengths that do not add up to len), -EPROTO when the header is intact but says
 * something this build refuses (another version, unknown kind or flags, inconsistent
 * lengths, too many extents, a range past the last LBA); the reason is in out->err.
 * The data itself is not checked here: the ring record's payload CRC covers it.
 */
int twl_rdma_change_decode(const uint8_t *rec, size_t len, struct twl_rdma_change *out,
                           const uint8_t **data);

/* The reason the last decode into c refused, or "" when it succeeded. */
const char *twl_rdma_change_strerror(const struct twl_rdma_change *c);

/* Whether every block c touches lies inside a LUN of `blocks` blocks (the receiver's check:
 * decoding cannot know the LUN's size; "a range past the last LBA" above is one past 2^64). */
bool twl_rdma_change_within(const struct twl_rdma_change *c, uint64_t blocks);

/* ---- hello ---- */

#define TWL_RDMA_NAME_MAX       64u  /* node names: at most 63 bytes + NUL, as in the config */
#define TWL_RDMA_IQN_MAX        224u /* iSCSI names: at most 223 bytes + NUL (RFC 7143 6.1) */
#define TWL_RDMA_HELLO_MAX_LUNS 256u
#define TWL_RDMA_HELLO_FIXED_LEN                                                                   \
    (32u + 2 * TWL_RDMA_NAME_MAX + TWL_RDMA_IQN_MAX) /* bytes before the LUN table */
#define TWL_RDMA_HELLO_LUN_LEN 128u                  /* bytes per LUN table entry */
#define TWL_RDMA_HELLO_MAX_LEN (TWL_RDMA_HELLO_FIXED_LEN + 256u * TWL_RDMA_HELLO_LUN_LEN)

struct twl_rdma_hello_lun {
    uint32_t id;
    uint32_t block_size;           /* a power of two, 512 .. 65536 */
    uint64_t size;                 /* bytes, a multiple of block_size, > 0 */
    char owner[TWL_RDMA_NAME_MAX]; /* node name of the owner; "" = no owner. The config's ""
                                      (this node) is resolved to the node's name first. */
    uint64_t gens[4];              /* the sender's copy: current, bitmap, history[0], history[1] */
    uint64_t dirty_regions;        /* in the sender's log */
    uint32_t flags;                /* TWL_RDMA_HELLO_* */
};
#define TWL_RDMA_HELLO_PRIMARY        1u /* the sender writes this LUN now */
#define TWL_RDMA_HELLO_PEER_DISCARDED 2u /* the sender's admin discarded the receiver's copy */

struct twl_rdma_hello {
    uint32_t version;                /* TWL_RDMA_PROTO_VERSION (twl_rdma_hello_init sets it) */
    char node[TWL_RDMA_NAME_MAX];    /* this node's name, not empty */
    char partner[TWL_RDMA_NAME_MAX]; /* the partner's name as this node's config gives it */
    char iqn[TWL_RDMA_IQN_MAX];      /* the target both nodes present */
    uint64_t generation;             /* this node's data generation id */
    uint32_t lun_count;              /* <= TWL_RDMA_HELLO_MAX_LUNS; ids unique */
    struct twl_rdma_hello_lun luns[TWL_RDMA_HELLO_MAX_LUNS];
};

/* Zeroes h and sets the version this build speaks. */
void twl_rdma_hello_init(struct twl_rdma_hello *h);

/* Bytes h takes on the wire. */
size_t twl_rdma_hello_len(const struct twl_rdma_hello *h);

/*
 * Writes h into out (at least twl_rdma_hello_len(h) bytes). Returns the number of bytes
 * written, -EINVAL when h could not be decoded by a partner (a name empty or too long, too
 * many LUNs, a LUN id twice, a bad block size or size), -ENOSPC when out_len is too small.
 */
int twl_rdma_hello_encode(const struct twl_rdma_hello *h, uint8_t *out, size_t out_len);

/*
 * Decodes a hello of len bytes. Returns 0, -EBADMSG when the bytes are not an intact hello
 * (short, wrong magic, wrong length, CRC), -EPROTO when the partner speaks another protocol
 * version (out->version is then set and nothing else; twl_rdma_hello_check words it) or sent
 * values this build refuses. err (may be NULL) gets the reason.
 */
int twl_rdma_hello_decode(const uint8_t *in, size_t len, struct twl_rdma_hello *out, char *err,
                          size_t errlen);

/* The entry of LUN id in h's table, or NULL. */
const struct twl_rdma_hello_lun *twl_rdma_hello_find_lun(const struct twl_rdma_hello *h,
                                                         uint32_t id);

/*
 * Compares this node's hello with the partner's. Returns 0 when they may pair, or -EPROTO
 * with one sentence in err naming the first problem from this node's point of view: protocol
 * versions, both nodes with one name (or a node connected to itself), a partner that is not
 * the one the config names (or that expects another partner), different target names, a LUN
 * on one side only, a LUN whose size or block size differ, a LUN both nodes own, one no node
 * owns, or one owned by a node that is neither. Both nodes run it on (mine, theirs).
 */
int twl_rdma_hello_check(const struct twl_rdma_hello *mine, const struct twl_rdma_hello *theirs,
                         char *err, size_t errlen);

/* ---- completion-rate meter ---- */

/*
 * Two exponentially weighted moving averages of the rate at which records complete, fed
 * per completion (or per batch of completions polled together):
 * - throughput: over all time; decays toward zero while nothing completes;
 * - capacity: over the intervals that ended with a backlogged completion only, for the
 *   throttle (DESIGN.md section 4). Between two completions, the link carried as much as it
 *   could only if records were waiting all along; when the ring drained in between, the
 *   interval measured what the initiators offered, and a throttle fed with that would hold a
 *   burst to the pace of the quiet period before it. So idle and lightly loaded intervals
 *   leave the capacity estimate where it is: it neither decays nor moves.
 * Each completion's bytes are spread evenly over the interval since the previous completion
 * and the average weights each interval by its length (alpha = 1 - exp(-dt / window)), so a
 * rate gives the same estimate whether completions come regularly or not. The estimates are
 * normalised by the weight observed so far, so they are usable after the first interval
 * instead of rising from zero over several windows. Thread safety is the caller's.
 *
 * A throttle that never admits more than the capacity keeps the ring from backlogging and so
 * never learns that the capacity grew: it has to probe above it now and then (BBR paces at
 * 1.25 times its estimate for that), or let bursts through.
 */
struct twl_rdma_meter {
    double window_ns;
    uint64_t last_ns; /* the previous completion; 0 with started false */
    bool started;
    /* throughput: averages of bytes/ns and records/ns, the weight they carry (0 .. 1), and
     * the gain of the last interval (for completions at the same instant) */
    double tp_bytes, tp_records, tp_weight, tp_gain;
    /* capacity: the same over backlogged intervals only (gain 0: the last was not one) */
    double cap_bytes, cap_records, cap_weight, cap_gain;
};

/* window_ns: the averaging time constant (> 0); the estimate of a new rate is 63 % there
 * after one window, 99 % after five. Returns 0 or -EINVAL. */
int twl_rdma_meter_init(struct twl_rdma_meter *m, uint64_t window_ns);

/*
 * One completion (or batch) at now_ns of bytes and records. backlogged: from the previous
 * completion to this one, records were always waiting for ring space, receive credit or the
 * send queue, so the link or the partner was the bottleneck. Writes waiting for the
 * throttle's tokens do not make the ring backlogged: they would measure the throttle itself.
 * The very first call only starts the clock (no interval ends there). Time going backwards
 * counts as no time.
 */
void twl_rdma_meter_add(struct twl_rdma_meter *m, uint64_t now_ns, uint64_t bytes, uint64_t records,
                        bool backlogged);

/* Throughput at now_ns, per second. Returns 0, or -ENODATA (rates 0) before any interval
 * was seen. Either output may be NULL. */
int twl_rdma_meter_rate(const struct twl_rdma_meter *m, uint64_t now_ns, double *bytes_per_s,
                        double *records_per_s);

/* Capacity per second (backlogged intervals only; does not decay while idle). Returns 0, or
 * -ENODATA (rates 0) before any backlogged interval was seen. Either output may be NULL. */
int twl_rdma_meter_capacity(const struct twl_rdma_meter *m, double *bytes_per_s,
                            double *records_per_s);

/* ---- apply order on the partner ---- */

#define TWL_RDMA_APPLIER_RECORDS 1024u /* records between durable and the newest added */
#define TWL_RDMA_APPLIER_RANGES  4096u /* their ranges (an UNMAP has up to 256) */
/* The overlap index: regions of 2^8 blocks, hashed with the LUN into 256 buckets. */
#define TWL_RDMA_APPLIER_REGION_SHIFT 8u
#define TWL_RDMA_APPLIER_BUCKETS      256u

/* add() flags. BARRIER: the record waits for every earlier record on its LUN and holds every
 * later one (lba and blocks are ignored). BARRIER_ALL: the same across every LUN (lun is
 * ignored too). MORE: more ranges of this record follow; it may not start before the part
 * without this flag is added. */
#define TWL_RDMA_APPLY_BARRIER     0x1u
#define TWL_RDMA_APPLY_BARRIER_ALL 0x2u
#define TWL_RDMA_APPLY_MORE        0x4u

struct twl_rdma_applier_range {
    uint64_t lba, end; /* [lba, end) */
    uint32_t lun;
    uint32_t flags;
};

struct twl_rdma_applier_rec {
    uint64_t seq;
    uint64_t first_range; /* position of its first range */
    uint64_t mark;        /* the newest record that already counted this one among its deps */
    uint32_t range_count;
    uint32_t deps;  /* earlier records not applied yet that it conflicts with */
    uint32_t state; /* open, pending, running or done */
};

/*
 * The partner applies records in ring order, except that a record that overlaps no earlier
 * record still being applied may start at once: records on different LUNs, or on disjoint
 * ranges, run concurrently in any order. What it publishes as durable is the end of the
 * prefix that is fully applied. Fixed size (about 200 KiB, no allocation): allocate it, do
 * not put it on a thread's stack. Fields are private. Thread safety is the caller's.
 */
struct twl_rdma_applier {
    uint64_t durable;  /* every record <= durable is applied */
    uint64_t last_seq; /* the newest added; == durable when none */
    uint64_t rec_tail; /* positions: oldest not retired, next to add */
    uint64_t rec_head;
    uint64_t range_tail; /* the same for ranges */
    uint64_t range_head;
    uint64_t ready[TWL_RDMA_APPLIER_RECORDS / 64];   /* by slot: pending with deps 0 */
    uint64_t waiting[TWL_RDMA_APPLIER_RECORDS / 64]; /* by slot: open or pending, deps > 0 */
    uint64_t wide[TWL_RDMA_APPLIER_RECORDS / 64];    /* by slot: unfinished, wide or barrier */
    uint64_t buckets[TWL_RDMA_APPLIER_BUCKETS][TWL_RDMA_APPLIER_RECORDS / 64]; /* narrow */
    struct twl_rdma_applier_rec recs[TWL_RDMA_APPLIER_RECORDS];
    /* by slot: each record's LUN and the bounds of its ranges, a quick "no conflict" */
    struct twl_rdma_applier_range boxes[TWL_RDMA_APPLIER_RECORDS];
    struct twl_rdma_applier_range ranges[TWL_RDMA_APPLIER_RANGES];
};

/* Empties a; every record <= durable counts as applied (0 when sequence numbers start at 1). */
void twl_rdma_applier_init(struct twl_rdma_applier *a, uint64_t durable);

/*
 * Adds a record in ring order: seq greater than every seq added before (gaps are fine: no
 * record has the missing numbers). A record with several ranges (an UNMAP's extents) is added
 * with one call per range and the same seq, TWL_RDMA_APPLY_MORE on all but the last; until
 * the last it neither starts nor lets a later record be added. blocks may be 0 (the record
 * then orders against barriers only). A record has at most TWL_RDMA_APPLIER_RANGES ranges.
 * Returns 0, -EINVAL (seq out of order, another seq while a record is open, bad flags, lba +
 * blocks past 2^64), -ENOSPC (the window is full: complete older records, then add the same
 * part again).
 */
int twl_rdma_applier_add(struct twl_rdma_applier *a, uint64_t seq, uint32_t lun, uint64_t lba,
                         uint32_t blocks, uint32_t flags);

/* The oldest record that may start now; it is then running. Returns 0 and *seq, or -EAGAIN
 * when no record may start (none pending, or each waits for an earlier one). */
int twl_rdma_applier_next(struct twl_rdma_applier *a, uint64_t *seq);

/* A running record is applied. Returns 0, -ENOENT (no such record), -EINVAL (not running). */
int twl_rdma_applier_done(struct twl_rdma_applier *a, uint64_t seq);

/* The highest seq such that every record <= it is applied: what the partner publishes. */
uint64_t twl_rdma_applier_durable(const struct twl_rdma_applier *a);

/* Records added and not yet retired into durable. */
size_t twl_rdma_applier_count(const struct twl_rdma_applier *a);

#endif
