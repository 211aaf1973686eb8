# Generated gRPC stubs of protos/skingenbench/v1 live here (`make protos`); they are not committed.
