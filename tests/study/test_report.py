"""The findings' markdown: a committed study's REPORT.md is exactly what its run files say."""

import re
from pathlib import Path

from rlvr_utils.study.report import report_summary

REPO = Path(__file__).resolve().parents[2]


def test_committed_reports_are_what_their_run_files_say():
    reports = sorted((REPO / "runs").glob("*/REPORT.md"))
    assert reports, "no committed study report under runs/"
    for report in reports:
        text = report.read_text()
        k = int(re.search(r"--summary --k (\d+)`", text).group(1))  # each report names the k it answers at
        assert text == report_summary(report.parent, k), \
            (f"{report} is stale: rlvr report {report.parent.relative_to(REPO)} --summary --k {k} "
             f"--out {report.relative_to(REPO)}")
