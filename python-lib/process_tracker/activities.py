"""The API side: one Activity record type for everything long-running that DSS's public API exposes.

Kinds: "notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio".
No DSSClient object leaves this module: listing returns records, acting takes records.
"""
from dataclasses import dataclass, field
from typing import Mapping, Optional, Tuple

KINDS = ("notebook_session", "future", "scenario", "job", "webapp", "continuous_activity", "code_studio")


@dataclass(frozen=True)
class Activity:
    kind: str  # one of KINDS
    id: str  # unique within kind: sessionId, future jobId, job id, webapp id, recipe id, code studio id
    project_key: Optional[str]
    name: str  # notebook name, job/future display name, scenario id, webapp name, ...
    owner: Optional[str]  # DSS login of the owner / initiator / session creator
    state: str  # e.g. "idle", "busy", "RUNNING", "running", "aborting"
    start_time: Optional[float] = None  # epoch seconds
    last_activity_time: Optional[float] = None  # epoch seconds, where DSS gives it (kernels)
    pid: Optional[int] = None  # kernelPid (kernel or JEK), webapp backend pid, where DSS gives it
    details: Mapping[str, object] = field(default_factory=dict)  # kernel_id, connections, scenario_id, ...


@dataclass(frozen=True)
class ListingError:
    """A call or a project that failed while listing: shown as a row, the rest still lists."""

    kind: str
    project_key: Optional[str]
    message: str


@dataclass(frozen=True)
class Inventory:
    taken_at: float  # epoch seconds
    activities: Tuple[Activity, ...]
    errors: Tuple[ListingError, ...]
