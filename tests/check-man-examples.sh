#!/bin/sh
# SPDX-License-Identifier: MIT
# The code in the EXAMPLES section of every man page compiles as it stands,
# strictly: each section's .EX/.EE blocks, groff escapes turned back into C,
# form one translation unit, compiled with
#   $CC -std=c11 -Wall -Wextra -Wpedantic -Werror -c
# against include/, so that a missing #include, a POSIX function used without
# its feature macro (strsignal under -std=c11) or an unused variable fails
# `make check`.  Only compiled, not linked or run (examples/ holds programs
# that run).  Skipped (77) where there is no C compiler.
# The examples of libworkerpool-mpi's pages (<workerpool-mpi.h> includes
# mpi.h) compile with MPI's flags too, where MPI is here: Open MPI's or
# MPICH's pkg-config file, else what mpicc passes, else none if the compiler
# finds mpi.h itself; where it is not, those pages are skipped, saying so,
# never failed: MPI is optional (configure --without-mpi).
srcdir=${srcdir:-.}
cc=${CC:-cc}
if ! command -v "${cc%% *}" >/dev/null 2>&1; then
    echo "SKIP: no C compiler ($cc)"
    exit 77
fi
tmp=$(mktemp -d "${TMPDIR:-/tmp}/check-man-examples.XXXXXX") || exit 1
trap 'rm -rf "$tmp"' EXIT
trap 'exit 1' HUP INT TERM

# mpi_cflags: MPI's compiler flags, with -I made -isystem as configure does
# (-Wpedantic is for the examples, not for mpi.h); false when no mpi.h
# compiles with them.
mpi_cflags() {
    flags=
    for pc in ompi-c mpich; do
        flags=$(pkg-config --cflags "$pc" 2>/dev/null) && break
        flags=
    done
    [ -n "$flags" ] || flags=$(mpicc --showme:compile 2>/dev/null) || flags=
    flags=$(echo " $flags" | sed 's/ -I/ -isystem /g')
    printf '#include <mpi.h>\n' >"$tmp/mpi.c"
    $cc -std=c11 -c $flags -o "$tmp/mpi.o" "$tmp/mpi.c" 2>/dev/null || return 1
    echo "$flags"
}
if mpi=$(mpi_cflags); then have_mpi=1; else have_mpi=0; fi

status=0
compiled=0
skipped=0
for page in "$srcdir"/man/*.3; do
    name=$(basename "$page" .3)
    src="$tmp/$name.c"
    # From ".SH EXAMPLES" to the next .SH: the lines between .EX and .EE,
    # without requests; then \e (a backslash) is kept aside while the other
    # escapes are undone, so "\e-" stays "\-" and is not read as "\-".
    sed -n '/^\.SH "\{0,1\}EXAMPLES\{0,1\}"\{0,1\}$/,/^\.SH /{
        /^\.EX/,/^\.EE/{
            /^\./d
            p
        }
    }' "$page" |
    sed -e 's/\\e/\x01/g' \
        -e 's/\\-/-/g' -e "s/\\\\(aq/'/g" -e 's/\\(dq/"/g' -e 's/\\(ga/`/g' \
        -e 's/\\(ti/~/g' -e 's/\\(ha/^/g' -e 's/\\&//g' \
        -e 's/\x01/\\/g' >"$src"
    [ -s "$src" ] || continue
    extra=
    if grep -Eq '^#include <(workerpool-)?mpi\.h>' "$src"; then
        if [ "$have_mpi" -eq 0 ]; then
            echo "SKIP: $name(3): its EXAMPLES need MPI's mpi.h, not found here" \
                 "(no ompi-c or mpich pkg-config file, no mpicc)"
            skipped=$((skipped + 1))
            continue
        fi
        extra=$mpi
    fi
    # Left over: a backslash that starts no C escape is a groff escape this
    # script does not undo.
    if grep -n '\\[^abfnrtvx0?"'"'"'\\]' "$src"; then
        echo "FAIL: $name: groff escapes left in the code (above)"
        status=1
    fi
    compiled=$((compiled + 1))
    if ! $cc -std=c11 -Wall -Wextra -Wpedantic -Werror -c -I"$srcdir/include" $extra \
            -o "$tmp/$name.o" "$src" 2>"$tmp/$name.err"; then
        echo "FAIL: $name(3): its EXAMPLES do not compile:"
        cat "$tmp/$name.err"
        echo "--- the code, as extracted:"
        cat -n "$src"
        status=1
    fi
done
[ "$compiled" -gt 0 ] || { echo "FAIL: no EXAMPLES found in $srcdir/man"; exit 1; }
[ "$skipped" -eq 0 ] || echo "man EXAMPLES: $skipped pages skipped (no MPI)"
[ "$status" -eq 0 ] && echo "man EXAMPLES: $compiled pages compile with $cc -std=c11 -Werror"
exit "$status"
