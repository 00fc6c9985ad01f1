"""The role catalogue (python-lib/process_tracker/roles.py), table-driven over command lines and small trees:
every role and marker, the inheritance rules, transparent wrappers (UIF chain), labels, ids, redaction, and the
validation of bad catalogue entries. Pure: no process is started here (tests/integration/test_host.py does that)."""
import pytest

from process_tracker import roles
from process_tracker.pods import POD_ROLES, SPARK_ROLES
from process_tracker.roles import (
    ROLE_IDS,
    ROLES,
    RULES,
    CatalogueError,
    Node,
    Resolved,
    Role,
    Rule,
    analyse,
    classify_tree,
    compile_catalogue,
    resolve,
)

D = "/data/dss"
D2 = "/srv/dss2"
CP = D + "/bin:/opt/dataiku/dss/dist/dataiku-core.jar:/opt/dataiku/dss/lib/ivy/backend-run/*"
CONN = D + "/jupyter-run/jupyter/runtime/kernel-11111111-1111-4111-8111-111111111111.json"
SECRET = "PlantedS3cretValue0xDEADBEEF"


def java(kind, main, *extra, dip_home=D, xmx="2g"):
    return ["/usr/lib/jvm/java-17/bin/java", "-Ddku." + kind, "-Xmx" + xmx, *extra, "-cp",
            CP.replace(D, dip_home), main]


INIT = (["/sbin/init"], "systemd")
SUP = ([D + "/pyenv/bin/python", "-m", "supervisor.supervisord", "-c", D + "/install-support/supervisord.conf"],
       "python3")
NGINX = (["nginx: master process /usr/sbin/nginx -c " + D + "/install-support/nginx.conf"], "nginx")
BACKEND = (java("backend", "com.dataiku.dip.DSSBackendMain", xmx="4g"), "java")
JEK = (java("jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain", "127.0.0.1", "41001"), "java")
CAK = (java("cak", "com.dataiku.dip.dataflow.streaming.slave.DSSCAKernelMain"), "java")
FEK = (java("fek", "com.dataiku.dip.futures.DSSFutureKernelMain"), "java")
JUPYTER = (["/usr/bin/python3", "/opt/dataiku/dss/dku-jupyter/dkulauncher.py", "--config=x.py",
            "--notebook-dir=" + D + "/config/ipython_notebooks", "--port=11204"], "python3")
KERNEL = ([D + "/code-envs/python/foo/bin/python", "-m", "ipykernel_launcher", "-f", CONN], "python")
SPARK = (["/usr/bin/java", "-cp", "/opt/spark/conf/:/opt/spark/jars/*", "-Xmx1g",
          "org.apache.spark.deploy.SparkSubmit", "--master", "local[2]"], "java")
ML = ([D + "/code-envs/python/ml/bin/python", "-u", "-m", "dataiku.doctor.server", "41731", SECRET], "python")
RECIPE = ([D + "/code-envs/python/foo/bin/python", "-u", D + "/jobs/P/x/python-exec-wrapper.py"], "python")
R_PROC = (["/usr/lib/R/bin/exec/R", "--slave", "--no-restore", "--file=script.R"], "R")
PY = (["/usr/bin/python3", "-c", "pass"], "python3")
OTHER = (["/usr/bin/convert", "in.png", "out.png"], "convert")

# (case, argv, name, parent (argv, name) or None: a child of init, expected role, expected label)
MARKERS = [
    ("supervisord python module", *SUP, None, "supervisord", "supervisord"),
    ("supervisord binary", ["/usr/bin/supervisord", "-c", D + "/install-support/supervisord.conf"], "supervisord",
     None, "supervisord", "supervisord"),
    ("nginx master title", *NGINX, SUP, "nginx", "nginx master"),
    ("nginx plain argv", ["/usr/sbin/nginx", "-c", D + "/install-support/nginx.conf"], "nginx", SUP, "nginx",
     "nginx master"),
    ("backend -Ddku.backend", *BACKEND, SUP, "backend", "backend"),
    ("backend main class only", ["java", "-cp", CP, "com.dataiku.dip.DSSBackendMain"], "java", SUP, "backend",
     "backend"),
    ("governserver", java("governserver", "com.dataiku.dip.server.GovernServerMain"), "java", SUP, "governserver",
     "Govern server"),
    ("govern older ghserver", java("ghserver", "com.dataiku.x.Main"), "java", SUP, "governserver", "Govern server"),
    ("jek -Ddku.jek", *JEK, BACKEND, "jek", "JEK"),
    ("jek main class only", ["java", "-cp", CP, "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain"], "java",
     BACKEND, "jek", "JEK"),
    ("fek -Ddku.fek", *FEK, BACKEND, "fek", "FEK"),
    ("fek class, documented misspelling", ["java", "-cp", CP, "com.dataiku.dip.futures.DSSFutureKernelName"], "java",
     BACKEND, "fek", "FEK"),
    ("cak", *CAK, BACKEND, "cak", "CAK"),
    ("eventserver", java("eventserver", "com.dataiku.dip.eventsserver.EventServerMain"), "java", SUP, "eventserver",
     "event server"),
    ("apinode -Ddku.apimain", java("apimain", "com.dataiku.lambda.LambdaServerMain"), "java", SUP, "apinode",
     "API node"),
    ("apinode main class only", ["java", "-cp", CP, "com.dataiku.lambda.LambdaServerMain"], "java", SUP, "apinode",
     "API node"),
    ("jupyter server", *JUPYTER, SUP, "jupyter_server", "Jupyter server"),
    ("python kernel in a code env", *KERNEL, JUPYTER, "jupyter_kernel", "kernel py-dku-venv-foo"),
    ("python kernel, builtin env", [D + "/pyenv/bin/python", "-m", "ipykernel_launcher", "-f", CONN], "python",
     JUPYTER, "jupyter_kernel", "kernel python3"),
    ("python kernel, -m ipykernel", ["python3", "-m", "ipykernel", "-f", CONN], "python3", JUPYTER, "jupyter_kernel",
     "kernel python3"),
    ("R kernel", ["/usr/lib/R/bin/exec/R", "--slave", "-e", "IRkernel::main()", "--args", CONN], "R", JUPYTER,
     "jupyter_kernel", "kernel ir"),
    ("Scala kernel (toree)", ["java", "-classpath", D + "/jupyter-run/toree/lib/toree-assembly.jar",
                              "org.apache.toree.Main", "--profile", CONN], "java", JUPYTER, "jupyter_kernel",
     "kernel scala"),
    ("in-memory ML", *ML, BACKEND, "ml_training", "ML server"),
    ("ML under a JEK: marker beats inheritance", *ML, JEK, "ml_training", "ML server"),
    ("Flask webapp", [D + "/code-envs/python/web/bin/python", "-u", "/opt/dss/python/dataiku/webapps/backend.py"],
     "python", BACKEND, "webapp_backend", "webapp backend (Flask)"),
    ("webapp module", ["python3", "-m", "dataiku.webapps.run_streamlit"], "python3", BACKEND, "webapp_backend",
     "webapp backend"),
    ("Bokeh webapp", ["python3", "/opt/dss/python/dataiku/webapps/run_bokeh.py"], "python3", BACKEND,
     "webapp_backend", "webapp backend (Bokeh)"),
    ("Dash webapp", ["python3", "/opt/dss/python/dataiku/webapps/run_dash.py"], "python3", BACKEND,
     "webapp_backend", "webapp backend (Dash)"),
    ("Shiny webapp", ["/usr/lib/R/bin/exec/R", "--slave", "--file=/opt/dss/R/run_shiny.R"], "R", BACKEND,
     "webapp_backend", "webapp backend (Shiny)"),
    ("Spark driver under a JEK", *SPARK, JEK, "spark_driver", "Spark driver"),
    ("Spark driver under a kernel: marker beats inheritance", *SPARK, KERNEL, "spark_driver", "Spark driver"),
    ("Hadoop proxy", java("hproxy", "com.dataiku.dip.hproxy.HProxyMain", xmx="1g"), "java", SUP, "hproxy",
     "Hadoop proxy"),
]

POSTGRES = (["/usr/lib/postgresql/15/bin/postgres", "-D", "/data/pgsql/data", "-c",
             "config_file=/data/pgsql/data/postgresql.conf"], "postgres")
POSTGRES_GOVERN = (["/usr/lib/postgresql/15/bin/postgres", "-D/data/pgsql-govern/data"], "postgres")
FM_AGENT = (["/opt/dataiku-fm-agent/venv/bin/python", "/opt/dataiku-fm-agent/agent.py", "--config",
             "/etc/dataiku-fm-agent/agent.yml"], "python")
STORY = (["/usr/local/bin/docker-compose", "--project-name", "dss-story", "--file",
          "/opt/dataiku/dataiku-dss-14.2.0/story/docker-compose.yml", "up"], "docker-compose")

# processes that run for DSS but belong to no data directory (instance None), children of init:
# (case, argv, name, expected role, expected label)
HOST_MARKERS = [
    ("Fleet Manager agent", *FM_AGENT, "fm_agent", "Fleet Manager agent"),
    ("runtime database", *POSTGRES, "runtime_db", "runtime database"),
    ("Govern runtime database", *POSTGRES_GOVERN, "runtime_db", "Govern runtime database"),
    ("story service (docker-compose)", *STORY, "story", "story service"),
    ("story service (docker compose)", ["/usr/bin/docker", "compose", "--file=/opt/dss/story/docker-compose.yml",
                                        "up"], "docker", "story", "story service"),
]

# (case, parent (argv, name), child (argv, name), expected role, expected label): children with no marker
INHERITANCE = [
    ("python child of a JEK is a python recipe", JEK, RECIPE, "python_recipe", "python recipe"),
    ("R child of a JEK is an R recipe", JEK, R_PROC, "r_recipe", "R recipe"),
    ("other child of a JEK", JEK, OTHER, "dss_other", "convert"),
    ("python child of a CAK (continuous python recipe)", CAK, RECIPE, "python_recipe", "python recipe"),
    ("child of nginx is an nginx worker", NGINX, (["nginx: worker process"], "nginx"), "nginx", "nginx worker"),
    ("python child of a Spark driver stays spark", SPARK, (["python3", "-m", "pyspark.daemon"], "python3"),
     "spark_driver", "PySpark python"),
    ("R child of a Spark driver stays spark", SPARK, R_PROC, "spark_driver", "SparkR R"),
    ("other child of a Spark driver", SPARK, OTHER, "spark_driver", "Spark child convert"),
    ("child of a kernel", KERNEL, PY, "jupyter_kernel", "kernel child python3"),
    ("child of a python recipe", [JEK, RECIPE], PY, "python_recipe", "python recipe child python3"),
    ("child of an R recipe", [JEK, R_PROC], OTHER, "r_recipe", "R recipe child convert"),
    ("child of an ML server", ML, PY, "ml_training", "ML child python3"),
    ("R child of the backend (Shiny without a marker)", BACKEND, R_PROC, "webapp_backend", "webapp backend (R)"),
    ("python child of the backend", BACKEND, PY, "dss_other", "python3"),
    ("child of an FEK", FEK, PY, "dss_other", "python3"),
    ("child of supervisord", SUP, OTHER, "dss_other", "convert"),
    ("child of the Jupyter server (a terminal)", JUPYTER, OTHER, "dss_other", "convert"),
    ("child of a webapp", (["python3", "/x/dataiku/webapps/backend.py"], "python3"), PY, "webapp_backend",
     "webapp child python3"),
    ("child of a plain process", PY, RECIPE, "not_dss", "python"),
    ("child of the Hadoop proxy", MARKERS[-1][1:3], PY, "dss_other", "python3"),
]

# (case, parent, child, expected role, expected label): children of the HOST_MARKERS processes (instance None)
HOST_INHERITANCE = [
    ("a postgres worker of the runtime database", POSTGRES, (["postgres: checkpointer "], "postgres"), "runtime_db",
     "database worker"),
    ("a child of the Fleet Manager agent", FM_AGENT, OTHER, "dss_other", "convert"),
    ("a child of the story service", STORY, OTHER, "dss_other", "convert"),
]


def _tree(*chain):
    """{pid: (ppid, argv, name)}: init (1) then each (argv, name) the child of the previous one (10, 11, ...)."""
    tree = {1: (0, *INIT)}
    parent = 1
    for i, (argv, name) in enumerate(chain):
        pid = 10 + i
        tree[pid] = (parent, argv, name)
        parent = pid
    return tree


@pytest.mark.parametrize("case,argv,name,parent,role,label", MARKERS, ids=[m[0] for m in MARKERS])
def test_every_marker_gives_its_role_and_label(case, argv, name, parent, role, label):
    chain = ([SUP] if parent not in (None, SUP) else []) + ([parent] if parent else []) + [(argv, name)]
    tree = _tree(*chain)
    res = classify_tree(tree)[max(tree)]
    assert (res.role, res.label) == (role, label)
    assert res.instance == D
    assert not res.link


@pytest.mark.parametrize("case,parent,child,role,label", INHERITANCE, ids=[c[0] for c in INHERITANCE])
def test_unmarked_children_inherit_through_the_parent_role(case, parent, child, role, label):
    parents = parent if isinstance(parent, list) else [parent]
    tree = _tree(SUP, BACKEND, *parents, child) if parent is not PY else _tree(parent, child)
    res = classify_tree(tree)[max(tree)]
    assert (res.role, res.label) == (role, label)
    assert res.instance == (None if role == "not_dss" else D)


@pytest.mark.parametrize("case,argv,name,role,label", HOST_MARKERS, ids=[m[0] for m in HOST_MARKERS])
def test_host_level_markers_give_their_role_and_no_instance(case, argv, name, role, label):
    assert classify_tree(_tree((argv, name)))[10] == Resolved(role, label, None)


@pytest.mark.parametrize("case,parent,child,role,label", HOST_INHERITANCE, ids=[c[0] for c in HOST_INHERITANCE])
def test_children_of_host_level_processes_inherit(case, parent, child, role, label):
    assert classify_tree(_tree(parent, child))[11] == Resolved(role, label, None)


@pytest.mark.parametrize("argv,name", [
    (["/usr/lib/postgresql/15/bin/postgres", "-D", "/var/lib/postgresql/15/main"], "postgres"),
    (["/usr/bin/python3", "/data/pgsql/data"], "python3"),
    (["/usr/local/bin/docker-compose", "--file", "/srv/app/docker-compose.yml", "up"], "docker-compose"),
    (["/usr/bin/vim", "/opt/dss/story/docker-compose.yml"], "vim"),
    (["/usr/bin/python3", "-c", "pass", "-Ddku.hproxy"], "python3"),
])
def test_look_alikes_of_the_host_level_markers_are_not_dss(argv, name):
    assert classify_tree(_tree((argv, name)))[10].role == "not_dss"


def test_the_tables_cover_every_role_and_every_marker_rule():
    covered = {m[4] for m in MARKERS} | {c[3] for c in INHERITANCE} | {m[3] for m in HOST_MARKERS}
    pod_roles = {r[0] for r in POD_ROLES.values()} | {r[0] for r in SPARK_ROLES.values()}  # pods only, no marker
    assert covered | pod_roles == set(ROLE_IDS)
    matched_rules = {analyse(m[1], m[2]).rule for m in MARKERS + [m[:1] + m[1:3] for m in HOST_MARKERS]}
    marker_rules = {r.name for r in RULES if r.role != roles.LINK}
    assert marker_rules <= matched_rules
    link_rules = {r.name for r in RULES if r.role == roles.LINK}
    chain = [analyse(argv, name).rule for argv, name in (UIF_SUDO, UIF_WRAPPER, UIF_EXEC, (["sh", "-c", "x"], "sh"))]
    assert set(chain) == link_rules


UIF_SUDO = (["sudo", "-n", D + "/security/execwrapper.sh", "execute", "alice", "--", "python", "-m",
             "ipykernel_launcher", "-f", CONN, "--token", SECRET], "sudo")
UIF_WRAPPER = (["/bin/bash", D + "/security/execwrapper.sh", "execute", "alice"], "bash")
UIF_EXEC = (["/usr/bin/python3", "/opt/dss/resources/security/exec.py", "execute", "alice", "-m", "ipykernel_launcher",
             "-f", CONN], "python3")


def test_uif_chain_is_transparent_and_resolves_to_the_kernel():
    tree = _tree(SUP, JUPYTER, UIF_SUDO, UIF_WRAPPER, UIF_EXEC, KERNEL)
    res = classify_tree(tree)
    sudo, wrapper, exec_py, kernel = (res[p] for p in (12, 13, 14, 15))
    assert kernel == Resolved("jupyter_kernel", "kernel py-dku-venv-foo", D, link=False)
    assert sudo == Resolved("jupyter_kernel", "UIF wrapper (sudo)", D, link=True)
    assert wrapper == Resolved("jupyter_kernel", "UIF wrapper (execwrapper.sh)", D, link=True)
    assert exec_py == Resolved("jupyter_kernel", "UIF wrapper (exec.py)", D, link=True)
    # the wrappers' arguments hold the wrapped command line: no id but DIP_HOME is taken from them
    assert dict(analyse(*UIF_SUDO).ids) == {"dip_home": D}
    assert dict(analyse(*UIF_EXEC).ids) == {"dip_home": D}


def test_a_recipe_under_uif_inherits_from_the_jek_through_the_wrappers():
    tree = _tree(SUP, BACKEND, JEK, (["sudo", "-n", D + "/security/execwrapper.sh", "execute"], "sudo"),
                 (["sh", "-c", "python recipe.py"], "sh"), RECIPE)
    res = classify_tree(tree)
    assert res[15] == Resolved("python_recipe", "python recipe", D)
    assert (res[13].role, res[13].link, res[14].role) == ("python_recipe", True, "python_recipe")


def test_a_wrapper_that_wraps_nothing_inherits_like_any_child():
    res = classify_tree(_tree(SUP, BACKEND, JEK, (["sh", "-c", "sleep 1"], "sh")))
    assert res[13] == Resolved("dss_other", "shell wrapper", D, link=True)
    res = classify_tree(_tree((["bash"], "bash")))  # a login shell: not DSS's
    assert res[10].role == "not_dss"


def test_a_shell_outside_dss_stays_not_dss_even_above_a_dss_process():
    res = classify_tree(_tree((["-bash"], "bash"), SUP))
    assert res[10].role == "not_dss"
    assert res[11].role == "supervisord"


@pytest.mark.parametrize("argv,name", [
    SPARK,
    (["python3", "-m", "ipykernel_launcher", "-f", "/home/u/.local/share/jupyter/runtime/kernel-"
      "11111111-1111-4111-8111-111111111111.json"], "python3"),
    (["python3", "app/run_dash.py"], "python3"),
    (["python3", "app/run_bokeh.py"], "python3"),
    (["R", "-e", "shiny::runApp()"], "R"),
    (["java", "-jar", "/opt/toree/toree.jar"], "java"),
    (["java", "-jar", "/opt/other/app.jar"], "java"),
    (["/usr/bin/python3", "-m", "http.server", "18080"], "python3"),
    (["supervisord", "-c", "/etc/supervisor/supervisord.conf"], "supervisord"),
    (["nginx: master process /usr/sbin/nginx"], "nginx"),
    (["tail", "-f", D + "/install-support/supervisord.conf"], "tail"),
    (["python3", "script.py", "-m", "dataiku.doctor.server"], "python3"),
    (["java", "-cp", "/opt/app/bin:/opt/app/lib/*", "org.apache.spark.deploy.SparkSubmit"], "java"),
    (["/opt/pyenv/bin/python", "-m", "ipykernel_launcher", "-f", "/run/kernel-"
      "11111111-1111-4111-8111-111111111111.json"], "python"),
])
def test_generic_markers_and_look_alikes_outside_dss_are_not_dss(argv, name):
    assert classify_tree(_tree((argv, name)))[10].role == "not_dss"


def test_a_kernel_naming_a_dss_connection_file_is_dss_even_without_a_dss_parent():
    res = classify_tree(_tree(KERNEL))[10]
    assert (res.role, res.instance) == ("jupyter_kernel", D)


def test_instance_is_the_own_dip_home_else_the_dss_ancestors():
    second_jek = (java("jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain", dip_home=D2), "java")
    tree = _tree(SUP, BACKEND, second_jek, RECIPE, PY)
    res = classify_tree(tree)
    assert [res[p].instance for p in (10, 11, 12)] == [D, D, D2]
    assert res[13].instance == D  # its own interpreter path names D
    assert res[14].instance == D  # inherited from the recipe


def test_two_instances_on_one_host_are_told_apart():
    sup2 = ([D2 + "/pyenv/bin/python", "-m", "supervisor.supervisord", "-c", D2 + "/install-support/supervisord.conf"],
            "python3")
    backend2 = (java("backend", "com.dataiku.dip.DSSBackendMain", dip_home=D2), "java")
    tree = {1: (0, *INIT), 10: (1, *SUP), 11: (10, *BACKEND), 20: (1, *sup2), 21: (20, *backend2),
            22: (21, *JEK), 23: (22, *R_PROC)}
    res = classify_tree(tree)
    assert res[11].instance == D and res[21].instance == D2
    assert (res[22].role, res[22].instance) == ("jek", D)  # its classpath names D
    assert (res[23].role, res[23].instance) == ("r_recipe", D)


def test_a_settled_resolution_is_kept_after_reparenting_to_init():
    recipe = analyse(*RECIPE)
    nodes = {1: Node(0, analyse(*INIT)), 50: Node(1, recipe)}
    assert resolve(nodes)[50].role == "not_dss"
    kept = Resolved("python_recipe", "python recipe", D)
    assert resolve(nodes, known={50: kept})[50] == kept


def test_parent_cycles_from_a_racy_snapshot_do_not_hang():
    nodes = {5: Node(6, analyse(*PY)), 6: Node(5, analyse(*SUP)), 7: Node(7, analyse(*PY))}
    res = resolve(nodes)
    assert set(res) == {5, 6, 7}
    assert res[7].role == "not_dss"


# --- ids ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,expected", [
    (java("jek", "X", xmx="512m"), {"dip_home": D, "xmx_bytes": 512 * 1024 ** 2}),
    (["java", "-Xmx3G", "-classpath", D + "/bin", "com.dataiku.X"], {"dip_home": D, "xmx_bytes": 3 * 1024 ** 3}),
    (["java", "-Xmx1t", "--class-path", D + "/bin:/x", "-Ddku.x", "X"], {"dip_home": D, "xmx_bytes": 1024 ** 4}),
    (["java", "-cp", "/opt/app/bin:/x", "X"], {}),  # not a DSS JVM: its classpath says nothing
    (["java", "-Xmx1048576", "-Xmx64k", "X"], {"xmx_bytes": 1048576}),
    (SUP[0], {"dip_home": D}),
    (NGINX[0], {"dip_home": D}),
    (JUPYTER[0], {"dip_home": D, "port": 11204}),
    (["python3", "x.py", "--port", "8080"], {"port": 8080}),
    (["python3", "x.py", "--port=99999"], {}),
    (KERNEL[0], {"dip_home": D, "code_env": "foo", "kernel_id": "11111111-1111-4111-8111-111111111111"}),
    (["python", "-m", "ipykernel_launcher", "-f=" + CONN], {"dip_home": D,
                                                             "kernel_id": "11111111-1111-4111-8111-111111111111"}),
    (ML[0], {"dip_home": D, "code_env": "ml", "port": 41731}),
    ([D + "/code-envs/R/r-env/bin/R"], {"dip_home": D, "code_env": "r-env"}),
    (["sudo", D + "/security/execwrapper.sh"], {"dip_home": D}),
    (["java", "-cp", "/bin:/x", "-Ddku.jek", "X"], {}),
    (["java", "-cp", "relative/bin", "-Ddku.jek", "X"], {}),
    (["java", "-cp", "/a/../etc/bin", "-Ddku.jek", "X"], {"dip_home": "/etc"}),
    (["/opt/pyenv/bin/python", "x.py"], {"dip_home": "/opt"}),
    ([], {}),
])
def test_ids_from_the_command_line(argv, expected):
    assert dict(analyse(argv, "x").ids) == expected


# --- redaction ---------------------------------------------------------------------------------------------------

PLANTED = [
    ML[0],
    java("backend", "com.dataiku.dip.DSSBackendMain", "-Djavax.net.ssl.keyStorePassword=" + SECRET,
         "-Ddku.db.password=" + SECRET, "-Dsecret.key=" + SECRET),
    JUPYTER[0] + ["--token", SECRET, "--NotebookApp.token=" + SECRET],
    ["python3", "-m", "ipykernel_launcher", "-f", D + "/jupyter-run/kernel-" + SECRET + ".json"],
    ["java", "-cp", "/data/" + SECRET + "/password/bin:/x", "-Ddku.jek", "X"],
    ["java", "-cp", "/data/dss/bin", "-Ddku.jek", "--api-key=" + SECRET, "-Xmx" + SECRET],
    ["python3", "/x/dataiku/webapps/backend.py", "--port=" + SECRET, "--port", SECRET],
    [D + "/code-envs/python/my-token-env/bin/python", "-m", "ipykernel_launcher", "-f", CONN],
    ["sudo", "-n", D + "/security/execwrapper.sh", "execute", "--password", SECRET, "-m", "dataiku.doctor.server",
     "1", SECRET],
    ["nginx: master process nginx -c " + D + "/install-support/nginx.conf -g pid " + SECRET],
]


@pytest.mark.parametrize("argv", PLANTED)
def test_planted_secrets_never_reach_labels_ids_or_names(argv):
    for name in ("python3", "java", "token-" + SECRET[:6], ""):
        traits = analyse(argv, name)
        res = classify_tree({1: (0, *INIT), 9: (1, *SUP), 10: (9, argv, name), 11: (10, ["python3"], name)})
        text = repr(traits) + repr(res)
        assert SECRET not in text and SECRET[:10] not in text
        assert "token" not in repr(dict(traits.ids)).lower()


def test_names_are_reduced_to_a_safe_charset():
    assert analyse([], "kworker/0:1-events").name == "kworker0:1-events"
    assert analyse([], "").name == "?"
    assert analyse([], "a b\x00c<d>\udcff").name == "abcd"
    assert analyse(["x"], "my-password-tool").name == "?"


# --- odd command lines -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("argv,name", [
    ([], "kthreadd"),
    (["", "", ""], "weird"),
    (["\udcff\udcfe", "-Ddku.jek\udcff"], "java"),
    (["java", "-Ddku.jek"] + ["x" * 10] * 100000, "java"),
    (["java", "-cp", D + "/bin:" + "y" * (2 * 1024 * 1024), "-Ddku.fek"], "java"),
    (["nginx: worker process" + " " * 100], "nginx"),
    (["python3", "-m"], "python3"),
    (["python3", "-W", "ignore", "-m", "dataiku.doctor.server", "1"], "python3"),
])
def test_odd_command_lines_are_classified_without_error(argv, name):
    traits = analyse(argv, name)
    assert traits.kind in roles.KINDS
    classify_tree({1: (0, *INIT), 2: (1, argv, name)})


def test_option_values_before_dash_m_are_skipped():
    assert analyse(["python3", "-W", "ignore", "-m", "dataiku.doctor.server", "1"], "python3").role == "ml_training"
    assert analyse(["python3", "-mdataiku.doctor.server"], "python3").role == "ml_training"


# --- the catalogue itself ----------------------------------------------------------------------------------------

def test_roles_have_stable_ids_display_names_and_distinct_colours():
    assert ROLE_IDS == ("supervisord", "nginx", "backend", "governserver", "jek", "fek", "cak", "eventserver",
                        "apinode", "hproxy", "jupyter_server", "jupyter_kernel", "python_recipe", "r_recipe",
                        "spark_driver", "ml_training", "webapp_backend", "runtime_db", "story", "fm_agent",
                        "container_recipe", "spark_executor", "dss_other", "not_dss")
    colours = [r.colour for r in ROLES]
    assert len(set(colours)) == len(colours)
    assert roles.role_style("jek") == ("Job kernels (JEK)", "#ff7f0e")
    with pytest.raises(KeyError):
        roles.role_style("nope")


def _rule(**kw):
    base = dict(name="r", role="jek", when=(("arg", "-Ddku.jek"),), label="JEK")
    base.update(kw)
    return Rule(**base)


@pytest.mark.parametrize("rules,entry,message", [
    ((_rule(role="nosuchrole"),), "r", "unknown role"),
    ((_rule(role="not_dss"),), "r", "unknown role"),
    ((_rule(when=(("regex", ".*"),)),), "r", "unknown matcher"),
    ((_rule(when=(("arg", ""),)),), "r", "non-empty"),
    ((_rule(when=(("arg", ()),)),), "r", "non-empty"),
    ((_rule(when=("arg",)),), "r", "pair"),
    ((_rule(when=()),), "r", "at least one condition"),
    ((_rule(when=(("kind", "cobol"),)),), "r", "unknown kind"),
    ((_rule(label="{cmdline}"),), "r", "may only use"),
    ((_rule(label=""),), "r", "non-empty"),
    ((_rule(context="sometimes"),), "r", "context"),
    ((_rule(ids=("secret",)),), "r", "ids must be"),
    ((_rule(), _rule()), "r", "duplicate"),
    ((_rule(name=""),), "", "not a named Rule"),
])
def test_bad_rules_are_refused_and_named(rules, entry, message):
    with pytest.raises(CatalogueError) as err:
        compile_catalogue(ROLES, rules)
    assert err.value.entry == entry
    assert message in str(err.value)


@pytest.mark.parametrize("bad,entry,message", [
    (Role("Bad Id", "x", "#000000"), "Bad Id", "lower-case"),
    (Role("jek", "x", "#000000"), "jek", "duplicate"),
    (Role("extra", "x", "red"), "extra", "colour"),
    (Role("extra", "", "#000000"), "extra", "display"),
    (Role("extra", "x", "#000000", (("any", "nope", "x"),)), "extra", "unknown"),
    (Role("extra", "x", "#000000", (("python", "dss_other", "x"),)), "extra", "last inheritance step"),
    (Role("extra", "x", "#000000", (("fortran", "dss_other", "x"),)), "extra", "kind"),
    (Role("extra", "x", "#000000", (("any", "dss_other", "{argv}"),)), "extra", "may only use"),
])
def test_bad_roles_are_refused_and_named(bad, entry, message):
    with pytest.raises(CatalogueError) as err:
        compile_catalogue(ROLES + (bad,), RULES)
    assert err.value.entry == entry
    assert message in str(err.value)


def test_the_shipped_catalogue_compiles_and_a_new_role_is_one_entry():
    extra = Role("dss_batch", "Batch", "#123456", (("any", "dss_batch", "batch child"),))
    rule = Rule("batch", "dss_batch", (("arg", "-Ddku.batch"),), "batch")
    by_id, compiled = compile_catalogue(ROLES + (extra,), RULES + (rule,))
    assert "dss_batch" in by_id and compiled[-1][0] is rule


# --- names from comm only, JVM markers need a JVM, confirmed data directories (issue 10, finding 8) -------------

KEYED = "python3-AKIAPTPLANTEDQ7X2EXAMPLE"


def test_the_name_is_the_comm_given_never_argv0():
    assert analyse([KEYED, "serve"], "python3-AKIAPTP").name == "python3-AKIAPTP"
    assert analyse(["/opt/" + KEYED, "serve"], "").name == "?"  # no comm: nothing from argv[0] instead
    res = classify_tree(_tree(SUP, BACKEND, JEK, ([KEYED, "serve"], "python3-AKIAPTP")))[13]
    assert (res.role, res.label) == ("dss_other", "python3-AKIAPTP")


@pytest.mark.parametrize("argv,name,role", [
    (["/usr/bin/python3", "-c", "x", "-Ddku.jek", "-cp", D + "/bin"], "python3", None),
    (["/usr/bin/python3", "-c", "x", "-Ddku.jek", "-cp", D + "/bin"], "java", "jek"),  # comm java: a JVM
    (["/usr/bin/python3", "-cp", CP, "com.dataiku.dip.DSSBackendMain"], "python3", None),
    (["/bin/sh", "-c", "-Ddku.backend"], "sh", roles.LINK),
    (["/usr/lib/jvm/java-17/bin/java", "-Ddku.fek", "-cp", CP, "X"], "launcher", "fek"),  # argv[0] java
    (["/usr/bin/node", "-Ddku.hproxy"], "node", None),
])
def test_dss_jvm_markers_count_only_for_a_jvm(argv, name, role):
    traits = analyse(argv, name)
    assert traits.role == role
    if role is None:
        assert "dip_home" not in traits.ids and not traits.jvm_home  # nor does its classpath name an instance
        assert classify_tree(_tree(SUP, BACKEND, (argv, name)))[12].role == "dss_other"  # inherits, no marker


FAKE = "/tmp/fake"
FAKE_CONN = FAKE + "/jupyter-run/jupyter/runtime/kernel-11111111-1111-4111-8111-111111111111.json"
FAKE_KERNEL = (["/usr/bin/python3", "-m", "ipykernel_launcher", "-f", FAKE_CONN], "python3")


def test_a_generic_marker_counts_outside_dss_only_for_a_confirmed_data_directory():
    looked_at = []

    def data_dir(path):
        looked_at.append(path)
        return path == D

    assert classify_tree(_tree(FAKE_KERNEL), data_dir=data_dir)[10] == Resolved("not_dss", "python3", None)
    assert classify_tree(_tree(FAKE_KERNEL), data_dir=lambda p: True)[10].instance == FAKE
    assert classify_tree(_tree(FAKE_KERNEL))[10].instance == FAKE  # no checker: made-up trees trust the path
    # a kernel of a real tree naming an invented directory belongs to its ancestor's instance
    del looked_at[:]
    res = classify_tree(_tree(SUP, JUPYTER, FAKE_KERNEL), data_dir=data_dir)
    assert res[12] == Resolved("jupyter_kernel", "kernel python3", D)
    assert looked_at.count(FAKE) == 1  # once per directory per resolve


def test_a_dss_jvm_classpath_vouches_for_its_data_directory():
    """An unreadable data directory (the checker says no) still counts when a DSS JVM names it via -cp."""
    fake_backend = (java("backend", "com.dataiku.dip.DSSBackendMain", dip_home=FAKE), "java")
    tree = {1: (0, *INIT), 10: (1, *fake_backend), 20: (1, *FAKE_KERNEL)}
    res = classify_tree(tree, data_dir=lambda p: False)
    assert res[10] == Resolved("backend", "backend", FAKE)
    assert res[20] == Resolved("jupyter_kernel", "kernel python3", FAKE)
