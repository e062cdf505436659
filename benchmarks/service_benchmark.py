"""Service speed, side by side in one run: lenrisk vs ``mlflow models serve`` on the same registered model.

    .venv/bin/python benchmarks/service_benchmark.py [--n 10000] [--seconds 20] [--workers 1]

1. Trains and registers both models on a synthetic cohort into a temporary SQLite store.
2. Starts ``lenrisk serve`` and ``mlflow models serve --env-manager local`` (the discontinuation champion,
   which answers one outcome without explanation) with the same number of workers, on 127.0.0.1.
3. Drives each with httpx: 1,000 sequential requests (p50/p99), then concurrency 16 for ``--seconds``
   (requests/s), bounded in count and time.
4. Times the predictor in-process per patient (both outcomes with explanations) for a linear and for a
   boosted champion.

Prints a markdown table; docs/performance.md records it. Compare within one run only: this machine's
medians move 20–30% between runs.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from features.record import EXAMPLE_RECORD, PatientRecord

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
RECORD = EXAMPLE_RECORD
ROW = {k: v for k, v in PatientRecord.model_validate(RECORD).to_row().items() if k != "patient_id"}
SEQUENTIAL = 1_000
CONCURRENCY = 16


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(url: str, path: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + path, timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url}{path} not ready within {timeout}s")


def sequential(url: str, path: str, payload: dict) -> tuple[float, float]:
    with httpx.Client(base_url=url, timeout=10) as client:
        for _ in range(50):
            client.post(path, json=payload).raise_for_status()
        times = []
        for _ in range(SEQUENTIAL):
            start = time.perf_counter()
            client.post(path, json=payload).raise_for_status()
            times.append(time.perf_counter() - start)
    times.sort()
    return statistics.median(times) * 1e3, times[int(0.99 * len(times))] * 1e3


async def concurrent(url: str, path: str, payload: dict, seconds: float) -> tuple[float, int]:
    done = errors = 0
    deadline = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=CONCURRENCY, max_keepalive_connections=CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=10, limits=limits) as client:

        async def worker() -> None:
            nonlocal done, errors
            while time.monotonic() < deadline:
                response = await client.post(path, json=payload)
                done += response.status_code == 200
                errors += response.status_code != 200

        start = time.monotonic()
        await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
        elapsed = time.monotonic() - start
    return done / elapsed, errors


def in_process(n: int) -> dict[str, float]:
    """Microseconds per patient for both outcomes with explanations, linear and boosted champions."""
    from features.encoding import FEATURE_NAMES, FeatureEncoder
    from features.model.riskmodel import RiskModel
    from features.validate import validate_table
    from service.predictor import LoadedModel, Predictor, RiskBands
    from training.cohort.generate import generate_cohort
    from training.estimators import BoostedSpec, LinearSpec

    frame = validate_table(generate_cohort(n, seed=5)).raise_on_errors()
    encoder = FeatureEncoder().fit(frame)
    X, groups = encoder.transform(frame), frame["patient_id"].to_numpy()
    out = {}
    for family, spec in (("logistic", LinearSpec("full", FEATURE_NAMES)), ("xgboost", BoostedSpec())):
        models = {}
        for outcome, column in (
            ("discontinuation", "discontinued_toxicity"),
            ("dose_reduction", "dose_reduced"),
        ):
            y = frame[column].to_numpy()
            estimator, calibrator = spec.fit(X, y, groups=groups)
            model = RiskModel(outcome, encoder, estimator, calibrator)
            models[outcome] = LoadedModel(name=outcome, version="1", model=model)
        predictor = Predictor(models, {o: RiskBands(0.2, 0.4) for o in models})
        for _ in range(200):
            predictor.predict_rows([ROW])
        reps = 5_000
        start = time.perf_counter()
        for _ in range(reps):
            predictor.predict_rows([ROW])
        out[family] = (time.perf_counter() - start) / reps * 1e6
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=10_000, help="training cohort size")
    parser.add_argument("--seconds", type=float, default=20.0, help="duration of the concurrent phase")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "LENRISK_MLRUNS_DIR": tmp,
            "LENRISK_AUDIT_URL": f"sqlite:///{tmp}/audit.db",
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp}/mlflow.db",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "LENRISK_RATE_LIMIT_ENABLED": "false",  # the load would trip the per-client limit
            "PATH": f"{VENV_BIN}:{os.environ.get('PATH', '')}",  # mlflow models serve needs the venv's bin
        }
        print(f"training and registering on {args.n} synthetic lines ...", file=sys.stderr)
        subprocess.run(
            [VENV_BIN / "lenrisk", "train", "--synthetic", str(args.n), "--seed", "7", "--quiet"],
            env=env,
            check=True,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
        )
        lenrisk_port, mlflow_port = free_port(), free_port()
        servers = [
            subprocess.Popen(
                [
                    VENV_BIN / "lenrisk",
                    "serve",
                    "--port",
                    str(lenrisk_port),
                    "--workers",
                    str(args.workers),
                    "-q",
                ],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
            subprocess.Popen(
                [
                    VENV_BIN / "mlflow",
                    "models",
                    "serve",
                    "-m",
                    "models:/lenalidomide-discontinuation@champion",
                    "--env-manager",
                    "local",
                    "-p",
                    str(mlflow_port),
                    "-w",
                    str(args.workers),
                    "-h",
                    "127.0.0.1",
                ],
                env=env,
                cwd=tmp,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            ),
        ]
        try:
            lenrisk = f"http://127.0.0.1:{lenrisk_port}"
            mlflow_url = f"http://127.0.0.1:{mlflow_port}"
            wait_ready(lenrisk, "/readyz")
            wait_ready(mlflow_url, "/ping")
            family = httpx.get(lenrisk + "/v1/models").json()["models"][0]["family"]
            targets = {
                "lenrisk /v1/predict (both outcomes + SHAP)": (lenrisk, "/v1/predict", RECORD),
                "mlflow models serve /invocations (one outcome, no SHAP)": (
                    mlflow_url,
                    "/invocations",
                    {"dataframe_records": [ROW]},
                ),
            }
            results = {}
            for name, (url, path, payload) in targets.items():
                p50, p99 = sequential(url, path, payload)
                rps, errors = asyncio.run(concurrent(url, path, payload, args.seconds))
                results[name] = (p50, p99, rps, errors)
        finally:
            for server in servers:
                server.terminate()
            for server in servers:
                server.wait(timeout=30)

    micro = in_process(args.n)
    base_rps = results["mlflow models serve /invocations (one outcome, no SHAP)"][2]
    print(
        f"\nchampion family served over HTTP: {family}; workers: {args.workers}; "
        f"{SEQUENTIAL} sequential requests, then concurrency {CONCURRENCY} for {args.seconds:g} s\n"
    )
    print("| server | sequential p50 (ms) | sequential p99 (ms) | requests/s at c=16 | non-200 | ratio |")
    print("|---|---|---|---|---|---|")
    for name, (p50, p99, rps, errors) in results.items():
        print(f"| {name} | {p50:.2f} | {p99:.2f} | {rps:.0f} | {errors} | {rps / base_rps:.1f}x |")
    print("\n| predictor in-process, one patient, both outcomes + SHAP | µs per patient |\n|---|---|")
    for family_name, micros in micro.items():
        print(f"| {family_name} champion | {micros:.0f} |")


if __name__ == "__main__":
    main()
