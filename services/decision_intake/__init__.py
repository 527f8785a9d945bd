"""Decision intake: Gatekeeper-compatible ndjson sidecar (unix socket) feeding DECISIONS."""
