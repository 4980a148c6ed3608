/*
 * SCSI command decoding and emulation (SPC-4 / SBC-3 subset), independent of iSCSI and of I/O.
 *
 * The transport hands a CDB to scsi_plan_command(). Commands that touch the medium come back as
 * an action (READ, WRITE, SYNC) with an LBA range the caller performs on the backing store;
 * everything else is answered at once: status, sense and any Data-In bytes written into the
 * caller's buffer (already clipped to the CDB's allocation length).
 */
#ifndef TGT_SCSI_H
#define TGT_SCSI_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* SAM status codes */
#define SCSI_STATUS_GOOD                 0x00
#define SCSI_STATUS_CHECK_CONDITION      0x02
#define SCSI_STATUS_CONDITION_MET        0x04
#define SCSI_STATUS_BUSY                 0x08
#define SCSI_STATUS_RESERVATION_CONFLICT 0x18
#define SCSI_STATUS_TASK_SET_FULL        0x28
#define SCSI_STATUS_TASK_ABORTED         0x40

/* Sense keys */
#define SCSI_SENSE_NO_SENSE        0x0
#define SCSI_SENSE_NOT_READY       0x2
#define SCSI_SENSE_MEDIUM_ERROR    0x3
#define SCSI_SENSE_HARDWARE_ERROR  0x4
#define SCSI_SENSE_ILLEGAL_REQUEST 0x5
#define SCSI_SENSE_UNIT_ATTENTION  0x6
#define SCSI_SENSE_DATA_PROTECT    0x7
#define SCSI_SENSE_ABORTED_COMMAND 0xb
#define SCSI_SENSE_MISCOMPARE      0xe

/* Additional sense codes as (asc << 8 | ascq) */
#define SCSI_ASC_NONE                      0x0000
#define SCSI_ASC_INVALID_OPCODE            0x2000
#define SCSI_ASC_LBA_OUT_OF_RANGE          0x2100
#define SCSI_ASC_INVALID_FIELD_IN_CDB      0x2400
#define SCSI_ASC_LUN_NOT_SUPPORTED         0x2500
#define SCSI_ASC_INVALID_FIELD_IN_PARAM    0x2600
#define SCSI_ASC_PARAM_LIST_LENGTH_ERROR   0x1a00
#define SCSI_ASC_WRITE_ERROR               0x0c00
#define SCSI_ASC_READ_ERROR                0x1100
#define SCSI_ASC_POWER_ON_RESET            0x2900
#define SCSI_ASC_INTERNAL_TARGET_FAILURE   0x4400
#define SCSI_ASC_DATA_PHASE_ERROR          0x4b00 /* iSCSI: protocol service CRC / data errors */
#define SCSI_ASC_DIGEST_ERROR              0x4703 /* INFORMATION UNIT iuCRC ERROR DETECTED */
#define SCSI_ASC_SPACE_ALLOC_FAILED        0x2707 /* SPACE ALLOCATION FAILED WRITE PROTECT */
#define SCSI_ASC_COMMANDS_CLEARED_BY_OTHER 0x2f00
#define SCSI_ASC_SAVING_PARAMS_UNSUPPORTED 0x3900
#define SCSI_ASC_BUS_DEVICE_RESET          0x2903 /* BUS DEVICE RESET FUNCTION OCCURRED */
#define SCSI_ASC_WRITE_PROTECTED           0x2700
#define SCSI_ASC_MISCOMPARE_DURING_VERIFY  0x1d00
#define SCSI_ASC_MODE_PARAMS_CHANGED       0x2a01
#define SCSI_ASC_RESERVATIONS_PREEMPTED    0x2a03
#define SCSI_ASC_RESERVATIONS_RELEASED     0x2a04
#define SCSI_ASC_REGISTRATIONS_PREEMPTED   0x2a05
#define SCSI_ASC_ALUA_STATE_CHANGED        0x2a06
#define SCSI_ASC_CAPACITY_CHANGED          0x2a09
#define SCSI_ASC_ALUA_TRANSITIONING        0x040a
#define SCSI_ASC_ALUA_STANDBY              0x040b
#define SCSI_ASC_ALUA_UNAVAILABLE          0x040c
#define SCSI_ASC_SET_TPGS_FAILED           0x670a
#define SCSI_ASC_DEFECT_LIST_NOT_FOUND     0x1c00

#define SCSI_SENSE_FIXED_LEN 18

/* What the SCSI layer knows about one logical unit. Filled by the target from config and the
 * backing store; read-only here. write_cache is atomic: MODE SELECT changes it (under the LU's
 * lock) while other threads plan commands. */
struct scsi_lun {
    uint32_t id;
    uint64_t block_count;
    uint32_t block_size;            /* 512 or 4096 */
    bool thin;                      /* thin provisioned: UNMAP, LBPME, VPD 0xB2 */
    _Atomic bool write_cache;       /* WCE in the caching mode page: writes are cached unless FUA;
                                       off, every write is planned FUA */
    char serial[33];                /* VPD 0x80, NUL terminated, at most 32 chars */
    uint8_t naa[16];                /* VPD 0x83 NAA type 6 (IEEE registered extended) designator */
    uint32_t max_transfer_blocks;   /* reported as block limits; 0 = no limit */
    _Atomic bool saved_write_cache; /* WCE as last saved by MODE SELECT with SP (PC = saved) */
    bool read_only;                 /* writes fail with DATA PROTECT, WRITE PROTECTED */
    uint8_t lbppbe;                 /* log2(logical blocks per physical block) */
};

/* ALUA asymmetric access states of a target port group (SPC-4 6.37). */
enum scsi_alua_state {
    SCSI_ALUA_ACTIVE_OPTIMIZED = 0x0,
    SCSI_ALUA_ACTIVE_NON_OPTIMIZED = 0x1,
    SCSI_ALUA_STANDBY = 0x2,
    SCSI_ALUA_UNAVAILABLE = 0x3,
    SCSI_ALUA_TRANSITIONING = 0xf,
};

/* One target port group as REPORT TARGET PORT GROUPS lists it. */
struct scsi_port_group {
    uint16_t id;
    uint16_t rel_port; /* the one target port of the group (one per node) */
};

/* What the SCSI layer knows about the target and the nexus the command came in on. */
struct scsi_target_view {
    const char *target_name;    /* iSCSI target name (VPD 0x83 SCSI name string) */
    uint16_t relative_port_id;  /* VPD 0x83 relative target port identifier; also the iSCSI
                                   portal group tag of the target port's name */
    uint16_t target_port_group; /* VPD 0x83 target port group */
    const uint32_t *lun_ids;    /* all LUNs of the target, for REPORT LUNS */
    size_t lun_count;
    const struct scsi_port_group *groups; /* for REPORT TARGET PORT GROUPS; the one with
                                             target_port_group is this port's */
    size_t group_count;
    enum scsi_alua_state alua_state; /* of this port's group: gates medium access */
    bool explicit_alua;  /* SET TARGET PORT GROUPS accepted (TPGS 11b); else implicit (01b) */
    bool alua_settling;  /* the states changed moments ago for this nexus (scsi_alua_refusal) */
    uint16_t pending_ua; /* a unit attention REQUEST SENSE reports (0 none) */
};

/* SET TARGET PORT GROUPS (explicit ALUA): which of the two groups (view->groups, this port's
 * and the partner's) an initiator wants to serve the LU. Each descriptor asks a group to be
 * active/optimized, or standby (the other group then serves); descriptors that disagree, other
 * states and unknown groups are refused. Returns 0 with *active_group set (0 when the list
 * holds no descriptor: nothing to change), or the ASC to report with ILLEGAL REQUEST. */
uint16_t scsi_stpg_parse(const uint8_t *param, uint32_t len, const struct scsi_port_group *groups,
                         size_t group_count, uint16_t *active_group);

enum scsi_action {
    SCSI_ACTION_COMPLETE = 0, /* status/sense/data are final */
    SCSI_ACTION_READ,         /* read blocks [lba, lba+blocks) and return them as Data-In */
    SCSI_ACTION_WRITE,        /* receive blocks*block_size bytes of Data-Out, write them */
    SCSI_ACTION_SYNC,         /* make [lba, lba+blocks) durable (blocks 0 = lba to the end) */
    /* The following receive data_out bytes of Data-Out first, then are carried out by the
     * transport (they need the medium or the shared state of the LU). */
    SCSI_ACTION_COMPARE_AND_WRITE, /* data: blocks to compare, then blocks to write */
    SCSI_ACTION_VERIFY,            /* data: blocks (bytchk 1) or one block (bytchk 3) */
    SCSI_ACTION_ORWRITE,           /* data: blocks OR-ed into the medium */
    SCSI_ACTION_WRITE_SAME,        /* data: one block, repeated (or unmap) */
    SCSI_ACTION_UNMAP,             /* data: UNMAP parameter list */
    SCSI_ACTION_GET_LBA_STATUS,    /* no data: map state from lba, alloc_len bytes at most */
    SCSI_ACTION_LU,                /* PR IN/OUT, RESERVE/RELEASE(6), MODE SELECT, RECEIVE COPY
                                      RESULTS (COPY STATUS): LU state */
    SCSI_ACTION_EXTENDED_COPY,     /* data: EXTENDED COPY parameter list (xcopy.h) */
    SCSI_ACTION_SET_TPGS,          /* data: SET TARGET PORT GROUPS parameter list
                                      (scsi_stpg_parse); the pair moves the LU */
};

struct scsi_plan {
    enum scsi_action action;
    /* media actions */
    uint64_t lba;
    uint32_t blocks;
    bool fua;           /* write reaches stable storage before completion */
    uint32_t data_out;  /* Data-Out bytes the command needs (0 none) */
    uint32_t alloc_len; /* Data-In limit of transport-built responses */
    uint8_t bytchk;     /* VERIFY: 1 compare all blocks, 3 compare each with one block */
    bool unmap;         /* WRITE SAME: deallocate instead of writing */
    bool ndob;          /* WRITE SAME(16): no Data-Out, the block is zeros */
    bool anchor;        /* WRITE SAME: anchor (allocate and zero) instead of deallocating */
    /* COMPLETE */
    uint8_t status;
    uint32_t data_len; /* Data-In bytes placed in the caller's buffer */
    uint8_t sense[SCSI_SENSE_FIXED_LEN];
    uint8_t sense_len; /* 0 when no sense */
};

/* Decodes and plans one command. lun is NULL when the LUN does not exist (INQUIRY then reports
 * peripheral qualifier 3, REPORT LUNS and REQUEST SENSE still work, everything else fails with
 * LOGICAL UNIT NOT SUPPORTED). buf receives Data-In for emulated commands (buflen >= 4096 is
 * always enough for this layer). Never fails: a bad CDB yields a CHECK CONDITION plan. */
void scsi_plan_command(const struct scsi_lun *lun, const struct scsi_target_view *view,
                       const uint8_t *cdb, size_t cdb_len, uint8_t *buf, size_t buflen,
                       struct scsi_plan *plan);

/* Sets plan to COMPLETE with CHECK CONDITION and fixed-format sense (key, asc_ascq as above). */
void scsi_plan_check_condition(struct scsi_plan *plan, uint8_t key, uint16_t asc_ascq);
/* Same, with the INFORMATION field set (VALID bit) e.g. the failing LBA. */
void scsi_plan_check_condition_info(struct scsi_plan *plan, uint8_t key, uint16_t asc_ascq,
                                    uint64_t info);
/* Builds fixed-format sense data (18 bytes) into out. */
void scsi_sense_build_fixed(uint8_t out[SCSI_SENSE_FIXED_LEN], uint8_t key, uint16_t asc_ascq);

/* Sets plan to COMPLETE with CHECK CONDITION MISCOMPARE, INFORMATION = byte offset of the first
 * difference (SBC-3 COMPARE AND WRITE / VERIFY). */
void scsi_plan_miscompare(struct scsi_plan *plan, uint64_t offset);

/* Compares a and b (len bytes); returns the offset of the first difference or len. */
size_t scsi_first_difference(const uint8_t *a, const uint8_t *b, size_t len);

/* One block range of an UNMAP parameter list. */
struct scsi_extent {
    uint64_t lba;
    uint32_t blocks;
};

/* Checks an UNMAP parameter list (SBC-3 5.28) against the LUN and the limits this layer
 * reports, and fills up to max extents. Returns the number of extents, or -1 with plan set to
 * the CHECK CONDITION to report. */
int scsi_unmap_parse(const struct scsi_lun *lun, const uint8_t *param, size_t len,
                     struct scsi_extent *out, size_t max, struct scsi_plan *plan);

/* Mode parameters a MODE SELECT may change (the changeable mask reports exactly these). */
struct scsi_mode_params {
    bool write_cache; /* WCE of the caching page */
};

/* Parses a MODE SELECT(6/10) parameter list (cdb tells which) against the changeable mask;
 * on success fills *out (starting from *cur) and returns 0, else sets plan and returns -1. */
int scsi_mode_select_parse(const struct scsi_lun *lun, const uint8_t *cdb, const uint8_t *param,
                           size_t len, const struct scsi_mode_params *cur,
                           struct scsi_mode_params *out, struct scsi_plan *plan);

/* Where ALUA lets the command through (SPC-4 5.15.2.4): 0 or the NOT READY asc to report. */
uint16_t scsi_alua_denies(enum scsi_alua_state state, const uint8_t *cdb);
/* The refusal a command gets: scsi_alua_denies's, except that standby is told as transitioning
 * while a change settles for the nexus (lu_nexus_alua_settling): Linux's ALUA handler holds the
 * I/O of a transitioning path and reads the states again, where a standby refusal of a command
 * already sent is an I/O error on the path. */
uint16_t scsi_alua_refusal(enum scsi_alua_state state, bool settling, const uint8_t *cdb);

/* Commands a pending unit attention does not stop (SPC-4 / SAM-5: INQUIRY, REPORT LUNS,
 * REQUEST SENSE, which reports it). */
bool scsi_ua_passes(const uint8_t *cdb);

/* Whether cdb changes what lu_meta_encode carries (reservations, mode parameters): PERSISTENT
 * RESERVE OUT and MODE SELECT. */
bool scsi_changes_lu_metadata(const uint8_t *cdb);

/* Commands whose Data-Out must be exactly what the CDB describes (a parameter list, compare
 * data, a pattern block): any other expected data transfer length is an error, unlike READ and
 * WRITE where the difference is a residual. */
bool scsi_data_out_exact(const uint8_t *cdb);

/* Whether the command may change the medium (for write protection and reservations). */
bool scsi_is_medium_write(const uint8_t *cdb);

/* Fills lun->naa from a stable identity (target name + LUN id) so both nodes of a pair can
 * derive the same identifiers later. */
void scsi_lun_derive_ids(struct scsi_lun *lun, const char *target_name);

#endif
