# The kernel's own workload: a snapshot and its origin, and `writers`
# processes writing at once (so the kernel's copies finish out of order),
# each `writes` random writes of 1-8 sectors at chunk-aligned offsets, three
# in four to the origin and one to the snapshot. The host may kill the
# machine at any point after @@WRITING.
. /jobs/lib.sh
dmsetup create snap --table "$(snapshot_table)" || fail "create snap"
dmsetup create origin --table "0 $SECT snapshot-origin $ORIG" || fail "create origin"
echo "@@WRITING writers=${ARG_writers:-4} writes=${ARG_writes:-50}"
i=1
while [ $i -le "${ARG_writers:-4}" ]; do
    (
        awk -v s="${ARG_seed:-1}" -v i=$i -v n="${ARG_writes:-50}" -v max=$((SECT / 8)) \
            'BEGIN { srand(s * 131 + i); for (k = 0; k < n; k++) printf "%d %d %d\n", int(rand() * max), int(rand() * 8) + 1, int(rand() * 4) }' |
            while read -r chunk sectors target; do
                dev=/dev/mapper/origin
                [ "$target" = 0 ] && dev=/dev/mapper/snap
                dd if=/dev/urandom of=$dev bs=512 seek=$((chunk * 8)) count="$sectors" oflag=direct conv=notrunc 2>/dev/null
            done
        echo "@@WRITER_DONE $i"
    ) &
    i=$((i + 1))
done
wait
echo "@@STATUS $(dmsetup status snap)"
dmsetup remove origin || fail "remove origin"
dmsetup remove snap || fail "remove snap"
sync
