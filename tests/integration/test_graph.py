"""Microsoft Graph delivery: the built binary, run as callers run sendmail
(no --dry-run), against the fake Graph API (tests/peers/graph_peer.py) and
the fake token endpoint (tests/peers/token_peer.py), both over TLS with a
throwaway CA.

Each test starts its own peers and stops them (by PID) when it ends. It
checks the exit code, stderr (exactly, where the design fixes the text),
the requests the Graph peer got (operation, mailbox, token, the
client-request-id of the log line, body sizes, upload ranges), the bytes it
delivered (the copy without Bcc and the Sent Items copy), the log line, the
dead letter, and that no token or secret was printed, logged or sent to
Graph. Retries are kept short: retry {attempts: 2, max_seconds: 30},
timeout 10. Large messages (12 and 40 MB attachments) are made at test time
from a seeded random generator.
TM_SHOW_ERR=1 prints each failure's stderr as TAP comments.
"""
import base64
import email
import email.header
import email.policy
import email.utils
import hashlib
import json
import os
import random
import re
import subprocess
import time
import urllib.parse

from tmtest import (DATE_RE, MSGID_RE, TOKENMAIL, DryRun, Result, Workspace, crlf, eq, lf,
                    match, run_all, start_token_peer, test)
from tmtest import close_env, dead_letter_messages, file_text, start_graph_peer, yaml_value

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000d4"
PUBLIC = "6f1c1a7e-0000-4000-8000-0000000000e5"
SECRET = "Abc8Q~graph-s3cret"
FIRST_RT = "0.AR8A-graph-refresh-token-from-another-helper"
SCOPE = "https://graph.microsoft.com/.default"
DELEGATED_SCOPE = "https://graph.microsoft.com/Mail.Send offline_access"
USER = "app@example.com"
USER_PATH = "app%40example.com"
ATTEMPTS = 2
MAX_SECONDS = 30
REQUEST_LIMIT = 4 * 1024 * 1024       # Graph's single request limit (4 MiB)
SMALL_ATTACHMENT = 3 * 1024 * 1024    # below: POST .../attachments; else an upload session
CHUNK = 10 * 320 * 1024               # upload chunk (the design's choice)
RUN_TIMEOUT = 90
GUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"
ALIASES = "aliases:\n  root: ops@example.com\n  postmaster: root\n"


class Env:
    """A workspace, a token peer, a Graph peer and a config whose account
    "app" (method graph) points at them. graph: the Graph peer's config
    (faults, mailboxes, ...); graph_keys: extra keys of accounts.app.graph
    (max_size, save_to_sent_items); account: keys of accounts.app to change
    (a value None drops the key); delegated: grant refresh_token through a
    public client; top: extra top-level config lines. Stops both peers and
    removes the workspace at the end, whatever happens."""

    def __init__(self, graph=None, graph_keys=None, account=None, delegated=False,
                 timeout=10, top=""):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.token_peer = self.graph = None
        self.delegated = delegated
        try:
            self.secret_file = self.ws.write("app.secret", SECRET + "\n")
            self.rt_file = self.ws.write("app.refresh", FIRST_RT + "\n")
            self.token_peer = start_token_peer(self.ws, {"clients": {
                CLIENT: {"secret": SECRET, "tenant": TENANT},
                PUBLIC: {"public": True, "tenant": TENANT, "refresh_tokens": [FIRST_RT]}}})
            config = {"mailboxes": [USER]}
            config.update(graph or {})
            self.graph = start_graph_peer(self.ws, config, token_peer=self.token_peer)
            self.dead_letter = os.path.join(self.dir, "dead.letter")
            self.log_file = os.path.join(self.dir, "tokenmail.log")
            self.write_config(graph_keys or {}, account or {}, timeout, top)
        except BaseException:
            self.close()
            raise

    def write_config(self, graph_keys, over, timeout, top):
        graph = {"url": self.graph.url}
        graph.update(graph_keys)
        account = {"senders": "[%s]" % USER, "from": USER, "method": "graph", "tenant": TENANT,
                   "client_id": CLIENT, "client_secret_file": self.secret_file,
                   "token_url": self.token_peer.url(TENANT), "scope": SCOPE}
        if self.delegated:
            del account["client_secret_file"]
            account.update({"grant": "refresh_token", "client_id": PUBLIC,
                            "refresh_token_file": self.rt_file, "scope": DELEGATED_SCOPE})
        account.update(over)
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % yaml_value(self.log_file),
                 "dead_letter: %s" % yaml_value(self.dead_letter),
                 "retry: {attempts: %d, max_seconds: %d}" % (ATTEMPTS, MAX_SECONDS),
                 "timeout: %d" % timeout,
                 "default_account: app"]
        lines += [line for line in top.splitlines() if line.strip()]
        lines += ["accounts:", "  app:"]
        for k, v in account.items():
            if v is None:
                continue
            lines.append("    %s: %s" % (k, v if k == "senders" else yaml_value(v)))
        lines.append("    graph: {%s}" % ", ".join("%s: %s" % (k, yaml_value(v))
                                                   for k, v in graph.items()))
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def send(self, args, stdin, timeout=RUN_TIMEOUT):
        """sendmail -C config ARGS < stdin, as a caller runs it; .elapsed set."""
        argv = ["/usr/sbin/sendmail", "-C", self.ws.config] + list(args)
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.dir}
        start = time.monotonic()
        p = subprocess.run(argv, executable=TOKENMAIL, input=stdin, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=timeout)
        r = Result(p.returncode, p.stdout, p.stderr)
        r.elapsed = time.monotonic() - start
        return r

    def dry(self, args, stdin):
        r = self.ws.run(["--dry-run"] + list(args), stdin)
        eq(r.rc, 0, "dry run %r" % r)
        return DryRun(r.out)

    # ---- what the peers saw

    def requests(self, **where):
        return self.graph.requests(**where)

    def ops(self):
        return [e["op"] for e in self.requests()]

    def sent(self):
        return self.graph.sent()

    def token_requests(self):
        return self.token_peer.requests(endpoint="token")

    def issued(self):
        """Every access and refresh token the token peer handed out or knew."""
        out = [FIRST_RT]
        for e in self.token_requests():
            out += [e[k] for k in ("access_token", "refresh_token") if e.get(k)]
        return out

    def dead(self):
        """The dead letter's messages [(From line, bytes)], or []."""
        return dead_letter_messages(self.dead_letter)

    def log_text(self):
        return file_text(self.log_file)

    def log_lines(self):
        return self.log_text().splitlines()

    def peer_files_text(self):
        """Everything the Graph peer logged (requests, messages, drafts)."""
        text = ""
        d = getattr(self.graph, "dir", None)
        if d and os.path.isdir(d):
            for name in sorted(os.listdir(d)):
                if name.endswith(".jsonl"):
                    with open(os.path.join(d, name), "rb") as f:
                        text += f.read().decode("utf-8", "replace")
        else:
            text = json.dumps(self.requests())
        return text

    def close(self):
        close_env(self.ws, self.graph, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ message helpers

def split_message(data):
    head, sep, body = data.partition(b"\r\n\r\n")
    assert sep, "no empty line after the header: %r" % data[:300]
    return head, body


def fields(data):
    """The header's fields [(lowercase name, raw bytes with folding)] of a
    CRLF message."""
    head, _ = split_message(data)
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + b"\r\n" + line)
            continue
        name = line.partition(b":")[0].strip().lower().decode("ascii", "replace")
        out.append((name, line))
    return out


def field_value(raw):
    """A raw field's value, unfolded, as text."""
    value = raw.partition(b":")[2]
    value = re.sub(rb"\r\n([ \t])", rb"\1", value).strip()
    return value.decode("utf-8", "replace")


def header_values(data, name):
    return [field_value(raw) for n, raw in fields(data) if n == name.lower()]


def header_value(data, name):
    values = header_values(data, name)
    assert len(values) == 1, "%s: %r" % (name, values)
    return values[0]


def addresses(data, *names):
    """(display name, lowercase addr-spec) of every address in the named fields."""
    values = [v for n in names for v in header_values(data, n)]
    return [(d, a.lower()) for d, a in email.utils.getaddresses(values)]


def addr_specs(data, *names):
    return [a for _, a in addresses(data, *names)]


def body_of(stdin):
    sep = b"\n\n" if b"\n\n" in stdin else b"\r\n\r\n"
    return crlf(stdin.partition(sep)[2])


def check_header(data, stdin, drop=(), rewritten=None, what="header"):
    """data's header is the input's (line ends CRLF) field by field, in
    order, byte for byte, except: fields named in drop are gone; fields in
    rewritten (name -> [(display name, addr-spec)]) carry those addresses;
    Date and Message-ID, when the input has none, are added once each."""
    rewritten = {k.lower(): v for k, v in (rewritten or {}).items()}
    drop = [d.lower() for d in drop]
    want = [f for f in fields(crlf(stdin)) if f[0] not in drop]
    given = {n for n, _ in want}
    got = fields(data)
    for name, pattern in (("date", DATE_RE), ("message-id", MSGID_RE)):
        if name not in given:
            values = [raw for n, raw in got if n == name]
            eq(len(values), 1, "%s: one added: %r" % (name, values))
            match(pattern, field_value(values[0]), name)
    got = [f for f in got if f[0] in given or f[0] not in ("date", "message-id")]
    eq([n for n, _ in got], [n for n, _ in want], what + ": the fields in order")
    for (name, raw), (_, want_raw) in zip(got, want):
        if name in rewritten:
            eq([(d, a.lower()) for d, a in email.utils.getaddresses([field_value(raw)])],
               rewritten[name], "%s: %s rewritten" % (what, name))
        else:
            eq(raw, want_raw, "%s: field %s byte-identical" % (what, name))


def parsed(data):
    return email.message_from_bytes(data, policy=email.policy.compat32)


def leaf_parts(msg):
    """[(content type, filename or None, decoded bytes)] of every leaf part."""
    out = []
    for part in msg.walk():
        if part.is_multipart():
            continue
        out.append((part.get_content_type(), part.get_filename(),
                    part.get_payload(decode=True)))
    return out


def attachments_of(data):
    """{filename: (content type, sha256 of the decoded bytes, size)}."""
    out = {}
    for ctype, name, payload in leaf_parts(parsed(data)):
        if name:
            assert name not in out, "attachment %s twice" % name
            out[name] = (ctype, hashlib.sha256(payload).hexdigest(), len(payload))
    return out


def texts_of(data):
    """[(content type, decoded bytes)] of the text parts without a filename."""
    return [(c, p) for c, n, p in leaf_parts(parsed(data))
            if c.startswith("text/") and not n]


# ------------------------------------------------------------ messages

MSG = (b"From: App Robot <app@example.com>\n"
       b"To: Bob <bob@example.org>\n"
       b"Cc: carol@example.net\n"
       b"Subject: nightly report\n"
       b"\n"
       b"Hello Bob,\n"
       b"From the nightly job: all good.\n"
       b".\n"
       b">From here it is quoted\n"
       b"\n"
       b"-- \n"
       b"cron\n")
MSG_RCPTS = ["bob@example.org", "carol@example.net"]

BCC_MSG = (b"From: App Robot <app@example.com>\n"
           b"To: Bob <bob@example.org>\n"
           b"Cc: carol@example.net\n"
           b"Bcc: Hidden <hidden@example.net>, other@example.net\n"
           b"Subject: with bcc\n"
           b"\n"
           b"secret copies\n")

CRON_HEADER = (b"From: root (Cron Daemon)\nTo: root\n"
               b"Subject: Cron <root@vm> /usr/local/bin/job\n"
               b"MIME-Version: 1.0\nContent-Type: text/plain; charset=UTF-8\n"
               b"Content-Transfer-Encoding: 8bit\n"
               b"X-Cron-Env: <SHELL=/bin/sh>\nX-Cron-Env: <HOME=/root>\n\n")

PDF = (b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n" +
       bytes(range(256)) * 8 + b"\nstartxref\n0\n%%EOF\n")


def b64_lines(data):
    return base64.encodebytes(data)  # 76 characters a line, LF ends


def qp(text):
    import quopri
    return quopri.encodestring(text.encode("utf-8"))


def mime_message(subject, text, attachments=(), html=None, headers=b""):
    """A multipart/mixed message (LF line ends): the text (and html as a
    multipart/alternative), then each attachment (name, content type,
    bytes[, "inline", content id]) base64-encoded."""
    out = [b"From: App Robot <app@example.com>\n",
           b"To: Bob <bob@example.org>\n",
           b"Subject: " + subject.encode() + b"\n", headers,
           b"MIME-Version: 1.0\n",
           b'Content-Type: multipart/mixed; boundary="=_mix_7d3f0a"\n',
           b"\n",
           b"This is a multi-part message in MIME format.\n",
           b"\n",
           b"--=_mix_7d3f0a\n"]
    if html is not None:
        out += [b'Content-Type: multipart/alternative; boundary="=_alt_19c2"\n', b"\n",
                b"--=_alt_19c2\n"]
    out += [b"Content-Type: text/plain; charset=utf-8\n",
            b"Content-Transfer-Encoding: quoted-printable\n", b"\n", qp(text)]
    if html is not None:
        out += [b"--=_alt_19c2\n", b"Content-Type: text/html; charset=utf-8\n",
                b"Content-Transfer-Encoding: quoted-printable\n", b"\n", qp(html),
                b"--=_alt_19c2--\n", b"\n"]
    for a in attachments:
        name, ctype, data = a[:3]
        disp = a[3] if len(a) > 3 else "attachment"
        if name.isascii():
            ct_name, filename = '"%s"' % name, 'filename="%s"' % name
        else:  # RFC 2047 in name=, RFC 2231 in filename*=, as mail clients write them
            ct_name = '"%s"' % email.header.Header(name, "utf-8").encode()
            filename = "filename*=UTF-8''" + urllib.parse.quote(name, safe="")
        out += [b"--=_mix_7d3f0a\n",
                ("Content-Type: %s; name=%s\n" % (ctype, ct_name)).encode(),
                ("Content-Disposition: %s; %s\n" % (disp, filename)).encode()]
        if len(a) > 4:
            out.append(("Content-ID: <%s>\n" % a[4]).encode())
        out += [b"Content-Transfer-Encoding: base64\n", b"\n", b64_lines(data)]
    out.append(b"--=_mix_7d3f0a--\n")
    return b"".join(out)


def random_bytes(seed, n):
    return random.Random(seed).randbytes(n)


# ------------------------------------------------------------ checks

def show_err(r):
    if os.environ.get("TM_SHOW_ERR"):
        print("# " + r.err.replace("\n", "\n# "))


def secrets_leaked(env, r):
    """Any token, refresh token or the client secret in stderr, stdout, the
    log, or anything the Graph peer logged."""
    text = (r.err + r.out.decode("utf-8", "replace") + env.log_text() +
            env.peer_files_text())
    return [t[:12] for t in env.issued() + [SECRET] if t and t in text]


def check_request_common(env, reqs, delegated=False, valid_token=True):
    """Every Graph request of one message: the same lowercase GUID v4 as
    client-request-id, return-client-request-id, a bearer token (a valid
    one unless valid_token is False; none on upload URLs), a body within the
    single request limit."""
    ids = {e["client_request_id"] for e in reqs}
    eq(len(ids), 1, "one client-request-id for the message: %r" % ids)
    rid = ids.pop()
    match(r"^%s$" % GUID_RE, rid or "", "client-request-id a lowercase GUID v4")
    for e in reqs:
        eq(e["return_client_request_id"] in (True, "true"), True,
           "return-client-request-id on %s %r" % (e["op"], e))
        if e["op"] in ("upload", "uploadStatus"):
            eq(e["auth"], "none", "no Authorization on the upload URL: %r" % e)
        else:
            eq(e["auth"], "bearer", "bearer token on %s" % e["op"])
            if valid_token:
                eq(e["token_n"] > 0, True, "a valid token on %r" % e)
                eq(e["grant"], "refresh_token" if delegated else "client_credentials",
                   "token grant on %s" % e["op"])
            eq(e["via"], "me" if delegated else "users", "via on %s" % e["op"])
            eq(e["mailbox"].lower(), USER, "mailbox on %s" % e["op"])
        assert (e.get("body_len") or 0) <= REQUEST_LIMIT, \
            "%s body of %d octets (limit %d)" % (e["op"], e["body_len"], REQUEST_LIMIT)
    return rid


def prefix(delegated=False):
    return "/v1.0/me" if delegated else "/v1.0/users/" + USER_PATH


def path_ok(e, suffix, delegated=False):
    """The request's path (as sent: '@' percent-encoded) is PREFIX + suffix."""
    eq(e["path"], prefix(delegated) + suffix, "request path")


def log_ok(env, r, rcpts, rid, size=None, msgid=None):
    """One log line: account, method graph, sender, recipients, size,
    msgid, result=sent, reply="202 Accepted", request-id= the requests'."""
    lines = env.log_lines()
    eq(len(lines), 1, "one log line: %r" % lines)
    m = re.match(r"^\S+ tokenmail\[\d+\]: account=app method=graph from=<app@example\.com> "
                 r"to=(\S+) size=(\d+) msgid=(<[^>\s]+>) result=sent reply=\"202 Accepted\" "
                 r"request-id=(%s) duration=\d+\.\d\ds exit=0$" % GUID_RE, lines[0])
    assert m, "log line %r" % lines[0]
    eq(sorted(m.group(1).split(",")), sorted("<%s>" % a for a in rcpts), "log to=")
    eq(m.group(4), rid, "log request-id= the client-request-id")
    if size is not None:
        eq(int(m.group(2)), size, "log size= the octets transmitted")
    if msgid is not None:
        eq(m.group(3), msgid, "log msgid=")


def one_sendmail(env, r, rcpts, delegated=False, token_n=1, tokens=1):
    """rc 0, quiet, exactly one POST .../sendMail (202, text/plain), one
    message delivered to rcpts, the log line. Returns (sent entry,
    delivered bytes, sent-items bytes, request)."""
    if r.rc:
        show_err(r)
    eq(r.rc, 0, "exit code: %r" % r)
    eq(r.err, "", "stderr")
    eq(r.out, b"", "stdout")
    reqs = env.requests()
    eq([e["op"] for e in reqs], ["sendMail"], "requests")
    e = reqs[0]
    eq(e["method"], "POST")
    path_ok(e, "/sendMail", delegated)
    eq(e["content_type"], "text/plain", "Content-Type")
    eq(e["status"], 202, "answer")
    eq(e["token_n"], token_n, "the token the token peer issued")
    rid = check_request_common(env, reqs, delegated)
    sent = env.sent()
    eq(len(sent), 1, "messages sent: %r" % sent)
    s = sent[0]
    eq(s["op"], "sendMail")
    eq(s["mailbox"].lower(), USER)
    eq(s["via"], "me" if delegated else "users")
    eq(sorted(s["recipients"]), sorted(rcpts), "Graph's recipients")
    eq(s["client_request_id"], rid)
    delivered = env.graph.sent_data(s)
    items = env.graph.sent_items_data(s)
    eq(header_values(delivered, "Bcc"), [], "no Bcc in the delivered copy")
    eq(e["body_len"], 4 * ((len(items) + 2) // 3),
       "the body is the one-line base64 of the message (%d octets)" % len(items))
    eq(len(env.token_requests()), tokens, "token requests")
    eq(env.dead(), [], "dead letter")
    eq(secrets_leaked(env, r), [], "token or secret printed, logged or sent")
    log_ok(env, r, rcpts, rid, size=len(items), msgid=header_value(items, "Message-ID"))
    return s, delivered, items, e


def log_rcpts(env):
    """The envelope recipients as the log line shows them (from its to=)."""
    m = re.search(r" to=(\S+) ", env.log_text())
    return [a.strip("<>") for a in m.group(1).split(",")] if m else []


def refused(env, r, rc, first, server=None, hint=None, stdin=None, detail=None,
            sent=0, first_is_regex=False, valid_token=True):
    """Exit rc; stderr's first line exactly first (a regex with
    first_is_regex); the "  server: " line exactly server; a hint line
    containing hint; a line starting with detail; the dead letter named and
    holding the input; nothing sent; the log line's result and request-id;
    no secret anywhere."""
    show_err(r)
    eq(r.rc, rc, "exit code: %r" % r)
    eq(r.out, b"", "stdout")
    lines = r.err.splitlines()
    assert lines and lines[0].startswith("tokenmail: "), repr(r.err)
    if first_is_regex:
        match(first, lines[0], "cause on the first stderr line")
    else:
        eq(lines[0], first, "the first stderr line")
    if server is not None:
        assert "  server: " + server in lines, "no '  server: %s' line in %r" % (server, r.err)
    if hint is not None:
        hints = [l for l in lines if l.startswith("  hint: ")]
        assert hints, "no hint in %r" % r.err
        assert hint in r.err, "hint %r not in %r" % (hint, r.err)
    if detail is not None:
        assert any(l.startswith(detail) for l in lines), "no line %r in %r" % (detail, r.err)
    assert "  (the message is kept in %s)" % env.dead_letter in lines, \
        "dead letter not named: %r" % r.err
    eq(len(env.sent()), sent, "messages sent")
    dead = env.dead()
    eq(len(dead), 1, "dead letter messages")
    match(r"^From %s " % re.escape(USER), dead[0][0], "mbox From line")
    if stdin is not None:
        eq(dead[0][1], lf(stdin), "dead letter = the input")
    eq(secrets_leaked(env, r), [], "token or secret printed, logged or sent")
    log = env.log_lines()
    eq(len(log), 1, "one log line: %r" % log)
    match(r" method=graph ", log[0], "log method")
    match(r" exit=%d$" % rc, log[0], "log exit")
    assert " result=sent " not in log[0], log[0]
    reqs = env.requests()
    if reqs:
        rid = check_request_common(env, reqs, env.delegated, valid_token)
        match(r" request-id=%s " % rid, log[0], "log request-id")
    if server is not None:
        assert ' reply="%s' % server[:40] in log[0] or " reply=%s" % server[:40] in log[0], \
            "log reply is the server line: %r" % log[0]
    return lines


def drafts_cleaned(env):
    """Every draft created was deleted (DELETE .../messages/{id}) and none sent."""
    events = env.graph.drafts()
    created = [e["id"] for e in events if e["event"] == "created"]
    deleted = [e["id"] for e in events if e["event"] == "deleted"]
    eq(sorted(deleted), sorted(created), "drafts deleted: %r" % events)
    eq([e for e in events if e["event"] == "sent"], [], "drafts sent")
    for d in created:
        dels = [e for e in env.requests(op="delete") if e["path"].endswith("/messages/" + d)]
        eq(len(dels), 1, "one DELETE of %s" % d)
        eq(dels[0]["method"], "DELETE")
    return created


def content_ranges(reqs):
    """[(first, last, total)] of upload requests."""
    out = []
    for e in reqs:
        m = re.match(r"^bytes (\d+)-(\d+)/(\d+)$", e["content_range"] or "")
        assert m, "Content-Range %r" % e["content_range"]
        out.append(tuple(int(x) for x in m.groups()))
    return out


def ranges_consecutive(ranges, total):
    """Ranges starting at 0, each starting after the last, covering total."""
    pos = 0
    for a, b, s in ranges:
        eq(s, total, "Content-Range total")
        eq(a, pos, "range start %r" % (ranges,))
        assert b >= a and b - a + 1 <= REQUEST_LIMIT, "chunk %d-%d" % (a, b)
        pos = b + 1
    eq(pos, total, "ranges cover the attachment")


def draft_delivery(env, r, stdin, originals, delegated=False, rcpts=("bob@example.org",),
                   texts=None):
    """rc 0 through the draft path: createDraft, attachments (POST under
    3 MiB, upload session otherwise: PUTs without Authorization, consecutive
    ranges, each <= 4 MiB), send; no sendMail; the delivered message has
    every original attachment (name, type, sha256) and the same texts.
    originals: [(name, content type, bytes)]; texts: the text parts
    [(content type, decoded bytes)] when stdin is too large to parse twice.
    Returns (entry, delivered)."""
    if r.rc:
        show_err(r)
    eq(r.rc, 0, "exit code: %r" % r)
    eq(r.err, "", "stderr")
    reqs = env.requests()
    ops = [e["op"] for e in reqs]
    assert "sendMail" not in ops, "sendMail used for a large message: %r" % ops
    eq(ops[0], "createDraft", "first request: %r" % ops)
    eq(ops[-1], "send", "last request: %r" % ops)
    eq(ops.count("createDraft"), 1, "drafts: %r" % ops)
    eq(ops.count("send"), 1, "sends: %r" % ops)
    eq(ops.count("delete"), 0, "deletes: %r" % ops)
    draft = reqs[0]
    eq((draft["method"], draft["content_type"], draft["status"]), ("POST", "text/plain", 201))
    path_ok(draft, "/messages", delegated)
    draft_ids = [e["id"] for e in env.graph.drafts() if e["event"] == "created"]
    eq(len(draft_ids), 1, "drafts created")
    did = draft_ids[0]
    send = reqs[-1]
    eq((send["method"], send["status"]), ("POST", 202), "send")
    path_ok(send, "/messages/%s/send" % did, delegated)
    eq(send.get("body_len") or 0, 0, "send has an empty body")
    rid = check_request_common(env, reqs, delegated)
    for e in reqs:
        if e["op"] == "attachment":
            path_ok(e, "/messages/%s/attachments" % did, delegated)
            eq((e["method"], e["content_type"], e["status"]), ("POST", "application/json", 201))
        elif e["op"] == "createUploadSession":
            path_ok(e, "/messages/%s/attachments/createUploadSession" % did, delegated)
            eq((e["method"], e["content_type"], e["status"]), ("POST", "application/json", 201))
        elif e["op"] == "upload":
            eq(e["method"], "PUT")
            eq(e["content_type"], "application/octet-stream", "upload Content-Type")
    sent = env.sent()
    eq(len(sent), 1, "messages sent")
    s = sent[0]
    eq(s["op"], "draft")
    eq(s["client_request_id"], rid)
    delivered = env.graph.sent_data(s)
    got = attachments_of(delivered)
    want = {n: (c, hashlib.sha256(d).hexdigest(), len(d)) for n, c, d in originals}
    eq(got, want, "attachments delivered (type, sha256, size)")
    moved = {a["name"]: a for a in s["attachments"]}
    for name, a in moved.items():
        c, h, n = want[name]
        eq((a["content_type"], a["sha256"], a["size"]), (c, h, n), "attachment %s" % name)
        eq(a["via"], "post" if n < SMALL_ATTACHMENT else "upload", "how %s came" % name)
    eq(ops.count("attachment"), sum(1 for a in moved.values() if a["via"] == "post"))
    eq(ops.count("createUploadSession"),
       sum(1 for a in moved.values() if a["via"] == "upload"))
    # Moved largest first: every attachment left in the draft MIME is no
    # larger than any moved one.
    kept = [want[n][2] for n in want if n not in moved]
    if kept and moved:
        assert max(kept) <= min(a["size"] for a in moved.values()), \
            "not moved largest first: moved %r, kept %r" % (sorted(moved), kept)
    eq(texts_of(delivered), texts if texts is not None else texts_of(crlf(stdin)),
       "text parts")
    eq(header_value(delivered, "Subject"), header_value(crlf(stdin), "Subject"))
    eq(addr_specs(delivered, "To"), addr_specs(crlf(stdin), "To"))
    eq(env.dead(), [], "dead letter")
    eq(secrets_leaked(env, r), [], "token or secret printed, logged or sent")
    log_ok(env, r, rcpts, rid)
    return s, delivered


# ------------------------------------------------------------ deliveries

@test
def plain_text_through_sendmail():
    with Env() as env:
        r = env.send(["-t", "-i"], MSG)
        s, delivered, items, e = one_sendmail(env, r, MSG_RCPTS)
        check_header(delivered, MSG, what="delivered header")
        check_header(items, MSG, what="Sent Items header")
        eq(split_message(delivered)[1], body_of(MSG), "body byte-identical")
        eq(items, delivered, "no Bcc: both copies the same")
        eq(log_rcpts(env), MSG_RCPTS, "log to=")
        eq(env.token_requests()[0]["form"]["scope"], SCOPE, "token scope")
        eq(env.token_requests()[0]["grant_type"], "client_credentials")


@test
def html_and_attachment_byte_identical():
    stdin = mime_message("report with pdf", "Hello,\nthe report is attached.\n",
                         [("report.pdf", "application/pdf", PDF)],
                         html="<html><body><p>Hello,</p><p>the <b>report</b> is "
                              "attached.</p></body></html>\n")
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        s, delivered, items, e = one_sendmail(env, r, ["bob@example.org"])
        check_header(delivered, stdin)
        eq(split_message(delivered)[1], body_of(stdin), "MIME body byte-identical")
        eq(attachments_of(delivered),
           {"report.pdf": ("application/pdf", hashlib.sha256(PDF).hexdigest(), len(PDF))})


@test
def utf8_headers_arrive_unchanged():
    encoded = ("From: =?UTF-8?Q?J=C3=B6rg_M=C3=BCller?= <app@example.com>\n"
               "To: =?UTF-8?B?Wm/DqyDDhW5nc3Ryw7Zt?= <zoe@example.org>\n"
               "Subject: =?UTF-8?B?R3LDvMOfZSBhdXMgS8O2bG4g4oKs?=\n"
               "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
               "Content-Transfer-Encoding: 8bit\n\n"
               "Gr\u00fc\u00dfe \u20ac\n").encode()
    raw = ("From: J\u00f6rg M\u00fcller <app@example.com>\n"
           "To: \"Zo\u00eb \u00c5ngstr\u00f6m\" <zoe@example.org>, "
           "\u674e\u96f7 <li@example.org>\n"
           "Subject: Gr\u00fc\u00dfe aus K\u00f6ln \u20ac \u2014 \u65e5\u672c\u8a9e\n"
           "MIME-Version: 1.0\nContent-Type: text/plain; charset=utf-8\n"
           "Content-Transfer-Encoding: 8bit\n\n"
           "K\u00f6ln \u20ac\n").encode()
    for stdin, rcpts in ((encoded, ["zoe@example.org"]),
                         (raw, ["zoe@example.org", "li@example.org"])):
        with Env() as env:
            r = env.send(["-t", "-i"], stdin)
            s, delivered, items, e = one_sendmail(env, r, rcpts)
            check_header(delivered, stdin)
            eq(split_message(delivered)[1], body_of(stdin), "8-bit body byte-identical")


@test
def t_with_bcc_delivers_without_it_and_keeps_it_in_sent_items():
    with Env() as env:
        r = env.send(["-t", "-i"], BCC_MSG)
        rcpts = ["bob@example.org", "carol@example.net", "hidden@example.net",
                 "other@example.net"]
        s, delivered, items, e = one_sendmail(env, r, rcpts)
        check_header(delivered, BCC_MSG, drop=["Bcc"], what="delivered header")
        eq(header_values(delivered, "Bcc"), [], "Bcc removed from the delivered copy")
        eq(sorted(addr_specs(items, "Bcc")), ["hidden@example.net", "other@example.net"],
           "the Sent Items copy keeps the Bcc recipients")
        eq(sorted(addr_specs(items, "To", "Cc", "Bcc")), sorted(rcpts),
           "To + Cc + Bcc of what was sent = the envelope")
        eq(split_message(delivered)[1], body_of(BCC_MSG))
        eq(sorted(log_rcpts(env)), sorted(rcpts), "log to=")


@test
def command_line_recipients_replace_the_header_ones():
    stdin = (b"From: app@example.com\nTo: Alice <alice@example.org>\n"
             b"Cc: carol@example.net\nSubject: not for alice\n\nhi\n")
    with Env() as env:
        r = env.send(["-i", "bob@example.net"], stdin)
        s, delivered, items, e = one_sendmail(env, r, ["bob@example.net"])
        eq(s["recipients"], ["bob@example.net"], "Graph's recipients exactly bob")
        for data, what in ((delivered, "delivered"), (items, "Sent Items")):
            eq(addr_specs(data, "To", "Cc"), [], "%s: alice and carol gone from To/Cc" % what)
            assert b"alice@example.org" not in split_message(data)[0], "alice in the header"
            assert b"carol@example.net" not in split_message(data)[0], "carol in the header"
        eq(addr_specs(items, "Bcc"), ["bob@example.net"], "bob added as Bcc")
        check_header(delivered, stdin, drop=["To", "Cc"], what="the other fields")
        eq(split_message(delivered)[1], body_of(stdin))


@test
def command_line_recipient_keeps_its_header_entry_and_display_name():
    stdin = (b"From: app@example.com\nTo: Alice <alice@example.org>, Zed <zed@example.org>\n"
             b"Subject: only alice\n\nhi\n")
    with Env() as env:
        r = env.send(["-i", "alice@example.org"], stdin)
        s, delivered, items, e = one_sendmail(env, r, ["alice@example.org"])
        check_header(delivered, stdin, rewritten={"To": [("Alice", "alice@example.org")]})
        eq(header_values(items, "Bcc"), [], "no Bcc: alice is in To")


@test
def t_plus_an_argument_adds_it_as_bcc():
    stdin = (b"From: app@example.com\nTo: Alice <alice@example.org>\n"
             b"Bcc: hidden@example.net\nSubject: t plus one\n\nhi\n")
    with Env() as env:
        r = env.send(["-t", "-i", "dave@example.net"], stdin)
        rcpts = ["alice@example.org", "hidden@example.net", "dave@example.net"]
        s, delivered, items, e = one_sendmail(env, r, rcpts)
        check_header(delivered, stdin, drop=["Bcc"])
        eq(addr_specs(delivered, "To", "Cc"), ["alice@example.org"])
        eq(sorted(addr_specs(items, "Bcc")), ["dave@example.net", "hidden@example.net"])


@test
def cron_mail_to_root_goes_to_the_alias():
    body = b"job output\ncrlf line\r\n\xc3\xa9t\xc3\xa9\n"
    stdin = CRON_HEADER + body
    with Env(top=ALIASES) as env:
        r = env.send(["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], stdin)
        s, delivered, items, e = one_sendmail(env, r, ["ops@example.com"])
        eq(s["recipients"], ["ops@example.com"])
        eq(header_value(delivered, "To"), "ops@example.com", "To: root resolved")
        check_header(delivered, stdin, rewritten={
            "From": [("Cron Daemon", "app@example.com")],
            "To": [("", "ops@example.com")]})
        eq(header_values(items, "Bcc"), [], "no Bcc: ops is in To")
        eq(split_message(delivered)[1], crlf(body), "CR bytes and UTF-8 survive")
        eq(log_rcpts(env), ["ops@example.com"])


@test
def delegated_account_sends_as_me():
    big = random_bytes(8, 3_400_000)
    large = mime_message("delegated big", "see attachment\n",
                         [("data.bin", "application/octet-stream", big)])
    with Env(delegated=True) as env:
        r = env.send(["-t", "-i"], MSG)
        s, delivered, items, e = one_sendmail(env, r, MSG_RCPTS, delegated=True)
        eq(e["path"], "/v1.0/me/sendMail")
        eq(e["via"], "me")
        t = env.token_requests()
        eq([x["grant_type"] for x in t], ["refresh_token"])
        eq(t[0]["form"]["scope"], DELEGATED_SCOPE, "delegated scope")
        eq(t[0]["form"]["refresh_token"], FIRST_RT)
        check_header(delivered, MSG)
        # A large message too: the draft path under /me, the token cached.
        os.unlink(env.log_file)
        n = len(env.requests())
        r = env.send(["-t", "-i"], large)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        reqs = env.requests()[n:]
        eq([x["op"] for x in reqs][0], "createDraft")
        eq(reqs[0]["path"], "/v1.0/me/messages")
        eq([x["op"] for x in reqs][-1], "send")
        check_request_common(env, reqs, delegated=True)
        eq(len(env.sent()), 2)
        eq(attachments_of(env.graph.sent_data(env.sent()[1])),
           {"data.bin": ("application/octet-stream", hashlib.sha256(big).hexdigest(),
                         len(big))})
        eq(len(env.token_requests()), 1, "the cached token reused")
        eq(secrets_leaked(env, r), [], "refresh or access token leaked")


# ------------------------------------------------------------ large messages

@test
def attachment_of_12_mb_uploads_in_chunks():
    big = random_bytes(12, 12 * 1000 * 1000)
    name = "R\u00e9sum\u00e9 dump 12.bin"
    stdin = mime_message("twelve megabytes", "The file is attached.\n",
                         [(name, "Application/Octet-Stream", big)],
                         html="<p>The file is attached.</p>\n")
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        s, delivered = draft_delivery(env, r, stdin,
                                      [(name, "application/octet-stream", big)])
        eq([a["name"] for a in s["attachments"]], [name], "the RFC 2231 name decoded")
        ups = env.requests(op="upload")
        ranges = content_ranges(ups)
        ranges_consecutive(ranges, len(big))
        eq([b - a + 1 for a, b, _ in ranges[:-1]], [CHUNK] * (len(ranges) - 1),
           "chunks of 10 x 320 KiB")
        eq([u["status"] for u in ups], [200] * (len(ups) - 1) + [201], "upload answers")
        eq([u["body_len"] for u in ups], [b - a + 1 for a, b, _ in ranges])
        eq(env.requests(op="uploadStatus"), [], "no status request without a failure")


@test
def attachment_of_40_mb_uploads_in_chunks():
    big = random_bytes(40, 40 * 1000 * 1000)
    stdin = mime_message("forty megabytes", "Forty megabytes attached.\n",
                         [("backup-40.tar.gz", "application/gzip", big)])
    with Env(timeout=30) as env:
        r = env.send(["-t", "-i"], stdin)
        s, delivered = draft_delivery(env, r, stdin,
                                      [("backup-40.tar.gz", "application/gzip", big)],
                                      texts=[("text/plain", b"Forty megabytes attached.")])
        ups = env.requests(op="upload")
        ranges_consecutive(content_ranges(ups), len(big))
        assert len(ups) >= 10, "40 MB in %d chunks" % len(ups)


@test
def several_small_attachments_over_3_mb_go_by_post():
    # About 7 MB encoded: the two largest (the inline chart, 2 MB, and
    # a-2.bin, 1.5 MB) must leave the draft MIME; the others may stay in it.
    files = [("notes.txt", "text/csv", b"id,value\n" + b"".join(
                 b"%d,%d\n" % (i, i * i) for i in range(60000))),
             ("chart.png", "image/png", b"\x89PNG\r\n\x1a\n" + random_bytes(101, 2_000_000),
              "inline", "chart.7f3a@report.example"),
             ("a-2.bin", "application/octet-stream", random_bytes(102, 1_500_000)),
             ("a-3.bin", "application/octet-stream", random_bytes(103, 1_200_000))]
    stdin = mime_message("four attachments", "Four files.\n", files)
    with Env() as env:
        r = env.send(["-t", "-i"], stdin)
        s, delivered = draft_delivery(env, r, stdin, [f[:3] for f in files])
        assert env.requests(op="attachment"), "no POST .../attachments"
        eq(env.requests(op="createUploadSession"), [], "upload sessions")
        eq({a["via"] for a in s["attachments"]}, {"post"})
        moved = {a["name"]: a for a in s["attachments"]}
        assert {"chart.png", "a-2.bin"} <= set(moved), "moved: %r" % sorted(moved)
        eq((moved["chart.png"]["is_inline"], moved["chart.png"]["content_id"]),
           (True, "chart.7f3a@report.example"), "inline part with its Content-ID")
        eq((moved["a-2.bin"]["is_inline"], moved["a-2.bin"].get("content_id")),
           (False, None), "a plain attachment")


@test
def dropped_upload_chunk_is_resumed():
    big = random_bytes(13, 8 * 1000 * 1000)
    stdin = mime_message("resumed", "Resumed upload.\n",
                         [("resume.bin", "application/octet-stream", big)])
    fault = {"op": "upload", "action": "drop_partial", "times": 1, "skip": 1}
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        s, delivered = draft_delivery(env, r, stdin,
                                      [("resume.bin", "application/octet-stream", big)])
        reqs = [e for e in env.requests() if e["op"] in ("upload", "uploadStatus")]
        eq(reqs[1]["fault"] is not None, True, "the fault hit the second chunk")
        # libcurl resends a request once by itself when a reused connection
        # breaks before any answer; the session then holds half the chunk and
        # answers that resend 416. Either way the client must ask (GET) where
        # to go on before it sends that chunk again.
        if reqs[2]["op"] == "upload":
            eq((reqs[2]["content_range"], reqs[2]["status"]), (reqs[1]["content_range"], 416),
               "libcurl's own resend of the same range, refused")
            del reqs[2]
        ops = [e["op"] for e in reqs]
        eq(ops[:3], ["upload", "upload", "uploadStatus"],
           "the second chunk dropped, then GET the status: %r"
           % [(e["op"], e["content_range"], e["status"]) for e in reqs])
        eq(ops.count("uploadStatus"), 1)
        eq(reqs[2]["method"], "GET")
        first = content_ranges([reqs[0]])[0]
        failed_range = content_ranges([reqs[1]])[0]
        eq(failed_range[0], first[1] + 1)
        later = content_ranges(reqs[3:])
        # The peer kept the first half of the dropped chunk: the client goes on
        # from where the peer says, not from the start of the chunk.
        half = failed_range[0] + (failed_range[1] - failed_range[0] + 1) // 2
        eq(later[0][0], half, "resumed from the expected offset")
        ranges_consecutive([first, (failed_range[0], half - 1, len(big))] + later, len(big))


# ------------------------------------------------------------ errors

def graph_fault(op="sendMail", status=None, code=None, message=None, **more):
    f = {"op": op}
    if status is not None:
        f["status"] = status
    if code is not None:
        f["code"] = code
    if message is not None:
        f["message"] = message
    f.update(more)
    return f


REFUSED = "tokenmail: Microsoft Graph refused the message: HTTP %d %s"


def permanent(status, code, message, rc, hint=None, requests=1):
    fault = graph_fault("sendMail", status, code, message)
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, rc, REFUSED % (status, code),
                server="%d %s: %s" % (status, code, message), hint=hint, stdin=MSG)
        eq(env.ops(), ["sendMail"] * requests, "requests")
        eq(len(env.token_requests()), 1, "token requests")


@test
def unauthorized_once_gets_a_fresh_token():
    fault = graph_fault("sendMail", 401, "InvalidAuthenticationToken",
                        "Access token has expired or is not yet valid.", times=1)
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        reqs = env.requests()
        eq([(e["op"], e["status"], e["token_n"]) for e in reqs],
           [("sendMail", 401, 1), ("sendMail", 202, 2)], "the second with a fresh token")
        eq(len(env.token_requests()), 2, "token requests")
        check_request_common(env, reqs)
        eq(len(env.sent()), 1, "delivered once")
        eq(env.dead(), [])
        log_ok(env, r, MSG_RCPTS, reqs[0]["client_request_id"])
        eq(secrets_leaked(env, r), [])


@test
def unauthorized_twice_is_77():
    msg = "Access token validation failure."
    fault = graph_fault("sendMail", 401, "InvalidAuthenticationToken", msg)
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 77, "tokenmail: Microsoft Graph rejected the access token: "
                "HTTP 401 InvalidAuthenticationToken",
                server="401 InvalidAuthenticationToken: " + msg, stdin=MSG)
        eq([(e["op"], e["token_n"]) for e in env.requests()],
           [("sendMail", 1), ("sendMail", 2)], "one retry with a fresh token")
        eq(len(env.token_requests()), 2, "token requests")


@test
def token_for_another_resource_is_77():
    # scope: Exchange's: the Graph peer refuses the audience (no fault injected).
    with Env(account={"scope": "https://outlook.office365.com/.default"}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 77, "tokenmail: Microsoft Graph rejected the access token: "
                "HTTP 401 InvalidAuthenticationToken",
                server="401 InvalidAuthenticationToken: Access token validation failure. "
                "Invalid audience.", stdin=MSG, valid_token=False)
        eq([e["status"] for e in env.requests()], [401, 401])


@test
def access_denied_403_is_77():
    permanent(403, "ErrorAccessDenied", "Access to OData is disabled.", 77,
              hint="the app lacks Mail.Send (Application) with admin consent, or an "
                   "Application Access Policy")


@test
def send_as_denied_403_is_77():
    permanent(403, "ErrorSendAsDenied",
              "The user account which was used to submit this request does not have the "
              "right to send mail on behalf of the specified sending account. Cannot submit "
              "message.", 77,
              hint="the authenticated mailbox has no Send As right on the From: address "
                   "(Add-RecipientPermission)")


@test
def invalid_user_404_is_69():
    # No fault: the peer does not know the mailbox.
    with Env(graph={"mailboxes": ["someone.else@example.com"]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 69, REFUSED % (404, "ErrorInvalidUser"),
                server="404 ErrorInvalidUser: The requested user 'app@example.com' is invalid.",
                hint="no such mailbox in the tenant: check the account's from", stdin=MSG)
        eq(env.ops(), ["sendMail"])


@test
def mailbox_not_enabled_for_rest_404_is_69():
    permanent(404, "MailboxNotEnabledForRESTAPI",
              "The mailbox is either inactive, soft-deleted, or is hosted on-premise.", 69,
              hint="the mailbox is inactive, soft-deleted, on-premises or has no Exchange "
                   "Online licence")


@test
def message_size_exceeded_413_is_69():
    permanent(413, "ErrorMessageSizeExceeded",
              "The message exceeds the maximum supported size.", 69,
              hint="the message exceeds the mailbox's size limit")


@test
def invalid_recipients_400_is_69():
    permanent(400, "ErrorInvalidRecipients",
              "At least one recipient isn't valid., Recipient 'bob@example.org' is not "
              "resolved.", 69)


def temporary_then_success(fault, min_gap=0.0):
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        reqs = env.requests()
        eq([(e["op"], e["status"]) for e in reqs],
           [("sendMail", fault["status"]), ("sendMail", 202)], "requests")
        check_request_common(env, reqs)
        eq(len(env.sent()), 1, "delivered once")
        eq(len(env.token_requests()), 1, "the token is kept between attempts")
        eq(env.dead(), [])
        log_ok(env, r, MSG_RCPTS, reqs[0]["client_request_id"])
        if "time" in reqs[0]:
            gap = reqs[1]["time"] - reqs[0]["time"]
        else:
            gap = r.elapsed
        assert gap >= min_gap, "the second request after %.2f s, want >= %.1f" % (gap, min_gap)
        return r


@test
def throttled_429_waits_retry_after_then_succeeds():
    # Retry-After 2 s is longer than the first backoff (1 s): it must win.
    temporary_then_success(graph_fault("sendMail", 429, "ApplicationThrottled",
                                       "Application is over its MailboxConcurrency limit.",
                                       retry_after=2, times=1), min_gap=2.0)


@test
def throttled_429_beyond_the_budget_is_75_at_once():
    fault = graph_fault("sendMail", 429, "ApplicationThrottled",
                        "Application is over its MailboxConcurrency limit.", retry_after=3600)
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 75, "tokenmail: Microsoft Graph is throttling: HTTP 429 "
                "ApplicationThrottled",
                server="429 ApplicationThrottled: Application is over its MailboxConcurrency "
                "limit.", detail="  Retry-After 3600 s is beyond the retry budget", stdin=MSG)
        eq(env.ops(), ["sendMail"], "no second attempt")
        assert r.elapsed < 10, "took %.1f s" % r.elapsed


@test
def unavailable_503_always_is_75_after_the_attempts():
    fault = graph_fault("sendMail", 503, "ServiceNotAvailable",
                        "The service is temporarily unavailable.")
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 75, "tokenmail: Microsoft Graph is unavailable: HTTP 503 "
                "ServiceNotAvailable",
                server="503 ServiceNotAvailable: The service is temporarily unavailable.",
                stdin=MSG)
        eq(env.ops(), ["sendMail"] * ATTEMPTS, "attempts")
        eq(len(env.token_requests()), 1, "the token is cached between attempts")
        assert r.elapsed < MAX_SECONDS, "took %.1f s" % r.elapsed


@test
def gateway_timeout_504_once_then_success():
    temporary_then_success(graph_fault("sendMail", 504, "UnknownError",
                                       "Gateway timeout.", times=1))


@test
def graph_unreachable_is_75():
    with Env() as env:
        env.graph.stop()
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 75, r"^tokenmail: cannot reach 127\.0\.0\.1: ", stdin=MSG,
                first_is_regex=True)
        assert r.elapsed < MAX_SECONDS, "took %.1f s" % r.elapsed


def large_message(seed=21, size=3_400_000):
    data = random_bytes(seed, size)
    return data, mime_message("large one", "Big file.\n",
                              [("big.bin", "application/octet-stream", data)])


@test
def create_draft_403_needs_mail_readwrite():
    _, stdin = large_message()
    fault = graph_fault("createDraft", 403, "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.")
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        refused(env, r, 77, "tokenmail: Microsoft Graph refused the draft: HTTP 403 "
                "ErrorAccessDenied",
                server="403 ErrorAccessDenied: Access is denied. Check credentials "
                "and try again.",
                hint="messages over 3 MB are sent as a draft, which needs "
                     "Mail.ReadWrite as well as Mail.Send", stdin=stdin)
        eq(env.ops(), ["createDraft"], "nothing after the refused draft")
        eq([e for e in env.graph.drafts() if e["event"] == "created"], [])


@test
def upload_session_403_deletes_the_draft():
    _, stdin = large_message()
    fault = graph_fault("createUploadSession", 403, "ErrorAccessDenied",
                        "Access is denied. Check credentials and try again.")
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        refused(env, r, 77, 'tokenmail: Microsoft Graph refused the upload session for '
                '"big.bin": HTTP 403 ErrorAccessDenied',
                server="403 ErrorAccessDenied: Access is denied. Check credentials and try "
                "again.", hint="Mail.ReadWrite", stdin=stdin)
        eq(env.ops(), ["createDraft", "createUploadSession", "delete"])
        drafts_cleaned(env)


@test
def attachment_413_deletes_the_draft():
    files = [("part-%d.bin" % i, "application/octet-stream", random_bytes(40 + i, 1_600_000))
             for i in range(2)]
    stdin = mime_message("two parts", "Two files.\n", files)
    fault = graph_fault("attachment", 413, "ErrorMessageSizeExceeded",
                        "The message exceeds the maximum supported size.")
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        refused(env, r, 69, r'^tokenmail: Microsoft Graph refused the attachment '
                r'"part-[01]\.bin": HTTP 413 ErrorMessageSizeExceeded$',
                server="413 ErrorMessageSizeExceeded: The message exceeds the maximum "
                "supported size.", hint="the message exceeds the mailbox's size limit",
                stdin=stdin, first_is_regex=True)
        ops = env.ops()
        eq((ops[0], ops[-1]), ("createDraft", "delete"), "requests %r" % ops)
        assert "send" not in ops, ops
        drafts_cleaned(env)


@test
def send_failure_deletes_the_draft():
    _, stdin = large_message()
    fault = graph_fault("send", 400, "ErrorInvalidRecipients",
                        "At least one recipient isn't valid.")
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        refused(env, r, 69, "tokenmail: Microsoft Graph refused to send the draft: HTTP 400 "
                "ErrorInvalidRecipients",
                server="400 ErrorInvalidRecipients: At least one recipient isn't valid.",
                stdin=stdin)
        ops = env.ops()
        eq(ops[0], "createDraft")
        eq(ops[-2:], ["send", "delete"], "DELETE right after the failed send: %r" % ops)
        ids = drafts_cleaned(env)
        eq(len(ids), 1)
        path_ok(env.requests(op="delete")[0], "/messages/" + ids[0])


@test
def temporary_failure_in_the_draft_path_starts_over():
    data, stdin = large_message()
    fault = graph_fault("createUploadSession", 503, "ServiceNotAvailable",
                        "The service is temporarily unavailable.", times=1)
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        eq(r.rc, 0, "exit code: %r" % r)
        eq(r.err, "", "stderr")
        ops = env.ops()
        eq(ops[:3], ["createDraft", "createUploadSession", "delete"],
           "the first attempt's draft deleted: %r" % ops)
        eq(ops[3], "createDraft", "a second attempt from the start")
        eq(ops[-1], "send")
        events = env.graph.drafts()
        created = [e["id"] for e in events if e["event"] == "created"]
        eq(len(created), 2)
        eq([e["id"] for e in events if e["event"] == "deleted"], created[:1])
        eq([e["id"] for e in events if e["event"] == "sent"], created[1:])
        eq(len(env.sent()), 1, "delivered once")
        eq(attachments_of(env.graph.sent_data(env.sent()[0])),
           {"big.bin": ("application/octet-stream", hashlib.sha256(data).hexdigest(),
                        len(data))})
        check_request_common(env, env.requests())


@test
def sendmail_200_instead_of_202_is_76():
    # A 2xx that is not the documented answer: tokenmail cannot tell what
    # happened, so it does not retry (76, kept in the dead letter).
    with Env(graph={"faults": [graph_fault("sendMail", 200, body={"value": []})]}) as env:
        r = env.send(["-t", "-i"], MSG)
        refused(env, r, 76, r"^tokenmail: .*Microsoft Graph", stdin=MSG, first_is_regex=True)
        eq(env.ops(), ["sendMail"], "no retry")


@test
def draft_without_id_is_76():
    _, stdin = large_message()
    fault = graph_fault("createDraft", 201, body={"subject": "large one"})
    with Env(graph={"faults": [fault]}) as env:
        r = env.send(["-t", "-i"], stdin)
        refused(env, r, 76, r"^tokenmail: .*Microsoft Graph", stdin=stdin, first_is_regex=True)
        eq(env.ops(), ["createDraft"], "nothing after a draft without id")


@test
def larger_than_max_size_is_69_without_a_request():
    with Env(graph_keys={"max_size": 1000}) as env:
        stdin = MSG + b"x" * 2000 + b"\n"
        r = env.send(["-t", "-i"], stdin)
        lines = refused(env, r, 69, r"^tokenmail: the message is (\d+) octets; graph\.max_size "
                        r"for account app is 1000$", stdin=stdin, first_is_regex=True)
        size = int(re.match(r"^tokenmail: the message is (\d+) ", lines[0]).group(1))
        assert size > len(stdin), "size %d < the input's %d" % (size, len(stdin))
        match(r" size=%d " % size, env.log_text(), "the same size in the log")
        eq(env.requests(), [], "Graph requests")
        eq(env.token_requests(), [], "token requests")


@test
def save_to_sent_items_false_is_a_config_error():
    with Env(graph_keys={"save_to_sent_items": False}) as env:
        r = env.send(["-t", "-i"], MSG)
        show_err(r)
        eq(r.rc, 78, "exit code: %r" % r)
        eq(r.out, b"")
        first = r.err.splitlines()[0] if r.err else ""
        match(r"^tokenmail: %s:\d+:\d+: key 'accounts\.app\.graph\.save_to_sent_items': "
              r"false cannot be honoured: Microsoft Graph saves every message sent in MIME "
              r"form to Sent Items$" % re.escape(env.ws.config), first, "the config error")
        eq(env.requests(), [], "Graph requests")
        eq(env.token_requests(), [], "token requests")
        eq(env.sent(), [])


# ------------------------------------------------------------ secrets and dry run

@test
def verbose_trace_and_logs_hold_no_secret():
    big, large = large_message(seed=5)
    for delegated in (False, True):
        with Env(delegated=delegated) as env:
            r = env.send(["-v", "-t", "-i"], MSG)
            eq(r.rc, 0, "exit code: %r" % r)
            assert r.err, "-v prints a trace"
            r2 = env.send(["-v", "-t", "-i"], large)
            eq(r2.rc, 0, "exit code: %r" % r2)
            tokens = env.issued()
            assert len(tokens) >= 2, tokens
            for res in (r, r2):
                eq(secrets_leaked(env, res), [], "token or secret in the trace or logs")
            # The upload URL is pre-authenticated: its authtoken is a credential.
            assert env.requests(op="upload"), "no upload"
            assert not re.search(r"authtoken=[A-Za-z0-9_-]{8}", r2.err + env.log_text()), \
                "the upload URL's authtoken printed"


@test
def dry_run_shows_what_graph_gets():
    # --dry-run prints "the message exactly as it would be transmitted":
    # for Graph that is the message with the recipients rewritten.
    cases = [(["-t", "-i"], BCC_MSG),
             (["-i", "bob@example.net"], MSG),
             (["-FCronDaemon", "-i", "-B8BITMIME", "-oem", "root"], CRON_HEADER + b"out\n")]
    for args, stdin in cases:
        with Env(top=ALIASES) as env:
            d = env.dry(args, stdin)
            eq(d.method.split(" ")[0], "graph", "method line")
            r = env.send(args, stdin)
            eq(r.rc, 0, "exit code: %r" % r)
            items = env.graph.sent_items_data(env.sent()[0])
            masked = [f for f in fields(items) if f[0] not in ("date", "message-id")]
            want = [f for f in fields(d.message) if f[0] not in ("date", "message-id")]
            eq(masked, want, "%r: the header --dry-run shows is the one sent" % args)
            eq(split_message(items)[1], split_message(d.message)[1], "body")


if __name__ == "__main__":
    raise SystemExit(run_all())
