"""Staff dashboard of experiment results: HTML pages, the CSV export and the results JSON API."""
