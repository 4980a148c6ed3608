/*
 * Write admission (DESIGN.md behaviour B4): client writes never outrun replication.
 *
 * A token bucket per pair. Every change sent to the partner takes tokens for its bytes; the
 * bucket refills at a rate that follows what the backplane measured: the capacity, i.e. the
 * rate at which the partner acknowledged records while more were queued behind them (EWMA),
 * or before any such moment the plain completion rate. How much is on its way to the partner
 * (occupancy: the larger of what the backplane holds in the partner's inflight ring and its
 * queue, and what was admitted here and is not done yet) decides how the rate follows it:
 *
 *   occupancy                   meaning                     rate
 *   below target / 4            the backplane keeps up      none: admitted at once
 *   target / 4 .. target / 2    some backlog                1.25 x capacity (probing)
 *   target / 2 .. target        the link is the limit       capacity
 *   target and above            the queue grows             0.9 x capacity (draining)
 *   twice the target            the ring guard              nothing is admitted
 *
 * where target is a quarter second of capacity, at least 2 MiB, at most a quarter of the ring
 * (heartbeats share the link with the records: a short queue keeps them on time). So a quiet
 * or lightly used link never holds a burst back, a saturated one paces writes at what it
 * delivers, and the ring never reaches its limit. The rate never goes below min_rate. Without
 * a partner connection nothing is throttled (nothing is replicated).
 *
 * A write short of tokens waits in a FIFO queue: it is delayed, never failed. While writes
 * wait, the sessions' CmdSN windows shrink (throttle_window_slots) so that initiators hold
 * their commands instead of piling them up here; the windows reopen when pacing stops
 * (a second without a write waiting).
 * A resync's copies wait in a queue of their own: while both queues hold writes, the resync
 * gets resync_share percent of the bytes granted, and the rest goes to clients; either takes
 * everything when the other waits for nothing. Reads never come here.
 *
 * The logic (throttle_admit, throttle_tick) takes the clock as an argument so unit tests run
 * on a fake one; throttle_start runs it on a thread with the real clock. Thread-safe.
 */
#ifndef TGT_THROTTLE_H
#define TGT_THROTTLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum throttle_class { THROTTLE_CLIENT = 0, THROTTLE_RESYNC = 1 };

struct throttle_opts {
    bool enabled;          /* false: everything is admitted at once, figures still kept */
    uint64_t burst_bytes;  /* the bucket's depth (> 0) */
    uint64_t min_rate;     /* bytes/s the rate never goes below (> 0) */
    uint32_t resync_share; /* percent of the granted bytes for a resync while clients wait too */
    uint32_t queue_ms;     /* the queueing delay the session windows aim for */
    uint64_t ring_bytes;   /* the partner's inflight ring (> 0) */
};

/* What the backplane measured, given at every tick. */
struct throttle_sample {
    bool connected;
    double rate_bytes_s;     /* completion throughput (EWMA) */
    double capacity_bytes_s; /* the same over backlogged intervals only; 0 before any */
    uint64_t ring_bytes;     /* records sent and not consumed, plus those queued to send */
};

/* One write waiting for tokens; the caller's, valid until granted() ran. */
struct throttle_waiter {
    struct throttle_waiter *next;
    void (*granted)(struct throttle_waiter *w); /* on the thread that runs throttle_tick */
    uint64_t bytes;
    const void *owner; /* the session it belongs to (windows are shared among those waiting) */
    enum throttle_class cls;
    uint64_t since_ns;
};

struct throttle_stats {
    bool enabled, throttling; /* throttling: writes waited within the last second */
    double rate_bytes_s;      /* the refill rate now; 0 = not limiting */
    double tokens;            /* may be negative: a large write's debt */
    uint32_t queued[2];       /* writes waiting, per class */
    uint64_t queued_bytes[2];
    uint64_t admitted[2], admitted_bytes[2], waited[2];     /* per class, since the start */
    uint64_t wait_p50_us, wait_p99_us, wait_max_us;         /* over the last 4096 waits */
    uint64_t ring_bytes, ring_peak_bytes, ring_limit_bytes; /* occupancy now, the backplane's
                                                               highest, the ring's size */
    uint64_t inflight_bytes, ring_target_bytes;             /* admitted, not done; target */
    uint64_t window_budget; /* bytes each waiting session may have queued; 0 = no limit */
    uint32_t sessions_waiting;
    uint64_t episodes; /* times throttling started */
};

struct throttle;

/* Returns NULL on bad options (logged) or out of memory. now_ns starts the clock. */
struct throttle *throttle_create(const struct throttle_opts *o, uint64_t now_ns);
/* Stops the thread (if started) and grants whatever still waits first. */
void throttle_destroy(struct throttle *t);

/*
 * Asks for w->bytes of class w->cls. Returns true when admitted now (granted() is not
 * called); false when w was queued: granted() runs later on the ticking thread, in FIFO order
 * within the class.
 */
bool throttle_admit(struct throttle *t, struct throttle_waiter *w, uint64_t now_ns);

/* Refills, derives the rate from s (NULL: keep the last sample), grants what the tokens allow
 * (granted() called without the lock held), logs when throttling starts or stops. Returns
 * the nanoseconds until it should run again. */
uint64_t throttle_tick(struct throttle *t, uint64_t now_ns, const struct throttle_sample *s);

/* Runs throttle_tick on a thread of its own every few milliseconds (sooner when a write is
 * queued), with sample() (may be NULL) giving the backplane's figures. Returns 0 or -errno. */
int throttle_start(struct throttle *t, void (*sample)(void *ctx, struct throttle_sample *s),
                   void *ctx);

/* An admitted change of bytes is done (replicated, failed or dropped): its bytes no longer
 * count as on their way. Exactly once per admission (immediate or granted). */
void throttle_release(struct throttle *t, uint64_t bytes);

/* Blocks the calling thread until bytes of class cls are granted (the thread must run). When
 * they are not there at once, before_sleep(ctx) runs first (may be NULL): a caller must not
 * sleep here holding what admitted writes wait for (range locks, bytes not yet released), or
 * nothing would ever be granted again. Returns 0. */
int throttle_wait(struct throttle *t, enum throttle_class cls, uint64_t bytes,
                  void (*before_sleep)(void *ctx), void *ctx);

void throttle_get_stats(struct throttle *t, struct throttle_stats *st);

/* Bytes each waiting session may have queued now; 0 while nothing waits (no limit). Lock-free,
 * for the network threads that build CmdSN windows. */
uint64_t throttle_window_budget(const struct throttle *t);

/*
 * The window arithmetic: how many command slots a session of size slots keeps while writes
 * wait, given the budget (throttle_window_budget) and the session's mean write size. The
 * budget over the mean size, at least THROTTLE_MIN_WINDOW (so an initiator always has
 * commands in flight whose responses reopen its window), at most size; size when budget is 0.
 */
#define THROTTLE_MIN_WINDOW 4u
uint32_t throttle_window_slots(uint32_t size, uint64_t budget, uint64_t mean_write_bytes);

#endif
