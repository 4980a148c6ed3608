/*
 * SCSI reservations of one logical unit: SPC-4 persistent reservations (PERSISTENT RESERVE IN and
 * OUT) and the SPC-2 RESERVE(6)/RELEASE(6) reservation, as plain logic over one struct.
 *
 * What this module promises:
 * - No threads, no locks, no globals, no allocation; the only I/O is pr_state_save/pr_state_load.
 *   The caller holds a per-LUN mutex around every call.
 * - The whole reservation state of a LUN is one struct pr_state of plain data (fixed arrays, no
 *   pointers): it may be copied with '=' or memcpy, and pr_state_encode/pr_state_decode turn it
 *   into a versioned, CRC32C-protected byte image for the partner node and for APTPL files.
 * - Every command function fills a struct pr_result and never fails in the C sense: a bad CDB or
 *   parameter list comes back as CHECK CONDITION with the sense to send; a refused command as
 *   RESERVATION CONFLICT. A command that did not end in GOOD has not changed the state.
 * - The caller identifies the I_T nexus of each command (struct pr_nexus), asks pr_conflicts()
 *   before running any command, delivers the unit attentions listed in the result to every I_T
 *   nexus that pr_ua_matches(), persists the state when result.persist is set and replicates it
 *   when result.changed is set.
 *
 * Identities (iSCSI): an initiator port is an iSCSI name plus the 6-byte ISID, written in
 * TransportIDs as "<name>,i,0x<12 lowercase hex digits>"; a target port is a relative target
 * port identifier (this node 1, its partner 2; the target port group id equals it). iSCSI names
 * compare without regard to ASCII case.
 *
 * Choices where SPC-4 leaves room (REPORT CAPABILITIES says the same):
 * - CRH = 0: while any registration exists, RESERVE(6)/RELEASE(6) (and the 10-byte forms)
 *   conflict for every I_T nexus; while a RESERVE(6) reservation exists, PERSISTENT RESERVE IN
 *   and OUT conflict for every I_T nexus, the holder included (SPC-2 5.5.1).
 * - ALLOW COMMANDS = 100b: TEST UNIT READY is allowed through every reservation; MODE SENSE,
 *   READ BUFFER, RECEIVE DIAGNOSTIC RESULTS, REPORT SUPPORTED OPERATION CODES, READ DEFECT DATA and
 *   the like pass Write Exclusive reservations but not Exclusive Access ones.
 * - A registration made through a name-only TransportID (format 00b) covers every ISID of that
 *   name; ALL_TG_PT=1 covers every target port. Such a registration is one registrant: one key,
 *   one READ FULL STATUS descriptor, and when it holds the reservation every I_T nexus it covers
 *   is a holder.
 * - Refusals SPC-4 words loosely, as this module answers them: SPEC_I_PT from an already
 *   registered I_T nexus, a TransportID naming an I_T nexus that is already registered (or one
 *   that only partly overlaps another registration, e.g. ALL_TG_PT over a registration made
 *   through the other port) and a TRANSPORTID PARAMETER DATA LENGTH that disagrees with the
 *   PARAMETER LIST LENGTH all give INVALID FIELD IN PARAMETER LIST; a duplicated TransportID, or
 *   one naming the sender, is accepted once. REGISTER AND MOVE without a reservation held by the
 *   sender is a RESERVATION CONFLICT. PREEMPT's SCOPE and TYPE are only checked when a
 *   reservation is preempted (they are ignored when only registrations are removed).
 * - Re-registering (a new key from a registered I_T nexus) keeps the registration's ALL_TG_PT.
 * - struct pr_state and struct pr_result are about 16 KiB each.
 */
#ifndef TGT_PR_H
#define TGT_PR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PR_MAX_REGISTRANTS 64
/* iSCSI names are at most 223 bytes (RFC 7143), plus the NUL. */
#define PR_NAME_MAX 224
/* Valid relative target port identifiers are 1..PR_REL_PORT_MAX (the two nodes of a pair). */
#define PR_REL_PORT_MAX 2

#define PR_OPCODE_RESERVE6  0x16
#define PR_OPCODE_RELEASE6  0x17
#define PR_OPCODE_RESERVE10 0x56
#define PR_OPCODE_RELEASE10 0x57
#define PR_OPCODE_PR_IN     0x5e
#define PR_OPCODE_PR_OUT    0x5f

/* PERSISTENT RESERVE OUT service actions (CDB byte 1, bits 4:0) */
#define PR_OUT_REGISTER            0x00
#define PR_OUT_RESERVE             0x01
#define PR_OUT_RELEASE             0x02
#define PR_OUT_CLEAR               0x03
#define PR_OUT_PREEMPT             0x04
#define PR_OUT_PREEMPT_AND_ABORT   0x05
#define PR_OUT_REGISTER_AND_IGNORE 0x06
#define PR_OUT_REGISTER_AND_MOVE   0x07

/* PERSISTENT RESERVE IN service actions */
#define PR_IN_READ_KEYS           0x00
#define PR_IN_READ_RESERVATION    0x01
#define PR_IN_REPORT_CAPABILITIES 0x02
#define PR_IN_READ_FULL_STATUS    0x03

/* Persistent reservation types (CDB byte 2, bits 3:0); the only scope is LU_SCOPE (0). */
#define PR_TYPE_WRITE_EXCLUSIVE     0x1
#define PR_TYPE_EXCLUSIVE_ACCESS    0x3
#define PR_TYPE_WRITE_EXCLUSIVE_RO  0x5
#define PR_TYPE_EXCLUSIVE_ACCESS_RO 0x6
#define PR_TYPE_WRITE_EXCLUSIVE_AR  0x7
#define PR_TYPE_EXCLUSIVE_ACCESS_AR 0x8
#define PR_SCOPE_LU                 0x0

/* Additional sense codes (asc << 8 | ascq) this module reports besides those in scsi.h */
#define PR_ASC_INVALID_RELEASE            0x2604 /* INVALID RELEASE OF PERSISTENT RESERVATION */
#define PR_ASC_INSUFFICIENT_REG_RESOURCES 0x5504
#define PR_ASC_RESERVATIONS_PREEMPTED     0x2a03
#define PR_ASC_RESERVATIONS_RELEASED      0x2a04
#define PR_ASC_REGISTRATIONS_PREEMPTED    0x2a05

/* The I_T nexus a command came in on. initiator_name is NUL terminated, at most 223 bytes. */
struct pr_nexus {
    const char *initiator_name;
    uint8_t isid[6];
    uint16_t rel_port;
};

/* One registration: the I_T nexuses it covers and their reservation key. */
struct pr_registrant {
    uint64_t key;                     /* never 0 */
    char initiator_name[PR_NAME_MAX]; /* NUL terminated */
    uint8_t isid[6];
    bool isid_set;  /* false: every ISID of initiator_name (name-only TransportID) */
    bool all_tg_pt; /* true: every target port; rel_port is the port it was made through */
    uint16_t rel_port;
};

struct pr_state {
    uint32_t generation; /* PRgeneration */
    bool aptpl;          /* the last APTPL bit received: the state survives power loss */
    uint16_t count;      /* registrants in reg[0..count), in registration order */
    struct pr_registrant reg[PR_MAX_REGISTRANTS];
    /* The persistent reservation. For the all-registrants types every registrant holds it and
     * holder is unused; otherwise reg[holder] holds it. */
    bool reserved;
    uint8_t type;
    uint8_t scope;
    uint16_t holder;
    /* The SPC-2 RESERVE(6) reservation, held by one I_T nexus; never persisted. */
    bool r6_reserved;
    char r6_name[PR_NAME_MAX];
    uint8_t r6_isid[6];
    uint16_t r6_port;
};

/* An empty state: no registrations, no reservations, generation 0, APTPL off. */
void pr_state_init(struct pr_state *s);

/* A unit attention to establish for every I_T nexus matching a registrant-like selector. */
struct pr_ua {
    char initiator_name[PR_NAME_MAX];
    uint8_t isid[6];
    bool isid_set;  /* false: every ISID of the name */
    bool all_ports; /* true: every relative target port */
    uint16_t rel_port;
    /* The I_T nexus (same name, except_isid, except_port) that sent the command is left out. */
    bool except;
    uint8_t except_isid[6];
    uint16_t except_port;
    uint16_t asc_ascq; /* sense key UNIT ATTENTION */
};

/* Result of one command, for the caller to act on. */
struct pr_result {
    uint8_t status; /* SCSI_STATUS_GOOD, _CHECK_CONDITION or _RESERVATION_CONFLICT */
    uint8_t sense_key;
    uint16_t asc_ascq;   /* when CHECK CONDITION */
    int16_t sense_field; /* byte of the CDB (or parameter list) at fault, -1 none */
    int8_t sense_bit;    /* bit within that byte, -1 none */
    bool sense_in_param; /* sense_field points into the parameter list (C/D = 0) */
    uint32_t data_len;   /* PR IN: bytes written to buf (clipped to alloc len and buflen) */
    bool changed;        /* state changed: replicate it */
    /* Persist the state with pr_state_save (the APTPL image changed: APTPL is on, or was just
     * turned off and the saved image must become empty). */
    bool persist;
    /* Unit attentions to establish, at most one per registrant the command touched. */
    struct pr_ua ua[PR_MAX_REGISTRANTS];
    unsigned ua_count;
    /* PREEMPT AND ABORT: the caller aborts the tasks of the I_T nexuses matching the ua[] entries
     * whose asc_ascq is PR_ASC_REGISTRATIONS_PREEMPTED (TMF semantics, SAM-5 5.6). */
    bool abort_preempted;
};

/* Whether the unit attention applies to the I_T nexus n. */
bool pr_ua_matches(const struct pr_ua *ua, const struct pr_nexus *n);

/* Whether a command from nexus n must end in RESERVATION CONFLICT because of the reservations
 * (SPC-4 table "SPC commands that are allowed in the presence of various reservations", SBC-3's
 * for block commands, SPC-2 5.5.1 for RESERVE(6)). cdb is the full CDB: service actions and some
 * bits matter (PREVENT ALLOW MEDIUM REMOVAL with PREVENT=0 and START STOP UNIT with START=1 are
 * allowed). PERSISTENT RESERVE IN/OUT only conflict under a RESERVE(6) reservation; otherwise
 * pr_out() itself refuses service actions from unregistered nexuses. Unknown opcodes conflict
 * for non-holders. */
bool pr_conflicts(const struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb);

/* PERSISTENT RESERVE OUT (10-byte CDB, opcode 0x5F): every service action 0..7 and the six types.
 * param holds param_len bytes received for the CDB's PARAMETER LIST LENGTH (bytes 5..8); fewer
 * bytes than that length is a PARAMETER LIST LENGTH ERROR. SPEC_I_PT takes iSCSI TransportIDs of
 * format 00b (name) and 01b (name and ISID); REGISTER AND MOVE takes format 01b only. */
void pr_out(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb, const uint8_t *param,
            size_t param_len, struct pr_result *r);

/* PERSISTENT RESERVE IN (opcode 0x5E): READ KEYS, READ RESERVATION, REPORT CAPABILITIES, READ
 * FULL STATUS. Output is clipped to the CDB ALLOCATION LENGTH and to buflen; the length fields
 * describe the full response. */
void pr_in(const struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb, uint8_t *buf,
           size_t buflen, struct pr_result *r);

/* SPC-2 RESERVE(6) 0x16 / RELEASE(6) 0x17 of the whole LU; third-party and extent reservations
 * are refused with INVALID FIELD IN CDB. RELEASE(6) from a non-holder is GOOD and does nothing. */
void pr_reserve6(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb,
                 struct pr_result *r);
void pr_release6(struct pr_state *s, const struct pr_nexus *n, const uint8_t *cdb,
                 struct pr_result *r);

/* An I_T nexus was lost (logout, connection drop without reinstatement), or a LU/target reset
 * happened: a RESERVE(6) reservation (held by n, for pr_nexus_lost) is released; persistent
 * reservations and registrations stay. Return true when the state changed. */
bool pr_nexus_lost(struct pr_state *s, const struct pr_nexus *n);
bool pr_reset(struct pr_state *s);

/* Upper bound of pr_state_encode's output. */
#define PR_STATE_IMAGE_MAX (40 + PR_NAME_MAX + PR_MAX_REGISTRANTS * (20 + PR_NAME_MAX))

/* Byte image of the whole state (format described in pr.c). Returns the bytes needed and writes
 * buf only when cap is at least that. */
size_t pr_state_encode(const struct pr_state *s, uint8_t *buf, size_t cap);
/* Parses an image made by pr_state_encode. Returns 0, or -EINVAL (bad magic, version, length,
 * CRC or contents) leaving *s untouched. */
int pr_state_decode(struct pr_state *s, const uint8_t *buf, size_t len);

/* APTPL persistence. save writes what survives a power loss: the state without its RESERVE(6)
 * reservation when APTPL is on, an empty state when it is off (meaning "nothing persists"; the
 * caller may unlink instead). Crash-safe: a temporary file in the same directory is written and
 * fsynced, renamed over path, and the directory fsynced. Returns 0 or -errno.
 * load returns 0, -ENOENT when the file is absent (start empty), -EINVAL when it is corrupt
 * (logged with the path) or another -errno; *s is untouched unless 0 is returned. */
int pr_state_save(const struct pr_state *s, const char *path);
int pr_state_load(struct pr_state *s, const char *path);

#endif
