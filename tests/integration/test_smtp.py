"""SMTP delivery: the built binary, run as callers run sendmail (no --dry-run),
against the fake SMTP server (tests/peers/smtp_peer.py) and the fake token
endpoint (tests/peers/token_peer.py), both over TLS with a throwaway CA.

Each test starts its own peers and stops them (by PID) when it ends. It
checks the exit code, stderr, what the SMTP peer received (envelope,
header, body bytes), the AUTH exchange, that no token ever crossed the wire
in clear, the dead letter (mboxrd) and that nothing was delivered twice.
Retries are kept short: retry {attempts: 2, max_seconds: 30}; timeout 10,
or 2 in the tests that make the server stall (a busy machine must not turn
an ordinary delivery into a timeout).
TM_SHOW_ERR=1 prints each failure's stderr as TAP comments.
"""
import base64
import hashlib
import json
import os
import re
import socket
import time

from tmtest import (DATE_RE, MSGID_RE, DryRun, Workspace, crlf, eq, lf, match,
                    run_all, Skip, start_smtp_peer, start_token_peer,
                    test, close_env, yaml_value, dead_letter_messages, file_text)

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000c3"
SECRET = "Abc8Q~smtp-s3cret"
SCOPE = "https://outlook.office365.com/.default"
USER = "app@example.com"
ATTEMPTS = 2
STALL_RC_SECONDS = 20   # two attempts of a 2 s timeout, 1 s backoff, slack


class Env:
    """A workspace, a token peer, an SMTP peer and a config that points at
    them. smtp: the SMTP peer's config; account: keys of accounts.app.smtp
    to change (host, tls, auth, user). Stops both peers and removes the
    workspace at the end, whatever happens."""

    def __init__(self, smtp=None, account=None, timeout=10, top=""):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.token_peer = self.smtp = None
        try:
            self.secret_file = self.ws.write("app.secret", SECRET + "\n")
            self.token_peer = start_token_peer(
                self.ws, {"clients": {CLIENT: {"secret": SECRET, "tenant": TENANT}}})
            config = {"users": [USER]}
            config.update(smtp or {})
            self.smtp = start_smtp_peer(self.ws, config, token_peer=self.token_peer)
            self.dead_letter = os.path.join(self.dir, "dead.letter")
            self.log_file = os.path.join(self.dir, "tokenmail.log")
            self.write_config(account or {}, timeout, top)
        except BaseException:
            self.close()
            raise

    def write_config(self, over, timeout, top):
        mode = (over.get("tls") or
                {"tls": "tls", "plain": "none"}.get(self.smtp_mode(), "starttls"))
        smtp = {"host": over.get("host", "127.0.0.1"), "port": self.smtp.port,
                "tls": mode, "auth": over.get("auth", "xoauth2"), "user": over.get("user", USER)}
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % yaml_value(over.get("log", self.log_file)),
                 "dead_letter: %s" % yaml_value(self.dead_letter),
                 "retry: {attempts: %d, max_seconds: 30}" % ATTEMPTS,
                 "timeout: %d" % timeout,
                 "default_account: app"]
        lines += [line for line in top.splitlines() if line.strip()]
        lines += ["accounts:", "  app:",
                  "    senders: [%s]" % USER,
                  "    from: %s" % USER,
                  "    tenant: %s" % TENANT,
                  "    client_id: %s" % yaml_value(CLIENT),
                  "    client_secret_file: %s" % yaml_value(self.secret_file),
                  "    token_url: %s" % yaml_value(self.token_peer.url(TENANT)),
                  "    scope: %s" % yaml_value(SCOPE),
                  "    smtp: {%s}" % ", ".join("%s: %s" % (k, yaml_value(v))
                                                for k, v in smtp.items())]
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def smtp_mode(self):
        with open(self.smtp.config_path) as f:
            return json.load(f).get("mode", "starttls")

    def send(self, args, stdin):
        """sendmail -C config ARGS < stdin, as a caller runs it."""
        return self.ws.run(list(args), stdin, argv0="/usr/sbin/sendmail")

    def dry(self, args, stdin):
        r = self.ws.run(["--dry-run"] + list(args), stdin)
        eq(r.rc, 0, "dry run %r" % r)
        return DryRun(r.out)

    def token_requests(self):
        return self.token_peer.requests(endpoint="token")

    def issued(self):
        return [e["access_token"] for e in self.token_requests() if e.get("access_token")]

    def dead(self):
        """The dead letter's messages [(From line, bytes)], or []."""
        return dead_letter_messages(self.dead_letter)

    def log_text(self):
        return file_text(self.log_file)

    def close(self):
        close_env(self.ws, self.smtp, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ checks

def split_message(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no empty line after the header: %r" % data[:300]
    return head, body


def header_values(data, name):
    """Unfolded values of every field called name in the message's header."""
    head, _ = split_message(data)
    values, current = [], False
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t"):
            if current:
                values[-1] += line
            continue
        key, _, value = line.partition(b":")
        current = key.strip().lower() == name.lower().encode()
        if current:
            values.append(value.strip())
    return [v.decode("utf-8", "replace") for v in values]


def header_value(data, name):
    values = header_values(data, name)
    assert len(values) == 1, "%s: %r" % (name, values)
    return values[0]


def masked_header(data):
    """The header with Date and Message-ID values blanked (they are made per run)."""
    head, _ = split_message(data)
    return re.sub(rb"(?im)^(Date|Message-ID):[^\r]*(\r\n[ \t][^\r]*)*", rb"\1: *", head)


def secrets_leaked(env, r):
    """Any access token or the client secret in stderr, stdout or the log."""
    text = r.err + r.out.decode("utf-8", "replace") + env.log_text()
    return [t[:12] for t in env.issued() + [SECRET] if t in text]


def one_delivery(env, r, stdin, args, rcpts, token_requests=1):
    """rc 0, quiet, exactly one message accepted: the same bytes --dry-run
    shows (apart from the generated Date and Message-ID), the envelope,
    one AUTH after TLS with the two-step form. Returns the message's record
    and bytes."""
    eq(r.rc, 0, "exit code: %r" % r)
    eq(r.err, "", "stderr")
    eq(r.out, b"", "stdout")
    msgs = env.smtp.messages()
    eq(len(msgs), 1, "messages accepted: %r" % msgs)
    m = msgs[0]
    data = env.smtp.data(m)
    eq(m["mail_from"], USER, "MAIL FROM")
    eq([x["addr"] for x in m["rcpts"]], rcpts, "RCPT TO")
    eq(m["bare_lf"], False, "bare LF on the wire")
    eq(m["long_lines"], 0, "lines over 1000 octets")
    d = env.dry(args, stdin)
    eq(masked_header(data), masked_header(d.message), "header as --dry-run shows it")
    eq(split_message(data)[1], split_message(d.message)[1], "body as --dry-run shows it")
    match(DATE_RE, header_value(data, "Date"), "Date")
    match(MSGID_RE, header_value(data, "Message-ID"), "Message-ID")
    eq(header_values(data, "Bcc"), [], "Bcc removed")
    eq(len(env.token_requests()), token_requests, "token requests")
    assert not env.smtp.auth_in_clear(), "AUTH data before TLS: %r" % env.smtp.transcript()
    eq(env.dead(), [], "dead letter")
    eq(secrets_leaked(env, r), [], "token or secret printed or logged")
    match(r"\bresult=sent\b", env.log_text(), "log line")
    long_cmds = [e["line"] for e in env.smtp.transcript(direction="C") if e.get("long")]
    eq(long_cmds, [], "command lines over 512 octets")
    return m, data


def auth_ok(env, mech="XOAUTH2", token_n=1):
    auths = env.smtp.auth()
    eq(len(auths), 1, "AUTH attempts %r" % auths)
    a = auths[0]
    eq((a["mech"], a["ok"], a["tls"], a["user"], a["token_n"]), (mech, True, True, USER, token_n),
       "AUTH %r" % a)
    eq(a["ir"], False, "AUTH with the initial response on the command line (over 512 octets)")


def body_of(stdin):
    sep = b"\n\n" if b"\n\n" in stdin else b"\r\n\r\n"
    return crlf(stdin.partition(sep)[2])


def failed(env, r, rc, pattern, server=None, connections=None, stdin=None):
    """Exit rc, stderr's first line "tokenmail: ..." matching pattern, the
    server's reply on a "  server:" line, the message in the dead letter
    (byte-identical to the input after LF normalisation) and nothing accepted."""
    if os.environ.get("TM_SHOW_ERR"):
        print("# " + r.err.replace("\n", "\n# "))
    eq(r.rc, rc, "exit code: %r" % r)
    eq(r.out, b"", "stdout")
    lines = r.err.splitlines()
    assert lines and lines[0].startswith("tokenmail: "), repr(r.err)
    match(pattern, lines[0], "cause on the first stderr line")
    if server:
        assert any(l.startswith("  server: ") and server in l for l in lines), \
            "no '  server: %s' line in %r" % (server, r.err)
    assert any(l == "  (the message is kept in %s)" % env.dead_letter for l in lines), \
        "dead letter not named: %r" % r.err
    eq(env.smtp.messages(), [], "messages accepted")
    dead = env.dead()
    eq(len(dead), 1, "dead letter messages")
    match(r"^From %s " % re.escape(USER), dead[0][0], "mbox From line")
    if stdin is not None:
        eq(dead[0][1], lf(stdin), "dead letter = the input")
    if connections is not None:
        eq(len(env.smtp.connections()), connections, "connections")
    eq(secrets_leaked(env, r), [], "token or secret printed or logged")
    assert not env.smtp.auth_in_clear(), "AUTH data before TLS"


HOST = r"^tokenmail: 127\.0\.0\.1 "
AUTH_REFUSED = HOST + r"refused authentication for app@example\.com$"
MAIL_REFUSED = HOST + r"refused MAIL FROM:<app@example\.com>$"
DATA_REFUSED = HOST + r"refused DATA$"
MESSAGE_REFUSED = HOST + r"refused the message$"
NO_ANSWER = r"^tokenmail: no answer from 127\.0\.0\.1 within 2 s$"
CLOSED = r"^tokenmail: (connection to 127\.0\.0\.1 closed|cannot send to 127\.0\.0\.1)"
CERT_REFUSED = r"^tokenmail: TLS certificate of 127\.0\.0\.1 refused: "

MSG = (b"From: Cron Daemon <root@elsewhere.example>\n"
       b"To: Bob <bob@example.org>\n"
       b"Cc: carol@example.net\n"
       b"Bcc: hidden@example.net\n"
       b"Subject: nightly report\n"
       b"\n"
       b"Hello Bob,\n"
       b"From the nightly job: all good.\n"
       b">From here it is quoted\n"
       b"\n"
       b"-- \n"
       b"cron\n")
MSG_RCPTS = ["bob@example.org", "carol@example.net", "hidden@example.net"]


# ------------------------------------------------------------ deliveries

@test
def plain_text_starttls_xoauth2():
    with Env() as env:
        r = env.send(["-t", "-i"], MSG)
        m, data = one_delivery(env, r, MSG, ["-t", "-i"], MSG_RCPTS)
        auth_ok(env)
        eq(split_message(data)[1], body_of(MSG), "body byte-identical")
        eq(header_value(data, "From"), "Cron Daemon <%s>" % USER, "From rewritten")
        eq(header_value(data, "To"), "Bob <bob@example.org>")
        eq(m["tls"], True, "delivered over TLS")
        eq(m["auth_user"], USER)
        eq(m["token_n"], 1, "the token the token peer issued")
        c = env.smtp.client_lines()
        verbs = [l.split(" ")[0].upper() for l in c]
        eq(verbs[:3], ["EHLO", "STARTTLS", "EHLO"], "EHLO, STARTTLS, EHLO again")
        eq(verbs[3], "AUTH", "AUTH right after the second EHLO")
        eq(verbs[-1], "QUIT", "QUIT at the end")
        # PIPELINING is offered: MAIL, every RCPT and DATA go in one round
        # trip (RFC 2920 3.1: DATA may end the group), the message in the next.
        conn = env.smtp.connections()[0]
        turns = {e["turn"] for e in env.smtp.transcript(conn, "C")
                 if e["line"].split(" ")[0].upper() in ("MAIL", "RCPT", "DATA")}
        eq(len(turns), 1, "MAIL/RCPT/DATA round trips")
        data_turns = [e["turn"] for e in env.smtp.transcript(conn, "*")
                      if e["line"].startswith("data ")]
        eq(data_turns, [min(turns) + 1], "the message right after the 354")
        eq(m["mail_params"].get("SIZE"), str(m["size"]), "SIZE= the octets sent")
        injected = [e for e in env.smtp.transcript(direction="*") if e.get("injection")]
        eq(injected, [], "commands sent behind STARTTLS")


@test
def log_to_stderr_one_line_no_token():
    with Env(account={"log": "stderr"}) as env:
        r = env.send(["-i", "bob@example.org"], b"Subject: hi\n\nbody\n")
        eq(r.rc, 0, repr(r))
        lines = r.err.splitlines()
        eq(len(lines), 1, "one log line on stderr: %r" % r.err)
        match(r"^tokenmail: account=app method=smtp from=<app@example.com> "
              r"to=<bob@example.org> size=\d+ msgid=<[0-9a-f]{32}@example.com> result=sent "
              r"reply=\"250 2.0.0 OK <0+1@peer.test> \[Hostname=peer.test\]\" "
              r"duration=\d+\.\d\ds exit=0$", lines[0], "log line")
        eq(secrets_leaked(env, r), [], "token in the log")


@test
def eight_bit_body_uses_8bitmime():
    stdin = (b"From: app@example.com\nTo: bob@example.org\nSubject: caf\xc3\xa9\n"
             b"Content-Type: text/plain; charset=utf-8\nContent-Transfer-Encoding: 8bit\n\n"
             b"Gr\xc3\xbc\xc3\x9fe aus K\xc3\xb6ln \xe2\x82\xac\n")
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        m, data = one_delivery(env, r, stdin, ["-t", "-i"], ["bob@example.org"])
        eq(m["mail_params"].get("BODY"), "8BITMIME", "BODY=8BITMIME")
        eq(m["eight_bit"], True)
        eq(split_message(data)[1], body_of(stdin), "body byte-identical")


@test
def utf8_address_uses_smtputf8():
    stdin = ("From: app@example.com\nTo: J\u00f6rg <j\u00f6rg@b\u00fccher.example>\n"
             "Subject: hallo\n\nhi\n").encode()
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        m, data = one_delivery(env, r, stdin, ["-t", "-i"], ["j\u00f6rg@b\u00fccher.example"])
        eq(m["mail_params"].get("SMTPUTF8"), True, "SMTPUTF8 on MAIL FROM")


@test
def ascii_mail_does_not_claim_smtputf8_or_8bitmime():
    with Env() as env:
        r = env.send(["-i", "bob@example.org"], b"Subject: x\n\nplain ascii\n")
        m, _ = one_delivery(env, r, b"Subject: x\n\nplain ascii\n", ["-i", "bob@example.org"],
                            ["bob@example.org"])
        assert "SMTPUTF8" not in m["mail_params"], m
        assert m["mail_params"].get("BODY") in (None, "7BIT"), m


@test
def lines_starting_with_dots():
    body = b".\n..\n...\n.leading dot\n. space\n..double\nend.\n.\r\nx\n"
    stdin = b"From: app@example.com\nTo: bob@example.org\nSubject: dots\n\n" + body
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        _, data = one_delivery(env, r, stdin, ["-t", "-i"], ["bob@example.org"])
        eq(split_message(data)[1], crlf(body), "dot lines restored byte-identical")
        data_lines = [e for e in env.smtp.transcript(direction="*")
                      if e["line"].startswith("data ")]
        eq(len(data_lines), 1, "one DATA")


@test
def message_of_30_mb():
    line = b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.:-+=/0123456\n"
    count = 30 * 1000 * 1000 // len(line)
    body = b"".join(b"%07d " % i + line[8:] if i % 1000 else b"." + line[1:]
                    for i in range(count))
    stdin = b"From: app@example.com\nTo: bob@example.org\nSubject: big\n\n" + body
    with Env(timeout=20) as env:
        r = env.send(["-t", "-i"], stdin)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        msgs = env.smtp.messages()
        eq(len(msgs), 1, "messages")
        data = env.smtp.data(msgs[0])
        head, got_body = split_message(data)
        want = crlf(body)
        eq(len(got_body), len(want), "body length")
        eq(hashlib.sha256(got_body).hexdigest(), hashlib.sha256(want).hexdigest(), "body bytes")
        eq(msgs[0]["mail_params"].get("SIZE"), str(msgs[0]["size"]), "SIZE=")
        assert not env.smtp.auth_in_clear()


def many_rcpts_message(rcpts):
    """To: with one address per folded line (a header line may not pass 998)."""
    return (b"From: app@example.com\nTo: " + ",\n ".join(rcpts).encode() +
            b"\nSubject: many\n\nhi\n")


@test
def hundred_recipients_one_transaction():
    rcpts = ["user%03d@example.org" % i for i in range(100)]
    stdin = many_rcpts_message(rcpts)
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        one_delivery(env, r, stdin, ["-t", "-i"], rcpts)
        conn = env.smtp.connections()[0]
        assert env.smtp.round_trips(conn) <= 10, \
            "round trips with PIPELINING: %d" % env.smtp.round_trips(conn)


@test
def too_many_recipients_452_goes_in_further_transactions():
    rcpts = ["user%03d@example.org" % i for i in range(100)]
    stdin = many_rcpts_message(rcpts)
    with Env(smtp={"max_rcpts": 40}) as env:
        r = env.send(["-t", "-i"], stdin)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        msgs = env.smtp.messages()
        eq([len(m["rcpts"]) for m in msgs], [40, 40, 20], "transactions")
        got = [x["addr"] for m in msgs for x in m["rcpts"]]
        eq(sorted(got), sorted(rcpts), "every recipient exactly once")
        eq(len({m["conn"] for m in msgs}), 1, "one connection")
        eq(len({m["sha256"] for m in msgs}), 1, "the same message each time")
        eq(len(env.token_requests()), 1, "token requests")


@test
def without_pipelining_one_command_per_round_trip():
    with Env(smtp={"capabilities": {"PIPELINING": False}}) as env:
        r = env.send(["-i", "bob@example.org", "carol@example.net"], b"Subject: x\n\nhi\n")
        eq(r.rc, 0, repr(r))
        piped = [e["line"] for e in env.smtp.transcript(direction="C") if e.get("pipelined")]
        eq(piped, [], "commands sent without waiting (no PIPELINING offered)")
        eq(len(env.smtp.messages()), 1)


@test
def implicit_tls():
    with Env(smtp={"mode": "tls"}) as env:
        r = env.send(["-t", "-i"], MSG)
        m, _ = one_delivery(env, r, MSG, ["-t", "-i"], MSG_RCPTS)
        auth_ok(env)
        eq(env.smtp.transcript()[0]["line"], "connect")
        assert all(e["tls"] for e in env.smtp.transcript(direction="C")), "a line in clear"
        assert "STARTTLS" not in [l.upper() for l in env.smtp.client_lines()]


@test
def implicit_tls_localhost_name():
    try:
        socket.getaddrinfo("localhost", None)
    except socket.gaierror:
        # A debootstrap chroot may have no /etc/hosts; every real host has.
        raise Skip("the name localhost does not resolve on this machine")
    with Env(smtp={"mode": "tls"}, account={"host": "localhost"}) as env:
        r = env.send(["-i", "bob@example.org"], b"Subject: x\n\nhi\n")
        one_delivery(env, r, b"Subject: x\n\nhi\n", ["-i", "bob@example.org"],
                     ["bob@example.org"])


@test
def oauthbearer_like_gmail():
    with Env(smtp={"auth": ["LOGIN", "PLAIN", "XOAUTH2", "OAUTHBEARER"]},
             account={"auth": "oauthbearer"}) as env:
        r = env.send(["-t", "-i"], MSG)
        one_delivery(env, r, MSG, ["-t", "-i"], MSG_RCPTS)
        auth_ok(env, "OAUTHBEARER")


@test
def auth_none_over_starttls():
    with Env(smtp={"auth": []}, account={"auth": "none"}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        eq(len(env.smtp.messages()), 1)
        eq(env.smtp.messages()[0]["tls"], True, "over TLS")
        eq(env.smtp.auth(), [], "no AUTH")
        assert "AUTH" not in [l.split(" ")[0].upper() for l in env.smtp.client_lines()]
        eq(env.token_requests(), [], "no token requested")


@test
def auth_offered_before_tls_is_still_not_used_in_clear():
    with Env(smtp={"auth_before_tls": True}) as env:
        r = env.send(["-t", "-i"], MSG)
        one_delivery(env, r, MSG, ["-t", "-i"], MSG_RCPTS)
        auth_ok(env)


@test
def cached_token_reused_by_the_next_message():
    with Env() as env:
        for i in range(2):
            r = env.send(["-i", "bob@example.org"], b"Subject: %d\n\nhi\n" % i)
            eq(r.rc, 0, repr(r))
        eq(len(env.token_requests()), 1, "one token for both messages")
        eq([a["token_n"] for a in env.smtp.auth()], [1, 1])
        eq(len(env.smtp.messages()), 2)


# ------------------------------------------------------------ AUTH refused

@test
def xoauth2_535_twice_is_77_with_two_token_requests():
    with Env(smtp={"faults": [{"stage": "AUTH", "action": "reject"}]}) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 77, AUTH_REFUSED, server="535 5.7.3 Authentication unsuccessful",
               connections=2, stdin=MSG)
        eq(len(env.token_requests()), 2, "the first 535 drops the cached token")
        with open(env.dead_letter, "rb") as f:
            raw = f.read()
        assert b"\n>From the nightly job" in raw and b"\n>>From here" in raw, \
            "mboxrd quoting: %r" % raw
        lines = r.err.splitlines()
        assert '  authentication challenge: {"status":"401","schemes":"bearer",' \
            '"scope":"https://outlook.office365.com/.default"}' in lines, r.err
        assert any(l.startswith("  hint: SMTP AUTH may be disabled for the mailbox")
                   for l in lines), r.err
        auths = env.smtp.auth()
        eq([(a["token_n"], a["ok"], a["tls"]) for a in auths], [(1, False, True), (2, False, True)],
           "two attempts, each with a fresh token")
        eq([a.get("challenge_answer") for a in auths], ["", ""],
           "the 334 error challenge answered with an empty line")
        mails = [l for l in env.smtp.client_lines() if l.upper().startswith("MAIL")]
        eq(mails, [], "no MAIL after a refused AUTH")


@test
def xoauth2_535_then_success_is_0():
    with Env(smtp={"faults": [{"stage": "AUTH", "action": "reject", "times": 1}]}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        eq(len(env.token_requests()), 2, "token requests")
        eq([(a["token_n"], a["ok"]) for a in env.smtp.auth()], [(1, False), (2, True)])
        msgs = env.smtp.messages()
        eq(len(msgs), 1, "delivered once")
        eq(msgs[0]["token_n"], 2)
        eq(env.dead(), [], "dead letter")


@test
def unknown_token_535_like_exchange_direct():
    # Microsoft's documented failure: no JSON challenge, straight 535. The
    # token peer's tokens are not valid here at all.
    with Env(smtp={"auth_failure": "direct", "token_log": "/nonexistent"}) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 77, AUTH_REFUSED, server="535 5.7.3", connections=2, stdin=MSG)
        eq(len(env.token_requests()), 2, "token requests")
        eq([a["reason"] for a in env.smtp.auth()], ["unknown token"] * 2)


@test
def wrong_user_is_refused_77():
    with Env(smtp={"users": ["someone.else@example.com"]}) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 77, AUTH_REFUSED, server="535 5.7.3", stdin=MSG)
        eq({a["reason"] for a in env.smtp.auth()}, {"wrong user"})


@test
def oauthbearer_535_answers_the_challenge_with_AQ():
    with Env(smtp={"auth": ["OAUTHBEARER"], "faults": [{"stage": "AUTH", "action": "reject"}]},
             account={"auth": "oauthbearer"}) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 77, AUTH_REFUSED, server="535 5.7.3", connections=2, stdin=MSG)
        eq([a.get("challenge_answer") for a in env.smtp.auth()], ["AQ==", "AQ=="])
        eq(len(env.token_requests()), 2)


# ------------------------------------------------------------ temporary faults -> 75

def temp_fault(fault, pattern, server=None, stdin=MSG, then=None, timeout=10):
    with Env(smtp={"faults": [fault]}, timeout=timeout) as env:
        r = env.send(["-t", "-i"], stdin)
        failed(env, r, 75, pattern, server=server, connections=ATTEMPTS, stdin=stdin)
        eq(len(env.token_requests()), 1, "the token is cached between attempts")
        if then:
            then(env, r)


@test
def greeting_421_is_75():
    temp_fault({"stage": "GREETING", "reply": "421 4.3.2 Service not available"},
               HOST + r"refused the session$", server="421 4.3.2 Service not available")


@test
def mail_451_is_75():
    temp_fault({"stage": "MAIL", "reply": "451 4.3.0 Temporary server error"},
               MAIL_REFUSED, server="451 4.3.0 Temporary server error")


@test
def mail_452_is_75():
    temp_fault({"stage": "MAIL", "reply": "452 4.3.1 Insufficient system resources"},
               MAIL_REFUSED, server="452 4.3.1 Insufficient system resources")


@test
def rcpt_451_for_one_recipient_is_75_nothing_sent():
    temp_fault({"stage": "RCPT", "rcpt": "carol@example.net",
                "reply": "451 4.4.0 Temporary lookup failure"},
               HOST + r"refused RCPT TO:<carol@example\.net> for now$",
               server="451 4.4.0 Temporary lookup failure")


@test
def data_451_is_75():
    temp_fault({"stage": "DATA", "reply": "451 4.3.0 Try again later"},
               DATA_REFUSED, server="451 4.3.0 Try again later")


@test
def end_of_data_451_is_75():
    temp_fault({"stage": "DOT", "reply": "451 4.4.1 Timed out waiting for the mailbox"},
               MESSAGE_REFUSED, server="451 4.4.1 Timed out waiting for the mailbox")


@test
def auth_454_is_75():
    temp_fault({"stage": "AUTH", "reply": "454 4.7.0 Temporary authentication failure"},
               AUTH_REFUSED, server="454 4.7.0 Temporary authentication failure")


@test
def concurrent_connections_432_is_75():
    temp_fault({"stage": "MAIL", "reply": "432 4.3.2 Concurrent connections limit exceeded."},
               MAIL_REFUSED, server="432 4.3.2 Concurrent connections limit exceeded.")


@test
def drop_mid_data_is_75():
    stdin = MSG + b"x" * 200000 + b"\n"
    temp_fault({"stage": "BODY", "action": "drop", "after_bytes": 100000},
               CLOSED, stdin=stdin)


@test
def drop_after_mail_is_75():
    temp_fault({"stage": "MAIL", "action": "drop"}, CLOSED)


@test
def stall_at_greeting_is_75():
    temp_fault({"stage": "GREETING", "action": "stall"}, NO_ANSWER, timeout=2)


@test
def stall_at_end_of_data_is_75():
    with Env(smtp={"faults": [{"stage": "DOT", "action": "stall"}]}, timeout=2) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 75, NO_ANSWER,
               connections=ATTEMPTS, stdin=MSG)
        stalls = [e for e in env.smtp.transcript(direction="*")
                  if e["line"].startswith("stall ended")]
        eq(len(stalls), ATTEMPTS, "both attempts gave up on their own")
        for e in stalls:
            secs = float(e["line"].split()[3])
            assert secs < 10, "the client waited %.1f s for a 2 s timeout" % secs


@test
def stall_at_rcpt_is_75_within_the_budget():
    start = time.monotonic()
    with Env(smtp={"faults": [{"stage": "RCPT", "action": "stall"}]}, timeout=2) as env:
        r = env.send(["-t", "-i"], MSG)
        took = time.monotonic() - start
        failed(env, r, 75, NO_ANSWER, connections=ATTEMPTS, stdin=MSG)
        assert took < STALL_RC_SECONDS, "took %.1f s" % took


@test
def temporary_then_success_delivers_once():
    fault = {"stage": "DATA", "reply": "451 4.3.0 Try again", "times": 1}
    with Env(smtp={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        eq(len(env.smtp.messages()), 1, "delivered once")
        eq(len(env.smtp.connections()), 2, "a second attempt")
        eq(env.dead(), [], "dead letter")


@test
def retry_after_a_partial_delivery_goes_to_the_others_only():
    # 452 after 2 recipients: the first transaction delivers to two; the
    # second transaction's MAIL gets 451 once. The retry must not send the
    # message to the first two again.
    rcpts = ["r1@example.org", "r2@example.org", "r3@example.org"]
    fault = {"stage": "MAIL", "reply": "451 4.3.0 Try again", "skip": 1, "times": 1}
    with Env(smtp={"max_rcpts": 2, "faults": [fault]}) as env:
        r = env.send(["-i"] + rcpts, b"Subject: partial\n\nhello\n")
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        msgs = env.smtp.messages()
        got = [[x["addr"] for x in m["rcpts"]] for m in msgs]
        eq(got, [rcpts[:2], rcpts[2:]], "each recipient exactly once")
        eq(len(env.smtp.connections()), 2, "a second attempt")
        eq(env.dead(), [], "dead letter")


@test
def dead_letter_that_cannot_be_written_is_73():
    fault = {"stage": "MAIL", "reply": "550 5.7.1 Not today"}
    with Env(smtp={"faults": [fault]}) as env:
        env.dead_letter = os.path.join(env.dir, "no-such-dir", "dead.letter")
        env.write_config({}, 10, "")
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 73, "exit code: %r" % r)
        eq(r.out, b"")
        lines = r.err.splitlines()
        match(MAIL_REFUSED, lines[0], "the delivery failure first")
        assert any(l.startswith("tokenmail: the message could not be kept either: ")
                   and env.dead_letter in l for l in lines), r.err
        eq(env.smtp.messages(), [], "messages accepted")


@test
def verbose_trace_shows_the_session_but_never_the_token():
    with Env() as env:
        r = env.send(["-v", "-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        match(r"^tokenmail: .*AUTH XOAUTH2", r.err, "the AUTH command is traced")
        assert "<redacted>" in r.err, r.err
        for token in env.issued():
            assert token not in r.err, "token in the -v trace"
            blob = base64.b64encode(("user=%s\x01auth=Bearer %s\x01\x01" % (USER, token))
                                    .encode()).decode()
            assert blob[:40] not in r.err, "SASL blob in the -v trace"
        assert SECRET not in r.err, "client secret in the -v trace"


# ------------------------------------------------------------ permanent faults

def perm_fault(fault, rc, pattern, server, stdin=MSG, then=None):
    with Env(smtp={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        failed(env, r, rc, pattern, server=server, connections=1, stdin=stdin)
        if then:
            then(env, r)


@test
def mail_550_is_69():
    perm_fault({"stage": "MAIL", "reply": "550 5.1.8 Sender address rejected"},
               69, MAIL_REFUSED, "550 5.1.8 Sender address rejected")


@test
def data_554_is_69():
    perm_fault({"stage": "DATA", "reply": "554 5.6.0 Transaction failed"},
               69, DATA_REFUSED, "554 5.6.0 Transaction failed")


@test
def end_of_data_554_is_69():
    perm_fault({"stage": "DOT", "reply": "554 5.6.0 Message content rejected"},
               69, MESSAGE_REFUSED, "554 5.6.0 Message content rejected")


@test
def end_of_data_send_as_denied_is_77():
    # SPEC 6: "77 not allowed (auth failed, SendAs denied, ...)"; Exchange says
    # so after the final dot (PROTOCOL.md 3.3).
    reply = ("554 5.2.252 SendAsDenied; app@example.com not allowed to send as "
             "root@elsewhere.example; STOREDRV.Submission.Exception:SendAsDeniedException."
             "MapiExceptionSendAsDenied")
    perm_fault({"stage": "DOT", "reply": reply}, 77, MESSAGE_REFUSED, "554 5.2.252 SendAsDenied")


@test
def mail_550_send_as_not_permitted_is_77():
    perm_fault({"stage": "MAIL", "reply": "550 5.7.60 SMTP; Client does not have permissions "
                "to send as this sender"}, 77, MAIL_REFUSED, "550 5.7.60 SMTP; Client does not")


@test
def rcpt_550_is_67_and_nothing_is_sent():
    def then(env, r):
        c = env.smtp.client_lines()
        verbs = [l.split(" ")[0].upper() for l in c]
        eq(verbs.count("RCPT"), len(MSG_RCPTS), "every RCPT sent (pipelined)")
        # DATA went in the group and got 354 (two recipients were accepted):
        # the client hangs up with nothing more, no data, no "." (an empty
        # message), no RSET or QUIT (they would be message data).
        eq(verbs[-1], "DATA", "nothing after the pipelined DATA: %r" % verbs)
        data = [e for e in env.smtp.transcript(direction="*") if e["line"].startswith("data ")]
        eq(data, [], "message data sent")
        match(r"^  RCPT TO:<carol@example\.net>: 550 5\.1\.10 ", r.err, "detail line")

    perm_fault({"stage": "RCPT", "rcpt": "carol@example.net",
                "reply": "550 5.1.10 RESOLVER.ADR.RecipientNotFound; not found"},
               67, HOST + r"refused RCPT TO:<carol@example\.net>$",
               "550 5.1.10 RESOLVER.ADR.RecipientNotFound", then=then)


@test
def pipelined_group_is_one_turn_and_a_550_delivers_nothing():
    # MAIL, every RCPT and DATA arrive in one turn; the peer, like a real
    # server, answers DATA 354 because two recipients were accepted. Nothing
    # may be delivered: the peer must record no message.
    fault = {"stage": "RCPT", "rcpt": "hidden@example.net",
             "reply": "550 5.1.1 User unknown"}
    with Env(smtp={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 67, "exit code: %r" % r)
        eq(env.smtp.messages(), [], "messages delivered")
        eq(len(env.smtp.connections()), 1, "connections")
        conn = env.smtp.connections()[0]
        group = [e for e in env.smtp.transcript(conn, "C")
                 if e["line"].split(" ")[0].upper() in ("MAIL", "RCPT", "DATA")]
        eq([e["line"].split(" ")[0].upper() for e in group],
           ["MAIL"] + ["RCPT"] * len(MSG_RCPTS) + ["DATA"], "the group")
        eq(len({e["turn"] for e in group}), 1, "MAIL, RCPT and DATA in one turn")
        replies = [e["line"] for e in env.smtp.transcript(conn, "S")
                   if e["turn"] == group[0]["turn"]]
        eq([l[:3] for l in replies], ["250", "250", "250", "550", "354"], "the replies")
        eq(env.smtp.client_lines(conn)[-1], "DATA", "nothing sent after the 354")
        events = [e["line"] for e in env.smtp.transcript(conn, "*")]
        eq([l for l in events if l.startswith("data ")], [], "message data")
        assert "eof" in events, "the client closed the connection: %r" % events
        eq(len(env.dead()), 1, "dead letter")


@test
def size_over_the_limit_is_65_before_mail():
    with Env(smtp={"capabilities": {"SIZE": 1000}}) as env:
        stdin = MSG + b"y" * 5000 + b"\n"
        r = env.send(["-t", "-i"], stdin)
        failed(env, r, 65, r"^tokenmail: the message \(\d+ octets\) is larger than 127\.0\.0\.1 "
               r"accepts \(1000\)$", connections=1, stdin=stdin)
        assert "  hint: send a smaller message" in r.err.splitlines(), r.err
        verbs = [l.split(" ")[0].upper() for l in env.smtp.client_lines()]
        for v in ("MAIL", "RCPT", "DATA"):
            assert v not in verbs, "%s sent for a message over SIZE: %r" % (v, verbs)


@test
def ehlo_421_is_75():
    temp_fault({"stage": "EHLO", "reply": "421 4.3.2 Service shutting down"},
               HOST + r"refused EHLO$", server="421 4.3.2 Service shutting down")


@test
def starttls_454_is_75():
    temp_fault({"stage": "STARTTLS",
                "reply": "454 4.7.0 TLS not available due to temporary reason"},
               HOST + r"refused STARTTLS$", server="454 4.7.0 TLS not available")


@test
def stall_after_the_token_is_75():
    temp_fault({"stage": "AUTH", "action": "stall"}, NO_ANSWER, timeout=2)


# ------------------------------------------------------------ TLS refusals

def refused_before_auth(smtp, pattern, account=None, then=None):
    with Env(smtp=smtp, account=account) as env:
        r = env.send(["-t", "-i"], MSG)
        failed(env, r, 69, pattern, connections=1, stdin=MSG)
        eq(env.smtp.auth(), [], "AUTH attempts")
        verbs = [l.split(" ")[0].upper() for l in env.smtp.client_lines()]
        for v in ("AUTH", "MAIL", "RCPT", "DATA"):
            assert v not in verbs, "%s sent: %r" % (v, verbs)
        if then:
            then(env, r)


@test
def starttls_not_offered_is_69():
    # The server even offers AUTH in clear: a token must still not cross.
    refused_before_auth({"capabilities": {"STARTTLS": False}, "auth_before_tls": True,
                                  "require_tls": False},
                        HOST + r"does not offer STARTTLS: refusing to send a token in clear$")


@test
def untrusted_certificate_is_69():
    def then(env, r):
        assert "  hint: if the server uses a private CA, set tls_ca_file" in r.err.splitlines(), \
            r.err

    refused_before_auth({"cert_name": "untrusted"},
                        CERT_REFUSED + r"certificate signed by an unknown authority$", then=then)


@test
def wrong_host_name_is_69():
    refused_before_auth({"cert_name": "wronghost"},
                        CERT_REFUSED + r"certificate names another host: wrong\.example\.net "
                        r"\(wanted 127\.0\.0\.1\)$")


@test
def expired_certificate_is_69():
    refused_before_auth({"cert_name": "expired"}, CERT_REFUSED + r"certificate expired$")


@test
def tls_1_0_only_is_69():
    refused_before_auth({"tls_versions": ["1.0"]}, HOST + r"offers no TLS 1\.2 or newer$")


@test
def implicit_tls_untrusted_certificate_is_69():
    refused_before_auth({"mode": "tls", "cert_name": "untrusted"},
                        CERT_REFUSED + r"certificate signed by an unknown authority$")


if __name__ == "__main__":
    raise SystemExit(run_all())
