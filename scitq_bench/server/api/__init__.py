"""The JSON REST API under /api/v1: one blueprint per resource."""
