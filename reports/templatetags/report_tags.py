"""How the report shows a statistic: a number, or "n/a" with the reason it is undefined."""
from django import template
from django.template.defaultfilters import floatformat
from django.utils.html import format_html

register = template.Library()

UNDEFINED = ("undefined here: too few items or ratings (e.g. no item rated by two raters, no decisive label, "
             "or only one category used), so the statistic has no value")


@register.filter
def stat(value, digits=3):
    """``value`` with ``digits`` decimals; None (an undefined statistic) as "n/a" whose title says why."""
    if value is None or value == "":
        return format_html('<abbr class="na" title="{}">n/a</abbr>', UNDEFINED)
    return floatformat(value, digits)
