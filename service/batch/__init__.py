"""Batch scoring of record files with the service's predictor (``lenrisk score``), one module per job.

- :mod:`~service.batch.read`: open and check an input file, stream it in chunks with 1-based row numbers
  (:mod:`~service.batch.numbering` numbers CSV rows, the unsplittable ones included);
- :mod:`~service.batch.score`: validate a chunk against the contract and score its valid rows with
  :class:`service.predictor.Predictor`, the object behind ``/v1/predict``;
- :mod:`~service.batch.publish`: stage output and rejects, reconcile the counts, publish atomically with a
  manifest written last;
- :mod:`~service.batch.parallel`: the threads that read ahead and score chunks at once;
- :mod:`~service.batch.local`: the local engine, one file in, one file out, in this process;
- :mod:`~service.batch.spark`: the Spark engine, datasets of parts in and out (its session in
  :mod:`~service.batch.spark_session`, its executors' side in :mod:`~service.batch.spark_executor`, its
  files through :mod:`~service.batch.hadoop_fs`, :mod:`~service.batch.dataset_input` and
  :mod:`~service.batch.dataset_output`); both score chunks with the same function.

Every input row ends up either in the output (input columns unchanged, then the scores) or in the rejects
file (one line per broken rule); nothing appears under the final names unless
``rows in the file == rows scored + rows rejected``.
"""
