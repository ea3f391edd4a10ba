"""make install: the tree it writes into a DESTDIR with this build's
configure options, and make uninstall. The install with
--enable-sendmail-links and --with-setgid-group, and its use by a user
who is not root, are test_setgid.py's.
"""
import grp
import os
import shutil
import stat
import subprocess
import tempfile

from tmtest import SRCDIR, TOKENMAIL, eq, match, run_all, test

BUILDDIR = os.environ.get("TM_BUILDDIR") or os.path.dirname(TOKENMAIL)
MAKE = os.environ.get("MAKE") or "make"
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


if __name__ == "__main__":
    raise SystemExit(run_all())
