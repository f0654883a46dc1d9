#!/bin/sh
# Runs inside the test guest (as rdinit= of an initramfs holding /modules/hvi_*.ko): loads each
# attack module and checks from inside the guest that the attack took effect, printing
# "ATTACK-OK name" / "ATTACK-FAIL name why" lines, then powers off.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin
chmod 755 / /bin /tmp  # the initramfs root is 0700: let the unprivileged victim run
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
echo 1 > /proc/sys/kernel/printk
echo 1 > /proc/sys/kernel/sysrq
ok() { echo "ATTACK-OK $1"; }
bad() { echo "ATTACK-FAIL $1 $2"; }
ld() { insmod "/modules/hvi_$1.ko" $2 || { bad "$1" "insmod failed"; dmesg | grep -i -e disagree -e symbol | tail -n 3; }; }
seen() { dmesg | grep -q "hvi-attack: $1"; }

ld syscall_table; seen "sys_call_table\[" && ok syscall_table || bad syscall_table "no log"
rmmod hvi_syscall_table
ld text_patch; seen "text " && ok text_patch || bad text_patch "no log"
rmmod hvi_text_patch
ld idt_entry; seen "idt\[" && ok idt_entry || bad idt_entry "no log"
rmmod hvi_idt_entry
ld lstar; for i in 1 2 3; do true; done; n=$(cat /proc/loadavg | wc -c)
seen "LSTAR" && [ "$n" -gt 0 ] && ok lstar || bad lstar "syscalls after LSTAR change"
rmmod hvi_lstar
ld cr0_wp
cr0=$(dmesg | sed -n 's/.*CR0.WP cleared (cr0=\([0-9a-f]*\)).*/\1/p' | tail -n 1)
[ -n "$cr0" ] && [ $(( 0x$cr0 & 0x10000 )) -eq 0 ] && ok cr0_wp || bad cr0_wp "cr0=$cr0"
rmmod hvi_cr0_wp
st() { cat "/sys/module/hvi_$1/parameters/state"; }
patched() { ld "$1" "$2"; st "$1" | grep -q ' patched$' && ok "$1" || bad "$1" "state: $(st "$1")"; rmmod "hvi_$1"; }
patched rodata_patch
patched vdso_patch
insmod /modules/crc7.ko; patched modtext_patch; rmmod crc7
# the kernel sets SMEP/SMAP back at its next global TLB flush (README): let the module
# unloads above settle (their memory is freed after an RCU grace period), clear them again
ld cr4_smep; sleep 2; echo 1 > /sys/module/hvi_cr4_smep/parameters/clear
st cr4_smep | grep -q 'smep clear smap clear' && ok cr4_smep || bad cr4_smep "state: $(st cr4_smep)"
rmmod hvi_cr4_smep
echo "u:x:1000:1000::/tmp:/bin/sh" >> /etc/passwd; echo "u:x:1000:" >> /etc/group
su -s /bin/sh u -c "exec sleep 60" & v=$!; sleep 1
u0=$(awk '/^Uid:/ {print $2}' /proc/$v/status)
ld cred_root "pid=$v"
u1=$(awk '/^Uid:/ {print $2}' /proc/$v/status)
[ "$u0" = 1000 ] && [ "$u1" = 0 ] && ok cred_root || bad cred_root "uid $u0 -> $u1"
kill $v
ld hide_module
if ! grep -q '^hvi_hide_module ' /proc/modules && [ -d /sys/module/hvi_hide_module ]; then
    ok hide_module; else bad hide_module "still in /proc/modules"; fi
sleep 60 & v=$!; sleep 1; echo "victim $v: $(cat /proc/$v/comm)"
echo t > /proc/sysrq-trigger; a=$(dmesg | grep -c " pid:$v ")
ld hide_process "pid=$v"
dmesg -c > /dev/null; echo t > /proc/sysrq-trigger; b=$(dmesg | grep -c " pid:$v ")
[ "$a" -ge 1 ] && [ "$b" -eq 0 ] && kill -0 $v && ok hide_process || bad hide_process "sysrq-t before $a after $b"
rmmod hvi_hide_process; kill $v
echo ATTACK-DONE
poweroff -f
