"""promofilter: find, flag and strip promotional passages in German text.

Importing the package is cheap: it pulls in no model, no onnxruntime session
and none of the training libraries.
"""

from promofilter.segment import Span, join_segments, segment_spans

__version__ = "0.1.0"

__all__ = ["Span", "__version__", "join_segments", "segment_spans"]
