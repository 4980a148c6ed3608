/* Per-LUN I/O figures (iostat.h). */
#include "iostat.h"

const uint32_t iostat_bucket_bounds_us[IOSTAT_BUCKETS - 1] = {
    50,    100,   250,    500,    1000,   2500,    5000,   10000,
    25000, 50000, 100000, 250000, 500000, 1000000, 5000000};
const char *const iostat_op_names[IOSTAT_OPS] = {"read", "write", "other"};

void iostat_record(struct iostat *s, enum iostat_op op, uint64_t bytes, uint64_t latency_ns,
                   bool error, uint64_t now_ns)
{
    uint64_t sec = now_ns / 1000000000u,
             was = atomic_load_explicit(&s->second, memory_order_relaxed);
    if (sec != was && atomic_compare_exchange_strong(&s->second, &was, sec))
        for (int o = 0; o < IOSTAT_OPS; o++) {
            uint64_t done = atomic_exchange(&s->cur[o], 0);
            atomic_store_explicit(&s->last[o], sec == was + 1 ? done : 0, memory_order_relaxed);
        }
    atomic_fetch_add_explicit(&s->cur[op], bytes, memory_order_relaxed);
    uint64_t us = latency_ns / 1000;
    unsigned b = 0;
    while (b < IOSTAT_BUCKETS - 1 && us > iostat_bucket_bounds_us[b])
        b++;
    atomic_fetch_add_explicit(&s->op[op].commands, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->op[op].bytes, bytes, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->op[op].latency_ns_sum, latency_ns, memory_order_relaxed);
    atomic_fetch_add_explicit(&s->op[op].buckets[b], 1, memory_order_relaxed);
    if (error)
        atomic_fetch_add_explicit(&s->errors, 1, memory_order_relaxed);
}

void iostat_snapshot(const struct iostat *s, uint64_t now_ns, struct iostat_snapshot *out)
{
    uint64_t sec = now_ns / 1000000000u, at = atomic_load(&s->second);
    for (int o = 0; o < IOSTAT_OPS; o++) {
        struct iostat_counts *c = &out->op[o];
        c->commands = atomic_load_explicit(&s->op[o].commands, memory_order_relaxed);
        c->bytes = atomic_load_explicit(&s->op[o].bytes, memory_order_relaxed);
        c->latency_ns_sum = atomic_load_explicit(&s->op[o].latency_ns_sum, memory_order_relaxed);
        for (int b = 0; b < IOSTAT_BUCKETS; b++)
            c->buckets[b] = atomic_load_explicit(&s->op[o].buckets[b], memory_order_relaxed);
        /* the second before now: counted as last while now's is open, as cur once it closed */
        c->rate_bytes_s = at == sec       ? atomic_load(&s->last[o])
                          : at + 1 == sec ? atomic_load(&s->cur[o])
                                          : 0;
    }
    out->errors = atomic_load_explicit(&s->errors, memory_order_relaxed);
}

double iostat_quantile_us(const struct iostat_counts *c, double q)
{
    uint64_t total = 0;
    for (int b = 0; b < IOSTAT_BUCKETS; b++)
        total += c->buckets[b];
    if (total == 0)
        return 0;
    double rank = q * (double)total, seen = 0;
    for (int b = 0; b < IOSTAT_BUCKETS - 1; b++) {
        if (c->buckets[b] && seen + (double)c->buckets[b] >= rank) {
            double lo = b ? iostat_bucket_bounds_us[b - 1] : 0, hi = iostat_bucket_bounds_us[b];
            return lo + (hi - lo) * (rank - seen) / (double)c->buckets[b];
        }
        seen += (double)c->buckets[b];
    }
    return iostat_bucket_bounds_us[IOSTAT_BUCKETS - 2];
}
