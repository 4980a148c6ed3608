/* Multi-step medium commands against a real sparse file: COMPARE AND WRITE, ORWRITE, VERIFY,
 * WRITE SAME (pattern, UNMAP, NDOB, ANCHOR), UNMAP and GET LBA STATUS, planned from real CDBs and
 * checked by reading the file back. The file lives under /var/tmp (a disk filesystem) so holes
 * and SEEK_HOLE behave as they do under a real LUN. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "backing.h"
#include "config.h"
#include "media.h"
#include "scsi.h"
#include "twl_common.h"

#define BS        512u
#define LU_BYTES  (16u << 20)
#define LU_BLOCKS (LU_BYTES / BS)
/* Holes are punched in whole filesystem pages; ranges this aligned become real holes. */
#define PAGE_BLOCKS (4096u / BS)

struct fixture {
    char dir[64];
    char path[128];
    struct backing store;
    int fd; /* the store's, kept for teardown while a test has taken it away */
    struct scsi_lun lun;
    struct scsi_plan plan;
    uint8_t out[4096];
};

static struct fixture *f;

/* Scratch for data and read-backs: static, so a failing assertion (a longjmp) leaks nothing
 * that LeakSanitizer would report on top of the real failure. */
#define SCRATCH_BLOCKS 4200u
static uint8_t scratch_data[SCRATCH_BLOCKS * BS];
static uint8_t scratch_read[SCRATCH_BLOCKS * BS];

static int setup(void **state)
{
    f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/var/tmp/twl-media-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->path, sizeof(f->path), "%s/lun0.img", f->dir);

    struct tgt_lun_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    cfg.id = 0;
    snprintf(cfg.path, sizeof(cfg.path), "%s", f->path);
    cfg.size_bytes = LU_BYTES;
    cfg.block_size = BS;
    cfg.create = true;
    cfg.thin = true;
    assert_int_equal(backing_open(&cfg, &f->store), 0);
    assert_int_equal(f->store.size, LU_BYTES);
    f->fd = f->store.fd;

    f->lun.id = 0;
    f->lun.block_count = LU_BLOCKS;
    f->lun.block_size = BS;
    f->lun.thin = true;
    f->lun.write_cache = true;
    f->lun.max_transfer_blocks = 2048;
    f->lun.lbppbe = 3;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    (void)state;
    f->store.fd = f->fd;
    backing_close(&f->store);
    unlink(f->path);
    rmdir(f->dir);
    free(f);
    f = NULL;
    return 0;
}

/* ---- helpers ---- */

static void put(uint64_t lba, const uint8_t *data, size_t blocks)
{
    size_t len = blocks * BS;
    assert_int_equal(pwrite(f->store.fd, data, len, (off_t)(lba * BS)), (ssize_t)len);
}

static void get(uint64_t lba, uint8_t *data, size_t blocks)
{
    size_t len = blocks * BS;
    assert_int_equal(pread(f->store.fd, data, len, (off_t)(lba * BS)), (ssize_t)len);
}

/* Distinct, non-zero bytes that differ from block to block and with the seed. */
static void pattern(uint8_t *p, size_t len, uint8_t seed)
{
    for (size_t i = 0; i < len; i++)
        p[i] = (uint8_t)((i * 7 + (i >> 9) * 13 + seed) | 0x01);
}

static void assert_blocks_equal(uint64_t lba, const uint8_t *want, size_t blocks)
{
    assert_true(blocks <= SCRATCH_BLOCKS);
    get(lba, scratch_read, blocks);
    assert_memory_equal(scratch_read, want, blocks * BS);
}

static void assert_blocks_zero(uint64_t lba, size_t blocks)
{
    static const uint8_t zero[64 * BS];
    assert_true(blocks <= 64);
    assert_blocks_equal(lba, zero, blocks);
}

/* Plans a CDB the way the transport does, then carries it out like a worker thread. */
static void execute(const uint8_t *cdb, size_t cdb_len, uint8_t *data)
{
    uint8_t scratch[64];
    scsi_plan_command(&f->lun, NULL, cdb, cdb_len, scratch, sizeof(scratch), &f->plan);
    assert_int_equal(f->plan.sense_len, 0);
    assert_true(f->plan.action >= SCSI_ACTION_COMPARE_AND_WRITE &&
                f->plan.action <= SCSI_ACTION_GET_LBA_STATUS);
    memset(f->out, 0xee, sizeof(f->out));
    media_execute(&f->store, &f->lun, &f->plan, data, f->out, sizeof(f->out));
}

static void assert_good(void)
{
    assert_int_equal(f->plan.status, SCSI_STATUS_GOOD);
    assert_int_equal(f->plan.sense_len, 0);
}

static void assert_sense(uint8_t key, uint16_t asc, bool valid, uint32_t info)
{
    const uint8_t *s = f->plan.sense;
    assert_int_equal(f->plan.status, SCSI_STATUS_CHECK_CONDITION);
    assert_int_equal(f->plan.sense_len, SCSI_SENSE_FIXED_LEN);
    assert_int_equal(s[0], valid ? 0xf0 : 0x70);
    assert_int_equal(s[2], key);
    assert_int_equal(s[7], 10);
    assert_int_equal(s[12], asc >> 8);
    assert_int_equal(s[13], asc & 0xff);
    if (valid)
        assert_int_equal(twl_get_be32(s + 3), info);
}

static void caw_cdb(uint8_t cdb[16], uint64_t lba, uint8_t blocks)
{
    memset(cdb, 0, 16);
    cdb[0] = 0x89;
    twl_put_be64(cdb + 2, lba);
    cdb[13] = blocks;
}

static void cdb16(uint8_t cdb[16], uint8_t op, uint8_t flags, uint64_t lba, uint32_t blocks)
{
    memset(cdb, 0, 16);
    cdb[0] = op;
    cdb[1] = flags;
    twl_put_be64(cdb + 2, lba);
    twl_put_be32(cdb + 10, blocks);
}

static void cdb10(uint8_t cdb[10], uint8_t op, uint8_t flags, uint32_t lba, uint16_t blocks)
{
    memset(cdb, 0, 10);
    cdb[0] = op;
    cdb[1] = flags;
    twl_put_be32(cdb + 2, lba);
    twl_put_be16(cdb + 7, blocks);
}

static void get_lba_status(uint64_t lba, uint32_t alloc)
{
    uint8_t cdb[16] = {0x9e, 0x12};
    twl_put_be64(cdb + 2, lba);
    twl_put_be32(cdb + 10, alloc);
    execute(cdb, sizeof(cdb), NULL);
    assert_good();
}

/* Descriptor i of the last GET LBA STATUS response. */
static void assert_lba_status(size_t i, uint64_t lba, uint32_t blocks, uint8_t status)
{
    const uint8_t *d = f->out + 8 + i * 16;
    assert_true(f->plan.data_len >= 8 + (i + 1) * 16);
    assert_int_equal(twl_get_be64(d), lba);
    assert_int_equal(twl_get_be32(d + 8), blocks);
    assert_int_equal(d[12], status);
    for (size_t k = 13; k < 16; k++)
        assert_int_equal(d[k], 0);
}

#define MAPPED      0
#define DEALLOCATED 1

/* ---- COMPARE AND WRITE ---- */

static void compare_and_write_match(void **state)
{
    (void)state;
    uint8_t old[2 * BS], next[2 * BS], around[BS], data[4 * BS];
    pattern(old, sizeof(old), 1);
    pattern(next, sizeof(next), 2);
    pattern(around, sizeof(around), 3);
    put(9, around, 1);
    put(10, old, 2);
    put(12, around, 1);

    memcpy(data, old, sizeof(old));
    memcpy(data + sizeof(old), next, sizeof(next));
    uint8_t cdb[16];
    caw_cdb(cdb, 10, 2);
    execute(cdb, sizeof(cdb), data);
    assert_good();
    assert_blocks_equal(10, next, 2);
    assert_blocks_equal(9, around, 1);
    assert_blocks_equal(12, around, 1);
}

static void compare_and_write_miscompare(void **state)
{
    (void)state;
    uint8_t old[2 * BS], next[2 * BS], data[4 * BS];
    pattern(old, sizeof(old), 1);
    pattern(next, sizeof(next), 2);
    put(10, old, 2);

    /* a difference at byte 700 (in the second block) and a later one: 700 is reported */
    memcpy(data, old, sizeof(old));
    data[700] ^= 0x40;
    data[900] ^= 0x40;
    memcpy(data + sizeof(old), next, sizeof(next));
    uint8_t cdb[16];
    caw_cdb(cdb, 10, 2);
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY, true, 700);
    assert_blocks_equal(10, old, 2); /* nothing written */

    /* the very first byte */
    memcpy(data, old, sizeof(old));
    data[0] ^= 0x01;
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY, true, 0);
    assert_blocks_equal(10, old, 2);
}

static void compare_and_write_unwritten_blocks_compare_as_zeros(void **state)
{
    (void)state;
    /* a hole reads as zeros (LBPRZ), so zeros compare equal */
    uint8_t data[2 * BS], next[BS];
    pattern(next, sizeof(next), 4);
    memset(data, 0, BS);
    memcpy(data + BS, next, BS);
    uint8_t cdb[16];
    caw_cdb(cdb, 5000, 1);
    execute(cdb, sizeof(cdb), data);
    assert_good();
    assert_blocks_equal(5000, next, 1);
}

/* ---- ORWRITE ---- */

static void orwrite_ors_the_bytes(void **state)
{
    (void)state;
    uint8_t disk[3 * BS], data[3 * BS], want[3 * BS], around[BS];
    for (size_t i = 0; i < sizeof(disk); i++) {
        disk[i] = (uint8_t)(i & 0x55);
        data[i] = (uint8_t)((i * 3) & 0xaa);
        want[i] = disk[i] | data[i];
    }
    pattern(around, sizeof(around), 9);
    put(99, around, 1);
    put(100, disk, 3);
    put(103, around, 1);

    uint8_t cdb[16];
    cdb16(cdb, 0x8b, 0, 100, 3);
    execute(cdb, sizeof(cdb), data);
    assert_good();
    assert_blocks_equal(100, want, 3);
    /* the Data-Out now holds what was written, for the replica */
    assert_memory_equal(data, want, sizeof(want));
    assert_blocks_equal(99, around, 1);
    assert_blocks_equal(103, around, 1);
}

/* ---- VERIFY ---- */

static void verify_bytchk_1(void **state)
{
    (void)state;
    uint8_t disk[4 * BS], data[4 * BS];
    pattern(disk, sizeof(disk), 5);
    put(200, disk, 4);
    memcpy(data, disk, sizeof(data));

    uint8_t cdb[10];
    cdb10(cdb, 0x2f, 0x02, 200, 4);
    execute(cdb, sizeof(cdb), data);
    assert_good();

    data[3 * BS + 17] ^= 0x80;
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY, true, 3 * BS + 17);
    assert_blocks_equal(200, disk, 4); /* VERIFY never writes */
}

static void verify_bytchk_1_offset_past_the_first_step(void **state)
{
    (void)state;
    /* 3000 blocks take the executor more than one 1 MiB step: the offset must count the
     * steps already compared. */
    f->lun.max_transfer_blocks = 4096;
    const uint32_t blocks = 3000;
    uint8_t *disk = scratch_data;
    pattern(disk, blocks * BS, 6);
    put(1000, disk, blocks);

    uint8_t cdb[16];
    cdb16(cdb, 0x8f, 0x02, 1000, blocks);
    execute(cdb, sizeof(cdb), disk);
    assert_good();

    const uint32_t at = (1u << 20) + 5 * BS + 3;
    disk[at] ^= 0x01;
    execute(cdb, sizeof(cdb), disk);
    assert_sense(SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY, true, at);
}

static void verify_bytchk_3(void **state)
{
    (void)state;
    uint8_t block[BS], disk[8 * BS];
    pattern(block, sizeof(block), 7);
    for (size_t i = 0; i < 8; i++)
        memcpy(disk + i * BS, block, BS);
    put(300, disk, 8);

    uint8_t cdb[10];
    cdb10(cdb, 0x2f, 0x06, 300, 8);
    execute(cdb, sizeof(cdb), block);
    assert_good();

    /* The one block stands for the whole range (SBC: duplicated into the Data-Out Buffer),
     * so the offset of a difference in the fourth block counts the three before it. */
    disk[3 * BS + 17] ^= 0x02;
    put(300, disk, 8);
    execute(cdb, sizeof(cdb), block);
    assert_sense(SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY, true, 3 * BS + 17);

    /* unwritten blocks against a zero block */
    uint8_t zero[BS] = {0};
    cdb10(cdb, 0x2f, 0x06, 8000, 64);
    execute(cdb, sizeof(cdb), zero);
    assert_good();
}

/* ---- WRITE SAME ---- */

static void write_same_pattern(void **state)
{
    (void)state;
    uint8_t block[BS], around[BS];
    pattern(block, sizeof(block), 11);
    pattern(around, sizeof(around), 12);
    put(99, around, 1);
    put(110, around, 1);

    uint8_t cdb[10];
    cdb10(cdb, 0x41, 0, 100, 10);
    execute(cdb, sizeof(cdb), block);
    assert_good();
    for (uint64_t lba = 100; lba < 110; lba++)
        assert_blocks_equal(lba, block, 1);
    assert_blocks_equal(99, around, 1);
    assert_blocks_equal(110, around, 1);
}

static void write_same_pattern_several_steps(void **state)
{
    (void)state;
    /* more than one 1 MiB step of the executor, ending off a step boundary */
    f->lun.max_transfer_blocks = 8192;
    const uint32_t blocks = 2 * 2048 + 37;
    uint8_t block[BS], around[BS];
    pattern(block, sizeof(block), 13);
    pattern(around, sizeof(around), 14);
    put(20000 + blocks, around, 1);

    uint8_t cdb[16];
    cdb16(cdb, 0x93, 0, 20000, blocks);
    execute(cdb, sizeof(cdb), block);
    assert_good();
    get(20000, scratch_read, blocks);
    for (uint32_t i = 0; i < blocks; i++)
        assert_memory_equal(scratch_read + (size_t)i * BS, block, BS);
    assert_blocks_equal(20000 + blocks, around, 1);
}

static void write_same_unmap_deallocates(void **state)
{
    (void)state;
    uint8_t data[64 * BS], zero[BS] = {0};
    pattern(data, sizeof(data), 15);
    put(0, data, 64);

    uint8_t cdb[16];
    cdb16(cdb, 0x93, 0x08, 16, 16); /* two whole pages */
    execute(cdb, sizeof(cdb), zero);
    assert_good();
    assert_blocks_zero(16, 16);
    assert_blocks_equal(0, data, 16);
    assert_blocks_equal(32, data + 32 * BS, 32);

    get_lba_status(16, 4096);
    assert_lba_status(0, 16, 16, DEALLOCATED);
    get_lba_status(0, 4096);
    assert_lba_status(0, 0, 16, MAPPED);
    assert_lba_status(1, 16, 16, DEALLOCATED);
    assert_lba_status(2, 32, 32, MAPPED);
    assert_lba_status(3, 64, LU_BLOCKS - 64, DEALLOCATED);
    assert_int_equal(f->plan.data_len, 8 + 4 * 16);
    assert_int_equal(twl_get_be32(f->out), 4 + 4 * 16);
}

static void write_same_unmap_unaligned_reads_zeros(void **state)
{
    (void)state;
    /* Blocks 3..7 are part of the page 0..7: the page stays, those blocks read as zeros. */
    uint8_t data[16 * BS], zero[BS] = {0};
    pattern(data, sizeof(data), 16);
    put(0, data, 16);

    uint8_t cdb[10];
    cdb10(cdb, 0x41, 0x08, 3, 5);
    execute(cdb, sizeof(cdb), zero);
    assert_good();
    assert_blocks_equal(0, data, 3);
    assert_blocks_zero(3, 5);
    assert_blocks_equal(8, data + 8 * BS, 8);
}

static void write_same_unmap_ignores_the_block(void **state)
{
    (void)state;
    /* SBC-3 (the standard this target follows, and what libiscsi's WriteSame*.UnmapUntilEnd
     * checks): with UNMAP set the blocks are deallocated whatever the Data-Out block holds, and
     * read back as zeros (LBPRZ). SBC-4 4.7.3.4.4 later asks for the write instead when the
     * block is not zeros; initiators send zeros with UNMAP, so the two agree in practice. */
    uint8_t block[BS], around[BS];
    pattern(block, sizeof(block), 17);
    pattern(around, sizeof(around), 18);
    put(31, around, 1);
    put(40, around, 1);
    put(32, block, 1);

    uint8_t cdb[16];
    cdb16(cdb, 0x93, 0x08, 32, 8);
    execute(cdb, sizeof(cdb), block);
    assert_good();
    assert_blocks_zero(32, 8);
    assert_blocks_equal(31, around, 1);
    assert_blocks_equal(40, around, 1);
}

static void write_same_ndob(void **state)
{
    (void)state;
    uint8_t data[32 * BS];
    pattern(data, sizeof(data), 19);
    put(64, data, 32);

    uint8_t cdb[16];
    cdb16(cdb, 0x93, 0x01, 70, 4); /* NDOB, no Data-Out at all */
    execute(cdb, sizeof(cdb), NULL);
    assert_good();
    assert_int_equal(f->plan.data_out, 0);
    assert_blocks_equal(64, data, 6);
    assert_blocks_zero(70, 4);
    assert_blocks_equal(74, data + 10 * BS, 22);

    cdb16(cdb, 0x93, 0x09, 80, 8); /* NDOB + UNMAP on a whole page */
    execute(cdb, sizeof(cdb), NULL);
    assert_good();
    assert_blocks_zero(80, 8);
    assert_blocks_equal(88, data + 24 * BS, 8);
    get_lba_status(80, 4096);
    assert_lba_status(0, 80, 8, DEALLOCATED);
}

static void write_same_anchor_zeroes(void **state)
{
    (void)state;
    uint8_t data[16 * BS], zero[BS] = {0};
    pattern(data, sizeof(data), 20);
    put(128, data, 16);

    uint8_t cdb[16];
    cdb16(cdb, 0x93, 0x18, 130, 4); /* ANCHOR + UNMAP */
    execute(cdb, sizeof(cdb), zero);
    assert_good();
    assert_blocks_equal(128, data, 2);
    assert_blocks_zero(130, 4);
    assert_blocks_equal(134, data + 6 * BS, 10);
}

static void write_same_fua_syncs(void **state)
{
    (void)state;
    /* with the write cache off the plan is FUA; the executor syncs and still succeeds */
    f->lun.write_cache = false;
    uint8_t block[BS];
    pattern(block, sizeof(block), 21);
    uint8_t cdb[10];
    cdb10(cdb, 0x41, 0, 500, 3);
    execute(cdb, sizeof(cdb), block);
    assert_true(f->plan.fua);
    assert_good();
    for (uint64_t lba = 500; lba < 503; lba++)
        assert_blocks_equal(lba, block, 1);
}

/* ---- UNMAP ---- */

static size_t unmap_param(uint8_t *p, const struct scsi_extent *ext, size_t n)
{
    memset(p, 0, 8 + n * 16);
    twl_put_be16(p, (uint16_t)(6 + n * 16));
    twl_put_be16(p + 2, (uint16_t)(n * 16));
    for (size_t i = 0; i < n; i++) {
        twl_put_be64(p + 8 + i * 16, ext[i].lba);
        twl_put_be32(p + 8 + i * 16 + 8, ext[i].blocks);
    }
    return 8 + n * 16;
}

static void unmap_two_extents(void **state)
{
    (void)state;
    uint8_t *data = scratch_data;
    pattern(data, 128 * BS, 22);
    put(0, data, 128);

    const struct scsi_extent ext[] = {{8, 8}, {64, 16}};
    uint8_t p[8 + 2 * 16];
    size_t len = unmap_param(p, ext, 2);
    uint8_t cdb[10] = {0x42};
    twl_put_be16(cdb + 7, (uint16_t)len);
    execute(cdb, sizeof(cdb), p);
    assert_int_equal(f->plan.action, SCSI_ACTION_UNMAP);
    assert_good();

    assert_blocks_equal(0, data, 8);
    assert_blocks_zero(8, 8);
    assert_blocks_equal(16, data + 16 * BS, 48);
    assert_blocks_zero(64, 16);
    assert_blocks_equal(80, data + 80 * BS, 48);

    /* mapped and deallocated alternate, the first descriptor starting at the LBA asked for */
    get_lba_status(0, 4096);
    assert_int_equal(twl_get_be32(f->out), 4 + 6 * 16);
    assert_int_equal(f->plan.data_len, 8 + 6 * 16);
    assert_lba_status(0, 0, 8, MAPPED);
    assert_lba_status(1, 8, 8, DEALLOCATED);
    assert_lba_status(2, 16, 48, MAPPED);
    assert_lba_status(3, 64, 16, DEALLOCATED);
    assert_lba_status(4, 80, 48, MAPPED);
    assert_lba_status(5, 128, LU_BLOCKS - 128, DEALLOCATED);
    assert_int_equal(f->out[8 + 6 * 16], 0xee);
}

static void unmap_bad_list_changes_nothing(void **state)
{
    (void)state;
    uint8_t data[16 * BS];
    pattern(data, sizeof(data), 23);
    put(0, data, 16);

    /* the second extent runs past the end: refused before anything is deallocated */
    const struct scsi_extent ext[] = {{0, 16}, {LU_BLOCKS - 1, 2}};
    uint8_t p[8 + 2 * 16];
    size_t len = unmap_param(p, ext, 2);
    uint8_t cdb[10] = {0x42};
    twl_put_be16(cdb + 7, (uint16_t)len);
    execute(cdb, sizeof(cdb), p);
    assert_sense(SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE, false, 0);
    assert_blocks_equal(0, data, 16);
}

/* ---- GET LBA STATUS ---- */

static void lba_status_fresh_lu(void **state)
{
    (void)state;
    get_lba_status(0, 4096);
    assert_int_equal(f->plan.data_len, 24);
    assert_int_equal(twl_get_be32(f->out), 20);
    assert_int_equal(twl_get_be32(f->out + 4), 0);
    assert_lba_status(0, 0, LU_BLOCKS, DEALLOCATED);

    get_lba_status(100, 4096);
    assert_lba_status(0, 100, LU_BLOCKS - 100, DEALLOCATED);

    get_lba_status(LU_BLOCKS - 1, 4096);
    assert_lba_status(0, LU_BLOCKS - 1, 1, DEALLOCATED);
}

static void lba_status_starts_at_the_requested_lba(void **state)
{
    (void)state;
    uint8_t data[PAGE_BLOCKS * BS];
    pattern(data, sizeof(data), 24);
    put(8, data, PAGE_BLOCKS); /* the page 8..15 */

    get_lba_status(10, 4096);
    assert_lba_status(0, 10, 6, MAPPED);
    assert_lba_status(1, 16, LU_BLOCKS - 16, DEALLOCATED);
    assert_int_equal(f->plan.data_len, 8 + 2 * 16);

    get_lba_status(3, 4096);
    assert_lba_status(0, 3, 5, DEALLOCATED);
    assert_lba_status(1, 8, 8, MAPPED);
    assert_lba_status(2, 16, LU_BLOCKS - 16, DEALLOCATED);
}

static void lba_status_allocation_length(void **state)
{
    (void)state;
    uint8_t data[PAGE_BLOCKS * BS];
    pattern(data, sizeof(data), 25);
    put(8, data, PAGE_BLOCKS);
    put(32, data, PAGE_BLOCKS);

    /* room for one descriptor: exactly one comes back, and the header describes that
     * response (SBC lets the device server return fewer descriptors than exist) */
    get_lba_status(0, 24);
    assert_int_equal(f->plan.data_len, 24);
    assert_int_equal(twl_get_be32(f->out), 20);
    assert_lba_status(0, 0, 8, DEALLOCATED);
    assert_int_equal(f->out[24], 0xee);

    /* less than one descriptor: the data is clipped, the header still says 20 */
    get_lba_status(0, 20);
    assert_int_equal(f->plan.data_len, 20);
    assert_int_equal(twl_get_be32(f->out), 20);
    assert_int_equal(twl_get_be64(f->out + 8), 0);
    assert_int_equal(twl_get_be32(f->out + 16), 8);
    assert_int_equal(f->out[20], 0xee);

    get_lba_status(0, 8);
    assert_int_equal(f->plan.data_len, 8);
    assert_int_equal(twl_get_be32(f->out), 20);
    assert_int_equal(f->out[8], 0xee);

    /* two descriptors' room */
    get_lba_status(0, 40);
    assert_int_equal(f->plan.data_len, 40);
    assert_int_equal(twl_get_be32(f->out), 36);
    assert_lba_status(0, 0, 8, DEALLOCATED);
    assert_lba_status(1, 8, 8, MAPPED);

    /* everything */
    get_lba_status(0, 4096);
    assert_int_equal(twl_get_be32(f->out), 4 + 5 * 16);
    assert_lba_status(2, 16, 16, DEALLOCATED);
    assert_lba_status(3, 32, 8, MAPPED);
    assert_lba_status(4, 40, LU_BLOCKS - 40, DEALLOCATED);
}

/* ---- failures of the store ---- */

static void io_errors_carry_the_lba(void **state)
{
    (void)state;
    f->store.fd = -1; /* every system call on the store now fails (EBADF) */
    uint8_t data[4 * BS] = {0};
    uint8_t cdb[16];

    caw_cdb(cdb, 77, 2);
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR, true, 77);

    cdb16(cdb, 0x8b, 0, 78, 1);
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR, true, 78);

    cdb16(cdb, 0x8f, 0x02, 79, 2);
    execute(cdb, sizeof(cdb), data);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR, true, 79);

    uint8_t block[BS];
    pattern(block, sizeof(block), 26);
    cdb16(cdb, 0x93, 0, 80, 3);
    execute(cdb, sizeof(cdb), block);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR, true, 80);

    const struct scsi_extent ext[] = {{96, 8}};
    uint8_t p[8 + 16];
    size_t len = unmap_param(p, ext, 1);
    uint8_t unmap[10] = {0x42};
    twl_put_be16(unmap + 7, (uint16_t)len);
    execute(unmap, sizeof(unmap), p);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_WRITE_ERROR, true, 96);

    uint8_t glbas[16] = {0x9e, 0x12};
    twl_put_be64(glbas + 2, 81);
    twl_put_be32(glbas + 10, 4096);
    execute(glbas, sizeof(glbas), NULL);
    assert_sense(SCSI_SENSE_MEDIUM_ERROR, SCSI_ASC_READ_ERROR, true, 81);
    assert_int_equal(f->plan.data_len, 0);
}

/* Opens a new 4 MiB store NAME in the fixture's directory (its path into path). */
static int open_store(const char *name, bool thin, bool direct, char path[160], struct backing *b)
{
    snprintf(path, 160, "%s/%s", f->dir, name);
    struct tgt_lun_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    snprintf(cfg.path, sizeof(cfg.path), "%s", path);
    cfg.size_bytes = 4u << 20;
    cfg.block_size = BS;
    cfg.create = true;
    cfg.thin = thin;
    cfg.direct = direct;
    return backing_open(&cfg, b);
}

/* thin = false: the file gets all its space at open, so a full filesystem shows at start, not
 * in the middle of an initiator's write; a thin one stays sparse. */
static void thick_lu_is_allocated_at_open(void **state)
{
    (void)state;
    char path[160];
    struct backing thick;
    assert_int_equal(open_store("thick.img", false, false, path, &thick), 0);
    assert_false(thick.thin);
    struct stat st;
    assert_int_equal(fstat(thick.fd, &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 >= 4u << 20);
    backing_close(&thick);
    unlink(path);

    assert_true(f->store.thin);
    assert_int_equal(fstat(f->store.fd, &st), 0);
    assert_true((uint64_t)st.st_blocks * 512 < LU_BYTES);
}

/* A store opened with O_DIRECT takes buffers at any address: a replicated change's data sits
 * right after its header in the ring (64-byte aligned), and the partner writes it from there. */
static void direct_store_takes_unaligned_buffers(void **state)
{
    (void)state;
    char path[160];
    struct backing d;
    int rc = open_store("direct.img", true, true, path, &d);
    if (rc == -EINVAL) {
        unlink(path);
        skip(); /* this file system has no O_DIRECT */
    }
    assert_int_equal(rc, 0);
    /* 64 bytes past a 512-byte boundary, as a record's data in the ring can be */
    uint8_t *src = scratch_data + ((64u - (uintptr_t)scratch_data) & 511u);
    uint8_t *dst = scratch_read + ((64u - (uintptr_t)scratch_read) & 511u);
    for (size_t i = 0; i < 8 * BS; i++)
        src[i] = (uint8_t)(i * 7 + 1);
    assert_int_equal(backing_write_at(&d, src, 8 * BS, 16 * BS, false), 0);
    assert_int_equal(backing_write_at(&d, src, BS, 40 * BS, true), 0);
    memset(dst, 0, 8 * BS);
    assert_int_equal(backing_read_at(&d, dst, 8 * BS, 16 * BS), 0);
    assert_memory_equal(dst, src, 8 * BS);
    backing_close(&d);
    /* and the file holds them where they belong */
    uint8_t back[8 * BS];
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, 16 * BS, SEEK_SET), 0);
    assert_int_equal(fread(back, 1, 8 * BS, fp), 8 * BS);
    assert_memory_equal(back, src, 8 * BS);
    assert_int_equal(fseek(fp, 40 * BS, SEEK_SET), 0);
    assert_int_equal(fread(back, 1, BS, fp), BS);
    fclose(fp);
    unlink(path);
    assert_memory_equal(back, src, BS);
}

static void not_a_media_action(void **state)
{
    (void)state;
    memset(&f->plan, 0, sizeof(f->plan));
    f->plan.action = SCSI_ACTION_READ;
    media_execute(&f->store, &f->lun, &f->plan, NULL, f->out, sizeof(f->out));
    assert_sense(SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE, false, 0);
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        T(compare_and_write_match),
        T(compare_and_write_miscompare),
        T(compare_and_write_unwritten_blocks_compare_as_zeros),
        T(orwrite_ors_the_bytes),
        T(verify_bytchk_1),
        T(verify_bytchk_1_offset_past_the_first_step),
        T(verify_bytchk_3),
        T(write_same_pattern),
        T(write_same_pattern_several_steps),
        T(write_same_unmap_deallocates),
        T(write_same_unmap_unaligned_reads_zeros),
        T(write_same_unmap_ignores_the_block),
        T(write_same_ndob),
        T(write_same_anchor_zeroes),
        T(write_same_fua_syncs),
        T(unmap_two_extents),
        T(unmap_bad_list_changes_nothing),
        T(lba_status_fresh_lu),
        T(lba_status_starts_at_the_requested_lba),
        T(lba_status_allocation_length),
        T(io_errors_carry_the_lba),
        T(thick_lu_is_allocated_at_open),
        T(direct_store_takes_unaligned_buffers),
        T(not_a_media_action),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
