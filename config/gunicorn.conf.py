"""gunicorn's settings for every way the platform starts its web server (up.sh, Procfile, compose,
bench/harness.py); each passes its own ``--bind``.

``capture_output`` sends the workers' stdout/stderr (Django's log lines, a 5xx's traceback) to the
error log: with ``--daemon`` they were lost, and 2,401 answers of 500 left no trace.
"""

import os

workers = int(os.environ.get("WEB_WORKERS", "2"))
threads = int(os.environ.get("WEB_THREADS", "4"))
timeout = 120
capture_output = True
# gunicorn's largest request line short of unlimited (its default, 4094 bytes, answered longer
# query strings with its own HTML 414 before Django could answer a JSON 400; found by schemathesis)
limit_request_line = 8190
