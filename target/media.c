#include "media.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "twl_common.h"

#define PART "media"

/* WRITE SAME and VERIFY work through the range in steps of this size. */
#define STEP_BYTES (1u << 20)

/* GET LBA STATUS: header, then 16-byte descriptors (SBC-3 5.5). */
#define LBA_STATUS_HDR  8
#define LBA_STATUS_DESC 16
#define LBA_STATUS_MAX  64 /* descriptors per response */

static void io_failed(struct scsi_plan *plan, bool write, int err, uint64_t lba)
{
    uint8_t key = SCSI_SENSE_MEDIUM_ERROR;
    uint16_t asc = write ? SCSI_ASC_WRITE_ERROR : SCSI_ASC_READ_ERROR;
    if (err == -ENOSPC) {
        key = SCSI_SENSE_DATA_PROTECT;
        asc = SCSI_ASC_SPACE_ALLOC_FAILED;
    }
    scsi_plan_check_condition_info(plan, key, asc, lba);
}

static uint8_t *alloc_aligned(size_t len)
{
    return aligned_alloc(4096, (len + 4095) & ~(size_t)4095);
}

static void no_memory(struct scsi_plan *plan)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_HARDWARE_ERROR, SCSI_ASC_INTERNAL_TARGET_FAILURE);
}

/* Reads the command's blocks, lets change() turn them into what is to be written (false: write
 * nothing, plan says why), and writes them back. The caller holds the range lock, so nothing
 * else writes in between. */
static void read_modify_write(struct backing *store, const struct scsi_lun *lun,
                              struct scsi_plan *plan, uint8_t *data,
                              bool (*change)(uint8_t *cur, uint8_t *data, size_t len,
                                             struct scsi_plan *plan))
{
    size_t len = (size_t)plan->blocks * lun->block_size;
    uint64_t off = plan->lba * lun->block_size;
    uint8_t *cur = alloc_aligned(len); /* aligned for O_DIRECT stores */
    if (cur == NULL) {
        no_memory(plan);
        return;
    }
    int rc = backing_read_at(store, cur, len, off);
    if (rc) {
        io_failed(plan, false, rc, plan->lba);
    } else if (change(cur, data, len, plan)) {
        rc = backing_write_at(store, cur, len, off, plan->fua);
        if (rc)
            io_failed(plan, true, rc, plan->lba);
    }
    free(cur);
}

/* COMPARE AND WRITE: data = blocks to compare, then blocks to write. */
static bool compare_then_replace(uint8_t *cur, uint8_t *data, size_t len, struct scsi_plan *plan)
{
    size_t diff = scsi_first_difference(cur, data, len);
    if (diff < len) {
        scsi_plan_miscompare(plan, diff);
        return false;
    }
    memcpy(cur, data + len, len);
    return true;
}

/* ORWRITE: the result also goes back into data, for the replica. */
static bool or_into(uint8_t *cur, uint8_t *data, size_t len, struct scsi_plan *plan)
{
    (void)plan;
    for (size_t i = 0; i < len; i++)
        cur[i] |= data[i];
    memcpy(data, cur, len);
    return true;
}

/* VERIFY with BYTCHK 1 (data covers every block) or 3 (one block, compared with each). */
static void verify(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                   const uint8_t *data)
{
    uint32_t bs = lun->block_size;
    uint32_t step_blocks = STEP_BYTES / bs;
    uint8_t *cur = alloc_aligned(STEP_BYTES);
    if (cur == NULL) {
        no_memory(plan);
        return;
    }
    for (uint32_t done = 0; done < plan->blocks;) {
        uint32_t n = plan->blocks - done < step_blocks ? plan->blocks - done : step_blocks;
        int rc = backing_read_at(store, cur, (size_t)n * bs, (plan->lba + done) * bs);
        if (rc) {
            io_failed(plan, false, rc, plan->lba + done);
            break;
        }
        size_t diff = (size_t)n * bs;
        if (plan->bytchk == 1) {
            diff = scsi_first_difference(cur, data + (size_t)done * bs, (size_t)n * bs);
        } else {
            for (uint32_t i = 0; i < n; i++) {
                size_t d = scsi_first_difference(cur + (size_t)i * bs, data, bs);
                if (d < bs) {
                    diff = (size_t)i * bs + d;
                    break;
                }
            }
        }
        if (diff < (size_t)n * bs) {
            scsi_plan_miscompare(plan, (uint64_t)done * bs + diff);
            break;
        }
        done += n;
    }
    free(cur);
}

static bool all_zero(const uint8_t *p, size_t len)
{
    return len == 0 || (p[0] == 0 && memcmp(p, p + 1, len - 1) == 0);
}

static void write_same(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                       const uint8_t *block)
{
    uint32_t bs = lun->block_size;
    uint64_t off = plan->lba * bs;
    uint64_t len = (uint64_t)plan->blocks * bs;
    bool anchor = plan->anchor;
    int rc;
    static const uint8_t zero_block[4096];
    if (plan->ndob)
        block = zero_block;

    /* UNMAP deallocates whatever the block holds (reads then return zeros, LBPRZ); ANCHOR and
     * a zero block without UNMAP keep the space allocated and zeroed. */
    if (plan->unmap && !anchor) {
        rc = backing_deallocate(store, off, len);
    } else if (all_zero(block, bs) || anchor) {
        rc = backing_zero(store, off, len);
    } else {
        uint32_t step_blocks = STEP_BYTES / bs;
        uint8_t *pattern = alloc_aligned(STEP_BYTES);
        if (pattern == NULL) {
            no_memory(plan);
            return;
        }
        for (uint32_t i = 0; i < step_blocks; i++)
            memcpy(pattern + (size_t)i * bs, block, bs);
        rc = 0;
        for (uint32_t done = 0; done < plan->blocks && rc == 0;) {
            uint32_t n = plan->blocks - done < step_blocks ? plan->blocks - done : step_blocks;
            rc = backing_write_at(store, pattern, (size_t)n * bs, off + (uint64_t)done * bs, false);
            done += n;
        }
        free(pattern);
    }
    if (rc == 0 && plan->fua)
        rc = backing_sync(store);
    if (rc)
        io_failed(plan, true, rc, plan->lba);
}

static void unmap(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                  const uint8_t *param)
{
    struct scsi_extent ext[256];
    int n = scsi_unmap_parse(lun, param, plan->data_out, ext, sizeof(ext) / sizeof(ext[0]), plan);
    for (int i = 0; i < n; i++) {
        if (ext[i].blocks == 0)
            continue;
        int rc = backing_deallocate(store, ext[i].lba * lun->block_size,
                                    (uint64_t)ext[i].blocks * lun->block_size);
        if (rc) {
            io_failed(plan, true, rc, ext[i].lba);
            return;
        }
    }
}

/* Reports mapped/deallocated extents from plan->lba on, in whole blocks: a block is mapped
 * when any byte of it is. */
static void lba_status(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                       uint8_t *out, size_t cap)
{
    uint32_t bs = lun->block_size;
    uint8_t d[LBA_STATUS_HDR + LBA_STATUS_MAX * LBA_STATUS_DESC];
    size_t want = plan->alloc_len < cap ? plan->alloc_len : cap;
    size_t max_desc = want > LBA_STATUS_HDR ? (want - LBA_STATUS_HDR) / LBA_STATUS_DESC : 0;
    if (max_desc == 0)
        max_desc = 1; /* the header still reports the length of one descriptor */
    if (max_desc > LBA_STATUS_MAX)
        max_desc = LBA_STATUS_MAX;
    uint64_t lba = plan->lba;
    size_t count = 0;
    while (count < max_desc && lba < lun->block_count) {
        uint64_t left = (lun->block_count - lba) * bs;
        uint64_t limit = left < (uint64_t)UINT32_MAX * bs ? left : (uint64_t)UINT32_MAX * bs;
        uint64_t len;
        bool mapped;
        int rc = backing_extent(store, lba * bs, limit, &len, &mapped);
        if (rc) {
            io_failed(plan, false, rc, lba);
            return;
        }
        /* a partly allocated block counts as mapped, so holes shrink to whole blocks */
        uint64_t blocks = mapped ? (len + bs - 1) / bs : len / bs;
        if (blocks == 0) {
            mapped = true;
            blocks = 1;
        }
        if (count > 0) {
            uint8_t *prev = d + LBA_STATUS_HDR + (count - 1) * LBA_STATUS_DESC;
            if ((prev[12] == 0) == mapped && twl_get_be32(prev + 8) + blocks <= UINT32_MAX) {
                twl_put_be32(prev + 8, (uint32_t)(twl_get_be32(prev + 8) + blocks));
                lba += blocks;
                continue;
            }
        }
        uint8_t *p = d + LBA_STATUS_HDR + count * LBA_STATUS_DESC;
        memset(p, 0, LBA_STATUS_DESC);
        twl_put_be64(p, lba);
        twl_put_be32(p + 8, (uint32_t)blocks);
        p[12] = mapped ? 0 : 1;
        count++;
        lba += blocks;
    }
    size_t total = LBA_STATUS_HDR + count * LBA_STATUS_DESC;
    memset(d, 0, LBA_STATUS_HDR);
    twl_put_be32(d, (uint32_t)(total - 4));
    size_t n = total < want ? total : want;
    memcpy(out, d, n);
    plan->data_len = (uint32_t)n;
}

void media_execute(struct backing *store, const struct scsi_lun *lun, struct scsi_plan *plan,
                   uint8_t *data, uint8_t *out, size_t out_cap)
{
    plan->status = SCSI_STATUS_GOOD;
    plan->sense_len = 0;
    plan->data_len = 0;
    switch (plan->action) {
    case SCSI_ACTION_COMPARE_AND_WRITE:
        read_modify_write(store, lun, plan, data, compare_then_replace);
        break;
    case SCSI_ACTION_ORWRITE:
        read_modify_write(store, lun, plan, data, or_into);
        break;
    case SCSI_ACTION_VERIFY:
        verify(store, lun, plan, data);
        break;
    case SCSI_ACTION_WRITE_SAME:
        write_same(store, lun, plan, data);
        break;
    case SCSI_ACTION_UNMAP:
        unmap(store, lun, plan, data);
        break;
    case SCSI_ACTION_GET_LBA_STATUS:
        lba_status(store, lun, plan, out, out_cap);
        break;
    default:
        scsi_plan_check_condition(plan, SCSI_SENSE_HARDWARE_ERROR,
                                  SCSI_ASC_INTERNAL_TARGET_FAILURE);
        break;
    }
    if (plan->status != SCSI_STATUS_GOOD)
        TWL_DEBUG(PART, "LUN %u LBA %llu+%u: action %d ended with sense %x/%02x%02x", lun->id,
                  (unsigned long long)plan->lba, plan->blocks, plan->action, plan->sense[2],
                  plan->sense[12], plan->sense[13]);
}
