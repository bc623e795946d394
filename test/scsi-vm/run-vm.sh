#!/usr/bin/env bash
# run-vm.sh - boot the LIO test VM once, run guest scenarios, exit with their status. Vendored from the SCSI PR
# test bed.
#
#   ./run-vm.sh [scenario[,scenario...]]     scenarios: guest/scenario-<name>.sh; default sg-persist
#     sg-persist      PR walk-through with sg_persist (smoke check of LIO itself)
#     exec            run a HOST script in a chroot of the host root (needs SHARE=/ and
#                     EXTRA_APPEND=testbed.exec=/abs/script)
#     check-changer   can LIO export a medium-changer (PDT 08h) LU with PR? (prints the answer)
#     none            boot + LIO setup only
#
# The serial console is the only channel back unless OUT is set: every line is echoed (with a host-side
# timestamp unless STAMP=0); the guest's "TESTBED-RESULT rc=N" line becomes the exit status (125: no such line,
# i.e. boot failure or timeout).
#
# Env:
#   PRFLEET_VM_WORK  kernel + initramfs cache (default /tmp/prfleet-scsi-vm)
#   ACCEL            tcg (default) | kvm (needs a KVM that runs a stock kernel; this machine's PVM does not)
#   SMP              vCPUs (default 2)
#   MEM              guest RAM in MiB (default 1024: node + server + agent in the guest)
#   SHARE            host directory exported read-only over 9p (tag host; SHARE=/ for scenario exec)
#   OUT              host directory exported READ-WRITE over 9p (tag out); the exec scenario mounts it at the
#                    same path inside the chroot, so guest code can write results and transcripts there
#   NEXUSES          initiator nexuses (tcm_loop TPGs) onto the LU (default 3)
#   TIMEOUT          hard limit in seconds (default 600)
#   LOG              also append the console log here
#   EXTRA_APPEND     extra kernel command-line words (testbed.exec=..., testbed.debug=1)
#   STAMP=0          print guest lines unprefixed
#   INTERACTIVE=1    console on this terminal, shell in the guest at the end (Ctrl-A x quits)
set -uo pipefail

WORK=${PRFLEET_VM_WORK:-/tmp/prfleet-scsi-vm}
KVER=$(cat "$WORK/KVER")
RUN=${1:-sg-persist}
ACCEL=${ACCEL:-tcg}
SMP=${SMP:-2}
MEM=${MEM:-1024}
TIMEOUT=${TIMEOUT:-600}
LOG=${LOG:-/dev/null}
NEXUSES=${NEXUSES:-3}

args=(
	-M pc -m "$MEM" -smp "$SMP"
	-nodefaults -no-user-config -display none -serial stdio -monitor none
	-no-reboot
	-kernel "$WORK/kernel/boot/vmlinuz-$KVER"
	-initrd "$WORK/initramfs.cpio.gz"
)
# shellcheck disable=SC2054  # the commas are qemu option syntax
case "$ACCEL" in
# -arch-capabilities: a nested KVM may reject MSR 0x10a otherwise (qemu abort).
kvm) args+=(-accel kvm -cpu host,-arch-capabilities) ;;
*) args+=(-accel tcg,thread=multi -cpu max) ;;
esac
append="console=ttyS0 panic=-1 quiet loglevel=4 mitigations=off tsc=reliable testbed.run=$RUN testbed.nexuses=$NEXUSES"
if [ -n "${SHARE:-}" ]; then
	# multidevs=remap: the export may span several host filesystems (SHARE=/).
	args+=(-virtfs "local,path=$SHARE,mount_tag=host,security_model=none,readonly=on,multidevs=remap")
	append="$append testbed.share=1"
fi
if [ -n "${OUT:-}" ]; then
	mkdir -p "$OUT"
	args+=(-virtfs "local,path=$OUT,mount_tag=out,security_model=none")
	append="$append testbed.out=$OUT"
fi
append="$append ${EXTRA_APPEND:-}"

if [ "${INTERACTIVE:-0}" = 1 ]; then
	args=("${args[@]/#stdio/mon:stdio}")
	exec qemu-system-x86_64 "${args[@]}" -append "$append testbed.shell=1"
fi

start=$EPOCHREALTIME
rc_line=""
while IFS= read -r line; do
	line=${line%$'\r'}
	if [ "${STAMP:-1}" = 0 ]; then
		printf '%s\n' "$line" | tee -a "$LOG"
	else
		printf '[%7.3f] %s\n' "$(awk "BEGIN{print $EPOCHREALTIME-$start}")" "$line" | tee -a "$LOG"
	fi
	case "$line" in TESTBED-RESULT*) rc_line=$line ;; esac
done < <(timeout "$TIMEOUT" qemu-system-x86_64 "${args[@]}" -append "$append" 2>&1 </dev/null)
total=$(awk "BEGIN{printf \"%.2f\", $EPOCHREALTIME-$start}")
if [ -z "$rc_line" ]; then
	echo "run-vm: no TESTBED-RESULT line (boot failure or timeout after ${total}s)" | tee -a "$LOG"
	exit 125
fi
rc=${rc_line#*rc=}
echo "run-vm: accel=$ACCEL smp=$SMP mem=${MEM}M wall=${total}s result rc=$rc" | tee -a "$LOG"
exit "$rc"
