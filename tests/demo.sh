#!/bin/sh
# demo.sh: a real delivery through tokenmail's local test peers (an OAuth
# token endpoint and an SMTP server with STARTTLS and XOAUTH2, both on
# 127.0.0.1 with a throwaway CA): see tests/demo.py.
# Usage: tests/demo.sh [PATH-TO-TOKENMAIL]
set -eu
bin=${1:-./tokenmail}
exec /usr/bin/python3 "$(dirname "$0")/demo.py" "$bin"
