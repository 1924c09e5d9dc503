#!/usr/bin/env bash
# bench/local.sh: local delivery throughput against this disk's ceiling, measured in one run.
#
# Injects N (default 5000) messages of 4 KiB with 10 concurrent qmail-inject streams into a
# running system (qmailctl run, release build), waits until all are in the Maildir, and
# prints messages per second, the disk's ceiling (a loop of write + fsync + rename + directory
# fsync on the same file system), and the ratio of the two; and per message, the CPU the
# system's processes used (the qmailctl run tree and the qmail-inject streams, each with its
# qmail-queue), the whole machine's, and the disk's write I/Os and KiB written (as
# bench/smtp.sh does, with bench/common.sh). Not part of cargo test.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-5000}
STREAMS=${STREAMS:-10}

cargo build --release -q
bin=$PWD/target/release
work=$(mktemp -d "${TMPDIR:-/var/tmp}/qmail-bench.XXXXXX")
trap 'kill -TERM $runpid 2>/dev/null; wait $runpid 2>/dev/null; rm -rf "$work"' EXIT
. bench/common.sh
home=$work/home
"$bin/qmailctl" init --home "$home" --domain bench.example >/dev/null

user=$work/user
mkdir -p "$user/Maildir/cur" "$user/Maildir/new" "$user/Maildir/tmp"
if [ "$(id -u)" = 0 ]; then uid=65534 gid=65534; chown -R "$uid:$gid" "$user"; chmod 755 "$work"
else uid=$(id -u) gid=$(id -g); fi
printf '=bench:bench:%s:%s:%s:::\n.\n' "$uid" "$gid" "$user" > "$home/users/assign"
QMAILHOME=$home "$bin/qmail-newu"

QMAILHOME=$home "$bin/qmailctl" run --home "$home" > "$work/log" 2>&1 &
runpid=$!
for _ in $(seq 500); do grep -q '^status: local' "$work/log" 2>/dev/null && break; sleep 0.01; done

msg=$work/msg
{ printf 'Subject: bench\n\n'; head -c 3000 /dev/urandom | base64 -w 76; } > "$msg"
truncate -s 4096 "$msg"
per=$((N / STREAMS))
total=$((per * STREAMS))

read -r w0 k0 <<<"$(disk_io "$work")"
c0=$(tree_cpu "$runpid")
children_cpu
i0=$children
m0=$(machine_cpu)
start=$(date +%s.%N)
for s in $(seq "$STREAMS"); do
  ( for i in $(seq "$per"); do QMAILHOME=$home "$bin/qmail-inject" bench@bench.example < "$msg"; done ) &
done
wait $(jobs -p | grep -v "^$runpid\$") 2>/dev/null || true
injected=$(date +%s.%N)
while [ "$(ls "$user/Maildir/new" | wc -l)" -lt "$total" ]; do sleep 0.05; done
end=$(date +%s.%N)
m1=$(machine_cpu)
c1=$(tree_cpu "$runpid")
children_cpu
i1=$children
read -r w1 k1 <<<"$(disk_io "$work")"

ceiling=$(python3 - "$work" <<'PY'
import os, sys, time
d = os.path.join(sys.argv[1], "ceiling"); os.mkdir(d); os.mkdir(d + "/tmp"); os.mkdir(d + "/new")
data = os.urandom(4096); n = 1000
dfd = os.open(d + "/new", os.O_RDONLY)
t = time.time()
for i in range(n):
    p = "%s/tmp/%d" % (d, i)
    fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.write(fd, data); os.fsync(fd); os.close(fd)
    os.rename(p, "%s/new/%d" % (d, i)); os.fsync(dfd)
print("%.1f" % (n / (time.time() - t)))
PY
)

python3 - "$total" "$start" "$injected" "$end" "$ceiling" "$c0" "$c1" "$i0" "$i1" "$m0" "$m1" \
  "$w0" "$w1" "$k0" "$k1" <<'PY'
import sys
n, start, injected, end, ceiling, c0, c1, i0, i1, m0, m1, w0, w1, k0, k1 = \
    int(sys.argv[1]), *map(float, sys.argv[2:])
rate = n / (end - start)
print(f"messages:          {n} x 4 KiB, 10 qmail-inject streams")
print(f"injected/s:        {n / (injected - start):.1f}")
print(f"delivered/s:       {rate:.1f}  (end to end, inject to Maildir)")
print(f"disk ceiling:      {ceiling:.1f} ops/s  (write+fsync+rename+dir fsync, one thread)")
print(f"ratio:             {100 * rate / ceiling:.0f}% of the ceiling")
print(f"CPU ms/msg:        {(c1 - c0 + i1 - i0) * 1000 / n:.2f}  (qmailctl run's tree "
      f"{(c1 - c0) * 1000 / n:.2f}, the injections {(i1 - i0) * 1000 / n:.2f}); "
      f"machine {(m1 - m0) * 1000 / n:.2f}")
print(f"disk/msg:          {(w1 - w0) / n:.2f} writes, {(k1 - k0) / n:.1f} KiB")
PY
