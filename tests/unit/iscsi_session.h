/*
 * One libiscsi login for the tests that drive a real server: a normal session to url as the
 * given initiator. libiscsi's connect also clears the power-on unit attention (TEST UNIT
 * READY), as initiators do. Header-only: each test program includes it once.
 */
#ifndef TWL_TEST_ISCSI_SESSION_H
#define TWL_TEST_ISCSI_SESSION_H

#include <iscsi/iscsi.h>

/* NULL when the login fails; *lun receives the URL's LUN. */
static inline struct iscsi_context *test_session_open(const char *url, const char *initiator,
                                                      int *lun)
{
    *lun = 0;
    struct iscsi_context *iscsi = iscsi_create_context(initiator);
    if (iscsi == NULL)
        return NULL;
    struct iscsi_url *u = iscsi_parse_full_url(iscsi, url);
    if (u == NULL) {
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    iscsi_set_session_type(iscsi, ISCSI_SESSION_NORMAL);
    iscsi_set_targetname(iscsi, u->target);
    int rc = iscsi_full_connect_sync(iscsi, u->portal, u->lun);
    *lun = u->lun;
    iscsi_destroy_url(u);
    if (rc != 0) {
        iscsi_destroy_context(iscsi);
        return NULL;
    }
    return iscsi;
}

#endif
