# 32-bit ARM hard-float (Debian armhf: ARMv7-A, VFPv3-D16 baseline) with
# Debian's gcc cross compiler. Libraries come from Debian's armhf multiarch
# packages (toolchains/install-deps.sh). The Makefile builds only the NEON
# kernel files with -mfpu=neon-vfpv4 (ARCH arm); the rest of the library
# stays at the baseline, so it runs on CPUs without NEON (scalar kernels).
CROSS_COMPILE ?= arm-linux-gnueabihf-
RUNNER ?= qemu-arm -L /usr/arm-linux-gnueabihf
