"""Agreement reports of a study (issue 5): built once as a dict, rendered as json, csv, html, tex, svg or png."""
from .build import min_confidence_parse, report_build
from .render import FORMATS, report_render

__all__ = ["FORMATS", "min_confidence_parse", "report_build", "report_render"]
