"""process-tracker: see DSS processes by role and memory, join them to DSS activities, act through the API.

The public facade for the adapters (macros, webapp, CLI). Modules never import `dataiku` at module level.
"""
__version__ = "0.1.0"
