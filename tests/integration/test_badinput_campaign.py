"""Bad-input campaign (issue 7, item 5): a table of malformed messages and
command lines, each with its expected outcome, driven by one runner.

A case gives the argv, the stdin bytes, an optional config variant, the
exit code, a regex for the first line of stderr, and what an accepted
message must look like. Every case is one TAP test; the last line before
the plan is the TAP comment "# bad inputs tried: N, handled: N".

How each case is run (run_case):
* accepted (exit 0): --dry-run, checking the envelope and the message as
  it would be transmitted; the wire cases are also delivered for real to
  the SMTP peer (tests/peers/smtp_peer.py, STARTTLS + XOAUTH2 with a token
  from tests/peers/token_peer.py), and the bytes the peer received must be
  the dry run's (Date and Message-ID aside), with every command line free
  of CR, LF and NUL, one MAIL FROM per message, no Bcc field, no field that
  was not in the input (From, Date and Message-ID aside), no bare CR or LF
  in the header, and the log line "result=sent".
* refused: --dry-run and a real send, both against the same config (whose
  SMTP and token endpoints are the live peers, so a wrongly accepted
  message would reach them). Both give the exit code and the same report;
  the real send ends it with "(the message is kept in FILE)" and appends
  the message as read to the dead letter exactly when the refusal came
  after stdin was read (SPEC 6, src/main.c keep_message: message_taken,
  not --dry-run, a spool); a log line "result=failed exit=N" likewise
  (SPEC 7). Nothing may reach the peers: bad input is refused before any
  network I/O.

Every run must finish within the harness timeout and exit normally (a
signal is a crash). The peers are started once for the campaign and
stopped (by PID) at the end, whatever happens.
"""
import os
import re
import sys
import types

from tmtest import (DryRun, dead_letter_messages, eq, lf, match, run, run_all, test,
                    yaml_value)
from test_smtp import Env, USER, masked_header, split_message

ACCOUNT_FROM = "<%s>" % USER
ALIASES = """\
aliases:
  root: ops@example.com
  postmaster: root
  loop1: loop2
  loop2: loop1
"""
KEPT_RE = r"^  \(the message is kept in (.*)\)$"
MBOX_FROM_RE = (r"^From [!-~]+ (Mon|Tue|Wed|Thu|Fri|Sat|Sun) "
                r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) [ \d]\d "
                r"\d\d:\d\d:\d\d \d{4}$")
ADDED = {"from", "date", "message-id"}
READ = "read"   # dead= for a refusal after stdin was read: the input, LF line ends
PREFIX = "prefix"  # dead= for a refusal while reading: some whole lines of the input


# ------------------------------------------------------------ the shared peers

class Campaign:
    """One workspace, token peer and SMTP peer (test_smtp.Env with aliases)
    for every case, plus config variants written next to its config."""

    def __init__(self):
        self.env = Env(top=ALIASES)
        with open(self.env.ws.config) as f:
            self.config_text = f.read()
        self.tried = 0
        self.handled = 0

    def variant(self, name, text):
        return self.env.ws.write(name + ".yaml", text)

    def close(self):
        self.env.close()


_campaign = None


def campaign():
    global _campaign
    if _campaign is None:
        _campaign = Campaign()
    return _campaign


# ------------------------------------------------------------ config variants

def with_alias_value(value):
    """The campaign config with root's alias given as a YAML scalar."""
    def make(c):
        text = c.config_text.replace("  root: ops@example.com\n", "  root: %s\n" % value)
        assert text != c.config_text
        return c.variant("alias", text)
    return make


def with_aliases_file(content):
    """The campaign config with aliases: naming an aliases(5) file holding
    content (bytes, or made from the workspace directory)."""
    def make(c):
        path = os.path.join(c.env.dir, "aliases")
        with open(path, "wb") as f:
            f.write(content(c.env.dir) if callable(content) else content)
        text = c.config_text.replace(ALIASES, "aliases: %s\n" % yaml_value(path))
        assert text != c.config_text
        return c.variant("aliases-file", text)
    return make


def with_account_from(value):
    def make(c):
        old = "    from: %s\n" % USER
        text = c.config_text.replace(old, "    from: %s\n" % value)
        assert text != c.config_text
        return c.variant("from", text)
    return make


def missing_config(c):
    return os.path.join(c.env.dir, "no-such-config.yaml")


# ------------------------------------------------------------ the cases

class Case:
    """One bad input. rc: expected exit code; err: regex for stderr's first
    line ("" = stderr empty); config: a variant maker (None = the campaign
    config); check_after(campaign): more checks after the runs; why: the
    reason for an expectation that tokenmail does not meet yet. Accepted:
    rcpts (envelope recipients, in order), mail_from, body (the transmitted
    body, CRLF) when given, check(msg) for more, wire (also deliver to the
    SMTP peer), peer_check(record) on the peer's messages.jsonl record of
    it. Refused: dead = None (refused before stdin was read: no dead
    letter), READ (the input, LF line ends), PREFIX (whole lines from the
    input's start) or the exact bytes kept (a refusal while reading keeps
    the part read); wire marks the refusals that matter most on the wire
    (every refusal is also run for real against the peers)."""

    def __init__(self, name, argv, stdin=b"", rc=0, err="", config=None, wire=False,
                 rcpts=None, mail_from=ACCOUNT_FROM, body=None, check=None, dead=None,
                 peer_check=None, check_after=None, why=""):
        self.name, self.argv, self.stdin, self.rc, self.err = name, argv, stdin, rc, err
        self.config, self.wire, self.rcpts, self.mail_from = config, wire, rcpts, mail_from
        self.body, self.check, self.dead, self.why = body, check, dead, why
        self.peer_check, self.check_after = peer_check, check_after


def fold(items, sep=b", ", width=76):
    """items joined by sep, folded into lines of at most width octets."""
    lines, line = [], b""
    for i, item in enumerate(items):
        piece = item + (sep if i + 1 < len(items) else b"")
        if line and len(line) + len(piece) > width:
            lines.append(line.rstrip(b" "))
            line = b""
        line += piece
    lines.append(line)
    return b"\n ".join(lines)


def chunks(data, width=70):
    """data cut into folded continuation lines (for comments that span lines)."""
    return b"\n ".join(data[i:i + width] for i in range(0, len(data), width))


def addrs(n, fmt=b"r%d@example.com"):
    return [fmt % i for i in range(n)]


def arg(data):
    """Bytes as an argv string (non-UTF-8 bytes survive via surrogateescape)."""
    return data.decode("utf-8", "surrogateescape")


def header_fields(msg):
    """[(name, value)] of the transmitted header, unfolded."""
    head, _ = split_message(msg)
    out = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and out:
            out[-1] = (out[-1][0], out[-1][1] + line)
            continue
        name, _, value = line.partition(b":")
        out.append((name.strip().decode("utf-8", "replace"), value.strip()))
    return out


def field(msg, name):
    values = [v for n, v in header_fields(msg) if n.lower() == name.lower()]
    assert len(values) == 1, "%s: %r" % (name, values)
    return values[0]


def body(msg):
    return split_message(msg)[1]


def from_is(value):
    def check(msg):
        eq(field(msg, "From"), value, "From:")
    return check


def from_is_utf8(pattern):
    """From: is valid UTF-8 (decoding fails otherwise) and matches pattern."""
    def check(msg):
        match(pattern, field(msg, "From").decode("utf-8"), "From:")
    return check


def no_field_named(*names):
    def check(msg):
        got = [n.lower() for n, _ in header_fields(msg)]
        for n in names:
            assert n.lower() not in got, "%s field in %r" % (n, split_message(msg)[0][:600])
    return check


def all_of(*checks):
    def check(msg):
        for c in checks:
            c(msg)
    return check


NESTED = 60000          # comment depth in one argv word (under MAX_ARG_STRLEN)
NESTED_FOLDED = 100000  # comment depth in a folded header (under 256 KiB)
MB = 1 << 20

TO_10000 = b"To: " + fold(addrs(10000)) + b"\nSubject: ten thousand\n\nbody\n"
TO_1000 = b"To: " + fold(addrs(1000)) + b"\nSubject: one thousand\n\nbody\n"


def header_injection_cases():
    inj_bcc = "Bcc: evil@example.net"
    return [
        Case("f_crlf_bcc_injection", ["-f", "a@b\r\n" + inj_bcc, "a@example.com"], b"x\n",
             64, wire=True,
             err=r'^tokenmail: -f: invalid address "a@b\\x0d\\x0aBcc: evil@example\.net": '
                 r'carriage return at offset 3$',
             why="control bytes shown once-escaped, as tokenmail(8) DIAGNOSTICS says"),
        Case("f_lf_rcpt_to_injection", ["-f", "app@example.com\nRCPT TO:<evil@example.net>",
                                        "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*: line feed at offset 15$"),
        Case("r_crlf_injection", ["-r", "app@example.com\r\nDATA", "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*carriage return at offset 15$"),
        Case("f_glued_crlf_injection", ["-fapp@example.com\r\nX-Injected: 1", "a@example.com"],
             b"x\n", 64, r"^tokenmail: -f: invalid address .*carriage return"),
        Case("f_angle_then_crlf", ["-f", "<app@example.com>\r\n", "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*carriage return"),
        Case("f_quoted_pair_cr", ["-f", '"a\\\rb"@example.com', "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*carriage return at offset 3$"),
        Case("f_smtp_parameter_smuggling", ["-f", "app@example.com SIZE=1 AUTH=<>",
                                            "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*unexpected word after address"),
        Case("F_lf_bcc_injection", ["-F", "Name\n" + inj_bcc, "a@example.com"],
             b"Subject: s\n\nbody\n", wire=True, rcpts=["a@example.com"],
             check=all_of(from_is(b'"Name Bcc: evil@example.net" <app@example.com>'),
                          no_field_named("Bcc"))),
        Case("F_crlf_bcc_injection", ["-F", "Name\r\n" + inj_bcc, "-f", USER, "a@example.com"],
             b"Subject: s\n\nbody\n", wire=True, rcpts=["a@example.com"],
             check=all_of(from_is(b'"Name  Bcc: evil@example.net" <app@example.com>'),
                          no_field_named("Bcc"))),
        Case("F_encoded_word_crlf", ["-F", "=?utf-8?q?Name=0D=0ABcc=3A_evil=40example.net?=",
                                     "a@example.com"], b"Subject: s\n\nbody\n",
             rcpts=["a@example.com"],
             check=all_of(from_is(b'"=?utf-8?q?Name=0D=0ABcc=3A_evil=40example.net?=" '
                                  b'<app@example.com>'), no_field_named("Bcc")),
             why="not a valid encoded-word in a phrase ('.'), so it is quoted as text"),
        Case("F_quotes_and_backslashes", ["-F", 'J\u00f6rg "q" \\b', "a@example.com"], b"x\n",
             rcpts=["a@example.com"],
             check=from_is('"J\u00f6rg \\"q\\" \\\\b" <app@example.com>'.encode())),
        Case("F_100k_long_name", ["-F", "N" * 100000, "a@example.com"], b"x\n",
             rcpts=["a@example.com"],
             check=lambda m: match(r"^N{100,998} <app@example\.com>$",
                                   field(m, "From").decode(), "From: cut short")),
        Case("from_encoded_crlf_rewritten", ["-t"],
             b"From: =?utf-8?q?Name=0D=0ABcc=3A_evil=40example=2Enet?= <x@elsewhere.example>\n"
             b"To: a@example.com\nSubject: s\n\nbody\n",
             wire=True, rcpts=["a@example.com"],
             check=all_of(from_is(b"=?utf-8?q?Name=0D=0ABcc=3A_evil=40example=2Enet?= "
                                  b"<app@example.com>"), no_field_named("Bcc"))),
        Case("to_encoded_crlf_display", ["-t"],
             b"To: =?utf-8?q?Bob=0D=0ABcc=3A_evil=40example.net?= <bob@example.org>\n\nbody\n",
             wire=True, rcpts=["bob@example.org"], check=no_field_named("Bcc")),
        Case("header_lone_cr_hides_a_bcc_line", ["a@example.com"],
             b"Subject: hi\rBcc: evil@example.net\n\nbody\n", wire=True,
             rc=65, err=r"^tokenmail: .*(carriage return|\bCR\b)", dead=READ,
             why="RFC 5322 2.2 / RFC 5321 2.3.8: a lone CR in a header field must not reach "
                 "the wire, where a receiver may take it as a line end and see a Bcc: field"),
        Case("to_quoted_pair_cr", ["-t"], b'To: "a\\\rb"@example.com\n\nbody\n',
             65, r'^tokenmail: header line 1 holds a carriage return not followed by a '
             r'line feed$', dead=READ),
        Case("to_folded_quoted_local_part", ["-t"], b'To: "a\n b"@example.com\n\nbody\n',
             wire=True, rcpts=['"a b"@example.com']),
        Case("rcpt_arg_crlf_data", ["a@example.com\r\nDATA"], b"x\n",
             64, r"^tokenmail: recipient argument 1: invalid address list .*carriage return"),
        Case("rcpt_arg_quoted_pair_crlf",
             ['"a\\\r\nRCPT TO:<evil@example.net>"@example.com'], b"x\n",
             64, r"^tokenmail: recipient argument 1: invalid address list .*carriage return"),
        Case("rcpt_arg_smtp_parameter", ["a@example.com> NOTIFY=SUCCESS"], b"x\n",
             64, r"^tokenmail: recipient argument 1: invalid address list .*unexpected '>'"),
        Case("alias_yaml_crlf_bcc", ["root"], b"Subject: s\n\nbody\n", wire=True,
             rc=78, err=r"^tokenmail: .*\.yaml:\d+:\d+: key 'aliases\.root': must not "
                        r"contain control characters$",
             config=with_alias_value(r'"ops@example.com\r\nBcc: evil@example.net"')),
        Case("alias_yaml_lf_rcpt", ["root"], b"Subject: s\n\nbody\n",
             78, r"^tokenmail: .*key 'aliases\.root': must not contain control characters$",
             config=with_alias_value(r'"ops@example.com>\nRCPT TO:<evil@example.net"')),
        Case("aliases_file_cr_bcc", ["root"], b"Subject: s\n\nbody\n", wire=True,
             rc=78, err=r"^tokenmail: .*/aliases:1: alias 'root': invalid address list .*"
                        r"carriage return at offset 16$",
             config=with_aliases_file(b"root: ops@example.com\rBcc: evil@example.net\n")),
        Case("aliases_file_crlf_line_ends", ["root"], b"Subject: s\n\nbody\n",
             wire=True, rcpts=["ops@example.com"],
             config=with_aliases_file(b"root: ops@example.com\r\npostmaster: root\r\n")),
        Case("aliases_file_program", ["root"], b"Subject: s\n\nbody\n",
             78, r"^tokenmail: .*/aliases:1: alias 'root': tokenmail delivers only to "
                 r"addresses, not to files or programs$",
             config=with_aliases_file(lambda d: b"root: |/bin/sh -c 'touch %s/pwned'\n"
                                      % d.encode()),
             check_after=lambda c: eq(os.path.exists(os.path.join(c.env.dir, "pwned")), False,
                                      "the alias's program ran")),
        Case("alias_loop", ["loop1"], b"Subject: s\n\nbody\n",
             78, r"^tokenmail: alias loop: loop1 -> loop2 -> loop1$", dead=READ),
        Case("account_from_crlf", ["a@example.com"], b"x\n",
             78, r"^tokenmail: .*\.yaml:\d+:\d+: key 'accounts\.app\.from': must not "
                 r"contain control characters$",
             config=with_account_from(r'"app@example.com\r\nBcc: evil@example.net"')),
        Case("V_envid_crlf_is_xtext", ["-V", "env\r\nRCPT TO:<evil@example.net>", "-N",
                                       "failure", "a@example.com"], b"Subject: s\n\nbody\n",
             wire=True, rcpts=["a@example.com"],
             peer_check=lambda m: eq(m["mail_params"].get("ENVID"),
                                     "env+0D+0ARCPT+20TO:<evil@example.net>", "ENVID xtext")),
        Case("B_crlf_warning_is_escaped", ["-B", "8BIT\r\nX-Injected: 1", "a@example.com"],
             b"x\n", 0, r"^tokenmail: warning: ignoring unknown body type -B "
                        r"8BIT\\x0d\\x0aX-Injected: 1$", rcpts=["a@example.com"],
             check=no_field_named("X-Injected")),
    ]


def bcc_cases():
    return [
        Case("bcc_variants_never_transmitted", ["-t"],
             b"To: a@example.com\nbcc : hidden1@example.net\nBCC:\n hidden2@example.net\n"
             b"Bcc:\nSubject: s\n\nbody\n",
             wire=True, rcpts=["a@example.com", "hidden1@example.net", "hidden2@example.net"],
             check=no_field_named("Bcc")),
        Case("bcc_without_t_is_dropped_not_a_recipient", ["a@example.com"],
             b"Bcc: hidden@example.net\nSubject: s\n\nbody\n",
             wire=True, rcpts=["a@example.com"], check=no_field_named("Bcc")),
        Case("resent_bcc_never_transmitted", ["-t"],
             b"From: x@elsewhere.example\nTo: old@example.org\nResent-From: app@example.com\n"
             b"Resent-To: new@example.org\nResent-Bcc: hidden@example.net\n\nbody\n",
             wire=True, rcpts=["new@example.org", "hidden@example.net"],
             check=no_field_named("Resent-Bcc", "Bcc")),
    ]


def nesting_cases():
    deep = b"(" * NESTED_FOLDED + b"Deep" + b")" * NESTED_FOLDED
    return [
        Case("f_comments_60000_deep", ["-f", USER + " " + "(" * NESTED + ")" * NESTED,
                                       "a@example.com"], b"x\n", rcpts=["a@example.com"]),
        Case("rcpt_arg_comments_60000_deep", ["x@example.com " + "(" * NESTED + ")" * NESTED],
             b"x\n", rcpts=["x@example.com"]),
        Case("to_comments_100000_deep_folded", ["-t"],
             b"To: a@example.com " + chunks(deep) + b"\n\nbody\n", rcpts=["a@example.com"]),
        Case("from_comment_3000_deep_becomes_display", ["-t"],
             b"From: root " + chunks(b"(" * 3000 + b"Deep" + b")" * 3000)
             + b"\nTo: a@example.com\n\nbody\n",
             wire=True, rcpts=["a@example.com"],
             check=lambda m: match(r'^"\(+( \(+)*" <app@example\.com>$',
                                   field(m, "From").decode(), "From: display cut short")),
        Case("to_comment_unbalanced", ["-t"],
             b"To: a@example.com " + chunks(b"(" * 5000) + b"\n\nb\n",
             65, r"^tokenmail: To: header: invalid address list", dead=READ),
        Case("to_comments_over_the_header_limit", ["-t"],
             b"To: a@example.com " + chunks(b"(" * 150000 + b")" * 150000) + b"\n\nbody\n",
             65, r"^tokenmail: the header is over 262144 octets \(line \d+\)$",
             dead=PREFIX),
    ]


def size_cases():
    many_args = ["r%d@example.com" % i for i in range(10000)]
    return [
        Case("header_line_1mb", ["a@example.com"], b"X-Big: " + b"y" * MB + b"\n\nbody\n",
             65, r"^tokenmail: header line 1 is 1048583 octets long; RFC 5322 allows 998$",
             dead=b""),
        Case("continuation_line_1mb", ["-t"],
             b"To: a@example.com\nX-Big: v\n " + b"y" * MB + b"\n\nbody\n",
             65, r"^tokenmail: header line 3 is 1048577 octets long; RFC 5322 allows 998$",
             dead=b"To: a@example.com\nX-Big: v\n"),
        Case("to_line_1mb", ["-t"], b"To: " + b", ".join(addrs(60000)) + b"\n\nbody\n",
             65, r"^tokenmail: header line 1 is \d+ octets long; RFC 5322 allows 998$",
             dead=b""),
        Case("body_line_1mb_is_kept", ["a@example.com"],
             b"Subject: long\n\n" + b"z" * MB + b"\n", wire=True, rcpts=["a@example.com"],
             body=b"z" * MB + b"\r\n"),
        Case("header_of_2001_fields", ["-t"],
             b"To: a@example.com\n" + b"".join(b"X-F%d: v\n" % i for i in range(2000))
             + b"\nbody\n",
             65, r"^tokenmail: the header has more than 2000 fields \(line 2001\)$",
             dead=b"To: a@example.com\n" + b"".join(b"X-F%d: v\n" % i for i in range(1999))),
        Case("subject_folded_over_180_kb", ["a@example.com"],
             b"Subject: " + b"\n ".join([b"w" * 900] * 200) + b"\n\nbody\n",
             rcpts=["a@example.com"], body=b"body\r\n"),
        Case("to_10000_recipients", ["-t"], TO_10000,
             64, r"^tokenmail: too many recipients \(more than 1000\)$", dead=READ, wire=True),
        Case("to_1000_recipients", ["-t"], TO_1000, wire=True,
             rcpts=[a.decode() for a in addrs(1000)]),
        Case("to_10000_copies_of_one_address", ["-t"],
             b"To: " + fold([b"same@example.com"] * 10000) + b"\n\nbody\n",
             rcpts=["same@example.com"]),
        Case("argv_10000_recipients", many_args, b"Subject: s\n\nbody\n",
             64, r"^tokenmail: too many recipients \(more than 1000\)$", dead=READ, wire=True),
        Case("to_and_bcc_1001_recipients", ["-t"],
             b"To: " + fold(addrs(600)) + b"\nBcc: " + fold(addrs(401, b"b%d@example.net"))
             + b"\n\nbody\n",
             64, r"^tokenmail: too many recipients \(more than 1000\)$", dead=READ),
    ]


def encoding_cases():
    return [
        Case("invalid_utf8_header_and_body_pass_through", ["-t"],
             b"To: a@example.com\nSubject: \xc0\xaf \xed\xa0\x80 \xff\n\nbody \xc3\x28 \xfe\n",
             wire=True, rcpts=["a@example.com"], body=b"body \xc3\x28 \xfe\r\n",
             check=lambda m: eq(field(m, "Subject"), b"\xc0\xaf \xed\xa0\x80 \xff")),
        Case("invalid_utf8_to_display", ["-t"], b"To: \xff <a@example.com>\n\nbody\n",
             65, r"^tokenmail: To: header: invalid address list .*invalid UTF-8 at offset 0$",
             dead=READ),
        Case("invalid_utf8_from_is_replaced", ["-t"],
             b"From: \xff\xfe <app@example.com>\nTo: a@example.com\n\nbody\n",
             0, r"^tokenmail: warning: cannot parse the From: header; it is replaced$",
             rcpts=["a@example.com"], check=from_is(b"app@example.com")),
        Case("invalid_utf8_F", ["-F", arg(b"J\xf6rg"), "a@example.com"], b"x\n",
             rcpts=["a@example.com"],
             check=from_is_utf8(r'^"?J.{1,3}rg"? <app@example\.com>$')),
        Case("invalid_utf8_f", ["-f", arg(b"j\xf6rg@example.com"), "a@example.com"], b"x\n",
             64, r"^tokenmail: -f: invalid address .*invalid UTF-8 at offset 1$"),
        Case("invalid_utf8_rcpt_arg", [arg(b"j\xf6rg@example.com")], b"x\n",
             64, r"^tokenmail: recipient argument 1: invalid address list .*invalid UTF-8"),
        Case("nul_in_header", ["-t"], b"To: a@ex\x00ample.com\n\nbody\n",
             65, r"^tokenmail: message contains a NUL byte \(line 1\)$", dead=b"To: a@ex\n"),
        Case("nul_in_body_keeps_what_came_before", ["-t"],
             b"To: a@example.com\n\nline one\nli\x00ne two\n" + b"more\n" * 1000,
             65, r"^tokenmail: message contains a NUL byte \(line 4\)$",
             dead=b"To: a@example.com\n\nline one\nli\n"),
        Case("nul_first_byte", ["a@example.com"], b"\x00",
             65, r"^tokenmail: message contains a NUL byte \(line 1\)$", dead=b""),
        Case("nul_after_lone_dot_is_not_read", ["a@example.com"],
             b"Subject: s\n\nbody\n.\n\x00\n", rcpts=["a@example.com"], body=b"body\r\n"),
        Case("cr_only_line_ends_with_t", ["-t"], b"To: a@example.com\r\rSubject: s\r\rbody\r",
             65, r"^tokenmail: header line 1 holds a carriage return not followed by a "
             r"line feed$",
             dead=b"To: a@example.com\r\rSubject: s\r\rbody\r\n"),
        Case("body_cr_dot_cr_is_not_end_of_data", ["a@example.com"],
             b"Subject: s\n\nbody\r.\rRSET\r\nmore\n", wire=True, rcpts=["a@example.com"],
             check=lambda m: match(r"RSET.*\r\nmore\r\n$", body(m).decode("latin-1"),
                                   "the whole body, one transaction")),
    ]


def framing_cases():
    return [
        Case("empty_input_t_is_kept_empty", ["-t"], b"",
             64, r"^tokenmail: no recipients$", dead=b""),
        Case("empty_input_with_recipient_on_the_wire", ["a@example.com"], b"",
             wire=True, rcpts=["a@example.com"], body=b""),
        Case("header_only_crlf_no_final_newline", ["-t"], b"To: a@example.com\r\nSubject: x",
             wire=True, rcpts=["a@example.com"], body=b""),
        Case("header_then_blank_line_no_body", ["-t"], b"To: a@example.com\n\n",
             rcpts=["a@example.com"], body=b""),
        Case("only_a_dot_without_i", ["a@example.com"], b".\n", rcpts=["a@example.com"],
             body=b""),
        Case("only_a_dot_with_i", ["-i", "a@example.com"], b".\n", wire=True,
             rcpts=["a@example.com"], body=b".\r\n"),
        Case("only_dots_with_i", ["-i", "a@example.com"], b".\n..\n...\n.\n", wire=True,
             rcpts=["a@example.com"], body=b".\r\n..\r\n...\r\n.\r\n"),
        Case("only_dots_without_i", ["a@example.com"], b"..\n...\n.\nafter\n",
             rcpts=["a@example.com"], body=b"..\r\n...\r\n"),
        Case("only_a_dot_with_t_without_i", ["-t"], b".\n",
             64, r"^tokenmail: no recipients$", dead=b""),
        Case("dot_in_header_ends_message", ["-t"], b"Subject: x\n.\nTo: late@example.com\n",
             64, r"^tokenmail: no recipients$", dead=b"Subject: x\n"),
        Case("dot_crlf_ends_message", ["a@example.com"],
             b"Subject: s\r\n\r\nbody\r\n.\r\nafter\r\n", rcpts=["a@example.com"],
             body=b"body\r\n"),
        Case("dot_crlf_with_i_is_stuffed", ["-i", "a@example.com"], b"a\n.\r\nb\n",
             wire=True, rcpts=["a@example.com"], body=b"a\r\n.\r\nb\r\n"),
        Case("mbox_from_line_dropped", ["-t"],
             b"From MAILER-DAEMON Thu Jan  1 00:00:00 1970\nTo: a@example.com\n\nFrom here\n",
             rcpts=["a@example.com"], body=b"From here\r\n"),
        Case("mbox_from_line_of_5000_octets_dropped", ["-t"],
             b"From " + b"x" * 5000 + b"\nTo: a@example.com\n\nbody\n",
             rcpts=["a@example.com"], body=b"body\r\n"),
        Case("field_name_with_space_makes_all_body", ["-t"],
             b"Bad Header: x\nTo: a@example.com\n\nbody\n",
             64, r"^tokenmail: no recipients$", dead=READ),
        Case("continuation_as_first_line_makes_all_body", ["-t"],
             b" folded start\nTo: a@example.com\n\nbody\n",
             64, r"^tokenmail: no recipients$", dead=READ),
        Case("empty_to_with_t", ["-t"], b"To:\nSubject: x\n\nbody\n",
             64, r"^tokenmail: no recipients$", dead=READ),
        Case("route_address_obsolete_syntax", ["-t"],
             b"To: <@relay.example,@other.example:a@example.com>\n\nbody\n",
             rcpts=["a@example.com"]),
        Case("to_local_part_of_65_octets", ["-t"], b"To: " + b"x" * 65 + b"@example.com\n\nb\n",
             65, r"^tokenmail: To: header: invalid address list .*local part longer than 64",
             dead=READ),
    ]


def command_line_cases():
    return [
        Case("f_empty", ["-f", "", "a@example.com"], b"x\n",
             64, r'^tokenmail: -f: invalid address "": empty address at offset 0$'),
        Case("f_null_sender", ["-f", "<>", "a@example.com"], b"Subject: s\n\nbody\n",
             wire=True, rcpts=["a@example.com"], mail_from="<>"),
        Case("f_local_part_of_300_octets", ["-f", "a" * 300 + "@example.com", "a@example.com"],
             b"x\n", 64, r"^tokenmail: -f: invalid address .*local part longer than 64"),
        Case("f_domain_of_300_octets", ["-f", "a@" + "d" * 300 + ".com", "a@example.com"],
             b"x\n", 64, r"^tokenmail: -f: invalid address "),
        Case("f_missing_argument", ["-f"], b"x\n",
             64, r"^tokenmail: option -f needs an argument$"),
        Case("F_missing_argument", ["-F"], b"x\n",
             64, r"^tokenmail: option -F needs an argument$"),
        Case("C_missing_argument", ["-C"], b"x\n",
             64, r"^tokenmail: option -C needs an argument$"),
        Case("cluster_missing_argument", ["-tif"], b"x\n",
             64, r"^tokenmail: option -f needs an argument$"),
        Case("option_after_recipient_is_a_recipient", ["a@example.com", "-f"], b"x\n",
             67, r"^tokenmail: no alias for local recipient '-f'$", dead=READ),
        Case("dash_recipient_after_double_dash", ["--", "-dash@example.com"],
             b"Subject: s\n\nbody\n", wire=True, rcpts=["-dash@example.com"]),
        Case("dash_recipient_without_double_dash", ["-dash@example.com"], b"x\n",
             64, r"^tokenmail: no recipients given$"),
        Case("lone_dash_argument", ["-"], b"x\n",
             67, r"^tokenmail: no alias for local recipient '-'$", dead=READ),
        Case("unknown_option", ["-Q", "a@example.com"], b"x\n",
             0, r"^tokenmail: warning: ignoring unknown option -Q$", rcpts=["a@example.com"]),
        Case("unknown_long_option", ["--bogus=1", "a@example.com"], b"x\n",
             0, r"^tokenmail: warning: ignoring unknown option --bogus=1$",
             rcpts=["a@example.com"]),
        Case("N_unknown_word", ["-N", "sometimes", "a@example.com"], b"x\n",
             64, r'^tokenmail: -N sometimes: expected "never" or a comma list'),
        Case("N_never_with_others", ["-N", "never,failure", "a@example.com"], b"x\n",
             64, r'^tokenmail: -N never,failure: expected "never" or a comma list'),
        Case("R_unknown", ["-R", "all", "a@example.com"], b"x\n",
             64, r'^tokenmail: -R all: expected "full" or "hdrs"$'),
        Case("b_unknown_mode", ["-bz", "a@example.com"], b"x\n",
             64, r"^tokenmail: -bz: unsupported mode$"),
        Case("config_that_does_not_exist", ["a@example.com"], b"x\n",
             78, r"^tokenmail: .*no-such-config\.yaml", config=missing_config),
        Case("unknown_local_recipient_at_localhost", ["nosuch@localhost"], b"x\n",
             67, r"^tokenmail: no alias for local recipient 'nosuch'$", dead=READ),
    ]


CASES = (header_injection_cases() + bcc_cases() + nesting_cases() + size_cases() +
         encoding_cases() + framing_cases() + command_line_cases())


# ------------------------------------------------------------ the runner

def sendmail(c, case, dry):
    """Run the case (with --dry-run or not); the result and what the run
    changed: new log lines, the dead letter, the peers' new connections,
    messages and token requests."""
    env = c.env
    config = case.config(c) if case.config else env.ws.config
    argv = ["sendmail" if dry else "/usr/sbin/sendmail", "-C", config]
    argv += (["--dry-run"] if dry else []) + case.argv
    if os.path.exists(env.dead_letter):
        os.unlink(env.dead_letter)
    log_before = len(env.log_text())
    conns_before = set(env.smtp.connections())
    msgs_before = len(env.smtp.messages())
    tokens_before = len(env.token_requests())
    run_ = types.SimpleNamespace()
    run_.r = run(argv, case.stdin, home=env.dir)
    run_.log = env.log_text()[log_before:].splitlines()
    run_.dead = dead_letter_messages(env.dead_letter)
    run_.dead_exists = os.path.exists(env.dead_letter)
    run_.conns = sorted(set(env.smtp.connections()) - conns_before)
    run_.msgs = env.smtp.messages()[msgs_before:]
    run_.token_requests = len(env.token_requests()) - tokens_before
    return run_


def check_stderr_form(r):
    """No crash, and stderr made of report lines only: "tokenmail: ..." or
    two-space continuation lines, no CR, nothing after the report."""
    assert r.rc >= 0, "killed by signal %d: %r" % (-r.rc, r)
    assert "\r" not in r.err, "raw CR on stderr: %r" % r.err
    for line in r.err.splitlines():
        assert line.startswith("tokenmail: ") or line.startswith("  "), \
            "stray stderr line %r in %r" % (line, r.err[:2000])


def first_line(case, r):
    if case.err == "":
        eq(r.err, "", "stderr")
        return
    lines = r.err.splitlines()
    assert lines, "stderr is empty, expected %r" % case.err
    assert re.search(case.err, lines[0]), \
        "stderr's first line (as printed, not repr):\n  got:      %s\n  expected: /%s/" % (
            lines[0][:1000], case.err)


def check_message(case, msg):
    """What any transmitted message must be, dry run or wire."""
    head, _ = split_message(msg)
    assert not re.search(rb"\r(?!\n)", head), "bare CR in the header: %r" % head[:800]
    assert not re.search(rb"(?<!\r)\n", head), "bare LF in the header: %r" % head[:800]
    for line in head.split(b"\r\n"):
        assert len(line) <= 998, "header line of %d octets" % len(line)
    names = [n.lower() for n, _ in header_fields(msg)]
    for n in ("bcc", "resent-bcc"):
        assert n not in names, "%s field transmitted: %r" % (n, head[:800])
    for n in ("from", "date", "message-id"):
        eq(names.count(n), 1, "%s fields" % n)
    given = input_field_names(case.stdin)
    extra = sorted(set(names) - given - ADDED)
    eq(extra, [], "fields that were not in the input")
    if case.body is not None:
        eq(body(msg), case.body, "body")
    if case.check:
        case.check(msg)


def input_field_names(stdin):
    """Field names the input's header might hold (a generous reading)."""
    names = set()
    for line in re.split(rb"\r?\n|\r", stdin.partition(b"\n\n")[0]):
        m = re.match(rb"^([!-9;-~]+)[ \t]*:", line)
        if m:
            names.add(m.group(1).decode("latin-1").lower())
    return names


def accepted(c, case):
    d_run = sendmail(c, case, dry=True)
    r = d_run.r
    check_stderr_form(r)
    eq(r.rc, 0, "dry run exit code: %r" % r)
    first_line(case, r)
    assert all(l.startswith("tokenmail: warning: ") for l in r.err.splitlines()), r.err
    d = DryRun(r.out)
    eq(d.mail_from, case.mail_from, "MAIL FROM")
    if case.rcpts is not None:
        eq(d.rcpts, ["<%s>" % a for a in case.rcpts], "RCPT TO")
    check_message(case, d.message)
    eq((d_run.log, d_run.dead_exists, d_run.conns), ([], False, []),
       "--dry-run logs, keeps and sends nothing")
    if not case.wire:
        return
    w = sendmail(c, case, dry=False)
    check_stderr_form(w.r)
    eq((w.r.rc, w.r.err, w.r.out), (0, r.err, b""), "real send: exit, stderr, stdout")
    eq(len(w.msgs), 1, "messages the peer accepted")
    m = w.msgs[0]
    data = c.env.smtp.data(m)
    eq("<%s>" % m["mail_from"], case.mail_from, "MAIL FROM on the wire")
    eq([x["addr"] for x in m["rcpts"]], case.rcpts or [], "RCPT TO on the wire")
    eq(m["bare_lf"], False, "bare LF on the wire")
    eq(masked_header(data), masked_header(d.message), "header as --dry-run shows it")
    eq(body(data), body(d.message), "body as --dry-run shows it")
    check_message(case, data)
    if case.peer_check:
        case.peer_check(m)
    check_wire_commands(c, w.conns, expect_mail=1)
    eq(w.dead_exists, False, "dead letter after a delivery")
    eq(len(w.log), 1, "log lines: %r" % w.log)
    match(r"\bresult=sent\b.*\bexit=0$", w.log[0], "log line")


PARAMS = r"( [A-Z0-9]+(=[!-~]+)?)*"
COMMAND_RE = re.compile(r"^(EHLO [!-~]+|STARTTLS|AUTH XOAUTH2|<redacted \d+ octets>|"
                        r"MAIL FROM:<[^<>\r\n\x00]*>" + PARAMS + "|"
                        r"RCPT TO:<[^<>\r\n\x00]*>" + PARAMS + r"|DATA|QUIT|RSET)$")


def check_wire_commands(c, conns, expect_mail):
    assert conns, "no connection to the SMTP peer"
    lines = [l for conn in conns for l in c.env.smtp.client_lines(conn)]
    for line in lines:
        assert COMMAND_RE.match(line), "unexpected command line %r" % line
    eq(sum(1 for l in lines if l.startswith("MAIL FROM:")), expect_mail, "MAIL FROM commands")


def refused(c, case):
    d_run = sendmail(c, case, dry=True)
    r = d_run.r
    check_stderr_form(r)
    eq(r.rc, case.rc, "dry run exit code: %r" % r)
    first_line(case, r)
    eq(r.out, b"", "stdout")
    assert not any(re.match(KEPT_RE, l) for l in r.err.splitlines()), \
        "--dry-run claims to keep the message: %r" % r.err
    eq((d_run.log, d_run.dead_exists, d_run.conns), ([], False, []),
       "--dry-run logs, keeps and sends nothing")

    w = sendmail(c, case, dry=False)
    check_stderr_form(w.r)
    eq(w.r.rc, case.rc, "real send exit code: %r" % w.r)
    eq(w.r.out, b"", "real send stdout")
    kept = "  (the message is kept in %s)\n" % c.env.dead_letter
    if case.dead is None:
        eq(w.r.err, r.err, "real send stderr = dry run stderr")
        eq(w.dead_exists, False, "dead letter for a refusal before stdin was read")
        eq(w.log, [], "log line for a refusal before stdin was read")
    else:
        eq(w.r.err, r.err + kept, "real send stderr = dry run stderr + where it is kept")
        eq(len(w.dead), 1, "messages in the dead letter")
        match(MBOX_FROM_RE, w.dead[0][0], "mbox From line")
        kept_msg = w.dead[0][1]
        if case.dead == PREFIX:
            whole = lf(case.stdin)
            assert kept_msg and whole.startswith(kept_msg) and kept_msg.endswith(b"\n"), \
                "dead letter is not whole lines from the input's start: %r" % kept_msg[:300]
        else:
            eq(kept_msg, lf(case.stdin) if case.dead == READ else case.dead,
               "the message as read, kept")
        eq(len(w.log), 1, "log lines: %r" % w.log)
        match(r"\bresult=failed\b.*\bexit=%d$" % case.rc, w.log[0], "log line")
    eq((w.conns, w.msgs, w.token_requests), ([], [], 0),
       "connections, messages, token requests: refused before any network I/O")


def run_case(case):
    c = campaign()
    c.tried += 1
    try:
        (accepted if case.rc == 0 else refused)(c, case)
        if case.check_after:
            case.check_after(c)
    except AssertionError as e:
        if case.why:
            raise AssertionError("%s\n  expected because: %s" % (e, case.why)) from None
        raise
    c.handled += 1


def register(case):
    def fn():
        run_case(case)
    fn.__name__ = case.name
    fn.__module__ = __name__
    return test(fn)


for _case in CASES:
    register(_case)


@test
def campaign_covers_the_required_inputs():
    names = [c.name for c in CASES]
    eq(len(names), len(set(names)), "case names are unique")
    assert len(CASES) >= 60, "only %d cases" % len(CASES)
    wire = [c for c in CASES if c.wire]
    assert len(wire) >= 10, "only %d cases go to the SMTP peer" % len(wire)
    for wanted in ("f_crlf_bcc_injection", "F_lf_bcc_injection", "F_crlf_bcc_injection",
                   "alias_yaml_crlf_bcc", "aliases_file_cr_bcc", "aliases_file_crlf_line_ends",
                   "from_encoded_crlf_rewritten", "to_10000_recipients", "to_1000_recipients"):
        assert wanted in [w.name for w in wire], "%s is not a wire case" % wanted
    c = campaign()
    print("# bad inputs tried: %d, handled: %d" % (c.tried, c.handled))
    sys.stdout.flush()


if __name__ == "__main__":
    try:
        status = run_all()
    finally:
        if _campaign is not None:
            _campaign.close()
    raise SystemExit(status)
