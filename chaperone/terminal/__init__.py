"""Front door: the terminal. `scenario` runs YAML scenario files and checks their expectations; `chat` is
the interactive guarded chat. Both are sinks and drivers of the engine's event stream.

Imports the engine and the shared start-up; never another front door.
"""
