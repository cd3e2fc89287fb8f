"""API plumbing shared by both apps' views: input text validation, the JSON-only parser, OpenAPI error shapes.

With ``abplatform.apikeys`` the only part of the project package that the apps may import
(import-linter contract in pyproject.toml).
"""
