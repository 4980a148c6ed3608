/*
 * Command sequencing of a session (RFC 7143 sections 3.2.2.1 and 4.2.2.1): the CmdSN window a
 * target advertises through ExpCmdSN and MaxCmdSN. Serial number arithmetic (RFC 1982).
 */
#ifndef TGT_SESSION_H
#define TGT_SESSION_H

#include <stdbool.h>
#include <stdint.h>

static inline bool sn_lt(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) < 0;
}
static inline bool sn_le(uint32_t a, uint32_t b)
{
    return (int32_t)(a - b) <= 0;
}

struct cmdsn_window {
    uint32_t exp_cmdsn;   /* next CmdSN expected */
    uint32_t max_cmdsn;   /* highest CmdSN the initiator may send; never moves backwards */
    uint32_t size;        /* configured number of command slots */
    uint32_t outstanding; /* non-immediate commands accepted and not yet completed */
    uint32_t withheld;    /* slots held back by back-pressure (throttle) */
};

enum cmdsn_verdict {
    CMDSN_ACCEPT = 0, /* execute now */
    CMDSN_STALE,      /* below ExpCmdSN: a duplicate; drop */
    CMDSN_OUTSIDE,    /* beyond MaxCmdSN or a gap on a single connection: drop */
};

void cmdsn_init(struct cmdsn_window *w, uint32_t first_cmdsn, uint32_t size);
/* Checks a command's CmdSN; on ACCEPT of a non-immediate command ExpCmdSN advances and, when
 * counts_slot, the command holds a slot until cmdsn_complete(). */
enum cmdsn_verdict cmdsn_check(struct cmdsn_window *w, uint32_t cmdsn, bool immediate,
                               bool counts_slot);
/* A command that held a slot is done: the window may open. */
void cmdsn_complete(struct cmdsn_window *w);
/* Back-pressure: hold back n slots (the throttle shrinks the window while writes queue). */
void cmdsn_set_withheld(struct cmdsn_window *w, uint32_t n);

#endif
