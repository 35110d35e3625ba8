#!/bin/sh
# SPDX-License-Identifier: MIT
# The batch_insert demo as a user meets it: --help, a run that stores the
# expected rows (read back with its own --show, as the sqlite3 program may
# not be installed), errors that name the database file, and an existing
# database's journal mode left alone unless --wal is given.
set -u
. "$(dirname "$0")/lib.sh"
demo_test batch_insert

# expect_show DBFILE LINE...: --show prints exactly these key=value lines.
expect_show() {
    db=$1
    shift
    run 0 --show "$db"
    printf '%s\n' "$@" | cmp -s - "$tmp/out" || fail "--show $db: expected $*"
}

# --help and -h: exit 0 with the usage on stdout; a bad option: exit 2.
for h in --help -h; do
    run 0 "$h"
    grep -q '^Usage: batch_insert' "$tmp/out" || fail "$h prints no usage"
    grep -q -- '--wal' "$tmp/out" || fail "$h does not document --wal"
done
run 2 --no-such-option
grep -q "Try 'batch_insert --help'" "$tmp/err" || fail "a bad option does not point to --help"

# A run: both tables hold ROWS - 1 rows (the last row repeats an id on
# purpose), and a new database is put in WAL mode, as --help says.
run 0 -n 500 -t 3 -b 16 -w 2 "$tmp/rows.db"
grep -qx OK "$tmp/out" || fail "the run did not say OK"
grep -q "journal mode wal (new, so set by this demo" "$tmp/out" || fail "the run did not say it chose WAL"
expect_show "$tmp/rows.db" journal_mode=wal batched_rows=499 single_rows=499
[ -e "$tmp/rows.db-wal" ] && fail "a -wal file was left beside rows.db"

# Errors name the file and exit 2: a directory that does not exist, a file
# that is not a database, a directory given as the database.
printf 'not a database, only text\n' >"$tmp/text.db"
for bad in "$tmp/no/such/dir/x.db" "$tmp/text.db" "$tmp"; do
    run 2 -n 10 "$bad"
    grep -qF "batch_insert: $bad: " "$tmp/err" || fail "the error for $bad does not name it"
done
run 2 --show "$tmp/missing.db"
grep -qF "batch_insert: $tmp/missing.db: " "$tmp/err" || fail "--show does not name a missing file"
[ -e "$tmp/missing.db" ] && fail "--show created the file it was asked to show"
# Unwritable: only a normal user can be refused a write (root is not).
if [ "$(id -u)" -ne 0 ]; then
    cp "$tmp/rows.db" "$tmp/readonly.db" && chmod 444 "$tmp/readonly.db"
    run 2 -n 10 "$tmp/readonly.db"
    grep -qF "batch_insert: $tmp/readonly.db: " "$tmp/err" || fail "a read-only database is not named"
fi

# An existing database in rollback-journal mode stays so; --wal changes it.
run 0 -n 50 --no-wal "$tmp/plain.db"
grep -q "journal mode delete (new, left as SQLite makes it" "$tmp/out" ||
    fail "--no-wal on a new database did not say so"
expect_show "$tmp/plain.db" journal_mode=delete batched_rows=49 single_rows=49
run 0 -n 60 "$tmp/plain.db"
grep -q "journal mode delete (the database's own, kept" "$tmp/out" ||
    fail "the run did not say it kept the journal mode"
expect_show "$tmp/plain.db" journal_mode=delete batched_rows=59 single_rows=59
if command -v sqlite3 >/dev/null 2>&1; then # a second opinion, where there is one
    [ "$(sqlite3 "$tmp/plain.db" 'PRAGMA journal_mode')" = delete ] ||
        fail "sqlite3 says plain.db is no longer in rollback-journal mode"
fi
run 0 -n 50 --wal "$tmp/plain.db"
expect_show "$tmp/plain.db" journal_mode=wal batched_rows=49 single_rows=49

echo "batch_insert: all checks passed"
