/*
 * SCSI command decoding and emulation (SPC-4 / SBC-3 subset).
 *
 * Every emulated response is built whole in a small scratch buffer and then clipped to the
 * allocation length and the caller's buffer, so the header length fields always describe the
 * full response as SPC requires, whatever the initiator asked for.
 */
#include "scsi.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "twl_common.h"
#include "xcopy.h"

/* Operation codes handled here */
#define OP_TEST_UNIT_READY 0x00
#define OP_REQUEST_SENSE   0x03
#define OP_READ_6          0x08
#define OP_WRITE_6         0x0a
#define OP_INQUIRY         0x12
#define OP_MODE_SENSE_6    0x1a
#define OP_READ_CAPACITY   0x25
#define OP_READ_10         0x28
#define OP_WRITE_10        0x2a
#define OP_SYNC_CACHE_10   0x35
#define OP_MODE_SENSE_10   0x5a
#define OP_READ_16         0x88
#define OP_WRITE_16        0x8a
#define OP_SYNC_CACHE_16   0x91
#define OP_SAI_16          0x9e
#define OP_REPORT_LUNS     0xa0
#define OP_READ_12         0xa8
#define OP_WRITE_12        0xaa
#define OP_MODE_SELECT_6   0x15
#define OP_RESERVE_6       0x16
#define OP_RELEASE_6       0x17
#define OP_START_STOP_UNIT 0x1b
#define OP_PREVENT_ALLOW   0x1e
#define OP_WRITE_VERIFY_10 0x2e
#define OP_VERIFY_10       0x2f
#define OP_PREFETCH_10     0x34
#define OP_READ_DEFECT_10  0x37
#define OP_WRITE_SAME_10   0x41
#define OP_UNMAP           0x42
#define OP_MODE_SELECT_10  0x55
#define OP_PR_IN           0x5e
#define OP_PR_OUT          0x5f
#define OP_COMPARE_WRITE   0x89
#define OP_ORWRITE_16      0x8b
#define OP_WRITE_VERIFY_16 0x8e
#define OP_VERIFY_16       0x8f
#define OP_PREFETCH_16     0x90
#define OP_WRITE_SAME_16   0x93
#define OP_MAINT_IN        0xa3
#define OP_MAINT_OUT       0xa4
#define OP_WRITE_VERIFY_12 0xae
#define OP_VERIFY_12       0xaf
#define OP_READ_DEFECT_12  0xb7
#define OP_EXTENDED_COPY   XCOPY_OPCODE
#define OP_RECEIVE_COPY    XCOPY_RCR_OPCODE

#define SAI_READ_CAPACITY_16 0x10
#define SAI_GET_LBA_STATUS   0x12
#define MI_REPORT_TPGS       0x0a
#define MO_SET_TPGS          0x0a
#define MI_REPORT_OPCODES    0x0c
#define MI_REPORT_TMFS       0x0d

/* Limits this layer enforces and reports in the block limits VPD page. */
#define MAX_COMPARE_WRITE_BLOCKS 255
#define MAX_UNMAP_DESCRIPTORS    256
#define MAX_UNMAP_BLOCKS         0xffffffffu
#define MAX_PARAM_LIST           65536 /* PR OUT, UNMAP, MODE SELECT parameter lists */

/* Command timeouts reported by REPORT SUPPORTED OPERATION CODES with RCTD, in seconds. */
#define NOMINAL_TIMEOUT_S     30
#define RECOMMENDED_TIMEOUT_S 60

/* VPD pages, in the ascending order page 0x00 must list them */
#define VPD_SUPPORTED    0x00
#define VPD_SERIAL       0x80
#define VPD_DEVICE_ID    0x83
#define VPD_BLOCK_LIMITS 0xb0
#define VPD_BLOCK_CHARS  0xb1
#define VPD_PROVISIONING 0xb2

#define MODE_PAGE_CACHING 0x08
#define MODE_PAGE_CONTROL 0x0a
#define MODE_PAGE_IEC     0x1c
#define MODE_PAGE_ALL     0x3f

#define MODE_PC_CHANGEABLE 1
#define MODE_PC_DEFAULT    2
#define MODE_PC_SAVED      3

#define DEV_SPECIFIC_DPOFUA 0x10

#define STD_INQUIRY_LEN 66

/* A single portal group per node for now; its tag names the target port in VPD 0x83. */

/* Locally chosen IEEE company ID (CID form: second hex digit A) for NAA 6 designators; not a
 * registered OUI, so it cannot collide with a vendor's assigned space. */
#define NAA_COMPANY_ID 0x0a544cu

/* Largest emulated response (VPD 0x83 with a 223-byte iSCSI name) fits with room to spare. */
#define SCRATCH_LEN 512

struct cmd {
    const struct scsi_lun *lun;
    const struct scsi_target_view *view;
    const uint8_t *cdb;
    uint8_t *buf;
    size_t buflen;
};

typedef void (*cmd_handler)(const struct cmd *c, struct scsi_plan *plan);

#define NO_SA 0xffff

struct opcode_info {
    uint8_t opcode;
    uint16_t sa; /* service action (byte 1, bits 4:0) or NO_SA */
    uint8_t cdb_len;
    bool needs_lun;
    cmd_handler handler;
};

static const struct opcode_info *find_opcode(uint8_t opcode, uint8_t sa);

void scsi_sense_build_fixed(uint8_t out[SCSI_SENSE_FIXED_LEN], uint8_t key, uint16_t asc_ascq)
{
    memset(out, 0, SCSI_SENSE_FIXED_LEN);
    out[0] = 0x70; /* current error, fixed format */
    out[2] = key & 0x0f;
    out[7] = SCSI_SENSE_FIXED_LEN - 8;
    out[12] = (uint8_t)(asc_ascq >> 8);
    out[13] = (uint8_t)asc_ascq;
}

void scsi_plan_check_condition(struct scsi_plan *plan, uint8_t key, uint16_t asc_ascq)
{
    plan->action = SCSI_ACTION_COMPLETE;
    plan->status = SCSI_STATUS_CHECK_CONDITION;
    plan->data_len = 0;
    scsi_sense_build_fixed(plan->sense, key, asc_ascq);
    plan->sense_len = SCSI_SENSE_FIXED_LEN;
}

void scsi_plan_check_condition_info(struct scsi_plan *plan, uint8_t key, uint16_t asc_ascq,
                                    uint64_t info)
{
    scsi_plan_check_condition(plan, key, asc_ascq);
    twl_put_be32(plan->sense + 3, (uint32_t)info);
    /* VALID promises the INFORMATION field holds the whole value; a truncated one must not. */
    if (info <= UINT32_MAX)
        plan->sense[0] |= 0x80;
}

/* INVALID FIELD IN CDB with the sense-key-specific field pointer, so the initiator's log says
 * which byte (and bit, when bit >= 0) was refused. */
static void invalid_field(struct scsi_plan *plan, uint16_t byte, int bit)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
    uint8_t sks = 0x80 | 0x40; /* SKSV, C/D = error in the CDB */
    if (bit >= 0)
        sks |= 0x08 | (uint8_t)(bit & 0x07); /* BPV and bit pointer */
    plan->sense[15] = sks;
    twl_put_be16(plan->sense + 16, byte);
}

static void lba_out_of_range(struct scsi_plan *plan)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LBA_OUT_OF_RANGE);
}

/* Copies a fully built response to the caller, clipped to the allocation length and buflen. */
static void respond(const struct cmd *c, struct scsi_plan *plan, const uint8_t *data, size_t len,
                    uint32_t alloc_len)
{
    size_t n = len;
    if (n > alloc_len)
        n = alloc_len;
    if (n > c->buflen)
        n = c->buflen;
    if (n > 0)
        memcpy(c->buf, data, n);
    plan->data_len = (uint32_t)n;
}

/* Overflow-safe check that [lba, lba + blocks) lies inside the LUN. */
static bool range_ok(const struct scsi_lun *lun, uint64_t lba, uint64_t blocks)
{
    return lba <= lun->block_count && blocks <= lun->block_count - lba;
}

static uint64_t last_lba(const struct scsi_lun *lun)
{
    return lun->block_count ? lun->block_count - 1 : 0;
}

static void copy_padded(uint8_t *dst, const char *src, size_t width)
{
    size_t n = strlen(src);
    memset(dst, ' ', width);
    memcpy(dst, src, n < width ? n : width);
}

static size_t inquiry_standard(const struct scsi_lun *lun, bool explicit_alua, uint8_t *d)
{
    memset(d, 0, STD_INQUIRY_LEN);
    d[0] = lun ? 0x00 : 0x7f; /* qualifier 3 / type 1Fh: no LU at this LUN */
    d[2] = 0x06;              /* SPC-4 */
    d[3] = 0x10 | 0x02;       /* HISUP, response data format 2 */
    d[4] = STD_INQUIRY_LEN - 5;
    /* TPGS 01b: implicit ALUA, the nodes move LUs themselves (takeover, giveback); 11b when
     * initiators may move them too (SET TARGET PORT GROUPS). 3PC: EXTENDED COPY */
    d[5] = (explicit_alua ? 0x30 : 0x10) | 0x08;
    d[7] = 0x02; /* CMDQUE */
    copy_padded(d + 8, "TWINLUN", 8);
    copy_padded(d + 16, "twinlun disk", 16);
    copy_padded(d + 32, "0001", 4);
    /* Version descriptors: SAM-5, iSCSI, SPC-4, SBC-3 */
    twl_put_be16(d + 58, 0x00a0);
    twl_put_be16(d + 60, 0x0960);
    twl_put_be16(d + 62, 0x0460);
    twl_put_be16(d + 64, 0x04c0);
    return STD_INQUIRY_LEN;
}

static size_t vpd_supported(const struct scsi_lun *lun, uint8_t *d)
{
    static const uint8_t pages[] = {VPD_SUPPORTED,   VPD_SERIAL,       VPD_DEVICE_ID,
                                    XCOPY_VPD_PAGE,  VPD_BLOCK_LIMITS, VPD_BLOCK_CHARS,
                                    VPD_PROVISIONING};
    /* A missing LU has no identity or limits to describe; only this page exists for it. */
    size_t n = lun ? sizeof(pages) : 1;
    memcpy(d + 4, pages, n);
    twl_put_be16(d + 2, (uint16_t)n);
    return 4 + n;
}

static size_t vpd_serial(const struct scsi_lun *lun, uint8_t *d)
{
    size_t n = strnlen(lun->serial, sizeof(lun->serial) - 1);
    memcpy(d + 4, lun->serial, n);
    twl_put_be16(d + 2, (uint16_t)n);
    return 4 + n;
}

/* One designation descriptor header; returns the offset of its designator. */
static size_t designator(uint8_t *p, uint8_t proto_codeset, uint8_t piv_assoc_type, uint8_t len)
{
    p[0] = proto_codeset;
    p[1] = piv_assoc_type;
    p[2] = 0;
    p[3] = len;
    return 4;
}

static size_t vpd_device_id(const struct scsi_lun *lun, const struct scsi_target_view *view,
                            uint8_t *d)
{
    size_t off = 4;

    /* NAA, binary, associated with the LU */
    off += designator(d + off, 0x01, 0x03, sizeof(lun->naa));
    memcpy(d + off, lun->naa, sizeof(lun->naa));
    off += sizeof(lun->naa);

    if (view && view->target_name) {
        /* SCSI name string of the target port: iSCSI protocol (PIV), UTF-8, NUL terminated
         * and padded to a multiple of 4 as SPC-4 requires. The designator is at most 255
         * bytes, which an iSCSI name (at most 223 bytes) never reaches. */
        char name[256];
        int n =
            snprintf(name, sizeof(name), "%s,t,0x%04x", view->target_name, view->relative_port_id);
        size_t len = n < 0 ? 0 : (size_t)n;
        if (len > 251)
            len = 251;
        size_t padded = (len + 1 + 3) & ~(size_t)3;
        off += designator(d + off, 0x53, 0x98, (uint8_t)padded);
        memset(d + off, 0, padded);
        memcpy(d + off, name, len);
        off += padded;
    }

    /* Relative target port identifier and target port group, both of the target port */
    off += designator(d + off, 0x51, 0x94, 4);
    memset(d + off, 0, 2);
    twl_put_be16(d + off + 2, view ? view->relative_port_id : 0);
    off += 4;
    off += designator(d + off, 0x51, 0x95, 4);
    memset(d + off, 0, 2);
    twl_put_be16(d + off + 2, view ? view->target_port_group : 0);
    off += 4;

    twl_put_be16(d + 2, (uint16_t)(off - 4));
    return off;
}

static size_t vpd_block_limits(const struct scsi_lun *lun, uint8_t *d)
{
    memset(d + 4, 0, 60);
    twl_put_be16(d + 2, 60);
    d[5] = MAX_COMPARE_WRITE_BLOCKS;
    /* Backing stores work in 4 KiB pages; smaller I/O costs a read-modify-write. */
    uint32_t granularity = lun->block_size && lun->block_size < 4096 ? 4096 / lun->block_size : 1;
    twl_put_be16(d + 6, (uint16_t)granularity);
    twl_put_be32(d + 8, lun->max_transfer_blocks);
    twl_put_be32(d + 12, lun->max_transfer_blocks);
    twl_put_be32(d + 16, lun->max_transfer_blocks); /* maximum PRE-FETCH length */
    if (lun->thin) {
        twl_put_be32(d + 20, MAX_UNMAP_BLOCKS);
        twl_put_be32(d + 24, MAX_UNMAP_DESCRIPTORS);
        twl_put_be32(d + 28, granularity); /* holes are punched in whole pages */
        twl_put_be32(d + 32, 0x80000000u); /* UGAVALID, alignment 0 */
    }
    /* Bounded like a transfer, so one WRITE SAME never holds its range (and a worker) for
     * long. */
    twl_put_be64(d + 36, lun->max_transfer_blocks);
    return 64;
}

static size_t vpd_block_chars(uint8_t *d)
{
    memset(d + 4, 0, 60);
    twl_put_be16(d + 2, 60);
    twl_put_be16(d + 4, 1); /* non-rotating medium */
    return 64;
}

static size_t vpd_provisioning(const struct scsi_lun *lun, uint8_t *d)
{
    memset(d + 4, 0, 4);
    twl_put_be16(d + 2, 4);
    if (lun->thin) {
        /* LBPU, LBPWS, LBPWS10, LBPRZ (a hole reads as zeros), ANC_SUP; thin provisioned. */
        d[5] = 0x80 | 0x40 | 0x20 | 0x04 | 0x02;
        d[6] = 0x02;
    }
    return 8;
}

static void cmd_inquiry(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    bool evpd = cdb[1] & 0x01;
    uint8_t page = cdb[2];
    uint32_t alloc = twl_get_be16(cdb + 3);
    uint8_t d[SCRATCH_LEN];
    size_t len;

    if (cdb[1] & 0x02) {
        invalid_field(plan, 1, 1); /* CmdDt is obsolete in SPC-4 */
        return;
    }
    if (!evpd) {
        if (page != 0) {
            invalid_field(plan, 2, -1);
            return;
        }
        len = inquiry_standard(c->lun, c->view && c->view->explicit_alua, d);
        respond(c, plan, d, len, alloc);
        return;
    }

    memset(d, 0, 4);
    d[0] = c->lun ? 0x00 : 0x7f;
    d[1] = page;
    if (page == VPD_SUPPORTED) {
        len = vpd_supported(c->lun, d);
    } else if (!c->lun) {
        invalid_field(plan, 2, -1);
        return;
    } else if (page == VPD_SERIAL) {
        len = vpd_serial(c->lun, d);
    } else if (page == VPD_DEVICE_ID) {
        len = vpd_device_id(c->lun, c->view, d);
    } else if (page == XCOPY_VPD_PAGE) {
        len = xcopy_vpd_page(d);
    } else if (page == VPD_BLOCK_LIMITS) {
        len = vpd_block_limits(c->lun, d);
    } else if (page == VPD_BLOCK_CHARS) {
        len = vpd_block_chars(d);
    } else if (page == VPD_PROVISIONING) {
        len = vpd_provisioning(c->lun, d);
    } else {
        invalid_field(plan, 2, -1);
        return;
    }
    respond(c, plan, d, len, alloc);
}

static void cmd_test_unit_ready(const struct cmd *c, struct scsi_plan *plan)
{
    (void)c;
    (void)plan;
}

static void cmd_request_sense(const struct cmd *c, struct scsi_plan *plan)
{
    bool desc = c->cdb[1] & 0x01;
    uint32_t alloc = c->cdb[4];
    uint8_t key = SCSI_SENSE_NO_SENSE;
    uint16_t asc = SCSI_ASC_NONE;
    uint8_t d[SCSI_SENSE_FIXED_LEN];

    /* SPC-4: for an unsupported LU the sense data itself (with GOOD status) says so; a pending
     * unit attention is reported (and so cleared) this way too. */
    if (!c->lun) {
        key = SCSI_SENSE_ILLEGAL_REQUEST;
        asc = SCSI_ASC_LUN_NOT_SUPPORTED;
    } else if (c->view && c->view->pending_ua) {
        key = SCSI_SENSE_UNIT_ATTENTION;
        asc = c->view->pending_ua;
    }
    if (desc) {
        memset(d, 0, 8);
        d[0] = 0x72;
        d[1] = key;
        d[2] = (uint8_t)(asc >> 8);
        d[3] = (uint8_t)asc;
        respond(c, plan, d, 8, alloc);
        return;
    }
    scsi_sense_build_fixed(d, key, asc);
    respond(c, plan, d, SCSI_SENSE_FIXED_LEN, alloc);
}

static void cmd_report_luns(const struct cmd *c, struct scsi_plan *plan)
{
    uint8_t select = c->cdb[2];
    uint32_t alloc = twl_get_be32(c->cdb + 6);

    /* 00h all LUs, 01h well-known LUs only (we have none), 02h both */
    if (select > 0x02) {
        invalid_field(plan, 2, -1);
        return;
    }
    if (alloc < 16) {
        invalid_field(plan, 6, -1);
        return;
    }

    size_t limit = alloc < c->buflen ? alloc : c->buflen;
    size_t count = 0;
    size_t ids = (select == 0x01 || !c->view || !c->view->lun_ids) ? 0 : c->view->lun_count;
    uint8_t entry[8];

    for (size_t i = 0; i < ids; i++) {
        uint32_t id = c->view->lun_ids[i];
        /* Single-level LUNs stop at 16383 (flat space); larger ids cannot be addressed. */
        if (id > 0x3fff)
            continue;
        memset(entry, 0, sizeof(entry));
        if (id < 256) {
            entry[1] = (uint8_t)id; /* peripheral device addressing, bus 0 */
        } else {
            entry[0] = 0x40 | (uint8_t)(id >> 8);
            entry[1] = (uint8_t)id;
        }
        size_t off = 8 + count * 8;
        for (size_t k = 0; k < 8 && off + k < limit; k++)
            c->buf[off + k] = entry[k];
        count++;
    }

    uint8_t hdr[8] = {0};
    twl_put_be32(hdr, (uint32_t)(count * 8));
    for (size_t k = 0; k < 8 && k < limit; k++)
        c->buf[k] = hdr[k];
    size_t total = 8 + count * 8;
    plan->data_len = (uint32_t)(total < limit ? total : limit);
}

static void read_capacity_10(const struct cmd *c, struct scsi_plan *plan)
{
    /* The LBA and PMI fields are obsolete in SBC-3 and are ignored. */
    uint8_t d[8];
    uint64_t last = last_lba(c->lun);
    twl_put_be32(d, last > UINT32_MAX ? UINT32_MAX : (uint32_t)last);
    twl_put_be32(d + 4, c->lun->block_size);
    respond(c, plan, d, sizeof(d), sizeof(d));
}

static void read_capacity_16(const struct cmd *c, struct scsi_plan *plan)
{
    uint32_t alloc = twl_get_be32(c->cdb + 10);
    uint8_t d[32] = {0};
    twl_put_be64(d, last_lba(c->lun));
    twl_put_be32(d + 8, c->lun->block_size);
    d[13] = c->lun->lbppbe & 0x0f;
    if (c->lun->thin)
        d[14] = 0x80 | 0x40; /* LBPME, LBPRZ: a deallocated block reads as zeros */
    respond(c, plan, d, sizeof(d), alloc);
}

static void get_lba_status(const struct cmd *c, struct scsi_plan *plan)
{
    uint64_t lba = twl_get_be64(c->cdb + 2);
    uint32_t alloc = twl_get_be32(c->cdb + 10);
    if (lba >= c->lun->block_count) {
        lba_out_of_range(plan);
        return;
    }
    if (alloc == 0)
        return;
    plan->action = SCSI_ACTION_GET_LBA_STATUS;
    plan->lba = lba;
    plan->alloc_len = alloc;
}

/* Reads the LBA and transfer length of a block command; false if the CDB kind is unknown. */
static void decode_lba_len(const uint8_t *cdb, uint64_t *lba, uint32_t *blocks, uint16_t *len_field)
{
    switch (cdb[0]) {
    case OP_READ_6:
    case OP_WRITE_6:
        *lba = twl_get_be24(cdb + 1) & 0x1fffff;
        *blocks = cdb[4] ? cdb[4] : 256; /* SBC-3: zero means 256 blocks for the 6-byte forms */
        *len_field = 4;
        break;
    case OP_READ_10:
    case OP_WRITE_10:
    case OP_WRITE_VERIFY_10:
    case OP_VERIFY_10:
    case OP_PREFETCH_10:
    case OP_WRITE_SAME_10:
    case OP_SYNC_CACHE_10:
        *lba = twl_get_be32(cdb + 2);
        *blocks = twl_get_be16(cdb + 7);
        *len_field = 7;
        break;
    case OP_READ_12:
    case OP_WRITE_12:
    case OP_WRITE_VERIFY_12:
    case OP_VERIFY_12:
        *lba = twl_get_be32(cdb + 2);
        *blocks = twl_get_be32(cdb + 6);
        *len_field = 6;
        break;
    case OP_COMPARE_WRITE:
        *lba = twl_get_be64(cdb + 2);
        *blocks = cdb[13];
        *len_field = 13;
        break;
    default: /* the 16-byte forms */
        *lba = twl_get_be64(cdb + 2);
        *blocks = twl_get_be32(cdb + 10);
        *len_field = 10;
        break;
    }
}

static void write_protected(struct scsi_plan *plan)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_DATA_PROTECT, SCSI_ASC_WRITE_PROTECTED);
}

/* Common checks of the commands that address a range of blocks: protection field (no
 * protection information is formatted, so anything but 0 is refused), range, transfer limit.
 * Returns false with plan set when the command ends here. */
static bool check_block_range(const struct cmd *c, struct scsi_plan *plan, uint64_t *lba,
                              uint32_t *blocks, bool limit)
{
    const uint8_t *cdb = c->cdb;
    uint16_t len_field;
    decode_lba_len(cdb, lba, blocks, &len_field);
    bool six = cdb[0] == OP_READ_6 || cdb[0] == OP_WRITE_6;
    if (!six && (cdb[1] & 0xe0)) {
        invalid_field(plan, 1, 7);
        return false;
    }
    if (!range_ok(c->lun, *lba, *blocks)) {
        lba_out_of_range(plan);
        return false;
    }
    if (limit && c->lun->max_transfer_blocks && *blocks > c->lun->max_transfer_blocks) {
        invalid_field(plan, len_field, -1);
        return false;
    }
    /* Without a limit the bytes can still exceed what a plan (and an iSCSI expected data
     * transfer length) counts in 32 bits: data_out would wrap. */
    if (limit && (uint64_t)*blocks * c->lun->block_size > UINT32_MAX) {
        invalid_field(plan, len_field, -1);
        return false;
    }
    return true;
}

static void media_access(const struct cmd *c, struct scsi_plan *plan, enum scsi_action action)
{
    uint64_t lba;
    uint32_t blocks;
    if (!check_block_range(c, plan, &lba, &blocks, true))
        return;
    if (action == SCSI_ACTION_WRITE && c->lun->read_only) {
        write_protected(plan);
        return;
    }
    if (blocks == 0)
        return; /* not an error (SBC-3): nothing to transfer */
    bool six = c->cdb[0] == OP_READ_6 || c->cdb[0] == OP_WRITE_6;
    plan->action = action;
    plan->lba = lba;
    plan->blocks = blocks;
    plan->fua = !six && (c->cdb[1] & 0x08);
    if (action == SCSI_ACTION_WRITE) {
        plan->data_out = blocks * c->lun->block_size;
        /* WRITE AND VERIFY: the data is verified once it is on the medium; a write-through
         * write is that. With the write cache off every write is. */
        if (c->cdb[0] == OP_WRITE_VERIFY_10 || c->cdb[0] == OP_WRITE_VERIFY_12 ||
            c->cdb[0] == OP_WRITE_VERIFY_16 || !c->lun->write_cache)
            plan->fua = true;
    }
}

static void cmd_read(const struct cmd *c, struct scsi_plan *plan)
{
    media_access(c, plan, SCSI_ACTION_READ);
}

static void cmd_write(const struct cmd *c, struct scsi_plan *plan)
{
    media_access(c, plan, SCSI_ACTION_WRITE);
}

static void cmd_write_verify(const struct cmd *c, struct scsi_plan *plan)
{
    /* BYTCHK 2 is reserved (SBC-4); 0 and 1 both end with the data verified on the medium. */
    if ((c->cdb[1] & 0x06) == 0x04) {
        invalid_field(plan, 1, 2);
        return;
    }
    media_access(c, plan, SCSI_ACTION_WRITE);
}

static void cmd_verify(const struct cmd *c, struct scsi_plan *plan)
{
    uint64_t lba;
    uint32_t blocks;
    uint8_t bytchk = (c->cdb[1] >> 1) & 0x03;
    if (bytchk == 2) {
        invalid_field(plan, 1, 2);
        return;
    }
    if (!check_block_range(c, plan, &lba, &blocks, true))
        return;
    /* BYTCHK 0 asks for a medium verification: the store reports read errors on access, and
     * there is nothing more to check. */
    if (blocks == 0 || bytchk == 0)
        return;
    plan->action = SCSI_ACTION_VERIFY;
    plan->lba = lba;
    plan->blocks = blocks;
    plan->bytchk = bytchk;
    plan->data_out = (bytchk == 3 ? 1 : blocks) * c->lun->block_size;
}

static void cmd_prefetch(const struct cmd *c, struct scsi_plan *plan)
{
    uint64_t lba;
    uint32_t blocks;
    if (!check_block_range(c, plan, &lba, &blocks, false))
        return;
    /* The page cache of the store does the prefetching; there is always room for the range
     * (SBC-3 5.9: CONDITION MET). */
    plan->status = SCSI_STATUS_CONDITION_MET;
}

/* COMPARE AND WRITE and ORWRITE: they read the blocks and write them back changed. */
static void plan_read_modify_write(const struct cmd *c, struct scsi_plan *plan,
                                   enum scsi_action action, uint32_t max_blocks,
                                   uint32_t data_copies)
{
    uint64_t lba;
    uint32_t blocks;
    uint16_t len_field;
    if (!check_block_range(c, plan, &lba, &blocks, true))
        return;
    if (blocks > max_blocks) {
        decode_lba_len(c->cdb, &lba, &blocks, &len_field);
        invalid_field(plan, len_field, -1);
        return;
    }
    if (c->lun->read_only) {
        write_protected(plan);
        return;
    }
    if (blocks == 0)
        return;
    plan->action = action;
    plan->lba = lba;
    plan->blocks = blocks;
    plan->fua = (c->cdb[1] & 0x08) || !c->lun->write_cache;
    plan->data_out = data_copies * blocks * c->lun->block_size;
}

static void cmd_compare_and_write(const struct cmd *c, struct scsi_plan *plan)
{
    /* the Data-Out carries the blocks to compare, then the blocks to write */
    plan_read_modify_write(c, plan, SCSI_ACTION_COMPARE_AND_WRITE, MAX_COMPARE_WRITE_BLOCKS, 2);
}

static void cmd_orwrite(const struct cmd *c, struct scsi_plan *plan)
{
    plan_read_modify_write(c, plan, SCSI_ACTION_ORWRITE, UINT32_MAX, 1);
}

static void cmd_write_same(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    uint64_t lba;
    uint32_t blocks;
    bool sixteen = cdb[0] == OP_WRITE_SAME_16;
    bool anchor = cdb[1] & 0x10;
    bool unmap = cdb[1] & 0x08;
    /* NDOB (SBC-4, 16-byte form): no Data-Out, the block is all zeros. In WRITE SAME(10) the
     * bit is the obsolete LBDATA. */
    bool ndob = sixteen && (cdb[1] & 0x01);
    if (!sixteen && (cdb[1] & 0x01)) {
        invalid_field(plan, 1, 0);
        return;
    }
    if (cdb[1] & 0x02) {
        invalid_field(plan, 1, 1); /* obsolete PBDATA */
        return;
    }
    if (!check_block_range(c, plan, &lba, &blocks, false))
        return;
    /* SBC-3 5.45: ANCHOR needs UNMAP, and anchoring needs a thin LU (ANC_SUP). */
    if (anchor && (!unmap || !c->lun->thin)) {
        invalid_field(plan, 1, 4);
        return;
    }
    /* A thick LU reports LBPWS/LBPWS10 0: unmapping through WRITE SAME is refused. */
    if (unmap && !c->lun->thin) {
        invalid_field(plan, 1, 3);
        return;
    }
    if (c->lun->read_only) {
        write_protected(plan);
        return;
    }
    /* WSNZ is 0: zero blocks means from lba to the end of the LU, within the limit. */
    uint64_t count = blocks ? blocks : c->lun->block_count - lba;
    if (count == 0 || count > UINT32_MAX ||
        (c->lun->max_transfer_blocks && count > c->lun->max_transfer_blocks)) {
        invalid_field(plan, (uint16_t)(sixteen ? 10 : 7), -1);
        return;
    }
    blocks = (uint32_t)count;
    plan->action = SCSI_ACTION_WRITE_SAME;
    plan->lba = lba;
    plan->blocks = blocks;
    /* An anchored block keeps its space and reads as zeros: the store zeroes it in place. */
    plan->unmap = unmap;
    plan->anchor = anchor;
    plan->fua = !c->lun->write_cache;
    plan->data_out = ndob ? 0 : c->lun->block_size;
    plan->ndob = ndob;
}

static void cmd_unmap(const struct cmd *c, struct scsi_plan *plan)
{
    uint32_t len = twl_get_be16(c->cdb + 7);
    if (!c->lun->thin) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
        return;
    }
    if (c->cdb[1] & 0x01) {
        invalid_field(plan, 1, 0); /* ANCHOR: anchored deallocation only via WRITE SAME */
        return;
    }
    if (c->lun->read_only) {
        write_protected(plan);
        return;
    }
    if (len == 0)
        return;
    if (len < 8) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    plan->action = SCSI_ACTION_UNMAP;
    plan->data_out = len;
}

static void invalid_param_field(struct scsi_plan *plan, uint16_t byte)
{
    scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_PARAM);
    plan->sense[15] = 0x80; /* SKSV, C/D 0: the field is in the parameter list */
    twl_put_be16(plan->sense + 16, byte);
}

int scsi_unmap_parse(const struct scsi_lun *lun, const uint8_t *param, size_t len,
                     struct scsi_extent *out, size_t max, struct scsi_plan *plan)
{
    if (len < 8) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return -1;
    }
    /* Descriptors beyond what the list carries are ignored, as SBC-3 allows for a data
     * length larger than the parameter list. */
    size_t desc_len = twl_get_be16(param + 2);
    if (desc_len > len - 8)
        desc_len = len - 8;
    size_t count = desc_len / 16;
    if (count > MAX_UNMAP_DESCRIPTORS || count > max) {
        invalid_param_field(plan, 2);
        return -1;
    }
    uint64_t total = 0;
    for (size_t i = 0; i < count; i++) {
        const uint8_t *d = param + 8 + i * 16;
        uint64_t lba = twl_get_be64(d);
        uint32_t blocks = twl_get_be32(d + 8);
        if (!range_ok(lun, lba, blocks)) {
            lba_out_of_range(plan);
            return -1;
        }
        total += blocks;
        if (total > MAX_UNMAP_BLOCKS) {
            invalid_param_field(plan, (uint16_t)(8 + i * 16 + 8));
            return -1;
        }
        out[i].lba = lba;
        out[i].blocks = blocks;
    }
    return (int)count;
}

size_t scsi_first_difference(const uint8_t *a, const uint8_t *b, size_t len)
{
    /* memcmp finds whether; the byte loop runs only over the differing word. */
    size_t off = 0;
    while (len - off >= 64 && memcmp(a + off, b + off, 64) == 0)
        off += 64;
    while (off < len && a[off] == b[off])
        off++;
    return off;
}

void scsi_plan_miscompare(struct scsi_plan *plan, uint64_t offset)
{
    scsi_plan_check_condition_info(plan, SCSI_SENSE_MISCOMPARE, SCSI_ASC_MISCOMPARE_DURING_VERIFY,
                                   offset);
}

static void cmd_sync_cache(const struct cmd *c, struct scsi_plan *plan)
{
    uint64_t lba;
    uint32_t blocks;
    uint16_t len_field;
    decode_lba_len(c->cdb, &lba, &blocks, &len_field);
    if (!range_ok(c->lun, lba, blocks)) {
        lba_out_of_range(plan);
        return;
    }
    /* IMMED is honoured by completing after the sync: always allowed by SBC-3. */
    plan->action = SCSI_ACTION_SYNC;
    plan->lba = lba;
    plan->blocks = blocks;
}

static void cmd_start_stop_unit(const struct cmd *c, struct scsi_plan *plan)
{
    uint8_t power = c->cdb[4] >> 4;
    /* Power conditions other than START_VALID (0) and the ones a disk without power states
     * could honour are refused; LOEJ on a non-removable medium does nothing (SBC-3 5.25). */
    if (power != 0 && power != 0x1 && power != 0x2 && power != 0x3 && power != 0x7 &&
        power != 0xa && power != 0xb) {
        invalid_field(plan, 4, 7);
        return;
    }
}

static void cmd_prevent_allow(const struct cmd *c, struct scsi_plan *plan)
{
    /* The medium is not removable: allowing removal is a no-op, preventing it too. */
    if ((c->cdb[4] & 0x03) > 1) {
        invalid_field(plan, 4, 1);
        return;
    }
}

static void cmd_read_defect_data(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    bool twelve = cdb[0] == OP_READ_DEFECT_12;
    uint8_t d[8] = {0};
    uint32_t alloc = twelve ? twl_get_be32(cdb + 6) : twl_get_be16(cdb + 7);
    uint8_t lists = (twelve ? cdb[1] : cdb[2]) & 0x1f; /* REQ_PLIST, REQ_GLIST, format */
    /* No defects are known: an empty list in the requested format. */
    d[1] = lists;
    respond(c, plan, d, twelve ? 8 : 4, alloc);
}

/* Mode pages. Current and saved values come from the LU, defaults are fixed and the
 * changeable mask names exactly what scsi_mode_select_parse accepts. */
static size_t mode_page(const struct scsi_lun *lun, uint8_t page, int pc, uint8_t *p)
{
    size_t len;
    bool wce = pc == MODE_PC_SAVED     ? lun->saved_write_cache
               : pc == MODE_PC_DEFAULT ? true
                                       : lun->write_cache;

    switch (page) {
    case MODE_PAGE_CACHING:
        len = 20;
        memset(p, 0, len);
        if (pc == MODE_PC_CHANGEABLE || wce)
            p[2] = 0x04; /* WCE */
        break;
    case MODE_PAGE_CONTROL:
        /* D_SENSE 0 (fixed sense), TST 0 (one task set shared by all nexuses), QErr 0; TAS 1:
         * tasks another nexus's task management aborts end with TASK ABORTED. All fixed. */
        len = 12;
        memset(p, 0, len);
        if (pc != MODE_PC_CHANGEABLE) {
            p[5] = 0x40;                 /* TAS */
            twl_put_be16(p + 8, 0xffff); /* busy timeout: unlimited */
        }
        break;
    case MODE_PAGE_IEC:
        len = 12;
        memset(p, 0, len);
        if (pc != MODE_PC_CHANGEABLE)
            p[2] = 0x08; /* DEXCPT: we report no informational exceptions */
        break;
    default:
        return 0;
    }
    p[0] = page | (pc == MODE_PC_CHANGEABLE ? 0 : 0x80); /* PS: the pages can be saved */
    p[1] = (uint8_t)(len - 2);
    return len;
}

static void cmd_mode_sense(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    bool ten = cdb[0] == OP_MODE_SENSE_10;
    bool dbd = cdb[1] & 0x08;
    bool llbaa = ten && (cdb[1] & 0x10);
    int pc = cdb[2] >> 6;
    uint8_t page = cdb[2] & 0x3f;
    uint8_t subpage = cdb[3];
    uint32_t alloc = ten ? twl_get_be16(cdb + 7) : cdb[4];
    uint8_t d[SCRATCH_LEN];
    size_t hdr = ten ? 8 : 4;
    size_t off = hdr;

    if (subpage != 0x00 && !(page == MODE_PAGE_ALL && subpage == 0xff)) {
        invalid_field(plan, 3, -1);
        return;
    }

    memset(d, 0, hdr);
    if (!dbd) {
        uint8_t *b = d + off;
        if (llbaa) {
            memset(b, 0, 16);
            twl_put_be64(b, c->lun->block_count);
            twl_put_be32(b + 12, c->lun->block_size);
            off += 16;
        } else {
            memset(b, 0, 8);
            twl_put_be32(b, c->lun->block_count > UINT32_MAX ? UINT32_MAX
                                                             : (uint32_t)c->lun->block_count);
            twl_put_be24(b + 5, c->lun->block_size);
            off += 8;
        }
    }
    size_t bd_len = off - hdr;

    if (page == MODE_PAGE_ALL) {
        off += mode_page(c->lun, MODE_PAGE_CACHING, pc, d + off);
        off += mode_page(c->lun, MODE_PAGE_CONTROL, pc, d + off);
        off += mode_page(c->lun, MODE_PAGE_IEC, pc, d + off);
    } else {
        size_t n = mode_page(c->lun, page, pc, d + off);
        if (n == 0) {
            invalid_field(plan, 2, 5);
            return;
        }
        off += n;
    }

    uint8_t dev_specific = DEV_SPECIFIC_DPOFUA | (c->lun->read_only ? 0x80 : 0x00);
    if (ten) {
        twl_put_be16(d, (uint16_t)(off - 2));
        d[3] = dev_specific;
        d[4] = llbaa && bd_len ? 0x01 : 0x00; /* LONGLBA */
        twl_put_be16(d + 6, (uint16_t)bd_len);
    } else {
        d[0] = (uint8_t)(off - 1);
        d[2] = dev_specific;
        d[3] = (uint8_t)bd_len;
    }
    respond(c, plan, d, off, alloc);
}

static void cmd_mode_select(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    bool ten = cdb[0] == OP_MODE_SELECT_10;
    uint32_t len = ten ? twl_get_be16(cdb + 7) : cdb[4];
    if (!(cdb[1] & 0x10)) {
        invalid_field(plan, 1, 4); /* PF 0: vendor-specific page format, none here */
        return;
    }
    if (len == 0)
        return;
    plan->action = SCSI_ACTION_LU;
    plan->data_out = len;
}

int scsi_mode_select_parse(const struct scsi_lun *lun, const uint8_t *cdb, const uint8_t *param,
                           size_t len, const struct scsi_mode_params *cur,
                           struct scsi_mode_params *out, struct scsi_plan *plan)
{
    bool ten = cdb[0] == OP_MODE_SELECT_10;
    size_t hdr = ten ? 8 : 4;
    *out = *cur;
    if (len < hdr) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return -1;
    }
    size_t bd_len = ten ? twl_get_be16(param + 6) : param[3];
    if (bd_len != 0 && bd_len != 8) {
        invalid_param_field(plan, (uint16_t)(ten ? 6 : 3));
        return -1;
    }
    size_t off = hdr;
    if (bd_len) {
        if (len < off + 8) {
            scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                      SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
            return -1;
        }
        /* The block descriptor may only restate the current block length. */
        uint32_t bl = twl_get_be24(param + off + 5);
        if (bl != 0 && bl != lun->block_size) {
            invalid_param_field(plan, (uint16_t)(off + 5));
            return -1;
        }
        off += 8;
    }
    while (off < len) {
        if (len - off < 2) {
            scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                      SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
            return -1;
        }
        const uint8_t *p = param + off;
        uint8_t page = p[0] & 0x3f;
        if (p[0] & 0x40) {
            invalid_param_field(plan, (uint16_t)off); /* SPF: no subpages here */
            return -1;
        }
        size_t plen = (size_t)p[1] + 2;
        if (off + plen > len) {
            scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                      SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
            return -1;
        }
        /* Every byte must equal the current value except the changeable bits. */
        uint8_t curp[32], mask[32];
        size_t n = mode_page(lun, page, 0, curp);
        if (n == 0 || n != plen) {
            invalid_param_field(plan, (uint16_t)off);
            return -1;
        }
        mode_page(lun, page, MODE_PC_CHANGEABLE, mask);
        for (size_t i = 2; i < n; i++) {
            if ((p[i] ^ curp[i]) & ~mask[i]) {
                invalid_param_field(plan, (uint16_t)(off + i));
                return -1;
            }
        }
        if (page == MODE_PAGE_CACHING)
            out->write_cache = (p[2] & 0x04) != 0;
        off += plen;
    }
    return 0;
}

/* PERSISTENT RESERVE IN/OUT and RESERVE/RELEASE(6) live in the LU's shared state. */
static void cmd_pr_in(const struct cmd *c, struct scsi_plan *plan)
{
    if ((c->cdb[1] & 0x1f) > 0x03) {
        invalid_field(plan, 1, 4);
        return;
    }
    plan->action = SCSI_ACTION_LU;
    plan->alloc_len = twl_get_be16(c->cdb + 7);
}

static void cmd_pr_out(const struct cmd *c, struct scsi_plan *plan)
{
    uint32_t len = twl_get_be32(c->cdb + 5);
    if ((c->cdb[1] & 0x1f) > 0x07) {
        invalid_field(plan, 1, 4);
        return;
    }
    if (len > MAX_PARAM_LIST) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    plan->action = SCSI_ACTION_LU;
    plan->data_out = len;
}

static void cmd_reserve_release(const struct cmd *c, struct scsi_plan *plan)
{
    (void)c;
    plan->action = SCSI_ACTION_LU;
}

static void cmd_extended_copy(const struct cmd *c, struct scsi_plan *plan)
{
    uint32_t len = twl_get_be32(c->cdb + 10);
    if (len == 0)
        return; /* SPC-4: no parameter list, nothing to copy */
    if (len > XCOPY_MAX_PARAM_LEN) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    plan->action = SCSI_ACTION_EXTENDED_COPY;
    plan->data_out = len;
}

static void cmd_receive_copy_results(const struct cmd *c, struct scsi_plan *plan)
{
    /* OPERATING PARAMETERS are fixed; COPY STATUS needs the nexus's history in the LU */
    if ((c->cdb[1] & 0x1f) == XCOPY_RCR_OP_PARAMS) {
        xcopy_receive_results(c->cdb, NULL, c->buf, c->buflen, plan);
        return;
    }
    plan->action = SCSI_ACTION_LU;
    plan->alloc_len = twl_get_be32(c->cdb + 10);
}

/* The partner's port for a LUN, seen from this port's state: standby while this one serves,
 * active/optimized while this one stands by or is unavailable, and transitioning while this one
 * is (a handover: the partner is about to serve; an initiator that read standby there would
 * hold its I/O off a path that is about to work). */
static enum scsi_alua_state partner_state(enum scsi_alua_state mine)
{
    switch (mine) {
    case SCSI_ALUA_STANDBY:
    case SCSI_ALUA_UNAVAILABLE:
        return SCSI_ALUA_ACTIVE_OPTIMIZED;
    case SCSI_ALUA_TRANSITIONING:
        return SCSI_ALUA_TRANSITIONING;
    default:
        return SCSI_ALUA_STANDBY;
    }
}

static void report_target_port_groups(const struct cmd *c, struct scsi_plan *plan)
{
    uint8_t format = c->cdb[1] >> 5;
    uint32_t alloc = twl_get_be32(c->cdb + 6);
    uint8_t d[SCRATCH_LEN];
    size_t hdr = format == 1 ? 8 : 4;
    if (format > 1) {
        invalid_field(plan, 1, 7);
        return;
    }
    size_t off = hdr;
    size_t groups = c->view ? c->view->group_count : 0;
    for (size_t i = 0; i < groups && off + 12 <= sizeof(d); i++) {
        const struct scsi_port_group *g = &c->view->groups[i];
        uint8_t *p = d + off;
        memset(p, 0, 12);
        /* this port's group reports the state that gates its commands; the partner's the
         * other side of it: one node serves a LUN, the other stands by */
        enum scsi_alua_state state = g->id == c->view->target_port_group
                                         ? c->view->alua_state
                                         : partner_state(c->view->alua_state);
        /* no PREF: a preferred standby group outranks an active one in multipath's alua
         * prioritizer (standby 1 + 80 against active/optimized 50) */
        p[0] = (uint8_t)state;
        p[1] = 0x80 | 0x08 | 0x04 | 0x02 | 0x01; /* T_SUP U_SUP S_SUP AN_SUP AO_SUP */
        twl_put_be16(p + 2, g->id);
        p[5] = 0x02; /* status: altered by implicit asymmetric access behaviour */
        p[7] = 1;
        twl_put_be16(p + 10, g->rel_port);
        off += 12;
    }
    memset(d, 0, hdr);
    twl_put_be32(d, (uint32_t)(off - 4));
    if (format == 1) {
        d[4] = 0x10; /* extended header */
        d[5] = 10;   /* implicit transition time, seconds */
    }
    respond(c, plan, d, off, alloc);
}

static void report_tmfs(const struct cmd *c, struct scsi_plan *plan)
{
    bool repd = c->cdb[2] & 0x80;
    uint32_t alloc = twl_get_be32(c->cdb + 6);
    uint8_t d[16] = {0};
    /* ABORT TASK, ABORT TASK SET, CLEAR TASK SET, LOGICAL UNIT RESET, TARGET RESET */
    d[0] = 0x80 | 0x40 | 0x10 | 0x08 | 0x02;
    if (repd)
        d[3] = 0x0c;
    respond(c, plan, d, repd ? 16 : 4, alloc);
}

static const struct opcode_info opcodes[];
static const size_t opcode_count;

/* Usage data of a CDB: every bit this layer examines may be set (SPC-4 6.27.3). */
static void cdb_usage(const struct opcode_info *op, uint8_t *u)
{
    memset(u, 0xff, op->cdb_len);
    u[0] = op->opcode;
    if (op->sa != NO_SA)
        u[1] = (uint8_t)(0xe0 | op->sa);
    u[op->cdb_len - 1] = 0x04; /* control byte: only NACA is looked at */
}

/* UNMAP exists only on thin LUs. */
static bool opcode_supported(const struct cmd *c, const struct opcode_info *op)
{
    if (op->opcode == OP_MAINT_OUT)
        return c->view && c->view->explicit_alua;
    return op->opcode != OP_UNMAP || (c->lun && c->lun->thin);
}

static size_t timeouts_descriptor(uint8_t *p)
{
    memset(p, 0, 12);
    twl_put_be16(p, 0x0a);
    twl_put_be32(p + 4, NOMINAL_TIMEOUT_S);
    twl_put_be32(p + 8, RECOMMENDED_TIMEOUT_S);
    return 12;
}

static void report_opcodes(const struct cmd *c, struct scsi_plan *plan)
{
    const uint8_t *cdb = c->cdb;
    bool rctd = cdb[2] & 0x80;
    uint8_t options = cdb[2] & 0x07;
    uint8_t req_op = cdb[3];
    uint16_t req_sa = twl_get_be16(cdb + 4);
    uint32_t alloc = twl_get_be32(cdb + 6);
    uint8_t d[SCRATCH_LEN * 4];
    size_t off;

    if (options == 0) {
        off = 4;
        for (size_t i = 0; i < opcode_count; i++) {
            const struct opcode_info *op = &opcodes[i];
            if (!opcode_supported(c, op))
                continue;
            uint8_t *p = d + off;
            memset(p, 0, 8);
            p[0] = op->opcode;
            twl_put_be16(p + 2, op->sa == NO_SA ? 0 : op->sa);
            p[5] = (uint8_t)((rctd ? 0x02 : 0) | (op->sa != NO_SA ? 0x01 : 0));
            twl_put_be16(p + 6, op->cdb_len);
            off += 8;
            if (rctd)
                off += timeouts_descriptor(d + off);
        }
        twl_put_be32(d, (uint32_t)(off - 4));
        respond(c, plan, d, off, alloc);
        return;
    }
    if (options > 2) {
        invalid_field(plan, 2, 2);
        return;
    }
    const struct opcode_info *op = find_opcode(req_op, (uint8_t)req_sa);
    if (op && !opcode_supported(c, op))
        op = NULL;
    const struct opcode_info *any = find_opcode(req_op, 0xff);
    bool has_sa = any != NULL && any->sa != NO_SA;
    if (options == 1 && has_sa) {
        invalid_field(plan, 2, 2); /* the command has service actions: options 2 needed */
        return;
    }
    if (options == 2 && any != NULL && !has_sa) {
        invalid_field(plan, 2, 2);
        return;
    }
    if (options == 2 && (op == NULL || op->sa != req_sa))
        op = NULL;
    memset(d, 0, 4);
    off = 4;
    if (op) {
        d[1] = (uint8_t)((rctd ? 0x80 : 0) | 0x03); /* supported as the standard says */
        twl_put_be16(d + 2, op->cdb_len);
        cdb_usage(op, d + 4);
        off += op->cdb_len;
        if (rctd)
            off += timeouts_descriptor(d + off);
    } else {
        d[1] = 0x01; /* not supported */
    }
    respond(c, plan, d, off, alloc);
}

static void cmd_maintenance_in(const struct cmd *c, struct scsi_plan *plan)
{
    switch (c->cdb[1] & 0x1f) {
    case MI_REPORT_TPGS:
        report_target_port_groups(c, plan);
        break;
    case MI_REPORT_OPCODES:
        report_opcodes(c, plan);
        break;
    default:
        report_tmfs(c, plan);
        break;
    }
}

/* SET TARGET PORT GROUPS: the parameter list is judged once it is in (scsi_stpg_parse). */
static void cmd_set_target_port_groups(const struct cmd *c, struct scsi_plan *plan)
{
    uint32_t len = twl_get_be32(c->cdb + 6);
    if (!c->view || !c->view->explicit_alua) {
        /* implicit ALUA only (pair.explicit_alua): as if the command did not exist */
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
        return;
    }
    if (len > MAX_PARAM_LIST) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_PARAM_LIST_LENGTH_ERROR);
        return;
    }
    if (len == 0)
        return; /* no descriptor: nothing to change */
    plan->action = SCSI_ACTION_SET_TPGS;
    plan->data_out = len;
}

uint16_t scsi_stpg_parse(const uint8_t *param, uint32_t len, const struct scsi_port_group *groups,
                         size_t group_count, uint16_t *active_group)
{
    *active_group = 0;
    /* 4 reserved bytes, then descriptors of 4: state (bits 3:0), reserved, group id */
    if (len < 4 || (len - 4) % 4)
        return SCSI_ASC_PARAM_LIST_LENGTH_ERROR;
    for (uint32_t off = 4; off < len; off += 4) {
        uint8_t state = param[off] & 0x0f;
        uint16_t id = twl_get_be16(param + off + 2);
        size_t g = 0;
        while (g < group_count && groups[g].id != id)
            g++;
        if (g == group_count || group_count == 0 ||
            (state != SCSI_ALUA_ACTIVE_OPTIMIZED && state != SCSI_ALUA_STANDBY))
            return SCSI_ASC_INVALID_FIELD_IN_PARAM;
        uint16_t want = id;
        if (state == SCSI_ALUA_STANDBY) {
            if (group_count < 2)
                return SCSI_ASC_INVALID_FIELD_IN_PARAM; /* one group cannot stand by */
            want = groups[g == 0 ? 1 : 0].id;
        }
        if (*active_group && *active_group != want)
            return SCSI_ASC_INVALID_FIELD_IN_PARAM;
        *active_group = want;
    }
    return 0;
}

static const struct opcode_info opcodes[] = {
    {OP_TEST_UNIT_READY, NO_SA, 6, true, cmd_test_unit_ready},
    {OP_REQUEST_SENSE, NO_SA, 6, false, cmd_request_sense},
    {OP_READ_6, NO_SA, 6, true, cmd_read},
    {OP_WRITE_6, NO_SA, 6, true, cmd_write},
    {OP_INQUIRY, NO_SA, 6, false, cmd_inquiry},
    {OP_MODE_SELECT_6, NO_SA, 6, true, cmd_mode_select},
    {OP_RESERVE_6, NO_SA, 6, true, cmd_reserve_release},
    {OP_RELEASE_6, NO_SA, 6, true, cmd_reserve_release},
    {OP_MODE_SENSE_6, NO_SA, 6, true, cmd_mode_sense},
    {OP_START_STOP_UNIT, NO_SA, 6, true, cmd_start_stop_unit},
    {OP_PREVENT_ALLOW, NO_SA, 6, true, cmd_prevent_allow},
    {OP_READ_CAPACITY, NO_SA, 10, true, read_capacity_10},
    {OP_READ_10, NO_SA, 10, true, cmd_read},
    {OP_WRITE_10, NO_SA, 10, true, cmd_write},
    {OP_WRITE_VERIFY_10, NO_SA, 10, true, cmd_write_verify},
    {OP_VERIFY_10, NO_SA, 10, true, cmd_verify},
    {OP_PREFETCH_10, NO_SA, 10, true, cmd_prefetch},
    {OP_SYNC_CACHE_10, NO_SA, 10, true, cmd_sync_cache},
    {OP_READ_DEFECT_10, NO_SA, 10, true, cmd_read_defect_data},
    {OP_WRITE_SAME_10, NO_SA, 10, true, cmd_write_same},
    {OP_UNMAP, NO_SA, 10, true, cmd_unmap},
    {OP_MODE_SELECT_10, NO_SA, 10, true, cmd_mode_select},
    {OP_MODE_SENSE_10, NO_SA, 10, true, cmd_mode_sense},
    {OP_PR_IN, 0x00, 10, true, cmd_pr_in},
    {OP_PR_IN, 0x01, 10, true, cmd_pr_in},
    {OP_PR_IN, 0x02, 10, true, cmd_pr_in},
    {OP_PR_IN, 0x03, 10, true, cmd_pr_in},
    {OP_PR_OUT, 0x00, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x01, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x02, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x03, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x04, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x05, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x06, 10, true, cmd_pr_out},
    {OP_PR_OUT, 0x07, 10, true, cmd_pr_out},
    {OP_EXTENDED_COPY, XCOPY_SA_LID1, 16, true, cmd_extended_copy},
    {OP_RECEIVE_COPY, XCOPY_RCR_COPY_STATUS, 16, true, cmd_receive_copy_results},
    {OP_RECEIVE_COPY, XCOPY_RCR_OP_PARAMS, 16, true, cmd_receive_copy_results},
    {OP_READ_16, NO_SA, 16, true, cmd_read},
    {OP_COMPARE_WRITE, NO_SA, 16, true, cmd_compare_and_write},
    {OP_WRITE_16, NO_SA, 16, true, cmd_write},
    {OP_ORWRITE_16, NO_SA, 16, true, cmd_orwrite},
    {OP_WRITE_VERIFY_16, NO_SA, 16, true, cmd_write_verify},
    {OP_VERIFY_16, NO_SA, 16, true, cmd_verify},
    {OP_PREFETCH_16, NO_SA, 16, true, cmd_prefetch},
    {OP_SYNC_CACHE_16, NO_SA, 16, true, cmd_sync_cache},
    {OP_WRITE_SAME_16, NO_SA, 16, true, cmd_write_same},
    {OP_SAI_16, SAI_READ_CAPACITY_16, 16, true, read_capacity_16},
    {OP_SAI_16, SAI_GET_LBA_STATUS, 16, true, get_lba_status},
    {OP_REPORT_LUNS, NO_SA, 12, false, cmd_report_luns},
    {OP_MAINT_IN, MI_REPORT_TPGS, 12, false, cmd_maintenance_in},
    {OP_MAINT_IN, MI_REPORT_OPCODES, 12, false, cmd_maintenance_in},
    {OP_MAINT_IN, MI_REPORT_TMFS, 12, false, cmd_maintenance_in},
    {OP_MAINT_OUT, MO_SET_TPGS, 12, true, cmd_set_target_port_groups},
    {OP_READ_12, NO_SA, 12, true, cmd_read},
    {OP_WRITE_12, NO_SA, 12, true, cmd_write},
    {OP_WRITE_VERIFY_12, NO_SA, 12, true, cmd_write_verify},
    {OP_VERIFY_12, NO_SA, 12, true, cmd_verify},
    {OP_READ_DEFECT_12, NO_SA, 12, true, cmd_read_defect_data},
};

static const size_t opcode_count = sizeof(opcodes) / sizeof(opcodes[0]);

/* sa 0xff finds the first entry of the opcode whatever its service action. */
static const struct opcode_info *find_opcode(uint8_t opcode, uint8_t sa)
{
    for (size_t i = 0; i < opcode_count; i++) {
        if (opcodes[i].opcode != opcode)
            continue;
        if (opcodes[i].sa == NO_SA || sa == 0xff || opcodes[i].sa == sa)
            return &opcodes[i];
    }
    return NULL;
}

bool scsi_ua_passes(const uint8_t *cdb)
{
    return cdb[0] == OP_INQUIRY || cdb[0] == OP_REPORT_LUNS || cdb[0] == OP_REQUEST_SENSE;
}

bool scsi_changes_lu_metadata(const uint8_t *cdb)
{
    return cdb[0] == OP_PR_OUT || cdb[0] == OP_MODE_SELECT_6 || cdb[0] == OP_MODE_SELECT_10;
}

bool scsi_data_out_exact(const uint8_t *cdb)
{
    switch (cdb[0]) {
    case OP_COMPARE_WRITE:
    case OP_WRITE_SAME_10:
    case OP_WRITE_SAME_16:
    case OP_UNMAP:
    case OP_ORWRITE_16:
    case OP_VERIFY_10:
    case OP_VERIFY_12:
    case OP_VERIFY_16:
    case OP_MODE_SELECT_6:
    case OP_MODE_SELECT_10:
    case OP_PR_OUT:
    case OP_EXTENDED_COPY:
    case OP_MAINT_OUT:
        return true;
    default:
        return false;
    }
}

bool scsi_is_medium_write(const uint8_t *cdb)
{
    switch (cdb[0]) {
    case OP_WRITE_6:
    case OP_WRITE_10:
    case OP_WRITE_12:
    case OP_WRITE_16:
    case OP_WRITE_VERIFY_10:
    case OP_WRITE_VERIFY_12:
    case OP_WRITE_VERIFY_16:
    case OP_WRITE_SAME_10:
    case OP_WRITE_SAME_16:
    case OP_UNMAP:
    case OP_COMPARE_WRITE:
    case OP_ORWRITE_16:
        return true;
    default:
        return false;
    }
}

uint16_t scsi_alua_denies(enum scsi_alua_state state, const uint8_t *cdb)
{
    if (state == SCSI_ALUA_ACTIVE_OPTIMIZED || state == SCSI_ALUA_ACTIVE_NON_OPTIMIZED)
        return 0;
    /* SPC-4 5.15.2.4.4-6: what a port in standby, unavailable or transitioning still
     * serves: identification, sense, reservations management and the ALUA reports; and the
     * capacity, which an initiator reads once when it finds the path (Linux's sd would see a
     * standby path as 0 blocks, and fail its I/O as beyond the end once the path serves). */
    switch (cdb[0]) {
    case OP_INQUIRY:
    case OP_REPORT_LUNS:
    case OP_REQUEST_SENSE:
    case OP_MAINT_IN:
    case OP_READ_CAPACITY:
    case OP_MAINT_OUT: /* SET TARGET PORT GROUPS: how an initiator makes a standby port serve */
        return 0;
    case OP_SAI_16:
        if ((cdb[1] & 0x1f) == SAI_READ_CAPACITY_16)
            return 0;
        break;
    case OP_MODE_SENSE_6:
    case OP_MODE_SENSE_10:
    case OP_MODE_SELECT_6:
    case OP_MODE_SELECT_10:
    case OP_PR_IN:
    case OP_PR_OUT:
        if (state == SCSI_ALUA_STANDBY)
            return 0;
        break;
    default:
        break;
    }
    return state == SCSI_ALUA_STANDBY       ? SCSI_ASC_ALUA_STANDBY
           : state == SCSI_ALUA_UNAVAILABLE ? SCSI_ASC_ALUA_UNAVAILABLE
                                            : SCSI_ASC_ALUA_TRANSITIONING;
}

uint16_t scsi_alua_refusal(enum scsi_alua_state state, bool settling, const uint8_t *cdb)
{
    uint16_t asc = scsi_alua_denies(state, cdb);
    return settling && asc == SCSI_ASC_ALUA_STANDBY ? SCSI_ASC_ALUA_TRANSITIONING : asc;
}

void scsi_plan_command(const struct scsi_lun *lun, const struct scsi_target_view *view,
                       const uint8_t *cdb, size_t cdb_len, uint8_t *buf, size_t buflen,
                       struct scsi_plan *plan)
{
    memset(plan, 0, sizeof(*plan));
    plan->action = SCSI_ACTION_COMPLETE;
    plan->status = SCSI_STATUS_GOOD;

    if (!cdb || cdb_len == 0) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    const struct opcode_info *op = find_opcode(cdb[0], cdb_len > 1 ? cdb[1] & 0x1f : 0);
    /* SPC-4: for a LU that does not exist only a few commands get a real answer. */
    if (!lun && (!op || op->needs_lun)) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
        return;
    }
    if (!op) {
        if (find_opcode(cdb[0], 0xff))
            invalid_field(plan, 1, 4); /* known opcode, unknown service action */
        else
            scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_OPCODE);
        return;
    }
    if (cdb_len < op->cdb_len) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_INVALID_FIELD_IN_CDB);
        return;
    }
    /* NACA would require ACA handling, which we do not implement (SAM-5). */
    if (cdb[op->cdb_len - 1] & 0x04) {
        invalid_field(plan, (uint16_t)(op->cdb_len - 1), 2);
        return;
    }
    if (lun && view) {
        uint16_t asc = scsi_alua_refusal(view->alua_state, view->alua_settling, cdb);
        if (asc) {
            scsi_plan_check_condition(plan, SCSI_SENSE_NOT_READY, asc);
            return;
        }
    }

    struct cmd c = {
        .lun = lun,
        .view = view,
        .cdb = cdb,
        .buf = buf,
        .buflen = buf ? buflen : 0,
    };
    op->handler(&c, plan);
}

/* FNV-1a 64: tiny, stable across platforms and releases, good enough to spread identifiers. */
static uint64_t fnv1a64(uint64_t h, const void *data, size_t len)
{
    const uint8_t *p = data;
    for (size_t i = 0; i < len; i++) {
        h ^= p[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

void scsi_lun_derive_ids(struct scsi_lun *lun, const char *target_name)
{
    const char *name = target_name ? target_name : "";
    uint8_t id[4];
    twl_put_be32(id, lun->id);

    /* Name, a separator no iSCSI name contains, then the LUN id: distinct inputs stay distinct. */
    uint64_t h1 = fnv1a64(0xcbf29ce484222325ull, name, strlen(name));
    h1 = fnv1a64(h1, "", 1);
    h1 = fnv1a64(h1, id, sizeof(id));
    /* A second pass over the same input fills the 64-bit extension with different bits. */
    uint64_t h2 = fnv1a64(h1, name, strlen(name));
    h2 = fnv1a64(h2, id, sizeof(id));

    /* NAA 6: NAA(4) | company ID(24) | vendor specific(36) | extension(64) */
    uint8_t *n = lun->naa;
    n[0] = (uint8_t)(0x60 | (NAA_COMPANY_ID >> 20));
    n[1] = (uint8_t)(NAA_COMPANY_ID >> 12);
    n[2] = (uint8_t)(NAA_COMPANY_ID >> 4);
    n[3] = (uint8_t)(((NAA_COMPANY_ID & 0x0f) << 4) | ((h1 >> 32) & 0x0f));
    twl_put_be32(n + 4, (uint32_t)h1);
    twl_put_be64(n + 8, h2);

    if (lun->serial[0] == '\0')
        snprintf(lun->serial, sizeof(lun->serial), "%016" PRIx64, h1);
}
