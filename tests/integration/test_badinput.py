"""Bad input: a defined exit code and a clear line on stderr, never a crash."""
import subprocess
import time

from tmtest import TOKENMAIL, DATE_RE, DryRun, Workspace, eq, match, run_all, test


def dry(args, stdin):
    with Workspace() as ws:
        return ws.run(["--dry-run"] + args, stdin)


@test
def empty_input_with_recipient_sends_headers_only():
    # Postfix's sendmail delivers an empty message with the headers it adds.
    r = dry(["a@example.com"], b"")
    eq(r.rc, 0, repr(r))
    eq(r.err, "")
    d = DryRun(r.out)
    eq(d.body, b"")
    eq([line.split(b":")[0] for line in d.header_lines], [b"From", b"Date", b"Message-ID"])
    match(DATE_RE, d.header_value("Date"))


@test
def empty_input_with_t_has_no_recipients():
    r = dry(["-t"], b"")
    eq(r.rc, 64, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: no recipients\n"
          r"  hint: the message has no To:, Cc: or Bcc: address and none was given as an argument\n"
          r"  \(config .*/config.yaml\)\n$", r.err)


@test
def input_without_header_is_all_body():
    body = b"just a line of text\nand another: with a colon\n"
    r = dry(["a@example.com"], body)
    eq(r.rc, 0, repr(r))
    eq(r.err, "")
    d = DryRun(r.out)
    eq(d.body, body.replace(b"\n", b"\r\n"))
    eq(len(d.header_values("From")), 1)


@test
def header_without_blank_line_then_eof():
    r = dry(["-t"], b"To: a@example.com\nSubject: no body")
    eq(r.rc, 0, repr(r))
    eq(r.err, "")
    d = DryRun(r.out)
    eq(d.rcpts, ["<a@example.com>"])
    eq(d.header_value("Subject"), "no body")
    eq(d.body, b"")


@test
def header_followed_by_text_line():
    r = dry(["-t"], b"To: a@example.com\nthis is not a header\nmore\n")
    eq(r.rc, 0, repr(r))
    d = DryRun(r.out)
    eq(d.body, b"this is not a header\r\nmore\r\n", "blank line supplied, text kept as body")


@test
def writer_after_lone_dot_gets_no_sigpipe():
    # sudo (no -i) writes its whole report; text after a lone dot is dropped,
    # but it is read, so the writer is not killed by SIGPIPE.
    with Workspace() as ws:
        argv = ["sendmail", "-C", ws.config, "--dry-run", "a@example.com"]
        p = subprocess.Popen(argv, executable=TOKENMAIL, stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env={"PATH": "/usr/bin:/bin", "HOME": ws.dir})
        p.stdin.write(b"Subject: x\n\nbefore\n.\n")
        p.stdin.flush()
        time.sleep(0.2)
        p.stdin.write(b"after the dot\n" * 100000)
        p.stdin.close()
        out = p.stdout.read()
        err = p.stderr.read()
        eq(p.wait(timeout=30), 0, err)
    eq(DryRun(out).body, b"before\r\n")
    eq(err, b"")


@test
def nul_byte_is_refused():
    r = dry(["-t"], b"To: a@example.com\n\nline one\nli\x00ne two\n")
    eq(r.rc, 65, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: message contains a NUL byte \(line 4\)$", r.err)


@test
def header_line_of_10000_octets_is_refused():
    r = dry(["-t"], b"To: a@example.com\nX-Long: " + b"x" * 10000 + b"\n\nbody\n")
    eq(r.rc, 65, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: header line 2 is 10008 octets long; RFC 5322 allows 998", r.err)


@test
def no_recipients_at_all_is_usage():
    with Workspace() as ws:
        r = ws.run(["-i"], b"Subject: x\n\nbody\n")
    eq(r.rc, 64, repr(r))
    eq(r.out, b"")
    eq(r.err, "tokenmail: no recipients given\n"
              "  hint: name them as arguments, or use -t to read them from To:, Cc: and Bcc:\n")


@test
def t_without_recipient_headers_is_usage():
    r = dry(["-t"], b"To: undisclosed-recipients:;\nSubject: x\n\nbody\n")
    eq(r.rc, 64, repr(r))
    match(r"^tokenmail: no recipients\n  hint: the message has no To:, Cc: or Bcc: address", r.err)


@test
def invalid_f_is_refused():
    for bad in ("a@b@c", "<unterminated@example.com", "a@"):
        r = dry(["-f", bad, "a@example.com"], b"x\n")
        eq(r.rc, 64, "%s: %r" % (bad, r))
        eq(r.out, b"")
        match(r"^tokenmail: -f: invalid address", r.err, bad)


@test
def f_with_crlf_cannot_inject():
    r = dry(["-f", "a@example.com\r\nRCPT TO:<victim@example.net>", "b@example.com"], b"x\n")
    eq(r.rc, 64, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: -f: invalid address", r.err)
    assert "\r" not in r.err and r.err.count("\n") <= 3, repr(r.err)


@test
def recipient_argument_with_crlf_is_refused():
    r = dry(["a@example.com\nBcc: victim@example.net"], b"x\n")
    eq(r.rc, 64, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: recipient argument 1: invalid address", r.err)


@test
def header_recipient_with_crlf_in_folded_value_is_fine():
    r = dry(["-t"], b"To: a@example.com,\n b@example.com\n\nx\n")
    eq(r.rc, 0, repr(r))
    eq(DryRun(r.out).rcpts, ["<a@example.com>", "<b@example.com>"])


@test
def unparsable_to_header_is_data_error():
    r = dry(["-t"], b"To: <broken@example.com\n\nx\n")
    eq(r.rc, 65, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: To: header: invalid address", r.err)


@test
def unresolvable_local_recipient():
    r = dry(["nosuchuser"], b"x\n")
    eq(r.rc, 67, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: no alias for local recipient 'nosuchuser'", r.err)


@test
def no_matching_account():
    config = """\
accounts:
  only:
    senders: [only@example.com]
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
    client_secret_file: {dir}/app.secret
"""
    with Workspace(config) as ws:
        r = ws.run(["--dry-run", "-f", "stranger@example.org", "a@example.com"], b"x\n")
    eq(r.rc, 77, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: no account may send as 'stranger@example.org'\n"
          r"  hint: add it to the senders: of an account in .*config.yaml, or set default_account\n", r.err)


@test
def non_utf8_address_is_refused():
    r = dry(["-t"], b"To: J\xf6rg <j\xf6rg@example.com>\n\nx\n")
    eq(r.rc, 65, repr(r))
    match(r"^tokenmail: To: header: invalid address", r.err)


@test
def non_utf8_text_header_passes_through():
    r = dry(["-t"], b"To: a@example.com\nSubject: caf\xe9\n\nx\n")
    eq(r.rc, 0, repr(r))
    assert b"Subject: caf\xe9\r\n" in DryRun(r.out).header + b"\r\n"


if __name__ == "__main__":
    raise SystemExit(run_all())
