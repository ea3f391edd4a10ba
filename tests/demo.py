"""demo.py: a real delivery through tokenmail's local test peers.

Starts the OAuth token endpoint and the SMTP server of tests/peers (TLS with
a CA made on the spot), writes a config that points at them, pipes a
cron-style message into tokenmail exactly as Debian's cron does, and shows
what tokenmail printed, the token request and what the SMTP server received.
Everything runs on 127.0.0.1 and is stopped at the end.
Usage: /usr/bin/python3 tests/demo.py PATH-TO-TOKENMAIL
"""
import os
import sys

os.environ["TOKENMAIL"] = os.path.abspath(sys.argv[1])
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "integration"))

from test_smtp import Env  # noqa: E402  (needs TOKENMAIL set first)

MESSAGE = (b"From: root (Cron Daemon)\nTo: root\n"
           b"Subject: Cron <root@host> /usr/local/bin/backup\n"
           b"Bcc: auditor@example.net\n\nbackup finished: 42 files, 0 errors\n")
ARGS = ["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"]


def main():
    top = "aliases: {root: ops@example.com}"
    with Env(top=top, account={"user": "app@example.com"}) as env:
        print("$ printf ... | sendmail %s   (as Debian's cron runs it)" % " ".join(ARGS))
        r = env.send(ARGS, MESSAGE)
        print("exit status %d%s" % (r.rc, "" if r.rc else " (delivered)"))
        if r.err:
            print("stderr:\n" + r.err)
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


if __name__ == "__main__":
    sys.exit(main())
