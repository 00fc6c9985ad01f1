"""Stand-in for `dataiku.runnables`: the base class DSS's macro server instantiates, and ResultTable."""


class Runnable(object):
    """DSS instantiates the first subclass found in runnable.py with (project_key, config, plugin_config)."""

    def __init__(self, project_key, config, plugin_config):
        self.project_key = project_key
        self.config = config
        self.plugin_config = plugin_config

    def get_progress_target(self):
        return None

    def run(self, progress_callback):
        raise NotImplementedError()


class ResultTable(object):
    def __init__(self):
        self.columns = []
        self.records = []
        self.header = None
        self.name = None

    def add_column(self, name, display_name, type="STRING"):
        self.columns.append({"name": name, "displayName": display_name, "type": type})

    def add_record(self, record):
        self.records.append(record)

    def set_header(self, header):
        self.header = header

    def set_name(self, name):
        self.name = name

    def to_json(self):
        return {"header": self.header, "columns": self.columns, "records": self.records, "name": self.name}
