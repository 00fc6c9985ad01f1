# The webapp's backend: DSS runs this file with a Flask `app` already created (an injected global).
# All the logic lives in python-lib (process_tracker.webapp); this only hands it the webapp's params.
from dataiku.customwebapp import get_webapp_config

from process_tracker.webapp import register_routes

register_routes(app, get_webapp_config())  # noqa: F821 - `app` is injected by DSS
