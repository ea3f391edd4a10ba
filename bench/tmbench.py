"""tmbench: tokenmail against msmtp, one process per message, same peers.

Run by bench/run (which picks Debian's /usr/bin/python3 and checks msmtp).
Usage: tmbench.py [-n N] [--big-mb M] [--big-runs R] [--quick] [TOKENMAIL]

Everything runs on 127.0.0.1: tests/peers/token_peer.py (HTTPS token
endpoint), tests/peers/smtp_peer.py (STARTTLS, AUTH XOAUTH2, PIPELINING),
a fresh throwaway CA, and an in-process TCP proxy (counting and delaying).
See bench/README.md for what each figure means.
"""
import argparse
import json
import os
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


def yaml_value(v):
    if isinstance(v, int):
        return str(v)
    return json.dumps(v)


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
        self.token_peer = self.smtp = None

    # ---- setup
    def start(self):
        secret = self.ws.write("app.secret", SECRET + "\n")
        self.token_peer = tmtest.start_token_peer(
            self.ws, {"clients": {CLIENT: {"secret": SECRET, "tenant": TENANT}}})
        self.procs.append(self.token_peer.proc)
        self.smtp = tmtest.start_smtp_peer(
            self.ws, {"users": [USER], "capabilities": {"PIPELINING": True}},
            token_peer=self.token_peer)
        self.procs.append(self.smtp.proc)
        self.ca = self.token_peer.ca
        self.secret = secret

    def configs(self, port):
        """A tokenmail config and the msmtp configs for SMTP at 127.0.0.1:port."""
        tag = str(port)
        lines = ["tls_ca_file: %s" % yaml_value(self.ca),
                 "cache_dir: %s" % yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % yaml_value(os.path.join(self.dir, "tokenmail.log")),
                 "dead_letter: %s" % yaml_value(os.path.join(self.dir, "dead.letter")),
                 "timeout: 30",
                 "default_account: app",
                 "accounts:", "  app:",
                 "    senders: [%s]" % USER,
                 "    from: %s" % USER,
                 "    tenant: %s" % TENANT,
                 "    client_id: %s" % yaml_value(CLIENT),
                 "    client_secret_file: %s" % yaml_value(self.secret),
                 "    token_url: %s" % yaml_value(self.token_peer.url(TENANT)),
                 "    scope: %s" % yaml_value(SCOPE),
                 "    smtp: {host: \"127.0.0.1\", port: %d, tls: starttls, auth: xoauth2, "
                 "user: %s}" % (port, yaml_value(USER))]
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


def med(xs):
    return statistics.median(xs) if xs else float("nan")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("tokenmail", nargs="?")
    ap.add_argument("-n", type=int, default=100, help="small messages per tool (default 100)")
    ap.add_argument("--big-mb", type=float, default=20, help="big message size in MB (default 20)")
    ap.add_argument("--big-runs", type=int, default=3, help="big-message runs per tool (default 3)")
    ap.add_argument("--quick", action="store_true", help="smoke run: -n 10 --big-mb 2")
    ap.add_argument("--json", help="also write the raw figures to this file")
    a = ap.parse_args()
    if a.quick:
        a.n, a.big_mb = 10, 2
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
    res = {t: {} for t in tools}
    expected = {t: 0 for t in tools}
    started = time.monotonic()
    b = Bench(tm, a)
    try:
        b.start()
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
        if a.json:
            with open(a.json, "w") as f:
                json.dump(res, f, indent=1)
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
