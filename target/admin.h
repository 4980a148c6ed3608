/*
 * The admin socket: twinlunctl's way into a running twinlund. A Unix stream socket at
 * node.admin_socket (default <state_dir>/twinlund.sock), mode 0600 (root, or whoever runs the
 * daemon). One request per
 * connection: a line of words separated by spaces, then the reply and the close.
 *
 * Reply: a first line with the exit code twinlunctl should give (0 done, 1 refused, 2 bad
 * request), then the text to print: human-readable, or one JSON object when the request ends
 * with "--json" (requests that change something answer {"ok": BOOL, "message": TEXT}).
 * Every change asked for is logged, refused or not. Requests:
 *   status                       the node, the pair and every LUN's role and sync state
 *   sessions                     every session: initiator, ISID, TSIH, peer, negotiated keys
 *   luns                         every LUN: size, owner, role, ALUA state, sync, I/O figures
 *   promote [LUN]                serve LUN (or all) here while the partner is unreachable
 *   takeover [LUN] [--force]     serve LUN (or all the partner serves) here: a planned move
 *   giveback [LUN|all] [--force] hand LUN (default: the partner's own LUNs) to the partner
 *   resolve --discard NODE       end a split brain: NODE's writes since the split are dropped
 *   resync start|pause|resume [LUN]   on the node that serves the LUN (replica.h)
 *   log                          the level and the parts with debug lines
 *   log level LEVEL              error, warn, info, debug
 *   log debug PARTS              PART[,PART...], all or none (twl_common.h)
 */
#ifndef TGT_ADMIN_H
#define TGT_ADMIN_H

#include <stddef.h>

struct tgt_server;
struct admin;

#define ADMIN_SOCKET_NAME "twinlund.sock"

/* Listens on a thread of its own. 0 or -errno (logged): the daemon serves on without it. */
int admin_start(struct tgt_server *srv, struct admin **out);
void admin_stop(struct admin *a);

/* Runs one request line and writes the reply's text into out (NUL-terminated, truncated to
 * out_len). Returns the exit code. Exposed for the unit tests. */
int admin_handle(struct tgt_server *srv, const char *line, char *out, size_t out_len);

#endif
