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
#   - every WP_EXTERN function of the headers (include/workerpool.h, and
#     include/workerpool-mpi.h of libworkerpool-mpi, checked whether or not
#     this build makes that library) has a page (or a .so link to one) whose
#     NAME lists it, and workerpool(3) lists it too;
#   - every page is in man/Makefile.inc (so it is installed and shipped);
#   - for each XX(NAME, VALUE, "text") of WP_ERRNO_MAP in the header,
#     wp_strerror(3) lists WP_NAME with its value and the exact text, and
#     the error table of workerpool(3) gives the same value and text.
# Skipped (77) where groff is not installed (Debian: groff-base).
srcdir=${srcdir:-.}
man="$srcdir/man"
header="$srcdir/include/workerpool.h"
mpi_header="$srcdir/include/workerpool-mpi.h"

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
# externs HEADER: the names of its WP_EXTERN functions, one a line.
externs() { sed -n 's/^WP_EXTERN[^(]*[ *]\([a-z_0-9]*\)(.*/\1/p' "$1"; }
fns=$(externs "$header")
[ -n "$fns" ] || fail "no WP_EXTERN functions found in $header"
mpi_fns=$(externs "$mpi_header")
[ -n "$mpi_fns" ] || fail "no WP_EXTERN functions found in $mpi_header"
fns="$fns
$mpi_fns"
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

# The error codes: WP_ERRNO_MAP, one "NAME|VALUE|text" line per code.
codes=$(sed -n 's/^[[:space:]]*XX(\([A-Z0-9_]*\),[[:space:]]*\(-[0-9]*\),[[:space:]]*"\(.*\)")[[:space:][:punct:]]*$/\1|\2|\3/p' "$header")
[ -n "$codes" ] || fail "no XX(...) entries of WP_ERRNO_MAP found in $header"
[ "$(echo "$codes" | wc -l)" -eq "$(grep -c '^[[:space:]]*XX(' "$header")" ] ||
    fail "an XX(...) entry of WP_ERRNO_MAP in $header is not XX(NAME, -N, \"text\") on one line"

# listed PAGE: the codes PAGE lists, one "WP_NAME|VALUE|line" per code,
# where line is where its description starts; groff escapes (\%, \-, \&,
# fonts) are taken out first.  Two forms: wp_strerror(3)'s
#   .BR \%WP_NAME " (\-1)"        then the text on the next line,
# and a row of workerpool(3)'s table (its meaning cell may be a T{ block):
#   \%\fBWP_NAME\fP<tab>\-1<tab>kind<tab>text
listed() {
    sed -e 's/\\%//g' -e 's/\\&//g' -e 's/\\-/-/g' -e 's/\\f[BIPR]//g' "$1" | awk -F '\t' '
        want != "" { print want "|" $0; want = ""; next }
        /^\.BR WP_[A-Z0-9_]+ " \(-[0-9]+\)"$/ {
            v = $0; sub(/^[^(]*\(/, "", v); sub(/\).*/, "", v)
            n = $0; sub(/^\.BR /, "", n); sub(/ .*/, "", n)
            want = n "|" v; next }
        NF == 4 && $1 ~ /^WP_[A-Z0-9_]+$/ && $2 ~ /^-[0-9]+$/ {
            if ($4 == "T{") want = $1 "|" $2; else print $1 "|" $2 "|" $4 }'
}
# wp_strerror(3) gives the text alone on its line; workerpool(3) may go on
# after it with "; ..." or " (...)".  (awk -v reads backslashes in a text
# as escapes: the texts have none.)
for page in "$man/wp_strerror.3" "$man/workerpool.3"; do
    [ -f "$page" ] || { fail "no page $page"; continue; }
    case $page in */wp_strerror.3) alone=1 ;; *) alone=0 ;; esac
    have=$(listed "$page")
    for listed_code in $(echo "$have" | cut -d '|' -f 1); do
        echo "$codes" | grep -q "^${listed_code#WP_}|" ||
            fail "$(basename "$page"): lists $listed_code, which WP_ERRNO_MAP does not have"
    done
    while IFS='|' read -r code value text; do
        [ -n "$code" ] || continue
        # WP_<code> is listed once, with value, and its line is text (or
        # begins with it, then "; " or " (").
        why=$(echo "$have" | awk -F '|' -v n="WP_$code" -v v="$value" -v t="$text" -v alone="$alone" '
            $1 == n { found++; line = substr($0, length($1) + length($2) + 3)
                      rest = substr(line, length(t) + 1)
                      ok = index(line, t) == 1 && (rest == "" || (!alone && rest ~ /^(;| \()/))
                      if ($2 != v) print "value " $2 " (header: " v ")"
                      if (!ok) print "text \"" line "\" (header: \"" t "\")" }
            END { if (found != 1) print "listed " found + 0 " times with a value (header: " v ", \"" t "\")" }')
        [ -z "$why" ] || fail "$(basename "$page"): WP_$code: $why"
    done <<EOF
$codes
EOF
done

[ "$status" -eq 0 ] && echo "man pages: $pages pages, $(echo "$fns" | wc -l) functions, all clean"
exit "$status"
