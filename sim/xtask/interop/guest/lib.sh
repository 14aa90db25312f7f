# Sourced by the jobs: the disks by serial, the job's arguments from the
# kernel command line (ARG_chunk, ARG_store, ...), and device helpers.
export DM_DISABLE_UDEV=1 # no udev: libdevmapper makes the /dev/mapper nodes itself
for a in $(cat /proc/cmdline); do
    case $a in
        *=*) k=${a%%=*}; case $k in *[!a-z_]*) ;; *) eval "ARG_$k=\${a#*=}" ;; esac ;;
    esac
done
devbyserial() {
    for d in /sys/block/vd*; do
        [ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && { echo "/dev/${d##*/}"; return 0; }
    done
    return 1
}
fail() { echo "@@FAIL $*"; dmesg | tail -20 | sed 's/^/@@DMESG /'; exit 1; }
ORIG=$(devbyserial origin) || fail "no origin disk"
COW=$(devbyserial cow) || fail "no cow disk"
RES=$(devbyserial results) || fail "no results disk"
SECT=$(blockdev --getsz "$ORIG")
# The snapshot's table, then the origin's: snapshot-origin learns the chunk
# size it splits writes at when it is resumed, so it must come second (or
# be suspended and resumed), else a write spanning chunks preserves only
# its first chunk.
snapshot_table() { echo "0 $SECT snapshot $ORIG $COW ${ARG_store:-P} ${ARG_chunk:-8}"; }
