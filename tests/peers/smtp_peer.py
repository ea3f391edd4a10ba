#!/usr/bin/python3
"""smtp_peer: a scriptable SMTP submission server for tokenmail's tests.

    smtp_peer.py CONFIG.json DIR

Listens on 127.0.0.1 at an ephemeral port and prints "PORT n" as its first
stdout line. Stop it with SIGTERM (then SIGKILL). By default it behaves like
smtp.office365.com:587 (PROTOCOL.md 3.2-3.6): the same EHLO list, AUTH only
after STARTTLS, Microsoft's reply texts, and the XOAUTH2 / OAUTHBEARER error
flows (334 + base64 JSON challenge, then 535 5.7.3 after the client's empty
line / "AQ==").

It is written on plain sockets and threads (one per connection) rather than
on aiosmtpd: the tests need byte-exact control of every reply, of the EHLO
list before and after TLS, of STARTTLS with odd TLS settings, of the SASL
error exchange, and faults aiosmtpd has no hook for (closing the connection
in the middle of DATA, never answering, answering the 101st RCPT with 452);
aiosmtpd would have had to be overridden nearly everywhere.

Everything the peer sees goes to DIR, one JSON object per line, each file
appended and flushed per entry (so it is complete whenever the client has
seen the reply that follows):

  transcript.jsonl  every client line and server reply, in order:
                    {t, conn, turn, dir: "C" | "S" | "*", tls, line}; "*" lines
                    are events (connect, tls ..., drop, stall, eof, data N bytes).
                    AUTH data is redacted ("<redacted N octets>"); a client line
                    sent in clear that carried AUTH data or a token has
                    "secret": true. "turn" counts request/response round trips
                    of the connection (client lines sent without waiting for a
                    reply share a turn); "pipelined": true marks a command that
                    was already buffered behind another; "read" (client
                    lines) numbers the recv() that brought the line's end, so
                    lines with the same "read" arrived in one read; "long": true a command
                    line over 512 octets with its CRLF.
  auth.jsonl        each AUTH attempt: {conn, tls, mech, ir (initial response
                    on the AUTH line), user, token_n (1-based index of the token
                    among the valid ones; 0 unknown), ok, reason, challenge_answer
                    (what the client sent after a 334 error challenge, redacted
                    when it was not "" or "AQ==")}
  messages.jsonl    each message accepted with 250 after the final dot or
                    BDAT LAST: {n, conn, tls, auth_user, mail_from,
                    mail_params {K: V}, rcpts [{addr, params}], size, sha256,
                    file ("msg-N.eml": the data exactly as received,
                    dot-stuffing undone, line ends as sent), bare_lf,
                    long_lines, eight_bit, and bdat_chunks (BDAT only)}
                    With CHUNKING offered, BDAT n [LAST] (RFC 3030) is taken:
                    the n octets are always read, then 503/554 without MAIL
                    or an accepted recipient; the DOT faults apply to LAST.

CONFIG (JSON), every key optional:
  mode            "starttls" (default) | "tls" (implicit, TLS from the first
                  byte) | "plain" (no TLS at all)
  cert, key       the server certificate and key (PEM; tlsca.py's server,
                  wronghost or untrusted pair). Required unless mode is plain.
  tls_versions    ["1.0"] to offer TLS 1.0 only; default 1.2 and 1.3
  hostname        the name in the greeting and EHLO (default "peer.test")
  capabilities    {SIZE: n | true | false, PIPELINING, DSN, ENHANCEDSTATUSCODES,
                  STARTTLS, 8BITMIME, BINARYMIME, CHUNKING, SMTPUTF8: bool}
                  (defaults: Exchange Online's list, SIZE 157286400; STARTTLS
                  is only ever offered before TLS in starttls mode). Without
                  ENHANCEDSTATUSCODES the x.y.z is cut from every reply.
  auth            mechanisms advertised, default ["XOAUTH2"]; [] = no AUTH
                  (and MAIL is then allowed without it). XOAUTH2 and
                  OAUTHBEARER are checked; others are only advertised.
  auth_before_tls true: advertise AUTH (and accept it) before STARTTLS too
  auth_failure    "challenge" (default: 334 JSON, then 535) | "direct" (535 at once)
  tokens          valid access tokens given directly
  token_log       the token peer's request log: every access_token it issued
                  is valid (read again at each AUTH)
  users           the accepted user names (XOAUTH2 user=, OAUTHBEARER a=);
                  absent: any
  require_tls     MAIL before TLS gets 530 5.7.0 (default: true unless plain)
  max_rcpts       answer 452 4.5.3 Too many recipients after N per transaction
  stall_seconds   how long a stall lasts at most (default 60)
  faults          [{stage, action, reply, rcpt, times, skip, after_bytes}]:
                  stage   GREETING EHLO STARTTLS AUTH MAIL RCPT DATA BODY DOT RSET QUIT
                  action  "reply" (default: send reply instead of the normal
                          answer), "drop" (close the connection, no reply),
                          "stall" (never answer), "reject" (AUTH: the failure
                          flow whatever the token); for fault tests also
                          "raw" (send data instead of the answer: malformed
                          or oversize replies), "drip" (send data like raw,
                          one octet every interval seconds, default 0.25,
                          for at most stall_seconds: a reply that never
                          ends), "truncate_tls" (hang up in the middle of a
                          TLS record: over TLS, the start of a record whose
                          header announces more than follows; at STARTTLS,
                          after the 220 and the client's hello, the start of
                          a handshake record)
                  data    raw and drip: the octets to send (a JSON string;
                          each character U+0000-U+00FF is one octet), repeat
                          times (default 1); raw with close: true hangs up
                          after them, with stall: true answers nothing more
                          (as stall), else the session goes on reading
                          commands
                  rcpt    RCPT only: the recipient address it applies to
                  times   how many times it fires in the peer's life (default
                          always); skip: let the first N matches pass
                  after_bytes  BODY drop: after that many data octets
"""
import base64
import datetime
import hashlib
import json
import os
import re
import signal
import socket
import socketserver
import ssl
import sys
import threading
import time
import warnings

READ_CHUNK = 65536
COMMAND_MAX = 512
IDLE_SECONDS = 120
DEFAULT_CAPS = {"SIZE": 157286400, "PIPELINING": True, "DSN": True,
                "ENHANCEDSTATUSCODES": True, "STARTTLS": True, "8BITMIME": True,
                "BINARYMIME": False, "CHUNKING": False, "SMTPUTF8": True}
SCOPE = "https://outlook.office365.com/.default"
XOAUTH2_CHALLENGE = {"status": "401", "schemes": "bearer", "scope": SCOPE}
OAUTHBEARER_CHALLENGE = {"status": "invalid_token", "schemes": "bearer", "scope": SCOPE}
AUTH_FAILED = "535 5.7.3 Authentication unsuccessful [peer.test]"
FAULT_STAGES = ("GREETING", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA", "BODY",
                "DOT", "RSET", "QUIT")
FAULT_ACTIONS = ("reply", "drop", "stall", "reject", "raw", "drip", "truncate_tls")


class Dropped(Exception):
    """The connection is over (client gone, or the peer dropped it)."""


class State:
    def __init__(self, config, directory):
        self.config = config
        self.dir = directory
        self.lock = threading.Lock()
        self.conns = 0
        self.messages = 0
        self.fault_hits = [0] * len(config.get("faults", []))
        self.caps = dict(DEFAULT_CAPS, **config.get("capabilities", {}))
        self.mode = config.get("mode", "starttls")
        self.auth = [m.upper() for m in config.get("auth", ["XOAUTH2"])]
        self.require_tls = config.get("require_tls", self.mode != "plain")
        self.hostname = config.get("hostname", "peer.test")
        self.ctx = None
        if self.mode != "plain":
            self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            if config.get("tls_versions") == ["1.0"]:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    self.ctx.minimum_version = ssl.TLSVersion.TLSv1
                    self.ctx.maximum_version = ssl.TLSVersion.TLSv1
                self.ctx.set_ciphers("ALL:@SECLEVEL=0")
            else:
                self.ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            self.ctx.load_cert_chain(config["cert"], config["key"])

    def write(self, name, entry):
        with self.lock:
            with open(os.path.join(self.dir, name), "a") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
                f.flush()

    def next_conn(self):
        with self.lock:
            self.conns += 1
            return self.conns

    def next_message(self):
        with self.lock:
            self.messages += 1
            return self.messages

    def valid_tokens(self):
        tokens = list(self.config.get("tokens", []))
        path = self.config.get("token_log")
        if path:
            try:
                with open(path) as f:
                    for line in f:
                        try:
                            entry = json.loads(line)
                        except ValueError:
                            continue
                        if entry.get("access_token"):
                            tokens.append(entry["access_token"])
            except FileNotFoundError:
                pass
        return tokens

    def fault(self, stage, rcpt=None):
        """The fault that fires now for stage (counting it), or None."""
        for i, f in enumerate(self.config.get("faults", [])):
            if f.get("stage", "").upper() != stage:
                continue
            if rcpt is not None and "rcpt" in f and f["rcpt"].lower() != rcpt.lower():
                continue
            with self.lock:
                self.fault_hits[i] += 1
                hit = self.fault_hits[i]
            if hit <= f.get("skip", 0):
                continue
            times = f.get("times")
            if times is not None and hit > f.get("skip", 0) + times:
                continue
            return f
        return None


def check_config(config):
    for f in config.get("faults", []):
        if f.get("stage", "").upper() not in FAULT_STAGES:
            return "unknown fault stage %r" % f.get("stage")
        action = f.get("action", "reply")
        if action not in FAULT_ACTIONS:
            return "unknown fault action %r" % action
        if action == "reply" and not re.match(r"^[2-5]\d\d[ -]", f.get("reply", "")):
            return "fault %r needs a reply such as '451 4.3.0 text'" % f
        if action == "reject" and f.get("stage", "").upper() != "AUTH":
            return "action reject is for stage AUTH only"
        if action in ("raw", "drip"):
            data = f.get("data")
            if not isinstance(data, str) or not data or any(ord(c) > 255 for c in data):
                return "fault %r needs data: a string of octets (U+0000-U+00FF)" % f
    if config.get("mode", "starttls") not in ("starttls", "tls", "plain"):
        return "unknown mode %r" % config.get("mode")
    if config.get("mode", "starttls") != "plain" and not (config.get("cert") and config.get("key")):
        return "cert and key are required unless mode is plain"
    return None


def parse_params(words):
    params = {}
    for w in words:
        k, eq, v = w.partition("=")
        params[k.upper()] = v if eq else True
    return params


def b64decode_or_none(text):
    try:
        return base64.b64decode(text, validate=True)
    except (ValueError, base64.binascii.Error):
        return None


class Session:
    def __init__(self, state, sock):
        self.state = state
        self.sock = sock
        self.n = state.next_conn()
        self.rbuf = bytearray()
        self.received = self.consumed = self.mark = 0
        self.tls = False
        self.turn = 0
        self.reads = 0         # successful recv() calls on this connection
        self.server_spoke = True
        self.helo = None
        self.extended = False
        self.auth = None       # {"user", "mech", "token_n"}
        self.bdat = None       # the message being received in BDAT chunks
        self.reset()

    def reset(self):
        self.mail_from = None
        self.mail_params = {}
        self.rcpts = []

    # ---- logging ----

    def log(self, direction, line, **extra):
        entry = {"t": round(time.time(), 6), "conn": self.n, "turn": self.turn,
                 "dir": direction, "tls": self.tls, "line": line}
        entry.update(extra)
        self.state.write("transcript.jsonl", entry)

    def event(self, text, **extra):
        self.log("*", text, **extra)

    # ---- I/O ----

    def fill(self, timeout=IDLE_SECONDS):
        self.sock.settimeout(timeout)
        try:
            data = self.sock.recv(READ_CHUNK)
        except socket.timeout:
            self.event("idle timeout")
            raise Dropped()
        except (OSError, ssl.SSLError) as e:
            self.event("read error: %s" % e)
            raise Dropped()
        if not data:
            self.event("eof")
            raise Dropped()
        self.rbuf += data
        self.received += len(data)
        self.reads += 1

    def raw_line(self, limit=1 << 20):
        """One line with its line end (CRLF or LF), as bytes."""
        while True:
            i = self.rbuf.find(b"\n")
            if i >= 0:
                line = bytes(self.rbuf[:i + 1])
                del self.rbuf[:i + 1]
                return line
            if len(self.rbuf) > limit:
                self.reply("500 5.5.2 Line too long")
                raise Dropped()
            self.fill()

    def client_line(self):
        """One client line (with its line end) and whether the client sent it
        before our last reply (pipelined). A line that arrived after our last
        reply starts a new round trip."""
        line = self.raw_line()
        self.consumed += len(line)
        pipelined = self.consumed <= self.mark
        if self.server_spoke and not pipelined:
            self.turn += 1
            self.server_spoke = False
        return line, pipelined

    def drain(self):
        """Take in whatever the client has sent already, without waiting."""
        try:
            self.sock.setblocking(False)
            while True:
                data = self.sock.recv(READ_CHUNK)
                if not data:
                    break
                self.rbuf += data
                self.received += len(data)
                self.reads += 1
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            pass
        except (OSError, ssl.SSLError):
            pass
        finally:
            try:
                self.sock.setblocking(True)
            except OSError:
                pass

    def send(self, data):
        self.drain()
        self.mark = self.received
        try:
            self.sock.sendall(data)
        except (OSError, ssl.SSLError) as e:
            self.event("write error: %s" % e)
            raise Dropped()
        self.server_spoke = True

    def reply(self, text):
        """Send a reply: text is one line or several joined with '\n'."""
        lines = text.split("\n")
        if not self.state.caps.get("ENHANCEDSTATUSCODES"):
            lines = [re.sub(r"^(\d\d\d[ -])[245]\.\d{1,3}\.\d{1,3} ", r"\1", l) for l in lines]
        out = b""
        for i, line in enumerate(lines):
            code, rest = line[:3], line[4:]
            sep = " " if i == len(lines) - 1 else "-"
            full = code + sep + rest
            self.log("S", full)
            out += full.encode("utf-8") + b"\r\n"
        self.send(out)

    def drop(self, why):
        self.event("drop: " + why)
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        raise Dropped()

    def stall(self, why):
        """Answer nothing; read (and discard) until the client gives up."""
        self.event("stall: " + why)
        start = time.monotonic()
        limit = self.state.config.get("stall_seconds", 60)
        while time.monotonic() - start < limit:
            try:
                self.sock.settimeout(max(0.1, limit - (time.monotonic() - start)))
                data = self.sock.recv(READ_CHUNK)
            except (OSError, ssl.SSLError):
                data = b""
            if not data:
                break
        self.event("stall ended after %.1f s" % (time.monotonic() - start))
        raise Dropped()

    def apply_fault(self, stage, rcpt=None):
        """Carry out a fault for stage: True when it answered (the caller stops)."""
        f = self.state.fault(stage, rcpt)
        if f is None:
            return False
        action = f.get("action", "reply")
        if action == "drop":
            self.drop("fault at " + stage)
        if action == "stall":
            self.stall("fault at " + stage)
        if action == "reject":
            return "reject"
        if action == "raw":
            data = f["data"].encode("latin-1") * int(f.get("repeat", 1))
            self.event("fault at %s: %d raw octets" % (stage, len(data)))
            self.send(data)
            if f.get("close"):
                self.drop("after raw octets at " + stage)
            if f.get("stall"):
                self.stall("after raw octets at " + stage)
            return True
        if action == "drip":
            self.drip(stage, f["data"].encode("latin-1") * int(f.get("repeat", 1)),
                      float(f.get("interval", 0.25)))
            return True
        if action == "truncate_tls":
            self.truncate_tls(stage)
        self.event("fault at %s: %s" % (stage, f["reply"]))
        self.reply(f["reply"])
        if f["reply"].startswith("421"):
            self.drop("after 421")
        return True

    def drip(self, stage, data, interval):
        """Send data one octet at a time, interval seconds apart, for at most
        stall_seconds."""
        self.event("fault at %s: dripping %d octets" % (stage, len(data)))
        start = time.monotonic()
        limit = self.state.config.get("stall_seconds", 60)
        for i in range(len(data)):
            if time.monotonic() - start > limit:
                break
            time.sleep(interval)
            try:
                self.sock.sendall(data[i:i + 1])
            except (OSError, ssl.SSLError) as e:
                self.event("write error: %s" % e)
                raise Dropped()
        self.server_spoke = True

    def truncate_tls(self, stage):
        """Hang up in the middle of a TLS record (see the fault action)."""
        if self.tls:
            # application_data, TLS 1.2 record version, 16384 octets announced
            record = b"\x17\x03\x03\x40\x00" + os.urandom(64)
        else:
            if stage == "STARTTLS":
                self.reply("220 2.0.0 SMTP server ready")
                try:
                    self.sock.settimeout(10)
                    self.sock.recv(READ_CHUNK)   # the client's hello
                except (OSError, ssl.SSLError):
                    pass
            # handshake, TLS 1.2 record version, 512 octets announced: a ServerHello cut short
            record = b"\x16\x03\x03\x02\x00\x02\x00\x01\xfc\x03\x03" + os.urandom(20)
        self.event("fault at %s: TLS record cut after %d octets" % (stage, len(record)))
        try:
            os.write(self.sock.fileno(), record)
        except OSError:
            pass
        self.drop("truncated TLS at " + stage)

    # ---- the session ----

    def run(self):
        self.event("connect", mode=self.state.mode)
        try:
            if self.state.mode == "tls":
                self.start_tls()
            if self.apply_fault("GREETING"):
                return
            now = datetime.datetime.now(datetime.timezone.utc)
            self.reply("220 %s Microsoft ESMTP MAIL Service ready at %s" % (
                self.state.hostname, now.strftime("%a, %d %b %Y %H:%M:%S +0000")))
            while True:
                raw, pending = self.client_line()
                if not self.command(raw, pending):
                    break
        except Dropped:
            pass
        finally:
            self.event("close")
            try:
                self.sock.close()
            except OSError:
                pass

    def start_tls(self):
        try:
            self.sock.settimeout(30)
            self.sock = self.state.ctx.wrap_socket(self.sock, server_side=True)
        except (OSError, ssl.SSLError) as e:
            self.event("tls failed: %s" % e)
            raise Dropped()
        self.tls = True
        self.event("tls %s %s" % (self.sock.version(), self.sock.cipher()[0]))

    def caps_lines(self):
        c = self.state.caps
        out = []
        if c.get("SIZE") is True:
            out.append("SIZE")
        elif c.get("SIZE"):
            out.append("SIZE %d" % c["SIZE"])
        for k in ("PIPELINING", "DSN", "ENHANCEDSTATUSCODES"):
            if c.get(k):
                out.append(k)
        if self.state.mode == "starttls" and not self.tls and c.get("STARTTLS"):
            out.append("STARTTLS")
        if self.state.auth and self.auth_allowed():
            out.append("AUTH " + " ".join(self.state.auth))
        for k in ("8BITMIME", "BINARYMIME", "CHUNKING", "SMTPUTF8"):
            if c.get(k):
                out.append(k)
        return out

    def auth_allowed(self):
        return self.tls or self.state.mode == "plain" or self.state.config.get("auth_before_tls")

    def log_command(self, raw, pending):
        text = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
        extra = {"read": self.reads}
        if pending:
            extra["pipelined"] = True
        if len(raw) > COMMAND_MAX:
            extra["long"] = True
        if not raw.endswith(b"\r\n"):
            extra["bare_lf"] = True
        verb = text.split(" ", 1)[0].upper()
        if verb == "AUTH":
            parts = text.split(" ")
            if len(parts) > 2:
                text = " ".join(parts[:2]) + " <redacted %d octets>" % len(parts[2])
                if not self.tls:
                    extra["secret"] = True
        elif self.contains_secret(text):
            extra["secret"] = True
            text = "<redacted line with a token>"
        self.log("C", text, **extra)

    def contains_secret(self, text):
        if "auth=Bearer" in text:
            return True
        dec = b64decode_or_none(text.strip()) if len(text.strip()) >= 16 else None
        if dec and b"auth=Bearer" in dec:
            return True
        return any(t and t in text for t in self.state.valid_tokens())

    def command(self, raw, pending):
        """Handle one command line; False ends the session."""
        self.log_command(raw, pending)
        text = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
        verb, _, arg = text.partition(" ")
        verb = verb.upper()
        handler = getattr(self, "do_" + verb, None)
        if handler is None:
            self.reply("500 5.3.3 Unrecognized command '%s'" % verb[:20])
            return True
        return handler(arg.strip()) is not False

    def do_EHLO(self, arg):
        if self.apply_fault("EHLO"):
            return
        self.helo = arg
        self.extended = True
        self.reset()
        lines = ["250 %s Hello [127.0.0.1]" % self.state.hostname]
        lines += ["250 " + c for c in self.caps_lines()]
        self.reply("\n".join(lines))

    def do_HELO(self, arg):
        self.helo = arg
        self.extended = False
        self.reset()
        self.reply("250 %s Hello [127.0.0.1]" % self.state.hostname)

    def do_STARTTLS(self, arg):
        if self.state.mode != "starttls" or self.tls or not self.state.caps.get("STARTTLS"):
            self.reply("500 5.3.3 Unrecognized command 'STARTTLS'")
            return
        if self.apply_fault("STARTTLS"):
            return
        self.reply("220 2.0.0 SMTP server ready")
        if self.rbuf:
            # Sent behind STARTTLS without waiting for its reply (and taken in
            # before the reply went out): what CVE-2011-0411 exploits.
            self.event("client sent %d octets after STARTTLS before the handshake: discarded"
                       % len(self.rbuf), injection=True)
            self.consumed += len(self.rbuf)
            self.rbuf.clear()
        self.start_tls()
        self.helo = None
        self.auth = None
        self.reset()

    def do_NOOP(self, arg):
        self.reply("250 2.0.0 OK")

    def do_RSET(self, arg):
        if self.apply_fault("RSET"):
            return
        self.bdat_abort()
        self.reset()
        self.reply("250 2.0.0 Resetting")

    def do_VRFY(self, arg):
        self.reply("252 2.1.5 Cannot VRFY user")

    def do_QUIT(self, arg):
        if self.apply_fault("QUIT"):
            return False
        self.reply("221 2.0.0 Service closing transmission channel")
        return False

    # ---- AUTH ----

    def do_AUTH(self, arg):
        words = arg.split(" ")
        mech = words[0].upper()
        if not self.helo:
            self.reply("503 5.5.2 Send hello first")
            return
        if self.auth:
            self.reply("503 5.5.2 Already authenticated")
            return
        if not self.auth_allowed() or mech not in self.state.auth:
            if not self.tls:
                self.state.write("auth.jsonl", {"conn": self.n, "tls": False, "mech": mech,
                                                "ir": len(words) > 1, "ok": False,
                                                "reason": "not offered"})
            self.reply("504 5.7.4 Unrecognized authentication type")
            return
        if mech not in ("XOAUTH2", "OAUTHBEARER"):
            self.reply("504 5.7.4 Unrecognized authentication type")
            return
        entry = {"conn": self.n, "tls": self.tls, "mech": mech, "ir": len(words) > 1}
        if len(words) > 1:
            blob = words[1]
        else:
            self.reply("334 ")
            raw, pending = self.client_line()
            blob = raw.rstrip(b"\r\n").decode("utf-8", "surrogateescape")
            self.log("C", "<redacted %d octets>" % len(blob),
                     **({"secret": True} if not self.tls else {}))
        if blob == "*":
            entry.update(ok=False, reason="aborted")
            self.state.write("auth.jsonl", entry)
            self.reply("501 5.7.0 Authentication aborted")
            return
        user, token, reason = self.parse_blob(mech, blob)
        entry["user"] = user
        tokens = self.state.valid_tokens()
        entry["token_n"] = tokens.index(token) + 1 if token in tokens else 0
        users = self.state.config.get("users")
        if reason is None and entry["token_n"] == 0:
            reason = "unknown token"
        if reason is None and users is not None and user not in users:
            reason = "wrong user"
        fault = self.apply_fault("AUTH")
        if fault is True:
            entry.update(ok=False, reason="scripted reply")
            self.state.write("auth.jsonl", entry)
            return
        if fault == "reject" and reason is None:
            reason = "scripted reject"
        if reason is None:
            entry.update(ok=True, reason="ok")
            self.state.write("auth.jsonl", entry)
            self.auth = {"user": user, "mech": mech, "token_n": entry["token_n"]}
            self.reply("235 2.7.0 Authentication successful")
            return
        entry.update(ok=False, reason=reason)
        if self.state.config.get("auth_failure", "challenge") == "challenge":
            challenge = XOAUTH2_CHALLENGE if mech == "XOAUTH2" else OAUTHBEARER_CHALLENGE
            self.reply("334 " + base64.b64encode(
                json.dumps(challenge, separators=(",", ":")).encode()).decode())
            raw, pending = self.client_line()
            answer = raw.rstrip(b"\r\n").decode("utf-8", "backslashreplace")
            shown = answer if answer in ("", "AQ==", "*") else "<redacted %d octets>" % len(answer)
            self.log("C", shown)
            entry["challenge_answer"] = shown
        self.state.write("auth.jsonl", entry)
        self.reply(AUTH_FAILED)

    @staticmethod
    def parse_blob(mech, blob):
        """(user, token, None) or (user?, token?, reason)."""
        dec = b64decode_or_none(blob)
        if dec is None:
            return None, None, "not base64"
        try:
            text = dec.decode("utf-8")
        except UnicodeDecodeError:
            return None, None, "not UTF-8"
        if mech == "XOAUTH2":
            m = re.match(r"^user=([^\x01]*)\x01auth=Bearer ([^\x01]+)\x01\x01$", text)
            if not m:
                return None, None, "malformed XOAUTH2 response"
            return m.group(1), m.group(2), None
        # OAUTHBEARER: gs2-header kvsep *kvpair kvsep (RFC 7628 3.1)
        m = re.match(r"^([ny]|p=[^,]*),(a=[^,]*)?,\x01((?:[A-Za-z]+=[^\x01]*\x01)*)\x01$", text)
        if not m:
            return None, None, "malformed OAUTHBEARER response"
        user = m.group(2)[2:].replace("=2C", ",").replace("=3D", "=") if m.group(2) else None
        kv = dict(p.split("=", 1) for p in m.group(3).split("\x01") if p)
        auth = kv.get("auth", "")
        if not auth.startswith("Bearer "):
            return user, None, "no auth=Bearer"
        return user, auth[len("Bearer "):], None

    # ---- the mail transaction ----

    def check_ready(self):
        if not self.helo:
            self.reply("503 5.5.2 Send hello first")
            return False
        if self.state.require_tls and not self.tls:
            self.reply("530 5.7.0 Must issue a STARTTLS command first")
            return False
        if self.state.auth and not self.auth:
            self.reply("530 5.7.57 Client not authenticated to send mail")
            return False
        return True

    @staticmethod
    def path_of(arg, prefix):
        m = re.match(r"^%s:\s*<([^>]*)>(.*)$" % prefix, arg, re.I)
        if not m:
            return None, None
        return m.group(1), m.group(2).split()

    def do_MAIL(self, arg):
        if not self.check_ready():
            return
        if self.mail_from is not None:
            self.reply("503 5.5.1 Sender already specified")
            return
        addr, words = self.path_of(arg, "FROM")
        if addr is None:
            self.reply("501 5.5.4 Invalid arguments")
            return
        params = parse_params(words)
        c = self.state.caps
        for k, v in params.items():
            ok = ((k == "SIZE" and c.get("SIZE")) or
                  (k == "BODY" and v in ("7BIT", "8BITMIME") and c.get("8BITMIME")) or
                  (k == "SMTPUTF8" and v is True and c.get("SMTPUTF8")) or
                  (k in ("RET", "ENVID") and c.get("DSN")))
            if not ok:
                self.reply("555 5.5.4 Unsupported parameter %s" % k)
                return
        limit = c.get("SIZE")
        if isinstance(limit, int) and not isinstance(limit, bool) and limit and \
                "SIZE" in params and int(params["SIZE"]) > limit:
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
            return
        if not addr.isascii() and "SMTPUTF8" not in params:
            self.reply("553 5.6.7 Non-ASCII address without SMTPUTF8")
            return
        if self.apply_fault("MAIL"):
            return
        self.mail_from = addr
        self.mail_params = params
        self.reply("250 2.1.0 Sender OK")

    def do_RCPT(self, arg):
        if self.mail_from is None:
            self.reply("503 5.5.1 Need MAIL command")
            return
        addr, words = self.path_of(arg, "TO")
        if addr is None or not addr:
            self.reply("501 5.1.3 Invalid address")
            return
        params = parse_params(words)
        for k in params:
            if k not in ("NOTIFY", "ORCPT") or not self.state.caps.get("DSN"):
                self.reply("555 5.5.4 Unsupported parameter %s" % k)
                return
        if not addr.isascii() and "SMTPUTF8" not in self.mail_params:
            self.reply("553 5.6.7 Non-ASCII address without SMTPUTF8")
            return
        limit = self.state.config.get("max_rcpts")
        if limit is not None and len(self.rcpts) >= limit:
            self.reply("452 4.5.3 Too many recipients")
            return
        if self.apply_fault("RCPT", addr):
            return
        self.rcpts.append({"addr": addr, "params": params})
        self.reply("250 2.1.5 Recipient OK")

    def do_DATA(self, arg):
        if self.mail_from is None:
            self.reply("503 5.5.1 Need MAIL command")
            return
        if not self.rcpts:
            self.reply("554 5.5.1 No valid recipients")
            return
        if self.apply_fault("DATA"):
            return
        self.reply("354 Start mail input; end with <CRLF>.<CRLF>")
        self.receive_data()

    def receive_data(self):
        n = self.state.next_message()
        name = "msg-%d.eml" % n
        part = os.path.join(self.state.dir, name + ".part")
        stats = DataStats()
        body_fault = self.state.fault("BODY")
        drop_after = body_fault.get("after_bytes", 0) if body_fault else None
        with open(part, "wb") as out:
            while True:
                line = self.raw_line(limit=1 << 24)
                self.consumed += len(line)
                if drop_after is not None and stats.size + len(line) > drop_after:
                    self.event("data %d octets, %d lines so far" % (stats.size, stats.lines))
                    out.close()
                    os.unlink(part)
                    self.drop("fault at BODY after %d octets" % stats.size)
                if line in (b".\r\n", b".\n"):
                    if line == b".\n":
                        stats.bare_lf = True
                    break
                if line.startswith(b"."):
                    line = line[1:]
                stats.add_line(line)
                out.write(line)
        self.turn += 1
        self.server_spoke = False
        self.event("data %d octets, %d lines" % (stats.size, stats.lines))
        self.finish_message(n, part, stats, {})

    def finish_message(self, n, part, stats, extra):
        """The end of the data (final dot or BDAT LAST): the DOT faults and
        the size limit, else 250 and the message in messages.jsonl."""
        try:
            fault = self.apply_fault("DOT")
        except Dropped:
            os.unlink(part)
            raise
        limit = self.state.caps.get("SIZE")
        if not fault and isinstance(limit, int) and not isinstance(limit, bool) and limit \
                and stats.size > limit:
            self.reply("552 5.3.4 Message size exceeds fixed maximum message size")
            fault = True
        if fault:
            os.unlink(part)
            self.reset()
            return
        name = "msg-%d.eml" % n
        os.rename(part, os.path.join(self.state.dir, name))
        entry = {
            "n": n, "conn": self.n, "tls": self.tls,
            "auth_user": self.auth and self.auth["user"],
            "token_n": self.auth and self.auth["token_n"],
            "mail_from": self.mail_from, "mail_params": self.mail_params,
            "rcpts": self.rcpts, "size": stats.size, "sha256": stats.hash.hexdigest(),
            "file": name, "bare_lf": stats.bare_lf, "long_lines": stats.long_lines,
            "eight_bit": stats.eight_bit}
        entry.update(extra)
        self.state.write("messages.jsonl", entry)
        self.reset()
        self.reply("250 2.0.0 OK <%032x@peer.test> [Hostname=peer.test]" % n)

    # ---- CHUNKING (RFC 3030) ----

    def read_chunk(self, size, out):
        """Take exactly size octets of BDAT data, writing them to out (a file
        or None) in pieces; returns them split into lines for the stats."""
        left = size
        tail = b""
        lines = []
        while left > 0:
            if not self.rbuf:
                self.fill()
            piece = bytes(self.rbuf[:left])
            del self.rbuf[:len(piece)]
            left -= len(piece)
            self.consumed += len(piece)
            if out is not None:
                out.write(piece)
                tail += piece
                cut = tail.rfind(b"\n") + 1
                lines.extend(tail[:cut].splitlines(keepends=True))
                tail = tail[cut:]
        return lines, tail

    def do_BDAT(self, arg):
        m = re.match(r"^(\d{1,12})(?: +(LAST))?$", arg, re.I)
        if not self.state.caps.get("CHUNKING"):
            self.reply("500 5.3.3 Unrecognized command 'BDAT'")
            return
        if not m:
            self.reply("501 5.5.4 Invalid arguments")
            return False
        size, last = int(m.group(1)), m.group(2) is not None
        refusal = None
        if self.mail_from is None:
            refusal = "503 5.5.1 Need MAIL command"
        elif not self.rcpts:
            refusal = "554 5.5.1 No valid recipients"
        if refusal is not None:
            # RFC 3030 2: the chunk is read whatever the reply.
            self.read_chunk(size, None)
            self.event("bdat %d octets refused" % size)
            self.bdat_abort()
            self.reply(refusal)
            return
        if self.bdat is None:
            n = self.state.next_message()
            part = os.path.join(self.state.dir, "msg-%d.eml.part" % n)
            self.bdat = {"n": n, "part": part, "out": open(part, "wb"), "stats": DataStats(),
                         "tail": b"", "chunks": 0}
        b = self.bdat
        lines, tail = self.read_chunk(size, b["out"])
        b["chunks"] += 1
        if lines:
            lines[0] = b["tail"] + lines[0]
            b["tail"] = tail
        else:
            b["tail"] += tail
        for line in lines:
            b["stats"].add_line(line)
        self.event("bdat %d octets%s" % (size, " last" if last else ""))
        if not last:
            self.reply("250 2.0.0 %d octets received" % size)
            return
        if b["tail"]:
            b["stats"].add_line(b["tail"])
        b["out"].close()
        self.bdat = None
        self.finish_message(b["n"], b["part"], b["stats"], {"bdat_chunks": b["chunks"]})

    def bdat_abort(self):
        b = self.bdat
        if b is not None:
            b["out"].close()
            os.unlink(b["part"])
            self.bdat = None


class DataStats:
    """What messages.jsonl says of the data: size, sha256, lines."""

    def __init__(self):
        self.hash = hashlib.sha256()
        self.size = self.lines = self.long_lines = 0
        self.bare_lf = self.eight_bit = False

    def add_line(self, line):
        if not line.endswith(b"\r\n"):
            self.bare_lf = True
        if len(line) > 1000:
            self.long_lines += 1
        if not self.eight_bit and any(b > 127 for b in line):
            self.eight_bit = True
        self.hash.update(line)
        self.size += len(line)
        self.lines += 1


class Handler(socketserver.BaseRequestHandler):
    state = None

    def handle(self):
        # Like a real MTA: replies leave at once (no Nagle delay waiting for
        # the client's delayed ACK when a reply is sent in several writes).
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        Session(self.state, self.request).run()


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv):
    if len(argv) != 3:
        print("usage: smtp_peer.py CONFIG.json DIR", file=sys.stderr)
        return 64
    with open(argv[1]) as f:
        config = json.load(f)
    problem = check_config(config)
    if problem:
        print("smtp_peer: " + problem, file=sys.stderr)
        return 64
    os.makedirs(argv[2], exist_ok=True)
    state = State(config, argv[2])
    for name in ("transcript.jsonl", "auth.jsonl", "messages.jsonl"):
        open(os.path.join(argv[2], name), "a").close()
    Handler.state = state
    server = Server(("127.0.0.1", 0), Handler)
    signal.signal(signal.SIGTERM, lambda *a: os._exit(0))
    print("PORT %d" % server.server_address[1], flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
