"""tmbench: tokenmail against msmtp, one process per message, same peers.

Run by bench/run (which picks Debian's /usr/bin/python3 and checks msmtp).
Usage: tmbench.py [-n N] [--big-mb M] [--big-runs R] [--quick]
                  [--graph-n N] [--graph-mb M] [--graph-runs R]
                  [--no-graph | --graph-only] [--require-target] [--turn-detail]
                  [--json FILE] [TOKENMAIL]

Everything runs on 127.0.0.1: tests/peers/token_peer.py (HTTPS token
endpoint), tests/peers/smtp_peer.py (STARTTLS, AUTH XOAUTH2, PIPELINING and
CHUNKING as Exchange Online offers them; a second one without CHUNKING for
one row), tests/peers/graph_peer.py (Microsoft Graph: sendMail, drafts,
upload sessions), a fresh throwaway CA, and in-process TCP proxies (counting
and delaying; STARTTLS or TLS from the first byte). The SMTP part compares
tokenmail with msmtp; the Graph part (after it) measures tokenmail alone, as
msmtp has no Graph delivery. A targets block (the issue's acceptance figures)
ends the output. See bench/README.md for what each figure means.
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
LABEL_W = 40                        # the label column of the tables
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

REC_LETTER = {20: "c", 21: "x", 22: "h", 23: "a"}
FLIGHT_ITEMS = 24                   # items kept per flight (the rest are counted)


def server_hello_version(body):
    """The TLS version a ServerHello (handshake message body) selects:
    supported_versions if present (TLS 1.3), else legacy_version; None if it
    cannot be parsed."""
    try:
        if body[0] != 2:
            return None
        p = 4
        ver = int.from_bytes(body[p:p + 2], "big")
        p += 2 + 32
        p += 1 + body[p]                    # session id
        p += 3                              # cipher suite, compression
        if p + 2 > len(body):
            return ver
        end = p + 2 + int.from_bytes(body[p:p + 2], "big")
        p += 2
        while p + 4 <= min(end, len(body)):
            et = int.from_bytes(body[p:p + 2], "big")
            el = int.from_bytes(body[p + 2:p + 4], "big")
            if et == 43 and el == 2:
                return int.from_bytes(body[p + 4:p + 6], "big")
            p += 4 + el
        return ver
    except IndexError:
        return None


def plain_items(data):
    """SMTP lines in a plaintext chunk, by their first word or reply code."""
    out = []
    for line in data.split(b"\n"):
        m = re.match(rb"\s*([A-Za-z]+|\d{3})", line)
        if m:
            out.append(m.group(1).decode("ascii").upper())
    return out


class Conn:
    """What the proxy saw on one connection. tls: the connection is TLS from
    its first byte (HTTPS); otherwise TLS starts after the client's STARTTLS
    line (client) and the server's reply to it (server)."""

    def __init__(self, tls=False):
        self.lock = threading.Lock()
        self.last_dir = None        # "C" or "S": who sent the last chunk seen
        self.turns = 0              # client flights (C after S, or C first)
        self.flights = []           # [direction, bytes, [items], items left out]
        self.c_bytes = 0
        self.s_bytes = 0
        self.plain = b""            # client bytes before TLS (up to STARTTLS)
        self.s_plain = b""          # server bytes before TLS
        self.s_mark = None          # len(s_plain) when the client's STARTTLS was seen
        self.in_tls = tls
        self.s_in_tls = tls
        self.rec_buf = b""
        self.s_rec_buf = b""
        self.records = 0            # client->server TLS records
        self.app_records = 0        # of which application data (type 23)
        self.rec_bytes = 0          # their payload bytes
        self.app_payload = 0        # client plaintext in type-23 records (TLS 1.3:
                                    # length - 17 each, the client Finished left out)
        self.c_app_seen = 0
        self.tls_version = None     # from the ServerHello (0x0304: TLS 1.3)
        self.bad = None
        self.done = threading.Event()

    def arrive(self, direction, data):
        with self.lock:
            if direction != self.last_dir:
                if direction == "C":
                    self.turns += 1
                self.flights.append([direction, 0, [], 0])
            self.last_dir = direction
            fl = self.flights[-1]
            fl[1] += len(data)
            if direction == "C":
                self.c_bytes += len(data)
                self._client(data, fl)
            else:
                self.s_bytes += len(data)
                self._server(data, fl)

    @staticmethod
    def _item(fl, item):
        if len(fl[2]) < FLIGHT_ITEMS:
            fl[2].append(item)
        else:
            fl[3] += 1

    def _client(self, data, fl):
        if not self.in_tls:
            self.plain += data
            # STARTTLS is the last command before the handshake (RFC 3207:
            # no pipelining past it); what follows its CRLF is TLS.
            up = self.plain.upper()
            i = up.find(b"STARTTLS\r\n")
            if i < 0 or (i > 0 and up[i - 1:i] != b"\n"):
                for it in plain_items(data):
                    self._item(fl, it)
                return
            rest = self.plain[i + len(b"STARTTLS\r\n"):]
            for it in plain_items(data[:len(data) - len(rest)]):
                self._item(fl, it)
            self.in_tls = True
            self.s_mark = len(self.s_plain)
            data = rest
        self.rec_buf = self._records(self.rec_buf + data, fl, "C")

    def _server(self, data, fl):
        if not self.s_in_tls:
            self.s_plain += data
            j = -1
            if self.s_mark is not None:
                # the reply to STARTTLS is one line; TLS follows it
                j = self.s_plain.find(b"\r\n", self.s_mark)
            if j < 0:
                for it in plain_items(data):
                    self._item(fl, it)
                return
            rest = self.s_plain[j + 2:]
            for it in plain_items(data[:len(data) - len(rest)]):
                self._item(fl, it)
            self.s_in_tls = True
            data = rest
        self.s_rec_buf = self._records(self.s_rec_buf + data, fl, "S")

    def _records(self, buf, fl, side):
        pos = 0
        while len(buf) - pos >= 5:
            ctype = buf[pos]
            length = int.from_bytes(buf[pos + 3:pos + 5], "big")
            if ctype not in REC_LETTER or buf[pos + 1] != 3:
                self.bad = "not a TLS record header at %s byte %d" % (side, pos)
                return b""
            if len(buf) - pos < 5 + length:
                break
            label = "%s%d" % (REC_LETTER[ctype], length)
            if side == "S":
                if ctype == 22 and self.tls_version is None:
                    self.tls_version = server_hello_version(buf[pos + 5:pos + 5 + length])
            else:
                self.records += 1
                self.rec_bytes += length
                if ctype == 23:
                    self.app_records += 1
                    if self.tls_version == 0x0304 and self.c_app_seen == 0:
                        label += "=Fin"     # TLS 1.3: the client's first one
                    else:
                        self.app_payload += length - 17
                    self.c_app_seen += 1
            self._item(fl, label)
            pos += 5 + length
        return buf[pos:]

    def app_bytes(self):
        """The client's application bytes (TLS 1.3 only, else None)."""
        return self.app_payload if self.tls_version == 0x0304 else None

    def turn_lines(self):
        """One line per turn: the client flight and the server's answer."""
        def text(fl):
            items, out = fl[2], []
            for it in items:
                if out and out[-1][0] == it:
                    out[-1][1] += 1
                else:
                    out.append([it, 1])
            s = " ".join(it if n == 1 else "%sx%d" % (it, n) for it, n in out)
            if fl[3]:
                s += " +%d more" % fl[3]
            return "%s (%d B)" % (s, fl[1])
        lines, k = [], 0
        for fl in self.flights:
            if fl[0] == "C":
                k += 1
                lines.append("%2d  C %-40s" % (k, text(fl)))
            elif not lines:
                lines.append("%2d  %-42s S %s" % (0, "", text(fl)))
            else:
                lines[-1] += " S %s" % text(fl)
        return [ln.rstrip() for ln in lines]


class Proxy:
    """TCP proxy 127.0.0.1:port -> 127.0.0.1:upstream; delay seconds added to
    every chunk in each direction (order kept, pipelining kept)."""

    def __init__(self, upstream, delay=0.0, quickack=False, tls=False):
        self.upstream = upstream
        self.delay = delay
        self.quickack = quickack
        self.tls = tls              # TLS from the first byte (HTTPS)
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
            conn = Conn(self.tls)
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
        self.token_peer = self.smtp = self.smtp_nc = self.graph = None

    # ---- setup
    def start(self, smtp=True):
        secret = self.ws.write("app.secret", SECRET + "\n")
        self.token_peer = tmtest.start_token_peer(
            self.ws, {"clients": {CLIENT: {"secret": SECRET, "tenant": TENANT}}})
        self.procs.append(self.token_peer.proc)
        if smtp:
            # the main peer offers CHUNKING as Exchange Online does; a second
            # one without it is for the "turns, no CHUNKING" row
            self.smtp = tmtest.start_smtp_peer(
                self.ws, {"users": [USER],
                          "capabilities": {"PIPELINING": True, "CHUNKING": True}},
                token_peer=self.token_peer)
            self.procs.append(self.smtp.proc)
            self.smtp_nc = tmtest.start_smtp_peer(
                self.ws, {"users": [USER],
                          "capabilities": {"PIPELINING": True, "CHUNKING": False}},
                name="smtp_peer_nochunking", token_peer=self.token_peer)
            self.procs.append(self.smtp_nc.proc)
        self.ca = self.token_peer.ca
        self.secret = secret

    def tm_config(self, port, tag=None, token_url=None, cache="cache"):
        """A tokenmail config for SMTP at 127.0.0.1:port; token_url: the token
        endpoint (default the token peer's), cache: the cache_dir's name."""
        tag = tag or str(port)
        lines = ["tls_ca_file: %s" % tmtest.yaml_value(self.ca),
                 "cache_dir: %s" % tmtest.yaml_value(os.path.join(self.dir, cache)),
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
                 "    token_url: %s" % tmtest.yaml_value(
                     token_url or self.token_peer.url(TENANT)),
                 "    scope: %s" % tmtest.yaml_value(SCOPE),
                 "    smtp: {host: \"127.0.0.1\", port: %d, tls: starttls, auth: xoauth2, "
                 "user: %s}" % (port, tmtest.yaml_value(USER))]
        return self.ws.write("tokenmail-%s.yaml" % tag, "\n".join(lines) + "\n")

    def configs(self, port):
        """A tokenmail config and the msmtp configs for SMTP at 127.0.0.1:port."""
        tag = str(port)
        tm_cfg = self.tm_config(port)
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
        """Messages per tool (by recipient) that either SMTP peer accepted."""
        counts = {t: 0 for t in RCPT}
        for m in self.smtp.messages() + (self.smtp_nc.messages() if self.smtp_nc else []):
            for r in m.get("rcpts", []):
                addr = r["addr"] if isinstance(r, dict) else r
                for t, a in RCPT.items():
                    if addr == a:
                        counts[t] += 1
        return counts

    def proxy(self, delay=0.0, quickack=False, upstream=None, tls=False):
        """A proxy to upstream (default: the main SMTP peer); tls: the
        connection is TLS from its first byte (HTTPS)."""
        p = Proxy(upstream or self.smtp.port, delay, quickack, tls)
        self.proxies.append(p)
        return p

    def via_proxy(self, proxy, run, what, expect_conns=1):
        """run() once with proxy in the way; the proxy's new connections (all
        finished) and run()'s result. BenchError unless there were
        expect_conns of them."""
        n0 = len(proxy.conns)
        r = run()
        conns = proxy.conns[n0:]
        if len(conns) != expect_conns:
            raise BenchError("%s: %d connections through the proxy, expected %d" %
                             (what, len(conns), expect_conns))
        for c in conns:
            c.done.wait(10)
            if c.bad:
                raise BenchError("%s: %s" % (what, c.bad))
        return r, conns

    def smtp_turns(self, tool, cfg, msg, proxy, peer, runs=3):
        """runs sends of msg through the delay proxy to peer: turns, wall
        time, the peer's round trips and the client's TLS records."""
        out = {"turns_all": [], "walls": [], "rt": [], "recs": [], "seq": None}
        for _ in range(runs):
            r, (c,) = self.via_proxy(proxy, lambda: self.send(tool, cfg, msg), tool)
            out["turns_all"].append(c.turns)
            out["walls"].append(r[1] * 1000)
            out["recs"].append(c.records)
            last = peer.messages()[-1]
            out["rt"].append(peer.round_trips(last["conn"]))
            out["seq"] = c.turn_lines()
        return out

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

    def graph_config(self, url=None, name="tokenmail-graph.yaml"):
        """A tokenmail config whose account app (method graph) sends through
        the Graph peer (or url); its own token cache and log file."""
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
                 "    graph: {url: %s}" % tmtest.yaml_value(url or self.graph.url)]
        return self.ws.write(name, "\n".join(lines) + "\n")

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

    # ---- turns: small messages through a 25 ms delay proxy (HTTPS, cached token)
    gproxy = b.proxy(DELAY, upstream=b.graph.port, tls=True)
    gcfg = b.graph_config(url="https://127.0.0.1:%d/v1.0" % gproxy.port,
                          name="tokenmail-graph-delayed.yaml")
    turns, walls, conns_per_send = [], [], []
    for _ in range(3):
        n0 = len(gproxy.conns)
        r, reqs, entry, log, _ = b.graph_send(gcfg, small_msg)
        conns = gproxy.conns[n0:]
        for c in conns:
            c.done.wait(10)
            if c.bad:
                raise BenchError("graph turns: %s" % c.bad)
        if [e["op"] for e in reqs] != ["sendMail"] or not conns:
            raise BenchError("graph turns: requests %r over %d connections" % (
                [e["op"] for e in reqs], len(conns)))
        delivered["small"] += 1
        turns.append(sum(c.turns for c in conns))
        conns_per_send.append(len(conns))
        walls.append(r[1] * 1000)
        g["turns_seq"] = [c.turn_lines() for c in conns]
    g["turns"] = med(turns)
    g["turns_all"] = turns
    g["turns_conns"] = conns_per_send
    g["delayed_wall_ms"] = med(walls)

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
        ("graph small: turns (25 ms proxy)", "turns", "%.0f", 3),
        ("graph small: wall ms via 25 ms proxy", "delayed_wall_ms", "%.1f", None),
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
    print("graph turns per send (25 ms proxy, cached token): %s; connections per send %s"
          % (g["turns_all"], g["turns_conns"]))
    print("tokenmail token app (Graph scope), first fetch %.1f ms" % g["token_first_ms"])
    if a.turn_detail:
        print()
        print("turn sequence, graph small (one send; TLS records as in the SMTP part):")
        for i, seq in enumerate(g["turns_seq"]):
            print("  connection %d:" % (i + 1))
            for ln in seq:
                print("    " + ln)


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
        res[t]["big_rss_all_kb"] = [r[3] for r in rs]
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
        res[t]["big_app_bytes"] = c.app_bytes()
        res[t]["tls_version"] = "%04x" % c.tls_version if c.tls_version else None

    # ---- turns: a small message through the 25 ms delay proxy (CHUNKING)
    delayed = b.proxy(DELAY)
    viad = b.configs(delayed.port)
    for t in tools:
        o = b.smtp_turns(t, viad[t], msgs[t], delayed, b.smtp)
        expected[t] += len(o["turns_all"])
        res[t]["turns"] = med(o["turns_all"])
        res[t]["turns_all"] = o["turns_all"]
        res[t]["turns_seq"] = o["seq"]
        res[t]["smtp_round_trips"] = med(o["rt"])
        res[t]["delayed_wall_ms"] = med(o["walls"])
        res[t]["small_records"] = med(o["recs"])

    # ---- turns without CHUNKING: the second SMTP peer
    delayed_nc = b.proxy(DELAY, upstream=b.smtp_nc.port)
    viadn = b.configs(delayed_nc.port)
    for t in ("tokenmail", "msmtp"):
        o = b.smtp_turns(t, viadn[t], msgs[t], delayed_nc, b.smtp_nc)
        expected[t] += len(o["turns_all"])
        res[t]["nc_turns"] = med(o["turns_all"])
        res[t]["nc_turns_all"] = o["turns_all"]
        res[t]["nc_turns_seq"] = o["seq"]
        res[t]["nc_smtp_round_trips"] = med(o["rt"])
        res[t]["nc_delayed_wall_ms"] = med(o["walls"])

    # ---- a cold send: tokenmail with an empty token cache, the token
    # endpoint behind its own delay proxy (HTTPS: TLS from the first byte)
    tok_proxy = b.proxy(DELAY, upstream=b.token_peer.port, tls=True)
    tok_url = "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (tok_proxy.port, TENANT)
    cold = {"token": [], "smtp": [], "walls": [], "token_seq": None, "smtp_seq": None}
    for i in range(3):
        cfg = b.tm_config(delayed.port, tag="cold-%d" % i, token_url=tok_url,
                          cache="cache-cold-%d" % i)
        n0 = len(tok_proxy.conns)
        r, (c,) = b.via_proxy(delayed, lambda: b.send("tokenmail", cfg, msgs["tokenmail"]),
                              "tokenmail (cold send)")
        expected["tokenmail"] += 1
        tconns = tok_proxy.conns[n0:]
        if len(tconns) != 1:
            raise BenchError("tokenmail (cold send): %d connections to the token "
                             "endpoint, expected 1" % len(tconns))
        tconns[0].done.wait(10)
        if tconns[0].bad:
            raise BenchError("tokenmail (cold send), token endpoint: %s" % tconns[0].bad)
        cold["token"].append(tconns[0].turns)
        cold["smtp"].append(c.turns)
        cold["walls"].append(r[1] * 1000)
        cold["token_seq"] = tconns[0].turn_lines()
        cold["smtp_seq"] = c.turn_lines()
    tt = res["tokenmail"]
    tt["cold_token_turns"] = med(cold["token"])
    tt["cold_smtp_turns"] = med(cold["smtp"])
    tt["cold_token_turns_all"] = cold["token"]
    tt["cold_smtp_turns_all"] = cold["smtp"]
    tt["cold_wall_ms"] = med(cold["walls"])
    tt["cold_token_seq"] = cold["token_seq"]
    tt["cold_smtp_seq"] = cold["smtp_seq"]
    tt["cold_turns"] = "token %g + smtp %g" % (tt["cold_token_turns"], tt["cold_smtp_turns"])

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
                    help="exit 1 when a target of the targets block is not met "
                         "(those this run did not measure are left out)")
    ap.add_argument("--turn-detail", action="store_true",
                    help="print each turn of one connection per turn row "
                         "(who spoke, SMTP words, TLS records)")
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
            report_graph(res["graph"], a, width=LABEL_W)
        tg = targets(res, a)
        res["targets"] = [{"target": x[0], "limit": x[1], "measured": x[2], "met": x[3]}
                          for x in tg]
        print()
        report_targets(tg)
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
        missed = [x[0] for x in tg if x[3] is False]
        if a.require_target and missed:
            print("bench: FAILED: %d target(s) not met: %s" % (len(missed), "; ".join(missed)),
                  file=sys.stderr)
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
    print("SMTP peer: PIPELINING and CHUNKING (as Exchange Online); a second peer "
          "without CHUNKING for the \"no CHUNKING\" row")
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
        ("small: turns, no CHUNKING (25 ms proxy)", "nc_turns", "%.0f"),
        ("small: SMTP round trips (peer)", "smtp_round_trips", "%.0f"),
        ("small: wall ms via 25 ms proxy", "delayed_wall_ms", "%.1f"),
        ("small: client TLS records", "small_records", "%.0f"),
        ("cold send: turns", "cold_turns", "%s"),
        ("cold send: wall ms via 25 ms proxies", "cold_wall_ms", "%.1f"),
        ("big: wall ms", "big_wall_ms", "%.1f"),
        ("big: CPU ms user+sys", "big_cpu_ms", "%.1f"),
        ("big: peak RSS KB", "big_rss_kb", "%.0f"),
        ("big: client TLS records", "big_records", "%.0f"),
        ("big: avg app-data record bytes", "big_avg_record", "%.0f"),
        ("big: client application bytes", "big_app_bytes", "%.0f"),
        ("big: client bytes on the wire", "big_client_bytes", "%.0f"),
    ]

    def cell(fmt, v):
        return fmt % v if v is not None else "-"

    table = []
    for label, key, fmt in rows:
        tv, mv, cv = t.get(key), m.get(key), c.get(key)
        num = all(isinstance(x, (int, float)) for x in (tv, mv))
        ratio = ("%.3g" % (tv / mv)) if (num and mv) else "-"
        table.append((label, cell(fmt, tv), cell(fmt, mv), ratio, cell(fmt, cv)))
    w1 = max([11] + [len(r[1]) for r in table])
    print("%-*s %*s %11s %9s %11s" % (LABEL_W, "", w1, "tokenmail", "msmtp", "tm/msmtp",
                                       "msmtp-cat"))
    for r in table:
        print("%-*s %*s %11s %9s %11s" % (LABEL_W, r[0], w1, r[1], r[2], r[3], r[4]))
    print()
    print("tokenmail token app (cached token): %.2f ms wall, %.2f ms CPU; first fetch %.1f ms"
          % (t["token_cached_ms"], t["token_cached_cpu_ms"], t["token_first_ms"]))
    print("msmtp = passwordeval \"tokenmail token app\" (its figures include that process);"
          " msmtp-cat = passwordeval \"cat tokenfile\"")
    print("turns per connection: %s tokenmail, %s msmtp, %s msmtp-cat; no CHUNKING: "
          "%s tokenmail, %s msmtp" % (t["turns_all"], m["turns_all"], c["turns_all"],
                                      t["nc_turns_all"], m["nc_turns_all"]))
    print("SMTP round trips (peer), no CHUNKING: %g tokenmail, %g msmtp" % (
        t["nc_smtp_round_trips"], m["nc_smtp_round_trips"]))
    print("cold send turns per send: token %s + smtp %s (warm smtp: %s)" % (
        t["cold_token_turns_all"], t["cold_smtp_turns_all"], t["turns_all"]))
    if a.turn_detail:
        print()
        print("turn sequences (one connection each; C = client flight, S = server; "
              "TLS records: h handshake, c change cipher spec, a application data "
              "(=Fin: the client's TLS 1.3 Finished), x alert, with their lengths)")
        for title, seq in (
                ("tokenmail, CHUNKING", t["turns_seq"]),
                ("msmtp, CHUNKING offered", m["turns_seq"]),
                ("msmtp-cat, CHUNKING offered", c["turns_seq"]),
                ("tokenmail, no CHUNKING", t["nc_turns_seq"]),
                ("msmtp, no CHUNKING", m["nc_turns_seq"]),
                ("tokenmail cold send: token endpoint", t["cold_token_seq"]),
                ("tokenmail cold send: SMTP", t["cold_smtp_seq"])):
            print("  %s:" % title)
            for ln in seq:
                print("    " + ln)


def ceil_div(x, y):
    return -(-x // y)


def targets(res, a):
    """The issue's acceptance targets: [(what, target, measured, met)], met
    None when not measured in this run."""
    out = []
    t, m = res.get("tokenmail"), res.get("msmtp")

    def ratio_row(what, key, factor, strict=False):
        if not t or t.get(key) is None or not m.get(key):
            out.append((what, "", "not measured", None))
            return
        r = t[key] / m[key]
        out.append((what, "tm/msmtp %s %g" % ("<" if strict else "<=", factor),
                    "%.3g (%s / %s)" % (r, fmt_num(t[key]), fmt_num(m[key])),
                    r <= factor))

    ratio_row("small: wall per message <= 0.35 x msmtp's", "wall_ms", 0.35)
    ratio_row("small: CPU <= msmtp's", "cpu_ms", 1.0)
    ratio_row("small: peak RSS <= msmtp's", "rss_kb", 1.0)
    big = "big (%g MB)" % a.big_mb
    ratio_row(big + ": CPU <= 0.3 x msmtp's", "big_cpu_ms", 0.3)
    if t and t.get("big_records") is not None:
        ab = t.get("big_app_bytes")
        if ab is None:
            out.append((big + ": TLS records <= 1.1 x ceil(bytes/16384)", "",
                        "not measured (TLS %s, not 1.3)" % t.get("tls_version"), None))
        else:
            lim = 1.1 * ceil_div(ab, 16384)
            out.append((big + ": TLS records <= 1.1 x ceil(bytes/16384)",
                        "<= %.0f (bytes %d)" % (lim, ab), "%d (%.3g x)" % (
                            t["big_records"], t["big_records"] / lim), t["big_records"] <= lim))
        lim_kb = 10 * MB / 1024
        rss = max(t["big_rss_all_kb"])
        out.append((big + ": peak RSS < 10 MB", "< %.0f KB" % lim_kb,
                    "%d KB (max of %d)" % (rss, len(t["big_rss_all_kb"])), rss < lim_kb))
    else:
        out.append((big + ": TLS records <= 1.1 x ceil(bytes/16384)", "", "not measured", None))
        out.append((big + ": peak RSS < 10 MB", "", "not measured", None))
    if t and t.get("turns_all"):
        out.append(("turns, SMTP with CHUNKING <= 8 (msmtp: 10)", "<= 8",
                    "%d (per connection %s; msmtp %s)" % (
                        max(t["turns_all"]), t["turns_all"], m["turns_all"]),
                    max(t["turns_all"]) <= 8))
        out.append(("turns, SMTP without CHUNKING <= 9", "<= 9",
                    "%d (per connection %s; msmtp %s)" % (
                        max(t["nc_turns_all"]), t["nc_turns_all"], m["nc_turns_all"]),
                    max(t["nc_turns_all"]) <= 9))
        warm = set(t["turns_all"])
        same = set(t["cold_smtp_turns_all"]) == warm and len(warm) == 1
        out.append(("cold send adds exactly the token request's turns",
                    "smtp part = warm",
                    "token %s + smtp %s; warm smtp %s" % (
                        t["cold_token_turns_all"], t["cold_smtp_turns_all"],
                        t["turns_all"]), same))
    else:
        out.append(("turns, SMTP with CHUNKING <= 8 (msmtp: 10)", "", "not measured", None))
        out.append(("turns, SMTP without CHUNKING <= 9", "", "not measured", None))
        out.append(("cold send adds exactly the token request's turns", "", "not measured",
                    None))
    g = res.get("graph")
    if g:
        out.append(("graph: turns with a cached token <= 3", "<= 3",
                    "%d (per send %s)" % (max(g["turns_all"]), g["turns_all"]),
                    max(g["turns_all"]) <= 3))
        out.append(("graph big (%s octets): peak RSS < 0.75 x size + 10 MB"
                    % format(g["big_message_octets"], ","), "< %.0f KB" % g["target_kb"],
                    "%d KB (max of %d)" % (g["big_rss_max_kb"], len(g["big_rss_all_kb"])),
                    g["target_met"]))
    else:
        out.append(("graph: turns with a cached token <= 3", "", "not measured", None))
        out.append(("graph big: peak RSS < 0.75 x size + 10 MB", "", "not measured", None))
    return out


def fmt_num(v):
    return "%.0f" % v if abs(v) >= 1000 else "%.4g" % v


def report_targets(tg):
    print("targets (the issue's acceptance figures; MB = 10^6 octets, KB = 1024):")
    w = max(len(x[0]) for x in tg)
    for what, target, measured, met in tg:
        status = "met" if met else ("NOT MET" if met is not None else "-")
        print("  %-*s  %-8s %s%s" % (w, what, status, measured,
                                      ("  [target %s]" % target) if target else ""))


if __name__ == "__main__":
    sys.exit(main())
