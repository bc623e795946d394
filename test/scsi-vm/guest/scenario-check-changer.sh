#!/bin/sh
# scenario-check-changer.sh - can LIO export a MEDIUM CHANGER (PDT 08h) LU with persistent reservations?
#   rd_mcp / fileio / iblock backstores are disks (PDT 00h, sbc_get_device_type); only pscsi passes a real
#   device's type through. So: make a changer-type SCSI device with scsi_debug (ptype=8), export it with a pscsi
#   backstore through tcm_loop, and send PRIN READ KEYS / PROUT REGISTER to the exported LU.
# Prints one line "CHANGER-CHECK pdt=<type seen through LIO> readkeys=<result> register=<result>".
. /testbed/lib.sh
KVER=$(uname -r)
while read -r mod; do
	case "$mod" in
	*/scsi_debug.ko) insmod "/lib/modules/$KVER/$mod" ptype=8 ;;
	*) insmod "/lib/modules/$KVER/$mod" ;;
	esac
done </etc/testbed/extra-modules.list
i=0
while [ -z "$(ls /sys/bus/pseudo/drivers/scsi_debug/adapter0/ 2>/dev/null | grep host)" ] && [ $i -lt 50 ]; do
	i=$((i + 1)); sleep 0.1
done
dbg=$(scsi_host_of scsi_debug) || { echo "CHANGER-CHECK scsi_debug did not load"; exit 1; }
sleep 0.5
for s in /sys/class/scsi_generic/sg*; do
	case "$(basename "$(readlink "$s/device")")" in "$dbg":*) DBG_SG=/dev/${s##*/}; DBG_HCTL=$(basename "$(readlink "$s/device")") ;; esac
done
echo "scsi_debug changer: $DBG_SG ($DBG_HCTL) type=$(cat /sys/class/scsi_generic/${DBG_SG#/dev/}/device/type)"
echo "+ direct to scsi_debug: $(sg_persist -n --in --read-keys "$DBG_SG" 2>&1 | head -1)"

CFS=/sys/kernel/config/target
mkdir -p "$CFS/core/pscsi_0/changer" || { echo "CHANGER-CHECK pscsi backstore not available"; exit 1; }
H=${DBG_HCTL%%:*} rest=${DBG_HCTL#*:} C=${rest%%:*} rest=${rest#*:} T=${rest%%:*} L=${rest#*:}
echo "scsi_host_id=$H,scsi_channel_id=$C,scsi_target_id=$T,scsi_lun_id=$L" >"$CFS/core/pscsi_0/changer/control"
echo "$DBG_SG" >"$CFS/core/pscsi_0/changer/udev_path"
echo 1 >"$CFS/core/pscsi_0/changer/enable" || { dmesg | tail -5; echo "CHANGER-CHECK pscsi enable failed"; exit 1; }
WWN=naa.5001405000000009
mkdir -p "$CFS/loopback/$WWN/tpgt_1/lun/lun_0"
echo naa.50014050000000c1 >"$CFS/loopback/$WWN/tpgt_1/nexus"
ln -s "$CFS/core/pscsi_0/changer" "$CFS/loopback/$WWN/tpgt_1/lun/lun_0/changer"
sleep 1
LOOP=$(scsi_host_of tcm_loopback)
for s in /sys/class/scsi_generic/sg*; do
	case "$(basename "$(readlink "$s/device")")" in "$LOOP":*) LIO_SG=/dev/${s##*/} ;; esac
done
[ -n "${LIO_SG:-}" ] || { echo "CHANGER-CHECK no tcm_loop node for the pscsi LU"; exit 1; }
pdt=$(cat "/sys/class/scsi_generic/${LIO_SG#/dev/}/device/type")
rk=$(sg_persist -n --in --read-keys "$LIO_SG" 2>&1 | tr '\n' ' ' | cut -c1-120)
reg=$(sg_persist -n --out --register --param-sark=0x1 "$LIO_SG" 2>&1 | tr '\n' ' ' | cut -c1-120)
echo "CHANGER-CHECK pdt=$pdt readkeys=[$rk] register=[$reg]"
exit 0
