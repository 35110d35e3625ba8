#!/bin/sh
# SPDX-License-Identifier: MIT
# Builds and runs tests/install/consumer.c against an installed workerpool
# as users do (`make installcheck`, and so `make distcheck`, run it):
#   1. pkg-config: --cflags/--libs name nothing but workerpool (no -D from
#      Concurrency Kit, no Requires), with only this install's .pc visible;
#      the program gets versioned symbol references (wp_submit@WP_0.1);
#   2. a fully static program (cc -static, pkg-config --static --libs),
#      where this machine can link one;
#   3. CMake: find_package(workerpool 0.4) with the imported target, and
#      pkg_check_modules; versions the install must refuse are refused.
# Usage: check-installed.sh SRCDIR DESTDIR PREFIX LIBDIR STATIC(yes|no)
set -eu
srcdir=$1 destdir=$2 prefix=$3 libdir=$4 static=$5
cc=${CC:-cc}
here=$srcdir/tests/install
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "check-installed: $*" >&2; exit 1; }

libdir=$destdir$libdir
PKG_CONFIG_LIBDIR=$libdir/pkgconfig
PKG_CONFIG_PATH=
export PKG_CONFIG_LIBDIR PKG_CONFIG_PATH
[ -z "$destdir" ] || { PKG_CONFIG_SYSROOT_DIR=$destdir; export PKG_CONFIG_SYSROOT_DIR; }

echo "== pkg-config"
cflags=$(pkg-config --cflags workerpool) || fail "pkg-config --cflags failed"
libs=$(pkg-config --libs workerpool) || fail "pkg-config --libs failed"
echo "--cflags: $cflags"
echo "--libs:   $libs"
case " $cflags $libs " in
    *" -D"*|*"-lck"*) fail "flags beyond workerpool's own: $cflags $libs" ;;
esac
[ -z "$(pkg-config --print-requires workerpool)$(pkg-config --print-requires-private workerpool)" ] ||
    fail "the .pc requires other packages"
$cc -std=c11 -Wall -Wextra -Wpedantic -Werror $cflags "$here/consumer.c" -o "$tmp/dynamic" $libs
LD_LIBRARY_PATH=$libdir "$tmp/dynamic"
readelf -W --dyn-syms "$tmp/dynamic" | grep -q 'wp_submit@WP_0\.1' ||
    fail "the program's wp_submit reference carries no symbol version"

echo "== fully static"
if [ "$static" = yes ] && [ -f "$libdir/libworkerpool.a" ]; then
    slibs=$(pkg-config --static --libs workerpool)
    echo "--static --libs: $slibs"
    $cc -static -std=c11 $cflags "$here/consumer.c" -o "$tmp/static" $slibs
    ! readelf -d "$tmp/static" 2>/dev/null | grep -q NEEDED || fail "the static program needs shared libraries"
    "$tmp/static"
else
    echo "skipped: no fully static link on this machine or no libworkerpool.a"
fi

echo "== pkg-config workerpool-mpi"
if [ -f "$libdir/pkgconfig/workerpool-mpi.pc" ]; then
    # It requires workerpool and MPI's own .pc, which is the system's, not
    # this install's: its flags come from the system's pkg-config path,
    # without this install's sysroot.
    requires=$(pkg-config --print-requires workerpool-mpi 2>/dev/null) ||
        requires=$(sed -n 's/^Requires: *//p' "$libdir/pkgconfig/workerpool-mpi.pc")
    echo "requires: $(echo $requires)"
    case " $(echo $requires) " in *" workerpool "*) ;; *) fail "workerpool-mpi.pc does not require workerpool" ;; esac
    mpipc=$(echo $requires | tr ' ' '\n' | grep -v '^workerpool$' || :)
    mpiflags=
    if [ -n "$mpipc" ]; then
        mpiflags=$(env -u PKG_CONFIG_SYSROOT_DIR PKG_CONFIG_LIBDIR="$(env -u PKG_CONFIG_LIBDIR pkg-config --variable pc_path pkg-config)" \
            pkg-config --cflags --libs $mpipc) || fail "MPI's $mpipc.pc is not found"
    fi
    $cc -std=c11 -Wall -Wextra -Werror $cflags "$here/consumer_mpi.c" -o "$tmp/mpi" \
        -lworkerpool-mpi $libs $mpiflags
    if command -v mpirun >/dev/null 2>&1; then
        asroot=
        [ "$(id -u)" -eq 0 ] && asroot=--allow-run-as-root
        OMPI_MCA_btl=self,vader OMPI_MCA_btl_vader_single_copy_mechanism=none LD_LIBRARY_PATH=$libdir \
            timeout 120 mpirun -n 2 --oversubscribe $asroot -x LD_LIBRARY_PATH "$tmp/mpi" ||
            fail "the MPI program failed"
    else
        echo "built; not run: no mpirun"
    fi
else
    echo "skipped: libworkerpool-mpi not installed (built without MPI)"
fi

echo "== CMake"
if command -v cmake >/dev/null 2>&1; then
    # cmake_try WANT: configure the consumer asking for workerpool WANT.
    cmake_try() {
        rm -rf "$tmp/cmake"
        CMAKE_PREFIX_PATH=$destdir$prefix cmake -S "$here" -B "$tmp/cmake" \
            -DCMAKE_C_COMPILER="$cc" -DWP_WANT="$1" >"$tmp/cmake.log" 2>&1
    }
    for refused in 0.3 0.5 1.0; do
        ! cmake_try $refused || fail "find_package(workerpool $refused) accepted version $(pkg-config --modversion workerpool)"
    done
    cmake_try 0.4 || { cat "$tmp/cmake.log"; fail "find_package(workerpool 0.4) failed"; }
    cmake --build "$tmp/cmake" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "CMake build failed"; }
    LD_LIBRARY_PATH=$libdir "$tmp/cmake/consumer_cmake"
    LD_LIBRARY_PATH=$libdir "$tmp/cmake/consumer_pkgconfig"
else
    echo "skipped: no cmake"
fi
echo "check-installed: all passed"
