"""``python -m cryptopipe.dashboard.serve run APP [streamlit flags]``: Streamlit's own command line,
in a process that first starts the history sampler (:mod:`cryptopipe.dashboard.sampler`), so the
price history is kept from the moment the server starts, not from the first visit."""

from __future__ import annotations

from streamlit.web import cli as streamlit_cli

from cryptopipe.dashboard import sampler
from cryptopipe.dashboard.settings import DashboardSettings
from cryptopipe.schemas import ConfigError, RedisSettings, load_settings


def main() -> None:
    try:
        settings, redis_settings = load_settings(DashboardSettings), load_settings(RedisSettings)
    except ConfigError:
        pass  # the page names the bad variable; nothing to sample from
    else:
        sampler.start(settings, redis_settings)
    streamlit_cli.main(prog_name="streamlit")


if __name__ == "__main__":
    main()
