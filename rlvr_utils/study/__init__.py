"""From run files to answers: frames (run files -> tables), perseed (estimands with a t over seeds), crossed
(seeds and problems random), power (what a design detects), dynamics, costs, report (the markdown report) and
secondary (its later sections), figures, html (the rendered notebook report), browser and preview (rollouts);
nested (builds, seeds within builds and problems random), slopes (over the rungs' skill; rung pairs), builds (a
grid's counts by rung x build x seed x problem) and controls (the controls study's summary and pass@k figure);
the HTML report's parts: reportpage (its sections), frontpage (the first screen), passk and studyfig (pass@k
against k and the study's figure), safehtml (every value escaped where written); taskview (notebook 01), board (`rlvr tb`)."""
from .. import lazy_exports

_PUBLIC = {"load_grid": "frames", "report_summary": "report", "render_report": "html", "SampleBrowser": "browser"}
__all__ = list(_PUBLIC)
__getattr__ = lazy_exports(__name__, _PUBLIC)
