"""--dry-run with the argv and input of each real caller (CALLERS.md).

Each case runs the built binary as that program runs /usr/sbin/sendmail and
checks the envelope, the transmitted header (Bcc gone; Date, Message-ID and
From present; From rewritten where the account may not send as it) and that
the body is byte-identical to the input apart from line endings.
"""
import pwd
import os
import socket

from tmtest import (DATE_RE, MSGID_RE, DryRun, Workspace, crlf, eq, match,
                    run_all, test)


def login_name():
    return pwd.getpwuid(os.getuid()).pw_name


def gecos_name():
    return pwd.getpwuid(os.getuid()).pw_gecos.split(",")[0]


def send(args, stdin, argv0="sendmail"):
    with Workspace() as ws:
        r = ws.run(["--dry-run"] + args, stdin, argv0=argv0)
    eq(r.rc, 0, "exit code: %r" % r)
    eq(r.err, "", "stderr")
    return DryRun(r.out)


def check_ids(d, date_given=None, msgid_given=None, bcc=()):
    date = d.header_value("Date")
    msgid = d.header_value("Message-ID")
    if date_given:
        eq(date, date_given, "Date kept")
    else:
        match(DATE_RE, date, "Date added")
    if msgid_given:
        eq(msgid, msgid_given, "Message-ID kept")
    else:
        match(MSGID_RE, msgid, "Message-ID added")
    eq(d.header_values("Bcc"), list(bcc), "Bcc")


@test
def php_mail_with_f_cc_bcc_mixed_line_ends():
    # PHP writes its own lines with CRLF and passes the body as given (LF).
    body = b"line1\nline2\n.\nend\r\n"
    stdin = (b"To: a@example.com, B <b@example.org>\r\nSubject: Subj\r\n"
             b"From: me@example.com\r\nCc: c@example.com\r\n"
             b"Bcc: hidden@example.net\r\n\r\n" + body)
    d = send(["-t", "-i", "-f", "bounce@example.com"], stdin, argv0="/usr/sbin/sendmail")
    eq(d.account, "web", "account chosen by -f")
    eq(d.mail_from, "<bounce@example.com>")
    eq(d.rcpts, ["<a@example.com>", "<b@example.org>", "<c@example.com>",
                 "<hidden@example.net>"])
    eq(d.header_value("From"), "bounce@example.com", "From rewritten to the sender")
    eq(d.header_value("To"), "a@example.com, B <b@example.org>")
    # web sends through Graph, which takes the recipients from To/Cc/Bcc (and
    # removes Bcc from the copies it delivers): the Bcc field stays.
    check_ids(d, bcc=["hidden@example.net"])
    eq(d.body, crlf(body), "body (lone dot kept with -i)")


@test
def php_mail_without_from():
    body = b"Hello from PHP\n"
    stdin = b"To: <alice@example.com>\r\nSubject: no from\r\n\r\n" + body
    d = send(["-t", "-i"], stdin)
    eq(d.account, "app", "default account")
    eq(d.mail_from, "<app@example.com>")
    eq(d.rcpts, ["<alice@example.com>"])
    name = gecos_name()
    eq(d.header_value("From"), (name + " <app@example.com>") if name else "app@example.com",
       "From added with the user's full name")
    check_ids(d)
    eq(d.body, crlf(body))


@test
def bsd_mailx_t_with_bcc():
    body = b"mailx body\nsecond line\n"
    stdin = (b"To: a@example.com\nCc: c@example.com\nBcc: bcc@example.com\n"
             b"Subject: mailx\nMIME-Version: 1.0\n"
             b"Content-Type: text/plain; charset=UTF-8\n"
             b"Content-Transfer-Encoding: 8bit\n\n" + body)
    d = send(["-i", "-t"], stdin)
    eq(d.rcpts, ["<a@example.com>", "<c@example.com>", "<bcc@example.com>"])
    eq(d.mail_from, "<app@example.com>")
    check_ids(d)
    eq(d.header_value("Content-Transfer-Encoding"), "8bit")
    eq(d.body, crlf(body))


@test
def s_nail_with_r():
    body = b"s-nail text\n"
    stdin = (b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n"
             b"From: Sender <s@alerts.example.com>\nTo: c@example.com\n"
             b"Subject: s-nail\nMessage-ID: <20261122.abc@alerts.example.com>\n\n" + body)
    d = send(["-i", "-F", "Sender", "-f", "s@alerts.example.com", "--",
              "c@example.com", "bcc@example.com"], stdin)
    eq(d.account, "app", "wildcard sender *@alerts.example.com")
    eq(d.mail_from, "<s@alerts.example.com>")
    eq(d.rcpts, ["<c@example.com>", "<bcc@example.com>"])
    eq(d.header_value("From"), "Sender <s@alerts.example.com>", "From kept")
    check_ids(d, "Sun, 22 Nov 2026 10:00:00 +0000", "<20261122.abc@alerts.example.com>")
    eq(d.body, crlf(body))


@test
def mutt_with_dsn_and_own_headers():
    body = b"mutt body\n.\n..\nlast\n"
    stdin = (b"Date: Sun, 22 Nov 2026 11:00:00 +0100\nFrom: root <root@vm>\n"
             b"To: a@example.com\nCc: cc@example.com\nSubject: mutt\n"
             b"Message-ID: <mutt.1@vm>\nMIME-Version: 1.0\n\n" + body)
    d = send(["-oem", "-oi", "-N", "failure,delay", "-R", "hdrs", "--",
              "a@example.com", "cc@example.com", "bcc@example.com"], stdin)
    eq(d.mail_from, "<app@example.com>")
    eq(d.rcpts, ["<a@example.com>", "<cc@example.com>", "<bcc@example.com>"])
    eq(d.header_value("From"), "root <app@example.com>", "From rewritten, name kept")
    check_ids(d, "Sun, 22 Nov 2026 11:00:00 +0100", "<mutt.1@vm>")
    eq(d.body, crlf(body), "dots untouched with -oi")


@test
def git_send_email_patch():
    body = (b"Signed-off-by: Dev <dev@example.com>\n---\n file.c | 1 +\n\n"
            b"diff --git a/file.c b/file.c\n--- a/file.c\n+++ b/file.c\n"
            b"@@ -1 +1,2 @@\n a\n+.\n-- \n2.39.5\n")
    stdin = (b"From: Dev <dev@example.com>\nTo: to1@example.com\n"
             b"Cc: cc1@example.com\nSubject: [PATCH 1/2] fix\n"
             b"Date: Sun, 22 Nov 2026 12:00:00 +0000\n"
             b"Message-Id: <20261122120000.1-1-dev@example.com>\n"
             b"X-Mailer: git-send-email 2.39.5\nMIME-Version: 1.0\n"
             b"Content-Transfer-Encoding: 8bit\n\n" + body)
    d = send(["-i", "to1@example.com", "cc1@example.com", "bcc1@example.com"], stdin)
    eq(d.rcpts, ["<to1@example.com>", "<cc1@example.com>", "<bcc1@example.com>"])
    eq(d.mail_from, "<app@example.com>")
    eq(d.header_value("From"), "Dev <app@example.com>")
    check_ids(d, "Sun, 22 Nov 2026 12:00:00 +0000", "<20261122120000.1-1-dev@example.com>")
    eq(d.body, crlf(body))


CRON_HEADER = (b"From: root (Cron Daemon)\nTo: root\n"
               b"Subject: Cron <root@vm> /usr/local/bin/job\n"
               b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
               b"Content-Transfer-Encoding: 8bit\n"
               b"X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n\n")


@test
def debian_cron_mailto_root():
    body = b"job output\ncrlf line\r\n\xc3\xa9t\xc3\xa9\n"
    d = send(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], CRON_HEADER + body,
             argv0="/usr/sbin/sendmail")
    eq(d.rcpts, ["<ops@example.com>"], "root through the aliases")
    eq(d.mail_from, "<app@example.com>")
    eq(d.header_value("From"), "Cron Daemon <app@example.com>",
       "From: root (Cron Daemon) rewritten, the comment kept as name")
    eq(d.header_value("To"), "root", "To: kept as written")
    check_ids(d)
    eq(d.body, crlf(body), "CR bytes and UTF-8 survive")


@test
def debian_cron_mailto_list():
    body = b"output\n"
    d = send(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "a@example.com,b@example.com"],
             CRON_HEADER.replace(b"To: root", b"To: a@example.com,b@example.com") + body,
             argv0="/usr/sbin/sendmail")
    eq(d.rcpts, ["<a@example.com>", "<b@example.com>"], "one argument, two recipients")
    eq(d.body, crlf(body))


@test
def cronie_t_f_user():
    body = b"cronie output\n"
    stdin = (b'From: "(Cron Daemon)" <alice>\nTo: alice\n'
             b"Subject: Cron <alice@vm> job\nAuto-Submitted: auto-generated\n"
             b"Precedence: bulk\n\n" + body)
    d = send(["-FCronDaemon", "-i", "-odi", "-oem", "-oi", "-t", "-f", "alice"], stdin,
             argv0="/usr/sbin/sendmail")
    eq(d.rcpts, ["<alice@example.com>"])
    eq(d.mail_from, "<app@example.com>")
    eq(d.header_value("From"), '"(Cron Daemon)" <app@example.com>')
    check_ids(d)
    eq(d.body, crlf(body))


@test
def sudo_lone_dot_ends_message():
    stdin = (b"To: root\nFrom: nobody\nAuto-Submitted: auto-generated\n"
             b"Subject: *** SECURITY information for vm ***\n\n"
             b"vm : Nov 22 22:00:00 : nobody : user NOT in sudoers ; COMMAND=/bin/ls\n"
             b".\nthis is after the dot\n")
    d = send(["-t"], stdin)
    eq(d.rcpts, ["<ops@example.com>"])
    eq(d.header_value("From"), "app@example.com", "bare From: nobody rewritten")
    check_ids(d)
    eq(d.body, b"vm : Nov 22 22:00:00 : nobody : user NOT in sudoers ; COMMAND=/bin/ls\r\n",
       "without -i the lone dot ends the message")


@test
def mdadm_glued_f_and_host_address():
    host = socket.gethostname()
    body = b"This is an automatically generated mail message from mdadm\n"
    stdin = (("From: mdadm monitoring <root@%s>\nTo: root@%s\n"
              "Subject: Fail event on /dev/md0:vm\n\n" % (host, host)).encode() + body)
    d = send(["-t", "-fraid@host.example"], stdin)
    eq(d.rcpts, ["<ops@example.com>"], "root@<this host> goes through the aliases")
    eq(d.mail_from, "<app@example.com>")
    eq(d.header_value("From"), "mdadm monitoring <app@example.com>")
    eq(d.body, crlf(body))


@test
def logwatch_one_to_per_address():
    body = b" ################### Logwatch 7.7 ####################\n"
    stdin = (b"To: a@example.com\nTo: b@example.com\nFrom: Logwatch\n"
             b"Subject: Logwatch for vm (Linux)\nMIME-Version: 1.0\n\n" + body)
    d = send(["-t"], stdin, argv0="/usr/sbin/sendmail")
    eq(d.rcpts, ["<a@example.com>", "<b@example.com>"], "every To: line")
    eq(d.header_value("From"), "app@example.com")
    eq(d.body, crlf(body))


@test
def unattended_upgrades():
    body = (b"Unattended upgrade result: All upgrades installed\n\n"
            b"Packages that were upgraded:\n libc6=3D2.36\n")
    stdin = (b'Content-Type: text/plain; charset="utf-8"\nMIME-Version: 1.0\n'
             b"Content-Transfer-Encoding: quoted-printable\n"
             b"Subject: unattended-upgrades result for vm: SUCCESS\n"
             b"From: root\nTo: root\nAuto-Submitted: auto-generated\n\n" + body)
    d = send(["-oi", "-t"], stdin, argv0="/usr/sbin/sendmail")
    eq(d.rcpts, ["<ops@example.com>"])
    eq(d.header_value("From"), "app@example.com")
    check_ids(d)
    eq(d.body, crlf(body))


@test
def header_and_argument_recipients_are_merged():
    body = b"x\n"
    stdin = b"To: a@example.com, postmaster\nCc: A@Example.com\n\n" + body
    d = send(["-t", "a@example.com", "b@example.com", "root"], stdin)
    eq(d.rcpts, ["<a@example.com>", "<b@example.com>", "<ops@example.com>"],
       "arguments first, header recipients added, duplicates and aliases folded")


if __name__ == "__main__":
    raise SystemExit(run_all())
