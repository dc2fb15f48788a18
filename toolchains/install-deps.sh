#!/bin/sh
# Installs the Debian packages SlimKV builds and tests with, only when missing.
# Usage: install-deps.sh [EXTRA]   (aarch64-linux-gnu: the ARM cross build; fuzz: clang + libFuzzer;
#                                   valgrind: memcheck for make valgrind-test)
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
[ -z "$need" ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages:$need (run as root, or install them)" >&2
    exit 1
fi
echo "installing:$need"
case "$need" in *:arm64*) dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64 ;; esac
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends $need
