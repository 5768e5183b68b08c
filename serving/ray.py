"""Score or analyse a Ray Dataset: ``promofilter.ray.score_dataset(ds)`` and
``analyze_dataset(ds)`` (the ``scale`` extra).

Ray Data's pattern for batch inference is a stateful class passed to ``map_batches``: Ray
starts ``concurrency`` actors, each builds the class once (here: loads the model once) and
then gets batch after batch. Each actor reserves ``num_cpus_per_actor`` CPUs and gives ONNX
Runtime as many intra-op threads, so actors do not fight over cores.

    import ray, promofilter.ray
    ds = ray.data.read_parquet("s3://bucket/articles/")
    promofilter.ray.score_dataset(ds, text_column="body", concurrency=8).write_parquet(...)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from promofilter.model import DEFAULT_BATCH_SIZE

RAY_HINT = 'Ray Data needs the scale extra: pip install "promofilter[scale]"'
DEFAULT_RAY_BATCH_SIZE = 256  # rows per map_batches call: the CLI's chunk of 8 model batches


def import_ray() -> Any:
    """``ray`` with Ray Data, or an ImportError that says how to install it."""
    try:
        import ray
        import ray.data  # Ray Data is an extra of ray itself
    except ImportError as error:
        raise ImportError(RAY_HINT) from error
    return ray


class _DocumentActor:
    """A ``map_batches`` class: one model per actor, batches of pyarrow Tables in, the same
    batches out with :meth:`columns` appended.

    Rows whose text is missing, not a string or longer than ``max_chars`` get nulls in every
    added column: one bad row does not fail a job of millions. An input column of the same
    name as an added one (a ``label`` of the data's own, say) is replaced in place.
    """

    def __init__(
        self,
        model: str | None,
        text_column: str,
        threshold: float | None,
        threads: int,
        model_batch_size: int,
        cascade: bool = True,
        max_chars: int | None = None,
    ) -> None:
        import promofilter

        self.model = promofilter.load(
            model,
            threshold=threshold,
            threads=threads,
            batch_size=model_batch_size,
            cascade=cascade,
        )
        self.text_column = text_column
        self.max_chars = max_chars

    def columns(self) -> dict[str, Any]:
        """The added columns and their pyarrow types, in output order."""
        raise NotImplementedError

    def added(self, texts: list[str]) -> list[dict[str, Any]]:
        """The added fields of each text, in order."""
        raise NotImplementedError

    def __call__(self, batch: Any) -> Any:
        import pyarrow

        texts = batch.column(self.text_column).to_pylist()
        valid = [i for i, text in enumerate(texts) if self._scorable(text)]
        columns = self.columns()
        values: dict[str, list[Any]] = {name: [None] * len(texts) for name in columns}
        for index, fields in zip(valid, self.added([texts[i] for i in valid]), strict=True):
            for name in columns:
                values[name][index] = fields[name]
        for name, kind in columns.items():
            column = pyarrow.array(values[name], kind)
            # a column of that name is replaced where it stands, as the local engine's
            # {**record, **added} does; two columns of one name would break the writers
            if name in batch.column_names:
                batch = batch.set_column(batch.column_names.index(name), name, column)
            else:
                batch = batch.append_column(name, column)
        return batch

    def _scorable(self, text: Any) -> bool:
        return isinstance(text, str) and (self.max_chars is None or len(text) <= self.max_chars)


class PromoScorer(_DocumentActor):
    """Adds ``promo_score`` and ``label``, as :meth:`promofilter.PromoFilter.score_fields`."""

    def columns(self) -> dict[str, Any]:
        import pyarrow

        return {"promo_score": pyarrow.float64(), "label": pyarrow.string()}

    def added(self, texts: list[str]) -> list[dict[str, Any]]:
        return self.model.score_fields(texts)


class PromoAnalyzer(_DocumentActor):
    """Adds ``segments``, ``label``, ``promo_share`` and ``clean_text``, as
    :meth:`promofilter.PromoFilter.analyze_many` gives them (``Analysis.to_dict``)."""

    def columns(self) -> dict[str, Any]:
        import pyarrow

        segment = pyarrow.struct(
            [
                ("start", pyarrow.int64()),
                ("end", pyarrow.int64()),
                ("label", pyarrow.string()),
                ("score", pyarrow.float64()),
                ("text", pyarrow.string()),
            ]
        )
        return {
            "segments": pyarrow.list_(segment),
            "label": pyarrow.string(),
            "promo_share": pyarrow.float64(),
            "clean_text": pyarrow.string(),
        }

    def added(self, texts: list[str]) -> list[dict[str, Any]]:
        return [analysis.to_dict() for analysis in self.model.analyze_many(texts)]


def score_dataset(
    ds: Any,
    text_column: str = "text",
    model: str | Path | None = None,
    threshold: float | None = None,
    batch_size: int = DEFAULT_RAY_BATCH_SIZE,
    concurrency: int = 2,
    num_cpus_per_actor: float = 1,
    model_batch_size: int = DEFAULT_BATCH_SIZE,
    cascade: bool = True,
    max_chars: int | None = None,
) -> Any:
    """``ds`` with ``promo_score`` (P(promotional), 6 places) and ``label`` added per row.

    ``model`` is a model directory (default: the shipped model; it must be readable on every
    node), ``batch_size`` the rows per actor call, ``concurrency`` the number of actors, each
    holding one model and ``num_cpus_per_actor`` CPUs, which is also its ONNX Runtime thread
    count. ``model_batch_size`` is the texts per ONNX Runtime call, as ``load(batch_size=)``,
    and ``cascade=False`` runs the encoder on every text, as ``load(cascade=False)``.
    A text longer than ``max_chars`` characters is not scored: its row gets nulls, as a row
    without a text does.
    The result is lazy, like every Ray Dataset: write, iterate or materialize it.
    """
    return _map_documents(ds, PromoScorer, **_options(locals()))


def analyze_dataset(
    ds: Any,
    text_column: str = "text",
    model: str | Path | None = None,
    threshold: float | None = None,
    batch_size: int = DEFAULT_RAY_BATCH_SIZE,
    concurrency: int = 2,
    num_cpus_per_actor: float = 1,
    model_batch_size: int = DEFAULT_BATCH_SIZE,
    cascade: bool = True,
    max_chars: int | None = None,
) -> Any:
    """``ds`` with each row's text analysed as a document, as ``PromoFilter.analyze``:
    ``segments`` (start, end, label, score, text), ``label``, ``promo_share`` and
    ``clean_text`` added per row. The options are :func:`score_dataset`'s.
    """
    return _map_documents(ds, PromoAnalyzer, **_options(locals()))


def _options(arguments: dict[str, Any]) -> dict[str, Any]:
    """A public wrapper's own arguments (its ``locals()``) but the dataset, by name."""
    return {name: value for name, value in arguments.items() if name != "ds"}


def _map_documents(
    ds: Any,
    actor: type[_DocumentActor],
    *,
    text_column: str,
    model: str | Path | None,
    threshold: float | None,
    batch_size: int,
    concurrency: int,
    num_cpus_per_actor: float,
    model_batch_size: int,
    cascade: bool,
    max_chars: int | None,
) -> Any:
    import_ray()
    if num_cpus_per_actor <= 0:
        raise ValueError(f"num_cpus_per_actor must be positive, got {num_cpus_per_actor!r}")
    if text_column not in ds.columns():
        raise ValueError(f"the dataset has no column {text_column!r}; it has {ds.columns()}")
    return ds.map_batches(
        actor,
        fn_constructor_kwargs={
            "model": None if model is None else str(Path(model).expanduser().resolve()),
            "text_column": text_column,
            "threshold": threshold,
            "threads": max(1, math.ceil(num_cpus_per_actor)),
            "model_batch_size": model_batch_size,
            "cascade": cascade,
            "max_chars": max_chars,
        },
        batch_size=batch_size,
        batch_format="pyarrow",
        concurrency=concurrency,
        num_cpus=num_cpus_per_actor,
    )
