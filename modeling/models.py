"""Datasets and what the GRAG pipeline produces from them.

Names follow the paper (section 3): a Sample is one non-leading agent turn with its persona P,
history H, reference (personalised) response R_P and generic response R_G.
"""
from django.db import models


class Dataset(models.Model):
    class Kind(models.TextChoices):
        SPC = "spc", "Synthetic-Persona-Chat"
        PFG = "pfg", "Persuasion-for-Good"
        ED = "ed", "EmpatheticDialogues"
        CONVAI2 = "convai2", "ConvAI2 / PersonaChat"
        JSONL = "jsonl", "Canonical JSONL"

    name = models.SlugField(max_length=100, unique=True, help_text="Short name, e.g. 'spc'.")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    description = models.TextField(blank=True)
    meta = models.JSONField(default=dict, blank=True, help_text="Import reports per split and file.")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Conversation(models.Model):
    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="conversations")
    split = models.CharField(max_length=16, help_text="train, valid or test")
    source_id = models.CharField(max_length=200, help_text="The conversation's id in the source file.")
    source_file = models.CharField(max_length=500, blank=True)
    source_line = models.PositiveIntegerField(null=True, blank=True, help_text="First line (1-based) in the source file.")
    agent_persona = models.TextField(blank=True)
    user_persona = models.TextField(blank=True)
    turns = models.JSONField(default=list, help_text='[{"role": "user"|"agent", "text": ..., "line": n}, ...]')
    meta = models.JSONField(default=dict, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["dataset", "split", "source_id"], name="conversation_unique_source"),
        ]
        indexes = [models.Index(fields=["dataset", "split"])]

    def __str__(self) -> str:
        return f"{self.dataset}/{self.split}/{self.source_id}"


class Sample(models.Model):
    """One non-leading agent turn: predict R_P from P, H (and R_G)."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="samples")
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="samples")
    split = models.CharField(max_length=16)
    turn_index = models.PositiveIntegerField(help_text="Index of the agent turn in conversation.turns.")
    key = models.CharField(max_length=300, unique=True, help_text="dataset/split/source_id/turn_index")
    agent_persona = models.TextField(blank=True)
    user_persona = models.TextField(blank=True)
    history = models.JSONField(default=list, help_text='[{"role": ..., "text": ...}], ends with a user turn')
    reference = models.TextField(help_text="R_P: the dataset's own (personalised) agent response.")
    source_line = models.PositiveIntegerField(null=True, blank=True)
    # R_G, filled by generic-response augmentation (section 3.1).
    generic_response = models.TextField(blank=True)
    generic_model = models.CharField(max_length=300, blank=True)
    generic_prompt_version = models.CharField(max_length=50, blank=True)
    generic_meta = models.JSONField(
        default=dict, blank=True,
        help_text='What generating R_G noted: {"degenerate": modeling.text.degenerate_flags(...)}.',
    )

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["conversation", "turn_index"], name="sample_unique_turn"),
        ]
        indexes = [models.Index(fields=["dataset", "split"])]

    def __str__(self) -> str:
        return self.key


class LLMCache(models.Model):
    """A finished LLM generation, so that a rerun or resumed job costs nothing for done prompts."""

    model_id = models.CharField(max_length=300)
    prompt_version = models.CharField(max_length=50)
    prompt_hash = models.CharField(max_length=64, help_text="sha256 of the rendered prompt and generation settings")
    output = models.TextField()
    raw_output = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["model_id", "prompt_version", "prompt_hash"], name="llmcache_unique"),
        ]


class System(models.Model):
    """A method or model run whose responses can be scored and compared (e.g. PostGRAG, ICL(Hist))."""

    class Method(models.TextChoices):
        ICL_HIST = "icl_hist", "ICL(Hist)"
        ICL_TST = "icl_tst", "ICL(TST)"
        PRESFT_HIST = "presft_hist", "PreSFT(Hist)"
        PRESFT_TST = "presft_tst", "PreSFT(TST)"
        PREGRAG = "pregrag", "PreGRAG"
        POSTGRAG = "postgrag", "PostGRAG"
        GENERIC = "generic", "Generic LLM"
        REFERENCE = "reference", "Reference"
        EXTERNAL = "external", "External"

    class Status(models.TextChoices):
        NEW = "new", "New"
        TRAINING = "training", "Training"
        TRAINED = "trained", "Trained"
        GENERATED = "generated", "Generated"
        FAILED = "failed", "Failed"

    name = models.CharField(max_length=200, unique=True)
    method = models.CharField(max_length=20, choices=Method.choices)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.SET_NULL, related_name="systems")
    backbone = models.CharField(max_length=300, blank=True, help_text="Model id or path, e.g. facebook/bart-base")
    config = models.JSONField(default=dict, blank=True, help_text="Training / prompting settings, seeds.")
    generation = models.JSONField(default=dict, blank=True, help_text="Generation settings used for its responses.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.NEW)
    checkpoint_dir = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Response(models.Model):
    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="responses")
    sample = models.ForeignKey(Sample, on_delete=models.CASCADE, related_name="responses")
    text = models.TextField()
    meta = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["system", "sample"], name="response_unique")]


class MetricResult(models.Model):
    """A metric of a system: per sample, or for the whole run when sample is null (e.g. corpus BLEU)."""

    system = models.ForeignKey(System, on_delete=models.CASCADE, related_name="metrics")
    sample = models.ForeignKey(Sample, null=True, blank=True, on_delete=models.CASCADE, related_name="metrics")
    split = models.CharField(max_length=16, default="test")
    name = models.CharField(max_length=40, help_text="char_f1, rouge1, rouge2, rougeL, bleu, bpc, bert_p, bert_r, bert_f1")
    value = models.FloatField()
    meta = models.JSONField(default=dict, blank=True, help_text="e.g. sacrebleu's signature, BERTScore model")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["system", "split", "name"], condition=models.Q(sample__isnull=True), name="metric_unique_corpus"
            ),
            models.UniqueConstraint(
                fields=["system", "sample", "name"], condition=models.Q(sample__isnull=False), name="metric_unique_sample"
            ),
        ]
