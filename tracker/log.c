/*
 * The log of one LUN copy: activity log (the inflight tracker), dirty region bitmap and
 * generations, on persistent media (tracker.h says what it promises).
 *
 * On-media format:
 *
 *   0      superblock slot 0 (512 bytes)    writes alternate between the two slots by epoch;
 *   512    superblock slot 1                the valid slot with the larger epoch is current
 *   4096   activity log: al_slots slots of 64 bytes
 *   B      dirty bitmap, B = 4096 + al_slots * 64 rounded up to 4096: one bit per region,
 *          region r is bit r % 64 of the little-endian 64-bit word r / 64
 *
 * Superblock slot (big-endian):
 *    0 magic "TWLT"   4 version (1)   8 epoch   16 lun_bytes   24 region_size (32 bits)
 *   28 al_slots (32 bits)   32 gen.current   40 gen.bitmap   48 gen.history[0]
 *   56 gen.history[1]   64 resync_pos   72..507 zero   508 CRC32C of bytes [0, 508)
 *   A new log's current generation is TRK_GEN_NEW (TRK_GEN_BLANK once its copy is known
 *   to be all zeros); random generations are >= TRK_GEN_FIRST.
 *
 * Activity log slot (big-endian):
 *    0 magic "TWLA"   4 zero   8 region + 1 (0: empty)   16 activation number   24..59 zero
 *   60 CRC32C of bytes [0, 60)
 *
 * Why a crash at any point leaves every possibly different region shown:
 *   - a write is issued only after its regions' slots (or bitmap bits) are persisted;
 *   - a slot is rewritten for another region only when no write to the region it held is in
 *     flight and every write to it was replicated or marked in the bitmap, so losing the old
 *     content (a torn slot fails its CRC and reads as empty) loses nothing;
 *   - bitmap bits are set with 8-byte stores and persisted before the write they cover
 *     completes; they are cleared only after a resync made the region equal;
 *   - opening after a crash persists the activity log's regions into the bitmap before it
 *     empties the activity log.
 */
#include "tracker.h"

#include "twl_common.h"

#include <endian.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#define PART "tracker"

#define SB_MAGIC   0x54574c54u /* "TWLT" */
#define SB_VERSION 1u
#define SB_SLOT    512u
#define AL_OFF     4096u
#define AL_SLOT    64u
#define AL_MAGIC   0x54574c41u /* "TWLA" */
#define NO_SLOT    UINT32_MAX

struct sb {
    uint64_t epoch, lun_bytes;
    uint32_t region_size, al_slots;
    struct trk_gens gens;
    uint64_t resync_pos;
};

struct al_entry {
    uint64_t region; /* UINT64_MAX: empty */
    uint32_t inflight;
    uint32_t next;   /* hash chain */
    bool referenced; /* the clock's second chance */
    bool recent;     /* begun since the last trk_log_flush_cold */
    bool on_media;   /* its slot on the media names the region (else emptied while cold) */
    bool cold;       /* found cold by trk_log_cold_mark, to be emptied by trk_log_cold_clear */
};

struct trk_log {
    struct trk_log_media m;
    struct trk_pmem *pmem; /* when opened on a file */
    pthread_mutex_t lock;
    struct sb sb;
    uint64_t regions;
    uint64_t dirty;
    uint64_t activations;
    uint8_t *al;
    uint64_t *bitmap;
    struct al_entry *slots;
    uint32_t *buckets;
    uint32_t nbuckets; /* power of two */
    uint32_t hand;     /* the clock */
};

static size_t bitmap_off(uint32_t al_slots)
{
    size_t end = AL_OFF + (size_t)al_slots * AL_SLOT;
    return (end + 4095) & ~(size_t)4095;
}

static uint64_t regions_of(uint64_t lun_bytes, uint32_t region_size)
{
    return (lun_bytes + region_size - 1) / region_size;
}

size_t trk_log_size(uint64_t lun_bytes, uint32_t region_size, uint32_t al_slots)
{
    uint64_t words = (regions_of(lun_bytes, region_size) + 63) / 64;
    return bitmap_off(al_slots) + (size_t)words * 8;
}

static void persist(struct trk_log *log, const void *addr, size_t len)
{
    log->m.persist(log->m.ctx, addr, len);
}

/* ---- superblock ---- */

static void sb_encode(uint8_t *out, const struct sb *s)
{
    memset(out, 0, SB_SLOT);
    twl_put_be32(out, SB_MAGIC);
    twl_put_be32(out + 4, SB_VERSION);
    twl_put_be64(out + 8, s->epoch);
    twl_put_be64(out + 16, s->lun_bytes);
    twl_put_be32(out + 24, s->region_size);
    twl_put_be32(out + 28, s->al_slots);
    twl_put_be64(out + 32, s->gens.current);
    twl_put_be64(out + 40, s->gens.bitmap);
    twl_put_be64(out + 48, s->gens.history[0]);
    twl_put_be64(out + 56, s->gens.history[1]);
    twl_put_be64(out + 64, s->resync_pos);
    twl_put_be32(out + SB_SLOT - 4, twl_crc32c(out, SB_SLOT - 4));
}

static bool sb_decode(const uint8_t *in, struct sb *s)
{
    if (twl_get_be32(in) != SB_MAGIC || twl_get_be32(in + 4) != SB_VERSION ||
        twl_get_be32(in + SB_SLOT - 4) != twl_crc32c(in, SB_SLOT - 4))
        return false;
    s->epoch = twl_get_be64(in + 8);
    s->lun_bytes = twl_get_be64(in + 16);
    s->region_size = twl_get_be32(in + 24);
    s->al_slots = twl_get_be32(in + 28);
    s->gens.current = twl_get_be64(in + 32);
    s->gens.bitmap = twl_get_be64(in + 40);
    s->gens.history[0] = twl_get_be64(in + 48);
    s->gens.history[1] = twl_get_be64(in + 56);
    s->resync_pos = twl_get_be64(in + 64);
    return true;
}

/* Writes the next epoch into the slot not holding the current one, and persists it. */
static void sb_write(struct trk_log *log)
{
    log->sb.epoch++;
    uint8_t *slot = log->m.base + (log->sb.epoch % 2) * SB_SLOT;
    sb_encode(slot, &log->sb);
    persist(log, slot, SB_SLOT);
}

static uint64_t new_generation(void)
{
    uint64_t g = 0;
    while (g < TRK_GEN_FIRST) {
        if (getrandom(&g, sizeof(g), 0) != (ssize_t)sizeof(g))
            g = twl_now_ns() ^ ((uint64_t)rand() << 32);
    }
    return g;
}

/* ---- activity log slots ---- */

static uint8_t *al_slot(struct trk_log *log, uint32_t i)
{
    return log->al + (size_t)i * AL_SLOT;
}

static void al_encode(uint8_t *out, uint64_t region_plus_one, uint64_t activation)
{
    memset(out, 0, AL_SLOT);
    twl_put_be32(out, AL_MAGIC);
    twl_put_be64(out + 8, region_plus_one);
    twl_put_be64(out + 16, activation);
    twl_put_be32(out + 60, twl_crc32c(out, 60));
}

/* The region a slot holds on the media, or UINT64_MAX for an empty or torn slot. */
static uint64_t al_decode(const uint8_t *in)
{
    if (twl_get_be32(in) != AL_MAGIC || twl_get_be32(in + 60) != twl_crc32c(in, 60))
        return UINT64_MAX;
    uint64_t r = twl_get_be64(in + 8);
    return r == 0 ? UINT64_MAX : r - 1;
}

static uint32_t bucket_of(const struct trk_log *log, uint64_t region)
{
    return (uint32_t)((region * 0x9e3779b97f4a7c15ull) >> 32) & (log->nbuckets - 1);
}

static uint32_t al_find(const struct trk_log *log, uint64_t region)
{
    for (uint32_t i = log->buckets[bucket_of(log, region)]; i != NO_SLOT; i = log->slots[i].next)
        if (log->slots[i].region == region)
            return i;
    return NO_SLOT;
}

static void al_unlink(struct trk_log *log, uint32_t i)
{
    uint32_t *p = &log->buckets[bucket_of(log, log->slots[i].region)];
    while (*p != i)
        p = &log->slots[*p].next;
    *p = log->slots[i].next;
}

/* A slot whose region has no write in flight (clock: a recently used one gets a second
 * chance), or NO_SLOT when every slot has writes in flight. */
static uint32_t al_victim(struct trk_log *log)
{
    uint32_t n = log->sb.al_slots;
    for (uint32_t k = 0; k < 2 * n; k++) {
        uint32_t i = log->hand;
        log->hand = (log->hand + 1) % n;
        struct al_entry *e = &log->slots[i];
        if (e->inflight)
            continue;
        if (e->referenced && e->region != UINT64_MAX) {
            e->referenced = false;
            continue;
        }
        return i;
    }
    return NO_SLOT;
}

/* ---- bitmap ---- */

static bool bit_get(const struct trk_log *log, uint64_t r)
{
    return (le64toh(log->bitmap[r / 64]) >> (r % 64)) & 1;
}

/* Words of the bitmap changed in memory, to be persisted at once. */
struct bit_span {
    uint64_t lo, hi; /* lo = UINT64_MAX: none */
};

/* Sets region r's bit in memory and widens span to its word; false if it was set already. */
static bool bit_set_mem(struct trk_log *log, uint64_t r, struct bit_span *span)
{
    if (bit_get(log, r))
        return false;
    uint64_t w = le64toh(log->bitmap[r / 64]) | (1ull << (r % 64));
    __atomic_store_n(&log->bitmap[r / 64], htole64(w), __ATOMIC_RELEASE);
    log->dirty++;
    span->lo = r / 64 < span->lo ? r / 64 : span->lo;
    span->hi = r / 64 > span->hi ? r / 64 : span->hi;
    return true;
}

static void bits_persist(struct trk_log *log, const struct bit_span *span)
{
    if (span->lo != UINT64_MAX)
        persist(log, &log->bitmap[span->lo], (span->hi - span->lo + 1) * 8);
}

/* Sets the bits of regions [first, last] (inclusive); persists the words that changed. */
static void bits_set(struct trk_log *log, uint64_t first, uint64_t last)
{
    struct bit_span span = {.lo = UINT64_MAX};
    for (uint64_t r = first; r <= last; r++)
        bit_set_mem(log, r, &span);
    bits_persist(log, &span);
}

/* ---- opening ---- */

static bool all_zero(const uint8_t *p, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (p[i])
            return false;
    return true;
}

/* Folds the activity log left by the last run into the bitmap, then empties it. */
static uint64_t al_fold(struct trk_log *log)
{
    uint64_t n = 0;
    struct bit_span span = {.lo = UINT64_MAX};
    for (uint32_t i = 0; i < log->sb.al_slots; i++) {
        uint64_t r = al_decode(al_slot(log, i));
        if (r == UINT64_MAX || r >= log->regions)
            continue;
        bit_set_mem(log, r, &span);
        n++;
    }
    /* the bits are persisted, in one go, before the slots that justified them are emptied */
    bits_persist(log, &span);
    memset(log->al, 0, (size_t)log->sb.al_slots * AL_SLOT);
    persist(log, log->al, (size_t)log->sb.al_slots * AL_SLOT);
    return n;
}

/* The superblock in force among the two slots at p: the valid one with the larger epoch.
 * False when neither is valid. */
static bool sb_pick(const uint8_t *p, struct sb *out)
{
    struct sb a, b;
    bool va = sb_decode(p, &a), vb = sb_decode(p + SB_SLOT, &b);
    if (!va && !vb)
        return false;
    /* serial number order: the write after epoch 2^64 - 1 (0) is the newer one */
    *out = va && (!vb || (int64_t)(a.epoch - b.epoch) > 0) ? a : b;
    return true;
}

static int load(struct trk_log *log, uint64_t lun_bytes, uint32_t region_size, uint32_t al_slots,
                struct trk_log_recovery *rec)
{
    size_t len = trk_log_size(lun_bytes, region_size, al_slots);
    if (!sb_pick(log->m.base, &log->sb)) {
        /* a blank log, or one whose first superblock was torn before anything else was written */
        if (!all_zero(log->m.base + 2 * SB_SLOT, len - 2 * SB_SLOT)) {
            TWL_ERROR(PART, "log has no valid superblock but holds data: refusing to reuse it");
            return -EBADMSG;
        }
        memset(log->m.base, 0, 2 * SB_SLOT);
        log->sb = (struct sb){.lun_bytes = lun_bytes,
                              .region_size = region_size,
                              .al_slots = al_slots,
                              .gens = {.current = TRK_GEN_NEW}};
        sb_write(log);
        rec->created = true;
        return 0;
    }
    if (log->sb.lun_bytes != lun_bytes || log->sb.region_size != region_size ||
        log->sb.al_slots != al_slots) {
        TWL_ERROR(PART,
                  "log describes a LUN of %" PRIu64 " bytes in regions of %u bytes with %u "
                  "activity slots, not %" PRIu64 " bytes, %u, %u: refusing it",
                  log->sb.lun_bytes, log->sb.region_size, log->sb.al_slots, lun_bytes, region_size,
                  al_slots);
        return -EINVAL;
    }
    for (uint64_t w = 0; w < (log->regions + 63) / 64; w++) {
        uint64_t v = le64toh(log->bitmap[w]);
        /* the last word's bits past the last region are never set here: ones found there are
         * damage, not regions, and counting them would keep the count above 0 for ever (a
         * resync clears regions only) */
        if (w == log->regions / 64)
            v &= (1ull << (log->regions % 64)) - 1;
        log->dirty += (uint64_t)__builtin_popcountll(v);
    }
    rec->al_regions = al_fold(log);
    rec->resync_pos = log->sb.resync_pos;
    return 0;
}

int trk_log_open_media(const struct trk_log_media *m, uint64_t lun_bytes, uint32_t region_size,
                       uint32_t al_slots, struct trk_log **out, struct trk_log_recovery *rec)
{
    *out = NULL;
    struct trk_log_recovery scratch;
    if (rec == NULL)
        rec = &scratch;
    memset(rec, 0, sizeof(*rec));
    if (region_size < 4096 || (region_size & (region_size - 1)) || al_slots == 0 ||
        lun_bytes == 0 || m->len < trk_log_size(lun_bytes, region_size, al_slots))
        return -EINVAL;
    struct trk_log *log = calloc(1, sizeof(*log));
    if (log == NULL)
        return -ENOMEM;
    log->m = *m;
    log->regions = regions_of(lun_bytes, region_size);
    log->al = m->base + AL_OFF;
    log->bitmap = (uint64_t *)(m->base + bitmap_off(al_slots));
    log->nbuckets = 1;
    while (log->nbuckets < 2 * al_slots)
        log->nbuckets *= 2;
    log->slots = calloc(al_slots, sizeof(*log->slots));
    log->buckets = malloc(log->nbuckets * sizeof(*log->buckets));
    if (log->slots == NULL || log->buckets == NULL) {
        free(log->slots);
        free(log->buckets);
        free(log);
        return -ENOMEM;
    }
    for (uint32_t i = 0; i < al_slots; i++)
        log->slots[i] = (struct al_entry){.region = UINT64_MAX, .next = NO_SLOT};
    for (uint32_t i = 0; i < log->nbuckets; i++)
        log->buckets[i] = NO_SLOT;
    pthread_mutex_init(&log->lock, NULL);
    int rc = load(log, lun_bytes, region_size, al_slots, rec);
    if (rc) {
        trk_log_close(log);
        return rc;
    }
    rec->dirty_regions = log->dirty;
    *out = log;
    return 0;
}

static void pmem_persist(void *ctx, const void *addr, size_t len)
{
    trk_pmem_persist(ctx, addr, len);
}

/* A log of another geometry whose copy never met its partner holds nothing to keep (it will be
 * copied whole anyway): it is emptied, to be made anew. True when that happened. */
static bool forgettable(const char *path)
{
    uint8_t slots[2 * SB_SLOT];
    struct sb cur;
    int fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return false;
    bool forget = pread(fd, slots, sizeof(slots), 0) == (ssize_t)sizeof(slots) &&
                  sb_pick(slots, &cur) &&
                  (cur.gens.current == TRK_GEN_NEW || cur.gens.current == TRK_GEN_BLANK);
    if (forget && ftruncate(fd, 0) == 0)
        TWL_WARN(PART,
                 "%s: made for another LUN size or region size, by a copy that never met "
                 "its partner: made anew",
                 path);
    else
        forget = false;
    close(fd);
    return forget;
}

int trk_log_open(const char *path, uint64_t lun_bytes, uint32_t region_size, uint32_t al_slots,
                 struct trk_log **out, struct trk_log_recovery *rec)
{
    *out = NULL;
    if (region_size < 4096 || (region_size & (region_size - 1)) || al_slots == 0 || lun_bytes == 0)
        return -EINVAL;
    /* a log of another geometry is refused before anything resizes (and so damages) it */
    size_t len = trk_log_size(lun_bytes, region_size, al_slots);
    struct stat st;
    if (stat(path, &st) == 0 && st.st_size != 0 && (size_t)st.st_size != len &&
        !forgettable(path)) {
        TWL_ERROR(PART,
                  "%s: %lld bytes, but a log of a %" PRIu64 "-byte LUN in %u-byte regions with "
                  "%u activity slots takes %zu: it belongs to another LUN or configuration",
                  path, (long long)st.st_size, lun_bytes, region_size, al_slots, len);
        return -EINVAL;
    }
    struct trk_pmem *pm;
    int rc = trk_pmem_open(path, len, &pm);
    if (rc)
        return rc;
    struct trk_log_media m = {
        .base = trk_pmem_addr(pm), .len = trk_pmem_len(pm), .persist = pmem_persist, .ctx = pm};
    rc = trk_log_open_media(&m, lun_bytes, region_size, al_slots, out, rec);
    if (rc) {
        TWL_ERROR(PART, "%s: cannot open the log: %s", path, strerror(-rc));
        trk_pmem_close(pm);
        return rc;
    }
    (*out)->pmem = pm;
    return 0;
}

void trk_log_close(struct trk_log *log)
{
    if (log == NULL)
        return;
    pthread_mutex_destroy(&log->lock);
    trk_pmem_close(log->pmem);
    free(log->slots);
    free(log->buckets);
    free(log);
}

/* ---- the write path ---- */

static bool range_regions(const struct trk_log *log, uint64_t off, uint64_t len, uint64_t *first,
                          uint64_t *last)
{
    if (len == 0 || off >= log->sb.lun_bytes || len > log->sb.lun_bytes - off)
        return false;
    *first = off / log->sb.region_size;
    *last = (off + len - 1) / log->sb.region_size;
    return true;
}

int trk_log_write_begin(struct trk_log *log, uint64_t off, uint64_t len)
{
    uint64_t first, last;
    if (!range_regions(log, off, len, &first, &last))
        return -EINVAL;
    pthread_mutex_lock(&log->lock);
    for (uint64_t r = first; r <= last; r++) {
        uint32_t i = al_find(log, r);
        if (i != NO_SLOT) {
            struct al_entry *e = &log->slots[i];
            if (!e->on_media) {
                al_encode(al_slot(log, i), r + 1, ++log->activations);
                persist(log, al_slot(log, i), AL_SLOT);
                e->on_media = true;
            }
            e->inflight++;
            e->referenced = true;
            e->recent = true;
            continue;
        }
        i = al_victim(log);
        if (i == NO_SLOT) {
            /* every slot busy: the bitmap covers this region instead, until a resync */
            bits_set(log, r, r);
            continue;
        }
        struct al_entry *e = &log->slots[i];
        if (e->region != UINT64_MAX)
            al_unlink(log, i);
        al_encode(al_slot(log, i), r + 1, ++log->activations);
        persist(log, al_slot(log, i), AL_SLOT);
        e->region = r;
        e->inflight = 1;
        e->referenced = true;
        e->recent = true;
        e->on_media = true;
        e->next = log->buckets[bucket_of(log, r)];
        log->buckets[bucket_of(log, r)] = i;
    }
    pthread_mutex_unlock(&log->lock);
    return 0;
}

int trk_log_write_end(struct trk_log *log, uint64_t off, uint64_t len, bool replicated)
{
    uint64_t first, last;
    if (!range_regions(log, off, len, &first, &last))
        return -EINVAL;
    pthread_mutex_lock(&log->lock);
    /* the bits first: the slots may be taken by other regions once nothing is in flight */
    if (!replicated)
        bits_set(log, first, last);
    for (uint64_t r = first; r <= last; r++) {
        uint32_t i = al_find(log, r);
        /* absent (or already at 0) when begin fell back to the bitmap */
        if (i != NO_SLOT && log->slots[i].inflight)
            log->slots[i].inflight--;
    }
    pthread_mutex_unlock(&log->lock);
    return 0;
}

uint32_t trk_log_cold_mark(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    uint32_t n = 0;
    for (uint32_t i = 0; i < log->sb.al_slots; i++) {
        struct al_entry *e = &log->slots[i];
        /* the same condition as for giving the slot to another region */
        e->cold = !e->recent && !e->inflight && e->on_media;
        e->recent = false;
        n += e->cold;
    }
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint32_t trk_log_cold_clear(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    uint32_t lo = NO_SLOT, hi = 0, n = 0;
    for (uint32_t i = 0; i < log->sb.al_slots; i++) {
        struct al_entry *e = &log->slots[i];
        /* a write begun since the mark keeps its region */
        bool clear = e->cold && !e->recent && !e->inflight && e->on_media;
        e->cold = false;
        if (!clear)
            continue;
        memset(al_slot(log, i), 0, AL_SLOT);
        e->on_media = false;
        lo = lo == NO_SLOT ? i : lo;
        hi = i;
        n++;
    }
    if (n)
        persist(log, al_slot(log, lo), (size_t)(hi - lo + 1) * AL_SLOT);
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint32_t trk_log_flush_cold(struct trk_log *log)
{
    trk_log_cold_mark(log);
    return trk_log_cold_clear(log);
}

uint64_t trk_log_mark_active(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    uint64_t n = 0;
    struct bit_span span = {.lo = UINT64_MAX};
    for (uint32_t i = 0; i < log->sb.al_slots; i++) {
        struct al_entry *e = &log->slots[i];
        if (e->on_media && e->region < log->regions && bit_set_mem(log, e->region, &span))
            n++;
    }
    /* one persist for all: the slots stay, so a crash before it loses nothing */
    bits_persist(log, &span);
    pthread_mutex_unlock(&log->lock);
    return n;
}

int trk_log_mark(struct trk_log *log, uint64_t off, uint64_t len)
{
    uint64_t first, last;
    if (!range_regions(log, off, len, &first, &last))
        return -EINVAL;
    pthread_mutex_lock(&log->lock);
    bits_set(log, first, last);
    pthread_mutex_unlock(&log->lock);
    return 0;
}

int trk_log_clear(struct trk_log *log, uint64_t first, uint64_t count)
{
    if (count == 0 || first >= log->regions || count > log->regions - first)
        return -EINVAL;
    pthread_mutex_lock(&log->lock);
    uint64_t last = first + count - 1;
    for (uint64_t w = first / 64; w <= last / 64; w++) {
        uint64_t lo = w * 64 < first ? first - w * 64 : 0;
        uint64_t hi = w * 64 + 63 > last ? last - w * 64 : 63;
        uint64_t mask = (hi == 63 ? ~0ull : (1ull << (hi + 1)) - 1) & ~((1ull << lo) - 1);
        uint64_t v = le64toh(log->bitmap[w]);
        log->dirty -= (uint64_t)__builtin_popcountll(v & mask);
        __atomic_store_n(&log->bitmap[w], htole64(v & ~mask), __ATOMIC_RELEASE);
    }
    persist(log, &log->bitmap[first / 64], (last / 64 - first / 64 + 1) * 8);
    pthread_mutex_unlock(&log->lock);
    return 0;
}

uint64_t trk_log_next_dirty(struct trk_log *log, uint64_t from)
{
    pthread_mutex_lock(&log->lock);
    uint64_t r = from;
    while (r < log->regions) {
        uint64_t w = le64toh(log->bitmap[r / 64]) >> (r % 64);
        if (w) {
            r += (uint64_t)__builtin_ctzll(w);
            break;
        }
        r = (r / 64 + 1) * 64;
    }
    pthread_mutex_unlock(&log->lock);
    return r < log->regions ? r : log->regions;
}

uint64_t trk_log_dirty_count(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    uint64_t n = log->dirty;
    pthread_mutex_unlock(&log->lock);
    return n;
}

uint64_t trk_log_regions(const struct trk_log *log)
{
    return log->regions;
}

uint32_t trk_log_region_size(const struct trk_log *log)
{
    return log->sb.region_size;
}

/* ---- generations ---- */

void trk_log_gens(struct trk_log *log, struct trk_gens *g)
{
    pthread_mutex_lock(&log->lock);
    *g = log->sb.gens;
    pthread_mutex_unlock(&log->lock);
}

int trk_log_diverge(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    struct trk_gens *g = &log->sb.gens;
    if (g->bitmap == 0) {
        g->bitmap = g->current;
        g->current = new_generation();
        sb_write(log);
    }
    pthread_mutex_unlock(&log->lock);
    return 0;
}

int trk_log_resynced(struct trk_log *log, const struct trk_gens *peer)
{
    pthread_mutex_lock(&log->lock);
    int rc = 0;
    if (log->dirty) {
        rc = -EBUSY;
    } else {
        struct trk_gens *g = &log->sb.gens;
        uint64_t old_bitmap = g->bitmap;
        g->bitmap = 0;
        if (g->current != peer->current) {
            g->history[1] = g->history[0];
            g->history[0] = g->current;
            g->current = peer->current;
        } else if (old_bitmap) {
            g->history[1] = g->history[0];
            g->history[0] = old_bitmap;
        }
        if (g->current < TRK_GEN_FIRST)
            g->current = new_generation();
        log->sb.resync_pos = 0;
        sb_write(log);
    }
    pthread_mutex_unlock(&log->lock);
    return rc;
}

int trk_log_set_resync_pos(struct trk_log *log, uint64_t region)
{
    pthread_mutex_lock(&log->lock);
    log->sb.resync_pos = region;
    sb_write(log);
    pthread_mutex_unlock(&log->lock);
    return 0;
}

void trk_log_set_blank(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    log->sb.gens = (struct trk_gens){.current = TRK_GEN_BLANK};
    sb_write(log);
    pthread_mutex_unlock(&log->lock);
}

int trk_log_discard(struct trk_log *log)
{
    pthread_mutex_lock(&log->lock);
    struct trk_gens *g = &log->sb.gens;
    if (g->current != TRK_GEN_DISCARDED) {
        if (g->bitmap == 0)
            g->bitmap = g->current;
        g->current = TRK_GEN_DISCARDED;
        sb_write(log);
    }
    pthread_mutex_unlock(&log->lock);
    return 0;
}

/* Whether the copy with generations t, behind s, holds nothing s lacks besides t's bitmap. */
static bool related(const struct trk_gens *t, const struct trk_gens *s)
{
    uint64_t base = t->current == TRK_GEN_DISCARDED ? t->bitmap : t->current;
    return (base >= TRK_GEN_FIRST || base == TRK_GEN_BLANK) &&
           (base == s->current || base == s->bitmap);
}

enum trk_sync_decision trk_gens_compare(const struct trk_gens *mine, const struct trk_gens *peer,
                                        bool *full)
{
    *full = false;
    bool mine_blank = mine->current == TRK_GEN_BLANK, peer_blank = peer->current == TRK_GEN_BLANK;
    bool mine_new = mine->current == TRK_GEN_NEW || mine_blank;
    bool peer_new = peer->current == TRK_GEN_NEW || peer_blank;
    bool mine_gone = mine->current == TRK_GEN_DISCARDED;
    bool peer_gone = peer->current == TRK_GEN_DISCARDED;
    if (mine_new && peer_new) {
        *full = !(mine_blank && peer_blank);
        return TRK_NEW_PAIR;
    }
    if ((mine_gone && (peer_gone || peer_new)) || (peer_gone && mine_new))
        return TRK_UNRELATED;
    if (mine_gone || mine_new) {
        *full = !related(mine, peer);
        return TRK_SYNC_TARGET;
    }
    if (peer_gone || peer_new) {
        *full = !related(peer, mine);
        return TRK_SYNC_SOURCE;
    }
    if (mine->current == peer->current)
        return TRK_IN_SYNC;
    if (mine->bitmap && peer->bitmap && mine->bitmap == peer->bitmap)
        return TRK_SPLIT_BRAIN;
    if (mine->bitmap && mine->bitmap == peer->current)
        return TRK_SYNC_SOURCE;
    if (peer->bitmap && peer->bitmap == mine->current)
        return TRK_SYNC_TARGET;
    return TRK_UNRELATED;
}

const char *trk_sync_decision_name(enum trk_sync_decision d)
{
    switch (d) {
    case TRK_IN_SYNC:
        return "in sync";
    case TRK_SYNC_SOURCE:
        return "sync source";
    case TRK_SYNC_TARGET:
        return "sync target";
    case TRK_SPLIT_BRAIN:
        return "split brain";
    case TRK_UNRELATED:
        return "unrelated";
    case TRK_NEW_PAIR:
        return "new pair";
    }
    return "?";
}
