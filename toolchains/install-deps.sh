#!/bin/sh
# Installs the Debian packages SlimKV builds and tests with, only when missing.
# Usage: install-deps.sh [EXTRA]   (aarch64-linux-gnu, arm-linux-gnueabihf: the ARM cross builds;
#                                   fuzz: clang + libFuzzer; valgrind: memcheck for make valgrind-test)
set -e
need=""
check() { # check PACKAGE: queue it unless installed
    dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed" || need="$need $1"
}
for p in gcc g++ make libsleef-dev libcmocka-dev libcjson-dev; do check "$p"; done
if [ "$1" = "fuzz" ]; then # clang, libFuzzer and clang's OpenMP runtime
    for p in clang libclang-rt-14-dev libomp-14-dev; do check "$p"; done
fi
if [ "$1" = "valgrind" ]; then
    check valgrind
fi
if [ "$1" = "aarch64-linux-gnu" ]; then
    # libc6-dev:arm64: the arm64 C headers that /usr/include's multiarch
    # headers (math.h via sleef.h) include; the cross gcc's own libc copy
    # under /usr/aarch64-linux-gnu does not serve them.
    for p in gcc-aarch64-linux-gnu qemu-user libc6-dev:arm64 libsleef-dev:arm64 libcmocka-dev:arm64 \
             libcjson-dev:arm64 libgomp1:arm64; do check "$p"; done
fi
if [ "$1" = "arm-linux-gnueabihf" ]; then # 32-bit ARM, the same packages for armhf
    for p in gcc-arm-linux-gnueabihf qemu-user libc6-dev:armhf libsleef-dev:armhf libcmocka-dev:armhf \
             libcjson-dev:armhf libgomp1:armhf; do check "$p"; done
fi
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$need (run as root, or install them)" >&2
    exit 1
fi
echo "installing:$need"
for arch in arm64 armhf; do
    case "$need" in *:$arch*) dpkg --print-foreign-architectures | grep -qx $arch || dpkg --add-architecture $arch ;; esac
done
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $need
