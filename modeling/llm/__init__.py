"""The one LLM layer: model loading, generation backends, generic-response augmentation, ICL."""
