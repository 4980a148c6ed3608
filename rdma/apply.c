/*
 * Apply order on the partner.
 *
 * Records sit in a window, in ring order, from the oldest not yet retired (everything before
 * it is applied) to the newest added. Each record has one or more ranges (LUN, [lba, end))
 * and counts deps: the earlier records, not yet applied, that it conflicts with (some pair of
 * ranges on one LUN overlaps, or either side is a barrier). It may start when deps is 0.
 * When a record is done, each later waiting record that conflicts with it loses one dep; the
 * done prefix then retires and durable moves to its last seq.
 *
 * Counting at add time and decrementing at done needs no stored dependency graph: the
 * conflict relation is recomputed from the ranges, and it is the same relation both times.
 * What keeps that cheap with a full window:
 * - an index of bitmaps by (LUN, region of the LBA space) names the earlier records a new
 *   range may overlap, so a small write looks at a few candidates, not the whole window;
 * - each record has a box (its LUN and the bounds of its ranges) in an array of its own, so
 *   the candidates are ruled out by reading 24 bytes each, and only the records that may
 *   conflict are compared range by range;
 * - records that may start, and records that wait, are bits in two bitmaps, so next() finds
 *   the oldest ready record and done() the waiting ones a word at a time.
 */
#include "proto.h"

#include <errno.h>
#include <string.h>

#define REC_MASK       (TWL_RDMA_APPLIER_RECORDS - 1)
#define RANGE_MASK     (TWL_RDMA_APPLIER_RANGES - 1)
#define WORDS          (TWL_RDMA_APPLIER_RECORDS / 64)
#define ALL_FLAGS      (TWL_RDMA_APPLY_BARRIER | TWL_RDMA_APPLY_BARRIER_ALL | TWL_RDMA_APPLY_MORE)
#define BARRIERS       (TWL_RDMA_APPLY_BARRIER | TWL_RDMA_APPLY_BARRIER_ALL)
#define SPANS_LUNS     0x80000000u /* boxes only: the record's ranges are on several LUNs */
#define BOX_DONE       0x40000000u /* boxes only: the record is applied */
#define BUCKET_BITS    8
#define NARROW_REGIONS 4 /* a range over more regions is filed as wide */

_Static_assert((TWL_RDMA_APPLIER_RECORDS & REC_MASK) == 0, "records: a power of two");
_Static_assert((TWL_RDMA_APPLIER_RANGES & RANGE_MASK) == 0, "ranges: a power of two");
_Static_assert(TWL_RDMA_APPLIER_RECORDS % 64 == 0, "bitmaps of whole words");
_Static_assert(TWL_RDMA_APPLIER_BUCKETS == 1u << BUCKET_BITS, "buckets");

/* OPEN: more ranges are coming, it may not start yet; PENDING: waits for deps to be 0. */
enum { REC_OPEN = 0, REC_PENDING, REC_RUNNING, REC_DONE };

static struct twl_rdma_applier_rec *rec_at(struct twl_rdma_applier *a, uint64_t pos)
{
    return &a->recs[pos & REC_MASK];
}

static const struct twl_rdma_applier_range *range_at(const struct twl_rdma_applier *a, uint64_t pos)
{
    return &a->ranges[pos & RANGE_MASK];
}

static const struct twl_rdma_applier_range *box_at(const struct twl_rdma_applier *a, uint64_t pos)
{
    return &a->boxes[pos & REC_MASK];
}

/* ---- bitmaps by slot ---- */

static void set_bit(uint64_t *map, uint64_t pos, bool on)
{
    uint64_t i = pos & REC_MASK, bit = 1ull << (i % 64);
    if (on)
        map[i / 64] |= bit;
    else
        map[i / 64] &= ~bit;
}

/* The first position in [from, to) whose bit is set in any of the n maps, or to. */
static uint64_t next_bit_any(const uint64_t *const *maps, int n, uint64_t from, uint64_t to)
{
    for (uint64_t pos = from; pos < to;) {
        uint64_t i = pos & REC_MASK, w = i / 64, word = 0;
        for (int m = 0; m < n; m++)
            word |= maps[m][w];
        word >>= i % 64;
        if (word != 0) {
            pos += (uint64_t)__builtin_ctzll(word);
            return pos < to ? pos : to;
        }
        pos += 64 - i % 64;
    }
    return to;
}

static uint64_t next_bit(const uint64_t *map, uint64_t from, uint64_t to)
{
    return next_bit_any(&map, 1, from, to);
}

/* ---- conflicts ---- */

/* Two ranges, or two boxes (a box covers all its record's ranges, so boxes that do not
 * conflict mean ranges that do not). */
static bool ranges_conflict(const struct twl_rdma_applier_range *x,
                            const struct twl_rdma_applier_range *y)
{
    uint32_t f = x->flags | y->flags;
    if (f & (TWL_RDMA_APPLY_BARRIER_ALL | SPANS_LUNS))
        return true;
    if (x->lun != y->lun)
        return false;
    if (f & TWL_RDMA_APPLY_BARRIER)
        return true;
    /* an empty range is not a point: it overlaps nothing */
    return x->lba < x->end && y->lba < y->end && x->lba < y->end && y->lba < x->end;
}

/* Whether the record at pos conflicts with range y. */
static bool rec_conflicts_range(const struct twl_rdma_applier *a, uint64_t pos,
                                const struct twl_rdma_applier_range *y)
{
    if (!ranges_conflict(box_at(a, pos), y))
        return false;
    const struct twl_rdma_applier_rec *r = &a->recs[pos & REC_MASK];
    if (r->range_count == 1)
        return true; /* the box is the range */
    for (uint32_t i = 0; i < r->range_count; i++)
        if (ranges_conflict(range_at(a, r->first_range + i), y))
            return true;
    return false;
}

/* Whether the records at px and py conflict. */
static bool recs_conflict(const struct twl_rdma_applier *a, uint64_t px, uint64_t py)
{
    if (!ranges_conflict(box_at(a, px), box_at(a, py)))
        return false;
    const struct twl_rdma_applier_rec *y = &a->recs[py & REC_MASK];
    for (uint32_t i = 0; i < y->range_count; i++)
        if (rec_conflicts_range(a, px, range_at(a, y->first_range + i)))
            return true;
    return false;
}

/* Grows the box of the record at pos, which has count ranges so far, to cover rg. */
static void box_add(struct twl_rdma_applier *a, uint64_t pos, uint32_t count,
                    const struct twl_rdma_applier_range *rg)
{
    struct twl_rdma_applier_range *b = &a->boxes[pos & REC_MASK];
    if (count == 0) {
        *b = *rg;
        return;
    }
    if (rg->lun != b->lun)
        b->flags |= SPANS_LUNS;
    b->flags |= rg->flags;
    if (rg->lba < b->lba)
        b->lba = rg->lba;
    if (rg->end > b->end)
        b->end = rg->end;
}

/* ---- the overlap index ----
 *
 * A range that touches at most NARROW_REGIONS regions is filed under each region's bucket;
 * anything wider, and every barrier, in the wide map; an empty range nowhere (only barriers
 * conflict with it, and they look at everything). A range that overlaps an earlier one shares
 * a region with it, so its own regions' buckets and the wide map hold every unfinished
 * earlier record it can conflict with; hash collisions only add candidates.
 */

static uint32_t bucket_of(uint32_t lun, uint64_t region)
{
    uint64_t h = (region ^ ((uint64_t)lun << 40)) * 0x9e3779b97f4a7c15ull; /* Fibonacci hash */
    return (uint32_t)(h >> (64 - BUCKET_BITS));
}

/* The buckets of a narrow range (0 .. NARROW_REGIONS of them), or -1 when it is wide. */
static int range_buckets(const struct twl_rdma_applier_range *rg, uint32_t b[NARROW_REGIONS])
{
    if (rg->flags & BARRIERS)
        return -1;
    if (rg->lba >= rg->end)
        return 0;
    uint64_t first = rg->lba >> TWL_RDMA_APPLIER_REGION_SHIFT;
    uint64_t last = (rg->end - 1) >> TWL_RDMA_APPLIER_REGION_SHIFT;
    if (last - first >= NARROW_REGIONS)
        return -1;
    for (uint64_t r = first; r <= last; r++)
        b[r - first] = bucket_of(rg->lun, r);
    return (int)(last - first + 1);
}

static void index_set(struct twl_rdma_applier *a, uint64_t pos,
                      const struct twl_rdma_applier_range *rg, bool on)
{
    uint32_t b[NARROW_REGIONS];
    int n = range_buckets(rg, b);
    if (n < 0)
        set_bit(a->wide, pos, on);
    for (int i = 0; i < n; i++)
        set_bit(a->buckets[b[i]], pos, on);
}

/* Takes the record at pos out of the index: once applied it holds nothing back. */
static void index_remove(struct twl_rdma_applier *a, uint64_t pos)
{
    const struct twl_rdma_applier_rec *r = &a->recs[pos & REC_MASK];
    for (uint32_t i = 0; i < r->range_count; i++)
        index_set(a, pos, range_at(a, r->first_range + i), false);
}

/* ---- the interface ---- */

void twl_rdma_applier_init(struct twl_rdma_applier *a, uint64_t durable)
{
    memset(a, 0, sizeof(*a));
    a->durable = durable;
    a->last_seq = durable;
}

int twl_rdma_applier_add(struct twl_rdma_applier *a, uint64_t seq, uint32_t lun, uint64_t lba,
                         uint32_t blocks, uint32_t flags)
{
    if (flags & ~ALL_FLAGS)
        return -EINVAL;
    struct twl_rdma_applier_range rg = {.lun = lun, .lba = lba, .flags = flags & BARRIERS};
    if (flags & TWL_RDMA_APPLY_BARRIER_ALL) {
        rg.lun = 0;
        rg.lba = 0;
        rg.end = UINT64_MAX;
    } else if (flags & TWL_RDMA_APPLY_BARRIER) {
        rg.lba = 0;
        rg.end = UINT64_MAX;
    } else if (lba > UINT64_MAX - blocks) {
        return -EINVAL;
    } else {
        rg.end = lba + blocks;
    }

    struct twl_rdma_applier_rec *n = NULL;
    if (a->rec_head > a->rec_tail && rec_at(a, a->rec_head - 1)->state == REC_OPEN)
        n = rec_at(a, a->rec_head - 1);
    if (n != NULL) {
        /* The newest record is still being assembled: only its own parts may come now. */
        if (seq != n->seq)
            return -EINVAL;
        if (a->range_head - a->range_tail >= TWL_RDMA_APPLIER_RANGES)
            return -ENOSPC;
    } else {
        if (seq <= a->last_seq)
            return -EINVAL;
        if (a->rec_head - a->rec_tail >= TWL_RDMA_APPLIER_RECORDS ||
            a->range_head - a->range_tail >= TWL_RDMA_APPLIER_RANGES)
            return -ENOSPC;
        n = rec_at(a, a->rec_head++);
        *n = (struct twl_rdma_applier_rec){
            .seq = seq, .first_range = a->range_head, .state = REC_OPEN};
        a->last_seq = seq;
    }
    uint64_t np = a->rec_head - 1;

    /* Each earlier unfinished record counts once, however many of n's ranges it meets. A
     * narrow range looks at the records the index names, a wide one at all of them. */
    uint32_t b[NARROW_REGIONS];
    int nb = range_buckets(&rg, b);
    const uint64_t *maps[NARROW_REGIONS + 1] = {a->wide};
    for (int i = 0; i < nb; i++)
        maps[i + 1] = a->buckets[b[i]];
    for (uint64_t pos = a->rec_tail; pos < np; pos++) {
        if (nb >= 0 && (pos = next_bit_any(maps, nb + 1, pos, np)) == np)
            break;
        if ((box_at(a, pos)->flags & BOX_DONE) || !rec_conflicts_range(a, pos, &rg))
            continue;
        struct twl_rdma_applier_rec *e = rec_at(a, pos);
        if (e->mark == seq)
            continue;
        e->mark = seq;
        if (n->deps++ == 0)
            set_bit(a->waiting, np, true);
    }

    a->ranges[a->range_head++ & RANGE_MASK] = rg;
    box_add(a, np, n->range_count, &rg);
    n->range_count++;
    index_set(a, np, &rg, true);
    if (!(flags & TWL_RDMA_APPLY_MORE)) {
        n->state = REC_PENDING;
        if (n->deps == 0)
            set_bit(a->ready, np, true);
    }
    return 0;
}

int twl_rdma_applier_next(struct twl_rdma_applier *a, uint64_t *seq)
{
    uint64_t pos = next_bit(a->ready, a->rec_tail, a->rec_head);
    if (pos == a->rec_head)
        return -EAGAIN;
    struct twl_rdma_applier_rec *r = rec_at(a, pos);
    r->state = REC_RUNNING;
    set_bit(a->ready, pos, false);
    *seq = r->seq;
    return 0;
}

/* The window's position holding seq, or rec_head when none does (seqs increase with it). */
static uint64_t find(struct twl_rdma_applier *a, uint64_t seq)
{
    uint64_t lo = a->rec_tail, hi = a->rec_head;
    while (lo < hi) {
        uint64_t mid = lo + (hi - lo) / 2;
        if (rec_at(a, mid)->seq < seq)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < a->rec_head && rec_at(a, lo)->seq == seq ? lo : a->rec_head;
}

int twl_rdma_applier_done(struct twl_rdma_applier *a, uint64_t seq)
{
    uint64_t pos = find(a, seq);
    if (pos == a->rec_head)
        return -ENOENT;
    struct twl_rdma_applier_rec *x = rec_at(a, pos);
    if (x->state != REC_RUNNING)
        return -EINVAL;
    x->state = REC_DONE;
    a->boxes[pos & REC_MASK].flags |= BOX_DONE;
    index_remove(a, pos);
    /* Only later records that wait (open or pending, deps > 0) may have counted x; an open
     * one counted it with the ranges it has so far, which is what the recount sees too. */
    for (uint64_t p = next_bit(a->waiting, pos + 1, a->rec_head); p < a->rec_head;
         p = next_bit(a->waiting, p + 1, a->rec_head)) {
        struct twl_rdma_applier_rec *r = rec_at(a, p);
        if (!recs_conflict(a, pos, p) || --r->deps > 0)
            continue;
        set_bit(a->waiting, p, false);
        if (r->state == REC_PENDING)
            set_bit(a->ready, p, true);
    }
    while (a->rec_tail < a->rec_head && rec_at(a, a->rec_tail)->state == REC_DONE) {
        struct twl_rdma_applier_rec *r = rec_at(a, a->rec_tail++);
        a->durable = r->seq;
        a->range_tail = r->first_range + r->range_count;
    }
    return 0;
}

uint64_t twl_rdma_applier_durable(const struct twl_rdma_applier *a)
{
    return a->durable;
}

size_t twl_rdma_applier_count(const struct twl_rdma_applier *a)
{
    return (size_t)(a->rec_head - a->rec_tail);
}
