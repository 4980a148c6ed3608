/*
 * The pair: replication of this node's LUNs to the partner and application of the partner's
 * changes here, over the RDMA backplane (rdma/). Started by tgt_server_create when the config
 * has a pair section; it installs itself as the server's replicator.
 */
#ifndef TGT_REPLICA_H
#define TGT_REPLICA_H

struct tgt_server;
struct replica;

/* Starts the backplane (connecting or listening, for ever) and sets the replicator. Returns 0
 * or -errno, logged. */
int replica_start(struct tgt_server *srv, struct replica **out);
/* Stops the backplane; writes waiting for a replica complete as the policy says. */
void replica_stop(struct replica *r);

#endif
