# Records the kernel's own writes: one data disk (the origin disk) carries
# the origin at sectors 0..osect and the COW at osect..osect+csect, as two
# dm-linear slices over a log-writes target whose log is the second disk
# (the COW disk). The workload comes from the results disk, one operation
# a line:
#   w o|s SECTOR COUNT   write labelled sectors to the origin or snapshot
#   f o|s                fsync the device (a PREFLUSH)
#   r                    reload: remove and re-create snapshot and origin
#   m                    merge: fsync both devices, remove them, mark
#                        `merging`, merge with snapshot-merge until the COW
#                        is empty (the last operation)
#   P K                  the next K lines are writes run at once
# With cowdelay=MS, a dm-delay target under the COW's slice holds its
# writes and flushes MS milliseconds.
# Every sector written carries a label naming workload, operation, target
# and sector; a mark `opN` follows each operation's completion (`failN` if
# it failed: a write to a full `PO` snapshot), so the log says what was
# acknowledged before every point. The logs show the writes reaching the
# device as whole 4 KiB pages, written back when dd closes it: busybox dd's
# oflag=direct does not take effect here, and its writes go through the
# guest's page cache.
. /jobs/lib.sh
OS=${ARG_osect:?}
CS=${ARG_csect:?}
CH=${ARG_chunk:-8}
W=${ARG_w:-0}
ST=${ARG_store:-P}
dmsetup create lw --table "0 $((OS + CS)) log-writes $ORIG $COW" || fail "create log-writes"
dmsetup create o --table "0 $OS linear /dev/mapper/lw 0" || fail "create origin slice"
if [ "${ARG_cowdelay:-0}" -gt 0 ]; then
    # The COW's writes and flushes held cowdelay ms (reads not): an origin
    # write issued before a commit is durable reaches the log first.
    D=$ARG_cowdelay
    dmsetup create cdl --table "0 $CS delay /dev/mapper/lw $OS 0 /dev/mapper/lw $OS $D /dev/mapper/lw $OS $D" || fail "create cow delay"
    dmsetup create c --table "0 $CS linear /dev/mapper/cdl 0" || fail "create cow slice"
else
    dmsetup create c --table "0 $CS linear /dev/mapper/lw $OS" || fail "create cow slice"
fi
mark() { dmsetup message lw 0 mark "$1" || fail "mark $1"; }
create() {
    dmsetup create snap --table "0 $OS snapshot /dev/mapper/o /dev/mapper/c $ST $CH" || fail "create snap"
    dmsetup create origin --table "0 $OS snapshot-origin /dev/mapper/o" || fail "create origin"
}
remove() {
    dmsetup remove origin || fail "remove origin"
    dmsetup remove snap || fail "remove snap"
}
mark start
create
mark created
dd if="$RES" bs=512 count="${ARG_wsect:-8}" 2>/dev/null | tr -d '\000' > /tmp/workload
dev() { if [ "$1" = o ]; then echo /dev/mapper/origin; else echo /dev/mapper/snap; fi; }
write() { # op target sector count
    awk -v w="$W" -v op="$1" -v t="$2" -v s="$3" -v c="$4" \
        'BEGIN { for (i = 0; i < c; i++) printf "%-511s\n", sprintf("snapsim-label w=%d op=%d t=%s s=%d", w, op, t, s + i) }' > "/tmp/l$1"
    dd if="/tmp/l$1" of="$(dev "$2")" bs=512 seek="$3" count="$4" oflag=direct conv=notrunc 2>/dev/null
    rc=$?
    rm -f "/tmp/l$1"
    return $rc
}
echo "@@WRITING"
n=0
merged=0
batch=0
batch_ops=""
while read -r kind t a b; do
    case $kind in
        P)
            batch=$t
            batch_ops=""
            continue
            ;;
    esac
    n=$((n + 1))
    if [ "$batch" -gt 0 ]; then
        (write "$n" "$t" "$a" "$b" || touch "/tmp/failed$n") &
        batch_ops="$batch_ops $n"
        batch=$((batch - 1))
        if [ "$batch" = 0 ]; then
            wait
            for k in $batch_ops; do
                if [ -e "/tmp/failed$k" ]; then mark "fail$k"; else mark "op$k"; fi
            done
        fi
        continue
    fi
    case $kind in
        w) write "$n" "$t" "$a" "$b" || { mark "fail$n"; continue; } ;;
        # fsync reports an earlier failed writeback (a write a full PO
        # snapshot refused) and then issues no flush: a failed operation.
        f) sync "$(dev "$t")" || { mark "fail$n"; continue; } ;;
        r) remove; create ;;
        m)
            # One disk under both: the origin's flush covers the COW too. The
            # snapshot's fsync fails after a write a full PO snapshot refused.
            sync /dev/mapper/origin || fail "flush origin before merge"
            sync /dev/mapper/snap || echo "@@NOTE the snapshot's fsync reported an earlier failed write"
            remove
            mark merging
            dmsetup create merge --table "0 $OS snapshot-merge /dev/mapper/o /dev/mapper/c $ST $CH" || fail "create merge"
            # Merged when the used sectors fall to the metadata's: `A/T M` with A = M.
            i=0
            while :; do
                set -- $(dmsetup status merge)
                [ "${4%%/*}" = "$5" ] && break
                i=$((i + 1))
                [ $i -lt 6000 ] || fail "merge never finished: $*"
                sleep 0.05
            done
            merged=1
            ;;
        *) fail "unknown operation $kind" ;;
    esac
    mark "op$n"
done < /tmp/workload
echo "@@WRITER_DONE 1"
if [ "$merged" = 1 ]; then
    echo "@@STATUS $(dmsetup status merge)"
    dmsetup remove merge || fail "remove merge"
else
    echo "@@STATUS $(dmsetup status snap)"
    remove
fi
dmsetup remove c || fail "remove cow slice"
[ "${ARG_cowdelay:-0}" -gt 0 ] && { dmsetup remove cdl || fail "remove cow delay"; }
dmsetup remove o || fail "remove origin slice"
echo "@@LOGSTATUS $(dmsetup status lw)"
dmsetup remove lw || fail "remove log-writes"
sync
