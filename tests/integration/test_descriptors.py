"""Every plugin.json, runnable.json and webapp.json: valid JSON, only keys DSS knows, required keys present,
param types known, every param labelled and described, defaults of the right type."""
import glob
import json
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

PLUGIN_KEYS = {"id", "version", "meta", "params"}
PLUGIN_META_KEYS = {"label", "description", "author", "icon", "licenseInfo", "url", "tags", "supportLevel"}
RUNNABLE_KEYS = {
    "meta", "impersonate", "permissions", "requiresGlobalAdmin", "resultType", "resultLabel", "macroRoles",
    "params", "adminParams",
}
RUNNABLE_META_KEYS = {"label", "description", "icon", "category"}
RESULT_TYPES = {"NONE", "HTML", "URL", "FILE", "FOLDER_FILE", "RESULT_TABLE"}
PERMISSIONS = {"ADMIN", "READ_CONF", "WRITE_CONF"}
MACRO_ROLES = {
    "PROJECT_MACROS", "DATASET", "DATASETS", "MANAGED_FOLDER", "SAVED_MODEL", "API_SERVICE", "PROJECT_CREATOR",
}
WEBAPP_KEYS = {"meta", "baseType", "hasBackend", "noJSSecurity", "standardWebAppLibraries", "params", "roles"}
WEBAPP_META_KEYS = {"label", "description", "icon"}
PARAM_KEYS = {
    "name", "label", "type", "description", "mandatory", "defaultValue", "selectChoices", "visibilityCondition",
    "minI", "maxI", "minD", "maxD", "parameterSetId",
}
PARAM_TYPES = {
    "STRING", "INT", "DOUBLE", "BOOLEAN", "SELECT", "MULTISELECT", "STRINGS", "SEPARATOR", "PASSWORD", "PRESET",
    "TEXTAREA",
}


def _load(path):
    with open(path) as f:
        return json.load(f)


def _descriptors(pattern):
    return sorted(glob.glob(os.path.join(ROOT, pattern), recursive=True))


def _check_params(path, params):
    assert isinstance(params, list), "%s: params must be a list" % path
    names = set()
    for p in params:
        where = "%s: param %s" % (path, p.get("name", p.get("label")))
        assert set(p) <= PARAM_KEYS, "%s: unknown keys %s" % (where, set(p) - PARAM_KEYS)
        assert p.get("type") in PARAM_TYPES, "%s: unknown type %r" % (where, p.get("type"))
        assert p.get("label"), "%s: no label" % where
        assert p.get("description"), "%s: no description" % where
        if p["type"] == "SEPARATOR":
            continue
        assert p.get("name"), "%s: no name" % where
        assert p["name"] not in names, "%s: duplicate name" % where
        names.add(p["name"])
        if "defaultValue" not in p:
            continue
        d = p["defaultValue"]
        t = p["type"]
        if t == "INT":
            assert isinstance(d, int) and not isinstance(d, bool), where
        elif t == "DOUBLE":
            assert isinstance(d, (int, float)) and not isinstance(d, bool), where
        elif t == "BOOLEAN":
            assert isinstance(d, bool), where
        elif t in ("STRING", "TEXTAREA", "PASSWORD"):
            assert isinstance(d, str), where
        elif t == "STRINGS":
            assert isinstance(d, list) and all(isinstance(x, str) for x in d), where
        elif t in ("SELECT", "MULTISELECT"):
            choices = {c["value"] for c in p.get("selectChoices", [])}
            assert choices, "%s: no selectChoices" % where
            for c in p["selectChoices"]:
                assert c.get("label"), "%s: choice without label" % where
            values = d if t == "MULTISELECT" else [d]
            assert set(values) <= choices, "%s: default %r not among choices" % (where, d)


def test_plugin_json():
    path = os.path.join(ROOT, "plugin.json")
    conf = _load(path)
    assert set(conf) <= PLUGIN_KEYS
    assert conf["id"] == "process-tracker"
    assert conf["version"].count(".") == 2
    assert set(conf["meta"]) <= PLUGIN_META_KEYS
    for key in ("label", "description", "author", "icon", "licenseInfo", "tags"):
        assert conf["meta"].get(key), key
    assert conf["meta"]["tags"] == ["Administration", "Monitoring"]
    _check_params(path, conf.get("params", []))


def test_code_env_accepts_python_39_to_312_and_lists_runtime_packages():
    desc = _load(os.path.join(ROOT, "code-env", "python", "desc.json"))
    assert desc["acceptedPythonInterpreters"] == ["PYTHON39", "PYTHON310", "PYTHON311", "PYTHON312"]
    # as Dataiku's current plugins declare it
    assert (desc["forceConda"], desc["installCorePackages"], desc["corePackagesSet"]) == (False, True, "AUTO")
    with open(os.path.join(ROOT, "code-env", "python", "spec", "requirements.txt")) as f:
        names = {line.split(">")[0].split("=")[0].strip() for line in f if line.strip()}
    # inside DSS the client is the one DSS ships (a newer one beside an older DSS is a pairing Dataiku reports as
    # failing): the code env does not install its own; the CLI's pyproject does
    # kubernetes: the webapp lists DSS's pods with it when k8sEnabled (docs/kubernetes.md)
    assert names == {"psutil", "flask", "plotly", "kubernetes"}
    with open(os.path.join(ROOT, "pyproject.toml")) as f:
        assert '"dataiku-api-client>=' in f.read()


@pytest.mark.parametrize("path", _descriptors("python-runnables/*/runnable.json"))
def test_runnable_json(path):
    conf = _load(path)
    assert set(conf) <= RUNNABLE_KEYS, "unknown keys %s" % (set(conf) - RUNNABLE_KEYS)
    assert set(conf["meta"]) <= RUNNABLE_META_KEYS
    for key in ("label", "description", "icon", "category"):
        assert conf["meta"].get(key), key
    assert conf["resultType"] in RESULT_TYPES
    assert set(conf.get("permissions", [])) <= PERMISSIONS
    for role in conf.get("macroRoles", []):
        assert role["type"] in MACRO_ROLES
    _check_params(path, conf.get("params", []) + conf.get("adminParams", []))
    assert os.path.exists(os.path.join(os.path.dirname(path), "runnable.py"))


@pytest.mark.parametrize("path", _descriptors("webapps/*/webapp.json"))
def test_webapp_json(path):
    conf = _load(path)
    assert set(conf) <= WEBAPP_KEYS, "unknown keys %s" % (set(conf) - WEBAPP_KEYS)
    assert set(conf["meta"]) <= WEBAPP_META_KEYS
    assert conf["meta"].get("label") and conf["meta"].get("description")
    assert conf["baseType"] == "STANDARD"
    assert conf["noJSSecurity"] == "true"  # as Dataiku's "convert to plugin webapp" writes it (a string)
    if conf.get("hasBackend"):
        assert os.path.exists(os.path.join(os.path.dirname(path), "backend.py"))
    _check_params(path, conf.get("params", []))


def test_every_descriptor_is_checked():
    """A descriptor in an unexpected place would escape validation."""
    found = set(_descriptors("**/runnable.json")) | set(_descriptors("**/webapp.json"))
    found = {p for p in found if "/tests/" not in p and "/.venv/" not in p}
    expected = set(_descriptors("python-runnables/*/runnable.json")) | set(_descriptors("webapps/*/webapp.json"))
    assert found == expected


def test_no_text_says_the_builtin_kernel_macro_acts_by_default():
    """DSS's "Kill Jupyter sessions" macro reads `config.get('simulate', True)`: a dry run unless told otherwise."""
    wrong = []
    for pattern in ("README.md", "docs/*.md", "python-lib/**/*.py", "python-runnables/*/runnable.json"):
        for path in _descriptors(pattern):
            with open(path) as f:
                if "defaults to false" in f.read():
                    wrong.append(os.path.relpath(path, ROOT))
    assert wrong == []


def test_the_installed_run_a_macro_step_has_every_field_dss_exports(simulator):
    """Installed through the macro, as DSS runs it, and read back from the (simulated) DSS."""
    from dev.dss_runtime import run_macro
    from dev.dss_simulator.builders import instance, project

    sim = simulator(instance(projects=[project("OPS")]))
    run_macro(os.path.join(ROOT, "python-runnables", "install-cleanup-scenario"), {"hour": 2}, project_key="OPS",
              dss=sim, user="admin")
    client = sim.client()
    (listed,) = client.get_project("OPS").list_scenarios(as_type="listitems")
    (step,) = sim.scenario("OPS", listed["id"])["params"]["steps"]
    assert {k: v for k, v in step.items() if k not in ("id", "name", "params")} == {
        "type": "runnable", "enabled": True, "alwaysShowComment": False,
        "runConditionType": "RUN_IF_STATUS_MATCH", "runConditionStatuses": ["SUCCESS", "WARNING"],
        "runConditionExpression": "", "resetScenarioStatus": False, "delayBetweenRetries": 10, "maxRetriesOnFail": 0,
    }
    assert set(step["params"]) == {"runnableType", "config", "adminConfig", "proceedOnFailure"}
    assert step["params"]["runnableType"] == "pyrunnable_process-tracker_kill-idle-kernels"
    assert step["params"]["config"]["simulate"] is True and step["params"]["proceedOnFailure"] is False
