"""The findings' markdown: a committed study's REPORT.md is exactly what its run files say."""

from pathlib import Path

from rlvr_utils.summary import report_summary

REPO = Path(__file__).resolve().parents[1]


def test_committed_reports_are_what_their_run_files_say():
    reports = sorted((REPO / "runs").glob("*/REPORT.md"))
    assert reports, "no committed study report under runs/"
    for report in reports:
        assert report.read_text() == report_summary(report.parent), \
            f"{report} is stale: rlvr report {report.parent.relative_to(REPO)} --summary --out {report.relative_to(REPO)}"
