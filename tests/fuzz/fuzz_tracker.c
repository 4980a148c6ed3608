/*
 * The LUN copy's log as recovery finds it after a crash, a bad disk or a stray write: the input
 * is the log file's bytes, opened the way the daemon opens it (trk_log_open on a file, one
 * fixed geometry). The first byte says how the harness prepares the image: bit 0 fits it to
 * the log's size (zero padding or cut), so that the fuzzer reaches past the size check; bit 1
 * repairs the superblock and activity log CRCs, so that it reaches past the integrity checks.
 * Checked beyond "no crash":
 * - a refusal is -EINVAL or -EBADMSG;
 * - an opened log counts as dirty exactly the regions next_dirty walks, and says so in the
 *   recovery report;
 * - once a resync clears every region, the copy can be declared resynced;
 * - what the log writes itself opens again, with the generations it had.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "tracker.h"
#include "twl_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "fuzz_tracker: %s:%d: %s\n", __FILE__, __LINE__, #cond);               \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* A small geometry: 200 regions, the last one short and not a whole bitmap word's worth. */
#define RS       4096u
#define REGIONS  200u
#define LUN      ((uint64_t)REGIONS * RS - 512)
#define AL_SLOTS 16u

#define FIT     0x1u
#define FIX_CRC 0x2u

static char dir[] = "/tmp/fuzz_tracker.XXXXXX";
static char path[64];

/* The temporary directory goes when the run ends (libFuzzer exits through exit()). */
static void remove_dir(void)
{
    unlink(path);
    rmdir(dir);
}

static void write_file(const uint8_t *p, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    CHECK(fd >= 0);
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        CHECK(w > 0);
        done += (size_t)w;
    }
    close(fd);
}

/* The superblock slots' and the activity log slots' CRCs made to match (slots with the magic
 * only: an empty slot stays empty). */
static void fix_crcs(uint8_t *img, size_t len)
{
    for (size_t off = 0; off + 512 <= len && off < 1024; off += 512)
        twl_put_be32(img + off + 508, twl_crc32c(img + off, 508));
    for (size_t off = 4096; off + 64 <= len && off < 4096 + AL_SLOTS * 64; off += 64)
        if (twl_get_be32(img + off) == 0x54574c41u) /* "TWLA" */
            twl_put_be32(img + off + 60, twl_crc32c(img + off, 60));
}

static uint64_t dirty_walked(struct trk_log *log)
{
    uint64_t n = 0;
    for (uint64_t r = trk_log_next_dirty(log, 0); r < REGIONS; r = trk_log_next_dirty(log, r + 1))
        n++;
    return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (path[0] == '\0') {
        CHECK(mkdtemp(dir) != NULL);
        snprintf(path, sizeof(path), "%s/lun0.trk", dir);
        atexit(remove_dir);
    }
    if (size == 0)
        return 0;
    uint8_t how = data[0];
    size_t len = size - 1;
    size_t want = trk_log_size(LUN, RS, AL_SLOTS);
    if (how & FIT)
        len = want;
    uint8_t *img = calloc(1, len ? len : 1);
    CHECK(img != NULL);
    memcpy(img, data + 1, size - 1 < len ? size - 1 : len);
    if (how & FIX_CRC)
        fix_crcs(img, len);
    write_file(img, len);
    free(img);

    struct trk_log *log;
    struct trk_log_recovery rec;
    int rc = trk_log_open(path, LUN, RS, AL_SLOTS, &log, &rec);
    if (rc != 0) {
        CHECK(rc == -EINVAL || rc == -EBADMSG);
        CHECK(log == NULL);
        return 0;
    }
    CHECK(trk_log_regions(log) == REGIONS && trk_log_region_size(log) == RS);
    uint64_t dirty = trk_log_dirty_count(log);
    CHECK(dirty == dirty_walked(log));
    CHECK(rec.dirty_regions == dirty);
    CHECK(rec.al_regions <= AL_SLOTS && rec.al_regions <= dirty);
    struct trk_gens g;
    trk_log_gens(log, &g);
    if (rec.created)
        CHECK(dirty == 0 && g.current == TRK_GEN_NEW && g.bitmap == 0);

    /* a little of what the daemon does: writes, one left in flight, a resync of everything */
    CHECK(trk_log_write_begin(log, 0, RS) == 0);
    CHECK(trk_log_write_end(log, 0, RS, false) == 0);
    CHECK(trk_log_write_begin(log, LUN - 512, 512) == 0);
    CHECK(trk_log_dirty_count(log) == dirty_walked(log));
    CHECK(trk_log_next_dirty(log, 0) == 0);
    CHECK(trk_log_clear(log, 0, REGIONS) == 0);
    CHECK(trk_log_dirty_count(log) == 0 && trk_log_next_dirty(log, 0) == REGIONS);
    struct trk_gens peer = {.current = TRK_GEN_FIRST + 1};
    CHECK(trk_log_resynced(log, &peer) == 0);
    CHECK(trk_log_diverge(log) == 0);
    CHECK(trk_log_mark(log, 5 * RS, 3 * RS) == 0);
    /* region 0's slot goes cold (twice: the first pass finds it recent); 199's stays */
    trk_log_flush_cold(log);
    CHECK(trk_log_flush_cold(log) == 1);
    trk_log_gens(log, &g);
    trk_log_close(log);

    /* what the log wrote itself opens again: its generations, its bits, the write in flight */
    rc = trk_log_open(path, LUN, RS, AL_SLOTS, &log, &rec);
    CHECK(rc == 0);
    CHECK(!rec.created && rec.al_regions == 1);
    struct trk_gens g2;
    trk_log_gens(log, &g2);
    CHECK(memcmp(&g, &g2, sizeof(g)) == 0);
    CHECK(trk_log_dirty_count(log) == 4 && dirty_walked(log) == 4);
    CHECK(trk_log_next_dirty(log, 0) == 5 && trk_log_next_dirty(log, 8) == REGIONS - 1);
    trk_log_close(log);
    return 0;
}
