"""Secrets (issue 7, item 6): no token, secret, assertion or refresh token
in the log, the -v trace, the dead letter, stdout, files left behind, the
argv or environment of tokenmail and of its children, or a core dump.

Each test starts its own token peer and SMTP or Graph peer (over TLS with a
throwaway CA) and stops them, and every tokenmail it spawns, by PID. The
credentials are every kind tokenmail takes: an inline client_secret, a
client_secret_file, a client_secret_command, a certificate (a signed JWT
client assertion) and a delegated refresh token. The strings searched for
("needles") are the client secret (as is and form-encoded), every access
token, refresh token and client assertion the token peer issued or saw
(whole, and their signatures alone), the XOAUTH2 blob, and lines of the
certificate's private key.

What the tests prove, and how:
* trace_log_dead_letter_*: a delivery with -v, then one refused by the
  server (dead letter), leave no needle on stderr, stdout, in the log or
  the dead letter, while -v did trace the session (positive control); the
  token cache is 0700/0600 and does hold the tokens, and no other file
  tokenmail wrote (dead letter, log, TMPDIR) holds a needle; the spool in
  TMPDIR is gone.
* token_refused_report_*: a token endpoint that refuses the credential;
  the report (with -v) names the AADSTS error but holds no needle.
* secret_command_child_*: the client_secret_command writes down its own
  argv, environment and open descriptors; it is run twice (the first token
  is refused by the SMTP server, so a fresh one is fetched while the first
  is in memory): argv is sh -c COMMAND, the environment exactly PATH and
  HOME (the caller's decoy variables do not reach it), descriptors only
  0 (/dev/null), 1 (the pipe) and 2, and no needle anywhere.
* mid_run_*: one tokenmail is caught while the token endpoint stalls its
  request (holding the credential), another while the SMTP/Graph peer
  stalls after AUTH (holding the access token). Each time, /proc/PID/cmdline
  and /proc/PID/environ of tokenmail and of every descendant hold no needle
  (tokenmail's argv and environment are exactly the caller's) and
  /proc/PID/limits says "Max core file size 0 0". As root the readable
  memory (/proc/PID/mem) is then searched: in the first the credential is
  found (the search works), in the second the client secret (inline_secret
  aside: its copy in the loaded config lives for the run, so at most one),
  its form encoding, the assertion, the private key's PEM text, every
  refresh token and the XOAUTH2 blob are gone, while the access token in
  use is found (positive control). Not as root, reading /proc/PID/mem must
  be refused. Absence in a normal build also depends on freed heap having
  been reused; a sanitizer build keeps freed memory in quarantine and so
  shows every copy that was freed without being wiped, tokenmail's or its
  libraries'.
* core_dumps_off_and_process_not_dumpable: tokenmail stalled holding a
  token, started with an unlimited core limit. As root it runs as nobody:
  /proc/PID/environ, mem and maps then belong to root though the process
  is nobody's (proc(5): the files of a process that is not dumpable; a
  control "sleep" of nobody's keeps them), and a process of nobody's may
  not read its environ or open its mem, nor ptrace it (it may for the
  control). Not as root the same is tried by this process. SIGABRT then
  leaves no core file where core_pattern puts it, though the control
  killed the same way in the same directory leaves one. Where tokenmail's
  hard core limit can be raised from outside (prlimit, needs
  CAP_SYS_RESOURCE) and fs.suid_dumpable is 0, SIGSEGV after raising it
  shows that non-dumpability alone stops the dump.

What cannot be proven here: that memory is wiped after the process has
exited (nothing is left to look at); that no copy sits in kernel socket
buffers, CPU registers or swap; that the inline client_secret is wiped at
exit (it is needed for the whole run); with core_pattern piping to a
program, where a core would have gone.
"""
import base64
import json
import os
import re
import resource
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
import urllib.parse

from tmtest import (TIMEOUT, TOKENMAIL, Result, Workspace, client_cert, close_env,
                    dead_letter_messages, eq, file_text, match, run_all, start_graph_peer,
                    start_smtp_peer, start_token_peer, stop_process, test, yaml_value)

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000005e1"
CERT_CLIENT = "6f1c1a7e-0000-4000-8000-0000000005e2"
PUBLIC = "6f1c1a7e-0000-4000-8000-0000000005e3"
SECRET = "Tm7Q~secrets-s3cr3t/with+odd=chars&%"
FIRST_RT = "0.AR8A-secrets-first-refresh-token-9f2c41"
USER = "app@example.com"
CREDS = ("inline_secret", "secret_file", "secret_command", "certificate", "refresh_token")
DECOY = {"TOKENMAIL_DECOY": "decoy-value-7f3e", "SSH_AUTH_SOCK": "/tmp/decoy-agent"}
MSG = (b"From: Cron Daemon <root@elsewhere.example>\nTo: bob@example.org\n"
       b"Bcc: hidden@example.net\nSubject: nightly\n\nall good\n")
WAIT_SECONDS = 30
NOBODY = 65534
SCAN_REGION_MAX = 1 << 30   # skip larger mappings (sanitizer shadow memory)


# ------------------------------------------------------------ set-up

class SEnv:
    """A workspace, a token peer, an SMTP or Graph peer and a config whose
    account app uses credential cred. smtp/graph: the peer's extra config;
    client: extra keys of the token peer's entry for the client in use
    (delay, secret, ...); command: the client_secret_command. Stops the
    peers (and spawned tokenmails) and removes the workspace at the end."""

    def __init__(self, cred, method="smtp", smtp=None, graph=None, client=None, command=None,
                 registered_cert=True):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.cred, self.method = cred, method
        self.token_peer = self.peer = None
        self.procs = []
        self.key = None
        try:
            self.tmpdir = os.path.join(self.dir, "tmp")
            os.mkdir(self.tmpdir, 0o700)
            self.cache_dir = os.path.join(self.dir, "cache")
            self.log_file = os.path.join(self.dir, "tokenmail.log")
            self.dead_letter = os.path.join(self.dir, "dead.letter")
            self.secret_file = self.ws.write("app.secret", SECRET + "\n")
            self.rt_file = self.ws.write("app.refresh", FIRST_RT + "\n")
            clients = {CLIENT: {"secret": SECRET, "tenant": TENANT},
                       PUBLIC: {"public": True, "tenant": TENANT, "refresh_tokens": [FIRST_RT]}}
            if cred == "certificate":
                self.cert, self.key = client_cert(self.ws, "app")
                other, _ = client_cert(self.ws, "other")
                clients[CERT_CLIENT] = {"certificate": self.cert if registered_cert else other,
                                        "tenant": TENANT}
            clients[self.client_id()].update(client or {})
            self.token_peer = start_token_peer(self.ws, {"clients": clients})
            if method == "smtp":
                config = {"users": [USER]}
                config.update(smtp or {})
                self.peer = start_smtp_peer(self.ws, config, token_peer=self.token_peer)
            else:
                config = {"mailboxes": [USER]}
                config.update(graph or {})
                self.peer = start_graph_peer(self.ws, config, token_peer=self.token_peer)
            self.command = command or "cat '%s'" % self.secret_file
            self.write_config()
        except BaseException:
            self.close()
            raise

    def client_id(self):
        return {"certificate": CERT_CLIENT, "refresh_token": PUBLIC}.get(self.cred, CLIENT)

    def write_config(self):
        a = {"from": USER, "method": self.method, "tenant": TENANT,
             "client_id": self.client_id(), "token_url": self.token_peer.url(TENANT)}
        if self.cred == "inline_secret":
            a["client_secret"] = SECRET
        elif self.cred == "secret_file":
            a["client_secret_file"] = self.secret_file
        elif self.cred == "secret_command":
            a["client_secret_command"] = self.command
        elif self.cred == "certificate":
            a.update(client_certificate=self.cert, client_key=self.key)
        else:
            a.update(grant="refresh_token", refresh_token_file=self.rt_file)
        delegated = self.cred == "refresh_token"
        if self.method == "smtp":
            a["scope"] = ("https://outlook.office.com/SMTP.Send offline_access" if delegated
                          else "https://outlook.office365.com/.default")
        else:
            a["scope"] = ("https://graph.microsoft.com/Mail.Send offline_access" if delegated
                          else "https://graph.microsoft.com/.default")
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(self.cache_dir),
                 "log: %s" % yaml_value(self.log_file),
                 "dead_letter: %s" % yaml_value(self.dead_letter),
                 "retry: {attempts: 1, max_seconds: 10}",
                 "timeout: 20",
                 "default_account: app",
                 "accounts:", "  app:", "    senders: [%s]" % USER]
        lines += ["    %s: %s" % (k, yaml_value(v)) for k, v in a.items()]
        if self.method == "smtp":
            lines.append("    smtp: {host: 127.0.0.1, port: %d, tls: starttls, auth: xoauth2, "
                         "user: %s}" % (self.peer.port, USER))
        else:
            lines.append("    graph: {url: %s}" % yaml_value(self.peer.url))
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def caller_env(self):
        e = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.dir, "TMPDIR": self.tmpdir}
        e.update(DECOY)
        return e

    def argv(self, args):
        return ["/usr/sbin/sendmail", "-C", self.ws.config] + list(args)

    def send(self, args, stdin=MSG):
        p = subprocess.run(self.argv(args), executable=TOKENMAIL, input=stdin,
                           env=self.caller_env(), stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=TIMEOUT)
        return Result(p.returncode, p.stdout, p.stderr)

    def spawn(self, args, stdin=MSG, cwd=None, preexec_fn=None, executable=TOKENMAIL):
        """tokenmail in the background, stdin written and closed; stopped at close()."""
        p = subprocess.Popen(self.argv(args), executable=executable, env=self.caller_env(),
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, cwd=cwd, preexec_fn=preexec_fn)
        self.procs.append(p)
        p.stdin.write(stdin)
        p.stdin.close()
        p.stdin = None
        return p

    def token_requests(self):
        return self.token_peer.requests(endpoint="token")

    def needles(self):
        """name -> bytes that must not show up where secrets must not be."""
        n = {"client secret": SECRET,
             "client secret, form-encoded": urllib.parse.quote(SECRET, safe=""),
             "first refresh token": FIRST_RT}
        for i, e in enumerate(self.token_requests()):
            if e.get("access_token"):
                token = e["access_token"]
                n["access token %d" % i] = token
                n["access token %d signature" % i] = token.rsplit(".", 1)[-1]
                n["XOAUTH2 blob %d" % i] = base64.b64encode(
                    ("user=%s\x01auth=Bearer %s\x01\x01" % (USER, token)).encode()).decode()
            if e.get("refresh_token"):
                n["refresh token %d" % i] = e["refresh_token"]
            assertion = (e.get("form") or {}).get("client_assertion")
            if assertion:
                n["client assertion %d" % i] = assertion
                n["client assertion %d signature" % i] = assertion.rsplit(".", 1)[-1]
        if self.key:
            with open(self.key) as f:
                body = [l for l in f.read().splitlines() if l and not l.startswith("-----")]
            for i in (2, len(body) // 2, len(body) - 3):
                n["private key line %d" % i] = body[i]
        return {k: v.encode() for k, v in n.items()}

    def access_tokens(self):
        return [e["access_token"].encode() for e in self.token_requests()
                if e.get("access_token")]

    def close(self):
        for p in self.procs:
            stop_process(p)
        close_env(self.ws, self.peer, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def leaks(data, needles):
    """The names of the needles found in data."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    return sorted(k for k, v in needles.items() if v in data)


def wait_for(what, predicate, seconds=WAIT_SECONDS, proc=None):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        if proc is not None and proc.poll() is not None:
            err = proc.stderr.read().decode("utf-8", "replace")
            raise AssertionError("tokenmail exited (%r) before %s: %s" % (proc.returncode,
                                                                       what, err))
        time.sleep(0.05)
    raise AssertionError("timed out waiting for %s" % what)


def stalled_after_auth(env):
    """True once the peer has the request that it stalls on (after AUTH)."""
    if env.method == "smtp":
        return any(l.startswith("MAIL FROM:") for l in env.peer.client_lines())
    return any(r.get("op") == "sendMail" for r in env.peer.requests())


STALL_SMTP = {"faults": [{"stage": "MAIL", "action": "stall"}], "stall_seconds": 60}
STALL_GRAPH = {"faults": [{"op": "sendMail", "action": "stall"}], "stall_seconds": 60}


# ------------------------------------------------------------ /proc

def descendants(pid):
    """pid and every process below it."""
    children = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % d) as f:
                stat_line = f.read()
        except OSError:
            continue
        ppid = int(stat_line.rpartition(")")[2].split()[1])
        children.setdefault(ppid, []).append(int(d))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def proc_read(pid, name):
    with open("/proc/%d/%s" % (pid, name), "rb") as f:
        return f.read()


def core_limit(pid):
    for line in proc_read(pid, "limits").decode().splitlines():
        if line.startswith("Max core file size"):
            return line.split()[4:6]
    raise AssertionError("no core line in /proc/%d/limits" % pid)


def check_proc_entries(env, pid, needles, what, argv):
    """cmdline, environ and the core limit of pid and its descendants;
    tokenmail's own argv and environment are exactly what it was given."""
    for p in descendants(pid):
        try:
            cmdline, environ = proc_read(p, "cmdline"), proc_read(p, "environ")
            limit = core_limit(p)
        except FileNotFoundError:
            continue  # it ended meanwhile
        eq(leaks(cmdline, needles) + leaks(environ, needles), [],
           "%s: needles in /proc/%d cmdline/environ" % (what, p))
        eq(limit, ["0", "0"], "%s: core limit of /proc/%d" % (what, p))
        if p == pid:
            got = sorted(x.decode() for x in environ.split(b"\0") if x)
            eq(got, sorted("%s=%s" % kv for kv in env.caller_env().items()),
               "%s: tokenmail's environment is the caller's" % what)
            eq(cmdline.split(b"\0")[:-1], [a.encode() for a in argv], "%s: argv" % what)


def sanitizer_build():
    """True when TOKENMAIL is built with ASan: its quarantine never reuses
    freed memory, so what libcurl, GnuTLS and libyaml freed without wiping
    stays visible; the after-use scan is meaningful in the plain build,
    which CI runs first, and only there."""
    r = subprocess.run(["ldd", TOKENMAIL], capture_output=True, timeout=30)
    return b"libasan" in r.stdout


SANITIZED = sanitizer_build()


def scan_memory(pid, needles):
    """name -> copies found in the readable mappings of pid (root only)."""
    found = {}
    with open("/proc/%d/maps" % pid) as f:
        maps = f.read().splitlines()
    longest = max(len(v) for v in needles.values())
    with open("/proc/%d/mem" % pid, "rb", 0) as mem:
        for line in maps:
            parts = line.split()
            lo, hi = (int(x, 16) for x in parts[0].split("-"))
            if parts[1][0] != "r" or hi - lo > SCAN_REGION_MAX or parts[-1] == "[vvar]":
                continue
            pos, tail = lo, b""
            while pos < hi:
                n = min(16 << 20, hi - pos)
                try:
                    mem.seek(pos)
                    chunk = mem.read(n)
                except OSError:
                    break
                data = tail + chunk
                for name, v in needles.items():
                    start = 0
                    while True:
                        i = data.find(v, start)
                        if i < 0:
                            break
                        if i + len(v) > len(tail):   # not already counted
                            found[name] = found.get(name, 0) + 1
                        start = i + 1
                tail = data[-(longest - 1):] if longest > 1 else b""
                pos += n
    return found


def check_memory(pid, needles, what, present=(), absent=None, at_most_once=()):
    """As root: each name in present found, each in absent (default: all
    others) not found, each in at_most_once found at most once. Not as
    root: /proc/PID/mem cannot be read at all."""
    if os.geteuid() != 0:
        try:
            with open("/proc/%d/mem" % pid, "rb", 0) as mem:
                mem.read(1)
        except OSError:
            return
        raise AssertionError("%s: /proc/%d/mem readable by its own uid" % (what, pid))
    found = scan_memory(pid, needles)
    for name in present:
        assert found.get(name), "%s: %s not found in memory (the scan sees nothing?) %r" % (
            what, name, found)
    if absent is None:
        absent = [n for n in needles if n not in present and n not in at_most_once]
    eq(sorted(n for n in absent if found.get(n)), [],
       "%s: in memory after use (copies: %r; in a sanitizer build freed memory stays in "
       "quarantine, so copies freed without wiping, by tokenmail or by libcurl, GnuTLS or "
       "libyaml, show here)" % (what, found))
    for name in at_most_once:
        assert found.get(name, 0) <= 1, "%s: %d copies of %s" % (what, found[name], name)


# ------------------------------------------------------------ files

def check_files(env, needles, allowed):
    """The cache is private and holds the tokens; no other file tokenmail
    could have written holds a needle; TMPDIR (the spool's) is empty."""
    st = os.stat(env.cache_dir)
    eq(stat.S_IMODE(st.st_mode), 0o700, "cache directory mode")
    cached = b""
    for name in os.listdir(env.cache_dir):
        path = os.path.join(env.cache_dir, name)
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode), path
        eq(stat.S_IMODE(st.st_mode) & 0o077, 0, "%s mode %o" % (path, st.st_mode))
        eq(st.st_uid, os.geteuid(), "%s owner" % path)
        with open(path, "rb") as f:
            cached += f.read()
    assert any(t in cached for t in env.access_tokens()), "the cache holds no access token"
    eq(os.listdir(env.tmpdir), [], "files left in TMPDIR")
    peer_files = ("token_peer", "smtp_peer", "graph_peer", "pki")
    for root, dirs, files in os.walk(env.dir):
        rel = os.path.relpath(root, env.dir)
        if rel.split(os.sep)[0] in peer_files or rel.startswith("cache"):
            continue
        for name in files:
            path = os.path.join(root, name)
            if name.split(".")[0] in peer_files or path in allowed:
                continue
            with open(path, "rb") as f:
                eq(leaks(f.read(), needles), [], "needles in %s" % path)


def credential_files(env):
    files = {env.secret_file, env.rt_file}
    if env.key:
        files.add(env.key)
    if env.cred == "inline_secret":
        files.add(env.ws.config)
    return files


# ------------------------------------------------------------ tests

def trace_log_dead_letter(method, cred):
    refuse = ({"faults": [{"stage": "DOT", "reply": "554 5.6.0 Message rejected", "skip": 1}]}
              if method == "smtp" else
              {"faults": [{"op": "sendMail", "status": 400, "code": "ErrorInvalidRecipients",
                           "skip": 1}]})
    with SEnv(cred, method, smtp=refuse, graph=refuse) as env:
        r1 = env.send(["-v", "-t"])
        eq(r1.rc, 0, "delivery: %r" % r1)
        if method == "smtp":
            match(r"^tokenmail: C: AUTH XOAUTH2$", r1.err, "-v traces the session")
            match(r"^tokenmail: C: <redacted>$", r1.err, "-v redacts the token line")
        else:
            match(r"^tokenmail: > POST https://127\.0\.0\.1:\d+/v1\.0/(users/[^/ ]+|me)/sendMail ",
                  r1.err, "-v traces the request")
        match(r"^tokenmail: token: got a token for account app", r1.err, "token traced")
        r2 = env.send(["-v", "-t"])
        eq(r2.rc, 69, "refused delivery: %r" % r2)
        match(r"\(the message is kept in %s\)" % re.escape(env.dead_letter), r2.err)
        dead = dead_letter_messages(env.dead_letter)
        eq(len(dead), 1, "dead letter")
        eq(dead[0][1], MSG, "the message kept as given")
        log = file_text(env.log_file)
        eq(len(log.splitlines()), 2, "log lines: %r" % log)
        needles = env.needles()
        assert any(k.startswith("access token") for k in needles), needles.keys()
        for what, data in (("stderr of the -v delivery", r1.err),
                           ("stderr of the refused -v delivery", r2.err),
                           ("stdout", r1.out + r2.out), ("log", log)):
            eq(leaks(data, needles), [], "needles in the %s" % what)
        with open(env.dead_letter, "rb") as f:
            eq(leaks(f.read(), needles), [], "needles in the dead letter")
        check_files(env, needles, credential_files(env))


def register_trace_tests():
    for method in ("smtp", "graph"):
        for cred in CREDS:
            def fn(method=method, cred=cred):
                trace_log_dead_letter(method, cred)
            fn.__name__ = "trace_log_dead_letter_%s_%s" % (method, cred)
            fn.__module__ = __name__
            test(fn)


register_trace_tests()


def token_refused_report(cred):
    """The token endpoint refuses the credential tokenmail sends."""
    client = {"secret": "a-different-secret"} if cred in (
        "inline_secret", "secret_file", "secret_command") else {}
    if cred == "refresh_token":
        client = {"refresh_tokens": []}
    with SEnv(cred, client=client, registered_cert=False) as env:
        r = env.send(["-v", "-t"])
        eq(r.rc, 77, "refused credential: %r" % r)
        code = {"certificate": "invalid_client AADSTS700027",
                "refresh_token": "invalid_grant AADSTS70008"}.get(cred,
                                                               "invalid_client AADSTS7000215")
        match(r"^tokenmail: token endpoint refused account app: %s: " % code, r.err,
              "the AADSTS error is reported")
        reqs = env.token_requests()
        eq(len(reqs), 1, "token requests")
        sent = json.dumps(reqs[0]["form"])
        if cred == "refresh_token":
            assert FIRST_RT in sent, "the refresh token was sent"
        elif cred == "certificate":
            assert "client_assertion" in reqs[0]["form"], "an assertion was sent"
        else:
            assert SECRET in sent, "the secret was sent"
        needles = env.needles()
        for what, data in (("stderr", r.err), ("stdout", r.out),
                           ("log", file_text(env.log_file)),
                           ("dead letter", file_text(env.dead_letter))):
            eq(leaks(data, needles), [], "needles in the %s" % what)
        eq(len(dead_letter_messages(env.dead_letter)), 1, "message kept")


def register_refused_tests():
    for cred in CREDS:
        def fn(cred=cred):
            token_refused_report(cred)
        fn.__name__ = "token_refused_report_%s" % cred
        fn.__module__ = __name__
        test(fn)


register_refused_tests()


FD_DUMP = ("import os, sys; fds = {n: os.readlink('/proc/self/fd/%d' % n) for n in range(1024) "
           "if os.path.lexists('/proc/self/fd/%d' % n)}; "
           "open(sys.argv[1] + '/fds', 'w').write(repr(sorted(fds.items()))); "
           "sys.stdout.write(open(sys.argv[2]).read())")
# Writes its own argv and environment (sh's), then execs python, which
# inherits sh's descriptors, to list them and print the secret.
DUMP_COMMAND = ("d='{dir}/dumps'; n=$(ls \"$d\" | wc -l); o=\"$d/$n\"; mkdir \"$o\"; "
                "cat /proc/$$/cmdline > \"$o/cmdline\"; cat /proc/$$/environ > \"$o/environ\"; "
                "exec {python} -c \"{fd_dump}\" \"$o\" '{dir}/app.secret'")


@test
def secret_command_child_argv_environment_and_descriptors():
    reject_once = {"faults": [{"stage": "AUTH", "action": "reject", "times": 1}]}
    with SEnv("secret_command", smtp=reject_once) as env:
        dumps = os.path.join(env.dir, "dumps")
        os.mkdir(dumps)
        env.command = DUMP_COMMAND.format(dir=env.dir, python=sys.executable, fd_dump=FD_DUMP)
        env.write_config()
        r = env.send(["-t"])
        eq(r.rc, 0, "delivery after one refused token: %r" % r)
        eq(len(env.access_tokens()), 2, "a fresh token after the refused one")
        eq(sorted(os.listdir(dumps)), ["0", "1"], "the command ran twice")
        needles = env.needles()
        for n in ("0", "1"):
            d = os.path.join(dumps, n)
            with open(os.path.join(d, "cmdline"), "rb") as f:
                cmdline = f.read()
            with open(os.path.join(d, "environ"), "rb") as f:
                environ = f.read()
            with open(os.path.join(d, "fds"), "rb") as f:
                fds = f.read()
            eq(cmdline.split(b"\0"), [b"sh", b"-c", env.command.encode(), b""], "argv")
            eq(sorted(environ.split(b"\0")[:-1]),
               sorted([b"PATH=/usr/bin:/bin", ("HOME=%s" % env.dir).encode()]),
               "the command's environment")
            links = dict(eval(fds))  # the repr of a list of (int, str) pairs
            eq(sorted(links), [0, 1, 2], "descriptors: %r" % links)
            eq(links[0], "/dev/null", "stdin")
            match(r"^pipe:", links[1], "stdout")
            for what, data in (("argv", cmdline), ("environment", environ), ("fds", fds)):
                eq(leaks(data, needles), [], "needles in the command's %s (run %s)" % (what, n))
                for value in DECOY.values():
                    assert value.encode() not in data, "decoy %s in the command's %s" % (
                        value, what)
        eq(leaks(r.err, needles) + leaks(file_text(env.log_file), needles), [],
           "needles on stderr or in the log")


def mid_run(method, cred):
    """Catch one tokenmail stalled in its token request, then another
    stalled after AUTH (the token peer stalls its first request only)."""
    with SEnv(cred, method, smtp=STALL_SMTP, graph=STALL_GRAPH,
              client={"script": ["stall"]}) as env:
        cwd = tempfile.mkdtemp(dir=env.dir)
        argv = env.argv(["-t", "-i"])
        p = env.spawn(["-t", "-i"], cwd=cwd)
        wait_for("the token request", lambda: env.token_requests(), proc=p)
        eq(env.token_requests()[0]["answer"], "stall")
        needles = env.needles()
        check_proc_entries(env, p.pid, needles, "during the token request", argv)
        used = {"inline_secret": ["client secret"],
                "secret_file": ["client secret", "client secret, form-encoded"],
                "secret_command": ["client secret", "client secret, form-encoded"],
                "certificate": ["client assertion 0"],
                "refresh_token": ["first refresh token"]}[cred]
        if os.geteuid() == 0:
            found = scan_memory(p.pid, {k: needles[k] for k in used})
            assert found, "during the token request: %s not in memory: the scan sees " \
                "nothing?" % " or ".join(used)
        else:
            check_memory(p.pid, needles, "during the token request")
        p.kill()
        p.wait(timeout=10)

        p = env.spawn(["-t", "-i"], cwd=cwd)
        wait_for("the stall after AUTH", lambda: stalled_after_auth(env), proc=p)
        time.sleep(0.3)
        needles = env.needles()
        check_proc_entries(env, p.pid, needles, "stalled after AUTH", argv)
        once = ["client secret"] if cred == "inline_secret" else []
        absent = [n for n in needles if not n.startswith("access token") and n not in once]
        check_memory(p.pid, needles, "stalled after AUTH", present=["access token 1"],
                     absent=[] if SANITIZED else absent, at_most_once=[] if SANITIZED else once)
        eq(p.poll(), None, "still stalled")
        p.kill()
        p.wait(timeout=10)
        eq(os.listdir(cwd), [], "files in the working directory")


def register_mid_run_tests():
    for method, cred in [("smtp", c) for c in CREDS] + [("graph", "secret_file"),
                                                         ("graph", "refresh_token")]:
        def fn(method=method, cred=cred):
            mid_run(method, cred)
        fn.__name__ = "mid_run_%s_%s" % (method, cred)
        fn.__module__ = __name__
        test(fn)


register_mid_run_tests()


# ------------------------------------------------------------ core dumps

def core_target(cwd):
    """Where a core file of a process in cwd lands: (directory, pattern), or
    None when core_pattern pipes cores to a program."""
    with open("/proc/sys/kernel/core_pattern") as f:
        pattern = f.read().strip()
    if pattern.startswith("|"):
        return None
    d = os.path.dirname(pattern) if pattern.startswith("/") else cwd
    return d, pattern


def new_cores(before, directory):
    return sorted(set(os.listdir(directory)) - before)


def unlimited_core():
    resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))


def as_nobody():
    unlimited_core()
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)


PROBE = r"""
import ctypes, json, os, sys
pid = int(sys.argv[1])
out = {}
for name in ("environ", "mem"):
    try:
        with open("/proc/%d/%s" % (pid, name), "rb", 0) as f:
            if name == "environ":
                f.read()
        out[name] = "ok"
    except OSError as e:
        out[name] = e.strerror
libc = ctypes.CDLL(None, use_errno=True)
libc.ptrace.argtypes = [ctypes.c_long, ctypes.c_long, ctypes.c_void_p, ctypes.c_void_p]
if libc.ptrace(16, pid, None, None) == 0:
    os.waitpid(pid, 0x40000000)
    libc.ptrace(17, pid, None, None)
    out["ptrace"] = "ok"
else:
    out["ptrace"] = os.strerror(ctypes.get_errno())
print(json.dumps(out))
"""


def probe(pid, root):
    """What a process of the target's uid may do to pid: read environ, open
    mem, ptrace attach. As root the probe runs as nobody."""
    p = subprocess.run([sys.executable, "-c", PROBE, str(pid)], stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=30,
                       preexec_fn=as_nobody if root else None)
    eq(p.returncode, 0, "probe: %r" % p.stderr)
    return json.loads(p.stdout)


def kill_and_check(proc, sig, target, what):
    before = set(os.listdir(target[0])) if target else set()
    proc.send_signal(sig)
    rc = proc.wait(timeout=30)
    err = proc.stderr.read().decode("utf-8", "replace")
    if sig == signal.SIGSEGV and rc == 1 and "AddressSanitizer" in err:
        pass  # a sanitizer build reports the signal and exits 1
    else:
        eq(rc, -sig, "%s: killed by signal %d: %s" % (what, sig, err[-500:]))
    if target:
        eq(new_cores(before, target[0]), [], "%s: core files in %s" % (what, target[0]))


@test
def core_dumps_off_and_process_not_dumpable():
    root = os.geteuid() == 0
    with SEnv("secret_file", smtp=STALL_SMTP) as env:
        cwd = os.path.join(env.dir, "cwd")
        os.mkdir(cwd, 0o700)
        if root:
            for d, dirs, files in os.walk(env.dir):
                for name in [d] + [os.path.join(d, x) for x in dirs + files]:
                    os.lchown(name, NOBODY, NOBODY)
        pre = as_nobody if root else unlimited_core
        target = core_target(cwd)
        if target is None:
            print("# core_pattern pipes cores to a program: no core file to look for; "
                  "the proof rests on the core limit and non-dumpability")

        # Control: an ordinary process of the same user, same limits, same cwd.
        control = subprocess.Popen(["sleep", "60"], cwd=cwd, preexec_fn=pre)
        env.procs.append(control)
        time.sleep(0.2)

        # The build directory may sit where nobody cannot reach (a clone
        # in /root): nobody runs a copy of the binary from the workspace.
        binary = os.path.join(env.dir, "tokenmail-copy")
        shutil.copy2(TOKENMAIL, binary)
        os.chmod(binary, 0o755)
        if root:
            os.chmod(env.dir, 0o755)
        p = env.spawn(["-t", "-i"], cwd=cwd, preexec_fn=pre, executable=binary)
        wait_for("the stall after AUTH", lambda: stalled_after_auth(env), proc=p)
        eq(core_limit(p.pid), ["0", "0"], "tokenmail's core limit")
        eq(core_limit(control.pid), ["unlimited", "unlimited"], "the control's core limit")
        uid = NOBODY if root else os.geteuid()
        status = proc_read(p.pid, "status").decode()
        match(r"(?m)^Uid:\t%d\t" % uid, status, "tokenmail's uid")
        if root:
            # proc(5): the files (not the world-readable directory) of a
            # process that is not dumpable belong to root.
            for name in ("environ", "mem", "maps"):
                eq(os.stat("/proc/%d/%s" % (control.pid, name)).st_uid, NOBODY,
                   "the control's /proc/PID/%s owner" % name)
                eq(os.stat("/proc/%d/%s" % (p.pid, name)).st_uid, 0,
                   "owner of /proc/PID/%s of tokenmail (not dumpable)" % name)
        seen = probe(p.pid, root)
        ctl = probe(control.pid, root)
        eq((ctl["environ"], ctl["mem"]), ("ok", "ok"), "the control is readable: %r" % ctl)
        assert seen["environ"] != "ok" and seen["mem"] != "ok", \
            "tokenmail's environ/mem readable by its own uid: %r" % seen
        if ctl["ptrace"] == "ok":
            assert seen["ptrace"] != "ok", "ptrace attach to tokenmail by its own uid: %r" % seen

        if target:
            before = set(os.listdir(target[0]))
            control.send_signal(signal.SIGABRT)
            eq(control.wait(timeout=30), -signal.SIGABRT, "control killed")
            cores = new_cores(before, target[0])
            assert cores, "the control left no core in %s (pattern %r): nothing is proven" % (
                target[0], target[1])
            for name in cores:
                os.unlink(os.path.join(target[0], name))
        kill_and_check(p, signal.SIGABRT, target, "SIGABRT while holding a token")

        if not root:
            return
        with open("/proc/sys/fs/suid_dumpable") as f:
            suid_dumpable = f.read().strip()
        p = env.spawn(["-t", "-i"], cwd=cwd, preexec_fn=pre, executable=binary)
        wait_for("the second stall", lambda: sum(
            1 for l in env.peer.client_lines() if l.startswith("MAIL FROM:")) >= 2, proc=p)
        try:
            resource.prlimit(p.pid, resource.RLIMIT_CORE,
                             (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except PermissionError:
            # Raising a hard limit needs CAP_SYS_RESOURCE (containers drop it).
            print("# cannot raise tokenmail's hard core limit from outside (no "
                  "CAP_SYS_RESOURCE): non-dumpability alone is shown by /proc/PID's "
                  "owners and the refused probe above, not by a kill")
            kill_and_check(p, signal.SIGSEGV, target, "SIGSEGV while holding a token")
            return
        eq(core_limit(p.pid), ["unlimited", "unlimited"], "core limit raised from outside")
        if suid_dumpable == "0":
            kill_and_check(p, signal.SIGSEGV, target, "SIGSEGV, core limit raised")
        else:
            print("# fs.suid_dumpable is %s: a process that is not dumpable may still dump "
                  "(root-owned); the raised-limit check is left out" % suid_dumpable)
            kill_and_check(p, signal.SIGSEGV, None, "SIGSEGV")


if __name__ == "__main__":
    raise SystemExit(run_all())
