/*
 * twinlund configuration: a libconfig file (or the built-in default) loaded into plain structs.
 *
 * Every error names the file and line and what was expected; unknown keys are errors; nothing
 * is partially applied: on error the output struct is left empty.
 */
#ifndef TGT_CONFIG_H
#define TGT_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define TGT_NAME_MAX   224 /* iSCSI names are at most 223 bytes (RFC 7143 6.1) */
#define TGT_SECRET_MAX 256

/* Where LUN files with relative paths live unless node.state_dir says otherwise. */
#define TGT_CONFIG_DEFAULT_STATE_DIR "/var/lib/twinlun"

struct tgt_chap_config {
    bool required;                      /* CHAP must be used; None is refused */
    char username[TGT_NAME_MAX];        /* name the initiator must present */
    char secret[TGT_SECRET_MAX];        /* 12..255 bytes; compared, never logged */
    bool mutual;                        /* target authenticates itself too */
    char mutual_username[TGT_NAME_MAX]; /* name the target presents */
    char mutual_secret[TGT_SECRET_MAX]; /* must differ from secret */
};

struct tgt_lun_config {
    uint32_t id;         /* LUN number, 0..255 */
    char path[PATH_MAX]; /* regular file or block device */
    uint64_t size_bytes; /* for files: created/extended sparse to this size; 0 = use file size */
    uint32_t block_size; /* 512 or 4096 */
    bool direct;         /* O_DIRECT */
    bool create;         /* create the file (sparse) if missing */
    bool thin;           /* thin provisioned (default): UNMAP and WRITE SAME deallocate; when
                            false a created or extended file is allocated in full */
    bool read_only;      /* writes fail with DATA PROTECT, WRITE PROTECTED */
    char owner[64];      /* node that serves it and replicates to the other ("" = this node,
                            always so without a pair) */
    char serial[33];     /* unit serial number; default derived from target+lun */
    unsigned path_line;  /* line of the path setting, for later messages about the file */
};

#define TGT_ALLOW_MAX 64

/* An address block of an allow-list: family AF_INET or AF_INET6, the first prefix bits of addr. */
struct tgt_net {
    int family;
    uint8_t addr[16];
    uint8_t prefix;
};

/* Who may log in to a target (and see it in SendTargets). An empty list allows everyone; with
 * both lists, the initiator must be in both. Names compare case-insensitively (RFC 3722). */
struct tgt_allow {
    size_t initiator_count;
    char initiators[TGT_ALLOW_MAX][TGT_NAME_MAX];
    size_t net_count;
    struct tgt_net nets[TGT_ALLOW_MAX];
};

struct tgt_target_config {
    char iqn[TGT_NAME_MAX];
    char alias[TGT_NAME_MAX];
    struct tgt_chap_config chap;
    struct tgt_allow allow;
    struct tgt_lun_config *luns;
    size_t lun_count;
};

/* Operational parameters the target offers or accepts (RFC 7143 section 13). */
struct tgt_iscsi_params {
    uint32_t max_recv_data_segment_length; /* what we accept per PDU, 512..16777215 */
    uint32_t max_burst_length;
    uint32_t first_burst_length;
    bool initial_r2t;
    bool immediate_data;
    uint32_t max_outstanding_r2t;
    bool header_digest; /* offer/accept CRC32C */
    bool data_digest;   /* offer/accept CRC32C */
    uint32_t default_time2wait;
    uint32_t default_time2retain;
    uint32_t cmd_window; /* commands outstanding per session (MaxCmdSN - ExpCmdSN + 1) */
};

/* What a replica failure does to the write (DESIGN.md section 5). */
enum tgt_pair_policy {
    TGT_PAIR_AVAILABLE = 0, /* the write completes GOOD, the pair goes degraded */
    TGT_PAIR_STRICT,        /* the write fails with CHECK CONDITION */
};

/* When the partner acknowledges a replicated write (its durability point). */
enum tgt_pair_ack {
    TGT_PAIR_ACK_APPLIED = 0, /* written to the partner's copy */
    TGT_PAIR_ACK_RECEIVED,    /* persisted in the partner's ring file, applied after */
};

/* The partner node and the backplane (absent: a single node, nothing replicated). */
struct tgt_pair_config {
    bool enabled;
    char partner[64];     /* the partner's node.name */
    char listen_host[64]; /* this node's backplane address (rdma_cm binds it) */
    uint16_t listen_port;
    char partner_host[64]; /* the partner's backplane address */
    uint16_t partner_port;
    enum tgt_pair_policy policy;
    enum tgt_pair_ack ack;
    char ring_file[PATH_MAX];    /* ack received: the ring's persistent file */
    bool data_crc;               /* the partner checks a CRC32C of every record's data (always
                                    so with ack received) */
    bool explicit_alua;          /* initiators may move LUs (SET TARGET PORT GROUPS, TPGS 11b) */
    uint32_t replica_timeout_ms; /* a replica not done by then counts as failed */
    uint64_t ring_bytes;         /* the inflight ring the partner writes into */
    uint64_t pool_bytes;         /* registered command buffers: replicated data is sent from
                                    them without a copy */
    uint32_t heartbeat_ms;
    uint32_t dead_ms;        /* no heartbeat for this long: the partner is gone */
    uint64_t region_bytes;   /* the dirty region log's granularity */
    uint32_t alone_after_ms; /* a starting node serves its LUNs without the partner after this */
    char secret[TGT_SECRET_MAX]; /* "" or 12..255 bytes: authenticates the backplane handshake;
                                    never logged */
};

/* Write admission (throttle.h): client writes paced at what replication delivers. */
struct tgt_throttle_config {
    bool enabled;
    uint64_t burst_bytes;  /* the bucket's depth */
    uint64_t min_rate;     /* bytes/s the pace never goes below */
    uint32_t resync_share; /* percent of the replication rate a resync gets while clients write */
    uint32_t ewma_ms;      /* the completion-rate meter's averaging window */
    uint32_t queue_ms;     /* the queueing delay the sessions' CmdSN windows aim for */
};

struct tgt_config {
    char source[PATH_MAX]; /* file name, or "<built-in default>" */
    char node_name[64];
    char state_dir[PATH_MAX];
    char admin_socket[108]; /* twinlunctl's socket; "" = <state_dir>/twinlund.sock */
    char listen_host[64];   /* IPv4/IPv6 literal or host name */
    uint16_t listen_port;
    uint32_t threads;         /* network threads; 0 in the file = number of CPUs, resolved
                                 at load, so never 0 here */
    uint32_t nop_interval_s;  /* ping an idle initiator after this long; 0 = never */
    uint32_t nop_timeout_s;   /* drop the connection if the ping is not answered */
    uint32_t login_timeout_s; /* drop a connection that has not completed login by then */
    char log_level[16];
    char log_debug[256];  /* parts whose debug lines are printed (twl_log_set_debug) */
    bool metrics_enabled; /* the Prometheus endpoint (metrics.h) */
    char metrics_host[64];
    uint16_t metrics_port; /* 0: any free port */
    struct tgt_chap_config discovery_chap;
    struct tgt_pair_config pair;
    struct tgt_throttle_config throttle;
    struct tgt_iscsi_params iscsi;
    struct tgt_target_config *targets;
    size_t target_count;
};

/* The built-in default: one target with a 1 GiB thin LUN 0 at STATE_DIR/lun0.img on
 * 127.0.0.1:3260. state_dir replaces "@STATE_DIR@" (NULL: TGT_CONFIG_DEFAULT_STATE_DIR). */
extern const char tgt_config_default_text[];

/* Loads path. On error returns -EINVAL (or -errno for I/O) and writes a one-line message
 * "FILE:LINE: what was expected" into err. */
int tgt_config_load_file(const char *path, struct tgt_config *cfg, char *err, size_t errlen);
/* Loads from text; name is used in messages in place of a file name. */
int tgt_config_load_string(const char *text, const char *name, struct tgt_config *cfg, char *err,
                           size_t errlen);
/* The built-in default with its state directory. */
int tgt_config_load_default(const char *state_dir, struct tgt_config *cfg, char *err,
                            size_t errlen);
/* Overrides metrics.listen: "host:port" (port 0: any free one) or "off". -EINVAL (err says
 * why) on anything else. */
int tgt_config_set_metrics(struct tgt_config *cfg, const char *spec, char *err, size_t errlen);
void tgt_config_free(struct tgt_config *cfg);

#endif
