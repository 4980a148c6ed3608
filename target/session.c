#include "session.h"

static void recompute(struct cmdsn_window *w)
{
    uint32_t used = w->outstanding + w->withheld;
    uint32_t free_slots = used < w->size ? w->size - used : 0;
    /* MaxCmdSN = ExpCmdSN - 1 + free slots; it must never decrease (RFC 7143 4.2.2.1). */
    uint32_t candidate = w->exp_cmdsn + free_slots - 1;
    if (sn_lt(w->max_cmdsn, candidate))
        w->max_cmdsn = candidate;
}

void cmdsn_init(struct cmdsn_window *w, uint32_t first_cmdsn, uint32_t size)
{
    w->exp_cmdsn = first_cmdsn;
    w->size = size ? size : 1;
    w->outstanding = 0;
    w->withheld = 0;
    w->max_cmdsn = first_cmdsn - 1;
    recompute(w);
}

enum cmdsn_verdict cmdsn_check(struct cmdsn_window *w, uint32_t cmdsn, bool immediate,
                               bool counts_slot)
{
    if (immediate)
        return CMDSN_ACCEPT; /* immediate commands carry CmdSN but do not consume it */
    if (sn_lt(cmdsn, w->exp_cmdsn))
        return CMDSN_STALE;
    if (cmdsn != w->exp_cmdsn || sn_lt(w->max_cmdsn, cmdsn))
        return CMDSN_OUTSIDE;
    w->exp_cmdsn++;
    if (counts_slot)
        w->outstanding++;
    recompute(w);
    return CMDSN_ACCEPT;
}

void cmdsn_complete(struct cmdsn_window *w)
{
    if (w->outstanding > 0)
        w->outstanding--;
    recompute(w);
}

void cmdsn_set_withheld(struct cmdsn_window *w, uint32_t n)
{
    w->withheld = n;
    recompute(w);
}
