"""What the libraries print during a job goes to its log file; the tool's own lines stay on the terminal."""

import logging
import os
import sys

from compressbench import progress


def test_c_level_python_and_logged_output_of_a_step_goes_to_its_log_file(tmp_path, capfd):
    with progress.third_party_logs(tmp_path / "logs"), progress.captured("quant.static") as path:
        os.write(1, b"written to file descriptor 1, as C++ code does\n")
        os.write(2, b"written to file descriptor 2\n")
        print("printed by Python")
        sys.stderr.write("Traceback (most recent call last): a library's own\n")
        logging.getLogger("onnxruntime.quantization").error("logged at ERROR")
    text = path.read_text()
    for line in ("file descriptor 1", "file descriptor 2", "printed by Python", "a library's own", "logged at ERROR"):
        assert line in text
    printed = capfd.readouterr()
    assert "Traceback" not in printed.out + printed.err and "descriptor" not in printed.out + printed.err
    assert path == tmp_path / "logs" / "quant.static.log"


def test_nothing_is_captured_outside_a_compress(tmp_path, capfd):
    with progress.captured("quant.static") as path:
        os.write(1, b"still on the terminal\n")
    assert path is None and "still on the terminal" in capfd.readouterr().out
