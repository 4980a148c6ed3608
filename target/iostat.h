/*
 * Per-LUN I/O figures: commands, bytes and latency by kind of command, and the commands that
 * did not end GOOD. Any network thread records into them with relaxed atomic adds (no lock on
 * the I/O path); the admin socket and the metrics endpoint read a snapshot, whose fields may
 * be a few commands apart from each other but each only grows.
 *
 * The rate is the bytes of the last whole second (a display figure: a command racing the turn
 * of the second may land in either).
 *
 * Latency is kept as a histogram with fixed bounds (Prometheus style: each bucket counts the
 * commands at or below its bound, the last one is +Inf) plus the sum, so rates and quantiles
 * can be computed by whoever scrapes it.
 */
#ifndef TGT_IOSTAT_H
#define TGT_IOSTAT_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

enum iostat_op {
    IOSTAT_READ = 0, /* READ(6/10/12/16): bytes are the Data-In sent */
    IOSTAT_WRITE,    /* WRITE*, WRITE SAME, COMPARE AND WRITE, ORWRITE: the Data-Out taken */
    IOSTAT_OTHER,    /* everything else (INQUIRY, TEST UNIT READY, UNMAP, PR, ...) */
    IOSTAT_OPS,
};

#define IOSTAT_BUCKETS 16 /* 15 bounds, then +Inf */

/* The buckets' upper bounds in microseconds. */
extern const uint32_t iostat_bucket_bounds_us[IOSTAT_BUCKETS - 1];
extern const char *const iostat_op_names[IOSTAT_OPS]; /* "read", "write", "other" */

struct iostat_counts {
    uint64_t commands;
    uint64_t bytes;
    uint64_t latency_ns_sum;
    uint64_t buckets[IOSTAT_BUCKETS]; /* not cumulative: commands in (bound[i-1], bound[i]] */
    uint64_t rate_bytes_s;            /* in the last whole second */
};

struct iostat {
    struct {
        _Atomic uint64_t commands, bytes, latency_ns_sum;
        _Atomic uint64_t buckets[IOSTAT_BUCKETS];
    } op[IOSTAT_OPS];
    _Atomic uint64_t errors;
    _Atomic uint64_t second;           /* the second (of the monotonic clock) cur counts */
    _Atomic uint64_t cur[IOSTAT_OPS];  /* bytes in that second */
    _Atomic uint64_t last[IOSTAT_OPS]; /* bytes in the second before it */
};

struct iostat_snapshot {
    struct iostat_counts op[IOSTAT_OPS];
    uint64_t errors;
};

/* Records one command that finished at now_ns (twl_now_ns). */
void iostat_record(struct iostat *s, enum iostat_op op, uint64_t bytes, uint64_t latency_ns,
                   bool error, uint64_t now_ns);
/* The figures, with the rates as of now_ns. */
void iostat_snapshot(const struct iostat *s, uint64_t now_ns, struct iostat_snapshot *out);
/* The latency below which a fraction q (0..1) of the commands finished, by interpolation inside
 * the bucket (0 when there are none; the largest bound when it falls in +Inf). */
double iostat_quantile_us(const struct iostat_counts *c, double q);

#endif
