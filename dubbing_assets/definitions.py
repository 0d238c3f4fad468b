"""The one `Definitions` object of the code location. Assembly only."""

import dagster as dg

from dubbing_assets.orchestration.assets import render, understand
from dubbing_assets.orchestration.io_manager import EncryptedIOManager
from dubbing_assets.orchestration.jobs import dub_episode_high_job, dub_episode_job
from dubbing_assets.orchestration.resources import DubbingResource
from dubbing_assets.orchestration.sensor import inbox_sensor

_dubbing = DubbingResource()

defs = dg.Definitions(
    assets=dg.load_assets_from_modules([understand, render]),
    asset_checks=dg.load_asset_checks_from_modules([understand, render]),
    jobs=[dub_episode_job, dub_episode_high_job],
    sensors=[inbox_sensor],
    resources={"io_manager": EncryptedIOManager(dubbing=_dubbing), "dubbing": _dubbing},
)
