#!/usr/bin/env bash
# Scripts/bench.sh - Cairn's first benchmark, in one run on this machine (JSON lines on stdout):
#   disk_write_fsync / disk_read_cold: dd of 1 GiB to and from the disk the cluster stores on;
#   tracker_get_paths_{1,4}conn and tracker_create_pair_{1,4}conn: protocol ops/s
#     (a pair = create_open + PUT of 1 byte + create_close, with 2 synchronous copies);
#   put_1g / get_1g: `cairn put` and `cairn get` of a 1 GiB file, replicas=2 (2 synchronous copies).
#   with shared/bench/fsbench.sh present (BENCH_SHARED, default ../shared): its file-system workloads
#     on the local disk, on the peers (BENCH_PEERS, default "moosefs juicefs", started and stopped
#     by shared/bench/peers/, each alone), and on a Cairn mount with 2 copies (both synchronous)
#     and with 1, as fs_<workload>_<system> lines, then a table with Cairn's ratio to the best peer
#     per workload (stderr; raw lines in $BENCH_OUT with .tsv).  BENCH_FS=0 skips them.
#     BENCH_REFERENCES (default "passthrough"): systems measured as references, not peers:
#     libfuse's passthrough_ll over the local disk is the FUSE ceiling (Cairn's ratio to it too).
#     Before them, parallel_create_8 (Scripts/bench_parallel.py): 8 writers creating 250 files of
#     4 KiB each at once, on every system.
#   reaper_restore_*: 1 GiB in 1,000 files, a device marked dead, seconds until all are back at 2
#     copies; fsck_{files,mib}_rate: a report-only fsck over everything (beside disk_read_cold).
#     BENCH_HEAL=0 skips them.
# Raw lines go to $BENCH_OUT (default /var/tmp/cairn-bench/<date>.jsonl); a summary row is appended
# to bench/ledger.jsonl in the repository.  Works in $BENCH_WORK (default /var/tmp/cairn-bench/work),
# emptied at the start and, but for its logs, at the end (BENCH_KEEP=1 keeps the cluster's data).
# Builds the release binary first; needs root for drop_caches.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="/opt/swift/usr/bin:$PATH"
swift build -c release --product cairn >&2   # incremental: never measure a stale binary
BIN=$PWD/.build/release/cairn
WORK=${BENCH_WORK:-/var/tmp/cairn-bench/work}
OUT=${BENCH_OUT:-/var/tmp/cairn-bench/$(date -u +%Y%m%dT%H%M%S).jsonl}
SECS=${BENCH_SECONDS:-5}
PORT=${BENCH_PORT:-17301}
mkdir -p "$(dirname "$OUT")"; rm -rf "$WORK"; mkdir -p "$WORK"
emit() { echo "{\"name\":\"$1\",\"value\":$2,\"unit\":\"$3\"}" | tee -a "$OUT"; }
drop() { sync; echo 3 > /proc/sys/vm/drop_caches 2>/dev/null || true; }
mibs() { python3 -c "print(round($1/1048576/$2, 1))"; }

# The disk, the same way the storage nodes write (fsync at the end) and read.
head -c $((1<<30)) /dev/urandom > /dev/shm/cairn-bench-1g
t0=$(date +%s.%N); dd if=/dev/shm/cairn-bench-1g of="$WORK/dd" bs=1M conv=fsync status=none; t1=$(date +%s.%N)
emit disk_write_fsync "$(mibs $((1<<30)) "$(echo "$t1 - $t0" | bc)")" MiB/s
drop; t0=$(date +%s.%N); dd if="$WORK/dd" of=/dev/null bs=1M status=none; t1=$(date +%s.%N)
emit disk_read_cold "$(mibs $((1<<30)) "$(echo "$t1 - $t0" | bc)")" MiB/s
rm -f "$WORK/dd"

# shared/bench/fsbench.sh on one directory: raw lines to $RAW, fs_<workload>_<label> JSON lines.
SHARED=${BENCH_SHARED:-$PWD/../shared}
RAW=${OUT%.jsonl}.tsv
FS=0; [ "${BENCH_FS:-1}" = 1 ] && [ -f "$SHARED/bench/fsbench.sh" ] && FS=1
# CPU time the hypervisor gave to other guests (steal), as "total steal" ticks: a run's figures
# mean little when its steal is high, so each system's share is kept beside its figures.
cpu_ticks() { awk '/^cpu / {t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9}' /proc/stat; }
# Every system starts on a file system at rest. This disk's ext4 has no journal, and then ext4
# will not reuse an inode freed in the last 60 s (300 s more while its table block is dirty):
# each new file's allocation scans past every recently freed one. Right after the previous
# system's files were removed, that made creates up to 4x dearer in CPU (kernel
# recently_deleted(), measured on Cairn's mount), so whichever system ran next paid for the
# last one's cleanup. Settling is writing everything back and waiting out the 60 s.
settle() { sync; sleep "${BENCH_SETTLE_SECONDS:-62}"; }
fsbench() { # label dir
  settle
  local before; before=$(cpu_ticks)
  emit "hop_rtt_same_cpu_$1" "$(python3 Scripts/bench_hop.py same)" us
  emit "hop_rtt_cross_cpu_$1" "$(python3 Scripts/bench_hop.py cross)" us
  # Cairn's own workload first, its files removed only after fsbench.sh (see `settle`).
  local par; par=$(timeout 300 python3 Scripts/bench_parallel.py "$2" 8 250 4096 2>>"$WORK/fsbench.log" || echo error)
  printf 'RESULT\t%s\tparallel_create_8\t%s\tfiles/s\n' "$1" "$par" >> "$RAW"
  bash "$SHARED/bench/fsbench.sh" -l "$1" -o "$RAW" "$2" 2>>"$WORK/fsbench.log" | awk -F'\t' '$1=="RESULT" {print $3, $4, $5}' |
    while read -r name value unit; do
      case "$value" in ''|*[!0-9.]*) continue ;; esac
      emit "fs_${name}_$1" "$value" "$unit"
    done
  case "$par" in ''|*[!0-9.]*) ;; *) emit "fs_parallel_create_8_$1" "$par" files/s ;; esac
  rm -rf "$2"/par.*
  emit "steal_pct_$1" "$(echo "$before $(cpu_ticks)" | awk '{d = $3 - $1; print (d > 0 ? int(1000 * ($4 - $2) / d) / 10 : 0)}')" %
}
# The local disk and the peers first, each alone on the machine (Cairn is not up yet).
if [ "$FS" = 1 ]; then
  command -v fio >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq fio >/dev/null
  mkdir -p "$WORK/local"; fsbench local "$WORK/local"; rm -rf "$WORK/local"
  # A system shared/bench/peers/ starts and stops: the peers, and libfuse's passthrough_ll
  # (BENCH_REFERENCES), the FUSE ceiling on this machine, a reference column beside the local
  # disk, never counted as a peer (bench_table.py).
  other() {
    if "$SHARED/bench/peers/$1.sh" start >>"$WORK/peers.log" 2>&1; then
      fsbench "$1" "$("$SHARED/bench/peers/$1.sh" mnt)"
      "$SHARED/bench/peers/$1.sh" stop >>"$WORK/peers.log" 2>&1
      "$SHARED/bench/peers/$1.sh" wipe >>"$WORK/peers.log" 2>&1 || true
    else
      echo "bench: $1 did not start (see $WORK/peers.log); its column stays empty" >&2
    fi
  }
  for ref in ${BENCH_REFERENCES-passthrough}; do other "$ref"; done
  for peer in ${BENCH_PEERS:-moosefs juicefs}; do other "$peer"; done
fi

mkdir -p "$WORK/mnt"
"$BIN" up "$WORK/cluster" --port "$PORT" --storage-port $((PORT + 100)) --mount "$WORK/mnt" > "$WORK/up.log" 2>&1 &
UP=$!
# At exit the cluster's data (several GiB) goes too, logs stay; BENCH_KEEP=1 keeps it all.
cleanup() {
  kill -INT $UP 2>/dev/null || true   # (errexit holds in traps too: a finished cluster must not end the cleanup)
  wait $UP 2>/dev/null || true
  rm -f /dev/shm/cairn-bench-1g
  if mountpoint -q "$WORK/mnt"; then fusermount3 -uz "$WORK/mnt"; fi
  if [ "${BENCH_KEEP:-0}" != 1 ]; then find "$WORK" -mindepth 1 -maxdepth 1 ! -name '*.log' -exec rm -rf {} +; fi
}
trap cleanup EXIT
for _ in $(seq 300); do grep -q "Cairn is up" "$WORK/up.log" && break; sleep 0.2; done
export CAIRN_TRACKER=127.0.0.1:$PORT
"$BIN" admin class add default one --replicas 2 --sync-copies 2 >/dev/null
for i in $(seq 0 99); do echo "v$i" | "$BIN" put default "bench/k$i" - ; done
python3 Scripts/bench_tracker.py "$CAIRN_TRACKER" default "$SECS" | tee -a "$OUT"

t0=$(date +%s.%N); "$BIN" put default big /dev/shm/cairn-bench-1g; t1=$(date +%s.%N)
emit put_1g "$(mibs $((1<<30)) "$(echo "$t1 - $t0" | bc)")" MiB/s
drop; t0=$(date +%s.%N); "$BIN" get default big /dev/null; t1=$(date +%s.%N)
emit get_1g "$(mibs $((1<<30)) "$(echo "$t1 - $t0" | bc)")" MiB/s
# Cairn with 2 copies (both synchronous) and with 1: a domain per setting.
if [ "$FS" = 1 ]; then
  mkdir -p "$WORK/mnt/bench" "$WORK/mnt/bench1"   # a directory at the top of the mount is a domain
  "$BIN" admin class modify bench default --replicas 2 --sync-copies 2 >/dev/null
  "$BIN" admin class modify bench1 default --replicas 1 --sync-copies 1 >/dev/null
  fsbench cairn "$WORK/mnt/bench"
  # Each system is measured at rest: the r=2 run's files are still being freed (GBs of
  # deletes) and sidecars written; let that finish before the r=1 run (which then settles,
  # see `settle`), as the peers each start on an idle machine.
  idle() { "$BIN" admin stats --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["delete_queue"] + s["sidecar_queue"] + s["replication_queue"])'; }
  for _ in $(seq 240); do [ "$(idle)" = 0 ] && break; sleep 0.5; done
  fsbench cairn_r1 "$WORK/mnt/bench1"
  python3 Scripts/bench_table.py "$RAW" "$OUT" >&2
fi

# Self-healing: 1 GiB in 1,000 files (2 copies each), then a device dies; time until the
# reaper has every file back at 2 copies. Then fsck (report only) over everything.
if [ "${BENCH_HEAL:-1}" = 1 ]; then
  mkdir -p /dev/shm/cairn-heal && for i in $(seq 1000); do head -c $((1<<20)) /dev/urandom > /dev/shm/cairn-heal/f$i; done
  mkdir -p "$WORK/mnt/heal" && cp -r /dev/shm/cairn-heal/. "$WORK/mnt/heal/" && rm -rf /dev/shm/cairn-heal
  queues() { "$BIN" admin stats --json | python3 -c 'import json,sys; s=json.load(sys.stdin); print(s["replication_queue"])'; }
  until [ "$(queues)" = 0 ]; do sleep 0.5; done
  victim=$("$BIN" admin device list --json | python3 -c 'import json,sys; print(max(json.load(sys.stdin), key=lambda d: int(d["copies"]))["devid"])')
  lost=$("$BIN" admin device list --json | python3 -c "import json,sys; print([d for d in json.load(sys.stdin) if d['devid']=='$victim'][0]['mb_stored'])")
  t0=$(date +%s.%N); "$BIN" admin device state "$victim" dead >/dev/null
  until [ "$(queues)" = 0 ]; do sleep 0.2; done; t1=$(date +%s.%N)
  emit reaper_restore_1g_1000_files_s "$(echo "$t1 - $t0" | bc)" s
  emit reaper_restore_rate "$(python3 -c "print(round($lost / ($t1 - $t0), 1))")" MiB/s
  drop; "$BIN" admin fsck start >/dev/null
  until "$BIN" admin fsck status --json | python3 -c 'import json,sys; sys.exit(0 if not json.load(sys.stdin)["running"] else 1)'; do sleep 0.5; done
  "$BIN" admin fsck status --json | python3 -c '
import json,sys; s=json.load(sys.stdin)
for k,u in (("files_per_second","files/s"),("mib_per_second","MiB/s")): print(json.dumps({"name":"fsck_"+k.split("_per")[0]+"_rate","value":s[k],"unit":u}))' | tee -a "$OUT"
fi

# Peak memory of every Cairn process over the whole run (mount included).
n=0
for p in $(pgrep -f "cairn (tracker|storage|mount) "); do
  n=$((n + 1))
  role=$(tr '\0' ' ' < /proc/$p/cmdline | awk '{print $2}')
  emit "peak_rss_${role}_$n" "$(awk '/VmHWM/{print $2}' /proc/$p/status)" KiB
done

mkdir -p bench
python3 - "$OUT" <<'PY' >> bench/ledger.jsonl
import json, platform, sys, datetime
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith("{")]
print(json.dumps({"date": datetime.datetime.utcnow().isoformat(timespec="seconds") + "Z", "machine": platform.node(),
                  "cpus": __import__("os").cpu_count(), "results": {r["name"]: r["value"] for r in rows}}))
PY
echo "raw: $OUT; summary appended to bench/ledger.jsonl" >&2
