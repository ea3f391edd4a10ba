"""OAuth tokens: `tokenmail token` and `tokenmail authorize` against the fake
Entra ID endpoint (tests/peers/token_peer.py) over TLS with a throwaway CA.

Each test starts its own peer and stops it (by PID) when it ends; every
request the peer saw is checked field by field. The first tests check the
peer itself (it must refuse what Entra refuses, or the others prove nothing).
"""
import base64
import hashlib
import json
import os
import re
import stat
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

from tmtest import (TIMEOUT, Workspace, client_cert, eq, free_port, https_get, match,
                    read_line, run_all, run_tokenmail, spawn_tokenmail, start_token_peer,
                    stop_process, test, wait_all, yaml_value)

TENANT = "contoso.onmicrosoft.com"
CLIENT = "6f1c1a7e-0000-4000-8000-0000000000a1"
PUBLIC = "6f1c1a7e-0000-4000-8000-0000000000b2"
SECRET = "Abc8Q~s3cret+with/odd=chars&%"
SCOPE = "https://outlook.office365.com/.default"
DELEGATED_SCOPE = "https://outlook.office.com/SMTP.Send offline_access"
FIRST_RT = "0.AR8A-first-refresh-token-from-another-helper"
ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
PARALLEL = 50

# ---------------------------------------------------------------- set-up


def default_clients():
    return {CLIENT: {"secret": SECRET, "tenant": TENANT},
            PUBLIC: {"public": True, "tenant": TENANT, "refresh_tokens": [FIRST_RT]}}


class Setup:
    """A workspace with the test PKI; start() runs a token peer and writes a
    config whose accounts point at it. Use as a context manager: the peer
    is stopped and the workspace removed at the end, whatever happens."""

    def __init__(self):
        self.ws = Workspace()
        self.dir = self.ws.dir
        self.config = self.ws.config
        self.cache_dir = os.path.join(self.dir, "cache")
        self.peer = None
        self.secret_file = self.ws.write("app.secret", SECRET + "\n")
        self.rt_file = self.ws.write("dev.refresh", FIRST_RT + "\n")

    def start(self, clients=None, accounts=None, top="", peer=None):
        config = dict(peer or {})
        config["clients"] = default_clients() if clients is None else clients
        self.peer = start_token_peer(self.ws, config)
        self.write_config(accounts or {"app": {}}, top)
        return self

    def app(self, **over):
        """An app-only (client_credentials) account; over: keys to change, None drops one."""
        a = {"from": "app@example.com", "tenant": TENANT, "client_id": CLIENT,
             "client_secret_file": self.secret_file, "token_url": self.peer.url(TENANT),
             "scope": SCOPE}
        a.update(over)
        return a

    def dev(self, **over):
        """A delegated (refresh_token) account of a public client."""
        a = {"from": "dev@example.com", "grant": "refresh_token", "tenant": TENANT,
             "client_id": PUBLIC, "token_url": self.peer.url(TENANT), "scope": DELEGATED_SCOPE}
        a.update(over)
        return a

    def write_config(self, accounts, top=""):
        lines = ["tls_ca_file: %s" % yaml_value(self.peer.ca),
                 "cache_dir: %s" % yaml_value(self.cache_dir),
                 "log: %s" % yaml_value(os.path.join(self.dir, "tokenmail.log")),
                 "dead_letter: %s" % yaml_value(os.path.join(self.dir, "dead.letter"))]
        lines += [line for line in top.splitlines() if line.strip()]
        lines.append("accounts:")
        for name, keys in accounts.items():
            if not keys:
                keys = self.app() if name == "app" else self.dev()
            lines.append("  %s:" % name)
            lines += ["    %s: %s" % (k, yaml_value(v)) for k, v in keys.items() if v is not None]
        self.ws.write("config.yaml", "\n".join(lines) + "\n")

    def token(self, account="app", *extra, env=None, timeout=TIMEOUT):
        return run_tokenmail(self.ws, ["token", account, "-C", self.config] + list(extra),
                             env=env, timeout=timeout)

    def authorize(self, account="dev", *extra, timeout=TIMEOUT):
        return run_tokenmail(self.ws, ["authorize", account, "-C", self.config] + list(extra),
                             timeout=timeout)

    def spawn(self, *args):
        return spawn_tokenmail(self.ws, list(args) + ["-C", self.config])

    def tokens(self, **where):
        return self.peer.requests(endpoint="token", **where)

    def close(self):
        if self.peer:
            self.peer.stop()
        self.ws.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def ok_token(r, entry, what=""):
    """tokenmail printed exactly the access token the peer issued in entry."""
    eq(r.rc, 0, "%s %r" % (what, r))
    eq(r.err, "", what)
    eq(r.out, (entry["access_token"] + "\n").encode(), what)


def cache_path(s):
    """The one cache file (JSON with expires_at) in the cache directory."""
    found = []
    for name in sorted(os.listdir(s.cache_dir)):
        path = os.path.join(s.cache_dir, name)
        try:
            with open(path) as f:
                doc = json.load(f)
        except (ValueError, UnicodeDecodeError, IsADirectoryError):
            continue
        if isinstance(doc, dict) and "expires_at" in doc:
            found.append(path)
    eq(len(found), 1, "cache files in %s: %r" % (s.cache_dir, os.listdir(s.cache_dir)))
    return found[0]


def set_expiry(s, seconds):
    """Rewrite the cached token's expires_at to now + seconds."""
    path = cache_path(s)
    with open(path) as f:
        doc = json.load(f)
    doc["expires_at"] = int(time.time()) + seconds
    with open(path, "w") as f:
        json.dump(doc, f)


def jwt_parts(token):
    h, c, _ = token.split(".")
    dec = lambda p: json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    return dec(h), dec(c)


def error_lines(r, code, account="app"):
    """The report of a token endpoint refusal: names the account and the AADSTS
    code on its first line, gives a hint, and never the trace/correlation ids."""
    eq(r.out, b"", repr(r))
    lines = r.err.splitlines()
    assert lines, repr(r)
    match(r"^tokenmail: .*\b%s\b" % re.escape(account), lines[0], "account in " + lines[0])
    match(r"AADSTS%s\b" % code, lines[0], "code in first line")
    assert any(line.startswith("  hint: ") and len(line) > 10 for line in lines), repr(r)
    assert "Trace ID" not in r.err and "Correlation ID" not in r.err, repr(r)


# ---------------------------------------------------- the peer on its own

def post(peer, path, fields, auth=None):
    data = urllib.parse.urlencode(fields).encode()
    req = urllib.request.Request("https://127.0.0.1:%d%s" % (peer.port, path), data=data)
    req.add_header("Content-Type", "application/x-www-form-urlencoded")
    if auth:
        req.add_header("Authorization", auth)
    ctx = ssl.create_default_context(cafile=peer.ca)
    try:
        with urllib.request.urlopen(req, context=ctx, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def thumbprints(cert_path):
    """(SHA-1, SHA-256) base64url thumbprints of a PEM certificate's DER."""
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization
    with open(cert_path, "rb") as f:
        der = x509.load_pem_x509_certificate(f.read()).public_bytes(serialization.Encoding.DER)
    return b64url(hashlib.sha1(der).digest()), b64url(hashlib.sha256(der).digest())


def make_assertion(cert_path, key_path, aud, alg="RS256", client=CLIENT, **over):
    """A client assertion as Microsoft documents it, made with cryptography."""
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import padding
    with open(key_path, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), None)
    b64 = b64url
    sha1, sha256 = thumbprints(cert_path)
    header = {"alg": alg, "typ": "JWT"}
    if alg == "RS256":
        header["x5t"] = sha1
    else:
        header["x5t#S256"] = sha256
    now = int(time.time())
    claims = {"aud": aud, "iss": client, "sub": client, "jti": str(uuid.uuid4()),
              "nbf": now, "iat": now, "exp": now + 600}
    header.update(over.pop("header", {}))
    claims.update(over)
    signed = (b64(json.dumps(header).encode()) + "." + b64(json.dumps(claims).encode()))
    pad = padding.PKCS1v15() if alg == "RS256" else padding.PSS(
        mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
    return signed + "." + b64(key.sign(signed.encode(), pad, hashes.SHA256()))


@test
def peer_checks_client_assertions():
    with Setup() as s:
        cert, key = client_cert(s.ws, "app", pkcs1=True)
        other_cert, other_key = client_cert(s.ws, "other")
        s.start(clients={CLIENT: {"certificate": cert, "tenant": TENANT}})
        path = "/%s/oauth2/v2.0/token" % TENANT
        aud = s.peer.url(TENANT)

        def ask(assertion):
            return post(s.peer, path, {"grant_type": "client_credentials", "client_id": CLIENT,
                                       "scope": SCOPE, "client_assertion_type": ASSERTION_TYPE,
                                       "client_assertion": assertion})

        good = make_assertion(cert, key, aud)
        status, body = ask(good)
        eq((status, body["token_type"], body["expires_in"]), (200, "Bearer", 3599), repr(body))
        status, body = ask(good)
        eq((status, body["error_codes"]), (401, [50012]), "jti replay: %r" % body)
        eq(ask(make_assertion(cert, key, aud, alg="PS256"))[0], 200, "PS256")
        cases = [
            ("wrong aud", make_assertion(cert, key, aud + "x"), 50012),
            ("iss", make_assertion(cert, key, aud, iss="x", sub="x"), 700021),
            ("sub", make_assertion(cert, key, aud, sub="x"), 50048),
            ("too long", make_assertion(cert, key, aud, exp=int(time.time()) + 900), 700024),
            ("expired", make_assertion(cert, key, aud, exp=int(time.time()) - 1), 700024),
            ("future", make_assertion(cert, key, aud, nbf=int(time.time()) + 60), 700024),
            ("unknown cert", make_assertion(other_cert, other_key, aud), 700027),
            ("SHA-256 in x5t", make_assertion(cert, key, aud, header={
                "x5t": thumbprints(cert)[1]}), 700027),
            ("wrong key", make_assertion(cert, other_key, aud), 50012),
            ("alg says RS256, signed PS256",
             make_assertion(cert, key, aud, alg="PS256", header={"alg": "RS256"}), 50012),
            ("not a JWT", "abc.def", 50027),
        ]
        for what, assertion, code in cases:
            status, body = ask(assertion)
            eq((status, body.get("error"), body.get("error_codes")),
               (401, "invalid_client", [code]), what)
            match(r"^AADSTS%d: .*\r\nTrace ID: " % code, body["error_description"], what)
        eq(len(s.tokens(answer="ok")), 2)


@test
def peer_rotates_refresh_tokens_and_speaks_entra_errors():
    with Setup() as s:
        s.start(peer={"secret_errors": {"old-secret": "7000222"}})
        path = "/%s/oauth2/v2.0/token" % TENANT
        fields = {"grant_type": "refresh_token", "client_id": PUBLIC,
                  "refresh_token": FIRST_RT, "scope": DELEGATED_SCOPE}
        status, first = post(s.peer, path, fields)
        eq(status, 200, repr(first))
        eq(sorted(first), ["access_token", "expires_in", "ext_expires_in", "refresh_token",
                           "scope", "token_type"])
        status, body = post(s.peer, path, fields)
        eq((status, body["error"], body["error_codes"]), (400, "invalid_grant", [70008]))
        eq(sorted(body), ["correlation_id", "error", "error_codes", "error_description",
                          "error_uri", "timestamp", "trace_id"])
        status, _ = post(s.peer, path, dict(fields, refresh_token=first["refresh_token"]))
        eq(status, 200)
        basic = "Basic " + base64.b64encode(
            ("%s:%s" % (CLIENT, urllib.parse.quote_plus(SECRET))).encode()).decode()
        eq(post(s.peer, path, {"grant_type": "client_credentials", "scope": SCOPE},
                auth=basic)[0], 200, "HTTP Basic client authentication")
        status, body = post(s.peer, path, {"grant_type": "client_credentials", "scope": SCOPE,
                                           "client_id": CLIENT, "client_secret": "old-secret"})
        eq((status, body["error_codes"]), (401, [7000222]))
        status, body = post(s.peer, "/common/oauth2/v2.0/token",
                            {"grant_type": "client_credentials", "scope": SCOPE,
                             "client_id": CLIENT, "client_secret": SECRET})
        eq((status, body["error_codes"]), (400, [9001023]))
        status, body = post(s.peer, "/nosuch.example/oauth2/v2.0/token", fields)
        eq((status, body["error_codes"]), (400, [90002]))


# ---------------------------------------------------------------- grants

def check_secret_request(s, entry):
    eq(entry["form"], {"grant_type": "client_credentials", "client_id": CLIENT,
                       "client_secret": SECRET, "scope": SCOPE})
    eq((entry["method"], entry["path"], entry["headers"]["content-type"]),
       ("POST", "/%s/oauth2/v2.0/token" % TENANT, "application/x-www-form-urlencoded"))


@test
def secret_inline():
    with Setup() as s:
        s.start()
        s.write_config({"app": s.app(client_secret_file=None, client_secret=SECRET)})
        r = s.token()
        reqs = s.tokens()
        eq(len(reqs), 1, repr(r))
        ok_token(r, reqs[0])
        check_secret_request(s, reqs[0])


@test
def secret_file():
    with Setup() as s:
        s.start()
        r = s.token("app")
        reqs = s.tokens()
        eq(len(reqs), 1, repr(r))
        ok_token(r, reqs[0])
        check_secret_request(s, reqs[0])


@test
def secret_command():
    with Setup() as s:
        s.start()
        s.write_config({"app": s.app(client_secret_file=None,
                                     client_secret_command="cat '%s'" % s.secret_file)})
        r = run_tokenmail(s.ws, ["token", "-C", s.config, "app"])  # options before ACCOUNT too
        reqs = s.tokens()
        eq(len(reqs), 1, repr(r))
        ok_token(r, reqs[0])
        check_secret_request(s, reqs[0])


def certificate_grant(alg, pkcs1):
    with Setup() as s:
        cert, key = client_cert(s.ws, "app", pkcs1=pkcs1)
        s.start(clients={CLIENT: {"certificate": cert, "tenant": TENANT}})
        over = {"client_secret_file": None, "client_certificate": cert, "client_key": key}
        if alg != "RS256":
            over["client_assertion_alg"] = alg
        s.write_config({"app": s.app(**over)})
        before = int(time.time())
        r = s.token()
        reqs = s.tokens()
        eq(len(reqs), 1, repr(r))
        ok_token(r, reqs[0])
        e = reqs[0]
        eq(sorted(e["form"]), ["client_assertion", "client_assertion_type", "client_id",
                               "grant_type", "scope"])
        eq((e["form"]["grant_type"], e["form"]["client_id"], e["form"]["scope"],
            e["form"]["client_assertion_type"]),
           ("client_credentials", CLIENT, SCOPE, ASSERTION_TYPE))
        a = e["assertion"]
        eq(a["verified"], True)
        thumb = "x5t" if alg == "RS256" else "x5t#S256"
        eq(a["header"], dict(a["header"], alg=alg, typ="JWT"))
        eq(sorted(a["header"]), sorted(["alg", "typ", thumb]), "header %r" % a["header"])
        c = a["claims"]
        eq(sorted(c), ["aud", "exp", "iat", "iss", "jti", "nbf", "sub"])
        eq((c["aud"], c["iss"], c["sub"]), (s.peer.url(TENANT), CLIENT, CLIENT))
        assert before - 2 <= c["iat"] <= time.time() + 1 and c["nbf"] == c["iat"], c
        eq(c["exp"] - c["iat"], 600, "lifetime")
        # A second request signs a fresh assertion (the peer refuses a reused jti).
        os.unlink(cache_path(s))
        r = s.token()
        reqs = s.tokens()
        eq(len(reqs), 2, repr(r))
        ok_token(r, reqs[1], "second assertion")
        assert reqs[1]["assertion"]["claims"]["jti"] != c["jti"]


@test
def certificate_rs256_pkcs1_key():
    certificate_grant("RS256", pkcs1=True)


@test
def certificate_ps256_pkcs8_key():
    certificate_grant("PS256", pkcs1=False)


@test
def federated_assertion_file_is_read_for_each_request():
    with Setup() as s:
        s.start(clients={CLIENT: {"federated": ["fed-token-one", "fed-token-two"],
                                  "tenant": TENANT}})
        path = s.ws.write("federated.jwt", "fed-token-one\n", 0o644)
        s.write_config({"app": s.app(client_secret_file=None, client_assertion_file=path)})
        r1 = s.token()
        s.ws.write("federated.jwt", "fed-token-two\n", 0o644)
        r2 = s.token()
        eq(len(s.tokens()), 1, "cached: the file is not read without a request")
        os.unlink(cache_path(s))
        r3 = s.token()
        reqs = s.tokens()
        eq(len(reqs), 2, repr(r3))
        ok_token(r1, reqs[0])
        ok_token(r2, reqs[0])
        ok_token(r3, reqs[1])
        for e, value in ((reqs[0], "fed-token-one"), (reqs[1], "fed-token-two")):
            eq(e["form"], {"grant_type": "client_credentials", "client_id": CLIENT,
                           "scope": SCOPE, "client_assertion_type": ASSERTION_TYPE,
                           "client_assertion": value})
            eq(e["assertion"], {"federated": True})


@test
def refresh_token_file_then_rotation():
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev(refresh_token_file=s.rt_file)})
        r1 = s.token("dev")
        set_expiry(s, 300)  # inside the 10-minute margin: refresh again
        r2 = s.token("dev")
        reqs = s.tokens()
        eq(len(reqs), 2, repr(r2))
        ok_token(r1, reqs[0])
        ok_token(r2, reqs[1])
        want = {"grant_type": "refresh_token", "client_id": PUBLIC, "scope": DELEGATED_SCOPE}
        eq(reqs[0]["form"], dict(want, refresh_token=FIRST_RT))
        eq(reqs[1]["form"], dict(want, refresh_token=reqs[0]["refresh_token"]),
           "the rotated token, not the file's")
        assert reqs[1]["refresh_token"] != reqs[0]["refresh_token"]
        # Without the cache only the file's token is left, and the peer has
        # retired it: the user must sign in again.
        os.unlink(cache_path(s))
        r3 = s.token("dev")
        eq(r3.rc, 77, repr(r3))
        error_lines(r3, 70008, "dev")
        match(r"tokenmail authorize dev", r3.err)


@test
def delegated_account_without_refresh_token_says_authorize():
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev()})
        r = s.token("dev")
        eq(r.rc, 78, repr(r))
        eq(r.out, b"")
        match(r"^tokenmail: .*\bdev\b", r.err)
        match(r"tokenmail authorize dev", r.err)
        eq(s.tokens(), [], "no request without a refresh token")


@test
def secret_files_open_to_others_are_refused():
    with Setup() as s:
        s.start()
        s.write_config({"app": s.app(), "dev": s.dev(refresh_token_file=s.rt_file)})
        for account, path in (("app", s.secret_file), ("dev", s.rt_file)):
            os.chmod(path, 0o640)
            r = s.token(account)
            eq(r.rc, 78, "%s: %r" % (account, r))
            eq(r.out, b"")
            match(r"^tokenmail: .*%s.*0640" % re.escape(path), r.err)
            match(r"^  hint: chmod 600 %s$" % re.escape(path), r.err)
        eq(s.peer.requests(), [], "no request with a secret others can read")


# ---------------------------------------------------------------- cache

@test
def second_call_uses_the_cache():
    with Setup() as s:
        s.start()
        r1 = s.token()
        r2 = s.token()
        reqs = s.tokens()
        eq(len(reqs), 1)
        ok_token(r1, reqs[0])
        ok_token(r2, reqs[0])
        eq(stat.S_IMODE(os.stat(s.cache_dir).st_mode), 0o700, "cache dir mode")
        path = cache_path(s)
        eq(stat.S_IMODE(os.stat(path).st_mode), 0o600, "cache file mode")
        with open(path) as f:
            doc = json.load(f)
        lifetime = doc["expires_at"] - reqs[0]["time"]
        assert 3590 <= lifetime <= 3601, "expires_at %r" % doc["expires_at"]


@test
def cache_is_tied_to_client_and_scope():
    with Setup() as s:
        s.start(clients={CLIENT: {"secrets": [SECRET], "tenant": TENANT},
                         "6f1c1a7e-0000-4000-8000-0000000000c3": {"secret": SECRET,
                                                                  "tenant": TENANT}})
        r1 = s.token()
        s.write_config({"app": s.app(scope="https://graph.microsoft.com/.default")})
        r2 = s.token()
        s.write_config({"app": s.app(client_id="6f1c1a7e-0000-4000-8000-0000000000c3")})
        r3 = s.token()
        reqs = s.tokens()
        eq(len(reqs), 3, "a token cached for another scope or client is not used")
        for r, e in zip((r1, r2, r3), reqs):
            ok_token(r, e)
        eq(reqs[1]["form"]["scope"], "https://graph.microsoft.com/.default")
        eq(reqs[2]["form"]["client_id"], "6f1c1a7e-0000-4000-8000-0000000000c3")


@test
def cache_directory_open_to_others_or_symlinked_cache_is_refused():
    with Setup() as s:
        s.start()
        eq(s.token().rc, 0)
        os.chmod(s.cache_dir, 0o755)
        r = s.token()
        eq(r.rc, 78, repr(r))
        eq(r.out, b"")
        match(r"^tokenmail: token cache directory %s is mode 0755" % re.escape(s.cache_dir),
              r.err)
        match(r"^  hint: chmod 700 %s$" % re.escape(s.cache_dir), r.err)
        os.chmod(s.cache_dir, 0o700)
        path = cache_path(s)
        os.unlink(path)
        os.symlink(s.secret_file, path)
        r = s.token()
        eq(r.rc, 78, repr(r))
        match(r"^tokenmail: token cache file %s is a symbolic link" % re.escape(path), r.err)
        eq(len(s.tokens()), 1)
        with open(s.secret_file) as f:
            eq(f.read(), SECRET + "\n", "the link's target is untouched")


def check_files_private(s):
    eq(stat.S_IMODE(os.stat(s.cache_dir).st_mode), 0o700, "cache dir mode")
    for name in os.listdir(s.cache_dir):
        path = os.path.join(s.cache_dir, name)
        mode = stat.S_IMODE(os.stat(path).st_mode)
        assert mode & 0o077 == 0, "%s has mode %o" % (path, mode)
    with open(cache_path(s)) as f:
        json.load(f)


def parallel(s, account):
    procs = []
    try:
        for _ in range(PARALLEL):
            procs.append(s.spawn("token", account))
        return wait_all(procs, timeout=120)
    finally:
        for p in procs:
            stop_process(p)


@test
def parallel_calls_on_a_cold_cache_make_one_request():
    with Setup() as s:
        s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "delay": 0.5}})
        results = parallel(s, "app")
        reqs = s.tokens()
        eq(len(reqs), 1, "requests for %d parallel calls" % PARALLEL)
        for r in results:
            ok_token(r, reqs[0], "parallel")
        check_files_private(s)


@test
def parallel_calls_on_an_expiring_token_make_one_refresh():
    with Setup() as s:
        s.start(clients={PUBLIC: {"public": True, "tenant": TENANT, "delay": 0.5,
                                  "refresh_tokens": [FIRST_RT]}})
        s.write_config({"dev": s.dev(refresh_token_file=s.rt_file)})
        first = s.token("dev")
        eq(first.rc, 0, repr(first))
        set_expiry(s, 300)
        results = parallel(s, "dev")
        reqs = s.tokens()
        eq(len(reqs), 2, "one refresh for %d parallel calls" % PARALLEL)
        eq(reqs[1]["form"]["refresh_token"], reqs[0]["refresh_token"])
        for r in results:
            ok_token(r, reqs[1], "parallel")
        assert reqs[1]["access_token"] != reqs[0]["access_token"]
        check_files_private(s)


@test
def damaged_cache_is_replaced_with_a_warning():
    with Setup() as s:
        s.start()
        eq(s.token().rc, 0)
        path = cache_path(s)
        with open(path, "w") as f:
            f.write('{"expires_at": 9999999999, "access_token": ')
        r = s.token()
        reqs = s.tokens()
        eq(len(reqs), 2, repr(r))
        eq(r.rc, 0, repr(r))
        eq(r.out, (reqs[1]["access_token"] + "\n").encode())
        match(r"^tokenmail: warning: .*%s" % re.escape(s.cache_dir), r.err)
        eq(len(r.err.splitlines()), 1, repr(r.err))
        check_files_private(s)


@test
def expires_in_as_string_or_missing():
    for what, client, lifetime in (("string", {"expires_in_string": True}, 3599),
                                   ("missing", {"omit_expires_in": True}, 3600)):
        with Setup() as s:
            s.start(clients={CLIENT: dict(client, secret=SECRET, tenant=TENANT)})
            r1 = s.token()
            r2 = s.token()
            reqs = s.tokens()
            eq(len(reqs), 1, what)
            ok_token(r1, reqs[0], what)
            ok_token(r2, reqs[0], what)
            with open(cache_path(s)) as f:
                expires_at = json.load(f)["expires_at"]
            assert abs(expires_at - (reqs[0]["time"] + lifetime)) <= 2, (what, expires_at)


@test
def short_lived_token_is_requested_each_time():
    with Setup() as s:
        s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "expires_in": 300}})
        r1 = s.token()
        r2 = s.token()
        reqs = s.tokens()
        eq(len(reqs), 2, "a token with less than 10 minutes left is not reused")
        ok_token(r1, reqs[0])
        ok_token(r2, reqs[1])


# ---------------------------------------------------------------- device code

def device_setup(s, polls, interval=1, strings=False, **dev_over):
    s.start(clients={PUBLIC: {"public": True, "tenant": TENANT,
                              "device": {"interval": interval, "polls": polls,
                                         "strings": strings}}})
    s.write_config({"dev": s.dev(**dev_over)})


@test
def device_code_pending_slow_down_success():
    with Setup() as s:
        device_setup(s, ["authorization_pending", "slow_down", "success"])
        r = s.authorize("dev", timeout=90)
        reqs = s.peer.requests()
        eq(r.rc, 0, repr(r))
        start = reqs[0]
        eq((start["endpoint"], start["form"]), ("devicecode",
           {"client_id": PUBLIC, "scope": DELEGATED_SCOPE}))
        eq(r.out.decode(), start["message"] + "\n" + AUTHORIZED % "dev")
        eq(r.err, "")
        polls = s.tokens(grant_type=DEVICE_GRANT)
        eq([p["answer"] for p in polls], ["authorization_pending", "slow_down", "ok"])
        for p in polls:
            eq(p["form"], {"grant_type": DEVICE_GRANT, "client_id": PUBLIC,
                           "device_code": start["device_code"]})
        for p in polls[1:]:
            assert p["poll"]["ok"], "polled too fast: %r" % [q["poll"] for q in polls]
        assert polls[1]["poll"]["gap"] >= 1, polls[1]["poll"]
        assert polls[2]["poll"]["gap"] >= 6, "slow_down adds 5 s: %r" % polls[2]["poll"]
        # The refresh token from the sign-in is what the next token call uses.
        r2 = s.token("dev")
        refresh = s.tokens(grant_type="refresh_token")
        eq(len(refresh), 0, "the sign-in's access token is cached: %r" % refresh)
        ok_token(r2, polls[2])
        set_expiry(s, 60)
        r3 = s.token("dev")
        refresh = s.tokens(grant_type="refresh_token")
        eq(len(refresh), 1)
        eq(refresh[0]["form"]["refresh_token"], polls[2]["refresh_token"])
        ok_token(r3, refresh[0])


@test
def device_code_declined():
    with Setup() as s:
        # device_code_url given explicitly (another tenant path) is used.
        device_setup(s, ["authorization_pending", "authorization_declined"])
        s.write_config({"dev": s.dev(device_code_url=s.peer.url("organizations", "devicecode"))})
        r = s.authorize("dev")
        eq(r.rc, 77, repr(r))
        eq(s.peer.requests()[0]["path"], "/organizations/oauth2/v2.0/devicecode")
        eq(r.out.decode(), s.peer.requests()[0]["message"] + "\n")
        match(r"^tokenmail: .*declined", r.err.splitlines()[0])
        match(r"\bdev\b", r.err)
        eq(len(s.tokens()), 2)
        assert not os.path.exists(s.cache_dir) or not any(
            n.endswith(".json") for n in os.listdir(s.cache_dir)), "nothing stored"


@test
def device_code_expired():
    with Setup() as s:
        # interval and expires_in as strings ("1", "900"), as Entra's v1 endpoint sends them
        device_setup(s, ["authorization_pending", "expired_token"], strings=True)
        r = s.authorize("dev")
        eq(r.rc, 75, repr(r))
        match(r"^tokenmail: .*expired", r.err.splitlines()[0])
        match(r"^  server: AADSTS70019: Verification code expired", r.err)
        match(r"\bdev\b", r.err)
        polls = s.tokens()
        eq([p["answer"] for p in polls], ["authorization_pending", "expired_token"])
        assert 1 <= polls[1]["poll"]["gap"] < 4, "interval \"1\" honoured: %r" % polls[1]["poll"]


# ---------------------------------------------------------------- PKCE

AUTHORIZED = "tokenmail: account %s is authorized; its refresh token is stored in the token cache\n"
URL_RE = re.compile(rb"https://127\.0\.0\.1:\d+/\S+/oauth2/v2\.0/authorize\?\S+")


def read_authorize_url(proc, timeout=15):
    """Lines from authorize --browser until the sign-in URL: (url, lines)."""
    deadline = time.monotonic() + timeout
    lines = []
    while time.monotonic() < deadline:
        line = read_line(proc.stdout, deadline - time.monotonic())
        if not line:
            break
        lines.append(line)
        m = URL_RE.search(line)
        if m:
            return m.group(0).decode(), lines
    raise AssertionError("no authorize URL on stdout within %ds: %r" % (timeout, lines))


def browser_start(s):
    """Run authorize --browser, open its URL at the peer: (proc, url query, Location)."""
    proc = s.spawn("authorize", "dev", "--browser")
    url, lines = read_authorize_url(proc)
    eq(lines, [b"Open this URL in a browser to sign in:\n", b"  " + url.encode() + b"\n"])
    query = dict(urllib.parse.parse_qsl(urllib.parse.urlsplit(url).query))
    status, headers, body = https_get(url, s.peer.ca)
    eq(status, 302, "peer's answer to the authorize URL: %r" % body[:300])
    return proc, query, headers["Location"]


@test
def browser_sign_in_with_pkce():
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev()})
        proc, query, location = browser_start(s)
        try:
            eq((query["client_id"], query["response_type"], query["scope"],
                query["code_challenge_method"]), (PUBLIC, "code", DELEGATED_SCOPE, "S256"))
            match(r"^http://127\.0\.0\.1:\d+/$", query["redirect_uri"])
            assert len(query.get("state", "")) >= 16, query
            match(r"^%s\?code=[^&]+&state=%s&session_state="
                  % (re.escape(query["redirect_uri"]), re.escape(urllib.parse.quote(
                      query["state"], safe=""))), location)
            status, _, page = https_get(location)
            eq(status, 200, "tokenmail's loopback answer: %r" % page[:300])
            r = wait_all([proc], timeout=30)[0]
        finally:
            stop_process(proc)
        eq(r.rc, 0, repr(r))
        eq((r.out.decode(), r.err), (AUTHORIZED % "dev", ""))
        eq(sorted(query), ["client_id", "code_challenge", "code_challenge_method",
                           "redirect_uri", "response_mode", "response_type", "scope", "state"])
        redeem = s.tokens(grant_type="authorization_code")
        eq(len(redeem), 1, repr(s.peer.requests()))
        e = redeem[0]
        eq(e["pkce"], "verified")
        eq(sorted(e["form"]), ["client_id", "code", "code_verifier", "grant_type",
                               "redirect_uri", "scope"])
        eq((e["form"]["client_id"], e["form"]["redirect_uri"], e["form"]["code"],
            e["form"]["scope"]), (PUBLIC, query["redirect_uri"],
                                  s.peer.requests(endpoint="authorize")[0]["code"],
                                  DELEGATED_SCOPE))
        r2 = s.token("dev")
        ok_token(r2, e)


@test
def browser_sign_in_without_offline_access_stores_nothing():
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev(scope="https://outlook.office.com/SMTP.Send")})
        proc, query, location = browser_start(s)
        try:
            eq(https_get(location)[0], 200)
            r = wait_all([proc], timeout=30)[0]
        finally:
            stop_process(proc)
        eq(r.rc, 78, repr(r))
        match(r"^tokenmail: .*no refresh token for account dev", r.err)
        match(r"^  hint: .*offline_access", r.err)
        eq(len(s.tokens(grant_type="authorization_code")), 1)
        eq(s.token("dev").rc, 78, "still no refresh token")


@test
def browser_sign_in_refuses_a_wrong_state():
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev()})
        proc, query, location = browser_start(s)
        try:
            forged = re.sub(r"state=[^&]+", "state=forged", location)
            status, _, page = https_get(forged)
            assert 400 <= status < 500, "status %d %r" % (status, page[:200])
            r = wait_all([proc], timeout=15)[0]
        finally:
            stop_process(proc)
        eq(r.rc, 77, repr(r))
        match(r"^tokenmail: .*state", r.err)
        eq(s.tokens(grant_type="authorization_code"), [], "the code was not redeemed")


@test
def browser_sign_in_denied():
    with Setup() as s:
        s.start(clients={PUBLIC: {"public": True, "tenant": TENANT,
                                  "authorize": "access_denied"}})
        s.write_config({"dev": s.dev()})
        proc, query, location = browser_start(s)
        try:
            match(r"[?&]error=access_denied&", location)
            https_get(location)
            r = wait_all([proc], timeout=15)[0]
        finally:
            stop_process(proc)
        eq(r.rc, 77, repr(r))
        match(r"^tokenmail: .*access_denied", r.err.splitlines()[0])
        match(r"^  server: AADSTS65004: User declined", r.err)
        eq(s.tokens(), [], "nothing to redeem")


# ---------------------------------------------------------------- errors

# (answer, how it comes about, exit code). 77: the endpoint refused the
# credentials or consent; 78: a wrong tenant, client or scope (token.h).
ENDPOINT_ERRORS = [
    ("7000215", "wrong secret", 77),
    ("7000222", "expired secret", 77),
    ("700016", "unknown client_id", 78),
    ("90002", "unknown tenant", 78),
    ("65001", "no consent", 77),
    ("70011", "bad scope", 78),
    ("700027", "unregistered certificate", 77),
    ("9001023", "client_credentials on /common", 78),
    ("50076", "MFA required", 77),
]


def provoke(s, code):
    """Config and peer for each entry of ENDPOINT_ERRORS."""
    clients = default_clients()
    app = {}
    if code == "7000215":
        s.ws.write("app.secret", "not-the-secret\n")
    elif code == "7000222":
        s.ws.write("app.secret", "expired-secret\n")
    elif code == "700016":
        app["client_id"] = "6f1c1a7e-0000-4000-8000-00000000dead"
    elif code == "70011":
        app["scope"] = "https://outlook.office365.com/SMTP.SendAsApp"
    elif code == "700027":
        cert, key = client_cert(s.ws, "registered")
        mine, mykey = client_cert(s.ws, "mine")
        clients[CLIENT]["certificate"] = cert
        app.update(client_secret_file=None, client_certificate=mine, client_key=mykey)
    elif code in ("65001", "50076"):
        clients[CLIENT]["error"] = code
    s.start(clients=clients, peer={"secret_errors": {"expired-secret": "7000222"}})
    base = s.app()
    if code == "90002":
        base["token_url"] = s.peer.url("nosuch.example")
    if code == "9001023":
        base["token_url"] = s.peer.url("common")
    base.update(app)
    s.write_config({"app": base})


@test
def token_endpoint_errors():
    for code, what, rc in ENDPOINT_ERRORS:
        with Setup() as s:
            provoke(s, code)
            r = s.token()
            eq(r.rc, rc, "%s (%s): %r" % (code, what, r))
            error_lines(r, code)
            reqs = s.tokens()
            eq(len(reqs), 1, "%s: one request, no retry" % code)
            eq(reqs[0]["aadsts"], int(code), what)


@test
def temporary_failures_exit_75():
    top = "retry: {attempts: 2, max_seconds: 10}"
    for answer in ("500", "503", "temporarily_unavailable"):
        with Setup() as s:
            s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "error": answer}},
                    top=top)
            s.write_config({"app": s.app()}, top)
            r = s.token(timeout=60)
            eq(r.rc, 75, "%s: %r" % (answer, r))
            eq(r.out, b"")
            match(r"^tokenmail: .*\bapp\b", r.err, answer)
            eq(len(s.tokens()), 2, "%s: retry.attempts is 2" % answer)
            assert r.elapsed < 30, (answer, r.elapsed)


@test
def temporary_failure_then_success():
    with Setup() as s:
        s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "script": ["503"]}})
        s.write_config({"app": s.app()}, "retry: {attempts: 3, max_seconds: 10}")
        r = s.token()
        reqs = s.tokens()
        eq([e["answer"] for e in reqs], ["503", "ok"], repr(r))
        ok_token(r, reqs[1])


@test
def answers_that_are_not_tokens_exit_76():
    for answer in ("nonjson", "notoken"):
        with Setup() as s:
            s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "error": answer}})
            r = s.token()
            eq(r.rc, 76, "%s: %r" % (answer, r))
            eq(r.out, b"")
            match(r"^tokenmail: .*\bapp\b", r.err, answer)


@test
def stalled_endpoint_times_out():
    with Setup() as s:
        top = "timeout: 2\nretry: {attempts: 1, max_seconds: 5}"
        s.start(clients={CLIENT: {"secret": SECRET, "tenant": TENANT, "error": "stall"}})
        s.write_config({"app": s.app()}, top)
        r = s.token(timeout=60)
        eq(r.rc, 75, repr(r))
        eq(r.out, b"")
        match(r"^tokenmail: .*\bapp\b", r.err)
        eq(len(s.tokens()), 1)
        assert 1.5 <= r.elapsed <= 10, "elapsed %.1f s with timeout: 2" % r.elapsed


@test
def unreachable_endpoint_exits_75():
    with Setup() as s:
        s.start()
        port = free_port()
        s.write_config({"app": s.app(
            token_url="https://127.0.0.1:%d/%s/oauth2/v2.0/token" % (port, TENANT))},
            "retry: {attempts: 1, max_seconds: 5}")
        r = s.token(timeout=60)
        eq(r.rc, 75, repr(r))
        eq(r.out, b"")
        match(r"^tokenmail: .*\bapp\b", r.err)
        assert r.elapsed < 10, r.elapsed


@test
def untrusted_or_misnamed_server_certificate_is_refused():
    for which in ("untrusted", "wronghost", "expired"):
        with Setup() as s:
            from tmtest import pki
            paths = pki(s.ws)
            s.start(peer={"cert": paths[which], "key": paths[which + "-key"]})
            s.write_config({"app": s.app()}, "retry: {attempts: 1, max_seconds: 5}")
            r = s.token(timeout=60)
            eq(r.rc, 69, "%s: %r" % (which, r))
            eq(r.out, b"", which)
            match(r"^tokenmail: cannot get a token for account app: cannot verify 127\.0\.0\.1",
                  r.err, which)
            match(r"^  hint: check tls_ca_file", r.err, which)
            eq(s.peer.requests(), [], "%s: no HTTP request after a bad handshake" % which)


@test
def unknown_account():
    with Setup() as s:
        s.start()
        r = s.token("nosuch")
        eq(r.rc, 64, repr(r))
        eq(r.out, b"")
        match(r"^tokenmail: no account named 'nosuch' in %s$" % re.escape(s.config), r.err)
        eq(s.peer.requests(), [])


# ---------------------------------------------------------------- secrets

def process_tree(root):
    """root and its descendants (pids), from /proc/*/stat."""
    parents = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    fields = f.read().rsplit(")", 1)[1].split()
                parents[int(d)] = int(fields[1])
            except (OSError, IndexError, ValueError):
                pass
    tree, grew = {root}, True
    while grew:
        grew = False
        for pid, ppid in parents.items():
            if ppid in tree and pid not in tree:
                tree.add(pid)
                grew = True
    return tree


def read_proc(pid, what):
    try:
        with open("/proc/%d/%s" % (pid, what), "rb") as f:
            return f.read()
    except OSError:
        return b""


@test
def secret_never_in_argv_or_environment():
    with Setup() as s:
        s.start()
        s.write_config({"app": s.app(client_secret_file=None,
                                     client_secret_command="sleep 1; cat '%s'" % s.secret_file)})
        proc = s.spawn("token", "app")
        seen, leaks = set(), []
        try:
            deadline = time.monotonic() + 20
            while proc.poll() is None and time.monotonic() < deadline:
                for pid in process_tree(proc.pid):
                    for what in ("cmdline", "environ"):
                        data = read_proc(pid, what)
                        if SECRET.encode() in data or urllib.parse.quote_plus(SECRET).encode() in data:
                            leaks.append((pid, what, data[:200]))
                    seen.add(read_proc(pid, "cmdline").split(b"\0")[0])
                time.sleep(0.02)
            r = wait_all([proc], timeout=10)[0]
        finally:
            stop_process(proc)
        eq(leaks, [], "secret in a process's argv or environment")
        assert b"sleep" in seen, "the scan ran while the command ran: %r" % seen
        reqs = s.tokens()
        eq(len(reqs), 1, repr(r))
        ok_token(r, reqs[0])
        check_secret_request(s, reqs[0])


@test
def verbose_output_has_no_secrets():
    with Setup() as s:
        cert, key = client_cert(s.ws, "app")
        clients = default_clients()
        clients[CLIENT]["certificate"] = cert
        s.start(clients=clients)
        cert_app = s.app(client_secret_file=None, client_certificate=cert, client_key=key,
                         **{"from": "cert@example.com"})
        s.write_config({"app": s.app(), "cert": cert_app,
                        "dev": s.dev(refresh_token_file=s.rt_file)})
        results = [(name, s.token(name, "-v")) for name in ("app", "cert", "dev")]
        reqs = s.tokens()
        eq(len(reqs), 3)
        forbidden = [SECRET, urllib.parse.quote_plus(SECRET), urllib.parse.quote(SECRET, safe=""),
                     FIRST_RT]
        for e in reqs:
            forbidden += [e["access_token"], e["refresh_token"] or FIRST_RT,
                          e["form"].get("client_assertion") or SECRET]
        for e in reqs:
            if e.get("assertion"):
                forbidden.append(e["form"]["client_assertion"].rsplit(".", 1)[1])  # signature
        for (name, r), e in zip(results, reqs):
            eq(r.rc, 0, "%s: %r" % (name, r))
            eq(r.out, (e["access_token"] + "\n").encode(), name)
            assert "/oauth2/v2.0/token" in r.err, "%s: -v traces the request: %r" % (name, r.err)
            for f in forbidden:
                assert f not in r.err, "%s: -v shows a secret (%s...)" % (name, f[:12])


@test
def verbose_sign_in_has_no_secrets():
    with Setup() as s:
        device_setup(s, [])
        r = s.authorize("dev", "-v")
        eq(r.rc, 0, repr(r))
        match(r"/oauth2/v2\.0/devicecode", r.err)
        e = s.tokens()[0]
        for f in (e["device_code"], e["access_token"], e["refresh_token"]):
            assert f not in r.err, "-v shows a secret (%s...)" % f[:12]
    with Setup() as s:
        s.start()
        s.write_config({"dev": s.dev()})
        proc = s.spawn("authorize", "dev", "--browser", "-v")
        try:
            url, _ = read_authorize_url(proc)
            status, headers, _ = https_get(url, s.peer.ca)
            eq(https_get(headers["Location"])[0], 200)
            r = wait_all([proc], timeout=30)[0]
        finally:
            stop_process(proc)
        eq(r.rc, 0, repr(r))
        e = s.tokens()[0]
        for f in (e["form"]["code"], e["form"]["code_verifier"], e["access_token"],
                  e["refresh_token"], urllib.parse.parse_qs(urllib.parse.urlsplit(
                      url).query)["state"][0]):
            assert f not in r.err, "-v shows a secret (%s...)" % f[:12]


if __name__ == "__main__":
    raise SystemExit(run_all())
