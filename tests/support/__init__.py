"""What the tests share besides fixtures (those are in ``tests/conftest.py``).

``tests/`` is on ``sys.path`` while pytest runs (it holds the root ``conftest.py``), so the
tests import these as ``support.<module>``; child processes started by a test get the same
path (multiprocessing's spawn passes it on; gunicorn is given ``--pythonpath``).
"""
