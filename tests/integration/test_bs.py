"""sendmail -bs: SMTP on stdin/stdout (SPEC 1), as Symfony Mailer and
Laravel use it by default.

The built binary is run with -bs and its stdin/stdout joined to one end of
a socket pair; a real SMTP client talks through the other end: Python's
smtplib, and PHP's Symfony Mailer (Debian's php-symfony-mailer, whose
SendmailTransport runs "/usr/sbin/sendmail -bs" by default). Delivery goes
through the local token and SMTP peers (tests/peers). Each test checks the
replies the client got, what the SMTP peer received, the exit code and
stderr of tokenmail, the log and the dead letter.
"""
import os
import smtplib
import socket
import subprocess
import re
import time

from tmtest import (TOKENMAIL, crlf, eq, match, run_all, stop_process, test)
from test_smtp import Env, header_values, split_message

PHP = "/usr/bin/php"
SYMFONY_AUTOLOAD = "/usr/share/php/Symfony/Component/Mailer/autoload.php"


class Session:
    """tokenmail -bs with an smtplib client on the other end of a socket pair."""

    def __init__(self, env, args=()):
        self.env = env
        mine, theirs = socket.socketpair()
        self.proc = subprocess.Popen(
            [TOKENMAIL, "-bs", "-C", env.ws.config] + list(args),
            stdin=theirs, stdout=theirs, stderr=subprocess.PIPE)
        theirs.close()
        mine.settimeout(40)
        self.sock = mine
        self.client = smtplib.SMTP()
        self.client.sock = mine
        self.greeting = self.client.getreply()

    def finish(self, timeout=40):
        """Wait for the process: (exit code, stderr text)."""
        try:
            err = self.proc.stderr.read()
            rc = self.proc.wait(timeout)
        finally:
            stop_process(self.proc)
            self.sock.close()
        return rc, err.decode("utf-8", "replace")

    def raw(self, data, replies):
        """Write data at once and read `replies` complete replies back."""
        self.sock.sendall(data)
        return [self.client.getreply() for _ in range(replies)]


def arrived(env):
    return [(m["mail_from"], [r["addr"] if isinstance(r, dict) else r for r in m["rcpts"]],
             env.smtp.data(m)) for m in env.smtp.messages()]


MSG1 = (b"From: App <app@example.com>\r\nTo: ops@example.com\r\nSubject: one\r\n"
        b"Date: Mon, 23 Nov 2026 03:00:00 +0000\r\nMessage-ID: <one@example.com>\r\n"
        b"\r\nfirst message\r\n.leading dot\r\n")
MSG2 = (b"From: app@example.com\r\nTo: root\r\nBcc: hidden@example.net\r\n"
        b"Subject: two\r\n\r\nsecond message\r\n")


@test
def two_messages_in_one_session():
    with Env(top="aliases: {root: ops@example.com}") as env:
        s = Session(env)
        eq(s.greeting[0], 220, repr(s.greeting))
        match(r"ESMTP tokenmail$", s.greeting[1].decode())
        code, text = s.client.ehlo("client.test")
        eq(code, 250)
        for ext in (b"PIPELINING", b"8BITMIME", b"ENHANCEDSTATUSCODES", b"SIZE 209715200"):
            assert ext in text.split(b"\n"), text
        eq(s.client.sendmail("app@example.com", ["ops@example.com"], MSG1), {})
        eq(s.client.sendmail("app@example.com", ["root", "hidden@example.net"], MSG2), {})
        eq(s.client.quit()[0], 221)
        rc, err = s.finish()
        eq(rc, 0, err)
        eq(err, "")
        got = arrived(env)
        eq(len(got), 2, repr(got))
        eq(got[0][:2], ("app@example.com", ["ops@example.com"]))
        # smtplib stuffed the leading dot; tokenmail removed it and the peer saw it stuffed once.
        eq(got[0][2], MSG1)
        eq(got[1][:2], ("app@example.com", ["ops@example.com", "hidden@example.net"]))
        head, body = split_message(got[1][2])
        eq(header_values(got[1][2], "Bcc"), [])
        eq(header_values(got[1][2], "To"), ["root"])
        eq(body, b"second message\r\n")
        match(r"(?m)^Date: ", head.decode())
        lines = [line for line in env.log_text().splitlines() if line.strip()]
        eq(len(lines), 2, repr(lines))
        for line in lines:
            match(r" result=sent ", line)
        eq(env.dead(), [])
        eq(len(env.token_requests()), 1)


@test
def replies_arrive_for_pipelined_commands():
    with Env() as env:
        s = Session(env)
        eq(s.client.ehlo("client.test")[0], 250)
        replies = s.raw(b"MAIL FROM:<app@example.com> SIZE=120 BODY=8BITMIME\r\n"
                        b"RCPT TO:<a@example.com>\r\nRCPT TO:<b@example.com>\r\nDATA\r\n", 4)
        eq([r[0] for r in replies], [250, 250, 250, 354], repr(replies))
        replies = s.raw(b"Subject: p\r\n\r\nbody\r\n.\r\nNOOP\r\nRSET\r\nVRFY root\r\n"
                        b"STARTTLS\r\nFROB\r\n" + b"NOOP " + b"x" * 3000 + b"\r\nQUIT\r\n", 8)
        eq([r[0] for r in replies], [250, 250, 250, 252, 502, 500, 500, 221], repr(replies))
        match(r"^2\.0\.0 Ok: delivered", replies[0][1].decode())
        eq(replies[5][1], b"5.5.2 Error: command not recognized")
        eq(replies[6][1], b"5.5.2 Error: line too long")
        rc, err = s.finish()
        eq((rc, err), (0, ""))
        got = arrived(env)
        eq([g[:2] for g in got], [("app@example.com", ["a@example.com", "b@example.com"])])
        eq(split_message(got[0][2])[1], b"body\r\n")


@test
def sequence_errors_and_oversize():
    with Env() as env:
        s = Session(env)
        replies = s.raw(b"HELO client.test\r\nRCPT TO:<a@example.com>\r\nDATA\r\n"
                        b"MAIL FROM:<app@example.com> SIZE=999999999999\r\n"
                        b"MAIL FROM:<app@example.com> FOO=1\r\nMAIL FROM:app@example.com\r\n"
                        b"MAIL FROM:<app@example.com>\r\nDATA\r\nMAIL TO:<x>\r\n"
                        b"RCPT TO:<>\r\nQUIT\r\n", 11)
        eq([r[0] for r in replies], [250, 503, 503, 552, 555, 250, 503, 554, 503, 501, 221],
           repr(replies))
        rc, err = s.finish()
        eq((rc, err), (0, ""))
        eq(arrived(env), [])


@test
def a_refused_recipient_is_refused_at_rcpt():
    with Env() as env:
        s = Session(env)
        s.client.ehlo("client.test")
        refused = s.client.sendmail("app@example.com", ["nosuchuser", "ops@example.com"],
                                    b"Subject: r\r\n\r\nbody\r\n")
        eq(list(refused), ["nosuchuser"])
        code, text = refused["nosuchuser"]
        eq(code, 550)
        match(r"^5\.1\.1 tokenmail: .*nosuchuser", text.decode())
        s.client.quit()
        rc, err = s.finish()
        eq((rc, err), (0, ""))
        eq([g[:2] for g in arrived(env)], [("app@example.com", ["ops@example.com"])])
        # Every recipient refused: smtplib raises and nothing is sent.
        s = Session(env)
        s.client.ehlo("client.test")
        try:
            s.client.sendmail("app@example.com", ["nosuchuser"], b"Subject: r\r\n\r\nx\r\n")
            raise AssertionError("all recipients refused, yet no exception")
        except smtplib.SMTPRecipientsRefused as e:
            eq(e.recipients["nosuchuser"][0], 550)
        s.client.quit()
        eq(s.finish(), (0, ""))
        eq(len(arrived(env)), 1)


@test
def delivery_failures_are_replies_and_dead_letters():
    faults = [{"stage": "MAIL", "reply": "550 5.7.60 SMTP; Client does not have "
               "permissions to send as this sender", "times": 1},
              {"stage": "DATA", "reply": "451 4.3.0 try later", "times": 2}]
    with Env(smtp={"faults": faults}) as env:
        s = Session(env)
        s.client.ehlo("client.test")
        try:
            s.client.sendmail("app@example.com", ["ops@example.com"],
                              b"Subject: perm\r\n\r\nfirst\r\n")
            raise AssertionError("a 550 from the provider was not reported")
        except smtplib.SMTPDataError as e:
            eq(e.smtp_code, 550)
            lines = e.smtp_error.decode().split("\n")
            match(r"^5\.7\.60 tokenmail: ", lines[0])
            match(r"^5\.7\.60 hint: ", lines[1])
        try:
            s.client.sendmail("app@example.com", ["ops@example.com"],
                              b"Subject: temp\r\n\r\nsecond\r\n")
            raise AssertionError("a 451 from the provider was not reported")
        except smtplib.SMTPDataError as e:
            eq(e.smtp_code, 451)
            match(r"^4\.3\.0 tokenmail: ", e.smtp_error.decode())
        s.client.quit()
        rc, err = s.finish()
        eq(rc, 0, err)
        lines = err.splitlines()
        match(r"^tokenmail: 127\.0\.0\.1 refused MAIL FROM:<app@example\.com>$", lines[0])
        match(r"(?m)^  server: 550 5\.7\.60 ", err)
        match(r"(?m)^  server: 451 4\.3\.0 try later", err)
        eq(len([line for line in lines if "the message is kept in" in line]), 2, err)
        dead = env.dead()
        eq(len(dead), 2, repr(dead))
        assert b"first\r\n" in crlf(dead[0][1]) and b"second" in dead[1][1], repr(dead)
        eq(arrived(env), [])
        outcomes = re.findall(r" result=(\w+)", env.log_text())
        eq(outcomes, ["failed", "deferred"], env.log_text())


@test
def config_error_is_a_421_greeting():
    with Env() as env:
        env.ws.write("config.yaml", "accounts: [\n")
        s = Session(env)
        eq(s.greeting[0], 421, repr(s.greeting))
        match(r"^4\.3\.5 .* tokenmail: .*config\.yaml", s.greeting[1].decode())
        rc, err = s.finish()
        eq(rc, 78, err)
        match(r"^tokenmail: .*config\.yaml", err)


@test
def input_ending_inside_data_delivers_nothing():
    with Env() as env:
        s = Session(env)
        s.raw(b"EHLO c\r\n", 1)
        replies = s.raw(b"MAIL FROM:<app@example.com>\r\nRCPT TO:<ops@example.com>\r\n"
                        b"DATA\r\n", 3)
        eq([r[0] for r in replies], [250, 250, 354])
        s.sock.sendall(b"Subject: cut\r\n\r\nhalf a mess")
        s.sock.shutdown(socket.SHUT_WR)
        rc, err = s.finish()
        eq(rc, 74, err)
        match(r"^tokenmail: -bs: the input ended inside DATA: nothing was delivered", err)
        eq(arrived(env), [])


SYMFONY_SCRIPT = r"""<?php
require '%(autoload)s';
use Symfony\Component\Mailer\Mailer;
use Symfony\Component\Mailer\Transport\SendmailTransport;
use Symfony\Component\Mime\Email;

$transport = new SendmailTransport('%(tokenmail)s -bs -C %(config)s');
$mailer = new Mailer($transport);
foreach (['ops@example.com', 'nosuchuser@localhost'] as $i => $to) {
    $email = (new Email())->from('app@example.com')->to($to)
        ->subject("Symfony $i")->text("Hello from Symfony Mailer, message $i.\n.\nend\n");
    try {
        $mailer->send($email);
        echo "sent $i\n";
    } catch (\Exception $e) {
        echo "failed $i: " . get_class($e) . ": " . $e->getMessage() . "\n";
    }
}
"""


@test
def symfony_mailer_sendmail_transport():
    assert os.path.exists(SYMFONY_AUTOLOAD), "php-symfony-mailer is missing: run ./bootstrap"
    with Env() as env:
        script = env.ws.write("send.php", SYMFONY_SCRIPT % {
            "autoload": SYMFONY_AUTOLOAD, "tokenmail": TOKENMAIL, "config": env.ws.config})
        r = subprocess.run([PHP, "-d", "display_errors=stderr", script],
                           capture_output=True, timeout=60, stdin=subprocess.DEVNULL)
        out = r.stdout.decode()
        eq(r.returncode, 0, repr(r))
        lines = out.splitlines()
        eq(lines[0], "sent 0", out)
        match(r"^failed 1: .*TransportException: .*550.*5\.1\.1 tokenmail: .*nosuchuser", lines[1])
        got = arrived(env)
        eq([g[:2] for g in got], [("app@example.com", ["ops@example.com"])])
        head, body = split_message(got[0][2])
        eq(header_values(got[0][2], "Subject"), ["Symfony 0"])
        # Symfony ends DATA with "\r\n.\r\n" after a body that already
        # ends in CRLF, so the message gains an empty last line on any server.
        eq(body, b"Hello from Symfony Mailer, message 0.\r\n.\r\nend\r\n\r\n")
        # The refused recipient was refused at RCPT: nothing to keep.
        eq(env.dead(), [])


if __name__ == "__main__":
    raise SystemExit(run_all())
