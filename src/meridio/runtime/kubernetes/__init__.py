"""The Kubernetes realisation of Meridio's resources: CRDs rendered from the project's one schema (the
operator, its webhook and the workload objects follow)."""
