/* target/config.c: the built-in default, the shipped examples, and a table of broken files. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cmocka.h>

#include "config.h"

#ifndef TWL_SOURCE_DIR
#define TWL_SOURCE_DIR "."
#endif

/* A valid targets list to append where the error under test lies elsewhere. */
#define TARGETS                                                                                    \
    "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = ( { path = \"/tmp/l0\"; } ); } "     \
    ");\n"

static const struct tgt_config zero_cfg;

static void assert_zeroed(const struct tgt_config *cfg)
{
    assert_memory_equal(cfg, &zero_cfg, sizeof(*cfg));
}

static void default_text_loads(void **state)
{
    (void)state;
    struct tgt_config cfg;
    char err[512];
    assert_int_equal(tgt_config_load_default("/tmp/twl-state", &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.source, "<built-in default>");
    assert_string_equal(cfg.state_dir, "/tmp/twl-state");
    assert_true(cfg.node_name[0] != '\0');
    assert_string_equal(cfg.log_level, "info");
    assert_string_equal(cfg.listen_host, "127.0.0.1");
    assert_int_equal(cfg.listen_port, 3260);
    assert_true(cfg.threads >= 1 && cfg.threads <= 64);
    assert_int_equal(cfg.nop_interval_s, 30);
    assert_int_equal(cfg.nop_timeout_s, 15);
    assert_int_equal(cfg.login_timeout_s, 15);
    assert_false(cfg.discovery_chap.required);
    assert_int_equal(cfg.iscsi.max_recv_data_segment_length, 262144);
    assert_int_equal(cfg.iscsi.max_burst_length, 1048576);
    assert_int_equal(cfg.iscsi.first_burst_length, 262144);
    assert_false(cfg.iscsi.initial_r2t);
    assert_true(cfg.iscsi.immediate_data);
    assert_int_equal(cfg.iscsi.max_outstanding_r2t, 8);
    assert_true(cfg.iscsi.header_digest);
    assert_true(cfg.iscsi.data_digest);
    assert_int_equal(cfg.iscsi.default_time2wait, 2);
    assert_int_equal(cfg.iscsi.default_time2retain, 20);
    assert_int_equal(cfg.iscsi.cmd_window, 128);

    assert_int_equal(cfg.target_count, 1);
    struct tgt_target_config *t = &cfg.targets[0];
    assert_string_equal(t->iqn, "iqn.2026-11.io.twinlun:default");
    assert_string_equal(t->alias, "twinlun");
    assert_false(t->chap.required);
    assert_int_equal(t->lun_count, 1);
    struct tgt_lun_config *l = &t->luns[0];
    assert_int_equal(l->id, 0);
    assert_string_equal(l->path, "/tmp/twl-state/lun0.img");
    assert_int_equal(l->size_bytes, 1ull << 30);
    assert_int_equal(l->block_size, 512);
    assert_true(l->create);
    assert_false(l->direct);
    assert_true(l->thin); /* thin provisioning unless the config says otherwise */
    assert_false(l->read_only);
    assert_int_equal(strlen(l->serial), 12);

    tgt_config_free(&cfg);
    assert_zeroed(&cfg);
}

static void default_state_dir_is_escaped(void **state)
{
    (void)state;
    struct tgt_config cfg;
    char err[512];
    assert_int_equal(tgt_config_load_default(NULL, &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.targets[0].luns[0].path, "/var/lib/twinlun/lun0.img");
    tgt_config_free(&cfg);
    assert_int_equal(tgt_config_load_default("/tmp/a\"b\\c/", &cfg, err, sizeof(err)), 0);
    assert_string_equal(cfg.state_dir, "/tmp/a\"b\\c");
    assert_string_equal(cfg.targets[0].luns[0].path, "/tmp/a\"b\\c/lun0.img");
    tgt_config_free(&cfg);
}

/* The pair examples load, name each other and agree on the LUN's owner. */
static void example_pair_confs_load(void **state)
{
    (void)state;
    struct tgt_config a, b;
    char err[512];
    assert_int_equal(
        tgt_config_load_file(TWL_SOURCE_DIR "/etc/twinlun-a.conf", &a, err, sizeof(err)), 0);
    assert_int_equal(
        tgt_config_load_file(TWL_SOURCE_DIR "/etc/twinlun-b.conf", &b, err, sizeof(err)), 0);
    assert_true(a.pair.enabled && b.pair.enabled);
    assert_string_equal(a.pair.partner, b.node_name);
    assert_string_equal(b.pair.partner, a.node_name);
    assert_string_equal(a.pair.partner_host, b.pair.listen_host);
    assert_int_equal(a.pair.partner_port, b.pair.listen_port);
    assert_int_equal(a.pair.policy, TGT_PAIR_AVAILABLE);
    assert_int_equal(a.pair.ack, TGT_PAIR_ACK_APPLIED);
    assert_int_equal(b.pair.ack, TGT_PAIR_ACK_APPLIED);
    assert_string_equal(a.pair.ring_file, "/var/lib/twinlun/inflight-ring");
    assert_false(a.pair.data_crc);
    assert_true(strlen(a.pair.secret) >= 12);
    assert_string_equal(a.pair.secret, b.pair.secret);
    assert_int_equal(a.pair.region_bytes, 64u << 10);
    assert_true(a.throttle.enabled);
    assert_int_equal(a.throttle.resync_share, 50);
    assert_int_equal(a.throttle.burst_bytes, 4u << 20);
    assert_int_equal(a.throttle.min_rate, 1u << 20);
    assert_int_equal(a.throttle.ewma_ms, 200);
    assert_int_equal(a.throttle.queue_ms, 100);
    assert_int_equal(a.pair.alone_after_ms, 10000);
    assert_int_equal(a.pair.ring_bytes, 16u << 20);
    assert_int_equal(a.pair.pool_bytes, 64u << 20);
    assert_string_equal(a.targets[0].luns[0].owner, "node-a");
    assert_string_equal(b.targets[0].luns[0].owner, "node-a");
    tgt_config_free(&a);
    tgt_config_free(&b);
}

static void example_twinlun_conf_loads(void **state)
{
    (void)state;
    struct tgt_config cfg;
    char err[512] = "";
    int rc = tgt_config_load_file(TWL_SOURCE_DIR "/etc/twinlun.conf", &cfg, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(cfg.source, TWL_SOURCE_DIR "/etc/twinlun.conf");
    assert_int_equal(cfg.target_count, 1);
    assert_string_equal(cfg.targets[0].luns[0].path, "/var/lib/twinlun/lun0.img");
    /* The documented values are the defaults: the example and the built-in must agree. */
    struct tgt_config def;
    assert_int_equal(tgt_config_load_default(NULL, &def, err, sizeof(err)), 0);
    assert_memory_equal(&cfg.iscsi, &def.iscsi, sizeof(cfg.iscsi));
    assert_int_equal(cfg.nop_interval_s, def.nop_interval_s);
    assert_int_equal(cfg.nop_timeout_s, def.nop_timeout_s);
    assert_int_equal(cfg.login_timeout_s, def.login_timeout_s);
    assert_int_equal(cfg.threads, def.threads);
    assert_string_equal(cfg.listen_host, def.listen_host);
    assert_int_equal(cfg.listen_port, def.listen_port);
    assert_string_equal(cfg.targets[0].luns[0].serial, def.targets[0].luns[0].serial);
    tgt_config_free(&def);
    tgt_config_free(&cfg);
}

static void example_chap_conf_loads(void **state)
{
    (void)state;
    struct tgt_config cfg;
    char err[512] = "";
    int rc = tgt_config_load_file(TWL_SOURCE_DIR "/etc/chap.conf", &cfg, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(cfg.node_name, "node-a");
    assert_string_equal(cfg.listen_host, "0.0.0.0");
    assert_true(cfg.discovery_chap.required);
    assert_false(cfg.discovery_chap.mutual);
    assert_string_equal(cfg.discovery_chap.username, "discovery");
    assert_int_equal(cfg.target_count, 1);
    struct tgt_target_config *t = &cfg.targets[0];
    assert_true(t->chap.required);
    assert_true(t->chap.mutual);
    assert_string_equal(t->chap.username, "iqn.1994-05.com.redhat:client1");
    assert_string_equal(t->chap.mutual_username, "twinlun-secure");
    assert_int_equal(t->lun_count, 2);
    assert_int_equal(t->luns[0].size_bytes, 10ull << 30);
    assert_int_equal(t->luns[1].id, 1);
    assert_int_equal(t->luns[1].size_bytes, 100ull << 30);
    assert_int_equal(t->luns[1].block_size, 4096);
    assert_string_equal(t->luns[1].serial, "TWLSECURE0001");
    assert_string_not_equal(t->luns[0].serial, t->luns[1].serial);
    tgt_config_free(&cfg);
}

static void allow_lists_load(void **state)
{
    (void)state;
    static struct tgt_config cfg;
    char err[512] = "";
    int rc = tgt_config_load_string(
        "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
        "  allow = { initiators = ( \"iqn.2026-12.com.example:host1\", \"iqn.2026-12.com.example:"
        "host2\" );\n"
        "            addresses = [ \"10.1.0.0/16\", \"192.168.1.5\", \"fd00::/8\", \"::1\" ]; };\n"
        "  luns = ( { path = \"/a\"; } ); } );\n",
        "allow.conf", &cfg, err, sizeof(err));
    assert_int_equal(rc, 0);
    const struct tgt_allow *a = &cfg.targets[0].allow;
    assert_int_equal(a->initiator_count, 2);
    assert_string_equal(a->initiators[1], "iqn.2026-12.com.example:host2");
    assert_int_equal(a->net_count, 4);
    assert_int_equal(a->nets[0].family, AF_INET);
    assert_int_equal(a->nets[0].prefix, 16);
    assert_int_equal(a->nets[1].prefix, 32);
    assert_int_equal(a->nets[2].family, AF_INET6);
    assert_int_equal(a->nets[2].prefix, 8);
    assert_int_equal(a->nets[3].prefix, 128);
    tgt_config_free(&cfg);
}

static void missing_file_is_errno(void **state)
{
    (void)state;
    struct tgt_config cfg;
    char err[512];
    memset(&cfg, 0xa5, sizeof(cfg));
    assert_int_equal(tgt_config_load_file("/nonexistent/twinlun.conf", &cfg, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "/nonexistent/twinlun.conf:"));
    assert_zeroed(&cfg);
}

static void accepted_forms(void **state)
{
    (void)state;
    static const char text[] =
        "node = { name = \"n1\"; state_dir = \"/srv//twl/\"; admin_socket = \"/run/t.sock\"; };\n"
        "log = { level = \"debug\"; };\n"
        "iscsi = { listen = \"[fe80::1%eth0]:3261\"; threads = 3; nop_interval = 0;\n"
        "  max_burst_length = 16777215; first_burst_length = 16777215; cmd_window = 4096; };\n"
        "# 99999999999 in a comment and \"12345678901\" in a string are not integers\n"
        "targets = (\n"
        "  { iqn = \"eui.02004567A425678D\"; alias = \"99999999999\";\n"
        "    luns = ( { path = \"./a//b.img\"; size = \"512M\"; create = true; },\n"
        "             { id = 7; path = \"/dev/sdx\"; },\n"
        "             { id = 3; path = \"c.img\"; size = 4294967296L; block_size = 4096; },\n"
        "             { id = 4; path = \"d.img\"; size = \"2k\"; direct = true; } ); },\n"
        "  { iqn = \"naa.60014055f3e1c1b2a0d9c8e7f6a5b4c3\"; luns = ( { path = \"e.img\"; } ); },\n"
        "  { iqn = \"iqn.2026-11.io.twinlun\"; luns = ( { path = \"f.img\"; size = 1048576; } ); "
        "}\n"
        ");\n";
    struct tgt_config cfg;
    char err[512] = "";
    int rc = tgt_config_load_string(text, "ok.conf", &cfg, err, sizeof(err));
    if (rc)
        fail_msg("%s", err);
    assert_string_equal(cfg.source, "ok.conf");
    assert_string_equal(cfg.node_name, "n1");
    assert_string_equal(cfg.state_dir, "/srv/twl");
    assert_string_equal(cfg.admin_socket, "/run/t.sock");
    assert_string_equal(cfg.log_level, "debug");
    assert_string_equal(cfg.listen_host, "fe80::1%eth0");
    assert_int_equal(cfg.listen_port, 3261);
    assert_int_equal(cfg.threads, 3);
    assert_int_equal(cfg.nop_interval_s, 0);
    assert_int_equal(cfg.target_count, 3);
    struct tgt_lun_config *l = cfg.targets[0].luns;
    assert_int_equal(cfg.targets[0].lun_count, 4);
    assert_int_equal(l[0].id, 0);
    assert_string_equal(l[0].path, "/srv/twl/a/b.img");
    assert_int_equal(l[0].size_bytes, 512ull << 20);
    assert_int_equal(l[1].id, 7);
    assert_string_equal(l[1].path, "/dev/sdx");
    assert_int_equal(l[1].size_bytes, 0);
    assert_false(l[1].create);
    assert_int_equal(l[2].size_bytes, 4ull << 30);
    assert_int_equal(l[2].block_size, 4096);
    assert_int_equal(l[3].size_bytes, 2048);
    assert_true(l[3].direct);
    assert_int_equal(cfg.targets[2].luns[0].size_bytes, 1048576);
    tgt_config_free(&cfg);

    assert_int_equal(
        tgt_config_load_string("iscsi = { listen = \"storage-1.example\"; };\n" TARGETS, "ok.conf",
                               &cfg, err, sizeof(err)),
        0);
    assert_string_equal(cfg.listen_host, "storage-1.example");
    assert_int_equal(cfg.listen_port, 3260);
    tgt_config_free(&cfg);
    assert_int_equal(tgt_config_load_string("iscsi = { listen = \"[::]:860\"; };\n" TARGETS,
                                            "ok.conf", &cfg, err, sizeof(err)),
                     0);
    assert_string_equal(cfg.listen_host, "::");
    assert_int_equal(cfg.listen_port, 860);
    tgt_config_free(&cfg);
}

struct bad_case {
    const char *what;
    const char *text;
    unsigned line;
    const char *phrase;
};

static const struct bad_case bad_cases[] = {
    {"syntax error", "log = { level = \"info\"; };\niscsi = { threads = ; };\n" TARGETS, 2,
     "syntax error"},
    {"duplicate setting", "log = { level = \"info\";\n  level = \"warn\"; };\n" TARGETS, 2,
     "duplicate setting name"},
    {"unknown key, top level", "log = { level = \"info\"; };\nfoo = 1;\n" TARGETS, 2,
     "unknown key 'foo' at top level; expected one of: node, log, iscsi, targets"},
    {"unknown key, nested", "iscsi = {\n  listen = \"1.2.3.4\";\n  thread = 2;\n};\n" TARGETS, 3,
     "unknown key 'thread' in iscsi; expected one of: listen, threads,"},
    {"unknown key, lun",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  luns = ( { path = \"/tmp/l0\";\n"
     "             sise = \"1G\"; } ); } );\n",
     3, "unknown key 'sise' in targets[0].luns[0]"},
    {"unknown key, auth", "iscsi = { discovery_auth = {\n  user = \"x\"; }; };\n" TARGETS, 2,
     "unknown key 'user' in iscsi.discovery_auth"},
    {"wrong type, string for integer", "iscsi = {\n  threads = \"4\";\n};\n" TARGETS, 2,
     "wrong type for iscsi.threads: expected an integer, got a string"},
    {"wrong type, integer for boolean", "iscsi = {\n  initial_r2t = 1;\n};\n" TARGETS, 2,
     "wrong type for iscsi.initial_r2t: expected true or false, got an integer"},
    {"wrong type, scalar for group", "\niscsi = 5;\n" TARGETS, 2,
     "wrong type for iscsi: expected a group"},
    {"wrong type, float", "node = {};\niscsi = { nop_timeout = 1.5; };\n" TARGETS, 2,
     "expected an integer, got a floating-point number"},
    {"out of range, threads", "iscsi = {\n  threads = 65;\n};\n" TARGETS, 2,
     "iscsi.threads = 65 is out of range; expected 0..64"},
    {"out of range, login_timeout", "iscsi = {\n\n  login_timeout = 0;\n};\n" TARGETS, 3,
     "iscsi.login_timeout = 0 is out of range; expected 1..3600"},
    {"out of range, segment", "iscsi = {\n  max_recv_data_segment_length = 16777216;\n};\n" TARGETS,
     2, "out of range; expected 512..16777215"},
    {"out of range, cmd_window", "iscsi = { cmd_window = 0; };\n" TARGETS, 1,
     "iscsi.cmd_window = 0 is out of range; expected 1..4096"},
    {"out of range, lun id",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n  luns = ( { id = 256; path = \"/a\"; "
     "} ); } );\n",
     2, "targets[0].luns[0].id = 256 is out of range; expected 0..255"},
    {"integer wider than 32 bits", "iscsi = {\n  max_burst_length = 4294967808;\n};\n" TARGETS, 2,
     "integer 4294967808 does not fit in 32 bits"},
    {"first burst above max burst",
     "iscsi = {\n  max_burst_length = 1048576;\n  first_burst_length = 2097152;\n};\n" TARGETS, 3,
     "first_burst_length (2097152) is larger than max_burst_length (1048576)"},
    {"short secret",
     "iscsi = { discovery_auth = { username = \"d\";\n  secret = \"short\"; }; };\n" TARGETS, 2,
     "iscsi.discovery_auth.secret is 5 bytes long; expected 12..255 bytes (RFC 7143"},
    {"mutual secret equals secret",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  auth = { username = \"u\"; secret = \"0123456789abc\";\n"
     "    mutual_username = \"m\";\n"
     "    mutual_secret = \"0123456789abc\"; };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     4, "targets[0].auth.mutual_secret is the same as secret"},
    {"allow: not an address",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = { addresses = ( \"10.0.0.0/8\",\n \"10.0.0.300\" ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     3, "targets[0].allow.addresses '10.0.0.300' is not an address"},
    {"allow: prefix too long",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = { addresses = ( \"10.0.0.0/33\" ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     2, "has a bad prefix length; expected 0..32"},
    {"allow: bits past the prefix",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = { addresses = ( \"fd00::1/64\" ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     2, "has address bits set past the /64 prefix"},
    {"allow: not an iSCSI name",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = {\n initiators = ( \"host1\" ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     3, "targets[0].allow.initiators 'host1' is not a valid iSCSI name"},
    {"allow: empty list",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = { initiators = ( ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     2, "has 0 entries; expected 1..64 (leave it out to allow all)"},
    {"allow: unknown key",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  allow = { hosts = ( \"a\" ); };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     2, "unknown key 'hosts'"},
    {"half of the mutual pair",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  auth = { username = \"u\"; secret = \"0123456789abc\";\n"
     "    mutual_username = \"m\"; };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     3, "has mutual_username without mutual_secret; expected both"},
    {"auth without username",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n"
     "  auth = { secret = \"0123456789abc\"; };\n"
     "  luns = ( { path = \"/a\"; } ); } );\n",
     2, "targets[0].auth needs both username and secret"},
    {"iqn in upper case",
     "targets = (\n  { iqn = \"iqn.2026-11.IO.twinlun:t\"; luns = ( { path = \"/a\"; } ); } );\n",
     2, "is not a valid iSCSI name: iqn. names must be lower case"},
    {"iqn without date",
     "targets = (\n  { iqn = \"iqn.io.twinlun:t\"; luns = ( { path = \"/a\"; } ); } );\n", 2,
     "date yyyy-mm"},
    {"iqn with a bad character",
     "targets = (\n  { iqn = \"iqn.2026-11.io.twinlun:t_1\"; luns = ( { path = \"/a\"; } ); } );\n",
     2, "characters other than a-z 0-9 - . :"},
    {"iqn with an unknown prefix",
     "targets = (\n  { iqn = \"target0\"; luns = ( { path = \"/a\"; } ); } );\n", 2,
     "must start with iqn., eui. or naa."},
    {"eui with too few digits",
     "targets = (\n  { iqn = \"eui.0123\"; luns = ( { path = \"/a\"; } ); } );\n", 2,
     "exactly 16 hex digits"},
    {"duplicate iqn",
     "targets = (\n"
     "  { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = ( { path = \"/a\"; } ); },\n"
     "  { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = ( { path = \"/b\"; } ); } );\n",
     3, "duplicate target iqn 'iqn.2026-11.io.twinlun:t' (first at line 2)"},
    {"duplicate LUN id",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n"
     "  { id = 0; path = \"/a\"; },\n"
     "  { id = 0; path = \"/b\"; } ); } );\n",
     3, "duplicate LUN id 0 in targets[0] (first at line 2)"},
    {"duplicate path across targets",
     "node = { state_dir = \"/srv\"; };\n"
     "targets = (\n"
     "  { iqn = \"iqn.2026-11.io.twinlun:a\"; luns = ( { path = \"a.img\"; } ); },\n"
     "  { iqn = \"iqn.2026-11.io.twinlun:b\"; luns = ( { path = \"/srv/./a.img\"; } ); } );\n",
     4, "path '/srv/a.img' is already used by targets[0].luns[0] (line 3)"},
    {"bad block size",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n"
     "  { path = \"/a\";\n    block_size = 1024; } ); } );\n",
     3, "block_size = 1024 is not supported; expected 512 or 4096"},
    {"size not a multiple of the block size",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n"
     "  { path = \"/a\"; block_size = 4096;\n    size = \"1K\"; } ); } );\n",
     3, "size 1024 is not a multiple of block_size 4096"},
    {"bad size suffix",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n"
     "  { path = \"/a\";\n    size = \"1GB\"; } ); } );\n",
     3, "size '1GB' is not a size; expected bytes or a number with suffix K, M, G or T"},
    {"negative size",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\"; size = -512; "
     "} ); } );\n",
     2, "size = -512 is out of range"},
    {"create without size",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\"; create = "
     "true; } ); } );\n",
     2, "has create = true but no size"},
    {"bad serial",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\"; serial = "
     "\"has space\"; } ); } );\n",
     2, "serial 'has space' is not valid; expected 1..32 printable ASCII"},
    {"no path",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { id = 1; } ); } );\n", 2,
     "targets[0].luns[0] has no path"},
    {"partner equal to self",
     "node = { name = \"a\"; };\npair = {\n  partner = \"a\"; listen = \"1.2.3.4:7471\";\n"
     "  partner_address = \"1.2.3.5:7471\"; };\n" TARGETS,
     3, "pair.partner 'a' is this node's own name"},
    {"pair without partner",
     "node = { name = \"a\"; };\npair = { listen = \"1.2.3.4:7471\"; };\n" TARGETS, 2,
     "pair has no partner"},
    {"bad backplane address",
     "node = { name = \"a\"; };\npair = { partner = \"b\";\n  listen = \"1.2.3.4\";\n"
     "  partner_address = \"1.2.3.5:7471\"; };\n" TARGETS,
     3, "pair.listen '1.2.3.4' is not an address; expected \"host:port\""},
    {"short pair secret",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  secret = \"hunter2\"; };\n" TARGETS,
     4, "pair.secret is 7 bytes long; expected 12..255 bytes"},
    {"pair secret not a string",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  secret = 1234; };\n" TARGETS,
     4, "pair.secret"},
    {"bad policy",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  policy = \"maybe\"; };\n" TARGETS,
     4, "pair.policy 'maybe' is not a policy"},
    {"bad ack",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  ack = \"written\"; };\n" TARGETS,
     4, "pair.ack 'written' is not a durability point; expected \"applied\" or \"received\""},
    {"relative ring file",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  ring_file = \"ring\"; };\n" TARGETS,
     4, "pair.ring_file 'ring' is not absolute"},
    {"data_crc not a boolean",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  data_crc = \"yes\"; };\n" TARGETS,
     4, "pair.data_crc"},
    {"region size not a power of two",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  region_size = \"96K\"; };\n" TARGETS,
     4, "pair.region_size 98304 is not a power of two between 4K and 64M"},
    {"resync share too large",
     "node = { name = \"a\"; };\nthrottle = {\n  resync_share = 99; };\n" TARGETS, 3,
     "throttle.resync_share"},
    {"resync share moved out of pair",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  resync_share = 50; };\n" TARGETS,
     4, "resync_share"},
    {"throttle enabled not a boolean",
     "node = { name = \"a\"; };\nthrottle = { enabled = 1; };\n" TARGETS, 2, "throttle.enabled"},
    {"throttle burst too small",
     "node = { name = \"a\"; };\nthrottle = {\n burst = \"4K\"; };\n" TARGETS, 3,
     "throttle.burst 4096 is out of range; expected 64K..1G"},
    {"throttle min_rate not a size",
     "node = { name = \"a\"; };\nthrottle = {\n min_rate = \"fast\"; };\n" TARGETS, 3,
     "throttle.min_rate"},
    {"throttle unknown key", "node = { name = \"a\"; };\nthrottle = {\n rate = 5; };\n" TARGETS, 3,
     "rate"},
    {"alone_after_ms too large",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  alone_after_ms = 3600001; };\n" TARGETS,
     4, "pair.alone_after_ms"},
    {"ring not a power of two",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  ring_size = \"3M\"; };\n" TARGETS,
     4, "pair.ring_size 3145728 is not a power of two"},
    {"buffer pool too small",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\";\n"
     "  partner_address = \"h:2\";\n  buffer_pool = \"1M\"; };\n" TARGETS,
     4, "pair.buffer_pool 1048576 is out of range; expected 16M..16G"},
    {"pair LUN without owner",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\"; "
     "partner_address = \"h:2\"; };\n"
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\"; } ); } );\n",
     4, "has no owner; expected owner = \"a\" or \"b\""},
    {"owner neither node",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\"; "
     "partner_address = \"h:2\"; };\n"
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\";\n"
     "    owner = \"c\"; } ); } );\n",
     5, "owner 'c' is neither this node ('a') nor its partner ('b')"},
    {"pair with two targets",
     "node = { name = \"a\"; };\npair = { partner = \"b\"; listen = \"h:1\"; "
     "partner_address = \"h:2\"; };\n"
     "targets = (\n { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = ( { path = \"/a\"; owner = "
     "\"a\"; } ); },\n"
     " { iqn = \"iqn.2026-11.io.twinlun:u\"; luns = ( { path = \"/b\"; owner = \"a\"; } ); } "
     ");\n",
     3, "2 targets with a pair section; expected one target on a pair"},
    {"owner without pair",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\";\n"
     "    owner = \"a\"; } ); } );\n",
     3, "owner is set but there is no pair section"},
    {"thin is a boolean",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\";\n"
     "    thin = \"yes\"; } ); } );\n",
     3, "wrong type for targets[0].luns[0].thin: expected true or false, got a string"},
    {"read_only is a boolean",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\"; luns = (\n  { path = \"/a\";\n"
     "    read_only = 1; } ); } );\n",
     3, "wrong type for targets[0].luns[0].read_only: expected true or false, got an integer"},
    {"bad listen port", "iscsi = {\n  listen = \"1.2.3.4:70000\";\n};\n" TARGETS, 2,
     "bad port '70000'; expected a port 1..65535"},
    {"listen port zero", "iscsi = { listen = \"1.2.3.4:0\"; };\n" TARGETS, 1, "bad port '0'"},
    {"unbracketed IPv6 listen", "iscsi = { listen = \"::1:3260\"; };\n" TARGETS, 1,
     "IPv6 addresses need brackets"},
    {"bad IPv6 listen", "iscsi = { listen = \"[zz::1]:3260\"; };\n" TARGETS, 1,
     "is not an IPv6 address"},
    {"bad log level", "log = {\n  level = \"verbose\";\n};\n" TARGETS, 2,
     "log.level 'verbose' is not a level; expected one of: error, warn, info, debug"},
    {"relative state_dir", "node = {\n  state_dir = \"var/lib\";\n};\n" TARGETS, 2,
     "state_dir 'var/lib' is not absolute"},
    {"relative admin_socket", "node = {\n  admin_socket = \"t.sock\";\n};\n" TARGETS, 2,
     "node.admin_socket 't.sock' is not valid; expected an absolute path"},
    {"no targets", "log = { level = \"info\"; };\n", 1, "no targets"},
    {"empty targets", "log = { level = \"info\"; };\ntargets = ();\n", 2, "no targets"},
    {"target not a group", "targets = (\n  1 );\n", 2,
     "targets[0] is an integer; expected a group"},
    {"target without luns", "targets = (\n  { iqn = \"iqn.2026-11.io.twinlun:t\"; } );\n", 2,
     "targets[0] has no luns"},
    {"target with empty luns",
     "targets = ( { iqn = \"iqn.2026-11.io.twinlun:t\";\n  luns = (); } );\n", 2,
     "targets[0].luns is empty"},
};

static void broken_configs_are_refused(void **state)
{
    (void)state;
    int failures = 0;
    for (size_t i = 0; i < sizeof(bad_cases) / sizeof(bad_cases[0]); i++) {
        const struct bad_case *bc = &bad_cases[i];
        struct tgt_config cfg;
        char err[1024] = "";
        char where[32];
        memset(&cfg, 0xa5, sizeof(cfg));
        int rc = tgt_config_load_string(bc->text, "bad.conf", &cfg, err, sizeof(err));
        snprintf(where, sizeof(where), "bad.conf:%u: ", bc->line);
        bool ok = rc == -EINVAL && strncmp(err, where, strlen(where)) == 0 &&
                  strstr(err, bc->phrase) != NULL && memcmp(&cfg, &zero_cfg, sizeof(cfg)) == 0 &&
                  strstr(err, "hunter2") == NULL; /* a secret is never echoed */
        if (!ok) {
            print_error("case '%s': rc %d, message \"%s\"; expected \"%s...%s\"\n", bc->what, rc,
                        err, where, bc->phrase);
            failures++;
        }
    }
    assert_int_equal(failures, 0);
}

static void free_is_idempotent(void **state)
{
    (void)state;
    struct tgt_config cfg;
    memset(&cfg, 0, sizeof(cfg));
    tgt_config_free(&cfg);
    tgt_config_free(NULL);
    char err[512];
    assert_int_equal(tgt_config_load_default("/tmp", &cfg, err, sizeof(err)), 0);
    tgt_config_free(&cfg);
    assert_zeroed(&cfg);
    tgt_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(default_text_loads),
        cmocka_unit_test(default_state_dir_is_escaped),
        cmocka_unit_test(example_twinlun_conf_loads),
        cmocka_unit_test(example_pair_confs_load),
        cmocka_unit_test(example_chap_conf_loads),
        cmocka_unit_test(allow_lists_load),
        cmocka_unit_test(missing_file_is_errno),
        cmocka_unit_test(accepted_forms),
        cmocka_unit_test(broken_configs_are_refused),
        cmocka_unit_test(free_is_idempotent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
