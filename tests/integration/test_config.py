"""Configuration errors: exit 78 and a message naming file, line, column, key."""
import os

from tmtest import DEFAULT_CONFIG, DryRun, Workspace, eq, match, run_all, test

MSG = b"Subject: t\n\nbody\n"


def send(ws, args=("a@example.com",)):
    return ws.run(["--dry-run"] + list(args), MSG)


@test
def malformed_yaml_names_line_and_column():
    with Workspace("accounts:\n  app:\n    from: [unclosed\n    client_id: x\n") as ws:
        r = send(ws)
    eq(r.rc, 78, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: %s:\d+:\d+: YAML syntax error: " % os.path.join(ws.dir, "config.yaml"), r.err)


@test
def unknown_key_is_an_error_with_suggestion():
    config = DEFAULT_CONFIG.replace("smtp: {{host: smtp.office365.com, port: 587}}",
                                    "smtp: {{host: smtp.office365.com, prot: 587}}")
    with Workspace(config) as ws:
        r = send(ws)
    eq(r.rc, 78, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: %s:17:\d+: unknown key 'accounts\.app\.smtp\.prot' \(did you mean 'port'\?\)"
          % os.path.join(ws.dir, "config.yaml"), r.err)


@test
def all_errors_are_reported():
    config = DEFAULT_CONFIG.replace("port: 587", "port: 70000").replace(
        "method: graph", "method: carrier-pigeon")
    with Workspace(config) as ws:
        r = send(ws)
    eq(r.rc, 78, repr(r))
    match(r"^tokenmail: .*config\.yaml:17:\d+: key 'accounts\.app\.smtp\.port': must be 1-65535", r.err)
    match(r"^  .*config\.yaml:21:\d+: key 'accounts\.web\.method'", r.err)


@test
def world_readable_secret_file_is_refused():
    with Workspace(secret_mode=0o644) as ws:
        r = send(ws)
        path = os.path.join(ws.dir, "app.secret")
    eq(r.rc, 78, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: .*%s.*0644" % path, r.err)
    match(r"^  hint: chmod 600 %s" % path, r.err)


@test
def inline_secret_in_readable_config_is_refused():
    config = DEFAULT_CONFIG.replace("client_secret_file: {dir}/app.secret\n    smtp",
                                    "client_secret: hunter2\n    smtp", 1)
    with Workspace(config, config_mode=0o644) as ws:
        r = send(ws)
    eq(r.rc, 78, repr(r))
    assert "hunter2" not in r.err, "the secret must never be printed"
    match(r"^tokenmail: .*config\.yaml.*0644", r.err)
    with Workspace(config, config_mode=0o600) as ws:
        r = send(ws)
    eq(r.rc, 0, "0600 is fine: %r" % r)
    eq(DryRun(r.out).account, "app")


@test
def missing_config_file():
    with Workspace() as ws:
        r = ws.run(["--dry-run", "-C", os.path.join(ws.dir, "nope.yaml"), "a@example.com"],
                   MSG, config=False)
    eq(r.rc, 78, repr(r))
    eq(r.out, b"")
    match(r"^tokenmail: .*nope\.yaml", r.err)


@test
def tls_none_to_a_remote_host_is_refused():
    config = DEFAULT_CONFIG.replace("smtp: {{host: smtp.office365.com, port: 587}}",
                                    "smtp: {{host: smtp.office365.com, port: 25, tls: none}}")
    with Workspace(config) as ws:
        r = send(ws)
    eq(r.rc, 78, repr(r))
    match(r"^tokenmail: .*config\.yaml:17:\d+: .*tls.*loopback", r.err)


@test
def aliases_file_is_used():
    config = DEFAULT_CONFIG.replace(
        "aliases:\n  root: ops@example.com\n  postmaster: root\n  alice: alice@example.com\n",
        "aliases: {dir}/aliases\n")
    with Workspace(config) as ws:
        ws.write("aliases", "# local aliases\npostmaster: root\nroot: admin,\n  sec@example.com\n"
                 "admin: ops@example.com\n")
        r = ws.run(["--dry-run", "postmaster"], MSG)
    eq(r.rc, 0, repr(r))
    eq(r.err, "")
    eq(DryRun(r.out).rcpts, ["<ops@example.com>", "<sec@example.com>"])


if __name__ == "__main__":
    raise SystemExit(run_all())
