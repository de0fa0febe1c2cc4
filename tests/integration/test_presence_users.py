"""``GET /apps/{id}/channels/{name}/users``: ids, and user_info with ``with_user_info=1``."""

from __future__ import annotations

import asyncio

from tests.support.rest import Rest
from tests.support.server import RunningServer
from tests.support.wsclient import pusher


def test_users_with_and_without_user_info(server: RunningServer) -> None:
    app = server.app
    path = f"/apps/{app['id']}/channels/presence-team/users"

    async def scenario() -> None:
        async with pusher(server) as a, pusher(server) as b:
            await a.subscribe_presence("presence-team", "1", {"name": "Ana"})
            await b.subscribe_presence("presence-team", "2")
            rest = Rest(server.host, server.port, app)
            try:
                status, body = await asyncio.to_thread(rest.request, "GET", path)
                assert status == 200
                assert sorted(u["id"] for u in body["users"]) == ["1", "2"]
                assert all(set(u) == {"id"} for u in body["users"])
                status, body = await asyncio.to_thread(
                    rest.request, "GET", path, None, {"with_user_info": "1"}
                )
                assert status == 200
                infos = {u["id"]: u["user_info"] for u in body["users"]}
                assert infos == {"1": {"name": "Ana"}, "2": None}
            finally:
                rest.close()

    asyncio.run(scenario())
