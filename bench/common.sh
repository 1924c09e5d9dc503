# bench/common.sh: sourced by the benchmarks (bench/smtp.sh only for tree_cpu, at the end).
# `bench_setup NAME` builds the release programs and sets `bin` (their directory), `work` (a
# fresh work directory, mode 755), and who the mail system runs as: `uid`/`gid`, `owner` (the
# qmailctl init arguments) and `as` (a command prefix) — nobody when run as root, else us.
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

# tree_cpu PID: seconds of CPU (user+system) used so far by PID's process tree: the times of
# its live processes and of the dead ones, which the kernel adds to their parent's
# cutime/cstime when it reaps them (see the top of bench/smtp.sh). Waits (up to 2 s) until no
# process in it is running, being reaped or in an uninterruptible sleep.
tree_cpu() {
  python3 - "$1" <<'PY'
import os, sys, time
def scan():
    procs = {}
    for d in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{d}/stat") as f:
                stat = f.read()
        except OSError:  # gone since the listing
            continue
        # after "pid (comm) ": state ppid ... utime stime cutime cstime (fields 3, 4, 14-17)
        f = stat[stat.rindex(")") + 2:].split()
        procs[int(d)] = (int(f[1]), f[0], sum(map(int, f[11:15])))
    tree, todo = [], [int(sys.argv[1])]
    while todo:
        p = todo.pop()
        tree.append(procs[p])
        todo += [c for c, (pp, _, _) in procs.items() if pp == p]
    return tree
for _ in range(200):
    tree = scan()
    if not any(state in "RDZ" for _, state, _ in tree):
        break
    time.sleep(0.01)
print(sum(t for _, _, t in tree) / os.sysconf("SC_CLK_TCK"))
PY
}
