"""Agreement reports of a study: built once as a dict, rendered as json, csv, html, tex, svg or png.

The public names are re-exported lazily (PEP 562): Django imports this package to load the app,
before the models it reads are ready.
"""
import importlib

_EXPORTS = {"min_confidence_parse": ".build", "report_build": ".build", "FORMATS": ".render", "report_render": ".render"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
