#!/usr/bin/env bash
# fetch-deps.sh - host tools for the LIO test VM, plus a stock Debian kernel that is only EXTRACTED (never
# installed on the host) under $PRFLEET_VM_WORK, so QEMU can boot it. Vendored from the SCSI PR test bed.
#
# Needs: root, Debian 12 apt sources (only when something is missing). Idempotent: with everything present it
# does no network access at all (~0.1 s).
#
# Env:
#   PRFLEET_VM_WORK  cache dir for the kernel and the initramfs (default /tmp/prfleet-scsi-vm)
#   KFLAVOUR         Debian kernel flavour (default amd64: has 9p, which the 9p host-root share needs)
set -euo pipefail

WORK=${PRFLEET_VM_WORK:-/tmp/prfleet-scsi-vm}
KFLAVOUR=${KFLAVOUR:-amd64}
mkdir -p "$WORK/debs"
export DEBIAN_FRONTEND=noninteractive
# Other jobs may hold the dpkg lock briefly: wait for it instead of failing.
APT=(apt-get -qq -o DPkg::Lock::Timeout=300)

# qemu-system-x86: the VM; busybox-static: guest userland; sg3-utils: sg_persist (guest smoke checks and the
# benchmark); kmod: modprobe --show-depends on the host; cpio + gzip: initramfs packing.
need=()
for pkg in qemu-system-x86 busybox-static sg3-utils kmod cpio gzip; do
	dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg")
done
updated=0
if [ ${#need[@]} -gt 0 ]; then
	"${APT[@]}" update && updated=1
	"${APT[@]}" install -y --no-install-recommends "${need[@]}" >/dev/null
fi

# A kernel already unpacked is reused as it is (no apt access, works offline).
if [ -f "$WORK/KVER" ] && [ -f "$WORK/kernel-$(cat "$WORK/KVER")/.done" ]; then
	echo "kernel $(cat "$WORK/KVER") already unpacked in $WORK"
	exit 0
fi

# Resolve the versioned package behind the linux-image-$KFLAVOUR meta package and download only that .deb.
resolve() { apt-cache depends "linux-image-$KFLAVOUR" 2>/dev/null | awk '/Depends: linux-image-[0-9]/ { print $2; exit }'; }
kpkg=$(resolve)
if [ -z "$kpkg" ] && [ "$updated" = 0 ]; then
	"${APT[@]}" update
	kpkg=$(resolve)
fi
[ -n "$kpkg" ] || { echo "cannot resolve linux-image-$KFLAVOUR" >&2; exit 1; }
kver=${kpkg#linux-image-}

kdir="$WORK/kernel-$kver"
rm -rf "$kdir"
(cd "$WORK/debs" && apt-get download -qq "$kpkg" 2>/dev/null)
dpkg-deb -x "$WORK"/debs/"${kpkg}"_*.deb "$kdir"
# The .deb ships no modules.dep (its postinst runs depmod): make one for `modprobe --show-depends`.
depmod -b "$kdir" "$kver"
rm -f "$WORK"/debs/"${kpkg}"_*.deb
touch "$kdir/.done"
ln -sfn "kernel-$kver" "$WORK/kernel"
echo "$kver" >"$WORK/KVER"
echo "kernel $kver unpacked in $kdir"
