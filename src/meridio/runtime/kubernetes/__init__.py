"""The Kubernetes realisation of Meridio's resources: CRDs rendered from the project's one schema, the
admission webhook, the operator (kopf) and the objects it makes, the cluster install's manifests."""
