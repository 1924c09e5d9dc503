# bench/common.sh: sourced by the benchmarks (bench/smtp.sh and bench/local.sh only for
# tree_cpu, disk_io, machine_cpu and children_cpu, which follow bench_setup).
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

# bench_need NAME HINT PROGRAM...: exit unless running as root with every PROGRAM there (a
# command or a file); NAME is the script's, HINT says where the programs come from.
bench_need() {
  local name=$1 hint=$2 c
  shift 2
  [ "$(id -u)" = 0 ] || { echo "$name: must run as root" >&2; exit 1; }
  for c; do
    [ -e "$c" ] || command -v "$c" >/dev/null ||
      { echo "$name: $c is missing ($hint)" >&2; exit 1; }
  done
}

# tree_cpu PID...: seconds of CPU (user+system) used so far by the PIDs' process trees: the
# times of their live processes and of the dead ones, which the kernel adds to their parent's
# cutime/cstime when it reaps them (see the top of bench/smtp.sh). Waits (up to 2 s) until no
# process in them is running, being reaped or in an uninterruptible sleep. (tree_cpu in
# bench/loadgen.py, which bench/imapload.py also uses.)
bench_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
tree_cpu() {
  PYTHONPATH=$bench_dir python3 -c \
    'import sys, loadgen; print(loadgen.tree_cpu(*map(int, sys.argv[1:])))' "$@"
}

# disk_io DIR: "writes KiB", the write I/Os completed and the KiB written so far on the block
# device holding DIR (/proc/diskstats: its eighth and tenth fields, sectors of 512 bytes),
# after a sync of DIR's file system, so that what an earlier phase left in the page cache is
# counted before and what this one left is counted after. The figures are the whole device's:
# anything else writing to it in the meantime counts too.
disk_io() {
  sync -f "$1"
  python3 - "$1" <<'PY'
import os, sys
dev = os.stat(sys.argv[1]).st_dev
for line in open("/proc/diskstats"):
    f = line.split()
    if (int(f[0]), int(f[1])) == (os.major(dev), os.minor(dev)):
        print(f[7], int(f[9]) // 2)
        break
else:
    sys.exit(f"disk_io: {sys.argv[1]} is on no device in /proc/diskstats")
PY
}

# machine_cpu: seconds of CPU the whole machine has spent so far outside idle and I/O wait
# (/proc/stat's first line: user, nice, system, irq, softirq, steal; in USER_HZ, 100 a
# second). Everything counts: the load generator, the kernel's threads (the journal's, the
# network's), and whatever else runs on the machine.
machine_cpu() {
  awk '$1 == "cpu" { print ($2 + $3 + $4 + $7 + $8 + $9) / 100; exit }' /proc/stat
}

# children_cpu: sets `children` to the seconds of CPU (user+system) this shell's reaped
# children have used so far (bash's `times`, second line). Not in a $(...): a subshell's
# count starts at zero.
children_cpu() {
  times > "$work/.times"
  children=$(awk 'NR == 2 {
    n = split($0, t, /[ms ]+/); s = 0
    for (i = 1; i + 1 <= n; i += 2) s += t[i] * 60 + t[i + 1]
    print s }' "$work/.times")
}

# free_ports N: N distinct loopback TCP ports nobody listens on, one a line, picked at random
# below the usual ephemeral range (32768 and up), so that the load's own connections do not
# take them first.
free_ports() {
  python3 - "$1" <<'PY'
import random, socket, sys
want, held = int(sys.argv[1]), []
while len(held) < want:
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", random.randrange(20000, 32768)))
    except OSError:
        s.close()
        continue
    held.append(s)
for s in held:
    print(s.getsockname()[1])
PY
}

# wait_port PORT: until something accepts connections on 127.0.0.1:PORT (10 s at the most)
wait_port() {
  for _ in $(seq 1000); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return
    sleep 0.01
  done
  echo "bench: nothing listens on port $1" >&2
  return 1
}

# bench_messages ROOT USERS COUNT: COUNT messages of 4 KiB, without flags, in cur/ of the
# Maildirs ROOT/u0/Maildir .. ROOT/u(USERS-1)/Maildir (bench_slapd's), owned as ROOT is.
bench_messages() {
  local root=$1 users=$2 count=$3 i j names
  { printf 'Subject: bench\n\n'; head -c 3000 /dev/urandom | base64 -w 76; } > "$root/.msg"
  truncate -s 4096 "$root/.msg"
  for i in $(seq 0 $((users - 1))); do
    names=()
    for j in $(seq "$count"); do
      names+=("$root/u$i/Maildir/cur/1733300000.M${j}P$i.bench:2,")
    done
    tee "${names[@]}" < "$root/.msg" > /dev/null
  done
  rm "$root/.msg"
  chown -R --reference="$root" "$root"
}

# `dovecot_instance DIR LPORT [HOME]`: the start of a private Dovecot's DIR/dovecot.conf (its
# base_dir and state_dir in DIR, logging to DIR/log, no TLS, plaintext logins allowed) whose
# passdb and userdb are the slapd of bench/slapd.sh on 127.0.0.1:LPORT: bound as the admin,
# Dovecot checks userPassword itself (as auth_pop does), the entry's qmailUID and qmailGID, and
# as home the entry's homeDirectory or, given HOME, that template (e.g. /x/%{ldap:uid}), with
# mail_location = maildir:~/Maildir (maildir++, Courier's layout); its defaults otherwise (no
# auth cache, a login process per connection). The caller appends `protocols` and the
# services' listeners, then runs `dovecot -F -c DIR/dovecot.conf`.
dovecot_instance() {
  local dv=$1 home=${3:+=home=$3}
  mkdir -p "$dv/run" "$dv/state"
  cat > "$dv/ldap.conf.ext" <<EOF
hosts = 127.0.0.1:$2
dn = cn=admin,dc=bench,dc=example
dnpass = secret
base = ou=people,dc=bench,dc=example
scope = subtree
pass_filter = (&(objectClass=qmailUser)(uid=%u))
pass_attrs = uid=user,userPassword=password
user_filter = (&(objectClass=qmailUser)(uid=%u))
user_attrs = ${home:-homeDirectory=home},qmailUID=uid,qmailGID=gid
EOF
  cat > "$dv/dovecot.conf" <<EOF
instance_name = qmailbench-$(basename "$dv")
base_dir = $dv/run
state_dir = $dv/state
log_path = $dv/log
listen = 127.0.0.1
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:~/Maildir
first_valid_uid = 100
first_valid_gid = 100
passdb {
  driver = ldap
  args = $dv/ldap.conf.ext
}
userdb {
  driver = ldap
  args = $dv/ldap.conf.ext
}
EOF
}

# dovecot_start DIR PORT: run the Dovecot of DIR/dovecot.conf (dovecot_instance) in the
# foreground of a background job, until it listens on PORT; sets dovecot_pid, adds it to pids
dovecot_start() {
  dovecot -F -c "$1/dovecot.conf" >> "$1/log" 2>&1 &
  dovecot_pid=$!
  pids+=("$dovecot_pid")
  wait_port "$2"
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
