"""tmtest: a small harness for tokenmail's integration tests.

Each test is a function decorated with @test; run() executes them in order
and prints TAP (one "ok"/"not ok" line per test), which automake's TAP
driver counts. A test runs the built binary exactly as a caller would
(argv, argv[0], stdin bytes, environment) and asserts the exit code, the
stdout bytes and the stderr text.
"""
import os
import re
import shutil
import subprocess
import sys
import tempfile
import traceback

TOKENMAIL = os.environ.get("TOKENMAIL") or os.path.abspath("tokenmail")
SRCDIR = os.environ.get("TM_SRCDIR") or os.path.abspath(
    os.path.join(os.path.dirname(__file__), "..", ".."))
TIMEOUT = 60

_tests = []


def test(fn):
    _tests.append(fn)
    return fn


DEFAULT_CONFIG = """\
cache_dir: {dir}/cache
log: stderr
dead_letter: {dir}/dead.letter
aliases:
  root: ops@example.com
  postmaster: root
  alice: alice@example.com
default_account: app
accounts:
  app:
    senders: [app@example.com, "*@alerts.example.com"]
    from: app@example.com
    method: smtp
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
    client_secret_file: {dir}/app.secret
    smtp: {{host: smtp.office365.com, port: 587}}
  web:
    senders: [web@example.com, bounce@example.com]
    from: web@example.com
    method: graph
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000002
    client_secret_file: {dir}/app.secret
"""


class Result:
    def __init__(self, rc, out, err):
        self.rc = rc
        self.out = out
        self.err = err.decode("utf-8", "replace")

    def __repr__(self):
        return "rc=%r stdout=%r stderr=%r" % (self.rc, self.out[:400], self.err)


class Workspace:
    """A private directory with a config (0600) and a secret file (0600)."""

    def __init__(self, config=DEFAULT_CONFIG, secret_mode=0o600, config_mode=0o600):
        self.dir = tempfile.mkdtemp(prefix="tm-test-")
        self.config = os.path.join(self.dir, "config.yaml")
        self.write("app.secret", "s3cret\n", secret_mode)
        self.write("config.yaml", config.format(dir=self.dir), config_mode)

    def write(self, name, text, mode=0o600):
        path = os.path.join(self.dir, name)
        with open(path, "w") as f:
            f.write(text)
        os.chmod(path, mode)
        return path

    def run(self, args, stdin=b"", argv0="sendmail", config=True, env=None):
        argv = [argv0] + (["-C", self.config] if config else []) + list(args)
        return run(argv, stdin, env=env, home=self.dir)

    def close(self):
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def run(argv, stdin=b"", env=None, home=None):
    e = {"PATH": "/usr/bin:/bin", "LANG": "C"}
    if home:
        e["HOME"] = home
    if env:
        e.update(env)
    p = subprocess.run(argv, executable=TOKENMAIL, input=stdin, env=e,
                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                       timeout=TIMEOUT)
    return Result(p.returncode, p.stdout, p.stderr)


class DryRun:
    """The parsed --dry-run report (format in src/dryrun.h)."""

    def __init__(self, out):
        head, sep, self.message = out.partition(b"message:\n")
        assert sep, "no 'message:' line in %r" % out[:300]
        lines = head.decode().splitlines()
        assert lines[0] == "tokenmail: dry run, nothing sent", lines
        self.fields = {}
        self.rcpts = []
        for line in lines[1:]:
            key, _, value = line.partition(": ")
            if key == "rcpt to":
                self.rcpts.append(value)
            else:
                self.fields[key] = value
        self.account = self.fields["account"].split(" ")[0]
        self.method = self.fields["method"]
        self.mail_from = self.fields["mail from"]
        assert int(self.fields["size"]) == len(self.message), \
            "size %s != %d" % (self.fields["size"], len(self.message))
        self.header, _, self.body = self.message.partition(b"\r\n\r\n")
        self.header_lines = self.header.split(b"\r\n")

    def header_values(self, name):
        """Unfolded values of every field called name (case-insensitive)."""
        values, current = [], None
        for line in self.header_lines:
            if line[:1] in (b" ", b"\t") and current is not None:
                values[-1] += line
                continue
            key, _, value = line.partition(b":")
            current = key.strip().lower() == name.lower().encode()
            if current:
                values.append(value.strip())
            else:
                current = None
        return [v.decode("utf-8", "replace") for v in values]

    def header_value(self, name):
        values = self.header_values(name)
        assert len(values) == 1, "%s: %r" % (name, values)
        return values[0]


def crlf(data):
    """LF or CRLF line ends -> CRLF, as tokenmail transmits."""
    return re.sub(rb"\r?\n", b"\r\n", data)


DATE_RE = r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{1,2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d{4} \d\d:\d\d:\d\d [+-]\d{4}$"
MSGID_RE = r"^<[0-9a-f]{32}@[A-Za-z0-9.-]+>$"


def eq(got, want, what=""):
    assert got == want, "%s\n  got:  %r\n  want: %r" % (what, got, want)


def match(pattern, text, what=""):
    assert re.search(pattern, text, re.M), "%s\n  %r !~ %r" % (what, text, pattern)


def run_all():
    failed = 0
    for i, fn in enumerate(_tests, 1):
        name = fn.__name__
        try:
            fn()
            print("ok %d - %s" % (i, name))
        except Exception:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        sys.stdout.flush()
    print("1..%d" % len(_tests))
    return 1 if failed else 0
