"""tokenmail check [ACCOUNT] (issue 6, item 3): the built binary against the
fake token endpoint (tests/peers/token_peer.py) and the fake SMTP server
(tests/peers/smtp_peer.py), both over TLS with a throwaway CA on 127.0.0.1.

Each test starts its own peers and stops them (by PID) when it ends. It
checks the exit code, the report on stdout line by line, the error and its
hint on stderr, what the peers saw (a fresh token request; an SMTP session
with AUTH and QUIT but no MAIL, RCPT or DATA), and that no token, secret or
refresh token was printed.
TM_SHOW_ERR=1 prints each run's stdout and stderr as TAP comments.
"""
import calendar
import os
import re
import time

from tmtest import (Workspace, close_env, eq, free_port, match, run_all, run_tokenmail,
                    start_smtp_peer, start_token_peer, test, yaml_value)

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000c4"
PUBLIC = "6f1c1a7e-0000-4000-8000-0000000000d5"
SECRET = "Abc8Q~check-s3cret"
FIRST_RT = "0.AR8A-first-refresh-token-for-check"
USER = "app@example.com"
DEV = "dev@example.com"
SMTP_SCOPE = "https://outlook.office365.com/.default"
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
DEV_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
GDEV_SCOPE = "https://graph.microsoft.com/Mail.Send offline_access"
QUIT_WAIT_SECONDS = 5   # QUIT is sent without waiting for its reply

AUTH_DISABLED_MAILBOX = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
                         "is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled "
                         "for more information. [peer.test]")
AUTH_DISABLED_TENANT = ("535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
                        "is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled "
                        "for more information. [peer.test]")
EXPIRES = r"^  expires: (\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC \(in (\d+) min\)$"
TLS = r"STARTTLS \(TLS1\.[23] / [^)]+\), certificate verified,"


class Env:
    """A workspace, a token peer, (for SMTP) an SMTP peer and a config whose
    accounts point at them:
      app    smtp, client_credentials      web   graph, client_credentials
      dev    smtp, refresh_token           gdev  graph, refresh_token
      relay  smtp, auth: none (no token)
    client / public: keys added to the token peer's confidential / public
    client; smtp: the SMTP peer's config (None: no SMTP peer); peer: top-level
    token peer keys; over: {account: {key: value}} changes (None drops a key).
    Stops the peers and removes the workspace at the end, whatever happens."""

    def __init__(self, client=None, public=None, smtp=None, peer=None, over=None,
                 default="app"):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.token_peer = self.smtp = None
        try:
            self.secret_file = self.ws.write("app.secret", SECRET + "\n")
            self.rt_file = self.ws.write("dev.refresh", FIRST_RT + "\n")
            config = dict(peer or {})
            config["clients"] = {
                CLIENT: dict({"secret": SECRET, "tenant": TENANT}, **(client or {})),
                PUBLIC: dict({"public": True, "tenant": TENANT, "refresh_tokens": [FIRST_RT]},
                             **(public or {}))}
            self.token_peer = start_token_peer(self.ws, config)
            if smtp is not None:
                self.smtp = start_smtp_peer(self.ws, dict({"users": [USER, DEV]}, **smtp),
                                            token_peer=self.token_peer)
            self.write_config(over or {}, default)
        except BaseException:
            self.close()
            raise

    def accounts(self):
        port = self.smtp.port if self.smtp else free_port()
        smtp = {"host": "127.0.0.1", "port": port, "tls": "starttls", "auth": "xoauth2"}
        token = {"tenant": TENANT, "token_url": self.token_peer.url(TENANT)}
        app = dict(token, client_id=CLIENT, client_secret_file=self.secret_file)
        dev = dict(token, client_id=PUBLIC, grant="refresh_token",
                   refresh_token_file=self.rt_file)
        # Nothing listens at the Graph URL: check makes no Graph request.
        graph = {"url": "https://127.0.0.1:%d/v1.0" % free_port()}
        return {
            "app": dict(app, senders=[USER], method="smtp", scope=SMTP_SCOPE,
                        smtp=dict(smtp, user=USER)),
            "web": dict(app, senders=["web@example.com"], method="graph", scope=GRAPH_SCOPE,
                        graph=graph),
            "dev": dict(dev, senders=[DEV], method="smtp", scope=DEV_SCOPE,
                        smtp=dict(smtp, user=DEV)),
            "gdev": dict(dev, senders=["gdev@example.com"], method="graph", scope=GDEV_SCOPE,
                         graph=graph),
            "relay": {"senders": ["relay@example.com"], "method": "smtp",
                      "smtp": dict(smtp, auth="none")},
        }

    def write_config(self, over, default):
        lines = ["tls_ca_file: %s" % yaml_value(self.token_peer.ca),
                 "cache_dir: %s" % yaml_value(os.path.join(self.dir, "cache")),
                 "log: %s" % yaml_value(os.path.join(self.dir, "tokenmail.log")),
                 "dead_letter: %s" % yaml_value(os.path.join(self.dir, "dead.letter")),
                 "timeout: 10"]
        if default:
            lines.append("default_account: %s" % default)
        lines.append("accounts:")
        for name, keys in self.accounts().items():
            keys.update(over.get(name, {}))
            lines.append("  %s:" % name)
            for k, v in keys.items():
                if v is None:
                    continue
                if isinstance(v, dict):
                    v = "{%s}" % ", ".join("%s: %s" % (a, yaml_value(b)) for a, b in v.items())
                elif isinstance(v, list):
                    v = "[%s]" % ", ".join(yaml_value(x) for x in v)
                else:
                    v = yaml_value(v)
                lines.append("    %s: %s" % (k, v))
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def check(self, *args):
        r = run_tokenmail(self.ws, ["check"] + list(args) + ["-C", self.ws.config])
        if os.environ.get("TM_SHOW_ERR"):
            print("# " + (r.out.decode("utf-8", "replace") + r.err).replace("\n", "\n# "))
        return r

    def token_requests(self):
        return self.token_peer.requests(endpoint="token")

    def issued(self):
        return [e["access_token"] for e in self.token_requests() if e.get("access_token")]

    def refresh_tokens(self):
        return [e["refresh_token"] for e in self.token_requests() if e.get("refresh_token")]

    def token_url(self):
        return self.token_peer.url(TENANT)

    def close(self):
        close_env(self.ws, self.smtp, self.token_peer)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


# ------------------------------------------------------------ checks

def out_lines(r):
    return r.out.decode("utf-8").splitlines()


def no_secrets(env, r):
    """No access token, client secret or refresh token on stdout or stderr."""
    text = r.out.decode("utf-8", "replace") + r.err
    leaked = [t[:12] for t in env.issued() + env.refresh_tokens() + [SECRET, FIRST_RT]
              if t in text]
    eq(leaked, [], "token or secret printed")


def report(r, want):
    """stdout is exactly want, line by line; an entry starting with '^' is a
    regular expression for its line."""
    got = out_lines(r)
    eq(len(got), len(want), "report lines:\n  " + "\n  ".join(got))
    for g, w in zip(got, want):
        if w.startswith("^"):
            match(w, g, "report line")
        else:
            eq(g, w, "report line")


def token_header(env, name, method, grant, sender, scope):
    return ["config: %s ok" % env.ws.config,
            "account: %s (%s, %s, from %s)" % (name, method, grant, sender),
            "token: new token from %s (scope %s)" % (env.token_url(), scope)]


def claims(aud, perms, appid, upn=None, key="roles"):
    lines = ["  aud: %s" % aud, "  %s: %s" % (key, perms), "  tid: %s" % TENANT,
             "  appid: %s" % appid]
    if upn:
        lines.append("  user: %s" % upn)
    return lines + [EXPIRES]


def expiry_ok(r, lifetime=3599):
    """The expires line shows the token's exp (issued just now) in UTC."""
    line = [l for l in out_lines(r) if l.startswith("  expires: ")]
    eq(len(line), 1, "one expires line")
    m = re.match(EXPIRES, line[0])
    exp = calendar.timegm(time.strptime(m.group(1), "%Y-%m-%d %H:%M:%S"))
    assert abs(exp - (time.time() + lifetime)) < 30, (line[0], time.time())
    eq(int(m.group(2)), (lifetime - 1) // 60, "minutes left")


def failed(r, rc, first, hint, server=None, step=None):
    """Exit rc; stdout ends with "STEP: failed" (when given) and "check:
    failed (exit rc)"; stderr's first line is "tokenmail: FIRST" (a regular
    expression), then the server's reply and the hint (exact)."""
    eq(r.rc, rc, "exit code: %r" % r)
    lines = out_lines(r)
    eq(lines[-1], "check: failed (exit %d)" % rc, "last report line")
    if step:
        match(step, lines[-2], "failed step")
    err = r.err.splitlines()
    assert err, "no error on stderr"
    match(r"^tokenmail: " + first, err[0], "error line")
    if server:
        assert "  server: " + server in err, "no server line %r in %r" % (server, err)
    assert "  hint: " + hint in err, "no hint %r in %r" % (hint, err)


def smtp_session(env, auth=True, conn=1):
    """The client's lines of connection conn: EHLO, STARTTLS, EHLO, [AUTH XOAUTH2
    and the redacted response], QUIT; no MAIL, RCPT or DATA."""
    deadline = time.monotonic() + QUIT_WAIT_SECONDS
    while time.monotonic() < deadline and "QUIT" not in env.smtp.client_lines(conn):
        time.sleep(0.05)
    lines = env.smtp.client_lines(conn)
    verbs = [l.split(" ")[0].upper() for l in lines]
    # A short token goes on the AUTH line itself (RFC 4954 4): no second line.
    ir = auth and env.smtp.auth() and env.smtp.auth()[0]["ir"]
    want = ["EHLO", "STARTTLS", "EHLO"] + (["AUTH"] if auth else []) + \
        (["<REDACTED"] if auth and not ir else []) + ["QUIT"]
    eq(verbs, want, "client lines %r" % lines)
    eq(env.smtp.messages(), [], "messages accepted")
    assert not env.smtp.auth_in_clear(), "AUTH data before TLS"


def one_fresh_token(env, grant="client_credentials", n=1):
    reqs = env.token_requests()
    eq(len(reqs), n, "token requests")
    eq((reqs[-1]["grant_type"], reqs[-1]["answer"]), (grant, "ok"), "token request")


# ------------------------------------------------------------ passing checks

@test
def smtp_app_only_passes():
    with Env(smtp={}) as env:
        r = env.check("app")
        eq((r.rc, r.err), (0, ""), "exit code and stderr: %r" % r)
        report(r, token_header(env, "app", "smtp", "client_credentials", USER, SMTP_SCOPE) +
               claims("https://outlook.office365.com", "SMTP.SendAsApp", CLIENT) +
               ["claims: ok (SMTP app-only: aud https://outlook.office365.com, "
                "role SMTP.SendAsApp)",
                r"^smtp: 127\.0\.0\.1:%d connected, %s AUTH XOAUTH2 accepted for "
                r"app@example\.com, QUIT$" % (env.smtp.port, TLS),
                "check: all passed"])
        expiry_ok(r)
        one_fresh_token(env)
        smtp_session(env)
        auths = env.smtp.auth()
        eq([(a["mech"], a["ok"], a["user"], a["token_n"]) for a in auths],
           [("XOAUTH2", True, USER, 1)], "AUTH")
        no_secrets(env, r)


@test
def check_drops_the_cached_token():
    with Env(smtp={}) as env:
        t = run_tokenmail(env.ws, ["token", "app", "-C", env.ws.config])
        eq(t.rc, 0, "tokenmail token %r" % t)
        r = env.check("app")
        eq(r.rc, 0, "%r" % r)
        one_fresh_token(env, n=2)
        eq([a["token_n"] for a in env.smtp.auth()], [2], "AUTH used the new token")
        no_secrets(env, r)


@test
def verbose_check_shows_no_token():
    with Env(smtp={}) as env:
        r = env.check("app", "-v")
        eq(r.rc, 0, "%r" % r)
        assert "<redacted>" in r.err, "the trace shows AUTH redacted"
        no_secrets(env, r)


@test
def graph_app_only_passes_with_notes():
    with Env() as env:
        r = env.check("web")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        report(r, token_header(env, "web", "graph", "client_credentials", "web@example.com",
                               GRAPH_SCOPE) +
               claims("https://graph.microsoft.com", "Mail.Send", CLIENT) +
               ["claims: ok (Graph app-only: aud https://graph.microsoft.com, role Mail.Send)",
                "note: no Mail.ReadWrite: messages over about 3 MB (sent as a draft) will be "
                "refused; add Microsoft Graph > Application permissions > Mail.ReadWrite and "
                "grant admin consent",
                "note: Mail.Send (application) may send as any mailbox unless an Application "
                "Access Policy limits the app; with one, web@example.com must be in its group "
                "(Test-ApplicationAccessPolicy -Identity web@example.com -AppId %s)" % CLIENT,
                "check: all passed"])
        expiry_ok(r)
        one_fresh_token(env)
        eq(env.token_requests()[0]["form"]["scope"], GRAPH_SCOPE, "scope requested")
        no_secrets(env, r)


@test
def graph_with_mail_readwrite_has_no_draft_note():
    with Env(client={"roles": ["Mail.Send", "Mail.ReadWrite"]}) as env:
        r = env.check("web")
        eq(r.rc, 0, "%r" % r)
        lines = out_lines(r)
        assert "  roles: Mail.Send Mail.ReadWrite" in lines, lines
        eq([l for l in lines if "Mail.ReadWrite:" in l], [], "no draft note")
        eq(lines[-1], "check: all passed", "last line")
        no_secrets(env, r)


@test
def smtp_delegated_passes():
    with Env(smtp={}, default="dev") as env:
        r = env.check("dev")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        report(r, token_header(env, "dev", "smtp", "refresh_token", DEV, DEV_SCOPE) +
               claims("https://outlook.office.com", "SMTP.Send", PUBLIC, "user@" + TENANT,
                      key="scp") +
               ["claims: ok (SMTP delegated: aud https://outlook.office.com, scope SMTP.Send)",
                r"^smtp: 127\.0\.0\.1:%d connected, %s AUTH XOAUTH2 accepted for "
                r"dev@example\.com, QUIT$" % (env.smtp.port, TLS),
                "check: all passed"])
        one_fresh_token(env, grant="refresh_token")
        smtp_session(env)
        eq([(a["user"], a["ok"]) for a in env.smtp.auth()], [(DEV, True)], "AUTH")
        no_secrets(env, r)


@test
def opaque_token_claims_not_checked():
    with Env(smtp={}, client={"opaque": True}) as env:
        r = env.check("app")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        report(r, token_header(env, "app", "smtp", "client_credentials", USER, SMTP_SCOPE) +
               ["claims: not checked: not a JWT (not three parts separated by '.') (usual "
                "outside Microsoft Entra ID, e.g. Google)",
                r"^smtp: 127\.0\.0\.1:%d connected, %s AUTH XOAUTH2 accepted" % (
                    env.smtp.port, TLS),
                "check: all passed"])
        assert env.issued()[0].startswith("ya29."), "opaque token issued"
        smtp_session(env)
        no_secrets(env, r)


@test
def auth_none_relay_needs_no_token():
    with Env(smtp={"auth": []}) as env:
        r = env.check("relay")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        report(r, ["config: %s ok" % env.ws.config,
                   "account: relay (smtp, client_credentials, from relay@example.com)",
                   "token: none needed (smtp.auth: none)",
                   r"^smtp: 127\.0\.0\.1:%d connected, %s no AUTH \(auth: none\), QUIT$" % (
                       env.smtp.port, TLS),
                   "check: all passed"])
        eq(env.token_requests(), [], "no token request")
        smtp_session(env, auth=False)


@test
def check_without_account_resolves_the_callers():
    with Env(default="web") as env:
        r = env.check()
        eq(r.rc, 0, "%r" % r)
        eq(out_lines(r)[1], "account: web (graph, client_credentials, from web@example.com)",
           "account resolved from the caller (default_account)")
        one_fresh_token(env)
        no_secrets(env, r)


@test
def check_without_account_and_no_default_is_77():
    with Env(default=None) as env:
        r = env.check()
        eq((r.rc, r.out), (77, b""), "%r" % r)
        match(r"^tokenmail: no account may send as '[^']+'$", r.err.splitlines()[0], "error")
        eq(env.token_requests(), [], "no token request")


@test
def unknown_account_is_64():
    with Env() as env:
        r = env.check("nope")
        eq((r.rc, r.out), (64, b""), "%r" % r)
        eq(r.err.splitlines()[0], "tokenmail: no account named 'nope' in %s" % env.ws.config,
           "error")
        eq(env.token_requests(), [], "no token request")


# ------------------------------------------------------------ token endpoint

@test
def wrong_secret_is_77():
    with Env(smtp={}) as env:
        env.ws.write("app.secret", "the-secret-id-not-its-value\n")
        r = env.check("app")
        failed(r, 77, r"token endpoint refused account app: invalid_client AADSTS7000215: "
               r"Invalid client secret provided\.$",
               "the client secret is wrong: use the secret's Value from Certificates & "
               "secrets in the app registration, not its Secret ID",
               step=r"^token: failed \(from %s, scope %s\)$" % (
                   re.escape(env.token_url()), re.escape(SMTP_SCOPE)))
        eq(out_lines(r)[:2], token_header(env, "app", "smtp", "client_credentials", USER,
                                          SMTP_SCOPE)[:2], "config and account lines")
        eq([e["aadsts"] for e in env.token_requests()], [7000215], "token requests")
        eq(env.smtp.connections(), [], "no SMTP connection")
        no_secrets(env, r)
        assert "the-secret-id" not in r.out.decode() + r.err, "wrong secret printed"


@test
def expired_secret_is_77():
    with Env(smtp={}, peer={"secret_errors": {SECRET: "7000222"}}) as env:
        r = env.check("app")
        failed(r, 77, r"token endpoint refused account app: invalid_client AADSTS7000222: "
               r"The provided client secret keys for app '%s' are expired\.$" % CLIENT,
               "the client secret has expired: create a new one under Certificates & "
               "secrets in the app registration and put its Value where the config reads "
               "it (client_secret_file, client_secret or client_secret_command)",
               step=r"^token: failed ")
        eq([e["aadsts"] for e in env.token_requests()], [7000222], "token requests")
        eq(env.smtp.connections(), [], "no SMTP connection")
        no_secrets(env, r)


@test
def secret_file_others_can_read_is_78():
    with Env() as env:
        os.chmod(env.secret_file, 0o644)
        r = env.check("web")
        eq(r.rc, 78, "%r" % r)
        eq(out_lines(r)[-2:], ["secrets: failed", "check: failed (exit 78)"], "report")
        match(r"^tokenmail: .*app\.secret", r.err.splitlines()[0], "error names the file")
        eq(env.token_requests(), [], "no token request")


# ------------------------------------------------------------ claims

@test
def audience_mismatch_is_77():
    with Env(smtp={}, over={"app": {"scope": GRAPH_SCOPE}}) as env:
        r = env.check("app")
        failed(r, 77, r"the token of account app is for https://graph\.microsoft\.com, not "
               r"for Exchange Online \(SMTP\)$",
               "account app asks for scope 'https://graph.microsoft.com/.default'; for SMTP "
               "app-only use scope: https://outlook.office365.com/.default",
               step=r"^claims: failed$")
        assert "  aud: https://graph.microsoft.com" in out_lines(r), out_lines(r)
        one_fresh_token(env)
        eq(env.smtp.connections(), [], "no SMTP connection")
        no_secrets(env, r)


@test
def delegated_audience_mismatch_says_authorize_again():
    with Env(smtp={}, over={"dev": {"scope": GDEV_SCOPE}}) as env:
        r = env.check("dev")
        failed(r, 77, r"the token of account dev is for https://graph\.microsoft\.com, not "
               r"for Exchange Online \(SMTP\)$",
               "account dev asks for scope '%s'; for SMTP delegated use scope: %s, then run "
               "tokenmail authorize dev" % (GDEV_SCOPE, DEV_SCOPE), step=r"^claims: failed$")
        no_secrets(env, r)


@test
def smtp_role_missing_is_77():
    with Env(smtp={}, client={"roles": ["Mail.Send"]}) as env:
        r = env.check("app")
        failed(r, 77, r"the token of account app lacks the role SMTP\.SendAsApp "
               r"\(roles: Mail\.Send\)$",
               "Entra admin center, App registrations, the app %s, API permissions: add "
               "Office 365 Exchange Online > Application permissions > SMTP.SendAsApp, then "
               "Grant admin consent" % CLIENT, step=r"^claims: failed$")
        assert "  roles: Mail.Send" in out_lines(r), out_lines(r)
        eq(env.smtp.connections(), [], "no SMTP connection")
        no_secrets(env, r)


@test
def graph_role_missing_is_77():
    with Env(client={"roles": ["User.Read.All"]}) as env:
        r = env.check("web")
        failed(r, 77, r"the token of account web lacks the role Mail\.Send "
               r"\(roles: User\.Read\.All\)$",
               "Entra admin center, App registrations, the app %s, API permissions: add "
               "Microsoft Graph > Application permissions > Mail.Send, then Grant admin "
               "consent" % CLIENT, step=r"^claims: failed$")
        no_secrets(env, r)


@test
def graph_delegated_scope_missing_is_77():
    with Env(public={"scp": "Mail.Read User.Read"}, default="gdev") as env:
        r = env.check("gdev")
        failed(r, 77, r"the token of account gdev lacks the scope Mail\.Send "
               r"\(scp: Mail\.Read User\.Read\)$",
               "Entra admin center, App registrations, the app %s, API permissions: add "
               "Microsoft Graph > Delegated permissions > Mail.Send and grant consent, then "
               "run tokenmail authorize gdev" % PUBLIC, step=r"^claims: failed$")
        one_fresh_token(env, grant="refresh_token")
        no_secrets(env, r)


@test
def graph_delegated_passes():
    with Env(public={"scp": "Mail.Send Mail.ReadWrite User.Read"}, default="gdev") as env:
        r = env.check("gdev")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        lines = out_lines(r)
        eq(lines[-2:], ["claims: ok (Graph delegated: aud https://graph.microsoft.com, "
                        "scope Mail.Send)", "check: all passed"], "report")
        no_secrets(env, r)


# ------------------------------------------------------------ the SMTP server

@test
def smtp_auth_disabled_for_the_mailbox_is_77():
    fault = {"stage": "AUTH", "reply": AUTH_DISABLED_MAILBOX}
    with Env(smtp={"faults": [fault]}) as env:
        r = env.check("app")
        failed(r, 77, r"127\.0\.0\.1 refused authentication for app@example\.com$",
               "SMTP AUTH is disabled for the mailbox app@example.com: Set-CASMailbox "
               "-Identity app@example.com -SmtpClientAuthenticationDisabled $false "
               "(Exchange Online PowerShell)",
               server=AUTH_DISABLED_MAILBOX,
               step=r"^smtp: 127\.0\.0\.1:%d connected, %s failed at AUTH$" % (
                   env.smtp.port, TLS))
        assert "claims: ok (SMTP app-only: aud https://outlook.office365.com, role " \
            "SMTP.SendAsApp)" in out_lines(r), out_lines(r)
        smtp_session(env)
        one_fresh_token(env)
        no_secrets(env, r)


@test
def smtp_auth_disabled_for_the_tenant_is_77():
    fault = {"stage": "AUTH", "reply": AUTH_DISABLED_TENANT}
    with Env(smtp={"faults": [fault]}) as env:
        r = env.check("app")
        failed(r, 77, r"127\.0\.0\.1 refused authentication for app@example\.com$",
               "SMTP AUTH is disabled for the whole tenant: Set-TransportConfig "
               "-SmtpClientAuthenticationDisabled $false, or for this mailbox only: "
               "Set-CASMailbox -Identity app@example.com -SmtpClientAuthenticationDisabled "
               "$false (Exchange Online PowerShell)", server=AUTH_DISABLED_TENANT,
               step=r"failed at AUTH$")
        smtp_session(env)
        no_secrets(env, r)


@test
def smtp_535_5_7_3_app_only_names_the_service_principal():
    with Env(smtp={"faults": [{"stage": "AUTH", "action": "reject"}]}) as env:
        r = env.check("app")
        failed(r, 77, r"127\.0\.0\.1 refused authentication for app@example\.com$",
               "register the app in Exchange Online: New-ServicePrincipal -AppId %s "
               "-ObjectId <object ID of its Enterprise application>, then "
               "Add-MailboxPermission -Identity app@example.com -User <that service "
               "principal> -AccessRights FullAccess; SMTP AUTH must be on: Set-CASMailbox "
               "-Identity app@example.com -SmtpClientAuthenticationDisabled $false" % CLIENT,
               server="535 5.7.3 Authentication unsuccessful [peer.test]",
               step=r"failed at AUTH$")
        eq([(a["ok"], a["reason"], a["challenge_answer"]) for a in env.smtp.auth()],
           [(False, "scripted reject", "")], "AUTH refused after the challenge")
        no_secrets(env, r)


@test
def starttls_not_offered_is_69():
    with Env(smtp={"capabilities": {"STARTTLS": False}, "auth_before_tls": True,
                   "require_tls": False}) as env:
        r = env.check("app")
        failed(r, 69, r"127\.0\.0\.1 does not offer STARTTLS: refusing to send a token in "
               r"clear$", "check smtp.host and smtp.port (587 for STARTTLS, 465 with tls: tls)",
               step=r"^smtp: 127\.0\.0\.1:%d connected, failed at EHLO$" % env.smtp.port)
        deadline = time.monotonic() + QUIT_WAIT_SECONDS
        while time.monotonic() < deadline and "QUIT" not in env.smtp.client_lines(1):
            time.sleep(0.05)
        eq([l.split(" ")[0] for l in env.smtp.client_lines(1)], ["EHLO", "QUIT"],
           "no STARTTLS, no AUTH")
        eq(env.smtp.auth(), [], "no AUTH")
        assert not env.smtp.auth_in_clear(), "token sent in clear"
        no_secrets(env, r)


@test
def untrusted_certificate_is_69():
    with Env(smtp={"cert_name": "untrusted"}) as env:
        r = env.check("app")
        failed(r, 69, r"TLS certificate of 127\.0\.0\.1 refused: certificate signed by an "
               r"unknown authority$", "if 127.0.0.1 has a certificate from a private CA, "
               "set tls_ca_file to that CA's certificate; smtp.host must be a name the "
               "certificate lists (for Exchange Online smtp.office365.com, not an IP "
               "address)",
               step=r"^smtp: 127\.0\.0\.1:%d connected, failed at STARTTLS$" % env.smtp.port)
        eq([l.split(" ")[0] for l in env.smtp.client_lines(1)], ["EHLO", "STARTTLS"],
           "nothing after the refused handshake")
        eq(env.smtp.auth(), [], "no AUTH")
        no_secrets(env, r)


@test
def certificate_for_another_host_is_69():
    with Env(smtp={"cert_name": "wronghost"}) as env:
        r = env.check("app")
        failed(r, 69, r"TLS certificate of 127\.0\.0\.1 refused: certificate names another "
               r"host: wrong\.example\.net \(wanted 127\.0\.0\.1\)$",
               "if 127.0.0.1 has a certificate from a private CA, set tls_ca_file to that "
               "CA's certificate; smtp.host must be a name the certificate lists (for "
               "Exchange Online smtp.office365.com, not an IP address)",
               step=r"^smtp: 127\.0\.0\.1:%d connected, failed at STARTTLS$" % env.smtp.port)
        eq(env.smtp.auth(), [], "no AUTH")
        no_secrets(env, r)


@test
def implicit_tls_passes():
    # The port is only known once the peer runs: write the config again.
    with Env(smtp={"mode": "tls"}) as env:
        env.write_config({"app": {"smtp": {"host": "127.0.0.1", "port": env.smtp.port,
                                           "tls": "tls", "auth": "xoauth2", "user": USER}}},
                         "app")
        r = env.check("app")
        eq((r.rc, r.err), (0, ""), "%r" % r)
        match(r"^smtp: 127\.0\.0\.1:%d connected, TLS \(TLS1\.[23] / [^)]+\), certificate "
              r"verified, AUTH XOAUTH2 accepted for app@example\.com, QUIT$" % env.smtp.port,
              out_lines(r)[-2], "smtp line")
        no_secrets(env, r)


@test
def smtp_connection_refused_is_75():
    with Env() as env:
        r = env.check("app")
        eq(r.rc, 75, "%r" % r)
        lines = out_lines(r)
        match(r"^smtp: 127\.0\.0\.1:\d+ failed at connect$", lines[-2], "smtp line")
        eq(lines[-1], "check: failed (exit 75)", "last line")
        no_secrets(env, r)


if __name__ == "__main__":
    raise SystemExit(run_all())
