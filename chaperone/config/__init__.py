"""Configuration as data: the pydantic schemas of every YAML file, the safe YAML reader (line numbers in
errors, no code execution) and the project folder (agents/, config/, policies) loaded and cross-checked.

The bottom floor of the package: it imports only `chaperone.errors`; everything else may import it.
"""
