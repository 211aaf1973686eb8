# Generated gRPC stubs of protos/skingenbench/api/v1 live here (`make protos`); they are not committed.
