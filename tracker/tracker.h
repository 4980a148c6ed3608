/*
 * twinlun tracker: persistent memory for the logs that must survive a crash.
 *
 * Public names are prefixed trk_. This is the one place that talks to libpmem2 (DESIGN.md
 * section 3): everything else sees a mapped file and a persist call, so moving to another kind
 * of persistent memory changes this part only.
 *
 * A mapping is a file (on a DAX file system: real persistent memory; anywhere else: the page
 * cache) mapped shared. trk_pmem_persist makes a range durable: CPU cache flushes on pmem,
 * msync elsewhere. Once trk_pmem_persist has returned, the range survives a crash of the
 * process and of the machine; before it, a process crash keeps what was stored (the mapping is
 * shared) but a machine crash may not.
 */
#ifndef TWL_TRACKER_H
#define TWL_TRACKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct trk_pmem;

/*
 * Maps the file at path, creating it (mode 0600) or resizing it to len bytes first; bytes new
 * to the file read as zeros, bytes already there are kept. Returns 0 or a negative errno
 * (logged with the path).
 */
int trk_pmem_open(const char *path, size_t len, struct trk_pmem **out);
void *trk_pmem_addr(const struct trk_pmem *m);
size_t trk_pmem_len(const struct trk_pmem *m);
/* True when the file is on persistent memory (persisting is a cache flush, not an msync). */
bool trk_pmem_is_pmem(const struct trk_pmem *m);
/* Makes [addr, addr + len) inside the mapping durable. */
void trk_pmem_persist(const struct trk_pmem *m, const void *addr, size_t len);
/* Unmaps and closes. NULL is fine. */
void trk_pmem_close(struct trk_pmem *m);

/* ---- the LUN copy's log: dirty region bitmap, activity log, generations ----
 *
 * One log per LUN copy (trk_log.c describes the on-media format). The LUN is cut into regions
 * of region_size bytes. The log promises, across a crash at any instruction, that every region
 * whose two copies may differ is shown as possibly different after trk_log_open:
 *   - the activity log (the inflight tracker) holds every region a write may be in flight to:
 *     trk_log_write_begin persists a region there before it returns (once while the region
 *     stays hot: later writes to it cost no persist), and a region leaves it only when no write
 *     to it is in flight: when another region needs its slot, or in a batch of cold regions
 *     (trk_log_flush_cold, one persist for all);
 *   - the dirty bitmap holds every region written without its replica: trk_log_mark, and
 *     trk_log_write_end(replicated = false), persist the bit before they return; bits are
 *     cleared only by trk_log_clear, once a resync made both copies of the region equal.
 * Opening a log left by a crash folds the activity log into the bitmap (every region it held
 * may differ) before anything else happens. A region clean in both says the copies are equal.
 *
 * Generations (DRBD-style) say whose data is newer when the pair meets again: each copy has a
 * current generation, the generation the bitmap started at (0: the bitmap is empty of
 * divergence), and the two generations before. All calls are thread-safe.
 */
struct trk_log;

/* Generations below TRK_GEN_FIRST are not random: they say how a copy began. */
#define TRK_GEN_NEW       1u /* a new log: the copy never met its partner */
#define TRK_GEN_DISCARDED 2u /* an admin discarded this copy's writes (a split brain resolved) */
#define TRK_GEN_BLANK     3u /* the copy was created empty (all zeros) and never written */
#define TRK_GEN_FIRST     16u

struct trk_gens {
    uint64_t current; /* changes whenever this copy starts taking writes its partner lacks */
    uint64_t bitmap;  /* the current generation when the bitmap began recording; 0: none */
    uint64_t history[2];
};

/* What opening found. */
struct trk_log_recovery {
    bool created;           /* a new log: new generation, nothing dirty */
    uint64_t al_regions;    /* regions the activity log held (a crash: folded into the bitmap) */
    uint64_t dirty_regions; /* dirty regions after recovery */
    uint64_t resync_pos;    /* where an interrupted resync stands (region index; 0: none) */
};

/* Where a log lives: a mapping and its persist call (a file through trk_pmem, or a test's
 * memory that records each persist). */
struct trk_log_media {
    uint8_t *base;
    size_t len;
    void (*persist)(void *ctx, const void *addr, size_t len);
    void *ctx;
};

/* Bytes of media a log needs. */
size_t trk_log_size(uint64_t lun_bytes, uint32_t region_size, uint32_t al_slots);

/*
 * Opens the log on media: a blank one (all zero) becomes a new log with a fresh generation; an
 * existing one is checked (-EINVAL when it describes another LUN size or region size: the
 * message names both) and recovered. region_size is a power of two >= 4096; al_slots >= 1.
 */
int trk_log_open_media(const struct trk_log_media *m, uint64_t lun_bytes, uint32_t region_size,
                       uint32_t al_slots, struct trk_log **out, struct trk_log_recovery *rec);
/* The same on a file (created when missing), through trk_pmem. */
int trk_log_open(const char *path, uint64_t lun_bytes, uint32_t region_size, uint32_t al_slots,
                 struct trk_log **out, struct trk_log_recovery *rec);
void trk_log_close(struct trk_log *log);

/*
 * Before a write of [off, off + len) is issued (locally and to the partner): its regions are in
 * the activity log, persisted, when this returns 0. When every slot holds a region with writes
 * in flight the regions are marked in the bitmap instead (safe, costs a resync of them). A
 * negative errno means nothing may be written.
 */
int trk_log_write_begin(struct trk_log *log, uint64_t off, uint64_t len);
/* After the write completed on this copy. replicated = false (the replica failed or there was
 * no partner): the regions are persisted in the bitmap before this returns. */
int trk_log_write_end(struct trk_log *log, uint64_t off, uint64_t len, bool replicated);
/* Empties, with one persist, the activity log slots of regions with no write in flight and
 * none begun since the previous call, so that after a crash only regions written lately count
 * as possibly different. Meant to be called periodically; returns the slots emptied. */
uint32_t trk_log_flush_cold(struct trk_log *log);
/* The same in two steps, around a durability barrier (both copies' writes made stable):
 * cold_mark notes the slots flush_cold would empty now; cold_clear empties, with one persist,
 * those of them still cold (no write begun on their region since the mark). Returns the
 * slots noted, emptied. */
uint32_t trk_log_cold_mark(struct trk_log *log);
uint32_t trk_log_cold_clear(struct trk_log *log);
/* Marks in the bitmap, persisted, every region the activity log holds (what the partner may
 * have applied without making it stable). Returns the regions. */
uint64_t trk_log_mark_active(struct trk_log *log);
/* Marks [off, off + len) dirty in the bitmap, persisted before it returns. */
int trk_log_mark(struct trk_log *log, uint64_t off, uint64_t len);
/* A resync made regions [first, first + count) equal on both copies: clears their bits. */
int trk_log_clear(struct trk_log *log, uint64_t first, uint64_t count);

/* The first dirty region at or after from; the region count when there is none. */
uint64_t trk_log_next_dirty(struct trk_log *log, uint64_t from);
uint64_t trk_log_dirty_count(struct trk_log *log);
uint64_t trk_log_regions(const struct trk_log *log);
uint32_t trk_log_region_size(const struct trk_log *log);

void trk_log_gens(struct trk_log *log, struct trk_gens *g);
/* The partner is gone and this copy goes on taking writes: the bitmap starts recording at the
 * current generation (unless it already does), and a new current generation begins. */
int trk_log_diverge(struct trk_log *log);
/* A resync made this copy equal to the partner whose generations are peer: this copy takes
 * its current generation, the bitmap stops recording (it must be clear). The sync source calls
 * it with its own generations; a source that was new or discarded starts a random one. */
int trk_log_resynced(struct trk_log *log, const struct trk_gens *peer);
/* The copy was just created empty: generations start over at TRK_GEN_BLANK (two blank copies
 * need no first copy; a blank one behind its partner gets only what the partner wrote). */
void trk_log_set_blank(struct trk_log *log);
/* An admin gives up this copy's writes since the pair parted: it becomes TRK_GEN_DISCARDED,
 * the bitmap keeps the generation it started at (the regions to overwrite stay dirty). */
int trk_log_discard(struct trk_log *log);
/* Progress of a resync, persisted so that it resumes after a crash (0: none running). */
int trk_log_set_resync_pos(struct trk_log *log, uint64_t region);

/* What two copies' generations say about them. */
enum trk_sync_decision {
    TRK_IN_SYNC = 0, /* same current generation: only dirty regions, if any, to copy */
    TRK_SYNC_SOURCE, /* this copy is newer: it sends its dirty regions to the partner */
    TRK_SYNC_TARGET, /* the partner is newer: it sends its dirty regions here */
    TRK_SPLIT_BRAIN, /* both took writes apart from one common generation: an admin decides */
    TRK_UNRELATED,   /* no common history: an admin decides which copy to discard */
    TRK_NEW_PAIR,    /* both copies new: the LUN's owner makes the first copy (full unless
                        both are blank) */
};
/* full: the sync target's copy is unknown to the source; every region is copied (regions the
 * source never wrote as deallocation). */
enum trk_sync_decision trk_gens_compare(const struct trk_gens *mine, const struct trk_gens *peer,
                                        bool *full);
const char *trk_sync_decision_name(enum trk_sync_decision d);

#endif
