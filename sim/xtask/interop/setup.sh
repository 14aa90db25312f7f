#!/usr/bin/env bash
# Prepares what `cargo xtask interop` boots: installs the host packages from
# Debian, unpacks the distribution kernel (never installed, so no initramfs
# or bootloader hooks run), collects the dm-snapshot and virtio modules with
# their dependencies, and builds a small initramfs of busybox, dmsetup and
# the guest scripts in guest/. Idempotent: a re-run reuses $CACHE.
#
# Usage: setup.sh CACHE_DIR        (as root; prints KERNEL=, INITRD=, KVER= at the end)
set -Eeuo pipefail

CACHE=${1:?usage: setup.sh CACHE_DIR}
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS=(qemu-system-x86 busybox-static dmsetup kmod cpio gzip)
WANT_MODULES=(virtio_pci virtio_blk dm_mod dm_bufio dm_snapshot dm_log_writes)
log() { printf '[setup] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, mknod)"
mkdir -p "$CACHE"

# 1. host packages
missing=()
for p in "${PKGS[@]}"; do
    [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)" = "install ok installed" ] || missing+=("$p")
done
updated=0
apt_update() { [ $updated = 1 ] || { log "apt-get update"; apt-get update -qq; updated=1; }; }
if [ ${#missing[@]} -gt 0 ]; then
    apt_update
    log "apt-get install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" > "$CACHE/apt-install.log" 2>&1 \
        || { tail -20 "$CACHE/apt-install.log" >&2; die "apt-get install failed"; }
fi

# 2. the kernel behind linux-image-amd64, unpacked, with the modules we need
KERNEL_PKG=${KERNEL_PKG:-$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')}
if [ -z "$KERNEL_PKG" ]; then
    apt_update
    KERNEL_PKG=$(apt-cache depends linux-image-amd64 | awk '/Depends: linux-image-/{print $2; exit}')
fi
[ -n "$KERNEL_PKG" ] || die "cannot resolve the kernel package behind linux-image-amd64"
mkdir -p "$CACHE/debs"
id _apt > /dev/null 2>&1 && chown _apt "$CACHE/debs" || true
DEB=$(ls -1 "$CACHE/debs/${KERNEL_PKG}"_*.deb 2> /dev/null | tail -1 || true)
if [ -z "$DEB" ]; then
    log "apt-get download $KERNEL_PKG"
    (cd "$CACHE/debs" && apt-get download -q "$KERNEL_PKG") || { apt_update; (cd "$CACHE/debs" && apt-get download -q "$KERNEL_PKG"); }
    DEB=$(ls -1 "$CACHE/debs/${KERNEL_PKG}"_*.deb | tail -1)
fi
KDIR=$CACHE/kernel/${KERNEL_PKG}_$(dpkg-deb -f "$DEB" Version)
if [ ! -f "$KDIR/.done" ]; then
    log "unpacking $(basename "$DEB")"
    rm -rf "$KDIR" "$KDIR.tmp"
    mkdir -p "$KDIR.tmp/x" "$KDIR.tmp/modules"
    X=$KDIR.tmp/x
    dpkg-deb -x "$DEB" "$X"
    VMLINUZ=$(ls -1 "$X"/boot/vmlinuz-* | head -1)
    KVER=${VMLINUZ##*/vmlinuz-}
    if [ ! -d "$X/lib/modules/$KVER" ] && [ -d "$X/usr/lib/modules/$KVER" ]; then ln -s usr/lib "$X/lib"; fi
    # The package's postinst would run depmod; nothing ran it here.
    depmod -b "$X" "$KVER"
    : > "$KDIR.tmp/modules.load"
    for m in "${WANT_MODULES[@]}"; do
        modprobe -d "$X" -S "$KVER" --show-depends "$m" > "$KDIR.tmp/dep" || die "module $m not found in $KVER"
        while read -r kind path _; do
            [ "$kind" = insmod ] || continue
            b=${path##*/}
            b=${b%%.ko*}.ko
            case $path in
                *.ko) cp "$path" "$KDIR.tmp/modules/$b" ;;
                *.ko.xz) xz -dc "$path" > "$KDIR.tmp/modules/$b" ;;
                *.ko.zst) zstd -qdc "$path" > "$KDIR.tmp/modules/$b" ;;
                *.ko.gz) gzip -dc "$path" > "$KDIR.tmp/modules/$b" ;;
                *) die "unknown module format: $path" ;;
            esac
            echo "/lib/modules/$b" >> "$KDIR.tmp/modules.load"
        done < "$KDIR.tmp/dep"
    done
    awk '!seen[$0]++' "$KDIR.tmp/modules.load" > "$KDIR.tmp/m" && mv "$KDIR.tmp/m" "$KDIR.tmp/modules.load"
    cp "$VMLINUZ" "$KDIR.tmp/vmlinuz"
    echo "$KVER" > "$KDIR.tmp/kver"
    rm -rf "$X" "$KDIR.tmp/dep"
    mv "$KDIR.tmp" "$KDIR"
    touch "$KDIR/.done"
fi

# 3. the initramfs: busybox and its applets, dmsetup and its libraries, the
#    modules, and the guest scripts; cached by a hash of its contents
STAGE=$CACHE/stage
rm -rf "$STAGE"
mkdir -p "$STAGE"/{bin,sbin,usr/bin,usr/sbin,dev,proc,sys,tmp,etc,jobs,lib/modules}
cp /bin/busybox "$STAGE/bin/busybox"
/bin/busybox --list-full | while read -r p; do [ -e "$STAGE/$p" ] || ln -s /bin/busybox "$STAGE/$p"; done
DMSETUP=$(command -v dmsetup)
cp -L "$DMSETUP" "$STAGE/sbin/dmsetup"
ldd "$DMSETUP" | awk '/=> \//{print $3} /^[[:space:]]*\/[^ ]+/{print $1}' | sort -u | while read -r lib; do
    mkdir -p "$STAGE$(dirname "$lib")"
    cp -L "$lib" "$STAGE$lib"
done
cp "$KDIR"/modules/*.ko "$STAGE/lib/modules/"
cp "$KDIR/modules.load" "$STAGE/modules.load"
mknod -m 600 "$STAGE/dev/console" c 5 1
mknod -m 666 "$STAGE/dev/null" c 1 3
install -m 755 "$HERE/guest/init" "$STAGE/init"
cp "$HERE"/guest/lib.sh "$STAGE/jobs/lib.sh"
cp "$HERE"/guest/jobs/*.sh "$STAGE/jobs/"
HASH=$(tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$STAGE" -cf - . | sha256sum | cut -c1-16)
INITRD=$CACHE/initramfs-$HASH.cpio.gz
if [ ! -s "$INITRD" ]; then
    log "building $INITRD"
    (cd "$STAGE" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc -R 0:0 --reproducible --quiet) | gzip -6 > "$INITRD.tmp"
    mv "$INITRD.tmp" "$INITRD"
fi
echo "KERNEL=$KDIR/vmlinuz"
echo "INITRD=$INITRD"
echo "KVER=$(cat "$KDIR/kver")"
echo "KERNEL_PACKAGE=$KERNEL_PKG $(dpkg-deb -f "$DEB" Version)"
