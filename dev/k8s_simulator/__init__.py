"""A simulated Kubernetes API server (pods, pod metrics, RBAC refusals), for tests and the demo.

See dev/README.md ("A simulated Kubernetes API") for the routes, shapes and their public sources.
"""
from .builders import dss_pod, notebook_kernel_labels, pod_metrics, spark_labels
from .cluster import Cluster, Rule, SimError
from .scenes import DEMO_DSS_FRAGMENT, demo_pods, many_pods
from .simulator import K8sSimulator

__all__ = ["K8sSimulator", "Cluster", "Rule", "SimError", "dss_pod", "pod_metrics", "spark_labels",
           "notebook_kernel_labels", "demo_pods", "many_pods", "DEMO_DSS_FRAGMENT"]
