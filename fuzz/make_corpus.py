#!/usr/bin/env python3
"""Writes the seed corpus of the fuzz targets (fuzz/corpus/TARGET/seed-*): valid inputs, so that
fuzzing starts from complete rounds, real files and well-formed messages rather than from nothing.

The targets read their input as a sequence of decisions (fuzz/fuzz_input.h: an integer in a range
takes as many bytes as the range needs, little-endian, modulo the range; a byte string is a
length byte then the bytes), so the seeds of the round and secure aggregation targets are written
here as those decisions: configure, check in, run each protocol phase honestly, upload. Files
(IDX, YAML, signature files, PEM keys) are written whole. Deterministic; run it again after
changing a target's decisions:  python3 fuzz/make_corpus.py
"""
import gzip
import hashlib
import os
import struct
import zlib
import subprocess
import sys

ROOT = os.path.dirname(os.path.abspath(__file__))


class Decisions:
    """Mirror of FuzzInput's reading, for writing."""

    def __init__(self):
        self.out = bytearray()

    def int(self, low, high, value):
        assert low <= value <= high
        span = high - low
        n = 0
        while span:
            n += 1
            span >>= 8
        self.out += (value - low).to_bytes(8, "little")[:n]
        return self

    def bool(self, value):
        self.out.append(1 if value else 0)
        return self

    def bytes(self, data):
        assert len(data) < 255
        self.out.append(len(data))
        self.out += data
        return self

    def raw(self, data):
        self.out += data
        return self


def write(target, name, data):
    directory = os.path.join(ROOT, "corpus", target)
    os.makedirs(directory, exist_ok=True)
    with open(os.path.join(directory, "seed-" + name), "wb") as f:
        f.write(bytes(data))


# ---- round_coordinator (fuzz/round_coordinator_fuzz.cc) ----
def coordinator_config(d, k, secure, variant_secagg=True, over_select=False, dp=None):
    d.int(1, 3, 1)            # rounds
    d.int(1, 3, k)            # clients per round
    d.int(1, k, k)            # min clients
    d.bool(over_select)
    d.int(0, 4, 0)            # min_available
    d.bool(True)              # clip norm 1
    d.bool(secure)
    if secure:
        d.bool(variant_secagg)
    else:
        d.bool(dp is not None)
        if dp is not None:
            d.bool(dp == "adaptive")


def op(d, code, device):
    return d.int(0, 9, code).int(0, 3, device)


def own_ids(d):
    d.int(0, 7, 1)  # not the fuzzer's ids


def check_in(d, device, secure_assignment=False):
    op(d, 0, device)
    d.int(0, 7, 1)   # own id
    d.int(0, 2, 1)   # api version
    d.bool(False)    # no capabilities
    if secure_assignment:
        d.int(0, 150, 10 + device)  # examples


def plain_round(k, dp=None):
    d = Decisions()
    coordinator_config(d, k, secure=False, dp=dp)
    for device in range(k):
        check_in(d, device)
    for device in range(k):
        check_in(d, device)  # the assignment (again) for the earlier ones
        op(d, 1, device)     # GetModel
        own_ids(d)
        op(d, 3, device)     # SubmitUpdate
        own_ids(d)
        d.bool(True).int(-2, 120, 10 + device)  # examples
        d.int(0, 4, 3)                          # delta of 3 values
        for _ in range(3):
            d.bool(False)                       # 0.25 each
        d.bool(True)                            # total_size = 3
        d.bool(False)                           # train loss 0.5
        d.bool(dp == "adaptive")                # the unclipped bit when asked for
        if dp == "adaptive":
            d.bool(True)
    op(d, 9, 0)  # status
    op(d, 8, 0).int(0, 120000, 1000)
    return d.out


def secure_round(k, variant_secagg):
    d = Decisions()
    coordinator_config(d, k, secure=True, variant_secagg=variant_secagg)
    for device in range(k - 1):
        check_in(d, device)
    check_in(d, k - 1, secure_assignment=True)  # the one that starts the round
    for device in range(k - 1):
        check_in(d, device, secure_assignment=True)

    def steps(times):
        for _ in range(times):
            for device in range(k):
                op(d, 4, device)
                own_ids(d)

    steps(1)  # advertise keys
    steps(2)  # poll the key directory, send shares
    steps(1)  # poll the share bundle (the masked input is then ready)
    for device in range(k):
        op(d, 7, device)
        own_ids(d)
        d.bool(False)  # upload as is
        d.bool(False)  # no example count
        d.bool(False)  # train loss 0.5
    steps(3)  # poll the unmask request, unmask, poll the result
    op(d, 9, 0)
    return d.out


# ---- secagg_server (fuzz/secagg_server_fuzz.cc) ----
def secagg_server_round(n, variant_secagg, drop_last=False):
    d = Decisions()
    d.int(2, 5, n).bool(variant_secagg).bool(False)  # no max_inputs
    for i in range(n):
        d.int(0, 100, 10 + i)

    def message(i):
        d.int(0, n - 1, i).int(0, 15, 1).int(0, 5, 0).bool(False)

    speakers = range(n - 1) if drop_last else range(n)
    for i in range(n):
        message(i)                     # advertise
    for _ in range(2):
        for i in range(n):
            message(i)                 # poll directory, share
    for i in speakers:
        message(i)                     # poll bundle
    for i in speakers:
        d.int(0, n - 1, i).int(0, 15, 1).int(0, 5, 3)
        d.bool(True).bool(False).bool(False)  # the upload as is, train loss 0.5
    if drop_last:
        d.int(0, n - 1, 0).int(0, 15, 1).int(0, 5, 4).int(0, 40000, 35000)  # upload deadline
    for _ in range(3):
        for i in speakers:
            message(i)                 # poll unmask request, unmask, poll result
    return d.out


# ---- artifact (fuzz/artifact_fuzz.cc) ----
def operator_key():
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives import serialization
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(1, 33)))
    public = key.public_key().public_bytes(serialization.Encoding.Raw,
                                           serialization.PublicFormat.Raw)
    return key, public, serialization


def signature_file(artifact):
    key, public, _ = operator_key()
    digest = hashlib.sha256(artifact).digest()
    signature = key.sign(b"fedkit-artifact-v1\x00" + digest)
    return ("fedkit-artifact-signature v1\nsha256 %s\nkey %s\nsig %s\n" % (
        digest.hex(), hashlib.sha256(public).digest()[:8].hex(), signature.hex())).encode()


def ledger_record(round_, q, z, epsilon):
    """One privacy ledger record (server/privacy_ledger.cc's layout)."""
    body = b"FKPL" + struct.pack("<IQddd", 1, round_, q, z, epsilon)
    return body + struct.pack("<I", zlib.crc32(body)) + bytes(4)


def ledger_and_tokens():
    three = b"".join(ledger_record(r, 0.1, 1.1, 0.5 * r) for r in (1, 2, 3))
    write("privacy_ledger", "three-rounds", three)
    write("privacy_ledger", "torn-tail", three + ledger_record(4, 0.1, 1.1, 2.0)[:20])
    write("privacy_ledger", "resumed-at-7", ledger_record(7, 0.25, 0.8, 3.0))
    # tokens: presented token, claimed id, certificate URI, common name (each a length byte and
    # bytes), then the file.
    def field(data):
        return bytes([len(data)]) + data
    text = b"# fleet\ns3cret phone-1\nfleet-token fleet-a-*,phone-9\nany *\n"
    write("tokens", "phone", field(b"s3cret") + field(b"phone-1") +
          field(b"urn:fedkit:client:alice") + field(b"alice") + text)
    write("tokens", "fleet-other", field(b"fleet-token") + field(b"fleet-b-1") + field(b"") +
          field(b"fedkit-client") + text)
    write("tokens", "bare-token", field(b"x") + field(b"y") + field(b"") + field(b"") +
          b"lonely-token\n")


def compression_seeds():
    """compression: mode Int(0, 3), spec Int(0, 11) (the target's kSpecs), dimension Int(1, 2048),
    then per mode (see fuzz/compression_fuzz.cc). Valid encodings, unedited, of small vectors."""
    specs = ["none", "quantize:1", "quantize:3", "quantize:8", "quantize:16", "quantize-rotate:2",
             "quantize-rotate:8", "topk:0.01", "topk:0.3", "topk:1", "randk:0.1", "randk:1"]
    values = [0.5, -1.25, 3.0, 0.0, -0.001, 2.5e-8, 7.0, -7.5, 1e3, -0.3]
    floats = b"".join(struct.pack("<f", v) for v in values)
    for index, spec in enumerate(specs):
        # Mode 1: seed 42, no clip (clip 1.0 for the quantizers), the ten values, no edits.
        clip = 1 if spec.startswith("quantize") else 0
        write("compression", "update-" + spec.replace(":", "-"),
              Decisions().int(0, 3, 1).int(0, 11, index).int(1, 2048, len(values))
              .raw((42).to_bytes(8, "little")).int(0, 2, clip).raw(floats).int(0, 3, 0).out)
    # 1030 values: two quantization blocks, a bitmap for topk:0.3.
    many = b"".join(struct.pack("<f", ((i * 37) % 101 - 50) / 25.0) for i in range(1030))
    for index in (3, 6, 8):
        write("compression", "update-1030-" + specs[index].replace(":", "-"),
              Decisions().int(0, 3, 1).int(0, 11, index).int(1, 2048, 1030)
              .raw((7).to_bytes(8, "little")).int(0, 2, 0).raw(many).int(0, 3, 0).out)
    for encoding, name in enumerate(["float32", "float16", "quantize8"]):
        write("compression", "download-" + name,
              Decisions().int(0, 3, 3).int(0, 11, 0).int(1, 2048, len(values))
              .int(0, 2, encoding).raw(floats).int(0, 3, 0).out)
    # Raw bytes: a kNone header for 2 values and the values.
    header = bytes([0xC1, 0, 0, 0]) + (2).to_bytes(8, "little")
    write("compression", "raw-none", Decisions().int(0, 3, 0).int(0, 11, 0).int(1, 2048, 2)
          .raw(header + struct.pack("<ff", 1.0, -2.0)).out)
    write("compression", "raw-download-float16", Decisions().int(0, 3, 2).int(0, 11, 0)
          .int(1, 2048, 2).int(0, 2, 1).raw(bytes([0x00, 0x3c, 0x00, 0xc0])).out)


def main():
    ledger_and_tokens()
    compression_seeds()
    write("round_coordinator", "plain-2", plain_round(2))
    write("round_coordinator", "plain-3", plain_round(3))
    write("round_coordinator", "central-dp-3", plain_round(3, dp="central"))
    write("round_coordinator", "central-dp-adaptive-3", plain_round(3, dp="adaptive"))
    write("round_coordinator", "secagg-2", secure_round(2, True))
    write("round_coordinator", "secagg-plus-3", secure_round(3, False))

    write("secagg_server", "secagg-3", secagg_server_round(3, True))
    write("secagg_server", "secagg-plus-5", secagg_server_round(5, False))
    write("secagg_server", "secagg-4-dropout", secagg_server_round(4, True, drop_last=True))

    # secagg_client: every decision "as sent, nobody drops" (2 of Int(0,3) / Int(0,7)).
    write("secagg_client", "secagg-plus-4", bytes([2, 0]) + bytes([2] * 40))
    write("secagg_client", "secagg-5", bytes([3, 1]) + bytes([3] * 50))
    write("secagg_client", "secagg-2", bytes([0, 1]) + bytes([2] * 20))

    # checkpoint: mode 2 (the checkpoint the configuration writes), file name round 1, every
    # optimizer, with and without DP and adaptive clipping, not edited.
    for kind, name in enumerate(["sgd", "adam", "yogi", "adagrad"]):
        for dp, dp_name in enumerate(["nodp", "dp", "dp-adaptive"]):
            write("checkpoint", "%s-%s" % (name, dp_name), bytes([2, 1, kind, dp, 0]))

    # idx: labels and images, plain and gzip-compressed by the harness (first byte).
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 5) + bytes([0, 1, 2, 9, 4])
    images = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 3, 3) + bytes(range(18))
    write("idx", "labels", b"\x00" + labels)
    write("idx", "images", b"\x00" + images)
    write("idx", "labels-gz", b"\x01" + labels)
    write("idx", "images-gz", b"\x01" + images)
    write("idx", "gzip-file", b"\x00" + gzip.compress(labels, mtime=0))

    # yaml_config: the flags the harness defines, and the repository's configs.
    write("yaml_config", "flags", b"rounds: 5\nclient_lr: 0.05\nserver-momentum: 0.9\n"
          b"model: cnn\nclient-ids: [a, b, c]\ninsecure: true\n")
    write("yaml_config", "list-block", b"client-ids:\n  - x\n  - y\n")
    for name in sorted(os.listdir(os.path.join(ROOT, "..", "configs"))):
        with open(os.path.join(ROOT, "..", "configs", name), "rb") as f:
            write("yaml_config", "configs-" + name, f.read())

    # artifact: mode (Int(0, 4)) then the case's input.
    artifact = b"not really a TorchScript archive"
    write("artifact", "sigfile-made", Decisions().int(0, 4, 0).bytes(artifact).bool(True)
          .int(0, 3, 0).out)
    write("artifact", "sigfile-text", Decisions().int(0, 4, 1).bytes(artifact).bool(False)
          .raw(signature_file(artifact)).out)
    key, public, serialization = operator_key()
    pem_public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                               serialization.PublicFormat.SubjectPublicKeyInfo)
    pem_private = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
    write("artifact", "pem-public", Decisions().int(0, 4, 2).raw(pem_public).out)
    write("artifact", "pem-private", Decisions().int(0, 4, 2).raw(pem_private).out)
    write("artifact", "hex", Decisions().int(0, 4, 3).raw(hashlib.sha256(artifact).hexdigest()
                                                          .encode()).out)
    write("artifact", "verify", Decisions().int(0, 4, 4).bytes(artifact).bool(False)
          .raw(bytes(64)).out)

    # assigned_artifact: the device's policy (trusted key?, unsigned allowed?, size limit), the
    # artifact's bytes, how the assignment is made (2: honest, then Int(0, 3) wire edits) and its
    # signer (0 operator, 1 another key, 2 unsigned).
    def assigned(trusted, unsigned, how, signer):
        return (Decisions().bool(trusted).bool(unsigned).int(0, 1024, 1024).bytes(artifact)
                .int(0, 3, how).int(0, 2, signer))
    write("assigned_artifact", "signed", assigned(True, False, 2, 0).int(0, 3, 0).out)
    write("assigned_artifact", "unsigned-allowed", assigned(False, True, 2, 2).int(0, 3, 0).out)
    write("assigned_artifact", "other-key", assigned(True, False, 2, 1).int(0, 3, 0).out)
    # A field replaced: an empty value, then case 6 edits the downloaded bytes instead (one
    # overwrite of byte 0).
    # upload_stream: masked?, the declared total, then chunks (how: 1 = well-formed, then
    # False = of the upload's own kind, then the values or bytes).
    floats = lambda *v: b"".join(struct.pack("<f", x) for x in v)
    write("upload_stream", "plain", Decisions().bool(False).int(0, 64, 3)
          .int(0, 2, 1).bool(False).int(0, 16, 2).raw(floats(0.5, -1.0))
          .int(0, 2, 1).bool(False).int(0, 16, 1).raw(floats(2.0)).out)
    write("upload_stream", "masked", Decisions().bool(True).int(0, 64, 2)
          .int(0, 2, 1).bool(False).bytes(bytes(range(10)))
          .int(0, 2, 1).bool(False).bytes(bytes(range(6))).out)
    # model_stream: the encoding (0 float32, 1 float16, 2 quantize:8), the device's size, the
    # model's scale, then chunks (how: 1 = well-formed, then its size).
    for encoding, name in ((0, "float32"), (1, "float16"), (2, "quantize8")):
        d = Decisions().int(0, 2, encoding).int(0, 3000, 2100).int(0, 255, 40)
        for piece in (1500, 1500, 4096):
            d.int(0, 2, 1).int(0, 4096, piece)
        write("model_stream", name, d.out)
    write("assigned_artifact", "tampered-download",
          assigned(True, False, 1, 0).bytes(b"").int(0, 6, 6).int(0, 3, 1)
          .int(0, len(artifact) - 1, 0).int(0, 4, 0).int(0, 255, 0x41).out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
