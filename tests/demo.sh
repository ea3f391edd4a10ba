#!/bin/sh
# demo.sh: show tokenmail at work on a sample message, the way cron sends
# one. Until delivery lands this is a --dry-run: everything happens (message
# intake, config, account and alias resolution, header rewriting) except the
# network, and the message is printed exactly as it would be transmitted.
# Usage: tests/demo.sh [PATH-TO-TOKENMAIL]
set -eu
bin=${1:-./tokenmail}
dir=$(mktemp -d "${TMPDIR:-/tmp}/tokenmail-demo.XXXXXX")
trap 'rm -rf "$dir"' EXIT INT TERM

umask 077
printf 'not-a-real-secret\n' >"$dir/app.secret"
cat >"$dir/config.yaml" <<YAML
log: stderr
dead_letter: $dir/dead.letter
aliases:
  root: ops@example.com
default_account: app
accounts:
  app:
    senders: [app@example.com]
    method: smtp
    tenant: contoso.onmicrosoft.com
    client_id: 00000000-0000-0000-0000-000000000001
    client_secret_file: $dir/app.secret
YAML

echo "\$ printf ... | sendmail -FCronDaemon -i -B8BITMIME -oem root   (as Debian's cron runs it)"
printf 'From: root (Cron Daemon)\nTo: root\nSubject: Cron <root@host> backup\nBcc: hidden@example.net\n\nbackup finished: 42 files\n' |
	"$bin" -C "$dir/config.yaml" --dry-run -FCronDaemon -i -B8BITMIME -oem root
