#!/bin/sh
# scenario-exec.sh - run a HOST script inside the VM, against the VM's SCSI devices, copying nothing into the
# initramfs (vendored from the SCSI PR test bed):
#   the host root is mounted read-only over 9p (/mnt/host); a tmpfs overlay makes it writable (writes vanish
#   with the VM); the guest's /dev (with the sg nodes), proc, sys and configfs are mounted into it; the out dir
#   (run-vm.sh OUT=, read-write 9p) is mounted at its host path; then the script runs chrooted.
# The script comes from the kernel command line (testbed.exec=/abs/script, no spaces). Its environment:
# SG_A / SG_B = the sg nodes of nexus 1 and 2, SG_DEVS = all of them in TPG order, TESTBED_OUT = the out dir,
# CI passed through.
. /testbed/lib.sh
EXEC=$(sed -n 's/.*testbed\.exec=\([^ ]*\).*/\1/p' /proc/cmdline)
[ -n "$EXEC" ] || { echo "no testbed.exec= on the kernel command line"; exit 1; }
[ -x /mnt/host/bin/sh ] || { echo "host root not mounted (run-vm.sh with SHARE=/)"; exit 1; }
A=$(sg_of_target 1) B=$(sg_of_target 2)
SG_DEVS=""
t=1
while sg=$(sg_of_target $t); do SG_DEVS="$SG_DEVS${SG_DEVS:+ }$sg"; t=$((t + 1)); done

NEW=/newroot
mkdir -p /tmp/ovl/upper /tmp/ovl/work $NEW
if ! mount -t overlay overlay -o lowerdir=/mnt/host,upperdir=/tmp/ovl/upper,workdir=/tmp/ovl/work $NEW; then
	echo "overlayfs failed; using the read-only 9p root with a tmpfs /tmp"
	mount --bind /mnt/host $NEW
	mount -t tmpfs tmpfs $NEW/tmp
fi
mount --bind /dev $NEW/dev
mount -t proc proc $NEW/proc
mount -t sysfs sysfs $NEW/sys
# configfs: guest code recreates the LIO LU between conformance scenarios.
mount -t configfs configfs $NEW/sys/kernel/config
mount -t tmpfs tmpfs $NEW/run
mount -t tmpfs tmpfs $NEW/dev/shm 2>/dev/null
if [ -n "${TESTBED_OUT:-}" ] && grep -q ' /mnt/out ' /proc/mounts; then
	mkdir -p "$NEW$TESTBED_OUT" && mount --bind /mnt/out "$NEW$TESTBED_OUT"
fi
echo "exec (chroot host root): $EXEC SG_DEVS='$SG_DEVS'"
chroot $NEW /usr/bin/env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin \
	HOME=/root TERM=dumb CI="${CI:-}" SG_A="$A" SG_B="$B" SG_DEVS="$SG_DEVS" TESTBED_OUT="${TESTBED_OUT:-}" \
	/bin/sh "$EXEC"
