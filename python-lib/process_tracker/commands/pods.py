"""`process-tracker pods`: DSS's pods on Kubernetes, joined to what DSS lists; stop one through DSS; delete an
orphan pod (opt-in, admin only, dry run unless --apply).

Default: a table (pod, node, phase, role, user, project, status, the DSS activity or why none, memory, age)
then the listing's notes and errors. `--json`: {"pods": [pod_joins.pod_rows], "notes", "errors", "reachable",
"memory_source"}. `--no-dss`: pods only, no DSS connection (status "not joined").
"""
import json
import sys

from ..errors import ConfigError
from ..render import format_bytes


def register(subparsers):
    parser = subparsers.add_parser(
        "pods", help="DSS's pods on Kubernetes joined to DSS; stop one through DSS",
        description="List the pods DSS runs on Kubernetes (containerized execution) with their memory, joined to "
        "what DSS lists. --stop stops a pod's DSS activity through DSS (dry run unless --apply). --delete-orphan "
        "deletes a pod DSS no longer lists: needs --allow-delete, a DSS administrator, and --apply.")
    k8s = parser.add_argument_group("Kubernetes connection (default: the default kubeconfig's current context)")
    # the short names, and the exporter's and the macros' mirrors' --k8s-* names for the same settings
    k8s.add_argument("--kubeconfig", help="path of a kubeconfig file")
    k8s.add_argument("--context", "--k8s-context", dest="context", help="a context name of the kubeconfig")
    k8s.add_argument("--in-cluster", "--k8s-in-cluster", dest="in_cluster", action="store_true",
                     help="use the in-cluster service account")
    k8s.add_argument("--namespaces", "--k8s-namespaces", dest="namespaces",
                     help="namespaces DSS runs pods in, comma-separated (default: cluster-wide)")
    k8s.add_argument("--install-id", "--k8s-install-id", dest="install_id", help="only the pods of this DSS install id")
    k8s.add_argument("--page-size", type=int, default=500, help="pods per list request (default 500)")
    k8s.add_argument("--no-metrics", action="store_true", help="do not read the metrics API")
    parser.add_argument("--no-dss", action="store_true", help="list pods only, without joining them to DSS")
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--stop", metavar="NAMESPACE/POD", help="stop this pod's DSS activity through DSS")
    parser.add_argument("--delete-orphan", metavar="NAMESPACE/POD", help="delete this orphan pod")
    parser.add_argument("--allow-delete", action="store_true", help="the opt-in that --delete-orphan needs")
    parser.add_argument("--apply", action="store_true", help="act (default: dry run)")
    parser.set_defaults(func=run)
    return parser


# the settings' names -> this command's options, for errors (the CLI names its flags, not the macros' parameters)
OPTIONS = {"k8sInCluster": "--in-cluster", "k8sKubeconfig": "--kubeconfig", "k8sContext": "--context",
           "k8sNamespaces": "--namespaces", "k8sInstallId": "--install-id", "k8sPageSize": "--page-size"}


def _settings(args):
    from ..pods import settings_from_config

    try:
        return settings_from_config({
            "k8sInCluster": args.in_cluster, "k8sKubeconfig": args.kubeconfig, "k8sContext": args.context,
            "k8sNamespaces": args.namespaces, "k8sInstallId": args.install_id, "k8sPageSize": args.page_size,
            "k8sMetrics": not args.no_metrics, "k8sAllowDelete": args.allow_delete})
    except ConfigError as exc:
        raise exc.renamed(OPTIONS.get(exc.param, exc.param)) from None


def _target(value, option):
    namespace, _, name = (value or "").partition("/")
    if not namespace or not name:
        raise ConfigError(option, "NAMESPACE/POD, got %r" % (value,))
    from ..pods import check_k8s

    return check_k8s("namespace", namespace, option), check_k8s("pod_name", name, option)


def run(args, make_client=None, out=None):
    from .. import pod_actions, pod_joins, pods
    from ..activities import Inventory, list_activities

    out = out or sys.stdout
    if args.no_dss and (args.stop or args.delete_orphan):
        raise ConfigError("--no-dss", "acting needs DSS: --stop and --delete-orphan cannot run with --no-dss")
    settings = _settings(args)
    api = pods.make_api_client(settings)
    listing = pods.list_pods(api, settings)
    client = None if args.no_dss else make_client()
    inventory = Inventory(listing.taken_at, (), ()) if args.no_dss else list_activities(client)
    joined = pod_joins.join_pods(listing.pods, inventory)
    if args.stop or args.delete_orphan:
        return _act(args, client, api, settings, joined, out, pod_actions)
    rows = pod_joins.pod_rows(joined)
    if args.no_dss:
        rows = [dict(r, status="not joined", reason="listed without DSS (--no-dss)") for r in rows]
    if args.json:
        out.write(json.dumps({"pods": rows, "notes": list(listing.notes), "reachable": listing.reachable,
                              "memory_source": listing.memory_source, "dss_errors": [e.message for e in inventory.errors],
                              "errors": [e.message for e in listing.errors]}, sort_keys=True) + "\n")
    else:
        out.write(format_table(rows, listing, inventory))
    return 0 if listing.reachable else 1


def _act(args, client, api, settings, joined, out, pod_actions):
    from ..macros import require_admin

    option = "--stop" if args.stop else "--delete-orphan"
    namespace, name = _target(args.stop or args.delete_orphan, option)
    match = next((m for m in joined.rows if m.process.namespace == namespace and m.process.pod_name == name), None)
    if match is None:
        raise ConfigError(option, "no DSS pod %s/%s in the listing" % (namespace, name))
    if args.stop:
        result = pod_actions.stop_pod_activity(client, match, apply=args.apply)
        out.write("%s: %s (%s)\n" % (result.outcome, result.message, result.reason))
        return 1 if result.outcome == "failed" else 0
    actor = require_admin(client, "deleting a pod")
    result = pod_actions.delete_orphan_pod(api, settings, match, apply=args.apply, is_admin=True, actor=actor,
                                           recheck=pod_actions.dss_recheck(client))
    out.write("%s: %s\n" % (result.outcome, result.message))
    return 1 if result.outcome in ("failed", "refused") else 0


def _age(seconds):
    if seconds is None:
        return ""
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return "%d%s" % (seconds // size, unit)
    return "%ds" % seconds


def format_table(rows, listing, inventory):
    lines = ["%-44s %-14s %-9s %-20s %-10s %-14s %-8s %11s %5s  %s" % (
        "NAMESPACE/POD", "NODE", "PHASE", "ROLE", "USER", "PROJECT", "STATUS", "MEMORY", "AGE",
        "DSS ACTIVITY / REASON")]
    for r in rows:
        a = r["activity"]
        what = "%s %s" % (a["kind"], a["id"]) if a else (r["reason"] or "")
        memory = format_bytes(r["rss_anon_bytes"]) if r["rss_anon_bytes"] is not None else (
            "req %s" % format_bytes(r["memory_request_bytes"]) if r["memory_request_bytes"] else "")
        lines.append("%-44s %-14s %-9s %-20s %-10s %-14s %-8s %11s %5s  %s" % (
            ("%s/%s" % (r["namespace"], r["pod"]))[:44], (r["node"] or "-")[:14], r["phase"][:9], r["label"][:20],
            (r["user"] or "?")[:10], (r["project"] or "-")[:14], r["status"][:8], memory, _age(r["age_seconds"]),
            what))
    if not rows:
        lines.append("(no DSS pod found)")
    lines.append("")
    lines.append("memory: %s" % listing.memory_source)
    for note in listing.notes:
        lines.append("note: %s" % note)
    for e in listing.errors:
        lines.append("error: %s" % e.message)
    for e in inventory.errors:
        lines.append("DSS error (%s): %s" % (e.kind, e.message))
    return "\n".join(lines) + "\n"
