#!/bin/sh
# SPDX-License-Identifier: MIT
# Stands in for tests/static_consumer where configure found no way to link
# and run a fully static program (no libc.a, a sanitizer build,
# or --disable-static): skipped.
echo "static consumer skipped: no fully static link here (needs libc6-dev's libc.a, static libraries enabled, no sanitizer)"
exit 77
