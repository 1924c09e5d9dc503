#!/usr/bin/env bash
# bench/spawn.sh: what one start of each per-message program costs, against trivial C.
#
# Builds the release programs and runs each of PROGRAMS COUNT (2000) times in a row with
# bench/spawnloop.c (posix_spawn + wait4), beside a trivial C program (`int main(void) {
# return 0; }`) linked statically and dynamically with gcc. PROGRAMS are by default the ones
# started for every connection or message (qmail-smtpd, qmail-queue, qmail-local,
# qmail-inject) and two more small ones (qmail-getpw, qmail-tcpok). Each is run so that it
# exits at once after the whole start (exec, dynamic loading, the C library's and Rust's
# runtime start): without arguments or input, with QMAILHOME pointing at a directory that
# does not exist (a usage error, or a fatal error at the first chdir). ROUNDS (3) rounds,
# every program in turn in each; prints the median over the rounds of ms per start: wall
# time, the child's CPU (user+system, from wait4: exec, loading, start and exit are all
# charged to it), and that plus the spawning loop's own. The programs are target/release's,
# which the other benchmarks run too (`qmailctl init --owner` links them); BIN=DIR measures
# the ones in DIR instead (e.g. a copy of an earlier build), without building. Needs gcc.
# Not part of cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${COUNT:-2000}
ROUNDS=${ROUNDS:-3}
PROGRAMS=${PROGRAMS:-qmail-smtpd qmail-queue qmail-local qmail-inject qmail-getpw qmail-tcpok}
command -v gcc >/dev/null || { echo "bench/spawn.sh: gcc is missing (build-essential)" >&2; exit 1; }

work=$(mktemp -d "${TMPDIR:-/var/tmp}/qmail-spawn-bench.XXXXXX")
trap 'rm -rf "$work"' EXIT
if [ -z "${BIN:-}" ]; then
  cargo build --release -q
  BIN=$PWD/target/release
fi
gcc -O2 -Wall -o "$work/spawnloop" bench/spawnloop.c
echo 'int main(void) { return 0; }' > "$work/true.c"
gcc -O2 -static -o "$work/true-static" "$work/true.c"
gcc -O2 -o "$work/true-dynamic" "$work/true.c"

names=(true-static true-dynamic $PROGRAMS)
paths=("$work/true-static" "$work/true-dynamic")
for p in $PROGRAMS; do paths+=("$BIN/$p"); done
for r in $(seq "$ROUNDS"); do
  for i in "${!names[@]}"; do
    printf '%s %s\n' "${names[$i]}" \
      "$(env -i QMAILHOME="$work/none" "$work/spawnloop" "$COUNT" "${paths[$i]}")"
  done
done > "$work/out"

python3 - "$work/out" "$COUNT" "$ROUNDS" "${names[@]}" <<'PY'
import statistics, sys
out, count, rounds, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
runs = {}
for line in open(out):
    name, *figures = line.split()
    runs.setdefault(name, []).append([float(f) for f in figures])
print(f"one start (posix_spawn + wait4), ms, median of {rounds} rounds of {count}")
print(f"{'':16}{'wall':>8}{'CPU child':>11}{'CPU all':>9}")
for name in names:
    med = [statistics.median(col) for col in zip(*runs[name])]
    print(f"{name:16}{med[0]:8.3f}{med[1]:11.3f}{med[2]:9.3f}")
PY
