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

#define SAI_READ_CAPACITY_16 0x10

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
#define MODE_PC_SAVED      3

#define DEV_SPECIFIC_DPOFUA 0x10

#define STD_INQUIRY_LEN 66

/* A single portal group per node for now; its tag names the target port in VPD 0x83. */
#define TARGET_PORTAL_GROUP_TAG 1

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

struct opcode_info {
    uint8_t opcode;
    uint8_t cdb_len;
    bool needs_lun;
    cmd_handler handler;
};

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

static size_t inquiry_standard(const struct scsi_lun *lun, uint8_t *d)
{
    memset(d, 0, STD_INQUIRY_LEN);
    d[0] = lun ? 0x00 : 0x7f; /* qualifier 3 / type 1Fh: no LU at this LUN */
    d[2] = 0x06;              /* SPC-4 */
    d[3] = 0x10 | 0x02;       /* HISUP, response data format 2 */
    d[4] = STD_INQUIRY_LEN - 5;
    d[5] = 0x10; /* TPGS 01b: implicit ALUA, the nodes change port states themselves */
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
    static const uint8_t pages[] = {VPD_SUPPORTED,    VPD_SERIAL,      VPD_DEVICE_ID,
                                    VPD_BLOCK_LIMITS, VPD_BLOCK_CHARS, VPD_PROVISIONING};
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
            snprintf(name, sizeof(name), "%s,t,0x%04x", view->target_name, TARGET_PORTAL_GROUP_TAG);
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
    /* Backing stores work in 4 KiB pages; smaller I/O costs a read-modify-write. */
    uint32_t granularity = lun->block_size && lun->block_size < 4096 ? 4096 / lun->block_size : 1;
    twl_put_be16(d + 6, (uint16_t)granularity);
    twl_put_be32(d + 8, lun->max_transfer_blocks);
    twl_put_be32(d + 12, lun->max_transfer_blocks);
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
    /* No UNMAP yet, so LBPU stays 0; thin LUNs still say so for capacity planning. */
    d[6] = lun->thin ? 0x02 : 0x00;
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
        len = inquiry_standard(c->lun, d);
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

    /* SPC-4: for an unsupported LU the sense data itself (with GOOD status) says so. */
    if (!c->lun) {
        key = SCSI_SENSE_ILLEGAL_REQUEST;
        asc = SCSI_ASC_LUN_NOT_SUPPORTED;
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

static void cmd_service_action_in(const struct cmd *c, struct scsi_plan *plan)
{
    if ((c->cdb[1] & 0x1f) != SAI_READ_CAPACITY_16) {
        invalid_field(plan, 1, 4);
        return;
    }
    uint32_t alloc = twl_get_be32(c->cdb + 10);
    uint8_t d[32] = {0};
    twl_put_be64(d, last_lba(c->lun));
    twl_put_be32(d + 8, c->lun->block_size);
    if (c->lun->thin)
        d[14] = 0x80; /* LBPME */
    respond(c, plan, d, sizeof(d), alloc);
}

static void media_access(const struct cmd *c, struct scsi_plan *plan, enum scsi_action action)
{
    const uint8_t *cdb = c->cdb;
    uint64_t lba;
    uint32_t blocks;
    bool fua = false;

    switch (cdb[0]) {
    case OP_READ_6:
    case OP_WRITE_6:
        lba = twl_get_be24(cdb + 1) & 0x1fffff;
        blocks = cdb[4] ? cdb[4] : 256; /* SBC-3: zero means 256 blocks for the 6-byte forms */
        break;
    case OP_READ_10:
    case OP_WRITE_10:
        lba = twl_get_be32(cdb + 2);
        blocks = twl_get_be16(cdb + 7);
        break;
    case OP_READ_12:
    case OP_WRITE_12:
        lba = twl_get_be32(cdb + 2);
        blocks = twl_get_be32(cdb + 6);
        break;
    default:
        lba = twl_get_be64(cdb + 2);
        blocks = twl_get_be32(cdb + 10);
        break;
    }
    if (cdb[0] != OP_READ_6 && cdb[0] != OP_WRITE_6) {
        /* No protection information is formatted, so any RD/WRPROTECT is refused. */
        if (cdb[1] & 0xe0) {
            invalid_field(plan, 1, 7);
            return;
        }
        fua = cdb[1] & 0x08;
    }
    if (!range_ok(c->lun, lba, blocks)) {
        lba_out_of_range(plan);
        return;
    }
    if (c->lun->max_transfer_blocks && blocks > c->lun->max_transfer_blocks) {
        uint16_t field = cdb[0] == OP_READ_10 || cdb[0] == OP_WRITE_10   ? 7
                         : cdb[0] == OP_READ_12 || cdb[0] == OP_WRITE_12 ? 6
                         : cdb[0] == OP_READ_6 || cdb[0] == OP_WRITE_6   ? 4
                                                                         : 10;
        invalid_field(plan, field, -1);
        return;
    }
    if (blocks == 0)
        return; /* not an error (SBC-3): nothing to transfer */
    plan->action = action;
    plan->lba = lba;
    plan->blocks = blocks;
    plan->fua = fua;
}

static void cmd_read(const struct cmd *c, struct scsi_plan *plan)
{
    media_access(c, plan, SCSI_ACTION_READ);
}

static void cmd_write(const struct cmd *c, struct scsi_plan *plan)
{
    media_access(c, plan, SCSI_ACTION_WRITE);
}

static void cmd_sync_cache(const struct cmd *c, struct scsi_plan *plan)
{
    uint64_t lba;
    uint32_t blocks;

    if (c->cdb[0] == OP_SYNC_CACHE_10) {
        lba = twl_get_be32(c->cdb + 2);
        blocks = twl_get_be16(c->cdb + 7);
    } else {
        lba = twl_get_be64(c->cdb + 2);
        blocks = twl_get_be32(c->cdb + 10);
    }
    if (!range_ok(c->lun, lba, blocks)) {
        lba_out_of_range(plan);
        return;
    }
    /* IMMED is honoured by completing after the sync: always allowed by SBC-3. */
    plan->action = SCSI_ACTION_SYNC;
    plan->lba = lba;
    plan->blocks = blocks;
}

/* Writes one mode page (page control pc) at p and returns its length. */
static size_t mode_page(const struct scsi_lun *lun, uint8_t page, int pc, uint8_t *p)
{
    size_t len;

    switch (page) {
    case MODE_PAGE_CACHING:
        len = 20;
        memset(p, 0, len);
        if (pc != MODE_PC_CHANGEABLE && lun->write_cache)
            p[2] = 0x04; /* WCE */
        break;
    case MODE_PAGE_CONTROL:
        /* D_SENSE 0 (we send fixed sense), TST 0, QErr 0: all defaults. */
        len = 12;
        memset(p, 0, len);
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
    p[0] = page; /* PS 0: pages cannot be saved */
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

    /* SPC-4 6.11.x: a device server with no saved values terminates a request for them with
     * SAVING PARAMETERS NOT SUPPORTED rather than pretending current values were saved. */
    if (pc == MODE_PC_SAVED) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST,
                                  SCSI_ASC_SAVING_PARAMS_UNSUPPORTED);
        return;
    }
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

    if (ten) {
        twl_put_be16(d, (uint16_t)(off - 2));
        d[3] = DEV_SPECIFIC_DPOFUA;
        d[4] = llbaa && bd_len ? 0x01 : 0x00; /* LONGLBA */
        twl_put_be16(d + 6, (uint16_t)bd_len);
    } else {
        d[0] = (uint8_t)(off - 1);
        d[2] = DEV_SPECIFIC_DPOFUA;
        d[3] = (uint8_t)bd_len;
    }
    respond(c, plan, d, off, alloc);
}

static const struct opcode_info opcodes[] = {
    {OP_TEST_UNIT_READY, 6, true, cmd_test_unit_ready},
    {OP_REQUEST_SENSE, 6, false, cmd_request_sense},
    {OP_READ_6, 6, true, cmd_read},
    {OP_WRITE_6, 6, true, cmd_write},
    {OP_INQUIRY, 6, false, cmd_inquiry},
    {OP_MODE_SENSE_6, 6, true, cmd_mode_sense},
    {OP_READ_CAPACITY, 10, true, read_capacity_10},
    {OP_READ_10, 10, true, cmd_read},
    {OP_WRITE_10, 10, true, cmd_write},
    {OP_SYNC_CACHE_10, 10, true, cmd_sync_cache},
    {OP_MODE_SENSE_10, 10, true, cmd_mode_sense},
    {OP_READ_16, 16, true, cmd_read},
    {OP_WRITE_16, 16, true, cmd_write},
    {OP_SYNC_CACHE_16, 16, true, cmd_sync_cache},
    {OP_SAI_16, 16, true, cmd_service_action_in},
    {OP_REPORT_LUNS, 12, false, cmd_report_luns},
    {OP_READ_12, 12, true, cmd_read},
    {OP_WRITE_12, 12, true, cmd_write},
};

static const struct opcode_info *find_opcode(uint8_t opcode)
{
    for (size_t i = 0; i < sizeof(opcodes) / sizeof(opcodes[0]); i++) {
        if (opcodes[i].opcode == opcode)
            return &opcodes[i];
    }
    return NULL;
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
    const struct opcode_info *op = find_opcode(cdb[0]);
    /* SPC-4: for a LU that does not exist only these three commands get a real answer. */
    if (!lun && (!op || op->needs_lun)) {
        scsi_plan_check_condition(plan, SCSI_SENSE_ILLEGAL_REQUEST, SCSI_ASC_LUN_NOT_SUPPORTED);
        return;
    }
    if (!op) {
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
