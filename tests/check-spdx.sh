#!/bin/sh
# SPDX-License-Identifier: MIT
# Every source file of the project starts with its licence line
# (SPDX-License-Identifier: MIT, in the file's comment syntax, within its
# first three lines), in the git tree and in the release tarball alike.
cd "${srcdir:-.}" || exit 1
missing=$(
    { ls configure.ac Makefile.am workerpool.pc.in .ci/run 2>/dev/null
      find lib include tests demos examples man fuzz -type f \( -name '*.[ch]' -o -name '*.cc' \
          -o -name '*.sh' -o -name '*.py' -o -name '*.3' -o -name '*.inc' -o -name '*.in' \
          -o -name '*.map' -o -name '*.supp' -o -name 'CMakeLists.txt' \) 2>/dev/null; } |
    while read -r f; do
        head -n 3 "$f" | grep -q 'SPDX-License-Identifier: MIT' || echo "$f"
    done)
if [ -n "$missing" ]; then
    echo "no SPDX-License-Identifier: MIT line at the top of:"
    echo "$missing"
    exit 1
fi
echo "every source file carries SPDX-License-Identifier: MIT"
