"""``vinocr-serve``: an HTTP service for reads, reviewer corrections and retraining jobs.

The top layer of vinocr: it uses :mod:`vinocr.predict` to read crops, writes corrections in the
folder format :mod:`vinocr.data.corrections` reads, and runs ``vinocr-finetune`` and
``vinocr-export`` as child processes. Nothing below it imports it. Its web dependencies (FastAPI,
uvicorn, python-multipart) are imported only here.
"""
from vinocr.serve.app import ServeSettings, create_app

__all__ = ["ServeSettings", "create_app"]
