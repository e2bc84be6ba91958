"""The read API of the compute ledger (``compute-ledger serve``): HTTP JSON under ``/v1`` and a
WebSocket stream of billing events, one tenant per API key. See ``docs/api.md``.

- ``app``: :func:`create_app` (routes, authentication, the error contract);
- ``wire``: the JSON of the ledger's records (money as exact decimal text);
- ``stream``: the event stream (outbox order, NATS as the doorbell, bounded per connection);
- ``server``: uvicorn started and stopped from code;
- ``reference``: ``docs/api.md``'s reference section, generated from the OpenAPI document.
"""

from starter.api.app import API_VERSION, create_app

__all__ = ["API_VERSION", "create_app"]
