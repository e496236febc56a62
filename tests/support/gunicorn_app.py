"""A WSGI module for tests/test_gunicorn.py: the admin app on the test's database, plus a
route that records one row per request and says which worker process served it.

The app's config is the JSON object in ``LLM_TRACKER_TEST_APP_CONFIG``. Run it as
``gunicorn --pythonpath <repo>,<repo>/tests support.gunicorn_app:app``.
"""

from __future__ import annotations

import json
import os
import time

from flask import jsonify, request

from admin_app import create_app
from admin_app.auth import csrf
from llm_tracker import record_usage

app = create_app(json.loads(os.environ["LLM_TRACKER_TEST_APP_CONFIG"]))


@app.get("/pid")
def pid():
    return jsonify(pid=os.getpid())


@app.post("/record")
@csrf.exempt  # a test client with no session
def record():
    # hold_ms keeps the worker busy a little, so concurrent requests reach other workers.
    time.sleep(float(request.args.get("hold_ms", 0)) / 1000)
    run_id = request.args["run_id"]
    row = record_usage(
        "gpt-4o-mini",
        prompt_tokens=int(request.args.get("tokens", 1)),
        completion_tokens=1,
        node_name="gunicorn",
        run_id=run_id,
    )
    return jsonify(pid=os.getpid(), run_id=row.run_id)
