#!/usr/bin/env python3
"""Extract the character vectors of an R lazy-load database (.rdx/.rdb pair,
as installed by R packages with LazyData) into plain UTF-8 text files, one
vector element per line, without R.

Format (R's serialize.c, lazyload.R):
  NAME.rdx  the serialized index: a list with `variables` (name -> integer
            vector c(offset, length) into the .rdb), `references`, `compressed`.
            Written by saveRDS: gzip, or zlib with a 4-byte length in front.
  NAME.rdb  the objects back to back; each one is a 4-byte big-endian
            uncompressed length, then (R >= 2.10 with type 2/3) one type byte
            'Z' zlib / '2' bzip2 / 'X' xz / '0' none, then the compressed
            serialization. Compression type 1 (the default) has no type byte.
A serialization is "X\\n" (XDR, big-endian), version, writer and minimum R
versions, (version 3) the native encoding, then one item tree.

Usage: rdata2txt.py DIR/Rdata.rdx OUTDIR   writes OUTDIR/<name>.txt for every
character vector in the database and prints the names.
"""
import bz2
import gzip
import lzma
import os
import struct
import sys
import zlib

# SEXP type codes (Rinternals.h) and the serializer's pseudo-types.
NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP, STRSXP = 9, 10, 13, 14, 15, 16
DOTSXP, VECSXP, EXPRSXP, RAWSXP = 17, 19, 20, 24
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP = 255, 254, 253, 252
MISSINGARG_SXP, BASENAMESPACE_SXP, EMPTYENV_SXP, BASEENV_SXP = 251, 250, 242, 241
NAMESPACESXP, PACKAGESXP, PERSISTSXP = 249, 248, 247
ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 240, 239, 238
PAIRLIST_TYPES = (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP)
NA_STRING = None


class FormatError(Exception):
    pass


class RSymbol(str):
    """A symbol name (tags of pairlists are symbols)."""


class RObject:
    """A decoded value with its attributes (names, class, ...)."""

    def __init__(self, sexp_type, value, attributes=None):
        self.sexp_type = sexp_type
        self.value = value
        self.attributes = attributes or {}


class Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0
        self.refs = []

    def take(self, n):
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError("truncated serialization at byte %d" % self.pos)
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return chunk

    def int(self):
        return struct.unpack(">i", self.take(4))[0]

    def length(self):
        n = self.int()
        if n == -1:  # long vector: two more ints
            upper, lower = self.int(), self.int()
            n = (upper << 32) + (lower & 0xFFFFFFFF)
        if n < 0:
            raise FormatError("negative length")
        return n

    def header(self):
        if self.take(2) != b"X\n":
            raise FormatError("not an XDR R serialization")
        version = self.int()
        self.int(), self.int()  # writer and minimum reader R versions
        if version == 3:
            self.take(self.int())  # native encoding name
        elif version != 2:
            raise FormatError("unsupported serialization version %d" % version)

    def attributes(self, has_attr):
        if not has_attr:
            return {}
        pairs = self.item()
        return dict(pairs.value) if isinstance(pairs, RObject) and pairs.sexp_type == LISTSXP else {}

    def item(self):
        flags = self.int()
        sexp_type = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if sexp_type in (NILVALUE_SXP, NILSXP):
            return None
        if sexp_type in (GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP,
                         BASENAMESPACE_SXP, EMPTYENV_SXP, BASEENV_SXP):
            return RObject(sexp_type, None)
        if sexp_type == REFSXP:
            index = flags >> 8
            if index == 0:
                index = self.int()
            if not 1 <= index <= len(self.refs):
                raise FormatError("bad reference %d" % index)
            return self.refs[index - 1]
        if sexp_type == SYMSXP:
            symbol = RSymbol(self.item() or "")
            self.refs.append(symbol)
            return symbol
        if sexp_type in (NAMESPACESXP, PACKAGESXP, PERSISTSXP):
            self.int()  # always 0
            names = [self.item() for _ in range(self.length())]
            obj = RObject(sexp_type, names)
            self.refs.append(obj)
            return obj
        if sexp_type == ENVSXP:
            obj = RObject(ENVSXP, None)
            self.refs.append(obj)
            self.int()  # locked
            enclos, frame, hashtab, attrib = self.item(), self.item(), self.item(), self.item()
            obj.value = (enclos, frame, hashtab)
            obj.attributes = attrib
            return obj
        if sexp_type in PAIRLIST_TYPES:
            # Iterate along CDRs instead of recursing so long lists are fine.
            cells = []
            attributes = {}
            while True:
                if has_attr:
                    cell_attributes = self.attributes(True)
                    if not cells:  # the list's attributes are the first cell's
                        attributes = cell_attributes
                tag = self.item() if has_tag else None
                cells.append((tag, self.item()))
                flags = self.int()
                next_type = flags & 0xFF
                if next_type not in PAIRLIST_TYPES:
                    self.pos -= 4
                    tail = self.item()
                    if tail is not None:
                        cells.append((None, tail))
                    break
                has_attr = bool(flags & (1 << 9))
                has_tag = bool(flags & (1 << 10))
            return RObject(sexp_type, cells, attributes)
        if sexp_type == CHARSXP:
            n = self.int()
            if n == -1:
                return NA_STRING
            # Latin-1 strings are flagged by bit 2 of the levels (flags >> 12).
            raw = self.take(n)
            levels = flags >> 12
            return raw.decode("latin-1" if levels & 4 else "utf-8", errors="replace")
        if sexp_type in (LGLSXP, INTSXP):
            n = self.length()
            value = list(struct.unpack(">%di" % n, self.take(4 * n)))
        elif sexp_type == REALSXP:
            n = self.length()
            value = list(struct.unpack(">%dd" % n, self.take(8 * n)))
        elif sexp_type == CPLXSXP:
            n = self.length()
            value = list(struct.unpack(">%dd" % (2 * n), self.take(16 * n)))
        elif sexp_type == RAWSXP:
            value = self.take(self.length())
        elif sexp_type == STRSXP:
            value = [self.item() for _ in range(self.length())]
        elif sexp_type in (VECSXP, EXPRSXP):
            value = [self.item() for _ in range(self.length())]
        else:
            raise FormatError("unsupported SEXP type %d" % sexp_type)
        return RObject(sexp_type, value, self.attributes(has_attr))


def unserialize(data):
    reader = Reader(data)
    reader.header()
    return reader.item()


def decompress_chunk(chunk):
    """An .rdb entry or a length-prefixed .rdx: 4-byte length, [type], data."""
    if len(chunk) < 5:
        raise FormatError("chunk too short")
    expected = struct.unpack(">I", chunk[:4])[0]
    body = chunk[4:]
    kind = body[:1]
    if kind == b"Z":
        out = zlib.decompress(body[1:])
    elif kind == b"2":
        out = bz2.decompress(body[1:])
    elif kind == b"X":
        out = lzma.decompress(body[1:])
    elif kind == b"0":
        out = body[1:]
    else:
        out = zlib.decompress(body)
    if len(out) != expected:
        raise FormatError("chunk length %d, header says %d" % (len(out), expected))
    return out


def read_index(rdx_path):
    with open(rdx_path, "rb") as f:
        raw = f.read()
    data = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else decompress_chunk(raw)
    index = unserialize(data)
    if not isinstance(index, RObject) or index.sexp_type != VECSXP:
        raise FormatError("index is not a list")
    names = index.attributes.get(RSymbol("names"))
    fields = dict(zip(names.value, index.value))
    variables = fields.get("variables")
    if variables is None:
        raise FormatError("index has no `variables`")
    var_names = variables.attributes["names"].value
    return {name: tuple(pos.value) for name, pos in zip(var_names, variables.value)}


def main(argv):
    if len(argv) != 3:
        sys.stderr.write("usage: rdata2txt.py FILE.rdx OUTDIR\n")
        return 2
    rdx_path, out_dir = argv[1], argv[2]
    rdb_path = rdx_path[:-4] + ".rdb"
    try:
        index = read_index(rdx_path)
        with open(rdb_path, "rb") as f:
            rdb = f.read()
        os.makedirs(out_dir, exist_ok=True)
        written = 0
        for name, (offset, length) in sorted(index.items()):
            if offset < 0 or length < 0 or offset + length > len(rdb):
                raise FormatError("%s: entry outside the .rdb" % name)
            try:
                obj = unserialize(decompress_chunk(rdb[offset:offset + length]))
            except FormatError as err:  # e.g. byte code: not text, skip it
                sys.stderr.write("rdata2txt: skipping %s: %s\n" % (name, err))
                continue
            if not isinstance(obj, RObject) or obj.sexp_type != STRSXP:
                continue  # only character vectors are text
            written += 1
            lines = ["" if s is NA_STRING else s for s in obj.value]
            path = os.path.join(out_dir, name + ".txt")
            tmp = path + ".tmp"
            with open(tmp, "w", encoding="utf-8") as out:
                out.write("\n".join(lines) + "\n")
            os.replace(tmp, path)  # never leave a half-written file
            print("%s: %d lines" % (path, len(lines)))
        if written == 0:
            raise FormatError("no character vector in the database")
    except (OSError, FormatError, zlib.error, lzma.LZMAError, KeyError, ValueError) as err:
        sys.stderr.write("rdata2txt: %s: %s\n" % (rdx_path, err))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
