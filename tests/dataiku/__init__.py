"""Stand-in for DSS's runtime `dataiku` package, for tests and the demo only (never in the plugin zip).

It has the real signatures the plugin uses (dss-reference.md section 1) and nothing more.
"""
import os


def api_client():
    """Inside DSS: a dataikuapi.DSSClient authenticated as the user running the code, built as DSS builds it:
    the local backend port (DKU_BACKEND_PORT) and the run's internal ticket (DKU_API_TICKET, sent by the client as
    the X-DKU-APITicket header). DKU_DSS_URL, DKU_API_KEY and ~/.dataiku/config.json play no part in it."""
    import dataikuapi

    port = os.environ.get("DKU_BACKEND_PORT")
    ticket = os.environ.get("DKU_API_TICKET")
    if not port or not ticket:
        raise Exception("Not running inside DSS: no backend port or API ticket (DKU_BACKEND_PORT, DKU_API_TICKET)")
    return dataikuapi.DSSClient("http://127.0.0.1:%s" % port, internal_ticket=ticket)


def default_project_key():
    key = os.environ.get("DKU_CURRENT_PROJECT_KEY")
    if not key:
        raise Exception("Default project key is not specified (no DKU_CURRENT_PROJECT_KEY in env)")
    return key
