"""tmbench: tokenmail against msmtp, one process per message, same peers.

Run by bench/run (which picks Debian's /usr/bin/python3 and checks msmtp).
Usage: tmbench.py [-n N] [--big-mb M] [--big-runs R] [--quick]
                  [--graph-n N] [--graph-mb M] [--graph-runs R]
                  [--no-graph | --graph-only] [--require-target] [--json FILE] [TOKENMAIL]

Everything runs on 127.0.0.1: tests/peers/token_peer.py (HTTPS token
endpoint), tests/peers/smtp_peer.py (STARTTLS, AUTH XOAUTH2, PIPELINING),
tests/peers/graph_peer.py (Microsoft Graph: sendMail, drafts, upload
sessions), a fresh throwaway CA, and an in-process TCP proxy (counting and
delaying). The SMTP part compares tokenmail with msmtp; the Graph part
(after it) measures tokenmail alone, as msmtp has no Graph delivery.
See bench/README.md for what each figure means.
"""
import argparse
import base64
import binascii
import email.parser
import email.policy
import email.utils
import hashlib
import json
import os
import random
import re
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRCDIR = os.path.dirname(HERE)
sys.path.insert(0, os.path.join(SRCDIR, "tests", "integration"))
os.environ.setdefault("TM_SRCDIR", SRCDIR)

import tmtest  # noqa: E402

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000c3"
SECRET = "Abc8Q~bench-s3cret"
SCOPE = "https://outlook.office365.com/.default"
USER = "app@example.com"
RCPT = {"tokenmail": "tm@example.net", "msmtp": "ms@example.net",
        "msmtp-cat": "mc@example.net"}
DELAY = 0.025
RUN_TIMEOUT = 300
TIME = "/usr/bin/time"
# Microsoft Graph part
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
GRAPH_RCPT = "tm-graph@example.net"
GRAPH_ATTACHMENT = "bench-attachment.bin"
GRAPH_SEED = 40
REQUEST_LIMIT = 4 * 1024 * 1024     # Graph's single request limit (4 MiB)
MB = 1000 * 1000                    # the target's MB (and --graph-mb's)
TARGET_FACTOR = 0.75                # target: peak RSS < 0.75 x size + 10 MB
TARGET_BASE = 10 * MB


class BenchError(Exception):
    pass


# ------------------------------------------------------------------ proxy

class Conn:
    """What the proxy saw on one connection."""

    def __init__(self):
        self.lock = threading.Lock()
        self.last_dir = None        # "C" or "S": who sent the last chunk seen
        self.turns = 0              # S->C followed by C->S switches
        self.c_bytes = 0
        self.s_bytes = 0
        self.plain = b""            # client bytes before TLS (up to STARTTLS)
        self.in_tls = False
        self.rec_buf = b""
        self.records = 0            # client->server TLS records
        self.app_records = 0        # of which application data (type 23)
        self.rec_bytes = 0          # their payload bytes
        self.bad = None
        self.done = threading.Event()

    def arrive(self, direction, data):
        with self.lock:
            if direction == "C" and self.last_dir == "S":
                self.turns += 1
            self.last_dir = direction
            if direction == "C":
                self.c_bytes += len(data)
                self._client(data)
            else:
                self.s_bytes += len(data)

    def _client(self, data):
        if not self.in_tls:
            self.plain += data
            # STARTTLS is the last command before the handshake (RFC 3207:
            # no pipelining past it); what follows its CRLF is TLS.
            up = self.plain.upper()
            i = up.find(b"STARTTLS\r\n")
            if i < 0 or (i > 0 and up[i - 1:i] != b"\n"):
                return
            rest = self.plain[i + len(b"STARTTLS\r\n"):]
            self.in_tls = True
            data = rest
        self.rec_buf += data
        buf = self.rec_buf
        pos = 0
        while len(buf) - pos >= 5:
            ctype = buf[pos]
            length = int.from_bytes(buf[pos + 3:pos + 5], "big")
            if ctype not in (20, 21, 22, 23) or buf[pos + 1] != 3:
                self.bad = "not a TLS record header at client byte %d" % pos
                self.rec_buf = b""
                return
            if len(buf) - pos < 5 + length:
                break
            self.records += 1
            self.rec_bytes += length
            if ctype == 23:
                self.app_records += 1
            pos += 5 + length
        self.rec_buf = buf[pos:]


class Proxy:
    """TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream; delay seconds added to
    every chunk in each direction (order kept, pipelining kept)."""

    def __init__(self, upstream, delay=0.0, quickack=False):
        self.upstream = upstream
        self.delay = delay
        self.quickack = quickack
        self.conns = []
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.stopping = False
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self):
        while not self.stopping:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            if self.stopping:
                c.close()
                return
            u = socket.create_connection(("127.0.0.1", self.upstream))
            for s in (c, u):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn = Conn()
            self.conns.append(conn)
            left = [2]
            for src, dst, d in ((c, u, "C"), (u, c, "S")):
                threading.Thread(target=self._pump, args=(conn, src, dst, d, left),
                                 daemon=True).start()

    def _pump(self, conn, src, dst, direction, left):
        import queue
        q = queue.Queue()

        def writer():
            while True:
                item = q.get()
                if item is None:
                    break
                due, data = item
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(data)
                except OSError:
                    break
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass

        w = None
        if self.delay:
            w = threading.Thread(target=writer, daemon=True)
            w.start()
        while True:
            try:
                data = src.recv(262144)
            except OSError:
                data = b""
            if not data:
                break
            if self.quickack:
                # ACK at once: the peer (Nagle on, one send per reply line)
                # then never waits out a 40 ms delayed ACK
                try:
                    src.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 1)
                except OSError:
                    pass
            conn.arrive(direction, data)
            if w:
                q.put((time.monotonic() + self.delay, data))
            else:
                try:
                    dst.sendall(data)
                except OSError:
                    break
        if w:
            q.put(None)
            w.join()
        else:
            try:
                dst.shutdown(socket.SHUT_WR)
            except OSError:
                pass
        with conn.lock:
            left[0] -= 1
            last = left[0] == 0
        if last:
            src.close()
            dst.close()
            conn.done.set()

    def stop(self):
        self.stopping = True
        try:
            self.sock.close()
        except OSError:
            pass


# ------------------------------------------------------------------ running clients

def run_measured(argv, executable, stdin_path, env, cwd):
    """One process: stdin from a file, stdout/stderr to files. Returns
    (rc, wall s, cpu s (user+sys, with waited-for descendants), maxrss KB,
    stderr text, children-delta cpu s)."""
    import subprocess
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    # Through GNU time: a child forked from this (large) Python process
    # inherits its RSS as a high-water mark that survives exec, so ru_maxrss
    # of a direct child would read ~27 MB for anything. time(1) is small; it
    # reports the real peak (%M) of the client and its waited-for children.
    rss_file = os.path.join(cwd, "rss.out")
    argv = [TIME, "-f", "%M", "-o", rss_file, executable] + list(argv[1:])
    with open(stdin_path, "rb") as fin, tempfile.TemporaryFile() as fout, \
            tempfile.TemporaryFile() as ferr:
        t0 = time.perf_counter()
        p = subprocess.Popen(argv, stdin=fin, stdout=fout,
                             stderr=ferr, env=env, cwd=cwd)
        killer = threading.Timer(RUN_TIMEOUT, os.kill, (p.pid, 9))
        killer.start()
        try:
            _, status, ru = os.wait4(p.pid, 0)
        finally:
            killer.cancel()
        t1 = time.perf_counter()
        p.returncode = os.waitstatus_to_exitcode(status)
        ferr.seek(0)
        err = ferr.read().decode("utf-8", "replace")
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    delta = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    with open(rss_file) as f:
        maxrss = int(f.read().split()[-1])
    return (p.returncode, t1 - t0, ru.ru_utime + ru.ru_stime, maxrss, err, delta)


class Bench:
    def __init__(self, tokenmail, args):
        self.args = args
        self.procs = []
        self.proxies = []
        self.ws = tmtest.Workspace()
        self.dir = self.ws.dir
        # argv[0] matters to tokenmail ("tokenmail token", "sendmail"): links.
        self.tm_link = os.path.join(self.dir, "tokenmail")
        os.symlink(tokenmail, self.tm_link)
        self.sm_link = os.path.join(self.dir, "sendmail")
        os.symlink(tokenmail, self.sm_link)
        self.tokenmail = tokenmail
        self.env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.dir}
        self.token_peer = self.smtp = self.graph = None

    # ---- setup
    def start(self, smtp=True):
        secret = self.ws.write("app.secret", SECRET + "\n")
        self.token_peer = tmtest.start_token_peer(
            self.ws, {"clients": {CLIENT: {"secret": SECRET, "tenant": TENANT}}})
        self.procs.append(self.token_peer.proc)
        if smtp:
            self.smtp = tmtest.start_smtp_peer(
                self.ws, {"users": [USER], "capabilities": {"PIPELINING": True}},
                token_peer=self.token_peer)
            self.procs.append(self.smtp.proc)
        self.ca = self.token_peer.ca
        self.secret = secret

    def configs(self, port):
        """A tokenmail config and the msmtp configs for SMTP at 127.0.0.1:port."""
        tag = str(port)
        lines = ["tls_ca_file: %s" % tmtest.yaml_value(self.ca),
                 "cache_dir: %s" % tmtest.yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % tmtest.yaml_value(os.path.join(self.dir, "tokenmail.log")),
                 "dead_letter: %s" % tmtest.yaml_value(os.path.join(self.dir, "dead.letter")),
                 "timeout: 30",
                 "default_account: app",
                 "accounts:", "  app:",
                 "    senders: [%s]" % USER,
                 "    from: %s" % USER,
                 "    tenant: %s" % TENANT,
                 "    client_id: %s" % tmtest.yaml_value(CLIENT),
                 "    client_secret_file: %s" % tmtest.yaml_value(self.secret),
                 "    token_url: %s" % tmtest.yaml_value(self.token_peer.url(TENANT)),
                 "    scope: %s" % tmtest.yaml_value(SCOPE),
                 "    smtp: {host: \"127.0.0.1\", port: %d, tls: starttls, auth: xoauth2, "
                 "user: %s}" % (port, tmtest.yaml_value(USER))]
        tm_cfg = self.ws.write("tokenmail-%s.yaml" % tag, "\n".join(lines) + "\n")
        base = ["defaults", "tls on", "tls_starttls on", "tls_trust_file %s" % self.ca,
                "", "account default", "host 127.0.0.1", "port %d" % port,
                "auth xoauth2", "user %s" % USER, "from %s" % USER]
        ms = self.ws.write("msmtprc-%s" % tag, "\n".join(
            base + ['passwordeval "%s -C %s token app"' % (self.tm_link, tm_cfg)]) + "\n")
        mc = self.ws.write("msmtprc-cat-%s" % tag, "\n".join(
            base + ['passwordeval "cat %s"' % os.path.join(self.dir, "token.txt")]) + "\n")
        return {"tokenmail": tm_cfg, "msmtp": ms, "msmtp-cat": mc}

    def warm(self, tm_cfg):
        r = run_measured(["tokenmail", "-C", tm_cfg, "token", "app"], self.tm_link,
                         os.devnull, self.env, self.dir)
        if r[0] != 0:
            raise BenchError("tokenmail token app failed (rc %d): %s" % (r[0], r[4]))
        import subprocess
        tok = subprocess.run(["tokenmail", "-C", tm_cfg, "token", "app"],
                             executable=self.tokenmail, env=self.env,
                             stdout=subprocess.PIPE, check=True).stdout.strip()
        self.ws.write("token.txt", tok.decode() + "\n")
        return r

    def message(self, name, tool, size=0):
        """A message file for tool; size > 0: a body of about size bytes."""
        path = os.path.join(self.dir, "%s-%s.eml" % (name, tool))
        head = ("From: %s\nTo: %s\nSubject: tokenmail bench %s\n\n" %
                (USER, RCPT[tool], name)).encode()
        with open(path, "wb") as f:
            f.write(head)
            if size:
                line = (b"0123456789abcdefghijklmnopqrstuvwxyz" * 3)[:75] + b"\n"
                n = size // len(line)
                block = line * 1024
                for _ in range(n // 1024):
                    f.write(block)
                f.write(line * (n % 1024))
            else:
                f.write(b"A short report from cron: backup finished, 42 files, 0 errors.\n")
        return path

    def send(self, tool, cfg, msg):
        if tool == "tokenmail":
            argv = ["sendmail", "-C", cfg, "-t", "-i"]
            exe = self.sm_link
        else:
            argv = ["msmtp", "-C", cfg, "-t"]
            exe = "/usr/bin/msmtp"
        r = run_measured(argv, exe, msg, self.env, self.dir)
        if r[0] != 0:
            raise BenchError("%s failed (rc %d): %s" % (tool, r[0], r[4][-2000:]))
        return r

    def accepted(self):
        counts = {t: 0 for t in RCPT}
        for m in self.smtp.messages():
            for r in m.get("rcpts", []):
                addr = r["addr"] if isinstance(r, dict) else r
                for t, a in RCPT.items():
                    if addr == a:
                        counts[t] += 1
        return counts

    def proxy(self, delay=0.0, quickack=False):
        p = Proxy(self.smtp.port, delay, quickack)
        self.proxies.append(p)
        return p

    def close(self):
        for p in self.proxies:
            p.stop()
        for proc in self.procs:
            try:
                tmtest.stop_process(proc)
            except Exception:
                pass
        self.ws.close()


    # ---- Microsoft Graph (tokenmail only)
    def start_graph(self):
        self.graph = tmtest.start_graph_peer(self.ws, {"mailboxes": [USER]},
                                             token_peer=self.token_peer)
        self.procs.append(self.graph.proc)

    def graph_config(self):
        """A tokenmail config whose account app (method graph) sends through
        the Graph peer; its own token cache and log file."""
        self.graph_log = os.path.join(self.dir, "tokenmail-graph.log")
        lines = ["tls_ca_file: %s" % tmtest.yaml_value(self.ca),
                 "cache_dir: %s" % tmtest.yaml_value(os.path.join(self.dir, "cache-graph")),
                 "log: %s" % tmtest.yaml_value(self.graph_log),
                 "dead_letter: %s" % tmtest.yaml_value(os.path.join(self.dir, "dead.letter")),
                 "timeout: 60",
                 "default_account: app",
                 "accounts:", "  app:",
                 "    senders: [%s]" % USER,
                 "    from: %s" % USER,
                 "    method: graph",
                 "    tenant: %s" % TENANT,
                 "    client_id: %s" % tmtest.yaml_value(CLIENT),
                 "    client_secret_file: %s" % tmtest.yaml_value(self.secret),
                 "    token_url: %s" % tmtest.yaml_value(self.token_peer.url(TENANT)),
                 "    scope: %s" % tmtest.yaml_value(GRAPH_SCOPE),
                 "    graph: {url: %s}" % tmtest.yaml_value(self.graph.url)]
        return self.ws.write("tokenmail-graph.yaml", "\n".join(lines) + "\n")

    def graph_log_lines(self):
        try:
            with open(self.graph_log) as f:
                return f.read().splitlines()
        except FileNotFoundError:
            return []

    def graph_small_message(self):
        path = os.path.join(self.dir, "graph-small.eml")
        with open(path, "wb") as f:
            f.write(("From: %s\nTo: %s\nSubject: tokenmail bench graph small\n\n"
                     "A short report from cron: backup finished, 42 files, 0 errors.\n"
                     % (USER, GRAPH_RCPT)).encode())
        return path

    def graph_big_message(self, size):
        """A multipart/mixed of about size octets as transmitted (CRLF): a
        short text part and one binary attachment (deterministic bytes from a
        seeded generator), base64 in 76-character lines. Returns (path,
        attachment octets, attachment sha256)."""
        # base64 is 4/3 of the binary, and each 76-character line gets a CRLF
        n = int(size * 3 / 4 * 76 / 78) // 57 * 57
        path = os.path.join(self.dir, "graph-big.eml")
        boundary = "=_tmbench_5f3c2a"
        h = hashlib.sha256()
        rnd = random.Random(GRAPH_SEED)
        block = 57 * 16384
        with open(path, "wb") as f:
            f.write(("From: %s\nTo: %s\nSubject: tokenmail bench graph %d MB\n"
                     "MIME-Version: 1.0\n"
                     "Content-Type: multipart/mixed; boundary=\"%s\"\n\n"
                     "This is a multi-part message in MIME format.\n\n"
                     "--%s\nContent-Type: text/plain; charset=us-ascii\n\n"
                     "The nightly backup is attached.\n\n"
                     "--%s\nContent-Type: application/octet-stream; name=\"%s\"\n"
                     "Content-Disposition: attachment; filename=\"%s\"\n"
                     "Content-Transfer-Encoding: base64\n\n"
                     % (USER, GRAPH_RCPT, round(size / MB), boundary, boundary, boundary,
                        GRAPH_ATTACHMENT, GRAPH_ATTACHMENT)).encode())
            left = n
            while left:
                chunk = rnd.randbytes(min(block, left))
                left -= len(chunk)
                h.update(chunk)
                f.write(base64.encodebytes(chunk))
            f.write(("\n--%s--\n" % boundary).encode())
        return path, n, h.hexdigest()

    def graph_send(self, cfg, msg):
        """One send; returns (run_measured tuple, the Graph requests of this
        send, the sent.jsonl entries it added, its log line, wall-clock end)."""
        n0 = len(self.graph.requests())
        s0 = len(self.graph.sent())
        l0 = len(self.graph_log_lines())
        r = self.send("tokenmail", cfg, msg)
        t_end = time.time()
        reqs = self.graph.requests()[n0:]
        sent = self.graph.sent()[s0:]
        log = self.graph_log_lines()[l0:]
        if len(log) != 1 or " result=sent " not in log[0]:
            raise BenchError("graph: expected one log line with result=sent, got %r" % log)
        if len(sent) != 1:
            raise BenchError("graph: the peer delivered %d messages for one send" % len(sent))
        ids = {e.get("client_request_id") for e in reqs}
        if len(ids) != 1:
            raise BenchError("graph: %d client-request-ids in one send: %r" % (len(ids), ids))
        for e in reqs:
            if not (e.get("status") and 200 <= e["status"] < 300):
                raise BenchError("graph: %s %s answered %r %s" % (
                    e["method"], e["op"], e.get("status"), e.get("code")))
        return r, reqs, sent[0], log[0], t_end

    def graph_clean(self, entry, reqs):
        """Remove the peer's files of one delivered message (40 MB each)."""
        names = [entry["file"], entry["sent_items_file"]]
        names += ["draft-%s.eml" % e["draft"].split("-")[-1] for e in reqs
                  if e["op"] == "createDraft" and e.get("draft")]
        names += ["upload-%s.bin" % e["session"] for e in reqs
                  if e["op"] == "upload" and e.get("session")]
        for name in set(names):
            try:
                os.unlink(os.path.join(self.graph.dir, name))
            except OSError:
                pass


def delivered_attachments(path):
    """[(filename, content type, octets, sha256)] of the base64 parts with a
    filename in a MIME file, decoded as a stream (the file may be 40 MB)."""
    parser = email.parser.BytesParser(policy=email.policy.compat32)
    out, boundaries, hdr = [], set(), []
    in_header, cur = True, None

    def finish(c):
        if c is None:
            return
        if c["rest"]:
            raise BenchError("graph: %s: base64 ends with %d stray characters" % (
                c["name"], len(c["rest"])))
        out.append((c["name"], c["type"], c["size"], c["h"].hexdigest()))

    with open(path, "rb") as f:
        for line in f:
            s = line.rstrip(b"\r\n")
            if in_header:
                if s:
                    hdr.append(line)
                    continue
                part = parser.parsebytes(b"".join(hdr) + b"\r\n", headersonly=True)
                hdr, in_header = [], False
                b = part.get_param("boundary")
                if part.get_content_maintype() == "multipart" and b:
                    boundaries.add(email.utils.collapse_rfc2231_value(b).encode())
                cte = (part.get("Content-Transfer-Encoding") or "").strip().lower()
                name = part.get_filename()
                cur = None
                if name is not None and cte == "base64":
                    cur = {"name": name, "type": part.get_content_type(), "size": 0,
                           "h": hashlib.sha256(), "rest": b""}
                continue
            if s.startswith(b"--"):
                t = s[2:].rstrip()
                if t in boundaries or (t.endswith(b"--") and t[:-2] in boundaries):
                    finish(cur)
                    cur = None
                    in_header = t in boundaries
                    continue
            if cur is not None:
                data = cur["rest"] + s.strip()
                k = len(data) // 4 * 4
                try:
                    dec = binascii.a2b_base64(data[:k])
                except binascii.Error as e:
                    raise BenchError("graph: %s: bad base64: %s" % (cur["name"], e))
                cur["rest"] = data[k:]
                cur["h"].update(dec)
                cur["size"] += len(dec)
    finish(cur)
    return out


def graph_bench(b, a, res):
    """tokenmail through the Graph peer: small messages (sendMail) and one
    message of --graph-mb MB (the draft path). Fills res["graph"]."""
    g = res["graph"] = {}
    started = time.monotonic()
    b.start_graph()
    cfg = b.graph_config()
    first = b.warm(cfg)
    g["token_first_ms"] = first[1] * 1000

    # ---- small messages: one POST .../sendMail each
    small_msg = b.graph_small_message()
    b.graph_send(cfg, small_msg)              # not timed (page cache, lazy loading)
    delivered = {"small": 1, "big": 0}
    small, small_reqs = [], []
    max_body = 0
    for _ in range(a.graph_n):
        r, reqs, entry, log, _ = b.graph_send(cfg, small_msg)
        ops = [e["op"] for e in reqs]
        if ops != ["sendMail"]:
            raise BenchError("graph small: requests %r, expected one sendMail" % ops)
        if entry["recipients"] != [GRAPH_RCPT]:
            raise BenchError("graph small: delivered to %r" % entry["recipients"])
        small.append(r)
        small_reqs.append(len(reqs))
        max_body = max([max_body] + [e.get("body_len") or 0 for e in reqs])
        delivered["small"] += 1
    g["small_wall_ms"] = med([r[1] * 1000 for r in small])
    g["small_wall_p90_ms"] = sorted(r[1] * 1000 for r in small)[int(0.9 * (len(small) - 1))]
    g["small_cpu_ms"] = med([r[2] * 1000 for r in small])
    g["small_cpu_children_delta_ms"] = med([r[5] * 1000 for r in small])
    g["small_rss_kb"] = med([r[3] for r in small])
    g["small_requests"] = med(small_reqs)

    # ---- the big message: createDraft, createUploadSession, PUTs, send
    path, att_len, att_sha = b.graph_big_message(int(a.graph_mb * MB))
    g["attachment_octets"] = att_len
    g["attachment_sha256"] = att_sha
    g["input_octets"] = os.path.getsize(path)
    big, sizes, counts, puts, send_waits, sha_ok = [], [], [], [], [], 0
    for i in range(a.graph_runs):
        r, reqs, entry, log, t_end = b.graph_send(cfg, path)
        ops = [e["op"] for e in reqs]
        if (not ops or ops[0] != "createDraft" or ops[-1] != "send"
                or ops.count("createDraft") != 1 or ops.count("send") != 1
                or ops.count("createUploadSession") != 1 or "sendMail" in ops
                or "delete" in ops or not ops.count("upload")):
            raise BenchError("graph big: requests %r, expected createDraft, "
                             "createUploadSession, PUTs, send" % ops)
        bodies = [e.get("body_len") or 0 for e in reqs]
        if max(bodies) > REQUEST_LIMIT:
            raise BenchError("graph big: a request body of %d octets (limit %d)" % (
                max(bodies), REQUEST_LIMIT))
        max_body = max([max_body] + bodies)
        up = sum(e.get("body_len") or 0 for e in reqs if e["op"] == "upload")
        if up != att_len:
            raise BenchError("graph big: %d octets uploaded, the attachment has %d" % (
                up, att_len))
        # the delivered copy, decoded from the peer's file, and the peer's own record
        got = delivered_attachments(os.path.join(b.graph.dir, entry["file"]))
        want = [(GRAPH_ATTACHMENT, "application/octet-stream", att_len, att_sha)]
        if got != want:
            raise BenchError("graph big: delivered attachments %r, sent %r" % (got, want))
        rec = [(x["name"], x["size"], x["sha256"], x["via"]) for x in entry["attachments"]]
        if rec != [(GRAPH_ATTACHMENT, att_len, att_sha, "upload")]:
            raise BenchError("graph big: the peer recorded attachments %r" % rec)
        if entry["recipients"] != [GRAPH_RCPT]:
            raise BenchError("graph big: delivered to %r" % entry["recipients"])
        sha_ok += 1
        m = re.search(r" size=(\d+) ", log)
        if not m:
            raise BenchError("graph big: no size= in the log line %r" % log)
        sizes.append(int(m.group(1)))
        counts.append(len(reqs))
        puts.append(ops.count("upload"))
        send_waits.append((t_end - reqs[-1]["time"]) * 1000)
        g["big_ops"] = {op: ops.count(op) for op in
                        ("createDraft", "createUploadSession", "upload", "send")}
        g["big_chunk_octets"] = sorted({e.get("body_len") or 0 for e in reqs
                                        if e["op"] == "upload"}, reverse=True)
        big.append(r)
        delivered["big"] += 1
        b.graph_clean(entry, reqs)
    size = max(sizes)
    target_kb = (TARGET_FACTOR * size + TARGET_BASE) / 1024
    rss = [r[3] for r in big]
    g.update({
        "big_message_octets": size,
        "big_wall_ms": med([r[1] * 1000 for r in big]),
        "big_wall_all_ms": [round(r[1] * 1000, 1) for r in big],
        "big_send_wait_ms": med(send_waits),
        "big_cpu_ms": med([r[2] * 1000 for r in big]),
        "big_cpu_children_delta_ms": med([r[5] * 1000 for r in big]),
        "big_rss_kb": med(rss),
        "big_rss_max_kb": max(rss),
        "big_rss_all_kb": rss,
        "big_requests": med(counts),
        "big_requests_all": counts,
        "big_puts": med(puts),
        "max_request_body": max_body,
        "target_kb": target_kb,
        "target_ratio": max(rss) / target_kb,
        "target_met": max(rss) < target_kb,
        "sha256_ok": sha_ok,
        "delivered": delivered,
        "elapsed_s": time.monotonic() - started,
    })
    return g


def report_graph(g, a, width=0):
    """The Graph section; width: the label column (the SMTP table's, to line up)."""
    print("Microsoft Graph (tests/peers/graph_peer.py): tokenmail only, "
          "msmtp has no Graph delivery (no msmtp column)")
    print("small message: %d sends (sendMail); big message: %s octets as transmitted "
          "(one %.2f MB attachment, base64) x %d (median)"
          % (a.graph_n, format(g["big_message_octets"], ","), g["attachment_octets"] / MB,
             a.graph_runs))
    print("peer delivered: small %d, big %d; big attachment sha256 = original in %d of %d; "
          "largest request body %d octets (limit %d); elapsed %.0f s"
          % (g["delivered"]["small"], g["delivered"]["big"], g["sha256_ok"], a.graph_runs,
             g["max_request_body"], REQUEST_LIMIT, g["elapsed_s"]))
    print()
    rows = [
        ("graph small: wall ms (median)", "small_wall_ms", "%.2f", None),
        ("graph small: wall ms (p90)", "small_wall_p90_ms", "%.2f", None),
        ("graph small: CPU ms user+sys", "small_cpu_ms", "%.2f", None),
        ("graph small: peak RSS KB", "small_rss_kb", "%.0f", None),
        ("graph small: Graph requests", "small_requests", "%.0f", None),
        ("graph big: message octets", "big_message_octets", "%.0f", None),
        ("graph big: wall ms", "big_wall_ms", "%.1f", None),
        ("graph big: ms waiting for send", "big_send_wait_ms", "%.1f", None),
        ("graph big: CPU ms user+sys", "big_cpu_ms", "%.1f", None),
        ("graph big: peak RSS KB", "big_rss_kb", "%.0f", "target_kb"),
        ("graph big: peak RSS KB (max)", "big_rss_max_kb", "%.0f", "target_kb"),
        ("graph big: Graph requests", "big_requests", "%.0f", None),
        ("graph big: upload PUTs", "big_puts", "%.0f", None),
        ("graph big+small: largest body", "max_request_body", "%.0f", REQUEST_LIMIT),
    ]
    w = max([width] + [len(r[0]) for r in rows])
    print("%-*s %11s %11s %9s" % (w, "", "tokenmail", "target", "tm/target"))
    for label, key, fmt, target in rows:
        v = g.get(key)
        tv = g[target] if isinstance(target, str) else target
        print("%-*s %11s %11s %9s" % (
            w, label, fmt % v if v is not None else "-",
            "%.0f" % tv if tv is not None else "-",
            "%.3g" % (v / tv) if (v is not None and tv) else "-"))
    print()
    ops = g["big_ops"]
    print("graph big requests per send: createDraft %d, createUploadSession %d, "
          "PUT chunks %d (%s octets), send %d = %s"
          % (ops["createDraft"], ops["createUploadSession"], ops["upload"],
             "/".join(str(x) for x in g["big_chunk_octets"]), ops["send"],
             "/".join(str(x) for x in sorted(set(g["big_requests_all"])))))
    print("graph big peak RSS per run: %s KB; wall per run: %s ms" % (
        g["big_rss_all_kb"], g["big_wall_all_ms"]))
    print("target: peak RSS < %g x size + 10 MB = %g x %d + %d = %.0f KB (MB = 10^6 octets, "
          "KB = 1024): %s, RSS (max of %d runs) / target = %.3f"
          % (TARGET_FACTOR, TARGET_FACTOR, g["big_message_octets"], TARGET_BASE,
             g["target_kb"], "met" if g["target_met"] else "NOT MET", a.graph_runs,
             g["target_ratio"]))
    print("tokenmail token app (Graph scope), first fetch %.1f ms" % g["token_first_ms"])


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def smtp_bench(b, a, res, tm, tools, expected, started):
    """The SMTP part: tokenmail, msmtp and msmtp-cat on the SMTP peer; prints
    its report. Fills res[tool], res["accepted"], res["elapsed_s"]."""
    direct = b.configs(b.smtp.port)
    warm = b.warm(direct["tokenmail"])
    res["tokenmail"]["token_cached_ms"] = None
    # the warm cache's cost: "tokenmail token app" with a cached token
    tcache = [b.warm(direct["tokenmail"]) for _ in range(5)]
    res["tokenmail"]["token_cached_ms"] = med([r[1] * 1000 for r in tcache])
    res["tokenmail"]["token_cached_cpu_ms"] = med([r[2] * 1000 for r in tcache])
    res["tokenmail"]["token_first_ms"] = warm[1] * 1000

    # ---- small messages, alternating
    msgs = {t: b.message("small", t) for t in tools}
    # one untimed send each first (page cache, lazy loading)
    for t in tools:
        b.send(t, direct[t], msgs[t])
        expected[t] += 1
    small = {t: [] for t in tools}
    for i in range(a.n):
        order = tools if i % 2 == 0 else list(reversed(tools))
        for t in order:
            small[t].append(b.send(t, direct[t], msgs[t]))
            expected[t] += 1
    for t in tools:
        rs = small[t]
        res[t]["wall_ms"] = med([r[1] * 1000 for r in rs])
        res[t]["wall_p90_ms"] = sorted(r[1] * 1000 for r in rs)[int(0.9 * (len(rs) - 1))]
        res[t]["cpu_ms"] = med([r[2] * 1000 for r in rs])
        res[t]["cpu_children_delta_ms"] = med([r[5] * 1000 for r in rs])
        res[t]["rss_kb"] = med([r[3] for r in rs])

    # ---- small messages again through the quick-ACK proxy (no Nagle stalls)
    qa = b.proxy(0.0, quickack=True)
    viaq = b.configs(qa.port)
    quick = {t: [] for t in tools}
    for i in range(max(1, a.n // 2)):
        for t in (tools if i % 2 == 0 else list(reversed(tools))):
            quick[t].append(b.send(t, viaq[t], msgs[t]))
            expected[t] += 1
    for t in tools:
        res[t]["qa_wall_ms"] = med([r[1] * 1000 for r in quick[t]])
        res[t]["qa_cpu_ms"] = med([r[2] * 1000 for r in quick[t]])

    # ---- big message: timing direct, then records through the counting proxy
    big_tools = ["tokenmail", "msmtp"]
    size = int(a.big_mb * 1000 * 1000)
    bigs = {t: b.message("big", t, size) for t in big_tools}
    big = {t: [] for t in big_tools}
    for i in range(a.big_runs):
        for t in (big_tools if i % 2 == 0 else list(reversed(big_tools))):
            big[t].append(b.send(t, direct[t], bigs[t]))
            expected[t] += 1
    for t in big_tools:
        rs = big[t]
        res[t]["big_wall_ms"] = med([r[1] * 1000 for r in rs])
        res[t]["big_cpu_ms"] = med([r[2] * 1000 for r in rs])
        res[t]["big_rss_kb"] = med([r[3] for r in rs])
    counting = b.proxy(0.0)
    via = b.configs(counting.port)
    for t in big_tools:
        n0 = len(counting.conns)
        b.send(t, via[t], bigs[t])
        expected[t] += 1
        if len(counting.conns) != n0 + 1:
            raise BenchError("%s: %d connections through the proxy, expected 1" %
                             (t, len(counting.conns) - n0))
        c = counting.conns[-1]
        c.done.wait(10)
        if c.bad or not c.in_tls:
            raise BenchError("%s: TLS record count failed: %s" % (t, c.bad or "no STARTTLS"))
        res[t]["big_records"] = c.records
        res[t]["big_app_records"] = c.app_records
        res[t]["big_avg_record"] = c.rec_bytes / max(1, c.app_records)
        res[t]["big_client_bytes"] = c.c_bytes

    # ---- turns: a small message through the 25 ms delay proxy
    delayed = b.proxy(DELAY)
    viad = b.configs(delayed.port)
    for t in tools:
        turns, walls, smtp_rt, recs = [], [], [], []
        for _ in range(3):
            n0 = len(delayed.conns)
            r = b.send(t, viad[t], msgs[t])
            expected[t] += 1
            if len(delayed.conns) != n0 + 1:
                raise BenchError("%s: %d connections through the delay proxy" %
                                 (t, len(delayed.conns) - n0))
            c = delayed.conns[-1]
            c.done.wait(10)
            turns.append(c.turns)
            walls.append(r[1] * 1000)
            recs.append(c.records)
            last = b.smtp.messages()[-1]
            smtp_rt.append(b.smtp.round_trips(last["conn"]))
        res[t]["turns"] = med(turns)
        res[t]["turns_all"] = turns
        res[t]["smtp_round_trips"] = med(smtp_rt)
        res[t]["delayed_wall_ms"] = med(walls)
        res[t]["small_records"] = med(recs)

    # ---- every message must have been accepted by the peer
    got = b.accepted()
    for t in tools:
        if got[t] != expected[t]:
            raise BenchError("%s: the peer accepted %d messages, %d were sent" %
                             (t, got[t], expected[t]))
    res["accepted"] = got
    res["elapsed_s"] = time.monotonic() - started
    report(res, a, tm)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tokenmail", nargs="?")
    ap.add_argument("-n", type=int, default=100, help="small messages per tool (default 100)")
    ap.add_argument("--big-mb", type=float, default=20, help="big message size in MB (default 20)")
    ap.add_argument("--big-runs", type=int, default=3, help="big-message runs per tool (default 3)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: -n 10 --big-mb 2 --graph-n 5 --graph-runs 1")
    ap.add_argument("--json", help="also write the raw figures to this file")
    ap.add_argument("--graph-n", type=int, default=20,
                    help="small messages through Graph (default 20)")
    ap.add_argument("--graph-mb", type=float, default=40,
                    help="Graph big message size as transmitted, in MB of 10^6 octets "
                         "(default 40: a ~29 MB attachment)")
    ap.add_argument("--graph-runs", type=int, default=3,
                    help="Graph big-message runs (default 3)")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--no-graph", action="store_true", help="skip the Graph part")
    g.add_argument("--graph-only", action="store_true",
                   help="only the Graph part (msmtp is then not needed)")
    ap.add_argument("--require-target", action="store_true",
                    help="exit 1 when the Graph big message's peak RSS misses the target")
    a = ap.parse_args()
    if a.quick:
        a.n, a.big_mb = 10, 2
        a.graph_n, a.graph_runs = 5, 1
    if a.graph_n < 1 or a.graph_runs < 1 or a.graph_mb < 1:
        ap.error("--graph-n and --graph-runs must be at least 1, --graph-mb at least 1")
    tm = a.tokenmail
    if not tm:
        for c in ("build/tokenmail", "tokenmail"):
            if os.access(os.path.join(SRCDIR, c), os.X_OK):
                tm = os.path.join(SRCDIR, c)
                break
    if not tm or not os.access(tm, os.X_OK):
        print("bench: no tokenmail binary (give its path; default ./build/tokenmail "
              "or ./tokenmail)", file=sys.stderr)
        return 2
    tm = os.path.abspath(tm)
    tools = ["tokenmail", "msmtp", "msmtp-cat"]
    res = {} if a.graph_only else {t: {} for t in tools}
    expected = {t: 0 for t in tools}
    started = time.monotonic()
    b = Bench(tm, a)
    try:
        b.start(smtp=not a.graph_only)
        if not a.graph_only:
            smtp_bench(b, a, res, tm, tools, expected, started)
            if a.json:
                with open(a.json, "w") as f:
                    json.dump(res, f, indent=1)
        if not a.no_graph:
            if a.graph_only:
                print("tokenmail bench  %s  (%s)" % (time.strftime("%Y-%m-%d %H:%M"), tm))
            else:
                print()
            sys.stdout.flush()
            graph_bench(b, a, res)
            report_graph(res["graph"], a, width=len("small: wall ms, quick-ACK proxy"))
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        if a.require_target and "graph" in res and not res["graph"]["target_met"]:
            print("bench: FAILED: Graph big message: peak RSS %d KB, target %.0f KB" % (
                res["graph"]["big_rss_max_kb"], res["graph"]["target_kb"]), file=sys.stderr)
            return 1
        return 0
    except BenchError as e:
        print("bench: FAILED: %s" % e, file=sys.stderr)
        return 1
    finally:
        b.close()


def report(res, a, tm):
    import subprocess
    ms_ver = subprocess.run(["/usr/bin/msmtp", "--version"], stdout=subprocess.PIPE
                            ).stdout.decode().splitlines()[0]
    t, m, c = res["tokenmail"], res["msmtp"], res["msmtp-cat"]
    print("tokenmail bench  %s  (%s; msmtp: %s)" % (
        time.strftime("%Y-%m-%d %H:%M"), tm, ms_ver))
    print("small messages: %d per tool, alternating; big message: %g MB x %d (median)"
          % (a.n, a.big_mb, a.big_runs))
    print("peer accepted: %s; elapsed %.0f s" % (
        ", ".join("%s %d" % kv for kv in res["accepted"].items()), res["elapsed_s"]))
    print()
    rows = [
        ("small: wall ms (median)", "wall_ms", "%.2f"),
        ("small: wall ms (p90)", "wall_p90_ms", "%.2f"),
        ("small: CPU ms user+sys", "cpu_ms", "%.2f"),
        ("small: peak RSS KB", "rss_kb", "%.0f"),
        ("small: wall ms, quick-ACK proxy", "qa_wall_ms", "%.2f"),
        ("small: CPU ms, quick-ACK proxy", "qa_cpu_ms", "%.2f"),
        ("small: turns (25 ms proxy)", "turns", "%.0f"),
        ("small: SMTP round trips (peer)", "smtp_round_trips", "%.0f"),
        ("small: wall ms via 25 ms proxy", "delayed_wall_ms", "%.1f"),
        ("small: client TLS records", "small_records", "%.0f"),
        ("big: wall ms", "big_wall_ms", "%.1f"),
        ("big: CPU ms user+sys", "big_cpu_ms", "%.1f"),
        ("big: peak RSS KB", "big_rss_kb", "%.0f"),
        ("big: client TLS records", "big_records", "%.0f"),
        ("big: avg app-data record bytes", "big_avg_record", "%.0f"),
        ("big: client bytes on the wire", "big_client_bytes", "%.0f"),
    ]
    w = max(len(r[0]) for r in rows)
    print("%-*s %11s %11s %9s %11s" % (w, "", "tokenmail", "msmtp", "tm/msmtp",
                                        "msmtp-cat"))
    for label, key, fmt in rows:
        tv, mv, cv = t.get(key), m.get(key), c.get(key)
        ratio = ("%.3g" % (tv / mv)) if (tv is not None and mv) else "-"
        print("%-*s %11s %11s %9s %11s" % (
            w, label, fmt % tv if tv is not None else "-", fmt % mv if mv is not None else "-",
            ratio, fmt % cv if cv is not None else "-"))
    print()
    print("tokenmail token app (cached token): %.2f ms wall, %.2f ms CPU; first fetch %.1f ms"
          % (t["token_cached_ms"], t["token_cached_cpu_ms"], t["token_first_ms"]))
    print("msmtp = passwordeval \"tokenmail token app\" (its figures include that process);"
          " msmtp-cat = passwordeval \"cat tokenfile\"")
    print("turns per connection: %s tokenmail, %s msmtp, %s msmtp-cat" % (
        t["turns_all"], m["turns_all"], c["turns_all"]))


if __name__ == "__main__":
    sys.exit(main())
