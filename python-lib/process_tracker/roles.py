"""The role catalogue: which DSS process is which, as data.

Three tables, all data, validated at import (a bad entry raises `CatalogueError` naming it):

- `ROLES`: every role id with its display name, a stable chart colour and its *inheritance rule*: the role
  (and label) a child process with no marker of its own gets, by the child's kind (python, r, java, shell,
  other). Example: a python child of a JEK is a `python_recipe`, an R child an `r_recipe`; every child of
  nginx is `nginx` ("nginx worker"); every child of a Spark driver stays `spark_driver`.
- `RULES`: ordered marker rules over a process's own command line; the first match wins. A rule either gives
  a role, or marks the process as a transparent LINK (sudo, execwrapper.sh, exec.py, sh/bash wrappers).
- `ID_PATTERNS` (and the classpath rule): the ids extracted from a command line: `dip_home`, `kernel_id`,
  `xmx_bytes`, `port`, `code_env`.

Two pure functions use them:

- `analyse(argv, name) -> Traits`: what one process's own command line says (marker rule, label, kind, ids).
  Computed once per process (pid, created_at) by the scanner and cached. The raw command line is used here
  and dropped: `Traits` keeps only the rule, a short label and validated ids.
- `resolve(nodes, known=None, data_dir=None) -> {pid: Resolved}`: roles over a process tree. An explicit marker
  beats inheritance; an unmatched process inherits from its nearest classified ancestor through that ancestor's
  inheritance rule, links skipped. A link takes the role of the first non-link process below it (the UIF chain
  `sudo -> execwrapper.sh -> exec.py -> kernel` is all `jupyter_kernel`), or inherits like any process when it
  wraps nothing. Some markers are generic (SparkSubmit, ipykernel, Bokeh/Dash): they count only inside a DSS
  tree (a DSS ancestor, or a confirmed DSS data directory in the process's own ids); outside, the process is
  `not_dss`. `instance` is the process's own DIP_HOME when its command line names a confirmed one (a DSS JVM's
  classpath, or a directory that `data_dir` says looks like a DSS data directory), else its DSS ancestor's.
- DSS JVM markers (`-Ddku.<kind>`, `com.dataiku...Main`) count only for a JVM (argv[0] basename or comm `java`).

Secrets: labels are built from fixed strings, the process name (comm, reduced to a safe charset) and
validated ids; an id is kept only when it matches its strict pattern and contains no secret-looking word.
Arguments (ML server secret, -D...password=..., --token ...) are never copied.
"""
import os
import re
from dataclasses import dataclass, field
from typing import Dict, Mapping, Optional, Sequence, Tuple

LINK = "link"  # pseudo-role of a rule: a transparent wrapper, never a record's role
KINDS = ("python", "r", "java", "shell", "other")
DSS_CONTEXT = "dss"  # rule context: the marker counts only inside a DSS tree
ANYWHERE = "anywhere"  # rule context: the marker alone says DSS


class CatalogueError(ValueError):
    """A bad role or rule entry. `entry` names it."""

    def __init__(self, entry, message):
        self.entry = entry
        super().__init__("role catalogue entry %r: %s" % (entry, message))


@dataclass(frozen=True)
class Role:
    """A role: stable `id`, `display` name, stable chart `colour` (#rrggbb) and inheritance rule.

    `inherit` is an ordered tuple of (child kind or "any", role id, label template): the first entry whose kind
    matches gives an unmarked child its role and label. `{name}` in a template is the child's process name.
    An empty `inherit` means children do not inherit (used by `not_dss`).
    """

    id: str
    display: str
    colour: str
    inherit: Tuple[Tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Rule:
    """A marker rule: every condition in `when` must hold (a condition with several values holds if any does).

    Conditions, over the process's arguments (a rewritten title like "nginx: master process ..." is split):
      ("prog", names)        basename of the program (argv[0], or the process name), e.g. "sudo", "nginx"
      ("arg", values)        an argument equals one of the values, e.g. "-Ddku.jek"
      ("arg_prefix", values) an argument starts with one, e.g. "com.dataiku.dip.futures.DSSFutureKernel"
      ("arg_suffix", values) an argument ends with one, e.g. "/dku-jupyter/dkulauncher.py"
      ("arg_contains", values)  an argument contains one
      ("module", values)     python only: `-m <module>` is the value or a sub-module of it
      ("kind", kinds)        the process kind: python, r, java, shell, other
    `role` is a role id or LINK. `label` is the label of a matched process (a template: `{name}`, `{spec}`).
    `context` is ANYWHERE (the marker is DSS's own) or DSS_CONTEXT (generic marker: only inside a DSS tree).
    `ids` lists the ids kept for a matched process (None: all that were found).
    """

    name: str
    role: str
    when: Tuple[Tuple[str, object], ...]
    label: str
    context: str = ANYWHERE
    ids: Optional[Tuple[str, ...]] = None


# --- the catalogue ----------------------------------------------------------------------------------------------

_TO_OTHER = (("any", "dss_other", "{name}"),)
_TO_RECIPES = (("python", "python_recipe", "python recipe"), ("r", "r_recipe", "R recipe")) + _TO_OTHER

ROLES = (
    Role("supervisord", "supervisord", "#7f7f7f", _TO_OTHER),
    Role("nginx", "nginx", "#17becf", (("any", "nginx", "nginx worker"),)),
    Role("backend", "DSS backend", "#1f77b4", (("r", "webapp_backend", "webapp backend (R)"),) + _TO_OTHER),
    Role("governserver", "Govern server", "#393b79", _TO_OTHER),
    Role("jek", "Job kernels (JEK)", "#ff7f0e", _TO_RECIPES),
    Role("fek", "Future kernels (FEK)", "#ffbb78", _TO_OTHER),
    Role("cak", "Continuous activity kernels (CAK)", "#8c564b", _TO_RECIPES),
    Role("eventserver", "Event server", "#c49c94", _TO_OTHER),
    Role("apinode", "API node", "#9467bd", _TO_OTHER),
    Role("hproxy", "Hadoop proxy", "#5254a3", _TO_OTHER),
    Role("jupyter_server", "Jupyter server", "#2ca02c", _TO_OTHER),
    Role("jupyter_kernel", "Jupyter kernels", "#98df8a", (("any", "jupyter_kernel", "kernel child {name}"),)),
    Role("python_recipe", "Python recipes", "#d62728", (("any", "python_recipe", "python recipe child {name}"),)),
    Role("r_recipe", "R recipes", "#ff9896", (("any", "r_recipe", "R recipe child {name}"),)),
    Role("spark_driver", "Spark drivers", "#e377c2", (
        ("python", "spark_driver", "PySpark python"), ("r", "spark_driver", "SparkR R"),
        ("any", "spark_driver", "Spark child {name}"))),
    Role("ml_training", "ML training", "#bcbd22", (("any", "ml_training", "ML child {name}"),)),
    Role("webapp_backend", "Webapp backends", "#9edae5", (("any", "webapp_backend", "webapp child {name}"),)),
    Role("runtime_db", "Runtime database (PostgreSQL)", "#637939", (("any", "runtime_db", "database worker"),)),
    Role("story", "Story service", "#ce6dbd", _TO_OTHER),
    Role("fm_agent", "Fleet Manager agent", "#843c39", _TO_OTHER),
    # roles only pods have (process_tracker.pods: DSS's pods on Kubernetes); no marker on a host
    Role("container_recipe", "Recipes in containers", "#6b6ecf", (("any", "container_recipe", "recipe child {name}"),)),
    Role("spark_executor", "Spark executors", "#f7b6d2", (("any", "spark_executor", "Spark executor child {name}"),)),
    Role("dss_other", "Other DSS processes", "#c7c7c7", _TO_OTHER),
    Role("not_dss", "Not DSS", "#e5e5e5", ()),
)

_JVM = ("kind", "java")
_WRAPPER_IDS = ("dip_home",)  # a wrapper's arguments hold the wrapped command line: keep no other id from them

RULES = (
    # transparent links first: their arguments contain the command line they wrap
    Rule("uif-sudo", LINK, (("prog", "sudo"),), "UIF wrapper (sudo)", ids=_WRAPPER_IDS),
    Rule("uif-execwrapper", LINK, (("arg_suffix", "/security/execwrapper.sh"),), "UIF wrapper (execwrapper.sh)",
         ids=_WRAPPER_IDS),
    Rule("uif-exec-py", LINK, (("kind", "python"), ("arg_suffix", "/exec.py")), "UIF wrapper (exec.py)",
         ids=_WRAPPER_IDS),
    Rule("shell-wrapper", LINK, (("kind", "shell"),), "shell wrapper", ids=_WRAPPER_IDS),
    # DSS's own markers
    Rule("supervisord", "supervisord", (("module", "supervisor.supervisord"),
                                        ("arg_suffix", "/install-support/supervisord.conf")), "supervisord"),
    Rule("supervisord-bin", "supervisord", (("prog", "supervisord"),
                                            ("arg_suffix", "/install-support/supervisord.conf")), "supervisord"),
    Rule("nginx", "nginx", (("prog", "nginx"), ("arg_suffix", "/install-support/nginx.conf")), "nginx master"),
    # DSS JVMs: a -Ddku.<kind> marker or a com.dataiku main class counts only for a JVM (kind java: argv[0]
    # basename or comm `java`)
    Rule("governserver", "governserver", (_JVM, ("arg", ("-Ddku.governserver", "-Ddku.ghserver"))), "Govern server"),
    Rule("backend", "backend", (_JVM, ("arg", ("-Ddku.backend", "com.dataiku.dip.DSSBackendMain"))), "backend"),
    Rule("jek", "jek", (_JVM, ("arg", ("-Ddku.jek", "com.dataiku.dip.dataflow.kernel.slave.DSSJobKernelMain"))),
         "JEK"),
    Rule("fek", "fek", (_JVM, ("arg", "-Ddku.fek")), "FEK"),
    Rule("fek-class", "fek", (_JVM, ("arg_prefix", "com.dataiku.dip.futures.DSSFutureKernel")), "FEK"),
    Rule("cak", "cak", (_JVM, ("arg", ("-Ddku.cak", "com.dataiku.dip.dataflow.streaming.slave.DSSCAKernelMain"))),
         "CAK"),
    Rule("eventserver", "eventserver", (_JVM, ("arg", "-Ddku.eventserver")), "event server"),
    Rule("apinode", "apinode", (_JVM, ("arg", ("-Ddku.apimain", "com.dataiku.lambda.LambdaServerMain"))), "API node"),
    Rule("hproxy", "hproxy", (_JVM, ("arg", "-Ddku.hproxy")), "Hadoop proxy"),
    # Cloud Stacks and DSS 13+ companions (dss-reference.md section 3; Dataiku's own Telegraf configuration)
    Rule("fm-agent", "fm_agent", (("arg_contains", "dataiku-fm-agent"),), "Fleet Manager agent"),
    Rule("runtime-db", "runtime_db", (("prog", "postgres"), ("arg", ("/data/pgsql/data", "-D/data/pgsql/data"))),
         "runtime database"),
    Rule("runtime-db-govern", "runtime_db", (("prog", "postgres"),
                                             ("arg", ("/data/pgsql-govern/data", "-D/data/pgsql-govern/data"))),
         "Govern runtime database"),
    Rule("story", "story", (("prog", ("docker-compose", "docker")), ("arg_suffix", "/story/docker-compose.yml")),
         "story service"),
    Rule("jupyter-server", "jupyter_server", (("arg_suffix", "/dku-jupyter/dkulauncher.py"),), "Jupyter server"),
    Rule("ml-doctor", "ml_training", (("module", "dataiku.doctor"),), "ML server"),
    Rule("webapp-flask", "webapp_backend", (("arg_suffix", "dataiku/webapps/backend.py"),),
         "webapp backend (Flask)"),
    Rule("webapp-module", "webapp_backend", (("module", "dataiku.webapps"),), "webapp backend"),
    # generic markers: only inside a DSS tree
    Rule("webapp-bokeh", "webapp_backend", (("arg_contains", "run_bokeh"),), "webapp backend (Bokeh)",
         context=DSS_CONTEXT),
    Rule("webapp-dash", "webapp_backend", (("arg_contains", "run_dash"),), "webapp backend (Dash)",
         context=DSS_CONTEXT),
    Rule("webapp-shiny", "webapp_backend", (("kind", "r"), ("arg_contains", "shiny")), "webapp backend (Shiny)",
         context=DSS_CONTEXT),
    Rule("kernel-ipykernel", "jupyter_kernel", (("module", ("ipykernel_launcher", "ipykernel")),), "kernel {spec}",
         context=DSS_CONTEXT),
    Rule("kernel-irkernel", "jupyter_kernel", (("arg_contains", "IRkernel"),), "kernel {spec}", context=DSS_CONTEXT),
    Rule("kernel-toree", "jupyter_kernel", (("arg_contains", "toree"),), "kernel scala", context=DSS_CONTEXT),
    Rule("spark-submit", "spark_driver", (("arg", "org.apache.spark.deploy.SparkSubmit"),), "Spark driver",
         context=DSS_CONTEXT),
)

# ids: (id, a substring the argument must contain, regex over that argument, group); the first match in argument
# order wins. The substring is a cheap pre-check (command lines can be many KB). Values are validated below.
_UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
ID_PATTERNS = (
    ("dip_home", "/install-support/", r"^(/.+?)/install-support/(?:supervisord|nginx)\.conf$", 1),
    ("dip_home", "--notebook-dir=", r"^--notebook-dir=(/.+?)/config/ipython_notebooks/?$", 1),
    ("dip_home", "/jupyter-run/",
     r"^(?:-f=|--ConnectionFileMixin\.connection_file=|--connection-file=)?(/[^:]+?)/jupyter-run/", 1),
    ("dip_home", "/security/execwrapper.sh", r"^(/.+?)/security/execwrapper\.sh$", 1),
    ("kernel_id", "kernel-", r"(?:^|/)kernel-(" + _UUID + r")\.json$", 1),
    ("xmx_bytes", "-Xmx", r"^-Xmx(\d{1,12}[kKmMgGtT]?)$", 1),
    ("port", "--port=", r"^--port=(\d{1,5})$", 1),
)
# the interpreter path (argv[0]) of DSS code envs / DSS's own python env: (id, regex, group, DSS-specific path?)
PROG_PATTERNS = (
    ("dip_home", r"^(/.+?)/code-envs/(?:python|R)/[A-Za-z0-9_.-]{1,64}/bin/[^/]+$", 1, True),
    ("dip_home", r"^(/.+?)/pyenv/bin/[^/]+$", 1, False),
    ("code_env", r"/code-envs/(?:python|R)/([A-Za-z0-9_.-]{1,64})/bin/[^/]+$", 1, True),
)
# Every ID_PATTERNS dip_home names a DSS-specific path. The classpath's first entry `<DIP_HOME>/bin` is read for
# DSS JVMs only (an argument -Ddku.* or a com.dataiku.* class): any java program may have a .../bin entry.
ID_NAMES = ("dip_home", "kernel_id", "xmx_bytes", "port", "code_env")

_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_.@+/-]{0,254}$")
_SAFE_WORD = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SECRET_WORDS = ("passw", "secret", "token", "apikey", "api_key", "api-key", "credential", "privatekey")
_UNITS = {"": 1, "k": 1024, "m": 1024 ** 2, "g": 1024 ** 3, "t": 1024 ** 4}
_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.:+@-]")
_CLASSPATH_FLAGS = ("-cp", "-classpath", "--class-path")
MAX_ARGS = 4096  # arguments looked at per process (command lines can be huge; markers come early)

_MATCHERS = ("prog", "arg", "arg_prefix", "arg_suffix", "arg_contains", "module", "kind")


# --- records --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Traits:
    """What one process's own command line says. No raw argument is kept.

    `rule`: name of the matching marker rule (None: none); `role`: its role id, LINK, or None; `label`: the
    label when matched (else ""); `context`: the rule's context; `kind`: python/r/java/shell/other;
    `name`: the process name (comm) reduced to a safe charset; `ids`: validated ids (see ID_NAMES); `dss_path`:
    the command line names a path of a DSS data directory's own layout (install-support, jupyter-run, security,
    config/ipython_notebooks, code-envs), which makes a generic marker count outside a DSS tree once that
    directory is confirmed (see `resolve`); `jvm_home`: `ids["dip_home"]` is the first classpath entry of a DSS
    JVM (a claim `resolve` trusts, and one that vouches for that directory for other processes).
    """

    rule: Optional[str]
    role: Optional[str]
    label: str
    context: str
    kind: str
    name: str
    ids: Mapping[str, object] = field(default_factory=dict)
    dss_path: bool = False
    jvm_home: bool = False


@dataclass(frozen=True)
class Node:
    """A process in the tree given to `resolve`: its parent pid (after the caller's pid-reuse check) and traits."""

    ppid: int
    traits: Traits


@dataclass(frozen=True)
class Resolved:
    """The outcome for one process: `role` id, `label`, `instance` (DIP_HOME or None), `link` (a wrapper)."""

    role: str
    label: str
    instance: Optional[str]
    link: bool = False

    @property
    def is_dss(self):
        return self.role != "not_dss"


# --- compilation and validation -------------------------------------------------------------------------------


def _values(entry, value):
    values = value if isinstance(value, tuple) else (value,)
    if not values or not all(isinstance(v, str) and v for v in values):
        raise CatalogueError(entry, "condition values must be non-empty strings, got %r" % (value,))
    return values


def _compile_condition(entry, condition):
    if not (isinstance(condition, tuple) and len(condition) == 2):
        raise CatalogueError(entry, "a condition is a (matcher, value) pair, got %r" % (condition,))
    matcher, value = condition
    if matcher not in _MATCHERS:
        raise CatalogueError(entry, "unknown matcher %r (known: %s)" % (matcher, ", ".join(_MATCHERS)))
    values = _values(entry, value)
    if matcher == "prog":
        names = frozenset(values)
        return lambda p: p.prog in names
    if matcher == "kind":
        unknown = [v for v in values if v not in KINDS]
        if unknown:
            raise CatalogueError(entry, "unknown kind %r" % unknown[0])
        kinds = frozenset(values)
        return lambda p: p.kind in kinds
    if matcher == "arg":
        exact = frozenset(values)
        return lambda p: not exact.isdisjoint(p.args)
    if matcher == "arg_prefix":
        return lambda p: any(a.startswith(values) for a in p.args)
    if matcher == "arg_suffix":
        return lambda p: any(a.endswith(values) for a in p.args)
    if matcher == "arg_contains":
        return lambda p: any(v in a for a in p.args for v in values)
    # module
    dotted = tuple(v + "." for v in values)
    return lambda p: p.module is not None and (p.module in values or p.module.startswith(dotted))


def _check_template(entry, template):
    if not isinstance(template, str) or not template or len(template) > 40:
        raise CatalogueError(entry, "a label must be a non-empty string of at most 40 characters")
    try:
        template.format(name="x", spec="x")
    except (KeyError, IndexError, ValueError):
        raise CatalogueError(entry, "label %r may only use {name} and {spec}" % template) from None


def compile_catalogue(roles, rules):
    """Validate `roles` and `rules` and compile the rules. Returns (roles by id, [(rule, predicates)]).

    Raises CatalogueError naming the first bad entry. Used at import on ROLES/RULES, and by tests.
    """
    by_id = {}
    for role in roles:
        name = getattr(role, "id", repr(role))
        if not isinstance(role, Role) or not re.match(r"^[a-z][a-z0-9_]*$", role.id or ""):
            raise CatalogueError(name, "a role needs an id of lower-case letters, digits and _")
        if role.id in by_id or role.id == LINK:
            raise CatalogueError(role.id, "duplicate or reserved role id")
        if not re.match(r"^#[0-9a-fA-F]{6}$", role.colour or ""):
            raise CatalogueError(role.id, "colour must be #rrggbb, got %r" % role.colour)
        if not role.display:
            raise CatalogueError(role.id, "a display name is required")
        by_id[role.id] = role
    for required in ("dss_other", "not_dss"):
        if required not in by_id:
            raise CatalogueError(required, "this role is required")
    for role in by_id.values():
        for step in role.inherit:
            if not (isinstance(step, tuple) and len(step) == 3):
                raise CatalogueError(role.id, "an inheritance step is (kind, role, label), got %r" % (step,))
            kind, target, template = step
            if kind != "any" and kind not in KINDS:
                raise CatalogueError(role.id, "inheritance kind %r unknown" % kind)
            if target not in by_id or target == "not_dss":
                raise CatalogueError(role.id, "inherits to unknown or non-DSS role %r" % target)
            _check_template(role.id, template)
        if role.inherit and role.inherit[-1][0] != "any":
            raise CatalogueError(role.id, "the last inheritance step must be for kind 'any'")
    compiled, names = [], set()
    for rule in rules:
        entry = getattr(rule, "name", repr(rule))
        if not isinstance(rule, Rule) or not rule.name:
            raise CatalogueError(entry, "not a named Rule")
        if rule.name in names:
            raise CatalogueError(rule.name, "duplicate rule name")
        names.add(rule.name)
        if rule.role != LINK and (rule.role not in by_id or rule.role in ("not_dss", "dss_other")):
            raise CatalogueError(rule.name, "unknown role %r (a marker must name a DSS role or LINK)" % rule.role)
        if not rule.when:
            raise CatalogueError(rule.name, "a rule needs at least one condition")
        if rule.context not in (ANYWHERE, DSS_CONTEXT):
            raise CatalogueError(rule.name, "context must be %r or %r" % (ANYWHERE, DSS_CONTEXT))
        if rule.ids is not None and any(i not in ID_NAMES for i in rule.ids):
            raise CatalogueError(rule.name, "ids must be among %s" % ", ".join(ID_NAMES))
        _check_template(rule.name, rule.label)
        predicates = tuple(_compile_condition(rule.name, c) for c in rule.when)
        compiled.append((rule, _needles(rule), predicates))
    return by_id, compiled


def _needles(rule):
    """Strings of which at least one must appear in the NUL-joined arguments for `rule` to match (a cheap
    pre-check before its predicates), or None when the rule only looks at the program name or kind."""
    for matcher, value in rule.when:
        if matcher in ("arg", "arg_prefix", "arg_suffix", "arg_contains", "module"):
            return value if isinstance(value, tuple) else (value,)
    return None


_ROLES_BY_ID, _COMPILED = compile_catalogue(ROLES, RULES)
_ALL_NEEDLES = tuple(sorted({n for _rule, needles, _p in _COMPILED if needles for n in needles}))
ROLE_IDS = tuple(r.id for r in ROLES)
DSS_ROLE_IDS = tuple(r for r in ROLE_IDS if r != "not_dss")
_ID_REGEXES = tuple((name, hint, re.compile(rx), group) for name, hint, rx, group in ID_PATTERNS)
_PROG_REGEXES = tuple((name, re.compile(rx), group, strong) for name, rx, group, strong in PROG_PATTERNS)
_UNKNOWN_ROLE = Role("unknown", "unknown", "#999999")


def role(role_id):
    """The Role of an id (KeyError when unknown)."""
    return _ROLES_BY_ID[role_id]


def role_style(role_id):
    """(display name, colour) of a role id; KeyError when unknown. Used by charts and the webapp."""
    r = _ROLES_BY_ID[role_id]
    return r.display, r.colour


# --- analysing one command line -------------------------------------------------------------------------------


class _Proc:
    """Pre-digested command line, only alive during `analyse`."""

    __slots__ = ("args", "prog", "kind", "module")

    def __init__(self, args, prog, kind, module):
        self.args, self.prog, self.kind, self.module = args, prog, kind, module


def _prog_of(args, name):
    first = args[0] if args else ""
    base = os.path.basename(first.split(" ", 1)[0]).rstrip(":") if first else ""
    return base or (name or "")


def kind_of(prog):
    """python, r, java, shell or other, from a program basename."""
    if re.match(r"^python(\d+(\.\d+)?)?m?$", prog) or prog in ("pypy", "pypy3", "ipython"):
        return "python"
    if prog in ("R", "Rscript", "exec/R"):
        return "r"
    if prog == "java":
        return "java"
    if prog in ("sh", "bash", "dash", "zsh", "ksh"):
        return "shell"
    return "other"


def _module_of(args):
    """The module of `python [options] -m <module> ...`, None when python runs a script or `-c`."""
    i = 1
    while i < len(args):
        a = args[i]
        if a == "-m":
            return args[i + 1] if i + 1 < len(args) else None
        if a.startswith("-m") and not a.startswith("--"):
            return a[2:]
        if a == "-c" or not a.startswith("-"):  # `python script.py -m x`: that -m belongs to the script
            return None
        i += 2 if a in ("-W", "-X", "-Q") else 1
    return None


def _secretish(value):
    lowered = value.lower()
    return any(w in lowered for w in _SECRET_WORDS)


def _valid_id(name, raw):
    """The validated value of an id, or None: strict patterns, no secret-looking word, sizes bounded."""
    if name == "dip_home":
        path = os.path.normpath(raw)
        if _SAFE_PATH.match(path) and ".." not in path.split("/") and path != "/" and not _secretish(path):
            return path
        return None
    if name == "kernel_id":
        return raw.lower()
    if name == "xmx_bytes":
        digits, unit = (raw[:-1], raw[-1].lower()) if raw[-1].isalpha() else (raw, "")
        return int(digits) * _UNITS[unit]
    if name == "port":
        port = int(raw)
        return port if 0 < port < 65536 else None
    if name == "code_env":
        return raw if _SAFE_WORD.match(raw) and not _secretish(raw) else None
    return None


def _extract_ids(args, module, kind):
    """(validated ids, names a DSS-specific path?, DIP_HOME from a DSS JVM's classpath?) from the arguments."""
    ids, dss_path, jvm_home = {}, False, False
    if args:
        for name, rx, group, strong in _PROG_REGEXES:
            m = rx.search(args[0])
            if m and name not in ids:
                value = _valid_id(name, m.group(group))
                if value is not None:
                    ids[name] = value
                    dss_path = dss_path or strong
    dss_jvm = kind == "java" and any(a.startswith(("-Ddku.", "com.dataiku.")) for a in args)
    previous = ""
    for a in args[1:]:
        if previous in _CLASSPATH_FLAGS and "dip_home" not in ids and dss_jvm:
            first = a.split(":", 1)[0]
            if first.endswith("/bin") and len(first) > 4:
                value = _valid_id("dip_home", first[:-4])
                if value is not None:
                    ids["dip_home"], jvm_home = value, True
        elif previous == "--port" and "port" not in ids and a.isdigit() and len(a) <= 5:
            value = _valid_id("port", a)
            if value is not None:
                ids["port"] = value
        for name, hint, rx, group in _ID_REGEXES:
            if name in ids or hint not in a:
                continue
            m = rx.search(a)
            if m:
                value = _valid_id(name, m.group(group))
                if value is not None:
                    ids[name] = value
                    dss_path = dss_path or name == "dip_home"
        previous = a
    if module == "dataiku.doctor.server" and "port" not in ids:
        # `-m dataiku.doctor.server <port> <secret>`: the port only; the secret is never read
        i = args.index(module) if module in args else -1
        if 0 <= i < len(args) - 1 and args[i + 1].isdigit() and len(args[i + 1]) <= 5:
            value = _valid_id("port", args[i + 1])
            if value is not None:
                ids["port"] = value
    return ids, dss_path, jvm_home


def safe_name(name):
    """A process name reduced to a safe charset and 32 characters ('?' when empty or secret-looking). The scanner
    gives the kernel's comm (15 bytes), never argv[0]: a program path may hold a key."""
    cleaned = _NAME_CHARS.sub("", name or "")[:32]
    return cleaned if cleaned and not _secretish(cleaned) else "?"


def _kernel_spec(kind, ids):
    env = ids.get("code_env")
    if kind == "r":
        return "r-dku-venv-%s" % env if env else "ir"
    return "py-dku-venv-%s" % env if env else "python3"


def analyse(argv, name):
    """Traits of one process from its argument vector (psutil `cmdline()`, possibly empty) and name (comm).

    The arguments are read here and dropped: the result holds no raw argument. The name shown is the comm
    only (argv[0] may hold anything). The kind is the program's (argv[0] basename), or `java` when the comm is
    `java` (a JVM launched through a wrapper or a renamed binary still has that comm).
    """
    args = tuple(argv[:MAX_ARGS]) if argv else ()
    if len(args) == 1 and " " in args[0]:  # a rewritten title ("nginx: master process nginx -c ...")
        args = tuple(args[0].split())
    prog = _prog_of(args, name)
    kind = "java" if name == "java" else kind_of(prog)
    module = _module_of(args) if kind == "python" else None
    proc = _Proc(args, prog, kind, module)
    clean_name = safe_name(name)
    ids, dss_path, jvm_home = _extract_ids(args, module, kind)
    joined = "\0".join(args)
    hits = frozenset(n for n in _ALL_NEEDLES if n in joined)
    for rule, needles, predicates in _COMPILED:
        if needles is not None and hits.isdisjoint(needles):
            continue
        if all(p(proc) for p in predicates):
            kept = ids if rule.ids is None else {k: v for k, v in ids.items() if k in rule.ids}
            label = rule.label.format(name=clean_name, spec=_kernel_spec(kind, ids))
            return Traits(rule.name, rule.role, label, rule.context, kind, clean_name, kept, dss_path,
                          jvm_home and "dip_home" in kept)
    return Traits(None, None, "", ANYWHERE, kind, clean_name, ids, dss_path, jvm_home)


# --- resolving roles over a tree ------------------------------------------------------------------------------

_NOT_DSS = "not_dss"


def _inherit(parent, traits, home):
    """What an unmarked process gets from its nearest classified (non-link) DSS ancestor `parent`."""
    spec = _ROLES_BY_ID.get(parent.role, _UNKNOWN_ROLE)
    for kind, target, template in spec.inherit:
        if kind == "any" or kind == traits.kind:
            return Resolved(target, template.format(name=traits.name, spec=""), home or parent.instance)
    return Resolved(_NOT_DSS, traits.name, None)


def _own(traits, upstream, home):
    """A non-link process's resolution given the resolution it would inherit from (None: no DSS ancestor) and
    its own confirmed DIP_HOME (None: it names none, or one that is not a DSS data directory)."""
    in_dss = upstream is not None and upstream.is_dss
    if traits.role and (traits.context == ANYWHERE or in_dss or (traits.dss_path and home is not None)):
        return Resolved(traits.role, traits.label, home or (upstream.instance if in_dss else None))
    if in_dss:
        return _inherit(upstream, traits, home)
    return Resolved(_NOT_DSS, traits.name, None)


def _home_checker(nodes, data_dir):
    """traits -> the process's own DIP_HOME when confirmed, else None. A DSS JVM's classpath entry is taken as
    is and confirms that directory for every process; any other named directory must pass `data_dir(path)`
    (once per path per call). `data_dir` None: every named directory counts (pure use on made-up trees)."""
    if data_dir is None:
        return lambda traits: traits.ids.get("dip_home")
    vouched = {n.traits.ids["dip_home"] for n in nodes.values() if n.traits.jvm_home}
    checked = {}

    def home(traits):
        path = traits.ids.get("dip_home")
        if path is None or traits.jvm_home:
            return path
        ok = checked.get(path)
        if ok is None:
            ok = checked[path] = path in vouched or bool(data_dir(path))
        return path if ok else None

    return home


def resolve(nodes, known=None, data_dir=None):
    """Resolve roles over a process tree. Returns {pid: Resolved} for every pid of `nodes`.

    `nodes`: {pid: Node(ppid, traits)}; a ppid absent from `nodes` (or equal to the pid) makes a root.
    `known`: {pid: Resolved} already settled (the scanner's cache for processes past their young age); they are
    taken as is (links excepted: a wrapper is always re-resolved from what it currently wraps), which also keeps
    a DSS process's role after it is re-parented to init.
    `data_dir`: path -> bool, does this directory look like a DSS data directory (the scanner checks the file
    system). A DIP_HOME named by a process's own command line (not a DSS JVM's classpath) sets its instance,
    and lets a generic marker count outside a DSS tree, only when confirmed (see `_home_checker`).
    """
    known = known or {}
    home_of = _home_checker(nodes, data_dir)
    children = {}
    roots = []
    for pid, node in nodes.items():
        if node.ppid == pid or node.ppid not in nodes:
            roots.append(pid)
        else:
            children.setdefault(node.ppid, []).append(pid)
    order = []  # parents before children
    upstream = {}  # pid -> what a child of pid inherits from (a link passes its own upstream through)
    result = {}
    seen = set()
    pending = sorted(roots, reverse=True)
    for pid in pending:
        upstream[pid] = None

    def visit(stack):
        while stack:
            pid = stack.pop()
            if pid in seen:
                continue
            seen.add(pid)
            order.append(pid)
            traits = nodes[pid].traits
            up = upstream.get(pid)
            if traits.role == LINK:
                mine = up
            else:
                res = known.get(pid)
                if res is None or res.link:
                    res = _own(traits, up, home_of(traits))
                result[pid] = res
                mine = res
            for child in sorted(children.get(pid, ()), reverse=True):
                upstream[child] = mine
                stack.append(child)

    visit(pending)
    rest = sorted(set(nodes) - seen, reverse=True)  # only reachable through a parent cycle (a racy snapshot)
    for pid in rest:
        if pid not in seen:
            upstream[pid] = None
            visit([pid])
    for pid in reversed(order):  # children before parents: a link takes what it wraps
        traits = nodes[pid].traits
        if traits.role == LINK:
            result[pid] = _link(traits, upstream.get(pid), home_of(traits), children.get(pid, ()), result)
    return result


def _link(traits, up, home, children, result):
    """A transparent wrapper's resolution: the role of the first DSS child it wraps (when it is in a DSS tree or
    names a confirmed data directory), else what it inherits like any process, else not_dss."""
    in_dss = (up is not None and up.is_dss) or (traits.dss_path and home is not None)
    wrapped = None
    if in_dss:
        for child in sorted(children):
            res = result.get(child)
            if res is not None and res.is_dss:
                wrapped = res
                break
    if wrapped is not None:
        return Resolved(wrapped.role, traits.label, home or wrapped.instance, link=True)
    if up is not None and up.is_dss:
        inherited = _inherit(up, traits, home)
        return Resolved(inherited.role, traits.label, inherited.instance, link=True)
    return Resolved(_NOT_DSS, traits.label if in_dss else traits.name, None, link=True)


def classify_tree(processes, data_dir=None):
    """Convenience for tests and tools: {pid: (ppid, argv, name)} -> {pid: Resolved} (`data_dir`: see resolve)."""
    return resolve({pid: Node(ppid, analyse(argv, name)) for pid, (ppid, argv, name) in processes.items()},
                   data_dir=data_dir)


def sequence_roles(values: Sequence[str]) -> Tuple[str, ...]:
    """The given role ids in catalogue order (unknown ids last, sorted)."""
    order = {rid: i for i, rid in enumerate(ROLE_IDS)}
    return tuple(sorted(values, key=lambda v: (order.get(v, len(order)), v)))


def ids_dict(ids: Mapping[str, object]) -> Dict[str, object]:
    """A plain copy of validated ids, in ID_NAMES order."""
    return {k: ids[k] for k in ID_NAMES if k in ids}
