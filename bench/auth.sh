#!/usr/bin/env bash
# bench/auth.sh: logins against the directory, this system against Dovecot (POP3) and
# Postfix with Dovecot SASL (SMTP AUTH), same run, same slapd, same Maildirs.
#
# A private slapd (bench/slapd.sh) holds USERS (default 1,000) qmailUser entries, each with
# a password of its own ({SSHA}) and a Maildir holding MESSAGES (default 5) messages of 4 KiB.
#
# POP3: bench/authload.py makes N (default 5000) sessions, SESSIONS (10) at a time, each a
# login as a random user, STAT (which must count MESSAGES) and QUIT, against
#   - ours: tcpserver -HRl0 127.0.0.1 $QPORT bin/qmail-popup bench.example bin/auth_pop
#     bin/qmail-pop3d Maildir (the installation's bin/, by absolute names: auth_pop changes to
#     the user's home), run as root (auth_pop becomes the user), in an installation made by
#     qmailctl init and pointed at the slapd (qmailctl run's POP3 listener would run it as the
#     installation's owner, which is the users' uid here: no switch at all);
#   - Dovecot (Debian's dovecot-pop3d and dovecot-ldap), a private instance on $DPORT:
#     passdb and userdb ldap on the same slapd (bound as the admin, the password checked by
#     Dovecot as auth_pop does, not by a bind as the user), mail_location maildir:~/Maildir,
#     its defaults otherwise (a login process per connection, no auth cache).
# Every user logs in once on each server first, untimed, so that Dovecot's index files exist
# (its steady state; qmail-pop3d keeps none). Prints logins/s, the server's CPU per login and
# slapd's, and the ratios.
#
# SMTP AUTH: SMTP_N (default N) sessions of AUTH PLAIN and one 4 KiB message to one local
# mailbox, SESSIONS at a time, against
#   - ours: qmailctl run (qmail-tcpsrv, qmail-smtpd, delivery) with SMTPAUTH="PLAINTEXT" from
#     control/tcp.smtp; qmail-smtpd runs bin/auth_smtp per AUTH, which asks the slapd;
#   - Postfix (as bench/smtp.sh sets it up, delivering into a Maildir with virtual(8)) with
#     smtpd_sasl_type = dovecot on the Dovecot instance's auth socket.
# Prints accepted/s (the generator finished), delivered/s (all in the Maildir), the CPU per
# message (ours: the qmailctl run tree; Postfix: its master's tree and Dovecot's, which does
# the AUTH) and slapd's, and the ratios. Then AUTH alone: AUTHS (default SMTP_N) sessions
# without mail against each (greeting, EHLO, AUTH PLAIN, QUIT), and as many without AUTH
# (greeting, EHLO, QUIT): AUTHs/s, the server's CPU per session of each kind and their
# difference, which is what checking a password costs it.
#
# Last, each server must refuse one session with a wrong password (last, since Dovecot slows
# an address down after a failure): logins/s counts logins that were checked.
#
# CPU is counted per process tree (tree_cpu, bench/common.sh), between phases; slapd is
# counted apart, since both sides use it. Rates depend on what else the machine is doing:
# compare the ratios, and run it twice. `bench/auth.sh pop3` or `bench/auth.sh smtp` runs one
# part alone. Runs as root; needs slapd, ldap-utils, ucspi-tcp, postfix, dovecot-pop3d and
# dovecot-ldap (tests/run installs them) and python3.
set -euo pipefail
shopt -s inherit_errexit
cd "$(dirname "$0")/.."
case "$*" in
  pop3) do_pop3=1 do_smtp=0 ;;
  smtp) do_pop3=0 do_smtp=1 ;;
  "") do_pop3=1 do_smtp=1 ;;
  *) echo "usage: bench/auth.sh [pop3|smtp]" >&2; exit 2 ;;
esac
N=${N:-5000}
SMTP_N=${SMTP_N:-$N}
AUTHS=${AUTHS:-$SMTP_N}
USERS=${USERS:-1000}
SESSIONS=${SESSIONS:-10}
MESSAGES=${MESSAGES:-5}
LPORT=${LPORT:-3898}  # slapd
QPORT=${QPORT:-2110}  # our POP3
DPORT=${DPORT:-2111}  # Dovecot's POP3
SPORT=${SPORT:-2625}  # our SMTP
PPORT=${PPORT:-2626}  # Postfix's SMTP
PASSWORD=bench-secret-  # uK's password is this followed by K

. bench/common.sh
bench_need bench/auth.sh "tests/run installs the packages" slapd slapadd ldapsearch tcpserver \
  postfix dovecot /usr/lib/dovecot/pop3 /usr/lib/dovecot/modules/auth/libauthdb_ldap.so python3
bench_setup auth
cleanup() {
  [ -d "$work/pf/etc" ] && postfix -c "$work/pf/etc" stop >/dev/null 2>&1
  bench_cleanup
}
trap cleanup EXIT

now() { date +%s.%N; }
# wait_count DIR COUNT: until DIR holds COUNT files; fails after a minute without progress
wait_count() {
  local n last=-1 still=0
  while n=$(find "$1" -type f | wc -l); [ "$n" -lt "$2" ]; do
    if [ "$n" = "$last" ]; then
      still=$((still + 1))
      [ "$still" -lt 600 ] ||
        { echo "bench/auth.sh: $1 stuck at $n of $2 messages" >&2; return 1; }
    else
      still=0 last=$n
    fi
    sleep 0.1
  done
}
load() {
  bench/authload.py -s "$SESSIONS" -u "$USERS" -p "$PASSWORD" "$@" >> "$work/authload.out"
}

# --- the directory and the mailboxes ---
. bench/slapd.sh
bench_slapd "$work" "$LPORT" "$USERS" "$uid" "$gid" "$work/ml" "$PASSWORD"
slapd_pid=$(cat "$work/slapd.pid")
bench_messages "$work/ml" "$USERS" "$MESSAGES"

# --- this system: an installation on the slapd ---
home=$work/qmail
"$bin/qmailctl" init --home "$home" --domain bench.example "${owner[@]}" >/dev/null
bench_ldap_controls "$home" "$LPORT"
chown "$uid:$gid" "$home/control/"ldap*
qbox=$work/qbox
mkdir -p "$qbox/Maildir/cur" "$qbox/Maildir/new" "$qbox/Maildir/tmp"
chown -R "$uid:$gid" "$qbox"
printf '=bench:bench:%s:%s:%s:::\n.\n' "$uid" "$gid" "$qbox" > "$home/users/assign"
echo '127.0.0.1:allow,SMTPAUTH="PLAINTEXT"' > "$home/control/tcp.smtp"
"$bin/qmailctl" cdb --home "$home" >/dev/null

# --- Dovecot ---
dv=$work/dovecot
dovecot_instance "$dv" "$LPORT"
cat >> "$dv/dovecot.conf" <<EOF
protocols = pop3
pop3_uidl_format = %08Xu%08Xv
service pop3-login {
  inet_listener pop3 {
    address = 127.0.0.1
    port = $DPORT
  }
}
service auth {
  unix_listener auth-postfix {
    mode = 0666
  }
}
EOF
dovecot_start "$dv" "$DPORT"

# --- POP3 ---
# pop3_phase PORT ROOT: the warm-up, then N timed logins; sets t (seconds), c (ROOT's CPU)
# and s (slapd's CPU).
pop3_phase() {
  load --all --stat "$MESSAGES" "127.0.0.1:$1"
  local t0 c0 s0
  c0=$(tree_cpu "$2") s0=$(tree_cpu "$slapd_pid") t0=$(now)
  load -m "$N" --stat "$MESSAGES" "127.0.0.1:$1"
  t=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { print a - b }')
  c=$(awk -v a="$(tree_cpu "$2")" -v b="$c0" 'BEGIN { print a - b }')
  s=$(awk -v a="$(tree_cpu "$slapd_pid")" -v b="$s0" 'BEGIN { print a - b }')
}
pop3_figures=()
if [ "$do_pop3" = 1 ]; then
  (cd "$home" && QMAILHOME=$home exec tcpserver -HRl0 127.0.0.1 "$QPORT" \
    "$home/bin/qmail-popup" bench.example "$home/bin/auth_pop" "$home/bin/qmail-pop3d" Maildir) \
    2>> "$work/pop3.log" &
  pop3_pid=$!
  pids+=("$pop3_pid")
  wait_port "$QPORT"
  pop3_phase "$QPORT" "$pop3_pid"
  pop3_figures+=("$t" "$c" "$s")
  pop3_phase "$DPORT" "$dovecot_pid"
  pop3_figures+=("$t" "$c" "$s")
fi

# --- SMTP AUTH ---
# smtp_phase PORT MAILDIR ROOT...: SMTP_N sessions; appends to smtp_figures the seconds until
# the generator finished and until all were delivered, the CPU of the ROOTs' trees and
# slapd's.
smtp_phase() {
  local port=$1 maildir=$2 c0 s0 t0 ta td
  shift 2
  c0=$(trees_cpu "$@") s0=$(tree_cpu "$slapd_pid") t0=$(now)
  load --smtp -m "$SMTP_N" -t bench@bench.example "127.0.0.1:$port"
  ta=$(now)
  wait_count "$maildir" "$SMTP_N"
  td=$(now)
  smtp_figures+=("$(awk -v a="$ta" -v b="$t0" 'BEGIN { print a - b }')"
    "$(awk -v a="$td" -v b="$t0" 'BEGIN { print a - b }')"
    "$(awk -v a="$(trees_cpu "$@")" -v b="$c0" 'BEGIN { print a - b }')"
    "$(awk -v a="$(tree_cpu "$slapd_pid")" -v b="$s0" 'BEGIN { print a - b }')")
}
trees_cpu() { # ROOT...: the sum of their tree_cpu
  local sum=0 p
  for p; do sum=$(awk -v a="$sum" -v b="$(tree_cpu "$p")" 'BEGIN { print a + b }'); done
  echo "$sum"
}
# auth_phase PORT ROOT...: AUTHS sessions without mail, with AUTH and then without; appends
# to auth_figures the seconds the first took, the CPU of the ROOTs' trees in each, and
# slapd's in the first
auth_phase() {
  local port=$1 c0 s0 t0 t1 c1 s1 c2
  shift
  c0=$(trees_cpu "$@") s0=$(tree_cpu "$slapd_pid") t0=$(now)
  load --smtp --no-mail -m "$AUTHS" "127.0.0.1:$port"
  t1=$(now)
  c1=$(trees_cpu "$@") s1=$(tree_cpu "$slapd_pid")
  load --smtp --no-mail --no-auth -m "$AUTHS" "127.0.0.1:$port"
  c2=$(trees_cpu "$@")
  auth_figures+=("$(awk -v a="$t1" -v b="$t0" 'BEGIN { print a - b }')"
    "$(awk -v a="$c1" -v b="$c0" 'BEGIN { print a - b }')"
    "$(awk -v a="$c2" -v b="$c1" 'BEGIN { print a - b }')"
    "$(awk -v a="$s1" -v b="$s0" 'BEGIN { print a - b }')")
}
smtp_figures=() auth_figures=()
if [ "$do_smtp" = 1 ]; then
  # ours (with no POP3 listener of its own, where qmailctl run has one)
  run_args=(--listen "127.0.0.1:$SPORT")
  [[ $("$bin/qmailctl" run --help) == *--pop3* ]] && run_args+=(--pop3 off)
  QMAILHOME=$home "$bin/qmailctl" run --home "$home" "${run_args[@]}" > "$work/qmail.log" 2>&1 &
  run_pid=$!
  pids+=("$run_pid")
  wait_port "$SPORT"
  smtp_phase "$SPORT" "$qbox/Maildir/new" "$run_pid"

  # Postfix with Dovecot SASL
  pf=$work/pf
  postfix_instance "$pf" "$PPORT" "$uid" "$gid"
  cat >> "$pf/etc/main.cf" <<PF
smtpd_sasl_auth_enable = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = $dv/run/auth-postfix
PF
  postfix -c "$pf/etc" start >/dev/null 2>&1
  wait_port "$PPORT"
  master=$(tr -d ' ' < "$pf/queue/pid/master.pid")
  smtp_phase "$PPORT" "$pf/mail/box/new" "$master" "$dovecot_pid"

  auth_phase "$SPORT" "$run_pid"
  auth_phase "$PPORT" "$master" "$dovecot_pid"
fi

# --- a wrong password, refused by each server: last, since Dovecot slows an address down
# after a failure, for its POP3 and its SASL alike ---
if [ "$do_pop3" = 1 ]; then
  load --wrong -s 1 -m 1 "127.0.0.1:$QPORT"
  load --wrong -s 1 -m 1 "127.0.0.1:$DPORT"
fi
if [ "$do_smtp" = 1 ]; then
  load --smtp --wrong -s 1 -m 1 "127.0.0.1:$SPORT"
  load --smtp --wrong -s 1 -m 1 "127.0.0.1:$PPORT"
fi

python3 - "$N" "$SMTP_N" "$AUTHS" "$USERS" "$SESSIONS" "$MESSAGES" "${#pop3_figures[@]}" \
  "${pop3_figures[@]}" "${smtp_figures[@]}" "${auth_figures[@]}" <<'PY'
import sys
n, sn, an, users, sessions, messages, npop = map(int, sys.argv[1:8])
pop = list(map(float, sys.argv[8:8 + npop]))
smtp = list(map(float, sys.argv[8 + npop:16 + npop]))
auth = list(map(float, sys.argv[16 + npop:]))
def row(name, *cols):
    print(f"{name:18}" + "".join(f"{c:>15}" for c in cols))
def table(names, figures, rate_cols):
    for name, f in zip(names, figures):
        row(name, *(f"{x:.1f}" if i < rate_cols else f"{x:.2f}" for i, x in enumerate(f)))
    # a difference of clock ticks can come out at 0 or below on a short run: no ratio then
    row("ratio", *(f"{a / b:.2f}" if b > 0 and a >= 0 else "-" for a, b in zip(*figures)))
if pop:
    qt, qc, qs, dt, dc, ds = pop
    print(f"POP3: {n} logins (USER, PASS, STAT, QUIT) as {users} LDAP users at random, "
          f"{sessions} at a time;")
    print(f"{messages} messages of 4 KiB in each Maildir, every user logged in once before")
    row("", "logins/s", "CPU ms/login", "slapd ms/login")
    table(["qmail-ldap-rs", "dovecot"],
          [(n / t, c * 1000 / n, s * 1000 / n) for t, c, s in ((qt, qc, qs), (dt, dc, ds))], 1)
    print("(CPU: user+system of the server's process tree: ours tcpserver, qmail-popup,")
    print("auth_pop, qmail-pop3d; Dovecot its master and every child; slapd's apart)")
if pop and smtp:
    print()
if smtp:
    print(f"SMTP AUTH: {sn} sessions of AUTH PLAIN as {users} LDAP users at random and one "
          f"message of 4 KiB")
    print(f"to one local Maildir, {sessions} at a time")
    row("", "accepted/s", "delivered/s", "CPU ms/msg", "slapd ms/msg")
    table(["qmail-ldap-rs", "postfix+dovecot"],
          [(sn / a, sn / d, c * 1000 / sn, s * 1000 / sn)
           for a, d, c, s in (smtp[0:4], smtp[4:8])], 2)
    print("(CPU from the first connection to the last delivery; ours: the qmailctl run tree;")
    print("Postfix: its master's tree plus Dovecot's, which checks the AUTH)")
    print()
    print(f"SMTP AUTH alone: {an} sessions without mail, {sessions} at a time; server CPU per "
          f"session in ms")
    row("", "AUTHs/s", "with AUTH", "without", "AUTH's share", "slapd")
    table(["qmail-ldap-rs", "postfix+dovecot"],
          [(an / t, a * 1000 / an, b * 1000 / an, (a - b) * 1000 / an, s * 1000 / an)
           for t, a, b, s in (auth[0:4], auth[4:8])], 1)
    print("(with AUTH: greeting, EHLO, AUTH PLAIN, QUIT; without: greeting, EHLO, QUIT;")
    print("AUTH's share: the difference, what checking the password costs the server)")
PY
echo
echo "load generator (bench/authload.py), in the order run:"
cat "$work/authload.out"
