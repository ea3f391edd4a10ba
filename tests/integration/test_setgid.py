"""Setgid mode (SPEC 9): tokenmail installed setgid to a group, run by a
user who is not root.

A second build, configured here with --enable-sendmail-links,
--with-setgid-group=mail and a system configuration that points at the
local peers, is installed into a DESTDIR. A user made for the test (its
home in the workspace) then sends through it. The secret and the token
cache belong to root and the group; the user cannot read them, yet sends
as the account that allows it, and only that one. The main process drops
the group before it reads the message: only the token broker, its child,
keeps it. Needs root (chgrp, useradd, setpriv), as CI is.
"""
import grp
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import time

from tmtest import SRCDIR, eq, match, run_all, stop_process, test, yaml_value
from test_smtp import Env, SECRET

GROUP = "mail"
USER = "tm-setgid-test"
MAKE = os.environ.get("MAKE") or "make"
BUILD_SECONDS = 900
MSG = b"Subject: from a user\n\nsent by a user who is not root\n"


def clean_make_env():
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


def checked(argv, **kw):
    r = subprocess.run(argv, capture_output=True, timeout=BUILD_SECONDS,
                       stdin=subprocess.DEVNULL, **kw)
    assert r.returncode == 0, "%s: %r" % (argv[0], r.stderr[-3000:])
    return r


class Setup:
    """The setgid install, its system config, the peers and the test user."""

    def __init__(self):
        assert os.geteuid() == 0, "setgid tests need root (CI runs as root)"
        self.build = tempfile.mkdtemp(prefix="tm-setgid-build-")
        self.env = None
        self.user_made = False
        try:
            # One recipient whose RCPT stalls for 3 s (then the connection
            # drops and the retry delivers): a send that can be watched.
            self.env = Env(smtp={"stall_seconds": 3, "faults": [
                {"stage": "RCPT", "action": "stall", "rcpt": "stall@example.com",
                 "times": 1}]})
            self.system_config = os.path.join(self.env.dir, "system.yaml")
            checked([os.path.join(SRCDIR, "configure"), "-q", "--prefix=/usr",
                     "--enable-sendmail-links", "--with-setgid-group=" + GROUP,
                     "--with-system-config=" + self.system_config], cwd=self.build)
            self.dest = os.path.join(self.build, "dest")
            checked([MAKE, "-C", self.build, "-j2", "install", "DESTDIR=" + self.dest],
                    env=clean_make_env())
            self.binary = os.path.join(self.dest, "usr/sbin/tokenmail")
            self.home = os.path.join(self.env.dir, "home")
            self.make_user()
            self.write_system_config()
            self.share_with_group()
        except BaseException:
            self.close()
            raise

    def make_user(self):
        subprocess.run(["userdel", USER], capture_output=True)
        checked(["useradd", "--no-create-home", "--home-dir", self.home,
                 "--shell", "/usr/sbin/nologin", "--user-group", USER])
        self.user_made = True
        self.uid = pwd.getpwnam(USER).pw_uid
        self.gid = pwd.getpwnam(USER).pw_gid
        os.makedirs(self.home)
        os.chown(self.home, self.uid, self.gid)
        os.chmod(self.home, 0o700)

    def write_system_config(self):
        """The Env's config, with the dead letter in the user's home and a
        second account that only root may use."""
        with open(self.env.ws.config) as f:
            text = f.read()
        text = re.sub(r"(?m)^dead_letter: .*$", "dead_letter: ~/dead.letter", text)
        app = text[text.index("  app:\n"):]
        other = app.replace("  app:\n", "  other:\n", 1)
        other = re.sub(r"(?m)^    senders: .*$", "    senders: [web@example.com]\n"
                       "    allowed_users: [root]", other)
        other = re.sub(r"(?m)^    from: .*$", "    from: web@example.com", other)
        # client_secret_command: a program only root can change, and one
        # the user wrote (refused: it would run with the group's right).
        self.good_command = os.path.join(self.env.dir, "secret-command")
        self.bad_command = os.path.join(self.home, "secret-command")
        for path in (self.good_command, self.bad_command):
            with open(path, "w") as f:
                f.write("#!/bin/sh\nprintf '%%s\\n' '%s'\n" % SECRET)
        commands = ""
        for name, path in (("cmdgood", self.good_command), ("cmdbad", self.bad_command)):
            block = re.sub(r"(?m)^    senders: .*$", "    senders: [%s@example.com]" % name, app)
            block = block.replace("  app:\n", "  %s:\n" % name, 1)
            block = re.sub(r"(?m)^    client_secret_file: .*$",
                           "    client_secret_command: %s" % yaml_value(path), block)
            commands += block
        with open(self.system_config, "w") as f:
            f.write(text.rstrip("\n") + "\n" + other + commands)

    def share_with_group(self):
        """As an admin sets up setgid mode: secret root:GROUP 0640, cache
        root:GROUP 2770, log root:GROUP 0660; the rest open to read."""
        gid = grp.getgrnam(GROUP).gr_gid
        os.chmod(self.env.dir, 0o755)
        for dirpath, dirs, files in os.walk(self.env.dir):
            if dirpath.startswith(self.home):
                continue
            for d in dirs:
                if os.path.join(dirpath, d) != self.home:
                    os.chmod(os.path.join(dirpath, d), 0o755)
            for f in files:
                os.chmod(os.path.join(dirpath, f), 0o644)
        for path, mode in ((self.env.secret_file, 0o640), (self.env.log_file, 0o660)):
            with open(path, "a"):
                pass
            os.chown(path, 0, gid)
            os.chmod(path, mode)
        # /bin/sh drops the group of a setgid caller, so the command runs
        # with the user's rights alone: it must be executable by the user.
        os.chown(self.good_command, 0, 0)
        os.chmod(self.good_command, 0o755)
        os.chown(self.bad_command, self.uid, self.gid)
        os.chmod(self.bad_command, 0o700)
        self.cache = os.path.join(self.env.dir, "cache")
        os.makedirs(self.cache, exist_ok=True)
        os.chown(self.cache, 0, gid)
        os.chmod(self.cache, 0o2770)

    def argv(self, args):
        return ["setpriv", "--reuid=%d" % self.uid, "--regid=%d" % self.gid,
                "--init-groups", self.binary] + list(args)

    def environ(self, extra=None):
        env = {"PATH": "/usr/bin:/bin", "HOME": self.home, "LANG": "C"}
        env.update(extra or {})
        return env

    def run(self, args, stdin=MSG, extra_env=None, cwd=None):
        r = subprocess.run(self.argv(args), input=stdin, capture_output=True, timeout=60,
                           env=self.environ(extra_env), cwd=cwd or self.home)
        return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")

    def spawn(self, args):
        return subprocess.Popen(self.argv(args), stdin=subprocess.PIPE,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                env=self.environ(), cwd=self.home)

    def dead_letter(self):
        path = os.path.join(self.home, "dead.letter")
        if not os.path.exists(path):
            return b""
        with open(path, "rb") as f:
            return f.read()

    def close(self):
        if self.env is not None:
            self.env.close()
        if self.user_made:
            subprocess.run(["userdel", USER], capture_output=True)
        shutil.rmtree(self.build, ignore_errors=True)


_setup = None


def setup():
    global _setup
    if _setup is None:
        _setup = Setup()
    return _setup


def arrived(s):
    return [(m["mail_from"], [r["addr"] if isinstance(r, dict) else r for r in m["rcpts"]])
            for m in s.env.smtp.messages()]


def tree(root):
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(path))
            else:
                out[rel] = (stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name)
    return out


@test
def install_tree_has_the_setgid_binary_and_the_links():
    s = setup()
    got = tree(s.dest)
    eq(got["usr/sbin/tokenmail"], (0o2755, GROUP))
    for link in ("usr/sbin/sendmail", "usr/lib/sendmail", "usr/bin/mailq", "usr/bin/newaliases"):
        eq(got.get(link), ("link", "/usr/sbin/tokenmail"), link)


@test
def a_user_sends_with_a_secret_it_cannot_read():
    s = setup()
    for path in (s.env.secret_file, s.cache):
        r = subprocess.run(["setpriv", "--reuid=%d" % s.uid, "--regid=%d" % s.gid,
                            "--init-groups", "ls", "-l", path], capture_output=True)
        r2 = subprocess.run(["setpriv", "--reuid=%d" % s.uid, "--regid=%d" % s.gid,
                             "--init-groups", "cat", path], capture_output=True)
        assert r2.returncode != 0 and b"Permission denied" in r2.stderr, (path, r2)
    before = len(s.env.smtp.messages())
    rc, out, err = s.run(["-i", "ops@example.com"])
    eq((rc, out, err), (0, b"", ""))
    eq(arrived(s)[before:], [("app@example.com", ["ops@example.com"])])
    # The log file is the group's: the broker wrote the line for the user.
    match(r"(?m) tokenmail\[\d+\]: account=app method=smtp from=<app@example\.com> "
          r"to=<ops@example\.com> .* result=sent ", s.env.log_text())
    files = os.listdir(s.cache)
    assert files, "no token cached"
    for name in files:
        st = os.stat(os.path.join(s.cache, name))
        eq(st.st_gid, grp.getgrnam(GROUP).gr_gid, name)
        eq(stat.S_IMODE(st.st_mode) & 0o007, 0, "%s is closed to others" % name)


@test
def a_user_cannot_send_as_an_account_it_is_not_allowed():
    s = setup()
    before = len(s.env.smtp.messages())
    tokens_before = len(s.env.token_requests())
    rc, out, err = s.run(["-i", "-f", "web@example.com", "ops@example.com"])
    eq(rc, 77, err)
    match(r"^tokenmail: user '%s' may not send through account 'other'" % USER, err)
    eq(len(s.env.smtp.messages()), before)
    eq(len(s.env.token_requests()), tokens_before, "no token for a refused account")
    assert b"sent by a user who is not root" in s.dead_letter(), "kept in the user's home"


@test
def the_main_process_runs_without_the_group_and_the_broker_keeps_it():
    s = setup()
    # A stalled delivery: the SMTP peer never answers DATA within the test.
    before = len(s.env.smtp.messages())
    p = s.spawn(["-i", "-v", "stall@example.com"])
    try:
        p.stdin.write(MSG)
        p.stdin.close()
        mail_gid = grp.getgrnam(GROUP).gr_gid
        broker = None
        deadline = time.monotonic() + 20
        while broker is None and time.monotonic() < deadline:
            children = open("/proc/%d/task/%d/children" % (p.pid, p.pid)).read().split()
            broker = int(children[0]) if children else None
            time.sleep(0.02)
        assert broker is not None, "no broker child"
        main_gids = gids(p.pid)
        eq(main_gids, [s.gid] * 4, "the main process's real, effective, saved, fs gid")
        eq(gids(broker)[1], mail_gid, "the broker's effective gid")
    finally:
        rc = p.wait(60)
        err = p.stderr.read().decode("utf-8", "replace")
        stop_process(p)
    eq(rc, 0, err)
    eq(arrived(s)[before:], [("app@example.com", ["stall@example.com"])])
    assert SECRET not in err, "the secret in -v output"
    for token in s.env.issued():
        assert token not in err, "a token in -v output"
    match(r"(?m)^tokenmail: .*AUTH XOAUTH2", err)


def gids(pid):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("Gid:"):
                return [int(x) for x in line.split()[1:5]]
    raise AssertionError("no Gid line for %d" % pid)


@test
def a_user_cannot_choose_files_or_get_a_token():
    s = setup()
    before = len(s.env.smtp.messages())
    for args, what in ((["-C", s.env.ws.config, "ops@example.com"], "-C"),
                       (["-X", s.env.log_file, "ops@example.com"], "-X")):
        rc, out, err = s.run(args)
        eq(rc, 77, err)
        match(r"^tokenmail: %s is for root only: tokenmail runs setgid for other users\n"
              r"  hint: the system configuration %s applies to every user\n$"
              % (what, s.system_config), err)
    for args in (["token", "app"], ["authorize", "app"]):
        rc, out, err = s.run(args, stdin=b"")
        eq((rc, out), (77, b""), err)
        match(r"^tokenmail: tokenmail %s is for root only" % args[0], err)
    # $XDG_CONFIG_HOME is not looked at: the system configuration applies.
    xdg = os.path.join(s.home, "xdg")
    os.makedirs(os.path.join(xdg, "tokenmail"), exist_ok=True)
    with open(os.path.join(xdg, "tokenmail", "config.yaml"), "w") as f:
        f.write("not: [valid\n")
    rc, out, err = s.run(["--dry-run", "ops@example.com"], extra_env={"XDG_CONFIG_HOME": xdg})
    eq(rc, 0, err)
    match(r"(?m)^account: app \(%s\)$" % re.escape(s.system_config), out.decode())
    eq(len(s.env.smtp.messages()), before, "nothing was sent")


@test
def a_symlinked_dead_letter_does_not_reach_the_cache():
    s = setup()
    dead = os.path.join(s.home, "dead.letter")
    target = os.path.join(s.cache, os.listdir(s.cache)[0])
    with open(target, "rb") as f:
        cache_before = f.read()
    if os.path.exists(dead):
        os.unlink(dead)
    os.symlink(target, dead)
    try:
        rc, out, err = s.run(["-i", "-f", "web@example.com", "ops@example.com"])
        eq(rc, 73, err)
        match(r"(?m)^tokenmail: the message could not be kept either: dead letter %s is not "
              r"a regular file of yours$" % re.escape(dead), err)
        with open(target, "rb") as f:
            eq(f.read(), cache_before, "the cache file is unchanged")
    finally:
        os.unlink(dead)


@test
def home_is_the_password_files_not_the_environments():
    s = setup()
    elsewhere = tempfile.mkdtemp(prefix="tm-home-")
    try:
        os.chmod(elsewhere, 0o777)
        rc, out, err = s.run(["-i", "-f", "web@example.com", "ops@example.com"],
                             extra_env={"HOME": elsewhere})
        eq(rc, 77, err)
        eq(os.listdir(elsewhere), [], "~ in the system config is the user's own home")
        assert b"sent by a user" in s.dead_letter()
    finally:
        shutil.rmtree(elsewhere, ignore_errors=True)


@test
def a_secret_command_runs_only_when_only_root_can_change_it():
    s = setup()
    before = len(s.env.smtp.messages())
    rc, out, err = s.run(["-i", "-f", "cmdgood@example.com", "ops@example.com"])
    eq((rc, err), (0, ""))
    eq(arrived(s)[before:], [("cmdgood@example.com", ["ops@example.com"])])
    rc, out, err = s.run(["-i", "-f", "cmdbad@example.com", "ops@example.com"])
    eq(rc, 78, err)
    match(r"^tokenmail: .*client_secret_command's program %s must be owned by root and "
          r"writable by no one else when tokenmail runs setgid" % re.escape(s.bad_command), err)
    eq(len(s.env.smtp.messages()), before + 1, "nothing sent for cmdbad")


def teardown():
    if _setup is not None:
        _setup.close()


if __name__ == "__main__":
    try:
        status = run_all()
    finally:
        teardown()
    raise SystemExit(status)
