"""A replayed tape's end: asked of the replay exchange, so that the run can say it, stop ingest
cleanly (nothing more will come, and an idle stream is no connection fault), or stop altogether
(``up --exit-on-finish``)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING

from cryptopipe.pipeline.drain import read_and_stop
from cryptopipe.pipeline.say import say
from cryptopipe.replay.rest_status import STATUS_PATH

if TYPE_CHECKING:
    from cryptopipe.pipeline.pipeline import Pipeline


def trades_played_if_finished(rest_url: str) -> int | None:
    """How many trades the tape played, once it has finished; None while it plays (or unknown)."""
    try:
        with urllib.request.urlopen(rest_url + STATUS_PATH, timeout=2) as response:
            status = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):
        return None
    if not isinstance(status, dict) or not status.get("finished"):
        return None
    return int(status.get("trades_played", 0))


def check_tape(pipeline: Pipeline) -> bool:
    """Whether the replayed tape has finished; the first time it has, say so and stop ingest."""
    state = pipeline.state
    if state.tape_finished:
        return True
    if pipeline.rest_url is None or not pipeline.config.replay:
        return False
    played = trades_played_if_finished(pipeline.rest_url)
    if played is None:
        return False
    state.tape_finished = True
    say(f"cryptopipe up: the tape has finished ({played} trades played): ingest stopped, no more trades come")
    read_and_stop(pipeline, pipeline.members("ingest"), "ingest")
    return True
