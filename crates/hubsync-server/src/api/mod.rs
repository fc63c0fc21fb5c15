//! The REST API under `/v1`, its OpenAPI document, and `/metrics` and `/healthz`.
