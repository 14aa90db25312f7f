# Loads crash states in the kernel, one after another: the origin disk
# holds them side by side, each an origin slice then a COW slice; the
# results disk lists them, one a line: `INDEX OFFSET ORIGIN_SECTORS
# COW_SECTORS CHUNK_SECTORS [STORE]` (STORE `P` or `PO`, default `P`). For each, prints the snapshot's status line
# (`@@S<INDEX>`) and the md5 of its view (`@@V<INDEX>`), or why the kernel
# refused it.
. /jobs/lib.sh
dd if="$RES" bs=512 count="${ARG_msect:-8}" 2>/dev/null | tr -d '\000' > /tmp/manifest
echo "@@WRITING"
while read -r i off os cs ch st; do
    dmsetup create "o$i" --table "0 $os linear $ORIG $off" || fail "create origin slice $i"
    dmsetup create "c$i" --table "0 $cs linear $ORIG $((off + os))" || fail "create cow slice $i"
    if dmsetup create "s$i" --table "0 $os snapshot /dev/mapper/o$i /dev/mapper/c$i ${st:-P} $ch" 2>/tmp/err; then
        echo "@@S$i $(dmsetup status "s$i")"
        if dd if="/dev/mapper/s$i" of=/tmp/view bs=512 count="$os" 2>/dev/null; then
            set -- $(md5sum /tmp/view)
            echo "@@V$i $1"
        else
            echo "@@V$i unreadable"
        fi
        rm -f /tmp/view
        dmsetup remove "s$i" || fail "remove snapshot $i"
    else
        echo "@@S$i refused: $(tr '\n' ' ' < /tmp/err)"
    fi
    dmsetup remove "c$i" || fail "remove cow slice $i"
    dmsetup remove "o$i" || fail "remove origin slice $i"
done < /tmp/manifest
echo "@@WRITER_DONE 1"
