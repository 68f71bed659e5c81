#!/usr/bin/env python3
"""Writes tests/vectors/tags.json from docs/PROTOCOL.md §1 ("Tags") alone: SHA-256 from
hashlib and a hand-written protobuf encoder, nothing from the crate. Run from the repo root."""
import hashlib, json, struct

KEY1 = bytes.fromhex("8a88e3dd7409f195fd52db2d3cba5d72ca6709bf1d94121bf3748801b40f6f5c")
KEY2 = bytes.fromhex("8139770ea87d175f56a35466c34c7ecccb8d8a91b4ee37a25df60f5b8fc9b394")


def tag(author, sequence):
    h = hashlib.sha256(b"secure-gossip/tag/v1" + author + struct.pack(">Q", sequence)).digest()
    return int.from_bytes(h[:8], "big")


def varint(n):
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def key(field, wire):
    return varint(field << 3 | wire)


def ld(field, body):
    return key(field, 2) + varint(len(body)) + body


def packed_fixed64(field, values):
    if not values:
        return b""
    return ld(field, b"".join(struct.pack("<Q", v) for v in values))


def digest(author, ranges):
    body = ld(1, author)
    if ranges:
        body += ld(2, b"".join(varint(r) for r in ranges))
    return body


def frame(have=(), want=(), complete=False, graft=False, have_tags=(), want_tags=(), reads_tags=False):
    out = b""
    for a, r in have:
        out += ld(2, digest(a, r))
    for a, r in want:
        out += ld(3, digest(a, r))
    if complete:
        out += key(4, 0) + b"\x01"
    if graft:
        out += key(7, 0) + b"\x01"
    out += packed_fixed64(10, list(have_tags))
    out += packed_fixed64(11, list(want_tags))
    if reads_tags:
        out += key(12, 0) + b"\x01"
    return out


def decoded(have=(), want=(), complete=False, graft=False, have_tags=(), want_tags=(), reads_tags=False):
    d = lambda xs: [{"author_hex": a.hex(), "ranges": [str(r) for r in rs]} for a, rs in xs]
    return {
        "have": d(have), "want": d(want), "complete": complete, "prune": False, "graft": graft,
        "have_tags": [str(t) for t in have_tags], "want_tags": [str(t) for t in want_tags],
        "reads_tags": reads_tags,
    }


ids = [
    ("key1_seq_1", KEY1, 1),
    ("key1_seq_2", KEY1, 2),
    ("key2_time_based", KEY2, 1_700_000_000_000_000),
    ("key2_max", KEY2, 2**64 - 1),
]
tags = [
    {"name": n, "author_hex": a.hex(), "sequence": str(s), "tag": str(tag(a, s)),
     "tag_be_hex": tag(a, s).to_bytes(8, "big").hex()}
    for n, a, s in ids
]
t = {n: tag(a, s) for n, a, s in ids}

cases = [
    ("announce_by_tag", "two announcements by tag (field 10), as a lazy announcement to a peer that reads tags",
     dict(have_tags=(t["key1_seq_1"], t["key2_time_based"]))),
    ("want_by_tag_with_graft", "a want by tag (field 11) with graft, as a node asks for an id it knows only by tag",
     dict(graft=True, want_tags=(t["key1_seq_2"],))),
    ("complete_digest_reads_tags", "a complete digest whose sender reads tags (field 12), as every node's first frame",
     dict(have=((KEY1, (1, 2)),), complete=True, reads_tags=True)),
    ("digest_and_tags", "a digest and tags side by side, both ways",
     dict(have=((KEY2, (5, 5)),), want=((KEY1, (1, 1)),), have_tags=(t["key2_max"],), want_tags=(t["key1_seq_1"], t["key2_max"]))),
]
vectors = []
for name, desc, kw in cases:
    body = frame(**kw)
    vectors.append({"name": name, "description": desc, "frame_pb_hex": body.hex(),
                    "framed_hex": (varint(len(body)) + body).hex(), "decoded": decoded(**kw)})

UNIT = struct.pack("<Q", t["key1_seq_1"])
# Large frames are given as `frame_pb_hex` followed by `repeat_hex` `repeat_count` times.
invalid = [
    {"name": "have_tags_not_a_multiple_of_8", "description": "field 10 packed with 7 bytes",
     "frame_pb_hex": ld(10, b"\x01" * 7).hex(), "repeat_hex": "", "repeat_count": 0,
     "expected_error": "Decode"},
    {"name": "too_many_have_tags", "description": "32,769 tags in have_tags: over max_have_ranges_per_frame (32,768), counted before decoding",
     "frame_pb_hex": (key(10, 2) + varint(8 * 32_769)).hex(), "repeat_hex": UNIT.hex(), "repeat_count": 32_769,
     "expected_error": "TooMany have"},
    {"name": "have_tags_and_digests_over_the_limit", "description": "one digest and 32,768 tags: together over max_have_ranges_per_frame",
     "frame_pb_hex": (ld(2, digest(KEY1, (1, 1))) + key(10, 2) + varint(8 * 32_768)).hex(), "repeat_hex": UNIT.hex(), "repeat_count": 32_768,
     "expected_error": "TooMany have"},
    {"name": "too_many_want_tags_unpacked", "description": "4,097 want_tags, each an unpacked fixed64 (wire type 1): over max_want_ranges_per_frame (4,096)",
     "frame_pb_hex": "", "repeat_hex": (key(11, 1) + UNIT).hex(), "repeat_count": 4_097,
     "expected_error": "TooMany want"},
]

out = {
    "about": "Tags (docs/PROTOCOL.md §1, 'Tags'; §3.9), computed from the spec alone by tests/vectors/gen/tags.py (hashlib's SHA-256, a hand-written protobuf encoder). `tags`: the tag of an id. `vectors`: frames with fields 10 to 12; a decoder without them (tree.json's) skips them and reads the rest. `invalid`: protocol violations at the default limits.",
    "tags": tags,
    "vectors": vectors,
    "invalid": invalid,
}
with open("tests/vectors/tags.json", "w") as f:
    json.dump(out, f, indent=1)
    f.write("\n")
