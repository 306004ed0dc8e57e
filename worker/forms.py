"""One launch form per job kind. A form that does not validate queues nothing."""

from django import forms
from django.utils.text import slugify

from annotation.models import Study
from annotation.services import study_names_check, study_system_words
from modeling.grag.config import GRAGConfig, launch_fields
from modeling.importers.service import DatasetImportError, path_within_roots
from modeling.models import Dataset, System

from .labels import term
from .pipeline import PipelinePlan

SPLITS = [("test", "test"), ("valid", "valid"), ("train", "train")]
TRAINABLE = [
    (System.Method.PRESFT_HIST, "PreSFT(Hist)"),
    (System.Method.PRESFT_TST, "PreSFT(TST)"),
    (System.Method.PREGRAG, "PreGRAG"),
    (System.Method.POSTGRAG, "PostGRAG"),
]


class LaunchForm(forms.Form):
    """A job kind's launch form. Labels and help come from worker/labels.py (GRAG settings from
    GRAGConfig), so the form and the job page name each parameter alike; the only dataset there is
    comes preselected."""

    kind: str = ""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")  # "Learning rate", not "Learning rate:"
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            words = term(name, self.kind)
            if field.label is None:
                field.label = words.label
            if not field.help_text and words.help:
                field.help_text = words.help
        if "dataset" in self.fields and not self.is_bound and not self.initial.get("dataset"):
            names = list(Dataset.objects.values_list("name", flat=True)[:2])
            if len(names) == 1:
                self.initial["dataset"] = names[0]

    def job_params(self) -> dict:
        """The job's parameters: JSON-safe cleaned data (models by name)."""
        params = {}
        for key, value in self.cleaned_data.items():
            if hasattr(value, "name") and hasattr(value, "pk"):
                value = value.name
            elif hasattr(value, "slug") and hasattr(value, "pk"):
                value = value.slug
            if value not in (None, ""):
                params[key] = value
        return params


def config_field(name: str, **overrides) -> forms.Field:
    """A form field for GRAGConfig's ``name``: its type, default, help text and lowest value come from
    the dataclass (modeling/grag/config.py), so forms never restate them. ``overrides`` replace any of
    them (e.g. ``initial=1`` epoch for a CPU launch form).
    """
    spec = {f.name: f for f in launch_fields()}[name]
    kind = forms.FloatField if spec.type in (float, "float") else forms.IntegerField
    kwargs = {"initial": spec.default, "help_text": spec.metadata["help"], "required": spec.default is not None,
              "label": spec.metadata["label"]}
    if spec.metadata["min"] is not None:
        kwargs["min_value"] = spec.metadata["min"]
    kwargs.update(overrides)
    return kind(**kwargs)


def check_config(form: forms.Form, data: dict) -> None:
    """Run GRAGConfig's own validation on the form's values; its message goes on the form."""
    values = {k: data[k] for k in ("method", *(f.name for f in launch_fields())) if data.get(k) not in (None, "")}
    try:
        GRAGConfig.from_dict(values)
    except (TypeError, ValueError) as exc:
        form.add_error(None, str(exc))


class DatasetChoice(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(queryset=Dataset.objects.all(), to_field_name="name", **kwargs)


class SystemChoice(forms.ModelChoiceField):
    def __init__(self, **kwargs):
        super().__init__(queryset=System.objects.all(), to_field_name="name", **kwargs)


class ImportForm(LaunchForm):
    kind = "import"
    kind = forms.ChoiceField(choices=Dataset.Kind.choices)
    path = forms.CharField()
    split = forms.ChoiceField(choices=[("", "from the file / seeded 90:10"), *SPLITS], required=False)
    name = forms.SlugField(required=False)
    limit = forms.IntegerField(min_value=1, required=False)

    def clean_path(self):
        try:
            # Checked before existence, so a path outside IMPORT_ROOTS is refused alike whether
            # or not it exists (the job checks again: a job's params may not come from this form).
            path = path_within_roots(self.cleaned_data["path"])
        except DatasetImportError as exc:
            raise forms.ValidationError(str(exc)) from None
        if not path.exists():
            raise forms.ValidationError(f"{path} does not exist on this host.")
        return str(path)


class AugmentForm(LaunchForm):
    kind = "augment"
    dataset = DatasetChoice()
    split = forms.ChoiceField(choices=SPLITS)
    model = forms.CharField(initial="smollm2", help_text="e.g. meta-llama/Llama-3.1-8B-Instruct on a GPU worker")
    limit = forms.IntegerField(min_value=1, required=False)
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=8)
    shards = forms.IntegerField(min_value=1, max_value=256, required=False)  # label, help: worker/labels.py


class ICLForm(LaunchForm):
    kind = "icl"
    dataset = DatasetChoice()
    split = forms.ChoiceField(choices=SPLITS)
    method = forms.ChoiceField(choices=[(System.Method.ICL_HIST, "ICL(Hist)"), (System.Method.ICL_TST, "ICL(TST)")])
    n_shot = forms.IntegerField(min_value=0, max_value=5, initial=0)
    seeds = forms.CharField(required=False, help_text="For n > 0, e.g. 0,1,2,3,4 (the paper's five seeds; default).")
    shot_split = forms.ChoiceField(choices=SPLITS, initial="train", help_text="Where the n examples are drawn from.")
    model = forms.CharField(initial="smollm2", help_text="e.g. Qwen/Qwen2.5-32B-Instruct on a GPU worker")
    limit = forms.IntegerField(min_value=1, required=False)
    batch_size = forms.IntegerField(min_value=1, max_value=256, initial=8)
    shards = forms.IntegerField(min_value=1, max_value=256, required=False)  # label, help: worker/labels.py

    def clean_seeds(self):
        raw = self.cleaned_data["seeds"].strip()
        if not raw:
            return None
        try:
            return [int(part) for part in raw.replace(" ", "").split(",") if part]
        except ValueError:
            raise forms.ValidationError("Seeds are whole numbers separated by commas, e.g. 0,1,2,3,4.") from None


class TrainForm(LaunchForm):
    kind = "train"
    dataset = DatasetChoice()
    method = forms.ChoiceField(choices=TRAINABLE)
    backbone = forms.CharField(initial="smollm2", help_text="e.g. facebook/bart-base on a GPU worker")
    system_name = forms.CharField(required=False)
    epochs = config_field("epochs", initial=1)  # one epoch on a launch form: the paper's 20 is for GPU hosts
    max_steps = config_field("max_steps")
    batch_size = config_field("batch_size")
    lr = config_field("lr")
    alpha = config_field("alpha")
    beta = config_field("beta")
    limit = forms.IntegerField(min_value=1, required=False, help_text="Train on the first N samples.")

    def clean(self):
        data = super().clean()
        check_config(self, data)
        if data.get("dataset") and data.get("method") and not data.get("system_name"):
            data["system_name"] = slugify(f"{data['dataset'].name}-{data['method']}")
        if data.get("system_name") and System.objects.filter(name=data["system_name"]).exists():
            self.add_error("system_name", f"A system named {data['system_name']!r} exists; choose another name.")
        return data


class GenerateForm(LaunchForm):
    kind = "generate"
    system = SystemChoice()
    split = forms.ChoiceField(choices=SPLITS)
    decoding = forms.ChoiceField(choices=[("greedy", "greedy"), ("beam", "beam search"), ("sample", "sampling")])
    limit = forms.IntegerField(min_value=1, required=False)


class MetricsForm(LaunchForm):
    kind = "metrics"
    system = SystemChoice()
    split = forms.ChoiceField(choices=SPLITS)
    bert_model = forms.CharField(
        required=False,
        help_text="BERTScore model: name, folder, or 'minilm' (offline); default $BERTSCORE_MODEL or roberta-large.",
    )
    bert_layer = forms.IntegerField(min_value=0, required=False, help_text="Layer, for a BERTScore model given as a folder.")


class StudyForm(LaunchForm):
    kind = "study"
    slug = forms.SlugField(required=False, help_text="Annotators see it: leave empty for a neutral one.")
    baseline = SystemChoice()
    challenger = SystemChoice()
    split = forms.ChoiceField(choices=SPLITS)
    limit = forms.IntegerField(min_value=1, required=False)
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=3)
    seed = forms.IntegerField(initial=0)

    def clean(self):
        data = super().clean()
        if data.get("baseline") and data.get("baseline") == data.get("challenger"):
            self.add_error("challenger", "The challenger must differ from the baseline.")
        if data.get("slug") and Study.objects.filter(slug=data["slug"]).exists():
            self.add_error("slug", f"A study {data['slug']!r} exists already.")
        if data.get("slug") and data.get("baseline") and data.get("challenger"):
            try:
                study_names_check(texts={"slug": data["slug"]},
                                  words=study_system_words(systems=[data["baseline"], data["challenger"]]))
            except ValueError as exc:
                self.add_error("slug", str(exc))
        return data


class JudgeForm(LaunchForm):
    kind = "judge"
    study = forms.ModelChoiceField(queryset=Study.objects.all(), to_field_name="slug")
    model = forms.CharField(initial="smollm2", help_text="e.g. Qwen/Qwen2.5-32B-Instruct on a GPU worker")
    name = forms.CharField(required=False, help_text="Rater name, e.g. LLM-145.")
    limit = forms.IntegerField(min_value=1, required=False)
    min_option_mass = forms.FloatField(min_value=0.0, max_value=1.0, required=False)  # label, help: worker/labels.py
    shards = forms.IntegerField(min_value=1, max_value=256, required=False)  # label, help: worker/labels.py


LAUNCH_FORMS: dict[str, type[LaunchForm]] = {
    "import": ImportForm,
    "augment": AugmentForm,
    "icl": ICLForm,
    "train": TrainForm,
    "generate": GenerateForm,
    "metrics": MetricsForm,
    "study": StudyForm,
    "judge": JudgeForm,
}


class PipelineForm(LaunchForm):
    """dataset -> augment -> train the chosen methods -> generate -> metrics -> study -> judge."""

    kind = "pipeline"

    dataset = DatasetChoice()
    methods = forms.MultipleChoiceField(choices=TRAINABLE, initial=["presft_hist", "postgrag"],
                                        widget=forms.CheckboxSelectMultiple)
    baseline = forms.ChoiceField(choices=TRAINABLE, initial="presft_hist")
    challenger = forms.ChoiceField(choices=TRAINABLE, initial="postgrag")
    backbone = forms.CharField(initial="smollm2")
    llm = forms.CharField(initial="smollm2")
    judge_model = forms.CharField(initial="smollm2")
    bert_model = forms.CharField(initial="minilm", help_text="BERTScore model ('minilm' works offline; the paper: roberta-large)")
    train_split = forms.ChoiceField(choices=SPLITS, initial="train")
    eval_split = forms.ChoiceField(choices=SPLITS, initial="test")
    train_limit = forms.IntegerField(min_value=1, required=False, initial=64)
    eval_limit = forms.IntegerField(min_value=1, required=False, initial=12)
    valid_limit = forms.IntegerField(min_value=1, required=False, initial=16)  # label, help: worker/labels.py
    # The pipeline's demo-sized defaults (PipelinePlan), GRAGConfig's help and bounds.
    max_steps = config_field("max_steps", initial=8)
    batch_size = config_field("batch_size", initial=4)
    lr = config_field("lr")
    alpha = config_field("alpha")
    beta = config_field("beta")
    study_slug = forms.SlugField(required=False, help_text="Annotators see it: leave empty for a neutral one.")
    overlap = forms.IntegerField(min_value=1, max_value=10, initial=3)
    seed = forms.IntegerField(initial=0)
    augment = forms.BooleanField(required=False, initial=True)
    judge = forms.BooleanField(required=False, initial=True)

    def clean(self):
        data = super().clean()
        methods = data.get("methods") or []
        for role in ("baseline", "challenger"):
            if data.get(role) and data[role] not in methods:
                self.add_error(role, f"The {role} must be one of the methods to train.")
        if data.get("baseline") and data.get("baseline") == data.get("challenger"):
            self.add_error("challenger", "The challenger must differ from the baseline.")
        check_config(self, data)
        if data.get("study_slug") and data.get("dataset"):
            dataset = getattr(data["dataset"], "name", data["dataset"])
            try:
                study_names_check(texts={"study_slug": data["study_slug"]}, words=study_system_words(
                    names=[slugify(f"{dataset}-{m}") for m in methods]))
            except ValueError as exc:
                self.add_error("study_slug", str(exc))
        return data

    def plan(self):
        params = self.job_params()
        params["methods"] = list(params.get("methods", []))
        params.setdefault("augment", False)
        params.setdefault("judge", False)
        return PipelinePlan(**params)


LAUNCH_FORMS["pipeline"] = PipelineForm
