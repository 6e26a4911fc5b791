"""The mock on a port of this machine, on a thread: `with MockProvider(config) as mock`."""

from __future__ import annotations

import threading
from typing import Any

from veobatch.provider.mock.handler import Handler, Server
from veobatch.provider.mock.state import MockConfig, MockState


class MockProvider:
    """The mock served on a local port, on a background thread: `with MockProvider() as m:`."""

    def __init__(self, config: MockConfig | None = None, host: str = "127.0.0.1", port: int = 0):
        self.state = MockState(config or MockConfig())
        self.state.rng.seed(self.state.config.seed)
        self._server = Server((host, port), Handler)
        self._server.state = self.state
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> MockProvider:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},  # how soon stop() returns
            name="veo-batch-mock-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        self._server.serve_forever()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread is not None:
            self._thread.join()

    def stats(self) -> dict[str, Any]:
        with self.state.lock:
            return self.state.stats()

    def __enter__(self) -> MockProvider:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
