"""dipguard's function table: the blueprints (app/functions.py) this app serves.

DIPGUARD_FUNCTIONS chooses them: ``lookup`` for the lookup app, ``operator`` for the
operator app, ``all`` (the default) for one host serving every function, as locally.
Microsoft's worker indexes the ``app`` below and every function registered in it.
"""

from __future__ import annotations

import azure.functions as func

from app import functions
from app.runtime import runtime
from shared.telemetry import configure_telemetry, quiet_sdk_requests

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)

# Metrics to Application Insights when APPLICATIONINSIGHTS_CONNECTION_STRING is set (in
# Azure), once per worker process and before the Runtime, whose metrics record into the
# provider this installs. Nothing locally or in tests.
configure_telemetry()
# Before any client exists: no SDK request line, whose URL carries a lookup key, is logged.
quiet_sdk_requests()

# Settings are parsed when the host loads this file, so a bad value (DIPGUARD_FUNCTIONS
# among them) stops start-up with an error naming the setting instead of failing the first
# dip of a spike.
_settings = runtime().settings

for _blueprint in functions.BLUEPRINTS[_settings.functions]:
    app.register_functions(_blueprint)

if functions.OPERATOR in functions.BLUEPRINTS[_settings.functions]:
    # A bad SCALE_SCHEDULE is logged at start-up, naming the field; it must not stop the
    # app, and the timer keeps the current state until it is fixed. (Imported here: the
    # lookup app never loads the operator's modules.)
    from shared.scale.tick import check_schedule

    check_schedule(_settings.scale)
