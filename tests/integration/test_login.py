#!/usr/bin/env python3
"""Login (issue 2, "What must hold" 3): an unknown target and a missing InitiatorName get their
login status; CHAP with a wrong secret or user is refused (0x0201) with one log line that never
shows a secret, the right secret gets in, mutual CHAP proves the target (its CHAP_R is checked
here), a CHAP target refuses AuthMethod=None and a skipped security stage; libiscsi logs in with
CHAP and mutual CHAP through the URL; discovery lists every target with its portal; a second
login with the same initiator name and ISID reinstates the session, closing the first."""

import os
import re

from iscsi_raw import (Daemon, Initiator, LoginFailed, TestFailure, check, count_lines,
                       bhs, run, run_main, write_config)

OPEN = "iqn.2026-11.io.twinlun:open"
SECURE = "iqn.2026-11.io.twinlun:secure"
USER, SECRET = "alice", "alice-secret-0123"
WRONG = "wrong-secret-98765"
T_USER, T_SECRET = "twinlun-secure", "target-secret-4567"
ALLOWED = "iqn.2026-11.io.twinlun:allowed"  # one initiator, from loopback
FAR = "iqn.2026-11.io.twinlun:far"          # only from 10.0.0.0/8: never from here
FRIEND = "iqn.2026-12.test:friend"


def expect_login_status(status, what, **kw):
    port = kw.pop("port")
    ini = Initiator(port)
    try:
        ini.login(**kw)
    except LoginFailed as e:
        check(e.status == status, "%s: login status 0x%04x, want 0x%04x" % (what, e.status, status))
        check(not (e.pdu.flags & 0x80), "%s: a failed login response has the T bit" % what)
        # the target closes the connection after a failed login
        ini.expect_closed(what=what)
        ini.close()
        return
    raise TestFailure("%s: login succeeded, want status 0x%04x" % (what, status))


def main(args):
    d = Daemon(args.twinlund)
    try:
        os.makedirs(d.state_dir)
        d.config = write_config(os.path.join(d.tmp, "chap.conf"), d.state_dir, targets=[
            {"iqn": OPEN},
            {"iqn": SECURE, "auth": {"username": USER, "secret": SECRET,
                                     "mutual_username": T_USER, "mutual_secret": T_SECRET}},
            {"iqn": ALLOWED, "extra": 'allow = { initiators = ( "%s" ); '
                                      'addresses = ( "127.0.0.0/8", "::1" ); };' % FRIEND},
            {"iqn": FAR, "extra": 'allow = { addresses = ( "10.0.0.0/8" ); };'},
        ])
        d.start()
        port = d.port

        expect_login_status(0x0203, "unknown target", port=port,
                            target="iqn.2026-11.io.twinlun:nosuch")
        check(count_lines(d.log(), r"warn .*login refused.*0x0203") == 1,
              "want one log line for the unknown target:\n" + d.log())
        # allow-lists: by name and by address; refused ones hear AUTHORIZATION FAILURE
        ini = Initiator(port)
        ini.login(initiator=FRIEND, target=ALLOWED)
        ini.logout()
        expect_login_status(0x0202, "an initiator the allow-list does not name", port=port,
                            target=ALLOWED)
        expect_login_status(0x0202, "an address the allow-list does not hold", port=port,
                            initiator=FRIEND, target=FAR)
        check(count_lines(d.log(), r"warn .*login refused.*0x0202.*allow-list") == 2,
              "want a log line for each allow-list refusal:\n" + d.log())
        ini = Initiator(port)
        ini.login(initiator=FRIEND, discovery=True)
        p = ini.text_request([("SendTargets", "All")])
        names = [kv.split("=", 1)[1] for kv in p.data.decode().split("\0")
                 if kv.startswith("TargetName=")]
        check(sorted(names) == sorted([OPEN, SECURE, ALLOWED]),
              "SendTargets=All for %s lists %r (the far target must stay unseen)" % (FRIEND, names))
        ini.logout()

        expect_login_status(0x0207, "missing InitiatorName", port=port, target=OPEN,
                            skip_initiator_name=True)
        expect_login_status(0x0207, "normal session without TargetName", port=port, target=None)

        before = len(d.log().splitlines())
        expect_login_status(0x0201, "CHAP with a wrong secret", port=port, target=SECURE,
                            chap=(USER, WRONG))
        new = d.log().splitlines()[before:]
        check(len([l for l in new if "0x0201" in l]) == 1,
              "want exactly one log line for the failed CHAP login, got:\n" + "\n".join(new))
        expect_login_status(0x0201, "CHAP with a wrong user name", port=port, target=SECURE,
                            chap=("mallory", SECRET))
        expect_login_status(0x0201, "CHAP target, initiator offers only None", port=port,
                            target=SECURE, auth_offer="None")

        # skipping the security stage on a CHAP target
        ini = Initiator(port)
        try:
            ini.login_pdu(1, 3, True, [("InitiatorName", "iqn.2026-11.io.twinlun:test-raw"),
                                       ("SessionType", "Normal"), ("TargetName", SECURE)],
                          b"\x80\0\0\0\0\x09", ini.itt())
            raise TestFailure("login without the security stage succeeded on a CHAP target")
        except LoginFailed as e:
            check(e.status == 0x0201, "skipped security stage: status 0x%04x" % e.status)
        ini.close()

        ini = Initiator(port)
        ini.login(target=SECURE, chap=(USER, SECRET), isid=b"\x80\0\0\0\0\x01")
        ini.ping()
        ini.logout()

        ini = Initiator(port)
        ini.login(target=SECURE, chap=(USER, SECRET), mutual=(T_USER, T_SECRET),
                  isid=b"\x80\0\0\0\0\x02")
        check(getattr(ini, "mutual_verified", False), "mutual CHAP was not verified")
        ini.ping()
        ini.logout()

        # a real initiator through the URL: one-way and mutual CHAP, and a wrong password
        url = d.url(target=SECURE, user=USER, secret=SECRET)
        rc, out = run([args.stamp, "write", url, "9", "300"])
        check(rc == 0, "iscsi_stamp with CHAP failed:\n" + out)
        murl = url + "?target_user=%s&target_password=%s" % (T_USER, T_SECRET)
        rc, out = run([args.stamp, "verify", murl, "9", "300"])
        check(rc == 0, "iscsi_stamp with mutual CHAP failed:\n" + out)
        rc, out = run([args.stamp, "verify", d.url(target=SECURE, user=USER, secret=WRONG), "9",
                       "300"])
        check(rc != 0, "iscsi_stamp logged in with a wrong CHAP secret:\n" + out)
        rc, out = run([args.stamp, "verify", d.url(target=SECURE), "9", "300"])
        check(rc != 0, "iscsi_stamp logged in to a CHAP target without CHAP:\n" + out)

        log = d.log()
        for secret in (SECRET, WRONG, T_SECRET):
            check(secret not in log, "the log shows a CHAP secret:\n" + log)

        # discovery
        ini = Initiator(port)
        ini.login(discovery=True)
        p = ini.text_request([("SendTargets", "All")])
        pairs = [kv.split("=", 1) for kv in p.data.decode().split("\0") if kv]
        names = [v for k, v in pairs if k == "TargetName"]
        addrs = [v for k, v in pairs if k == "TargetAddress"]
        check(sorted(names) == sorted([OPEN, SECURE]),
              "SendTargets=All lists %r (targets whose allow-list refuses us must not show)" %
              names)
        check(addrs == ["127.0.0.1:%d,1" % port] * 2, "SendTargets addresses %r" % addrs)
        check(pairs[0][0] == "TargetName" and pairs[1][0] == "TargetAddress",
              "TargetAddress must follow its TargetName: %r" % pairs)
        # a SCSI command has no place in a discovery session
        h = bhs(0x01, flags=0xC1, itt=ini.itt(), f20=512, f24=ini.cmdsn, f28=ini.exp_statsn,
                cdb=bytes([0x88]) + bytes(15))
        ini.send(h)
        p = ini.expect(0x3F, what="SCSI command in a discovery session")
        ini.logout()
        # in a normal session, SendTargets with no value names the session's own target
        ini = Initiator(port)
        ini.login(target=OPEN, isid=b"\x80\0\0\0\0\x03")
        p = ini.text_request([("SendTargets", "")])
        check(p.text().get("TargetName") == OPEN, "SendTargets= in a normal session: %r" % p.data)
        ini.logout()

        # session reinstatement: same initiator name and ISID
        isid = b"\x80\xaa\xbb\xcc\x00\x01"
        first = Initiator(port)
        first.login(target=OPEN, isid=isid)
        first.ping()
        other = Initiator(port)
        other.login(target=OPEN, isid=b"\x80\xaa\xbb\xcc\x00\x02")
        second = Initiator(port)
        second.login(target=OPEN, isid=isid)
        first.expect_closed(what="the reinstated session's old connection")
        first.close()
        second.ping()
        other.ping()  # a different ISID is a different session: untouched
        check(count_lines(d.log(), r"session reinstatement") == 1,
              "want one log line about the reinstatement:\n" + d.log())
        second.logout()
        other.logout()

        d.stop()
        check(not re.search(re.escape(SECRET) + "|" + re.escape(T_SECRET), d.log()),
              "a secret appeared in the log")
        bad = d.error_lines()
        check(not bad, "error lines in the daemon log:\n" + "\n".join(bad))
    finally:
        d.cleanup()


if __name__ == "__main__":
    run_main(main)
