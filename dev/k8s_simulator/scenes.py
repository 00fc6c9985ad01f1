"""Ready-made sets of DSS pods: the demo's few (matching dev/instances/demo.json's projects) and many for benches."""
from .builders import dss_pod, notebook_kernel_labels, spark_labels

EXECUTION_TYPES = ("JUPYTER_NOTEBOOK_KERNEL", "JOB_ACTIVITY", "WEBAPP_BACKEND", "ANALYSIS_ML_TRAIN")


KERNEL_POD_KERNEL_ID = "c7f2a1b9-5d3e-4f60-8a71-9b0c1d2e3f40"
SALES_JOB_ID = "Build_sales_monthly_2026-11-25T08-02-51.663"  # a running job of dev/instances/demo.json
# what the demo's simulated DSS lists for its pods (dev/README.md instance schema): a containerized notebook
# session in CHURN whose kernel runs in the kernel pod below (no kernelPid: not on this host)
DEMO_DSS_FRAGMENT = {"projects": [{"projectKey": "CHURN", "notebooks": [{
    "name": "Churn on Kubernetes", "language": "python", "sessions": [{
        "creator": "alice", "sessionId": "k8s-churn-session-1", "kernelId": KERNEL_POD_KERNEL_ID,
        "startedAgo": "5h", "idleFor": "2h", "state": "idle", "connections": 0}]}]}]}


def demo_pods(sim, now=None):
    """The demo's pods, over two nodes: the kernel of DEMO_DSS_FRAGMENT's session, a recipe and two Spark
    executors of SALES's running job, an ML training and an API deployment (DSS lists nothing for them), and a
    MARKETING kernel pod of alice's, whom DSS lists no MARKETING session for (an orphan)."""
    sim.add(dss_pod("dataiku-exec-remote-notebook-c7f2a1b9", project_key="CHURN", submitter="alice",
                    execution_id=KERNEL_POD_KERNEL_ID, node="k8s-node-a", requests={"memory": "2Gi", "cpu": "1"},
                    limits={"memory": "4Gi"}, started_ago=5 * 3600, extra_labels=notebook_kernel_labels(), now=now),
            memory="1800Mi", cpu="20m")
    for name, spark in (("exec-recipe-sales-1", None), ("exec-spark-exec-1", "executor"),
                        ("exec-spark-exec-2", "executor")):
        sim.add(dss_pod(name, execution_type="JOB_ACTIVITY", project_key="SALES", submitter="bob", node="k8s-node-b",
                        job_id=SALES_JOB_ID, requests={"memory": "3Gi", "cpu": "2"}, limits={"memory": "3Gi"},
                        extra_labels=spark_labels(spark) if spark else None, started_ago=1200, now=now),
                memory="2600Mi", cpu="1800m")
    sim.add(dss_pod("exec-ml-fraud-1", execution_type="ANALYSIS_ML_TRAIN", project_key="FRAUD", submitter="alice",
                    node="k8s-node-a", mltask_id="mt3f", analysis_id="an7", requests={"memory": "8Gi"},
                    started_ago=2400, now=now), memory="6Gi", cpu="3500m")
    sim.add(dss_pod("apideploy-churn-scoring", execution_type="API_DEPLOYER_DEPLOYMENT", node="k8s-node-b",
                    deployment_id="churn-scoring-prod", started_ago=9 * 86400, now=now), memory="900Mi", cpu="50m")
    sim.add(dss_pod("dataiku-exec-remote-notebook-9d1e", project_key="MARKETING", submitter="alice",
                    node="k8s-node-b", requests={"memory": "2Gi"}, started_ago=12 * 86400,
                    extra_labels=notebook_kernel_labels(), now=now), memory="3100Mi", cpu="0")


def many_pods(sim, count, namespaces=("dss",), now=None, nodes=50):
    """`count` DSS pods of the usual execution types, spread over namespaces and nodes, with metrics."""
    for i in range(count):
        etype = EXECUTION_TYPES[i % len(EXECUTION_TYPES)]
        sim.add(dss_pod("exec-%s-%05d" % (etype.split("_")[0].lower(), i), namespace=namespaces[i % len(namespaces)],
                        execution_type=etype, project_key="PROJECT_%d" % (i % 40), submitter="user%d" % (i % 25),
                        job_id="build_%d" % i if etype == "JOB_ACTIVITY" else None, node="node-%d" % (i % nodes),
                        requests={"memory": "1Gi", "cpu": "500m"}, limits={"memory": "2Gi"}, started_ago=60 + i,
                        now=now), memory="%dMi" % (256 + i % 1024), cpu="%dm" % (i % 2000))
