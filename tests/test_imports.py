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


def test_onnxruntime_is_imported_by_load_not_by_import(smoke_build):
    model_dir = smoke_build / "model"
    probe = (
        "import sys, promofilter, promofilter.cli\n"
        "promofilter.cli.parse_args(['score'])\n"
        "assert 'onnxruntime' not in sys.modules, 'imported too early'\n"
        f"model = promofilter.load({str(model_dir)!r})\n"
        "assert 'onnxruntime' in sys.modules\n"
        f"heavy = [m for m in {HEAVY[:4]!r} if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
