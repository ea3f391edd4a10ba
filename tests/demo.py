"""demo.py: real deliveries through tokenmail's local test peers.

Starts the OAuth token endpoint, the SMTP server and the Microsoft Graph
endpoint of tests/peers (TLS with a CA made on the spot), writes configs
that point at them, and pipes a message into tokenmail twice, exactly as
real callers do: a cron report over SMTP (AUTH XOAUTH2), and a PHP mail()
message through Graph sendMail. Shows what tokenmail printed, the token
requests and what each server received. Everything runs on 127.0.0.1 and
is stopped at the end.
Usage: /usr/bin/python3 tests/demo.py PATH-TO-TOKENMAIL
"""
import os
import sys

os.environ["TOKENMAIL"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

import test_graph  # noqa: E402  (needs TOKENMAIL set first)
import test_smtp  # noqa: E402

CRON_MESSAGE = (b"From: root (Cron Daemon)\nTo: root\n"
                b"Subject: Cron <root@host> /usr/local/bin/backup\n"
                b"Bcc: auditor@example.net\n\nbackup finished: 42 files, 0 errors\n")
CRON_ARGS = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]
PHP_MESSAGE = (b"To: customer@example.org\r\nSubject: Your order 1042\r\n"
               b"Bcc: sales@example.com\r\nContent-Type: text/plain; charset=UTF-8\r\n\r\n"
               b"Thank you for your order.\n")
PHP_ARGS = ["-t", "-i"]


def show_run(args, r):
    print("$ printf ... | sendmail %s" % " ".join(args))
    print("exit status %d%s" % (r.rc, "" if r.rc else " (delivered)"))
    if r.err:
        print("stderr:\n" + r.err)


def smtp_demo():
    print("== 1. A cron report, as Debian's cron sends it, over SMTP with XOAUTH2 ==")
    top = "aliases: {root: ops@example.com}"
    with test_smtp.Env(top=top, account={"user": "app@example.com"}) as env:
        r = env.send(CRON_ARGS, CRON_MESSAGE)
        show_run(CRON_ARGS, r)
        print("token endpoint requests: %d" % len(env.token_requests()))
        for m in env.smtp.messages():
            print("\nthe SMTP server (127.0.0.1:%d, %s) accepted:" % (
                env.smtp.port, "TLS" if m.get("tls") else "clear"))
            print("  MAIL FROM:<%s>" % m.get("mail_from"))
            for rcpt in m.get("rcpts", []):
                print("  RCPT TO:<%s>" % (rcpt["addr"] if isinstance(rcpt, dict) else rcpt))
            print("  AUTH XOAUTH2 as %s with the token the token endpoint issued" %
                  m.get("auth_user"))
            print(env.smtp.data(m).decode("utf-8", "replace").replace("\r\n", "\n"))
        print("log: " + env.log_text().strip())
        return r.rc


def graph_demo():
    print("\n== 2. A PHP mail() message (sendmail -t -i) through Microsoft Graph sendMail ==")
    with test_graph.Env() as env:
        r = env.send(PHP_ARGS, PHP_MESSAGE)
        show_run(PHP_ARGS, r)
        print("token endpoint requests: %d" % len(env.token_requests()))
        for e in env.requests():
            print("Graph request: %s %s -> HTTP %s" % (e.get("method"), e.get("path"),
                                                      e.get("status")))
        for entry in env.sent():
            print("\nthe Graph endpoint (127.0.0.1:%d) delivered to %s:" % (
                env.graph.port, ", ".join(entry.get("recipients", []))))
            print(env.graph.sent_data(entry).decode("utf-8", "replace").replace("\r\n", "\n"))
        print("log: " + env.log_text().strip())
        return r.rc


def main():
    return smtp_demo() or graph_demo()


if __name__ == "__main__":
    sys.exit(main())
