"""The HTTP API (`veo-batch serve`): queue, follow and steer batches from any language.

- `app`: `create_app`, bearer tokens, the body limit, errors as statuses;
- `routes`: one route per operation, each calling the service;
- `schemas`: the request and answer shapes (the OpenAPI schema at `/openapi.json`).
"""

from veobatch.httpapi.app import create_app

__all__ = ["create_app"]
