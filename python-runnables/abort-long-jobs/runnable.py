"""Abort long-running jobs: a thin adapter; the logic is in python-lib (process_tracker.macros)."""
from dataiku.runnables import Runnable

from process_tracker import macros

MACRO_ID = "abort-long-jobs"


class AbortLongJobs(Runnable):
    def __init__(self, project_key, config, plugin_config):
        super().__init__(project_key, config, plugin_config)
        self.project_key = project_key
        self.config = config

    def get_progress_target(self):
        return (macros.STAGES, "NONE")

    def run(self, progress_callback):
        return macros.run_in_dss(MACRO_ID, self.config, self.project_key, progress_callback)
