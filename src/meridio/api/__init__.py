"""The contract: resources, validation, codecs, the nsp.v1 model and generated gRPC stubs."""
