"""vinocr-serve, the real server (a uvicorn child process on a free loopback port) driven over HTTP:
reads, corrections, a fine-tune job to completion, activation and rollback, bad uploads, the
bearer token, a restart during a job, metrics and the OpenAPI schema."""
from __future__ import annotations

import base64
import json
import threading
import time
from pathlib import Path
from typing import Any, Dict

import cv2
import numpy as np
import pytest

from conftest import VALID_VINS, load_tool, text_image

ls = load_tool("load_serve")

#: Seconds a tiny job may take (subprocess start-up, 2 epochs, export with its ONNX check).
JOB_TIMEOUT = 120


def png(image: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", image)
    assert ok
    return buf.tobytes()


def read(base: str, images, token=None, fields=None):
    body, ctype = ls.multipart(fields or {}, [("image", f"crop{k}.png", data, "image/png")
                                              for k, data in enumerate(images)])
    return ls.request(base, "POST", "/v1/read", body, ctype, token=token)


def wait_job(base: str, job_id: str, states, timeout: float = JOB_TIMEOUT,
             until=None) -> Dict[str, Any]:
    deadline = time.monotonic() + timeout
    job: Dict[str, Any] = {}
    while time.monotonic() < deadline:
        status, job, _ = ls.request(base, "GET", f"/v1/jobs/{job_id}")
        assert status == 200, job
        if job["state"] in states and (until is None or until(job)):
            return job
        assert job["state"] not in ("failed",), job
        time.sleep(0.3)
    raise AssertionError(f"job {job_id} not in {states} after {timeout}s: {job}")


@pytest.fixture(scope="module")
def server(serve_model, tmp_path_factory):
    work = tmp_path_factory.mktemp("serve")
    srv = ls.start_server(serve_model["exp"], work / "data", work / "serve.log",
                          ["--job-config", str(serve_model["job_config"]), "--log-level",
                           "WARNING", "--max-image-bytes", "200000", "--max-width", "1000",
                           "--max-height", "200"])
    srv.data = work / "data"
    yield srv
    srv.stop()


def add_corrections(base: str, data: Path, n: int = 4) -> None:
    labels = [line.split("\t") for line in (data / "train.txt").read_text().splitlines()][:n]
    for rel, label in labels:
        body, ctype = ls.multipart({"text": label, "predicted": "X"},
                                   [("image", Path(rel).name, (data / rel).read_bytes(),
                                     "image/png")])
        status, doc, _ = ls.request(base, "POST", "/v1/corrections", body, ctype)
        assert status == 201, doc


# ------------------------------------------------------------------------------------ reads
def test_read_multipart_and_json_match_the_recognizer(server, serve_model, data):
    from vinocr.predict import Recognizer

    paths = [data / "tr" / "00000.png", data / "tr" / "00001.png", data / "va" / "00000.png"]
    direct = Recognizer.from_dir(serve_model["exp"]).predict([str(p) for p in paths])
    status, doc, _ = read(server.base, [p.read_bytes() for p in paths])
    assert status == 200, doc
    assert doc["model_version"] == "v0001"
    assert len(doc["results"]) == 3
    for got, want in zip(doc["results"], direct):
        assert got["text"] == want.text
        assert got["confidence"] == pytest.approx(want.confidence, abs=1e-6)
        assert got["char_confidences"] == pytest.approx(want.char_confidences, abs=1e-6)
        assert got["read_id"].startswith("r") and len(got["read_id"]) == 17
        assert "vin_valid" not in got          # a plate-charset model has no VIN fields
    # Base64 JSON, a data: URL and the decode / dynamic_width options give the same reads.
    b64 = [base64.b64encode(p.read_bytes()).decode() for p in paths]
    b64[0] = "data:image/png;base64," + b64[0]
    status, doc2, _ = ls.request(server.base, "POST", "/v1/read",
                                 json_body={"images": b64, "decode": "greedy",
                                            "dynamic_width": False})
    assert status == 200, doc2
    assert [r["text"] for r in doc2["results"]] == [r.text for r in direct]
    status, doc3, _ = read(server.base, [paths[0].read_bytes()], fields={"decode": "beam"})
    assert status == 200, doc3


def test_concurrent_reads_are_batched_and_all_answered(server, data):
    crops = [png(text_image(t, seed=k)) for k, t in enumerate(["AB123", "C0D45", "EFG67"] * 4)]
    answers = []

    def one(k):
        answers.append(read(server.base, [crops[k]])[0])

    threads = [threading.Thread(target=one, args=(k,)) for k in range(len(crops))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert answers == [200] * len(crops)


def test_batcher_puts_concurrent_reads_in_one_batch(serve_model):
    """In-process: reads queued together share one engine call, and each gets its own results
    in its own order."""
    import asyncio

    from vinocr.predict import Recognizer
    from vinocr.serve.models import LoadedModel, ReadBatcher

    rec = Recognizer.from_dir(serve_model["exp"], batch_size=16)
    sizes = []
    predict = rec.predict

    def recording(images, batch_size=None):
        sizes.append(len(images))
        return predict(images, batch_size)

    rec.predict = recording
    crops = [[text_image(t, seed=k)] * (k + 1) for k, t in enumerate(["AB123", "C0D45", "EF6"])]
    want = [predict(c) for c in crops]

    async def main():
        batcher = ReadBatcher(max_batch=16)
        batcher.model = LoadedModel("v0001", rec)
        await batcher.start()
        try:
            return await asyncio.gather(*(batcher.read(c) for c in crops))
        finally:
            await batcher.stop()

    got = asyncio.run(main())
    assert sizes == [6]                                  # 1 + 2 + 3 crops, one engine batch
    for (version, results), expected in zip(got, want):
        assert version == "v0001"
        assert [r.text for r in results] == [r.text for r in expected]
        assert [r.confidence for r in results] == pytest.approx([r.confidence for r in expected])


@pytest.mark.parametrize("case", ["not_image", "truncated", "too_wide", "too_big", "text_part",
                                  "json_bad_b64", "wrong_body_type", "no_image", "bad_decode",
                                  "bad_flag", "bad_json", "gif"])
def test_bad_uploads_are_4xx_with_a_message(server, case):
    good = png(text_image("AB123"))
    big = png(np.random.default_rng(0).integers(0, 256, (200, 1000, 3), dtype=np.uint8))
    if case == "too_wide":
        files = [("image", "wide.png", png(np.zeros((10, 1200, 3), np.uint8)), "image/png")]
    elif case == "too_big":
        files = [("image", "big.png", big + b"\0" * 1000, "image/png")]
    elif case == "not_image":
        files = [("image", "notes.png", b"hello, not an image", "image/png")]
    elif case == "truncated":
        files = [("image", "cut.png", good[:len(good) // 2], "image/png")]
    elif case == "text_part":
        files = [("image", "a.txt", good, "text/plain")]
    elif case == "gif":
        import io

        from PIL import Image
        out = io.BytesIO()
        Image.new("RGB", (20, 10)).save(out, format="GIF")
        files = [("image", "a.gif", out.getvalue(), "image/gif")]
    else:
        files = [("image", "a.png", good, "image/png")]
    fields = {"bad_decode": {"decode": "bogus"}, "bad_flag": {"dynamic_width": "maybe"}}.get(
        case, {})
    if case == "no_image":
        files = []
    body, ctype = ls.multipart(fields, files)
    if case == "json_bad_b64":
        body, ctype = json.dumps({"images": ["###"]}).encode(), "application/json"
    elif case == "wrong_body_type":
        ctype = "text/plain"
    elif case == "bad_json":
        body, ctype = b"{not json", "application/json"
    status, doc, _ = ls.request(server.base, "POST", "/v1/read", body, ctype)
    expected = {"too_wide": 413, "too_big": 413, "text_part": 415, "wrong_body_type": 415,
                "gif": 415}.get(case, 400)
    assert status == expected, (case, status, doc)
    assert isinstance(doc, dict) and doc["error"] and "\n" not in doc["error"], doc
    # The server is still fine afterwards.
    assert read(server.base, [good])[0] == 200


# ------------------------------------------------------------------------------ corrections
def test_corrections_are_stored_in_the_corrections_folder_format(server):
    from vinocr.data.corrections import CorrectionsDataset

    image = png(text_image("AB123", seed=3))
    status, doc, _ = read(server.base, [image])
    read_id = doc["results"][0]["read_id"]
    predicted = doc["results"][0]["text"]
    status, stored, _ = ls.request(server.base, "POST", "/v1/corrections",
                                   json_body={"read_id": read_id, "text": "ab123",
                                              "reviewer": "kim"})
    assert status == 201, stored
    assert stored["text"] == "AB123"              # normalised as training reads it
    assert stored["predicted"] == predicted and stored["model_version"] == "v0001"
    folder = server.data / "corrections"
    assert (folder / f"{stored['id']}.png").read_bytes() == image   # the uploaded bytes
    sidecar = json.loads((folder / f"{stored['id']}.json").read_text())
    assert sidecar["text"] == "AB123" and sidecar["read_id"] == read_id
    assert not list(folder.glob(".*"))            # no temp files left behind
    ds = CorrectionsDataset(folder)
    assert "AB123" in [ds.label(i) for i in range(len(ds))]

    # Refusals: characters outside the charset, unknown and malformed read ids, both at once.
    for payload, code, words in [
            ({"read_id": read_id, "text": "AB$12"}, 400, "'$' not in the model's charset"),
            ({"read_id": read_id, "text": ""}, 400, "text: empty"),
            ({"read_id": "r" + "0" * 16, "text": "AB123"}, 404, "no longer held"),
            ({"read_id": "../../etc/passwd", "text": "AB123"}, 404, "does not exist"),
            ({"text": "AB123"}, 400, "send one image")]:
        status, err, _ = ls.request(server.base, "POST", "/v1/corrections", json_body=payload)
        assert status == code and words in err["error"], (payload, status, err)

    status, stats, _ = ls.request(server.base, "GET", "/v1/corrections/stats")
    assert status == 200
    assert stats["total"] == len(ds)
    assert stats["by_reviewer"].get("kim", 0) >= 1


# ------------------------------------------------------------------------------------- jobs
def test_job_config_is_validated_before_the_job_starts(server, data):
    add_corrections(server.base, data)
    jobs_before = sorted((server.data / "jobs").iterdir())
    for config, words in [({"Train": {"epochs": "three"}}, "Train.epochs"),
                          ({"Optimizer": {"lrr": 0.1}}, "unknown key 'Optimizer.lrr'"),
                          ({"Global": {"run_dir": "/etc"}}, "Global.run_dir: cannot be set"),
                          ({"Train": {"dataset": {"type": "lmdb", "path": "/"}}},
                           "Train.dataset: cannot be set"),
                          ({"Technique": {"teacher": "/root/x"}}, "Technique.teacher")]:
        status, err, _ = ls.request(server.base, "POST", "/v1/jobs/finetune",
                                    json_body={"config": config})
        assert status == 400 and words in err["error"], (config, err)
    status, err, _ = ls.request(server.base, "POST", "/v1/jobs/finetune",
                                json_body={"confg": {}})
    assert status == 400 and "confg" in err["error"]
    assert sorted((server.data / "jobs").iterdir()) == jobs_before   # nothing was started


def test_finetune_job_exports_a_version_that_serves_reads(server, data):
    from vinocr.predict import Recognizer

    add_corrections(server.base, data)
    status, job, _ = ls.request(server.base, "POST", "/v1/jobs/finetune",
                                json_body={"config": {"Train": {"epochs": 2}}})
    assert status == 202, job
    # A second job waits for the first (one at a time); cancelling it while queued.
    status, queued, _ = ls.request(server.base, "POST", "/v1/jobs/finetune", json_body={})
    assert status == 202
    status, q, _ = ls.request(server.base, "GET", f"/v1/jobs/{queued['id']}")
    assert q["state"] == "queued" and q["queue_position"] >= 1, q
    status, cancelled, _ = ls.request(server.base, "POST", f"/v1/jobs/{queued['id']}/cancel")
    assert status == 200 and cancelled["state"] == "cancelled"

    done = wait_job(server.base, job["id"], ("succeeded",))
    version = done["version"]
    assert version and version != "v0001"
    progress = done["progress"]
    assert progress["epochs_done"] == 2 and progress["step"] > 0 and progress["loss"] > 0
    assert "seq_acc" in done["metrics"] and done["run_status"] == "completed"
    assert any("epoch 2/2" in line for line in done["log_tail"]) or done["log_tail"]
    # The job trained on the corrections mixed with the base dataset.
    cfg = (server.data / "jobs" / job["id"] / "config.yml").read_text()
    assert "corrections" in cfg and "train.txt" in cfg
    status, models, _ = ls.request(server.base, "GET", "/v1/models")
    assert version in [v["version"] for v in models["versions"]]
    assert models["active"] == "v0001"            # a job does not activate unless asked

    # Hot swap under load: reads running while the version changes are all answered.
    crop = png(text_image("AB123"))
    answers, stop = [], threading.Event()

    def hammer():
        while not stop.is_set():
            answers.append(read(server.base, [crop])[0])

    threads = [threading.Thread(target=hammer) for _ in range(3)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    status, act, _ = ls.request(server.base, "POST", f"/v1/models/{version}/activate")
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    assert status == 200 and act == {"active": version, "previous": "v0001"}, act
    assert answers and set(answers) == {200}, answers

    # Reads now come from the new version, exactly as the exported directory reads.
    image = data / "va" / "00001.png"
    status, doc, _ = read(server.base, [image.read_bytes()])
    assert doc["model_version"] == version
    direct = Recognizer.from_dir(server.data / "models" / version).predict(str(image))
    assert doc["results"][0]["text"] == direct.text
    assert doc["results"][0]["confidence"] == pytest.approx(direct.confidence, abs=1e-6)
    # Rollback to the previous version, and unknown or malformed versions.
    status, back, _ = ls.request(server.base, "POST", "/v1/models/v0001/activate")
    assert status == 200 and back == {"active": "v0001", "previous": version}
    assert read(server.base, [image.read_bytes()])[1]["model_version"] == "v0001"
    for bad in ("v9999", "latest", "..%2F..%2Fetc"):
        status, err, _ = ls.request(server.base, "POST", f"/v1/models/{bad}/activate")
        assert status == 404, (bad, err)
    status, err, _ = ls.request(server.base, "GET", "/v1/jobs/..%2F..%2Fetc")
    assert status == 404


def test_cancel_a_running_job(server, data):
    add_corrections(server.base, data)
    status, job, _ = ls.request(server.base, "POST", "/v1/jobs/finetune",
                                json_body={"config": {"Train": {"epochs": 200}}})
    assert status == 202, job
    wait_job(server.base, job["id"], ("running",), until=lambda j: j["progress"]["step"] > 0)
    status, _, _ = ls.request(server.base, "POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 200
    done = wait_job(server.base, job["id"], ("cancelled",), timeout=60)
    assert done["run_status"] == "interrupted"    # the trainer stopped as on Ctrl-C
    status, err, _ = ls.request(server.base, "POST", f"/v1/jobs/{job['id']}/cancel")
    assert status == 409


# ---------------------------------------------------------------------------- observability
def test_metrics_health_and_openapi(server):
    assert read(server.base, [png(text_image("AB123"))])[0] == 200
    status, text, info = ls.request(server.base, "GET", "/metrics")
    assert status == 200 and info["content-type"].startswith("text/plain")
    assert 'vinocr_http_requests_total{method="POST",route="/v1/read",status="200"}' in text
    assert 'vinocr_http_request_duration_seconds_bucket{method="POST",route="/v1/read",' \
           'le="+Inf"}' in text
    assert "vinocr_read_queue_images 0" in text and "vinocr_jobs_queued" in text
    assert "# TYPE vinocr_read_batches_total counter" in text
    count = [line for line in text.splitlines()
             if line.startswith('vinocr_http_request_duration_seconds_count{method="POST",'
                                'route="/v1/read"}')]
    assert count and int(count[0].split()[-1]) >= 1
    status, health, _ = ls.request(server.base, "GET", "/healthz")
    assert status == 200 and health["status"] == "ok" and health["model_version"]
    status, schema, _ = ls.request(server.base, "GET", "/openapi.json")
    assert status == 200
    for path in ("/v1/read", "/v1/corrections", "/v1/corrections/stats", "/v1/jobs/finetune",
                 "/v1/jobs/{job_id}", "/v1/jobs/{job_id}/cancel", "/v1/models",
                 "/v1/models/{version}/activate", "/healthz", "/metrics"):
        assert path in schema["paths"], path
    assert "multipart/form-data" in schema["paths"]["/v1/read"]["post"]["requestBody"]["content"]
    status, page, _ = ls.request(server.base, "GET", "/review")
    assert status == 200 and "/v1/reads/recent" in page


# ------------------------------------------------------------------------ token and VIN model
def test_token_and_vin_fields(tmp_path):
    """A VIN-charset model behind a bearer token given in the environment."""
    import paddle

    from conftest import TINY_CRNN
    from vinocr.export import export_inference
    from vinocr.models.factory import model_from_config
    from vinocr.vin import check_digit_ok, decode_model_year, validate_vin

    paddle.seed(0)
    model, _ = model_from_config({"name": "crnn", "pretrained": None, "params": TINY_CRNN}, "vin")
    export_inference(model, tmp_path / "vin", "vin", (3, 48, 160),
                     {"decode": {"method": "greedy"}, "charset": "vin"})
    srv = ls.start_server(tmp_path / "vin", tmp_path / "data", tmp_path / "serve.log",
                          ["--log-level", "WARNING"], env={"VINOCR_SERVE_TOKEN": "s3cret"})
    try:
        crop = png(text_image(VALID_VINS[1]))
        assert ls.request(srv.base, "GET", "/healthz")[0] == 200        # probes need no token
        for token in (None, "wrong"):
            status, err, info = read(srv.base, [crop], token=token)
            assert status == 401 and "bearer token" in err["error"]
            assert info.get("www-authenticate") == "Bearer"
            assert ls.request(srv.base, "GET", "/metrics", token=token)[0] == 401
        status, doc, _ = read(srv.base, [crop], token="s3cret", fields={"decode": "vin"})
        assert status == 200, doc
        r = doc["results"][0]
        # The VIN decoder only spells VINs that pass the checks (or nothing at all).
        assert isinstance(r["vin_valid"], bool) and isinstance(r["check_digit_ok"], bool)
        assert r["text"] == "" or (r["vin_valid"] and len(r["text"]) == 17)
        assert r["vin_valid"] == (bool(r["text"]) and validate_vin(r["text"]).valid)
        assert r["check_digit_ok"] == check_digit_ok(r["text"])
        assert r["model_year"] == (decode_model_year(r["text"]) if r["text"] else None)
        status, err, _ = ls.request(srv.base, "POST", "/v1/jobs/finetune", json_body={},
                                    token="s3cret")
        assert status == 400 and "--job-config" in err["error"]
    finally:
        srv.stop()


# -------------------------------------------------------------------------------- restarts
def test_restart_during_a_job_marks_it_interrupted_and_resume_finishes_it(serve_model, data,
                                                                        tmp_path):
    extra = ["--job-config", str(serve_model["job_config"]), "--log-level", "WARNING"]
    srv = ls.start_server(serve_model["exp"], tmp_path / "data", tmp_path / "serve1.log", extra)
    try:
        # Nothing to train on yet: refused before a job exists.
        status, err, _ = ls.request(srv.base, "POST", "/v1/jobs/finetune", json_body={})
        assert status == 409 and "corrections" in err["error"], err
        assert not list((tmp_path / "data" / "jobs").iterdir())
        add_corrections(srv.base, data)
        status, job, _ = ls.request(srv.base, "POST", "/v1/jobs/finetune",
                                    json_body={"config": {"Train": {"epochs": 12}},
                                               "activate": True})
        assert status == 202, job
        running = wait_job(srv.base, job["id"], ("running",),
                           until=lambda j: j["progress"]["epochs_done"] >= 1)
        assert running["progress"]["eta_seconds"] is not None
        pid = running["pid"]
        srv.kill()                                   # the service crashes mid-training
    finally:
        if srv.proc.poll() is None:
            srv.stop()
    # Its training child stops too (as on Ctrl-C: latest checkpoint kept, report written).
    report = tmp_path / "data" / "jobs" / job["id"] / "run" / "report.json"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not (
            report.is_file() and json.loads(report.read_text())["status"] == "interrupted"):
        time.sleep(0.3)
    assert json.loads(report.read_text())["status"] == "interrupted"

    def training_alive() -> bool:
        try:
            return b"finetune" in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    while time.monotonic() < deadline and training_alive():
        time.sleep(0.3)
    assert not training_alive()

    srv = ls.start_server(serve_model["exp"], tmp_path / "data", tmp_path / "serve2.log", extra)
    try:
        status, job2, _ = ls.request(srv.base, "GET", f"/v1/jobs/{job['id']}")
        assert job2["state"] == "interrupted", job2
        assert "resume" in job2["events"][-1]["note"]
        status, resumed, _ = ls.request(srv.base, "POST", f"/v1/jobs/{job['id']}/resume")
        assert status == 200 and resumed["state"] == "queued"
        done = wait_job(srv.base, job["id"], ("succeeded",))
        assert done["progress"]["epochs_done"] == 12
        log = (tmp_path / "data" / "jobs" / job["id"] / "job.log").read_text(errors="replace")
        assert "--resume" in log and "resumed from" in log
        # activate: true made the exported version the serving one.
        status, doc, _ = read(srv.base, [png(text_image("AB123"))])
        assert doc["model_version"] == done["version"] != "v0001"
        status, err, _ = ls.request(srv.base, "POST", f"/v1/jobs/{job['id']}/resume")
        assert status == 409
    finally:
        srv.stop()
