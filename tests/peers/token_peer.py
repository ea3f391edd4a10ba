#!/usr/bin/python3
"""token_peer: a fake Microsoft Entra ID v2 endpoint for tokenmail's tests.

    token_peer.py CONFIG.json LOG.jsonl

Serves HTTPS on 127.0.0.1 at an ephemeral port and prints "PORT n" as its
first stdout line. Stop it with SIGTERM (then SIGKILL). It behaves like
https://login.microsoftonline.com (PROTOCOL.md section 1):

  POST /{tenant}/oauth2/v2.0/token       client_credentials (client_secret in the
                                          body or HTTP Basic, a JWT client
                                          assertion checked against the
                                          registered certificate, or a federated
                                          assertion), refresh_token (rotating:
                                          the old token dies), authorization_code
                                          (+ PKCE S256), device_code polling
  POST /{tenant}/oauth2/v2.0/devicecode   starts a device code sign-in
  GET  /{tenant}/oauth2/v2.0/authorize    authorization code + PKCE: 302 to the
                                          loopback redirect_uri with code, state

Errors have Entra's shape: HTTP 400 (401 for invalid_client) with error,
error_description ("AADSTSnnn: ...\\r\\nTrace ID: ..."), error_codes,
timestamp, trace_id, correlation_id, error_uri.

Every request is appended to LOG as one JSON line before it is answered:
n, time, method, path, tenant, endpoint, query (GET), form (POST; a field
given twice is a list), headers (content-type, user-agent, authorization
scheme), basic ({client_id, client_secret} from HTTP Basic), grant_type,
client_id, answer (what the peer did: "ok", an error name, "stall"), status,
error, aadsts, and what applies of: assertion ({header, claims, verified,
thumbprint} or {federated: true}), pkce ("verified"), poll ({gap, interval,
ok}), access_token, refresh_token, expires_in, device_code, user_code, code.
Access tokens are JWT-shaped opaque strings the log lists with their expiry,
so other peers (SMTP, Graph) can check what they are given.

CONFIG (JSON):
  cert, key            TLS server certificate and key (PEM paths; tlsca.py)
  tenants              known tenants besides the clients' own and common,
                       organizations, consumers; with no client tenant and no
                       list, every tenant is known
  audience             the aud a client assertion must carry; default
                       "https://127.0.0.1:PORT" + the request path
  secret_errors        {secret value: answer name}: that secret gets that answer
  clients: {client_id: {
    secret | secrets   the client secret(s)
    certificate        PEM path (or list) registered for client assertions
    federated          [opaque assertions accepted, e.g. a Kubernetes token]
    tenant             the tenant the app lives in (absent: any)
    public             true: a public client (no secret; delegated flows)
    refresh_tokens     [refresh tokens valid from the start]
    expires_in         access token lifetime (default 3599)
    expires_in_string  true: send expires_in as a string ("3599")
    omit_expires_in    true: send no expires_in
    ext_expires_in     false: leave ext_expires_in out
    roles / scp        claims for app-only / delegated access tokens
    opaque             true: access tokens that are not JWTs (Google-like
                       "ya29." strings), so they carry no readable claims
    error              answer name for every token request of this client
    script             [answer names] for its next token requests, in order
                       ("ok" = normal processing)
    delay              seconds to wait before answering a token request
    device             {interval, expires_in, polls: ["authorization_pending",
                       "slow_down", "success", "authorization_declined",
                       "expired_token", "bad_verification_code"],
                       strings: true = numbers as strings}
    authorize          "ok" (default) | "access_denied"
    redirect_uri_re    allowed redirect_uri (default http://127.0.0.1:PORT/)
  }}

Answer names: the AADSTS numbers in ERRORS below (with or without the
"AADSTS" prefix), temporarily_unavailable, 500, 503, nonjson (200 with an
HTML page), notoken (200 JSON without access_token), stall (read the
request, never answer), and for fault tests:
  drop             read the request, close the connection without an answer
  truncated_tls    read the request, write the start of a TLS record (its
                   header announces more than follows) on the raw socket,
                   close: a TLS stream cut in the middle of a record
  partial          200 with Content-Length of a whole token answer, half
                   of its body, then close (the endpoint dies mid-answer)
  badjson          200 application/json whose body is cut-off JSON
  oversize         200 application/json of 2 MiB (Content-Length given)
  oversize_chunked the same, chunked (no Content-Length: the size is
                   only known while it arrives)
  garbage          a line that is not HTTP at all, then close
  400_nonjson      400 with an HTML page (no OAuth error document)
  drip             200 and a token answer, one octet every 0.25 s (a
                   server that never stops answering, slowly)
"""
import base64
import hashlib
import http.server
import json
import os
import re
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
import urllib.parse
import uuid

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANTS = ("client_credentials", "refresh_token", "authorization_code", DEVICE_GRANT)
ANY_TENANT = ("common", "organizations", "consumers")
MAX_BODY = 1024 * 1024
ASSERTION_MAX_LIFETIME = 600
CLOCK_SKEW = 2
DEFAULT_REDIRECT_RE = r"^http://127\.0\.0\.1:[0-9]{1,5}/$"
VERIFICATION_URI = "https://microsoft.com/devicelogin"

# Scripted or natural errors: name -> (HTTP status, error, AADSTS code, description).
# Descriptions are Entra's wording (reference-error-codes.md, observed answers);
# {client_id}, {tenant}, {scope}, {name}, {grant}, {resource}, {reason} are filled in.
ERRORS = {
    "7000215": (401, "invalid_client", 7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is "
                "the client secret value, not the client secret ID, for a secret added to app "
                "'{client_id}'."),
    "7000222": (401, "invalid_client", 7000222,
                "The provided client secret keys for app '{client_id}' are expired. Visit the "
                "Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, "
                "or consider using certificate credentials for added security: "
                "https://aka.ms/certCreds."),
    "700016": (400, "unauthorized_client", 700016,
               "Application with identifier '{client_id}' was not found in the directory "
               "'{tenant}'. This can happen if the application has not been installed by the "
               "administrator of the tenant or consented to by any user in the tenant. You may "
               "have sent your authentication request to the wrong tenant."),
    "90002": (400, "invalid_request", 90002,
              "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
              "and are signing into the correct cloud. Check with your subscription "
              "administrator, this may happen if there are no active subscriptions for the "
              "tenant."),
    "65001": (400, "invalid_grant", 65001,
              "The user or administrator has not consented to use the application with ID "
              "'{client_id}' named 'tokenmail test'. Send an interactive authorization request "
              "for this user and resource."),
    "70011": (400, "invalid_scope", 70011,
              "The provided value for the input parameter 'scope' is not valid. The scope "
              "{scope} is not valid."),
    "700027": (401, "invalid_client", 700027,
               "The certificate with identifier used to sign the client assertion is not "
               "registered on application. [Reason - The key was not found., Thumbprint of key "
               "used by client: '{reason}', Please visit the Azure Portal, Graph Explorer or "
               "directly use MS Graph to see configured keys for app Id '{client_id}'.]"),
    "9001023": (400, "invalid_request", 9001023,
                "The grant type isn't supported over the /common or /consumers endpoints. "
                "Please use the /organizations or tenant-specific endpoint."),
    "70008": (400, "invalid_grant", 70008,
              "The provided authorization code or refresh token has expired due to "
              "inactivity. Send a new interactive authorization request for this user and "
              "resource."),
    "50076": (400, "invalid_grant", 50076,
              "Due to a configuration change made by your administrator, or because you moved "
              "to a new location, you must use multi-factor authentication to access "
              "'{resource}'."),
    "temporarily_unavailable": (400, "temporarily_unavailable", 90033,
                                "A transient error has occurred. Please try again."),
    "500": (500, "server_error", 90100,
            "An internal server error occurred. Please try again."),
    # natural errors (answers to what the client sent)
    "900144": (400, "invalid_request", 900144,
               "The request body must contain the following parameter: '{name}'."),
    "9000411": (400, "invalid_request", 9000411,
                "The request is not properly formatted. The parameter '{name}' is duplicated."),
    "70003": (400, "unsupported_grant_type", 70003,
              "The app requested an unsupported grant type '{grant}'."),
    "7000218": (401, "invalid_client", 7000218,
                "The request body must contain the following parameter: 'client_assertion' "
                "or 'client_secret'."),
    "700025": (401, "invalid_client", 700025,
               "Client is public so neither 'client_assertion' nor 'client_secret' should be "
               "presented."),
    "50027": (401, "invalid_client", 50027,
              "JWT token is invalid or malformed. {reason}"),
    "50012": (401, "invalid_client", 50012,
              "{reason}"),
    "700021": (401, "invalid_client", 700021,
               "Client assertion application identifier doesn't match 'client_id' parameter. "
               "Review the documentation at "
               "https://learn.microsoft.com/entra/identity-platform/certificate-credentials ."),
    "50048": (401, "invalid_client", 50048,
              "Subject mismatches Issuer claim in the client assertion for application "
              "'{client_id}'."),
    "700024": (401, "invalid_client", 700024,
               "Client assertion is not within its valid time range. {reason}"),
    "70000": (400, "invalid_grant", 70000,
              "The provided value for the 'code' parameter is not valid. {reason}"),
    "54005": (400, "invalid_grant", 54005,
              "OAuth2 Authorization code was already redeemed, please retry with a new valid "
              "code or use an existing refresh token."),
    "501481": (400, "invalid_grant", 501481,
               "The Code_Verifier does not match the code_challenge supplied in the "
               "authorization request."),
    "50011": (400, "invalid_grant", 50011,
              "The redirect URI '{reason}' specified in the request does not match the "
              "redirect URI of the authorization request."),
    # device code polling (RFC 8628 names; Entra's codes)
    "authorization_pending": (400, "authorization_pending", 70016,
                              "OAuth 2.0 device flow error. Authorization is pending. "
                              "Continue polling."),
    "slow_down": (400, "slow_down", None,
                  "Polling too frequently: wait 5 more seconds between requests."),
    "authorization_declined": (400, "authorization_declined", 70000,
                               "The user declined the authorization request."),
    "expired_token": (400, "expired_token", 70019,
                      "Verification code expired."),
    "bad_verification_code": (400, "bad_verification_code", 70018,
                              "Invalid verification code."),
}
SUBERRORS = {"65001": "consent_required", "50076": "basic_action"}
SPECIAL_ANSWERS = ("503", "nonjson", "notoken", "stall", "ok", "drop", "truncated_tls",
                   "partial", "badjson", "oversize", "oversize_chunked", "garbage",
                   "400_nonjson", "drip")
OVERSIZE = 2 * 1024 * 1024


class PeerError(Exception):
    """An Entra-shaped error answer: name from ERRORS plus fill-ins."""

    def __init__(self, name, **fill):
        super().__init__(name)
        self.name = answer_name(name)
        self.fill = fill


def answer_name(name):
    name = str(name)
    return name[6:] if name.startswith("AADSTS") else name


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64url_decode(text):
    if not re.fullmatch(r"[A-Za-z0-9_-]*", text):
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def utc_stamp(t=None):
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(t))


def resource_of(scope):
    """The resource a scope list is for (the first scope's)."""
    first = (scope or "").split()[0] if (scope or "").split() else ""
    if first.endswith("/.default"):
        return first[:-len("/.default")]
    if "://" in first:
        return first.rsplit("/", 1)[0]
    return "https://graph.microsoft.com"


def scope_names(scope):
    names = []
    for s in (scope or "").split():
        if s in ("offline_access", "openid", "profile", "email"):
            continue
        names.append(s.rsplit("/", 1)[-1] if "://" in s else s)
    return " ".join(names)


class State:
    """Everything the peer remembers, under one lock."""

    def __init__(self, config, log_path):
        self.config = config
        self.log_path = log_path
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.port = 0
        self.seq = 0
        self.clients = config.get("clients", {})
        self.refresh_tokens = {}     # token -> {client_id, scope, tenant}
        self.access_tokens = {}      # token -> {client_id, exp, scope}
        self.jtis = set()
        self.devices = {}            # device_code -> record
        self.codes = {}              # authorization code -> record
        self.scripts = {cid: list(c.get("script", [])) for cid, c in self.clients.items()}
        self.certs = {cid: self._load_certs(c) for cid, c in self.clients.items()}
        for cid, c in self.clients.items():
            for rt in c.get("refresh_tokens", []):
                self.refresh_tokens[rt] = {"client_id": cid, "scope": None}
        known = set(config.get("tenants", []))
        known.update(c["tenant"] for c in self.clients.values() if c.get("tenant"))
        self.tenants = (known | set(ANY_TENANT)) if known else None

    @staticmethod
    def _load_certs(client):
        paths = client.get("certificate") or []
        if isinstance(paths, str):
            paths = [paths]
        certs = []
        for path in paths:
            with open(path, "rb") as f:
                cert = x509.load_pem_x509_certificate(f.read())
            der = cert.public_bytes(serialization.Encoding.DER)
            certs.append({"cert": cert, "x5t": b64url(hashlib.sha1(der).digest()),
                          "x5t#S256": b64url(hashlib.sha256(der).digest())})
        return certs

    def log(self, entry):
        with self.lock:
            self.seq += 1
            entry["n"] = self.seq
            line = json.dumps(entry, sort_keys=True) + "\n"
            with open(self.log_path, "a") as f:
                f.write(line)
                f.flush()


def error_body(name, fill):
    status, error, code, text = ERRORS[name]
    values = {"client_id": "", "tenant": "", "scope": "", "name": "", "grant": "",
              "resource": "", "reason": ""}
    values.update({k: v for k, v in fill.items() if v is not None})
    desc = text.format(**values).strip()
    now = time.time()
    trace, corr = str(uuid.uuid4()), str(uuid.uuid4())
    body = {"error": error,
            "error_description": "%s%s\r\nTrace ID: %s\r\nCorrelation ID: %s\r\nTimestamp: %s"
            % ("AADSTS%d: " % code if code else "", desc, trace, corr, utc_stamp(now)),
            "error_codes": [code] if code else [],
            "timestamp": utc_stamp(now), "trace_id": trace, "correlation_id": corr}
    if code:
        body["error_uri"] = "https://login.microsoftonline.com/error?code=%d" % code
    if name in SUBERRORS:
        body["suberror"] = SUBERRORS[name]
    return status, body


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "tokenpeer"
    sys_version = ""
    timeout = 60
    state = None  # set by main

    def log_message(self, fmt, *args):
        if os.environ.get("TOKEN_PEER_DEBUG"):
            sys.stderr.write("token_peer: " + (fmt % args) + "\n")

    # ---- plumbing ----

    def send_body(self, status, body, ctype="application/json; charset=utf-8", headers=()):
        data = body if isinstance(body, bytes) else (
            json.dumps(body).encode() if not isinstance(body, str) else body.encode())
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store, no-cache")
        self.send_header("Pragma", "no-cache")
        self.send_header("x-ms-request-id", str(uuid.uuid4()))
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def base_entry(self):
        auth = self.headers.get("Authorization") or ""
        return {"time": time.time(), "method": self.command,
                "path": urllib.parse.urlsplit(self.path).path,
                "headers": {"content-type": self.headers.get("Content-Type"),
                            "user-agent": self.headers.get("User-Agent"),
                            "authorization": auth.split(" ", 1)[0] if auth else None}}

    def route(self):
        m = re.fullmatch(r"/([^/]+)/oauth2/v2\.0/(token|devicecode|authorize)",
                         urllib.parse.urlsplit(self.path).path)
        return (urllib.parse.unquote(m.group(1)), m.group(2)) if m else (None, None)

    def tenant_known(self, tenant):
        t = self.state.tenants
        return t is None or tenant in t

    def answer_error(self, entry, name, **fill):
        status, body = error_body(name, fill)
        entry.update(answer=name, status=status, error=body["error"],
                     aadsts=body["error_codes"][0] if body["error_codes"] else None)
        self.state.log(entry)
        self.send_body(status, body)

    def answer_special(self, entry, name):
        """503, nonjson, notoken, stall. Returns False for a name it does not know."""
        if name == "stall":
            entry.update(answer="stall", status=None)
            self.state.log(entry)
            self.state.stop.wait(600)
            self.close_connection = True
            return True
        if name == "503":
            entry.update(answer="503", status=503)
            self.state.log(entry)
            self.send_body(503, "<html><body><h1>503 Service Unavailable</h1></body></html>",
                           "text/html", [("Retry-After", "1")])
            return True
        if name == "nonjson":
            entry.update(answer="nonjson", status=200)
            self.state.log(entry)
            self.send_body(200, "<!DOCTYPE html><html><head><title>Sign in to your account"
                           "</title></head><body>Sign in</body></html>", "text/html; charset=utf-8")
            return True
        if name == "notoken":
            entry.update(answer="notoken", status=200)
            self.state.log(entry)
            self.send_body(200, {"token_type": "Bearer", "expires_in": 3599})
            return True
        return self.answer_fault(entry, name)

    # ---- answers for fault tests (a token is never issued by these) ----

    def hang_up(self):
        """Close the connection now, without TLS close_notify."""
        self.close_connection = True
        try:
            self.wfile.flush()
        except (OSError, ValueError):
            pass
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except (OSError, ValueError):
            pass

    @staticmethod
    def fake_token_body(pad=0):
        body = {"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599,
                "access_token": "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJmYWtlIjp0cnVlfQ." +
                b64url(secrets.token_bytes(64))}
        if pad:
            body["padding"] = "x" * pad
        return json.dumps(body).encode()

    def answer_fault(self, entry, name):
        """drop, truncated_tls, partial, badjson, oversize(_chunked), garbage,
        400_nonjson, drip. Returns False for a name it does not know."""
        if name not in ("drop", "truncated_tls", "partial", "badjson", "oversize",
                        "oversize_chunked", "garbage", "400_nonjson", "drip"):
            return False
        status = {"badjson": 200, "oversize": 200, "oversize_chunked": 200, "partial": 200,
                  "400_nonjson": 400, "drip": 200}.get(name)
        entry.update(answer=name, status=status)
        self.state.log(entry)
        if name == "drop":
            self.hang_up()
        elif name == "truncated_tls":
            try:
                self.wfile.flush()
                # application_data, TLS 1.2 record version, 16384 octets announced
                os.write(self.connection.fileno(), b"\x17\x03\x03\x40\x00" +
                         secrets.token_bytes(100))
            except OSError:
                pass
            self.hang_up()
        elif name == "partial":
            data = self.fake_token_body()
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[:len(data) // 2])
            self.hang_up()
        elif name == "badjson":
            self.send_body(200, self.fake_token_body()[:70])
        elif name == "oversize":
            self.send_body(200, self.fake_token_body(OVERSIZE))
        elif name == "oversize_chunked":
            data = self.fake_token_body(OVERSIZE)
            self.send_response(200)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for i in range(0, len(data), 65536):
                    piece = data[i:i + 65536]
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                self.wfile.write(b"0\r\n\r\n")
            except OSError:
                pass
            self.close_connection = True
        elif name == "drip":
            data = self.fake_token_body()
            head = (b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n" % len(data))
            try:
                self.wfile.flush()
                for i in range(len(head + data)):
                    if self.state.stop.wait(0.25):
                        break
                    self.wfile.write((head + data)[i:i + 1])
                    self.wfile.flush()
            except (OSError, ValueError):
                pass
            self.hang_up()
        elif name == "garbage":
            self.wfile.write(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n\x00\x01\x02 not HTTP\r\n")
            self.hang_up()
        else:
            self.send_body(400, "<html><body><h1>Bad Request</h1></body></html>",
                           "text/html")
        return True

    def answer(self, entry, name, **fill):
        if self.answer_special(entry, name):
            return
        if name not in ERRORS:
            raise ValueError("token_peer: unknown answer name %r" % name)
        self.answer_error(entry, name, **fill)

    def read_form(self, entry):
        """The urlencoded body as a dict (a repeated field becomes a list)."""
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            raw = self.read_chunked()
        else:
            n = int(self.headers.get("Content-Length") or 0)
            if n > MAX_BODY:
                raise PeerError("900144", name="grant_type")
            raw = self.rfile.read(n)
        pairs = urllib.parse.parse_qsl(raw.decode("utf-8", "replace"), keep_blank_values=True)
        form = {}
        for k, v in pairs:
            if k in form:
                form[k] = (form[k] if isinstance(form[k], list) else [form[k]]) + [v]
            else:
                form[k] = v
        entry["form"] = form
        entry["body_bytes"] = len(raw)
        return form

    def read_chunked(self):
        data = b""
        while len(data) <= MAX_BODY:
            size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
            if size == 0:
                self.rfile.readline()
                break
            data += self.rfile.read(size)
            self.rfile.readline()
        return data

    # ---- dispatch ----

    def do_POST(self):
        tenant, endpoint = self.route()
        entry = self.base_entry()
        entry.update(tenant=tenant, endpoint=endpoint)
        try:
            form = self.read_form(entry)
            if endpoint == "token":
                self.token(entry, tenant, form)
            elif endpoint == "devicecode":
                self.devicecode(entry, tenant, form)
            else:
                entry.update(answer="not found", status=404)
                self.state.log(entry)
                self.send_body(404, {"error": "not_found"})
        except PeerError as e:
            self.answer(entry, e.name, **e.fill)

    def do_GET(self):
        tenant, endpoint = self.route()
        entry = self.base_entry()
        entry.update(tenant=tenant, endpoint=endpoint)
        if endpoint != "authorize":
            entry.update(answer="not found", status=404)
            self.state.log(entry)
            self.send_body(404, {"error": "not_found"})
            return
        self.authorize(entry, tenant)

    # ---- token endpoint ----

    def check_form(self, form, content_type):
        if not (content_type or "").lower().startswith("application/x-www-form-urlencoded"):
            raise PeerError("900144", name="grant_type")
        for k, v in form.items():
            if isinstance(v, list):
                raise PeerError("9000411", name=k)

    def client_of(self, entry, tenant, form):
        """(client_id, client record, basic secret or None)."""
        basic = None
        auth = self.headers.get("Authorization") or ""
        if auth.lower().startswith("basic "):
            try:
                cid, _, sec = base64.b64decode(auth[6:].strip()).decode().partition(":")
                basic = {"client_id": urllib.parse.unquote_plus(cid),
                         "client_secret": urllib.parse.unquote_plus(sec)}
            except ValueError:
                raise PeerError("7000218")
            entry["basic"] = basic
        cid = form.get("client_id") or (basic or {}).get("client_id")
        entry["client_id"] = cid
        if not cid:
            raise PeerError("900144", name="client_id")
        client = self.state.clients.get(cid)
        if client is None or (client.get("tenant") and tenant not in ANY_TENANT and
                              tenant != client["tenant"]):
            raise PeerError("700016", client_id=cid, tenant=tenant)
        return cid, client, (basic or {}).get("client_secret")

    def scripted(self, cid, client):
        """The scripted answer for this token request of client cid, or None."""
        with self.state.lock:
            script = self.state.scripts.get(cid)
            if script:
                name = answer_name(script.pop(0))
                return None if name == "ok" else name
        if client.get("error"):
            return answer_name(client["error"])
        return None

    def token(self, entry, tenant, form):
        if not self.tenant_known(tenant):
            raise PeerError("90002", tenant=tenant)
        self.check_form(form, self.headers.get("Content-Type"))
        grant = form.get("grant_type")
        entry["grant_type"] = grant
        if not grant:
            raise PeerError("900144", name="grant_type")
        if grant not in GRANTS:
            raise PeerError("70003", grant=grant)
        cid, client, basic_secret = self.client_of(entry, tenant, form)
        if client.get("delay"):
            time.sleep(float(client["delay"]))
        name = self.scripted(cid, client)
        if name:
            self.answer(entry, name, client_id=cid, tenant=tenant, scope=form.get("scope"),
                        resource=resource_of(form.get("scope")), reason="scripted")
            return
        if grant == "client_credentials":
            self.grant_client_credentials(entry, tenant, form, cid, client, basic_secret)
        elif grant == "refresh_token":
            self.grant_refresh_token(entry, tenant, form, cid, client, basic_secret)
        elif grant == "authorization_code":
            self.grant_authorization_code(entry, tenant, form, cid, client, basic_secret)
        else:
            self.grant_device_code(entry, tenant, form, cid, client, basic_secret)

    def authenticate(self, entry, tenant, form, cid, client, basic_secret):
        """Check the client's credential (or its absence for public clients)."""
        secret = form.get("client_secret")
        assertion = form.get("client_assertion")
        if secret is not None and basic_secret is not None:
            raise PeerError("900144", name="client_secret")  # two secrets: not allowed
        secret = secret if secret is not None else basic_secret
        if client.get("public"):
            if secret is not None or assertion is not None:
                raise PeerError("700025")
            return
        if secret is not None and assertion is not None:
            raise PeerError("7000218")
        if secret is not None:
            entry["secret_source"] = "basic" if basic_secret is not None else "body"
            scripted = self.state.config.get("secret_errors", {}).get(secret)
            if scripted:
                raise PeerError(scripted, client_id=cid, tenant=tenant)
            allowed = client.get("secrets") or ([client["secret"]] if "secret" in client else [])
            if secret not in allowed:
                raise PeerError("7000215", client_id=cid)
            return
        if assertion is not None:
            if form.get("client_assertion_type") != ASSERTION_TYPE:
                raise PeerError("50027", reason="client_assertion_type must be %s."
                                % ASSERTION_TYPE)
            if assertion in client.get("federated", []):
                entry["assertion"] = {"federated": True}
                return
            entry["assertion"] = self.verify_assertion(assertion, cid, tenant)
            return
        raise PeerError("7000218")

    def expected_audience(self):
        aud = self.state.config.get("audience")
        return aud or "https://127.0.0.1:%d%s" % (self.state.port,
                                                   urllib.parse.urlsplit(self.path).path)

    def verify_assertion(self, jwt, cid, tenant):
        """Check a JWT client assertion as Entra does; returns what the log shows."""
        parts = jwt.split(".")
        if len(parts) != 3:
            raise PeerError("50027", reason="It has %d parts, not 3." % len(parts))
        try:
            header = json.loads(b64url_decode(parts[0]))
            claims = json.loads(b64url_decode(parts[1]))
            signature = b64url_decode(parts[2])
        except ValueError as e:
            raise PeerError("50027", reason="Cannot decode it: %s." % e)
        if not isinstance(header, dict) or not isinstance(claims, dict):
            raise PeerError("50027", reason="Header and claims must be JSON objects.")
        info = {"header": header, "claims": claims, "verified": False}
        cert = self.find_certificate(header, cid, info)
        self.check_signature(header, parts, signature, cert)
        self.check_claims(claims, cid)
        info["verified"] = True
        return info

    def find_certificate(self, header, cid, info):
        certs = self.state.certs.get(cid, [])
        x5t, s256 = header.get("x5t"), header.get("x5t#S256")
        if x5t is None and s256 is None:
            raise PeerError("700027", client_id=cid, reason="(none: no x5t or x5t#S256)")
        found = None
        for c in certs:
            ok1 = x5t is None or x5t == c["x5t"]
            ok2 = s256 is None or s256 == c["x5t#S256"]
            if ok1 and ok2:
                found = c
                break
        if found is None:
            raise PeerError("700027", client_id=cid, reason=x5t if x5t is not None else s256)
        info["thumbprint"] = "both" if (x5t and s256) else ("x5t" if x5t else "x5t#S256")
        return found

    @staticmethod
    def check_signature(header, parts, signature, cert):
        alg = header.get("alg")
        key = cert["cert"].public_key()
        signed = (parts[0] + "." + parts[1]).encode()
        if alg == "RS256":
            pad = padding.PKCS1v15()
        elif alg == "PS256":
            # RFC 7518 3.5: MGF1 with SHA-256, salt as long as the hash.
            pad = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
        else:
            raise PeerError("50012", reason="The client assertion uses the unsupported "
                            "algorithm '%s'." % alg)
        try:
            key.verify(signature, signed, pad, hashes.SHA256())
        except (InvalidSignature, ValueError, TypeError):
            raise PeerError("50012", reason="Client assertion contains an invalid signature. "
                            "[Reason - The key was found, but the signature is not valid "
                            "for alg %s.]" % alg)

    def check_claims(self, claims, cid):
        aud = self.expected_audience()
        if claims.get("aud") != aud:
            raise PeerError("50012", reason="Client assertion audience claim does not match "
                            "Realm issuer: got %r, want %r." % (claims.get("aud"), aud))
        if claims.get("iss") != cid:
            raise PeerError("700021")
        if claims.get("sub") != claims.get("iss"):
            raise PeerError("50048", client_id=cid)
        now = time.time()
        times = {k: claims.get(k) for k in ("nbf", "iat", "exp")}
        for k, v in times.items():
            if not isinstance(v, int) or isinstance(v, bool):
                raise PeerError("700024", reason="Claim '%s' must be an integer: %r." % (k, v))
        if times["nbf"] > now + CLOCK_SKEW or times["iat"] > now + CLOCK_SKEW:
            raise PeerError("700024", reason="Current time: %d, assertion valid from %d "
                            "(issued %d)." % (now, times["nbf"], times["iat"]))
        if times["exp"] <= now:
            raise PeerError("700024", reason="Current time: %d, expiry time of assertion %d."
                            % (now, times["exp"]))
        if times["exp"] - min(times["nbf"], times["iat"]) > ASSERTION_MAX_LIFETIME or \
                times["exp"] > now + ASSERTION_MAX_LIFETIME + CLOCK_SKEW:
            raise PeerError("700024", reason="The assertion lives %d seconds; at most %d."
                            % (times["exp"] - times["nbf"], ASSERTION_MAX_LIFETIME))
        jti = claims.get("jti")
        with self.state.lock:
            if not isinstance(jti, str) or not jti or jti in self.state.jtis:
                raise PeerError("50012", reason="The client assertion's jti %r is missing or "
                                "was used before." % (jti,))
            self.state.jtis.add(jti)

    def grant_client_credentials(self, entry, tenant, form, cid, client, basic_secret):
        if tenant in ("common", "consumers"):
            raise PeerError("9001023")
        scope = form.get("scope")
        if not scope:
            raise PeerError("900144", name="scope")
        words = scope.split()
        if len(words) != 1 or not words[0].endswith("/.default"):
            raise PeerError("70011", scope=scope)
        self.authenticate(entry, tenant, form, cid, client, basic_secret)
        self.issue(entry, cid, client, tenant, scope, delegated=False)

    def grant_refresh_token(self, entry, tenant, form, cid, client, basic_secret):
        rt = form.get("refresh_token")
        if not rt:
            raise PeerError("900144", name="refresh_token")
        self.authenticate(entry, tenant, form, cid, client, basic_secret)
        with self.state.lock:
            rec = self.state.refresh_tokens.get(rt)
            if rec is None or rec["client_id"] != cid:
                raise PeerError("70008")
            del self.state.refresh_tokens[rt]   # rotation: the old one is dead now
        scope = form.get("scope") or rec.get("scope") or ""
        self.issue(entry, cid, client, tenant, scope, delegated=True, refresh=True)

    def grant_authorization_code(self, entry, tenant, form, cid, client, basic_secret):
        for name in ("code", "redirect_uri", "code_verifier"):
            if not form.get(name):
                raise PeerError("900144", name=name)
        self.authenticate(entry, tenant, form, cid, client, basic_secret)
        with self.state.lock:
            rec = self.state.codes.get(form["code"])
            if rec is None or rec["client_id"] != cid:
                raise PeerError("70000", reason="The code is unknown.")
            if rec["redeemed"]:
                raise PeerError("54005")
            rec["redeemed"] = True
        if form["redirect_uri"] != rec["redirect_uri"]:
            raise PeerError("50011", reason=form["redirect_uri"])
        challenge = b64url(hashlib.sha256(form["code_verifier"].encode()).digest())
        verifier_ok = re.fullmatch(r"[A-Za-z0-9._~-]{43,128}", form["code_verifier"])
        if challenge != rec["challenge"] or not verifier_ok:
            raise PeerError("501481")
        entry["pkce"] = "verified"
        entry["code"] = form["code"]
        self.issue(entry, cid, client, tenant, rec["scope"], delegated=True)

    def grant_device_code(self, entry, tenant, form, cid, client, basic_secret):
        dc = form.get("device_code")
        if not dc:
            raise PeerError("900144", name="device_code")
        self.authenticate(entry, tenant, form, cid, client, basic_secret)
        now = time.monotonic()
        with self.state.lock:
            rec = self.state.devices.get(dc)
            if rec is None or rec["client_id"] != cid or rec["done"]:
                raise PeerError("bad_verification_code")
            gap = now - rec["last"]
            entry["poll"] = {"gap": round(gap, 3), "interval": rec["interval"],
                             "ok": gap + 0.02 >= rec["interval"]}
            entry["device_code"] = dc
            rec["last"] = now
            if now > rec["expires"]:
                rec["done"] = True
                raise PeerError("expired_token")
            step = rec["polls"].pop(0) if rec["polls"] else "success"
            if step == "slow_down":
                rec["interval"] += 5
            if step in ("success", "authorization_declined", "expired_token"):
                rec["done"] = True
        if step != "success":
            raise PeerError(step)
        self.issue(entry, cid, client, tenant, rec["scope"], delegated=True)

    # ---- tokens ----

    def make_access_token(self, cid, client, tenant, scope, delegated, lifetime):
        if client.get("opaque"):
            return "ya29." + b64url(secrets.token_bytes(96))
        now = int(time.time())
        claims = {"aud": resource_of(scope), "iss": "https://sts.windows.net/%s/" % tenant,
                  "iat": now, "nbf": now, "exp": now + lifetime, "appid": cid,
                  "tid": tenant, "ver": "1.0", "uti": b64url(secrets.token_bytes(16))}
        if delegated:
            claims["scp"] = client.get("scp") or scope_names(scope)
            claims["upn"] = "user@" + tenant
        else:
            claims["roles"] = client.get("roles") or (
                ["Mail.Send"] if "graph" in claims["aud"] else ["SMTP.SendAsApp"])
        header = {"typ": "JWT", "alg": "RS256", "x5t": "tokenpeer", "kid": "tokenpeer"}
        return "%s.%s.%s" % (b64url(json.dumps(header, separators=(",", ":")).encode()),
                             b64url(json.dumps(claims, separators=(",", ":")).encode()),
                             b64url(secrets.token_bytes(256)))

    def issue(self, entry, cid, client, tenant, scope, delegated, refresh=False):
        lifetime = int(client.get("expires_in", 3599))
        at = self.make_access_token(cid, client, tenant, scope, delegated, lifetime)
        body = {"token_type": "Bearer"}
        if delegated:
            body["scope"] = scope_names(scope)
        if not client.get("omit_expires_in"):
            body["expires_in"] = str(lifetime) if client.get("expires_in_string") else lifetime
        if client.get("ext_expires_in", True):
            body["ext_expires_in"] = str(lifetime) if client.get("expires_in_string") else lifetime
        body["access_token"] = at
        rt = None
        if delegated and (refresh or "offline_access" in (scope or "").split()):
            rt = "0.AR8A" + b64url(secrets.token_bytes(96))
            body["refresh_token"] = rt
        if delegated and "openid" in (scope or "").split():
            body["id_token"] = "%s.%s." % (
                b64url(b'{"typ":"JWT","alg":"none"}'),
                b64url(json.dumps({"aud": cid, "tid": tenant, "sub": "user"}).encode()))
        with self.state.lock:
            self.state.access_tokens[at] = {"client_id": cid, "scope": scope,
                                            "exp": time.time() + lifetime}
            if rt:
                self.state.refresh_tokens[rt] = {"client_id": cid, "scope": scope}
        entry.update(answer="ok", status=200, access_token=at, refresh_token=rt,
                     expires_in=body.get("expires_in"), scope=scope)
        self.state.log(entry)
        self.send_body(200, body)

    # ---- device code ----

    def devicecode(self, entry, tenant, form):
        if not self.tenant_known(tenant):
            raise PeerError("90002", tenant=tenant)
        self.check_form(form, self.headers.get("Content-Type"))
        cid = form.get("client_id")
        entry["client_id"] = cid
        if not cid:
            raise PeerError("900144", name="client_id")
        client = self.state.clients.get(cid)
        if client is None:
            raise PeerError("700016", client_id=cid, tenant=tenant)
        if not form.get("scope"):
            raise PeerError("900144", name="scope")
        dev = dict({"interval": 5, "expires_in": 900, "polls": []}, **client.get("device", {}))
        dc = "DAQABIQEAAADW6jl31mB3T7ugrWTT8pFe" + b64url(secrets.token_bytes(48))
        user_code = client.get("device", {}).get("user_code") or "".join(
            secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ23456789") for _ in range(9))
        now = time.monotonic()
        with self.state.lock:
            self.state.devices[dc] = {"client_id": cid, "scope": form["scope"],
                                      "interval": int(dev["interval"]), "last": now,
                                      "expires": now + int(dev["expires_in"]),
                                      "polls": list(dev["polls"]), "done": False}
        num = (lambda v: str(v)) if dev.get("strings") else (lambda v: int(v))
        body = {"user_code": user_code, "device_code": dc, "verification_uri": VERIFICATION_URI,
                "expires_in": num(dev["expires_in"]), "interval": num(dev["interval"]),
                "message": "To sign in, use a web browser to open the page %s and enter the "
                           "code %s to authenticate." % (VERIFICATION_URI, user_code)}
        entry.update(answer="ok", status=200, device_code=dc, user_code=user_code,
                     message=body["message"])
        self.state.log(entry)
        self.send_body(200, body)

    # ---- authorize (a browser's GET) ----

    def authorize(self, entry, tenant):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query, keep_blank_values=True)
        entry["query"] = {k: v[0] if len(v) == 1 else v for k, v in q.items()}
        query = entry["query"]
        cid = query.get("client_id")
        entry["client_id"] = cid
        client = self.state.clients.get(cid) if isinstance(cid, str) else None
        redirect = query.get("redirect_uri")
        if not self.tenant_known(tenant):
            return self.error_page(entry, 90002, "Tenant '%s' not found." % tenant)
        if client is None:
            return self.error_page(entry, 700016, "Application with identifier '%s' was not "
                                   "found in the directory '%s'." % (cid, tenant))
        redirect_re = client.get("redirect_uri_re", DEFAULT_REDIRECT_RE)
        if not isinstance(redirect, str) or not re.fullmatch(redirect_re, redirect):
            return self.error_page(entry, 50011, "The redirect URI '%s' specified in the "
                                   "request does not match the redirect URIs configured for "
                                   "the application '%s'." % (redirect, cid))
        for k, v in query.items():
            if isinstance(v, list):
                return self.redirect_error(entry, redirect, query, "invalid_request",
                                           "AADSTS9000411: The parameter '%s' is duplicated." % k)
        problem = self.authorize_problem(query)
        if problem:
            return self.redirect_error(entry, redirect, query, problem[0], problem[1])
        if client.get("authorize", "ok") == "access_denied":
            return self.redirect_error(entry, redirect, query, "access_denied",
                                       "AADSTS65004: User declined to consent to access the app.")
        code = "1.AR8A" + b64url(secrets.token_bytes(64))
        with self.state.lock:
            self.state.codes[code] = {"client_id": cid, "redirect_uri": redirect,
                                      "challenge": query["code_challenge"],
                                      "scope": query.get("scope", ""), "redeemed": False}
        params = [("code", code)]
        if "state" in query:
            params.append(("state", query["state"]))
        params.append(("session_state", str(uuid.uuid4())))
        entry["code"] = code
        self.send_redirect(entry, redirect, query, params)

    @staticmethod
    def authorize_problem(query):
        if query.get("response_type") != "code":
            return ("unsupported_response_type", "AADSTS700054: response_type '%s' is not "
                    "enabled for the application." % query.get("response_type"))
        if not query.get("scope"):
            return ("invalid_request", "AADSTS900144: The request body must contain the "
                    "following parameter: 'scope'.")
        if not query.get("code_challenge"):
            return ("invalid_request", "AADSTS9002325: Proof Key for Code Exchange is required "
                    "for cross-origin authorization code redemption.")
        if query.get("code_challenge_method") != "S256":
            return ("invalid_request", "AADSTS501491: code_challenge_method must be S256 "
                    "(tokenmail test peer).")
        if not re.fullmatch(r"[A-Za-z0-9_-]{43}", query["code_challenge"]):
            return ("invalid_request", "AADSTS501491: Invalid size of Code_Challenge parameter.")
        if query.get("response_mode", "query") not in ("query", "form_post"):
            return ("invalid_request", "AADSTS900144: response_mode '%s' is not valid."
                    % query.get("response_mode"))
        return None

    def error_page(self, entry, code, text):
        entry.update(answer="error page", status=400, aadsts=code)
        self.state.log(entry)
        self.send_body(400, "<!DOCTYPE html><html><body><p>Sorry, but we're having trouble "
                       "signing you in.</p><p>AADSTS%d: %s</p></body></html>"
                       % (code, text), "text/html; charset=utf-8")

    def redirect_error(self, entry, redirect, query, error, desc):
        params = [("error", error), ("error_description", desc)]
        if "state" in query:
            params.append(("state", query["state"]))
        entry["error"] = error
        self.send_redirect(entry, redirect, query, params)

    def send_redirect(self, entry, redirect, query, params):
        if query.get("response_mode") == "form_post":
            fields = "".join('<input type="hidden" name="%s" value="%s"/>'
                             % (k, v.replace('"', "&quot;")) for k, v in params)
            entry.update(answer=entry.get("error") or "ok", status=200)
            self.state.log(entry)
            self.send_body(200, '<html><body onload="document.forms[0].submit()"><form '
                           'method="POST" action="%s">%s</form></body></html>'
                           % (redirect, fields), "text/html; charset=utf-8")
            return
        location = redirect + ("&" if "?" in redirect else "?") + urllib.parse.urlencode(params)
        entry.update(answer=entry.get("error") or "ok", status=302, location=location)
        self.state.log(entry)
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.send_header("Cache-Control", "no-store, no-cache")
        self.end_headers()


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv):
    if len(argv) != 3:
        print("usage: token_peer.py CONFIG.json LOG.jsonl", file=sys.stderr)
        return 64
    with open(argv[1]) as f:
        config = json.load(f)
    names = list(config.get("secret_errors", {}).values())
    for c in config.get("clients", {}).values():
        names += [c.get("error")] + list(c.get("script", []))
        names += [p for p in c.get("device", {}).get("polls", []) if p != "success"]
    for name in names:
        if name and answer_name(name) not in ERRORS and answer_name(name) not in SPECIAL_ANSWERS:
            print("token_peer: unknown answer name %r" % name, file=sys.stderr)
            return 64
    state = State(config, argv[2])
    open(argv[2], "a").close()
    Handler.state = state
    server = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config["cert"], config["key"])
    # The handshake runs in the connection's thread, not in accept().
    server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                    do_handshake_on_connect=False)
    state.port = server.server_address[1]
    print("PORT %d" % state.port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        state.stop.set()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
