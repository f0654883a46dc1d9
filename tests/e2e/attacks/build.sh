#!/bin/sh
# Build the detection-corpus kernel modules against Debian's headers.
# usage: build.sh OUTDIR [KERNEL_RELEASE]   (default release: the newest in /lib/modules)
# The sources are copied into OUTDIR (kbuild writes next to its sources); OUTDIR/*.ko result.
set -eu
out=${1:?usage: build.sh OUTDIR [KERNEL_RELEASE]}
rel=${2:-$(ls /lib/modules | sort -V | tail -n 1)}
kdir=/lib/modules/$rel/build
src=$(cd "$(dirname "$0")" && pwd)
[ -d "$kdir" ] || { echo "build.sh: no kernel headers at $kdir (apt-get install linux-headers-amd64)" >&2; exit 77; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
# -p keeps the sources' times: kbuild then rebuilds only what changed
cp -p "$src"/*.c "$src"/*.h "$src"/Kbuild "$out"/
make -s -C "$kdir" M="$out" modules >"$out/build.log" 2>&1 || { cat "$out/build.log" >&2; exit 1; }
ls "$out"/*.ko
