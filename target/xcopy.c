#include "xcopy.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "twl_common.h"

#define DESC_IDENTIFICATION 0xe4 /* identification descriptor target descriptor */
#define SEG_BLOCK_TO_BLOCK  0x02
#define B2B_DESCRIPTOR_LEN  0x18 /* DESCRIPTOR LENGTH of a 02h segment: 28 bytes less 4 */
#define MAX_DESIGNATOR_LEN  20   /* bytes 8-27 of an E4h descriptor */
#define NAA_LEN             16
#define DATA_SEGMENT_LOG2   9 /* every transfer is whole blocks, 512 bytes at least */

/* Fields of the parameter list header the errors point at. */
#define HDR_LIST_ID_USAGE 1
#define HDR_SEG_LIST_LEN  8
#define HDR_INLINE_LEN    12

/* Fields of a 02h segment descriptor, for the segment pointer of COPY ABORTED. */
#define SEG_SRC_ID  4
#define SEG_DST_ID  6
#define SEG_BLOCKS  10
#define SEG_SRC_LBA 12
#define SEG_DST_LBA 20

/* COPY STATUS: COPY MANAGER STATUS and TRANSFER COUNT UNITS (bytes, then powers of 1024). */
#define STATUS_IN_PROGRESS 0x00
#define STATUS_DONE        0x01
#define STATUS_FAILED      0x02

/* What the target descriptors said, checked only when a segment uses them: a list may carry
 * descriptors no segment refers to. */
struct cscd {
    int lu; /* index into lus, -1 when no LU of ours has the designator */
    bool nul;
    uint8_t device_type;
};

static void length_error(struct scsi_plan *plan)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
}

/* ILLEGAL REQUEST with a field pointer into the parameter list (C/D 0), and the bit when
 * bit >= 0, so the initiator's log names the refused field. */
static void param_error(struct scsi_plan *plan, uint16_t asc, size_t byte, int bit)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, asc);
    uint8_t sks = 0x80; /* SKSV */
    if (bit >= 0)
        sks |= 0x08 | (uint8_t)(bit & 0x07); /* BPV and bit pointer */
    plan->sense[15] = sks;
    twl_put_be16(plan->sense + 16, byte > UINT16_MAX ? UINT16_MAX : (uint16_t)byte);
}

static void cdb_error(struct scsi_plan *plan, uint16_t byte, int bit)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    uint8_t sks = 0x80 | 0x40; /* SKSV, C/D: the field is in the CDB */
    if (bit >= 0)
        sks |= 0x08 | (uint8_t)(bit & 0x07);
    plan->sense[15] = sks;
    twl_put_be16(plan->sense + 16, byte);
}

/* COPY ABORTED as SPC-4 describes it for an error met while processing a segment: bytes 2-3
 * of the COMMAND-SPECIFIC INFORMATION hold the segment number (bytes 0-1 would locate sense
 * data of a separate copy target; there is none, the LUs are ours), and the segment pointer
 * (SD set) names the field of that segment descriptor when field >= 0. */
static void copy_aborted(struct scsi_plan *plan, uint16_t asc, size_t seg, int field)
{
    scsi_plan_check_condition(plan, XCOPY_SENSE_COPY_ABORTED, asc);
    twl_put_be16(plan->sense + 10, seg > UINT16_MAX ? UINT16_MAX : (uint16_t)seg);
    if (field >= 0) {
        plan->sense[15] = 0x80 | 0x20; /* SKSV, SD: relative to the segment descriptor */
        twl_put_be16(plan->sense + 16, (uint16_t)field);
    }
}

static bool range_ok(const struct scsi_lun *lun, uint64_t lba, uint64_t blocks)
{
    return lba <= lun->block_count && blocks <= lun->block_count - lba;
}

/* Checks one E4h descriptor at param + off. Only its form can be wrong here; whether it names
 * a usable LU matters when a segment refers to it. */
static int parse_identification(const uint8_t *param, size_t off, const struct xcopy_lu *lus,
                                size_t lu_count, struct cscd *t, struct scsi_plan *plan)
{
    const uint8_t *d = param + off;
    /* LU ID TYPE (byte 1 bits 7-6) qualifies a LU IDENTIFIER field, which E4h has not: it is
     * ignored, as libiscsi 1.19's ExtendedCopy.ValidTgtDescr expects (GOOD for 10b). */
    uint8_t desig_len = d[7];
    if (desig_len > MAX_DESIGNATOR_LEN) {
        param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, off + 7, -1);
        return -1;
    }
    t->lu = -1;
    t->nul = d[1] & 0x20;
    t->device_type = d[1] & 0x1f;
    /* Binary code set, associated with the LU, NAA: the form VPD 83h reports for each LU. */
    bool naa =
        (d[4] & 0x0f) == 0x1 && (d[5] & 0x30) == 0 && (d[5] & 0x0f) == 0x3 && desig_len == NAA_LEN;
    for (size_t i = 0; naa && i < lu_count; i++) {
        if (memcmp(d + 8, lus[i].info->naa, NAA_LEN) == 0) {
            t->lu = (int)i;
            break;
        }
    }
    /* DISK BLOCK LENGTH 0 leaves it to the copy manager; any other value is the initiator's
     * idea of the LU, and LBAs computed with a wrong one would copy the wrong blocks. */
    uint32_t block_len = twl_get_be24(d + 29);
    if (t->lu >= 0 && t->device_type == 0 && block_len != 0 &&
        block_len != lus[t->lu].info->block_size) {
        param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, off + 29, -1);
        return -1;
    }
    return 0;
}

/* The LU a segment's descriptor id names, or -1 with COPY ABORTED. */
static int resolve(uint16_t id, const struct cscd *t, size_t count, size_t seg, int field,
                   struct scsi_plan *plan)
{
    if (id >= count || t[id].lu < 0 || t[id].nul) {
        /* a null device would discard writes and read as zeros: not something we copy to */
        copy_aborted(plan, XCOPY_ASC_TARGET_NOT_REACHABLE, seg, field);
        return -1;
    }
    if (t[id].device_type != 0) { /* every LU here is a direct-access block device */
        copy_aborted(plan, XCOPY_ASC_INCORRECT_TARGET_TYPE, seg, field);
        return -1;
    }
    return t[id].lu;
}

/* Checks the 02h segment descriptor number seg at param + off and fills *s. */
static int parse_segment(const uint8_t *param, size_t off, size_t seg, const struct cscd *t,
                         size_t tcount, const struct xcopy_lu *lus, struct xcopy_segment *s,
                         struct scsi_plan *plan)
{
    const uint8_t *d = param + off;
    int src = resolve(twl_get_be16(d + SEG_SRC_ID), t, tcount, seg, SEG_SRC_ID, plan);
    if (src < 0)
        return -1;
    int dst = resolve(twl_get_be16(d + SEG_DST_ID), t, tcount, seg, SEG_DST_ID, plan);
    if (dst < 0)
        return -1;
    const struct scsi_lun *sl = lus[src].info;
    const struct scsi_lun *dl = lus[dst].info;
    if (dl->read_only) {
        scsi_plan_check_condition(plan, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
        return -1;
    }
    /* Equal block sizes keep every segment exact, so DC, CAT and PAD never matter. */
    if (sl->block_size != dl->block_size) {
        param_error(plan, XCOPY_ASC_INVALID_COPY_OPERATION, off + SEG_DST_ID, -1);
        return -1;
    }
    uint32_t blocks = twl_get_be16(d + SEG_BLOCKS);
    if ((uint64_t)blocks * dl->block_size > XCOPY_MAX_SEGMENT_BYTES) {
        param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, off + SEG_BLOCKS, -1);
        return -1;
    }
    /* The libiscsi suite (and SPC-4's model of a copy manager that learns it from the copy
     * target) wants COPY ABORTED here rather than ILLEGAL REQUEST; the segment pointer says
     * which LBA field is out of range. */
    uint64_t src_lba = twl_get_be64(d + SEG_SRC_LBA);
    if (!range_ok(sl, src_lba, blocks)) {
        copy_aborted(plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, seg, SEG_SRC_LBA);
        return -1;
    }
    uint64_t dst_lba = twl_get_be64(d + SEG_DST_LBA);
    if (!range_ok(dl, dst_lba, blocks)) {
        copy_aborted(plan, XCOPY_ASC_NO_ADDITIONAL_SENSE, seg, SEG_DST_LBA);
        return -1;
    }
    *s = (struct xcopy_segment){
        .src = (size_t)src,
        .dst = (size_t)dst,
        .src_lba = src_lba,
        .dst_lba = dst_lba,
        .blocks = blocks,
    };
    return 0;
}

int xcopy_parse(const uint8_t *param, size_t len, const struct xcopy_lu *lus, size_t lu_count,
                struct xcopy_segment *segs, size_t max, struct xcopy_list *list,
                struct scsi_plan *plan)
{
    list->id = 0;
    list->usage = XCOPY_LIST_NONE;
    if (len == 0)
        return 0; /* SPC-4: no data, not an error */
    if (len < XCOPY_HEADER_LEN) {
        length_error(plan);
        return -1;
    }

    uint8_t usage = (param[1] >> 3) & 0x03;
    if (usage == 0x01) { /* reserved */
        param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, HDR_LIST_ID_USAGE, 4);
        return -1;
    }
    if (usage == XCOPY_LIST_NONE && param[0] != 0) {
        param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 0, -1);
        return -1;
    }
    uint64_t tlen = twl_get_be16(param + 2);
    uint64_t slen = twl_get_be32(param + 8);
    uint64_t ilen = twl_get_be32(param + 12);
    if (tlen + slen > XCOPY_MAX_DESC_LIST_LEN) {
        length_error(plan);
        return -1;
    }
    if (ilen > 0) {
        param_error(plan, XCOPY_ASC_INLINE_DATA_EXCEEDED, HDR_INLINE_LEN, -1);
        return -1;
    }
    if (len < XCOPY_HEADER_LEN + tlen + slen) {
        length_error(plan);
        return -1;
    }

    struct cscd t[XCOPY_MAX_TARGET_DESCRIPTORS];
    size_t tcount = 0;
    size_t off = XCOPY_HEADER_LEN;
    size_t end = XCOPY_HEADER_LEN + (size_t)tlen;
    while (off < end) {
        if (tcount == XCOPY_MAX_TARGET_DESCRIPTORS) {
            param_error(plan, XCOPY_ASC_TOO_MANY_TARGETS, off, -1);
            return -1;
        }
        if (param[off] != DESC_IDENTIFICATION) {
            param_error(plan, XCOPY_ASC_UNSUPPORTED_TARGET, off, -1);
            return -1;
        }
        if (end - off < XCOPY_TARGET_DESC_LEN) { /* the list length cuts the descriptor */
            param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, 2, -1);
            return -1;
        }
        if (parse_identification(param, off, lus, lu_count, &t[tcount], plan) < 0)
            return -1;
        tcount++;
        off += XCOPY_TARGET_DESC_LEN;
    }

    size_t limit = max < XCOPY_MAX_SEGMENT_DESCRIPTORS ? max : XCOPY_MAX_SEGMENT_DESCRIPTORS;
    size_t count = 0;
    end += (size_t)slen;
    while (off < end) {
        if (count == limit) {
            param_error(plan, XCOPY_ASC_TOO_MANY_SEGMENTS, off, -1);
            return -1;
        }
        if (end - off < 4) {
            param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, HDR_SEG_LIST_LEN, -1);
            return -1;
        }
        if (param[off] != SEG_BLOCK_TO_BLOCK) {
            param_error(plan, XCOPY_ASC_UNSUPPORTED_SEGMENT, off, -1);
            return -1;
        }
        if (twl_get_be16(param + off + 2) != B2B_DESCRIPTOR_LEN) {
            param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, off + 2, -1);
            return -1;
        }
        if (end - off < XCOPY_SEGMENT_DESC_LEN) {
            param_error(plan, SCSI_ASC_INVALID_FIELD_IN_PARAM, HDR_SEG_LIST_LEN, -1);
            return -1;
        }
        if (parse_segment(param, off, count, t, tcount, lus, &segs[count], plan) < 0)
            return -1;
        count++;
        off += XCOPY_SEGMENT_DESC_LEN;
    }

    list->id = param[0];
    list->usage = (enum xcopy_list_usage)usage;
    return (int)count;
}

/* On one store, a destination above an overlapping source would overwrite source blocks not
 * read yet if copied front to back. */
static bool copy_backward(const struct xcopy_lu *lus, const struct xcopy_segment *s)
{
    return lus[s->src].store == lus[s->dst].store && s->dst_lba > s->src_lba &&
           s->dst_lba - s->src_lba < s->blocks;
}

static void copy_io_failed(struct scsi_plan *plan, bool write, int err, size_t seg)
{
    uint16_t asc = write ? SCSI_ASC_WRITE_ERROR : SCSI_ASC_READ_ERROR;
    if (err == -ENOSPC)
        asc = SCSI_ASC_SPACE_ALLOC_FAILED;
    copy_aborted(plan, asc, seg, -1);
}

static void next_segment(struct xcopy_cursor *cur)
{
    cur->seg++;
    cur->seg_done = 0;
    cur->done.segments++;
}

int xcopy_step(const struct xcopy_lu *lus, const struct xcopy_segment *segs, int count,
               struct xcopy_cursor *cur, uint8_t *buf, struct xcopy_chunk *chunk,
               struct scsi_plan *plan)
{
    while (cur->seg < count) {
        const struct xcopy_segment *s = &segs[cur->seg];
        uint32_t bs = lus[s->dst].info->block_size;
        uint64_t total = (uint64_t)s->blocks * bs;
        if (cur->seg_done >= total) { /* a segment of 0 blocks */
            next_segment(cur);
            continue;
        }
        uint64_t n = total - cur->seg_done;
        if (n > XCOPY_STEP_BYTES)
            n = XCOPY_STEP_BYTES / bs * bs;
        uint64_t pos = copy_backward(lus, s) ? total - cur->seg_done - n : cur->seg_done;
        int rc = backing_read_at(lus[s->src].store, buf, n, s->src_lba * bs + pos);
        if (rc) {
            copy_io_failed(plan, false, rc, (size_t)cur->seg);
            return -1;
        }
        bool fua = !lus[s->dst].info->write_cache;
        rc = backing_write_at(lus[s->dst].store, buf, n, s->dst_lba * bs + pos, fua);
        if (rc) {
            copy_io_failed(plan, true, rc, (size_t)cur->seg);
            return -1;
        }
        *chunk = (struct xcopy_chunk){
            .seg = cur->seg,
            .lu = s->dst,
            .lba = s->dst_lba + pos / bs,
            .blocks = (uint32_t)(n / bs),
            .block_size = bs,
            .fua = fua,
            .data = buf,
        };
        cur->seg_done += n;
        cur->done.bytes += n;
        if (cur->seg_done == total)
            next_segment(cur);
        return 1;
    }
    return 0;
}

void xcopy_execute(const struct xcopy_lu *lus, const struct xcopy_segment *segs, int count,
                   xcopy_written_fn written, void *ctx, struct scsi_plan *plan,
                   struct xcopy_progress *done)
{
    plan->status = SCSI_STATUS_GOOD;
    plan->sense_len = 0;
    plan->data_len = 0;
    struct xcopy_cursor cur = {0};
    uint8_t *buf = count > 0 ? aligned_alloc(4096, XCOPY_STEP_BYTES) : NULL;
    if (count > 0 && buf == NULL) {
        scsi_plan_check_condition(plan, SCSI_SENSE_HARDWARE_ERROR,
                                  SCSI_ASC_INTERNAL_TARGET_FAILURE);
        *done = cur.done;
        return;
    }
    struct xcopy_chunk chunk;
    while (xcopy_step(lus, segs, count, &cur, buf, &chunk, plan) > 0) {
        int err = written ? written(ctx, &chunk) : 0;
        if (err) {
            copy_aborted(plan, SCSI_ASC_WRITE_ERROR, (size_t)chunk.seg, -1);
            break;
        }
    }
    free(buf);
    *done = cur.done;
}

void xcopy_history_init(struct xcopy_history *h)
{
    memset(h, 0, sizeof(*h));
}

static struct xcopy_history_entry *find_entry(struct xcopy_history *h, uint8_t id)
{
    for (size_t i = 0; i < XCOPY_HISTORY_LEN; i++)
        if (h->e[i].used && h->e[i].list_id == id)
            return &h->e[i];
    return NULL;
}

/* A free entry, else the oldest finished one: an initiator that never reads its results must
 * not block later copies. NULL when every entry is a running copy. */
static struct xcopy_history_entry *free_entry(struct xcopy_history *h)
{
    struct xcopy_history_entry *oldest = NULL;
    for (size_t i = 0; i < XCOPY_HISTORY_LEN; i++) {
        struct xcopy_history_entry *e = &h->e[i];
        if (!e->used)
            return e;
        if (!e->running && (oldest == NULL || e->seq - oldest->seq > UINT32_MAX / 2))
            oldest = e;
    }
    return oldest;
}

int xcopy_history_begin(struct xcopy_history *h, const struct xcopy_list *list,
                        struct scsi_plan *plan)
{
    if (list->usage == XCOPY_LIST_NONE)
        return 0;
    struct xcopy_history_entry *e = find_entry(h, list->id);
    if (e && e->running) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  XCOPY_ASC_OPERATION_IN_PROGRESS);
        return -1;
    }
    if (e == NULL)
        e = free_entry(h);
    if (e == NULL) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  XCOPY_ASC_INSUFFICIENT_RESOURCES);
        return -1;
    }
    *e = (struct xcopy_history_entry){
        .used = true,
        .running = true,
        .list_id = list->id,
        .seq = ++h->seq,
    };
    return 0;
}

void xcopy_history_finish(struct xcopy_history *h, const struct xcopy_list *list, bool failed,
                          const struct xcopy_progress *done)
{
    if (list->usage == XCOPY_LIST_NONE)
        return;
    struct xcopy_history_entry *e = find_entry(h, list->id);
    if (list->usage != XCOPY_LIST_HOLD) {
        if (e)
            e->used = false;
        return;
    }
    if (e == NULL)
        e = free_entry(h);
    if (e == NULL)
        return; /* every entry is a running copy: this result cannot be kept */
    *e = (struct xcopy_history_entry){
        .used = true,
        .failed = failed,
        .list_id = list->id,
        .seq = ++h->seq,
        .done = *done,
    };
}

static size_t operating_parameters(uint8_t *d)
{
    memset(d, 0, XCOPY_OP_PARAMS_LEN);
    twl_put_be32(d, XCOPY_OP_PARAMS_LEN - 4);
    d[4] = 0x01; /* SNLID: LIST ID USAGE 11b (no list identifier) is supported */
    twl_put_be16(d + 8, XCOPY_MAX_TARGET_DESCRIPTORS);
    twl_put_be16(d + 10, XCOPY_MAX_SEGMENT_DESCRIPTORS);
    twl_put_be32(d + 12, XCOPY_MAX_DESC_LIST_LEN);
    twl_put_be32(d + 16, XCOPY_MAX_SEGMENT_BYTES);
    /* 20 MAXIMUM INLINE DATA LENGTH, 24 HELD DATA LIMIT, 28 MAXIMUM STREAM DEVICE TRANSFER
     * SIZE: 0, no inline data, held data or stream devices */
    twl_put_be16(d + 34, XCOPY_HISTORY_LEN); /* TOTAL CONCURRENT COPIES */
    d[36] = XCOPY_HISTORY_LEN;               /* MAXIMUM CONCURRENT COPIES */
    d[37] = DATA_SEGMENT_LOG2;
    d[43] = 2; /* IMPLEMENTED DESCRIPTOR LIST LENGTH, codes in ascending order */
    d[44] = SEG_BLOCK_TO_BLOCK;
    d[45] = DESC_IDENTIFICATION;
    return XCOPY_OP_PARAMS_LEN;
}

static size_t copy_status(const struct xcopy_history_entry *e, uint8_t *d)
{
    memset(d, 0, XCOPY_COPY_STATUS_LEN);
    twl_put_be32(d, XCOPY_COPY_STATUS_LEN - 4);
    d[4] = e->running ? STATUS_IN_PROGRESS : e->failed ? STATUS_FAILED : STATUS_DONE;
    twl_put_be16(d + 5, e->done.segments);
    /* TRANSFER COUNT UNITS: bytes, or the smallest power of 1024 the count fits in */
    uint64_t count = e->done.bytes;
    uint8_t units = 0;
    while (count > UINT32_MAX) {
        count >>= 10;
        units++;
    }
    d[7] = units;
    twl_put_be32(d + 8, (uint32_t)count);
    return XCOPY_COPY_STATUS_LEN;
}

void xcopy_receive_results(const uint8_t *cdb, struct xcopy_history *h, uint8_t *buf, size_t buflen,
                           struct scsi_plan *plan)
{
    uint8_t sa = cdb[1] & 0x1f;
    uint32_t alloc = twl_get_be32(cdb + 10);
    uint8_t d[XCOPY_OP_PARAMS_LEN];
    struct xcopy_history_entry *e = NULL;
    size_t len;

    plan->data_len = 0;
    if (sa == XCOPY_RCR_OP_PARAMS) {
        len = operating_parameters(d);
    } else if (sa == XCOPY_RCR_COPY_STATUS) {
        e = h ? find_entry(h, cdb[2]) : NULL;
        if (e == NULL) {
            cdb_error(plan, 2, -1); /* no such copy: SPC-4 names the LIST IDENTIFIER */
            return;
        }
        len = copy_status(e, d);
    } else {
        cdb_error(plan, 1, 4); /* RECEIVE DATA and FAILED SEGMENT DETAILS: nothing is held */
        return;
    }
    size_t n = len;
    if (n > alloc)
        n = alloc;
    if (n > buflen)
        n = buflen;
    if (n > 0)
        memcpy(buf, d, n);
    plan->data_len = (uint32_t)n;
    /* A finished copy's status is discarded once the initiator got all of it. */
    if (e && !e->running && n == len)
        e->used = false;
}

size_t xcopy_vpd_page(uint8_t *d)
{
    memset(d + 2, 0, XCOPY_VPD_LEN - 2);
    twl_put_be16(d + 2, XCOPY_VPD_LEN - 4);
    uint8_t *p = d + 4;

    /* Supported Commands: the list length byte, then per command opcode, count of service
     * actions, the service actions; the descriptor padded to a multiple of 4 */
    static const uint8_t commands[] = {
        XCOPY_OPCODE,        1, XCOPY_SA_LID1, XCOPY_RCR_OPCODE, 2, XCOPY_RCR_COPY_STATUS,
        XCOPY_RCR_OP_PARAMS,
    };
    twl_put_be16(p, 0x0001);
    twl_put_be16(p + 2, 8);
    p[4] = sizeof(commands);
    memcpy(p + 5, commands, sizeof(commands));
    p += 12;

    /* Parameter Data */
    twl_put_be16(p, 0x0004);
    twl_put_be16(p + 2, 28);
    twl_put_be16(p + 8, XCOPY_MAX_TARGET_DESCRIPTORS);
    twl_put_be16(p + 10, XCOPY_MAX_SEGMENT_DESCRIPTORS);
    twl_put_be32(p + 12, XCOPY_MAX_DESC_LIST_LEN);
    /* 16-19 MAXIMUM INLINE DATA LENGTH: 0 */
    p += 32;

    /* Supported Descriptors */
    twl_put_be16(p, 0x0008);
    twl_put_be16(p + 2, 4);
    p[4] = 2;
    p[5] = SEG_BLOCK_TO_BLOCK;
    p[6] = DESC_IDENTIFICATION;
    p += 8;

    /* Supported CSCD Descriptor IDs beyond 0000h-07FFh: none */
    twl_put_be16(p, 0x000c);
    twl_put_be16(p + 2, 4);
    p += 8;

    /* General Copy Operations */
    twl_put_be16(p, 0x8001);
    twl_put_be16(p + 2, 32);
    twl_put_be32(p + 4, XCOPY_HISTORY_LEN); /* TOTAL CONCURRENT COPIES */
    twl_put_be32(p + 8, XCOPY_HISTORY_LEN); /* MAXIMUM IDENTIFIED CONCURRENT COPIES */
    twl_put_be32(p + 12, XCOPY_MAX_SEGMENT_BYTES);
    p[16] = DATA_SEGMENT_LOG2;
    p += 36;

    return (size_t)(p - d);
}
