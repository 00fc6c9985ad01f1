"""Stand-in for DSS's runtime `dataiku` package, for tests and the demo only (never in the plugin zip).

It has the real signatures the plugin uses (dss-reference.md section 1) and nothing more.
"""
import os


def api_client():
    """Inside DSS: a dataikuapi.DSSClient authenticated as the user running the code (here: DKU_DSS_URL/DKU_API_KEY)."""
    import dataikuapi

    url = os.environ.get("DKU_DSS_URL")
    key = os.environ.get("DKU_API_KEY")
    if not url or not key:
        raise Exception("No DSS URL or API key found (DKU_DSS_URL, DKU_API_KEY)")
    return dataikuapi.DSSClient(url, key)


def default_project_key():
    key = os.environ.get("DKU_CURRENT_PROJECT_KEY")
    if not key:
        raise Exception("Default project key is not specified (no DKU_CURRENT_PROJECT_KEY in env)")
    return key
