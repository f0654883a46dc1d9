#!/bin/sh
# Build the corpus, boot the test guest once with verify-in-guest.sh as its init and check that
# every attack took effect inside the guest (no hvi involved). Exit 0 when all 12 report OK.
# The CPU model has SMEP and SMAP (for hvi_cr4_smep); crc7.ko is the victim of hvi_modtext_patch.
# usage: run-verify.sh BUILDDIR
set -eu
b=${1:?usage: run-verify.sh BUILDDIR}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../../.." && pwd)
kern=$(ls /boot/vmlinuz-* 2>/dev/null | sort -V | tail -n 1)
[ -n "$kern" ] || { echo "run-verify: no /boot/vmlinuz-*" >&2; exit 77; }
"$here/build.sh" "$b/attacks" "${kern#/boot/vmlinuz-}" > /dev/null
set --
for k in "$b"/attacks/*.ko "/lib/modules/${kern#/boot/vmlinuz-}/kernel/lib/crc7.ko"; do
    set -- "$@" --module "$k"
done
"$root/scripts/guest/build-initramfs" -o "$b/attacks-verify.cpio.gz" "$@" \
    --add "$here/verify-in-guest.sh:/verify.sh" > /dev/null
timeout 180 qemu-system-x86_64 -accel tcg -cpu qemu64,+smep,+smap -m 512 -machine q35 -nographic -no-reboot \
    -kernel "$kern" -initrd "$b/attacks-verify.cpio.gz" -name "hvi-attacks-verify-$$" \
    -append "console=ttyS0 rdinit=/verify.sh quiet" 2>&1 | tr -d '\r' | grep -ao 'ATTACK-[A-Z]* *[a-z_]*.*' | tee "$b/attacks-verify.log"
[ "$(grep -c '^ATTACK-OK ' "$b/attacks-verify.log")" -eq 12 ] && ! grep -q ATTACK-FAIL "$b/attacks-verify.log"
