import subprocess
import sys

HEAVY = ("torch", "transformers", "datasets", "sklearn", "onnxruntime")


def test_importing_promofilter_loads_no_training_library():
    probe = f"import sys, promofilter; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""


def test_training_imports_the_runtime_segmenter_not_a_copy():
    import promofilter.segment

    import training.evaluate

    assert training.evaluate.segment_spans is promofilter.segment.segment_spans
