"""The node of the TURN-only test (run by _netns_turn.py inside the node's namespace).

Serves one survey on ``HOST:PORT`` (argv) with TURN configured for the pages (secret
file and TURN URL from argv), prints ``LINK <site page path>`` and then ``LIVE <n>``
once the site's media have arrived and ``n`` segments were recorded, and exits.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from aiohttp import web
from media_support import make_plan, make_world

from remote_survey.room import RoomConfig
from remote_survey.session import Role, SurveyState
from remote_survey.turn import IceConfig, load_turn_secret
from remote_survey.web import SurveyHub, survey_app


async def main(tmp: Path, host: str, port: int, secret_file: Path, turn_url: str) -> None:
    world = make_world(tmp, segment_ms=1000)
    ice = IceConfig(turn_urls=(turn_url,), turn_secret=load_turn_secret(secret_file),
                    turn_ttl=timedelta(minutes=10))  # fmt: skip
    base = world.hub.config
    hub = SurveyHub(
        RoomConfig(node_id=base.node_id, join_key=base.join_key, seal=base.seal,
                   media_root=base.media_root, clock=base.clock, segment_ms=1000, ice=ice)
    )  # fmt: skip
    room = hub.open(make_plan(datetime.now(UTC))).room
    runner = web.AppRunner(survey_app(hub), shutdown_timeout=5)
    await runner.setup()
    await web.TCPSite(runner, host, port).start()
    print(f"LINK /survey/v1/site#token={world.token(Role.SITE, 'site-1')}", flush=True)
    async with asyncio.timeout(90):
        while room.state is not SurveyState.LIVE or room.segment_count < 2:
            await asyncio.sleep(0.2)
    print(f"LIVE {room.segment_count}", flush=True)
    await runner.cleanup()


if __name__ == "__main__":
    tmp, host, port, secret, url = sys.argv[1:6]
    asyncio.run(main(Path(tmp), host, int(port), Path(secret), url))
