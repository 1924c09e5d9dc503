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

# `postfix_instance DIR PORT UID GID`: a private Postfix in DIR (etc/, queue/, data/, and the
# Maildir mail/box/ owned by UID:GID) whose smtpd listens on 127.0.0.1:PORT and delivers
# bench.example into that Maildir (virtual(8)), nothing chrooted, logging to DIR/maillog.
# The caller appends to DIR/etc/main.cf (TLS, SASL), then runs `postfix -c DIR/etc start`.
postfix_instance() {
  local pf=$1 port=$2 uid=$3 gid=$4
  mkdir -p "$pf/etc" "$pf/queue" "$pf/data" "$pf/mail/box/cur" "$pf/mail/box/new" "$pf/mail/box/tmp"
  chown -R "$uid:$gid" "$pf/mail"
  chown postfix "$pf/data"
  cp /etc/postfix/master.cf "$pf/etc/"
  sed -i -E "s/^smtp( +)inet( +)n( +)-( +)y/$port\1inet\2n\3-\4n/; s/^([a-z0-9]+ +(unix|unix-dgram|inet|fifo|pass) +[-ny] +[-ny] +)y/\1n/" "$pf/etc/master.cf"
  cat > "$pf/etc/main.cf" <<PF
compatibility_level = 3.6
queue_directory = $pf/queue
data_directory = $pf/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = pfbench.example
mydestination =
local_recipient_maps =
alias_maps =
alias_database =
virtual_mailbox_domains = bench.example
virtual_mailbox_base = $pf/mail
virtual_mailbox_maps = static:box/
virtual_uid_maps = static:$uid
virtual_gid_maps = static:$gid
virtual_mailbox_limit = 0
message_size_limit = 10240000
mynetworks = 127.0.0.0/8
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
PF
}
