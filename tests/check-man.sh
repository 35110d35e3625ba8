#!/bin/sh
# SPDX-License-Identifier: MIT
# The man pages stay complete and clean (run by `make check`, man/Makefile.inc):
#   - every page renders with groff (tbl, -ww) without a single warning;
#   - a page with a table says so on its first line ('\" t), or man(1) would
#     not run tbl on it;
#   - every page has NAME, SYNOPSIS, DESCRIPTION and ATTRIBUTES, and every
#     page of a function has RETURN VALUE;
#   - every .TH names the version of include/workerpool.h ("workerpool M.m");
#   - every ".BR name (N)" is a reference to a page: N is a section, and the
#     wp_* pages referred to exist (code such as exit(0) is set as code);
#   - every WP_EXTERN function of the header has a page (or a .so link to
#     one) whose NAME lists it, and workerpool(3) lists it too;
#   - every page is in man/Makefile.inc (so it is installed and shipped).
# Skipped (77) where groff is not installed (Debian: groff-base).
srcdir=${srcdir:-.}
man="$srcdir/man"
header="$srcdir/include/workerpool.h"

if ! command -v groff >/dev/null 2>&1 || ! command -v tbl >/dev/null 2>&1; then
    echo "SKIP: groff and tbl are needed to render the man pages (Debian: groff-base)"
    exit 77
fi

status=0
fail() { echo "FAIL: $*"; status=1; }

# section PAGE NAME: does PAGE have a .SH NAME heading (quoted or not)?
section() { grep -Eq "^\\.SH \"?$2\"?[[:space:]]*\$" "$1"; }

major=$(sed -n 's/^#define WP_VERSION_MAJOR \([0-9]*\).*/\1/p' "$header")
minor=$(sed -n 's/^#define WP_VERSION_MINOR \([0-9]*\).*/\1/p' "$header")
[ -n "$major" ] && [ -n "$minor" ] || fail "no WP_VERSION_MAJOR/MINOR in $header"

pages=0
for page in "$man"/*.3; do
    name=$(basename "$page")
    grep -q "man/$name" "$man/Makefile.inc" || fail "$name: not in man/Makefile.inc"
    # A link page: its target must exist; the target is checked for itself.
    target=$(sed -n 's/^\.so man3\/\(.*\)$/\1/p' "$page")
    if [ -n "$target" ]; then
        [ -f "$man/$target" ] || fail "$name: .so target man3/$target is missing"
        continue
    fi
    pages=$((pages + 1))
    if grep -q '^\.TS' "$page" && [ "$(head -n 1 "$page")" != "'\\\" t" ]; then
        fail "$name: has a table but its first line is not '\\\" t"
    fi
    warnings=$(LC_ALL=C.UTF-8 groff -t -man -Tutf8 -ww -z "$page" 2>&1)
    [ -z "$warnings" ] || fail "$name: groff says: $warnings"
    for s in NAME SYNOPSIS DESCRIPTION ATTRIBUTES; do
        section "$page" "$s" || fail "$name: no $s section"
    done
    case $name in
        wp_*) section "$page" "RETURN VALUE" || fail "$name: no RETURN VALUE section" ;;
    esac
    grep -q "^\\.TH .*\"workerpool $major\\.$minor\"" "$page" ||
        fail "$name: .TH does not say \"workerpool $major.$minor\""
    # References "name (section)": a real section, and our own pages exist.
    bad=$(grep -E '^\.BR [^ ]+ \([^)]+\)' "$page" | grep -Ev '^\.BR [^ ]+ \([1-9][a-z]*\)')
    [ -z "$bad" ] || fail "$name: not a man page reference (write code as code): $bad"
    for ref in $(sed -n 's/^\.BR \\%\(wp_[a-z_0-9]*\) (3).*/\1/p' "$page"); do
        [ -f "$man/$ref.3" ] || fail "$name: refers to $ref(3), which has no page"
    done
done
[ "$pages" -gt 0 ] || fail "no pages found in $man"

# Every exported function: a page whose NAME section lists it, and a line
# in the overview.
fns=$(sed -n 's/^WP_EXTERN[^(]*[ *]\([a-z_0-9]*\)(.*/\1/p' "$header")
[ -n "$fns" ] || fail "no WP_EXTERN functions found in $header"
for fn in $fns; do
    page="$man/$fn.3"
    if [ ! -f "$page" ]; then
        fail "$fn: no page man/$fn.3"
        continue
    fi
    target=$(sed -n 's/^\.so man3\/\(.*\)$/\1/p' "$page")
    [ -z "$target" ] || page="$man/$target"
    # The NAME section: from .SH NAME to the next .SH.
    sed -n '/^\.SH NAME/,/^\.SH [^N]/p' "$page" | grep -Eq "(^|[ ,])$fn([ ,]|\$)" ||
        fail "$fn: not in the NAME section of $(basename "$page")"
    grep -q "^\\.BR \\\\%$fn (3)" "$man/workerpool.3" ||
        fail "$fn: not listed in workerpool(3)"
done

# The attributes of each function agree between its page and the overview.
# attributes PAGE: one line "function|thread safety|async-signal|blocking"
# per function of PAGE's ATTRIBUTES table.
attributes() {
    sed -n '/^\.SH ATTRIBUTES/,/^\.TE/p' "$1" | awk -F '\t' '
        /^T\{/ { names = ""; collecting = 1; next }
        collecting && /^\.BR / { n = $0; sub(/^\.BR \\%/, "", n); sub(/ .*/, "", n)
                                  names = names " " n; next }
        /^T\}/ { collecting = 0; split(names, fn, " "); v[1] = $3; next }
        $2 == "Async-signal safety" { v[2] = $3 }
        $2 == "Blocking" { for (i in fn) print fn[i] "|" v[1] "|" v[2] "|" $3 }'
}
overview=$(attributes "$man/workerpool.3")
for fn in $fns; do
    page="$man/$fn.3"
    [ -f "$page" ] || continue
    target=$(sed -n 's/^\.so man3\/\(.*\)$/\1/p' "$page")
    [ -z "$target" ] || page="$man/$target"
    mine=$(attributes "$page" | grep "^$fn|")
    theirs=$(echo "$overview" | grep "^$fn|")
    [ -n "$mine" ] || fail "$fn: not in the ATTRIBUTES table of $(basename "$page")"
    [ "$mine" = "$theirs" ] ||
        fail "$fn: attributes differ: its page says \"$mine\", workerpool(3) \"$theirs\""
done

[ "$status" -eq 0 ] && echo "man pages: $pages pages, $(echo "$fns" | wc -l) functions, all clean"
exit "$status"
