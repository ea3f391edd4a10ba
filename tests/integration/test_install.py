"""make install: the tree it writes into a DESTDIR, with the default
configure options (this build) and with --enable-sendmail-links and
--with-setgid-group (a second build made here, in a temporary directory).

The setgid build's system configuration points at the local peers, and a
user who is not root (nobody) sends through it with a secret that only
root and the group can read: the point of setgid mode. The same user is
refused -C and `tokenmail token`. Needs root (chgrp, setpriv), as CI is.
"""
import grp
import os
import shutil
import stat
import subprocess
import tempfile

from tmtest import SRCDIR, TOKENMAIL, eq, match, run_all, test
from test_smtp import Env

BUILDDIR = os.environ.get("TM_BUILDDIR") or os.path.dirname(TOKENMAIL)
MAKE = os.environ.get("MAKE") or "make"
GROUP = "mail"
NOBODY = 65534
BUILD_SECONDS = 900


def make(builddir, *targets, env=None):
    r = subprocess.run([MAKE, "-C", builddir] + list(targets), capture_output=True,
                       timeout=BUILD_SECONDS, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "make %s: %r" % (" ".join(targets), r.stderr[-3000:])
    return r


def tree(root):
    """{relative path: (kind, mode, group, link target)} for everything under root."""
    out = {}
    for dirpath, dirs, files in os.walk(root):
        for name in files:
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            rel = os.path.relpath(path, root)
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", None, None, os.readlink(path))
            else:
                out[rel] = ("file", stat.S_IMODE(st.st_mode), grp.getgrgid(st.st_gid).gr_name,
                            None)
    return out


def makefile_value(builddir, name):
    with open(os.path.join(builddir, "Makefile")) as f:
        for line in f:
            if line.startswith(name + " = "):
                return line.split(" = ", 1)[1].strip()
    raise AssertionError("no %s in %s/Makefile" % (name, builddir))


def clean_make_env():
    """The test's own make must not join the outer make's job server."""
    env = dict(os.environ)
    for k in ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES"):
        env.pop(k, None)
    return env


@test
def default_install_is_the_program_its_man_pages_and_the_example():
    dest = tempfile.mkdtemp(prefix="tm-destdir-")
    try:
        prefix = makefile_value(BUILDDIR, "prefix").lstrip("/")
        make(BUILDDIR, "install", "DESTDIR=" + dest, env=clean_make_env())
        got = tree(dest)
        want = {
            prefix + "/sbin/tokenmail": ("file", 0o755),
            prefix + "/share/man/man8/tokenmail.8": ("file", 0o644),
            prefix + "/share/man/man5/tokenmail.yaml.5": ("file", 0o644),
            prefix + "/share/doc/tokenmail/README.md": ("file", 0o644),
            prefix + "/share/doc/tokenmail/examples/tokenmail.yaml.example": ("file", 0o644),
        }
        eq(sorted(got), sorted(want))
        for path, (kind, mode) in want.items():
            eq(got[path][:2], (kind, mode), path)
        with open(os.path.join(dest, prefix, "share/doc/tokenmail/examples/tokenmail.yaml.example"),
                  "rb") as f, open(os.path.join(SRCDIR, "etc/tokenmail.yaml.example"), "rb") as g:
            eq(f.read(), g.read(), "the example config is installed as it is")
        r = subprocess.run([os.path.join(dest, prefix, "sbin/tokenmail"), "--version"],
                           capture_output=True, timeout=30)
        eq((r.returncode, r.stderr), (0, b""))
        match(r"^tokenmail \d+\.\d+\.\d+\n$", r.stdout.decode())
        make(BUILDDIR, "uninstall", "DESTDIR=" + dest, env=clean_make_env())
        eq(tree(dest), {}, "uninstall leaves no file")
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def setgid_build(build, system_config):
    r = subprocess.run(
        [os.path.join(SRCDIR, "configure"), "-q", "--prefix=/usr", "--enable-sendmail-links",
         "--with-setgid-group=" + GROUP, "--with-system-config=" + system_config],
        cwd=build, capture_output=True, timeout=BUILD_SECONDS, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, "configure: %r" % r.stderr[-3000:]
    make(build, "-j2", "install", "DESTDIR=" + os.path.join(build, "dest"), env=clean_make_env())


def share_with_group(env):
    """The system config as an admin would set it up for setgid mode: the
    secret root:GROUP 0640, the cache directory root:GROUP 2770, the log
    root:GROUP 0660, every directory on the way open to traverse."""
    gid = grp.getgrnam(GROUP).gr_gid
    os.chmod(env.dir, 0o755)
    for dirpath, dirs, files in os.walk(env.dir):
        for d in dirs:
            os.chmod(os.path.join(dirpath, d), 0o755)
        for f in files:
            os.chmod(os.path.join(dirpath, f), 0o644)
    os.chown(env.secret_file, 0, gid)
    os.chmod(env.secret_file, 0o640)
    cache = os.path.join(env.dir, "cache")
    os.makedirs(cache, exist_ok=True)
    os.chown(cache, 0, gid)
    os.chmod(cache, 0o2770)
    with open(env.log_file, "a"):
        pass
    os.chown(env.log_file, 0, gid)
    os.chmod(env.log_file, 0o660)


def as_nobody(binary, args, stdin=b"", extra_env=None):
    env = {"PATH": "/usr/bin:/bin", "HOME": "/nonexistent"}
    env.update(extra_env or {})
    r = subprocess.run(["setpriv", "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY,
                        "--clear-groups", binary] + list(args),
                       input=stdin, capture_output=True, timeout=60, env=env)
    return r.returncode, r.stdout, r.stderr.decode("utf-8", "replace")


@test
def links_and_setgid_install_let_a_user_send_with_a_secret_it_cannot_read():
    assert os.geteuid() == 0, "this test installs setgid files: run it as root (CI does)"
    build = tempfile.mkdtemp(prefix="tm-setgid-build-")
    os.chmod(build, 0o755)
    try:
        with Env() as env:
            system_config = os.path.join(env.dir, "system.yaml")
            shutil.copyfile(env.ws.config, system_config)
            setgid_build(build, system_config)
            dest = os.path.join(build, "dest")
            got = tree(dest)
            eq(got["usr/sbin/tokenmail"][1:3], (0o2755, GROUP))
            for link in ("usr/sbin/sendmail", "usr/lib/sendmail", "usr/bin/mailq",
                         "usr/bin/newaliases"):
                eq(got.get(link), ("link", None, None, "/usr/sbin/tokenmail"), link)
            binary = os.path.join(dest, "usr/sbin/tokenmail")
            share_with_group(env)
            rc, out, err = as_nobody("/bin/cat", [env.secret_file])
            assert rc != 0 and "Permission denied" in err, "nobody can read the secret: %r" % err
            rc, out, err = as_nobody(binary, ["-i", "ops@example.com"],
                                     b"Subject: from nobody\n\nsent by a user\n")
            eq((rc, out, err), (0, b"", ""))
            msgs = env.smtp.messages()
            eq(len(msgs), 1)
            eq(msgs[0]["rcpts"][0]["addr"] if isinstance(msgs[0]["rcpts"][0], dict)
               else msgs[0]["rcpts"][0], "ops@example.com")
            assert b"sent by a user" in env.smtp.data(msgs[0])
            cache_files = os.listdir(os.path.join(env.dir, "cache"))
            assert cache_files, "no token cached"
            for rc_args, what in ((["-C", env.ws.config, "ops@example.com"], "-C"),
                                  (["-X", env.log_file, "ops@example.com"], "-X")):
                rc, out, err = as_nobody(binary, rc_args, b"Subject: x\n\nx\n")
                eq(rc, 77, err)
                match(r"^tokenmail: %s is for root only: tokenmail runs setgid for other "
                      r"users\n  hint: the system configuration %s applies to every user\n$"
                      % (what, system_config), err)
            rc, out, err = as_nobody(binary, ["token", "app"])
            eq((rc, out), (77, b""))
            match(r"^tokenmail: tokenmail token is for root only", err)
            # $XDG_CONFIG_HOME is not looked at for a user in setgid mode.
            xdg = os.path.join(env.dir, "xdg")
            os.makedirs(os.path.join(xdg, "tokenmail"))
            with open(os.path.join(xdg, "tokenmail", "config.yaml"), "w") as f:
                f.write("not: [valid\n")
            rc, out, err = as_nobody(binary, ["--dry-run", "ops@example.com"],
                                     b"Subject: x\n\nx\n", {"XDG_CONFIG_HOME": xdg})
            eq(rc, 0, err)
            match(r"(?m)^account: app \(%s\)$" % system_config, out.decode())
            eq(len(env.smtp.messages()), 1, "refused runs sent nothing")
    finally:
        shutil.rmtree(build, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(run_all())
