#!/bin/busybox sh
# /init (PID 1) of the LIO test VM (vendored from the SCSI PR test bed).
#
# 1. mounts proc/sys/devtmpfs/configfs, brings up lo, loads the modules listed in /etc/testbed/modules.list
#    (dependency order, generated at build time), mounts the 9p shares (host root read-only, out read-write);
# 2. builds the LIO target (lio-setup.sh): one rd_mcp ramdisk LU exported through tcm_loop TPGs 1..N, i.e. N
#    /dev/sg nodes = N distinct initiator I_T nexuses onto ONE logical unit;
# 3. runs the scenarios named on the kernel command line (testbed.run=a,b,...) from /testbed/scenario-*.sh;
# 4. prints "TESTBED-RESULT rc=N" and powers off (qemu -no-reboot exits).
#
# Kernel command line: testbed.run=, testbed.share=1, testbed.out=<host path>, testbed.nexuses=N,
# testbed.debug=1 (sh -x), testbed.shell=1 (shell on the console at the end).

export PATH=/bin:/sbin:/usr/bin:/usr/sbin
/bin/busybox --install -s /bin

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
mkdir -p /dev/pts && mount -t devpts devpts /dev/pts
# Loopback only: the guest has no network, but the prfleet server, agent and client talk gRPC over 127.0.0.1.
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up

up() { cut -d' ' -f1 /proc/uptime; }
log() { echo "TESTBED[$(up)] $*"; }
log "init start (kernel $(uname -r))"

RUN=sg-persist SHARE=0 OUT= SHELL_AT_END=0 SHX=
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	testbed.run=*) RUN=${arg#testbed.run=} ;;
	testbed.share=*) SHARE=${arg#testbed.share=} ;;
	testbed.out=*) OUT=${arg#testbed.out=} ;;
	testbed.shell=*) SHELL_AT_END=${arg#testbed.shell=} ;;
	testbed.debug=1) SHX=-x ;;
	esac
done
export TESTBED_OUT=$OUT

KVER=$(uname -r)
while read -r mod args; do
	[ -n "$mod" ] || continue
	# shellcheck disable=SC2086  # $args are module parameters
	insmod "/lib/modules/$KVER/$mod" $args || log "insmod $mod failed"
done </etc/testbed/modules.list
mount -t configfs configfs /sys/kernel/config
# No modprobe in the guest: everything is insmod-ed above. target_core_mod asks for every backstore plugin;
# make those request_module() calls succeed quietly.
echo /bin/true >/proc/sys/kernel/modprobe
log "modules loaded"

if [ "$SHARE" = 1 ]; then
	mkdir -p /mnt/host
	# cache=loose: the share is read-only for the guest and nobody relies on seeing host changes during a run;
	# caching dentries and pages cuts node's start (thousands of stat/open calls) from about a minute to seconds.
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000,ro,cache=loose host /mnt/host &&
		log "9p share mounted on /mnt/host"
fi
if [ -n "$OUT" ]; then
	mkdir -p /mnt/out
	mount -t 9p -o trans=virtio,version=9p2000.L,msize=512000 out /mnt/out && log "9p out dir mounted on /mnt/out"
fi

rc=0
case ",$RUN," in
*,none,*) ;;
*,check-changer,*) ;; # builds its own LUs
*)
	sh $SHX /testbed/lio-setup.sh || rc=$?
	log "LIO ready rc=$rc"
	;;
esac

if [ "$rc" = 0 ]; then
	for s in $(echo "$RUN" | tr ',' ' '); do
		[ "$s" = none ] && continue
		log "scenario $s: start"
		sh $SHX "/testbed/scenario-$s.sh"
		src=$?
		log "scenario $s: end rc=$src"
		[ "$src" = 0 ] || rc=$src
	done
fi

log "all done"
echo "TESTBED-RESULT rc=$rc"
if [ "$SHELL_AT_END" = 1 ]; then
	setsid cttyhack sh
fi
sync
poweroff -f
