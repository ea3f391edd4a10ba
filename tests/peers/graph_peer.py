#!/usr/bin/python3
"""graph_peer: a fake Microsoft Graph mail endpoint for tokenmail's tests.

    graph_peer.py CONFIG.json DIR

Serves HTTPS (TLS 1.2 or later) on 127.0.0.1 at an ephemeral port and prints
"PORT n" as its first stdout line. HTTP/1.1 with keep-alive (one thread per
connection); SIGTERM stops it (stalled answers end at once, the process exits
without waiting for idle connections). It behaves like
https://graph.microsoft.com/v1.0 for the MIME form of sending mail
(PROTOCOL.md section 4; the Graph design's "Graph test peer" contract):

  POST /v1.0/users/{mailbox}/sendMail    op sendMail      -> 202, empty body
  POST /v1.0/me/sendMail                 op sendMail      (delegated tokens only)
  POST /v1.0/{users/M|me}/messages       op createDraft   -> 201 message resource
                                                          {"id": "draft-N", ...} + Location
  POST .../messages/{id}/attachments     op attachment    (JSON fileAttachment) -> 201
  POST .../messages/{id}/attachments/createUploadSession
                                         op createUploadSession -> 201 {"uploadUrl":
                                          "https://127.0.0.1:PORT/upload/S?authtoken=RANDOM",
                                          "expirationDateTime", "nextExpectedRanges": ["0-"]}
  PUT  /upload/S?authtoken=...           op upload        -> 200 {"expirationDateTime",
                                          "nextExpectedRanges": ["B+1-"]}; the last
                                          chunk: 201 + Location, empty body
  GET  /upload/S?authtoken=...           op uploadStatus  -> 200 {"expirationDateTime",
                                          "nextExpectedRanges": ["N-"]}
  POST .../messages/{id}/send            op send          -> 202, empty body
  DELETE .../messages/{id}               op delete        -> 204

Path keywords (users, me, sendMail, messages, ...) match case-insensitively as
on Graph; "microsoft.graph.send" and "microsoft.graph.createUploadSession" are
accepted too. The mailbox segment is percent-decoded and compared
case-insensitively with CONFIG mailboxes (no "mailboxes" key: every mailbox
exists). Any other path gets 400 BadRequest "Resource not found for the
segment '...'." (a first segment other than v1.0: "Invalid version: ..."); a
known path with another method gets 405.

Order of checks for a Graph request (everything but upload/uploadStatus):
  1. body framing: POST/PUT/PATCH need Content-Length or chunked transfer
     encoding (else 411, connection closed); a bad Content-Length or chunked
     encoding gets 400 and the connection is closed. A body is always read
     fully (to keep the connection usable) up to a hard cap of 200 MB; past
     the cap the peer stops reading, answers and closes the connection.
  2. body over request_limit -> 413 {"code": "BadRequest", "message": "The
     maximum request length supported is 4MB."} (observed Graph wording; the
     number follows request_limit).
  3. the path (400/405 above).
  4. authorization: "Authorization: Bearer T". Missing, or another scheme ->
     401 InvalidAuthenticationToken "Access token is empty."; unknown T ->
     "Access token validation failure."; a token the token peer issued for
     another resource (scope without graph.microsoft.com) -> "Access token
     validation failure. Invalid audience."; a JWT-shaped token whose exp is
     more than 300 s past (Entra's clock skew) -> "Lifetime validation failed,
     the token is expired.". Every 401 carries WWW-Authenticate: Bearer
     realm="", authorization_uri=..., client_id="00000003-0000-0000-c000-
     000000000000" (as Graph sends it).
  5. the mailbox: /me with an app-only token -> 400 BadRequest "/me request is
     only valid with delegated authentication flow."; /users/M with M unknown
     -> 404 ErrorInvalidUser "The requested user 'M' is invalid."; a
     delegated token on /users/M with M not its own mailbox (CONFIG me) ->
     403 ErrorAccessDenied "Access is denied. Check credentials and try
     again." (Graph needs the .Shared permissions for that).
  6. faults (CONFIG faults, below): a fault only fires on a request that got
     this far, so a request refused above never uses one up.
  7. the operation (draft ids are looked up here: unknown, sent, deleted, or
     of another mailbox -> 404 ErrorItemNotFound "The specified object was not
     found in the store.").
For upload/uploadStatus: unknown session, or one whose draft was sent or
deleted, or a finished upload -> 404 ErrorItemNotFound; authtoken not the
session's -> 401 InvalidAuthenticationToken "Access token validation
failure."; an Authorization header -> 400 InvalidAuthenticationToken (the URL
is pre-authenticated); then faults; then the Content-Range checks.

MIME bodies (sendMail, createDraft): Content-Type must be text/plain (any
parameters allowed), else 400 ErrorInvalidRequest; the body must be strict
base64 with padding (CR and LF are ignored, nothing else) else 400
ErrorMimeContentInvalidBase64String "Invalid base64 string for MIME
content."; an empty body -> 400 ErrorMimeContentInvalid. sendMail, and send
for a draft, need at least one To/Cc/Bcc address, else 400
ErrorInvalidRecipients "At least one recipient is required, but none were
found.". A draft needs none. The From: field is not checked (use a fault for
ErrorSendAsDenied).

Recipients (as Exchange): the addresses of every To, Cc and Bcc field
(email.utils.getaddresses on the unfolded values; RFC 2047 display names are
fine), deduplicated case-insensitively, in order, lowercased; empty ones
(groups such as "undisclosed-recipients:;") are skipped, an address without
"@" is kept as it is. The delivered copy is the MIME with every Bcc field
(and its continuation lines) removed, otherwise byte for byte; the Sent Items
copy is the MIME exactly as received.

Drafts. A draft keeps the MIME as posted (DIR/draft-N.eml). attachment takes
{"@odata.type": "#microsoft.graph.fileAttachment", "name", "contentType",
"contentBytes" (strict base64, CR/LF ignored), "isInline", "contentId"}:
Content-Type must be application/json; JSON that does not parse, contentBytes
that is not base64 or fields of the wrong type -> 400
UnableToDeserializePostBody; another @odata.type or no name -> 400
ErrorInvalidRequest. 201 answers the attachment resource (with contentBytes
echoed, as Graph does). createUploadSession takes {"AttachmentItem":
{"attachmentType": "file", "name", "size" (integer >= 1), "contentType",
"isInline", "contentId"}} (same 400s). A missing contentType is
application/octet-stream. send with an upload session of the draft not
complete -> 400 ErrorInvalidRequest "The message has an attachment upload
that is not complete.". A body on send is accepted (and logged).

On send, the delivered copy is rebuilt from the draft MIME with the email
package (compat32, bytes in and out, CRLF): a top part that is not
multipart/mixed is wrapped (its Content-* fields move to the new first part),
and each attachment (in the order it was added: POST time, or
createUploadSession time) becomes one more part: Content-Type (with name=),
Content-Disposition attachment or inline with filename= (RFC 2231 filename*=
when not ASCII), Content-ID <cid> when given, base64 body. The delivered copy
has every Bcc removed, the Sent Items copy keeps it. A draft without added
attachments is not rebuilt (its bytes are used as they are). Inline parts
stay in the multipart/mixed (Exchange would build a multipart/related).

Upload sessions. PUT needs "Content-Range: bytes A-B/S" with A == the next
expected offset, B >= A, B < S, S == the session's size, B-A+1 <=
chunk_limit and, with Content-Length, B-A+1 == Content-Length (with chunked
bodies the length is checked at the end and the chunk is then undone);
otherwise 416 InvalidRange (the body is read and dropped; the message says
which rule failed). Content-Type is not checked (logged). Bytes are written
to DIR/upload-S.bin as they arrive: a PUT whose connection breaks in the
middle of the body keeps what arrived, and GET status reports that offset.
nextExpectedRanges are ["N-"] ("bare_ranges": true gives ["N"], the form
Outlook has been seen to send). expirationDateTime is 24 hours after the
session was created and is not enforced.

Every answer has request-id (a fresh uuid) and client-request-id (the
request's, else the request-id) headers; errors are {"error": {"code",
"message", "innerError": {"date", "request-id", "client-request-id"}}}.

CONFIG (JSON):
  cert, key        TLS server certificate and key (PEM; tlsca.py)
  plain            true: serve plain HTTP instead (no TLS; cert and key are
                   still required), for load tests where a TLS handshake per
                   connection costs too much (extension)
  token_log        the token peer's log (re-read for each request): each
                   access_token in it is valid when its scope (the logged
                   "scope", else form.scope) names graph.microsoft.com;
                   grant_type client_credentials is app-only, refresh_token,
                   authorization_code and device_code are delegated
  tokens           valid tokens given directly: "T" (app-only) or
                   {"token": T, "grant": "refresh_token"} (delegated)
  mailboxes        the mailboxes of the tenant (absent: any mailbox exists)
  me               the mailbox /me means for delegated tokens (default
                   mailboxes[0], else "user@example.com")
  request_limit    largest Graph request body (default 4194304)
  chunk_limit      largest upload chunk (default 4194304)
  stall_seconds    how long a stall lasts at most (default 60)
  bare_ranges      true: nextExpectedRanges ["N"] instead of ["N-"]
  faults           [{op, action, status, code, message, retry_after, times,
                   skip, mailbox, body}]:
    op           sendMail createDraft attachment createUploadSession upload
                 uploadStatus send delete | any (default any)
    action       "reply" (default: answer status/code/message instead),
                 "drop" (read the request, close without answer),
                 "drop_partial" (upload: keep the first half (floor) of the
                 chunk's bytes, read the rest, close without answer; any other
                 op: like drop), "stall" (read the request, answer nothing
                 for up to stall_seconds or until the client closes, then
                 close); for fault tests (extensions): "truncate_tls" (read
                 the request, write the start of a TLS record whose header
                 announces more than follows on the raw socket, close),
                 "partial" (the status line and headers of the reply fault's
                 answer with its full Content-Length, half of its body,
                 close), "raw" (send data instead of an HTTP answer, close)
    data         raw only: the octets to send (a JSON string; each character
                 U+0000-U+00FF is one octet), e.g. "HTTP/1.1 2x2 OK\r\n\r\n"
    status       reply status, 200-599 (default 503); code and message default
                 by status (429 ApplicationThrottled, 503 ServiceUnavailable,
                 401 InvalidAuthenticationToken with WWW-Authenticate, ...)
    retry_after  seconds (or any string) -> Retry-After header
    times        how many times it fires in the peer's life (default: always);
                 skip: let the first N matching requests pass. Counters are per
                 fault, for the whole peer.
    mailbox      only for requests for that mailbox (extension)
    body         reply with a status below 400: the body to send (JSON value;
                 a string is sent as it is); none = empty body. E.g. {"op":
                 "createDraft", "status": 201, "body": {"subject": "x"}} gives
                 a draft without id. (extension)
                 raw_body (any status): these octets (U+0000-U+00FF) are the
                 body instead, Content-Type application/json: malformed
                 JSON. pad: N adds a "padding" member of N octets to the
                 error document (or to the body object): oversize answers.
                 chunked: true sends the body with chunked transfer encoding
                 and no Content-Length. (extensions)
                 A reply fault replaces the operation: nothing is stored.
                 drop_partial with a Content-Range that fails the checks just
                 drops (nothing kept).

DIR files (JSON lines, appended and flushed before the answer is written):
  requests.jsonl  {n, time, conn (connection number), method, path (no
                  query), op, mailbox (CONFIG spelling when known; /me: the me
                  mailbox; uploads: the draft's), via ("users"|"me"|null),
                  auth ("bearer"|"none"|other scheme, lowercase), token_n
                  (1-based index among valid tokens, CONFIG tokens first, then
                  the token log's in order; 0 = unknown), grant,
                  client_request_id, return_client_request_id, content_type,
                  content_length, chunked, body_len (octets received),
                  content_range, expect (the Expect header or null),
                  version ("HTTP/1.1"), status (null: no answer), code, message,
                  fault (index or null), action (the fault's), retry_after,
                  and where they apply: draft, session, base64_newlines (the
                  MIME base64 had CR/LF), kept (upload octets stored), error
                  (a broken body)}
  sent.jsonl      one per message accepted for delivery: {n, op ("sendMail"|
                  "draft"), draft (id or null), mailbox, via, from, to, cc, bcc
                  (field values unfolded, several fields joined with ", ",
                  null when absent), recipients [lowercase addr-specs], file
                  "sent-N.eml" (delivered copy), sent_items_file
                  "sentitems-N.eml", size (octets of the Sent Items copy),
                  attachments [{name, content_type, size, sha256 (of the
                  decoded bytes), via ("post"|"upload"), is_inline,
                  content_id}] (added to a draft; [] for sendMail),
                  client_request_id}
  drafts.jsonl    {event ("created"|"attachment"|"upload_complete"|"deleted"|
                  "sent"), id, mailbox, ...}: created adds file "draft-N.eml",
                  size, via, client_request_id; attachment and
                  upload_complete add name, content_type, size, sha256, via,
                  is_inline, content_id, attachment (its id "att-K";
                  upload_complete: session); sent adds sent (the sent.jsonl n)
  draft-N.eml, sent-N.eml, sentitems-N.eml, upload-S.bin
Token values (and upload authtokens) are never logged. A bug in the peer
itself answers 500 PeerBug and prints a traceback on stderr (set
GRAPH_PEER_DEBUG=1 for a line per request and per connection error there).
"""
import base64
import binascii
import email.errors
import email.generator
import email.header
import email.message
import email.parser
import email.policy
import email.utils
import hashlib
import http.server
import io
import json
import os
import re
import secrets
import signal
import socket
import ssl
import sys
import threading
import time
import traceback
import urllib.parse
import uuid

REQUEST_LIMIT = 4194304
CHUNK_LIMIT = 4194304
BODY_CAP = 200 * 1024 * 1024
READ_PIECE = 65536
LINE_MAX = 8192
IO_TIMEOUT = 120
CLOCK_SKEW = 300
SESSION_LIFETIME = 24 * 3600
OPS = ("sendMail", "createDraft", "attachment", "createUploadSession", "upload",
       "uploadStatus", "send", "delete")
FAULT_ACTIONS = ("reply", "drop", "drop_partial", "stall", "truncate_tls", "partial", "raw")
DELEGATED_GRANTS = ("refresh_token", "authorization_code", "device_code",
                    "urn:ietf:params:oauth:grant-type:device_code")
JSON_TYPE = ("application/json;odata.metadata=minimal;odata.streaming=true;"
             "IEEE754Compatible=false;charset=utf-8")
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"
WWW_AUTHENTICATE = ('Bearer realm="", authorization_uri="https://login.microsoftonline.com/'
                    'common/oauth2/authorize", client_id="%s"' % GRAPH_APP_ID)
FAULT_DEFAULTS = {
    400: ("ErrorInvalidRequest", "The request is invalid."),
    401: ("InvalidAuthenticationToken", "Access token validation failure."),
    403: ("ErrorAccessDenied", "Access is denied. Check credentials and try again."),
    404: ("ErrorItemNotFound", "The specified object was not found in the store."),
    409: ("ErrorIrresolvableConflict", "The send or update operation could not be performed "
          "because the change key passed in the request does not match the current change "
          "key for the item."),
    413: ("ErrorMessageSizeExceeded", "The message exceeds the maximum supported size."),
    429: ("ApplicationThrottled", "Application is over its MailboxConcurrency limit."),
    500: ("InternalServerError", "An internal server error occurred. The operation failed."),
    502: ("BadGateway", "Bad Gateway."),
    503: ("ServiceUnavailable", "Service unavailable, please retry after some time."),
    504: ("GatewayTimeout", "The operation has timed out."),
}
CONTENT_FIELDS = ("content-type", "content-transfer-encoding", "content-disposition",
                  "content-id", "content-description", "content-location",
                  "content-language", "content-md5")
DEBUG = bool(os.environ.get("GRAPH_PEER_DEBUG"))


def debug(text):
    if DEBUG:
        sys.stderr.write("graph_peer: %s\n" % text)
        sys.stderr.flush()


class Answer(Exception):
    """An error answer: HTTP status, Graph error code and message."""

    def __init__(self, status, code, message, headers=(), close=False):
        super().__init__("%d %s" % (status, code))
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)
        self.close = close


class Close(Exception):
    """Close the connection without an answer (after a stall when stall is true)."""

    def __init__(self, why, stall=False):
        super().__init__(why)
        self.stall = stall


class Answered(Exception):
    """The answer has been sent (a fault with a success status)."""


class BodyError(Exception):
    """The request body broke off (answer is None) or is malformed (answer 400)."""

    def __init__(self, why, answer=None):
        super().__init__(why)
        self.answer = answer


def iso(t=None, fraction=True):
    t = time.time() if t is None else t
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t))
    return stamp + (".%07dZ" % int((t % 1) * 1e7) if fraction else "")


def media_type(value):
    return (value or "").split(";", 1)[0].strip().lower()


def b64_strict(data):
    """bytes or str base64 (CR and LF ignored) -> bytes, or None."""
    if isinstance(data, str):
        try:
            data = data.encode("ascii")
        except UnicodeEncodeError:
            return None
    data = data.replace(b"\r", b"").replace(b"\n", b"")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return None


def jwt_exp(token):
    parts = token.split(".")
    if len(parts) != 3:
        return None
    try:
        claims = json.loads(base64.urlsafe_b64decode(parts[1] + "=" * (-len(parts[1]) % 4)))
    except (ValueError, binascii.Error):
        return None
    exp = claims.get("exp") if isinstance(claims, dict) else None
    return exp if isinstance(exp, (int, float)) and not isinstance(exp, bool) else None


def header_text(value):
    """A compat32 header value as readable text: unfolded, 8-bit as UTF-8."""
    if not isinstance(value, str):
        value = str(value)
    value = re.sub(r"\r?\n(?=[ \t])", "", value).rstrip("\r\n")
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def decoded_words(value):
    try:
        return str(email.header.make_header(email.header.decode_header(value)))
    except (ValueError, LookupError, UnicodeError, email.errors.HeaderParseError):
        return value


def header_info(mime):
    """From, To, Cc, Bcc, Subject, Message-ID and the recipients of a MIME message."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(
        mime, headersonly=True)

    def values(name):
        # raw_items: compat32 would turn 8-bit values into unknown-8bit Header objects
        return [header_text(v) for k, v in msg.raw_items() if k.lower() == name.lower()]

    info = {}
    for name in ("From", "To", "Cc", "Bcc", "Subject", "Message-ID"):
        v = values(name)
        info[name.lower()] = ", ".join(x.strip() for x in v) if v else None
    lists = {}
    seen = set()
    recipients = []
    for name in ("To", "Cc", "Bcc"):
        lists[name.lower()] = []
        for display, addr in email.utils.getaddresses(values(name)):
            addr = addr.strip()
            if not addr:
                continue
            lists[name.lower()].append((decoded_words(display), addr))
            if addr.lower() not in seen:
                seen.add(addr.lower())
                recipients.append(addr.lower())
    info["recipients"] = recipients
    info["lists"] = lists
    return info


def remove_fields(mime, names):
    """The message with every header field called one of names (and its
    continuation lines) removed; everything else byte for byte."""
    names = {n.lower() for n in names}
    out = []
    dropping = False
    lines = re.split(rb"(?<=\n)", mime)
    for i, line in enumerate(lines):
        if line in (b"\r\n", b"\n") or line == b"":
            out.append(b"".join(lines[i:]))
            break
        if line[:1] in (b" ", b"\t"):
            if not dropping:
                out.append(line)
            continue
        name = line.split(b":", 1)[0].strip().lower().decode("ascii", "replace")
        dropping = name in names
        if not dropping:
            out.append(line)
    return b"".join(out)


def attachment_part(att, data):
    part = email.message.Message()
    name = att["name"]
    param = name if name.isascii() else ("utf-8", "", name)
    part.add_header("Content-Type", att["content_type"] or "application/octet-stream", name=param)
    part.add_header("Content-Disposition", "inline" if att["is_inline"] else "attachment",
                    filename=param)
    if att.get("content_id"):
        part["Content-ID"] = "<%s>" % att["content_id"]
    part["Content-Transfer-Encoding"] = "base64"
    part.set_payload(base64.encodebytes(data).decode("ascii"))
    return part


def rebuild(mime, attachments):
    """(delivered copy, Sent Items copy) of a draft with added attachments:
    attachments is a list of (record, bytes)."""
    msg = email.parser.BytesParser(policy=email.policy.compat32).parsebytes(mime)
    if not (msg.is_multipart() and msg.get_content_type() == "multipart/mixed"):
        inner = email.message.Message()
        moved = [(k, v) for k, v in msg.items() if k.lower() in CONTENT_FIELDS]
        for k in {k.lower() for k, _ in moved}:
            del msg[k]
        for k, v in moved:
            inner[k] = v
        inner.set_payload(msg.get_payload())
        inner.preamble, inner.epilogue = msg.preamble, msg.epilogue
        msg.preamble = msg.epilogue = None
        msg.set_payload(None)
        if "MIME-Version" not in msg:
            msg["MIME-Version"] = "1.0"
        msg["Content-Type"] = 'multipart/mixed; boundary="=_graphpeer_%s"' % secrets.token_hex(12)
        msg.attach(inner)
    for att, data in attachments:
        msg.attach(attachment_part(att, data))
    policy = email.policy.compat32.clone(linesep="\r\n")

    def flat():
        buf = io.BytesIO()
        email.generator.BytesGenerator(buf, mangle_from_=False, maxheaderlen=0,
                                       policy=policy).flatten(msg)
        return buf.getvalue()

    sent_items = flat()
    del msg["Bcc"]
    return flat(), sent_items


class Draft:
    def __init__(self, draft_id, n, mailbox, mime):
        self.id = draft_id
        self.n = n
        self.mailbox = mailbox
        self.mime = mime
        self.state = "open"        # open | sent | deleted
        self.slots = []            # attachment records in the order they were added
        self.created = time.time()


class Session:
    def __init__(self, sid, draft, record, path):
        self.id = sid
        self.draft = draft
        self.record = record       # the draft slot (name, content_type, size, ...)
        self.size = record["size"]
        self.path = path
        self.authtoken = secrets.token_urlsafe(48)
        self.next = 0
        self.complete = False
        self.lock = threading.Lock()
        self.expires = time.time() + SESSION_LIFETIME


class State:
    def __init__(self, config, directory):
        self.config = config
        self.dir = directory
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.port = 0
        self.seq = 0
        self.conns = 0
        self.sent_n = 0
        self.draft_n = 0
        self.session_n = 0
        self.attachment_n = 0
        self.drafts = {}
        self.sessions = {}
        self.faults = config.get("faults", [])
        self.fault_hits = [0] * len(self.faults)
        self.request_limit = int(config.get("request_limit", REQUEST_LIMIT))
        self.chunk_limit = int(config.get("chunk_limit", CHUNK_LIMIT))
        self.stall_seconds = float(config.get("stall_seconds", 60))
        mailboxes = config.get("mailboxes")
        self.mailboxes = None if mailboxes is None else list(mailboxes)
        self.me = config.get("me") or (self.mailboxes[0] if self.mailboxes else
                                       "user@example.com")

    def path(self, name):
        return os.path.join(self.dir, name)

    def write(self, name, entry):
        with self.lock:
            if name == "requests.jsonl":
                self.seq += 1
                entry["n"] = self.seq
            with open(self.path(name), "a") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
                f.flush()

    def count(self, attr):
        with self.lock:
            setattr(self, attr, getattr(self, attr) + 1)
            return getattr(self, attr)

    def mailbox(self, name):
        """The CONFIG spelling of a mailbox, or None when it does not exist."""
        if self.mailboxes is None:
            return name
        for m in self.mailboxes:
            if m.lower() == name.lower():
                return m
        return None

    def tokens(self):
        """(valid: [(token, grant, exp)], foreign: set of tokens for other resources)."""
        valid, foreign = [], set()
        for t in self.config.get("tokens", []):
            if isinstance(t, dict):
                valid.append((t.get("token"), t.get("grant", "client_credentials"), None))
            else:
                valid.append((t, "client_credentials", None))
        path = self.config.get("token_log")
        if path:
            try:
                with open(path) as f:
                    lines = f.read().splitlines()
            except FileNotFoundError:
                lines = []
            for line in lines:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                at = entry.get("access_token") if isinstance(entry, dict) else None
                if not isinstance(at, str) or not at:
                    continue
                form = entry.get("form") if isinstance(entry.get("form"), dict) else {}
                scope = entry.get("scope") or form.get("scope") or ""
                grant = entry.get("grant_type") or form.get("grant_type")
                if isinstance(scope, str) and "graph.microsoft.com" in scope:
                    valid.append((at, grant, jwt_exp(at)))
                else:
                    foreign.add(at)
        return valid, foreign

    def take_fault(self, op, mailbox):
        """(index, fault) of the fault that fires now for op, counting it; or (None, None)."""
        for i, f in enumerate(self.faults):
            fop = f.get("op", "any")
            if fop != "any" and fop != op:
                continue
            if f.get("mailbox") is not None and (mailbox or "").lower() != f["mailbox"].lower():
                continue
            with self.lock:
                self.fault_hits[i] += 1
                hit = self.fault_hits[i]
            skip = int(f.get("skip", 0))
            if hit <= skip:
                continue
            times = f.get("times")
            if times is not None and hit > skip + int(times):
                continue
            return i, f
        return None, None


def check_config(config):
    if not config.get("cert") or not config.get("key"):
        return "cert and key are required"
    faults = config.get("faults", [])
    if not isinstance(faults, list):
        return "faults must be a list"
    for f in faults:
        if not isinstance(f, dict):
            return "a fault must be an object: %r" % (f,)
        op = f.get("op", "any")
        if op != "any" and op not in OPS:
            return "unknown fault op %r" % op
        action = f.get("action", "reply")
        if action not in FAULT_ACTIONS:
            return "unknown fault action %r" % action
        status = f.get("status", 503)
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            return "fault status must be an HTTP status: %r" % (status,)
        for k in ("times", "skip", "pad"):
            if k in f and (not isinstance(f[k], int) or isinstance(f[k], bool) or f[k] < 0):
                return "fault %s must be a count: %r" % (k, f[k])
        for k in ("data", "raw_body"):
            if k in f and (not isinstance(f[k], str) or any(ord(c) > 255 for c in f[k])):
                return "fault %s must be a string of octets (U+0000-U+00FF)" % k
        if action == "raw" and not f.get("data"):
            return "fault action raw needs data"
    for t in config.get("tokens", []):
        if not isinstance(t, str) and not (isinstance(t, dict) and isinstance(t.get("token"), str)):
            return "a token must be a string or {\"token\": ..., \"grant\": ...}"
    return None


class Route:
    def __init__(self, op=None, via=None, mailbox=None, draft=None, session=None,
                 error=None, methods=None):
        self.op = op
        self.via = via
        self.mailbox = mailbox     # percent-decoded path segment (users) or None
        self.draft = draft
        self.session = session
        self.error = error         # an Answer for a path that does not exist
        self.methods = methods or []


def route(method, path):
    """What a request is: a Route (its op is None when it is not one)."""
    raw = path.split("/")[1:] if path.startswith("/") else path.split("/")
    segs = [urllib.parse.unquote(s) for s in raw]
    low = [s.lower() for s in segs]
    if len(segs) == 2 and low[0] == "upload" and segs[1]:
        r = Route(session=segs[1], methods=["GET", "PUT"])
        r.op = {"PUT": "upload", "GET": "uploadStatus"}.get(method)
        if r.op is None:
            r.error = Answer(405, "BadRequest",
                             "Specified HTTP method is not allowed for the request target.",
                             headers=[("Allow", "GET, PUT")])
        return r
    if not segs or low[0] != "v1.0":
        return Route(error=Answer(400, "BadRequest",
                                  "Invalid version: %s" % (segs[0] if segs else "")))
    rest, lrest = segs[1:], low[1:]
    if lrest[:1] == ["me"]:
        via, mailbox, rest, lrest = "me", None, rest[1:], lrest[1:]
    elif lrest[:1] == ["users"] and len(rest) >= 2 and rest[1]:
        via, mailbox, rest, lrest = "users", rest[1], rest[2:], lrest[2:]
    else:
        seg = rest[0] if rest else ""
        return Route(error=Answer(400, "BadRequest",
                                  "Resource not found for the segment '%s'." % seg))
    r = Route(via=via, mailbox=mailbox)
    ops = None
    if lrest == ["sendmail"] or lrest == ["microsoft.graph.sendmail"]:
        ops = {"POST": "sendMail"}
    elif lrest == ["messages"]:
        ops = {"POST": "createDraft"}
    elif len(lrest) >= 2 and lrest[0] == "messages" and rest[1]:
        r.draft = rest[1]
        tail = lrest[2:]
        if tail == []:
            ops = {"DELETE": "delete"}
        elif tail == ["attachments"]:
            ops = {"POST": "attachment"}
        elif tail in (["attachments", "createuploadsession"],
                      ["attachments", "microsoft.graph.createuploadsession"]):
            ops = {"POST": "createUploadSession"}
        elif tail in (["send"], ["microsoft.graph.send"]):
            ops = {"POST": "send"}
    if ops is None:
        bad = rest[-1] if rest else ""
        r.error = Answer(400, "BadRequest", "Resource not found for the segment '%s'." % bad)
        return r
    r.methods = sorted(ops)
    r.op = ops.get(method)
    if r.op is None:
        r.error = Answer(405, "BadRequest",
                         "Specified HTTP method is not allowed for the request target.",
                         headers=[("Allow", ", ".join(r.methods))])
    return r


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "graphpeer"
    sys_version = ""
    timeout = IO_TIMEOUT
    state = None  # set by main

    def log_message(self, fmt, *args):
        debug(fmt % args)

    def version_string(self):
        return self.server_version

    # ---- connection ----

    def setup(self):
        super().setup()
        try:
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass
        self.conn_n = self.state.count("conns")

    def handle(self):
        try:
            if not self.state.config.get("plain"):
                self.connection.do_handshake()
        except (OSError, ssl.SSLError, ValueError) as e:
            debug("conn %d: TLS handshake failed: %s" % (self.conn_n, e))
            return
        try:
            super().handle()
        except (ConnectionError, TimeoutError, ssl.SSLError) as e:
            debug("conn %d: %s" % (self.conn_n, e))
        except OSError:  # not the network: a file of DIR, say
            traceback.print_exc()
            sys.stderr.flush()

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = lambda self: self.dispatch()

    # ---- answers ----

    def common_headers(self):
        self.send_header("request-id", self.rid)
        self.send_header("client-request-id", self.crid or self.rid)
        self.send_header("x-ms-ags-diagnostic",
                         '{"ServerInfo":{"DataCenter":"Test","Slice":"E","Ring":"0",'
                         '"ScaleUnit":"000","RoleInstance":"graphpeer"}}')
        self.send_header("Strict-Transport-Security", "max-age=31536000")
        self.send_header("Cache-Control", "no-cache")

    def respond(self, status, body=None, headers=(), log=True):
        """Log the request, then answer. body: None (empty), bytes, str or JSON."""
        self.entry["status"] = status
        if log:
            self.state.write("requests.jsonl", self.entry)
        if body is None:
            data, ctype = b"", None
        elif isinstance(body, bytes):
            data, ctype = body, "application/octet-stream"
        elif isinstance(body, str):
            data, ctype = body.encode("utf-8"), "text/plain; charset=utf-8"
        else:
            data, ctype = json.dumps(body).encode("utf-8"), JSON_TYPE
        self.send_response(status)
        if ctype:
            self.send_header("Content-Type", ctype)
        if status != 204 and status >= 200:
            self.send_header("Content-Length", str(len(data)))
        self.common_headers()
        for k, v in headers:
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if data and status != 204:
            self.wfile.write(data)

    def error_body(self, code, message):
        return {"error": {"code": code, "message": message, "innerError": {
            "date": iso(fraction=False), "request-id": self.rid,
            "client-request-id": self.crid or self.rid}}}

    def answer_error(self, a):
        self.entry.update(code=a.code, message=a.message)
        if a.close:
            self.close_connection = True
        headers = list(a.headers)
        if a.status == 401 and not any(k.lower() == "www-authenticate" for k, _ in headers):
            headers.append(("WWW-Authenticate", WWW_AUTHENTICATE))
        self.respond(a.status, self.error_body(a.code, a.message), headers)

    # ---- request bodies ----

    def framing(self):
        """("length", n) | ("chunked", None) | ("none", None); raises Answer."""
        te = (self.headers.get("Transfer-Encoding") or "").strip().lower()
        if te:
            if te.split(",")[-1].strip() != "chunked":
                raise Answer(501, "NotImplemented", "Transfer-Encoding %s is not supported." % te,
                             close=True)
            return ("chunked", None)
        cl = self.headers.get_all("Content-Length") or []
        if cl:
            if len({v.strip() for v in cl}) != 1 or \
                    not re.fullmatch(r"[0-9]{1,15}", cl[0].strip()):
                raise Answer(400, "BadRequest", "Invalid Content-Length header.", close=True)
            return ("length", int(cl[0]))
        if self.command in ("POST", "PUT", "PATCH"):
            raise Answer(411, "LengthRequired", "Length Required", close=True)
        return ("none", None)

    def _read(self, n):
        try:
            data = self.rfile.read(n)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise BodyError("reading the body: %s" % e)
        if not data:
            raise BodyError("the client closed the connection after %d body octets"
                            % self.entry["body_len"])
        return data

    def _readline(self):
        try:
            line = self.rfile.readline(LINE_MAX)
        except (OSError, ssl.SSLError, ValueError) as e:
            raise BodyError("reading the body: %s" % e)
        if not line:
            raise BodyError("the client closed the connection in the chunked body")
        if not line.endswith(b"\n"):
            raise BodyError("chunked body: line too long",
                            Answer(400, "BadRequest", "Invalid chunked encoding.", close=True))
        return line

    def body_pieces(self):
        """The request body in pieces (at most once per request). Stops at the
        hard cap (self.capped, the connection will be closed)."""
        if self.body_read:
            return
        self.body_read = True
        kind, n = self.frame
        if kind == "length":
            left = n
            while left > 0:
                if self.entry["body_len"] >= BODY_CAP:
                    self.capped = True
                    self.close_connection = True
                    return
                piece = self._read(min(READ_PIECE, left))
                left -= len(piece)
                self.entry["body_len"] += len(piece)
                yield piece
        elif kind == "chunked":
            bad = Answer(400, "BadRequest", "Invalid chunked encoding.", close=True)
            while True:
                line = self._readline()
                size_text = line.split(b";", 1)[0].strip()
                if not re.fullmatch(rb"[0-9A-Fa-f]{1,15}", size_text):
                    raise BodyError("chunked body: bad chunk size line", bad)
                size = int(size_text, 16)
                if size == 0:
                    for _ in range(100):
                        if self._readline() in (b"\r\n", b"\n"):
                            return
                    raise BodyError("chunked body: too many trailer lines", bad)
                left = size
                while left > 0:
                    if self.entry["body_len"] >= BODY_CAP:
                        self.capped = True
                        self.close_connection = True
                        return
                    piece = self._read(min(READ_PIECE, left))
                    left -= len(piece)
                    self.entry["body_len"] += len(piece)
                    yield piece
                if self._readline() not in (b"\r\n", b"\n"):
                    raise BodyError("chunked body: chunk data not followed by CRLF", bad)

    def read_body(self, limit):
        """The whole body, or None when it is longer than limit (it is still read)."""
        data = bytearray()
        over = False
        for piece in self.body_pieces():
            if not over and len(data) + len(piece) <= limit:
                data += piece
            else:
                over = True
                data = bytearray()
        return None if over or self.capped else bytes(data)

    def discard_body(self):
        for _ in self.body_pieces():
            pass

    # ---- dispatch ----

    def dispatch(self):
        st = self.state
        self.rid = str(uuid.uuid4())
        self.crid = self.headers.get("client-request-id")
        self.body_read = False
        self.capped = False
        split = urllib.parse.urlsplit(self.path)
        self.query = urllib.parse.parse_qs(split.query, keep_blank_values=True)
        auth = self.headers.get("Authorization")
        cl = self.headers.get("Content-Length")
        self.entry = {
            "time": round(time.time(), 6), "conn": self.conn_n, "method": self.command,
            "path": split.path, "op": None, "mailbox": None, "via": None,
            "auth": (auth.split(" ", 1)[0].lower() or "none") if auth else "none",
            "token_n": 0, "grant": None, "client_request_id": self.crid,
            "return_client_request_id": self.headers.get("return-client-request-id"),
            "content_type": self.headers.get("Content-Type"),
            "content_length": int(cl) if cl and cl.strip().isdigit() else None,
            "chunked": "chunked" in (self.headers.get("Transfer-Encoding") or "").lower(),
            "body_len": 0, "content_range": self.headers.get("Content-Range"),
            "status": None, "code": None, "message": None, "fault": None, "action": None,
            "retry_after": None, "expect": self.headers.get("Expect"),
            "version": self.request_version}
        self.token = self.identify_token(auth)
        try:
            try:
                self.frame = self.framing()
                r = route(self.command, split.path)
                self.entry.update(op=r.op, via=r.via)
                if r.mailbox is not None:
                    self.entry["mailbox"] = r.mailbox
                if r.session is not None:
                    self.entry["session"] = r.session
                if r.draft is not None:
                    self.entry["draft"] = r.draft
                if r.op in ("upload", "uploadStatus"):
                    self.upload_op(r)
                else:
                    self.graph_op(r)
            except BodyError as e:
                self.entry["error"] = str(e)
                if e.answer is None:
                    raise Close(str(e))
                raise e.answer
        except Answered:
            pass
        except (OSError, ssl.SSLError):
            raise
        except Answer as a:
            self.answer_error(a)
        except Close as c:
            self.close_connection = True
            st.write("requests.jsonl", self.entry)
            if c.stall:
                self.stall()
            try:
                self.connection.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass
        except Exception:  # a bug in the peer: say so loudly, answer 500
            traceback.print_exc()
            sys.stderr.flush()
            self.close_connection = True
            self.entry["error"] = "peer bug: see the peer's stderr"
            self.answer_error(Answer(500, "PeerBug", "graph_peer failed: see its stderr."))

    def stall(self):
        """Answer nothing for up to stall_seconds, or until the client closes or the peer stops."""
        deadline = time.monotonic() + self.state.stall_seconds
        while not self.state.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                self.connection.settimeout(min(0.25, left))
                if not self.connection.recv(READ_PIECE):
                    break
            except TimeoutError:
                continue
            except (OSError, ssl.SSLError, ValueError):
                break
        self.close_connection = True

    # ---- authorization ----

    def identify_token(self, auth):
        """{token_ok, grant, delegated, problem} for the Authorization header; logs token_n."""
        if not auth:
            return {"ok": False, "problem": "Access token is empty."}
        scheme, _, value = auth.partition(" ")
        value = value.strip()
        if scheme.lower() != "bearer" or not value:
            return {"ok": False, "problem": "Access token is empty."}
        valid, foreign = self.state.tokens()
        for i, (t, grant, exp) in enumerate(valid, 1):
            if t == value:
                self.entry["token_n"] = i
                self.entry["grant"] = grant
                delegated = (grant or "") in DELEGATED_GRANTS
                if exp is not None and time.time() > exp + CLOCK_SKEW:
                    return {"ok": False, "problem": "Lifetime validation failed, the token is "
                            "expired.", "grant": grant}
                return {"ok": True, "grant": grant, "delegated": delegated}
        if value in foreign:
            return {"ok": False, "problem": "Access token validation failure. Invalid audience."}
        return {"ok": False, "problem": "Access token validation failure."}

    # ---- faults ----

    def apply_fault(self, op, mailbox):
        """Carry out the fault that fires now: raises Answer or Close, or
        returns "drop_partial" (upload) or None."""
        i, f = self.state.take_fault(op, mailbox)
        if f is None:
            return None
        action = f.get("action", "reply")
        self.entry.update(fault=i, action=action)
        if action == "stall":
            raise Close("fault: stall", stall=True)
        if action == "drop" or (action == "drop_partial" and op != "upload"):
            raise Close("fault: drop")
        if action == "drop_partial":
            return "drop_partial"
        status = f.get("status", 503)
        headers = []
        if f.get("retry_after") is not None:
            self.entry["retry_after"] = f["retry_after"]
            headers.append(("Retry-After", str(f["retry_after"])))
        if action in ("truncate_tls", "partial", "raw"):
            self.fault_hang_up(f, action, status, headers)
        if any(k in f for k in ("raw_body", "pad", "chunked")):
            self.discard_body()
            self.fault_answer(f, op, status, headers)
            raise Answered()
        if status < 400:
            self.discard_body()
            body = f.get("body")
            self.entry["code"] = None
            if status == 201 and op == "upload":
                headers.append(("Location", self.base() + "/v1.0/attachments('fault')"))
            self.respond(status, body, headers)
            raise Answered()
        code, message = FAULT_DEFAULTS.get(status, ("UnknownError", "An error occurred."))
        raise Answer(status, f.get("code", code), f.get("message", message), headers)

    # ---- fault answers for fault tests (extensions) ----

    def fault_body(self, f, status):
        """The octets of a fault's answer body: raw_body, else the body (status
        below 400) or the error document, with pad octets of padding."""
        if "raw_body" in f:
            return f["raw_body"].encode("latin-1")
        if status < 400:
            body = f.get("body")
            if isinstance(body, str):
                return body.encode("utf-8")
            doc = dict(body) if isinstance(body, dict) else ({} if body is None else body)
        else:
            code, message = FAULT_DEFAULTS.get(status, ("UnknownError", "An error occurred."))
            doc = self.error_body(f.get("code", code), f.get("message", message))
            self.entry.update(code=doc["error"]["code"], message=doc["error"]["message"])
        if f.get("pad") and isinstance(doc, dict):
            target = doc["error"] if "error" in doc else doc
            target["padding"] = "x" * f["pad"]
        return json.dumps(doc).encode("utf-8") if doc != {} or status >= 400 else b""

    def fault_answer(self, f, op, status, headers):
        """A reply fault with raw_body, pad or chunked: logged, then answered."""
        data = self.fault_body(f, status)
        self.entry["status"] = status
        self.state.write("requests.jsonl", self.entry)
        if status == 401:
            headers = headers + [("WWW-Authenticate", WWW_AUTHENTICATE)]
        self.send_response(status)
        self.send_header("Content-Type", JSON_TYPE)
        if f.get("chunked"):
            self.send_header("Transfer-Encoding", "chunked")
        else:
            self.send_header("Content-Length", str(len(data)))
        self.common_headers()
        for k, v in headers:
            self.send_header(k, v)
        self.end_headers()
        if f.get("chunked"):
            for i in range(0, len(data), READ_PIECE):
                piece = data[i:i + READ_PIECE]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(data)

    def fault_hang_up(self, f, action, status, headers):
        """truncate_tls, partial, raw: write what the action says, then
        raise Close (logged there, the connection shut without close_notify)."""
        self.discard_body()
        try:
            if action == "truncate_tls":
                self.wfile.flush()
                # application_data, TLS 1.2 record version, 16384 octets announced
                os.write(self.connection.fileno(), b"\x17\x03\x03\x40\x00" + os.urandom(100))
            elif action == "raw":
                self.wfile.write(f["data"].encode("latin-1"))
                self.wfile.flush()
            else:
                data = self.fault_body(f, status)
                self.entry["status"] = status
                self.send_response(status)
                self.send_header("Content-Type", JSON_TYPE)
                self.send_header("Content-Length", str(len(data)))
                self.common_headers()
                for k, v in headers:
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data[:len(data) // 2])
                self.wfile.flush()
        except (OSError, ssl.SSLError, ValueError):
            pass
        raise Close("fault: " + action)

    def base(self):
        scheme = "http" if self.state.config.get("plain") else "https"
        return "%s://127.0.0.1:%d" % (scheme, self.state.port)

    # ---- Graph operations (everything but the upload URL) ----

    def graph_op(self, r):
        st = self.state
        data = self.read_body(st.request_limit)
        if data is None:
            limit = st.request_limit
            size = "4MB" if limit == REQUEST_LIMIT else "%d bytes" % limit
            raise Answer(413, "BadRequest", "The maximum request length supported is %s." % size,
                         close=self.capped)
        if r.error is not None:
            raise r.error
        tok = self.token
        if not tok["ok"]:
            raise Answer(401, "InvalidAuthenticationToken", tok["problem"])
        if r.via == "me":
            if not tok["delegated"]:
                raise Answer(400, "BadRequest",
                             "/me request is only valid with delegated authentication flow.")
            mailbox = st.me
        else:
            mailbox = st.mailbox(r.mailbox)
            if mailbox is None:
                raise Answer(404, "ErrorInvalidUser",
                             "The requested user '%s' is invalid." % r.mailbox)
            if tok["delegated"] and mailbox.lower() != st.me.lower():
                raise Answer(403, "ErrorAccessDenied",
                             "Access is denied. Check credentials and try again.")
        self.entry["mailbox"] = mailbox
        self.apply_fault(r.op, mailbox)
        getattr(self, "op_" + r.op)(r, data, mailbox)

    def mime_body(self, data):
        ctype = self.headers.get("Content-Type")
        if media_type(ctype) != "text/plain":
            raise Answer(400, "ErrorInvalidRequest", "The Content-Type '%s' is not supported for "
                         "MIME content: use text/plain." % (ctype or ""))
        self.entry["base64_newlines"] = b"\r" in data or b"\n" in data
        mime = b64_strict(data)
        if mime is None:
            raise Answer(400, "ErrorMimeContentInvalidBase64String",
                         "Invalid base64 string for MIME content.")
        if not mime:
            raise Answer(400, "ErrorMimeContentInvalid", "The MIME content is empty.")
        return mime

    def json_body(self, data):
        ctype = self.headers.get("Content-Type")
        if media_type(ctype) != "application/json":
            raise Answer(400, "ErrorInvalidRequest", "The Content-Type '%s' is not supported: "
                         "use application/json." % (ctype or ""))
        try:
            obj = json.loads(data.decode("utf-8"))
        except (ValueError, UnicodeDecodeError):
            obj = None
        if not isinstance(obj, dict):
            raise Answer(400, "UnableToDeserializePostBody", "were unable to deserialize ")
        return obj

    def deliver(self, op, mailbox, via, mime, delivered, sent_items, attachments, draft_id):
        """Store a message accepted for delivery and log it in sent.jsonl."""
        st = self.state
        info = header_info(mime)
        n = st.count("sent_n")
        name, items = "sent-%d.eml" % n, "sentitems-%d.eml" % n
        with open(st.path(name), "wb") as f:
            f.write(delivered)
        with open(st.path(items), "wb") as f:
            f.write(sent_items)
        st.write("sent.jsonl", {
            "n": n, "op": op, "draft": draft_id, "mailbox": mailbox, "via": via,
            "from": info["from"], "to": info["to"], "cc": info["cc"], "bcc": info["bcc"],
            "recipients": info["recipients"], "file": name, "sent_items_file": items,
            "size": len(sent_items), "attachments": attachments,
            "client_request_id": self.crid})
        return n

    def op_sendMail(self, r, data, mailbox):
        mime = self.mime_body(data)
        if not header_info(mime)["recipients"]:
            raise Answer(400, "ErrorInvalidRecipients",
                         "At least one recipient is required, but none were found.")
        self.deliver("sendMail", mailbox, r.via, mime, remove_fields(mime, ["Bcc"]), mime, [],
                     None)
        self.respond(202)

    def op_createDraft(self, r, data, mailbox):
        st = self.state
        mime = self.mime_body(data)
        n = st.count("draft_n")
        draft = Draft("draft-%d" % n, n, mailbox, mime)
        name = "draft-%d.eml" % n
        with open(st.path(name), "wb") as f:
            f.write(mime)
        with st.lock:
            st.drafts[draft.id] = draft
        self.entry["draft"] = draft.id
        st.write("drafts.jsonl", {"event": "created", "id": draft.id, "mailbox": mailbox,
                                  "via": r.via, "file": name, "size": len(mime),
                                  "client_request_id": self.crid})
        self.respond(201, self.message_resource(draft), [("Location", self.message_url(draft))])

    def message_url(self, draft):
        return "%s/v1.0/users('%s')/messages('%s')" % (self.base(), draft.mailbox, draft.id)

    def message_resource(self, draft):
        info = header_info(draft.mime)

        def people(key):
            return [{"emailAddress": {"name": name or addr, "address": addr}}
                    for name, addr in info["lists"][key]]

        sender = email.utils.getaddresses([info["from"] or ""])
        sender = [{"emailAddress": {"name": decoded_words(n) or a, "address": a}}
                  for n, a in sender if a]
        stamp = iso(draft.created, fraction=False) + "Z"
        return {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('%s')/"
                              "messages/$entity" % draft.mailbox,
            "@odata.etag": 'W/"CQAAABYAAAD%s"' % hashlib.sha1(draft.id.encode()).hexdigest()[:20],
            "id": draft.id, "createdDateTime": stamp, "lastModifiedDateTime": stamp,
            "changeKey": "CQAAABYAAAD" + hashlib.sha1(draft.id.encode()).hexdigest()[:20],
            "categories": [], "receivedDateTime": stamp, "sentDateTime": stamp,
            "hasAttachments": False, "internetMessageId": info["message-id"],
            "subject": decoded_words(info["subject"]) if info["subject"] else "",
            "bodyPreview": "", "importance": "normal", "parentFolderId": "drafts",
            "conversationId": "conv-" + draft.id, "isDeliveryReceiptRequested": False,
            "isReadReceiptRequested": False, "isRead": True, "isDraft": True,
            "webLink": "https://outlook.office365.com/owa/?ItemID=%s&exvsurl=1&viewmodel="
                       "ReadMessageItem" % draft.id,
            "inferenceClassification": "focused",
            "body": {"contentType": "text", "content": ""},
            "sender": sender[0] if sender else None, "from": sender[0] if sender else None,
            "toRecipients": people("to"), "ccRecipients": people("cc"),
            "bccRecipients": people("bcc"), "replyTo": [],
            "flag": {"flagStatus": "notFlagged"}}

    def draft_of(self, r, mailbox):
        with self.state.lock:
            d = self.state.drafts.get(r.draft)
            if d is None or d.state != "open" or d.mailbox.lower() != mailbox.lower():
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            return d

    @staticmethod
    def attachment_fields(item):
        """(name, content_type, is_inline, content_id) of a JSON attachment; raises Answer."""
        bad = Answer(400, "UnableToDeserializePostBody", "were unable to deserialize ")
        name = item.get("name")
        ctype = item.get("contentType")
        inline = item.get("isInline", False)
        cid = item.get("contentId")
        if name is not None and not isinstance(name, str) or \
                ctype is not None and not isinstance(ctype, str) or \
                inline is not None and not isinstance(inline, bool) or \
                cid is not None and not isinstance(cid, str):
            raise bad
        if not name:
            raise Answer(400, "ErrorInvalidRequest", "The attachment name is missing.")
        return name, ctype or "application/octet-stream", bool(inline), cid

    def op_attachment(self, r, data, mailbox):
        st = self.state
        d = self.draft_of(r, mailbox)
        obj = self.json_body(data)
        if obj.get("@odata.type") != "#microsoft.graph.fileAttachment":
            raise Answer(400, "ErrorInvalidRequest", "The attachment type '%s' is not supported "
                         "here: use #microsoft.graph.fileAttachment." % obj.get("@odata.type"))
        name, ctype, inline, cid = self.attachment_fields(obj)
        raw = obj.get("contentBytes")
        content = b64_strict(raw) if isinstance(raw, str) else None
        if content is None:
            raise Answer(400, "UnableToDeserializePostBody", "were unable to deserialize ")
        att_id = "att-%d" % st.count("attachment_n")
        rec = {"name": name, "content_type": ctype, "size": len(content),
               "sha256": hashlib.sha256(content).hexdigest(), "via": "post",
               "is_inline": inline, "content_id": cid}
        with st.lock:
            if d.state != "open":
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            d.slots.append({"record": rec, "data": content, "session": None, "id": att_id})
        st.write("drafts.jsonl", dict(rec, event="attachment", id=d.id, mailbox=d.mailbox,
                                      attachment=att_id))
        url = "%s/attachments('%s')" % (self.message_url(d), att_id)
        self.respond(201, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#users('%s')/"
                              "messages('%s')/attachments/$entity" % (d.mailbox, d.id),
            "@odata.type": "#microsoft.graph.fileAttachment", "@odata.mediaContentType": ctype,
            "id": att_id, "lastModifiedDateTime": iso(fraction=False) + "Z", "name": name,
            "contentType": ctype, "size": len(content), "isInline": inline, "contentId": cid,
            "contentLocation": None, "contentBytes": raw}, [("Location", url)])

    def ranges(self, n):
        return ["%d" % n] if self.state.config.get("bare_ranges") else ["%d-" % n]

    def op_createUploadSession(self, r, data, mailbox):
        st = self.state
        d = self.draft_of(r, mailbox)
        obj = self.json_body(data)
        item = obj.get("AttachmentItem")
        if not isinstance(item, dict):
            raise Answer(400, "ErrorInvalidRequest", "The AttachmentItem is missing.")
        kind = item.get("attachmentType")
        if not isinstance(kind, str) or kind.lower() != "file":
            raise Answer(400, "ErrorInvalidRequest", "The attachmentType '%s' is not supported: "
                         "use file." % (kind,))
        name, ctype, inline, cid = self.attachment_fields(item)
        size = item.get("size")
        if not isinstance(size, int) or isinstance(size, bool):
            raise Answer(400, "UnableToDeserializePostBody", "were unable to deserialize ")
        if size < 1:
            raise Answer(400, "ErrorInvalidRequest", "The attachment size must be at least 1.")
        sid = str(st.count("session_n"))
        path = st.path("upload-%s.bin" % sid)
        open(path, "wb").close()
        rec = {"name": name, "content_type": ctype, "size": size, "sha256": None,
               "via": "upload", "is_inline": inline, "content_id": cid}
        sess = Session(sid, d, rec, path)
        att_id = "att-%d" % st.count("attachment_n")
        with st.lock:
            if d.state != "open":
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            st.sessions[sid] = sess
            d.slots.append({"record": rec, "data": None, "session": sess, "id": att_id})
        self.entry["session"] = sid
        url = "%s/upload/%s?authtoken=%s" % (self.base(), sid, sess.authtoken)
        self.respond(201, {
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph."
                              "uploadSession",
            "uploadUrl": url, "expirationDateTime": iso(sess.expires),
            "nextExpectedRanges": self.ranges(0)})

    def op_send(self, r, data, mailbox):
        st = self.state
        d = self.draft_of(r, mailbox)
        with st.lock:
            slots = list(d.slots)
        if any(s["session"] is not None and not s["session"].complete for s in slots):
            raise Answer(400, "ErrorInvalidRequest",
                         "The message has an attachment upload that is not complete.")
        if not header_info(d.mime)["recipients"]:
            raise Answer(400, "ErrorInvalidRecipients",
                         "At least one recipient is required, but none were found.")
        parts = []
        for s in slots:
            content = s["data"]
            if content is None:
                with open(s["session"].path, "rb") as f:
                    content = f.read()
            parts.append((s["record"], content))
        if parts:
            delivered, sent_items = rebuild(d.mime, parts)
        else:
            delivered, sent_items = remove_fields(d.mime, ["Bcc"]), d.mime
        with st.lock:
            if d.state != "open":
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            d.state = "sent"
        n = self.deliver("draft", d.mailbox, r.via, d.mime, delivered, sent_items,
                         [dict(s["record"]) for s in slots], d.id)
        st.write("drafts.jsonl", {"event": "sent", "id": d.id, "mailbox": d.mailbox, "sent": n})
        self.respond(202)

    def op_delete(self, r, data, mailbox):
        st = self.state
        d = self.draft_of(r, mailbox)
        with st.lock:
            if d.state != "open":
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            d.state = "deleted"
        st.write("drafts.jsonl", {"event": "deleted", "id": d.id, "mailbox": d.mailbox})
        self.respond(204)

    # ---- the upload URL ----

    def upload_op(self, r):
        st = self.state
        try:
            with st.lock:
                sess = st.sessions.get(r.session)
                gone = sess is None or sess.complete or sess.draft.state != "open"
            if gone:
                raise Answer(404, "ErrorItemNotFound",
                             "The specified object was not found in the store.")
            self.entry["mailbox"] = sess.draft.mailbox
            self.entry["draft"] = sess.draft.id
            given = self.query.get("authtoken", [""])
            if len(given) != 1 or not secrets.compare_digest(given[0], sess.authtoken):
                raise Answer(401, "InvalidAuthenticationToken", "Access token validation failure.")
            if self.headers.get("Authorization") is not None:
                raise Answer(400, "InvalidAuthenticationToken", "The upload URL is "
                             "pre-authenticated: the request must not have an Authorization "
                             "header.")
            mode = self.apply_fault(r.op, sess.draft.mailbox)
        except (Answer, Close):
            self.discard_body()
            raise
        if r.op == "uploadStatus":
            self.discard_body()
            with sess.lock:
                n = sess.next
            self.respond(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#"
                                                 "microsoft.graph.uploadSession",
                               "expirationDateTime": iso(sess.expires),
                               "nextExpectedRanges": self.ranges(n)})
            return
        self.upload_put(sess, mode)

    def range_problem(self, sess, header):
        if not header:
            return None, "The Content-Range header is missing."
        m = re.fullmatch(r"bytes ([0-9]{1,15})-([0-9]{1,15})/([0-9]{1,15})", header.strip())
        if not m:
            return None, "The Content-Range header '%s' is malformed." % header
        a, b, s = (int(x) for x in m.groups())
        if s != sess.size:
            return None, ("The total size %d in the Content-Range does not match the upload "
                          "session's size %d." % (s, sess.size))
        if b < a or b >= s:
            return None, "The Content-Range '%s' is not a valid range." % header
        if a != sess.next:
            return None, ("The uploaded fragment starts at %d, but the next expected offset is "
                          "%d." % (a, sess.next))
        if b - a + 1 > self.state.chunk_limit:
            return None, ("The uploaded fragment of %d octets is larger than the maximum of %d."
                          % (b - a + 1, self.state.chunk_limit))
        kind, n = self.frame
        if kind == "length" and n != b - a + 1:
            return None, ("The Content-Length %d does not match the Content-Range (%d octets)."
                          % (n, b - a + 1))
        if kind == "none":
            return None, "The fragment is empty."
        return (a, b, s), None

    def upload_put(self, sess, mode):
        st = self.state
        header = self.headers.get("Content-Range")
        with sess.lock:
            rng, problem = self.range_problem(sess, header)
            if problem:
                self.discard_body()
                if mode == "drop_partial":
                    raise Close("fault: drop_partial with a bad range")
                raise Answer(416, "InvalidRange", problem, close=self.capped)
            a, b, s = rng
            want = b - a + 1
            keep = want // 2 if mode == "drop_partial" else want
            written = total = 0
            broken = None
            with open(sess.path, "r+b") as f:
                f.seek(a)
                try:
                    for piece in self.body_pieces():
                        total += len(piece)
                        if written < keep:
                            take = piece[:keep - written]
                            f.write(take)
                            written += len(take)
                except BodyError as e:
                    broken = e
                if broken is None and mode != "drop_partial" and total != want:
                    f.truncate(a)
                    written = 0
                else:
                    f.truncate(a + written)
            sess.next = a + written
            self.entry["kept"] = written
            if broken is not None:
                raise broken
            if mode == "drop_partial":
                raise Close("fault: drop_partial")
            if total != want:
                raise Answer(416, "InvalidRange", "The body has %d octets, but the Content-Range "
                             "announces %d." % (total, want), close=self.capped)
            if sess.next == s:
                h = hashlib.sha256()
                with open(sess.path, "rb") as f:
                    for block in iter(lambda: f.read(1 << 20), b""):
                        h.update(block)
                with st.lock:
                    sess.record["sha256"] = h.hexdigest()
                    sess.complete = True
        if not sess.complete:
            self.respond(200, {"@odata.context": "https://graph.microsoft.com/v1.0/$metadata#"
                                                 "microsoft.graph.uploadSession",
                               "expirationDateTime": iso(sess.expires),
                               "nextExpectedRanges": self.ranges(sess.next)})
            return
        rec = sess.record
        with st.lock:
            att_id = next((x["id"] for x in sess.draft.slots if x["session"] is sess), "att-0")
        st.write("drafts.jsonl", dict(rec, event="upload_complete", id=sess.draft.id,
                                      mailbox=sess.draft.mailbox, session=sess.id,
                                      attachment=att_id))
        self.respond(201, None, [("Location", "%s/attachments('%s')" % (
            self.message_url(sess.draft), att_id))])


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128


def main(argv):
    if len(argv) != 3:
        print("usage: graph_peer.py CONFIG.json DIR", file=sys.stderr)
        return 64
    with open(argv[1]) as f:
        config = json.load(f)
    problem = check_config(config)
    if problem:
        print("graph_peer: " + problem, file=sys.stderr)
        return 64
    os.makedirs(argv[2], exist_ok=True)
    state = State(config, argv[2])
    for name in ("requests.jsonl", "sent.jsonl", "drafts.jsonl"):
        open(state.path(name), "a").close()
    Handler.state = state
    server = Server(("127.0.0.1", 0), Handler)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(config["cert"], config["key"])
    # The handshake runs in the connection's thread (Handler.handle), not in accept().
    if not config.get("plain"):
        server.socket = ctx.wrap_socket(server.socket, server_side=True,
                                        do_handshake_on_connect=False)
    state.port = server.server_address[1]

    def terminate(signum, frame):
        state.stop.set()
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, terminate)
    print("PORT %d" % state.port, flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        state.stop.set()
        server.server_close()
        # No log line is half written when the process ends.
        state.lock.acquire(timeout=5)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
