"""The REST API (/sdapi/v1): A1111's routes, request and response shapes (modules.api.api, modules.api.models)."""
