"""Invocation names, modes and options other than the callers' own."""
import os
import re

from tmtest import (TOKENMAIL, DryRun, Workspace, eq, match, run, run_all, test)

MSG = b"Subject: t\n\nbody\n"


@test
def mailq_by_name_and_bp():
    with Workspace() as ws:
        for argv0, args in (("mailq", []), ("sendmail", ["-bp"])):
            r = ws.run(args, argv0=argv0, config=False)
            eq(r.rc, 0, repr(r))
            eq(r.out, b"Mail queue is empty: tokenmail delivers at once and keeps no queue\n")
            eq(r.err, "")


@test
def queue_run_is_a_no_op():
    with Workspace() as ws:
        r = ws.run(["-q"], config=False)
    eq((r.rc, r.out, r.err), (0, b"", ""))


@test
def newaliases_checks_the_config():
    with Workspace() as ws:
        r = ws.run([], argv0="newaliases")
        eq((r.rc, r.out, r.err), (0, b"", ""), "valid aliases")
        ws.write("config.yaml", "aliases: [1, 2]\naccounts: {}\n")
        r = ws.run(["-bi"])
    eq(r.rc, 78, repr(r))
    match(r"^tokenmail: .*config\.yaml:1:\d+: ", r.err)


@test
def version_and_help():
    r = run(["tokenmail", "--version"])
    eq(r.rc, 0)
    match(r"^tokenmail \d+\.\d+\.\d+\n$", r.out.decode())
    eq(r.err, "")
    r = run(["sendmail", "--help"])
    eq(r.rc, 0)
    match(r"^usage: sendmail \[options\]", r.out.decode())
    eq(r.err, "")


@test
def verify_addresses():
    with Workspace() as ws:
        r = ws.run(["-bv", "root", "a@example.com,postmaster"])
    eq(r.rc, 0, repr(r))
    eq(r.out.decode(),
       "root -> <ops@example.com> (account app, smtp, from <app@example.com>)\n"
       "a@example.com,postmaster -> <a@example.com> <ops@example.com> (account app, smtp, from <app@example.com>)\n")
    eq(r.err, "")


@test
def verify_with_sender_and_unknown_name():
    with Workspace() as ws:
        r = ws.run(["-f", "web@example.com", "-bv", "nosuchuser", "b@example.org"])
    eq(r.rc, 67, repr(r))
    lines = r.out.decode().splitlines()
    match(r"^nosuchuser -> undeliverable: .*nosuchuser", lines[0])
    eq(lines[1], "b@example.org -> <b@example.org> (account web, graph, from <web@example.com>)")
    match(r"^tokenmail: .*nosuchuser", r.err)


@test
def unknown_options_warned_and_ignored():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-Z", "--frobnicate", "-oQ/var/spool", "a@example.com"], MSG)
    eq(r.rc, 0, repr(r))
    eq(r.err, "tokenmail: warning: ignoring unknown option -Z\n"
              "tokenmail: warning: ignoring unknown option --frobnicate\n"
              "tokenmail: warning: ignoring option -oQ/var/spool\n")
    eq(DryRun(r.out).rcpts, ["<a@example.com>"])


@test
def accepted_options_are_silent():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-oem", "-odi", "-B", "8BITMIME", "-h", "9", "-L", "x",
                    "-O", "A=B", "-U", "-G", "-m", "-n", "-x", "-V", "env1",
                    "-N", "never", "-R", "full", "a@example.com"], MSG)
    eq(r.rc, 0, repr(r))
    eq(r.err, "")


@test
def null_sender():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-f", "<>", "a@example.com"], b"From: web@example.com\n\nx\n")
    eq(r.rc, 0, repr(r))
    d = DryRun(r.out)
    eq(d.mail_from, "<>")
    eq(d.account, "web", "account chosen by From: when the envelope is null")
    eq(d.header_value("From"), "web@example.com")


@test
def full_name_for_added_from():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-F", "Backup Robot", "-f", "x@alerts.example.com",
                    "a@example.com"], MSG)
    eq(r.rc, 0, repr(r))
    d = DryRun(r.out)
    eq(d.mail_from, "<x@alerts.example.com>")
    eq(d.header_value("From"), "Backup Robot <x@alerts.example.com>")


@test
def full_name_cannot_inject_headers():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-F", "Evil\r\nBcc: victim@example.net", "a@example.com"], MSG)
    eq(r.rc, 0, repr(r))
    d = DryRun(r.out)
    eq(d.header_values("Bcc"), [])
    eq(d.header_value("From"), '"Evil  Bcc: victim@example.net" <app@example.com>')


@test
def rewrite_from_never_and_always():
    cfg_extra = "    rewrite_from: {mode}\n"
    for mode, want in (("never", "root"), ("always", "Admin <app@example.com>")):
        config = open_default().replace(
            "    from: app@example.com\n",
            "    from: app@example.com\n" + cfg_extra.format(mode=mode), 1)
        with Workspace(config) as ws:
            src = b"From: root\n\nx\n" if mode == "never" else b"From: Admin <app2@alerts.example.com>\n\nx\n"
            r = ws.run(["--dry-run", "a@example.com"], src)
        eq(r.rc, 0, repr(r))
        eq(DryRun(r.out).header_value("From"), want, mode)


def open_default():
    from tmtest import DEFAULT_CONFIG
    return DEFAULT_CONFIG


@test
def graph_account_method_line():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-f", "web@example.com", "a@example.com"], MSG)
    eq(r.rc, 0, repr(r))
    eq(DryRun(r.out).method,
       "graph https://graph.microsoft.com/v1.0 user=web@example.com save_to_sent_items=yes")


@test
def smtp_account_method_line():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "a@example.com"], MSG)
    eq(DryRun(r.out).method,
       "smtp smtp.office365.com:587 tls=starttls auth=xoauth2 user=app@example.com")


@test
def config_search_order():
    with Workspace() as ws:
        xdg = os.path.join(ws.dir, "xdg")
        os.makedirs(os.path.join(xdg, "tokenmail"))
        os.rename(ws.config, os.path.join(xdg, "tokenmail", "config.yaml"))
        r = ws.run(["--dry-run", "a@example.com"], MSG, config=False,
                   env={"XDG_CONFIG_HOME": xdg})
        eq(r.rc, 0, repr(r))
        match(r"^account: app \(%s/tokenmail/config.yaml\)$" % xdg, r.out.decode())
        home_cfg = os.path.join(ws.dir, ".config", "tokenmail")
        os.makedirs(home_cfg)
        os.rename(os.path.join(xdg, "tokenmail", "config.yaml"),
                  os.path.join(home_cfg, "config.yaml"))
        r = ws.run(["--dry-run", "a@example.com"], MSG, config=False)
        eq(r.rc, 0, repr(r))
        match(r"^account: app \(%s/config.yaml\)$" % home_cfg, r.out.decode())


@test
def graph_message_over_max_size_is_refused_before_any_request_and_kept():
    # graph.max_size is checked before the token: no network is touched.
    from tmtest import DEFAULT_CONFIG
    config = DEFAULT_CONFIG.replace("log: stderr", "log: {dir}/mail.log").replace(
        "    client_id: 00000000-0000-0000-0000-000000000002\n",
        "    client_id: 00000000-0000-0000-0000-000000000002\n    graph: {{max_size: 40}}\n")
    with Workspace(config) as ws:
        r = ws.run(["-f", "web@example.com", "-X", os.path.join(ws.dir, "x.log"),
                    "a@example.com"], MSG)
        dead = open(os.path.join(ws.dir, "dead.letter"), "rb").read()
        log = open(os.path.join(ws.dir, "mail.log")).read()
        xlog = open(os.path.join(ws.dir, "x.log")).read()
        cache = os.listdir(os.path.join(ws.dir, "cache")) if os.path.isdir(
            os.path.join(ws.dir, "cache")) else []
    eq(r.rc, 69, repr(r))
    eq(r.out, b"")
    size = re.search(r"size=(\d+)", log).group(1)
    eq(r.err, "tokenmail: the message is %s octets; graph.max_size for account web is 40\n"
              "  hint: Exchange Online takes at most 150 MB, and a mailbox's own limit is "
              "often 35 MB\n"
              "  (account web, config %s)\n"
              "  (the message is kept in %s)\n"
              % (size, os.path.join(ws.dir, "config.yaml"), os.path.join(ws.dir, "dead.letter")))
    match(r"^From web@example.com ", dead.decode())
    match(r"^\S+ tokenmail\[\d+\]: account=web method=graph from=<web@example.com> "
          r"to=<a@example.com> size=\d+ msgid=<[0-9a-f]{32}@example.com> result=failed "
          r"reply=\"the message is \d+ octets; graph.max_size for account web is 40\" "
          r"request-id=[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12} "
          r"duration=\d+\.\d\ds exit=69\n$", log)
    eq(xlog.split(": ", 1)[1], log.split(": ", 1)[1], "-X gets the same line")
    eq(cache, [], "no token was requested")
    assert dead.endswith(b"\nSubject: t\n\nbody\n\n"), dead


@test
def a_message_refused_before_delivery_is_logged_and_kept():
    from tmtest import DEFAULT_CONFIG
    config = DEFAULT_CONFIG.replace("log: stderr", "log: {dir}/mail.log").replace(
        "default_account: app\n", "")
    with Workspace(config) as ws:
        r = ws.run(["-f", "stranger@example.org", "a@example.com"], MSG)
        log = open(os.path.join(ws.dir, "mail.log")).read()
        dead = open(os.path.join(ws.dir, "dead.letter"), "rb").read()
    eq(r.rc, 77, repr(r))
    match(r"^tokenmail: no account may send as 'stranger@example.org'\n", r.err)
    match(r"^\S+ tokenmail\[\d+\]: to=<a@example.com> size=\d+ result=failed "
          r"reply=\"no account may send as 'stranger@example.org'\" duration=\S+ exit=77\n$",
          log)
    match(r"^From stranger@example.org ", dead.decode())


if __name__ == "__main__":
    raise SystemExit(run_all())
