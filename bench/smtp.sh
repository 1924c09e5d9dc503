#!/usr/bin/env bash
# bench/smtp.sh: SMTP in and local Maildir delivery, this system against Postfix, same run.
#
# Postfix's smtp-source (10 sessions, N=5000 messages of 4 KiB, one message per connection)
# is pointed first at this system (qmail-tcpsrv + qmail-smtpd + the local delivery pipeline,
# release build) and then at a Postfix set up here on another loopback port to deliver into
# a Maildir (virtual(8)). Prints accepted/s (smtp-source finished) and delivered/s (all in
# the Maildir) for both and the ratios. Needs the Debian packages postfix and ucspi-tcp
# (tests/run installs them); runs as root or as a user (the Postfix side needs root).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
SESSIONS=${SESSIONS:-10}
QPORT=${QPORT:-2625}
PPORT=${PPORT:-2626}

cargo build --release -q
bin=$PWD/target/release
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qmail-smtp-bench.XXXXXX")
chmod 755 "$work"
cleanup() {
  [ -n "${runpid:-}" ] && kill -TERM "$runpid" 2>/dev/null && wait "$runpid" 2>/dev/null
  [ -d "$work/pf/etc" ] && postfix -c "$work/pf/etc" stop >/dev/null 2>&1
  rm -rf "$work"
}
trap cleanup EXIT

count() { find "$1" -type f | wc -l; }
wait_count() { while [ "$(count "$1")" -lt "$2" ]; do sleep 0.05; done; }
now() { date +%s.%N; }

# --- this system ---
home=$work/qmail
owner=()
[ "$(id -u)" = 0 ] && owner=(--owner nobody)
"$bin/qmailctl" init --home "$home" --domain bench.example "${owner[@]}" >/dev/null
user=$work/qbox
mkdir -p "$user/Maildir/cur" "$user/Maildir/new" "$user/Maildir/tmp"
if [ "$(id -u)" = 0 ]; then uid=65534 gid=65534; chown -R "$uid:$gid" "$user"
else uid=$(id -u) gid=$(id -g); fi
printf '=bench:bench:%s:%s:%s:::\n.\n' "$uid" "$gid" "$user" > "$home/users/assign"
QMAILHOME=$home "$bin/qmail-newu"
QMAILHOME=$home "$bin/qmailctl" run --home "$home" --listen "127.0.0.1:$QPORT" > "$work/qmail.log" 2>&1 &
runpid=$!
for _ in $(seq 1000); do
  (exec 3<>"/dev/tcp/127.0.0.1/$QPORT") 2>/dev/null && break
  sleep 0.01
done
s=$(now)
smtp-source -s "$SESSIONS" -m "$N" -l 4096 -f bench@sender.example -t bench@bench.example "127.0.0.1:$QPORT"
qa=$(now)
wait_count "$user/Maildir/new" "$N"
qd=$(now)
qs=$s
kill -TERM "$runpid"; wait "$runpid" 2>/dev/null || true; runpid=

# --- Postfix ---
pf=$work/pf
mkdir -p "$pf/etc" "$pf/queue" "$pf/data" "$pf/mail/box/cur" "$pf/mail/box/new" "$pf/mail/box/tmp"
chown -R 65534:65534 "$pf/mail"
chown postfix "$pf/data"
cp /etc/postfix/master.cf "$pf/etc/"
sed -i -E "s/^smtp( +)inet( +)n( +)-( +)y/$PPORT\1inet\2n\3-\4n/; s/^([a-z0-9]+ +(unix|unix-dgram|inet|fifo|pass) +[-ny] +[-ny] +)y/\1n/" "$pf/etc/master.cf"
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
virtual_uid_maps = static:65534
virtual_gid_maps = static:65534
virtual_mailbox_limit = 0
message_size_limit = 10240000
mynetworks = 127.0.0.0/8
maillog_file = $pf/maillog
maillog_file_prefixes = $pf
PF
postfix -c "$pf/etc" start >/dev/null 2>&1
for _ in $(seq 1000); do
  (exec 3<>"/dev/tcp/127.0.0.1/$PPORT") 2>/dev/null && break
  sleep 0.01
done
s=$(now)
smtp-source -s "$SESSIONS" -m "$N" -l 4096 -f bench@sender.example -t bench@bench.example "127.0.0.1:$PPORT"
pa=$(now)
wait_count "$pf/mail/box/new" "$N"
pd=$(now)
ps_=$s

python3 - "$N" "$qs" "$qa" "$qd" "$ps_" "$pa" "$pd" <<'PY'
import sys
n = int(sys.argv[1]); qs, qa, qd, ps, pa, pd = map(float, sys.argv[2:])
qacc, qdel, pacc, pdel = n / (qa - qs), n / (qd - qs), n / (pa - ps), n / (pd - ps)
print(f"smtp-source: {n} messages of 4 KiB, 10 sessions, one message per connection")
print(f"{'':12}{'accepted/s':>12}{'delivered/s':>13}")
print(f"{'qmail-ldap-rs':12}{qacc:12.1f}{qdel:13.1f}")
print(f"{'postfix':12}{pacc:12.1f}{pdel:13.1f}")
print(f"{'ratio':12}{qacc / pacc:12.2f}{qdel / pdel:13.2f}")
PY
