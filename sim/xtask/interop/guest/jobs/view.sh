# Loads the snapshot on the COW, prints its status, copies its view to the
# results disk; with merge=1 then merges it into the origin with
# snapshot-merge and waits for the merge to finish.
. /jobs/lib.sh
if ! dmsetup create snap --table "$(snapshot_table)" 2>/tmp/err; then
    echo "@@STATUS refused: $(tr '\n' ' ' < /tmp/err)"
    exit 0
fi
echo "@@STATUS $(dmsetup status snap)"
if dd if=/dev/mapper/snap of="$RES" bs=64k conv=fsync 2>/dev/null; then echo "@@VIEW ok"; else echo "@@VIEW unreadable"; fi
dmsetup remove snap || fail "remove snap"
if [ "${ARG_merge:-0}" = 1 ]; then
    dmsetup create merge --table "0 $SECT snapshot-merge $ORIG $COW P ${ARG_chunk:-8}" || fail "create merge"
    # Merged when the used sectors fall to the metadata's: `A/T M` with A = M.
    i=0
    while :; do
        set -- $(dmsetup status merge)
        [ "${4%%/*}" = "$5" ] && break
        i=$((i + 1))
        [ $i -lt 6000 ] || fail "merge never finished: $*"
        sleep 0.05
    done
    echo "@@MERGED $(dmsetup status merge)"
    dmsetup remove merge || fail "remove merge"
fi
sync
