/*
 * The shared state of one logical unit: what every network thread, and so every I_T nexus,
 * sees of the LU beyond its blocks.
 *
 * - Block range locks: every command that changes the medium holds [lba, lba + blocks) while
 *   it runs; overlapping ones wait in arrival order. COMPARE AND WRITE is atomic against every
 *   other write because of this, and writes to the same blocks reach the store (and later the
 *   partner) in the order they were admitted.
 * - Unit attentions, queued per I_T nexus (SAM-5 5.14): power on for a nexus seen the first
 *   time, LU reset, reservations preempted or released, mode parameters changed, asymmetric
 *   access state changed, capacity changed.
 * - Reservations (persistent and RESERVE(6), through pr.h), and the mode parameters MODE
 *   SELECT changes, with the saved ones on disk.
 *
 * One mutex guards it all; the I/O path takes it once per write (range lock) and reads two
 * atomics otherwise. Callbacks a lock release fires run without the mutex held.
 */
#ifndef TGT_LU_H
#define TGT_LU_H

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "config.h"
#include "pr.h"
#include "scsi.h"
#include "xcopy.h"

/* A range lock request; embedded in the command that holds it. */
struct lu_range {
    uint64_t lba;
    uint64_t end; /* exclusive */
    struct lu_range *next;
    struct lu_range *granted_next; /* internal: grants collected by one unlock */
    bool held;
    /* A request that had to wait is granted later from the thread that released the
     * conflicting range; this tells the owner (it may run on any thread). */
    void (*granted)(struct lu_range *r);
};

#define LU_UA_MAX 8

/* One I_T nexus as this LU knows it. Lives while a connection uses it (lu_nexus_get ..
 * lu_nexus_put): initiators that log in again and again with new ISIDs do not make the LU grow.
 * What it carries (pending unit attentions, EXTENDED COPY lists held for COPY STATUS) ends with
 * the nexus; reservations are kept by the reservation state, not here. */
struct lu_nexus {
    struct lu_nexus *next;
    unsigned users; /* connections that looked it up (under the LU's lock) */
    char initiator[TGT_NAME_MAX];
    uint8_t isid[6];
    uint16_t rel_port;
    atomic_uint ua_count;                 /* read without the lock on the I/O path */
    atomic_uint_fast64_t alua_changed_ns; /* when the LU's ALUA states last changed; 0 never */
    uint16_t ua[LU_UA_MAX];
    struct xcopy_history xcopy; /* EXTENDED COPY lists for COPY STATUS (under the lock) */
};

struct lu {
    pthread_mutex_t lock;
    uint32_t lun_id;
    struct scsi_lun *info; /* write_cache and saved_write_cache are changed here */
    struct lu_range *active;
    struct lu_range *wait_head;
    struct lu_range *wait_tail;
    struct lu_nexus *nexuses;
    atomic_bool reserved; /* a reservation exists: commands must be checked against it */
    /* ALUA state of this node's port for this LU, or -1 to follow the port group's (the
     * partner's LUNs are standby here: their writes come over the backplane) */
    atomic_int alua_state;
    struct pr_state pr;
    char pr_path[PATH_MAX + TGT_NAME_MAX + 32];   /* APTPL state */
    char mode_path[PATH_MAX + TGT_NAME_MAX + 32]; /* saved mode parameters */
};

/* Prepares the LU and loads what persists (APTPL reservations, saved mode parameters) from
 * files named after state_base ("<state_dir>/<target>.lun<N>"). Returns 0 or -errno, logged. */
int lu_init(struct lu *lu, struct scsi_lun *info, const char *state_base);
void lu_destroy(struct lu *lu);

/* True when granted at once; false when queued (r->granted fires later). */
bool lu_range_lock(struct lu *lu, struct lu_range *r, uint64_t lba, uint64_t blocks);
/* Releases a held range, granting the waiters it was blocking. */
void lu_range_unlock(struct lu *lu, struct lu_range *r);

/* The nexus record, created (with a POWER ON UA pending) when no connection has it, and taken
 * for the caller (lu_nexus_put gives it back). NULL only when out of memory. */
struct lu_nexus *lu_nexus_get(struct lu *lu, const char *initiator, const uint8_t isid[6],
                              uint16_t rel_port);
/* The connection that took n is freed (nothing of it refers to n any more): the record goes
 * with the last one. */
void lu_nexus_put(struct lu *lu, struct lu_nexus *n);

/* Queues a unit attention for every nexus (except `except`, when not NULL). */
void lu_ua_all(struct lu *lu, uint16_t asc_ascq, const struct lu_nexus *except);

/* The LU's ALUA states changed: the unit attention ASYMMETRIC ACCESS STATE CHANGED for every
 * nexus, and each is told of the change as it settles (lu_nexus_alua_settling). */
void lu_alua_changed(struct lu *lu);
/* Whether the LU's ALUA states changed less than LU_ALUA_SETTLE_NS ago for n (a nexus that
 * existed then). A refusal as standby is then told as transitioning: Linux's ALUA handler holds
 * the I/O of a transitioning path and reads the states again, and fails it quietly over to the
 * other path once it reads standby, where a standby refusal of a command already sent is an
 * I/O error on the path (logged). The commands in flight at a move are the ones it concerns. */
#define LU_ALUA_SETTLE_NS 1000000000ull
bool lu_nexus_alua_settling(const struct lu_nexus *n, uint64_t now_ns);

/* Admission of a command from nexus n (SAM-5 / SPC-4 order: unit attention first, then
 * reservations). Returns true to go on planning it; false with plan set to the status to
 * report. For REQUEST SENSE a pending unit attention is handed out in *pending_ua. */
bool lu_admit(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb, struct scsi_plan *plan,
              uint16_t *pending_ua);

/* What a command did beyond its status, for the caller to act on. */
struct lu_effects {
    /* the I_T nexuses a PREEMPT AND ABORT preempted: the caller aborts their tasks on the LU */
    unsigned count;
    struct pr_ua sel[PR_MAX_REGISTRANTS];
    bool meta_changed; /* reservations or mode parameters changed: replicate lu_meta_encode */
};

/* Carries out a SCSI_ACTION_LU command (PR IN/OUT, RESERVE/RELEASE(6), MODE SELECT, RECEIVE
 * COPY RESULTS) with its parameter list; Data-In goes to buf (at most buflen). effects (may be
 * NULL) receives what the caller must do beyond answering. */
void lu_execute(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb, const uint8_t *param,
                uint32_t param_len, uint8_t *buf, uint32_t buflen, struct scsi_plan *plan,
                struct lu_effects *effects);

/* The LU's replicated metadata, one image: mode parameters and the whole reservation state.
 * Format (all big-endian):
 *   0   magic "TWLM"
 *   4   version (1)
 *   6   flags: bit 0 WCE, bit 1 saved WCE
 *   8   length of the reservation image that follows (pr_state_encode)
 *   12  the reservation image
 *   end CRC32C of everything before it
 * Encoding takes the LU's lock; applying replaces this node's metadata with the image (and
 * saves the APTPL state when the image has APTPL on). */
#define LU_META_MAX (16 + PR_STATE_IMAGE_MAX)
size_t lu_meta_encode(struct lu *lu, uint8_t *buf, size_t cap);
/* -EINVAL when the image is damaged or not one (nothing changes then). */
int lu_meta_apply(struct lu *lu, const uint8_t *buf, size_t len);

/* Whether the reservations of this LU stop nexus n from running cdb here (an EXTENDED COPY
 * reaches LUs other than the one it was sent to: each is checked with a READ or a WRITE). */
bool lu_reservation_conflict(struct lu *lu, struct lu_nexus *n, const uint8_t *cdb);

/* EXTENDED COPY bookkeeping in the nexus's history (xcopy_history_begin/finish under the lock). */
int lu_xcopy_begin(struct lu *lu, struct lu_nexus *n, const struct xcopy_list *list,
                   struct scsi_plan *plan);
void lu_xcopy_finish(struct lu *lu, struct lu_nexus *n, const struct xcopy_list *list, bool failed,
                     const struct xcopy_progress *done);

/* LOGICAL UNIT RESET / target reset: releases a RESERVE(6) reservation and queues a reset unit
 * attention for every nexus. */
void lu_reset(struct lu *lu);
/* The nexus went away (logout or dropped connection): releases its RESERVE(6) reservation. */
void lu_nexus_lost(struct lu *lu, struct lu_nexus *n);

#endif
