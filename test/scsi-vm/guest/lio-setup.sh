#!/bin/sh
# Vendored from the SCSI PR test bed. test/lio/guest/lio-configfs.ts recreates the same LU from Node
# (same names) to give every conformance scenario a fresh PR state; keep the two in step.
# lio-setup.sh - build the LIO (kernel SCSI target) topology inside the VM.
#
#   backstore  core/rd_mcp_0/pr_lun     (16 MiB ramdisk; testbed.backstore=fileio
#                                        uses a file on tmpfs, target_core_file)
#   fabric     loopback/naa.5001405000000001 (tcm_loop = one virtual SCSI HBA)
#                tpgt_1  nexus naa.50014050000000a1  lun_0 -> pr_lun
#                tpgt_2  nexus naa.50014050000000a2  lun_0 -> pr_lun
#
# Each TPG has its own I_T nexus (initiator port naa.…a1 / naa.…a2, target
# port tpgt_1 / tpgt_2), so the guest sees the SAME logical unit twice, as
# SCSI target 1 and target 2 on the tcm_loop host: two /dev/sg nodes that
# LIO's SPC-3 persistent-reservation code treats as two different initiators.
#
# Order matters: tcm_loop scans the LUN when it is linked, and the scan only
# succeeds once the TPG's nexus exists, so write `nexus` before linking.
#
# Kernel command line knobs: testbed.nexuses=N (default 3, max 9 here) adds
# TPGs 1..N, all onto the same LUN (one per simulated host agent);
# testbed.backstore=fileio switches the backstore.
set -e
CFS=/sys/kernel/config/target
WWN=naa.5001405000000001
BACKSTORE=rd NEXUSES=3
for arg in $(cat /proc/cmdline); do
	case "$arg" in
	testbed.backstore=*) BACKSTORE=${arg#testbed.backstore=} ;;
	testbed.nexuses=*) NEXUSES=${arg#testbed.nexuses=} ;;
	esac
done

[ -d "$CFS" ] || { echo "configfs target dir missing" >&2; exit 1; }

if [ "$BACKSTORE" = fileio ]; then
	HBA=$CFS/core/fileio_0/pr_lun
	mkdir -p "$HBA"
	echo "fd_dev_name=/tmp/pr_lun.img,fd_dev_size=16777216" >"$HBA/control"
else
	HBA=$CFS/core/rd_mcp_0/pr_lun
	mkdir -p "$HBA"
	echo "rd_pages=4096" >"$HBA/control" # 4096 x 4 KiB = 16 MiB
fi
echo 1 >"$HBA/enable"
echo testbed-pr-lun-0001 >"$HBA/wwn/vpd_unit_serial"
# attrib/emulate_pr defaults to 1 (SPC-3 PR emulation on); show it for the log.
echo "emulate_pr=$(cat "$HBA/attrib/emulate_pr" 2>/dev/null || echo '?')" \
	"pgr_support=$(cat "$HBA/attrib/pgr_support" 2>/dev/null || echo '?')"

mkdir -p "$CFS/loopback/$WWN"
for t in $(seq 1 "$NEXUSES"); do
	TPG=$CFS/loopback/$WWN/tpgt_$t
	mkdir -p "$TPG"
	echo "naa.50014050000000a$t" >"$TPG/nexus"
	mkdir -p "$TPG/lun/lun_0"
	ln -s "$HBA" "$TPG/lun/lun_0/pr_lun"
done

# devtmpfs creates /dev/sgN asynchronously after the scan; wait for all.
i=0
while [ "$(ls /sys/class/scsi_generic 2>/dev/null | wc -l)" -lt "$NEXUSES" ]; do
	i=$((i + 1))
	[ $i -gt 100 ] && { echo "sg nodes did not appear" >&2; exit 1; }
	sleep 0.1
done
. /testbed/lib.sh
for t in $(seq 1 "$NEXUSES"); do
	sg=$(sg_of_target "$t")
	while [ ! -c "$sg" ]; do sleep 0.05; done
	echo "tpgt_$t -> $sg ($(sg_hctl "$sg"))"
done
