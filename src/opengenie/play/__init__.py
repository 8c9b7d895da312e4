"""`opengenie play`: a World in the browser (server.py, static/ page, cli.py, bench.py)."""
