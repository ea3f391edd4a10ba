#!/bin/sh
# checksrc.sh: house rules that a compiler does not enforce (STYLE.md 17),
# printed as TAP: no banned string or number functions in src/, and no
# function body longer than 80 lines outside a dispatch switch.
set -u
src=${TM_SRCDIR:-$(dirname "$0")/..}/src
n=0
fail=0

check() {
	n=$((n + 1))
	if [ -z "$2" ]; then
		echo "ok $n - $1"
	else
		echo "not ok $n - $1"
		printf '%s\n' "$2" | sed 's/^/#   /'
		fail=1
	fi
}

banned=$(grep -nE '(^|[^_a-z])(sprintf|vsprintf|strcpy|strcat|strncpy|strtok|gets|atoi|atol|atoll)[[:space:]]*\(' \
	"$src"/*.c "$src"/*.h | grep -vE ':[[:space:]]*(/?\*|//)')
check "no sprintf/strcpy/strcat/strncpy/strtok/gets/atoi in src" "$banned"

# A definition starts with "name(" in column 0 (the return type is on the
# line before) and ends at the first "}" in column 0.
long=$(awk '
	FNR == 1 { start = 0 }
	/^[a-z_][a-z0-9_]*\(/ { name = $0; start = FNR; sw = 0 }
	start && /^\tswitch \(/ { sw = 1 }
	start && /^}/ {
		if (FNR - start > 80 && !sw)
			printf "%s:%d: %s is %d lines\n", FILENAME, start, name, FNR - start
		start = 0
	}' "$src"/*.c)
check "no function over 80 lines outside a dispatch switch" "$long"

echo "1..$n"
exit $fail
