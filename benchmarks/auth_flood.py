"""A wrong-key flood against the app in-process: the rate limits at their defaults, against limits off.

The probe of issue 13 sent 1,500 wrong-key requests in 2.4 s and got 1,500 answers of 401. This sends the
same flood (one address, ``Authorization: Bearer wrong``) to ``GET /v1/models`` twice, limits off (the
baseline, measured in the same run) and on (``LENRISK_RATE_LIMIT_*`` defaults), then the right key from
the same address, which must still pass the gate. Models are not loaded (an empty registry), so a request
that passes the gate gets 503: the flood measures the gate alone.

    .venv/bin/python benchmarks/auth_flood.py [--requests 1500]
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time

from fastapi.testclient import TestClient

from service.api.app import create_app
from service.security import digest
from service.settings import ServiceSettings


def flood(enabled: bool, requests: int) -> dict:
    """Status counts of ``requests`` wrong-key calls, their wall time, then the right key's statuses."""
    with tempfile.TemporaryDirectory() as tmp:
        settings = ServiceSettings(
            mlruns_dir=tmp,
            mlflow_tracking_uri=f"sqlite:///{tmp}/none.db",
            audit_url=f"sqlite:///{tmp}/audit.db",
            api_keys={"clinic-a": digest("right")},
            rate_limit_enabled=enabled,
        )
        with TestClient(create_app(settings)) as client:
            wrong, right = {"Authorization": "Bearer wrong"}, {"Authorization": "Bearer right"}
            start = time.perf_counter()
            statuses = [client.get("/v1/models", headers=wrong) for _ in range(requests)]
            seconds = time.perf_counter() - start
            after = collections.Counter(client.get("/v1/models", headers=right).status_code for _ in range(5))
    return {
        "counts": dict(collections.Counter(r.status_code for r in statuses)),
        "retry_after": statuses[-1].headers.get("retry-after"),
        "seconds": seconds,
        "right_key": dict(after),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1500)
    args = parser.parse_args()
    off, on = flood(False, args.requests), flood(True, args.requests)
    for name, run in (("limits off (baseline)", off), ("limits on (defaults)", on)):
        print(
            f"{name}: {run['counts']} in {run['seconds']:.2f} s; "
            f"Retry-After of the last: {run['retry_after']}; "
            f"then the right key from the same address: {run['right_key']}"
        )
    print(f"time per wrong-key request, on / off: {on['seconds'] / off['seconds']:.2f}")


if __name__ == "__main__":
    main()
