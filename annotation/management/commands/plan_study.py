"""Size a study before it runs: items and raters to detect a win-rate gap (issue 20)."""
import json

from django.core.management.base import BaseCommand, CommandError

from annotation.planner import ALPHA, POWER, study_plan


class Command(BaseCommand):
    help = ("Items and raters needed to detect a gap 2w - 1 in the challenger's share w of decisive labels, "
            "at power 0.8 and alpha 0.05 by default, given the expected share of 'similar' labels.")

    def add_arguments(self, parser):
        parser.add_argument("--gap", type=float, required=True, help="2w - 1, e.g. 0.2 for a 60%% win rate")
        parser.add_argument("--tie-share", type=float, required=True, help="expected share of 'similar' labels, 0-1")
        parser.add_argument("--overlap", type=int, default=3, help="raters per item")
        parser.add_argument("--labelled-share", type=float, default=0.9,
                            help="expected share of items that get a majority label")
        parser.add_argument("--items-per-rater", type=int, default=200)
        parser.add_argument("--power", type=float, default=POWER)
        parser.add_argument("--alpha", type=float, default=ALPHA)
        parser.add_argument("--json", action="store_true", help="print the plan as one JSON object")

    def handle(self, *args, **options):
        try:
            plan = study_plan(gap=options["gap"], tie_share=options["tie_share"], overlap=options["overlap"],
                              labelled_share=options["labelled_share"], items_per_rater=options["items_per_rater"],
                              power=options["power"], alpha=options["alpha"])
        except ValueError as exc:
            raise CommandError(str(exc)) from None
        if options["json"]:
            self.stdout.write(json.dumps(plan))
            return
        self.stdout.write(
            f"To detect a gap of {plan['gap']:.3f} (challenger win rate {plan['win_rate']:.3f} among decisive labels) "
            f"at power {plan['power']} and alpha {plan['alpha']} with {100 * plan['tie_share']:.0f}% 'similar':\n"
            f"  decisive labels {plan['decisive']}, items {plan['items']}, ratings {plan['ratings']}, "
            f"raters {plan['raters']} (overlap {plan['overlap']}, {plan['items_per_rater']} items each)")
