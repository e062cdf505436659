"""The Spark session of ``lenrisk score --engine spark``: the active one, or one configured by the standard
Spark configuration (``PYSPARK_SUBMIT_ARGS``, ``spark-defaults.conf``) and ``--spark-master``."""

from __future__ import annotations

import os
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from service.batch.read import BATCH_ROWS

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

QUIET_LOG4J = "log4j2-quiet.properties"  # beside this module
_MASTER = re.compile(r"(?:--master|spark\.master)[=\s]+(\S+)")


@contextmanager
def spark_session(*, master: str | None = None, quiet: bool = False) -> Iterator[SparkSession]:
    """The active Spark session, or a new one (stopped at exit) configured by spark-submit or spark-defaults.

    ``master`` (e.g. ``spark://host:7077``) overrides the configured ``spark.master``. Without any, pyspark
    runs in local mode on every core; then ``SPARK_LOCAL_IP`` defaults
    to 127.0.0.1 (else Spark warns that the host name resolves to a loopback address and binds to another
    interface). ``quiet`` points log4j2 at an errors-only configuration before the JVM starts (its
    start-up warnings come before ``setLogLevel`` could act), unless ``LOG4J_CONFIGURATION_FILE`` names one.
    Executors run this Python interpreter unless ``PYSPARK_PYTHON`` (or ``spark.pyspark.python`` under
    spark-submit) says otherwise.
    """
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        yield active
        return
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    if master.startswith("local") if master else _local_master():
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    if quiet:
        os.environ.setdefault("LOG4J_CONFIGURATION_FILE", str(Path(__file__).with_name(QUIET_LOG4J)))
    builder = (
        SparkSession.builder.appName("lenrisk-score")
        .config("spark.ui.showConsoleProgress", "false")
        # the local engine's batch size: Spark's default 10,000-row Arrow batches score slower (docs/batch.md)
        .config("spark.sql.execution.arrow.maxRecordsPerBatch", str(BATCH_ROWS))
    )
    if master:
        builder = builder.master(master)
    with pandas_version_warning_ignored():
        spark = builder.getOrCreate()
    try:
        yield spark
    finally:
        spark.stop()


def _local_master() -> bool:
    """Whether Spark will run in local mode: every ``spark.master`` given by ``PYSPARK_SUBMIT_ARGS`` or by
    ``spark-defaults.conf`` (in ``SPARK_CONF_DIR``, else ``$SPARK_HOME/conf``) is ``local...``, or none is."""
    import pyspark

    texts = [os.environ.get("PYSPARK_SUBMIT_ARGS", "")]
    home = os.environ.get("SPARK_HOME") or os.path.dirname(pyspark.__file__)
    defaults = Path(os.environ.get("SPARK_CONF_DIR") or Path(home) / "conf") / "spark-defaults.conf"
    if defaults.is_file():
        texts += [line for line in defaults.read_text().splitlines() if not line.lstrip().startswith("#")]
    return all(master.startswith("local") for text in texts for master in _MASTER.findall(text))


@contextmanager
def pandas_version_warning_ignored() -> Iterator[None]:
    """Ignore pyspark's "does not yet fully support pandas >= 3.0.0" FutureWarning, which its own code emits
    when it starts a context (importing ``pyspark.testing``) and inside ``mapInArrow`` (through
    ``pandas_udf``). No pandas is involved here: ``mapInArrow`` hands Arrow batches over, and the tests check
    the results against the local engine's."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", "PySpark does not yet fully support pandas", FutureWarning, r"pyspark\."
        )
        yield
