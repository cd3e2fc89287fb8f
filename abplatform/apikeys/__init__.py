"""API keys: the model, creating and hashing keys, DRF authentication and permissions, the admin.

Its own small app because both apps use it (recommender's catalog and search endpoints,
experiments' player API and results), and recommender must never import experiments.
The table is still ``experiments_apikey`` (the model moved here without moving a row).
"""
