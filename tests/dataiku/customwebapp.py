"""Stand-in for `dataiku.customwebapp`: the webapp's params, which DSS passes as JSON in the environment."""
import json
import os


def get_webapp_config():
    return json.loads(os.environ.get("DKU_CUSTOM_WEBAPP_CONFIG") or "{}")


def get_plugin_config():
    return json.loads(os.environ.get("DKU_CUSTOM_WEBAPP_PLUGIN_CONFIG") or "{}")
