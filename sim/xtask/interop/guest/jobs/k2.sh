# Kernel behaviour K2 on the real kernel: a snapshot read mapped to the
# origin is still in flight when the snapshot is invalidated, and an origin
# write then reaches the chunk it reads. The origin sits under dm-delay with
# reads held delay_ms and writes passed at once, so the read is in flight
# for certain. A "P" snapshot of 4 KiB chunks on a COW of four chunks
# (header, area 0, two data chunks) fills with origin chunks 0 and 1; a
# write to chunk 3 finds it full and invalidates it; then chunk 5, which the
# read is reading, is written. The stock kernel writes it at once and the
# read returns the new data; a kernel that waits for the read returns the
# old. Prints @@K2 read=old|new|other write_first=yes|no.
. /jobs/lib.sh
D=${ARG_delay_ms:-1500}
dd if="$ORIG" of=/tmp/old bs=4096 skip=5 count=1 iflag=direct 2>/dev/null || fail "read origin chunk 5"
dd if=/dev/urandom of=/tmp/new bs=4096 count=1 2>/dev/null
cmp -s /tmp/old /tmp/new && fail "the new data equals the old"
dmsetup create dly --table "0 $SECT delay $ORIG 0 $D $ORIG 0 0" || fail "create delay"
dmsetup create smallcow --table "0 32 linear $COW 0" || fail "create smallcow"
dmsetup create snap --table "0 $SECT snapshot /dev/mapper/dly /dev/mapper/smallcow P 8" || fail "create snap"
dmsetup create origin --table "0 $SECT snapshot-origin /dev/mapper/dly" || fail "create origin"
wo() { dd if=/dev/urandom of=/dev/mapper/origin bs=4096 seek="$1" count=1 oflag=direct conv=notrunc 2>/dev/null || fail "write origin chunk $1"; }
wo 0
wo 1
echo "@@STATUS_FULL $(dmsetup status snap)"
(dd if=/dev/mapper/snap of=/tmp/read bs=4096 skip=5 count=1 iflag=direct 2>/dev/null && touch /tmp/read.done) &
sleep 0.5
[ -e /tmp/read.done ] && fail "the snapshot read finished within 0.5 s: delay_ms=$D does not hold it"
wo 3
echo "@@STATUS $(dmsetup status snap)"
dd if=/tmp/new of=/dev/mapper/origin bs=4096 seek=5 count=1 oflag=direct conv=notrunc 2>/dev/null || fail "write origin chunk 5"
first=yes
[ -e /tmp/read.done ] && first=no
wait
[ -e /tmp/read.done ] || fail "the snapshot read failed"
read=other
cmp -s /tmp/read /tmp/old && read=old
cmp -s /tmp/read /tmp/new && read=new
echo "@@K2 read=$read write_first=$first"
dmsetup remove origin || fail "remove origin"
dmsetup remove snap || fail "remove snap"
dmsetup remove smallcow || fail "remove smallcow"
dmsetup remove dly || fail "remove delay"
sync
