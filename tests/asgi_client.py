"""A synchronous client for an ASGI app in this process, over ``httpx.ASGITransport``.

The app runs on an event loop in a helper thread, as it would under a server, while the
tests stay plain synchronous code.
"""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import httpx


class AppClient:
    def __init__(self, app: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.client = httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://proctor.test", timeout=30
        )

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        call = self.client.request(method, url, **kwargs)
        return asyncio.run_coroutine_threadsafe(call, self.loop).result(timeout=60)

    def get(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("GET", url, **kwargs)

    def post(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("POST", url, **kwargs)

    def delete(self, url: str, **kwargs: Any) -> httpx.Response:
        return self.request("DELETE", url, **kwargs)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.client.aclose(), self.loop).result(timeout=10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()
