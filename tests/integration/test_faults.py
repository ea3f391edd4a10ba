"""Fault campaign: one table of injected faults across the token endpoint,
SMTP and Microsoft Graph, driven by one runner.

Each case starts its own peers (tests/peers/token_peer.py, smtp_peer.py,
graph_peer.py, over TLS with a throwaway CA) with the fault in their
config, runs the built binary once as a caller would (sendmail -i RCPT <
message) with short limits (retry {attempts: 2, max_seconds: 20}; timeout:
2 where the case makes a peer stall, 30 elsewhere so that a busy machine
does not turn ordinary steps into timeouts), and checks SPEC 6's promises:

  * the exit code is the one the table names (sysexits.h as SPEC 6 maps
    outcomes to codes);
  * the message was either delivered exactly once (exit 0: the one copy
    the peer accepted is byte for byte what tokenmail must transmit) or
    saved to the dead letter byte-identical (non-zero exit: one mboxrd
    entry whose message, unquoted, is the input as read with LF line
    ends), never both, never neither;
  * stderr: empty on success (unless the case expects a warning), else a
    first line "tokenmail: ..." matching the case's pattern and the line
    naming the dead letter; no access token or secret in it;
  * time: the run ends within the case's budget (each expected timeout
    counts `timeout` seconds, each retry its pause, plus slack, plus half
    a second per process that was runnable on average during the run, as
    /proc/loadavg counts them: a case that expects no timeout must not
    wait for one); a run still going two minutes past its budget is
    killed, and the case fails;
  * the fault did fire (the peer logged it), so no case passes vacuously;
  * no tokenmail process (nor a child of one) is left running afterwards:
    every process started carries a marker in its environment, and /proc
    is searched for it.

Before each case the runner waits (two minutes at most) while more than
2 * cores + 2 processes are runnable: another test bursting 100 sends on
the same two cores (make -j2 check) would turn 2 s timeouts into noise.

Each table row is one TAP test; the last line is a TAP comment
"# faults injected: N, survived: N". TM_FAULT_SLACK sets the slack in
seconds (default 6: two busy cores, and ASan builds); TM_FAULT_ONLY=regex
runs only the cases whose name matches; TM_SHOW_ERR=1 prints each case's
stderr as TAP comments.
"""
import json
import os
import re
import subprocess
import time

from tmtest import (TOKENMAIL, RunnableSampler, Workspace, close_env, crlf,
                    dead_letter_messages, eq, free_port, lf, load_lock, match, run_all,
                    start_graph_peer, start_smtp_peer, start_token_peer, stop_marked, test,
                    wait_timed, yaml_value)

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000f7"
PUBLIC = "6f1c1a7e-0000-4000-8000-0000000000f8"
SECRET = "Abc8Q~fault-campaign-s3cret"
FIRST_RT = "0.AR8A-fault-campaign-refresh-token"
SCOPES = {("smtp", False): "https://outlook.office365.com/.default",
          ("smtp", True): "https://outlook.office.com/SMTP.Send offline_access",
          ("graph", False): "https://graph.microsoft.com/.default",
          ("graph", True): "https://graph.microsoft.com/Mail.Send offline_access"}
USER = "app@example.com"
RCPT = "bob@example.org"
TIMEOUT = 2                 # config timeout of the cases that wait for a stalled peer
CALM_TIMEOUT = 30           # config timeout of the others: a busy machine (make -j2
                            # check, ASan) must not turn their normal steps into
                            # timeouts; a run that waits anyway overruns its budget
ATTEMPTS = 2                # config retry.attempts
MAX_SECONDS = 20            # config retry.max_seconds
BACKOFF = 1                 # tokenmail's first pause between attempts
SLACK = float(os.environ.get("TM_FAULT_SLACK") or 6)
LOAD_SLACK = 0.5            # more seconds of slack per process that was runnable
                            # (on average) during the run: other tests (make -j2
                            # check runs two files at once, one may be a burst of
                            # 100 sends) stretch every run
HARD_EXTRA = 120            # a run is killed this long after its budget
BUSY = 2 * (os.cpu_count() or 2) + 2   # runnable processes that mean "another test is
SETTLE_SECONDS = 120                   # bursting": a case waits (this long at most)
                                       # for the machine to calm down first
MARK = "TM_FAULT_CASE"

# The message: Date and Message-ID given and From the account's address,
# so tokenmail adds and rewrites nothing and transmits exactly crlf(MSG).
# A lone dot (-i), a From_ line and a quoted one test the dead letter's
# mboxrd quoting and the SMTP dot-stuffing.
MSG = (b"Date: Sun, 22 Nov 2026 10:00:00 +0000\n"
       b"Message-ID: <fault-campaign-0001@example.com>\n"
       b"From: App Robot <app@example.com>\n"
       b"To: Bob <bob@example.org>\n"
       b"Subject: fault campaign\n"
       b"\n"
       b"Hello Bob,\n"
       b".\n"
       b"From the start of a line, this must come back as it went.\n"
       b">From a quoted one too.\n"
       b"..two dots\n"
       b"-- \n"
       b"cron\n")
# The same with CRLF line ends (and a last line without one): the dead
# letter has LF ends (mbox), the wire CRLF.
CRLF_MSG = MSG.replace(b"\n", b"\r\n")[:-2]


# ------------------------------------------------------------ the rig

class Rig:
    """A workspace, a token peer, an SMTP or Graph peer with the case's
    faults, and a config; close() stops the peers (by PID), kills any
    tokenmail left (by PID) and removes the workspace."""

    def __init__(self, case):
        self.case = case
        self.method = case["method"]
        self.delegated = bool(case.get("delegated"))
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.tag = "%d-%s" % (os.getpid(), os.path.basename(self.dir))
        self.token_peer = self.peer = None
        self.proc = None
        try:
            self.secret_file = self.ws.write("app.secret", SECRET + "\n")
            self.rt_file = self.ws.write("app.refresh",
                                         case.get("refresh_token", FIRST_RT) + "\n")
            client = {"secret": SECRET, "tenant": TENANT}
            public = {"public": True, "tenant": TENANT, "refresh_tokens": [FIRST_RT]}
            (public if self.delegated else client).update(case.get("token", {}))
            self.token_peer = start_token_peer(self.ws, {"clients": {CLIENT: client,
                                                                     PUBLIC: public}})
            if self.method == "smtp":
                config = {"users": [USER], "stall_seconds": 30}
                config.update(case.get("smtp", {}))
                self.peer = start_smtp_peer(self.ws, config, token_peer=self.token_peer)
            else:
                config = {"mailboxes": [USER], "stall_seconds": 30}
                config.update(case.get("graph", {}))
                self.peer = start_graph_peer(self.ws, config, token_peer=self.token_peer)
            self.cache_dir = os.path.join(self.dir, "cache")
            self.dead_letter = os.path.join(self.dir, "dead.letter")
            self.write_config()
            if case.get("cache"):
                self.seed_cache(case["cache"])
        except BaseException:
            self.close()
            raise

    def token_url(self):
        if self.case.get("closed") != "token":
            return self.token_peer.url(TENANT)
        if not getattr(self, "closed_token_url", None):
            self.closed_token_url = "https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (
                free_port(), TENANT)
        return self.closed_token_url

    def scope(self):
        return SCOPES[(self.method, self.delegated)]

    def write_config(self):
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(self.cache_dir),
                 "log: %s" % yaml_value(os.path.join(self.dir, "tokenmail.log")),
                 "dead_letter: %s" % yaml_value(self.dead_letter),
                 "retry: {attempts: %d, max_seconds: %d}" % (ATTEMPTS, MAX_SECONDS),
                 "timeout: %d" % case_timeout(self.case),
                 "default_account: app",
                 "accounts:", "  app:",
                 "    senders: [%s]" % USER,
                 "    from: %s" % USER,
                 "    method: %s" % self.method,
                 "    tenant: %s" % TENANT,
                 "    token_url: %s" % yaml_value(self.token_url()),
                 "    scope: %s" % yaml_value(self.scope())]
        if self.delegated:
            lines += ["    grant: refresh_token",
                      "    client_id: %s" % yaml_value(PUBLIC),
                      "    refresh_token_file: %s" % yaml_value(self.rt_file)]
        else:
            lines += ["    client_id: %s" % yaml_value(CLIENT),
                      "    client_secret_file: %s" % yaml_value(self.secret_file)]
        port = free_port() if self.case.get("closed") == self.method else self.peer.port
        if self.method == "smtp":
            lines.append("    smtp: {host: 127.0.0.1, port: %d, tls: starttls, auth: xoauth2, "
                         "user: %s}" % (port, USER))
        else:
            lines.append("    graph: {url: %s}" % yaml_value(
                "https://127.0.0.1:%d/v1.0" % port))
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def seed_cache(self, kind):
        """A cache entry as a former run left it: "expired" (expired a
        minute ago), "expiring" (5 minutes left: inside the 10 minute
        margin), "revoked" (an hour left, but a token the servers do not
        know), "damaged" (not JSON)."""
        os.makedirs(self.cache_dir, mode=0o700, exist_ok=True)
        path = os.path.join(self.cache_dir, "app.json")
        if kind == "damaged":
            text = '{"version":1,"access_token":"eyJ0eXAi'
        else:
            left = {"expired": -60, "expiring": 300, "revoked": 3600}[kind]
            text = json.dumps({"version": 1, "token_url": self.token_url(),
                               "client_id": CLIENT, "scope": self.scope(),
                               "access_token": "eyJ0eXAiOiJKV1QifQ.eyJmb3JtZXIiOnRydWV9."
                                               "c2lnbmF0dXJlLW9mLWEtZm9ybWVyLXJ1bg",
                               "expires_at": int(time.time()) + left}) + "\n"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(text)

    def run(self, stdin, budget):
        """sendmail -C config -i RCPT < stdin: a Result with .elapsed,
        .outlived (it ran past budget seconds and was killed) and .runnable
        (processes runnable on the machine, on average, meanwhile)."""
        env = {"PATH": "/usr/bin:/bin", "LANG": "C", "HOME": self.dir, MARK: self.tag}
        self.proc = subprocess.Popen(["/usr/sbin/sendmail", "-C", self.ws.config, "-i", RCPT],
                                     executable=TOKENMAIL, env=env, stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        return wait_timed(self.proc, stdin, budget)

    def strays(self, grace=1):
        """PIDs still running with this rig's marker after grace seconds (then killed)."""
        return stop_marked(MARK, self.tag, grace)

    # ---- what the peers saw

    def token_requests(self):
        return self.token_peer.requests(endpoint="token")

    def secrets(self):
        out = [SECRET, FIRST_RT]
        for e in self.token_requests():
            out += [e[k] for k in ("access_token", "refresh_token") if e.get(k)]
        return out

    def delivered(self):
        """The bytes of every message the peer accepted for delivery."""
        if self.method == "smtp":
            return [self.peer.data(m) for m in self.peer.messages()]
        return [self.peer.sent_data(e) for e in self.peer.sent()]

    def close(self):
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait(timeout=10)
        finally:
            close_env(self.ws, self.peer, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ the table

def smtp_fault(stage, action="reply", **kw):
    f = {"stage": stage, "action": action}
    f.update(kw)
    return {"faults": [f]}


def graph_fault(action="reply", op="sendMail", **kw):
    f = {"op": op, "action": action}
    f.update(kw)
    return {"faults": [f]}


def reply(stage, text, **kw):
    return smtp_fault(stage, "reply", reply=text, **kw)


def raw(stage, data, **kw):
    return smtp_fault(stage, "raw", data=data, **kw)


# First stderr lines.
TOKEN_REFUSED = r"^tokenmail: token endpoint refused account app: "
NO_TOKEN = r"^tokenmail: cannot get a token for account app: "
SMTP_HOST = r"^tokenmail: 127\.0\.0\.1 "
GRAPH = r"^tokenmail: Microsoft Graph "
TOKEN_TIMEOUT = NO_TOKEN + r"cannot reach 127\.0\.0\.1: Timeout was reached"
CLOSED = r"^tokenmail: connection to 127\.0\.0\.1 closed"
NO_ANSWER = r"^tokenmail: no answer from 127\.0\.0\.1 within %d s$" % TIMEOUT
BAD_REPLY = r"^tokenmail: bad reply from 127\.0\.0\.1: "
REACH = r"^tokenmail: cannot reach 127\.0\.0\.1: "
TOO_BIG = r"^tokenmail: response from 127\.0\.0\.1 is over \d+ octets$"
BAD_HTTP = r"^tokenmail: bad HTTP response from 127\.0\.0\.1: "
TLS_CUT = r"^tokenmail: connection to 127\.0\.0\.1 closed during the TLS handshake"

CASES = [
    # ---- the token endpoint (what Entra answers, and what a broken one does)
    dict(name="token_7000215_wrong_secret", method="smtp", token={"error": "7000215"},
         rc=77, err=TOKEN_REFUSED + r"invalid_client AADSTS7000215", tokens=1),
    dict(name="token_7000222_expired_secret", method="smtp", token={"error": "7000222"},
         rc=77, err=TOKEN_REFUSED + r"invalid_client AADSTS7000222", tokens=1),
    dict(name="token_700016_app_not_found", method="smtp", token={"error": "700016"},
         rc=78, err=TOKEN_REFUSED + r"unauthorized_client AADSTS700016", tokens=1),
    dict(name="token_90002_tenant_not_found", method="smtp", token={"error": "90002"},
         rc=78, err=TOKEN_REFUSED + r"invalid_request AADSTS90002", tokens=1),
    dict(name="token_65001_no_consent", method="graph", token={"error": "65001"},
         rc=77, err=TOKEN_REFUSED + r"invalid_grant AADSTS65001", tokens=1),
    dict(name="token_70011_bad_scope", method="graph", token={"error": "70011"},
         rc=78, err=TOKEN_REFUSED + r"invalid_scope AADSTS70011", tokens=1),
    dict(name="token_temporarily_unavailable", method="smtp",
         token={"error": "temporarily_unavailable"},
         rc=75, err=TOKEN_REFUSED + r"temporarily_unavailable", tokens=2),
    dict(name="token_http_500", method="smtp", token={"error": "500"},
         rc=75, err=TOKEN_REFUSED + r"server_error", tokens=2),
    dict(name="token_http_503_html", method="graph", token={"error": "503"},
         rc=75, err=NO_TOKEN + r"token endpoint answered HTTP 503", tokens=2),
    dict(name="token_http_503_once", method="smtp", token={"script": ["503"]},
         rc=0, tokens=2, retries=1),
    dict(name="token_http_400_html", method="smtp", token={"error": "400_nonjson"},
         rc=76, err=NO_TOKEN + r"token endpoint answered HTTP 400", tokens=1),
    dict(name="token_200_html", method="smtp", token={"error": "nonjson"},
         rc=76, err=NO_TOKEN + r"token endpoint's answer is not JSON", tokens=1),
    dict(name="token_200_without_access_token", method="graph", token={"error": "notoken"},
         rc=76, err=r"^tokenmail: token endpoint's answer for account app has no usable "
                    r"access_token", tokens=1),
    dict(name="token_200_bad_json", method="smtp", token={"error": "badjson"},
         rc=76, err=NO_TOKEN + r"token endpoint's answer is not JSON", tokens=1),
    dict(name="token_200_oversize", method="smtp", token={"error": "oversize"},
         rc=76, err=NO_TOKEN + r"response from 127\.0\.0\.1 is over \d+ octets", tokens=1),
    dict(name="token_200_oversize_chunked", method="graph",
         token={"error": "oversize_chunked"},
         rc=76, err=NO_TOKEN + r"response from 127\.0\.0\.1 is over \d+ octets", tokens=1),
    dict(name="token_not_http", method="smtp", token={"error": "garbage"},
         rc=76, err=NO_TOKEN, tokens=1),
    dict(name="token_answer_dripping", method="smtp", token={"error": "drip"},
         rc=75, err=TOKEN_TIMEOUT, tokens=2, waits=2),
    dict(name="token_stall", method="smtp", token={"error": "stall"},
         rc=75, err=TOKEN_TIMEOUT, tokens=2, waits=2),
    dict(name="token_stall_graph", method="graph", token={"error": "stall"},
         rc=75, err=TOKEN_TIMEOUT, tokens=2, waits=2),
    dict(name="token_connection_drop", method="smtp", token={"error": "drop"},
         rc=75, err=NO_TOKEN + r"cannot reach 127\.0\.0\.1", tokens=2),
    dict(name="token_truncated_tls", method="smtp", token={"error": "truncated_tls"},
         rc=75, err=NO_TOKEN + r"cannot reach 127\.0\.0\.1", tokens=2),
    dict(name="token_closes_mid_answer", method="graph", token={"error": "partial"},
         rc=75, err=NO_TOKEN + r"cannot reach 127\.0\.0\.1", tokens=2),
    dict(name="token_closes_mid_answer_once", method="smtp", token={"script": ["partial"]},
         rc=0, tokens=2, retries=1),
    dict(name="token_endpoint_refuses_connections", method="smtp", closed="token",
         rc=75, err=NO_TOKEN + r"cannot reach 127\.0\.0\.1: Couldn't connect", tokens=0),

    # ---- expired or revoked tokens
    dict(name="cached_token_expired", method="smtp", cache="expired", rc=0, tokens=1),
    dict(name="cached_token_inside_the_expiry_margin", method="graph", cache="expiring",
         rc=0, tokens=1),
    dict(name="cached_token_revoked_smtp_535", method="smtp", cache="revoked", rc=0, tokens=1),
    dict(name="cached_token_revoked_graph_401", method="graph", cache="revoked", rc=0,
         tokens=1),
    dict(name="cached_token_damaged", method="smtp", cache="damaged", rc=0, tokens=1,
         err=r"^tokenmail: warning: discarding damaged token cache"),
    dict(name="fresh_token_short_lived", method="smtp", token={"expires_in": 120},
         rc=0, tokens=1),
    dict(name="fresh_token_expires_in_0", method="graph", token={"expires_in": 0},
         rc=0, tokens=1),
    dict(name="refresh_token_revoked_70008", method="smtp", delegated=True,
         refresh_token="0.AR8A-revoked-long-ago",
         rc=77, err=TOKEN_REFUSED + r"invalid_grant AADSTS70008", tokens=1),
    dict(name="refresh_token_needs_mfa_50076", method="graph", delegated=True,
         token={"error": "50076"},
         rc=77, err=TOKEN_REFUSED + r"invalid_grant AADSTS50076", tokens=1),
    dict(name="smtp_token_rejected_always_535", method="smtp",
         smtp=smtp_fault("AUTH", "reject"),
         rc=77, err=SMTP_HOST + r"refused authentication for app@example\.com", tokens=2),
    dict(name="smtp_token_rejected_once_535", method="smtp",
         smtp=smtp_fault("AUTH", "reject", times=1), rc=0, tokens=2),
    dict(name="graph_token_rejected_always_401", method="graph",
         graph=graph_fault(status=401),
         rc=77, err=GRAPH + r"rejected the access token: HTTP 401", tokens=2),
    dict(name="graph_token_rejected_once_401", method="graph",
         graph=graph_fault(status=401, times=1), rc=0, tokens=2),

    # ---- SMTP: each stage's replies, resets, stalls, cut TLS, bad replies
    dict(name="smtp_greeting_554", method="smtp", smtp=reply("GREETING", "554 5.3.2 No service"),
         rc=69, err=SMTP_HOST + r"refused the session"),
    dict(name="smtp_greeting_421", method="smtp",
         smtp=reply("GREETING", "421 4.3.2 Service not available"),
         rc=75, err=SMTP_HOST + r"refused the session"),
    dict(name="smtp_greeting_drop", method="smtp", smtp=smtp_fault("GREETING", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_greeting_stall", method="smtp", smtp=smtp_fault("GREETING", "stall"),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_greeting_not_smtp", method="smtp",
         smtp=raw("GREETING", "SSH-2.0-OpenSSH_9.2\r\n"), rc=76,
         err=BAD_REPLY + r"reply line does not start with a reply code"),
    dict(name="smtp_ehlo_421", method="smtp", smtp=reply("EHLO", "421 4.7.0 Try again later"),
         rc=75, err=SMTP_HOST + r"refused EHLO"),
    dict(name="smtp_ehlo_550", method="smtp", smtp=reply("EHLO", "550 5.7.1 Go away"),
         rc=69, err=SMTP_HOST + r"refused EHLO"),
    dict(name="smtp_ehlo_stall", method="smtp", smtp=smtp_fault("EHLO", "stall"),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_ehlo_reply_dripping", method="smtp",
         smtp=smtp_fault("EHLO", "drip", data="250-PIPELINING\r\n", repeat=50),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_ehlo_reply_dripping_line_by_line", method="smtp",
         smtp=smtp_fault("EHLO", "drip", data="250-X\r\n", repeat=400, interval=0.2),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_ehlo_line_over_512", method="smtp",
         smtp=raw("EHLO", "250-" + "x" * 3000 + "\r\n250 OK\r\n"), rc=76,
         err=r"^tokenmail: line from 127\.0\.0\.1 longer than 512 octets"),
    dict(name="smtp_ehlo_endless_reply", method="smtp",
         smtp=raw("EHLO", "250-PIPELINING\r\n", repeat=100000), rc=76,
         err=BAD_REPLY + r"reply longer than \d+ octets"),
    dict(name="smtp_starttls_454", method="smtp",
         smtp=reply("STARTTLS", "454 4.7.0 TLS not available due to temporary reason"),
         rc=75, err=SMTP_HOST + r"refused STARTTLS"),
    dict(name="smtp_starttls_drop", method="smtp", smtp=smtp_fault("STARTTLS", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_starttls_truncated_handshake", method="smtp",
         smtp=smtp_fault("STARTTLS", "truncate_tls"), rc=75, err=TLS_CUT),
    dict(name="smtp_auth_454", method="smtp",
         smtp=reply("AUTH", "454 4.7.0 Temporary authentication failure"),
         rc=75, err=SMTP_HOST + r"refused authentication"),
    dict(name="smtp_auth_drop", method="smtp", smtp=smtp_fault("AUTH", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_auth_stall", method="smtp", smtp=smtp_fault("AUTH", "stall"),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_auth_truncated_tls", method="smtp", smtp=smtp_fault("AUTH", "truncate_tls"),
         rc=75, err=CLOSED),
    dict(name="smtp_mail_451", method="smtp", smtp=reply("MAIL", "451 4.3.0 Try later"),
         rc=75, err=SMTP_HOST + r"refused MAIL FROM"),
    dict(name="smtp_mail_421", method="smtp",
         smtp=reply("MAIL", "421 4.3.2 System not accepting network messages"),
         rc=75, err=SMTP_HOST + r"refused MAIL FROM"),
    dict(name="smtp_mail_550", method="smtp", smtp=reply("MAIL", "550 5.7.1 Not allowed"),
         rc=69, err=SMTP_HOST + r"refused MAIL FROM"),
    dict(name="smtp_mail_sendas_denied", method="smtp",
         smtp=reply("MAIL", "550 5.7.60 SMTP; Client does not have permissions to send as "
                    "this sender"),
         rc=77, err=SMTP_HOST + r"refused MAIL FROM"),
    dict(name="smtp_mail_drop", method="smtp", smtp=smtp_fault("MAIL", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_mail_reply_cut_then_silence", method="smtp",
         smtp=raw("MAIL", "250 2.1.0 Sen", stall=True), rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_mail_control_character", method="smtp",
         smtp=raw("MAIL", "250 2.1.0 Sender\x01OK\r\n"), rc=76,
         err=BAD_REPLY + r"reply line holds a control character"),
    dict(name="smtp_rcpt_450", method="smtp", smtp=reply("RCPT", "450 4.2.1 Mailbox busy"),
         rc=75, err=SMTP_HOST + r"refused RCPT TO:<bob@example\.org> for now"),
    dict(name="smtp_rcpt_550", method="smtp",
         smtp=reply("RCPT", "550 5.1.10 RESOLVER.ADR.RecipientNotFound"),
         rc=67, err=SMTP_HOST + r"refused RCPT TO:<bob@example\.org>$"),
    dict(name="smtp_rcpt_452_always", method="smtp",
         smtp=reply("RCPT", "452 4.5.3 Too many recipients"), rc=75,
         err=SMTP_HOST + r"accepted none of the recipients"),
    dict(name="smtp_rcpt_drop", method="smtp", smtp=smtp_fault("RCPT", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_data_451", method="smtp", smtp=reply("DATA", "451 4.3.0 Try later"),
         rc=75, err=SMTP_HOST + r"refused DATA"),
    dict(name="smtp_data_554", method="smtp", smtp=reply("DATA", "554 5.6.0 No"),
         rc=69, err=SMTP_HOST + r"refused DATA"),
    dict(name="smtp_data_stall", method="smtp", smtp=smtp_fault("DATA", "stall"),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_body_drop_mid_message", method="smtp",
         smtp=smtp_fault("BODY", "drop", after_bytes=100), rc=75, err=CLOSED),
    dict(name="smtp_dot_451", method="smtp", smtp=reply("DOT", "451 4.4.1 Queue trouble"),
         rc=75, err=SMTP_HOST + r"refused the message"),
    dict(name="smtp_dot_451_once", method="smtp",
         smtp=reply("DOT", "451 4.4.1 Queue trouble", times=1), rc=0, retries=1),
    dict(name="smtp_dot_421", method="smtp",
         smtp=reply("DOT", "421 4.4.2 Connection dropped due to timeout"),
         rc=75, err=SMTP_HOST + r"refused the message"),
    dict(name="smtp_dot_554", method="smtp", smtp=reply("DOT", "554 5.6.0 Rejected"),
         rc=69, err=SMTP_HOST + r"refused the message"),
    dict(name="smtp_dot_552_too_big", method="smtp",
         smtp=reply("DOT", "552 5.3.4 Message size exceeds fixed maximum message size"),
         rc=65, err=SMTP_HOST + r"refused the message"),
    dict(name="smtp_dot_drop", method="smtp", smtp=smtp_fault("DOT", "drop"),
         rc=75, err=CLOSED),
    dict(name="smtp_dot_drop_once", method="smtp", smtp=smtp_fault("DOT", "drop", times=1),
         rc=0, retries=1),
    dict(name="smtp_dot_stall", method="smtp", smtp=smtp_fault("DOT", "stall"),
         rc=75, err=NO_ANSWER, waits=2),
    dict(name="smtp_dot_truncated_tls", method="smtp", smtp=smtp_fault("DOT", "truncate_tls"),
         rc=75, err=CLOSED),
    dict(name="smtp_dot_no_reply_code", method="smtp", smtp=raw("DOT", "OK queued\r\n"),
         rc=76,
         err=BAD_REPLY + r"reply line does not start with a reply code"),
    dict(name="smtp_dot_reply_cut_then_close", method="smtp",
         smtp=raw("DOT", "25", close=True), rc=75, err=CLOSED),
    dict(name="smtp_rset_stall_after_refused_rcpt", method="smtp",
         smtp={"faults": [{"stage": "RCPT", "reply": "550 5.1.1 Unknown"},
                          {"stage": "RSET", "action": "stall"}]},
         rc=67, err=SMTP_HOST + r"refused RCPT TO:<bob@example\.org>$", waits=1),
    dict(name="smtp_quit_stall_after_delivery", method="smtp",
         smtp=smtp_fault("QUIT", "stall"), rc=0),
    dict(name="smtp_quit_drop_after_delivery", method="smtp",
         smtp=smtp_fault("QUIT", "drop"), rc=0),
    dict(name="smtp_dot_554_crlf_input", method="smtp", stdin=CRLF_MSG,
         smtp=reply("DOT", "554 5.6.0 Rejected"), rc=69,
         err=SMTP_HOST + r"refused the message"),
    dict(name="smtp_dot_451_once_crlf_input", method="smtp", stdin=CRLF_MSG,
         smtp=reply("DOT", "451 4.4.1 Queue trouble", times=1), rc=0, retries=1),
    dict(name="smtp_server_refuses_connections", method="smtp", closed="smtp",
         rc=75, err=r"^tokenmail: cannot connect to 127\.0\.0\.1:\d+: connection refused"),

    # ---- Graph sendMail: each status class, resets, stalls, cut TLS, bad answers
    dict(name="graph_400", method="graph", graph=graph_fault(status=400),
         rc=69, err=GRAPH + r"refused the message: HTTP 400 ErrorInvalidRequest"),
    dict(name="graph_403_sendas_denied", method="graph",
         graph=graph_fault(status=403, code="ErrorSendAsDenied",
                           message="The user account which was used to submit this request "
                                   "does not have the right to send mail on behalf of the "
                                   "specified sending account."),
         rc=77, err=GRAPH + r"refused the message: HTTP 403 ErrorSendAsDenied"),
    dict(name="graph_404_invalid_user", method="graph",
         graph=graph_fault(status=404, code="ErrorInvalidUser",
                           message="The requested user 'app@example.com' is invalid."),
         rc=69, err=GRAPH + r"refused the message: HTTP 404 ErrorInvalidUser"),
    dict(name="graph_413_too_large", method="graph", graph=graph_fault(status=413),
         rc=69, err=GRAPH + r"refused the message: HTTP 413"),
    dict(name="graph_429_retry_after_1", method="graph",
         graph=graph_fault(status=429, retry_after=1),
         rc=75, err=GRAPH + r"is throttling: HTTP 429"),
    dict(name="graph_429_once", method="graph",
         graph=graph_fault(status=429, retry_after=1, times=1), rc=0, retries=1),
    dict(name="graph_429_retry_after_beyond_budget", method="graph",
         graph=graph_fault(status=429, retry_after=3600),
         rc=75, err=GRAPH + r"is throttling: HTTP 429", retries=0),
    dict(name="graph_500", method="graph", graph=graph_fault(status=500),
         rc=75, err=GRAPH + r"is unavailable: HTTP 500"),
    dict(name="graph_502", method="graph", graph=graph_fault(status=502),
         rc=75, err=GRAPH + r"is unavailable: HTTP 502"),
    dict(name="graph_503", method="graph", graph=graph_fault(status=503),
         rc=75, err=GRAPH + r"is unavailable: HTTP 503"),
    dict(name="graph_504", method="graph", graph=graph_fault(status=504),
         rc=75, err=GRAPH + r"is unavailable: HTTP 504"),
    dict(name="graph_200_instead_of_202", method="graph", graph=graph_fault(status=200),
         rc=76, err=GRAPH + r"answered HTTP 200 where 202 was expected"),
    dict(name="graph_drop", method="graph", graph=graph_fault("drop"), rc=75, err=REACH),
    dict(name="graph_drop_once", method="graph", graph=graph_fault("drop", times=1),
         rc=0, retries=1),
    dict(name="graph_stall", method="graph", graph=graph_fault("stall"),
         rc=75, err=REACH + r"Timeout was reached", waits=2),
    dict(name="graph_truncated_tls", method="graph", graph=graph_fault("truncate_tls"),
         rc=75, err=REACH),
    dict(name="graph_closes_mid_answer", method="graph",
         graph=graph_fault("partial", status=503), rc=75, err=REACH),
    dict(name="graph_not_http", method="graph",
         graph=graph_fault("raw", data="SSH-2.0-OpenSSH_9.2\r\n"), rc=76, err=BAD_HTTP),
    dict(name="graph_bad_status_line", method="graph",
         graph=graph_fault("raw", data="HTTP/1.1 2x2 Accepted\r\nContent-Length: 0\r\n\r\n"),
         rc=76, err=BAD_HTTP),
    dict(name="graph_400_bad_json", method="graph",
         graph=graph_fault(status=400, raw_body='{"error": {"code": "ErrorInvalidRe'),
         rc=69, err=GRAPH + r"refused the message: HTTP 400"),
    dict(name="graph_400_oversize", method="graph",
         graph=graph_fault(status=400, pad=2 * 1024 * 1024), rc=76, err=TOO_BIG),
    dict(name="graph_503_oversize_chunked", method="graph",
         graph=graph_fault(status=503, pad=2 * 1024 * 1024, chunked=True), rc=76, err=TOO_BIG),
    dict(name="graph_refuses_connections", method="graph", closed="graph",
         rc=75, err=REACH + r"Couldn't connect to server"),
]


# ------------------------------------------------------------ the runner

def case_timeout(case):
    return TIMEOUT if case.get("waits") else CALM_TIMEOUT


def budget(case):
    """Seconds the run may take: each expected timeout, each pause between
    attempts (Retry-After when the peer sends a longer one), and slack."""
    retries = case.get("retries", ATTEMPTS - 1 if case["rc"] == 75 else 0)
    retry_after = 0
    for f in (case.get("graph") or {}).get("faults", []):
        if f.get("retry_after") and int(f["retry_after"]) <= MAX_SECONDS:
            retry_after = int(f["retry_after"])
    return case.get("waits", 0) * case_timeout(case) + retries * max(BACKOFF, retry_after) + \
        SLACK


def settle():
    """Wait (SETTLE_SECONDS at most) until fewer than BUSY processes are
    runnable on average (over a tenth of a second, then over seconds): a
    case with 2 s timeouts means nothing while another test runs a burst
    of 100 sends on the same cores."""
    deadline = time.monotonic() + SETTLE_SECONDS
    window = 0.1
    while time.monotonic() < deadline:
        sampler = RunnableSampler()
        time.sleep(window)
        sampler.stop()
        if sampler.mean() < BUSY:
            return
        window = 1
    print("# the machine stayed busy for %d s: running anyway" % SETTLE_SECONDS)


def run_case(case):
    settle()
    with Rig(case) as rig:
        stdin = case.get("stdin", MSG)
        with load_lock():
            r = rig.run(stdin, budget(case) + HARD_EXTRA)
        limit = budget(case) + LOAD_SLACK * r.runnable
        print("# %s: exit %d in %.1f s (budget %.1f s; %.1f runnable)" % (
            case["name"], r.rc, r.elapsed, limit, r.runnable))
        if os.environ.get("TM_SHOW_ERR"):
            print("# " + r.err.rstrip("\n").replace("\n", "\n# "))
        assert not r.outlived, "still running %d s after its budget (killed): %r" % (
            HARD_EXTRA, r)
        assert r.elapsed <= limit, "ran %.1f s, over its budget of %.1f s: %r" % (
            r.elapsed, limit, r)
        eq(rig.strays(), [], "processes left running")
        eq(r.rc, case["rc"], "exit code: %r" % r)
        eq(r.out, b"", "stdout")
        delivered = rig.delivered()
        dead = dead_letter_messages(rig.dead_letter)
        lines = r.err.splitlines()
        if case["rc"] == 0:
            eq(len(delivered), 1, "messages delivered")
            eq(delivered[0], crlf(stdin) + (b"" if stdin.endswith(b"\n") else b"\r\n"),
               "the delivered message")
            eq(dead, [], "dead letter")
            if case.get("err"):
                assert lines, "no warning on stderr"
                match(case["err"], lines[0], "stderr's first line")
            else:
                eq(r.err, "", "stderr")
        else:
            eq(len(delivered), 0, "messages delivered")
            eq(len(dead), 1, "dead letter entries")
            match(r"^From %s " % re.escape(USER), dead[0][0], "the dead letter's From_ line")
            eq(dead[0][1], lf(stdin) + (b"" if stdin.endswith(b"\n") else b"\n"),
               "the dead letter's message")
            assert lines, "nothing on stderr"
            match(case["err"], lines[0], "stderr's first line")
            assert "  (the message is kept in %s)" % rig.dead_letter in lines, \
                "the dead letter is not named: %r" % r.err
        if "tokens" in case:
            eq(len(rig.token_requests()), case["tokens"], "token requests")
        check_fired(rig, case)
        leaked = [s[:12] for s in rig.secrets() if s in r.err]
        eq(leaked, [], "a token or the secret on stderr")
        return r


def check_fired(rig, case):
    """The injected fault did happen (else the case proves nothing)."""
    what = []
    if (case.get("smtp") or {}).get("faults"):
        events = [e["line"] for e in rig.peer.transcript(direction="*")
                  if "fault at " in e["line"]]
        events += ["reject" for a in rig.peer.auth() if a.get("reason") == "scripted reject"]
        what.append(("SMTP fault", events))
    if (case.get("graph") or {}).get("faults"):
        what.append(("Graph fault", [e for e in rig.peer.requests() if e["fault"] is not None]))
    if "error" in case.get("token", {}) or "script" in case.get("token", {}):
        what.append(("token endpoint fault", [e for e in rig.token_requests()
                                              if e.get("answer") != "ok"]))
    if case.get("cache") == "revoked" and rig.method == "smtp":
        what.append(("AUTH with the revoked token", [
            a for a in rig.peer.auth() if not a["ok"] and a["reason"] == "unknown token"]))
    if case.get("cache") == "revoked" and rig.method == "graph":
        what.append(("Graph 401 for the revoked token", [
            e for e in rig.peer.requests() if e["status"] == 401 and e["token_n"] == 0]))
    for name, seen in what:
        assert seen, "the %s never happened" % name


RESULTS = {"injected": 0, "survived": 0}


def make_test(case):
    def fn():
        RESULTS["injected"] += 1
        run_case(case)
        RESULTS["survived"] += 1
    fn.__name__ = case["name"]
    return fn


def register():
    names = [c["name"] for c in CASES]
    dupes = sorted({n for n in names if names.count(n) > 1})
    assert not dupes, "case names used twice: %r" % dupes
    only = os.environ.get("TM_FAULT_ONLY")
    for case in CASES:
        if only and not re.search(only, case["name"]):
            continue
        test(make_test(case))


if __name__ == "__main__":
    register()
    status = run_all()
    print("# faults injected: %d, survived: %d" % (RESULTS["injected"], RESULTS["survived"]))
    raise SystemExit(status)
