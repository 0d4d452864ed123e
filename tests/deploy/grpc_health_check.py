#!/usr/bin/python3
"""One grpc.health.v1.Health/Check call, with Debian's python3-grpcio and no generated stubs.

  grpc_health_check.py ADDRESS [--tls-ca CA.pem [--server-name NAME]] [--timeout S]

Without --tls-ca the call is plaintext, as Kubernetes' built-in `grpc:` probe makes it (the
kubelet dials with insecure credentials). Prints the status and exits 0 only for SERVING.

HealthCheckRequest{service: ""} encodes to zero bytes; HealthCheckResponse{status} is field 1,
varint: b"\\x08\\x01" is SERVING (grpc/health/v1/health.proto).
"""
import argparse
import sys

import grpc

STATUS = {0: "UNKNOWN", 1: "SERVING", 2: "NOT_SERVING", 3: "SERVICE_UNKNOWN"}


def decode_status(payload: bytes) -> int:
    if payload == b"":
        return 0  # proto3 default
    if len(payload) == 2 and payload[0] == 0x08:
        return payload[1]
    raise ValueError(f"unexpected HealthCheckResponse bytes {payload!r}")


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("address")
    p.add_argument("--tls-ca")
    p.add_argument("--server-name")
    p.add_argument("--timeout", type=float, default=5.0)
    a = p.parse_args()
    if a.tls_ca:
        with open(a.tls_ca, "rb") as f:
            creds = grpc.ssl_channel_credentials(root_certificates=f.read())
        options = [("grpc.ssl_target_name_override", a.server_name)] if a.server_name else []
        channel = grpc.secure_channel(a.address, creds, options=options)
    else:
        channel = grpc.insecure_channel(a.address)
    check = channel.unary_unary("/grpc.health.v1.Health/Check",
                                request_serializer=lambda b: b,
                                response_deserializer=lambda b: b)
    try:
        status = decode_status(check(b"", timeout=a.timeout))
    except grpc.RpcError as e:
        print(f"health check failed: {e.code().name}: {e.details()}")
        return 2
    print(STATUS.get(status, str(status)))
    return 0 if status == 1 else 1


if __name__ == "__main__":
    sys.exit(main())
