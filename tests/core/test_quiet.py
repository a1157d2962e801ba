"""Third-party log noise goes to a file, and everything is as it was afterwards."""

import logging
import os
import subprocess
import sys
import warnings

from rlvr_utils.core.quiet import third_party_log


def test_third_party_noise_lands_in_the_file_and_the_process_is_restored(tmp_path, capfd):
    lib = logging.getLogger("somelib")
    handler = logging.StreamHandler(sys.stdout)
    lib.addHandler(handler)
    lib.propagate = False
    odd = logging.getLogger("odd")
    odd.addHandler(logging.lastResort)  # a handler whose stream cannot be set: skipped, not a crash
    said = []
    try:
        with third_party_log(tmp_path / "run" / "third_party.log", say=said.append) as path:
            warnings.warn("a library's warning", stacklevel=1)
            lib.warning("a library's own handler")
            logging.getLogger("unconfigured").warning("through the root logger")
            os.write(2, b"native stderr\n")
            subprocess.run([sys.executable, "-c", "import sys; sys.stderr.write('a child process\\n')"], check=True)
            print("the run's own line")
    finally:
        lib.removeHandler(handler)
        odd.removeHandler(logging.lastResort)
    out, err = capfd.readouterr()
    assert said == [f"third-party log messages (vLLM, transformers, torch, warnings) go to {path}"]
    assert "the run's own line" in out and "library" not in out + err and "native" not in err and "child" not in err
    text = path.read_text()
    for line in ("a library's warning", "a library's own handler", "through the root logger", "native stderr",
                 "a child process"):
        assert line in text, line
    assert handler.stream is sys.stdout
    os.write(2, b"stderr is back\n")
    assert "stderr is back" in capfd.readouterr().err
    assert "VLLM_CONFIGURE_LOGGING" not in os.environ


def test_a_folder_it_cannot_write_leaves_everything_alone(tmp_path):
    (tmp_path / "file").write_text("")
    with third_party_log(tmp_path / "file" / "run" / "third_party.log", say=print) as path:
        pass
    assert not path.exists()
