"""The records the DSS side returns: an `Activity` per running thing, `FailedListing` rows, the `Inventory`, and
the `Probe` of one activity. Plain frozen dataclasses; `activities` re-exports them (its public names)."""
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

KINDS = ("notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio")
LIVE_STATUSES = ("running", "stopping")

__all__ = ["KINDS", "LIVE_STATUSES", "Activity", "FailedListing", "Inventory", "Probe"]


@dataclass(frozen=True)
class Activity:
    kind: str  # one of KINDS
    id: str  # unique within kind and project: sessionId, future jobId, job id, webapp id, recipe id, code studio id
    project_key: Optional[str]
    name: str  # notebook name, job/future display name, scenario id, webapp name, ...
    owner: Optional[str]  # DSS login of the owner / initiator / session creator
    state: str  # e.g. "idle", "busy", "RUNNING", "running", "aborting"
    started_at: Optional[float] = None  # epoch seconds
    last_activity_at: Optional[float] = None  # epoch seconds, where DSS gives it (kernels)
    pid: Optional[int] = None  # kernelPid (kernel or JEK), webapp backend pid, where DSS gives it
    details: Mapping[str, object] = field(default_factory=dict)  # kernel_id, connections, scenario_id, ...


@dataclass(frozen=True)
class FailedListing:
    """A call, a project or one item that failed while listing: shown as a row, the rest still lists."""

    kind: str  # a kind from KINDS, or "projects" when the project list itself failed
    project_key: Optional[str]
    message: str
    not_found: bool = False  # DSS answered 404: no such project (or no such endpoint on this DSS version)


@dataclass(frozen=True)
class Inventory:
    taken_at: float  # epoch seconds
    activities: Tuple[Activity, ...]
    errors: Tuple[FailedListing, ...]
    notes: Tuple[str, ...] = ()  # how the listing was done where it matters (fallbacks taken), readable


@dataclass(frozen=True)
class Probe:
    """The fresh state of one activity.

    status: "running" (still there), "stopping" (an abort/stop is in progress), "aborted" (stopped by an abort),
    "finished" (ended on its own: a future done without abort, a job DONE or FAILED), "gone" (DSS no longer
    lists it; for kernels and webapps this is what a successful stop looks like).
    """

    status: str
    activity: Optional[Activity]  # the fresh record while it exists (running/stopping), else None
    detail: str = ""  # e.g. the final job state
