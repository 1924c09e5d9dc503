# bench/common.sh: sourced by the benchmarks. `bench_setup NAME` builds the release programs
# and sets `bin` (their directory), `work` (a fresh work directory, mode 755), and who the
# mail system runs as: `uid`/`gid`, `owner` (the qmailctl init arguments) and `as` (a
# command prefix) — nobody when run as root, else us.
# At exit the processes in `pids` get TERM, a slapd with `$work/slapd.pid` is stopped, and
# `work` is removed.
bench_setup() {
  cargo build --release -q
  bin=$PWD/target/release
  work=$(mktemp -d "${TMPDIR:-/var/tmp}/qmail-$1-bench.XXXXXX")
  chmod 755 "$work"
  pids=()
  trap bench_cleanup EXIT
  if [ "$(id -u)" = 0 ]; then
    uid=65534 gid=65534 owner=(--owner nobody) as=(setpriv --reuid 65534 --regid 65534 --clear-groups)
  else
    uid=$(id -u) gid=$(id -g) owner=() as=()
  fi
}

bench_cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null && wait "$p" 2>/dev/null; done
  [ -f "$work/slapd.pid" ] && kill "$(cat "$work/slapd.pid")" 2>/dev/null
  rm -rf "$work"
}
