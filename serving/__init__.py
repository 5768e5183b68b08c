"""promofilter: find, flag and strip promotional passages in German text.

Importing the package is cheap: it pulls in no model, no onnxruntime session
and none of the training libraries; :func:`load` builds the session.
"""

from promofilter.analyze import Analysis, SegmentResult
from promofilter.model import ModelLoadError, PromoFilter, load
from promofilter.segment import Span, join_segments, segment_spans, sentence_spans

__version__ = "0.1.0"

__all__ = [
    "Analysis",
    "ModelLoadError",
    "PromoFilter",
    "SegmentResult",
    "Span",
    "__version__",
    "join_segments",
    "load",
    "segment_spans",
    "sentence_spans",
]
