#!/usr/bin/env bash
# Prepares what `cargo xtask interop` boots: installs the host packages from
# Debian, unpacks the distribution kernel (never installed, so no initramfs
# or bootloader hooks run), collects the dm-snapshot and virtio modules with
# their dependencies, and builds a small initramfs of busybox, dmsetup and
# the guest scripts in guest/. Idempotent: a re-run reuses $CACHE.
#
# With PATCHES_DIR, dm-snapshot.ko is built from source instead: Debian's
# linux-source package of exactly the kernel image's version, its
# drivers/md with the *.patch files of PATCHES_DIR applied in name order
# (patch -p1, as `git format-patch` writes them), built out of tree against
# the matching linux-headers package, and put in the initramfs in place of
# the stock module. The build is cached by the version and the patches'
# contents. A patch that does not apply, or a module that does not build,
# ends the script with exit status 3 and the reason; it never falls back to
# the stock module.
#
# Usage: setup.sh CACHE_DIR [PATCHES_DIR]
#   (as root; prints KERNEL=, INITRD=, KVER=, KERNEL_PACKAGE=, MODULE=,
#    SRCVERSION= at the end)
set -Eeuo pipefail

CACHE=${1:?usage: setup.sh CACHE_DIR [PATCHES_DIR]}
PATCHES=${2:-}
HERE=$(cd "$(dirname "$0")" && pwd)
PKGS=(qemu-system-x86 busybox-static dmsetup kmod cpio gzip)
WANT_MODULES=(virtio_pci virtio_blk dm_mod dm_bufio dm_snapshot dm_log_writes dm_delay)
log() { printf '[setup] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }
# A patch series that cannot be applied or built: the caller's input is at fault.
refuse() { log "error: $*"; exit 3; }
[ "$(id -u)" = 0 ] || die "run as root (apt-get, mknod)"
if [ -n "$PATCHES" ]; then
    [ -d "$PATCHES" ] || refuse "--patches $PATCHES: not a directory"
    PATCHES=$(cd "$PATCHES" && pwd)
    ls "$PATCHES"/*.patch > /dev/null 2>&1 || refuse "--patches $PATCHES: no *.patch file in it"
    PKGS+=(make gcc patch xz-utils)
fi
mkdir -p "$CACHE"
CACHE=$(cd "$CACHE" && pwd)    # kbuild's M= wants an absolute path

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
# Keyed by the modules wanted too: a new one unpacks the kernel again.
KDIR=$CACHE/kernel/${KERNEL_PKG}_$(dpkg-deb -f "$DEB" Version)_$(echo "${WANT_MODULES[*]}" | sha256sum | cut -c1-8)
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

# 3. with PATCHES: dm-snapshot.ko from Debian's source of this very kernel
KVERSION=$(dpkg-deb -f "$DEB" Version)
KVER_NOW=$(cat "$KDIR/kver")
MODULE=stock
SNAP_KO=$KDIR/modules/dm-snapshot.ko
if [ -n "$PATCHES" ]; then
    SERIES=${KVER_NOW%%-*}               # 6.1.0 -> linux-source-6.1
    SRC_PKG=linux-source-${SERIES%.*}
    HDR_PKG=linux-headers-$KVER_NOW
    for p in "$SRC_PKG" "$HDR_PKG"; do
        have=$(dpkg-query -W -f='${Status} ${Version}' "$p" 2>/dev/null || true)
        if [ "$have" != "install ok installed $KVERSION" ]; then
            apt_update
            log "apt-get install $p=$KVERSION"
            DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$p=$KVERSION" >> "$CACHE/apt-install.log" 2>&1 \
                || { tail -20 "$CACHE/apt-install.log" >&2; die "apt-get install $p=$KVERSION failed: the module must be built from the kernel image's own version"; }
        fi
    done
    TARBALL=/usr/src/$SRC_PKG.tar.xz
    HEADERS=/usr/src/linux-headers-$KVER_NOW
    [ -f "$TARBALL" ] || die "$SRC_PKG installed no $TARBALL"
    [ -d "$HEADERS" ] || die "$HDR_PKG installed no $HEADERS"
    PRISTINE=$CACHE/module-src/$SRC_PKG-$KVERSION
    if [ ! -f "$PRISTINE/.done" ]; then
        log "unpacking drivers/md of $(basename "$TARBALL") ($KVERSION)"
        rm -rf "$PRISTINE" && mkdir -p "$PRISTINE"
        tar -xJf "$TARBALL" -C "$PRISTINE" --strip-components=1 "$SRC_PKG/drivers/md"
        touch "$PRISTINE/.done"
    fi
    # The build's key: the source version and every patch, by name and content.
    KEY=$( { echo "$KVERSION"; for f in "$PATCHES"/*.patch; do echo "${f##*/}"; sha256sum < "$f"; done; } | sha256sum | cut -c1-16)
    BUILD=$CACHE/module-build/$KEY
    if [ ! -f "$BUILD/.done" ]; then
        rm -rf "$BUILD" && mkdir -p "$BUILD"
        cp -a "$PRISTINE/drivers" "$BUILD/"
        for f in "$PATCHES"/*.patch; do
            log "applying ${f##*/}"
            if ! patch -p1 --batch --forward --no-backup-if-mismatch -d "$BUILD" -i "$f" > "$BUILD/patch.log" 2>&1; then
                cat "$BUILD/patch.log" >&2
                refuse "${f##*/} does not apply to drivers/md of $SRC_PKG $KVERSION"
            fi
        done
        # Only dm-snapshot.ko: the Kbuild file takes precedence over the directory's Makefile.
        printf 'obj-m := dm-snapshot.o\ndm-snapshot-y := dm-snap.o dm-exception-store.o dm-snap-transient.o dm-snap-persistent.o\n' > "$BUILD/drivers/md/Kbuild"
        log "building dm-snapshot.ko against $HDR_PKG"
        # CONFIG_MODULE_SRCVERSION_ALL=y: modpost records the sources'
        # digest (srcversion), which the guest reads back from sysfs.
        if ! make -C "$HEADERS" M="$BUILD/drivers/md" -j"$(nproc)" CONFIG_MODULE_SRCVERSION_ALL=y modules > "$BUILD/build.log" 2>&1; then
            grep -E 'error|Error' "$BUILD/build.log" | head -20 >&2
            refuse "dm-snapshot.ko does not build with the patches of $PATCHES (log: $BUILD/build.log)"
        fi
        [ -f "$BUILD/drivers/md/dm-snapshot.ko" ] || refuse "the build made no dm-snapshot.ko (log: $BUILD/build.log)"
        touch "$BUILD/.done"
    fi
    SNAP_KO=$BUILD/drivers/md/dm-snapshot.ko
    MODULE="patched"
    for f in "$PATCHES"/*.patch; do MODULE="$MODULE ${f##*/}:$(sha256sum < "$f" | cut -c1-12)"; done
fi
# Debian builds its modules without srcversion: the stock one has none.
SRCVERSION=$(modinfo -F srcversion "$SNAP_KO" 2> /dev/null || true)
SNAP_SHA=$(sha256sum < "$SNAP_KO" | cut -c1-16)

# 4. the initramfs: busybox and its applets, dmsetup and its libraries, the
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
cp "$SNAP_KO" "$STAGE/lib/modules/dm-snapshot.ko"
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
echo "KERNEL_PACKAGE=$KERNEL_PKG $KVERSION"
echo "MODULE=$MODULE"
echo "SRCVERSION=${SRCVERSION:-none}"
echo "MODULE_SHA256=$SNAP_SHA"
