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
    # Only the file being run registers its tests: one test file may import
    # another's helpers (test_smtp.Env) without running its tests too.
    if fn.__module__ == "__main__":
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


class Skip(Exception):
    """Raised by a test that cannot run on this machine (say why)."""


def run_all():
    failed = 0
    for i, fn in enumerate(_tests, 1):
        name = fn.__name__
        try:
            fn()
            print("ok %d - %s" % (i, name))
        except Skip as why:
            print("ok %d - %s # SKIP %s" % (i, name, why))
        except Exception:
            failed += 1
            print("not ok %d - %s" % (i, name))
            for line in traceback.format_exc().splitlines():
                print("#   " + line)
        sys.stdout.flush()
    print("1..%d" % len(_tests))
    return 1 if failed else 0


# ---- Test peers (tests/peers/): a throwaway PKI and the fake token endpoint ----

import contextlib  # noqa: E402
import fcntl  # noqa: E402
import json  # noqa: E402
import select  # noqa: E402
import signal  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402

PEERS_DIR = os.path.join(SRCDIR, "tests", "peers")
PEER_PYTHON = sys.executable or "/usr/bin/python3"
PEER_START_SECONDS = 20


def pki(ws):
    """The workspace's test CA and certificates (tests/peers/tlsca.py), made
    once per workspace: dict name -> path ("ca", "server", "server-key", ...)."""
    if getattr(ws, "_pki", None) is None:
        sys.path.insert(0, PEERS_DIR)
        import tlsca
        ws._pki = tlsca.make_pki(os.path.join(ws.dir, "pki"))
    return ws._pki


def client_cert(ws, name="client", pkcs1=False):
    """An RSA client certificate and key for JWT assertions: (cert path, key path)."""
    sys.path.insert(0, PEERS_DIR)
    import tlsca
    return tlsca.client_cert(os.path.join(ws.dir, "pki"), name, pkcs1=pkcs1)


def stop_process(proc, grace=5):
    """Terminate proc by its PID, then kill it if it lingers."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace)
    for f in (proc.stdout, proc.stderr, proc.stdin):
        if f:
            f.close()


def read_line(f, timeout):
    """One line from a pipe within timeout seconds, or b"" (EOF or timeout)."""
    deadline = time.monotonic() + timeout
    line = b""
    while not line.endswith(b"\n"):
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([f], [], [], left)[0]:
            break
        c = os.read(f.fileno(), 1)
        if not c:
            break
        line += c
    return line


def yaml_value(v):
    """v as a YAML scalar for a config written by a test."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)  # a JSON string is a YAML double-quoted scalar


def close_env(ws, *peers):
    """Stop the peers (None ones skipped), then remove the workspace, each
    step whatever the one before did."""
    if not peers:
        ws.close()
        return
    try:
        if peers[0] is not None:
            peers[0].stop()
    finally:
        close_env(ws, *peers[1:])


class PeerProcess:
    """A peer script started as a child that prints "PORT n" first; stderr goes
    to NAME.err in the workspace. Stopped by PID (stop(), or the with block)."""

    def _launch(self, ws, name, script, args):
        self.err_path = os.path.join(ws.dir, name + ".err")
        with open(self.err_path, "wb") as err:
            self.proc = subprocess.Popen(
                [PEER_PYTHON, os.path.join(PEERS_DIR, script)] + list(args),
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err)
        first = read_line(self.proc.stdout, PEER_START_SECONDS)
        m = re.match(rb"^PORT (\d+)\n$", first)
        if not m:
            self.stop()
            with open(self.err_path, "rb") as f:
                raise RuntimeError("%s did not start: %r %r" % (script, first,
                                                              f.read()[-2000:]))
        self.port = int(m.group(1))

    def _jsonl(self, name):
        try:
            with open(os.path.join(self.dir, name)) as f:
                return [json.loads(line) for line in f.read().splitlines() if line]
        except FileNotFoundError:
            return []

    def stderr(self):
        with open(self.err_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        stop_process(self.proc)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def write_peer_config(ws, name, config):
    path = os.path.join(ws.dir, name + ".json")
    with open(path, "w") as f:
        json.dump(config, f)
    return path


class TokenPeer(PeerProcess):
    """A running tests/peers/token_peer.py: .port, .url(tenant), .requests(), .stop()."""

    def __init__(self, ws, config, name="token_peer"):
        config = dict(config)
        paths = pki(ws)
        config.setdefault("cert", paths["server"])
        config.setdefault("key", paths["server-key"])
        self.log_path = os.path.join(ws.dir, name + ".log")
        self.ca = paths["ca"]
        self.config_path = write_peer_config(ws, name, config)
        self._launch(ws, name, "token_peer.py", [self.config_path, self.log_path])

    def url(self, tenant, endpoint="token"):
        """https://127.0.0.1:PORT/TENANT/oauth2/v2.0/ENDPOINT"""
        return "https://127.0.0.1:%d/%s/oauth2/v2.0/%s" % (self.port, tenant, endpoint)

    def requests(self, **where):
        """The requests the peer logged, oldest first; where: field=value filters
        (e.g. endpoint="token", grant_type="refresh_token")."""
        out = []
        try:
            with open(self.log_path) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return out
        for line in lines:
            entry = json.loads(line)
            if all(entry.get(k) == v for k, v in where.items()):
                out.append(entry)
        return out



def start_token_peer(ws, config, name="token_peer"):
    """Start the fake token endpoint with config (see token_peer.py's docstring;
    cert and key default to the workspace's PKI). Stop it with .stop()."""
    return TokenPeer(ws, config, name)


def tokenmail_env(ws, env=None):
    e = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": ws.dir}
    if env:
        e.update(env)
    return e


def run_tokenmail(ws, args, env=None, timeout=TIMEOUT, stdin=b""):
    """tokenmail (argv[0] "tokenmail") with args; the Result also has .elapsed."""
    start = time.monotonic()
    p = subprocess.run(["tokenmail"] + list(args), executable=TOKENMAIL, input=stdin,
                       env=tokenmail_env(ws, env), stdout=subprocess.PIPE,
                       stderr=subprocess.PIPE, timeout=timeout)
    r = Result(p.returncode, p.stdout, p.stderr)
    r.elapsed = time.monotonic() - start
    return r


def spawn_tokenmail(ws, args, env=None):
    """tokenmail in the background (stdin empty, stdout and stderr piped)."""
    return subprocess.Popen(["tokenmail"] + list(args), executable=TOKENMAIL,
                            env=tokenmail_env(ws, env), stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def wait_all(procs, timeout=TIMEOUT):
    """Wait for every process (killing those past the deadline); their Results."""
    deadline = time.monotonic() + timeout
    results = []
    for p in procs:
        try:
            out, err = p.communicate(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            out, err = p.communicate()
        results.append(Result(p.returncode, out, err))
    return results


def https_get(url, cafile=None, timeout=10):
    """GET url without following redirects: (status, headers, body). An https
    URL is checked against cafile."""
    import ssl
    import urllib.error
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args, **kwargs):
            return None

    handlers = [NoRedirect()]
    if cafile:
        handlers.append(urllib.request.HTTPSHandler(
            context=ssl.create_default_context(cafile=cafile)))
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(url, timeout=timeout) as resp:
            return resp.status, resp.headers, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()


def free_port():
    """A loopback port nobody listens on (for "connection refused")."""
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port



# ---- The SMTP peer (tests/peers/smtp_peer.py) and the dead letter ----

class SmtpPeer(PeerProcess):
    """A running tests/peers/smtp_peer.py: .port, .messages(), .data(msg),
    .transcript(), .auth(), .auth_in_clear(), .stop(). config: see the peer's
    docstring; cert and key default to the workspace PKI's server pair, and
    with token_peer given its log supplies the valid tokens."""

    def __init__(self, ws, config, name="smtp_peer", token_peer=None):
        config = dict(config)
        paths = pki(ws)
        if config.get("mode", "starttls") != "plain":
            cert = config.pop("cert_name", "server")
            config.setdefault("cert", paths[cert])
            config.setdefault("key", paths[cert + "-key"])
        if token_peer is not None:
            config.setdefault("token_log", token_peer.log_path)
        self.dir = os.path.join(ws.dir, name)
        self.config_path = write_peer_config(ws, name, config)
        self._launch(ws, name, "smtp_peer.py", [self.config_path, self.dir])


    def messages(self):
        """Messages accepted with 250 after the final dot, oldest first."""
        return self._jsonl("messages.jsonl")

    def data(self, msg):
        """The bytes of an accepted message (dot-stuffing undone)."""
        with open(os.path.join(self.dir, msg["file"]), "rb") as f:
            return f.read()

    def transcript(self, conn=None, direction=None):
        return [e for e in self._jsonl("transcript.jsonl")
                if (conn is None or e["conn"] == conn)
                and (direction is None or e["dir"] == direction)]

    def client_lines(self, conn=None):
        return [e["line"] for e in self.transcript(conn, "C")]

    def connections(self):
        return sorted({e["conn"] for e in self.transcript()})

    def round_trips(self, conn):
        return max([e["turn"] for e in self.transcript(conn, "C")] or [0])

    def auth(self):
        """AUTH attempts, oldest first."""
        return self._jsonl("auth.jsonl")

    def auth_in_clear(self):
        """True if any AUTH command, AUTH data or token arrived before TLS."""
        return (any(not a["tls"] for a in self.auth()) or
                any(e.get("secret") or (not e["tls"] and e["line"].upper().startswith("AUTH"))
                    for e in self.transcript(direction="C")))



def start_smtp_peer(ws, config, name="smtp_peer", token_peer=None):
    """Start the fake SMTP server (see SmtpPeer). Stop it with .stop()."""
    return SmtpPeer(ws, config, name, token_peer)


def mboxrd_messages(data):
    """Split an mboxrd file (bytes) into [(from_line, message bytes)]: the
    "From " separators removed, ">From "-quoting undone one level, the empty
    line that ends each message dropped. Line ends are LF."""
    out = []
    cur = None
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    for line in lines:
        if line.startswith(b"From "):
            if cur is not None:
                out.append(cur)
            cur = [line, []]
            continue
        assert cur is not None, "mbox does not start with a From line: %r" % data[:80]
        if re.match(rb"^>+From ", line):
            line = line[1:]
        cur[1].append(line)
    if cur is not None:
        out.append(cur)
    result = []
    for sep, body in out:
        if body and body[-1] == b"":
            body = body[:-1]
        result.append((sep.decode("utf-8", "replace"), b"".join(l + b"\n" for l in body)))
    return result


def dead_letter_messages(path):
    """The messages of an mboxrd dead letter [(From line, bytes)], or []."""
    try:
        with open(path, "rb") as f:
            return mboxrd_messages(f.read())
    except FileNotFoundError:
        return []


def file_text(path):
    """A log file's text, "" when it does not exist (yet)."""
    try:
        with open(path, "rb") as f:
            return f.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return ""


def lf(data):
    """CRLF or LF line ends -> LF."""
    return data.replace(b"\r\n", b"\n")


# ---- The Graph peer (tests/peers/graph_peer.py) ----

class GraphPeer(PeerProcess):
    """A running tests/peers/graph_peer.py: .port, .url ("https://127.0.0.1:PORT/v1.0"),
    .requests(**where), .sent(), .sent_data(entry), .sent_items_data(entry),
    .drafts(), .draft_data(event), .file_data(name), .stderr(), .stop().
    config: see the peer's docstring; cert and key default to the workspace
    PKI's server pair (or "cert_name": "wronghost" | "untrusted" | "expired"),
    and with token_peer given its log supplies the valid tokens."""

    def __init__(self, ws, config, name="graph_peer", token_peer=None):
        config = dict(config)
        paths = pki(ws)
        cert = config.pop("cert_name", "server")
        config.setdefault("cert", paths[cert])
        config.setdefault("key", paths[cert + "-key"])
        if token_peer is not None:
            config.setdefault("token_log", token_peer.log_path)
        self.ca = paths["ca"]
        self.dir = os.path.join(ws.dir, name)
        self.config_path = write_peer_config(ws, name, config)
        self._launch(ws, name, "graph_peer.py", [self.config_path, self.dir])
        self.url = "https://127.0.0.1:%d/v1.0" % self.port


    def requests(self, **where):
        """Requests the peer logged, oldest first; where: field=value filters
        (e.g. op="sendMail", status=202)."""
        return [e for e in self._jsonl("requests.jsonl")
                if all(e.get(k) == v for k, v in where.items())]

    def sent(self):
        """Messages accepted for delivery (sendMail, or a draft's send), oldest first."""
        return self._jsonl("sent.jsonl")

    def drafts(self):
        """Draft events (created, attachment, upload_complete, deleted, sent), oldest first."""
        return self._jsonl("drafts.jsonl")

    def file_data(self, name):
        with open(os.path.join(self.dir, name), "rb") as f:
            return f.read()

    def sent_data(self, entry):
        """The delivered copy of a sent.jsonl entry (Bcc removed), bytes."""
        return self.file_data(entry["file"])

    def sent_items_data(self, entry):
        """The Sent Items copy of a sent.jsonl entry (Bcc kept), bytes."""
        return self.file_data(entry["sent_items_file"])

    def draft_data(self, event):
        """The MIME of a draft as posted, from its "created" event in drafts()."""
        return self.file_data(event["file"])



def start_graph_peer(ws, config, name="graph_peer", token_peer=None):
    """Start the fake Microsoft Graph endpoint (see GraphPeer). Stop it with .stop()."""
    return GraphPeer(ws, config, name, token_peer)


class RunnableSampler:
    """How many processes were runnable, on average, while it ran: the
    fourth field of /proc/loadavg ("3/109"), read every 50 ms in a thread."""

    def __init__(self):
        self.samples = []
        self.done = threading.Event()
        self.thread = threading.Thread(target=self.loop, daemon=True)
        self.thread.start()

    def loop(self):
        while True:
            try:
                with open("/proc/loadavg") as f:
                    self.samples.append(int(f.read().split()[3].split("/")[0]))
            except (OSError, ValueError, IndexError):
                pass
            if self.done.wait(0.05):
                return

    def stop(self):
        self.done.set()
        self.thread.join(timeout=5)

    def mean(self):
        return sum(self.samples) / len(self.samples) if self.samples else 1.0


def marked_processes(var, value):
    """PIDs whose environment holds var=value: the processes a test started
    with that mark, and their children (zombies have none)."""
    want = ("%s=%s" % (var, value)).encode()
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/environ" % name, "rb") as f:
                if want in f.read().split(b"\0"):
                    found.append(int(name))
        except OSError:
            continue
    return found


def stop_marked(var, value, grace):
    """PIDs still running with the mark var=value after up to grace seconds;
    those are then killed (by PID: the mark makes them the test's), so the
    caller can fail cleanly."""
    deadline = time.monotonic() + grace
    left = marked_processes(var, value)
    while left and time.monotonic() < deadline:
        time.sleep(0.05)
        left = marked_processes(var, value)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return left


LOAD_LOCK = os.path.join(tempfile.gettempdir(), "tokenmail-tests-%d.load.lock" % os.getuid())


@contextlib.contextmanager
def load_lock():
    """Mutual exclusion between the test files that load the machine with a
    burst (test_concurrency's 100 processes at once) and those that time a
    wait (test_faults' 2 s stalls). make check runs test files side by side,
    and next to a burst a local TLS handshake can take longer than a
    timed case's whole timeout."""
    fd = os.open(LOAD_LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def wait_timed(proc, stdin, timeout):
    """Feed stdin to a started process and wait for it, killing it after
    timeout seconds, with the load sampled meanwhile: a Result with
    .elapsed, .outlived (it was killed) and .runnable (processes runnable
    on the machine, on average)."""
    start = time.monotonic()
    sampler = RunnableSampler()
    outlived = False
    try:
        out, err = proc.communicate(stdin, timeout=timeout)
    except subprocess.TimeoutExpired:
        outlived = True
        proc.kill()
        out, err = proc.communicate()
    finally:
        sampler.stop()
    r = Result(proc.returncode, out, err)
    r.elapsed = time.monotonic() - start
    r.outlived = outlived
    r.runnable = sampler.mean()
    return r
