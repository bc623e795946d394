#!/usr/bin/env bash
# build-initramfs.sh - pack the LIO test VM's initramfs: static busybox, guest/* (as /init and /testbed/), the
# kernel modules for LIO + tcm_loop + sg + 9p + overlay (dependencies resolved with `modprobe --show-depends`
# on the unpacked Debian kernel) and sg3-utils with their libraries. Vendored from the SCSI PR test bed.
#
# Run fetch-deps.sh first. Output: $PRFLEET_VM_WORK/initramfs.cpio.gz (written atomically: parallel runs are
# safe). ~1 s.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
WORK=${PRFLEET_VM_WORK:-/tmp/prfleet-scsi-vm}
KVER=$(cat "$WORK/KVER")
KDIR=$(readlink -f "$WORK/kernel") # resolved: module paths are compared as prefixes
ROOT=$(mktemp -d "$WORK/root.XXXXXX")
trap 'rm -rf "$ROOT"' EXIT

mkdir -p "$ROOT"/{bin,sbin,dev,proc,sys,tmp,run,etc/testbed,mnt,testbed,usr/bin,"lib/modules/$KVER"}
ln -s ../bin "$ROOT/usr/sbin"
# LIO's db_root (/etc/target if it exists at module load, else /var/target): PR OUT rewrites
# <db_root>/pr/aptpl_<unit serial> on EVERY registration change, even with APTPL=0, and answers CHECK CONDITION
# NOT READY (LOGICAL UNIT COMMUNICATION FAILURE) when that write fails, although the registration was applied.
mkdir -p "$ROOT/etc/target/pr" "$ROOT/var/target/pr"

cp /bin/busybox "$ROOT/bin/busybox"

# Loaded at boot, in dependency order. Copied but loaded only by check-changer.sh: scsi_debug (a changer-type
# device, ptype=8) and target_core_pscsi (to try exporting it through LIO).
# No sd_mod: the LUs are disks, and sd would scan each one (READ CAPACITY, partition table) for nothing.
# target_core_user (with uio): the TCM-User backstore behind the medium changer LU (test/lio/tcmu-changer.c).
BOOT_MODULES="configfs target_core_mod target_core_file target_core_iblock target_core_user tcm_loop sg"
BOOT_MODULES="$BOOT_MODULES virtio_pci 9pnet_virtio 9p overlay"
EXTRA_MODULES="scsi_debug target_core_pscsi"
: >"$ROOT/etc/testbed/modules.list"
: >"$ROOT/etc/testbed/extra-modules.list"
copy_mod() { # $1 = absolute .ko path inside $KDIR; prints its path relative to the modules dir
	local rel=${1#"$KDIR/lib/modules/$KVER/"}
	mkdir -p "$ROOT/lib/modules/$KVER/$(dirname "$rel")"
	cp "$1" "$ROOT/lib/modules/$KVER/$rel"
	echo "$rel"
}
add_modules() { # $1 = list file, rest = module names
	local list=$1
	shift
	for m in "$@"; do
		modprobe -d "$KDIR" -S "$KVER" --show-depends "$m" |
			awk '$1 == "insmod" { print $2 }' |
			while read -r ko; do
				rel=$(copy_mod "$(readlink -f "$ko")")
				grep -qxF "$rel" "$ROOT/etc/testbed/modules.list" "$list" 2>/dev/null || echo "$rel" >>"$list"
			done
	done
}
# shellcheck disable=SC2086
add_modules "$ROOT/etc/testbed/modules.list" $BOOT_MODULES
# shellcheck disable=SC2086
add_modules "$ROOT/etc/testbed/extra-modules.list" $EXTRA_MODULES

# Dynamically linked binaries: the binary and every library ldd resolves, at the same absolute paths.
copy_with_libs() { # $1 = binary, $2 = destination dir in $ROOT
	local bin=$1 dest=$2
	mkdir -p "$ROOT$dest"
	cp -L "$bin" "$ROOT$dest/"
	ldd "$bin" | awk '/=> \// { print $3 } /^\t\/lib/ { print $1 }' |
		while read -r lib; do
			mkdir -p "$ROOT$(dirname "$lib")"
			[ -e "$ROOT$lib" ] || cp -L "$lib" "$ROOT$lib"
		done
}
for b in sg_persist sg_inq sg_raw sg_turs; do
	copy_with_libs "$(command -v $b)" /usr/bin
done
mkdir -p "$ROOT/lib64"
cp -L /lib64/ld-linux-x86-64.so.2 "$ROOT/lib64/"

cp "$HERE/guest/init.sh" "$ROOT/init"
cp "$HERE"/guest/*.sh "$ROOT/testbed/"
chmod 755 "$ROOT/init" "$ROOT"/testbed/*.sh

OUTF="$WORK/initramfs.cpio.gz"
(cd "$ROOT" && find . -print0 | cpio --null -o -H newc -R 0:0 --quiet | gzip -1 >"$OUTF.tmp.$$")
mv -f "$OUTF.tmp.$$" "$OUTF"
echo "initramfs: $(du -h "$OUTF" | cut -f1) ($OUTF), $(wc -l <"$ROOT/etc/testbed/modules.list") boot modules"
