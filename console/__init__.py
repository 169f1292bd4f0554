"""Local Telemetry console.

Layers, lowest first; a module imports only from its own layer or lower ones
(`tests/test_layers.py` checks it): core < store < domain < jobs < http <
api, web < app < server, cli. `console.app.create_app()` builds the app.
"""

__version__ = "0.1.0"
