"""The real Debian programs that run /usr/sbin/sendmail, run against tokenmail.

test_callers.py replays the argv and input each caller was recorded to use
(/work/shared/CALLERS.md) with --dry-run. This file runs the callers
themselves, as installed by ./bootstrap on Debian 12: PHP mail(), git
send-email, s-nail, bsd-mailx, mutt, Debian's cron daemon and sudo (mdadm is
not installed: its popen() is reproduced). Each caller is pointed at the
binary under test the way an administrator would do it, so tokenmail gets
the caller's own argv, argv[0] (basename "sendmail": bin/sendmail is a
symlink to $TOKENMAIL), stdin and environment; tokenmail finds its config
through XDG_CONFIG_HOME in that environment, never through an added -C.

  PHP        php -n -d 'sendmail_path=BIN/sendmail -t -i' (PHP's default
             command with the path changed); additional_params are appended
  git        git send-email --sendmail-cmd=BIN/sendmail
  s-nail     s-nail -:/ -S mta=BIN/sendmail -S sendwait
  bsd-mailx  "set sendmail=BIN/sendmail" in the file $MAILRC names
  mutt       set sendmail="BIN/sendmail -oem -oi" (mutt's default with the
             path changed), in a muttrc given with -F
  cron       nothing: it runs /usr/sbin/sendmail; the daemon runs in a
             private mount namespace with tokenmail bind-mounted on that path
  sudo       Defaults mailerpath=BIN/sendmail, mailerflags="-t" in a private
             sudoers bind-mounted over /etc/sudoers in a private namespace
  mdadm      popen("BIN/sendmail -t"), i.e. /bin/sh -c

Every message goes through the project's peers on 127.0.0.1 (the token
endpoint plus the SMTP server, or plus the Graph API, over TLS with a
throwaway CA). Each test checks what arrived (MAIL FROM, RCPT TO, header
lines, body bytes, no Bcc), the exit status or return value the caller
reports, and the caller's stdout/stderr where it shows them; failures also
check tokenmail's dead letter and the caller's own dead.letter.

The cron and sudo tests need root (CI runs the suite as root): they use
unshare(1) for a private mount namespace, so the host's /etc/crontab,
/etc/sudoers, /usr/sbin/sendmail and /run are never touched; each checks
that no process is left in that namespace and that the host is unchanged.
A missing program is a failure that says to run ./bootstrap, not a skip.
"""
import base64
import email
import email.header
import email.policy
import hashlib
import json
import os
import pwd
import re
import shlex
import signal
import socket
import subprocess
import time

from tmtest import (DATE_RE, MSGID_RE, TOKENMAIL, Result, Workspace, close_env, crlf, eq,
                    lf, match, run_all, start_graph_peer, start_smtp_peer,
                    start_token_peer, test, yaml_value, dead_letter_messages, file_text)
from test_smtp import header_value, header_values, split_message

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000f6"
SECRET = "Abc8Q~callers-s3cret"
USER = "app@example.com"
SENDERS = [USER, "bounce@example.com", "dev@example.com"]
SMTP_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
RUN_TIMEOUT = 60
DELIVERY_WAIT = 20      # seconds to wait for a daemon's mail to arrive
REFUSED = "550 5.1.1 User unknown"
REFUSE_HIDDEN = {"faults": [{"stage": "RCPT", "rcpt": "hidden@example.net",
                             "reply": REFUSED}]}
BOOTSTRAP = "; run ./bootstrap as root (it installs the callers the tests run)"


def need(*programs):
    for p in programs:
        assert os.access(p, os.X_OK), "%s is not installed%s" % (p, BOOTSTRAP)


def need_root(why):
    assert os.geteuid() == 0, "this test needs root (%s); CI runs the suite as root" % why


def full_name():
    return pwd.getpwuid(os.getuid()).pw_gecos.split(",")[0]


def added_from(addr):
    """The From: tokenmail adds for the invoking user (SPEC 4.4)."""
    name = full_name()
    return "%s <%s>" % (name, addr) if name else addr


def sanitizer_env():
    """The sanitizer settings of a `make check` run, for tokenmail's runs."""
    return {k: os.environ[k] for k in ("ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS")
            if k in os.environ}


def hostname():
    return socket.gethostname()


def short_hostname():
    return hostname().split(".")[0]


class CallerEnv:
    """A workspace, a token peer, an SMTP peer (method "smtp") or a Graph
    peer (method "graph"), and tokenmail's config where a caller's
    environment leads it: $XDG_CONFIG_HOME/tokenmail/config.yaml with
    XDG_CONFIG_HOME=DIR/xdg. bin/sendmail is the binary under test (a
    symlink, or a copy with copy_binary when another user runs it), home/
    the caller's HOME and working directory. owner: the user who must own
    the workspace because tokenmail runs as that user (tokenmail refuses a
    config or secret another user owns). Stops the peers and removes the
    workspace at the end, whatever happens."""

    def __init__(self, method="smtp", smtp=None, graph=None, secret=SECRET, owner=None,
                 copy_binary=False):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.method = method
        self.token_peer = self.smtp = self.graph = None
        try:
            self.token_peer = start_token_peer(
                self.ws, {"clients": {CLIENT: {"secret": SECRET, "tenant": TENANT}}})
            if method == "smtp":
                config = {"users": [USER]}
                config.update(smtp or {})
                self.smtp = start_smtp_peer(self.ws, config, token_peer=self.token_peer)
            else:
                config = {"mailboxes": [USER]}
                config.update(graph or {})
                self.graph = start_graph_peer(self.ws, config, token_peer=self.token_peer)
            self.home = os.path.join(self.dir, "home")
            self.xdg = os.path.join(self.dir, "xdg")
            os.makedirs(self.home, mode=0o700)
            os.makedirs(os.path.join(self.xdg, "tokenmail"), mode=0o700)
            bindir = os.path.join(self.dir, "bin")
            os.mkdir(bindir, 0o755)
            self.sendmail = os.path.join(bindir, "sendmail")
            if copy_binary:
                with open(TOKENMAIL, "rb") as src, open(self.sendmail, "wb") as dst:
                    dst.write(src.read())
                os.chmod(self.sendmail, 0o755)
            else:
                os.symlink(TOKENMAIL, self.sendmail)
            self.secret_file = self.ws.write("app.secret", secret + "\n")
            self.dead_letter = os.path.join(self.dir, "dead.letter")
            self.log_file = os.path.join(self.dir, "tokenmail.log")
            self.config = os.path.join(self.xdg, "tokenmail", "config.yaml")
            with open(self.config, "w") as f:
                f.write(self.config_text())
            os.chmod(self.config, 0o600)
            if owner:
                pw = pwd.getpwnam(owner)
                for top, dirs, files in os.walk(self.dir):
                    for name in [top] + [os.path.join(top, n) for n in dirs + files]:
                        os.lchown(name, pw.pw_uid, pw.pw_gid)
        except BaseException:
            self.close()
            raise

    def config_text(self):
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % yaml_value(self.log_file),
                 "dead_letter: %s" % yaml_value(self.dead_letter),
                 "retry: {attempts: 2, max_seconds: 30}",
                 "timeout: 10",
                 "aliases:",
                 "  root: ops@example.com",
                 "  postmaster: root",
                 "default_account: app",
                 "accounts:",
                 "  app:",
                 "    senders: [%s]" % ", ".join(SENDERS),
                 "    from: %s" % USER,
                 "    method: %s" % self.method,
                 "    tenant: %s" % TENANT,
                 "    client_id: %s" % yaml_value(CLIENT),
                 "    client_secret_file: %s" % yaml_value(self.secret_file),
                 "    token_url: %s" % yaml_value(self.token_peer.url(TENANT))]
        if self.method == "smtp":
            lines += ["    scope: %s" % yaml_value(SMTP_SCOPE),
                      "    smtp: {host: 127.0.0.1, port: %d, tls: starttls, auth: xoauth2, "
                      "user: %s}" % (self.smtp.port, USER)]
        else:
            lines += ["    scope: %s" % yaml_value(GRAPH_SCOPE),
                      "    graph: {url: %s}" % yaml_value(self.graph.url)]
        return "\n".join(lines) + "\n"

    def env(self, **extra):
        """The caller's environment; tokenmail finds its config through it.
        The sanitizer settings of a `make check` run are passed on."""
        e = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": self.home,
             "XDG_CONFIG_HOME": self.xdg}
        e.update(sanitizer_env())
        e.update(extra)
        return e

    def run(self, argv, stdin=b"", env=None, cwd=None, executable=None, timeout=RUN_TIMEOUT):
        """Run a caller to completion: Result(rc, stdout bytes, stderr text)."""
        p = subprocess.run(argv, input=stdin, env=env or self.env(), cwd=cwd or self.home,
                           executable=executable, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout)
        return Result(p.returncode, p.stdout, p.stderr)

    def messages(self):
        return self.smtp.messages()

    def data(self, m):
        return self.smtp.data(m)

    def dead(self):
        """tokenmail's dead letter: [(From line, message bytes)], or []."""
        return dead_letter_messages(self.dead_letter)

    def log_text(self):
        return file_text(self.log_file)

    def wait_for(self, what, count=1, timeout=DELIVERY_WAIT):
        """Wait (bounded) until count messages arrived and as many log lines
        were written (the log line comes after the server's final reply)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.messages() if self.method == "smtp" else self.graph.sent()
            if len(got) >= count and self.log_text().count(" result=") >= count:
                return got
            time.sleep(0.05)
        raise AssertionError("%s: no mail after %d s; log: %r" % (what, timeout,
                                                                  self.log_text()))

    def close(self):
        close_env(self.ws, self.smtp, self.graph, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ what arrived

def check_header(data, want):
    """The header's lines (as sent, folding kept) are exactly want: each item
    a str (the line) or a compiled pattern the whole line must match."""
    head, _ = split_message(data)
    got = head.decode("utf-8", "replace").split("\r\n")
    ok = len(got) == len(want) and all(
        (w.fullmatch(g) if isinstance(w, re.Pattern) else w == g) for g, w in zip(got, want))
    assert ok, "header lines\n  got:  %s\n  want: %s" % (
        "\n        ".join(map(repr, got)),
        "\n        ".join(w.pattern if isinstance(w, re.Pattern) else repr(w) for w in want))


GENERATED_DATE = re.compile("Date: " + DATE_RE[1:-1])
GENERATED_MSGID = re.compile("Message-ID: " + MSGID_RE[1:-1])
ANY_DATE = re.compile(r"Date: .+")


def delivered(env, mail_from, rcpts, count=1):
    """Exactly count messages accepted over TLS, each from mail_from to rcpts
    (a list, or a list of lists per message), CRLF only, no Bcc field.
    Returns their bytes."""
    msgs = env.messages()
    eq(len(msgs), count, "messages accepted: %r" % msgs)
    out = []
    for i, m in enumerate(msgs):
        want = rcpts[i] if rcpts and isinstance(rcpts[0], list) else rcpts
        eq(m["mail_from"], mail_from, "MAIL FROM")
        eq([r["addr"] for r in m["rcpts"]], want, "RCPT TO")
        eq(m["tls"], True, "over TLS")
        eq(m["auth_user"], USER, "AUTH XOAUTH2 user")
        eq(m["bare_lf"], False, "bare LF on the wire")
        data = env.data(m)
        eq(header_values(data, "Bcc"), [], "Bcc field transmitted")
        out.append(data)
    eq(env.dead(), [], "dead letter")
    return out


def failed(env, r_err, rcpt, stdin=None):
    """tokenmail's lines on the caller's stderr for a refused recipient,
    nothing accepted, and the caller's input in tokenmail's dead letter."""
    lines = r_err.splitlines()
    assert lines, "stderr is empty"
    eq(lines[0], "tokenmail: 127.0.0.1 refused RCPT TO:<%s>" % rcpt, "first stderr line")
    assert "  server: %s" % REFUSED in lines, r_err
    assert "  (the message is kept in %s)" % env.dead_letter in lines, r_err
    eq(env.messages(), [], "messages accepted")
    dead = env.dead()
    eq(len(dead), 1, "dead letter messages")
    match(r"^From %s " % re.escape(USER), dead[0][0], "mbox From line")
    if stdin is not None:
        eq(dead[0][1], lf(stdin), "dead letter = what the caller wrote")
    return dead[0][1]


# ------------------------------------------------------------ PHP mail()

PHP = "/usr/bin/php"
PHP_SCRIPT = r"""<?php
// Each call: mail(to, subject, message, headers, params); prints true/false.
// An "encode" subject becomes an RFC 2047 encoded word, as an application
// does without mbstring (php -n loads no extension).
foreach (json_decode(file_get_contents($argv[1]), true) as $c) {
    $subject = $c["subject"];
    if (!empty($c["encode"]))
        $subject = "=?UTF-8?B?" . base64_encode($subject) . "?=";
    $ok = mail($c["to"], $subject, $c["message"], $c["headers"], $c["params"]);
    echo $ok ? "true\n" : "false\n";
}
"""


def php_mail(env, calls):
    """Run PHP's mail() for each call (dicts: to, subject, message, headers,
    params, encode) under php -n with sendmail_path set to tokenmail."""
    need(PHP)
    script = env.ws.write("mail.php", PHP_SCRIPT, 0o644)
    args = env.ws.write("calls.json", json.dumps([dict({"headers": "", "params": ""}, **c)
                                                   for c in calls]), 0o644)
    return env.run([PHP, "-n", "-d", "sendmail_path=%s -t -i" % env.sendmail,
                    "-d", "display_errors=stderr", script, args])


def php_stream(to, subject, message, headers=""):
    """What PHP >= 8 writes to sendmail: its own lines end in CRLF, the
    message goes as given, then CRLF (php-src ext/standard/mail.c)."""
    out = "To: %s\r\nSubject: %s\r\n" % (to, subject)
    if headers:
        out += headers + "\r\n"
    return (out + "\r\n" + message + "\r\n").encode()


@test
def php_mail_plain():
    # No From (tokenmail adds it, with the user's name), no Date or
    # Message-ID; mixed line ends; a lone dot that -i keeps.
    msg = "Dear Alice,\nthe report is ready.\n.\nThe line above is a lone dot.\n"
    with CallerEnv() as env:
        r = php_mail(env, [{"to": "Alice <alice@example.com>", "subject": "Report",
                            "message": msg}])
        eq((r.rc, r.out, r.err), (0, b"true\n", ""), "php: mail() returned true, quietly")
        data, = delivered(env, USER, ["alice@example.com"])
        check_header(data, ["To: Alice <alice@example.com>", "Subject: Report",
                            "From: " + added_from(USER), GENERATED_DATE, GENERATED_MSGID])
        eq(split_message(data)[1], crlf((msg + "\r\n").encode()), "body")


@test
def php_mail_additional_params_f():
    # additional_params are appended to sendmail_path: argv "-t -i -f ADDR"
    # and "-t -i -fADDR"; the envelope sender is bounce@ (one of the
    # account's senders), and the From: tokenmail adds carries it.
    msg = "bounce test\n"
    with CallerEnv() as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": "separate", "message": msg,
                            "params": "-f bounce@example.com"},
                           {"to": "alice@example.com", "subject": "glued", "message": msg,
                            "params": "-fbounce@example.com"}])
        eq((r.rc, r.out, r.err), (0, b"true\ntrue\n", ""), "php: both mail() calls true")
        for data, subject in zip(delivered(env, "bounce@example.com", ["alice@example.com"],
                                           count=2), ("separate", "glued")):
            check_header(data, ["To: alice@example.com", "Subject: " + subject,
                                "From: " + added_from("bounce@example.com"),
                                GENERATED_DATE, GENERATED_MSGID])
            eq(split_message(data)[1], crlf(b"bounce test\n\r\n"), "body")


@test
def php_mail_cc_and_bcc_headers():
    # PHP writes the Bcc: line into the message; tokenmail sends to it and
    # removes it. From: names an address the account may not send as: the
    # address is rewritten, the display name kept.
    headers = ("From: Web Shop <shop@example.com>\r\nCc: Carol <carol@example.net>\r\n"
               "Bcc: hidden@example.net")
    msg = "Your order has shipped.\n"
    with CallerEnv() as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": "Order 42",
                            "message": msg, "headers": headers}])
        eq((r.rc, r.out, r.err), (0, b"true\n", ""), "php")
        data, = delivered(env, USER, ["alice@example.com", "carol@example.net",
                                      "hidden@example.net"])
        check_header(data, ["To: alice@example.com", "Subject: Order 42",
                            "From: Web Shop <app@example.com>", "Cc: Carol <carol@example.net>",
                            GENERATED_DATE, GENERATED_MSGID])
        eq(split_message(data)[1], crlf((msg + "\r\n").encode()), "body")


@test
def php_mail_utf8_subject_and_html_body():
    subject = "Gr\u00fc\u00dfe aus K\u00f6ln \u2013 10 \u20ac"
    html = ("<!DOCTYPE html>\n<html><body>\n<p>Gr\u00fc\u00dfe aus K\u00f6ln!</p>\n"
            "<p>Preis: <b>10 \u20ac</b></p>\n</body></html>\n")
    headers = ("From: Shop <bounce@example.com>\r\nMIME-Version: 1.0\r\n"
               "Content-Type: text/html; charset=UTF-8\r\nContent-Transfer-Encoding: 8bit")
    encoded = "=?UTF-8?B?%s?=" % base64.b64encode(subject.encode()).decode()
    with CallerEnv() as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": subject, "encode": True,
                            "message": html, "headers": headers}])
        eq((r.rc, r.out, r.err), (0, b"true\n", ""), "php")
        data, = delivered(env, "bounce@example.com", ["alice@example.com"])
        check_header(data, ["To: alice@example.com", "Subject: " + encoded,
                            "From: Shop <bounce@example.com>", "MIME-Version: 1.0",
                            "Content-Type: text/html; charset=UTF-8",
                            "Content-Transfer-Encoding: 8bit", GENERATED_DATE, GENERATED_MSGID])
        (raw, charset), = email.header.decode_header(header_value(data, "Subject"))
        eq(raw.decode(charset), subject, "decoded Subject")
        eq(split_message(data)[1], crlf((html + "\r\n").encode()), "UTF-8 HTML body")
        m = env.messages()[0]
        eq(m["mail_params"].get("BODY"), "8BITMIME", "8-bit body announced")


@test
def php_mail_refused_recipient_returns_false():
    # The SMTP server refuses the Bcc recipient: nothing is sent to anyone,
    # mail() returns false, tokenmail's reason shows on PHP's stderr (PHP
    # does not read it) and the message as PHP wrote it (Bcc included) is
    # in the dead letter.
    headers = "Cc: carol@example.net\r\nBcc: hidden@example.net"
    msg = "never delivered\n"
    with CallerEnv(smtp=REFUSE_HIDDEN) as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": "Refused", "message": msg,
                            "headers": headers}])
        eq((r.rc, r.out), (0, b"false\n"), "php: mail() returned false: %r" % r)
        failed(env, r.err, "hidden@example.net",
               php_stream("alice@example.com", "Refused", msg, headers))
        match(r"result=failed .* exit=67$", env.log_text().strip(), "log line")


@test
def php_mail_through_graph():
    headers = ("From: Web Shop <shop@example.com>\r\nCc: carol@example.net\r\n"
               "Bcc: hidden@example.net")
    msg = "Sent with Microsoft Graph.\n"
    with CallerEnv(method="graph") as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": "Via Graph", "message": msg,
                            "headers": headers}])
        eq((r.rc, r.out, r.err), (0, b"true\n", ""), "php")
        sent = env.graph.sent()
        eq(len(sent), 1, "sendMail calls: %r" % env.graph.requests())
        s = sent[0]
        eq((s["op"], s["mailbox"]), ("sendMail", USER), "POST /users/%s/sendMail" % USER)
        eq(s["recipients"], ["alice@example.com", "carol@example.net", "hidden@example.net"],
           "Graph's recipients = the envelope")
        data = env.graph.sent_data(s)
        want = ["To: alice@example.com", "Subject: Via Graph",
                "From: Web Shop <app@example.com>", "Cc: carol@example.net",
                GENERATED_DATE, GENERATED_MSGID]
        check_header(data, want)
        eq(split_message(data)[1], crlf((msg + "\r\n").encode()), "body")
        # Graph itself drops Bcc from what it delivers and keeps it in Sent Items.
        check_header(env.graph.sent_items_data(s),
                     want[:4] + ["Bcc: hidden@example.net"] + want[4:])
        eq(env.dead(), [], "dead letter")


@test
def php_mail_graph_token_refused_returns_false():
    # The token endpoint refuses the client secret: mail() false, the
    # AADSTS reason on stderr, nothing posted to Graph, the dead letter.
    msg = "no token, no mail\n"
    with CallerEnv(method="graph", secret="Abc8Q~an-old-secret") as env:
        r = php_mail(env, [{"to": "alice@example.com", "subject": "No token", "message": msg}])
        eq((r.rc, r.out), (0, b"false\n"), "php: mail() returned false: %r" % r)
        lines = r.err.splitlines()
        eq(lines[0], "tokenmail: token endpoint refused account app: invalid_client "
           "AADSTS7000215: Invalid client secret provided.", "first stderr line: %r" % r.err)
        assert any(l.startswith("  hint: the client secret is wrong") for l in lines), r.err
        assert "  (the message is kept in %s)" % env.dead_letter in lines, r.err
        assert SECRET not in r.err and "an-old-secret" not in r.err, "secret printed"
        eq(env.graph.requests(), [], "Graph requests")
        dead = env.dead()
        eq([m for _, m in dead], [lf(php_stream("alice@example.com", "No token", msg))],
           "dead letter")


# ------------------------------------------------------------ git send-email

GIT = "/usr/bin/git"
GIT_SEND_EMAIL = "/usr/lib/git-core/git-send-email"


def patch_body(path):
    with open(path, "rb") as f:
        return f.read().partition(b"\n\n")[2]


@test
def git_send_email_two_patch_series():
    need(GIT, GIT_SEND_EMAIL, "/usr/bin/perl")
    p = subprocess.run(["/usr/bin/perl", "-MMail::Address", "-e", "1"],
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=30)
    assert p.returncode == 0, ("git send-email needs Perl's Mail::Address (Debian "
                               "libmailtools-perl, a Recommends of git-email)" + BOOTSTRAP)
    with CallerEnv() as env:
        repo = os.path.join(env.dir, "repo")
        gitconfig = env.ws.write("gitconfig", "[user]\n\tname = Dev Eloper\n"
                                 "\temail = dev@example.com\n[init]\n\tdefaultBranch = main\n")
        genv = env.env(GIT_CONFIG_GLOBAL=gitconfig, GIT_CONFIG_NOSYSTEM="1", TZ="UTC",
                       GIT_AUTHOR_DATE="2026-11-22T12:00:00Z",
                       GIT_COMMITTER_DATE="2026-11-22T12:00:00Z")

        def git(*args):
            r = env.run([GIT] + list(args), env=genv, cwd=repo)
            eq(r.rc, 0, "git %s: %r" % (args[0], r))
            return r

        os.mkdir(repo)
        git("init", "-q")
        with open(os.path.join(repo, "file.c"), "w") as f:
            f.write("int a;\n")
        git("add", "file.c")
        git("commit", "-q", "-m", "add file.c")
        with open(os.path.join(repo, "file.c"), "a") as f:
            f.write("int b;\n")
        git("commit", "-q", "-a", "-m", "file.c: add b\n\nWhy b.\n.\nThe line above is a "
            "lone dot.\n\nCc: Reviewer <reviewer@example.org>\n"
            "Signed-off-by: Dev Eloper <dev@example.com>")
        with open(os.path.join(repo, "file.c"), "a") as f:
            f.write("int c;\n")
        git("commit", "-q", "-a", "-m", "file.c: add c\n\n"
            "Signed-off-by: Dev Eloper <dev@example.com>\n"
            "Signed-off-by: Other Dev <other@example.org>")
        outdir = os.path.join(env.dir, "patches")
        git("format-patch", "-q", "-2", "-o", outdir)
        patches = [os.path.join(outdir, n) for n in sorted(os.listdir(outdir))]
        eq(len(patches), 2, "patches")

        r = env.run([GIT, "send-email", "--sendmail-cmd=" + env.sendmail,
                     "--to=maint@example.org", "--cc=list@example.org",
                     "--bcc=secret@example.org", "--suppress-cc=self", "--confirm=never"]
                    + patches, env=genv, cwd=repo, stdin=b"")
        eq((r.rc, r.err), (0, ""), "git send-email: %r" % r)
        out = r.out.decode()
        rcpts = [["maint@example.org", "list@example.org", "reviewer@example.org",
                  "secret@example.org"],
                 ["maint@example.org", "list@example.org", "other@example.org",
                  "secret@example.org"]]
        # git's own log of the command it ran: "-i" and the recipients, no "--".
        for want in rcpts:
            assert "Sendmail: %s -i %s\n" % (env.sendmail, " ".join(want)) in out, out
        eq(out.count("Result: OK\n"), 2, "git's result lines")

        # The From address is one of the account's senders: the envelope
        # sender, From kept. Everything git wrote passes through, folding
        # included; secret@ (Bcc) only on the envelope; no Date or
        # Message-ID added.
        first, second = delivered(env, "dev@example.com", rcpts, count=2)
        ids = []
        for i, (data, cc, subject) in enumerate(
                ((first, "Reviewer <reviewer@example.org>", "[PATCH 1/2] file.c: add b"),
                 (second, "Other Dev <other@example.org>", "[PATCH 2/2] file.c: add c"))):
            msgid = header_value(data, "Message-Id")
            match(r"^<\d{14}\.\d+-%d-dev@example\.com>$" % (i + 1), msgid, "git's Message-Id")
            ids.append(msgid)
            threading = ([] if i == 0 else
                         ["In-Reply-To: " + ids[0], "References: " + ids[0]])
            check_header(data, ["From: Dev Eloper <dev@example.com>", "To: maint@example.org",
                                "Cc: list@example.org,", "\t" + cc, "Subject: " + subject,
                                ANY_DATE, "Message-Id: " + msgid,
                                re.compile(r"X-Mailer: git-send-email \S+")] + threading +
                         ["MIME-Version: 1.0", "Content-Transfer-Encoding: 8bit"])
            eq(split_message(data)[1], crlf(patch_body(patches[i])), "patch %d body" % (i + 1))
        assert b"\r\n.\r\nThe line above is a lone dot." in first, "lone dot kept (-i)"


# ------------------------------------------------------------ mail / mailx

S_NAIL = "/usr/bin/s-nail"
BSD_MAILX = "/usr/bin/bsd-mailx"
MAILX_BODY = b"Hello from mailx.\n.\nThe line above is a lone dot.\n"


def s_nail(env, body=MAILX_BODY):
    """s-nail with no resource files (-:/), tokenmail as its MTA, waiting for
    it (sendwait); DEAD in HOME (s-nail ignores $HOME for root)."""
    need(S_NAIL)
    return env.run([S_NAIL, "-:/", "-S", "mta=" + env.sendmail, "-S", "sendwait",
                    "-S", "DEAD=" + os.path.join(env.home, "dead.letter"),
                    "-s", "s-nail subject", "-c", "carol@example.net",
                    "-b", "hidden@example.net", "bob@example.org"], body)


def bsd_mailx(env, body=MAILX_BODY):
    """bsd-mailx reading "set sendmail=..." from the file MAILRC names."""
    need(BSD_MAILX)
    mailrc = env.ws.write("mailrc", "set sendmail=%s\n" % env.sendmail, 0o644)
    return env.run([BSD_MAILX, "-s", "mailx subject", "-c", "carol@example.net",
                    "-b", "hidden@example.net", "bob@example.org"], body,
                   env=env.env(MAILRC=mailrc))


S_NAIL_HEADER = [ANY_DATE, "To: bob@example.org", "Cc: carol@example.net",
                 "Subject: s-nail subject", re.compile(r"User-Agent: s-nail v\S+")]


@test
def s_nail_subject_cc_bcc_piped_body():
    # argv: -i -- bob@ carol@ hidden@ (Bcc on argv only, no Bcc field).
    with CallerEnv() as env:
        r = s_nail(env)
        eq((r.rc, r.out, r.err), (0, b"", ""), "s-nail")
        data, = delivered(env, USER, ["bob@example.org", "carol@example.net",
                                      "hidden@example.net"])
        check_header(data, S_NAIL_HEADER + ["From: " + added_from(USER), GENERATED_MSGID])
        eq(split_message(data)[1], crlf(MAILX_BODY), "body")


@test
def s_nail_refused_recipient_exits_4():
    with CallerEnv(smtp=REFUSE_HIDDEN) as env:
        r = s_nail(env)
        dead = os.path.join(env.home, "dead.letter")
        eq(r.rc, 4, "s-nail exit status: %r" % r)
        match(r"^%s \d+/\d+\n\Z" % re.escape(dead), r.out.decode(), "s-nail names its DEAD")
        eq(r.err.splitlines()[-1], "s-nail: ... message not sent", "s-nail's last word")
        message = failed(env, r.err, "hidden@example.net")
        head, _, body = message.partition(b"\n\n")
        check_header(head.replace(b"\n", b"\r\n") + b"\r\n\r\n", S_NAIL_HEADER)
        eq(body, MAILX_BODY, "dead letter body")
        with open(dead, "rb") as f:
            saved = f.read()
        assert b"Subject: s-nail subject\n" in saved and saved.endswith(MAILX_BODY + b"\n"), \
            "s-nail's own dead.letter: %r" % saved


@test
def bsd_mailx_subject_cc_bcc_piped_body():
    # argv: -i -t; bsd-mailx writes To, Cc and Bcc fields (the failure test
    # shows the Bcc: line in what it wrote); tokenmail removes Bcc.
    with CallerEnv() as env:
        r = bsd_mailx(env)
        eq((r.rc, r.out, r.err), (0, b"", ""), "bsd-mailx")
        data, = delivered(env, USER, ["bob@example.org", "carol@example.net",
                                      "hidden@example.net"])
        check_header(data, ["To: bob@example.org", "Subject: mailx subject",
                            "Cc: carol@example.net", "MIME-Version: 1.0",
                            'Content-Type: text/plain; charset="UTF-8"',
                            "Content-Transfer-Encoding: 8bit", "From: " + added_from(USER),
                            GENERATED_DATE, GENERATED_MSGID])
        eq(split_message(data)[1], crlf(MAILX_BODY), "body")


@test
def bsd_mailx_refused_recipient_exits_1():
    with CallerEnv(smtp=REFUSE_HIDDEN) as env:
        r = bsd_mailx(env)
        eq((r.rc, r.out), (1, b""), "bsd-mailx exit status: %r" % r)
        eq(r.err.splitlines()[-1],
           "Can't send mail: sendmail process failed with error code 67", "bsd-mailx's line")
        wrote = (b"To: bob@example.org\nSubject: mailx subject\nCc: carol@example.net\n"
                 b"Bcc: hidden@example.net\nMIME-Version: 1.0\n"
                 b'Content-Type: text/plain; charset="UTF-8"\n'
                 b"Content-Transfer-Encoding: 8bit\n\n" + MAILX_BODY)
        failed(env, r.err, "hidden@example.net", wrote)
        # When the MTA fails, bsd-mailx writes ~/dead.letter from the temp
        # file it gave the MTA as stdin, without rewinding it; the MTA shares
        # that file offset, so one that read its input to the end would leave
        # the dead.letter empty (a stand-in doing `cat >/dev/null; exit 75`
        # does). tokenmail puts the offset back when it fails, so bsd-mailx
        # keeps the whole message too.
        with open(os.path.join(env.home, "dead.letter"), "rb") as f:
            saved = f.read()
        eq(saved, wrote, "bsd-mailx's dead.letter")


# ------------------------------------------------------------ mutt

MUTT = "/usr/bin/mutt"


def mutt(env, args, body):
    need(MUTT)
    muttrc = env.ws.write("muttrc", "\n".join([
        'set sendmail="%s -oem -oi"' % env.sendmail,
        'set from="Mutt User <mutt@example.net>"', "set use_from=yes",
        "set hostname=example.net", "set charset=utf-8", "set send_charset=utf-8",
        "set copy=yes", 'set record="%s"' % os.path.join(env.home, "sent")]) + "\n", 0o644)
    return env.run([MUTT, "-n", "-F", muttrc] + args, body)


def mbox_first(path):
    """The first message of an mbox mutt wrote (Content-Length gives the body)."""
    with open(path, "rb") as f:
        data = f.read()
    head, _, rest = data.partition(b"\n\n")
    n = int(re.search(rb"\nContent-Length: (\d+)\n", head + b"\n").group(1))
    return head, rest[:n]


@test
def mutt_batch_with_attachment_and_bcc():
    body = "Gr\u00fc\u00dfe,\nthe attachment is the report.\n".encode()
    attachment = bytes(range(256)) * 8
    with CallerEnv() as env:
        path = env.ws.write("report.bin", "", 0o644)
        with open(path, "wb") as f:
            f.write(attachment)
        r = mutt(env, ["-s", "mutt subject", "-c", "carol@example.net",
                       "-b", "hidden@example.net", "-a", path, "--", "bob@example.org"], body)
        eq((r.rc, r.out, r.err), (0, b"", ""), "mutt")
        # argv: -oem -oi -- bob@ carol@ hidden@; mutt writes From, Date and
        # Message-ID; From is rewritten to the account's address.
        data, = delivered(env, USER, ["bob@example.org", "carol@example.net",
                                      "hidden@example.net"])
        fcc_head, fcc_body = mbox_first(os.path.join(env.home, "sent"))
        assert b"\nBcc: hidden@example.net\n" in fcc_head, "mutt's own copy names the Bcc"
        boundary = re.search(rb'boundary="([^"]+)"', fcc_head).group(1).decode()
        msgid = re.search(rb"\nMessage-ID: (<[^>]+@example\.net>)\n", fcc_head).group(1)
        check_header(data, [ANY_DATE, "From: Mutt User <app@example.com>",
                            "To: bob@example.org", "Cc: carol@example.net",
                            "Subject: mutt subject", "Message-ID: " + msgid.decode(),
                            "MIME-Version: 1.0",
                            'Content-Type: multipart/mixed; boundary="%s"' % boundary,
                            "Content-Disposition: inline", "Content-Transfer-Encoding: 8bit"])
        eq(split_message(data)[1], crlf(fcc_body), "MIME body = mutt's own copy of it")
        parsed = email.message_from_bytes(data, policy=email.policy.default)
        text, attached = parsed.iter_parts()
        eq(text.get_content(), body.decode().replace("\n", "\r\n"), "text part")
        eq(attached.get_filename(), "report.bin")
        eq(attached.get_content(), attachment, "attachment bytes")
        eq(env.messages()[0]["mail_params"].get("BODY"), "8BITMIME", "8-bit body")


@test
def mutt_refused_recipient_exits_1():
    with CallerEnv(smtp=REFUSE_HIDDEN) as env:
        r = mutt(env, ["-s", "mutt subject", "-b", "hidden@example.net", "--",
                       "bob@example.org"], b"never sent\n")
        eq((r.rc, r.out), (1, b"Could not send the message.\n"), "mutt: %r" % r)
        eq(r.err.splitlines()[-1], "Error sending message, child exited 67 (User unknown.).",
           "mutt's line")
        message = failed(env, r.err, "hidden@example.net")
        assert b"\nFrom: Mutt User <mutt@example.net>\n" in b"\n" + message, message
        assert message.endswith(b"\n\nnever sent\n"), message


# ------------------------------------------------------------ cron

CRON = "/usr/sbin/cron"
CRON_PAM = "/etc/pam.d/cron"
# Debian cron 3.0pl1 config.h: MAILCMD _PATH_SENDMAIL, MAILARGS
# "%s -FCronDaemon -i -B8BITMIME -oem  %s" (two spaces); do_command.c fills
# it with MAILCMD and MAILTO, popen.c (cron_popen) splits it on whitespace
# with strtok and execvp()s argv[0] = "/usr/sbin/sendmail", no shell, as the
# crontab's owner, with the daemon's environment, stdin a pipe.
CRON_MAILARGS = b"%s -FCronDaemon -i -B8BITMIME -oem  %s"
CRON_STRINGS = [CRON_MAILARGS, b"/usr/sbin/sendmail", b"root (Cron Daemon)",
                b"From: %s\n", b"To: %s\n", b"Subject: Cron <%s@%s> %s%s\n",
                b"MIME-Version: 1.0\n", b"Content-Type: text/plain; charset=%s\n",
                b"Content-Transfer-Encoding: %s\n", b"X-Cron-Env: <%s>\n",
                b"/run/crond.reboot"]
CRON_OUTPUT = b"job output\n.\nThe line above is a lone dot.\nGr\xc3\xbc\xc3\x9fe\r\n"


def cron_binary_strings():
    """The format strings of the installed cron binary this file relies on."""
    need(CRON)
    with open(CRON, "rb") as f:
        binary = f.read()
    missing = [s for s in CRON_STRINGS if b"\0" + s + b"\0" not in binary]
    assert not missing, ("%s no longer holds %r: Debian's cron changed how it mails; "
                         "check CALLERS.md and these tests" % (CRON, missing))


def cron_env_lines(mailto):
    home = pwd.getpwnam("root").pw_dir
    return ["X-Cron-Env: <SHELL=/bin/sh>", "X-Cron-Env: <MAILTO=%s>" % mailto,
            "X-Cron-Env: <HOME=%s>" % home, "X-Cron-Env: <PATH=/usr/bin:/bin>",
            "X-Cron-Env: <LOGNAME=root>"]


@test
def cron_mailto_argv_from_the_binary():
    cron_binary_strings()
    argv = (CRON_MAILARGS % (b"/usr/sbin/sendmail", b"root")).decode().split()
    eq(argv, ["/usr/sbin/sendmail", "-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"])
    command = "/usr/local/bin/nightly --verbose"
    header = [b"From: %s\n" % b"root (Cron Daemon)", b"To: %s\n" % b"root",
              b"Subject: Cron <%s@%s> %s%s\n" % (b"root", short_hostname().encode(),
                                                  command.encode(), b""),
              b"MIME-Version: 1.0\n", b"Content-Type: text/plain; charset=%s\n" % b"UTF-8",
              b"Content-Transfer-Encoding: %s\n" % b"8bit"]
    header += [b"X-Cron-Env: <%s>\n" % line[13:-1].encode() for line in cron_env_lines("root")]
    stdin = b"".join(header) + b"\n" + CRON_OUTPUT
    with CallerEnv() as env:
        # The daemon's environment (PATH=/usr/bin:/bin) plus XDG_CONFIG_HOME;
        # cwd is the crontab owner's HOME.
        r = env.run(argv, stdin, executable=env.sendmail,
                    env=dict(sanitizer_env(), PATH="/usr/bin:/bin", XDG_CONFIG_HOME=env.xdg))
        eq((r.rc, r.out, r.err), (0, b"", ""), "tokenmail as cron runs it")
        data, = delivered(env, USER, ["ops@example.com"])
        check_header(data, ["From: Cron Daemon <app@example.com>", "To: root",
                            "Subject: Cron <root@%s> %s" % (short_hostname(), command),
                            "MIME-Version: 1.0", "Content-Type: text/plain; charset=UTF-8",
                            "Content-Transfer-Encoding: 8bit"] + cron_env_lines("root") +
                     [GENERATED_DATE, GENERATED_MSGID])
        eq(split_message(data)[1], crlf(CRON_OUTPUT), "job output: lone dot, CR, UTF-8 kept")


# ---- private mount namespaces (cron and sudo)

def digest(path):
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()
    except OSError as e:
        return "error %d" % e.errno


def host_state():
    """What the namespace tests must leave as they found it."""
    with open("/proc/self/mountinfo") as f:
        mounts = sorted(line.split()[4] for line in f)
    listing = {}
    for d in ("/etc/cron.d", "/var/spool/cron/crontabs", "/run/sudo"):
        try:
            listing[d] = sorted(os.listdir(d))
        except OSError as e:
            listing[d] = "error %d" % e.errno
    return {"mounts": mounts, "listing": listing,
            "sendmail": os.path.realpath("/usr/sbin/sendmail"),
            "files": {p: digest(p) for p in ("/usr/sbin/sendmail", "/etc/crontab",
                                             "/etc/sudoers", CRON_PAM)},
            "exists": {p: os.path.lexists(p) for p in ("/run/crond.reboot", "/run/crond.pid",
                                                       "/root/dead.letter")}}


def namespace_pids(ns):
    pids = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if os.readlink("/proc/%s/ns/mnt" % d) == ns:
                    pids.append(int(d))
            except OSError:
                pass
    return pids


def empty_namespace(ns, timeout=10):
    """Wait (bounded) until no process is left in mount namespace ns; kill
    (by PID) whatever is left then, and fail."""
    deadline = time.monotonic() + timeout
    while namespace_pids(ns) and time.monotonic() < deadline:
        time.sleep(0.05)
    left = namespace_pids(ns)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    eq(left, [], "processes left in the private mount namespace")


def unshare_argv(binds, command):
    """A new mount namespace whose mounts do not propagate back to the
    host's, where /bin/sh -e mounts a tmpfs on /run (private pid files,
    reboot marker and sudo timestamps; it also hides systemd's /dev/log),
    binds /dev/null over a /dev/log socket so syslog(3) writes nowhere (best
    effort), bind-mounts each (source, target) of binds, then execs command
    (a list)."""
    need("/usr/bin/unshare")
    script = ["mount -t tmpfs -o mode=0755 tmpfs /run",
              "if [ -S /dev/log ]; then mount --bind /dev/null /dev/log || true; fi"]
    script += ["mount --bind %s %s" % (shlex.quote(s), shlex.quote(t)) for s, t in binds]
    script.append("exec " + " ".join(shlex.quote(a) for a in command))
    return ["/usr/bin/unshare", "--mount", "--propagation", "private", "/bin/sh", "-e", "-c",
            "\n".join(script)]


@test
def cron_daemon_runs_a_job_and_mails_its_output():
    # Debian's cron daemon itself (cron -f), in a private mount namespace: a
    # tmpfs on /run (no /run/crond.reboot there, so the @reboot job runs at
    # start, and the pid file is private), a private /etc/crontab, an empty
    # /etc/cron.d and crontabs spool, /etc/pam.d/cron without pam_loginuid
    # (it fails where the audit loginuid cannot be set, as in containers),
    # and tokenmail bind-mounted on /usr/sbin/sendmail (the mount follows
    # msmtp-mta's symlink to /usr/bin/msmtp, in this namespace only). The
    # daemon's environment carries XDG_CONFIG_HOME to the mailer. MAILTO
    # names root and another address: one argv element.
    need_root("a private mount namespace for cron")
    cron_binary_strings()
    before = host_state()
    mailto = "root,admin@example.org"
    job = r"printf 'job output\n.\nThe line above is a lone dot.\nGr\303\274\303\237e\r\n'"
    with CallerEnv() as env:
        crontab = env.ws.write("crontab", "SHELL=/bin/sh\nMAILTO=%s\n@reboot root %s\n"
                               % (mailto, job), 0o644)
        binds = [(crontab, "/etc/crontab")]
        for d, target in (("cron.d", "/etc/cron.d"), ("crontabs", "/var/spool/cron/crontabs")):
            os.mkdir(os.path.join(env.dir, d), 0o755)
            binds.append((os.path.join(env.dir, d), target))
        if os.path.exists(CRON_PAM):
            with open(CRON_PAM) as f:
                pam = "".join(l for l in f if "pam_loginuid" not in l)
            binds.append((env.ws.write("pam.cron", pam, 0o644), CRON_PAM))
        binds.append((TOKENMAIL, "/usr/sbin/sendmail"))
        daemon_env = dict(sanitizer_env(), PATH="/usr/bin:/bin", LANG="C",
                          XDG_CONFIG_HOME=env.xdg)
        errfile = os.path.join(env.dir, "cron.err")
        with open(errfile, "wb") as err:
            proc = subprocess.Popen(unshare_argv(binds, [CRON, "-f"]), env=daemon_env, cwd="/",
                                    stdin=subprocess.DEVNULL, stdout=err, stderr=err)
        ns = None
        try:
            try:
                env.wait_for("cron")
            finally:
                try:
                    ns = os.readlink("/proc/%d/ns/mnt" % proc.pid)
                except OSError:
                    pass
                alive = proc.poll() is None
                if alive:
                    proc.terminate()
                proc.wait(timeout=10)
            assert alive, "cron exited early (%r): %r" % (proc.returncode,
                                                         open(errfile, "rb").read())
            assert ns and ns != os.readlink("/proc/self/ns/mnt"), "cron in its own namespace"
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
            if ns:
                empty_namespace(ns)
        data, = delivered(env, USER, ["ops@example.com", "admin@example.org"])
        check_header(data, ["From: Cron Daemon <app@example.com>", "To: " + mailto,
                            "Subject: Cron <root@%s> %s" % (short_hostname(), job),
                            "MIME-Version: 1.0",
                            re.compile(r"Content-Type: text/plain; charset=\S+"),
                            "Content-Transfer-Encoding: 8bit"] + cron_env_lines(mailto) +
                     [GENERATED_DATE, GENERATED_MSGID])
        eq(split_message(data)[1], crlf(CRON_OUTPUT), "job output: lone dot, CR, UTF-8 kept")
        match(r"result=sent .* exit=0$", env.log_text().strip(), "log line")
    eq(host_state(), before, "the host after the test")


# ------------------------------------------------------------ sudo

SUDO = "/usr/bin/sudo"
SETPRIV = "/usr/bin/setpriv"


@test
def sudo_mails_user_not_in_sudoers():
    # Real sudo in a private mount namespace with a private sudoers:
    # mailerpath = tokenmail (argv {"sendmail", "-t"}), mailto root,
    # !authenticate so sudo decides without PAM, its log in a private file
    # instead of syslog (with neither, sudo 1.9.13 sends no mail either), and
    # a tmpfs on /run (sudo's timestamp directory). User nobody runs
    # `sudo -n true`; Debian builds sudo with --disable-root-mailer, so the
    # mailer runs as nobody with nobody's environment (XDG_CONFIG_HOME), its
    # stdin a pipe, stdout and stderr /dev/null, and sudo does not wait for
    # the delivery. The workspace is nobody's (tokenmail refuses a config or
    # secret another user owns). The working directory's name holds a line
    # with a lone dot: sudo writes it as #012.#012, so a message from sudo
    # (which passes no -i) never holds a lone dot and arrives whole.
    need_root("a private mount namespace for sudo, and running it as nobody")
    need(SUDO, SETPRIV)
    before = host_state()
    nobody = pwd.getpwnam("nobody")
    with CallerEnv(owner="nobody", copy_binary=True) as env:
        sudoers = os.path.join(env.dir, "sudoers")
        sudo_log = os.path.join(env.dir, "sudo.log")
        with open(sudoers, "w") as f:
            f.write("Defaults env_reset\nDefaults mailerpath=%s\nDefaults mailerflags=\"-t\"\n"
                    "Defaults mailto=root\nDefaults !authenticate\n"
                    "Defaults !syslog\nDefaults logfile=%s\n"
                    "root ALL=(ALL:ALL) ALL\n" % (env.sendmail, sudo_log))
        os.chmod(sudoers, 0o440)
        cwd = os.path.join(env.home, "x\n.\ny")
        os.mkdir(cwd)
        os.chown(cwd, nobody.pw_uid, nobody.pw_gid)
        command = [SETPRIV, "--reuid=%d" % nobody.pw_uid, "--regid=%d" % nobody.pw_gid,
                   "--clear-groups", "--", SUDO, "-n", "/usr/bin/true"]
        r = env.run(unshare_argv([(sudoers, "/etc/sudoers")], command), cwd=cwd)
        eq((r.rc, r.out), (1, b""), "sudo: %r" % r)
        # A host whose /etc/hosts lacks its own name (a fresh debootstrap
        # chroot) makes sudo warn first; the refusal is what counts.
        err = re.sub(r"\Asudo: unable to resolve host [^\n]*\n", "", r.err)
        match(r"\Anobody is not in the sudoers file\.", err, "sudo's stderr")
        with open(sudo_log) as f:
            match(r" : nobody : user NOT in sudoers ;", f.read(), "sudo's log file")
        env.wait_for("sudo")
        data, = delivered(env, USER, ["ops@example.com"])
        host = "(%s|%s)" % (re.escape(hostname()), re.escape(short_hostname()))
        subject = re.compile(r"Subject: \*\*\* SECURITY information for %s \*\*\*" % host)
        check_header(data, ["To: root", "From: app@example.com",
                            "Auto-Submitted: auto-generated", subject,
                            GENERATED_DATE, GENERATED_MSGID])
        pwd_field = cwd.replace("\n", "#012")
        match(r"\A%s : [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d : nobody : user NOT in sudoers ; "
              r"PWD=%s ; USER=root ; COMMAND=/usr/bin/true\r\n\r\n\Z"
              % (host, re.escape(pwd_field)), split_message(data)[1].decode(), "sudo's report")
        eq(os.stat(os.path.join(env.dir, "cache")).st_uid, nobody.pw_uid,
           "the mailer ran as nobody (it made the token cache)")
    eq(host_state(), before, "the host after the test")


# ------------------------------------------------------------ mdadm, -bv

@test
def mdadm_popen_with_t_and_glued_f():
    # mdadm (not installed) mails from Monitor.c alert(): popen(Sendmail, "w")
    # with Sendmail the build's MAILCMD ("/usr/sbin/sendmail -t" in Debian's
    # binary), i.e. /bin/sh -c; no -i; From: "mdadm monitoring <root>"
    # (Debian: <root@HOST>), To: MAILADDR. MAILCMD goes into the popen string
    # as it is, so a build or wrapper that adds an envelope sender passes it
    # glued: "-t -fraid@HOST".
    host = hostname()
    body = ("This is an automatically generated mail message from mdadm\n"
            "running on %s\n\nA Fail event had been detected on md device /dev/md0.\n\n"
            "It could be related to component device /dev/sdb1.\n\n"
            "Faithfully yours, etc.\n\nP.S. The /proc/mdstat file currently contains the "
            "following:\n\nPersonalities : [raid1]\nmd0 : active raid1 sdb1[1](F) sda1[0]\n"
            "      1046528 blocks super 1.2 [2/1] [U_]\n\nunused devices: <none>\n" % host)
    stdin = ("From: mdadm monitoring <root@%s>\nTo: root\n"
             "Subject: Fail event on /dev/md0:%s\n\n" % (host, host)).encode() + body.encode()
    with CallerEnv() as env:
        for command in ("%s -t" % env.sendmail, "%s -t -fraid@%s" % (env.sendmail, host)):
            r = env.run(["sh", "-c", command], stdin, executable="/bin/sh")
            eq((r.rc, r.out, r.err), (0, b"", ""), "popen(%r)" % command)
        for data in delivered(env, USER, ["ops@example.com"], count=2):
            check_header(data, ["From: mdadm monitoring <app@example.com>", "To: root",
                                "Subject: Fail event on /dev/md0:" + host,
                                GENERATED_DATE, GENERATED_MSGID])
            eq(split_message(data)[1], crlf(body.encode()), "body")


@test
def sendmail_bv_root():
    with CallerEnv() as env:
        r = env.run([env.sendmail, "-bv", "root"])
        eq((r.rc, r.err), (0, ""), "sendmail -bv root: %r" % r)
        eq(r.out, b"root -> <ops@example.com> (account app, smtp, from <app@example.com>)\n")
        eq(env.smtp.connections(), [], "connections to the SMTP server")
        eq(env.token_peer.requests(), [], "token requests")


if __name__ == "__main__":
    raise SystemExit(run_all())
